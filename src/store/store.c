/*
 * src/store/store.c - the backend-independent front of the event store:
 * opening by URL, argument checks and hooks, event encoding, the group
 * commit writer thread and its job queue, and head notification.
 *
 * Group commit: callers queue jobs and sleep on their own condition
 * variable; the one writer thread takes every queued job (up to
 * max_batch_events events), runs them in one transaction, each in its own
 * savepoint, commits once, then wakes the callers and the live waiters.
 * While the writer is busy committing (fsync), new jobs pile up and go into
 * the next transaction together: batching comes from load, not from a timer.
 * A synchronous append that finds the writer idle and the queue empty runs
 * its own transaction on its thread instead (run_here): the writer's work
 * without the two thread switches. Either way one batch runs at a time
 * (`busy`), and that one is "the writer" of every "writer thread only" rule.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/internal.h"
#include "store_impl.h"

struct eddyi_job {
    eddyi_write_fn fn;
    void *arg;
    size_t weight; /* events, for batch limits */
    int rc;
    eddy_error err;
    bool done;
    pthread_cond_t cond;                 /* synchronous jobs */
    void (*finish)(eddyi_job *job);      /* asynchronous jobs: NULL = sync */
    eddyi_job *next;
};

/* ---- URL -------------------------------------------------------------- */

/* Picks the backend from the URL; `*location` points into `url`. */
static const eddyi_backend *backend_for(const char *url, const char **location,
                                        eddy_error *err)
{
    if (strncmp(url, "sqlite:", 7) == 0) {
        *location = url + 7;
        if (strncmp(*location, "//", 2) == 0) /* sqlite:///abs/path */
            *location += 2;
        return &eddyi_sqlite_backend;
    }
    /* libpq takes the whole URL: every libpq connection option works. */
    if (strncmp(url, "postgres://", 11) == 0 ||
        strncmp(url, "postgresql://", 13) == 0) {
        *location = url;
        return &eddyi_postgres_backend;
    }
    /* A scheme is letters, digits, '+', '-', '.' then "://" or ':' with no
     * '/' before it; anything else is a bare path. */
    const char *colon = strchr(url, ':');
    if (colon && colon != url && !memchr(url, '/', (size_t)(colon - url))) {
        size_t n = (size_t)(colon - url);
        bool scheme = n > 1; /* "C:" style single letters are paths */
        for (size_t i = 0; i < n && scheme; i++) {
            char c = url[i];
            scheme = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
        }
        if (scheme) {
            eddyi_error(err, EDDY_EUNSUPPORTED,
                        "store URL scheme \"%.*s\" is not supported "
                        "(supported: sqlite:PATH, a bare path, "
                        "postgres://... or postgresql://...)",
                        (int)(n > 64 ? 64 : n), url);
            return NULL;
        }
    }
    *location = url;
    return &eddyi_sqlite_backend;
}

/* Polls the backend at most this often for appends by other processes. */
#define EDDYI_FOREIGN_POLL_MS 1000

/* ---- writer ----------------------------------------------------------- */

static void finish_job(eddy_store *s, eddyi_job *job)
{
    if (job->finish) {
        job->done = true;
        job->finish(job); /* frees the job */
        return;
    }
    pthread_mutex_lock(&s->mu);
    job->done = true;
    pthread_cond_signal(&job->cond);
    pthread_mutex_unlock(&s->mu);
}

/* An append, synchronous or not: the job and what it appends. */
typedef struct append_req {
    eddyi_job job; /* first: an async request is freed through its job */
    eddy_store *store;
    char *stream_id;
    int64_t expected;
    eddyi_pending *pending;
    size_t count;
    eddy_append_result result;
    eddy_append_fn done; /* async only */
    void *user;
} append_req;

static int append_job(eddy_txn *txn, void *arg, eddy_error *err);

/* The head moved to `last` (a commit appended up to it): no need to ask
 * the engine (another process's appends are polled for by the waiters).
 * Waiters wake only when it moved. */
static void head_moved(eddy_store *s, int64_t last)
{
    if (last <= 0)
        return;
    pthread_mutex_lock(&s->mu);
    if (last > s->head) {
        s->head = last;
        pthread_cond_broadcast(&s->head_cond);
    }
    pthread_mutex_unlock(&s->mu);
}

/*
 * A batch of one append job, without append hooks, on a backend that can
 * run an append as a transaction of its own in fewer exchanges
 * (append_alone: one on PostgreSQL instead of two). Returns false, nothing
 * done, when the batch must run the general way.
 */
