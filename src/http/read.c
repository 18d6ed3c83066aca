/*
 * src/http/read.c - reading the store over HTTP: one stream, the global log
 * (filtered by position, type and time), one event by id.
 *
 * Every record comes as {"position", "stream", "version", "recorded",
 * "event": its CloudEvents JSON}. Lists are pages of at most `limit`
 * records (default 100, at most 1000) with "next": the `from` of the next
 * page, or null at the end; they read through the store's cursors (one
 * short read transaction a page, never blocking the writer).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "http/http_internal.h"

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000

/* Drains `c` into a new array (`*last` receives the last record's key per
 * `by_version`). Returns NULL with `err` filled on a read error. */
static json_t *drain(eddy_cursor *c, bool by_version, int64_t *last,
                     size_t *count, eddy_error *err)
{
    json_t *arr = json_array();
    eddy_record rec;
    *count = 0;
    while (arr && eddy_cursor_next(c, &rec, err)) {
        json_t *o = eddyi_record_json(&rec);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            if (err)
                eddyi_error(err, EDDY_ENOMEM, "out of memory");
            return NULL;
        }
        *last = by_version ? rec.stream_version : rec.position;
        (*count)++;
    }
    if (!arr) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    if (eddy_cursor_error(c) != EDDY_OK) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static enum MHD_Result store_error(eddyi_req *r, const eddy_error *e)
{
    int code = e->code ? e->code : EDDY_EIO;
    return eddyi_reply_error(r, eddyi_status_of(code), eddyi_error_token(code),
                             NULL, "%s", e->message[0] ? e->message
                                                       : eddy_strerror(code));
}

enum MHD_Result eddyi_read_stream(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    const char *stream = r->param;
    const char *dir = eddyi_arg(r, "direction");
    bool backward = dir && strcmp(dir, "backward") == 0;
    if (dir && !backward && strcmp(dir, "forward") != 0)
        return eddyi_reply_error(r, 400, "invalid_parameter",
                                 json_pack("{s:s}", "parameter", "direction"),
                                 "query parameter direction: forward or "
                                 "backward, got \"%.32s\"",
                                 dir);
    int64_t from = backward ? EDDY_STREAM_END : 1, limit = DEFAULT_LIMIT;
    if (!eddyi_arg_int(r, "from", 0, INT64_MAX, &from) ||
        !eddyi_arg_int(r, "limit", 1, MAX_LIMIT, &limit))
        return MHD_YES;
    eddy_error e = {0};
    int64_t version = 0;
    if (eddy_store_stream_version(srv->store, stream, &version, &e) != EDDY_OK)
        return store_error(r, &e);
    if (version == 0)
        return eddyi_reply_error(r, 404, "not_found",
                                 json_pack("{s:s}", "stream", stream),
                                 "stream %s not found (it has no events)",
                                 stream);
    eddy_cursor *c = NULL;
    if (eddy_store_read_stream(srv->store, stream, from,
                               backward ? EDDY_BACKWARD : EDDY_FORWARD,
                               (size_t)limit, &c, &e) != EDDY_OK)
        return store_error(r, &e);
    int64_t last = 0;
    size_t n = 0;
    json_t *events = drain(c, true, &last, &n, &e);
    eddy_cursor_free(c);
    if (!events)
        return store_error(r, &e);
    json_t *next = json_null();
    if (n == (size_t)limit && (backward ? last > 1 : last < version))
        next = json_integer(backward ? last - 1 : last + 1);
    return eddyi_reply_json(
        r, 200,
        json_pack("{s:s, s:I, s:s, s:o, s:o}", "stream", stream, "version",
                  (json_int_t)version, "direction",
                  backward ? "backward" : "forward", "events", events, "next",
                  next),
        NULL, 0);
}

