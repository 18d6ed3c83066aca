/*
 * tests/test_http_binding.c - the CloudEvents HTTP protocol binding of
 * `POST /streams/{stream}` (src/http/ingest.c), as raw HTTP requests
 * against a real server on loopback.
 *
 * 1. The scenarios of the CloudEvents conformance suite's
 *    features/http-protocol-binding.feature (cloudevents/conformance,
 *    Apache-2.0), written here as this project's own test cases: the raw
 *    requests exactly as the scenarios give them (path changed to a stream,
 *    an Authorization line added), then the attributes and data the
 *    scenarios expect, read back from the store over GET. When the upstream
 *    file is present beside the repository (EDDY_TESTDATA_DIR), its
 *    scenarios are parsed and run as well ($EDDY_TESTDATA_DIR overrides
 *    the folder); it is never needed.
 * 2. The rest of the binding: binary mode (extensions, percent-encoding,
 *    text and binary data, no data, every way to get it wrong), structured
 *    mode (charset, malformed JSON, bad attributes), batched mode (atomic,
 *    empty, the index of the bad element), 415, expected versions, and the
 *    web-hook abuse-protection handshake (OPTIONS).
 */
#include "http_fixture.h"

#include <sys/stat.h>

static hfx F;

static int setup(void **state)
{
    (void)state;
    hfx_store(&F, NULL);
    hfx_serve(&F, NULL, false);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hfx_stop(&F);
    return 0;
}

/* Sends raw request text (lines joined with CRLF by the caller). */
static htc_resp raw(const char *text, size_t len)
{
    htc_conn c;
    htc_resp r;
    assert_true(htc_open(&c, F.port));
    assert_true(htc_send(&c, text, len));
    if (!htc_read(&c, &r, 15000))
        fail_msg("no response to:\n%s", text);
    htc_close(&c);
    return r;
}

/* The one event of stream `stream`, read back over GET. */
static json_t *read_back(const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/streams/%s", stream);
    htc_resp r = hfx_req(F.port, "GET", path, AUTH_READ, NULL);
    HFX_STATUS(r, 200);
    json_t *j = hfx_json(&r);
    htc_resp_free(&r);
    json_t *events = json_object_get(j, "events");
    assert_int_equal(json_array_size(events), 1);
    json_t *ev = json_incref(json_object_get(json_array_get(events, 0),
                                             "event"));
    json_decref(j);
    return ev;
}

/* Attribute `key` of CloudEvents JSON `ev` equals `want`; times compare as
 * instants (eddy keeps microseconds: 03:56:24Z is 03:56:24.000000Z). */
static void expect_attr(const json_t *ev, const char *key, const char *want)
{
    const char *got = hfx_str(ev, key);
    if (strcmp(key, "time") == 0) {
        int64_t a = 0, b = 0;
        assert_int_equal(eddy_time_parse(got, &a), EDDY_OK);
        assert_int_equal(eddy_time_parse(want, &b), EDDY_OK);
        if (a != b)
            fail_msg("time %s, want %s", got, want);
        return;
    }
    if (strcmp(got, want) != 0)
        fail_msg("attribute %s: \"%s\", want \"%s\"", key, got, want);
}

static void expect_data(const json_t *ev, const char *json_text)
{
    json_error_t jerr;
    json_t *want = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    assert_non_null(want);
    if (!json_equal(json_object_get(ev, "data"), want)) {
        char *got = json_dumps(ev, JSON_COMPACT);
        fail_msg("data of %s differs from %s", got, json_text);
    }
    json_decref(want);
}

/* ---- 1. the conformance scenarios ------------------------------------------ */

/*
 * Scenario Outline: Binary content mode (<contentType>)
 *   Given an HTTP request (below) When parsed as HTTP request
 *   Then the attributes are: id 1234-1234-1234, specversion 1.0, type
 *   com.example.someevent, source /mycontext/subcontext, time
 *   2018-04-05T03:56:24Z, datacontenttype <contentType>
 *   And the data is equal to the following JSON: {"message": "Hello World!"}
 *   Examples: application/json | application/json; charset=utf-8
 */
