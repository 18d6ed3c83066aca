/*
 * tests/store_conformance.c - the store backend conformance suite: append,
 * read, queries, idempotent append, concurrency, subscriptions, snapshots,
 * hooks and bad input, against any backend given by a fixture.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_conformance.h"
#include "store/store_internal.h"

static const store_backend_fixture *fixture;

typedef struct tstate {
    char *url;
    eddy_store *store;
} tstate;

static int setup(void **state)
{
    tstate *t = calloc(1, sizeof *t);
    t->url = fixture->new_url(fixture->ctx);
    eddy_error err = {0};
    t->store = eddy_store_open(t->url, NULL, &err);
    if (!t->store)
        fail_msg("open %s: %s", t->url, err.message);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tstate *t = *state;
    eddy_store_close(t->store);
    fixture->drop_url(t->url, fixture->ctx);
    free(t->url);
    free(t);
    return 0;
}

/* Reopens the test's store with options. */
static void reopen(tstate *t, const eddy_store_options *o)
{
    eddy_store_close(t->store);
    eddy_error err = {0};
    t->store = eddy_store_open(t->url, o, &err);
    if (!t->store)
        fail_msg("reopen %s: %s", t->url, err.message);
}

eddy_event *conf_event(const char *type, const char *id, int64_t time_us, int n)
{
    json_t *data = json_pack("{s:i}", "n", n);
    eddy_event_init init = {.type = type, .source = "conformance", .id = id,
                            .time_us = time_us, .data = data};
    eddy_error err = {0};
    eddy_event *ev = eddy_event_new(&init, &err);
    json_decref(data);
    if (!ev)
        fail_msg("event: %s", err.message);
    return ev;
}

static void unref_all(eddy_event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        eddy_event_unref(evs[i]);
}

static int64_t head_of(eddy_store *s)
{
    int64_t h = -1;
    eddy_error err = {0};
    assert_int_equal(eddy_store_head(s, &h, &err), EDDY_OK);
    return h;
}

/* Reads a whole cursor, checking the events against `expect` if given. */
static size_t drain(eddy_cursor *c, eddy_record *recs, size_t max)
{
    eddy_record rec;
    eddy_error err = {0};
    size_t n = 0;
    int rc;
    while (eddy_cursor_next(c, &rec, &err)) {
        if (recs && n < max) {
            recs[n] = rec;
            recs[n].event = eddy_event_ref(rec.event);
            recs[n].stream_id = strdup(rec.stream_id);
        }
        n++;
    }
    rc = -eddy_cursor_error(c);
    if (rc < 0)
        fail_msg("cursor: %s", err.message);
    eddy_cursor_free(c);
    return n;
}

static void recs_free(eddy_record *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        eddy_event_unref(recs[i].event);
        free((char *)recs[i].stream_id);
    }
}

/* ---- append and read ----------------------------------------------------- */

static void test_append_read_stream(void **state)
{
    tstate *t = *state;
    eddy_event *evs[3] = {conf_event("order.placed", NULL, 0, 1),
                          conf_event("order.paid", NULL, 0, 2),
                          conf_event("order.shipped", NULL, 0, 3)};
    eddy_append_result res = {0};
    eddy_error err = {0};
    assert_int_equal(eddy_store_append(t->store, "order-1", EDDY_EXPECT_NO_STREAM,
                                       evs, 3, &res, &err), EDDY_OK);
    assert_int_equal(res.first_position, 1);
    assert_int_equal(res.last_position, 3);
    assert_int_equal(res.stream_version, 3);

    eddy_cursor *c = NULL;
    eddy_record recs[8];
    assert_int_equal(eddy_store_read_stream(t->store, "order-1", 1, EDDY_FORWARD,
                                            0, &c, &err), EDDY_OK);
    assert_int_equal(drain(c, recs, 8), 3);
    for (int i = 0; i < 3; i++) {
        assert_true(eddy_event_equal(recs[i].event, evs[i]));
        assert_int_equal(recs[i].stream_version, i + 1);
        assert_int_equal(recs[i].position, i + 1);
        assert_string_equal(recs[i].stream_id, "order-1");
        assert_true(recs[i].recorded_us > 0);
    }
    recs_free(recs, 3);

    assert_int_equal(eddy_store_read_stream(t->store, "order-1", EDDY_STREAM_END,
                                            EDDY_BACKWARD, 0, &c, &err), EDDY_OK);
    assert_int_equal(drain(c, recs, 8), 3);
    assert_int_equal(recs[0].stream_version, 3);
    assert_int_equal(recs[2].stream_version, 1);
    recs_free(recs, 3);

    assert_int_equal(eddy_store_read_stream(t->store, "order-1", 2, EDDY_FORWARD,
                                            1, &c, &err), EDDY_OK);
    assert_int_equal(drain(c, recs, 8), 1);
    assert_int_equal(recs[0].stream_version, 2);
    recs_free(recs, 1);

    assert_int_equal(eddy_store_read_stream(t->store, "order-1", 2, EDDY_BACKWARD,
                                            0, &c, &err), EDDY_OK);
    assert_int_equal(drain(c, recs, 8), 2);
    assert_int_equal(recs[0].stream_version, 2);
    assert_int_equal(recs[1].stream_version, 1);
    recs_free(recs, 2);

    /* A missing stream reads as empty. */
    assert_int_equal(eddy_store_read_stream(t->store, "nope", 1, EDDY_FORWARD, 0,
                                            &c, &err), EDDY_OK);
    assert_int_equal(drain(c, NULL, 0), 0);

    int64_t v = -1;
    assert_int_equal(eddy_store_stream_version(t->store, "order-1", &v, &err),
                     EDDY_OK);
    assert_int_equal(v, 3);
    assert_int_equal(eddy_store_stream_version(t->store, "nope", &v, &err),
                     EDDY_OK);
    assert_int_equal(v, 0);
    assert_int_equal(head_of(t->store), 3);

    /* Everything survives a reopen. */
    reopen(t, NULL);
    assert_int_equal(head_of(t->store), 3);
    assert_int_equal(eddy_store_read_all(t->store, 0, 0, &c, &err), EDDY_OK);
    assert_int_equal(drain(c, recs, 8), 3);
    assert_true(eddy_event_equal(recs[2].event, evs[2]));
    recs_free(recs, 3);
    unref_all(evs, 3);
}