static bool run_alone(eddy_store *s, eddyi_job *job)
{
    const eddyi_backend *b = s->backend;
    if (!b->append_alone || job->next || job->fn != append_job ||
        s->append_hooks)
        return false;
    append_req *r = job->arg;
    bool careful = false;
    uint64_t t0 = eddyi_clock_ns();
    job->rc = b->append_alone(s->impl, r->stream_id, r->expected, r->pending,
                              r->count, eddy_now_us(), &r->result, &careful,
                              &job->err);
    if (careful)
        return false; /* nothing stored: the general way looks ids up */
    atomic_fetch_add_explicit(&s->stat_jobs, 1, memory_order_relaxed);
    if (job->rc == EDDY_OK) {
        /* The commit went with the append: its time is the exchange's. */
        atomic_fetch_add_explicit(&s->stat_commit_ns, eddyi_clock_ns() - t0,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&s->stat_commits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->stat_events, (uint64_t)r->count,
                                  memory_order_relaxed);
        head_moved(s, r->result.last_position);
    } else if (job->err.code == EDDY_OK) {
        eddyi_error(&job->err, job->rc, "append failed: %s",
                    eddy_strerror(job->rc));
    }
    return true;
}

static void run_batch(eddy_store *s, eddyi_job *jobs)
{
    const eddyi_backend *b = s->backend;
    if (run_alone(s, jobs)) {
        finish_job(s, jobs);
        return;
    }
    eddy_txn txn = {.store = s, .now_us = eddy_now_us()};
    eddy_error berr = {0};
    int rc = b->write_begin(s->impl, &berr);
    if (rc != EDDY_OK) {
        for (eddyi_job *j = jobs; j; j = j->next) {
            j->rc = rc;
            j->err = berr;
        }
    } else {
        bool any_ok = false;
        for (eddyi_job *j = jobs; j; j = j->next) {
            j->rc = b->savepoint(s->impl, 0, &j->err);
            if (j->rc != EDDY_OK)
                continue;
            txn.depth = 0;
            txn.saved_position[0] = txn.last_position;
            txn.saved_events[0] = txn.events;
            j->rc = j->fn(&txn, j->arg, &j->err);
            if (txn.depth != 0) { /* a job left savepoints open: its bug */
                EDDYI_LOG(EDDY_LOG_ERROR, "store", "a write job left %d "
                          "savepoint(s) open", txn.depth);
                if (j->rc == EDDY_OK)
                    j->rc = eddyi_error(&j->err, EDDY_ESTATE, "a write job "
                                        "left savepoints open");
            }
            if (j->rc != EDDY_OK && j->err.code == EDDY_OK)
                eddyi_error(&j->err, j->rc, "write job failed: %s",
                            eddy_strerror(j->rc));
            bool released = false;
            if (j->rc == EDDY_OK) {
                /* A failed release rolled the savepoint back: a statement
                 * of the job failed late (backend.h). */
                j->rc = b->savepoint_release(s->impl, 0, &j->err);
                released = true;
            }
            if (j->rc != EDDY_OK) {
                if (!released)
                    b->savepoint_rollback(s->impl, 0);
                txn.last_position = txn.saved_position[0];
                txn.events = txn.saved_events[0];
            }
            atomic_fetch_add_explicit(&s->stat_jobs, 1, memory_order_relaxed);
            any_ok |= j->rc == EDDY_OK;
        }
        uint64_t t0 = eddyi_clock_ns();
        rc = any_ok ? b->write_commit(s->impl, &berr) : EDDY_OK;
        if (any_ok && rc == EDDY_OK) {
            atomic_fetch_add_explicit(&s->stat_commit_ns,
                                      eddyi_clock_ns() - t0,
                                      memory_order_relaxed);
            atomic_fetch_add_explicit(&s->stat_commits, 1,
                                      memory_order_relaxed);
        }
        if (!any_ok)
            b->write_rollback(s->impl);
        if (rc != EDDY_OK) {
            b->write_rollback(s->impl);
            EDDYI_LOG(EDDY_LOG_ERROR, "store", "group commit failed: %s",
                      berr.message);
            for (eddyi_job *j = jobs; j; j = j->next) {
                if (j->rc == EDDY_OK) {
                    j->rc = rc;
                    j->err = berr;
                }
            }
        }
        if (any_ok && rc == EDDY_OK) {
            atomic_fetch_add_explicit(&s->stat_events, (uint64_t)txn.events,
                                      memory_order_relaxed);
            head_moved(s, txn.last_position);
        }
    }
    while (jobs) {
        eddyi_job *next = jobs->next;
        finish_job(s, jobs);
        jobs = next;
    }
}