static void scenario_binary(const char *content_type)
{
    static const char body[] = "{\n    \"message\": \"Hello World!\"\n}";
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST /streams/someresource HTTP/1.1\r\n"
                     "Host: example.com\r\n"
                     AUTH_WRITE
                     "ce-specversion: 1.0\r\n"
                     "ce-type: com.example.someevent\r\n"
                     "ce-time: 2018-04-05T03:56:24Z\r\n"
                     "ce-id: 1234-1234-1234\r\n"
                     "ce-source: /mycontext/subcontext\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: 33\r\n"
                     "\r\n%s",
                     content_type, body);
    assert_int_equal(strlen(body), 33); /* as the scenario declares */
    htc_resp r = raw(req, (size_t)n);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    json_t *ev = read_back("someresource");
    expect_attr(ev, "id", "1234-1234-1234");
    expect_attr(ev, "specversion", "1.0");
    expect_attr(ev, "type", "com.example.someevent");
    expect_attr(ev, "source", "/mycontext/subcontext");
    expect_attr(ev, "time", "2018-04-05T03:56:24Z");
    expect_attr(ev, "datacontenttype", content_type);
    expect_data(ev, "{\"message\": \"Hello World!\"}");
    json_decref(ev);
}

static void test_scenario_binary_json(void **state)
{
    (void)state;
    scenario_binary("application/json");
}

static void test_scenario_binary_json_charset(void **state)
{
    (void)state;
    scenario_binary("application/json; charset=utf-8");
}

/*
 * Scenario Outline: Structured content mode (<contentType>)
 *   Given an HTTP request (below) When parsed as HTTP request
 *   Then the attributes are: id 1234-1234-1234, specversion 1.0, type
 *   com.example.someevent, source /mycontext/subcontext, time
 *   2018-04-05T03:56:24Z, datacontenttype application/json
 *   And the data is equal to the following JSON: {"message": "Hello World!"}
 *   Examples: application/cloudevents+json |
 *             application/cloudevents+json; charset=utf-8
 */
static void scenario_structured(const char *content_type)
{
    static const char body[] =
        "{\n"
        "    \"specversion\": \"1.0\",\n"
        "    \"type\": \"com.example.someevent\",\n"
        "    \"time\": \"2018-04-05T03:56:24Z\",\n"
        "    \"id\": \"1234-1234-1234\",\n"
        "    \"source\": \"/mycontext/subcontext\",\n"
        "    \"datacontenttype\": \"application/json\",\n"
        "    \"data\": {\n"
        "        \"message\": \"Hello World!\"\n"
        "    }\n"
        "}";
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST /streams/someresource HTTP/1.1\r\n"
                     "Host: example.com\r\n"
                     AUTH_WRITE
                     "Content-Type: %s\r\n"
                     "Content-Length: 266\r\n"
                     "\r\n%s",
                     content_type, body);
    assert_int_equal(strlen(body), 266); /* as the scenario declares */
    htc_resp r = raw(req, (size_t)n);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    json_t *ev = read_back("someresource");
    expect_attr(ev, "id", "1234-1234-1234");
    expect_attr(ev, "specversion", "1.0");
    expect_attr(ev, "type", "com.example.someevent");
    expect_attr(ev, "source", "/mycontext/subcontext");
    expect_attr(ev, "time", "2018-04-05T03:56:24Z");
    expect_attr(ev, "datacontenttype", "application/json");
    expect_data(ev, "{\"message\": \"Hello World!\"}");
    json_decref(ev);
}

static void test_scenario_structured(void **state)
{
    (void)state;
    scenario_structured("application/cloudevents+json");
}

static void test_scenario_structured_charset(void **state)
{
    (void)state;
    scenario_structured("application/cloudevents+json; charset=utf-8");
}

/* ---- the upstream .feature file, when present ------------------------------ */

/* Gherkin, the subset the file uses: Scenario Outline, a docstring request,
 * an attributes table, a docstring of JSON data, an Examples table with
 * one column. Returns the number of scenario runs. */
