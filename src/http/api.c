/*
 * src/http/api.c - the dashboard: its files (compiled in, assets.h) and its
 * JSON API under /api/ on the admin listener.
 *
 *   GET  /api/session                   whether actions are possible, and
 *                                       the role of the token sent (if any)
 *   GET  /api/overview                  store, counts, health, history
 *   GET  /api/streams?after=ID&limit=N  the streams, by id
 *   GET  /api/streams/{id}?from&limit&direction
 *   GET  /api/events?...                as GET /events on the events API
 *   GET  /api/events/stream?...         as GET /events/stream
 *   GET  /api/events/{id}               one event, its correlation and
 *                                       what it caused
 *   GET  /api/subscriptions             handlers, projections, sagas:
 *                                       checkpoint, lag, state, dead letters
 *   GET  /api/projections/{name}/rebuild   progress of a rebuild
 *   POST /api/projections/{name}/rebuild   starts one (admin)
 *   GET  /api/deadletters?handler&type&since&until&limit
 *   GET  /api/deadletters/{id}
 *   POST /api/deadletters/{id}/redrive  (admin)
 *   POST /api/deadletters/redrive?handler=H   every dead letter (admin)
 *   DELETE /api/deadletters/{id}        (admin)
 *   POST /api/deadletters/purge?handler=H     (admin)
 *   GET  /api/sagas?state=S&type=T&limit=N
 *   GET  /api/sagas/{id}                with commands, timeouts, history
 *   GET  /api/trace/{id}                the causal tree of a flow
 *   GET  /api/graph                     who publishes and handles what
 *
 * Every POST and DELETE is an action: it needs an admin token (server.c).
 * A projection rebuild runs on a thread of its own (one at a time) and
 * reports its progress; the server waits for it when it stops.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "http/assets.h"
#include "http/http_internal.h"

#define GRAPH_CACHE_US 10000000
#define MAX_DEAD_LETTERS 500
#define DEFAULT_SAGAS 200
#define MAX_SAGAS 2000

/* admin.c */
json_t *eddyi_sampler_sub(eddy_http_server *srv, const char *name);
json_t *eddyi_sampler_counts(eddy_http_server *srv);

struct eddyi_rebuild {
    pthread_mutex_t mu;
    eddy_http_server *srv;
    const eddy_projection_def *def;
    pthread_t thread;
    bool has_thread;   /* started and not joined */
    bool running;
    char name[256];
    int64_t done, total;
    int rc;
    char error[EDDY_ERROR_MESSAGE_MAX];
    int64_t started_us, finished_us; /* wall clock */
    /* the graph, cached */
    json_t *graph;
    int64_t graph_us;
};

/* ---- assets ------------------------------------------------------------------ */

enum MHD_Result eddyi_asset(eddyi_req *r)
{
    const char *path = strcmp(r->url, "/") == 0 ? "/index.html" : r->url;
    const eddyi_http_asset *a = NULL;
    for (size_t i = 0; i < eddyi_http_asset_count; i++)
        if (strcmp(eddyi_http_assets[i].path, path) == 0)
            a = &eddyi_http_assets[i];
    if (!a)
        return eddyi_reply_error(r, 404, "not_found", NULL,
                                 "no such page: %s (the dashboard is at /)",
                                 r->url);
    const char *inm = eddyi_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
    const char *h[] = {
        MHD_HTTP_HEADER_ETAG, a->etag,
        MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache",
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'none'",
        "Referrer-Policy", "no-referrer",
    };
    if (inm && strcmp(inm, a->etag) == 0)
        return eddyi_reply(r, 304, NULL, NULL, 0, h, 4);
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            a->content_type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (size_t i = 0; i < 8; i += 2)
        MHD_add_response_header(resp, h[i], h[i + 1]);
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        r->answered = true;
        eddyi_count_status(r->l, 200);
    }
    return ok;
}

/* ---- helpers -------------------------------------------------------------------- */

static enum MHD_Result fail(eddyi_req *r, const eddy_error *e, int rc)
{
    int code = e->code ? e->code : rc ? rc : EDDY_EIO;
    return eddyi_reply_error(r, eddyi_status_of(code), eddyi_error_token(code),
                             NULL, "%s",
                             e->message[0] ? e->message : eddy_strerror(code));
}

