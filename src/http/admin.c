/*
 * src/http/admin.c - /metrics, /healthz, /readyz and the sampler behind the
 * dashboard's charts and the readiness check.
 *
 * THE SAMPLER runs on the ticker thread once a second: the store's head
 * (hence events per second), and the checkpoint and lag of every running
 * subscription it can see - the subscriptions of this process that record
 * into the metrics registry (their eddy_subscription_lag_events gauges) and
 * the projections recorded as running in the store (eddy_projection_list).
 * A running subscription with lag whose checkpoint has not moved for
 * stall_after_ms is STALLED, which /readyz reports. The last ten minutes of
 * samples feed the overview's charts. Every five seconds it also counts
 * dead letters and saga instances for the overview.
 *
 * /metrics is the registry's Prometheus text (eddy_metrics_prometheus:
 * per-handler and per-type counters, latency histograms, in flight, lag
 * gauges) after the server refreshed its store gauges in it (head, events,
 * streams, file size, dead letters per handler, projection lag), followed
 * by the server's own families (responses by listener and code, streams,
 * connections, timeouts, appends pending and refused).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "http/http_internal.h"

#define HISTORY 600          /* samples kept: ten minutes */
#define MAX_SUBS 512
#define COUNTS_EVERY_US 5000000
#define DEFAULT_STALL_MS 60000

typedef struct sample {
    int64_t t_ms;  /* wall clock */
    int64_t head;
    double rate;   /* events per second since the previous sample */
    int64_t lag;   /* the largest lag of a running subscription */
} sample;

typedef struct sub_state {
    char *name;
    const char *kind;    /* "handler" (metrics) or "projection" */
    int64_t checkpoint;
    int64_t lag;
    int64_t moved_us;    /* when the checkpoint last moved (monotonic) */
    bool present;        /* seen at the last tick */
    bool stalled;
} sub_state;

struct eddyi_sampler {
    pthread_mutex_t mu;
    sample hist[HISTORY];
    size_t n, first;
    int64_t last_head;
    int64_t last_us;
    bool store_ok;
    char store_error[EDDY_ERROR_MESSAGE_MAX];
    sub_state subs[MAX_SUBS];
    size_t nsubs;
    json_t *counts;      /* dead letters and sagas; NULL until counted */
    int64_t counts_us;
};

int eddyi_sampler_new(eddy_http_server *srv, eddy_error *err)
{
    struct eddyi_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->store_ok = true;
    srv->sampler = s;
    return EDDY_OK;
}

void eddyi_sampler_free(eddy_http_server *srv)
{
    struct eddyi_sampler *s = srv->sampler;
    if (!s)
        return;
    for (size_t i = 0; i < s->nsubs; i++)
        free(s->subs[i].name);
    json_decref(s->counts);
    pthread_mutex_destroy(&s->mu);
    free(s);
    srv->sampler = NULL;
}

/* The state of `name`, created when missing (NULL when the table is full
 * or out of memory). Caller holds s->mu. */
static sub_state *sub_find(struct eddyi_sampler *s, const char *name)
{
    for (size_t i = 0; i < s->nsubs; i++)
        if (strcmp(s->subs[i].name, name) == 0)
            return &s->subs[i];
    if (s->nsubs == MAX_SUBS)
        return NULL;
    sub_state *st = &s->subs[s->nsubs];
    memset(st, 0, sizeof *st);
    if (!(st->name = strdup(name)))
        return NULL;
    st->checkpoint = -1;
    s->nsubs++;
    return st;
}

static void sub_observe(struct eddyi_sampler *s, const char *name,
                        const char *kind, int64_t checkpoint, int64_t lag,
                        int64_t now, int64_t stall_us)
{
    sub_state *st = sub_find(s, name);
    if (!st)
        return;
    if (st->checkpoint != checkpoint || lag <= 0)
        st->moved_us = now;
    st->kind = kind;
    st->checkpoint = checkpoint;
    st->lag = lag;
    st->present = true;
    st->stalled = lag > 0 && now - st->moved_us > stall_us;
}

