/*
 * tests/test_outbox.c - the transactional outbox and its relay: append and
 * queue in one transaction (all or nothing, idempotent retry), in-order
 * at-least-once publishing to a recording publisher, live wake-up on commit,
 * a failing publisher retried without skipping ahead and never dropped past
 * its retry policy, the bus publisher, destination filters, marking on
 * stop, cleanup, bad arguments, reads on a store opened read-only.
 * The crash test (SIGKILL of a relay process) is tests/test_outbox_crash.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "eddy/outbox.h"

static char tmpdir[] = "/tmp/eddy-outbox-test-XXXXXX";
static int counter;
static char db_path[600];

/* Opens a new store file (no fsync: these tests do not cut the power). */
static eddy_store *new_store(void)
{
    snprintf(db_path, sizeof db_path, "%s/outbox-%d.db", tmpdir, counter++);
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(db_path, &o, &err);
    if (!s)
        fail_msg("open %s: %s", db_path, err.message);
    return s;
}

/* A figure of the store's outbox table, read on a reader connection. */
static int64_t raw_int(eddy_store *s, const char *sql)
{
    int64_t v = 0;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &v, &err, sql, NULL) != EDDY_OK)
        fail_msg("%s: %s", sql, err.message);
    return v;
}

static eddy_event **make_events(const char *subject, size_t n)
{
    eddy_event **evs = calloc(n, sizeof *evs);
    assert_non_null(evs);
    eddy_error err = {0};
    for (size_t i = 0; i < n; i++) {
        evs[i] = eddy_event_newf("order.placed", "outbox-test", subject, &err,
                                 "{s:s, s:i}", "order_id", subject, "n", (int)i);
        assert_non_null(evs[i]);
    }
    return evs;
}

static int64_t pending(eddy_store *s, const char *destination)
{
    int64_t n = -1;
    eddy_error err = {0};
    int rc = eddy_outbox_pending(s, destination, &n, &err);
    if (rc != EDDY_OK)
        fail_msg("pending: %s", err.message);
    return n;
}

/* ---- a recording publisher -------------------------------------------------- */

typedef struct recorder {
    pthread_mutex_t mu;
    char **ids;
    char **destinations;
    size_t n, cap;
    /* Failure injection: fail the first `fail_times` calls for `fail_id`,
     * and every call while `fail_all` is set. */
    char fail_id[EDDY_UUID_STRLEN];
    int fail_times;
    int failed;
    atomic_bool fail_all;
    atomic_int calls;
    atomic_int closed;
} recorder;

static int rec_publish(void *self, const eddy_event *ev,
                       const char *destination, eddy_error *err)
{
    recorder *r = self;
    atomic_fetch_add(&r->calls, 1);
    pthread_mutex_lock(&r->mu);
    if (atomic_load(&r->fail_all) ||
        (r->failed < r->fail_times && strcmp(r->fail_id, eddy_event_id(ev)) == 0)) {
        r->failed++;
        pthread_mutex_unlock(&r->mu);
        if (err) {
            err->code = EDDY_ECONNECT;
            snprintf(err->message, sizeof err->message, "broker unreachable");
        }
        return EDDY_ECONNECT;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->ids = realloc(r->ids, r->cap * sizeof *r->ids);
        r->destinations = realloc(r->destinations, r->cap * sizeof *r->destinations);
        assert_non_null(r->ids);
        assert_non_null(r->destinations);
    }
    r->ids[r->n] = strdup(eddy_event_id(ev));
    r->destinations[r->n] = strdup(destination);
    r->n++;
    pthread_mutex_unlock(&r->mu);
    return EDDY_OK;
}

static void rec_close(void *self)
{
    recorder *r = self;
    atomic_fetch_add(&r->closed, 1);
}

static void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static void rec_fini(recorder *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ids[i]);
        free(r->destinations[i]);
    }
    free(r->ids);
    free(r->destinations);
    pthread_mutex_destroy(&r->mu);
}