static const char *time_text(int64_t us, char *buf, size_t size)
{
    if (us <= 0) {
        snprintf(buf, size, "%s", "");
        return buf;
    }
    return eddy_time_format(us, buf, size);
}

/* Splits "a/b/c" of r->param: `parts` point into a copy in `store`. */
static size_t split(const char *rest, char *store, size_t size, char **parts,
                    size_t max)
{
    snprintf(store, size, "%s", rest);
    size_t n = 0;
    char *p = store;
    while (n < max) {
        parts[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

/* ---- session and overview --------------------------------------------------------- */

static enum MHD_Result api_session(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    const char *auth = eddyi_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    json_t *role = json_null();
    if (srv->tokens && auth && strncmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        eddyi_role rl = eddyi_tokens_role(srv->tokens, srv->token_count, t,
                                          strlen(t));
        role = rl == EDDYI_ROLE_NONE ? json_string("unknown")
                                     : json_string(eddyi_role_name(rl));
    }
    return eddyi_reply_json(
        r, 200,
        json_pack("{s:b, s:o, s:b, s:s}", "tokens", srv->tokens != NULL,
                  "role", role, "loopback", r->l->loopback, "version",
                  eddy_version()),
        NULL, 0);
}

static enum MHD_Result api_overview(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    eddy_store_info info;
    eddy_error e = {0};
    if (eddy_store_info_get(srv->store, &info, &e) != EDDY_OK)
        return fail(r, &e, 0);
    json_t *problems = NULL;
    bool ready = eddyi_ready(srv, &problems);
    json_t *counts = eddyi_sampler_counts(srv);
    if (counts)
        json_object_set_new(counts, "streams",
                            json_integer(info.stream_count));
    return eddyi_reply_json(
        r, 200,
        json_pack("{s:{s:s, s:i, s:I, s:I, s:I, s:I}, s:o, s:b, s:o, s:o, "
                  "s:I, s:s}",
                  "store", "backend", info.backend, "schema_version",
                  info.schema_version, "head", (json_int_t)info.head,
                  "events", (json_int_t)info.event_count, "streams",
                  (json_int_t)info.stream_count, "file_bytes",
                  (json_int_t)info.file_bytes, "counts",
                  counts ? counts : json_object(), "ready", ready, "problems",
                  problems ? problems : json_array(), "history",
                  eddyi_sampler_history(srv), "stream_clients",
                  (json_int_t)eddyi_sse_clients(srv), "version",
                  eddy_version()),
        NULL, 0);
}

/* ---- streams ------------------------------------------------------------------- */

struct streams_ctx {
    json_t *arr;
    const char *last;
};

static int on_stream(const char *id, int64_t version, void *user)
{
    struct streams_ctx *c = user;
    json_array_append_new(c->arr, json_pack("{s:s, s:I}", "id", id, "version",
                                            (json_int_t)version));
    return 0;
}

static enum MHD_Result api_streams(eddyi_req *r)
{
    int64_t limit = 100;
    if (!eddyi_arg_int(r, "limit", 1, 1000, &limit))
        return MHD_YES;
    const char *after = eddyi_arg(r, "after");
    struct streams_ctx c = {.arr = json_array()};
    eddy_error e = {0};
    if (!c.arr)
        return eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
    int rc = eddy_store_streams(r->l->srv->store, after && *after ? after : NULL,
                                (size_t)limit, on_stream, &c, &e);
    if (rc != EDDY_OK) {
        json_decref(c.arr);
        return fail(r, &e, rc);
    }
    size_t n = json_array_size(c.arr);
    json_t *next = n == (size_t)limit
                       ? json_incref(json_object_get(json_array_get(c.arr, n - 1),
                                                     "id"))
                       : json_null();
    return eddyi_reply_json(r, 200,
                            json_pack("{s:o, s:o}", "streams", c.arr, "next",
                                      next),
                            NULL, 0);
}

/* ---- subscriptions ---------------------------------------------------------------- */

/* The flow graph, built at most every GRAPH_CACHE_US (it reads the whole
 * log). A new reference, or NULL with `err` filled. */
static json_t *graph_json(eddy_http_server *srv, eddy_error *err)
{
    struct eddyi_rebuild *rb = srv->rebuild;
    int64_t now = eddyi_http_now_us();
    pthread_mutex_lock(&rb->mu);
    if (rb->graph && now - rb->graph_us < GRAPH_CACHE_US) {
        json_t *g = json_incref(rb->graph);
        pthread_mutex_unlock(&rb->mu);
        return g;
    }
    pthread_mutex_unlock(&rb->mu);
    eddy_graph *g = NULL;
    if (eddy_graph_build(srv->store, &g, err) != EDDY_OK)
        return NULL;
    static const char *const kinds[] = {"handles", "publishes", "sends",
                                        "leads_to"};
    json_t *edges = json_array();
    for (size_t i = 0; edges && i < eddy_graph_edge_count(g); i++) {
        const eddy_graph_edge *e = eddy_graph_edge_at(g, i);
        json_array_append_new(edges,
                              json_pack("{s:s, s:s, s:s, s:I}", "kind",
                                        kinds[e->kind & 3], "from", e->from,
                                        "to", e->to, "count",
                                        (json_int_t)e->count));
    }
    eddy_graph_free(g);
    json_t *o = json_pack("{s:o}", "edges", edges ? edges : json_array());
    if (!o) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&rb->mu);
    json_decref(rb->graph);
    rb->graph = json_incref(o);
    rb->graph_us = now;
    pthread_mutex_unlock(&rb->mu);
    return o;
}

/* The entry of `name` in `subs` (an object keyed by name), created with
 * `kind` when missing. */
static json_t *sub_entry(json_t *subs, const char *name, const char *kind)
{
    json_t *o = json_object_get(subs, name);
    if (!o) {
        o = json_pack("{s:s, s:s, s:[], s:n, s:n, s:s, s:i, s:b}", "name",
                      name, "kind", kind, "types", "checkpoint", "lag",
                      "state", "unknown", "dead_letters", 0, "stalled", 0);
        json_object_set_new(subs, name, o);
    }
    return o;
}

static int proj_entry(const eddy_projection_info *info, void *user)
{
    json_t *o = sub_entry(user, info->name, "projection");
    json_object_set_new(o, "kind", json_string("projection"));
    json_object_set_new(o, "state", json_string(info->state));
    json_object_set_new(o, "mode", json_string(info->mode));
    json_object_set_new(o, "pattern", json_string(info->pattern));
    json_object_set_new(o, "checkpoint", json_integer(info->checkpoint));
    json_object_set_new(o, "lag", json_integer(info->lag));
    json_object_set_new(o, "rebuildable",
                        json_boolean(eddy_projection_find_def(info->name)));
    return 0;
}

/* What the store recorded of every consumer (eddy/status.h): the
 * checkpoint and lag of handlers and sagas too, not only projections. */
static int consumer_entry(const eddy_consumer_info *info, void *user)
{
    json_t *o = sub_entry(user, info->name,
                          *info->kind ? info->kind : "handler");
    if (*info->kind && strcmp(info->kind, "handler") != 0)
        json_object_set_new(o, "kind", json_string(info->kind));
    if (*info->pattern && !json_object_get(o, "pattern"))
        json_object_set_new(o, "pattern", json_string(info->pattern));
    if (info->checkpoint >= 0) {
        json_object_set_new(o, "checkpoint", json_integer(info->checkpoint));
        json_object_set_new(o, "lag", json_integer(info->lag));
    }
    json_object_set_new(o, "retries", json_integer(info->retries));
    json_object_set_new(o, "dead_letters", json_integer(info->dead_letters));
    json_object_set_new(o, "redrive_pending",
                        json_integer(info->redrive_pending));
    return 0;
}

static enum MHD_Result api_subscriptions(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    eddy_error e = {0};
    json_t *subs = json_object();
    int64_t head = 0;
    if (!subs)
        return eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
    if (eddy_store_head(srv->store, &head, &e) != EDDY_OK) {
        json_decref(subs);
        return fail(r, &e, 0);
    }
    /* who handles what, and which are sagas: from the flow graph */
    json_t *g = graph_json(srv, NULL);
    size_t i;
    json_t *edge;
    json_array_foreach(json_object_get(g, "edges"), i, edge)
    {
        const char *kind = json_string_value(json_object_get(edge, "kind"));
        const char *from = json_string_value(json_object_get(edge, "from"));
        const char *to = json_string_value(json_object_get(edge, "to"));
        if (strcmp(kind, "handles") == 0)
            json_array_append_new(
                json_object_get(sub_entry(subs, to, "handler"), "types"),
                json_string(from));
        else if (strcmp(kind, "sends") == 0)
            json_object_set_new(sub_entry(subs, from, "saga"), "kind",
                                json_string("saga"));
    }
    json_decref(g);
    eddy_status_consumers(srv->store, consumer_entry, subs, NULL);
    eddy_projection_list(srv->store, proj_entry, subs, NULL);
    /* the live view of the sampler: this process's lag gauges, running
     * projections */
    json_t *arr = json_array();
    const char *name;
    json_t *o;
    json_object_foreach(subs, name, o)
    {
        json_t *live = eddyi_sampler_sub(srv, name);
        if (live) {
            json_object_update(o, live);
            if (strcmp(json_string_value(json_object_get(o, "state")),
                       "unknown") == 0)
                json_object_set_new(o, "state", json_string("running"));
            json_decref(live);
        }
        json_array_append(arr, o);
    }
    json_decref(subs);
    struct eddyi_rebuild *rb = srv->rebuild;
    pthread_mutex_lock(&rb->mu);
    json_t *rebuild = rb->name[0]
                          ? json_pack("{s:s, s:b, s:I, s:I}", "name", rb->name,
                                      "running", rb->running, "done",
                                      (json_int_t)rb->done, "total",
                                      (json_int_t)rb->total)
                          : json_null();
    pthread_mutex_unlock(&rb->mu);
    return eddyi_reply_json(r, 200,
                            json_pack("{s:I, s:o, s:o}", "head",
                                      (json_int_t)head, "subscriptions", arr,
                                      "rebuild", rebuild),
                            NULL, 0);
}

/* ---- projection rebuild ---------------------------------------------------------- */

int eddyi_rebuild_new(eddy_http_server *srv, eddy_error *err)
{
    struct eddyi_rebuild *rb = calloc(1, sizeof *rb);
    if (!rb)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    pthread_mutex_init(&rb->mu, NULL);
    rb->srv = srv;
    srv->rebuild = rb;
    return EDDY_OK;
}

void eddyi_rebuild_free(eddy_http_server *srv)
{
    struct eddyi_rebuild *rb = srv->rebuild;
    if (!rb)
        return;
    if (rb->has_thread)
        pthread_join(rb->thread, NULL);
    json_decref(rb->graph);
    pthread_mutex_destroy(&rb->mu);
    free(rb);
    srv->rebuild = NULL;
}

static int64_t wall_us(void)
{
    return eddy_now_us();
}

static void on_progress(int64_t done, int64_t total, void *user)
{
    struct eddyi_rebuild *rb = user;
    pthread_mutex_lock(&rb->mu);
    rb->done = done;
    rb->total = total;
    pthread_mutex_unlock(&rb->mu);
}

static void *rebuild_main(void *arg)
{
    eddyi_thread_name("eddy-rebuild");
    struct eddyi_rebuild *rb = arg;
    eddy_error e = {0};
    int rc = eddy_projection_rebuild(rb->srv->store, rb->def, on_progress, rb,
                                     &e);
    pthread_mutex_lock(&rb->mu);
    rb->rc = rc;
    snprintf(rb->error, sizeof rb->error, "%s",
             rc == EDDY_OK ? "" : e.message[0] ? e.message
                                               : eddy_strerror(rc));
    rb->running = false;
    rb->finished_us = wall_us();
    pthread_mutex_unlock(&rb->mu);
    EDDYI_LOG(rc == EDDY_OK ? EDDY_LOG_INFO : EDDY_LOG_WARN, "http",
              "rebuild of projection %s: %s", rb->name,
              rc == EDDY_OK ? "done" : rb->error);
    return NULL;
}

static json_t *rebuild_json(struct eddyi_rebuild *rb)
{
    char started[EDDY_TIME_STRLEN], finished[EDDY_TIME_STRLEN];
    return json_pack("{s:s, s:b, s:I, s:I, s:s, s:s, s:s*, s:s*}", "name",
                     rb->name, "running", rb->running, "done",
                     (json_int_t)rb->done, "total", (json_int_t)rb->total,
                     "started", time_text(rb->started_us, started,
                                          sizeof started),
                     "finished",
                     time_text(rb->finished_us, finished, sizeof finished),
                     "error", rb->running || rb->rc == EDDY_OK ? NULL
                                                                : rb->error,
                     "error_code", rb->running || rb->rc == EDDY_OK
                                       ? NULL
                                       : eddy_errname(rb->rc));
}

static enum MHD_Result api_rebuild(eddyi_req *r, const char *name, bool start)
{
    struct eddyi_rebuild *rb = r->l->srv->rebuild;
    if (!start) {
        pthread_mutex_lock(&rb->mu);
        if (strcmp(rb->name, name) != 0) {
            pthread_mutex_unlock(&rb->mu);
            return eddyi_reply_error(r, 404, "not_found",
                                     json_pack("{s:s}", "projection", name),
                                     "no rebuild of projection %s was started "
                                     "by this server",
                                     name);
        }
        json_t *o = rebuild_json(rb);
        pthread_mutex_unlock(&rb->mu);
        return eddyi_reply_json(r, 200, o, NULL, 0);
    }
    const eddy_projection_def *def = eddy_projection_find_def(name);
    if (!def)
        return eddyi_reply_error(r, 404, "not_found",
                                 json_pack("{s:s}", "projection", name),
                                 "this program knows no definition of "
                                 "projection %s, so it cannot rebuild it "
                                 "(eddy_projection_register_def)",
                                 name);
    if (atomic_load(&r->l->srv->stopping))
        return eddyi_reply_error(r, 503, "unavailable", NULL,
                                 "the server is stopping");
    pthread_mutex_lock(&rb->mu);
    if (rb->running) {
        json_t *extra = json_pack("{s:s}", "running", rb->name);
        pthread_mutex_unlock(&rb->mu);
        return eddyi_reply_error(r, 409, "busy", extra,
                                 "a rebuild of %s is in progress; one at a "
                                 "time",
                                 json_string_value(json_object_get(extra,
                                                                   "running")));
    }
    if (rb->has_thread) { /* the previous one has finished */
        pthread_join(rb->thread, NULL);
        rb->has_thread = false;
    }
    snprintf(rb->name, sizeof rb->name, "%s", name);
    rb->def = def;
    rb->done = rb->total = 0;
    rb->rc = EDDY_OK;
    rb->error[0] = '\0';
    rb->started_us = wall_us();
    rb->finished_us = 0;
    rb->running = true;
    if (pthread_create(&rb->thread, NULL, rebuild_main, rb) != 0) {
        rb->running = false;
        pthread_mutex_unlock(&rb->mu);
        return eddyi_reply_error(r, 500, "internal", NULL,
                                 "cannot start a thread for the rebuild");
    }
    rb->has_thread = true;
    json_t *o = rebuild_json(rb);
    pthread_mutex_unlock(&rb->mu);
    EDDYI_LOG(EDDY_LOG_INFO, "http", "rebuild of projection %s started from "
              "the dashboard", name);
    return eddyi_reply_json(r, 202, o, NULL, 0);
}

/* ---- dead letters ---------------------------------------------------------------- */

static json_t *dead_letter_json(const eddy_dead_letter *dl, bool with_event)
{
    char first[EDDY_TIME_STRLEN], last[EDDY_TIME_STRLEN];
    json_t *o = json_pack(
        "{s:I, s:s, s:I, s:s, s:s, s:s, s:i, s:s, s:s, s:s?, s:s?, s:s?}", "id",
        (json_int_t)dl->id, "handler", dl->handler, "position",
        (json_int_t)dl->position, "status", dl->status, "error",
        dl->error ? dl->error : "", "error_name", eddy_errname(dl->error_code),
        "attempts", dl->attempts, "first_failure",
        time_text(dl->first_failure_us, first, sizeof first), "last_failure",
        time_text(dl->last_failure_us, last, sizeof last), "type",
        dl->event_type, "event_id", dl->event_id, "event_error",
        dl->event_error);
    if (o && with_event && dl->event)
        json_object_set_new(o, "event", eddy_event_to_json(dl->event));
    return o;
}

struct dlq_ctx {
    json_t *arr;
    char **types;
    size_t ntypes;
    int64_t since, until;
    size_t total;
};

static int dlq_one(const eddy_dead_letter *dl, void *user)
{
    struct dlq_ctx *c = user;
    if (c->ntypes && !eddyi_type_matches(c->types, c->ntypes, dl->event_type))
        return 0;
    if (c->since && dl->last_failure_us < c->since)
        return 0;
    if (c->until && dl->last_failure_us >= c->until)
        return 0;
    c->total++;
    if (json_array_size(c->arr) < MAX_DEAD_LETTERS)
        json_array_append_new(c->arr, dead_letter_json(dl, false));
    return 0;
}

static enum MHD_Result api_dead_letters(eddyi_req *r)
{
    struct dlq_ctx c = {.arr = json_array()};
    const char *handler = eddyi_arg(r, "handler");
    if (!c.arr)
        return eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
    if (!eddyi_arg_time(r, "since", &c.since) ||
        !eddyi_arg_time(r, "until", &c.until) ||
        !eddyi_arg_list(r, "type", &c.types, &c.ntypes)) {
        json_decref(c.arr);
        return MHD_YES;
    }
    eddy_error e = {0};
    int rc = eddy_dlq_list(r->l->srv->store, handler && *handler ? handler
                                                                 : NULL,
                           dlq_one, &c, &e);
    eddyi_strv_free(c.types, c.ntypes);
    if (rc != EDDY_OK) {
        json_decref(c.arr);
        return fail(r, &e, rc);
    }
    return eddyi_reply_json(r, 200,
                            json_pack("{s:o, s:I, s:i}", "dead_letters", c.arr,
                                      "total", (json_int_t)c.total, "shown_max",
                                      MAX_DEAD_LETTERS),
                            NULL, 0);
}

static bool parse_id(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v <= 0)
        return false;
    *out = v;
    return true;
}

static enum MHD_Result api_dead_letter(eddyi_req *r, char **parts, size_t n)
{
    eddy_http_server *srv = r->l->srv;
    eddy_error e = {0};
    const char *m = r->method;
    bool post = strcmp(m, MHD_HTTP_METHOD_POST) == 0;
    if (n == 2 && post && strcmp(parts[1], "purge") == 0) {
        const char *handler = eddyi_arg(r, "handler");
        size_t count = 0;
        int rc = eddy_dlq_purge(srv->store, handler && *handler ? handler : NULL,
                                &count, &e);
        if (rc != EDDY_OK)
            return fail(r, &e, rc);
        EDDYI_LOG(EDDY_LOG_INFO, "http", "dashboard: %zu dead letters purged "
                  "(handler %s)", count, handler && *handler ? handler : "*");
        return eddyi_reply_json(r, 200, json_pack("{s:I}", "purged",
                                                  (json_int_t)count),
                                NULL, 0);
    }
    if (n == 2 && post && strcmp(parts[1], "redrive") == 0) {
        const char *handler = eddyi_arg(r, "handler");
        size_t count = 0;
        int rc = eddy_dlq_redrive_all(srv->store,
                                      handler && *handler ? handler : NULL,
                                      &count, &e);
        if (rc != EDDY_OK)
            return fail(r, &e, rc);
        return eddyi_reply_json(r, 200, json_pack("{s:I}", "marked",
                                                  (json_int_t)count),
                                NULL, 0);
    }
    int64_t id = 0;
    if (n < 2 || !parse_id(parts[1], &id))
        return eddyi_reply_error(r, 404, "not_found", NULL,
                                 "expected /api/deadletters/ID with a "
                                 "positive integer ID, got %s",
                                 r->param);
    if (n == 3 && post && strcmp(parts[2], "redrive") == 0) {
        int rc = eddy_dlq_redrive(srv->store, id, &e);
        if (rc != EDDY_OK)
            return fail(r, &e, rc);
        return eddyi_reply_json(
            r, 200, json_pack("{s:I, s:s}", "id", (json_int_t)id, "status",
                              EDDY_DLQ_REDRIVE),
            NULL, 0);
    }
    if (n == 2 && strcmp(m, MHD_HTTP_METHOD_DELETE) == 0) {
        int rc = eddy_dlq_delete(srv->store, id, &e);
        if (rc != EDDY_OK)
            return fail(r, &e, rc);
        return eddyi_reply_json(r, 200, json_pack("{s:I, s:b}", "id",
                                                  (json_int_t)id, "deleted", 1),
                                NULL, 0);
    }
    if (n == 2 && (strcmp(m, MHD_HTTP_METHOD_GET) == 0 ||
                   strcmp(m, MHD_HTTP_METHOD_HEAD) == 0)) {
        eddy_dead_letter *dl = NULL;
        int rc = eddy_dlq_get(srv->store, id, &dl, &e);
        if (rc != EDDY_OK)
            return fail(r, &e, rc);
        json_t *o = dead_letter_json(dl, true);
        eddy_dead_letter_free(dl);
        return eddyi_reply_json(r, 200, o, NULL, 0);
    }
    return eddyi_reply_error(r, 404, "not_found", NULL,
                             "no such dead-letter resource: %s %s", m, r->url);
}

/* ---- sagas ------------------------------------------------------------------------ */

struct saga_ctx {
    json_t *arr;
    size_t limit;
};

static json_t *saga_json(const eddy_saga_info *info)
{
    char created[EDDY_TIME_STRLEN], updated[EDDY_TIME_STRLEN];
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:s, s:s}", "type", info->type,
        "id", info->id, "status", info->status, "result", info->result,
        "correlation_id", info->correlation_id ? info->correlation_id : "",
        "state", info->state ? json_deep_copy(info->state) : json_null(),
        "version",
        (json_int_t)info->version, "created",
        time_text(info->created_us, created, sizeof created), "updated",
        time_text(info->updated_us, updated, sizeof updated));
    /* copies: the views are borrowed for the callback only */
    if (o && info->commands)
        json_object_set_new(o, "commands", json_deep_copy(info->commands));
    if (o && info->timeouts)
        json_object_set_new(o, "timeouts", json_deep_copy(info->timeouts));
    return o;
}