/* Projections recorded as running, collected without the sampler's lock
 * (the list waits for the store's writer). */
typedef struct proj_row {
    char *name;
    int64_t checkpoint, lag;
} proj_row;

struct proj_ctx {
    proj_row rows[MAX_SUBS];
    size_t n;
};

static int on_projection(const eddy_projection_info *info, void *user)
{
    struct proj_ctx *p = user;
    if (strcmp(info->state, "running") != 0 || p->n == MAX_SUBS)
        return 0;
    proj_row *row = &p->rows[p->n];
    if (!(row->name = strdup(info->name)))
        return 0;
    row->checkpoint = info->checkpoint;
    row->lag = info->lag;
    p->n++;
    return 0;
}

static int count_dead(const eddy_dead_letter *dl, void *user)
{
    (void)dl;
    (*(int64_t *)user)++;
    return 0;
}

static int count_saga(const eddy_saga_info *info, void *user)
{
    (void)info;
    (*(int64_t *)user)++;
    return 0;
}

/* Dead letters and saga instances, for the overview. */
static json_t *count_things(eddy_http_server *srv)
{
    int64_t dead = 0, running = 0, completed = 0, failed = 0;
    eddy_dlq_list(srv->store, NULL, count_dead, &dead, NULL);
    eddy_saga_list(srv->store, NULL, "running", count_saga, &running, NULL);
    eddy_saga_list(srv->store, NULL, "completed", count_saga, &completed, NULL);
    eddy_saga_list(srv->store, NULL, "failed", count_saga, &failed, NULL);
    return json_pack("{s:I, s:{s:I, s:I, s:I}}", "dead_letters",
                     (json_int_t)dead, "sagas", "running", (json_int_t)running,
                     "completed", (json_int_t)completed, "failed",
                     (json_int_t)failed);
}

void eddyi_sampler_tick(eddy_http_server *srv, int64_t now_us)
{
    struct eddyi_sampler *s = srv->sampler;
    int64_t stall_us = (int64_t)(srv->stall_after_ms ? srv->stall_after_ms
                                                     : DEFAULT_STALL_MS) * 1000;
    /* The lag gauges are computed against the head when the snapshot is
     * taken: read the head right after it, so that checkpoint = head - lag
     * holds still when nothing moves. */
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(srv->metrics, NULL);
    int64_t head = 0;
    eddy_error e = {0};
    bool ok = eddy_store_head(srv->store, &head, &e) == EDDY_OK;
    struct proj_ctx *pc = calloc(1, sizeof *pc);
    if (ok && pc)
        eddy_projection_list(srv->store, on_projection, pc, NULL);
    bool count_now = now_us - s->counts_us >= COUNTS_EVERY_US;
    json_t *counts = count_now && ok ? count_things(srv) : NULL;

    pthread_mutex_lock(&s->mu);
    s->store_ok = ok;
    snprintf(s->store_error, sizeof s->store_error, "%s", ok ? "" : e.message);
    for (size_t i = 0; i < s->nsubs; i++)
        s->subs[i].present = false;
    size_t ng = eddy_metrics_snapshot_gauge_count(snap);
    for (size_t i = 0; ok && i < ng; i++) {
        const eddy_metrics_gauge_stats *g = eddy_metrics_snapshot_gauge(snap, i);
        if (strcmp(g->name, EDDY_METRIC_SUBSCRIPTION_LAG) != 0 ||
            !g->label_value)
            continue;
        int64_t lag = (int64_t)g->value;
        sub_observe(s, g->label_value, "handler", head - lag, lag, now_us,
                    stall_us);
    }
    for (size_t i = 0; pc && i < pc->n; i++) {
        /* a lag gauge of this process is fresher than a stored checkpoint */
        sub_state *st = NULL;
        for (size_t k = 0; k < s->nsubs && !st; k++)
            if (strcmp(s->subs[k].name, pc->rows[i].name) == 0)
                st = &s->subs[k];
        if (!(st && st->present))
            sub_observe(s, pc->rows[i].name, "projection",
                        pc->rows[i].checkpoint, pc->rows[i].lag, now_us,
                        stall_us);
        free(pc->rows[i].name);
    }
    int64_t lag = 0;
    for (size_t i = 0; i < s->nsubs; i++) {
        if (!s->subs[i].present)
            s->subs[i].stalled = false;
        else if (s->subs[i].lag > lag)
            lag = s->subs[i].lag;
    }
    if (ok) {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        double dt = s->last_us ? (double)(now_us - s->last_us) / 1e6 : 0;
        sample *smp;
        if (s->n == HISTORY) {
            smp = &s->hist[s->first];
            s->first = (s->first + 1) % HISTORY;
        } else {
            smp = &s->hist[(s->first + s->n) % HISTORY];
            s->n++;
        }
        smp->t_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
        smp->head = head;
        smp->rate = dt > 0 && s->last_head <= head
                        ? (double)(head - s->last_head) / dt
                        : 0;
        smp->lag = lag;
        s->last_head = head;
        s->last_us = now_us;
    }
    if (counts) {
        json_decref(s->counts);
        s->counts = counts;
        s->counts_us = now_us;
    }
    pthread_mutex_unlock(&s->mu);
    eddy_metrics_snapshot_free(snap);
    free(pc);
}