static void test_expected_version(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    eddy_event *e[6];
    for (int i = 0; i < 6; i++)
        e[i] = conf_event("x.happened", NULL, 0, i);
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_EXISTS, &e[0], 1,
                                       NULL, &err), EDDY_ECONFLICT);
    assert_non_null(strstr(err.message, "stream s"));
    assert_int_equal(eddy_store_append(t->store, "s", 3, &e[0], 1, NULL, &err),
                     EDDY_ECONFLICT);
    assert_string_equal(err.message, "stream s: expected version 3, actual 0");
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_NO_STREAM, &e[0],
                                       1, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_NO_STREAM, &e[1],
                                       1, NULL, &err), EDDY_ECONFLICT);
    assert_non_null(strstr(err.message, "actual 1"));
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_EXISTS, &e[1], 1,
                                       NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_append(t->store, "s", 5, &e[2], 1, NULL, &err),
                     EDDY_ECONFLICT);
    assert_string_equal(err.message, "stream s: expected version 5, actual 2");
    assert_int_equal(eddy_store_append(t->store, "s", 2, &e[2], 1, NULL, &err),
                     EDDY_OK);
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, &e[3], 1,
                                       NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_append(t->store, "s", -7, &e[4], 1, NULL, &err),
                     EDDY_EINVAL);
    /* Failed appends left no gap: positions stay 1..4. */
    eddy_append_result res = {0};
    assert_int_equal(eddy_store_append(t->store, "other", EDDY_EXPECT_ANY, &e[5],
                                       1, &res, &err), EDDY_OK);
    assert_int_equal(res.first_position, 5);
    assert_int_equal(res.stream_version, 1);
    unref_all(e, 6);
}

static void test_idempotent_append(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    eddy_event *a[2] = {conf_event("x.a", NULL, 0, 1), conf_event("x.b", NULL, 0, 2)};
    eddy_append_result r1 = {0}, r2 = {0};
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_NO_STREAM, a, 2,
                                       &r1, &err), EDDY_OK);
    /* A retry with the same expected version succeeds, stores nothing. */
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_NO_STREAM, a, 2,
                                       &r2, &err), EDDY_OK);
    assert_int_equal(r2.first_position, r1.first_position);
    assert_int_equal(r2.last_position, r1.last_position);
    assert_int_equal(r2.stream_version, 2);
    assert_int_equal(head_of(t->store), 2);

    /* Same id, different content: refused, nothing stored. */
    eddy_event *changed = conf_event("x.a", eddy_event_id(a[0]), 0, 99);
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, &changed, 1,
                                       NULL, &err), EDDY_EDUPLICATE);
    assert_non_null(strstr(err.message, eddy_event_id(a[0])));
    /* Same event in another stream: refused. */
    assert_int_equal(eddy_store_append(t->store, "elsewhere", EDDY_EXPECT_ANY, a, 1,
                                       NULL, &err), EDDY_EDUPLICATE);
    /* The same id twice in one call: refused. */
    eddy_event *fresh = conf_event("x.c", NULL, 0, 3);
    eddy_event *twice[2] = {fresh, fresh};
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, twice, 2,
                                       NULL, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "twice"));
    assert_int_equal(head_of(t->store), 2);

    /* A batch with one known and one new event stores only the new one. */
    eddy_event *mixed[2] = {a[1], fresh};
    eddy_append_result r3 = {0};
    assert_int_equal(eddy_store_append(t->store, "s", 2, mixed, 2, &r3, &err),
                     EDDY_OK);
    assert_int_equal(r3.first_position, 3);
    assert_int_equal(r3.last_position, 3);
    assert_int_equal(r3.stream_version, 3);
    assert_int_equal(head_of(t->store), 3);

    /* An event rebuilt from its JSON (same content) is the same event. */
    char *json = eddy_event_encode(a[0], NULL);
    eddy_event *copy = eddy_event_decode(json, strlen(json), &err);
    free(json);
    assert_non_null(copy);
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, &copy, 1,
                                       &r2, &err), EDDY_OK);
    assert_int_equal(r2.first_position, 1);
    assert_int_equal(head_of(t->store), 3);
    eddy_event_unref(copy);
    eddy_event_unref(changed);
    eddy_event_unref(fresh);
    unref_all(a, 2);
}

static int reject_big_data(const eddy_event *ev, void *user, eddy_error *err)
{
    (void)user;
    if (strcmp(eddy_event_type(ev), "x.forbidden") == 0) {
        err->code = EDDY_ESCHEMA;
        snprintf(err->message, sizeof err->message, "x.forbidden is forbidden");
        return EDDY_ESCHEMA;
    }
    return EDDY_OK;
}