static int saga_one(const eddy_saga_info *info, void *user)
{
    struct saga_ctx *c = user;
    if (json_array_size(c->arr) >= c->limit)
        return 2; /* enough */
    json_array_append_new(c->arr, saga_json(info));
    return 0;
}

/* A flow as JSON: {"correlation", "nodes": [...]} (new reference). */
static json_t *trace_json(eddy_trace *t)
{
    json_t *nodes = json_array();
    for (size_t i = 0; nodes && i < eddy_trace_count(t); i++) {
        const eddy_trace_node *nd = eddy_trace_node_at(t, i);
        char when[EDDY_TIME_STRLEN];
        json_array_append_new(
            nodes,
            json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:I, "
                      "s:I, s:i}",
                      "kind", nd->kind == EDDY_TRACE_EVENT ? "event" : "command",
                      "id", nd->id, "name", nd->name, "by", nd->by, "handler",
                      nd->handler, "subject", nd->subject, "causation_id",
                      nd->causation_id, "time",
                      time_text(nd->time_us, when, sizeof when), "offset_us",
                      (json_int_t)nd->offset_us, "position",
                      (json_int_t)nd->position, "depth", nd->depth));
    }
    return json_pack("{s:s, s:o}", "correlation", eddy_trace_correlation(t),
                     "nodes", nodes ? nodes : json_array());
}

