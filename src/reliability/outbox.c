/*
 * src/reliability/outbox.c - the transactional outbox and its relay
 * (eddy/outbox.h), over the store's outbox operations
 * (src/store/state_outbox.h).
 *
 * An outbox append is one write job that appends the events
 * (eddy_txn_append) and queues each stored event for the destination, so
 * both commit or roll back together and the queued payload is exactly the
 * stored one.
 *
 * The relay thread reads the queue on reader connections (committed rows
 * only, so a page is never published from a group commit that later
 * failed; and the writer is not taken for reads), publishes each row in
 * seq order and marks published ranges sent through the writer. Seqs are
 * never reused and grow in commit order (state_outbox.h), which is what
 * lets the relay mark [first, last] sent in one statement without missing
 * or wrongly marking a row.
 *
 * Threads: eddy_outbox_append / _pending / _cleanup run on the caller's
 * thread; a relay runs one thread of its own (relay_main); stop, stats and
 * free may come from any thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy/outbox.h"

#include "../core/internal.h"
#include "../core/lifecycle.h"
#include "../core/retry.h"
#include "../store/state_outbox.h"
#include "../store/store_internal.h"

static int check_destination(const char *destination, eddy_error *err)
{
    if (!destination || !*destination)
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox: destination is NULL or empty");
    if (!eddyi_utf8_valid(destination, strlen(destination)))
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox: destination is not valid UTF-8");
    return EDDY_OK;
}

/* ---- appending ----------------------------------------------------------- */

typedef struct append_job {
    const char *stream_id;
    int64_t expected;
    eddy_event *const *events;
    size_t count;
    const char *destination;
    eddy_append_result *result;
} append_job;

static int run_append(eddy_txn *txn, void *arg, eddy_error *err)
{
    append_job *a = arg;
    int rc = eddy_txn_append(txn, a->stream_id, a->expected, a->events,
                             a->count, a->result, err);
    for (size_t i = 0; i < a->count && rc == EDDY_OK; i++)
        rc = eddyi_outbox_enqueue(txn, a->destination,
                                  eddy_event_id(a->events[i]), err);
    return rc;
}

int eddy_outbox_append(eddy_store *s, const char *stream_id,
                       int64_t expected_version, eddy_event *const *events,
                       size_t count, const char *destination,
                       eddy_append_result *result, eddy_error *err)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "outbox: store is NULL");
    int rc = check_destination(destination, err);
    if (rc != EDDY_OK)
        return rc;
    /* The event arguments are checked by eddy_txn_append, in the job,
     * before the queue is touched. */
    append_job a = {.stream_id = stream_id,
                    .expected = expected_version,
                    .events = events,
                    .count = count,
                    .destination = destination,
                    .result = result};
    return eddyi_store_write(s, run_append, &a, err);
}

/* ---- counting and cleaning ----------------------------------------------- */

int eddy_outbox_pending(eddy_store *s, const char *destination,
                        int64_t *count, eddy_error *err)
{
    if (!s || !count)
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox_pending: NULL store or count");
    return eddyi_outbox_pending(s, destination, count, err);
}

typedef struct prune_job {
    int64_t before_us;
    int64_t deleted;
} prune_job;

static int run_prune(eddy_txn *txn, void *arg, eddy_error *err)
{
    prune_job *p = arg;
    return eddyi_outbox_prune(txn, p->before_us, &p->deleted, err);
}

int eddy_outbox_cleanup(eddy_store *s, int64_t sent_before_us,
                        int64_t *deleted, eddy_error *err)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "outbox_cleanup: store is NULL");
    if (sent_before_us <= 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox_cleanup: sent_before_us must be > 0, "
                           "got %lld", (long long)sent_before_us);
    prune_job p = {.before_us = sent_before_us};
    int rc = eddyi_store_write(s, run_prune, &p, err);
    if (rc == EDDY_OK && deleted)
        *deleted = p.deleted;
    return rc;
}

/* ---- publishers ---------------------------------------------------------- */

static int bus_publish(void *self, const eddy_event *ev,
                       const char *destination, eddy_error *err)
{
    EDDYI_UNUSED(destination);
    /* eddy_bus_publish only takes a reference: events are immutable, and
     * the reference count is the one thing about them that changes. */
    int rc = eddy_bus_publish((eddy_bus *)self, (eddy_event *)ev);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "bus publish of %s: %s",
                           eddy_event_id(ev), eddy_strerror(rc));
    return EDDY_OK;
}

eddy_publisher eddy_publisher_bus(eddy_bus *bus)
{
    eddy_publisher p = {.publish = bus_publish, .close = NULL, .self = bus};
    return p;
}

