/*
 * src/http/ingest.c - POST /streams/{stream}: the CloudEvents HTTP protocol
 * binding (binary, structured and batched content modes) and the append;
 * OPTIONS: the web-hook abuse-protection handshake.
 *
 * MODES (CloudEvents HTTP protocol binding 1.0, section 3):
 *   structured  Content-Type application/cloudevents+json[; charset=utf-8]:
 *               the body is one event in the JSON format;
 *   batched     Content-Type application/cloudevents-batch+json: a JSON
 *               array of events, appended in ONE append (all or nothing);
 *   binary      any other Content-Type with ce-* headers: each ce-NAME
 *               header is attribute NAME (percent-decoded, names
 *               case-insensitive), Content-Type is datacontenttype and the
 *               body is the data: JSON for a JSON media type
 *               (application/json, text/json, any type ending in +json;
 *               malformed JSON is a 400), a string for a text type in
 *               UTF-8, data_base64 otherwise.
 * Another cloudevents format (…+avro, …+protobuf) or a body without ce-*
 * headers is 415.
 *
 * Every attribute rule is the JSON decoder's (eddy_event_from_json), so a
 * bad header gets the same message as the same bad JSON attribute, and the
 * reply names it in "attribute" (and "index" in a batch).
 *
 * THE APPEND. The events go to eddy_store_append_async while the connection
 * is suspended; the completion (on the store's writer thread) records the
 * outcome and resumes the connection, whose handler is then called again to
 * answer. No thread waits for the commit. At most max_pending_appends wait
 * at once: one more is answered 429 with Retry-After.
 *
 * IDEMPOTENCE. The store skips an event already stored with the same id
 * and content; when every event of a request was already stored it returns
 * their original positions. Those positions are at or below the head read
 * just before the append (a new append's are above it), which tells a
 * replay (200, "duplicate": true) from a new append (201).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "http/http_internal.h"

enum { MODE_BINARY = 1, MODE_STRUCTURED, MODE_BATCH };

#define HDR_EXPECTED "Eddy-Expected-Version"

/* ---- content types ---------------------------------------------------------- */

/* Length of the media type of `ct` (before ';', trailing blanks cut). */
static size_t media_len(const char *ct)
{
    size_t len = strcspn(ct, ";");
    while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    return len;
}

static bool media_is(const char *ct, const char *type)
{
    size_t len = media_len(ct);
    return len == strlen(type) && strncasecmp(ct, type, len) == 0;
}

static bool is_json_media(const char *ct)
{
    size_t len = media_len(ct);
    if (media_is(ct, "application/json") || media_is(ct, "text/json"))
        return true;
    return len > 5 && strncasecmp(ct + len - 5, "+json", 5) == 0;
}

/* True when the charset parameter, if any, is UTF-8 (or US-ASCII). */
static bool charset_ok(const char *ct)
{
    const char *p = strchr(ct, ';');
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "charset=", 8) == 0) {
            const char *v = p + 8;
            if (*v == '"')
                v++;
            return strncasecmp(v, "utf-8", 5) == 0 ||
                   strncasecmp(v, "utf8", 4) == 0 ||
                   strncasecmp(v, "us-ascii", 8) == 0;
        }
        p = strchr(p, ';');
    }
    return true;
}

struct has_ce {
    bool found;
};

static enum MHD_Result find_ce(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
    (void)kind;
    (void)value;
    struct has_ce *h = cls;
    if (strncasecmp(key, "ce-", 3) == 0) {
        h->found = true;
        return MHD_NO;
    }
    return MHD_YES;
}

/* ---- the expected version --------------------------------------------------- */

static bool parse_expected(const char *v, int64_t *out)
{
    if (!v || strcasecmp(v, "any") == 0) {
        *out = EDDY_EXPECT_ANY;
        return true;
    }
    if (strcasecmp(v, "no-stream") == 0) {
        *out = EDDY_EXPECT_NO_STREAM;
        return true;
    }
    if (strcasecmp(v, "exists") == 0) {
        *out = EDDY_EXPECT_EXISTS;
        return true;
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || n < 0)
        return false;
    *out = n;
    return true;
}