static enum MHD_Result api_sagas(eddyi_req *r)
{
    int64_t limit = DEFAULT_SAGAS;
    if (!eddyi_arg_int(r, "limit", 1, MAX_SAGAS, &limit))
        return MHD_YES;
    const char *state = eddyi_arg(r, "state");
    const char *type = eddyi_arg(r, "type");
    struct saga_ctx c = {.arr = json_array(), .limit = (size_t)limit};
    eddy_error e = {0};
    int rc = eddy_saga_list(r->l->srv->store, type && *type ? type : NULL,
                            state && *state ? state : NULL, saga_one, &c, &e);
    if (rc != EDDY_OK && rc != 2) {
        json_decref(c.arr);
        return fail(r, &e, rc);
    }
    return eddyi_reply_json(r, 200,
                            json_pack("{s:o, s:b}", "sagas", c.arr, "more",
                                      rc == 2),
                            NULL, 0);
}

static int saga_full(const eddy_saga_info *info, void *user)
{
    json_array_append_new(user, saga_json(info));
    return 0;
}

static enum MHD_Result api_saga(eddyi_req *r, const char *id)
{
    eddy_http_server *srv = r->l->srv;
    json_t *arr = json_array();
    eddy_error e = {0};
    int rc = eddy_saga_get(srv->store, id, saga_full, arr, &e);
    if (rc != EDDY_OK) {
        json_decref(arr);
        return fail(r, &e, rc);
    }
    /* history: the flow of each instance's correlation */
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s)
    {
        const char *corr = json_string_value(json_object_get(s, "correlation_id"));
        eddy_trace *t = NULL;
        if (corr && *corr &&
            eddy_trace_collect(srv->store, corr, &t, NULL) == EDDY_OK) {
            json_object_set_new(s, "history", trace_json(t));
            eddy_trace_free(t);
        }
    }
    return eddyi_reply_json(r, 200, json_pack("{s:s, s:o}", "id", id,
                                              "instances", arr),
                            NULL, 0);
}