static int run_feature_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    enum { NONE, REQUEST, DATA } doc = NONE;
    bool in_doc = false, in_attrs = false, in_examples = false;
    char request[4096] = "", data[1024] = "", attrs[2048] = "";
    int indent = 0, runs = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *t = line;
        while (*t == ' ')
            t++;
        if (strncmp(t, "\"\"\"", 3) == 0) {
            if (!in_doc) {
                in_doc = true;
                indent = (int)(t - line);
                if (doc == NONE)
                    doc = REQUEST;
                else
                    doc = DATA;
            } else {
                in_doc = false;
            }
            continue;
        }
        if (in_doc) {
            const char *content = (int)strlen(line) >= indent ? line + indent : "";
            char *dst = doc == REQUEST ? request : data;
            size_t cap = doc == REQUEST ? sizeof request : sizeof data;
            size_t len = strlen(dst);
            snprintf(dst + len, cap - len, "%s%s", len ? "\n" : "", content);
            continue;
        }
        if (strncmp(t, "Scenario", 8) == 0) {
            doc = NONE;
            request[0] = data[0] = attrs[0] = '\0';
            in_attrs = in_examples = false;
            continue;
        }
        if (strncmp(t, "Then the attributes are", 23) == 0) {
            in_attrs = true;
            continue;
        }
        if (strncmp(t, "Examples:", 9) == 0) {
            in_examples = true;
            in_attrs = false;
            continue;
        }
        if (in_attrs && t[0] == '|') {
            size_t len = strlen(attrs);
            snprintf(attrs + len, sizeof attrs - len, "%s\n", t);
            continue;
        }
        if (in_attrs && t[0] != '|')
            in_attrs = false;
        if (in_examples && t[0] == '|') {
            char value[256];
            if (sscanf(t, "| %255[^|]", value) != 1)
                continue;
            size_t vl = strlen(value);
            while (vl && value[vl - 1] == ' ')
                value[--vl] = '\0';
            if (strcmp(value, "contentType") == 0)
                continue; /* the header row */
            /* one run: fresh server, the request with <contentType> */
            teardown(NULL);
            setup(NULL);
            char req[8192] = "";
            size_t o = 0;
            bool in_body = false;
            for (char *p = request; *p;) {
                char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                char ln[1024];
                snprintf(ln, sizeof ln, "%.*s", (int)len, p);
                char *ph = strstr(ln, "<contentType>");
                char sub[1400];
                if (ph) {
                    *ph = '\0';
                    snprintf(sub, sizeof sub, "%s%s%s", ln, value, ph + 13);
                } else {
                    snprintf(sub, sizeof sub, "%s", ln);
                }
                if (!in_body && strncmp(sub, "POST /someresource", 18) == 0)
                    o += (size_t)snprintf(req + o, sizeof req - o,
                                          "POST /streams/someresource%s\r\n",
                                          sub + 18);
                else if (!in_body && sub[0] == '\0') {
                    in_body = true;
                    o += (size_t)snprintf(req + o, sizeof req - o, "\r\n");
                } else if (in_body)
                    o += (size_t)snprintf(req + o, sizeof req - o, "%s%s", sub,
                                          nl && nl[1] ? "\n" : "");
                else
                    o += (size_t)snprintf(req + o, sizeof req - o, "%s\r\n%s",
                                          sub,
                                          strncmp(sub, "Host:", 5) == 0
                                              ? AUTH_WRITE
                                              : "");
                p = nl ? nl + 1 : p + len;
            }
            htc_resp r = raw(req, o);
            HFX_STATUS(r, 201);
            htc_resp_free(&r);
            json_t *ev = read_back("someresource");
            for (char *a = attrs; *a;) {
                char *nl = strchr(a, '\n');
                char key[64], val[256];
                if (sscanf(a, "| %63s | %255[^|]", key, val) == 2 &&
                    strcmp(key, "key") != 0) {
                    size_t vlen = strlen(val);
                    while (vlen && val[vlen - 1] == ' ')
                        val[--vlen] = '\0';
                    char *vp = strstr(val, "<contentType>");
                    expect_attr(ev, key, vp ? value : val);
                }
                a = nl ? nl + 1 : a + strlen(a);
            }
            expect_data(ev, data);
            json_decref(ev);
            runs++;
        }
    }
    fclose(f);
    return runs;
}

static void test_upstream_feature_file(void **state)
{
    (void)state;
    char path[1024];
    const char *dir = getenv("EDDY_TESTDATA_DIR"); /* overrides the build's */
    snprintf(path, sizeof path,
             "%s/cloudevents/conformance/features/http-protocol-binding.feature",
             dir && *dir ? dir : EDDY_TESTDATA_DIR);
    struct stat st;
    if (stat(path, &st) != 0) {
        print_message("(upstream %s absent: the scenarios above are the "
                      "project's own copy)\n", path);
        return;
    }
    int runs = run_feature_file(path);
    print_message("ran %d scenario examples from %s\n", runs, path);
    assert_int_equal(runs, 4);
}

/* ---- 2. the rest of the binding: binary mode -------------------------------- */

