/*
 * src/reliability/durable.c - the life of a durable subscription
 * (eddy/durable.h): options, start, stop, free, the pipeline of one
 * segment (its start and stop, also used by the coordinator when the owned
 * partitions change), and the calls that watch it (checkpoint, wait_idle,
 * the lag gauge). How the parts work together is in durable_internal.h.
 *
 * Threads: start, stop, free, checkpoint and wait_idle run on the caller's
 * thread; the pipeline's start and stop on the starting thread, then on
 * the coordinator thread, then on the stopping thread; the lag gauge on
 * the thread that takes a metrics snapshot. A segment's start reads the
 * stored state (pending retries, dead-lettered positions) on readers; the
 * subscription's start writes its record (and a first checkpoint) and its
 * membership through the writer.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/retry.h"
#include "../store/state_durable.h"
#include "../store/store_internal.h"
#include "durable_internal.h"

#define DEFAULT_WORKERS 4
#define DEFAULT_MAX_IN_FLIGHT 4096
#define DEFAULT_CHECKPOINT_EVERY 100
#define DEFAULT_CHECKPOINT_INTERVAL_MS 200
#define MAX_WORKERS 256
/* wait_idle sleeps in slices of this much, to notice a subscription that
 * ended. */
#define WAIT_SLICE_US 100000

/* ---- options ------------------------------------------------------------- */

static int options_check(const eddy_durable_options *o, eddy_error *err)
{
    if (!o->name || !*o->name)
        return eddyi_error(err, EDDY_EINVAL, "durable: a name is required");
    if (!eddyi_utf8_valid(o->name, strlen(o->name)))
        return eddyi_error(err, EDDY_EINVAL, "durable: name is not valid "
                                             "UTF-8");
    switch (o->mode) {
    case EDDY_DELIVERY_AT_LEAST_ONCE:
    case EDDY_DELIVERY_INBOX:
        if (!o->handler || o->txn_handler)
            return eddyi_error(err, EDDY_EINVAL,
                               "durable \"%s\": this mode needs `handler` "
                               "(and no txn_handler)", o->name);
        break;
    case EDDY_DELIVERY_TRANSACTIONAL:
        if (!o->txn_handler || o->handler)
            return eddyi_error(err, EDDY_EINVAL,
                               "durable \"%s\": TRANSACTIONAL needs "
                               "`txn_handler` (and no handler)", o->name);
        break;
    default:
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": unknown mode %d",
                           o->name, (int)o->mode);
    }
    if (o->start_from != EDDY_START_BEGINNING && o->start_from != EDDY_START_END)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": unknown "
                           "start_from %d", o->name, (int)o->start_from);
    if (o->workers > MAX_WORKERS)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": %u workers, at "
                           "most %d", o->name, o->workers, MAX_WORKERS);
    if (o->partitions > MAX_PARTITIONS)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": %u partitions, "
                           "at most %d", o->name, o->partitions,
                           MAX_PARTITIONS);
    if (o->lease_ms && o->lease_ms < MIN_LEASE_MS)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": a lease of %u "
                           "ms, at least %d", o->name, o->lease_ms,
                           MIN_LEASE_MS);
    if (o->pattern_count && !o->patterns)
        return eddyi_error(err, EDDY_EINVAL, "durable subscription \"%s\": "
                           "pattern_count without patterns", o->name);
    for (size_t i = 0; i < o->pattern_count; i++)
        if (!o->patterns[i])
            return eddyi_error(err, EDDY_EINVAL, "durable subscription "
                               "\"%s\": patterns[%zu] is NULL", o->name, i);
    return EDDY_OK;
}

