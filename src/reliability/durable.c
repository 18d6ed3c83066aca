/*
 * src/reliability/durable.c - durable subscriptions: checkpoint, per-key
 * ordered workers, timer-driven retries, dead letters, inbox idempotency.
 *
 * Threads of one subscription:
 *   - the store subscription's thread (on_record): decodes nothing itself,
 *     filters by pattern, records the position in the completion ring and
 *     hands the event to the worker chosen by the hash of its partition key.
 *     It blocks while max_in_flight events are uncompleted (backpressure).
 *   - N workers: each keeps an inbound FIFO (shared, under its mutex) and a
 *     private list of parked keys. A key whose event failed is parked with a
 *     due time; its later events queue behind it; other keys keep flowing.
 *     The worker sleeps on its condvar until new work or the earliest due
 *     time: nothing ever sleeps inside a handler.
 *   - a maintenance thread: persists the checkpoint every checkpoint_every
 *     completions or checkpoint_interval_ms, and redrives dead letters
 *     marked "redrive" (eddy_dlq_retry) every REDRIVE_POLL_MS.
 *
 * The checkpoint is the completion ring's low watermark: positions enter the
 * ring in store order; a completed position is flagged; the front pops
 * while flagged. So the checkpoint never passes an uncompleted event, and
 * after a crash everything above it is delivered again (at-least-once).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ctx_internal.h"
#include "../core/internal.h"
#include "../core/pattern.h"
#include "reliability_internal.h"
#include "../observe/observe_internal.h"

#define DEFAULT_WORKERS 4
#define DEFAULT_MAX_IN_FLIGHT 4096
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_INITIAL_DELAY_MS 100
#define DEFAULT_MULTIPLIER 2.0
#define DEFAULT_MAX_DELAY_MS 30000
#define DEFAULT_JITTER 0.2
#define DEFAULT_CHECKPOINT_EVERY 100
#define DEFAULT_CHECKPOINT_INTERVAL_MS 200
#define REDRIVE_POLL_MS 200
/* A dead letter that could not be written is tried again after this. */
#define DEAD_LETTER_RETRY_US 1000000
#define MESSAGE_MAX 384
#define MAX_WORKERS 256

/* ---- types ---------------------------------------------------------------- */

struct item {
    struct item *next;
    eddy_event *ev;
    int64_t position;
    uint64_t hash;
    const char *key;        /* borrowed from ev */
    int attempts;           /* failed handler calls so far */
    int64_t first_fail_us;
    int64_t last_fail_us;
    int64_t next_at_us;     /* when parked: due time (wall clock) */
    int last_code;
    char last_error[MESSAGE_MAX];
    bool dl_pending;        /* given up; the dead-letter write must retry */
};

/* A key whose head event waits for its retry; later events of the key wait
 * behind it. Private to its worker. */
struct parked {
    struct parked *next;
    struct item *head;
    struct item *wait_head, *wait_tail;
};

struct worker {
    eddy_durable *d;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct item *in_head, *in_tail; /* under mu */
    bool stop;                      /* under mu */
    struct parked *parked;          /* worker thread only */
    uint64_t rng;
};

/* A retry row loaded at start. */
struct restored {
    int64_t position;
    int attempts;
    int64_t first_fail_us, last_fail_us, next_at_us;
    int code;
    char *error;
};

struct slot {
    int64_t position;
    bool done;
};


struct eddy_durable {
    eddy_store *store;
    char *name;
    char *pattern;
    char **types;     /* exact-type filter (NULL: none) */
    size_t ntypes;
    char *source;
    eddyi_pattern match; /* parsed `pattern` */
    eddy_delivery_mode mode;
    eddy_handler_fn handler;
    eddy_txn_handler_fn txn_handler;
    void *user;
    unsigned nworkers;
    size_t max_in_flight;
    eddy_retry_policy retry;
    unsigned ckpt_every;
    unsigned ckpt_interval_ms;
    eddy_metrics *metrics;
    bool gauge_registered;

    struct worker *workers;
    eddy_store_subscription *sub;

    pthread_mutex_t mu;       /* ring, watermark, flags below */
    pthread_cond_t cond;      /* ring room or watermark moved */
    pthread_cond_t maint_cond;
    struct slot *ring;        /* max_in_flight slots */
    size_t ring_head, ring_len;
    int64_t watermark;        /* the checkpoint in memory */
    int64_t persisted;        /* last checkpoint written */
    unsigned since_persist;   /* completions since */
    bool stopping;            /* dispatcher must not queue more */
    bool maint_stop;
    bool stop_called;         /* a stop is running or done */
    bool stopped;
    int status;
    eddy_error status_err;

    pthread_t maint;
    bool maint_started;
    pthread_mutex_t redrive_mu; /* one redrive at a time */

    /* Loaded at start, read by the dispatcher only. */
    struct restored *restored;
    size_t nrestored;
    int64_t *dead;            /* dead-lettered positions above the checkpoint */
    size_t ndead;
};

/* ---- the per-store registry of running names ------------------------------ */

struct running {
    struct running *next;
    const eddy_store *store;
    const char *name; /* the subscription's own copy */
};

static pthread_mutex_t running_mu = PTHREAD_MUTEX_INITIALIZER;
static struct running *running_list;

static bool running_add(struct running *r)
{
    bool ok = true;
    pthread_mutex_lock(&running_mu);
    for (struct running *x = running_list; x; x = x->next)
        if (x->store == r->store && strcmp(x->name, r->name) == 0)
            ok = false;
    if (ok) {
        r->next = running_list;
        running_list = r;
    }
    pthread_mutex_unlock(&running_mu);
    return ok;
}

static void running_remove(const eddy_durable *d)
{
    pthread_mutex_lock(&running_mu);
    for (struct running **p = &running_list; *p; p = &(*p)->next) {
        if ((*p)->store == d->store && (*p)->name == d->name) {
            struct running *r = *p;
            *p = r->next;
            free(r);
            break;
        }
    }
    pthread_mutex_unlock(&running_mu);
}

/* ---- small helpers -------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static bool default_retryable(int code)
{
    return code != EDDY_EINVAL && code != EDDY_EPARSE && code != EDDY_ESCHEMA;
}

static bool is_retryable(const eddy_durable *d, int code)
{
    if (d->retry.retryable)
        return d->retry.retryable(code, d->retry.retryable_user);
    return default_retryable(code);
}

/* The delay before retry `n` (n >= 1), in microseconds. */
static int64_t backoff_us(const eddy_durable *d, int n, uint64_t *rng)
{
    double ms = d->retry.initial_delay_ms;
    for (int i = 1; i < n && ms < d->retry.max_delay_ms; i++)
        ms *= d->retry.multiplier;
    if (ms > d->retry.max_delay_ms)
        ms = d->retry.max_delay_ms;
    if (d->retry.jitter > 0) {
        double r = (double)(xorshift(rng) >> 11) / (double)(1ULL << 53);
        ms *= 1.0 - d->retry.jitter * r;
    }
    return (int64_t)(ms * 1000.0);
}

static bool pattern_matches(const eddy_durable *d, const char *type)
{
    if (d->ntypes) {
        size_t i = 0;
        while (i < d->ntypes && strcmp(d->types[i], type) != 0)
            i++;
        if (i == d->ntypes)
            return false;
    }
    return eddyi_pattern_match(&d->match, d->pattern, type);
}