/* POSTs `body` with header lines `headers` to /streams/`stream`. */
static htc_resp post(const char *stream, const char *headers, const char *body)
{
    char path[256], hdrs[4096];
    snprintf(path, sizeof path, "/streams/%s", stream);
    snprintf(hdrs, sizeof hdrs, AUTH_WRITE "%s", headers);
    return hfx_req(F.port, "POST", path, hdrs, body);
}

#define CE_MIN                                                                 \
    "ce-specversion: 1.0\r\nce-id: e1\r\nce-source: /test\r\n"                 \
    "ce-type: com.example.t\r\n"

/* The conformance suite's v1.yaml event, binary mode: extensions are
 * strings, transport headers ignored, mixed-case ce- names accepted. */
static void test_binary_extensions(void **state)
{
    (void)state;
    htc_resp r = post("s", "Ce-Specversion: 1.0\r\nCE-Type: com.example.someevent\r\n"
                           "ce-time: 2018-04-05T03:56:24Z\r\nce-id: 4321-4321-4321\r\n"
                           "ce-source: /mycontext/subcontext\r\n"
                           "ce-comexampleextension1: value\r\n"
                           "ce-comexampleextension2: {\"othervalue\": 5}\r\n"
                           "User-Agent: foo\r\nContent-Type: application/json\r\n",
                      "{\"world\":\"hello\"}");
    HFX_STATUS(r, 201);
    char loc[256];
    assert_true(htc_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/events/4321-4321-4321");
    htc_resp_free(&r);
    json_t *ev = read_back("s");
    expect_attr(ev, "type", "com.example.someevent");
    expect_attr(ev, "comexampleextension1", "value");
    expect_attr(ev, "comexampleextension2", "{\"othervalue\": 5}");
    assert_null(json_object_get(ev, "user-agent"));
    expect_data(ev, "{\"world\":\"hello\"}");
    json_decref(ev);
}

static void test_binary_percent_encoding(void **state)
{
    (void)state;
    htc_resp r = post("s", CE_MIN "ce-subject: caf%C3%A9 %22x%22 100%25\r\n",
                      NULL);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    json_t *ev = read_back("s");
    expect_attr(ev, "subject", "caf\xc3\xa9 \"x\" 100%");
    assert_null(json_object_get(ev, "data")); /* no body: no data */
    json_decref(ev);

    r = post("t", CE_MIN "ce-subject: 100%zz\r\n", NULL);
    HFX_STATUS(r, 400);
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "attribute"), "subject");
    HFX_HAS(hfx_str(j, "message"), "percent-encoding");
    json_decref(j);
    htc_resp_free(&r);
}

static void test_binary_text_and_bytes(void **state)
{
    (void)state;
    htc_resp r = post("text", CE_MIN "Content-Type: text/plain; charset=utf-8\r\n",
                      "hello, w\xc3\xb6rld");
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    json_t *ev = read_back("text");
    assert_string_equal(json_string_value(json_object_get(ev, "data")),
                        "hello, w\xc3\xb6rld");
    expect_attr(ev, "datacontenttype", "text/plain; charset=utf-8");
    json_decref(ev);

    r = post("bytes", "ce-specversion: 1.0\r\nce-id: e2\r\nce-source: /test\r\n"
                      "ce-type: com.example.t\r\n"
                      "Content-Type: application/octet-stream\r\n",
             "\x01\x02\x03\xff");
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    ev = read_back("bytes");
    expect_attr(ev, "data_base64", "AQID/w==");
    assert_null(json_object_get(ev, "data"));
    json_decref(ev);
}