enum MHD_Result eddyi_read_events(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    int64_t from = 0, limit = DEFAULT_LIMIT, since = 0, until = 0;
    if (!eddyi_arg_int(r, "from", 0, INT64_MAX, &from) ||
        !eddyi_arg_int(r, "limit", 1, MAX_LIMIT, &limit) ||
        !eddyi_arg_time(r, "since", &since) ||
        !eddyi_arg_time(r, "until", &until))
        return MHD_YES;
    const char *order = eddyi_arg(r, "order");
    bool newest = order && strcmp(order, "newest") == 0;
    if (order && !newest && strcmp(order, "oldest") != 0)
        return eddyi_reply_error(r, 400, "invalid_parameter",
                                 json_pack("{s:s}", "parameter", "order"),
                                 "query parameter order: oldest or newest, "
                                 "got \"%.32s\"",
                                 order);
    if (since && until && since >= until)
        return eddyi_reply_error(r, 400, "invalid_parameter",
                                 json_pack("{s:s}", "parameter", "until"),
                                 "query parameter until must be after since");
    char **types = NULL;
    size_t ntypes = 0;
    if (!eddyi_arg_list(r, "type", &types, &ntypes))
        return MHD_YES;
    const char *stream = eddyi_arg(r, "stream");
    eddy_query q = {
        .types = (const char *const *)types,
        .type_count = ntypes,
        .stream_id = stream,
        .from_time_us = since,
        .to_time_us = until,
        .min_position = newest ? 0 : from,
        .max_position = newest ? from : 0,
        .limit = (size_t)limit,
        .newest_first = newest,
    };
    eddy_error e = {0};
    eddy_cursor *c = NULL;
    int64_t head = 0;
    enum MHD_Result ret;
    if (eddy_store_head(srv->store, &head, &e) != EDDY_OK ||
        eddy_store_query(srv->store, &q, &c, &e) != EDDY_OK) {
        ret = store_error(r, &e);
        goto out;
    }
    int64_t last = 0;
    size_t n = 0;
    json_t *events = drain(c, false, &last, &n, &e);
    eddy_cursor_free(c);
    if (!events) {
        ret = store_error(r, &e);
        goto out;
    }
    json_t *next = json_null();
    if (n == (size_t)limit && (newest ? last > 1 : true))
        next = json_integer(newest ? last - 1 : last + 1);
    ret = eddyi_reply_json(r, 200,
                           json_pack("{s:I, s:o, s:o}", "head",
                                     (json_int_t)head, "events", events,
                                     "next", next),
                           NULL, 0);
out:
    eddyi_strv_free(types, ntypes);
    return ret;
}

json_t *eddyi_event_detail(eddy_http_server *srv, const char *id,
                           bool with_caused, unsigned *status,
                           eddy_error *err)
{
    eddy_cursor *c = NULL;
    eddy_record rec;
    int rc = eddy_store_read_event(srv->store, id, &c, err);
    if (rc != EDDY_OK) {
        *status = eddyi_status_of(rc);
        return NULL;
    }
    if (!eddy_cursor_next(c, &rec, err)) {
        rc = eddy_cursor_error(c);
        eddy_cursor_free(c);
        if (rc == EDDY_OK) {
            eddyi_error(err, EDDY_ENOTFOUND, "no event with id %s", id);
            *status = 404;
        } else {
            *status = eddyi_status_of(rc);
        }
        return NULL;
    }
    json_t *o = eddyi_record_json(&rec);
    eddy_cursor_free(c);
    if (!o) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        *status = 500;
        return NULL;
    }
    if (!with_caused)
        return o;
    /* The events and commands it caused: from the trace of its flow
     * (found by event id, so through the id index). */
    json_t *caused = json_array();
    eddy_trace *t = NULL;
    if (caused && eddy_trace_collect(srv->store, id, &t, NULL) == EDDY_OK) {
        json_object_set_new(o, "correlation",
                            json_string(eddy_trace_correlation(t)));
        for (size_t i = 0; i < eddy_trace_count(t); i++) {
            const eddy_trace_node *nd = eddy_trace_node_at(t, i);
            if (!nd->causation_id || strcmp(nd->causation_id, id) != 0)
                continue;
            json_array_append_new(
                caused,
                json_pack("{s:s, s:s, s:s, s:I}", "kind",
                          nd->kind == EDDY_TRACE_EVENT ? "event" : "command",
                          "id", nd->id, "name", nd->name, "position",
                          (json_int_t)nd->position));
        }
        eddy_trace_free(t);
    }
    json_object_set_new(o, "caused", caused ? caused : json_array());
    return o;
}

enum MHD_Result eddyi_read_event(eddyi_req *r)
{
    unsigned status = 500;
    eddy_error e = {0};
    json_t *o = eddyi_event_detail(r->l->srv, r->param, false, &status, &e);
    if (!o)
        return eddyi_reply_error(r, status, eddyi_error_token(e.code),
                                 status == 404 ? json_pack("{s:s}", "id",
                                                           r->param)
                                               : NULL,
                                 "%s", e.message);
    return eddyi_reply_json(r, 200, o, NULL, 0);
}