/* Copies the options into `d` (strings copied, defaults filled in). */
static int options_copy(eddy_durable *d, const eddy_durable_options *o,
                        eddy_error *err)
{
    char who[300];
    snprintf(who, sizeof who, "durable \"%.250s\"", o->name);
    int rc = eddyi_retry_resolve(&o->retry, &d->retry, who, err);
    if (rc != EDDY_OK)
        return rc;
    d->name = eddyi_strdup(o->name);
    d->source = eddyi_strdup(o->source ? o->source : o->name);
    if (!d->name || !d->source)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    static const char *const every[] = {"*"};
    const char *const *patterns = o->pattern_count ? o->patterns : every;
    size_t n = o->pattern_count ? o->pattern_count : 1;
    d->patterns = calloc(n, sizeof *d->patterns);
    d->matches = calloc(n, sizeof *d->matches);
    if (!d->patterns || !d->matches)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    for (; d->npatterns < n; d->npatterns++) {
        const char *p = patterns[d->npatterns];
        rc = eddyi_pattern_parse(p, &d->matches[d->npatterns], err);
        if (rc != EDDY_OK)
            return rc;
        if (!(d->patterns[d->npatterns] = eddyi_strdup(p)))
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    d->mode = o->mode;
    d->handler = o->handler;
    d->txn_handler = o->txn_handler;
    d->user = o->user;
    d->nworkers = o->workers ? o->workers : DEFAULT_WORKERS;
    d->max_in_flight =
        o->max_in_flight ? o->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    d->ckpt_every =
        o->checkpoint_every ? o->checkpoint_every : DEFAULT_CHECKPOINT_EVERY;
    d->ckpt_interval_ms = o->checkpoint_interval_ms
                              ? o->checkpoint_interval_ms
                              : DEFAULT_CHECKPOINT_INTERVAL_MS;
    d->metrics = o->metrics;
    d->partitions = o->partitions ? o->partitions : DEFAULT_PARTITIONS;
    d->lease_us =
        (int64_t)(o->lease_ms ? o->lease_ms : DEFAULT_LEASE_MS) * 1000;
    d->owned = calloc(d->partitions, sizeof *d->owned);
    d->passed = calloc(d->partitions, sizeof *d->passed);
    if (!d->owned || !d->passed)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    eddy_uuid7(d->member);
    eddyi_owner_self(d->owner, sizeof d->owner);
    return EDDY_OK;
}

/* ---- loading the stored state -------------------------------------------- */

struct record_job {
    eddy_durable *d;
    const char *filter; /* what it receives, as recorded */
    bool save;          /* no checkpoint stored yet: write the first */
    int64_t checkpoint;
};

/*
 * What the subscription receives, as the registry records it for `eddy
 * graph` and `eddy stats`: its patterns, comma-separated ("*" alone when
 * one of them is "*"). A new string, or NULL when out of memory.
 */
static char *recorded_filter(const eddy_durable *d)
{
    size_t len = 1;
    for (size_t i = 0; i < d->npatterns; i++) {
        if (d->matches[i].kind == EDDYI_PATTERN_ALL)
            return eddyi_strdup("*");
        len += strlen(d->patterns[i]) + 1;
    }
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < d->npatterns; i++) {
        size_t n = strlen(d->patterns[i]);
        if (i)
            *p++ = ',';
        memcpy(p, d->patterns[i], n);
        p += n;
    }
    *p = '\0';
    return out;
}

static int record_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct record_job *j = arg;
    /* Who handles what, for `eddy graph` (a projection or saga of this name
     * has recorded itself already and keeps its record). */
    int rc = eddyi_subs_record(txn, j->d->name, j->filter, "handler", err);
    if (rc == EDDY_OK && j->save)
        rc = eddyi_ckpt_save(txn, j->d->name, j->checkpoint, err);
    return rc;
}

struct grow {
    eddy_durable *d;
    size_t cap;
};

static int restored_row(const eddyi_retry_row *row, void *user)
{
    struct grow *g = user;
    eddy_durable *d = g->d;
    if (d->nrestored == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 16;
        struct restored *n = realloc(d->restored, ncap * sizeof *n);
        if (!n)
            return EDDY_ENOMEM;
        d->restored = n;
        g->cap = ncap;
    }
    struct restored *r = &d->restored[d->nrestored];
    *r = (struct restored){.position = row->position,
                           .attempts = row->attempts,
                           .first_fail_us = row->first_failure_us,
                           .last_fail_us = row->last_failure_us,
                           .next_at_us = row->next_at_us,
                           .code = row->error_code,
                           .error = eddyi_strdup(row->error)};
    if (!r->error)
        return EDDY_ENOMEM;
    d->nrestored++;
    return EDDY_OK;
}