static eddy_metrics_series *series_of(const eddy_durable *d,
                                      const eddy_event *ev)
{
    return d->metrics ? eddy_metrics_series_get(d->metrics, d->name,
                                                eddy_event_type(ev))
                      : NULL;
}

static void abs_deadline(struct timespec *ts, int64_t at_us)
{
    ts->tv_sec = (time_t)(at_us / 1000000);
    ts->tv_nsec = (long)(at_us % 1000000) * 1000;
}

static void deadline_in_ms(struct timespec *ts, int64_t ms)
{
    abs_deadline(ts, eddy_now_us() + ms * 1000);
}

/* ---- completion ring and checkpoint --------------------------------------- */

static struct slot *ring_at(eddy_durable *d, size_t i)
{
    return &d->ring[(d->ring_head + i) % d->max_in_flight];
}

/* Pops the completed front; under d->mu. */
static void ring_advance(eddy_durable *d)
{
    bool moved = false;
    while (d->ring_len > 0 && ring_at(d, 0)->done) {
        d->watermark = ring_at(d, 0)->position;
        d->ring_head = (d->ring_head + 1) % d->max_in_flight;
        d->ring_len--;
        d->since_persist++;
        moved = true;
    }
    if (moved) {
        pthread_cond_broadcast(&d->cond);
        if (d->since_persist >= d->ckpt_every)
            pthread_cond_signal(&d->maint_cond);
    }
}

/* Marks `position` completed (handled, skipped or dead-lettered). */
static void complete(eddy_durable *d, int64_t position)
{
    pthread_mutex_lock(&d->mu);
    size_t lo = 0, hi = d->ring_len;
    while (lo < hi) { /* positions in the ring are increasing */
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(d, mid)->position < position)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < d->ring_len && ring_at(d, lo)->position == position) {
        ring_at(d, lo)->done = true;
        ring_advance(d);
    }
    pthread_mutex_unlock(&d->mu);
}

static int64_t watermark_get(eddy_durable *d)
{
    pthread_mutex_lock(&d->mu);
    int64_t w = d->watermark;
    pthread_mutex_unlock(&d->mu);
    return w;
}

static const char UPSERT_CHECKPOINT[] =
    "INSERT INTO eddy_checkpoints(name, position, updated_us) "
    "VALUES(?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET "
    "position = max(position, excluded.position), "
    "updated_us = excluded.updated_us";

struct ckpt_job {
    eddy_durable *d;
    int64_t position;
};

static int ckpt_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct ckpt_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_exec(db, NULL, err, UPSERT_CHECKPOINT, "tii",
                            j->d->name, j->position, eddy_txn_now_us(txn));
    /* Retry rows at or below the checkpoint are stale (their event was
     * handled or dead-lettered). */
    if (rc == EDDY_OK)
        rc = eddyi_rel_exec(db, NULL, err,
                            "DELETE FROM eddy_retries WHERE subscription = ?1 "
                            "AND position <= ?2",
                            "ti", j->d->name, j->position);
    return rc;
}

/* Writes the in-memory checkpoint if it moved. */
static int checkpoint_persist(eddy_durable *d, eddy_error *err)
{
    pthread_mutex_lock(&d->mu);
    int64_t w = d->watermark;
    bool need = w > d->persisted;
    d->since_persist = 0;
    pthread_mutex_unlock(&d->mu);
    if (!need)
        return EDDY_OK;
    struct ckpt_job j = {.d = d, .position = w};
    int rc = eddyi_store_write(d->store, ckpt_job_run, &j, err);
    if (rc == EDDY_OK) {
        pthread_mutex_lock(&d->mu);
        if (w > d->persisted)
            d->persisted = w;
        pthread_mutex_unlock(&d->mu);
    }
    return rc;
}

/* ---- running the handler -------------------------------------------------- */

/* Follow-ups of at-least-once and inbox handlers: appended to the store,
 * stream = the follow-up's subject, else its type. */
static int publish_append(void *host_user, eddy_event *ev)
{
    eddy_durable *d = host_user;
    const char *stream = eddy_event_subject(ev);
    if (!stream)
        stream = eddy_event_type(ev);
    eddy_error e = {0};
    int rc = eddy_store_append(d->store, stream, EDDY_EXPECT_ANY, &ev, 1,
                               NULL, &e);
    if (rc != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: follow-up %s: %s", d->name,
                  eddy_event_type(ev), e.message);
    return rc;
}

struct call_plain {
    eddy_durable *d;
    const eddy_event *ev;
};

static int call_plain_fn(eddy_ctx *ctx, void *arg)
{
    struct call_plain *c = arg;
    return c->d->handler(ctx, c->ev, c->d->user);
}

/* Runs the plain handler once; `msg` receives its failure message. */
static int run_plain(eddy_durable *d, const eddy_event *ev, char *msg)
{
    eddyi_ctx_host host = {.publish = publish_append,
                           .host_user = d,
                           .name = d->name,
                           .source = d->source};
    struct call_plain c = {.d = d, .ev = ev};
    eddy_metrics_series *ms = series_of(d, ev);
    eddy_metrics_begin(ms);
    uint64_t t0 = eddy_metrics_clock_ns();
    int rc = eddyi_ctx_run(&host, ev, call_plain_fn, &c, msg, MESSAGE_MAX);
    eddy_metrics_end(ms, rc, eddy_metrics_clock_ns() - t0);
    return rc;
}

/* What a write job around a handler call does besides the handler. */
struct txn_job {
    eddy_durable *d;
    const eddy_event *ev;
    int64_t position;
    int64_t dead_letter_id; /* > 0: a redrive; delete it on success */
    bool had_retry;         /* delete the retry row on success */
    eddy_txn *txn;
    bool skipped;           /* the inbox said "done" already */
    bool batched;           /* the batch writes the checkpoint once */
    char msg[MESSAGE_MAX];
};

static int publish_txn(void *host_user, eddy_event *ev)
{
    struct txn_job *j = host_user;
    const char *stream = eddy_event_subject(ev);
    if (!stream)
        stream = eddy_event_type(ev);
    eddy_error e = {0};
    int rc = eddy_txn_append(j->txn, stream, EDDY_EXPECT_ANY, &ev, 1, NULL,
                              &e);
    if (rc != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: follow-up %s: %s",
                  j->d->name, eddy_event_type(ev), e.message);
    return rc;
}

static int call_txn_fn(eddy_ctx *ctx, void *arg)
{
    struct txn_job *j = arg;
    return j->d->txn_handler(ctx, j->ev, j->txn, j->d->user);
}

