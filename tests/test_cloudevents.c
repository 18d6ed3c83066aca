/*
 * tests/test_cloudevents.c - the CloudEvents JSON codec, against eddy's own
 * conformance vectors (tests/data/cloudevents: every rule of the core spec
 * and of the JSON event format, each test naming its rule), against the
 * CloudEvents project's conformance suite when it is present beside the
 * repository (EDDY_TESTDATA_DIR, an extra: never required), and our own
 * cases of the limits every decoder applies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eddy/eddy.h"

/* eddy's own vectors, in the repository. */
#define OWN_DIR EDDY_TEST_DATA_DIR "/cloudevents"
/* The CloudEvents project's vectors, used only when present. */
#define UPSTREAM_DIR EDDY_TESTDATA_DIR "/cloudevents/conformance/format/json"

/* ---- helpers -------------------------------------------------------------- */

/* Decodes `text` and checks the failure: EDDY_EINVAL naming `attr`. */
static void expect_reject(const char *text, const char *attr, const char *message)
{
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_decode(text, strlen(text), &err);
    if (ev) {
        eddy_event_unref(ev);
        fail_msg("accepted: %s", text);
    }
    assert_int_equal(err.code, EDDY_EINVAL);
    size_t n = strlen(attr);
    if (strncmp(err.message, attr, n) != 0 || strncmp(err.message + n, ": ", 2) != 0)
        fail_msg("expected a message about '%s', got \"%s\"", attr, err.message);
    if (message && strcmp(err.message, message) != 0)
        fail_msg("expected \"%s\", got \"%s\"", message, err.message);
}

static eddy_event *decode_ok(const char *text)
{
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_decode(text, strlen(text), &err);
    if (!ev)
        fail_msg("rejected (%s): %s", err.message, text);
    return ev;
}

/* decode(encode(ev)) is equal to ev, and so is from_json(to_json(ev)). */
static int round_trips(const eddy_event *ev, char *why, size_t why_size)
{
    size_t len = 0;
    char *text = eddy_event_encode(ev, &len);
    if (!text || len != strlen(text)) {
        snprintf(why, why_size, "encode failed");
        free(text);
        return 0;
    }
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *back = eddy_event_decode(text, len, &err);
    int ok = back && eddy_event_equal(ev, back);
    if (!ok)
        snprintf(why, why_size, "round trip of %s: %s", text,
                 back ? "not equal" : err.message);
    eddy_event_unref(back);
    free(text);
    if (!ok)
        return 0;
    json_t *obj = eddy_event_to_json(ev);
    back = obj ? eddy_event_from_json(obj, &err) : NULL;
    ok = back && eddy_event_equal(ev, back);
    if (!ok)
        snprintf(why, why_size, "to_json/from_json round trip: %s",
                 back ? "not equal" : err.message);
    eddy_event_unref(back);
    json_decref(obj);
    return ok;
}

/*
 * True when `message` starts with "NAME: " where NAME is an attribute of
 * `event` (a member it has) or a required one it lacks, or the fixed
 * prefixes for a non-object and for data/data_base64. That is what "the
 * message names the attribute" means.
 */
static int names_attribute(const char *message, const json_t *event)
{
    const char *colon = strstr(message, ": ");
    if (!colon || colon == message)
        return 0;
    size_t n = (size_t)(colon - message);
    char name[128];
    if (n >= sizeof name)
        return 0;
    memcpy(name, message, n);
    name[n] = '\0';
    static const char *const fixed[] = {"specversion", "id", "type", "source",
                                        "data, data_base64", "event", NULL};
    for (size_t i = 0; fixed[i]; i++)
        if (strcmp(fixed[i], name) == 0)
            return 1;
    return json_is_object(event) && json_object_get(event, name) != NULL;
}

/* ---- the conformance suite ------------------------------------------------- */

/* The raw text of a test that gives one ("text", or "text_base64" for bytes
 * a JSON string cannot hold, such as invalid UTF-8), malloc'd with its
 * length; NULL when the test gives a JSON value instead. */