static void *writer_main(void *arg)
{
    eddyi_thread_name("eddy-writer");
    eddy_store *s = arg;
    size_t limit = s->opts.max_batch_events;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        /* A synchronous append may be running on its caller's thread
         * (run_sync): the writer waits for it. */
        while (s->busy || (!s->queue_head && !s->stopping))
            pthread_cond_wait(&s->queue_cond, &s->mu);
        if (!s->queue_head)
            break; /* stopping and drained */
        /* Take the first job whatever its size, then more while they fit. */
        eddyi_job *first = s->queue_head, *last = first;
        size_t total = first->weight;
        while (last->next && total + last->next->weight <= limit) {
            last = last->next;
            total += last->weight;
        }
        s->queue_head = last->next;
        if (!s->queue_head)
            s->queue_tail = NULL;
        last->next = NULL;
        s->busy = true;
        pthread_mutex_unlock(&s->mu);
        run_batch(s, first);
        pthread_mutex_lock(&s->mu);
        s->busy = false;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queues `job`; EDDY_ESTATE when the store cannot take writes. */
static int submit(eddy_store *s, eddyi_job *job, eddy_error *err)
{
    if (s->opts.read_only)
        return eddyi_error(err, EDDY_ESTATE, "the store is open read-only");
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return eddyi_error(err, EDDY_ESTATE, "the store is closing");
    }
    job->next = NULL;
    if (s->queue_tail)
        s->queue_tail->next = job;
    else
        s->queue_head = job;
    s->queue_tail = job;
    pthread_cond_signal(&s->queue_cond);
    pthread_mutex_unlock(&s->mu);
    return EDDY_OK;
}

/*
 * A synchronous append finding the writer idle and nothing queued runs its
 * transaction on its own thread, as the writer would (the batch of one job
 * it would have been), which saves a switch to the writer thread and one
 * back: the group commit's leader is the first writer to arrive, as in
 * RocksDB's write thread. Jobs queued meanwhile wait for the writer thread,
 * which takes them when this one is done. Only appends without append
 * hooks: everything else (user code: handlers, projections, sagas) runs on
 * the writer thread, as the headers promise. Returns false, nothing done,
 * when the job must be queued.
 */
static bool run_here(eddy_store *s, eddyi_job *job)
{
    if (s->opts.read_only || job->fn != append_job)
        return false;
    pthread_mutex_lock(&s->mu);
    bool lead = !s->busy && !s->queue_head && !s->stopping;
    if (lead)
        s->busy = true;
    pthread_mutex_unlock(&s->mu);
    if (!lead)
        return false;
    /* Being the writer now, the hooks can be read. */
    bool ran = !s->append_hooks;
    if (ran) {
        job->next = NULL;
        run_batch(s, job); /* finish_job signals nobody: we are here */
    }
    pthread_mutex_lock(&s->mu);
    s->busy = false;
    if (s->queue_head || s->stopping)
        pthread_cond_signal(&s->queue_cond);
    pthread_mutex_unlock(&s->mu);
    return ran;
}

/* Runs a synchronous job and waits for its commit. */
static int run_sync(eddy_store *s, eddyi_write_fn fn, void *arg, size_t weight,
                    eddy_error *err)
{
    eddyi_job job = {.fn = fn, .arg = arg, .weight = weight};
    if (pthread_cond_init(&job.cond, NULL) != 0)
        return eddyi_error(err, EDDY_ENOMEM, "cannot create a condition");
    if (run_here(s, &job)) {
        int rc = job.rc;
        if (rc != EDDY_OK && err)
            *err = job.err;
        pthread_cond_destroy(&job.cond);
        return rc;
    }
    int rc = submit(s, &job, err);
    if (rc == EDDY_OK) {
        pthread_mutex_lock(&s->mu);
        while (!job.done)
            pthread_cond_wait(&job.cond, &s->mu);
        pthread_mutex_unlock(&s->mu);
        rc = job.rc;
        if (rc != EDDY_OK && err)
            *err = job.err;
    }
    pthread_cond_destroy(&job.cond);
    return rc;
}

int eddyi_store_write(eddy_store *s, eddyi_write_fn fn, void *arg,
                      eddy_error *err)
{
    if (!s || !fn)
        return eddyi_error(err, EDDY_EINVAL, "store and job are required");
    return run_sync(s, fn, arg, 1, err);
}

struct transact_req {
    eddy_txn_fn fn;
    void *user;
};

static int transact_job(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct transact_req *r = arg;
    return r->fn(txn, r->user, err);
}

int eddy_store_transact(eddy_store *s, eddy_txn_fn fn, void *user,
                        eddy_error *err)
{
    if (!s || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "store_transact: store and function are required");
    struct transact_req r = {.fn = fn, .user = user};
    return run_sync(s, transact_job, &r, 1, err);
}

void *eddyi_txn_native_of(eddy_txn *txn, const eddyi_backend *b)
{
    if (!txn || txn->store->backend != b || !b->write_native)
        return NULL;
    return b->write_native(txn->store->impl);
}

int eddyi_txn_savepoint(eddy_txn *txn, eddy_error *err)
{
    eddy_store *s = txn->store;
    if (txn->depth >= EDDYI_TXN_DEPTHS)
        return eddyi_error(err, EDDY_EINVAL, "savepoints nested %d deep (at "
                           "most %d)", txn->depth + 1, EDDYI_TXN_DEPTHS);
    int rc = s->backend->savepoint(s->impl, txn->depth + 1, err);
    if (rc == EDDY_OK) {
        txn->depth++;
        txn->saved_position[txn->depth] = txn->last_position;
        txn->saved_events[txn->depth] = txn->events;
    }
    return rc;
}