static int dead_row(int64_t position, void *user)
{
    struct grow *g = user;
    eddy_durable *d = g->d;
    if (d->ndead == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 16;
        int64_t *n = realloc(d->dead, ncap * sizeof *n);
        if (!n)
            return EDDY_ENOMEM;
        d->dead = n;
        g->cap = ncap;
    }
    d->dead[d->ndead++] = position;
    return EDDY_OK;
}

/*
 * The subscription's record (for `eddy graph`) and its first checkpoint:
 * the stored one, else 0 (EDDY_START_BEGINNING) or the head
 * (EDDY_START_END), stored now. The partitions are created from it when
 * there are none yet (eddyi_durable_join). Reads on readers; writes through
 * the writer (EDDY_ESTATE on a read-only store).
 */
static int record(eddy_durable *d, eddy_start_from from, eddy_error *err)
{
    bool found = false;
    int64_t checkpoint = 0;
    int rc = eddyi_ckpt_load(d->store, d->name, &checkpoint, &found, err);
    if (rc != EDDY_OK)
        return rc;
    struct record_job j = {.d = d, .save = !found, .checkpoint = checkpoint};
    if (!found && from == EDDY_START_END &&
        (rc = eddy_store_head(d->store, &j.checkpoint, err)) != EDDY_OK)
        return rc;
    char *filter = recorded_filter(d);
    if (!filter)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    j.filter = filter;
    rc = eddyi_store_write(d->store, record_job_run, &j, err);
    free(filter);
    if (rc == EDDY_OK)
        d->first_checkpoint = j.checkpoint;
    return rc;
}

/*
 * Loads what a segment starting at `from` needs: the pending retries above
 * it and the events dead-lettered above it (a crash came before the
 * checkpoint moved past them: they are not delivered again). On readers.
 */
static int load_segment(eddy_durable *d, int64_t from, eddy_error *err)
{
    struct grow g = {.d = d};
    int rc = eddyi_retry_load(d->store, d->name, from, restored_row, &g, err);
    if (rc == EDDY_OK) {
        g.cap = 0;
        rc = eddyi_dl_positions(d->store, d->name, from, dead_row, &g, err);
    }
    if (rc == EDDY_ENOMEM)
        eddyi_error(err, rc, "durable \"%s\": out of memory loading its "
                    "state", d->name);
    return rc;
}

static void segment_unload(eddy_durable *d)
{
    for (size_t i = 0; i < d->nrestored; i++)
        free(d->restored[i].error);
    free(d->restored);
    d->restored = NULL;
    d->nrestored = 0;
    free(d->dead);
    d->dead = NULL;
    d->ndead = 0;
}

/* ---- start --------------------------------------------------------------- */

static int lag_gauge(double *value, void *user)
{
    eddy_durable *d = user;
    int64_t head = 0;
    int rc = eddy_store_head(d->store, &head, NULL);
    if (rc != EDDY_OK)
        return rc;
    int64_t w = eddyi_durable_watermark(d);
    *value = head > w ? (double)(head - w) : 0.0;
    return EDDY_OK;
}

static void durable_destroy(eddy_durable *d)
{
    eddyi_claim_release(d->claim);
    eddyi_stop_destroy(&d->stop);
    segment_unload(d);
    free(d->ring);
    free(d->workers);
    free(d->owned);
    free(d->passed);
    free(d->name);
    for (size_t i = 0; i < d->npatterns; i++)
        free(d->patterns[i]);
    free(d->patterns);
    free(d->matches);
    free(d->source);
    free(d);
}

/* Stops and joins the first `started` workers and the maintenance thread
 * (a segment that failed to start, or one that stops). */