static char *raw_text(const json_t *tc, size_t *len)
{
    const json_t *t = json_object_get(tc, "text");
    if (json_is_string(t)) {
        *len = json_string_length(t);
        char *copy = malloc(*len + 1);
        assert_non_null(copy);
        memcpy(copy, json_string_value(t), *len + 1);
        return copy;
    }
    const json_t *b = json_object_get(tc, "text_base64");
    if (!json_is_string(b))
        return NULL;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *in = json_string_value(b);
    size_t n = strlen(in), o = 0;
    char *out = malloc(n + 1);
    assert_non_null(out);
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && in[i] != '='; i++) {
        const char *pos = strchr(alphabet, in[i]);
        assert_non_null(pos);
        acc = (acc << 6) | (unsigned)(pos - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/*
 * Checks a refusal against what the test says: "error" (the exact message)
 * and "code" (the error name; EINVAL when a test of a JSON value says
 * none). Without "error", the message must name an attribute (`names`
 * decides, given the message). Returns 1, or 0 with `why` set.
 */
static int check_refusal(const json_t *tc, const eddy_error *err, int names, char *why,
                         size_t why_size)
{
    const char *want_msg = json_string_value(json_object_get(tc, "error"));
    const char *want_code = json_string_value(json_object_get(tc, "code"));
    if (!want_code && !json_object_get(tc, "text") && !json_object_get(tc, "text_base64"))
        want_code = "EINVAL";
    if (want_code && strcmp(eddy_errname(err->code), want_code) != 0) {
        snprintf(why, why_size, "refused with %s, want %s: \"%s\"", eddy_errname(err->code),
                 want_code, err->message);
        return 0;
    }
    if (want_msg && strcmp(want_msg, err->message) != 0) {
        snprintf(why, why_size, "message \"%s\", want \"%s\"", err->message, want_msg);
        return 0;
    }
    if (!want_msg && !want_code && !names) {
        snprintf(why, why_size, "rejected with code %s and a message that names no attribute: "
                 "\"%s\"", eddy_errname(err->code), err->message);
        return 0;
    }
    return 1;
}

/* The members of the test's "expect" object all equal those of the event's
 * JSON form. */
static int check_expect(const json_t *tc, const eddy_event *ev, char *why, size_t why_size)
{
    const json_t *expect = json_object_get(tc, "expect");
    if (!expect)
        return 1;
    json_t *obj = eddy_event_to_json(ev);
    const char *key;
    json_t *want;
    int ok = 1;
    json_object_foreach((json_t *)expect, key, want) {
        if (!json_equal(json_object_get(obj, key), want)) {
            char *got = json_dumps(json_object_get(obj, key), JSON_ENCODE_ANY);
            snprintf(why, why_size, "%s is %s, want %s", key, got ? got : "absent",
                     json_string_value(want) ? json_string_value(want) : "(see test)");
            free(got);
            ok = 0;
            break;
        }
    }
    json_decref(obj);
    return ok;
}

/* Runs one test case; returns 1 when it passes, else 0 with `why` set. */
static int run_case(const char *type, const json_t *tc, char *why, size_t why_size)
{
    eddy_error err;
    eddy_error_clear(&err);
    const json_t *event = json_object_get(tc, "event");
    const json_t *batch = json_object_get(tc, "batch");
    size_t raw_len = 0;
    char *raw = raw_text(tc, &raw_len);

    if (strcmp(type, "ValidSingleEvent") == 0 || strcmp(type, "InvalidSingleEvent") == 0) {
        if (!event && !raw) {
            snprintf(why, why_size, "test case has no event");
            return 0;
        }
        int valid = type[0] == 'V';
        /* Through the text decoder, as a consumer receives it. */
        char *text = raw ? raw : json_dumps(event, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t len = raw ? raw_len : strlen(text);
        eddy_event *ev = eddy_event_decode(text, len, &err);
        free(text);
        if (valid) {
            if (!ev) {
                snprintf(why, why_size, "valid event rejected: %s", err.message);
                return 0;
            }
            int ok = 1;
            if (event) {
                /* The object decoder agrees with the text decoder. */
                eddy_event *ev2 = eddy_event_from_json(event, &err);
                ok = ev2 && eddy_event_equal(ev, ev2);
                if (!ok)
                    snprintf(why, why_size, "from_json disagrees with decode");
                eddy_event_unref(ev2);
            }
            if (ok)
                ok = round_trips(ev, why, why_size) && check_expect(tc, ev, why, why_size);
            eddy_event_unref(ev);
            return ok;
        }
        if (ev) {
            eddy_event_unref(ev);
            snprintf(why, why_size, "invalid event accepted");
            return 0;
        }
        if (event && !raw) {
            /* The object decoder refuses it the same way. */
            eddy_error err2;
            eddy_error_clear(&err2);
            eddy_event *ev2 = eddy_event_from_json(event, &err2);
            if (ev2 || err2.code != err.code || strcmp(err2.message, err.message) != 0) {
                snprintf(why, why_size, "from_json disagrees with decode: \"%.200s\" / \"%.200s\"",
                         err.message, ev2 ? "accepted" : err2.message);
                eddy_event_unref(ev2);
                return 0;
            }
        }
        return check_refusal(tc, &err,
                             err.code == EDDY_EINVAL && names_attribute(err.message, event),
                             why, why_size);
    }

    if (strcmp(type, "ValidBatch") == 0 || strcmp(type, "InvalidBatch") == 0) {
        if (!batch && !raw) {
            snprintf(why, why_size, "test case has no batch");
            return 0;
        }
        int valid = type[0] == 'V';
        char *text = raw ? raw : json_dumps(batch, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t tlen = raw ? raw_len : strlen(text);
        eddy_event **events = NULL;
        size_t count = 0;
        int rc = eddy_event_decode_batch(text, tlen, &events, &count, &err);
        free(text);
        if (valid) {
            if (rc != EDDY_OK) {
                snprintf(why, why_size, "valid batch rejected: %s", err.message);
                return 0;
            }
            int ok = !batch || count == json_array_size(batch);
            if (!ok)
                snprintf(why, why_size, "batch of %zu decoded as %zu events",
                         json_array_size(batch), count);
            /* encode_batch then decode_batch gives equal events */
            size_t len = 0;
            char *again = ok ? eddy_event_encode_batch(events, count, &len) : NULL;
            eddy_event **back = NULL;
            size_t nback = 0;
            if (ok && (!again || eddy_event_decode_batch(again, len, &back, &nback, &err) ||
                       nback != count)) {
                snprintf(why, why_size, "batch round trip failed: %s", err.message);
                ok = 0;
            }
            for (size_t i = 0; ok && i < count; i++)
                if (!eddy_event_equal(events[i], back[i]) ||
                    !round_trips(events[i], why, why_size))
                    ok = 0;
            free(again);
            eddy_event_array_free(back, nback);
            eddy_event_array_free(events, count);
            return ok;
        }
        if (rc == EDDY_OK) {
            eddy_event_array_free(events, count);
            snprintf(why, why_size, "invalid batch accepted");
            return 0;
        }
        if (events || count) {
            snprintf(why, why_size, "failed batch returned events");
            return 0;
        }
        /* "[i] attribute: rule", naming an attribute of element i */
        size_t index;
        int used = 0;
        int names = batch && sscanf(err.message, "[%zu] %n", &index, &used) == 1 && used > 0 &&
                    index < json_array_size(batch) &&
                    names_attribute(err.message + used, json_array_get(batch, index));
        if (!names && !json_object_get(tc, "error") && !json_object_get(tc, "code")) {
            snprintf(why, why_size, "batch error does not name an index and an "
                     "attribute: \"%s\"", err.message);
            return 0;
        }
        return check_refusal(tc, &err, names, why, why_size);
    }
    free(raw);
    snprintf(why, why_size, "unknown testType \"%s\"", type);
    return 0;
}

/*
 * Runs every test of `dir`/`file`; returns how many passed and fails the
 * test on any failure. `required`: the file must exist (eddy's own vectors);
 * otherwise a missing file is skipped with a message (the upstream suite,
 * which only the project's own machines have beside the repository).
 */
static size_t run_file(const char *dir, const char *file, size_t expect_min, int required)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!doc && !required) {
        print_message("cloudevents: %s not present, skipped (an extra, not required)\n",
                      path);
        return 0;
    }
    if (!doc)
        fail_msg("cannot load the CloudEvents conformance file %s: %s", path, jerr.text);
    const char *file_type = json_string_value(json_object_get(doc, "testType"));
    const json_t *tests = json_object_get(doc, "tests");
    if (!file_type || !json_is_array(tests)) {
        json_decref(doc);
        fail_msg("%s: no testType or tests", path);
    }
    size_t passed = 0, failed = 0, i;
    const json_t *tc;
    json_array_foreach(tests, i, tc) {
        const char *type = json_string_value(json_object_get(tc, "testType"));
        const char *id = json_string_value(json_object_get(tc, "id"));
        char why[1024] = "";
        if (run_case(type ? type : file_type, tc, why, sizeof why)) {
            passed++;
        } else {
            failed++;
            print_error("cloudevents %s: %s FAILED: %s\n", path, id ? id : "?", why);
        }
    }
    print_message("cloudevents %s: %zu passed, %zu failed\n", path, passed, failed);
    json_decref(doc);
    assert_int_equal(failed, 0);
    /* The files must not silently shrink to nothing. */
    assert_true(passed >= expect_min);
    return passed;
}

static void test_conformance_valid_events(void **state)
{
    (void)state;
    run_file(OWN_DIR, "valid-events.json", 30, 1);
    run_file(UPSTREAM_DIR, "valid-events.json", 10, 0);
}

static void test_conformance_invalid_events(void **state)
{
    (void)state;
    run_file(OWN_DIR, "invalid-events.json", 90, 1);
    run_file(UPSTREAM_DIR, "invalid-events.json", 25, 0);
}

static void test_conformance_valid_batches(void **state)
{
    (void)state;
    run_file(OWN_DIR, "valid-batches.json", 5, 1);
    run_file(UPSTREAM_DIR, "valid-batches.json", 5, 0);
}

static void test_conformance_invalid_batches(void **state)
{
    (void)state;
    run_file(OWN_DIR, "invalid-batches.json", 8, 1);
    run_file(UPSTREAM_DIR, "invalid-batches.json", 3, 0);
}

/* ---- our own cases -------------------------------------------------------- */

#define HEAD "\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"t\",\"source\":\"s\""

static void test_messages(void **state)
{
    (void)state;
    expect_reject("{\"specversion\":\"0.9\",\"id\":\"x\",\"type\":\"t\",\"source\":\"s\"}",
                  "specversion", "specversion: must be \"1.0\", got \"0.9\"");
    expect_reject("{\"specversion\":1.0,\"id\":\"x\",\"type\":\"t\",\"source\":\"s\"}",
                  "specversion", "specversion: must be a string, got number");
    expect_reject("{\"id\":\"x\",\"type\":\"t\",\"source\":\"s\"}", "specversion",
                  "specversion: required attribute missing");
    expect_reject("{\"specversion\":\"1.0\",\"type\":\"t\",\"source\":\"s\"}", "id",
                  "id: required attribute missing");
    expect_reject("{\"specversion\":\"1.0\",\"id\":null,\"type\":\"t\",\"source\":\"s\"}",
                  "id", "id: required attribute missing");
    expect_reject("{\"specversion\":\"1.0\",\"id\":25,\"type\":\"t\",\"source\":\"s\"}", "id",
                  "id: must be a string, got integer");
    expect_reject("{" HEAD ",\"time\":\"lunchtime\"}", "time",
                  "time: not an RFC 3339 timestamp: \"lunchtime\"");
    expect_reject("{" HEAD ",\"time\":12}", "time", "time: must be a string, got integer");
    expect_reject("{" HEAD ",\"datacontenttype\":\"xyz\"}", "datacontenttype",
                  "datacontenttype: not an RFC 2046 media type: \"xyz\"");
    expect_reject("{" HEAD ",\"MyExtension\":\"bad\"}", "MyExtension",
                  "MyExtension: extension attribute names must be lower-case "
                  "letters and digits");
    expect_reject("{" HEAD ",\"data\":\"a\",\"data_base64\":\"TWE=\"}", "data, data_base64",
                  "data, data_base64: an event cannot have both");
    expect_reject("{" HEAD ",\"subject\":\"\"}", "subject", NULL);
    expect_reject("{" HEAD ",\"subject\":true}", "subject", NULL);
    expect_reject("{" HEAD ",\"dataschema\":\"not/absolute\"}", "dataschema", NULL);
    expect_reject("{" HEAD ",\"dataschema\":\"\"}", "dataschema", NULL);
    expect_reject("{" HEAD ",\"data_base64\":\"TWE\"}", "data_base64", NULL);
    expect_reject("{" HEAD ",\"data_base64\":5}", "data_base64", NULL);
    expect_reject("{" HEAD ",\"ext\":1.5}", "ext", NULL);
    expect_reject("{" HEAD ",\"ext\":2147483648}", "ext", NULL);
    expect_reject("{" HEAD ",\"ext\":-2147483649}", "ext", NULL);
    expect_reject("{" HEAD ",\"ext\":{\"a\":1}}", "ext", NULL);
    expect_reject("{" HEAD ",\"ext\":[1]}", "ext", NULL);
    expect_reject("{" HEAD ",\"dataversion\":\"\"}", "dataversion", NULL);
    expect_reject("{" HEAD ",\"correlationid\":7}", "correlationid", NULL);
    expect_reject("{" HEAD ",\"causationid\":\"\"}", "causationid", NULL);
    expect_reject("{\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"t\",\"source\":\"a b\"}",
                  "source", NULL);
    expect_reject("[1]", "event", "event: expected a JSON object, got array");

    /* Malformed JSON is EDDY_EPARSE with jansson's position. */
    eddy_error err;
    eddy_error_clear(&err);
    assert_null(eddy_event_decode("{\"a\":", 5, &err));
    assert_int_equal(err.code, EDDY_EPARSE);
    assert_non_null(strstr(err.message, "line 1"));
    /* A duplicated member is malformed too (which one would count?). */
    eddy_error_clear(&err);
    const char *dup = "{" HEAD ",\"id\":\"y\"}";
    assert_null(eddy_event_decode(dup, strlen(dup), &err));
    assert_int_equal(err.code, EDDY_EPARSE);
}

static void test_accepts(void **state)
{
    (void)state;
    /* null attributes count as absent; integral extension numbers are
     * integers; the CloudEvents Integer limits are inside the range. */
    eddy_event *ev = decode_ok("{" HEAD ",\"subject\":null,\"data\":null,\"extnull\":null,"
                               "\"lo\":-2147483648,\"hi\":2147483647,\"two\":2.0}");
    assert_null(eddy_event_subject(ev));
    assert_null(eddy_event_data(ev));
    assert_null(eddy_event_extension(ev, "extnull"));
    assert_true(json_is_integer(eddy_event_extension(ev, "two")));
    assert_int_equal(json_integer_value(eddy_event_extension(ev, "lo")), INT32_MIN);
    assert_int_equal(eddy_event_time(ev), 0);
    assert_null(eddy_event_datacontenttype(ev)); /* decoding adds no defaults */
    eddy_event_unref(ev);

    /* dataversion, correlationid and causationid go to their own fields. */
    ev = decode_ok("{" HEAD ",\"dataversion\":\"2\",\"correlationid\":\"c\","
                   "\"causationid\":\"p\",\"tenant\":\"acme\"}");
    assert_string_equal(eddy_event_dataversion(ev), "2");
    assert_string_equal(eddy_event_correlation_id(ev), "c");
    assert_string_equal(eddy_event_causation_id(ev), "p");
    assert_null(eddy_event_extension(ev, "correlationid"));
    assert_int_equal(json_object_size(eddy_event_extensions(ev)), 1);
    eddy_event_unref(ev);

    /* The epoch itself is a time, and survives a round trip. */
    ev = decode_ok("{" HEAD ",\"time\":\"1970-01-01T00:00:00Z\"}");
    char *text = eddy_event_encode(ev, NULL);
    assert_non_null(strstr(text, "\"time\":\"1970-01-01T00:00:00.000000Z\""));
    free(text);
    eddy_event_unref(ev);
}

/* The encoder writes what json_dumps writes for the event's JSON object,
 * escapes included. */
static void assert_encodes_as_jansson(const eddy_event *ev)
{
    json_t *obj = eddy_event_to_json(ev);
    assert_non_null(obj);
    char *want = json_dumps(obj, JSON_COMPACT);
    size_t len = 0;
    char *got = eddy_event_encode(ev, &len);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
    free(want);
    json_decref(obj);
}

static void test_encode_matches_jansson(void **state)
{
    (void)state;
    /* Data strings: every control character, a quote, a backslash, a
     * slash, DEL, UTF-8. Attributes may hold no control character. */
    char awkward[64];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        awkward[n++] = (char)c;
    strcpy(awkward + n, "\"\\/\x7f\xc3\xa9\xe2\x82\xac");
    json_t *data = json_pack("{s:s, s:f, s:I, s:[b, n, f], s:{}}", "text", awkward,
                             "real", 0.1, "big", (json_int_t)-9007199254740993LL,
                             "list", 1, 2.5e-300, "empty");
    const char *attr = "q\"b\\s/\xc3\xa9\xe2\x82\xac";
    json_t *ext = json_pack("{s:i, s:b, s:s}", "priority", -7, "urgent", 1,
                            "tenant", attr);
    eddy_event_init full = {
        .type = "order.placed", .source = "/orders\"x", .subject = attr,
        .time_us = -1, .dataschema = "https://example.com/s.json",
        .dataversion = "1.0", .data = data, .correlation_id = "c-\\1",
        .causation_id = "p-1", .extensions = ext,
    };
    eddy_error err = {0};
    eddy_event *ev = eddy_event_new(&full, &err);
    assert_non_null(ev);
    assert_encodes_as_jansson(ev);
    eddy_event_unref(ev);
    /* Plain text data, binary data, no data, a scalar as data. */
    eddy_event_init text = {.type = "t", .source = "s",
                            .datacontenttype = "text/plain",
                            .data = json_string(awkward)};
    ev = eddy_event_new(&text, &err);
    assert_non_null(ev);
    assert_encodes_as_jansson(ev);
    eddy_event_unref(ev);
    json_decref(text.data);
    eddy_event_init bin = {.type = "t", .source = "s", .data_base64 = "AAEC/w=="};
    ev = eddy_event_new(&bin, &err);
    assert_non_null(ev);
    assert_encodes_as_jansson(ev);
    eddy_event_unref(ev);
    eddy_event_init bare = {.type = "t", .source = "s"};
    ev = eddy_event_new(&bare, &err);
    assert_non_null(ev);
    assert_encodes_as_jansson(ev);
    eddy_event_unref(ev);
    eddy_event_init scalar = {.type = "t", .source = "s", .data = json_integer(42)};
    ev = eddy_event_new(&scalar, &err);
    assert_non_null(ev);
    assert_encodes_as_jansson(ev);
    eddy_event_unref(ev);
    json_decref(scalar.data);
    json_decref(data);
    json_decref(ext);
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:s, s:f, s:[i, b, n], s:{s:s}}", "order_id", "o-1",
                             "amount", 0.1, "list", 1, 1, "nested", "k", "v\xc3\xa9");
    json_t *ext = json_pack("{s:i, s:b, s:s}", "priority", -7, "urgent", 0, "tenant", "acme");
    eddy_event_init init = {
        .type = "order.placed", .source = "/orders", .subject = "o-1",
        .time_us = 1522949460123456LL, .dataschema = "https://example.com/s.json",
        .dataversion = "1.0", .data = data, .correlation_id = "c-1",
        .causation_id = "p-1", .extensions = ext,
    };
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_new(&init, &err);
    assert_non_null(ev);
    char why[512] = "";
    if (!round_trips(ev, why, sizeof why))
        fail_msg("%s", why);

    /* The JSON form: every attribute, extensions flattened at the top. */
    json_t *obj = eddy_event_to_json(ev);
    assert_string_equal(json_string_value(json_object_get(obj, "specversion")), "1.0");
    assert_string_equal(json_string_value(json_object_get(obj, "id")), eddy_event_id(ev));
    assert_string_equal(json_string_value(json_object_get(obj, "time")),
                        "2018-04-05T17:31:00.123456Z");
    assert_string_equal(json_string_value(json_object_get(obj, "datacontenttype")),
                        "application/json");
    assert_string_equal(json_string_value(json_object_get(obj, "correlationid")), "c-1");
    assert_int_equal(json_integer_value(json_object_get(obj, "priority")), -7);
    assert_true(json_equal(json_object_get(obj, "data"), data));
    /* to_json hands out a copy: changing it leaves the event alone. */
    json_object_set_new(json_object_get(obj, "data"), "order_id", json_string("changed"));
    json_integer_set(json_object_get(obj, "priority"), 99);
    assert_true(json_equal((json_t *)eddy_event_data(ev), data));
    assert_int_equal(json_integer_value(eddy_event_extension(ev, "priority")), -7);
    json_decref(obj);

    /* String data stays a string; binary data stays base64. */
    eddy_event_init text_init = {.type = "t", .source = "s", .datacontenttype = "text/plain",
                                 .data = json_string("Simple text")};
    eddy_event *tev = eddy_event_new(&text_init, NULL);
    json_decref(text_init.data);
    char *enc = eddy_event_encode(tev, NULL);
    assert_non_null(strstr(enc, "\"data\":\"Simple text\""));
    free(enc);
    if (!round_trips(tev, why, sizeof why))
        fail_msg("%s", why);
    eddy_event_init bin_init = {.type = "t", .source = "s", .data_base64 = "AAEC/w=="};
    eddy_event *bev = eddy_event_new(&bin_init, NULL);
    enc = eddy_event_encode(bev, NULL);
    assert_non_null(strstr(enc, "\"data_base64\":\"AAEC/w==\""));
    assert_null(strstr(enc, "\"data\":"));
    free(enc);
    if (!round_trips(bev, why, sizeof why))
        fail_msg("%s", why);

    eddy_event_unref(bev);
    eddy_event_unref(tev);
    eddy_event_unref(ev);
    json_decref(data);
    json_decref(ext);
}