/* ---- the relay ----------------------------------------------------------- */

typedef struct outbox_row {
    int64_t seq;
    char *destination;
    char *payload;
    size_t len;
} outbox_row;

struct eddy_outbox_relay {
    eddy_store *store;
    eddy_publisher pub;
    eddy_outbox_relay_options opts; /* defaults filled; destination owned */
    eddy_retry_policy retry;        /* resolved */

    pthread_t thread;
    bool started;
    eddyi_stop stop_once;           /* who joins, and the final status */
    pthread_mutex_t mu;             /* guards the fields below */
    pthread_cond_t cond;            /* stop requested */
    bool stop;
    int status;
    eddy_error status_err;
    eddy_outbox_relay_stats stats;

    /* Relay thread only. */
    outbox_row *rows;
    size_t nrows;
    int64_t cursor;                 /* seq of the last row published */
    int64_t mark_first, mark_last;  /* published, not yet marked; 0: none */
    size_t unmarked;
    int64_t next_cleanup_us;
    uint64_t rng;                   /* jitter */
};

static bool stopping(eddy_outbox_relay *r)
{
    pthread_mutex_lock(&r->mu);
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

/* Waits up to `us` for a stop request; true when stopping. */
static bool sleep_unless_stopped(eddy_outbox_relay *r, int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(us / 1000000);
    ts.tv_nsec += (long)(us % 1000000) * 1000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (pthread_cond_timedwait(&r->cond, &r->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

static void rows_clear(eddy_outbox_relay *r)
{
    for (size_t i = 0; i < r->nrows; i++) {
        free(r->rows[i].destination);
        free(r->rows[i].payload);
        r->rows[i].destination = r->rows[i].payload = NULL;
    }
    r->nrows = 0;
}

/* Copies one queued row out of the reader. */
static int page_row(const eddyi_outbox_row *in, void *user)
{
    eddy_outbox_relay *r = user;
    if (r->nrows == r->opts.page_rows)
        return EDDY_OK;
    outbox_row *row = &r->rows[r->nrows];
    row->seq = in->seq;
    row->len = in->payload_len;
    row->destination = eddyi_strdup(in->destination);
    row->payload = malloc(in->payload_len + 1);
    if (!row->destination || !row->payload) {
        free(row->destination);
        free(row->payload);
        row->destination = row->payload = NULL;
        return EDDY_ENOMEM;
    }
    memcpy(row->payload, in->payload, in->payload_len);
    row->payload[in->payload_len] = '\0';
    r->nrows++;
    return EDDY_OK;
}

/* Reads the next page of unsent rows after the cursor, on a reader. */
static int read_page(eddy_outbox_relay *r, eddy_error *err)
{
    int rc = eddyi_outbox_page(r->store, r->cursor, r->opts.destination,
                               r->opts.page_rows, page_row, r, err);
    if (rc == EDDY_ENOMEM)
        eddyi_error(err, rc, "outbox: out of memory reading the queue");
    if (rc != EDDY_OK)
        rows_clear(r);
    return rc;
}

typedef struct mark_job {
    eddy_outbox_relay *r;
    int64_t seq; /* run_attempt only */
} mark_job;

static int run_mark(eddy_txn *txn, void *arg, eddy_error *err)
{
    mark_job *m = arg;
    eddy_outbox_relay *r = m->r;
    return eddyi_outbox_mark_sent(txn, r->mark_first, r->mark_last,
                                  r->opts.destination, NULL, err);
}

static int run_attempt(eddy_txn *txn, void *arg, eddy_error *err)
{
    mark_job *m = arg;
    return eddyi_outbox_attempt(txn, m->seq, err);
}

/* Marks the published range sent. On failure the range stays pending (a
 * later mark covers it, or the next relay republishes it). */
static int flush_marks(eddy_outbox_relay *r, eddy_error *err)
{
    if (!r->unmarked)
        return EDDY_OK;
    mark_job m = {.r = r};
    eddy_error e = {0};
    int rc = eddyi_store_write(r->store, run_mark, &m, &e);
    if (rc != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "outbox", "marking rows %lld..%lld sent "
                  "failed: %s", (long long)r->mark_first,
                  (long long)r->mark_last, e.message);
        if (err)
            *err = e;
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    r->stats.marked += r->unmarked;
    pthread_mutex_unlock(&r->mu);
    r->unmarked = 0;
    r->mark_first = r->mark_last = 0;
    return EDDY_OK;
}

/* The wait before retry `n` of a publish that failed with `rc`: the
 * policy's backoff, or its max delay once the policy gives up (the relay
 * never drops a row). `*gave_up` says which. */
static int64_t retry_wait_us(eddy_outbox_relay *r, int rc, unsigned n,
                             bool *gave_up)
{
    *gave_up = !eddyi_retry_again(&r->retry, rc, n);
    if (*gave_up)
        return (int64_t)r->retry.max_delay_ms * 1000;
    return eddyi_retry_delay_us(&r->retry, n, &r->rng);
}

/* Sets stats.stalled_seq to `seq` (0: none stalls any more). */
static void set_stalled(eddy_outbox_relay *r, int64_t seq)
{
    pthread_mutex_lock(&r->mu);
    r->stats.stalled_seq = seq;
    pthread_mutex_unlock(&r->mu);
}

/*
 * Publishes one row, retrying until it succeeds. Returns EDDY_OK, or
 * EDDY_ESTOPPED when a stop was requested while waiting to retry.
 */
static int publish_row(eddy_outbox_relay *r, const outbox_row *row)
{
    unsigned failures = 0;
    bool stalled = false;
    for (;;) {
        eddy_error perr = {0};
        eddy_event *ev = eddy_event_decode(row->payload, row->len, &perr);
        int rc;
        if (ev) {
            rc = r->pub.publish(r->pub.self, ev, row->destination, &perr);
            if (rc != EDDY_OK && perr.code == EDDY_OK)
                eddyi_error(&perr, rc, "%s", eddy_strerror(rc));
            eddy_event_unref(ev);
        } else {
            /* The payload was written by the store's own encoder, so this is
             * damage; the row is retried (never skipped) and logged loudly. */
            rc = perr.code ? perr.code : EDDY_EPARSE;
        }
        if (rc == EDDY_OK) {
            pthread_mutex_lock(&r->mu);
            r->stats.published++;
            r->stats.last_seq = row->seq;
            if (stalled)
                r->stats.stalled_seq = 0;
            pthread_mutex_unlock(&r->mu);
            if (stalled)
                EDDYI_LOG(EDDY_LOG_INFO, "outbox", "row %lld to %s published "
                          "after %u failed attempts", (long long)row->seq,
                          row->destination, failures);
            return EDDY_OK;
        }
        failures++;
        pthread_mutex_lock(&r->mu);
        r->stats.failures++;
        pthread_mutex_unlock(&r->mu);
        bool gave_up;
        int64_t wait = retry_wait_us(r, rc, failures, &gave_up);
        if (gave_up && !stalled) {
            stalled = true;
            set_stalled(r, row->seq);
            EDDYI_LOG(EDDY_LOG_ERROR, "outbox",
                      "publishing row %lld to %s failed %u time(s), beyond "
                      "what the retry policy allows: %s; the relay never "
                      "drops a row and keeps retrying it every %u ms (rows "
                      "behind it wait)", (long long)row->seq,
                      row->destination, failures, perr.message,
                      r->retry.max_delay_ms);
        } else {
            EDDYI_LOG(ev ? EDDY_LOG_WARN : EDDY_LOG_ERROR, "outbox",
                      "publishing row %lld to %s failed (attempt %u): %s; "
                      "retrying in %lld ms", (long long)row->seq,
                      row->destination, failures, perr.message,
                      (long long)(wait / 1000));
        }
        /* Keep the progress made so far, and count the attempt. Failures
         * here are logged by flush_marks; the retry goes on regardless. */
        flush_marks(r, NULL);
        mark_job m = {.r = r, .seq = row->seq};
        eddyi_store_write(r->store, run_attempt, &m, NULL);
        if (sleep_unless_stopped(r, wait))
            return EDDY_ESTOPPED;
    }
}

/* Sets the relay's final status (the first error wins). */
static void set_status(eddy_outbox_relay *r, int rc, const eddy_error *err)
{
    pthread_mutex_lock(&r->mu);
    if (r->status == EDDY_OK && rc != EDDY_OK) {
        r->status = rc;
        if (err)
            r->status_err = *err;
    }
    pthread_mutex_unlock(&r->mu);
}

static void maybe_cleanup(eddy_outbox_relay *r)
{
    if (r->opts.cleanup_after_ms <= 0)
        return;
    int64_t now = eddy_now_us();
    if (now < r->next_cleanup_us)
        return;
    int64_t every_ms = r->opts.cleanup_after_ms / 2;
    if (every_ms < 1000)
        every_ms = 1000;
    r->next_cleanup_us = now + every_ms * 1000;
    int64_t deleted = 0;
    eddy_error err = {0};
    int rc = eddy_outbox_cleanup(r->store,
                                 now - r->opts.cleanup_after_ms * 1000,
                                 &deleted, &err);
    if (rc != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "outbox", "cleanup failed: %s", err.message);
    else if (deleted)
        EDDYI_LOG(EDDY_LOG_DEBUG, "outbox", "cleanup deleted %lld sent rows",
                  (long long)deleted);
}

/* Idle: wait for a commit past `head`, checking for a stop request every
 * STOP_CHECK_MS; after IDLE_REREAD_MS read the queue anyway (rows queued
 * without a new event: a retried append of events stored earlier, or rows
 * queued by another process). */
#define STOP_CHECK_MS 50
#define IDLE_REREAD_MS 1000

static int wait_for_commit(eddy_outbox_relay *r, int64_t head)
{
    for (int waited = 0; waited < IDLE_REREAD_MS; waited += STOP_CHECK_MS) {
        if (stopping(r))
            return EDDY_ESTOPPED;
        int rc = eddy_store_wait(r->store, head, STOP_CHECK_MS, NULL);
        if (rc == EDDY_OK)
            return EDDY_OK;
        if (rc == EDDY_ESTOPPED)
            return rc;
    }
    return EDDY_OK;
}

static void *relay_main(void *arg)
{
    eddyi_thread_name("eddy-outbox");
    eddy_outbox_relay *r = arg;
    eddy_error err = {0};
    int rc = EDDY_OK;
    unsigned read_failures = 0;
    while (!stopping(r)) {
        maybe_cleanup(r);
        /* The head before the read: a commit after it wakes the wait. */
        int64_t head = 0;
        eddy_store_wait(r->store, -1, 0, &head);
        eddy_error_clear(&err);
        rc = read_page(r, &err);
        if (rc == EDDY_ESTATE) /* the store is closing */
            break;
        if (rc != EDDY_OK) {
            read_failures++;
            int64_t wait = eddyi_retry_delay_us(&r->retry, read_failures,
                                                &r->rng);
            EDDYI_LOG(EDDY_LOG_WARN, "outbox", "reading the queue failed: "
                      "%s; retrying in %lld ms", err.message,
                      (long long)(wait / 1000));
            rc = EDDY_OK;
            if (sleep_unless_stopped(r, wait))
                break;
            continue;
        }
        read_failures = 0;
        size_t i = 0, n = r->nrows;
        for (; i < n; i++) {
            if (publish_row(r, &r->rows[i]) != EDDY_OK)
                break; /* stopping */
            r->cursor = r->rows[i].seq;
            if (!r->unmarked)
                r->mark_first = r->rows[i].seq;
            r->mark_last = r->rows[i].seq;
            r->unmarked++;
            if (r->unmarked >= r->opts.mark_batch)
                flush_marks(r, NULL);
        }
        rows_clear(r);
        if (i < n)
            break; /* stopped in the middle of the page */
        if (n == r->opts.page_rows)
            continue; /* more to read at once */
        flush_marks(r, NULL);
        if (wait_for_commit(r, head) == EDDY_ESTOPPED)
            break;
    }
    /* Whatever was published is marked before the thread ends. */
    if (rc == EDDY_OK || rc == EDDY_ESTATE) {
        eddy_error_clear(&err);
        int mrc = flush_marks(r, &err);
        if (mrc != EDDY_OK)
            set_status(r, mrc, &err);
    }
    if (rc == EDDY_ESTATE && !stopping(r))
        set_status(r, EDDY_ESTOPPED, &err);
    return NULL;
}

static int start_check(eddy_txn *txn, void *arg, eddy_error *err)
{
    EDDYI_UNUSED(txn);
    EDDYI_UNUSED(arg);
    EDDYI_UNUSED(err);
    return EDDY_OK;
}

/* Checks and completes the options; `o` receives the copy (destination
 * still borrowed), `retry` the resolved policy. */
static int options_resolve(const eddy_outbox_relay_options *opts,
                           eddy_outbox_relay_options *o,
                           eddy_retry_policy *retry, eddy_error *err)
{
    *o = opts ? *opts : (eddy_outbox_relay_options){0};
    if (o->cleanup_after_ms < 0)
        return eddyi_error(err, EDDY_EINVAL, "outbox relay: negative "
                           "cleanup_after_ms %lld",
                           (long long)o->cleanup_after_ms);
    if (o->destination && check_destination(o->destination, err) != EDDY_OK)
        return EDDY_EINVAL;
    if (!o->page_rows)
        o->page_rows = EDDY_OUTBOX_DEFAULT_PAGE_ROWS;
    if (!o->mark_batch)
        o->mark_batch = EDDY_OUTBOX_DEFAULT_MARK_BATCH;
    if (o->page_rows > 100000)
        return eddyi_error(err, EDDY_EINVAL, "outbox relay: page_rows %zu is "
                           "above the limit of 100000", o->page_rows);
    /* A relay publishes one row at a time in order: its delays default to
     * shorter ones than a handler's, as every row behind waits. */
    eddy_retry_policy p = o->retry;
    if (!p.initial_delay_ms) {
        p.initial_delay_ms = EDDY_OUTBOX_DEFAULT_RETRY_INITIAL_MS;
        if (p.max_delay_ms && p.max_delay_ms < p.initial_delay_ms)
            p.initial_delay_ms = p.max_delay_ms;
    }
    if (!p.max_delay_ms)
        p.max_delay_ms = p.initial_delay_ms > EDDY_OUTBOX_DEFAULT_RETRY_MAX_MS
                             ? p.initial_delay_ms
                             : EDDY_OUTBOX_DEFAULT_RETRY_MAX_MS;
    return eddyi_retry_resolve(&p, retry, "outbox relay", err);
}

eddy_outbox_relay *eddy_outbox_relay_start(eddy_store *s,
                                           const eddy_publisher *pub,
                                           const eddy_outbox_relay_options *opts,
                                           eddy_error *err)
{
    eddy_outbox_relay *r = NULL;
    if (!s || !pub || !pub->publish) {
        eddyi_error(err, EDDY_EINVAL,
                    "outbox relay: a store and a publish function are required");
        return NULL;
    }
    eddy_outbox_relay_options o;
    eddy_retry_policy retry;
    if (options_resolve(opts, &o, &retry, err) != EDDY_OK)
        return NULL;
    /* Surfaces a read-only or closing store as an error of this call
     * rather than of the thread. (Nothing is read here: opening a reader
     * connection is left to the thread, so the caller goes on sooner.) */
    if (eddyi_store_write(s, start_check, NULL, err) != EDDY_OK)
        return NULL;

    r = calloc(1, sizeof *r);
    if (!r)
        goto nomem;
    r->store = s;
    r->pub = *pub;
    r->opts = o;
    r->retry = retry;
    r->rng = (uint64_t)eddy_now_us() | 1;
    eddyi_stop_init(&r->stop_once);
    r->opts.destination = NULL;
    if (o.destination && !(r->opts.destination = eddyi_strdup(o.destination)))
        goto nomem;
    if (!(r->rows = calloc(o.page_rows, sizeof *r->rows)))
        goto nomem;
    if (pthread_mutex_init(&r->mu, NULL) != 0)
        goto nomem;
    if (pthread_cond_init(&r->cond, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        goto nomem;
    }
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->mu);
        eddyi_error(err, EDDY_ENOMEM, "outbox relay: cannot start its thread");
        goto fail;
    }
    r->started = true;
    return r;
nomem:
    eddyi_error(err, EDDY_ENOMEM, "outbox relay: out of memory");
fail:
    if (r) {
        eddyi_stop_destroy(&r->stop_once);
        free((char *)r->opts.destination);
        free(r->rows);
        free(r);
    }
    return NULL;
}

int eddy_outbox_relay_stop(eddy_outbox_relay *r, eddy_error *err)
{
    if (!r)
        return EDDY_OK;
    /* Several threads may stop it: one joins, all return the status. */
    if (eddyi_stop_begin(&r->stop_once)) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
        if (r->started)
            pthread_join(r->thread, NULL);
        pthread_mutex_lock(&r->mu);
        int rc = r->status;
        eddy_error e = r->status_err;
        pthread_mutex_unlock(&r->mu);
        eddyi_stop_end(&r->stop_once, rc, &e);
    }
    return eddyi_stop_wait(&r->stop_once, err);
}

void eddy_outbox_relay_stats_get(const eddy_outbox_relay *r,
                                 eddy_outbox_relay_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!r)
        return;
    eddy_outbox_relay *m = (eddy_outbox_relay *)r; /* the mutex only */
    pthread_mutex_lock(&m->mu);
    *out = m->stats;
    pthread_mutex_unlock(&m->mu);
}

void eddy_outbox_relay_free(eddy_outbox_relay *r)
{
    if (!r)
        return;
    eddy_outbox_relay_stop(r, NULL);
    if (r->pub.close)
        r->pub.close(r->pub.self);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    eddyi_stop_destroy(&r->stop_once);
    free((char *)r->opts.destination);
    free(r->rows);
    free(r);
}