json_t *eddyi_sampler_history(eddy_http_server *srv)
{
    struct eddyi_sampler *s = srv->sampler;
    json_t *arr = json_array();
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; arr && i < s->n; i++) {
        const sample *smp = &s->hist[(s->first + i) % HISTORY];
        json_array_append_new(arr, json_pack("{s:I, s:I, s:f, s:I}", "t",
                                             (json_int_t)smp->t_ms, "head",
                                             (json_int_t)smp->head, "rate",
                                             smp->rate, "lag",
                                             (json_int_t)smp->lag));
    }
    pthread_mutex_unlock(&s->mu);
    return arr;
}

/* The sampler's view of subscription `name`: {checkpoint, lag, stalled}
 * or NULL. For api.c. */
json_t *eddyi_sampler_sub(eddy_http_server *srv, const char *name);
json_t *eddyi_sampler_sub(eddy_http_server *srv, const char *name)
{
    struct eddyi_sampler *s = srv->sampler;
    json_t *o = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nsubs; i++) {
        const sub_state *st = &s->subs[i];
        if (strcmp(st->name, name) == 0 && st->present)
            o = json_pack("{s:I, s:I, s:b, s:s}", "checkpoint",
                          (json_int_t)st->checkpoint, "lag",
                          (json_int_t)st->lag, "stalled", st->stalled,
                          "seen_by", strcmp(st->kind, "handler") == 0
                                         ? "this process"
                                         : "the store");
    }
    pthread_mutex_unlock(&s->mu);
    return o;
}

/* The overview's counts (new reference; {} until the first count). */
json_t *eddyi_sampler_counts(eddy_http_server *srv);
json_t *eddyi_sampler_counts(eddy_http_server *srv)
{
    struct eddyi_sampler *s = srv->sampler;
    pthread_mutex_lock(&s->mu);
    json_t *c = s->counts ? json_deep_copy(s->counts) : json_object();
    pthread_mutex_unlock(&s->mu);
    return c;
}