static void threads_join(eddy_durable *d, unsigned started)
{
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    d->maint_stop = true;
    pthread_cond_broadcast(&d->maint_cond);
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    if (d->maint_started)
        pthread_join(d->maint, NULL);
    d->maint_started = false;
    for (unsigned i = 0; i < started; i++) {
        struct worker *w = &d->workers[i];
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
    for (unsigned i = 0; i < started; i++) {
        struct worker *w = &d->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = false;
    }
}

/* Back to a stopped pipeline's state: no event queued, an empty ring. */
static void segment_reset(eddy_durable *d)
{
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        eddyi_durable_worker_drop(w);
        w->stop = false;
        w->unsignalled = 0;
    }
    segment_unload(d);
    pthread_mutex_lock(&d->mu);
    d->ring_head = d->ring_len = 0;
    d->stopping = false;
    d->maint_stop = false;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

int eddyi_durable_pipeline_start(eddy_durable *d, eddy_error *err)
{
    /* The reader starts at the lowest checkpoint of the owned partitions;
     * without any, at the head (nothing is this member's to deliver). */
    int64_t from = INT64_MAX;
    for (unsigned p = 0; p < d->partitions; p++)
        if (d->owned[p] && d->passed[p] < from)
            from = d->passed[p];
    int rc = EDDY_OK;
    if (from == INT64_MAX && (rc = eddy_store_head(d->store, &from, err)) !=
                                 EDDY_OK)
        return rc;
    if ((rc = load_segment(d, from, err)) != EDDY_OK) {
        segment_unload(d);
        return rc;
    }
    pthread_mutex_lock(&d->mu);
    d->watermark = d->persisted = from;
    d->since_persist = 0;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);

    unsigned started = 0;
    for (; started < d->nworkers; started++) {
        struct worker *w = &d->workers[started];
        if (pthread_create(&w->thread, NULL, eddyi_durable_worker_main, w) !=
            0) {
            rc = eddyi_error(err, EDDY_ENOMEM, "durable \"%s\": cannot start "
                             "a worker thread", d->name);
            goto fail;
        }
        w->started = true;
    }
    if (pthread_create(&d->maint, NULL, eddyi_durable_maint_main, d) != 0) {
        rc = eddyi_error(err, EDDY_ENOMEM, "durable \"%s\": cannot start a "
                         "thread", d->name);
        goto fail;
    }
    d->maint_started = true;
    /* The store filters by the patterns (exact ones as types in the query,
     * prefixes as ranges), so events of other types are never read into
     * memory; progress moves the checkpoint past them. */
    eddy_store_subscribe_options so = {
        .patterns = (const char *const *)d->patterns,
        .pattern_count = d->npatterns,
        .progress = eddyi_durable_on_progress,
    };
    if ((rc = eddy_store_subscribe(d->store, from, eddyi_durable_on_record, d,
                                   &so, &d->sub, err)) != EDDY_OK)
        goto fail;
    d->pipeline_running = true;
    return EDDY_OK;

fail:
    threads_join(d, started);
    segment_reset(d);
    return rc;
}

int eddyi_durable_pipeline_stop(eddy_durable *d, eddy_error *err)
{
    if (!d->pipeline_running)
        return EDDY_OK;
    d->pipeline_running = false;
    pthread_mutex_lock(&d->mu);
    d->stopping = true; /* frees a dispatcher waiting for room */
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);

    int status = eddy_store_subscription_stop(d->sub, err);
    if (status == EDDY_ESTOPPED)
        status = EDDY_OK; /* our own stop, or the store closing */
    eddy_store_subscription_free(d->sub);
    d->sub = NULL;

    /* Workers drain what is runnable, then exit; parked keys stay stored
     * (threads_join lets them finish: their stop flag only ends the loop
     * once their queue is empty). */
    threads_join(d, d->nworkers);

    if (!eddyi_durable_fenced(d)) {
        eddy_error ce = {0};
        int rc = eddyi_durable_persist(d, &ce);
        if (rc != EDDY_OK) {
            if (status == EDDY_OK) {
                status = rc;
                if (err)
                    *err = ce;
            } else {
                EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: checkpoint not "
                          "persisted: %s", d->name, ce.message);
            }
        }
    }
    segment_reset(d);
    return status;
}

static void gauge_register(eddy_durable *d)
{
    if (!d->metrics)
        return;
    eddy_error ge = {0};
    if (eddy_metrics_gauge_register(
            d->metrics, EDDY_METRIC_SUBSCRIPTION_LAG,
            "Events in the store not yet completed by a durable "
            "subscription (head - checkpoint)",
            "subscription", d->name, lag_gauge, d, &ge) == EDDY_OK)
        d->gauge_registered = true;
    else
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: no lag gauge: %s", d->name,
                  ge.message);
}

/* The locks, conditions and workers' queues, made once for every segment.
 * Returns false when out of memory (nothing to undo but what it says). */