int eddyi_txn_release(eddy_txn *txn, eddy_error *err)
{
    eddy_store *s = txn->store;
    if (txn->depth <= 0)
        return eddyi_error(err, EDDY_ESTATE, "no savepoint to release");
    int rc = s->backend->savepoint_release(s->impl, txn->depth, err);
    if (rc != EDDY_OK) { /* the backend rolled it back (backend.h) */
        txn->last_position = txn->saved_position[txn->depth];
        txn->events = txn->saved_events[txn->depth];
    }
    txn->depth--;
    return rc;
}

void eddyi_txn_rollback(eddy_txn *txn)
{
    eddy_store *s = txn->store;
    if (txn->depth <= 0)
        return;
    s->backend->savepoint_rollback(s->impl, txn->depth);
    txn->last_position = txn->saved_position[txn->depth];
    txn->events = txn->saved_events[txn->depth];
    txn->depth--;
}

int64_t eddy_txn_now_us(const eddy_txn *txn) { return txn ? txn->now_us : 0; }

eddy_store *eddy_txn_store(const eddy_txn *txn)
{
    return txn ? txn->store : NULL;
}

/* ---- open / close ----------------------------------------------------- */

/* The backend's watcher (backend.h `watch`): another connection committed up
 * to `head`; wake the waiters and subscriptions. */
static void store_wake(void *ctx, int64_t head)
{
    eddy_store *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (head > s->head) {
        s->head = head;
        pthread_cond_broadcast(&s->head_cond);
    }
    pthread_mutex_unlock(&s->mu);
}

void eddyi_store_watch(eddy_store *s)
{
    if (!s->backend->watch ||
        atomic_load_explicit(&s->watching, memory_order_acquire))
        return;
    pthread_mutex_lock(&s->mu);
    if (!atomic_load_explicit(&s->watching, memory_order_relaxed) &&
        !s->stopping) {
        eddy_error err = {0};
        if (s->backend->watch(s->impl, store_wake, s, &err) != EDDY_OK)
            EDDYI_LOG(EDDY_LOG_ERROR, "store", "%s: waiting for other "
                      "processes' appends by polling every %d ms instead",
                      err.message, EDDYI_FOREIGN_POLL_MS);
        atomic_store_explicit(&s->watching, true, memory_order_release);
    }
    pthread_mutex_unlock(&s->mu);
}

eddy_store *eddy_store_open(const char *url, const eddy_store_options *opts,
                            eddy_error *err)
{
    if (!url || !*url) {
        eddyi_error(err, EDDY_EINVAL, "store URL is empty");
        return NULL;
    }
    const char *location = NULL;
    const eddyi_backend *b = backend_for(url, &location, err);
    if (!b)
        return NULL;
    if (!*location) {
        eddyi_error(err, EDDY_EINVAL, "store URL \"%s\" has no path", url);
        return NULL;
    }
    eddy_store *s = calloc(1, sizeof *s);
    if (!s) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory opening a store");
        return NULL;
    }
    if (opts)
        s->opts = *opts;
    if (s->opts.sync != EDDY_SYNC_FULL && s->opts.sync != EDDY_SYNC_NORMAL &&
        s->opts.sync != EDDY_SYNC_OFF) {
        eddyi_error(err, EDDY_EINVAL, "unknown sync mode %d", (int)s->opts.sync);
        free(s);
        return NULL;
    }
    if (!s->opts.max_event_bytes)
        s->opts.max_event_bytes = EDDY_STORE_DEFAULT_MAX_EVENT_BYTES;
    if (s->opts.max_event_bytes > EDDY_EVENT_MAX_BYTES) {
        eddyi_error(err, EDDY_EINVAL,
                    "max_event_bytes %zu is above EDDY_EVENT_MAX_BYTES (%zu): "
                    "such events could be stored but never read back",
                    s->opts.max_event_bytes, EDDY_EVENT_MAX_BYTES);
        free(s);
        return NULL;
    }
    if (!s->opts.max_batch_events)
        s->opts.max_batch_events = EDDY_STORE_DEFAULT_MAX_BATCH_EVENTS;
    if (s->opts.busy_timeout_ms <= 0)
        s->opts.busy_timeout_ms = EDDY_STORE_DEFAULT_BUSY_TIMEOUT_MS;
    s->backend = b;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->queue_cond, NULL);
    pthread_cond_init(&s->head_cond, NULL);

    if (b->open(location, &s->opts, &s->impl, err) != EDDY_OK)
        goto fail;
    if (b->head(s->impl, &s->head, err) != EDDY_OK)
        goto fail;
    if (!s->opts.read_only) {
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            eddyi_error(err, EDDY_ENOMEM, "cannot start the store writer");
            goto fail;
        }
        s->writer_started = true;
    }
    return s;
