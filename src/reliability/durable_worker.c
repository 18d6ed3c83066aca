/*
 * src/reliability/durable_worker.c - the workers of a durable subscription:
 * per-key order, parking a failing key until its retry is due, and the
 * transactional batches.
 *
 * Threads: each worker runs eddyi_durable_worker_main. Its inbound FIFO is
 * shared with the dispatcher under w->mu; its parked keys are its own. The
 * stopping thread calls eddyi_durable_worker_drop after joining it.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/store_internal.h"
#include "durable_internal.h"

static void item_free(struct item *it)
{
    if (!it)
        return;
    eddy_event_unref(it->ev);
    free(it);
}

static void item_done(eddy_durable *d, struct item *it)
{
    eddyi_durable_complete(d, it->position);
    item_free(it);
}

/* ---- parking ------------------------------------------------------------- */

static bool same_key(const struct item *a, const struct item *b)
{
    return a->hash == b->hash && strcmp(a->key, b->key) == 0;
}

static struct parked *parked_find(struct worker *w, const struct item *it)
{
    for (struct parked *p = w->parked; p; p = p->next)
        if (same_key(p->head, it))
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

/* Completes, parks or drops `it` after a run that ended with `o`. */
static void item_settle(struct worker *w, struct item *it,
                        enum item_outcome o)
{
    if (o == ITEM_DONE)
        item_done(w->d, it);
    else if (o == ITEM_PARK)
        park_or_drop(w, it);
    else /* fenced: not ours any more; the checkpoint stays below it */
        item_free(it);
}

/* Runs a fresh item, parking it (or queueing it behind its parked key). */
static void worker_take(struct worker *w, struct item *it)
{
    struct parked *p = parked_find(w, it);
    if (p) {
        queue_behind(p, it);
        return;
    }
    if (not_due(it) && !eddyi_durable_fenced(w->d)) {
        park_or_drop(w, it);
        return;
    }
    item_settle(w, it, eddyi_durable_item_run(w, it));
}

/* Frees a parked key's events (fenced: they are not ours any more). */
static void parked_free(struct parked *p)
{
    item_free(p->head);
    while (p->wait_head) {
        struct item *it = p->wait_head;
        p->wait_head = it->next;
        item_free(it);
    }
    p->head = NULL;
    p->wait_tail = NULL;
}

/* Retries a due parked key, then lets its queued events run in order until
 * one fails again. Returns false when the key stays parked. */
static bool parked_run(struct worker *w, struct parked *p)
{
    enum item_outcome o = eddyi_durable_item_run(w, p->head);
    if (o == ITEM_PARK)
        return false;
    if (o == ITEM_DROP) {
        parked_free(p);
        return true;
    }
    item_done(w->d, p->head);
    p->head = NULL;
    while (p->wait_head) {
        struct item *it = p->wait_head;
        p->wait_head = it->next;
        if (!p->wait_head)
            p->wait_tail = NULL;
        it->next = NULL;
        o = eddyi_durable_item_run(w, it);
        if (o == ITEM_PARK) {
            p->head = it;
            return false;
        }
        if (o == ITEM_DROP) {
            p->head = it;
            parked_free(p);
            return true;
        }
        item_done(w->d, it);
    }
    return true;
}

void eddyi_durable_worker_drop(struct worker *w)
{
    while (w->parked) {
        struct parked *p = w->parked;
        w->parked = p->next;
        parked_free(p);
        free(p);
    }
    while (w->in_head) {
        struct item *it = w->in_head;
        w->in_head = it->next;
        item_free(it);
    }
    w->in_tail = NULL;
}

/* ---- transactional batches ----------------------------------------------- */

/*
 * A TRANSACTIONAL worker hands every runnable event it has queued (up to
 * TXN_BATCH) to the writer in ONE job: each event runs in its own nested
 * savepoint (a failing handler rolls back only its own writes), after the
 * fence, written once, first: a member that was taken for gone runs no
 * handler and commits nothing. Without batches, each event would cost a
 * commit round trip to the writer. Per-key order holds inside a batch:
 * after an event fails, the later events of its key in the batch are not
 * run ("deferred") and queue behind it.
 */
struct batch {
    eddy_durable *d;
    size_t n;
    struct item *items[TXN_BATCH];
    struct txn_job jobs[TXN_BATCH];
    int rc[TXN_BATCH];
    bool deferred[TXN_BATCH];
};

/*
 * The batch without a savepoint per item: the usual case, where every
 * handler succeeds, costs no SAVEPOINT / RELEASE pair per event. Sets
 * `*all_ok` when every item succeeded; on the first failure rolls the
 * whole attempt back and returns EDDY_OK with `*all_ok` clear, and the
 * caller runs the careful path. Returns a store error otherwise.
 */
static int batch_fast(eddy_txn *txn, struct batch *b, bool *all_ok,
                      eddy_error *err)
{
    *all_ok = false;
    int rc = eddyi_txn_savepoint(txn, err);
    if (rc != EDDY_OK)
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        b->rc[i] = EDDY_OK;
        b->deferred[i] = false;
        b->jobs[i].msg[0] = '\0';
        b->jobs[i].skipped = b->jobs[i].inbox_taken = false;
        eddy_error ie = {0};
        if (eddyi_durable_txn_item(txn, &b->jobs[i], &ie) != EDDY_OK) {
            eddyi_txn_rollback(txn);
            for (size_t k = 0; k <= i; k++) {
                b->jobs[k].msg[0] = '\0';
                b->jobs[k].skipped = b->jobs[k].inbox_taken = false;
            }
            return EDDY_OK;
        }
    }
    /* A statement of some item may fail as late as this release (on
     * PostgreSQL, one whose result nobody read): the release rolled the
     * attempt back, and the careful path finds the item. */
    eddy_error re = {0};
    if (eddyi_txn_release(txn, &re) != EDDY_OK) {
        for (size_t k = 0; k < b->n; k++) {
            b->jobs[k].msg[0] = '\0';
            b->jobs[k].skipped = b->jobs[k].inbox_taken = false;
        }
        return EDDY_OK;
    }
    *all_ok = true;
    return EDDY_OK;
}