/* Each way to get binary mode wrong is a 400 naming the attribute. */
static void test_binary_errors(void **state)
{
    (void)state;
    static const struct {
        const char *headers, *body, *attribute, *text;
    } cases[] = {
        {"ce-id: x\r\nce-source: /s\r\nce-type: t\r\n", NULL, "specversion",
         "specversion: required attribute missing"},
        {"ce-specversion: 0.3\r\nce-id: x\r\nce-source: /s\r\nce-type: t\r\n",
         NULL, "specversion", "must be \"1.0\""},
        {"ce-specversion: 1.0\r\nce-source: /s\r\nce-type: t\r\n", NULL, "id",
         "id"},
        {CE_MIN "ce-time: yesterday\r\n", NULL, "time", "RFC 3339"},
        {CE_MIN "Content-Type: application/json\r\n", "{\"a\": ", "data",
         "not valid JSON"},
        {CE_MIN "ce-datacontenttype: application/json\r\n", NULL,
         "datacontenttype", "Content-Type header"},
        {CE_MIN "ce-data: 1\r\n", NULL, "data", "request body"},
        {CE_MIN "ce-Bad_Name: 1\r\n", NULL, "bad_name", "bad_name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        htc_resp r = post("s", cases[i].headers, cases[i].body);
        if (r.status != 400)
            fail_msg("case %zu: status %d: %s", i, r.status, r.body);
        json_t *j = hfx_json(&r);
        assert_string_equal(hfx_str(j, "attribute"), cases[i].attribute);
        HFX_HAS(hfx_str(j, "message"), cases[i].text);
        json_decref(j);
        htc_resp_free(&r);
    }
    /* nothing was stored */
    htc_resp r = hfx_req(F.port, "GET", "/streams/s", AUTH_READ, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);
}

/* ---- structured mode ------------------------------------------------------------ */

static void test_structured_errors(void **state)
{
    (void)state;
    static const char *const ct = "Content-Type: application/cloudevents+json\r\n";
    htc_resp r = post("s", ct, "{\"specversion\": \"1.0\", ");
    HFX_STATUS(r, 400);
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "error"), "malformed");
    HFX_HAS(hfx_str(j, "message"), "line 1");
    json_decref(j);
    htc_resp_free(&r);

    r = post("s", ct, "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\","
                      "\"type\":\"t\",\"dataschema\":\"not a uri\"}");
    HFX_STATUS(r, 400);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "attribute"), "dataschema");
    json_decref(j);
    htc_resp_free(&r);

    r = post("s", ct, "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\","
                      "\"type\":\"t\",\"Ext\":\"x\"}");
    HFX_STATUS(r, 400);
    j = hfx_json(&r);
    HFX_HAS(hfx_str(j, "message"), "Ext");
    json_decref(j);
    htc_resp_free(&r);

    /* the JSON format is read in UTF-8 only */
    r = post("s", "Content-Type: application/cloudevents+json; charset=latin1\r\n",
             "{}");
    HFX_STATUS(r, 415);
    htc_resp_free(&r);
}

/* ---- batched mode ------------------------------------------------------------------ */

static void test_batch(void **state)
{
    (void)state;
    static const char *const ct =
        "Content-Type: application/cloudevents-batch+json\r\n";
    htc_resp r = post("order-1", ct,
                      "[{\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"/s\",\"type\":\"a\"},"
                      " {\"specversion\":\"1.0\",\"id\":\"b2\",\"source\":\"/s\",\"type\":\"b\","
                      "\"data\":{\"n\":2}},"
                      " {\"specversion\":\"1.0\",\"id\":\"b3\",\"source\":\"/s\",\"type\":\"c\"}]");
    HFX_STATUS(r, 201);
    json_t *j = hfx_json(&r);
    json_t *evs = json_object_get(j, "events");
    assert_int_equal(json_array_size(evs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(evs, i);
        assert_int_equal(json_integer_value(json_object_get(e, "position")),
                         (json_int_t)i + 1);
        assert_int_equal(json_integer_value(json_object_get(e, "version")),
                         (json_int_t)i + 1);
    }
    assert_int_equal(json_integer_value(json_object_get(j, "stream_version")), 3);
    json_decref(j);
    htc_resp_free(&r);

    /* all or nothing: element 1 has no id; the reply names it, nothing is
     * stored */
    r = post("order-2", ct,
             "[{\"specversion\":\"1.0\",\"id\":\"c1\",\"source\":\"/s\",\"type\":\"a\"},"
             " {\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"b\"}]");
    HFX_STATUS(r, 400);
    j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "index")), 1);
    assert_string_equal(hfx_str(j, "attribute"), "id");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/streams/order-2", AUTH_READ, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);

    /* a batch that is not an array */
    r = post("order-2", ct, "{}");
    HFX_STATUS(r, 400);
    htc_resp_free(&r);

    /* an empty batch appends nothing */
    r = post("order-3", ct, "[]");
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
    htc_resp_free(&r);
}

/* ---- 415 --------------------------------------------------------------------------- */

static void test_unsupported_media(void **state)
{
    (void)state;
    htc_resp r = post("s", "Content-Type: application/cloudevents+xml\r\n", "<e/>");
    HFX_STATUS(r, 415);
    json_t *j = hfx_json(&r);
    HFX_HAS(hfx_str(j, "message"), "application/cloudevents+xml");
    json_decref(j);
    htc_resp_free(&r);

    r = post("s", "Content-Type: text/plain\r\n", "hello");
    HFX_STATUS(r, 415);
    j = hfx_json(&r);
    HFX_HAS(hfx_str(j, "message"), "no ce-* headers");
    json_decref(j);
    htc_resp_free(&r);

    r = post("s", "", "hello");
    HFX_STATUS(r, 415);
    htc_resp_free(&r);
}