/* The bookkeeping committed with a successful (or skipped) call. */
static int txn_job_finish(struct txn_job *j, sqlite3 *db, eddy_error *err)
{
    eddy_durable *d = j->d;
    int64_t now = eddy_txn_now_us(j->txn);
    int rc = EDDY_OK;
    if (d->mode != EDDY_DELIVERY_AT_LEAST_ONCE)
        rc = eddyi_rel_exec(db, NULL, err,
                            "INSERT INTO eddy_inbox(handler, event_id, state, "
                            "updated_us) VALUES(?1, ?2, 'done', ?3) "
                            "ON CONFLICT(handler, event_id) DO UPDATE SET "
                            "state = 'done', updated_us = excluded.updated_us",
                            "tti", d->name, eddy_event_id(j->ev), now);
    if (rc == EDDY_OK && j->had_retry)
        rc = eddyi_rel_exec(db, NULL, err,
                            "DELETE FROM eddy_retries WHERE subscription = ?1 "
                            "AND position = ?2",
                            "ti", d->name, j->position);
    if (rc == EDDY_OK && j->dead_letter_id > 0)
        rc = eddyi_rel_exec(db, NULL, err,
                            "DELETE FROM eddy_dead_letters WHERE id = ?1", "i",
                            j->dead_letter_id);
    if (rc == EDDY_OK && d->mode == EDDY_DELIVERY_TRANSACTIONAL &&
        !j->batched) {
        /* The watermark as it is now: this event is not completed yet, so
         * the stored checkpoint never passes it before this commit. */
        int64_t w = watermark_get(d);
        if (w > 0)
            rc = eddyi_rel_exec(db, NULL, err, UPSERT_CHECKPOINT, "tii",
                                d->name, w, now);
    }
    return rc;
}

/* TRANSACTIONAL: inbox check, handler, inbox row, checkpoint: one job. */
static int txn_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct txn_job *j = arg;
    eddy_durable *d = j->d;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    j->txn = txn;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT state FROM eddy_inbox WHERE handler = "
                               "?1 AND event_id = ?2",
                               "tt", d->name, eddy_event_id(j->ev));
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const unsigned char *state = sqlite3_column_text(st, 0);
        j->skipped = state && strcmp((const char *)state, "done") == 0;
    } else if (s != SQLITE_DONE) {
        rc = eddyi_rel_sqlerr(db, "reading the inbox", err);
    }
    sqlite3_finalize(st);
    if (rc != EDDY_OK)
        return rc;
    if (!j->skipped) {
        eddyi_ctx_host host = {.publish = publish_txn,
                               .host_user = j,
                               .name = d->name,
                               .source = d->source};
        eddy_metrics_series *ms = series_of(d, j->ev);
        eddy_metrics_begin(ms);
        uint64_t t0 = eddy_metrics_clock_ns();
        rc = eddyi_ctx_run(&host, j->ev, call_txn_fn, j, j->msg,
                           sizeof j->msg);
        eddy_metrics_end(ms, rc, eddy_metrics_clock_ns() - t0);
        if (rc != EDDY_OK)
            return eddyi_error(err, rc, "%s",
                               j->msg[0] ? j->msg : eddy_strerror(rc));
    }
    return txn_job_finish(j, db, err);
}

/* INBOX: claims (handler, event id). `*state` receives "claimed" when this
 * call or an earlier unfinished one holds it, "done" when it succeeded. */
struct claim_job {
    eddy_durable *d;
    const eddy_event *ev;
    bool done;
};

static int claim_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct claim_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "INSERT INTO eddy_inbox(handler, event_id, "
                               "state, updated_us) VALUES(?1, ?2, 'claimed', "
                               "?3) ON CONFLICT(handler, event_id) DO UPDATE "
                               "SET updated_us = updated_us RETURNING state",
                               "tti", j->d->name, eddy_event_id(j->ev),
                               eddy_txn_now_us(txn));
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const unsigned char *state = sqlite3_column_text(st, 0);
        j->done = state && strcmp((const char *)state, "done") == 0;
        while ((s = sqlite3_step(st)) == SQLITE_ROW)
            ;
    }
    if (s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "claiming in the inbox", err);
    sqlite3_finalize(st);
    return rc;
}

/* A write job holding only the bookkeeping of txn_job_finish. */
static int finish_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct txn_job *j = arg;
    sqlite3 *db;
    j->txn = txn;
    int rc = eddyi_rel_db(txn, &db, err);
    return rc == EDDY_OK ? txn_job_finish(j, db, err) : rc;
}

/*
 * Delivers `ev` once in the subscription's mode. `dead_letter_id` > 0: a
 * redrive (deleted with the success bookkeeping). Returns EDDY_OK (handled,
 * or skipped as already done) or the failure, with `msg` set.
 */
static int deliver(eddy_durable *d, const eddy_event *ev, int64_t position,
                   bool had_retry, int64_t dead_letter_id, char *msg)
{
    eddy_error e = {0};
    struct txn_job j = {.d = d,
                        .ev = ev,
                        .position = position,
                        .had_retry = had_retry,
                        .dead_letter_id = dead_letter_id};
    int rc;
    msg[0] = '\0';
    switch (d->mode) {
    case EDDY_DELIVERY_TRANSACTIONAL:
        rc = eddyi_store_write(d->store, txn_job_run, &j, &e);
        if (rc != EDDY_OK)
            snprintf(msg, MESSAGE_MAX, "%.360s", j.msg[0] ? j.msg : e.message);
        return rc;
    case EDDY_DELIVERY_INBOX: {
        struct claim_job c = {.d = d, .ev = ev};
        rc = eddyi_store_write(d->store, claim_job_run, &c, &e);
        if (rc != EDDY_OK) {
            snprintf(msg, MESSAGE_MAX, "inbox claim: %.360s", e.message);
            return rc;
        }
        if (!c.done) {
            rc = run_plain(d, ev, msg);
            if (rc != EDDY_OK)
                return rc;
        }
        rc = eddyi_store_write(d->store, finish_job_run, &j, &e);
        if (rc != EDDY_OK)
            snprintf(msg, MESSAGE_MAX, "inbox done: %.360s", e.message);
        return rc;
    }
    case EDDY_DELIVERY_AT_LEAST_ONCE:
    default:
        rc = run_plain(d, ev, msg);
        if (rc == EDDY_OK && (had_retry || dead_letter_id > 0)) {
            /* Best effort: a stale retry row only restores an attempt
             * count; a dead letter left behind is redriven again (at least
             * once). */
            int r = eddyi_store_write(d->store, finish_job_run, &j, &e);
            if (r != EDDY_OK)
                EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: cleanup after "
                          "success at position %" PRId64 ": %s", d->name,
                          position, e.message);
        }
        return rc;
    }
}

/* ---- retries and dead letters --------------------------------------------- */

struct row_job {
    eddy_durable *d;
    const struct item *it;
};

static int retry_row_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct row_job *j = arg;
    const struct item *it = j->it;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    return eddyi_rel_exec(
        db, NULL, err,
        "INSERT INTO eddy_retries(subscription, position, event_id, attempts, "
        "first_failure_us, last_failure_us, next_at_us, error_code, "
        "last_error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
        "ON CONFLICT(subscription, position) DO UPDATE SET "
        "attempts = excluded.attempts, last_failure_us = "
        "excluded.last_failure_us, next_at_us = excluded.next_at_us, "
        "error_code = excluded.error_code, last_error = excluded.last_error",
        "titniiint", j->d->name, it->position, eddy_event_id(it->ev),
        it->attempts, it->first_fail_us, it->last_fail_us, it->next_at_us,
        it->last_code, it->last_error);
}