static size_t rec_count(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static eddy_publisher rec_publisher(recorder *r)
{
    eddy_publisher p = {.publish = rec_publish, .close = rec_close, .self = r};
    return p;
}

/* Waits until the recorder holds `n` events; returns the milliseconds it
 * took, or fails the test after 20 s. */
static int64_t wait_recorded(recorder *r, size_t n)
{
    int64_t t0 = eddy_now_us();
    while (rec_count(r) < n) {
        if (eddy_now_us() - t0 > 20 * 1000000LL)
            fail_msg("timed out: %zu of %zu events published", rec_count(r), n);
        usleep(1000);
    }
    return (eddy_now_us() - t0) / 1000;
}

/* Checks that the recorder holds exactly `evs` in this order. */
static void assert_published(recorder *r, size_t from, eddy_event **evs,
                             size_t n)
{
    pthread_mutex_lock(&r->mu);
    assert_true(r->n >= from + n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(r->ids[from + i], eddy_event_id(evs[i]));
    pthread_mutex_unlock(&r->mu);
}

/* ---- tests ------------------------------------------------------------------ */

/* Appended batches are published once each, in queue order, then marked. */
static void test_in_order(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_event **a = make_events("order-a", 40);
    eddy_event **b = make_events("order-b", 25);
    eddy_append_result res;
    assert_int_equal(eddy_outbox_append(s, "order-a", EDDY_EXPECT_NO_STREAM, a,
                                        20, "orders", &res, &err), EDDY_OK);
    assert_int_equal(res.first_position, 1);
    assert_int_equal(res.last_position, 20);
    assert_int_equal(eddy_outbox_append(s, "order-b", EDDY_EXPECT_ANY, b, 25,
                                        "orders", NULL, &err), EDDY_OK);
    assert_int_equal(eddy_outbox_append(s, "order-a", 20, a + 20, 20, "orders",
                                        NULL, &err), EDDY_OK);
    assert_int_equal(pending(s, NULL), 65);
    assert_int_equal(pending(s, "orders"), 65);
    assert_int_equal(pending(s, "elsewhere"), 0);
    /* The queue holds each event's store position. */
    assert_int_equal(raw_int(s, "SELECT count(*) FROM eddy_outbox o "
                                "JOIN events e ON e.id = o.event_id "
                                "AND e.position = o.position "
                                "AND e.payload = o.payload"),
                     65);

    recorder rec;
    rec_init(&rec);
    eddy_publisher pub = rec_publisher(&rec);
    /* Small pages and batches so that paging and batching both happen. */
    eddy_outbox_relay_options o = {.page_rows = 7, .mark_batch = 5};
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    wait_recorded(&rec, 65);
    assert_published(&rec, 0, a, 20);
    assert_published(&rec, 20, b, 25);
    assert_published(&rec, 45, a + 20, 20);
    for (size_t i = 0; i < 65; i++)
        assert_string_equal(rec.destinations[i], "orders");

    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    eddy_outbox_relay_stats st;
    eddy_outbox_relay_stats_get(relay, &st);
    assert_int_equal(st.published, 65);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.marked, 65);
    assert_int_equal(pending(s, NULL), 0);
    assert_int_equal(rec_count(&rec), 65); /* at-least-once, and no more here */
    assert_int_equal(raw_int(s, "SELECT count(*) FROM eddy_outbox WHERE "
                                "sent_us IS NOT NULL AND attempts = 1"),
                     65);
    eddy_outbox_relay_free(relay);
    assert_int_equal(atomic_load(&rec.closed), 1);

    /* A new relay finds nothing to publish. */
    recorder rec2;
    rec_init(&rec2);
    pub = rec_publisher(&rec2);
    relay = eddy_outbox_relay_start(s, &pub, NULL, &err);
    assert_non_null(relay);
    usleep(100 * 1000);
    eddy_outbox_relay_free(relay);
    assert_int_equal(rec_count(&rec2), 0);
    rec_fini(&rec2);

    rec_fini(&rec);
    eddy_event_array_free(a, 40);
    eddy_event_array_free(b, 25);
    eddy_store_close(s);
}

/* A running relay is woken by the commit, not by a timer: rows queued while
 * it idles are published long before its one-second fallback re-read. */
static void test_live_wakeup(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    recorder rec;
    rec_init(&rec);
    eddy_publisher pub = rec_publisher(&rec);
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, NULL, &err);
    assert_non_null(relay);
    usleep(50 * 1000); /* let it go idle */
    eddy_event **evs = make_events("live-1", 10);
    int64_t worst_ms = 0;
    for (size_t i = 0; i < 10; i++) {
        usleep(20 * 1000);
        assert_int_equal(eddy_outbox_append(s, "live-1", EDDY_EXPECT_ANY,
                                            evs + i, 1, "live", NULL, &err),
                         EDDY_OK);
        int64_t ms = wait_recorded(&rec, i + 1);
        if (ms > worst_ms)
            worst_ms = ms;
    }
    print_message("live wake-up: worst %lld ms from commit to publish\n",
                  (long long)worst_ms);
    assert_true(worst_ms < 500);
    assert_published(&rec, 0, evs, 10);
    eddy_outbox_relay_free(relay);
    assert_int_equal(pending(s, NULL), 0);
    rec_fini(&rec);
    eddy_event_array_free(evs, 10);
    eddy_store_close(s);
}

