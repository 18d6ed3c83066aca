/* tests/test_event.c - the event envelope, ids and time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "eddy/eddy.h"

/* Asserts that `ev` is NULL and that `err` is EDDY_EINVAL naming `attr`
 * at the start of its message. */
#define assert_rejected(ev, err, attr)                                         \
    do {                                                                       \
        assert_null(ev);                                                       \
        assert_int_equal((err).code, EDDY_EINVAL);                             \
        if (strncmp((err).message, attr ": ", strlen(attr ": ")) != 0)         \
            fail_msg("expected a message about '%s', got \"%s\"", attr,        \
                     (err).message);                                           \
    } while (0)

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static void assert_uuid7(const char *s)
{
    assert_non_null(s);
    assert_int_equal(strlen(s), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(s[i], '-');
        else if (!is_hex(s[i]))
            fail_msg("not lower-case hex at %d: %s", i, s);
    }
    assert_int_equal(s[14], '7'); /* version */
    if (!strchr("89ab", s[19]))  /* variant 10 */
        fail_msg("bad variant in %s", s);
}

/* ---- construction and defaults ------------------------------------------- */

static void test_new_defaults(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    json_t *data = json_pack("{s:s, s:f}", "order_id", "o-1", "amount", 9.5);
    int64_t before = eddy_now_us();
    eddy_event_init init = {.type = "order.placed", .source = "orders",
                            .subject = "o-1", .data = data};
    eddy_event *ev = eddy_event_new(&init, &err);
    int64_t after = eddy_now_us();
    assert_non_null(ev);
    assert_int_equal(err.code, EDDY_OK);
    assert_uuid7(eddy_event_id(ev));
    assert_string_equal(eddy_event_type(ev), "order.placed");
    assert_string_equal(eddy_event_source(ev), "orders");
    assert_string_equal(eddy_event_subject(ev), "o-1");
    assert_string_equal(eddy_event_datacontenttype(ev), "application/json");
    assert_true(eddy_event_time(ev) >= before && eddy_event_time(ev) <= after);
    assert_null(eddy_event_dataschema(ev));
    assert_null(eddy_event_dataversion(ev));
    assert_null(eddy_event_correlation_id(ev));
    assert_null(eddy_event_causation_id(ev));
    assert_null(eddy_event_data_base64(ev));
    assert_true(json_equal((json_t *)eddy_event_data(ev), data));
    assert_non_null(eddy_event_extensions(ev));
    assert_int_equal(json_object_size(eddy_event_extensions(ev)), 0);
    assert_null(eddy_event_extension(ev, "nothing"));
    /* The event holds its own reference: dropping ours keeps the data. */
    json_decref(data);
    assert_string_equal(json_string_value(json_object_get(eddy_event_data(ev), "order_id")),
                        "o-1");
    eddy_event_unref(ev);
}

static void test_new_all_fields(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    json_t *ext = json_pack("{s:i, s:b, s:s, s:n}", "priority", 3, "urgent", 1,
                            "tenant", "acme", "ignored", NULL);
    eddy_event_init init = {
        .type = "t", .source = "https://example.com/src", .id = "id-1",
        .subject = "s", .time_us = 1522949460000000LL,
        .datacontenttype = "application/octet-stream",
        .dataschema = "urn:eddy:schema:1", .dataversion = "2.0",
        .data_base64 = "TWE=", .correlation_id = "c-1", .causation_id = "p-1",
        .extensions = ext,
    };
    eddy_event *ev = eddy_event_new(&init, &err);
    json_decref(ext);
    assert_non_null(ev);
    assert_string_equal(eddy_event_id(ev), "id-1");
    assert_int_equal(eddy_event_time(ev), 1522949460000000LL);
    assert_string_equal(eddy_event_datacontenttype(ev), "application/octet-stream");
    assert_string_equal(eddy_event_dataschema(ev), "urn:eddy:schema:1");
    assert_string_equal(eddy_event_dataversion(ev), "2.0");
    assert_string_equal(eddy_event_data_base64(ev), "TWE=");
    assert_string_equal(eddy_event_correlation_id(ev), "c-1");
    assert_string_equal(eddy_event_causation_id(ev), "p-1");
    assert_null(eddy_event_data(ev));
    assert_int_equal(json_integer_value(eddy_event_extension(ev, "priority")), 3);
    assert_true(json_is_true(eddy_event_extension(ev, "urgent")));
    assert_string_equal(json_string_value(eddy_event_extension(ev, "tenant")), "acme");
    assert_null(eddy_event_extension(ev, "ignored")); /* null counts as absent */
    assert_int_equal(json_object_size(eddy_event_extensions(ev)), 3);
    eddy_event_unref(ev);
}