static bool sync_init(eddy_durable *d)
{
    d->ring = calloc(d->max_in_flight, sizeof *d->ring);
    d->workers = calloc(d->nworkers, sizeof *d->workers);
    if (!d->ring || !d->workers || pthread_mutex_init(&d->mu, NULL) != 0)
        return false;
    pthread_cond_init(&d->cond, NULL);
    pthread_cond_init(&d->maint_cond, NULL);
    pthread_cond_init(&d->coord_cond, NULL);
    pthread_mutex_init(&d->redrive_mu, NULL);
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        w->d = d;
        w->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)i * 0x100000001b3ULL) ^
                 (uint64_t)eddy_now_us();
        if (!w->rng)
            w->rng = 1;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cond, NULL);
    }
    return true;
}

static void sync_destroy(eddy_durable *d)
{
    for (unsigned i = 0; i < d->nworkers; i++) {
        pthread_cond_destroy(&d->workers[i].cond);
        pthread_mutex_destroy(&d->workers[i].mu);
    }
    pthread_mutex_destroy(&d->redrive_mu);
    pthread_cond_destroy(&d->coord_cond);
    pthread_cond_destroy(&d->maint_cond);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->mu);
}

eddy_durable *eddy_durable_start(eddy_store *store,
                                 const eddy_durable_options *opts,
                                 eddy_error *err)
{
    if (!store || !opts) {
        eddyi_error(err, EDDY_EINVAL, "durable: store and options are "
                                      "required");
        return NULL;
    }
    if (options_check(opts, err) != EDDY_OK)
        return NULL;
    eddy_durable *d = calloc(1, sizeof *d);
    if (!d) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    eddyi_stop_init(&d->stop);
    atomic_init(&d->fenced, false);
    d->store = store;
    bool synced = false, joined = false;
    if (options_copy(d, opts, err) != EDDY_OK ||
        eddyi_claim_take(store, "durable", d->name, &d->claim, err) !=
            EDDY_OK)
        goto fail;
    if (!(synced = sync_init(d))) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto fail;
    }
    if (record(d, opts->start_from, err) != EDDY_OK)
        goto fail;
    if (eddyi_durable_join(d, err) != EDDY_OK)
        goto fail;
    joined = true;
    if (eddyi_durable_pipeline_start(d, err) != EDDY_OK ||
        eddyi_durable_coord_start(d, err) != EDDY_OK)
        goto fail;
    gauge_register(d);
    EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: started at checkpoint %" PRId64
              " (%zu pending retries), member %s holds %u of %u partitions",
              d->name, eddyi_durable_watermark(d), d->nrestored, d->owner,
              d->nowned, d->partitions);
    return d;

fail:
    if (d->pipeline_running)
        eddyi_durable_pipeline_stop(d, NULL);
    if (joined)
        eddyi_durable_leave(d);
    if (synced)
        sync_destroy(d);
    durable_destroy(d);
    return NULL;
}

/* ---- stop / free --------------------------------------------------------- */

/* The work of a stop, done by exactly one caller (eddyi_stop). */
static int stop_once(eddy_durable *d, eddy_error *err)
{
    pthread_mutex_lock(&d->mu);
    d->closing = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);

    /* No rebalance from here on; then the last segment ends. */
    eddyi_durable_coord_stop(d);
    eddy_error se = {0};
    int status = eddyi_durable_pipeline_stop(d, &se);
    pthread_mutex_lock(&d->mu);
    if (d->failed && status == EDDY_OK) { /* what ended it earlier */
        status = d->fail_status;
        se = d->fail_err;
    }
    pthread_mutex_unlock(&d->mu);
    if (status != EDDY_OK && err)
        *err = se;
    eddyi_durable_leave(d);
    if (d->gauge_registered) {
        eddy_metrics_gauge_unregister(d->metrics, EDDY_METRIC_SUBSCRIPTION_LAG,
                                      "subscription", d->name);
        d->gauge_registered = false;
    }
    /* The name may run again on this handle. */
    eddyi_claim_release(d->claim);
    d->claim = NULL;
    pthread_mutex_lock(&d->mu);
    d->stopped = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: stopped at checkpoint %" PRId64,
              d->name, eddyi_durable_watermark(d));
    return status;
}

