/*
 * src/reliability/durable_dead.c - what happens when a durable handler
 * fails: the retry schedule (core/retry.h) and its stored row, the dead
 * letter after the last attempt, and redrive (eddy_durable_redrive, and
 * the dead letters marked by eddy_dlq_redrive).
 *
 * Threads: eddyi_durable_item_run / _item_failed run on workers;
 * eddyi_durable_redrive_marked on the maintenance thread;
 * eddy_durable_redrive on the caller's thread. Redrives are serialised by
 * d->redrive_mu. The stored rows are written by write jobs (writer thread);
 * dead letters to redrive are read on readers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/retry.h"
#include "../store/state_durable.h"
#include "../store/store_internal.h"
#include "durable_internal.h"

/* A dead letter that could not be written is tried again after this. */
#define DEAD_LETTER_RETRY_US 1000000

/* ---- retry rows and dead letters ----------------------------------------- */

struct row_job {
    eddy_durable *d;
    const struct item *it;
};

static int retry_row_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct row_job *j = arg;
    const struct item *it = j->it;
    int rc = eddyi_durable_fence(txn, j->d, err);
    if (rc != EDDY_OK)
        return rc;
    eddyi_retry_row row = {.position = it->position,
                           .event_id = eddy_event_id(it->ev),
                           .attempts = it->attempts,
                           .first_failure_us = it->first_fail_us,
                           .last_failure_us = it->last_fail_us,
                           .next_at_us = it->next_at_us,
                           .error_code = it->last_code,
                           .error = it->last_error};
    return eddyi_retry_save(txn, j->d->name, &row, err);
}

static int dead_letter_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct row_job *j = arg;
    const struct item *it = j->it;
    /* A member that lost the partition does not dead-letter its event: the
     * new owner delivers it. */
    int frc = eddyi_durable_fence(txn, j->d, err);
    if (frc != EDDY_OK)
        return frc;
    char *payload = eddy_event_encode(it->ev, NULL);
    if (!payload)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    eddyi_dl_row row = {.subscription = j->d->name,
                        .position = it->position,
                        .event_id = eddy_event_id(it->ev),
                        .event_type = eddy_event_type(it->ev),
                        .payload = payload,
                        .payload_len = strlen(payload),
                        .error_code = it->last_code,
                        .error = it->last_error,
                        .attempts = it->attempts,
                        .first_failure_us = it->first_fail_us,
                        .last_failure_us = it->last_fail_us};
    int rc = eddyi_dl_put(txn, &row, err); /* deletes the retry row too */
    free(payload);
    return rc;
}

/* Moves `it` to the dead letters. ITEM_DONE when written (the key may move
 * on); ITEM_PARK: it stays parked and the write is tried again later;
 * ITEM_DROP when fenced. */
static enum item_outcome dead_letter(struct worker *w, struct item *it)
{
    eddy_durable *d = w->d;
    eddy_error e = {0};
    struct row_job j = {.d = d, .it = it};
    int rc = eddyi_store_write(d->store, dead_letter_run, &j, &e);
    if (rc != EDDY_OK && eddyi_durable_fenced(d))
        return ITEM_DROP;
    if (rc != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_ERROR, "durable",
                  "%s: cannot store the dead letter of event %s (position "
                  "%" PRId64 "), will try again: %s", d->name,
                  eddy_event_id(it->ev), it->position, e.message);
        it->dl_pending = true;
        it->next_at_us = eddy_now_us() + DEAD_LETTER_RETRY_US;
        return ITEM_PARK;
    }
    eddy_metrics_dead_lettered(eddyi_durable_series(d, it->ev));
    EDDYI_LOG(EDDY_LOG_WARN, "durable",
              "%s: event %s (%s, position %" PRId64 ") dead-lettered after "
              "%d attempt(s): %s", d->name, eddy_event_id(it->ev),
              eddy_event_type(it->ev), it->position, it->attempts,
              it->last_error);
    return ITEM_DONE;
}

enum item_outcome eddyi_durable_item_run(struct worker *w, struct item *it)
{
    /* Fenced: another member holds one of our partitions now; nothing runs
     * until the coordinator resynced (an AT_LEAST_ONCE handler has no
     * transaction to fence: this check is all it gets). */
    if (eddyi_durable_fenced(w->d))
        return ITEM_DROP;
    if (it->dl_pending)
        return dead_letter(w, it);
    char msg[MESSAGE_MAX];
    int rc = eddyi_durable_deliver(w->d, it->ev, it->position,
                                   it->attempts > 0, 0, msg);
    if (rc == EDDY_OK)
        return ITEM_DONE;
    return eddyi_durable_item_failed(w, it, rc, msg);
}