enum MHD_Result eddyi_ingest_begin(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    const char *cl = eddyi_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && !*end && n > srv->max_body) {
            r->too_big = true;
            return eddyi_reply_error(
                r, 413, "too_large",
                json_pack("{s:I, s:I}", "limit", (json_int_t)srv->max_body,
                          "content_length", (json_int_t)n),
                "the request body (Content-Length %llu) exceeds the limit of "
                "%zu bytes (--max-body)",
                n, srv->max_body);
        }
    }
    const char *ct = eddyi_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && strncasecmp(ct, "application/cloudevents", 23) == 0) {
        if (media_is(ct, "application/cloudevents+json"))
            r->mode = MODE_STRUCTURED;
        else if (media_is(ct, "application/cloudevents-batch+json"))
            r->mode = MODE_BATCH;
        else
            return eddyi_reply_error(
                r, 415, "unsupported_media_type",
                json_pack("{s:s}", "content_type", ct),
                "Content-Type %.*s: eddy reads the CloudEvents JSON format "
                "only (application/cloudevents+json, "
                "application/cloudevents-batch+json, or binary mode)",
                (int)media_len(ct), ct);
        if (!charset_ok(ct))
            return eddyi_reply_error(
                r, 415, "unsupported_media_type",
                json_pack("{s:s}", "content_type", ct),
                "Content-Type %s: the JSON format is read in UTF-8 only", ct);
    } else {
        struct has_ce h = {false};
        MHD_get_connection_values(r->conn, MHD_HEADER_KIND, find_ce, &h);
        if (!h.found)
            return eddyi_reply_error(
                r, 415, "unsupported_media_type",
                ct ? json_pack("{s:s}", "content_type", ct) : NULL,
                "not a CloudEvent: no ce-* headers (binary mode) and "
                "Content-Type %s is neither application/cloudevents+json "
                "nor application/cloudevents-batch+json",
                ct ? ct : "(none)");
        r->mode = MODE_BINARY;
    }
    const char *ev = eddyi_header(r, HDR_EXPECTED);
    if (!parse_expected(ev, &r->expected))
        return eddyi_reply_error(
            r, 400, "invalid_header",
            json_pack("{s:s}", "header", HDR_EXPECTED),
            HDR_EXPECTED ": expected a stream version (0, 1, 2, ...), "
            "\"any\", \"no-stream\" or \"exists\", got \"%.64s\"",
            ev);
    return MHD_YES;
}