fail:
    if (s->impl)
        b->close(s->impl);
    pthread_cond_destroy(&s->head_cond);
    pthread_cond_destroy(&s->queue_cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void eddy_store_close(eddy_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->queue_cond);
    pthread_cond_broadcast(&s->head_cond);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_started)
        pthread_join(s->writer, NULL);
    s->backend->close(s->impl);
    while (s->append_hooks) { /* hooks nobody removed */
        struct eddyi_append_hook *h = s->append_hooks;
        s->append_hooks = h->next;
        free(h);
    }
    pthread_cond_destroy(&s->head_cond);
    pthread_cond_destroy(&s->queue_cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- append ----------------------------------------------------------- */

int eddyi_stream_id_check(const char *stream_id, eddy_error *err)
{
    if (!stream_id)
        return eddyi_error(err, EDDY_EINVAL, "stream id is NULL");
    size_t n = strlen(stream_id);
    if (n == 0)
        return eddyi_error(err, EDDY_EINVAL, "stream id is empty");
    if (!eddyi_utf8_valid(stream_id, n))
        return eddyi_error(err, EDDY_EINVAL, "stream id is not valid UTF-8");
    /* Control characters (C0, DEL, C1) would corrupt every listing. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)stream_id[i];
        unsigned cp = c == 0xC2 && i + 1 < n ? (unsigned char)stream_id[i + 1] : c;
        if (c < 0x20 || c == 0x7F || (c == 0xC2 && cp >= 0x80 && cp <= 0x9F))
            return eddyi_error(err, EDDY_EINVAL,
                               "stream id contains the control character U+%04X at "
                               "byte %zu", cp, i);
    }
    return EDDY_OK;
}

int eddyi_expected_check(const char *stream_id, int64_t expected,
                          int64_t actual, eddy_error *err)
{
    if (expected == EDDY_EXPECT_ANY)
        return EDDY_OK;
    if (expected == EDDY_EXPECT_EXISTS) {
        if (actual > 0)
            return EDDY_OK;
        return eddyi_error(err, EDDY_ECONFLICT,
                           "stream %s: expected an existing stream, actual "
                           "version 0 (no stream)", stream_id);
    }
    if (expected == actual)
        return EDDY_OK;
    if (expected == EDDY_EXPECT_NO_STREAM)
        return eddyi_error(err, EDDY_ECONFLICT,
                           "stream %s: expected version 0 (no stream), "
                           "actual %lld", stream_id, (long long)actual);
    return eddyi_error(err, EDDY_ECONFLICT,
                       "stream %s: expected version %lld, actual %lld",
                       stream_id, (long long)expected, (long long)actual);
}

static void pending_free(eddyi_pending *p, size_t count, bool unref)
{
    if (!p)
        return;
    for (size_t i = 0; i < count; i++) {
        free(p[i].payload);
        if (unref)
            eddy_event_unref(p[i].event);
    }
    free(p);
}

/*
 * Checks the arguments of an append, runs the check hook and encodes every
 * event once. Returns EDDY_OK and a new array (pending_free), or an error
 * with nothing allocated.
 */
static int prepare(eddy_store *s, const char *stream_id, int64_t expected,
                   eddy_event *const *events, size_t count,
                   eddyi_pending **out, eddy_error *err)
{
    int rc = eddyi_stream_id_check(stream_id, err);
    if (rc != EDDY_OK)
        return rc;
    if (expected < 0 && expected != EDDY_EXPECT_ANY &&
        expected != EDDY_EXPECT_EXISTS)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: invalid expected version %lld",
                           stream_id, (long long)expected);
    if (!events || count == 0)
        return eddyi_error(err, EDDY_EINVAL, "stream %s: no events to append",
                           stream_id);
    eddyi_pending *p = calloc(count, sizeof *p);
    if (!p)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    size_t i = 0;
    for (; i < count; i++) {
        eddy_event *ev = events[i];
        if (!ev) {
            rc = eddyi_error(err, EDDY_EINVAL,
                             "stream %s: event %zu of the append is NULL",
                             stream_id, i);
            goto fail;
        }
        const char *type = eddy_event_type(ev);
        if (!type || !*type || !eddyi_utf8_valid(type, strlen(type))) {
            rc = eddyi_error(err, EDDY_EINVAL,
                             "event %s: type is empty or not valid UTF-8",
                             eddy_event_id(ev));
            goto fail;
        }
        if (s->opts.check) {
            eddy_error cerr = {0};
            rc = s->opts.check(ev, s->opts.check_user, &cerr);
            if (rc != EDDY_OK) {
                if (err) {
                    *err = cerr;
                    if (err->code == EDDY_OK)
                        eddyi_error(err, rc, "event %s rejected by the check hook",
                                    eddy_event_id(ev));
                }
                goto fail;
            }
        }
        p[i].event = ev;
        p[i].payload = eddy_event_encode(ev, &p[i].len);
        if (!p[i].payload) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory encoding event %s",
                             eddy_event_id(ev));
            goto fail;
        }
        if (p[i].len > s->opts.max_event_bytes) {
            rc = eddyi_error(err, EDDY_ETOOBIG,
                             "event %s is %zu bytes, the limit is %zu",
                             eddy_event_id(ev), p[i].len,
                             s->opts.max_event_bytes);
            i++;
            goto fail;
        }
    }
    *out = p;
    return EDDY_OK;