int eddy_durable_stop(eddy_durable *d, eddy_error *err)
{
    if (!d)
        return eddyi_error(err, EDDY_EINVAL, "durable stop: NULL");
    if (eddyi_stop_begin(&d->stop)) {
        eddy_error se = {0};
        int status = stop_once(d, &se);
        eddyi_stop_end(&d->stop, status, &se);
    }
    return eddyi_stop_wait(&d->stop, err);
}

void eddy_durable_free(eddy_durable *d)
{
    if (!d)
        return;
    eddy_durable_stop(d, NULL);
    sync_destroy(d);
    durable_destroy(d);
}

/* ---- watching it --------------------------------------------------------- */

int64_t eddy_durable_checkpoint(const eddy_durable *d)
{
    if (!d)
        return 0;
    return eddyi_durable_watermark((eddy_durable *)d);
}

/* One slice of waiting on d->cond (under d->mu) before `end_us`. Returns
 * EDDY_OK, or EDDY_ETIMEDOUT when `end_us` passed. */
static int wait_slice(eddy_durable *d, int64_t end_us)
{
    int64_t now = eddy_now_us();
    if (now >= end_us)
        return EDDY_ETIMEDOUT;
    int64_t until = now + WAIT_SLICE_US;
    if (until > end_us)
        until = end_us;
    struct timespec ts;
    eddyi_abs_deadline(&ts, until);
    pthread_cond_timedwait(&d->cond, &d->mu, &ts);
    return EDDY_OK;
}

/* Waits until the watermark reaches `position`. `*stopped` tells whether
 * the subscription's stop had ended. */
static int wait_watermark(eddy_durable *d, int64_t position, int64_t end_us,
                          bool *stopped)
{
    int rc = EDDY_OK;
    pthread_mutex_lock(&d->mu);
    while (d->watermark < position && rc == EDDY_OK) {
        if (d->stopped || d->failed)
            rc = EDDY_ESTOPPED;
        else
            rc = wait_slice(d, end_us);
    }
    *stopped = d->stopped;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/*
 * Waits until no dead letter of `d` is marked for redrive: each was
 * redelivered (deleted on success, back to "dead" on failure). The first
 * round asks the maintenance thread for a pass at once and waits for a
 * pass that began after the request; a letter still marked after that
 * failed for a store reason and is tried by the next periodic pass.
 */
static int wait_redrives(eddy_durable *d, int64_t end_us)
{
    for (bool ask = true;; ask = false) {
        int64_t id = 0;
        size_t n = 0;
        int rc = eddyi_dl_marked(d->store, d->name, &id, 1, &n, NULL);
        if (rc != EDDY_OK || n == 0)
            return rc;
        pthread_mutex_lock(&d->mu);
        uint64_t target = d->redrive_started + 1;
        if (ask) {
            d->redrive_now = true;
            pthread_cond_signal(&d->maint_cond);
        }
        while (d->redrive_passes < target && rc == EDDY_OK) {
            if (d->closing || d->failed)
                rc = EDDY_ESTOPPED;
            else
                rc = wait_slice(d, end_us);
        }
        pthread_mutex_unlock(&d->mu);
        if (rc != EDDY_OK)
            return rc;
    }
}

int eddy_durable_wait_idle(eddy_durable *d, int64_t position, int timeout_ms)
{
    if (!d)
        return EDDY_EINVAL;
    int64_t end_us = timeout_ms < 0
                         ? INT64_MAX
                         : eddy_now_us() + (int64_t)timeout_ms * 1000;
    bool stopped = false;
    int rc = wait_watermark(d, position, end_us, &stopped);
    if (rc != EDDY_OK)
        return rc;
    if (stopped) { /* nothing redelivers any more */
        int64_t id = 0;
        size_t n = 0;
        rc = eddyi_dl_marked(d->store, d->name, &id, 1, &n, NULL);
        return rc != EDDY_OK ? rc : n ? EDDY_ESTOPPED : EDDY_OK;
    }
    rc = wait_redrives(d, end_us);
    if (rc == EDDY_OK)
        rc = eddyi_durable_persist(d, NULL);
    return rc;
}
