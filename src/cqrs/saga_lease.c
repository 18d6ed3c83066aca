/*
 * src/cqrs/saga_lease.c - which process sends a saga type's commands and
 * fires its timeouts when several run it.
 *
 * The saga's events are shared by partitions like any durable
 * subscription's (eddy/durable.h). Its queued commands and deadlines are
 * not partitioned: one process at a time, the holder of the saga type's
 * COMMAND LEASE, sends the commands (so an instance's commands go out one
 * after another, in order, as in one process) and fires the deadlines.
 * The lease is a row of the lease table under the key "<saga>#commands"
 * (state_leases.h), part 0, renewed every lease/3 by the feeder. Another
 * process takes it when it is free (the holder stopped), when it ended, or
 * when its holder is a process of this host that no longer exists.
 *
 * The feeder records the outcome of a pass (which commands were sent) in a
 * job that first renews the lease: a holder that lost it (paused past its
 * lease) records nothing, and the new holder sends those commands again:
 * at-least-once, as after a crash. A process that does not hold the lease
 * looks at the row on a reader every pass (no writes) and only tries to
 * take it when it may.
 *
 * Threads: the feeder thread (hold, release at stop); the timer thread
 * reads the flag; the mark job's fence on the writer thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/lifecycle.h"
#include "../store/state_leases.h"
#include "../store/store_internal.h"
#include "saga_internal.h"

/* The lease's row as read. */
struct row {
    bool found;
    char member[EDDY_UUID_STRLEN];
    char owner[EDDYI_OWNER_MAX];
    int64_t expires_us;
};

static int row_fn(const eddyi_lease_row *r, void *user)
{
    struct row *w = user;
    if (r->part != 0)
        return 0;
    w->found = true;
    snprintf(w->member, sizeof w->member, "%s", r->member);
    snprintf(w->owner, sizeof w->owner, "%s", r->owner);
    w->expires_us = r->expires_us;
    return 0;
}

struct hold_job {
    eddy_saga *sg;
    bool held; /* out */
};

/* Renews the lease, or takes it when it may; creates its row first. */
static int hold_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct hold_job *j = arg;
    eddy_saga *sg = j->sg;
    int64_t now = eddy_txn_now_us(txn), exp = now + sg->lease_us;
    struct row r = {0};
    int rc = eddyi_leases_txn(txn, sg->lease_key, row_fn, &r, err);
    if (rc == EDDY_OK && !r.found) {
        rc = eddyi_lease_create(txn, sg->lease_key, 0, 0, err);
        r = (struct row){.found = true};
    }
    if (rc != EDDY_OK)
        return rc;
    if (strcmp(r.member, sg->member) == 0) {
        int64_t changes = 0;
        rc = eddyi_leases_renew(txn, sg->lease_key, sg->member, exp, 0,
                                &changes, err);
        j->held = rc == EDDY_OK && changes == 1;
        return rc;
    }
    bool anytime = false;
    if (!eddyi_lease_takeable(r.member, r.owner, r.expires_us, sg->member,
                              now, &anytime))
        return EDDY_OK;
    return eddyi_lease_take(txn, sg->lease_key, 0, sg->member, sg->owner, exp,
                            r.member, anytime ? INT64_MAX : now, &j->held,
                            err);
}

static void set_held(eddy_saga *sg, bool held)
{
    pthread_mutex_lock(&sg->mu);
    bool was = sg->lease_held;
    sg->lease_held = held;
    if (held && !was)
        sg->timer_kick = true; /* deadlines that came due meanwhile */
    pthread_cond_broadcast(&sg->cond);
    pthread_mutex_unlock(&sg->mu);
    if (held != was)
        EDDYI_LOG(EDDY_LOG_INFO, "saga", "%s: %s (%s) %s its commands and "
                  "timeouts", sg->def->name, sg->member, sg->owner,
                  held ? "now sends" : "no longer sends");
}

bool eddyi_saga_lease_hold(eddy_saga *sg)
{
    int64_t now = eddy_now_us();
    bool held = eddyi_saga_lease_held(sg);
    if (held && now < sg->lease_renew_at)
        return true;
    if (!held) { /* look first, without writing */
        struct row r = {0};
        bool anytime = false;
        if (eddyi_leases_read(sg->store, sg->lease_key, row_fn, &r, NULL) ==
                EDDY_OK &&
            r.found &&
            !eddyi_lease_takeable(r.member, r.owner, r.expires_us,
                                  sg->member, now, &anytime))
            return false;
    }
    struct hold_job j = {.sg = sg};
    eddy_error e = {0};
    if (eddyi_store_write(sg->store, hold_job_run, &j, &e) != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: its command lease: %s",
                  sg->def->name, e.message);
        /* Still ours until it ends: a write that failed changed nothing. */
        if (held && now < sg->lease_until)
            return true;
        set_held(sg, false);
        return false;
    }
    if (j.held) {
        sg->lease_renew_at = now + sg->lease_us / 3;
        sg->lease_until = now + sg->lease_us;
    }
    set_held(sg, j.held);
    return j.held;
}

bool eddyi_saga_lease_held(eddy_saga *sg)
{
    pthread_mutex_lock(&sg->mu);
    bool held = sg->lease_held;
    pthread_mutex_unlock(&sg->mu);
    return held;
}

int eddyi_saga_lease_fence(eddy_txn *txn, eddy_saga *sg, eddy_error *err)
{
    int64_t changes = 0;
    int rc = eddyi_leases_renew(txn, sg->lease_key, sg->member,
                                eddy_txn_now_us(txn) + sg->lease_us, 0,
                                &changes, err);
    if (rc == EDDY_OK && changes != 1)
        rc = eddyi_error(err, EDDY_ESTATE, "saga %s: %s (%s) lost its "
                         "command lease to another process (it had "
                         "expired): the commands of its last pass are sent "
                         "again by the new holder", sg->def->name,
                         sg->member, sg->owner);
    return rc;
}

void eddyi_saga_lease_lost(eddy_saga *sg)
{
    set_held(sg, false);
}

struct release_job {
    eddy_saga *sg;
};

static int release_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct release_job *j = arg;
    return eddyi_leases_release_all(txn, j->sg->lease_key, j->sg->member, 0,
                                    err);
}

void eddyi_saga_lease_release(eddy_saga *sg)
{
    if (!eddyi_saga_lease_held(sg))
        return;
    struct release_job j = {.sg = sg};
    eddy_error e = {0};
    if (eddyi_store_write(sg->store, release_job_run, &j, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: freeing its command lease: %s "
                  "(another process takes it when it ends)", sg->def->name,
                  e.message);
    set_held(sg, false);
}