static void test_bad_input(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    eddy_event *ok = conf_event("x.ok", NULL, 0, 1);
    assert_int_equal(eddy_store_append(t->store, NULL, EDDY_EXPECT_ANY, &ok, 1,
                                       NULL, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "stream id"));
    assert_int_equal(eddy_store_append(t->store, "", EDDY_EXPECT_ANY, &ok, 1, NULL,
                                       &err), EDDY_EINVAL);
    assert_int_equal(eddy_store_append(t->store, "bad\xff\xfe", EDDY_EXPECT_ANY,
                                       &ok, 1, NULL, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "UTF-8"));
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, &ok, 0, NULL,
                                       &err), EDDY_EINVAL);
    eddy_event *withnull[2] = {ok, NULL};
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, withnull, 2,
                                       NULL, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "NULL"));
    /* An event with an invalid UTF-8 type cannot even be built. */
    eddy_event_init bad = {.type = "x.\xc3\x28", .source = "t"};
    assert_null(eddy_event_new(&bad, &err));

    /* Oversized events, with a configurable limit. */
    eddy_store_options o = {.max_event_bytes = 2000, .check = reject_big_data};
    reopen(t, &o);
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    eddy_event *huge = eddy_event_newf("x.big", "t", NULL, &err, "{s:s}", "b", big);
    assert_non_null(huge);
    eddy_event *batch[2] = {ok, huge};
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, batch, 2,
                                       NULL, &err), EDDY_ETOOBIG);
    assert_non_null(strstr(err.message, eddy_event_id(huge)));
    assert_non_null(strstr(err.message, "limit is 2000"));
    /* The check hook rejects the whole append. */
    eddy_event *forbidden = conf_event("x.forbidden", NULL, 0, 2);
    eddy_event *batch2[2] = {ok, forbidden};
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, batch2, 2,
                                       NULL, &err), EDDY_ESCHEMA);
    assert_string_equal(err.message, "x.forbidden is forbidden");
    assert_int_equal(head_of(t->store), 0);

    /* Reads with bad arguments. */
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_stream(t->store, "", 1, EDDY_FORWARD, 0, &c,
                                            &err), EDDY_EINVAL);
    assert_int_equal(eddy_store_read_stream(t->store, "s", -1, EDDY_FORWARD, 0, &c,
                                            &err), EDDY_EINVAL);
    const char *types[] = {"x", ""};
    eddy_query q = {.types = types, .type_count = 2};
    assert_int_equal(eddy_store_query(t->store, &q, &c, &err), EDDY_EINVAL);
    eddy_query q2 = {.min_position = 5, .max_position = 2};
    assert_int_equal(eddy_store_query(t->store, &q2, &c, &err), EDDY_EINVAL);
    assert_null(c);

    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_ANY, &ok, 1, NULL,
                                       &err), EDDY_OK);
    assert_int_equal(head_of(t->store), 1);
    eddy_event_unref(forbidden);
    eddy_event_unref(huge);
    eddy_event_unref(ok);
}

/* ---- queries and paging ---------------------------------------------------- */

static void test_queries(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    const int64_t T0 = 1700000000000000LL;
    /* 30 events over 3 streams, 3 types; times go BACKWARDS relative to the
     * positions for the last 10, to show ordering is by position. */
    for (int i = 0; i < 30; i++) {
        static const char *types[] = {"a.one", "b.two", "c.three"};
        char sid[16];
        snprintf(sid, sizeof sid, "st-%d", i % 3);
        int64_t tm = i < 20 ? T0 + i * 1000000LL : T0 - i * 1000000LL;
        eddy_event *ev = conf_event(types[i % 3], NULL, tm, i);
        assert_int_equal(eddy_store_append(t->store, sid, EDDY_EXPECT_ANY, &ev, 1,
                                           NULL, &err), EDDY_OK);
        eddy_event_unref(ev);
    }
    eddy_cursor *c = NULL;
    eddy_record recs[40];
    const char *t1[] = {"a.one", "c.three"};
    eddy_query q = {.types = t1, .type_count = 2};
    assert_int_equal(eddy_store_query(t->store, &q, &c, &err), EDDY_OK);
    size_t n = drain(c, recs, 40);
    assert_int_equal(n, 20);
    for (size_t i = 0; i < n; i++) {
        assert_true(strcmp(eddy_event_type(recs[i].event), "b.two") != 0);
        if (i)
            assert_true(recs[i].position > recs[i - 1].position);
    }
    recs_free(recs, n);

    /* Time range [T0+5s, T0+10s): events 5..9. */
    eddy_query qt = {.from_time_us = T0 + 5000000LL, .to_time_us = T0 + 10000000LL};
    assert_int_equal(eddy_store_query(t->store, &qt, &c, &err), EDDY_OK);
    n = drain(c, recs, 40);
    assert_int_equal(n, 5);
    assert_int_equal(recs[0].position, 6);
    recs_free(recs, n);

    /* Newest first, with a limit: positions 30, 29, 28. */
    eddy_query qn = {.newest_first = true, .limit = 3};
    assert_int_equal(eddy_store_query(t->store, &qn, &c, &err), EDDY_OK);
    n = drain(c, recs, 40);
    assert_int_equal(n, 3);
    assert_int_equal(recs[0].position, 30);
    assert_int_equal(recs[2].position, 28);
    recs_free(recs, n);

    /* One stream, a type, a position window, newest first. */
    const char *t2[] = {"b.two"};
    eddy_query qs = {.stream_id = "st-1", .types = t2, .type_count = 1,
                     .min_position = 5, .max_position = 20, .newest_first = true};
    assert_int_equal(eddy_store_query(t->store, &qs, &c, &err), EDDY_OK);
    n = drain(c, recs, 40);
    /* st-1 holds positions 2,5,8,...,29; within [5,20]: 5,8,11,14,17,20 */
    assert_int_equal(n, 6);
    assert_int_equal(recs[0].position, 20);
    assert_int_equal(recs[5].position, 5);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(recs[i].stream_id, "st-1");
    recs_free(recs, n);

    /* Global log from a position, with a limit. */
    assert_int_equal(eddy_store_read_all(t->store, 25, 3, &c, &err), EDDY_OK);
    n = drain(c, recs, 40);
    assert_int_equal(n, 3);
    assert_int_equal(recs[0].position, 25);
    recs_free(recs, n);
}