/* A failed append stores and queues nothing; a retried one queues nothing
 * twice; bad destinations are refused. */
static void test_atomic_and_idempotent(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_event **evs = make_events("acct-1", 4);
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_NO_STREAM, evs,
                                        2, "ledger", NULL, &err), EDDY_OK);
    /* Version conflict: neither the events nor their queue rows. */
    eddy_error_clear(&err);
    assert_int_equal(eddy_outbox_append(s, "acct-1", 5, evs + 2, 2, "ledger",
                                        NULL, &err), EDDY_ECONFLICT);
    assert_non_null(strstr(err.message, "acct-1"));
    int64_t head = -1;
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_int_equal(head, 2);
    assert_int_equal(pending(s, NULL), 2);
    /* Retrying the first append (lost acknowledgement): same result, no new
     * rows. */
    eddy_append_result res = {0};
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_NO_STREAM, evs,
                                        2, "ledger", &res, &err), EDDY_OK);
    assert_int_equal(res.first_position, 1);
    assert_int_equal(res.last_position, 2);
    assert_int_equal(pending(s, NULL), 2);
    /* The same events for a second destination are queued for it too. */
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_ANY, evs, 2,
                                        "audit", NULL, &err), EDDY_OK);
    assert_int_equal(pending(s, "audit"), 2);
    assert_int_equal(pending(s, "ledger"), 2);
    assert_int_equal(pending(s, NULL), 4);

    eddy_error_clear(&err);
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_ANY, evs + 2,
                                        2, "", NULL, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "destination"));
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_ANY, evs + 2,
                                        2, NULL, NULL, &err), EDDY_EINVAL);
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_ANY, evs + 2,
                                        2, "bad\xff", NULL, &err), EDDY_EINVAL);
    assert_int_equal(eddy_outbox_append(s, "", EDDY_EXPECT_ANY, evs + 2, 2,
                                        "ledger", NULL, &err), EDDY_EINVAL);
    assert_int_equal(eddy_outbox_append(s, "acct-1", EDDY_EXPECT_ANY, evs, 0,
                                        "ledger", NULL, &err), EDDY_EINVAL);
    assert_int_equal(eddy_outbox_append(NULL, "acct-1", EDDY_EXPECT_ANY, evs, 1,
                                        "ledger", NULL, &err), EDDY_EINVAL);
    assert_int_equal(pending(s, NULL), 4);
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_int_equal(head, 2);
    eddy_event_array_free(evs, 4);
    eddy_store_close(s);
}

/* A publisher that fails: the relay retries the same event with backoff,
 * publishes nothing after it until it succeeds, counts the attempts. */