static int dead_letter_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct row_job *j = arg;
    const struct item *it = j->it;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    char *payload = eddy_event_encode(it->ev, NULL);
    if (!payload)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    rc = eddyi_rel_exec(
        db, NULL, err,
        "INSERT INTO eddy_dead_letters(subscription, position, event_id, "
        "event_type, payload, error_code, error, attempts, first_failure_us, "
        "last_failure_us, status) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
        "?10, 'dead') ON CONFLICT(subscription, position) DO UPDATE SET "
        "error_code = excluded.error_code, error = excluded.error, "
        "attempts = excluded.attempts, last_failure_us = "
        "excluded.last_failure_us, status = 'dead'",
        "titttntnii", j->d->name, it->position, eddy_event_id(it->ev),
        eddy_event_type(it->ev), payload, it->last_code, it->last_error,
        it->attempts, it->first_fail_us, it->last_fail_us);
    free(payload);
    if (rc == EDDY_OK)
        rc = eddyi_rel_exec(db, NULL, err,
                            "DELETE FROM eddy_retries WHERE subscription = ?1 "
                            "AND position = ?2",
                            "ti", j->d->name, it->position);
    return rc;
}

/* Moves `it` to the dead letters. True when written (the key may move on);
 * false: it stays parked and the write is tried again later. */
static bool dead_letter(struct worker *w, struct item *it)
{
    eddy_durable *d = w->d;
    eddy_error e = {0};
    struct row_job j = {.d = d, .it = it};
    int rc = eddyi_store_write(d->store, dead_letter_run, &j, &e);
    if (rc != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_ERROR, "durable",
                  "%s: cannot store the dead letter of event %s (position "
                  "%" PRId64 "), will try again: %s", d->name,
                  eddy_event_id(it->ev), it->position, e.message);
        it->dl_pending = true;
        it->next_at_us = eddy_now_us() + DEAD_LETTER_RETRY_US;
        return false;
    }
    eddy_metrics_dead_lettered(series_of(d, it->ev));
    EDDYI_LOG(EDDY_LOG_WARN, "durable",
              "%s: event %s (%s, position %" PRId64 ") dead-lettered after "
              "%d attempt(s): %s", d->name, eddy_event_id(it->ev),
              eddy_event_type(it->ev), it->position, it->attempts,
              it->last_error);
    return true;
}

static bool item_failed(struct worker *w, struct item *it, int rc,
                        const char *msg);

/*
 * Runs `it` once. True: completed (handled, skipped or dead-lettered);
 * false: it must be parked until it->next_at_us.
 */
static bool item_run(struct worker *w, struct item *it)
{
    eddy_durable *d = w->d;
    if (it->dl_pending)
        return dead_letter(w, it);
    char msg[MESSAGE_MAX];
    int rc = deliver(d, it->ev, it->position, it->attempts > 0, 0, msg);
    if (rc == EDDY_OK)
        return true;
    return item_failed(w, it, rc, msg);
}

/* Records a failed call of `it` (error `rc`, message `msg`): schedules a
 * retry (false: park it) or dead-letters it (true: the key moves on). */
static bool item_failed(struct worker *w, struct item *it, int rc,
                        const char *msg)
{
    eddy_durable *d = w->d;
    int64_t now = eddy_now_us();
    it->attempts++;
    if (!it->first_fail_us)
        it->first_fail_us = now;
    it->last_fail_us = now;
    it->last_code = rc;
    snprintf(it->last_error, sizeof it->last_error, "%.20s: %.360s", eddy_errname(rc),
             msg[0] ? msg : eddy_strerror(rc));
    if (!is_retryable(d, rc) || it->attempts >= (int)d->retry.max_attempts)
        return dead_letter(w, it);
    it->next_at_us = now + backoff_us(d, it->attempts, &w->rng);
    eddy_metrics_retried(series_of(d, it->ev));
    EDDYI_LOG(EDDY_LOG_INFO, "durable",
              "%s: event %s (position %" PRId64 ") failed, attempt %d of %u, "
              "retry in %" PRId64 " ms: %s", d->name, eddy_event_id(it->ev),
              it->position, it->attempts, d->retry.max_attempts,
              (it->next_at_us - now) / 1000, it->last_error);
    eddy_error e = {0};
    struct row_job j = {.d = d, .it = it};
    if (eddyi_store_write(d->store, retry_row_run, &j, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: retry state of position "
                  "%" PRId64 " not persisted: %s", d->name, it->position,
                  e.message);
    return false;
}

static void item_free(struct item *it)
{
    if (!it)
        return;
    eddy_event_unref(it->ev);
    free(it);
}

static void item_done(eddy_durable *d, struct item *it)
{
    complete(d, it->position);
    item_free(it);
}

/* ---- workers -------------------------------------------------------------- */

static struct parked *parked_find(struct worker *w, const struct item *it)
{
    for (struct parked *p = w->parked; p; p = p->next)
        if (p->head->hash == it->hash && strcmp(p->head->key, it->key) == 0)
            return p;
    return NULL;
}

static bool park_new(struct worker *w, struct item *it)
{
    struct parked *p = calloc(1, sizeof *p);
    if (!p)
        return false;
    p->head = it;
    p->next = w->parked;
    w->parked = p;
    return true;
}

static void queue_behind(struct parked *p, struct item *it)
{
    if (p->wait_tail)
        p->wait_tail->next = it;
    else
        p->wait_head = it;
    p->wait_tail = it;
}

static void park_or_drop(struct worker *w, struct item *it)
{
    if (!park_new(w, it)) {
        /* Out of memory: drop it from this run; the checkpoint stays below
         * it, so it is delivered again after a restart. */
        EDDYI_LOG(EDDY_LOG_ERROR, "durable", "%s: out of memory parking "
                  "position %" PRId64, w->d->name, it->position);
        item_free(it);
    }
}

/* A retry restored from the store waits for its due time first. */
static bool not_due(const struct item *it)
{
    return it->attempts > 0 && it->next_at_us > eddy_now_us();
}

/* Runs a fresh item, parking it (or queueing it behind its parked key). */
static void worker_take(struct worker *w, struct item *it)
{
    struct parked *p = parked_find(w, it);
    if (p) {
        queue_behind(p, it);
        return;
    }
    if (not_due(it) || !item_run(w, it)) {
        park_or_drop(w, it);
        return;
    }
    item_done(w->d, it);
}

/* ---- transactional batches ------------------------------------------------ */

/*
 * A TRANSACTIONAL worker hands every runnable event it has queued (up to
 * TXN_BATCH) to the writer in ONE job: each event runs in its own nested
 * savepoint (a failing handler rolls back only its own writes), and the
 * checkpoint is written once. Without this, each event would cost a commit
 * round trip to the writer. Per-key order holds inside a batch: after an
 * event fails, the later events of its key in the batch are not run
 * ("deferred") and queue behind it.
 */
#define TXN_BATCH 64

struct batch {
    eddy_durable *d;
    size_t n;
    struct item *items[TXN_BATCH];
    struct txn_job jobs[TXN_BATCH];
    int rc[TXN_BATCH];
    bool deferred[TXN_BATCH];
};

static bool same_key(const struct item *a, const struct item *b)
{
    return a->hash == b->hash && strcmp(a->key, b->key) == 0;
}

static int batch_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct batch *b = arg;
    eddy_durable *d = b->d;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        b->rc[i] = EDDY_OK;
        b->deferred[i] = false;
        for (size_t k = 0; k < i && !b->deferred[i]; k++)
            if ((b->rc[k] != EDDY_OK || b->deferred[k]) &&
                same_key(b->items[k], b->items[i]))
                b->deferred[i] = true;
        if (b->deferred[i])
            continue;
        if (sqlite3_exec(db, "SAVEPOINT eddy_item", NULL, NULL, NULL) !=
            SQLITE_OK)
            return eddyi_rel_sqlerr(db, "batch savepoint", err);
        eddy_error ie = {0};
        int r = txn_job_run(txn, &b->jobs[i], &ie);
        if (r == EDDY_OK) {
            if (sqlite3_exec(db, "RELEASE eddy_item", NULL, NULL, NULL) !=
                SQLITE_OK)
                return eddyi_rel_sqlerr(db, "batch release", err);
            continue;
        }
        b->rc[i] = r;
        if (!b->jobs[i].msg[0])
            snprintf(b->jobs[i].msg, sizeof b->jobs[i].msg, "%.360s",
                     ie.message);
        if (sqlite3_exec(db, "ROLLBACK TO eddy_item; RELEASE eddy_item", NULL,
                         NULL, NULL) != SQLITE_OK)
            return eddyi_rel_sqlerr(db, "batch rollback", err);
    }
    /* As in txn_job_finish: the watermark does not include this batch. */
    int64_t w = watermark_get(d);
    if (w > 0)
        rc = eddyi_rel_exec(db, NULL, err, UPSERT_CHECKPOINT, "tii", d->name,
                            w, eddy_txn_now_us(txn));
    return rc;
}