bool eddyi_ready(eddy_http_server *srv, json_t **problems)
{
    struct eddyi_sampler *s = srv->sampler;
    json_t *p = problems ? json_array() : NULL;
    int64_t head = 0;
    eddy_error e = {0};
    bool ready = true;
    if (eddy_store_head(srv->store, &head, &e) != EDDY_OK) {
        ready = false;
        if (p)
            json_array_append_new(p, json_sprintf("store: %s", e.message));
    }
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nsubs; i++) {
        const sub_state *st = &s->subs[i];
        if (!st->present || !st->stalled)
            continue;
        ready = false;
        if (p)
            json_array_append_new(
                p, json_sprintf("subscription %s is stalled: checkpoint %" PRId64
                                ", %" PRId64 " events behind, no progress for "
                                "more than %u ms",
                                st->name, st->checkpoint, st->lag,
                                srv->stall_after_ms ? srv->stall_after_ms
                                                    : DEFAULT_STALL_MS));
    }
    pthread_mutex_unlock(&s->mu);
    if (problems)
        *problems = p;
    return ready;
}

/* ---- endpoints ------------------------------------------------------------------ */

enum MHD_Result eddyi_healthz(eddyi_req *r)
{
    return eddyi_reply_json(r, 200,
                            json_pack("{s:s, s:s}", "status", "alive",
                                      "version", eddy_version()),
                            NULL, 0);
}

enum MHD_Result eddyi_readyz(eddyi_req *r)
{
    json_t *problems = NULL;
    bool ready = eddyi_ready(r->l->srv, &problems);
    return eddyi_reply_json(r, ready ? 200 : 503,
                            json_pack("{s:b, s:o}", "ready", ready, "problems",
                                      problems ? problems : json_array()),
                            NULL, 0);
}