static void test_batches(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event **events = (eddy_event **)1;
    size_t count = 99;
    const char *not_array = "{" HEAD "}";
    assert_int_equal(eddy_event_decode_batch(not_array, strlen(not_array), &events,
                                             &count, &err), EDDY_EINVAL);
    assert_string_equal(err.message, "batch: expected a JSON array of events, got object");
    assert_null(events);
    assert_int_equal(count, 0);

    const char *bad = "[{" HEAD "},{" HEAD ",\"time\":\"noon\"}]";
    assert_int_equal(eddy_event_decode_batch(bad, strlen(bad), &events, &count, &err),
                     EDDY_EINVAL);
    assert_string_equal(err.message, "[1] time: not an RFC 3339 timestamp: \"noon\"");

    assert_int_equal(eddy_event_decode_batch("[1,", 3, &events, &count, &err), EDDY_EPARSE);

    assert_int_equal(eddy_event_decode_batch("[]", 2, &events, &count, &err), EDDY_OK);
    assert_int_equal(count, 0);
    eddy_event_array_free(events, count);

    char *text = eddy_event_encode_batch(NULL, 0, NULL);
    assert_string_equal(text, "[]");
    free(text);
    eddy_event_array_free(NULL, 0);
}


/* `n` nested arrays around 1, as JSON text (malloc'd). */
static char *nested_text(size_t n)
{
    char *s = malloc(2 * n + 2);
    assert_non_null(s);
    memset(s, '[', n);
    s[n] = '1';
    memset(s + n + 1, ']', n);
    s[2 * n + 1] = '\0';
    return s;
}