/* Runs `n` fresh items of a TRANSACTIONAL subscription, batched. */
static void worker_take_batch(struct worker *w, struct item **in, size_t n)
{
    eddy_durable *d = w->d;
    struct batch *b = calloc(1, sizeof *b);
    if (!b) { /* run them one by one */
        for (size_t i = 0; i < n; i++)
            worker_take(w, in[i]);
        return;
    }
    b->d = d;
    for (size_t i = 0; i < n; i++) {
        struct item *it = in[i];
        struct parked *p = parked_find(w, it);
        if (p) {
            queue_behind(p, it);
        } else if (not_due(it)) {
            park_or_drop(w, it);
        } else {
            b->items[b->n] = it;
            b->jobs[b->n] = (struct txn_job){.d = d,
                                             .ev = it->ev,
                                             .position = it->position,
                                             .had_retry = it->attempts > 0,
                                             .batched = true};
            b->n++;
        }
    }
    eddy_error e = {0};
    int rc = b->n ? eddyi_store_write(d->store, batch_job_run, b, &e)
                  : EDDY_OK;
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = b->items[i];
        struct parked *p = parked_find(w, it);
        if (p) { /* an earlier event of its key failed just now */
            queue_behind(p, it);
            continue;
        }
        if (b->deferred[i]) {
            worker_take(w, it);
            continue;
        }
        int r = rc != EDDY_OK ? rc : b->rc[i];
        if (r == EDDY_OK) {
            item_done(d, it);
        } else if (item_failed(w, it, r,
                               rc != EDDY_OK ? e.message : b->jobs[i].msg)) {
            item_done(d, it);
        } else {
            park_or_drop(w, it);
        }
    }
    free(b);
}

/* Retries a due parked key, then lets its queued events run in order until
 * one fails again. Returns false when the key stays parked. */
static bool parked_run(struct worker *w, struct parked *p)
{
    if (!item_run(w, p->head))
        return false;
    item_done(w->d, p->head);
    p->head = NULL;
    while (p->wait_head) {
        struct item *it = p->wait_head;
        p->wait_head = it->next;
        if (!p->wait_head)
            p->wait_tail = NULL;
        it->next = NULL;
        if (!item_run(w, it)) {
            p->head = it;
            return false;
        }
        item_done(w->d, it);
    }
    return true;
}