/* Text that grows; `failed` once out of memory. */
typedef struct buf {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

static void bprintf(buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (n >= 0 && cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *bigger = n < 0 ? NULL : realloc(b->p, cap);
        if (!bigger) {
            b->failed = true;
            return;
        }
        b->p = bigger;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

struct dead_by_handler {
    char *names[256];
    int64_t counts[256];
    size_t n;
};

static int dead_count_by(const eddy_dead_letter *dl, void *user)
{
    struct dead_by_handler *d = user;
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->names[i], dl->handler) == 0) {
            d->counts[i]++;
            return 0;
        }
    if (d->n < 256 && (d->names[d->n] = strdup(dl->handler)))
        d->counts[d->n++] = 1;
    return 0;
}

struct proj_gauge {
    eddy_metrics *m;
};

static int proj_lag_gauge(const eddy_projection_info *info, void *user)
{
    struct proj_gauge *g = user;
    /* EDDY_EEXIST when a subscription of this process registered that
     * gauge itself: its value is fresher, keep it */
    eddy_metrics_gauge_set(g->m, EDDY_METRIC_SUBSCRIPTION_LAG,
                           "Events in the store after the subscription's "
                           "checkpoint.",
                           "subscription", info->name, (double)info->lag,
                           NULL);
    return 0;
}

/* Refreshes the store gauges in the registry. */
static void store_gauges(eddy_http_server *srv)
{
    eddy_metrics *m = srv->metrics;
    eddy_store_info info;
    eddy_error e = {0};
    if (eddy_store_info_get(srv->store, &info, &e) == EDDY_OK) {
        eddy_metrics_gauge_set(m, "eddy_store_head_position",
                               "Last global position of the store.", NULL,
                               NULL, (double)info.head, NULL);
        eddy_metrics_gauge_set(m, "eddy_store_streams",
                               "Streams in the store.", NULL, NULL,
                               (double)info.stream_count, NULL);
        if (info.file_bytes >= 0)
            eddy_metrics_gauge_set(m, "eddy_store_size_bytes",
                                   "Size of the store on disk (database and "
                                   "write-ahead log).",
                                   NULL, NULL, (double)info.file_bytes, NULL);
    }
    struct dead_by_handler d = {.n = 0};
    if (eddy_dlq_list(srv->store, NULL, dead_count_by, &d, NULL) == EDDY_OK) {
        /* handlers whose last dead letter went away read 0 */
        eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
        for (size_t i = 0; i < eddy_metrics_snapshot_gauge_count(snap); i++) {
            const eddy_metrics_gauge_stats *g =
                eddy_metrics_snapshot_gauge(snap, i);
            if (strcmp(g->name, "eddy_dead_letters") == 0 && g->label_value)
                eddy_metrics_gauge_set(m, "eddy_dead_letters", NULL,
                                       "handler", g->label_value, 0, NULL);
        }
        eddy_metrics_snapshot_free(snap);
        for (size_t i = 0; i < d.n; i++)
            eddy_metrics_gauge_set(m, "eddy_dead_letters",
                                   "Dead letters in the store, by handler.",
                                   "handler", d.names[i], (double)d.counts[i],
                                   NULL);
    }
    for (size_t i = 0; i < d.n; i++)
        free(d.names[i]);
    struct proj_gauge pg = {m};
    eddy_projection_list(srv->store, proj_lag_gauge, &pg, NULL);
}

enum MHD_Result eddyi_metrics(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    store_gauges(srv);
    char *text = eddy_metrics_prometheus(srv->metrics);
    if (!text)
        return eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
    buf b = {.p = text, .len = strlen(text), .cap = strlen(text) + 1};
    bprintf(&b, "# HELP eddy_http_responses_total HTTP responses sent, by "
                "listener and status code.\n"
                "# TYPE eddy_http_responses_total counter\n");
    static const unsigned codes[] = {
#define EDDYI_CODE_VALUE_(c) c,
        EDDYI_HTTP_CODES(EDDYI_CODE_VALUE_)
#undef EDDYI_CODE_VALUE_
    };
    for (int li = 0; li < 2; li++) {
        eddyi_listener *l = &srv->listeners[li];
        if (!l->addr)
            continue;
        for (size_t i = 0; i < EDDYI_CODE_COUNT; i++) {
            uint64_t n = atomic_load(&l->responses[i]);
            if (i == EDDYI_CODE_OTHER)
                bprintf(&b, "eddy_http_responses_total{listener=\"%s\","
                            "code=\"other\"} %" PRIu64 "\n", l->name, n);
            else
                bprintf(&b, "eddy_http_responses_total{listener=\"%s\","
                            "code=\"%u\"} %" PRIu64 "\n", l->name, codes[i], n);
        }
    }
    pthread_mutex_lock(&srv->conn_mu);
    size_t conns = srv->conn_count;
    pthread_mutex_unlock(&srv->conn_mu);
    bprintf(&b,
            "# HELP eddy_http_connections Open HTTP connections (both "
            "listeners).\n# TYPE eddy_http_connections gauge\n"
            "eddy_http_connections %zu\n"
            "# HELP eddy_http_sse_clients Server-Sent Events clients "
            "connected.\n# TYPE eddy_http_sse_clients gauge\n"
            "eddy_http_sse_clients %zu\n"
            "# HELP eddy_http_sse_dropped_total Server-Sent Events clients "
            "dropped for falling behind.\n"
            "# TYPE eddy_http_sse_dropped_total counter\n"
            "eddy_http_sse_dropped_total %" PRIu64 "\n"
            "# HELP eddy_http_request_timeouts_total Connections closed "
            "because their request did not arrive in time.\n"
            "# TYPE eddy_http_request_timeouts_total counter\n"
            "eddy_http_request_timeouts_total %" PRIu64 "\n"
            "# HELP eddy_http_appends_pending Appends waiting for the store's "
            "writer.\n# TYPE eddy_http_appends_pending gauge\n"
            "eddy_http_appends_pending %zu\n"
            "# HELP eddy_http_appends_rejected_total Appends refused with 429 "
            "(too many waiting).\n"
            "# TYPE eddy_http_appends_rejected_total counter\n"
            "eddy_http_appends_rejected_total %" PRIu64 "\n",
            conns, eddyi_sse_clients(srv), eddyi_sse_dropped(srv),
            (uint64_t)atomic_load(&srv->timeouts),
            atomic_load(&srv->pending_appends),
            (uint64_t)atomic_load(&srv->rejected_429));
    if (b.failed) {
        free(b.p);
        return eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
    }
    return eddyi_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p,
                       b.len, NULL, 0);
}