static void test_ref_unref(void **state)
{
    (void)state;
    eddy_event *ev = eddy_event_newf("a.b", "src", NULL, NULL, NULL);
    assert_non_null(ev);
    assert_ptr_equal(eddy_event_ref(ev), ev);
    assert_ptr_equal(eddy_event_ref(ev), ev);
    eddy_event_unref(ev);
    eddy_event_unref(ev);
    assert_string_equal(eddy_event_type(ev), "a.b"); /* one reference left */
    assert_null(eddy_event_data(ev));
    assert_null(eddy_event_datacontenttype(ev)); /* no data, no default type */
    eddy_event_unref(ev);
    assert_null(eddy_event_ref(NULL));
    eddy_event_unref(NULL);
}

static void test_newf(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_newf("order.placed", "orders", "o-1", &err,
                                     "{s:s, s:f}", "order_id", "o-1", "amount", 9.5);
    assert_non_null(ev);
    assert_string_equal(eddy_event_subject(ev), "o-1");
    assert_true(json_is_object(eddy_event_data(ev)));
    eddy_event_unref(ev);

    /* A pack error is EDDY_EINVAL with jansson's text. */
    ev = eddy_event_newf("t", "s", NULL, &err, "{s:s", "a", "b");
    assert_rejected(ev, err, "data");
    assert_non_null(strstr(err.message, "json_pack"));
    /* A bad attribute still frees the packed data (LSan checks). */
    eddy_error_clear(&err);
    ev = eddy_event_newf("", "s", NULL, &err, "{s:i}", "a", 1);
    assert_rejected(ev, err, "type");
}

/* ---- every rejected input names its attribute ----------------------------- */