fail:
    pending_free(p, i, false);
    return rc;
}

/* ---- append hooks (store_internal.h) ---------------------------------- */

/* Runs the hooks after a successful append, inside its savepoint. */
static int run_append_hooks(eddy_txn *txn, const char *stream_id,
                            const eddyi_pending *p, size_t count,
                            eddy_error *err)
{
    eddy_store *s = txn->store;
    if (!s->append_hooks)
        return EDDY_OK;
    eddy_event *stack[16];
    eddy_event **evs = count <= 16 ? stack : malloc(count * sizeof *evs);
    if (!evs)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        evs[i] = p[i].event;
    int rc = EDDY_OK;
    for (struct eddyi_append_hook *h = s->append_hooks; h && rc == EDDY_OK;
         h = h->next)
        rc = h->fn(txn, stream_id, evs, count, h->user, err);
    if (evs != stack)
        free(evs);
    return rc;
}

struct hook_req {
    struct eddyi_append_hook *add; /* taken by the job on success */
    eddyi_append_hook_fn fn;
    void *user;
    bool found;
};

static int hook_job(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct hook_req *r = arg;
    eddy_store *s = txn->store;
    EDDYI_UNUSED(err);
    if (r->add) {
        r->add->next = s->append_hooks;
        s->append_hooks = r->add;
        r->add = NULL;
        return EDDY_OK;
    }
    for (struct eddyi_append_hook **pp = &s->append_hooks; *pp;
         pp = &(*pp)->next) {
        if ((*pp)->fn == r->fn && (*pp)->user == r->user) {
            struct eddyi_append_hook *h = *pp;
            *pp = h->next;
            free(h);
            r->found = true;
            break;
        }
    }
    return EDDY_OK;
}

int eddyi_store_add_append_hook(eddy_store *s, eddyi_append_hook_fn fn,
                                void *user, eddy_error *err)
{
    if (!s || !fn)
        return eddyi_error(err, EDDY_EINVAL, "store and hook are required");
    struct hook_req r = {.add = calloc(1, sizeof *r.add)};
    if (!r.add)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    r.add->fn = fn;
    r.add->user = user;
    int rc = eddyi_store_write(s, hook_job, &r, err);
    free(r.add); /* NULL unless the job did not run */
    return rc;
}

int eddyi_store_remove_append_hook(eddy_store *s, eddyi_append_hook_fn fn,
                                   void *user)
{
    struct hook_req r = {.fn = fn, .user = user};
    if (!s || eddyi_store_write(s, hook_job, &r, NULL) != EDDY_OK)
        return EDDY_ENOTFOUND;
    return r.found ? EDDY_OK : EDDY_ENOTFOUND;
}

/* Notes what an append stored (an idempotent retry may store nothing new
 * and report older positions: the head only moves up). */
static void txn_appended(eddy_txn *txn, const eddy_append_result *res,
                         size_t count)
{
    if (res->last_position > txn->last_position)
        txn->last_position = res->last_position;
    txn->events += (int64_t)count;
}

static int append_job(eddy_txn *txn, void *arg, eddy_error *err)
{
    append_req *r = arg;
    eddy_store *s = txn->store;
    int rc = s->backend->append(s->impl, r->stream_id, r->expected,
                                r->pending, r->count, txn->now_us, &r->result,
                                err);
    if (rc == EDDY_OK)
        txn_appended(txn, &r->result, r->count);
    if (rc == EDDY_OK)
        rc = run_append_hooks(txn, r->stream_id, r->pending, r->count, err);
    return rc;
}

int eddy_store_append(eddy_store *s, const char *stream_id,
                      int64_t expected_version, eddy_event *const *events,
                      size_t count, eddy_append_result *result,
                      eddy_error *err)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "store is NULL");
    if (s->opts.read_only)
        return eddyi_error(err, EDDY_ESTATE, "the store is open read-only");
    append_req r = {.store = s, .expected = expected_version, .count = count};
    int rc = prepare(s, stream_id, expected_version, events, count, &r.pending,
                     err);
    if (rc != EDDY_OK)
        return rc;
    r.stream_id = (char *)stream_id; /* borrowed: we wait for the job */
    rc = run_sync(s, append_job, &r, count, err);
    if (rc == EDDY_OK && result)
        *result = r.result;
    pending_free(r.pending, count, false);
    return rc;
}

static void append_async_finish(eddyi_job *job)
{
    append_req *r = (append_req *)job;
    r->done(job->rc, job->rc == EDDY_OK ? &r->result : NULL, &job->err,
            r->user);
    pending_free(r->pending, r->count, true);
    free(r->stream_id);
    free(r);
}