/* One event by id: through the id index, with the transform hook, and
 * nothing (not an error) for an unknown id. */
static void test_read_event(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "ev-%d", i);
        eddy_event *ev = conf_event("a.one", id, 0, i);
        assert_int_equal(eddy_store_append(t->store, i < 3 ? "s1" : "s2",
                                           EDDY_EXPECT_ANY, &ev, 1, NULL, &err),
                         EDDY_OK);
        eddy_event_unref(ev);
    }
    eddy_cursor *c = NULL;
    eddy_record recs[2];
    assert_int_equal(eddy_store_read_event(t->store, "ev-3", &c, &err), EDDY_OK);
    assert_int_equal(drain(c, recs, 2), 1);
    assert_string_equal(eddy_event_id(recs[0].event), "ev-3");
    assert_string_equal(recs[0].stream_id, "s2");
    assert_int_equal(recs[0].position, 4);
    assert_int_equal(recs[0].stream_version, 1);
    recs_free(recs, 1);
    assert_int_equal(eddy_store_read_event(t->store, "nope", &c, &err), EDDY_OK);
    assert_int_equal(drain(c, NULL, 0), 0);
    assert_int_equal(eddy_store_read_event(t->store, "", &c, &err), EDDY_EINVAL);
    assert_int_equal(eddy_store_read_event(t->store, NULL, &c, &err), EDDY_EINVAL);
}

static void test_paging(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    enum { N = 1100, B = 100 };
    eddy_event *batch[B];
    for (int k = 0; k < N / B; k++) {
        for (int i = 0; i < B; i++)
            batch[i] = conf_event("p.e", NULL, 0, k * B + i);
        eddy_append_result res;
        assert_int_equal(eddy_store_append(t->store, k % 2 ? "odd" : "even",
                                           EDDY_EXPECT_ANY, batch, B, &res, &err),
                         EDDY_OK);
        assert_int_equal(res.last_position - res.first_position, B - 1);
        unref_all(batch, B);
    }
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_all(t->store, 1, 0, &c, &err), EDDY_OK);
    eddy_record rec;
    int64_t expect = 1;
    int rc;
    while (eddy_cursor_next(c, &rec, &err)) {
        assert_int_equal(rec.position, expect);
        int n = -1;
        assert_int_equal(eddy_event_unpack(rec.event, &err, "{s:i}", "n", &n),
                         EDDY_OK);
        assert_int_equal(n, expect - 1);
        expect++;
    }
    rc = -eddy_cursor_error(c);
    assert_int_equal(rc, 0);
    assert_int_equal(expect, N + 1);
    assert_false(eddy_cursor_next(c, &rec, &err)); /* stays at the end */
    eddy_cursor_free(c);

    assert_int_equal(eddy_store_read_stream(t->store, "even", EDDY_STREAM_END,
                                            EDDY_BACKWARD, 0, &c, &err), EDDY_OK);
    int64_t v = 600;
    while (eddy_cursor_next(c, &rec, &err))
        assert_int_equal(rec.stream_version, v--);
    rc = -eddy_cursor_error(c);
    assert_int_equal(v, 0);
    eddy_cursor_free(c);

    assert_int_equal(eddy_store_read_stream(t->store, "odd", 1, EDDY_FORWARD, 300,
                                            &c, &err), EDDY_OK);
    assert_int_equal(drain(c, NULL, 0), 300);
}

/* ---- concurrency ----------------------------------------------------------- */

typedef struct appender {
    eddy_store *store;
    int id;
    int rounds;
    int failures;
} appender;