static void test_new_bad_input(void **state)
{
    (void)state;
    eddy_error err;
    eddy_event *ev;

    eddy_error_clear(&err);
    ev = eddy_event_new(NULL, &err);
    assert_null(ev);
    assert_int_equal(err.code, EDDY_EINVAL);

    /* A valid init with one field changed must be rejected naming attr. */
#define REJECT(attr, field, value)                                             \
    do {                                                                       \
        eddy_event_init in_ = {.type = "t", .source = "s"};                    \
        in_.field = value;                                                     \
        eddy_error_clear(&err);                                                \
        ev = eddy_event_new(&in_, &err);                                       \
        assert_rejected(ev, err, attr);                                        \
    } while (0)

    REJECT("type", type, NULL);
    REJECT("type", type, "");
    REJECT("type", type, "bad\xff utf8");
    REJECT("type", type, "\xc0\xaf"); /* overlong "/" */
    REJECT("source", source, NULL);
    REJECT("source", source, "");
    REJECT("source", source, "has space");
    REJECT("source", source, "tab\there");
    REJECT("id", id, "");
    REJECT("id", id, "\xed\xa0\x80"); /* a UTF-16 surrogate */
    REJECT("subject", subject, "");
    REJECT("datacontenttype", datacontenttype, "");
    REJECT("datacontenttype", datacontenttype, "xyz");
    REJECT("datacontenttype", datacontenttype, "text/");
    REJECT("datacontenttype", datacontenttype, "text/plain; charset");
    REJECT("datacontenttype", datacontenttype, "text/plain; charset=\"utf-8");
    REJECT("dataschema", dataschema, "");
    REJECT("dataschema", dataschema, "relative/path");
    REJECT("dataschema", dataschema, "1http://x");
    REJECT("dataschema", dataschema, "http://x y");
    REJECT("dataversion", dataversion, "");
    REJECT("correlationid", correlation_id, "");
    REJECT("causationid", causation_id, "");
    REJECT("data_base64", data_base64, "TWE");
    REJECT("data_base64", data_base64, "TW=E");
    REJECT("data_base64", data_base64, "T!E=");
    REJECT("time", time_us, INT64_MAX);

    json_t *data = json_string("x");
    eddy_event_init both = {.type = "t", .source = "s", .data = data,
                            .data_base64 = "TWE="};
    eddy_error_clear(&err);
    ev = eddy_event_new(&both, &err);
    assert_rejected(ev, err, "data, data_base64");
    json_decref(data);

    json_t *ext;
#define REJECT_EXT(attr, ...)                                                  \
    do {                                                                       \
        ext = json_pack(__VA_ARGS__);                                          \
        assert_non_null(ext);                                                  \
        REJECT(attr, extensions, ext);                                       \
        json_decref(ext);                                                      \
    } while (0)

    REJECT_EXT("MyExtension", "{s:s}", "MyExtension", "bad");
    REJECT_EXT("my.extension", "{s:s}", "my.extension", "bad");
    REJECT_EXT("my_ext", "{s:i}", "my_ext", 1);
    REJECT_EXT("", "{s:i}", "", 1);
    REJECT_EXT("ext", "{s:f}", "ext", 1.5);
    REJECT_EXT("ext", "{s:I}", "ext", (json_int_t)2147483648LL);
    REJECT_EXT("ext", "{s:I}", "ext", (json_int_t)-2147483649LL);
    REJECT_EXT("ext", "{s:{}}", "ext");
    REJECT_EXT("ext", "{s:[i]}", "ext", 1);
    REJECT_EXT("correlationid", "{s:s}", "correlationid", "c");
    REJECT_EXT("type", "{s:s}", "type", "t");
    REJECT_EXT("extensions", "[i]", 1);

    /* The limits of the CloudEvents Integer type are accepted. */
    ext = json_pack("{s:I, s:I, s:f}", "lo", (json_int_t)INT32_MIN, "hi",
                    (json_int_t)INT32_MAX, "two", 2.0);
    eddy_event_init ok = {.type = "t", .source = "s", .extensions = ext};
    ev = eddy_event_new(&ok, &err);
    json_decref(ext);
    assert_non_null(ev);
    assert_true(json_is_integer(eddy_event_extension(ev, "two")));
    assert_int_equal(json_integer_value(eddy_event_extension(ev, "lo")), INT32_MIN);
    eddy_event_unref(ev);

    /* err may be NULL. */
    eddy_event_init bad = {.type = "", .source = "s"};
    assert_null(eddy_event_new(&bad, NULL));
#undef REJECT_EXT
#undef REJECT
}

static void test_media_types_accepted(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "application/json", "text/plain", "application/cloudevents+json",
        "text/plain; charset=utf-8", "text/plain;charset=\"utf-8\"",
        "multipart/form-data; boundary=\"a b\"; x=y", "application/vnd.a-b.c_d+json",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        eddy_error err;
        eddy_error_clear(&err);
        eddy_event_init init = {.type = "t", .source = "s", .datacontenttype = ok[i]};
        eddy_event *ev = eddy_event_new(&init, &err);
        if (!ev)
            fail_msg("%s rejected: %s", ok[i], err.message);
        eddy_event_unref(ev);
    }
}

/* ---- ids ------------------------------------------------------------------ */