/* An event whose text is exactly `size` bytes: its data a long string. */
static char *event_of_size(size_t size)
{
    static const char head[] = "{" HEAD ",\"data\":\"";
    size_t h = sizeof head - 1;
    char *s = malloc(size + 1);
    assert_non_null(s);
    memcpy(s, head, h);
    memset(s + h, 'a', size - h - 2);
    memcpy(s + size - 2, "\"}", 3);
    return s;
}

/* The limits every decoder applies, named in their errors. */
static void test_limits(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);

    /* Size: exactly EDDY_EVENT_MAX_BYTES passes, one more byte does not. */
    char *text = event_of_size(EDDY_EVENT_MAX_BYTES);
    eddy_event *ev = eddy_event_decode(text, EDDY_EVENT_MAX_BYTES, &err);
    assert_non_null(ev);
    eddy_event_unref(ev);
    free(text);
    text = event_of_size(EDDY_EVENT_MAX_BYTES + 1);
    assert_null(eddy_event_decode(text, EDDY_EVENT_MAX_BYTES + 1, &err));
    assert_int_equal(err.code, EDDY_ETOOBIG);
    assert_string_equal(err.message, "event: 1048577 bytes, larger than the 1048576-byte "
                                     "limit (EDDY_EVENT_MAX_BYTES)");

    /* In a batch, each event is held to the same limit, named by index. */
    size_t blen = 2 * (EDDY_EVENT_MAX_BYTES + 1) + 16;
    char *batch = malloc(blen);
    assert_non_null(batch);
    char *small = event_of_size(100);
    int n = snprintf(batch, blen, "[%s, %s]", small, text);
    eddy_event **events = NULL;
    size_t count = 0;
    eddy_error_clear(&err);
    assert_int_equal(eddy_event_decode_batch(batch, (size_t)n, &events, &count, &err),
                     EDDY_ETOOBIG);
    assert_string_equal(err.message, "batch: [1] 1048577 bytes, larger than the 1048576-byte "
                                     "limit (EDDY_EVENT_MAX_BYTES)");
    free(text);
    text = event_of_size(EDDY_EVENT_MAX_BYTES);
    n = snprintf(batch, blen, "[%s,\n %s ]", small, text);
    assert_int_equal(eddy_event_decode_batch(batch, (size_t)n, &events, &count, &err), EDDY_OK);
    assert_int_equal(count, 2);
    eddy_event_array_free(events, count);
    free(batch);
    free(text);
    /* ... and the whole batch to EDDY_BATCH_MAX_BYTES, before any parsing. */
    assert_int_equal(eddy_event_decode_batch(small, EDDY_BATCH_MAX_BYTES + 1, &events, &count,
                                             &err),
                     EDDY_ETOOBIG);
    assert_string_equal(err.message, "batch: 16777217 bytes, larger than the 16777216-byte "
                                     "limit (EDDY_BATCH_MAX_BYTES)");
    free(small);

    /* Depth: data may nest EDDY_EVENT_MAX_DEPTH - 1 levels inside the event. */
    char buf[2 * EDDY_EVENT_MAX_DEPTH + 256];
    char *data = nested_text(EDDY_EVENT_MAX_DEPTH - 1);
    n = snprintf(buf, sizeof buf, "{" HEAD ",\"data\":%s}", data);
    ev = eddy_event_decode(buf, (size_t)n, &err);
    assert_non_null(ev);
    char *enc = eddy_event_encode(ev, NULL);
    assert_non_null(enc); /* and it encodes back */
    free(enc);
    eddy_event_unref(ev);
    /* a batch of it too */
    char bbuf[sizeof buf + 2];
    n = snprintf(bbuf, sizeof bbuf, "[%s]", buf);
    assert_int_equal(eddy_event_decode_batch(bbuf, (size_t)n, &events, &count, &err), EDDY_OK);
    eddy_event_array_free(events, count);
    free(data);
    data = nested_text(EDDY_EVENT_MAX_DEPTH);
    n = snprintf(buf, sizeof buf, "{" HEAD ",\"data\":%s}", data);
    eddy_error_clear(&err);
    assert_null(eddy_event_decode(buf, (size_t)n, &err));
    assert_int_equal(err.code, EDDY_ETOOBIG);
    assert_string_equal(err.message, "event: nested deeper than 256 levels "
                                     "(EDDY_EVENT_MAX_DEPTH)");
    n = snprintf(bbuf, sizeof bbuf, "[%s]", buf);
    assert_int_equal(eddy_event_decode_batch(bbuf, (size_t)n, &events, &count, &err),
                     EDDY_ETOOBIG);
    assert_string_equal(err.message, "batch: nested deeper than 256 levels "
                                     "(EDDY_EVENT_MAX_DEPTH)");

    /* The same data given as a tree: eddy_event_new and from_json refuse it,
     * so no event exists that a store could not read back. */
    json_t *deep = json_loads(data, 0, NULL);
    assert_non_null(deep);
    eddy_event_init init = {.type = "t", .source = "s", .data = deep};
    eddy_error_clear(&err);
    assert_null(eddy_event_new(&init, &err));
    assert_int_equal(err.code, EDDY_ETOOBIG);
    assert_string_equal(err.message, "data: nested deeper than 255 levels "
                                     "(EDDY_EVENT_MAX_DEPTH 256 counts the event itself)");
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:O}", "specversion", "1.0", "id", "x",
                            "type", "t", "source", "s", "data", deep);
    eddy_error_clear(&err);
    assert_null(eddy_event_from_json(obj, &err));
    assert_int_equal(err.code, EDDY_ETOOBIG);
    json_decref(obj);
    json_decref(deep);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conformance_valid_events),
        cmocka_unit_test(test_conformance_invalid_events),
        cmocka_unit_test(test_conformance_valid_batches),
        cmocka_unit_test(test_conformance_invalid_batches),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_encode_matches_jansson),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