static void worker_free_parked(struct worker *w)
{
    while (w->parked) {
        struct parked *p = w->parked;
        w->parked = p->next;
        item_free(p->head);
        while (p->wait_head) {
            struct item *it = p->wait_head;
            p->wait_head = it->next;
            item_free(it);
        }
        free(p);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        bool stop = w->stop;
        /* A due retry first (not while stopping: it stays stored). */
        int64_t now = eddy_now_us(), earliest = INT64_MAX;
        struct parked **due = NULL;
        if (!stop) {
            for (struct parked **pp = &w->parked; *pp; pp = &(*pp)->next) {
                int64_t at = (*pp)->head->next_at_us;
                if (at <= now) {
                    due = pp;
                    break;
                }
                if (at < earliest)
                    earliest = at;
            }
        }
        if (due) {
            struct parked *p = *due;
            *due = p->next; /* unlinked while it runs */
            pthread_mutex_unlock(&w->mu);
            if (parked_run(w, p)) {
                free(p);
            } else {
                p->next = w->parked;
                w->parked = p;
            }
            pthread_mutex_lock(&w->mu);
            continue;
        }
        if (w->in_head) {
            struct item *batch[TXN_BATCH];
            size_t n = 0;
            size_t max = w->d->mode == EDDY_DELIVERY_TRANSACTIONAL ? TXN_BATCH
                                                                  : 1;
            while (w->in_head && n < max) {
                struct item *it = w->in_head;
                w->in_head = it->next;
                it->next = NULL;
                batch[n++] = it;
            }
            if (!w->in_head)
                w->in_tail = NULL;
            pthread_mutex_unlock(&w->mu);
            if (max == 1)
                worker_take(w, batch[0]);
            else
                worker_take_batch(w, batch, n);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        if (stop)
            break;
        if (earliest == INT64_MAX) {
            pthread_cond_wait(&w->cond, &w->mu);
        } else {
            struct timespec ts;
            abs_deadline(&ts, earliest);
            pthread_cond_timedwait(&w->cond, &w->mu, &ts);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- the dispatcher (store subscription callback) ------------------------- */

static const struct restored *restored_find(const eddy_durable *d,
                                            int64_t pos)
{
    size_t lo = 0, hi = d->nrestored;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->restored[mid].position < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->nrestored && d->restored[lo].position == pos
               ? &d->restored[lo]
               : NULL;
}

static bool dead_find(const eddy_durable *d, int64_t pos)
{
    size_t lo = 0, hi = d->ndead;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->dead[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->ndead && d->dead[lo] == pos;
}

static int on_record(const eddy_record *rec, void *user)
{
    eddy_durable *d = user;
    bool wanted = pattern_matches(d, eddy_event_type(rec->event)) &&
                  !dead_find(d, rec->position);
    struct item *it = NULL;
    if (wanted) {
        it = calloc(1, sizeof *it);
        if (!it)
            return EDDY_ENOMEM; /* ends the subscription; status says so */
        it->ev = eddy_event_ref(rec->event);
        it->position = rec->position;
        it->key = eddy_event_subject(rec->event);
        if (!it->key)
            it->key = eddy_event_id(rec->event);
        it->hash = fnv1a(it->key);
        const struct restored *r = restored_find(d, rec->position);
        if (r) {
            it->attempts = r->attempts;
            it->first_fail_us = r->first_fail_us;
            it->last_fail_us = r->last_fail_us;
            it->next_at_us = r->next_at_us;
            it->last_code = r->code;
            snprintf(it->last_error, sizeof it->last_error, "%s", r->error);
        }
    }
    pthread_mutex_lock(&d->mu);
    while (d->ring_len >= d->max_in_flight && !d->stopping)
        pthread_cond_wait(&d->cond, &d->mu);
    if (d->stopping) {
        pthread_mutex_unlock(&d->mu);
        item_free(it);
        return EDDY_ESTOPPED;
    }
    if (!wanted && d->ring_len == 0) {
        d->watermark = rec->position;
        d->since_persist++;
        pthread_cond_broadcast(&d->cond);
    } else {
        struct slot *s = ring_at(d, d->ring_len++);
        s->position = rec->position;
        s->done = !wanted;
    }
    pthread_mutex_unlock(&d->mu);
    if (it) {
        struct worker *w = &d->workers[it->hash % d->nworkers];
        pthread_mutex_lock(&w->mu);
        if (w->in_tail)
            w->in_tail->next = it;
        else
            w->in_head = it;
        w->in_tail = it;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
    return 0;
}

/* ---- redrive -------------------------------------------------------------- */

struct fail_job {
    int64_t id;
    int code;
    const char *error;
};

static int redrive_fail_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct fail_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    return eddyi_rel_exec(db, NULL, err,
                          "UPDATE eddy_dead_letters SET status = 'dead', "
                          "attempts = attempts + 1, error_code = ?2, "
                          "error = ?3, last_failure_us = ?4 WHERE id = ?1",
                          "inti", j->id, j->code, j->error,
                          eddy_txn_now_us(txn));
}

static int redrive(eddy_durable *d, int64_t id, bool only_marked,
                   eddy_error *err)
{
    pthread_mutex_lock(&d->redrive_mu);
    eddy_dead_letter *dl = NULL;
    int rc = eddyi_dlq_load(d->store, id, d->name, &dl, err);
    if (rc != EDDY_OK || (only_marked && strcmp(dl->status,
                                                EDDY_DLQ_REDRIVE) != 0))
        goto done;
    char msg[MESSAGE_MAX];
    rc = deliver(d, dl->event, dl->position, false, id, msg);
    if (rc == EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: dead letter %" PRId64
                  " (event %s) redriven", d->name, id,
                  eddy_event_id(dl->event));
        goto done;
    }
    char error[MESSAGE_MAX + 32];
    snprintf(error, sizeof error, "%s: %s", eddy_errname(rc),
             msg[0] ? msg : eddy_strerror(rc));
    eddyi_error(err, rc, "dead letter %" PRId64 ": %s", id, error);
    struct fail_job f = {.id = id, .code = rc, .error = error};
    eddy_error e = {0};
    if (eddyi_store_write(d->store, redrive_fail_run, &f, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: dead letter %" PRId64
                  " failed again and its record was not updated: %s",
                  d->name, id, e.message);
done:
    eddy_dead_letter_free(dl);
    pthread_mutex_unlock(&d->redrive_mu);
    return rc;
}

int eddy_durable_redrive(eddy_durable *d, int64_t id, eddy_error *err)
{
    if (!d)
        return eddyi_error(err, EDDY_EINVAL, "redrive: no subscription");
    return redrive(d, id, false, err);
}

struct marked_job {
    eddy_durable *d;
    int64_t ids[64];
    size_t n;
};

static int marked_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct marked_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT id FROM eddy_dead_letters WHERE "
                               "subscription = ?1 AND status = 'redrive' "
                               "ORDER BY id LIMIT 64",
                               "t", j->d->name);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && j->n < 64)
        j->ids[j->n++] = sqlite3_column_int64(st, 0);
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "looking for dead letters to redrive", err);
    sqlite3_finalize(st);
    return rc;
}

/* Redrives the dead letters marked by eddy_dlq_retry. */
static void redrive_marked(eddy_durable *d)
{
    struct marked_job j = {.d = d};
    eddy_error e = {0};
    if (eddyi_store_write(d->store, marked_job_run, &j, &e) != EDDY_OK)
        return;
    for (size_t i = 0; i < j.n; i++) {
        pthread_mutex_lock(&d->mu);
        bool stop = d->maint_stop;
        pthread_mutex_unlock(&d->mu);
        if (stop)
            break;
        eddy_error re = {0};
        int rc = redrive(d, j.ids[i], true, &re);
        if (rc != EDDY_OK && rc != EDDY_ENOTFOUND)
            EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: redrive: %s", d->name,
                      re.message);
    }
}

/* ---- maintenance thread --------------------------------------------------- */

