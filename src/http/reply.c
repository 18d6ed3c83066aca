/*
 * src/http/reply.c - replies (JSON bodies, errors that name the problem),
 * query parameters and the small helpers every handler uses.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "http/http_internal.h"

#define MAX_LIST_ITEMS 64

void eddyi_count_status(eddyi_listener *l, unsigned status)
{
    size_t i;
    switch (status) {
#define EDDYI_CODE_CASE_(c)                                                    \
    case c: i = EDDYI_CODE_##c; break;
        EDDYI_HTTP_CODES(EDDYI_CODE_CASE_)
#undef EDDYI_CODE_CASE_
    default: i = EDDYI_CODE_OTHER; break;
    }
    atomic_fetch_add_explicit(&l->responses[i], 1, memory_order_relaxed);
}

enum MHD_Result eddyi_reply(eddyi_req *r, unsigned status, const char *type,
                            char *body, size_t len, const char *const *headers,
                            size_t nh)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body ? body : "", body ? MHD_RESPMEM_MUST_FREE
                                    : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    bool has_cache = false;
    for (size_t i = 0; i + 1 < nh * 2; i += 2) {
        MHD_add_response_header(resp, headers[i], headers[i + 1]);
        if (strcasecmp(headers[i], MHD_HTTP_HEADER_CACHE_CONTROL) == 0)
            has_cache = true;
    }
    if (!has_cache)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-store");
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        r->answered = true;
        eddyi_count_status(r->l, status);
    }
    return ok;
}

enum MHD_Result eddyi_reply_json(eddyi_req *r, unsigned status, json_t *obj,
                                 const char *const *headers, size_t nh)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(obj);
    if (!text) {
        static char oom[] = "{\"status\":500,\"error\":\"internal\","
                            "\"message\":\"out of memory\"}";
        return eddyi_reply(r, 500, "application/json", strdup(oom),
                           sizeof oom - 1, NULL, 0);
    }
    size_t len = strlen(text);
    /* a newline ends the body, for people reading it with curl */
    char *nl = realloc(text, len + 2);
    if (nl) {
        text = nl;
        text[len++] = '\n';
        text[len] = '\0';
    }
    return eddyi_reply(r, status, "application/json", text, len, headers, nh);
}

enum MHD_Result eddyi_reply_error(eddyi_req *r, unsigned status,
                                  const char *error, json_t *extra,
                                  const char *fmt, ...)
{
    char message[EDDY_ERROR_MESSAGE_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:i, s:s, s:s}", "status", (int)status, "error",
                          error, "message", message);
    if (o && extra)
        json_object_update(o, extra);
    json_decref(extra);
    const char *headers[4];
    size_t nh = 0;
    if (status == 401) {
        headers[0] = "WWW-Authenticate";
        headers[1] = "Bearer realm=\"eddy\"";
        nh = 1;
    } else if (status == 429 || status == 503) {
        headers[0] = MHD_HTTP_HEADER_RETRY_AFTER;
        headers[1] = "1";
        nh = 1;
    }
    if (status == 413 || status == 408) {
        headers[nh * 2] = MHD_HTTP_HEADER_CONNECTION;
        headers[nh * 2 + 1] = "close";
        nh++;
    }
    return eddyi_reply_json(r, status, o, headers, nh);
}

unsigned eddyi_status_of(int code)
{
    switch (code) {
    case EDDY_OK: return 200;
    case EDDY_EINVAL:
    case EDDY_EPARSE:
    case EDDY_ESCHEMA: return 400;
    case EDDY_ENOTFOUND: return 404;
    case EDDY_ECONFLICT:
    case EDDY_EDUPLICATE:
    case EDDY_EEXIST: return 409;
    case EDDY_ETOOBIG: return 413;
    case EDDY_EFULL: return 429;
    case EDDY_EBUSY:
    case EDDY_ESTATE:
    case EDDY_ESTOPPED:
    case EDDY_ETIMEDOUT: return 503;
    case EDDY_EUNSUPPORTED: return 501;
    default: return 500;
    }
}