static int batch_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct batch *b = arg;
    int frc = eddyi_durable_fence(txn, b->d, err);
    if (frc != EDDY_OK)
        return frc;
    bool all_ok = false;
    frc = b->n > 1 ? batch_fast(txn, b, &all_ok, err) : EDDY_OK;
    if (frc != EDDY_OK)
        return frc;
    if (all_ok)
        return EDDY_OK;
    /* Careful path: each item in its own savepoint, so a failing handler
     * rolls back only its own writes. */
    for (size_t i = 0; i < b->n; i++) {
        b->rc[i] = EDDY_OK;
        b->deferred[i] = false;
        for (size_t k = 0; k < i && !b->deferred[i]; k++)
            if ((b->rc[k] != EDDY_OK || b->deferred[k]) &&
                same_key(b->items[k], b->items[i]))
                b->deferred[i] = true;
        if (b->deferred[i])
            continue;
        int rc = eddyi_txn_savepoint(txn, err);
        if (rc != EDDY_OK)
            return rc;
        eddy_error ie = {0};
        int r = eddyi_durable_txn_item(txn, &b->jobs[i], &ie);
        bool rolled_back = false;
        if (r == EDDY_OK) {
            /* A failed release rolled the item back: one of its
             * statements failed late (store_internal.h). */
            r = eddyi_txn_release(txn, &ie);
            if (r == EDDY_OK)
                continue;
            rolled_back = true;
        }
        b->rc[i] = r;
        if (!b->jobs[i].msg[0])
            snprintf(b->jobs[i].msg, sizeof b->jobs[i].msg, "%.360s",
                     ie.message);
        if (!rolled_back)
            eddyi_txn_rollback(txn);
    }
    return EDDY_OK;
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
    int rc = b->n && !eddyi_durable_fenced(d)
                 ? eddyi_store_write(d->store, batch_job_run, b, &e)
                 : EDDY_OK;
    bool fenced = eddyi_durable_fenced(d);
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = b->items[i];
        struct parked *p = parked_find(w, it);
        if (p) { /* an earlier event of its key failed just now */
            queue_behind(p, it);
            continue;
        }
        if (fenced) { /* nothing of it committed, nor may it */
            item_free(it);
            continue;
        }
        if (b->deferred[i]) {
            worker_take(w, it);
            continue;
        }
        int r = rc != EDDY_OK ? rc : b->rc[i];
        if (r == EDDY_OK)
            item_done(d, it);
        else
            item_settle(w, it, eddyi_durable_item_failed(
                                   w, it, r,
                                   rc != EDDY_OK ? e.message : b->jobs[i].msg));
    }
    free(b);
}

/* ---- the worker thread --------------------------------------------------- */

void *eddyi_durable_worker_main(void *arg)
{
    eddyi_thread_name("eddy-durable");
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
            eddyi_abs_deadline(&ts, earliest);
            pthread_cond_timedwait(&w->cond, &w->mu, &ts);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}