static void test_failing_publisher(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_event **evs = make_events("pay-1", 30);
    assert_int_equal(eddy_outbox_append(s, "pay-1", EDDY_EXPECT_ANY, evs, 30,
                                        "payments", NULL, &err), EDDY_OK);
    recorder rec;
    rec_init(&rec);
    snprintf(rec.fail_id, sizeof rec.fail_id, "%s", eddy_event_id(evs[10]));
    rec.fail_times = 4;
    eddy_publisher pub = rec_publisher(&rec);
    eddy_outbox_relay_options o = {
        .retry = {.initial_delay_ms = 10, .max_delay_ms = 40, .jitter = -1},
        .mark_batch = 1000};
    int64_t t0 = eddy_now_us();
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    wait_recorded(&rec, 30);
    int64_t ms = (eddy_now_us() - t0) / 1000;
    assert_published(&rec, 0, evs, 30); /* in order, no skipping ahead */
    /* Backoff 10 + 20 + 40 + 40 ms before the fifth attempt succeeded. */
    assert_true(ms >= 110);
    eddy_outbox_relay_stats st;
    eddy_outbox_relay_stats_get(relay, &st);
    assert_int_equal(st.failures, 4);
    assert_int_equal(st.published, 30);
    assert_int_equal(atomic_load(&rec.calls), 34);
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    assert_int_equal(pending(s, NULL), 0);
    /* The rows before the failing one were marked while it failed. */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT attempts FROM eddy_outbox WHERE "
             "event_id = '%s'", eddy_event_id(evs[10]));
    assert_int_equal(raw_int(s, sql), 5);
    assert_int_equal(raw_int(s, "SELECT sum(attempts) FROM eddy_outbox"), 34);
    eddy_outbox_relay_free(relay);
    rec_fini(&rec);

    /* Stopping while every publish fails returns at once: nothing is
     * marked, every row stays queued. */
    eddy_event **more = make_events("pay-2", 3);
    assert_int_equal(eddy_outbox_append(s, "pay-2", EDDY_EXPECT_ANY, more, 3,
                                        "payments", NULL, &err), EDDY_OK);
    rec_init(&rec);
    atomic_store(&rec.fail_all, true);
    pub = rec_publisher(&rec);
    o.retry.initial_delay_ms = 5000;
    o.retry.max_delay_ms = 5000;
    relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    while (atomic_load(&rec.calls) < 1)
        usleep(1000);
    t0 = eddy_now_us();
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    assert_true(eddy_now_us() - t0 < 2000 * 1000LL);
    eddy_outbox_relay_free(relay);
    assert_int_equal(rec_count(&rec), 0);
    assert_int_equal(pending(s, "payments"), 3);
    rec_fini(&rec);

    eddy_event_array_free(more, 3);
    eddy_event_array_free(evs, 30);
    eddy_store_close(s);
}

/* Past the retry policy the relay does not drop the row: it reports it
 * (stats.stalled_seq) and keeps retrying it at the policy's max delay; the
 * rows behind it wait, then everything goes out in order. */
static void test_never_drops_past_the_policy(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_event **evs = make_events("pay-9", 5);
    assert_int_equal(eddy_outbox_append(s, "pay-9", EDDY_EXPECT_ANY, evs, 5,
                                        "payments", NULL, &err), EDDY_OK);
    recorder rec;
    rec_init(&rec);
    atomic_store(&rec.fail_all, true);
    eddy_publisher pub = rec_publisher(&rec);
    eddy_outbox_relay_options o = {
        .retry = {.max_attempts = 2, .initial_delay_ms = 5,
                  .max_delay_ms = 20, .jitter = -1}};
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    eddy_outbox_relay_stats st = {0};
    int64_t t0 = eddy_now_us();
    while (st.stalled_seq == 0 || st.failures < 6) {
        if (eddy_now_us() - t0 > 20 * 1000000LL)
            fail_msg("the relay did not report the stalled row");
        usleep(1000);
        eddy_outbox_relay_stats_get(relay, &st);
    }
    /* Still retried well past max_attempts, nothing published or lost. */
    assert_int_equal(st.published, 0);
    assert_int_equal(rec_count(&rec), 0);
    assert_int_equal(pending(s, "payments"), 5);
    int64_t first_seq = st.stalled_seq;
    assert_true(first_seq > 0);

    atomic_store(&rec.fail_all, false);
    wait_recorded(&rec, 5);
    assert_published(&rec, 0, evs, 5);
    eddy_outbox_relay_stats_get(relay, &st);
    assert_int_equal(st.stalled_seq, 0);
    assert_int_equal(st.published, 5);
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    assert_int_equal(pending(s, NULL), 0);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT attempts FROM eddy_outbox WHERE "
             "seq = %lld", (long long)first_seq);
    assert_true(raw_int(s, sql) >= 7); /* 6+ failures, 1 success */
    eddy_outbox_relay_free(relay);
    rec_fini(&rec);
    eddy_event_array_free(evs, 5);
    eddy_store_close(s);
}