static void *maint_main(void *arg)
{
    eddy_durable *d = arg;
    unsigned tick = d->ckpt_interval_ms < REDRIVE_POLL_MS ? d->ckpt_interval_ms
                                                          : REDRIVE_POLL_MS;
    int64_t next_redrive = 0; /* at once */
    pthread_mutex_lock(&d->mu);
    while (!d->maint_stop) {
        if (d->since_persist < d->ckpt_every) {
            struct timespec ts;
            deadline_in_ms(&ts, tick);
            pthread_cond_timedwait(&d->maint_cond, &d->mu, &ts);
            if (d->maint_stop)
                break;
        }
        pthread_mutex_unlock(&d->mu);
        eddy_error e = {0};
        if (checkpoint_persist(d, &e) != EDDY_OK)
            EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: checkpoint not "
                      "persisted: %s", d->name, e.message);
        if (eddy_now_us() >= next_redrive) {
            redrive_marked(d);
            next_redrive = eddy_now_us() + REDRIVE_POLL_MS * 1000;
        }
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- start ---------------------------------------------------------------- */

struct load_job {
    eddy_durable *d;
    int64_t head;        /* for EDDY_START_END */
    int64_t checkpoint;
};

static int load_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct load_job *j = arg;
    eddy_durable *d = j->d;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    /* Record who handles what, for `eddy graph` (a projection or saga of
     * this name has recorded itself already and keeps its record). */
    if (rc == EDDY_OK)
        rc = eddyi_subscription_record_db(db, d->name, d->pattern, "handler",
                                          eddy_txn_now_us(txn), err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT position FROM eddy_checkpoints "
                               "WHERE name = ?1",
                               "t", d->name);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    bool found = s == SQLITE_ROW;
    if (found)
        j->checkpoint = sqlite3_column_int64(st, 0);
    else if (s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading the checkpoint", err);
    sqlite3_finalize(st);
    if (rc != EDDY_OK)
        return rc;
    if (!found) {
        j->checkpoint = j->head; /* 0 unless EDDY_START_END */
        rc = eddyi_rel_exec(db, NULL, err, UPSERT_CHECKPOINT, "tii", d->name,
                            j->checkpoint, eddy_txn_now_us(txn));
        if (rc != EDDY_OK)
            return rc;
    }

    /* Pending retries above the checkpoint. Fresh arrays each run: a job
     * may be run again after a failed commit. */
    for (size_t i = 0; i < d->nrestored; i++)
        free(d->restored[i].error);
    free(d->restored);
    d->restored = NULL;
    d->nrestored = 0;
    free(d->dead);
    d->dead = NULL;
    d->ndead = 0;
    size_t cap = 0;
    rc = eddyi_rel_prepare(db, &st, err,
                           "SELECT position, attempts, first_failure_us, "
                           "last_failure_us, next_at_us, error_code, "
                           "last_error FROM eddy_retries WHERE subscription "
                           "= ?1 AND position > ?2 ORDER BY position",
                           "ti", d->name, j->checkpoint);
    if (rc != EDDY_OK)
        return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (d->nrestored == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct restored *n = realloc(d->restored, ncap * sizeof *n);
            if (!n) {
                rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
                break;
            }
            d->restored = n;
            cap = ncap;
        }
        struct restored *r = &d->restored[d->nrestored];
        r->position = sqlite3_column_int64(st, 0);
        r->attempts = sqlite3_column_int(st, 1);
        r->first_fail_us = sqlite3_column_int64(st, 2);
        r->last_fail_us = sqlite3_column_int64(st, 3);
        r->next_at_us = sqlite3_column_int64(st, 4);
        r->code = sqlite3_column_int(st, 5);
        r->error = eddyi_rel_column_text(st, 6);
        if (!r->error) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        d->nrestored++;
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading retry state", err);
    sqlite3_finalize(st);
    if (rc != EDDY_OK)
        return rc;

    /* Events dead-lettered above the checkpoint (a crash came before the
     * checkpoint moved past them): not delivered again. */
    cap = 0;
    rc = eddyi_rel_prepare(db, &st, err,
                           "SELECT position FROM eddy_dead_letters WHERE "
                           "subscription = ?1 AND position > ?2 "
                           "ORDER BY position",
                           "ti", d->name, j->checkpoint);
    if (rc != EDDY_OK)
        return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (d->ndead == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            int64_t *n = realloc(d->dead, ncap * sizeof *n);
            if (!n) {
                rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
                break;
            }
            d->dead = n;
            cap = ncap;
        }
        d->dead[d->ndead++] = sqlite3_column_int64(st, 0);
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading dead letters", err);
    sqlite3_finalize(st);
    return rc;
}

static int lag_gauge(double *value, void *user)
{
    eddy_durable *d = user;
    int64_t head = 0;
    int rc = eddy_store_head(d->store, &head, NULL);
    if (rc != EDDY_OK)
        return rc;
    int64_t w = watermark_get(d);
    *value = head > w ? (double)(head - w) : 0.0;
    return EDDY_OK;
}

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
    if (o->workers > MAX_WORKERS)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": %u workers, at "
                           "most %d", o->name, o->workers, MAX_WORKERS);
    const eddy_retry_policy *r = &o->retry;
    if (r->multiplier != 0 && !(r->multiplier >= 1.0 && r->multiplier <= 1e6))
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": retry "
                           "multiplier %g must be >= 1", o->name,
                           r->multiplier);
    if (r->jitter > 1.0 || r->jitter != r->jitter)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": retry jitter "
                           "%g must be at most 1", o->name, r->jitter);
    if (r->max_attempts > 1000000)
        return eddyi_error(err, EDDY_EINVAL, "durable \"%s\": max_attempts "
                           "%u is too large", o->name, r->max_attempts);
    return EDDY_OK;
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
    struct running *reg = calloc(1, sizeof *reg);
    bool registered = false, mu_init = false;
    unsigned started = 0;
    if (!d || !reg)
        goto oom;
    d->store = store;
    d->name = eddyi_strdup(opts->name);
    d->pattern = eddyi_strdup(opts->pattern ? opts->pattern : "*");
    d->source = eddyi_strdup(opts->source ? opts->source : opts->name);
    if (!d->name || !d->pattern || !d->source)
        goto oom;
    if (eddyi_pattern_parse(d->pattern, &d->match, err) != EDDY_OK)
        goto fail;
    if (opts->type_count) {
        if (!opts->types) {
            eddyi_error(err, EDDY_EINVAL, "durable subscription \"%s\": "
                        "type_count without types", d->name);
            goto fail;
        }
        d->types = calloc(opts->type_count, sizeof *d->types);
        if (!d->types)
            goto oom;
        for (; d->ntypes < opts->type_count; d->ntypes++) {
            const char *t = opts->types[d->ntypes];
            if (!t || !*t) {
                eddyi_error(err, EDDY_EINVAL, "durable subscription \"%s\": "
                            "types[%zu] is empty", d->name, d->ntypes);
                goto fail;
            }
            if (!(d->types[d->ntypes] = eddyi_strdup(t)))
                goto oom;
        }
    }
    d->mode = opts->mode;
    d->handler = opts->handler;
    d->txn_handler = opts->txn_handler;
    d->user = opts->user;
    d->nworkers = opts->workers ? opts->workers : DEFAULT_WORKERS;
    d->max_in_flight =
        opts->max_in_flight ? opts->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    d->retry = opts->retry;
    if (!d->retry.max_attempts)
        d->retry.max_attempts = DEFAULT_MAX_ATTEMPTS;
    if (!d->retry.initial_delay_ms)
        d->retry.initial_delay_ms = DEFAULT_INITIAL_DELAY_MS;
    if (d->retry.multiplier == 0)
        d->retry.multiplier = DEFAULT_MULTIPLIER;
    if (!d->retry.max_delay_ms)
        d->retry.max_delay_ms = DEFAULT_MAX_DELAY_MS;
    if (d->retry.jitter == 0)
        d->retry.jitter = DEFAULT_JITTER;
    d->ckpt_every =
        opts->checkpoint_every ? opts->checkpoint_every
                               : DEFAULT_CHECKPOINT_EVERY;
    d->ckpt_interval_ms = opts->checkpoint_interval_ms
                              ? opts->checkpoint_interval_ms
                              : DEFAULT_CHECKPOINT_INTERVAL_MS;
    d->metrics = opts->metrics;

    reg->store = store;
    reg->name = d->name;
    if (!running_add(reg)) {
        eddyi_error(err, EDDY_EEXIST, "durable subscription \"%s\" is "
                    "already running on this store", d->name);
        free(reg);
        reg = NULL;
        goto fail;
    }
    reg = NULL; /* owned by the list */
    registered = true;

    struct load_job lj = {.d = d};
    if (opts->start_from == EDDY_START_END &&
        eddy_store_head(store, &lj.head, err) != EDDY_OK)
        goto fail;
    if (eddyi_store_write(store, load_job_run, &lj, err) != EDDY_OK)
        goto fail;
    d->watermark = d->persisted = lj.checkpoint;

    d->ring = calloc(d->max_in_flight, sizeof *d->ring);
    d->workers = calloc(d->nworkers, sizeof *d->workers);
    if (!d->ring || !d->workers)
        goto oom;
    if (pthread_mutex_init(&d->mu, NULL) != 0)
        goto oom;
    pthread_cond_init(&d->cond, NULL);
    pthread_cond_init(&d->maint_cond, NULL);
    pthread_mutex_init(&d->redrive_mu, NULL);
    mu_init = true;
    for (; started < d->nworkers; started++) {
        struct worker *w = &d->workers[started];
        w->d = d;
        w->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)started * 0x100000001b3ULL) ^
                 (uint64_t)eddy_now_us();
        if (!w->rng)
            w->rng = 1;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cond, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_cond_destroy(&w->cond);
            pthread_mutex_destroy(&w->mu);
            eddyi_error(err, EDDY_ENOMEM, "durable \"%s\": cannot start a "
                        "worker thread", d->name);
            goto fail;
        }
        w->started = true;
    }
    if (pthread_create(&d->maint, NULL, maint_main, d) != 0) {
        eddyi_error(err, EDDY_ENOMEM, "durable \"%s\": cannot start a thread",
                    d->name);
        goto fail;
    }
    d->maint_started = true;
    if (eddy_store_subscribe(store, lj.checkpoint, on_record, d, NULL, &d->sub,
                             err) != EDDY_OK)
        goto fail;
    if (d->metrics) {
        eddy_error ge = {0};
        if (eddy_metrics_gauge_register(
                d->metrics, EDDY_METRIC_SUBSCRIPTION_LAG,
                "Events in the store not yet completed by a durable "
                "subscription (head - checkpoint)",
                "subscription", d->name, lag_gauge, d, &ge) == EDDY_OK)
            d->gauge_registered = true;
        else
            EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: no lag gauge: %s",
                      d->name, ge.message);
    }
    EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: started at checkpoint %" PRId64
              " (%zu pending retries)", d->name, lj.checkpoint, d->nrestored);
    return d;