/* ---- binary mode ------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes `v` into a new string; NULL on a bad escape or a NUL. */
static char *pct_decode(const char *v, bool *bad)
{
    size_t len = strlen(v);
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (c == '%') {
            int h = i + 2 < len ? hexval(v[i + 1]) : -1;
            int l = h >= 0 ? hexval(v[i + 2]) : -1;
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                *bad = true;
                return NULL;
            }
            c = (char)(h << 4 | l);
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const unsigned char *in, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

struct binary_ctx {
    json_t *obj;
    char problem[256];
    const char *attribute; /* the attribute the problem is about */
    char attr_buf[64];
    bool oom;
};

static enum MHD_Result collect_ce(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value)
{
    (void)kind;
    struct binary_ctx *b = cls;
    if (strncasecmp(key, "ce-", 3) != 0)
        return MHD_YES;
    const char *name = key + 3;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen >= sizeof b->attr_buf) {
        snprintf(b->problem, sizeof b->problem,
                 "header %.80s: not a CloudEvents attribute name", key);
        return MHD_NO;
    }
    for (size_t i = 0; i <= nlen; i++) {
        char c = name[i];
        b->attr_buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    b->attribute = b->attr_buf;
    if (strcmp(b->attr_buf, "data") == 0 ||
        strcmp(b->attr_buf, "data_base64") == 0 ||
        strcmp(b->attr_buf, "datacontenttype") == 0) {
        snprintf(b->problem, sizeof b->problem,
                 "%s: in binary mode %s", b->attr_buf,
                 b->attr_buf[4] == 'c'
                     ? "the data's content type is the Content-Type header, "
                       "not ce-datacontenttype"
                     : "the data is the request body, not a header");
        return MHD_NO;
    }
    if (json_object_get(b->obj, b->attr_buf)) {
        snprintf(b->problem, sizeof b->problem,
                 "%s: header ce-%s given more than once", b->attr_buf,
                 b->attr_buf);
        return MHD_NO;
    }
    bool bad = false;
    char *text = pct_decode(value ? value : "", &bad);
    if (!text) {
        if (bad)
            snprintf(b->problem, sizeof b->problem,
                     "%s: bad percent-encoding (or an encoded NUL) in header "
                     "ce-%s",
                     b->attr_buf, b->attr_buf);
        else
            b->oom = true;
        return MHD_NO;
    }
    json_t *s = json_string(text);
    free(text);
    if (!s) {
        snprintf(b->problem, sizeof b->problem,
                 "%s: header ce-%s is not valid UTF-8 once percent-decoded",
                 b->attr_buf, b->attr_buf);
        return MHD_NO;
    }
    if (json_object_set_new(b->obj, b->attr_buf, s) != 0) {
        b->oom = true;
        return MHD_NO;
    }
    b->attribute = NULL;
    return MHD_YES;
}

/* Builds the event of a binary-mode request; NULL after queueing the
 * error reply. */
static eddy_event *decode_binary(eddyi_req *r)
{
    struct binary_ctx b = {.obj = json_object()};
    if (!b.obj) {
        eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_ce, &b);
    eddy_event *ev = NULL;
    if (b.oom) {
        eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
        goto out;
    }
    if (b.problem[0]) {
        eddyi_reply_error(r, 400, "invalid_event",
                          b.attribute ? json_pack("{s:s}", "attribute",
                                                  b.attribute)
                                      : NULL,
                          "%s", b.problem);
        goto out;
    }
    const char *ct = eddyi_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && json_object_set_new(b.obj, "datacontenttype", json_string(ct))) {
        eddyi_reply_error(r, 400, "invalid_event",
                          json_pack("{s:s}", "attribute", "datacontenttype"),
                          "datacontenttype: the Content-Type header is not "
                          "valid UTF-8");
        goto out;
    }
    if (r->len > 0) {
        json_t *data = NULL;
        bool json_ct = ct && is_json_media(ct);
        if (json_ct || !ct) {
            json_error_t jerr;
            data = json_loadb(r->body, r->len,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
                                  JSON_ALLOW_NUL,
                              &jerr);
            if (!data && json_ct) {
                eddyi_reply_error(
                    r, 400, "invalid_event",
                    json_pack("{s:s}", "attribute", "data"),
                    "data: the body is not valid JSON (Content-Type %s): %s "
                    "at line %d, column %d",
                    ct, jerr.text, jerr.line, jerr.column);
                goto out;
            }
        } else if (strncasecmp(ct, "text/", 5) == 0 && charset_ok(ct) &&
                   eddyi_utf8_valid(r->body, r->len)) {
            data = json_stringn(r->body, r->len);
        }
        int rc;
        if (data) {
            rc = json_object_set_new(b.obj, "data", data);
        } else {
            char *enc = base64((const unsigned char *)r->body, r->len);
            rc = enc ? json_object_set_new(b.obj, "data_base64",
                                           json_string(enc))
                     : -1;
            free(enc);
        }
        if (rc != 0) {
            eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
            goto out;
        }
    }
    eddy_error e = {0};
    ev = eddy_event_from_json(b.obj, &e);
    if (!ev) {
        char attr[64] = "";
        size_t alen = strcspn(e.message, ":");
        if (e.message[alen] == ':' && alen < sizeof attr)
            snprintf(attr, sizeof attr, "%.*s", (int)alen, e.message);
        eddyi_reply_error(r, eddyi_status_of(e.code), "invalid_event",
                          attr[0] ? json_pack("{s:s, s:s}", "attribute", attr,
                                              "header", attr)
                                  : NULL,
                          "%s (binary mode: header ce-%s)", e.message,
                          attr[0] ? attr : "...");
    }
out:
    json_decref(b.obj);
    return ev;
}

/* ---- structured and batched modes ------------------------------------------- */

/* The attribute named at the start of a decoder message ("time: ..."), or
 * "" when the message does not start with one. */
static void message_attribute(const char *msg, char *attr, size_t size)
{
    size_t len = 0;
    while (msg[len] && ((msg[len] >= 'a' && msg[len] <= 'z') ||
                        (msg[len] >= '0' && msg[len] <= '9') ||
                        msg[len] == '_'))
        len++;
    if (len > 0 && msg[len] == ':' && len < size)
        snprintf(attr, size, "%.*s", (int)len, msg);
    else if (size)
        attr[0] = '\0';
}