/* ---- the bus publisher ------------------------------------------------------- */

typedef struct bus_seen {
    pthread_mutex_t mu;
    char ids[64][EDDY_UUID_STRLEN];
    size_t n;
} bus_seen;

static int on_bus_event(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    bus_seen *b = user;
    pthread_mutex_lock(&b->mu);
    if (b->n < 64)
        snprintf(b->ids[b->n++], EDDY_UUID_STRLEN, "%s", eddy_event_id(ev));
    pthread_mutex_unlock(&b->mu);
    return EDDY_OK;
}

static void test_bus_publisher(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_bus *bus = eddy_bus_new(NULL, &err);
    assert_non_null(bus);
    bus_seen seen = {.n = 0};
    pthread_mutex_init(&seen.mu, NULL);
    assert_int_equal(eddy_bus_subscribe(bus, "order.*", "downstream",
                                        on_bus_event, &seen, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_bus_start(bus), EDDY_OK);
    eddy_event **evs = make_events("order-7", 12);
    assert_int_equal(eddy_outbox_append(s, "order-7", EDDY_EXPECT_ANY, evs, 12,
                                        "bus", NULL, &err), EDDY_OK);
    eddy_publisher pub = eddy_publisher_bus(bus);
    assert_null(pub.close);
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, NULL, &err);
    assert_non_null(relay);
    int64_t t0 = eddy_now_us();
    for (;;) {
        pthread_mutex_lock(&seen.mu);
        size_t n = seen.n;
        pthread_mutex_unlock(&seen.mu);
        if (n == 12)
            break;
        if (eddy_now_us() - t0 > 20 * 1000000LL)
            fail_msg("bus handler saw %zu of 12 events", n);
        usleep(1000);
    }
    eddy_outbox_relay_free(relay);
    /* One subject: one worker, publish order. */
    for (size_t i = 0; i < 12; i++)
        assert_string_equal(seen.ids[i], eddy_event_id(evs[i]));
    assert_int_equal(pending(s, NULL), 0);

    /* A stopped bus refuses events: the relay keeps them queued. */
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    eddy_event **more = make_events("order-8", 2);
    assert_int_equal(eddy_outbox_append(s, "order-8", EDDY_EXPECT_ANY, more, 2,
                                        "bus", NULL, &err), EDDY_OK);
    eddy_outbox_relay_options o = {.retry = {.initial_delay_ms = 5}};
    relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    eddy_outbox_relay_stats st = {0};
    while (st.failures < 2) {
        usleep(1000);
        eddy_outbox_relay_stats_get(relay, &st);
    }
    eddy_outbox_relay_free(relay);
    assert_int_equal(st.published, 0);
    assert_int_equal(pending(s, NULL), 2);

    eddy_event_array_free(more, 2);
    eddy_event_array_free(evs, 12);
    eddy_bus_free(bus);
    pthread_mutex_destroy(&seen.mu);
    eddy_store_close(s);
}