oom:
    eddyi_error(err, EDDY_ENOMEM, "out of memory");
fail:
    if (d && mu_init) {
        pthread_mutex_lock(&d->mu);
        d->stopping = true;
        d->maint_stop = true;
        pthread_cond_broadcast(&d->maint_cond);
        pthread_mutex_unlock(&d->mu);
        if (d->maint_started)
            pthread_join(d->maint, NULL);
        for (unsigned i = 0; i < started; i++) {
            struct worker *w = &d->workers[i];
            pthread_mutex_lock(&w->mu);
            w->stop = true;
            pthread_cond_signal(&w->cond);
            pthread_mutex_unlock(&w->mu);
            pthread_join(w->thread, NULL);
            pthread_cond_destroy(&w->cond);
            pthread_mutex_destroy(&w->mu);
        }
        pthread_mutex_destroy(&d->redrive_mu);
        pthread_cond_destroy(&d->maint_cond);
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->mu);
    }
    if (d && registered)
        running_remove(d);
    free(reg);
    if (d) {
        for (size_t i = 0; i < d->nrestored; i++)
            free(d->restored[i].error);
        free(d->restored);
        free(d->dead);
        free(d->ring);
        free(d->workers);
        free(d->name);
        free(d->pattern);
        for (size_t i = 0; i < d->ntypes; i++)
            free(d->types[i]);
        free(d->types);
        free(d->source);
        free(d);
    }
    return NULL;
}

/* ---- stop / free / queries ------------------------------------------------ */

int eddy_durable_stop(eddy_durable *d, eddy_error *err)
{
    if (!d)
        return eddyi_error(err, EDDY_EINVAL, "durable stop: NULL");
    pthread_mutex_lock(&d->mu);
    if (d->stop_called) {
        while (!d->stopped) /* a concurrent stop: wait for it */
            pthread_cond_wait(&d->cond, &d->mu);
        int st = d->status;
        if (st != EDDY_OK && err)
            *err = d->status_err;
        pthread_mutex_unlock(&d->mu);
        return st;
    }
    d->stop_called = true;
    d->stopping = true; /* frees a dispatcher waiting for room */
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);

    eddy_error se = {0};
    int status = eddy_store_subscription_stop(d->sub, &se);
    if (status == EDDY_ESTOPPED)
        status = EDDY_OK; /* our own stop, or the store closing */

    /* Workers drain what is runnable, then exit; parked keys stay stored. */
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
    for (unsigned i = 0; i < d->nworkers; i++)
        pthread_join(d->workers[i].thread, NULL);

    pthread_mutex_lock(&d->mu);
    d->maint_stop = true;
    pthread_cond_broadcast(&d->maint_cond);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->maint, NULL);

    eddy_error ce = {0};
    int rc = checkpoint_persist(d, &ce);
    if (status == EDDY_OK && rc != EDDY_OK) {
        status = rc;
        se = ce;
    }
    if (d->gauge_registered) {
        eddy_metrics_gauge_unregister(d->metrics, EDDY_METRIC_SUBSCRIPTION_LAG,
                                      "subscription", d->name);
        d->gauge_registered = false;
    }
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        worker_free_parked(w);
        while (w->in_head) {
            struct item *it = w->in_head;
            w->in_head = it->next;
            item_free(it);
        }
        w->in_tail = NULL;
    }
    running_remove(d);
    pthread_mutex_lock(&d->mu);
    d->stopped = true;
    d->status = status;
    d->status_err = se;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: stopped at checkpoint %" PRId64,
              d->name, watermark_get(d));
    if (status != EDDY_OK && err)
        *err = se;
    return status;
}

void eddy_durable_free(eddy_durable *d)
{
    if (!d)
        return;
    eddy_durable_stop(d, NULL);
    eddy_store_subscription_free(d->sub);
    for (unsigned i = 0; i < d->nworkers; i++) {
        pthread_cond_destroy(&d->workers[i].cond);
        pthread_mutex_destroy(&d->workers[i].mu);
    }
    pthread_mutex_destroy(&d->redrive_mu);
    pthread_cond_destroy(&d->maint_cond);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->mu);
    for (size_t i = 0; i < d->nrestored; i++)
        free(d->restored[i].error);
    free(d->restored);
    free(d->dead);
    free(d->ring);
    free(d->workers);
    free(d->name);
    free(d->pattern);
    for (size_t i = 0; i < d->ntypes; i++)
        free(d->types[i]);
    free(d->types);
    free(d->source);
    free(d);
}

int64_t eddy_durable_checkpoint(const eddy_durable *d)
{
    if (!d)
        return 0;
    return watermark_get((eddy_durable *)d);
}

int eddy_durable_wait_idle(eddy_durable *d, int64_t position, int timeout_ms)
{
    if (!d)
        return EDDY_EINVAL;
    int64_t end_us = timeout_ms < 0 ? INT64_MAX
                                     : eddy_now_us() + (int64_t)timeout_ms * 1000;
    int rc = EDDY_OK;
    pthread_mutex_lock(&d->mu);
    while (d->watermark < position) {
        if (d->stopped || !eddy_store_subscription_running(d->sub)) {
            rc = EDDY_ESTOPPED;
            break;
        }
        int64_t now = eddy_now_us();
        if (now >= end_us) {
            rc = EDDY_ETIMEDOUT;
            break;
        }
        /* Slices, so that a subscription that ended is noticed. */
        int64_t until = now + 100000;
        if (until > end_us)
            until = end_us;
        struct timespec ts;
        abs_deadline(&ts, until);
        pthread_cond_timedwait(&d->cond, &d->mu, &ts);
    }
    bool stopped = d->stopped;
    pthread_mutex_unlock(&d->mu);
    if (rc == EDDY_OK && !stopped)
        rc = checkpoint_persist(d, NULL);
    return rc;
}