static void decode_error_reply(eddyi_req *r, const eddy_error *e)
{
    const char *msg = e->message;
    json_t *extra = json_object();
    long index = -1;
    if (msg[0] == '[') { /* "[2] time: ..." from the batch decoder */
        char *end = NULL;
        index = strtol(msg + 1, &end, 10);
        if (end && end[0] == ']' && end[1] == ' ')
            msg = end + 2;
        else
            index = -1;
    }
    char attr[64];
    message_attribute(msg, attr, sizeof attr);
    if (extra && index >= 0)
        json_object_set_new(extra, "index", json_integer(index));
    if (extra && attr[0] && e->code != EDDY_EPARSE)
        json_object_set_new(extra, "attribute", json_string(attr));
    eddyi_reply_error(r, 400,
                      e->code == EDDY_EPARSE ? "malformed" : "invalid_event",
                      extra, "%s", e->message);
}

/* ---- schemas ------------------------------------------------------------------ */

struct first_error {
    char path[256];
    char keyword[64];
    bool set;
};

static int keep_first(const char *path, const char *keyword,
                      const char *message, void *user)
{
    (void)message;
    struct first_error *f = user;
    snprintf(f->path, sizeof f->path, "%s", *path ? path : "(root)");
    snprintf(f->keyword, sizeof f->keyword, "%s", keyword);
    f->set = true;
    return 1;
}

/* Validates the events against srv->schemas; queues a 400 naming the
 * event, its index and the failing schema path and returns false when one
 * fails. */
static bool validate(eddyi_req *r)
{
    const eddy_schema_registry *reg = r->l->srv->schemas;
    if (!reg)
        return true;
    for (size_t i = 0; i < r->count; i++) {
        const eddy_event *ev = r->events[i];
        const char *type = eddy_event_type(ev);
        if (!(eddy_schema_registry_policy(reg, type) & EDDY_VALIDATE_ON_APPEND))
            continue;
        eddy_error e = {0};
        if (eddy_schema_registry_validate_event(reg, ev, &e) == EDDY_OK)
            continue;
        struct first_error f = {0};
        const char *version = eddy_event_dataversion(ev);
        const eddy_schema *schema =
            version ? eddy_schema_registry_get(reg, type, version) : NULL;
        const json_t *data = eddy_event_data(ev);
        json_t *null = NULL;
        if (schema) {
            if (!data)
                data = null = json_null();
            eddy_schema_validate_all(schema, data, keep_first, &f, NULL, NULL);
        }
        json_t *extra = json_pack("{s:I, s:s, s:s, s:s?}", "index",
                                  (json_int_t)i, "id", eddy_event_id(ev),
                                  "type", type, "dataversion", version);
        if (extra && f.set) {
            json_object_set_new(extra, "path", json_string(f.path));
            json_object_set_new(extra, "keyword", json_string(f.keyword));
        }
        json_decref(null);
        eddyi_reply_error(r, 400, "schema", extra, "event %s: %s",
                          eddy_event_id(ev), e.message);
        return false;
    }
    return true;
}

/* ---- the append --------------------------------------------------------------- */

void eddyi_ingest_clear(eddyi_req *r)
{
    eddy_event_array_free(r->events, r->count);
    r->events = NULL;
    r->count = 0;
}

static void append_done(int rc, const eddy_append_result *result,
                        const eddy_error *err, void *user)
{
    eddyi_req *r = user;
    eddy_http_server *srv = r->l->srv;
    r->rc = rc;
    if (result)
        r->result = *result;
    if (err && rc != EDDY_OK && err != &r->err)
        r->err = *err;
    uint64_t dt = eddy_metrics_clock_ns() - r->t0_ns;
    for (size_t i = 0; i < r->count; i++)
        eddy_metrics_end(eddy_metrics_series_get(srv->metrics, "http",
                                                 eddy_event_type(r->events[i])),
                         rc, dt);
    /* No longer waiting for the writer: counted out before the answer can
     * leave, so a client that got it and posts again finds the room. */
    atomic_fetch_sub(&srv->pending_appends, 1);
    atomic_store_explicit(&r->append_state, EDDYI_APPEND_DONE,
                          memory_order_release);
    /* after this the request may be answered and freed at any moment */
    MHD_resume_connection(r->conn);
}