enum item_outcome eddyi_durable_item_failed(struct worker *w, struct item *it,
                                            int rc, const char *msg)
{
    eddy_durable *d = w->d;
    if (eddyi_durable_fenced(d))
        return ITEM_DROP; /* not a failure of the handler's */
    int64_t now = eddy_now_us();
    it->attempts++;
    if (!it->first_fail_us)
        it->first_fail_us = now;
    it->last_fail_us = now;
    it->last_code = rc;
    snprintf(it->last_error, sizeof it->last_error, "%.20s: %.360s",
             eddy_errname(rc), msg[0] ? msg : eddy_strerror(rc));
    if (!eddyi_retry_again(&d->retry, rc, (unsigned)it->attempts))
        return dead_letter(w, it);
    it->next_at_us =
        now + eddyi_retry_delay_us(&d->retry, (unsigned)it->attempts, &w->rng);
    eddy_metrics_retried(eddyi_durable_series(d, it->ev));
    EDDYI_LOG(EDDY_LOG_INFO, "durable",
              "%s: event %s (position %" PRId64 ") failed, attempt %d of %u, "
              "retry in %" PRId64 " ms: %s", d->name, eddy_event_id(it->ev),
              it->position, it->attempts, d->retry.max_attempts,
              (it->next_at_us - now) / 1000, it->last_error);
    eddy_error e = {0};
    struct row_job j = {.d = d, .it = it};
    if (eddyi_store_write(d->store, retry_row_run, &j, &e) != EDDY_OK) {
        if (eddyi_durable_fenced(d))
            return ITEM_DROP;
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: retry state of position "
                  "%" PRId64 " not persisted: %s", d->name, it->position,
                  e.message);
    }
    return ITEM_PARK;
}

/* ---- redrive ------------------------------------------------------------- */

struct fail_job {
    int64_t id;
    int code;
    const char *error;
};

static int redrive_fail_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct fail_job *j = arg;
    return eddyi_dl_failed_again(txn, j->id, j->code, j->error, err);
}

/* The partition key hash of `ev`: its subject, else its id. */
static uint64_t event_hash(const eddy_event *ev)
{
    const char *key = eddy_event_subject(ev);
    return eddyi_durable_hash(key ? key : eddy_event_id(ev));
}

/* Redelivers dead letter `id` of `d` once; with `only_marked` (the
 * maintenance thread's pass), only if it is still marked for redrive and
 * its event is in a partition this member owns. */
static int redrive(eddy_durable *d, int64_t id, bool only_marked,
                   eddy_error *err)
{
    pthread_mutex_lock(&d->redrive_mu);
    eddy_dead_letter *dl = NULL;
    char msg[MESSAGE_MAX];
    eddy_error le = {0};
    int rc = eddyi_dlq_load(d->store, id, d->name, &dl, &le);
    if (rc == EDDY_OK && !dl->event) {
        /* Damaged: no handler can take it. Back to "dead" with the reason,
         * rather than marked for ever. */
        rc = EDDY_EPARSE;
        snprintf(msg, sizeof msg, "%.360s", dl->event_error);
    } else if (rc != EDDY_OK) {
        if (err)
            *err = le;
        goto done;
    } else if (only_marked && strcmp(dl->status, EDDY_DLQ_REDRIVE) != 0) {
        goto done;
    } else if (only_marked && !eddyi_durable_owns(d, event_hash(dl->event))) {
        goto done; /* its partition's owner redrives it */
    } else {
        rc = eddyi_durable_deliver(d, dl->event, dl->position, false, id,
                                   msg);
    }
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

void eddyi_durable_redrive_marked(eddy_durable *d)
{
    int64_t ids[REDRIVE_BATCH];
    size_t n = 0;
    eddy_error e = {0};
    if (eddyi_dl_marked(d->store, d->name, ids, REDRIVE_BATCH, &n, &e) !=
        EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: looking for dead letters "
                  "to redrive: %s", d->name, e.message);
        return;
    }
    if (n)
        EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: redriving %zu dead "
                  "letter(s) marked for redrive", d->name, n);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&d->mu);
        bool stop = d->maint_stop;
        pthread_mutex_unlock(&d->mu);
        if (stop)
            break;
        eddy_error re = {0};
        int rc = redrive(d, ids[i], true, &re);
        if (rc != EDDY_OK && rc != EDDY_ENOTFOUND)
            EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: redrive: %s", d->name,
                      re.message);
    }
}