static void *append_many(void *arg)
{
    appender *a = arg;
    char sid[32];
    snprintf(sid, sizeof sid, "thread-%d", a->id);
    for (int i = 0; i < a->rounds; i++) {
        eddy_event *evs[3];
        size_t n = 1 + (size_t)(i % 3);
        for (size_t k = 0; k < n; k++)
            evs[k] = conf_event("c.e", NULL, 0, i);
        eddy_error err = {0};
        /* Exact expected versions: each thread owns its stream. */
        static _Thread_local int64_t version;
        if (i == 0)
            version = 0;
        eddy_append_result res;
        if (eddy_store_append(a->store, sid, version, evs, n, &res, &err) != EDDY_OK)
            a->failures++;
        else
            version = res.stream_version;
        unref_all(evs, n);
    }
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    tstate *t = *state;
    enum { T = 6, R = 60 };
    pthread_t th[T];
    appender a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (appender){t->store, i, R, 0};
        pthread_create(&th[i], NULL, append_many, &a[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    int64_t per_thread = 0;
    for (int i = 0; i < R; i++)
        per_thread += 1 + i % 3;
    assert_int_equal(head_of(t->store), per_thread * T);
    /* Gap-free log, contiguous versions per stream. */
    eddy_cursor *c = NULL;
    eddy_error err = {0};
    assert_int_equal(eddy_store_read_all(t->store, 0, 0, &c, &err), EDDY_OK);
    int64_t versions[T] = {0};
    int64_t pos = 0;
    eddy_record rec;
    while (eddy_cursor_next(c, &rec, &err)) {
        assert_int_equal(rec.position, ++pos);
        int id = atoi(rec.stream_id + strlen("thread-"));
        assert_int_equal(rec.stream_version, ++versions[id]);
    }
    eddy_cursor_free(c);
    assert_int_equal(pos, per_thread * T);
}

typedef struct racer {
    eddy_store *store;
    pthread_barrier_t *barrier;
    int64_t expected;
    char stream[32];
    int rc;
    char message[EDDY_ERROR_MESSAGE_MAX];
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    eddy_event *ev = conf_event("race.won", NULL, 0, 0);
    eddy_error err = {0};
    pthread_barrier_wait(r->barrier);
    r->rc = eddy_store_append(r->store, r->stream, r->expected, &ev, 1, NULL, &err);
    snprintf(r->message, sizeof r->message, "%s", err.message);
    eddy_event_unref(ev);
    return NULL;
}

static void test_conflict_race(void **state)
{
    tstate *t = *state;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    for (int round = 0; round < 100; round++) {
        racer r[2];
        int64_t expected = round % 2 ? 1 : EDDY_EXPECT_NO_STREAM;
        char sid[32];
        snprintf(sid, sizeof sid, "race-%d", round);
        if (expected == 1) { /* the stream has one event already */
            eddy_event *ev = conf_event("race.setup", NULL, 0, 0);
            assert_int_equal(eddy_store_append(t->store, sid, EDDY_EXPECT_NO_STREAM,
                                               &ev, 1, NULL, NULL), EDDY_OK);
            eddy_event_unref(ev);
        }
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            r[i] = (racer){.store = t->store, .barrier = &barrier,
                           .expected = expected};
            snprintf(r[i].stream, sizeof r[i].stream, "%s", sid);
            pthread_create(&th[i], NULL, race, &r[i]);
        }
        pthread_join(th[0], NULL);
        pthread_join(th[1], NULL);
        int wins = (r[0].rc == EDDY_OK) + (r[1].rc == EDDY_OK);
        int conflicts = (r[0].rc == EDDY_ECONFLICT) + (r[1].rc == EDDY_ECONFLICT);
        assert_int_equal(wins, 1);
        assert_int_equal(conflicts, 1);
        const char *msg = r[0].rc == EDDY_ECONFLICT ? r[0].message : r[1].message;
        char want[128];
        snprintf(want, sizeof want, "stream %s: expected version %lld", sid,
                 (long long)expected);
        assert_non_null(strstr(msg, want));
        int64_t v = 0;
        assert_int_equal(eddy_store_stream_version(t->store, sid, &v, NULL), EDDY_OK);
        assert_int_equal(v, expected + 1);
    }
    pthread_barrier_destroy(&barrier);
}

/* ---- asynchronous appends and write jobs ----------------------------------- */

typedef struct async_box {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, failed;
    int64_t last_position;
} async_box;

static void on_appended(int rc, const eddy_append_result *res,
                        const eddy_error *err, void *user)
{
    async_box *b = user;
    pthread_mutex_lock(&b->mu);
    if (rc == EDDY_OK) {
        if (res->last_position > b->last_position)
            b->last_position = res->last_position;
    } else {
        /* Not a cmocka assertion: this runs on the writer thread. */
        if (res == NULL && err->code == rc && strstr(err->message, "expected"))
            b->failed++;
    }
    b->done++;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

static void test_async_append(void **state)
{
    tstate *t = *state;
    async_box box = {.mu = PTHREAD_MUTEX_INITIALIZER,
                     .cond = PTHREAD_COND_INITIALIZER};
    eddy_error err = {0};
    for (int i = 0; i < 50; i++) {
        eddy_event *ev = conf_event("a.e", NULL, 0, i);
        assert_int_equal(eddy_store_append_async(t->store, "async", i, &ev, 1,
                                                 on_appended, &box, &err), EDDY_OK);
        eddy_event_unref(ev); /* the store keeps its own reference */
    }
    /* One that must conflict, one refused up front (callback never runs). */
    eddy_event *ev = conf_event("a.e", NULL, 0, 0);
    assert_int_equal(eddy_store_append_async(t->store, "async", 3, &ev, 1,
                                             on_appended, &box, &err), EDDY_OK);
    assert_int_equal(eddy_store_append_async(t->store, "", 3, &ev, 1, on_appended,
                                             &box, &err), EDDY_EINVAL);
    eddy_event_unref(ev);
    pthread_mutex_lock(&box.mu);
    while (box.done < 51)
        pthread_cond_wait(&box.cond, &box.mu);
    pthread_mutex_unlock(&box.mu);
    assert_int_equal(box.failed, 1);
    assert_int_equal(box.last_position, 50);
    assert_int_equal(head_of(t->store), 50);
}

static int job_append_then(eddy_txn *txn, void *arg, eddy_error *err)
{
    int fail = *(int *)arg;
    eddy_event *ev = conf_event("job.e", NULL, 0, fail);
    int rc = eddy_txn_append(txn, "jobs", EDDY_EXPECT_ANY, &ev, 1, NULL, err);
    eddy_event_unref(ev);
    if (rc == EDDY_OK && fail) {
        snprintf(err->message, sizeof err->message, "job gave up");
        rc = err->code = EDDY_EHANDLER;
    }
    return rc;
}

static void test_write_jobs(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    int fail = 1;
    assert_int_equal(eddyi_store_write(t->store, job_append_then, &fail, &err),
                     EDDY_EHANDLER);
    assert_string_equal(err.message, "job gave up");
    assert_int_equal(head_of(t->store), 0); /* rolled back with the job */
    fail = 0;
    assert_int_equal(eddyi_store_write(t->store, job_append_then, &fail, &err),
                     EDDY_OK);
    assert_int_equal(head_of(t->store), 1);
}

/*
 * Synchronous appends (which commit on their own thread when the writer is
 * idle), asynchronous appends and write jobs (always on the writer thread)
 * at once: every append lands once, the log stays gap-free, each stream's
 * versions are contiguous, and the asynchronous callbacks come in order.
 */
typedef struct async_side {
    eddy_store *store;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, failures, rounds;
    int64_t last_version;
} async_side;

static void async_done(int rc, const eddy_append_result *res,
                       const eddy_error *err, void *user)
{
    (void)err;
    async_side *a = user;
    pthread_mutex_lock(&a->mu);
    if (rc != EDDY_OK || res->stream_version != a->last_version + 1)
        a->failures++;
    else
        a->last_version = res->stream_version;
    a->done++;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

static void *append_async_many(void *arg)
{
    async_side *a = arg;
    for (int i = 0; i < a->rounds; i++) {
        eddy_event *ev = conf_event("c.async", NULL, 0, i);
        eddy_error err = {0};
        if (eddy_store_append_async(a->store, "async", i, &ev, 1, async_done, a,
                                    &err) != EDDY_OK) {
            pthread_mutex_lock(&a->mu);
            a->failures++;
            a->done++;
            pthread_mutex_unlock(&a->mu);
        }
        eddy_event_unref(ev);
        if (i % 7 == 0)
            usleep(200); /* let the writer go idle now and then */
    }
    return NULL;
}

static void *write_jobs_many(void *arg)
{
    appender *a = arg;
    int ok = 0;
    for (int i = 0; i < a->rounds; i++)
        if (eddyi_store_write(a->store, job_append_then, &ok, NULL) != EDDY_OK)
            a->failures++;
    return NULL;
}

static void test_sync_async_and_jobs_mixed(void **state)
{
    tstate *t = *state;
    enum { T = 3, R = 40 };
    pthread_t th[T + 2];
    appender a[T + 1];
    for (int i = 0; i < T; i++) {
        a[i] = (appender){t->store, i, R, 0};
        pthread_create(&th[i], NULL, append_many, &a[i]);
    }
    async_side as = {.store = t->store, .mu = PTHREAD_MUTEX_INITIALIZER,
                     .cond = PTHREAD_COND_INITIALIZER, .rounds = R};
    pthread_create(&th[T], NULL, append_async_many, &as);
    a[T] = (appender){t->store, T, R, 0};
    pthread_create(&th[T + 1], NULL, write_jobs_many, &a[T]);
    for (int i = 0; i < T + 2; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_lock(&as.mu);
    while (as.done < R)
        pthread_cond_wait(&as.cond, &as.mu);
    pthread_mutex_unlock(&as.mu);
    for (int i = 0; i <= T; i++)
        assert_int_equal(a[i].failures, 0);
    assert_int_equal(as.failures, 0);
    assert_int_equal(as.last_version, R);
    int64_t per_thread = 0;
    for (int i = 0; i < R; i++)
        per_thread += 1 + i % 3;
    int64_t total = per_thread * T + R + R;
    assert_int_equal(head_of(t->store), total);
    eddy_cursor *c = NULL;
    eddy_error err = {0};
    assert_int_equal(eddy_store_read_all(t->store, 0, 0, &c, &err), EDDY_OK);
    int64_t versions[T] = {0}, async_v = 0, jobs_v = 0, pos = 0;
    eddy_record rec;
    while (eddy_cursor_next(c, &rec, &err)) {
        assert_int_equal(rec.position, ++pos);
        if (strcmp(rec.stream_id, "async") == 0)
            assert_int_equal(rec.stream_version, ++async_v);
        else if (strcmp(rec.stream_id, "jobs") == 0)
            assert_int_equal(rec.stream_version, ++jobs_v);
        else
            assert_int_equal(rec.stream_version,
                             ++versions[atoi(rec.stream_id + strlen("thread-"))]);
    }
    assert_int_equal(err.code, EDDY_OK);
    eddy_cursor_free(c);
    assert_int_equal(pos, total);
}

/*
 * Appends that meet a known id after other writes of the same job: the
 * retry and the refused duplicate undo only themselves, never what the job
 * wrote before them, and the job goes on and commits.
 */
struct dup_job {
    eddy_event *known, *changed, *fresh, *later;
    eddy_append_result retry, mixed;
    int dup_rc;
};

static int job_writes_then_meets_known_ids(eddy_txn *txn, void *arg,
                                           eddy_error *err)
{
    struct dup_job *j = arg;
    eddy_event *first = conf_event("job.first", NULL, 0, 1);
    int rc = eddy_txn_append(txn, "other", EDDY_EXPECT_ANY, &first, 1, NULL, err);
    eddy_event_unref(first);
    if (rc != EDDY_OK)
        return rc;
    /* A retry of a stored event: succeeds, stores nothing. */
    rc = eddy_txn_append(txn, "s", EDDY_EXPECT_ANY, &j->known, 1, &j->retry, err);
    if (rc != EDDY_OK)
        return rc;
    /* Same id, other content: refused; the job takes the error and goes on. */
    eddy_error dup = {0};
    j->dup_rc = eddy_txn_append(txn, "s", EDDY_EXPECT_ANY, &j->changed, 1, NULL,
                                &dup);
    /* A known and a new event: only the new one is stored. */
    eddy_event *mixed[2] = {j->known, j->fresh};
    rc = eddy_txn_append(txn, "s", EDDY_EXPECT_ANY, mixed, 2, &j->mixed, err);
    if (rc != EDDY_OK)
        return rc;
    return eddy_txn_append(txn, "other", EDDY_EXPECT_ANY, &j->later, 1, NULL, err);
}

static void test_known_ids_inside_a_job(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    struct dup_job j = {.known = conf_event("x.a", NULL, 0, 1),
                        .fresh = conf_event("x.b", NULL, 0, 2),
                        .later = conf_event("job.later", NULL, 0, 3)};
    j.changed = conf_event("x.a", eddy_event_id(j.known), 0, 99);
    assert_int_equal(eddy_store_append(t->store, "s", EDDY_EXPECT_NO_STREAM,
                                       &j.known, 1, NULL, &err), EDDY_OK);
    assert_int_equal(eddyi_store_write(t->store, job_writes_then_meets_known_ids,
                                       &j, &err), EDDY_OK);
    assert_int_equal(j.dup_rc, EDDY_EDUPLICATE);
    assert_int_equal(j.retry.first_position, 1);
    assert_int_equal(j.retry.stream_version, 1);
    assert_int_equal(j.mixed.first_position, 3);
    assert_int_equal(j.mixed.last_position, 3);
    assert_int_equal(j.mixed.stream_version, 2);
    /* 1 known, 2 job.first, 3 x.b, 4 job.later: gap-free, nothing lost. */
    assert_int_equal(head_of(t->store), 4);
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_all(t->store, 1, 0, &c, &err), EDDY_OK);
    static const char *const types[] = {"x.a", "job.first", "x.b", "job.later"};
    eddy_record rec;
    int n = 0;
    while (eddy_cursor_next(c, &rec, &err)) {
        assert_true(n < 4);
        assert_int_equal(rec.position, n + 1);
        assert_string_equal(eddy_event_type(rec.event), types[n]);
        n++;
    }
    assert_int_equal(err.code, EDDY_OK);
    assert_int_equal(n, 4);
    eddy_cursor_free(c);
    eddy_event_unref(j.known);
    eddy_event_unref(j.changed);
    eddy_event_unref(j.fresh);
    eddy_event_unref(j.later);
}

/* ---- hooks ----------------------------------------------------------------- */

static atomic_int transformed;

static eddy_event *upcast(eddy_event *ev, void *user, eddy_error *err)
{
    (void)user;
    if (strcmp(eddy_event_type(ev), "x.broken") == 0) {
        err->code = EDDY_ESCHEMA;
        snprintf(err->message, sizeof err->message, "cannot upcast x.broken");
        return NULL;
    }
    atomic_fetch_add(&transformed, 1);
    if (strcmp(eddy_event_type(ev), "x.v1") != 0)
        return eddy_event_ref(ev);
    eddy_event_init init = {.type = "x.v2", .source = eddy_event_source(ev),
                            .id = eddy_event_id(ev), .time_us = eddy_event_time(ev)};
    return eddy_event_new(&init, err);
}

static void test_transform_hook(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    eddy_store_options o = {.transform = upcast};
    reopen(t, &o);
    eddy_event *evs[3] = {conf_event("x.v1", NULL, 0, 1), conf_event("x.v2", NULL, 0, 2),
                          conf_event("x.broken", NULL, 0, 3)};
    assert_int_equal(eddy_store_append(t->store, "h", EDDY_EXPECT_ANY, evs, 3, NULL,
                                       &err), EDDY_OK);
    eddy_cursor *c = NULL;
    eddy_record rec;
    assert_int_equal(eddy_store_read_all(t->store, 0, 0, &c, &err), EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_string_equal(eddy_event_type(rec.event), "x.v2");
    assert_string_equal(eddy_event_id(rec.event), eddy_event_id(evs[0]));
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_false(eddy_cursor_next(c, &rec, &err));
    assert_int_equal(err.code, EDDY_ESCHEMA);
    assert_int_equal(eddy_cursor_error(c), EDDY_ESCHEMA);
    assert_string_equal(err.message, "cannot upcast x.broken");
    eddy_cursor_free(c);
    assert_int_equal(atomic_load(&transformed), 2);
    unref_all(evs, 3);
}

/* ---- subscriptions and waiting --------------------------------------------- */

typedef struct sub_box {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t positions[256];
    int64_t seen_us[256];
    int n;
    int stop_after; /* 0: never */
} sub_box;

static int on_record(const eddy_record *rec, void *user)
{
    sub_box *b = user;
    pthread_mutex_lock(&b->mu);
    if (b->n < 256) {
        b->positions[b->n] = rec->position;
        b->seen_us[b->n] = eddy_now_us();
    }
    b->n++;
    int stop = b->stop_after && b->n >= b->stop_after;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    return stop ? 42 : 0;
}

static void wait_for(sub_box *b, int n)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 10;
    pthread_mutex_lock(&b->mu);
    while (b->n < n)
        if (pthread_cond_timedwait(&b->cond, &b->mu, &end) != 0)
            break;
    int got = b->n;
    pthread_mutex_unlock(&b->mu);
    if (got < n)
        fail_msg("subscription delivered %d of %d records", got, n);
}

static void append_n(eddy_store *s, const char *sid, const char *type, int n)
{
    for (int i = 0; i < n; i++) {
        eddy_event *ev = conf_event(type, NULL, 0, i);
        eddy_error err = {0};
        if (eddy_store_append(s, sid, EDDY_EXPECT_ANY, &ev, 1, NULL, &err) != EDDY_OK)
            fail_msg("append: %s", err.message);
        eddy_event_unref(ev);
    }
}

static void test_subscription(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    append_n(t->store, "s", "sub.e", 10);
    sub_box box = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    eddy_store_subscription *sub = NULL;
    /* after_position is exclusive: 4 means "from 5". */
    assert_int_equal(eddy_store_subscribe(t->store, 4, on_record, &box, NULL, &sub,
                                          &err), EDDY_OK);
    wait_for(&box, 6);
    assert_int_equal(box.positions[0], 5);
    assert_int_equal(box.positions[5], 10);
    /* Live: new appends arrive without polling delay. */
    for (int i = 0; i < 5; i++) {
        int64_t t0 = eddy_now_us();
        append_n(t->store, "s", "sub.e", 1);
        wait_for(&box, 7 + i);
        int64_t lag = box.seen_us[6 + i] - t0;
        if (lag > 300000)
            fail_msg("live delivery took %lld us", (long long)lag);
    }
    for (int i = 0; i < box.n; i++)
        assert_int_equal(box.positions[i], 5 + i);
    assert_true(eddy_store_subscription_running(sub));
    assert_int_equal(eddy_store_subscription_stop(sub, &err), EDDY_OK);
    /* Read after stop: the callback signals before it has returned. */
    assert_int_equal(eddy_store_subscription_position(sub), 15);
    assert_false(eddy_store_subscription_running(sub));
    eddy_store_subscription_free(sub);
    int n = box.n;
    append_n(t->store, "s", "sub.e", 1);
    assert_int_equal(box.n, n); /* nothing after stop */
}

static void test_subscription_filter_and_stop(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    append_n(t->store, "s", "noise", 5);
    sub_box box = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                   .stop_after = 3};
    const char *types[] = {"wanted"};
    eddy_store_subscribe_options so = {.types = types, .type_count = 1};
    eddy_store_subscription *sub = NULL;
    assert_int_equal(eddy_store_subscribe(t->store, 0, on_record, &box, &so, &sub,
                                          &err), EDDY_OK);
    append_n(t->store, "s", "noise", 3);
    append_n(t->store, "s", "wanted", 2); /* positions 9, 10 */
    append_n(t->store, "s", "noise", 2);
    append_n(t->store, "s", "wanted", 2); /* 13 stops it */
    wait_for(&box, 3);
    for (int i = 0; i < 200 && eddy_store_subscription_running(sub); i++)
        usleep(5000);
    assert_false(eddy_store_subscription_running(sub));
    assert_int_equal(box.positions[0], 9);
    assert_int_equal(box.positions[1], 10);
    assert_int_equal(box.positions[2], 13);
    assert_int_equal(box.n, 3);
    assert_int_equal(eddy_store_subscription_stop(sub, &err), 42);
    assert_non_null(strstr(err.message, "returned 42"));
    eddy_store_subscription_free(sub);
}

static void *late_append(void *arg)
{
    usleep(50000);
    append_n(arg, "w", "w.e", 1);
    return NULL;
}

static void test_wait(void **state)
{
    tstate *t = *state;
    int64_t head = -1;
    int64_t t0 = eddy_now_us();
    assert_int_equal(eddy_store_wait(t->store, 0, 100, &head), EDDY_ETIMEDOUT);
    assert_true(eddy_now_us() - t0 >= 90000);
    assert_int_equal(head, 0);
    pthread_t th;
    pthread_create(&th, NULL, late_append, t->store);
    assert_int_equal(eddy_store_wait(t->store, 0, 5000, &head), EDDY_OK);
    assert_int_equal(head, 1);
    pthread_join(th, NULL);
    assert_int_equal(eddy_store_wait(t->store, 0, 0, &head), EDDY_OK);
}

/* ---- snapshots, streams, info ---------------------------------------------- */

static void test_snapshots(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    int64_t v = 0;
    int sv = 0;
    json_t *st = NULL;
    assert_int_equal(eddy_store_snapshot_load(t->store, "agg", &v, &sv, &st, &err),
                     EDDY_ENOTFOUND);
    json_t *state1 = json_pack("{s:i}", "total", 10);
    assert_int_equal(eddy_store_snapshot_save(t->store, "agg", 1, 1, state1, &err),
                     EDDY_EINVAL); /* the stream has no version 1 yet */
    append_n(t->store, "agg", "agg.e", 3);
    assert_int_equal(eddy_store_snapshot_save(t->store, "agg", 2, 1, state1, &err),
                     EDDY_OK);
    json_t *state2 = json_pack("{s:i}", "total", 30);
    assert_int_equal(eddy_store_snapshot_save(t->store, "agg", 3, 2, state2, &err),
                     EDDY_OK);
    assert_int_equal(eddy_store_snapshot_load(t->store, "agg", &v, &sv, &st, &err),
                     EDDY_OK);
    assert_int_equal(v, 3);
    assert_int_equal(sv, 2);
    assert_true(json_equal(st, state2));
    json_decref(st);
    assert_int_equal(eddy_store_snapshot_save(t->store, "agg", 0, 1, state1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_store_snapshot_save(t->store, "agg", 1, 1, NULL, &err),
                     EDDY_EINVAL);
    json_decref(state1);
    json_decref(state2);
}

static int collect_stream(const char *sid, int64_t version, void *user)
{
    char *buf = user;
    size_t used = strlen(buf);
    snprintf(buf + used, 1024 - used, "%s=%lld;", sid, (long long)version);
    return strcmp(sid, "c") == 0 ? 7 : 0;
}

static void test_streams_and_info(void **state)
{
    tstate *t = *state;
    eddy_error err = {0};
    append_n(t->store, "b", "e", 2);
    append_n(t->store, "a", "e", 1);
    append_n(t->store, "c", "e", 3);
    append_n(t->store, "d", "e", 1);
    char buf[1024] = "";
    assert_int_equal(eddy_store_streams(t->store, NULL, 0, collect_stream, buf, &err),
                     7);
    assert_string_equal(buf, "a=1;b=2;c=3;");
    buf[0] = 0;
    assert_int_equal(eddy_store_streams(t->store, "a", 1, collect_stream, buf, &err),
                     EDDY_OK);
    assert_string_equal(buf, "b=2;");
    eddy_store_info info;
    assert_int_equal(eddy_store_info_get(t->store, &info, &err), EDDY_OK);
    assert_string_equal(info.backend, fixture->name);
    assert_int_equal(info.head, 7);
    assert_int_equal(info.event_count, 7);
    assert_int_equal(info.stream_count, 4);
    assert_int_equal(info.snapshot_count, 0);
    assert_true(info.schema_version >= 1);
    assert_true(info.file_bytes != 0);
    assert_int_equal(info.sync, EDDY_SYNC_FULL);
}

int store_conformance_run(const store_backend_fixture *fx)
{
    fixture = fx;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_read_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expected_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_known_ids_inside_a_job, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sync_async_and_jobs_mixed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transform_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_filter_and_stop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams_and_info, setup, teardown),
    };
    return _cmocka_run_group_tests(fx->name, tests, sizeof tests / sizeof tests[0],
                                   NULL, NULL);
}