int eddy_store_append_async(eddy_store *s, const char *stream_id,
                            int64_t expected_version,
                            eddy_event *const *events, size_t count,
                            eddy_append_fn done, void *user, eddy_error *err)
{
    if (!s || !done)
        return eddyi_error(err, EDDY_EINVAL, "store and callback are required");
    if (s->opts.read_only)
        return eddyi_error(err, EDDY_ESTATE, "the store is open read-only");
    append_req *r = calloc(1, sizeof *r);
    if (!r)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = prepare(s, stream_id, expected_version, events, count,
                     &r->pending, err);
    if (rc != EDDY_OK) {
        free(r);
        return rc;
    }
    r->stream_id = eddyi_strdup(stream_id);
    if (!r->stream_id) {
        pending_free(r->pending, count, false);
        free(r);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        eddy_event_ref(r->pending[i].event);
    r->store = s;
    r->expected = expected_version;
    r->count = count;
    r->done = done;
    r->user = user;
    r->job.fn = append_job;
    r->job.arg = r;
    r->job.weight = count;
    r->job.finish = append_async_finish;
    rc = submit(s, &r->job, err);
    if (rc != EDDY_OK) {
        pending_free(r->pending, count, true);
        free(r->stream_id);
        free(r);
    }
    return rc;
}

int eddy_txn_append(eddy_txn *txn, const char *stream_id,
                    int64_t expected_version, eddy_event *const *events,
                    size_t count, eddy_append_result *result,
                    eddy_error *err)
{
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "txn append: no transaction");
    eddy_store *s = txn->store;
    eddyi_pending *p = NULL;
    int rc = prepare(s, stream_id, expected_version, events, count, &p, err);
    if (rc != EDDY_OK)
        return rc;
    eddy_append_result res = {0};
    rc = s->backend->append(s->impl, stream_id, expected_version, p, count,
                            txn->now_us, &res, err);
    if (rc == EDDY_OK)
        txn_appended(txn, &res, count);
    if (rc == EDDY_OK)
        rc = run_append_hooks(txn, stream_id, p, count, err);
    if (rc == EDDY_OK && result)
        *result = res;
    pending_free(p, count, false);
    return rc;
}

/* ---- snapshots -------------------------------------------------------- */

typedef struct snapshot_req {
    const char *stream_id;
    int64_t version;
    int schema_version;
    const char *state;
} snapshot_req;

static int snapshot_job(eddy_txn *txn, void *arg, eddy_error *err)
{
    snapshot_req *r = arg;
    eddy_store *s = txn->store;
    return s->backend->snapshot_save(s->impl, r->stream_id, r->version,
                                     r->schema_version, r->state, txn->now_us,
                                     err);
}

int eddy_store_snapshot_save(eddy_store *s, const char *stream_id,
                             int64_t version, int schema_version,
                             json_t *state, eddy_error *err)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "store is NULL");
    int rc = eddyi_stream_id_check(stream_id, err);
    if (rc != EDDY_OK)
        return rc;
    if (!state)
        return eddyi_error(err, EDDY_EINVAL, "stream %s: snapshot state is NULL",
                           stream_id);
    if (version < 1)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: snapshot version %lld must be >= 1",
                           stream_id, (long long)version);
    char *text = json_dumps(state, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: snapshot state cannot be serialised",
                           stream_id);
    snapshot_req r = {stream_id, version, schema_version, text};
    rc = run_sync(s, snapshot_job, &r, 1, err);
    free(text);
    return rc;
}

int eddy_txn_snapshot_save(eddy_txn *txn, const char *stream_id,
                           int64_t version, int schema_version, json_t *state,
                           eddy_error *err)
{
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "txn_snapshot_save: no "
                           "transaction");
    int rc = eddyi_stream_id_check(stream_id, err);
    if (rc != EDDY_OK)
        return rc;
    if (!state || version < 1)
        return eddyi_error(err, EDDY_EINVAL, "stream %s: snapshot %s",
                           stream_id, state ? "version must be >= 1"
                                            : "state is NULL");
    char *text = json_dumps(state, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: snapshot state cannot be serialised",
                           stream_id);
    eddy_store *s = txn->store;
    rc = s->backend->snapshot_save(s->impl, stream_id, version, schema_version,
                                   text, txn->now_us, err);
    free(text);
    return rc;
}

int eddy_store_snapshot_load(eddy_store *s, const char *stream_id,
                             int64_t *version, int *schema_version,
                             json_t **state, eddy_error *err)
{
    if (!s || !version || !schema_version || !state)
        return eddyi_error(err, EDDY_EINVAL, "snapshot_load: NULL argument");
    int rc = eddyi_stream_id_check(stream_id, err);
    if (rc != EDDY_OK)
        return rc;
    int64_t v = 0;
    int sv = 0;
    char *text = NULL;
    rc = s->backend->snapshot_load(s->impl, stream_id, &v, &sv, &text, err);
    if (rc != EDDY_OK)
        return rc;
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    free(text);
    if (!j)
        return eddyi_error(err, EDDY_EPARSE,
                           "stream %s: stored snapshot at version %lld is not "
                           "JSON: %s", stream_id, (long long)v, jerr.text);
    *version = v;
    *schema_version = sv;
    *state = j;
    return EDDY_OK;
}

