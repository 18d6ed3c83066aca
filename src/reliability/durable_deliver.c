/*
 * src/reliability/durable_deliver.c - one delivery of an event to a durable
 * handler, in each of the three modes (eddy/durable.h):
 *
 *   AT_LEAST_ONCE  the handler on the calling thread; follow-ups appended
 *                  at once; a write job afterwards only to clean up a
 *                  retry row or a redriven dead letter.
 *   INBOX          a write job (fenced) claims (handler, event id); the
 *                  handler runs on the calling thread unless the claim
 *                  says "done"; a second write job records "done".
 *   TRANSACTIONAL  one write job: the fence, inbox check, the handler
 *                  inside the writer's transaction (its writes and
 *                  follow-ups), the inbox row.
 *
 * Threads: eddyi_durable_deliver runs on a worker (events) or on the
 * maintenance / calling thread (redrives); the write jobs and every
 * TRANSACTIONAL handler run on the store's writer thread.
 */
#include <inttypes.h>
#include <stdio.h>

#include "../core/ctx_internal.h"
#include "../core/internal.h"
#include "../store/state_durable.h"
#include "../store/store_internal.h"
#include "durable_internal.h"

eddy_metrics_series *eddyi_durable_series(const eddy_durable *d,
                                          const eddy_event *ev)
{
    return d->metrics ? eddy_metrics_series_get(d->metrics, d->name,
                                                eddy_event_type(ev))
                      : NULL;
}

/* The stream of a follow-up: its subject, else its type. */
static const char *followup_stream(const eddy_event *ev)
{
    const char *stream = eddy_event_subject(ev);
    return stream ? stream : eddy_event_type(ev);
}

/* ---- AT_LEAST_ONCE and INBOX: the handler on the calling thread ---------- */

/* Follow-ups of at-least-once and inbox handlers: appended to the store at
 * once (a re-run may append them again, see eddy/durable.h). */
static int publish_append(void *host_user, eddy_event *ev)
{
    eddy_durable *d = host_user;
    eddy_error e = {0};
    int rc = eddy_store_append(d->store, followup_stream(ev), EDDY_EXPECT_ANY,
                               &ev, 1, NULL, &e);
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
    eddy_metrics_series *ms = eddyi_durable_series(d, ev);
    eddy_metrics_begin(ms);
    uint64_t t0 = eddy_metrics_clock_ns();
    int rc = eddyi_ctx_run(&host, ev, call_plain_fn, &c, msg, MESSAGE_MAX);
    eddy_metrics_end(ms, rc, eddy_metrics_clock_ns() - t0);
    return rc;
}

/* ---- the bookkeeping of a success ---------------------------------------- */

/* What commits with a successful (or skipped) call. */
static int finish(struct txn_job *j, eddy_error *err)
{
    eddy_durable *d = j->d;
    int rc = EDDY_OK;
    /* (TRANSACTIONAL recorded it with the handler: eddyi_inbox_take) */
    if (d->mode == EDDY_DELIVERY_INBOX ||
        (d->mode == EDDY_DELIVERY_TRANSACTIONAL && !j->inbox_taken))
        rc = eddyi_inbox_done(j->txn, d->name, eddy_event_id(j->ev), err);
    if (rc == EDDY_OK && j->had_retry)
        rc = eddyi_retry_delete(j->txn, d->name, j->position, err);
    if (rc == EDDY_OK && j->dead_letter_id > 0)
        rc = eddyi_dl_delete(j->txn, j->dead_letter_id, NULL, err);
    return rc;
}

/* A write job holding only the bookkeeping. */
static int finish_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct txn_job *j = arg;
    j->txn = txn;
    return finish(j, err);
}

/* ---- TRANSACTIONAL ------------------------------------------------------- */

/* Follow-ups of a transactional handler: in its transaction. */
static int publish_txn(void *host_user, eddy_event *ev)
{
    struct txn_job *j = host_user;
    eddy_error e = {0};
    int rc = eddy_txn_append(j->txn, followup_stream(ev), EDDY_EXPECT_ANY,
                             &ev, 1, NULL, &e);
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

int eddyi_durable_txn_item(eddy_txn *txn, struct txn_job *j, eddy_error *err)
{
    eddy_durable *d = j->d;
    j->txn = txn;
    /* One statement records the event done and says whether it was: the
     * record commits or rolls back with the handler's writes. */
    bool fresh = false;
    int rc = eddyi_inbox_take(txn, d->name, eddy_event_id(j->ev), &fresh, err);
    if (rc != EDDY_OK)
        return rc;
    j->skipped = !fresh;
    j->inbox_taken = true;
    if (!j->skipped) {
        eddyi_ctx_host host = {.publish = publish_txn,
                               .host_user = j,
                               .name = d->name,
                               .source = d->source};
        eddy_metrics_series *ms = eddyi_durable_series(d, j->ev);
        eddy_metrics_begin(ms);
        uint64_t t0 = eddy_metrics_clock_ns();
        rc = eddyi_ctx_run(&host, j->ev, call_txn_fn, j, j->msg,
                           sizeof j->msg);
        eddy_metrics_end(ms, rc, eddy_metrics_clock_ns() - t0);
        if (rc != EDDY_OK)
            return eddyi_error(err, rc, "%s",
                               j->msg[0] ? j->msg : eddy_strerror(rc));
    }
    return finish(j, err);
}

/* One TRANSACTIONAL delivery in a job of its own (a retry, a redrive): the
 * fence first. */
static int txn_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct txn_job *j = arg;
    int rc = eddyi_durable_fence(txn, j->d, err);
    return rc == EDDY_OK ? eddyi_durable_txn_item(txn, j, err) : rc;
}

/* ---- INBOX: the claim ---------------------------------------------------- */

struct claim_job {
    eddy_durable *d;
    const eddy_event *ev;
    bool done; /* an earlier call recorded success */
};

/* The claim, fenced: a member that lost the event's partition does not
 * run its handler. ("done" is recorded unfenced: the handler ran.) */
static int claim_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct claim_job *j = arg;
    int rc = eddyi_durable_fence(txn, j->d, err);
    if (rc != EDDY_OK)
        return rc;
    return eddyi_inbox_claim(txn, j->d->name, eddy_event_id(j->ev), &j->done,
                             err);
}

/* ---- one delivery -------------------------------------------------------- */

int eddyi_durable_deliver(eddy_durable *d, const eddy_event *ev,
                          int64_t position, bool had_retry,
                          int64_t dead_letter_id, char *msg)
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