/* ---- expected versions --------------------------------------------------------------- */

static void test_expected_version(void **state)
{
    (void)state;
    htc_resp r = post("acct", CE_MIN "Eddy-Expected-Version: no-stream\r\n", NULL);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = post("acct", "ce-specversion: 1.0\r\nce-id: e2\r\nce-source: /t\r\n"
                     "ce-type: t\r\nEddy-Expected-Version: 1\r\n", NULL);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = post("acct", "ce-specversion: 1.0\r\nce-id: e3\r\nce-source: /t\r\n"
                     "ce-type: t\r\nEddy-Expected-Version: 1\r\n", NULL);
    HFX_STATUS(r, 409);
    json_t *j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "expected")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "actual")), 2);
    assert_string_equal(hfx_str(j, "stream"), "acct");
    HFX_HAS(hfx_str(j, "message"), "expected version 1, actual 2");
    json_decref(j);
    htc_resp_free(&r);
    r = post("acct", "ce-specversion: 1.0\r\nce-id: e4\r\nce-source: /t\r\n"
                     "ce-type: t\r\nEddy-Expected-Version: soon\r\n", NULL);
    HFX_STATUS(r, 400);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "header"), "Eddy-Expected-Version");
    json_decref(j);
    htc_resp_free(&r);
}

/* ---- the web-hook handshake --------------------------------------------------------- */

static void test_webhook_handshake(void **state)
{
    (void)state;
    /* any origin by default; the rate asked for is granted */
    htc_resp r = hfx_req(F.port, "OPTIONS", "/streams/hooks",
                         AUTH_WRITE "WebHook-Request-Origin: eventemitter.example.com\r\n"
                                    "WebHook-Request-Rate: 120\r\n",
                         NULL);
    HFX_STATUS(r, 200);
    char v[256];
    assert_true(htc_header(&r, "WebHook-Allowed-Origin", v, sizeof v));
    assert_string_equal(v, "eventemitter.example.com");
    assert_true(htc_header(&r, "WebHook-Allowed-Rate", v, sizeof v));
    assert_string_equal(v, "120");
    assert_true(htc_header(&r, "Allow", v, sizeof v));
    HFX_HAS(v, "POST");
    htc_resp_free(&r);
    /* a plain OPTIONS lists the methods */
    r = hfx_req(F.port, "OPTIONS", "/streams/hooks", AUTH_WRITE, NULL);
    HFX_STATUS(r, 204);
    assert_true(htc_header(&r, "Allow", v, sizeof v));
    htc_resp_free(&r);
    /* the handshake grants permission to deliver: it needs a write token */
    r = hfx_req(F.port, "OPTIONS", "/streams/hooks",
                "WebHook-Request-Origin: eventemitter.example.com\r\n", NULL);
    HFX_STATUS(r, 401);
    htc_resp_free(&r);

    /* with an allow-list and a rate */
    eddy_http_server_free(F.srv);
    const char *origins[] = {"trusted.example.com"};
    eddy_http_options ho = {.webhook_origins = origins,
                            .webhook_origin_count = 1, .webhook_rate = 60};
    hfx_serve(&F, &ho, false);
    r = hfx_req(F.port, "OPTIONS", "/streams/hooks",
                AUTH_WRITE "WebHook-Request-Origin: Trusted.Example.com\r\n", NULL);
    HFX_STATUS(r, 200);
    assert_true(htc_header(&r, "WebHook-Allowed-Rate", v, sizeof v));
    assert_string_equal(v, "60");
    htc_resp_free(&r);
    r = hfx_req(F.port, "OPTIONS", "/streams/hooks",
                AUTH_WRITE "WebHook-Request-Origin: evil.example.com\r\n"
                           "WebHook-Request-Rate: 1000\r\n",
                NULL);
    HFX_STATUS(r, 403);
    assert_false(htc_header(&r, "WebHook-Allowed-Origin", v, sizeof v));
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "origin"), "evil.example.com");
    json_decref(j);
    htc_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scenario_binary_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scenario_binary_json_charset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scenario_structured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scenario_structured_charset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upstream_feature_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_percent_encoding, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_binary_text_and_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structured_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_media, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expected_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_handshake, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