/* One relay per destination: each publishes its own rows only. */
static void test_destination_filter(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_event **evs = make_events("mixed", 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(eddy_outbox_append(s, "mixed", EDDY_EXPECT_ANY, evs + i,
                                            1, i % 2 ? "odd" : "even", NULL,
                                            &err), EDDY_OK);
    recorder rec;
    rec_init(&rec);
    eddy_publisher pub = rec_publisher(&rec);
    eddy_outbox_relay_options o = {.destination = "odd", .page_rows = 2};
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    wait_recorded(&rec, 5);
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    eddy_outbox_relay_free(relay);
    assert_int_equal(rec_count(&rec), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(rec.ids[i], eddy_event_id(evs[2 * i + 1]));
        assert_string_equal(rec.destinations[i], "odd");
    }
    assert_int_equal(pending(s, "odd"), 0);
    assert_int_equal(pending(s, "even"), 5);
    rec_fini(&rec);
    eddy_event_array_free(evs, 10);
    eddy_store_close(s);
}

/* Rows published but not yet marked are marked when the relay stops; sent
 * rows are cleaned up by age, unsent ones never. */
static void test_stop_marks_and_cleanup(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    eddy_event **evs = make_events("c-1", 6);
    assert_int_equal(eddy_outbox_append(s, "c-1", EDDY_EXPECT_ANY, evs, 4,
                                        "x", NULL, &err), EDDY_OK);
    recorder rec;
    rec_init(&rec);
    eddy_publisher pub = rec_publisher(&rec);
    eddy_outbox_relay_options o = {.mark_batch = 100};
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    wait_recorded(&rec, 4);
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK); /* again */
    eddy_outbox_relay_free(relay);
    assert_int_equal(pending(s, NULL), 0);

    assert_int_equal(eddy_outbox_append(s, "c-1", EDDY_EXPECT_ANY, evs + 4, 2,
                                        "x", NULL, &err), EDDY_OK);
    int64_t deleted = -1;
    assert_int_equal(eddy_outbox_cleanup(s, eddy_now_us() + 1, &deleted, &err),
                     EDDY_OK);
    assert_int_equal(deleted, 4);
    assert_int_equal(pending(s, NULL), 2);
    assert_int_equal(raw_int(s, "SELECT count(*) FROM eddy_outbox"), 2);
    assert_int_equal(eddy_outbox_cleanup(s, 0, &deleted, &err), EDDY_EINVAL);

    /* The relay's own cleanup, and seq never reused after a deletion: the
     * two remaining rows are published, then everything sent is removed. */
    o.cleanup_after_ms = 1;
    relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    wait_recorded(&rec, 6);
    assert_published(&rec, 4, evs + 4, 2);
    int64_t t0 = eddy_now_us();
    while (raw_int(s, "SELECT count(*) FROM eddy_outbox") != 0) {
        if (eddy_now_us() - t0 > 10 * 1000000LL)
            fail_msg("the relay did not clean up sent rows");
        /* The relay cleans up at most once a second. */
        usleep(100 * 1000);
    }
    eddy_outbox_relay_free(relay);
    rec_fini(&rec);
    eddy_event_array_free(evs, 6);
    eddy_store_close(s);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    recorder rec;
    rec_init(&rec);
    eddy_publisher pub = rec_publisher(&rec);
    eddy_publisher none = {0};
    assert_null(eddy_outbox_relay_start(s, &none, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_outbox_relay_start(NULL, &pub, NULL, &err));
    assert_null(eddy_outbox_relay_start(s, NULL, NULL, &err));
    eddy_outbox_relay_options o = {.retry = {.multiplier = 0.5}};
    assert_null(eddy_outbox_relay_start(s, &pub, &o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "multiplier"));
    o = (eddy_outbox_relay_options){
        .retry = {.initial_delay_ms = 500, .max_delay_ms = 100}};
    assert_null(eddy_outbox_relay_start(s, &pub, &o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    o = (eddy_outbox_relay_options){.cleanup_after_ms = -1};
    assert_null(eddy_outbox_relay_start(s, &pub, &o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    o = (eddy_outbox_relay_options){.destination = ""};
    assert_null(eddy_outbox_relay_start(s, &pub, &o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    int64_t n;
    assert_int_equal(eddy_outbox_pending(s, NULL, NULL, &err), EDDY_EINVAL);
    assert_int_equal(eddy_outbox_pending(NULL, NULL, &n, &err), EDDY_EINVAL);
    eddy_event **evs = make_events("ro-1", 2);
    assert_int_equal(eddy_outbox_append(s, "ro-1", EDDY_EXPECT_ANY, evs, 2,
                                        "crm", NULL, &err), EDDY_OK);
    eddy_event_array_free(evs, 2);
    eddy_store_close(s);

    /* A read-only store cannot run a relay; the publisher is not closed.
     * Counting what is queued only reads: it works there. */
    eddy_store_options ro = {.read_only = true};
    s = eddyt_store_open(db_path, &ro, &err);
    assert_non_null(s);
    assert_int_equal(pending(s, NULL), 2);
    assert_int_equal(pending(s, "crm"), 2);
    assert_int_equal(pending(s, "elsewhere"), 0);
    eddy_error_clear(&err);
    assert_null(eddy_outbox_relay_start(s, &pub, NULL, &err));
    assert_int_equal(err.code, EDDY_ESTATE);
    assert_int_equal(atomic_load(&rec.closed), 0);
    eddy_store_close(s);
    eddy_outbox_relay_free(NULL);
    rec_fini(&rec);
}

/* Several producers at once: every event published exactly once (no crash),
 * and each stream's events in its append order. */
typedef struct producer_arg {
    eddy_store *s;
    char stream[32];
    eddy_event **evs;
    size_t n;
} producer_arg;

static void *producer(void *arg)
{
    producer_arg *p = arg;
    for (size_t i = 0; i < p->n; i += 5) {
        eddy_error err = {0};
        int rc = eddy_outbox_append(p->s, p->stream, EDDY_EXPECT_ANY, p->evs + i,
                                    5, "fanout", NULL, &err);
        if (rc != EDDY_OK)
            fprintf(stderr, "producer %s: %s\n", p->stream, err.message);
    }
    return NULL;
}

static void test_concurrent_producers(void **state)
{
    (void)state;
    eddy_store *s = new_store();
    eddy_error err = {0};
    recorder rec;
    rec_init(&rec);
    eddy_publisher pub = rec_publisher(&rec);
    eddy_outbox_relay_options o = {.page_rows = 16, .mark_batch = 8};
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    assert_non_null(relay);
    enum { P = 4, N = 100 };
    producer_arg args[P];
    pthread_t th[P];
    for (int i = 0; i < P; i++) {
        args[i].s = s;
        snprintf(args[i].stream, sizeof args[i].stream, "stream-%d", i);
        args[i].evs = make_events(args[i].stream, N);
        args[i].n = N;
        assert_int_equal(pthread_create(&th[i], NULL, producer, &args[i]), 0);
    }
    for (int i = 0; i < P; i++)
        pthread_join(th[i], NULL);
    wait_recorded(&rec, P * N);
    assert_int_equal(eddy_outbox_relay_stop(relay, &err), EDDY_OK);
    eddy_outbox_relay_free(relay);
    assert_int_equal(rec_count(&rec), P * N);
    /* Per stream, the publish order is the append order. */
    for (int i = 0; i < P; i++) {
        size_t next = 0;
        for (size_t k = 0; k < rec.n; k++) {
            if (next < N && strcmp(rec.ids[k], eddy_event_id(args[i].evs[next])) == 0)
                next++;
        }
        assert_int_equal(next, N);
        eddy_event_array_free(args[i].evs, N);
    }
    /* Queue order is commit order: positions ascend with seq. */
    assert_int_equal(raw_int(s, "SELECT count(*) FROM eddy_outbox a "
                                "JOIN eddy_outbox b ON b.seq = a.seq + 1 "
                                "WHERE b.position < a.position"),
                     0);
    assert_int_equal(pending(s, NULL), 0);
    rec_fini(&rec);
    eddy_store_close(s);
}

static int setup_dir(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_live_wakeup),
        cmocka_unit_test(test_atomic_and_idempotent),
        cmocka_unit_test(test_failing_publisher),
        cmocka_unit_test(test_never_drops_past_the_policy),
        cmocka_unit_test(test_bus_publisher),
        cmocka_unit_test(test_destination_filter),
        cmocka_unit_test(test_stop_marks_and_cleanup),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_concurrent_producers),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