const char *eddyi_error_token(int code)
{
    switch (code) {
    case EDDY_EINVAL: return "invalid";
    case EDDY_EPARSE: return "malformed";
    case EDDY_ESCHEMA: return "schema";
    case EDDY_ENOTFOUND: return "not_found";
    case EDDY_ECONFLICT: return "conflict";
    case EDDY_EDUPLICATE: return "duplicate";
    case EDDY_EEXIST: return "exists";
    case EDDY_ETOOBIG: return "too_large";
    case EDDY_EFULL: return "busy";
    case EDDY_EBUSY: return "busy";
    case EDDY_ESTATE: return "unavailable";
    case EDDY_ESTOPPED: return "unavailable";
    case EDDY_ETIMEDOUT: return "timeout";
    case EDDY_EUNSUPPORTED: return "unsupported";
    default: return "internal";
    }
}

const char *eddyi_arg(eddyi_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *eddyi_header(eddyi_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

bool eddyi_arg_int(eddyi_req *r, const char *name, int64_t min, int64_t max,
                   int64_t *out)
{
    const char *v = eddyi_arg(r, name);
    if (!v)
        return true;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        eddyi_reply_error(r, 400, "invalid_parameter",
                          json_pack("{s:s}", "parameter", name),
                          "query parameter %s: expected an integer from "
                          "%" PRId64 " to %" PRId64 ", got \"%.64s\"",
                          name, min, max, v);
        return false;
    }
    *out = n;
    return true;
}

bool eddyi_arg_time(eddyi_req *r, const char *name, int64_t *out_us)
{
    const char *v = eddyi_arg(r, name);
    if (!v)
        return true;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!errno && end != v && !*end && n >= 0) {
        *out_us = n;
        return true;
    }
    if (eddy_time_parse(v, out_us) == EDDY_OK)
        return true;
    eddyi_reply_error(r, 400, "invalid_parameter",
                      json_pack("{s:s}", "parameter", name),
                      "query parameter %s: expected an RFC 3339 time "
                      "(2024-05-01T12:00:00Z) or microseconds since the "
                      "epoch, got \"%.64s\"",
                      name, v);
    return false;
}

void eddyi_strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

struct list_ctx {
    const char *name;
    char **items;
    size_t n;
    int failure; /* 0, EDDY_EINVAL (too many / empty), EDDY_ENOMEM */
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
    (void)kind;
    struct list_ctx *c = cls;
    if (strcmp(key, c->name) != 0)
        return MHD_YES;
    if (!value || !*value) {
        c->failure = EDDY_EINVAL;
        return MHD_NO;
    }
    for (const char *p = value; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || c->n == MAX_LIST_ITEMS) {
            c->failure = EDDY_EINVAL;
            return MHD_NO;
        }
        char *item = strndup(p, len);
        if (!item) {
            c->failure = EDDY_ENOMEM;
            return MHD_NO;
        }
        c->items[c->n++] = item;
        p += len;
        if (*p == ',')
            p++;
    }
    return MHD_YES;
}

bool eddyi_arg_list(eddyi_req *r, const char *name, char ***out,
                    size_t *count)
{
    struct list_ctx c = {.name = name};
    *out = NULL;
    *count = 0;
    c.items = calloc(MAX_LIST_ITEMS + 1, sizeof *c.items);
    if (!c.items) {
        eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
        return false;
    }
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect, &c);
    if (c.failure) {
        eddyi_strv_free(c.items, c.n);
        if (c.failure == EDDY_ENOMEM)
            eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
        else
            eddyi_reply_error(r, 400, "invalid_parameter",
                              json_pack("{s:s}", "parameter", name),
                              "query parameter %s: empty value, or more than "
                              "%d values",
                              name, MAX_LIST_ITEMS);
        return false;
    }
    *out = c.items;
    *count = c.n;
    return true;
}

json_t *eddyi_record_json(const eddy_record *rec)
{
    char when[EDDY_TIME_STRLEN];
    eddy_time_format(rec->recorded_us, when, sizeof when);
    json_t *ev = eddy_event_to_json(rec->event);
    if (!ev)
        return NULL;
    return json_pack("{s:I, s:s, s:I, s:s, s:o}", "position",
                     (json_int_t)rec->position, "stream", rec->stream_id,
                     "version", (json_int_t)rec->stream_version, "recorded",
                     when, "event", ev);
}

bool eddyi_type_matches(char *const *patterns, size_t n, const char *type)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        const char *p = patterns[i];
        size_t len = strlen(p);
        if (strcmp(p, "*") == 0 || strcmp(p, type) == 0)
            return true;
        if (len >= 2 && p[len - 1] == '*' && p[len - 2] == '.' &&
            strncmp(p, type, len - 1) == 0 && type[len - 1] != '\0')
            return true;
    }
    return false;
}