/* ---- lookups ---------------------------------------------------------- */

int eddy_store_head(eddy_store *s, int64_t *head, eddy_error *err)
{
    if (!s || !head)
        return eddyi_error(err, EDDY_EINVAL, "store_head: NULL argument");
    return s->backend->head(s->impl, head, err);
}

int eddy_store_stream_version(eddy_store *s, const char *stream_id,
                              int64_t *version, eddy_error *err)
{
    if (!s || !version)
        return eddyi_error(err, EDDY_EINVAL, "stream_version: NULL argument");
    int rc = eddyi_stream_id_check(stream_id, err);
    if (rc != EDDY_OK)
        return rc;
    return s->backend->stream_version(s->impl, stream_id, version, err);
}

int eddy_store_streams(eddy_store *s, const char *after_stream_id,
                       size_t limit, eddy_stream_fn fn, void *user,
                       eddy_error *err)
{
    if (!s || !fn)
        return eddyi_error(err, EDDY_EINVAL, "store_streams: NULL argument");
    enum { PAGE = 256 };
    char *ids[PAGE];
    int64_t versions[PAGE];
    char *after = after_stream_id ? eddyi_strdup(after_stream_id) : NULL;
    if (after_stream_id && !after)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    size_t seen = 0;
    int rc = EDDY_OK;
    for (;;) {
        size_t want = PAGE, n = 0;
        if (limit && limit - seen < want)
            want = limit - seen;
        if (want == 0)
            break;
        rc = s->backend->streams_page(s->impl, after, want, ids, versions, &n,
                                      err);
        if (rc != EDDY_OK || n == 0)
            break;
        size_t i = 0;
        for (; i < n && rc == EDDY_OK; i++)
            rc = fn(ids[i], versions[i], user);
        free(after);
        after = ids[i - 1];
        for (size_t k = 0; k < n; k++)
            if (k != i - 1)
                free(ids[k]);
        seen += n;
        if (rc != EDDY_OK || n < want)
            break;
    }
    free(after);
    return rc;
}

void eddy_store_stats_get(eddy_store *s, eddy_store_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    out->commits = atomic_load_explicit(&s->stat_commits, memory_order_relaxed);
    out->jobs = atomic_load_explicit(&s->stat_jobs, memory_order_relaxed);
    out->events = atomic_load_explicit(&s->stat_events, memory_order_relaxed);
    out->commit_ns =
        atomic_load_explicit(&s->stat_commit_ns, memory_order_relaxed);
}

int eddy_store_info_get(eddy_store *s, eddy_store_info *info, eddy_error *err)
{
    if (!s || !info)
        return eddyi_error(err, EDDY_EINVAL, "store_info: NULL argument");
    memset(info, 0, sizeof *info);
    snprintf(info->backend, sizeof info->backend, "%s", s->backend->name);
    info->sync = s->opts.sync;
    return s->backend->info(s->impl, info, err);
}

int eddy_store_backup(eddy_store *s, const char *path, eddy_error *err)
{
    if (!s || !path || !*path)
        return eddyi_error(err, EDDY_EINVAL, "backup: store and path required");
    if (!s->backend->backup)
        return eddyi_error(err, EDDY_EUNSUPPORTED,
                           "backup: the %s backend has no built-in backup; "
                           "use the engine's own tools", s->backend->name);
    return s->backend->backup(s->impl, path, err);
}

/* ---- waiting for commits ---------------------------------------------- */


static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int eddy_store_wait(eddy_store *s, int64_t after_position, int timeout_ms,
                    int64_t *head)
{
    if (!s)
        return EDDY_EINVAL;
    struct timespec end;
    int64_t start_ms = eddy_now_us() / 1000;
    int rc = EDDY_OK;
    eddyi_store_watch(s);
    pthread_mutex_lock(&s->mu);
    while (s->head <= after_position && !s->stopping) {
        int slice = EDDYI_FOREIGN_POLL_MS;
        if (timeout_ms >= 0) {
            int64_t left = timeout_ms - (eddy_now_us() / 1000 - start_ms);
            if (left <= 0) {
                rc = EDDY_ETIMEDOUT;
                break;
            }
            if (left < slice)
                slice = (int)left;
        }
        deadline_after(&end, slice);
        int w = pthread_cond_timedwait(&s->head_cond, &s->mu, &end);
        if (w == ETIMEDOUT && s->head <= after_position && !s->stopping) {
            /* Another process may have appended: look at the file. */
            pthread_mutex_unlock(&s->mu);
            int64_t h = 0;
            int hrc = s->backend->head(s->impl, &h, NULL);
            pthread_mutex_lock(&s->mu);
            if (hrc == EDDY_OK && h > s->head)
                s->head = h;
        }
    }
    if (rc == EDDY_OK && s->head <= after_position && s->stopping)
        rc = EDDY_ESTOPPED;
    if (head)
        *head = s->head;
    pthread_mutex_unlock(&s->mu);
    return rc;
}