/* Percent-encodes `id` for a URL path segment into `out`. */
static void url_segment(const char *id, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p && o + 4 < size;
         p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
            *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

/* Fills one event's position and version: contiguous when the append
 * stored (or found) exactly `count` consecutive positions, else looked up
 * by id. */
static json_t *event_positions(eddyi_req *r)
{
    json_t *arr = json_array();
    const eddy_append_result *res = &r->result;
    bool contiguous = res->last_position - res->first_position + 1 ==
                      (int64_t)r->count;
    for (size_t i = 0; arr && i < r->count; i++) {
        const char *id = eddy_event_id(r->events[i]);
        int64_t pos = 0, ver = 0;
        if (contiguous) {
            pos = res->first_position + (int64_t)i;
            ver = res->stream_version - (int64_t)r->count + 1 + (int64_t)i;
        } else {
            eddy_cursor *c = NULL;
            eddy_record rec;
            if (eddy_store_read_event(r->l->srv->store, id, &c, NULL) ==
                    EDDY_OK &&
                eddy_cursor_next(c, &rec, NULL)) {
                pos = rec.position;
                ver = rec.stream_version;
            }
            eddy_cursor_free(c);
        }
        json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "id", id, "type",
                              eddy_event_type(r->events[i]), "position",
                              (json_int_t)pos, "version", (json_int_t)ver);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static enum MHD_Result answer(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    const char *stream = r->param;
    if (r->rc == EDDY_OK) {
        bool duplicate = r->result.last_position <= r->head_before;
        json_t *events = event_positions(r);
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:b, s:o*}", "stream",
                              stream, "first_position",
                              (json_int_t)r->result.first_position,
                              "last_position",
                              (json_int_t)r->result.last_position,
                              "stream_version",
                              (json_int_t)r->result.stream_version,
                              "duplicate", duplicate, "events", events);
        char loc[600];
        const char *h[2];
        size_t nh = 0;
        if (r->count == 1) {
            char seg[512];
            url_segment(eddy_event_id(r->events[0]), seg, sizeof seg);
            snprintf(loc, sizeof loc, "/events/%s", seg);
            h[0] = MHD_HTTP_HEADER_LOCATION;
            h[1] = loc;
            nh = 1;
        }
        return eddyi_reply_json(r, duplicate ? 200 : 201, o, h, nh);
    }
    const char *msg = r->err.message[0] ? r->err.message
                                        : eddy_strerror(r->rc);
    switch (r->rc) {
    case EDDY_ECONFLICT: {
        int64_t actual = 0;
        eddy_store_stream_version(srv->store, stream, &actual, NULL);
        json_t *extra = json_pack("{s:s, s:I}", "stream", stream, "actual",
                                  (json_int_t)actual);
        if (extra) {
            if (r->expected >= 0)
                json_object_set_new(extra, "expected",
                                    json_integer(r->expected));
            else
                json_object_set_new(extra, "expected",
                                    json_string(r->expected ==
                                                        EDDY_EXPECT_EXISTS
                                                    ? "exists"
                                                    : "any"));
        }
        return eddyi_reply_error(r, 409, "conflict", extra, "%s", msg);
    }
    case EDDY_EDUPLICATE:
        return eddyi_reply_error(r, 409, "duplicate",
                                 json_pack("{s:s}", "stream", stream), "%s",
                                 msg);
    case EDDY_ETOOBIG:
        return eddyi_reply_error(r, 413, "too_large", NULL, "%s", msg);
    case EDDY_ESCHEMA: {
        /* the store's check hook: "type version: /path: ..." */
        json_t *extra = json_object();
        const char *p = strstr(msg, ": /");
        const char *root = strstr(msg, ": (root)");
        if (extra && (p || root)) {
            const char *start = p ? p + 2 : root + 2;
            size_t len = strcspn(start, ":");
            json_object_set_new(extra, "path", json_stringn(start, len));
        }
        return eddyi_reply_error(r, 400, "schema", extra, "%s", msg);
    }
    case EDDY_EINVAL:
        return eddyi_reply_error(r, 400, "invalid", NULL, "%s", msg);
    default:
        return eddyi_reply_error(r, eddyi_status_of(r->rc),
                                 eddyi_error_token(r->rc), NULL, "%s", msg);
    }
}