static void test_uuid7_format_and_order(void **state)
{
    (void)state;
    enum { N = 10000 };
    char (*ids)[EDDY_UUID_STRLEN] = malloc(N * sizeof *ids);
    assert_non_null(ids);
    int64_t before_ms = eddy_now_us() / 1000;
    for (int i = 0; i < N; i++)
        eddy_uuid7(ids[i]);
    for (int i = 0; i < N; i++) {
        assert_uuid7(ids[i]);
        if (i > 0 && strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("ids not strictly increasing at %d: %s then %s", i,
                     ids[i - 1], ids[i]);
    }
    /* The first 48 bits are the Unix time in milliseconds. */
    char hex[13];
    memcpy(hex, ids[0], 8);
    memcpy(hex + 8, ids[0] + 9, 4);
    hex[12] = '\0';
    int64_t ms = (int64_t)strtoll(hex, NULL, 16);
    assert_true(ms >= before_ms && ms <= before_ms + 1000);
    free(ids);
}

enum { THREADS = 4, PER_THREAD = 5000 };

static void *uuid_worker(void *arg)
{
    char (*ids)[EDDY_UUID_STRLEN] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        eddy_uuid7(ids[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

/* Ids from several threads at once: each thread's are increasing, all are
 * distinct. */
static void test_uuid7_threads(void **state)
{
    (void)state;
    char (*ids)[EDDY_UUID_STRLEN] = malloc(THREADS * PER_THREAD * sizeof *ids);
    assert_non_null(ids);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, uuid_worker, ids + t * PER_THREAD), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(strcmp(ids[t * PER_THREAD + i - 1], ids[t * PER_THREAD + i]) < 0);
    qsort(ids, THREADS * PER_THREAD, sizeof *ids, cmp_id);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate id %s", ids[i]);
    free(ids);
}

static void *unref_worker(void *arg)
{
    eddy_event *ev = arg;
    for (int i = 0; i < 1000; i++) {
        eddy_event_ref(ev);
        char *text = eddy_event_encode(ev, NULL);
        assert_non_null(text);
        free(text);
        eddy_event_unref(ev);
    }
    eddy_event_unref(ev); /* the reference the main thread gave us */
    return NULL;
}

/* One event shared by several threads that encode it and drop references. */
static void test_shared_event_threads(void **state)
{
    (void)state;
    eddy_event *ev = eddy_event_newf("t", "s", "k", NULL, "{s:[i,i,i], s:{s:s}}",
                                     "a", 1, 2, 3, "b", "c", "d");
    assert_non_null(ev);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, unref_worker, eddy_event_ref(ev)), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    assert_string_equal(eddy_event_type(ev), "t");
    eddy_event_unref(ev);
}

/* ---- time ----------------------------------------------------------------- */

static void test_time_now(void **state)
{
    (void)state;
    /* 2020-01-01 < now < 2100-01-01 */
    int64_t now = eddy_now_us();
    assert_true(now > 1577836800LL * 1000000 && now < 4102444800LL * 1000000);
}

static void expect_time(const char *text, int64_t want)
{
    int64_t got = -42;
    int rc = eddy_time_parse(text, &got);
    if (rc != EDDY_OK)
        fail_msg("\"%s\" rejected", text);
    if (got != want)
        fail_msg("\"%s\": got %lld, want %lld", text, (long long)got, (long long)want);
}

static void expect_bad_time(const char *text)
{
    int64_t got = -42;
    if (eddy_time_parse(text, &got) != EDDY_EINVAL)
        fail_msg("\"%s\" accepted as %lld", text, (long long)got);
    assert_int_equal(got, -42); /* untouched on failure */
}

static void test_time_parse(void **state)
{
    (void)state;
    const int64_t t0 = 1522949460LL * 1000000; /* 2018-04-05T17:31:00Z */
    expect_time("2018-04-05T17:31:00Z", t0);
    expect_time("2018-04-05t17:31:00z", t0);
    expect_time("2018-04-05T18:31:00+01:00", t0);
    expect_time("2018-04-05T16:31:00-01:00", t0);
    expect_time("2018-04-05T17:31:00-00:00", t0);
    expect_time("2018-04-06T03:01:00+09:30", t0);
    expect_time("2018-04-05T17:31:00.000000000Z", t0);
    expect_time("2018-04-05T17:31:00.5Z", t0 + 500000);
    expect_time("2018-04-05T17:31:00.123456Z", t0 + 123456);
    expect_time("2018-04-05T17:31:00.123456789Z", t0 + 123456); /* truncated */
    expect_time("2018-04-05T17:31:00.999999999+01:00", t0 - 3600000000LL + 999999);
    expect_time("1970-01-01T00:00:00Z", 0);
    expect_time("1969-12-31T23:59:59Z", -1000000);
    expect_time("1969-12-31T23:59:59.5Z", -500000);
    expect_time("2024-02-29T00:00:00Z", 1709164800LL * 1000000); /* leap day */
    expect_time("2000-02-29T00:00:00Z", 951782400LL * 1000000);  /* 400-year leap */
    expect_time("2016-12-31T23:59:60Z", 1483228800LL * 1000000); /* leap second */
    expect_time("2018-04-05T00:00:00+23:59", 1522886400LL * 1000000 - (23 * 60 + 59) * 60000000LL);

    expect_bad_time("lunchtime");
    expect_bad_time("");
    expect_bad_time("2018-04-05T18:31Z");          /* no seconds */
    expect_bad_time("2018-04-05T18:31:00X");
    expect_bad_time("2018-04-05T18:31:00");        /* no offset */
    expect_bad_time("2018-04-05T18:31:00+25:00");
    expect_bad_time("2018-04-05T18:31:00+24:00");
    expect_bad_time("2018-04-05T18:31:00+01:60");
    expect_bad_time("2018-04-05T18:31:00+xx:00");
    expect_bad_time("2018-04-05T18:31:00+05");
    expect_bad_time("2018-04-05T18:31:00+0500");
    expect_bad_time("2018-04-05 18:31:00Z");
    expect_bad_time("2018-04-05T18:31:00.Z");      /* empty fraction */
    expect_bad_time("2018-04-05T18:31:00Z ");      /* trailing text */
    expect_bad_time("2023-02-29T00:00:00Z");       /* not a leap year */
    expect_bad_time("1900-02-29T00:00:00Z");       /* century, not leap */
    expect_bad_time("2018-04-31T00:00:00Z");
    expect_bad_time("2018-13-01T00:00:00Z");
    expect_bad_time("2018-00-01T00:00:00Z");
    expect_bad_time("2018-04-00T00:00:00Z");
    expect_bad_time("2018-04-05T24:00:00Z");
    expect_bad_time("2018-04-05T23:60:00Z");
    expect_bad_time("2018-04-05T23:59:61Z");
    expect_bad_time("18-04-05T17:31:00Z");
    expect_bad_time("2018-4-05T17:31:00Z");
    assert_int_equal(eddy_time_parse(NULL, &(int64_t){0}), EDDY_EINVAL);
}

static void test_time_format(void **state)
{
    (void)state;
    char buf[EDDY_TIME_STRLEN];
    assert_string_equal(eddy_time_format(1522949460LL * 1000000, buf, sizeof buf),
                        "2018-04-05T17:31:00.000000Z");
    assert_string_equal(eddy_time_format(1522949460LL * 1000000 + 42, buf, sizeof buf),
                        "2018-04-05T17:31:00.000042Z");
    assert_string_equal(eddy_time_format(0, buf, sizeof buf), "1970-01-01T00:00:00.000000Z");
    assert_string_equal(eddy_time_format(-1, buf, sizeof buf), "1969-12-31T23:59:59.999999Z");
    assert_string_equal(eddy_time_format(1709164800LL * 1000000, buf, sizeof buf),
                        "2024-02-29T00:00:00.000000Z");
    assert_string_equal(eddy_time_format(253402300799LL * 1000000 + 999999, buf, sizeof buf),
                        "9999-12-31T23:59:59.999999Z");
    /* format then parse gives the same instant */
    int64_t now = eddy_now_us(), back = 0;
    assert_int_equal(eddy_time_parse(eddy_time_format(now, buf, sizeof buf), &back), EDDY_OK);
    assert_int_equal(back, now);
}

/* ---- data and equality ---------------------------------------------------- */

static void test_unpack(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_newf("order.placed", "orders", "o-1", &err,
                                     "{s:s, s:f}", "order_id", "o-1", "amount", 9.5);
    assert_non_null(ev);
    const char *order_id = NULL;
    double amount = 0;
    assert_int_equal(eddy_event_unpack(ev, &err, "{s:s, s:F}", "order_id", &order_id,
                                       "amount", &amount), EDDY_OK);
    assert_string_equal(order_id, "o-1");
    assert_true(amount == 9.5);

    int missing = 0;
    assert_int_equal(eddy_event_unpack(ev, &err, "{s:i}", "quantity", &missing), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "quantity"));
    assert_int_equal(strncmp(err.message, "data: ", 6), 0);
    eddy_event_unref(ev);

    eddy_error_clear(&err);
    ev = eddy_event_newf("t", "s", NULL, NULL, NULL);
    assert_int_equal(eddy_event_unpack(ev, &err, "{s:s}", "a", &order_id), EDDY_EINVAL);
    assert_int_equal(strncmp(err.message, "data: ", 6), 0);
    eddy_event_unref(ev);
}

static void test_equal(void **state)
{
    (void)state;
    json_t *d1 = json_pack("{s:i}", "n", 1);
    json_t *d2 = json_pack("{s:i}", "n", 1);
    json_t *d3 = json_pack("{s:i}", "n", 2);
    json_t *x1 = json_pack("{s:s}", "tenant", "a");
    json_t *x2 = json_pack("{s:s}", "tenant", "b");
    eddy_event_init base = {.type = "t", .source = "s", .id = "1", .time_us = 5,
                            .data = d1, .extensions = x1};
    eddy_event *a = eddy_event_new(&base, NULL);
    eddy_event_init same = base;
    same.data = d2;
    eddy_event *b = eddy_event_new(&same, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(eddy_event_equal(a, b));
    assert_true(eddy_event_equal(a, a));
    assert_false(eddy_event_equal(a, NULL));
    assert_true(eddy_event_equal(NULL, NULL));

    eddy_event_init v[6];
    for (int i = 0; i < 6; i++)
        v[i] = base;
    v[0].id = "2";
    v[1].data = d3;
    v[2].extensions = x2;
    v[3].time_us = 6;
    v[4].subject = "k";
    v[5].correlation_id = "c";
    for (int i = 0; i < 6; i++) {
        eddy_event *c = eddy_event_new(&v[i], NULL);
        assert_non_null(c);
        if (eddy_event_equal(a, c))
            fail_msg("variant %d compares equal", i);
        eddy_event_unref(c);
    }
    eddy_event_unref(a);
    eddy_event_unref(b);
    json_decref(d1);
    json_decref(d2);
    json_decref(d3);
    json_decref(x1);
    json_decref(x2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_defaults),
        cmocka_unit_test(test_new_all_fields),
        cmocka_unit_test(test_ref_unref),
        cmocka_unit_test(test_newf),
        cmocka_unit_test(test_new_bad_input),
        cmocka_unit_test(test_media_types_accepted),
        cmocka_unit_test(test_uuid7_format_and_order),
        cmocka_unit_test(test_uuid7_threads),
        cmocka_unit_test(test_shared_event_threads),
        cmocka_unit_test(test_time_now),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_unpack),
        cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