static enum MHD_Result api_trace(eddyi_req *r, const char *id)
{
    eddy_trace *t = NULL;
    eddy_error e = {0};
    int rc = eddy_trace_collect(r->l->srv->store, id, &t, &e);
    if (rc != EDDY_OK)
        return fail(r, &e, rc);
    json_t *o = trace_json(t);
    eddy_trace_free(t);
    return eddyi_reply_json(r, 200, o, NULL, 0);
}

/* ---- dispatch --------------------------------------------------------------------- */

bool eddyi_api_is_action(const char *method, const char *rest)
{
    (void)rest;
    return strcmp(method, MHD_HTTP_METHOD_POST) == 0 ||
           strcmp(method, MHD_HTTP_METHOD_DELETE) == 0 ||
           strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
}

enum MHD_Result eddyi_api(eddyi_req *r)
{
    char store[1024];
    char *parts[4];
    if (strlen(r->param) >= sizeof store)
        return eddyi_reply_error(r, 414, "too_long", NULL,
                                 "the path is too long");
    size_t n = split(r->param, store, sizeof store, parts, 4);
    bool get = strcmp(r->method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp(r->method, MHD_HTTP_METHOD_HEAD) == 0;
    const char *what = parts[0];
    if (get && n == 1 && strcmp(what, "session") == 0)
        return api_session(r);
    if (get && n == 1 && strcmp(what, "overview") == 0)
        return api_overview(r);
    if (get && n == 1 && strcmp(what, "streams") == 0)
        return api_streams(r);
    if (get && n >= 2 && strcmp(what, "streams") == 0) {
        /* the stream id is everything after "streams/" */
        char *id = strdup(r->param + 8);
        if (!id)
            return eddyi_reply_error(r, 500, "internal", NULL,
                                     "out of memory");
        free(r->param);
        r->param = id;
        return eddyi_read_stream(r);
    }
    if (get && n >= 2 && strcmp(what, "events") == 0) {
        unsigned status = 500;
        eddy_error e = {0};
        json_t *o = eddyi_event_detail(r->l->srv, r->param + 7, true, &status,
                                       &e);
        if (!o)
            return eddyi_reply_error(r, status, eddyi_error_token(e.code),
                                     NULL, "%s", e.message);
        return eddyi_reply_json(r, 200, o, NULL, 0);
    }
    if (get && n == 1 && strcmp(what, "subscriptions") == 0)
        return api_subscriptions(r);
    if (n == 3 && strcmp(what, "projections") == 0 &&
        strcmp(parts[2], "rebuild") == 0) {
        if (get || strcmp(r->method, MHD_HTTP_METHOD_POST) == 0)
            return api_rebuild(r, parts[1], !get);
    }
    if (strcmp(what, "deadletters") == 0) {
        if (get && n == 1)
            return api_dead_letters(r);
        return api_dead_letter(r, parts, n);
    }
    if (get && n == 1 && strcmp(what, "sagas") == 0)
        return api_sagas(r);
    if (get && n >= 2 && strcmp(what, "sagas") == 0)
        return api_saga(r, r->param + 6);
    if (get && n >= 2 && strcmp(what, "trace") == 0)
        return api_trace(r, r->param + 6);
    if (get && n == 1 && strcmp(what, "graph") == 0) {
        eddy_error e = {0};
        json_t *g = graph_json(r->l->srv, &e);
        if (!g)
            return fail(r, &e, 0);
        return eddyi_reply_json(r, 200, g, NULL, 0);
    }
    return eddyi_reply_error(r, 404, "not_found", NULL,
                             "no such API resource: %s %s", r->method, r->url);
}