enum MHD_Result eddyi_ingest_finish(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    int state = atomic_load_explicit(&r->append_state, memory_order_acquire);
    if (state == EDDYI_APPEND_DONE)
        return answer(r);
    if (state == EDDYI_APPEND_WAITING)
        return MHD_YES; /* not expected: the connection is suspended */

    eddy_error e = {0};
    if (r->mode == MODE_BINARY) {
        eddy_event *ev = decode_binary(r);
        if (!ev)
            return MHD_YES;
        if (!(r->events = malloc(sizeof *r->events))) {
            eddy_event_unref(ev);
            return eddyi_reply_error(r, 500, "internal", NULL,
                                     "out of memory");
        }
        r->events[0] = ev;
        r->count = 1;
    } else if (r->mode == MODE_STRUCTURED) {
        eddy_event *ev = eddy_event_decode(r->body ? r->body : "", r->len, &e);
        if (!ev) {
            decode_error_reply(r, &e);
            return MHD_YES;
        }
        if (!(r->events = malloc(sizeof *r->events))) {
            eddy_event_unref(ev);
            return eddyi_reply_error(r, 500, "internal", NULL,
                                     "out of memory");
        }
        r->events[0] = ev;
        r->count = 1;
    } else {
        if (eddy_event_decode_batch(r->body ? r->body : "", r->len, &r->events,
                                    &r->count, &e) != EDDY_OK) {
            decode_error_reply(r, &e);
            return MHD_YES;
        }
        if (r->count == 0)
            return eddyi_reply_json(
                r, 200,
                json_pack("{s:s, s:[], s:b}", "stream", r->param, "events",
                          "duplicate", 0),
                NULL, 0);
    }
    if (!validate(r))
        return MHD_YES;

    if (atomic_fetch_add(&srv->pending_appends, 1) >= srv->max_pending) {
        atomic_fetch_sub(&srv->pending_appends, 1);
        atomic_fetch_add(&srv->rejected_429, 1);
        return eddyi_reply_error(
            r, 429, "busy", json_pack("{s:I}", "limit",
                                      (json_int_t)srv->max_pending),
            "%zu appends are already waiting for the store's writer; retry "
            "later",
            srv->max_pending);
    }
    if (atomic_load(&srv->stopping)) {
        atomic_fetch_sub(&srv->pending_appends, 1);
        return eddyi_reply_error(r, 503, "unavailable", NULL,
                                 "the server is stopping");
    }
    if (eddy_store_head(srv->store, &r->head_before, &e) != EDDY_OK) {
        atomic_fetch_sub(&srv->pending_appends, 1);
        return eddyi_reply_error(r, eddyi_status_of(e.code),
                                 eddyi_error_token(e.code), NULL, "%s",
                                 e.message);
    }
    for (size_t i = 0; i < r->count; i++)
        eddy_metrics_begin(eddy_metrics_series_get(
            srv->metrics, "http", eddy_event_type(r->events[i])));
    r->t0_ns = eddy_metrics_clock_ns();
    r->unanswered = true;
    atomic_fetch_add(&srv->unanswered_appends, 1);
    atomic_store(&r->append_state, EDDYI_APPEND_WAITING);
    MHD_suspend_connection(r->conn);
    int rc = eddy_store_append_async(srv->store, r->param, r->expected,
                                     r->events, r->count, append_done, r,
                                     &r->err);
    if (rc != EDDY_OK) /* `append_done` will not run: finish here */
        append_done(rc, NULL, &r->err, r);
    return MHD_YES;
}

/* ---- OPTIONS: the web-hook handshake ------------------------------------------ */

enum MHD_Result eddyi_webhook_options(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    static const char allow[] = "GET, HEAD, POST, OPTIONS";
    const char *origin = eddyi_header(r, "WebHook-Request-Origin");
    if (!origin) {
        const char *h[] = {"Allow", allow};
        return eddyi_reply(r, 204, NULL, NULL, 0, h, 1);
    }
    bool allowed = srv->webhook_origin_count == 0;
    for (size_t i = 0; i < srv->webhook_origin_count && !allowed; i++)
        allowed = strcasecmp(srv->webhook_origins[i], origin) == 0;
    if (!allowed)
        return eddyi_reply_error(r, 403, "origin_not_allowed",
                                 json_pack("{s:s}", "origin", origin),
                                 "WebHook-Request-Origin %.200s is not in the "
                                 "server's allow-list (--webhook-origin)",
                                 origin);
    char rate[32] = "*";
    const char *asked = eddyi_header(r, "WebHook-Request-Rate");
    unsigned long want = asked ? strtoul(asked, NULL, 10) : 0;
    if (srv->webhook_rate)
        snprintf(rate, sizeof rate, "%lu",
                 want && want < srv->webhook_rate ? want
                                                  : (unsigned long)
                                                        srv->webhook_rate);
    else if (want)
        snprintf(rate, sizeof rate, "%lu", want);
    const char *h[] = {"Allow", allow, "WebHook-Allowed-Origin", origin,
                       "WebHook-Allowed-Rate", rate};
    return eddyi_reply_json(
        r, 200,
        json_pack("{s:s, s:s}", "allowed_origin", origin, "allowed_rate", rate),
        h, 3);
}
