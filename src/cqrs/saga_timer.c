/*
 * src/cqrs/saga_timer.c - the saga timer: a deadline that passed becomes a
 * saga.timeout event in the store.
 *
 * Thread: one per running saga type. In one write job it appends an event
 * of type EDDY_SAGA_TIMEOUT_TYPE for every due deadline of its saga type
 * and flags the deadline fired; the event reaches the saga like any other,
 * and the saga deletes the deadline when it handles it (saga_ctx.c). The
 * event id is derived from (saga, instance, timeout, deadline), so firing
 * twice (two processes, or a crash before the flag committed) appends it
 * once.
 *
 * With several processes, only the holder of the saga type's command
 * lease fires (saga_lease.c).
 *
 * When it looks: at the earliest stored deadline, at least every
 * timer_poll_ms (deadlines set by other processes), and at once when this
 * process's saga set a deadline (a kick). As in the dispatcher
 * (saga_dispatch.c), after a kick the deadlines are read in the write job,
 * which sees the kicking transaction; otherwise a reader says whether
 * anything is due, so an idle saga type takes no writer slot.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/state_cqrs.h"
#include "../store/store_internal.h"
#include "cqrs_internal.h"
#include "saga_internal.h"

#define FIRE_MAX 256

struct due {
    char *saga_id, *name, *correlation_id, *causation_id;
    int64_t deadline_us;
};

struct fire_job {
    eddy_saga *sg;
    int64_t now_us;
    struct due *due;
    size_t count;
    eddy_error *err;
    int64_t next_us; /* out: the earliest unfired deadline left (0: none) */
};

static int due_row(const eddyi_saga_tmo_row *r, void *user)
{
    struct fire_job *j = user;
    if (j->count == FIRE_MAX)
        return 0;
    struct due *d = &j->due[j->count++];
    d->saga_id = eddyi_strdup(r->saga_id);
    d->name = eddyi_strdup(r->name);
    d->correlation_id = eddyi_strdup(r->correlation_id);
    d->causation_id = eddyi_strdup(r->causation_id);
    d->deadline_us = r->deadline_us;
    if (!d->saga_id || !d->name || !d->correlation_id || !d->causation_id)
        return eddyi_error(j->err, EDDY_ENOMEM, "out of memory");
    return 0;
}

static void due_clear(struct fire_job *j)
{
    for (size_t i = 0; i < j->count; i++) {
        free(j->due[i].saga_id);
        free(j->due[i].name);
        free(j->due[i].correlation_id);
        free(j->due[i].causation_id);
    }
    j->count = 0;
}

/* Appends the timeout event of `d`. */
static int fire_one(eddy_txn *txn, const eddy_saga_def *def,
                    const struct due *d, eddy_error *err)
{
    char base[EDDY_SAGA_ID_MAX + 300], salt[300], evid[37];
    snprintf(base, sizeof base, "%s/%s", def->name, d->saga_id);
    snprintf(salt, sizeof salt, "%s/%" PRId64, d->name, d->deadline_us);
    eddy_id_derive(base, salt, evid);
    json_t *data = json_pack("{s:s, s:s, s:s, s:I}", "saga", def->name, "id",
                             d->saga_id, "timeout", d->name, "deadline_us",
                             (json_int_t)d->deadline_us);
    eddy_event_init init = {
        .type = EDDY_SAGA_TIMEOUT_TYPE,
        .source = def->name,
        .id = evid,
        .subject = d->saga_id,
        .data = data,
        .correlation_id = d->correlation_id[0] ? d->correlation_id : NULL,
        .causation_id = d->causation_id[0] ? d->causation_id : NULL};
    eddy_event *ev = data ? eddy_event_new(&init, err) : NULL;
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code
                                : eddyi_error(err, EDDY_ENOMEM,
                                              "out of memory");
    int rc = eddy_txn_append(txn, d->saga_id, EDDY_EXPECT_ANY, &ev, 1, NULL,
                             err);
    eddy_event_unref(ev);
    if (rc == EDDY_OK)
        rc = eddyi_saga_tmo_fired(txn, def->name, d->saga_id, d->name,
                                  d->deadline_us, err);
    return rc;
}

static int fire_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct fire_job *j = arg;
    const eddy_saga_def *def = j->sg->def;
    j->err = err;
    int rc = eddyi_saga_tmo_due(txn, def->name, j->now_us, FIRE_MAX, due_row,
                                j, err);
    for (size_t i = 0; rc == EDDY_OK && i < j->count; i++)
        rc = fire_one(txn, def, &j->due[i], err);
    bool found = false;
    if (rc == EDDY_OK)
        rc = eddyi_saga_tmo_next(txn, def->name, &j->next_us, &found, err);
    if (!found)
        j->next_us = 0;
    return rc;
}

static void *timer_main(void *arg)
{
    eddyi_thread_name("eddy-saga-timer");
    eddy_saga *sg = arg;
    struct due *due = calloc(FIRE_MAX, sizeof *due);
    for (;;) {
        pthread_mutex_lock(&sg->mu);
        bool stop = sg->stop, kicked = sg->timer_kick;
        sg->timer_kick = false;
        pthread_mutex_unlock(&sg->mu);
        if (stop)
            break;
        int64_t now = eddy_now_us(), next = 0;
        eddy_error e = {0};
        /* Only the holder of the command lease fires (saga_lease.c); it
         * kicks this thread when it takes the lease. */
        bool holder = eddyi_saga_lease_held(sg);
        bool fire = kicked && holder;
        if (!kicked && holder) {
            bool found = false;
            if (eddyi_saga_tmo_next_read(sg->store, sg->def->name, &next,
                                         &found, &e) != EDDY_OK) {
                EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: reading timeouts: %s",
                          sg->def->name, e.message);
                found = false;
            }
            fire = found && next <= now;
            if (!found)
                next = 0;
        }
        if (fire && due) {
            struct fire_job j = {.sg = sg, .now_us = now, .due = due};
            if (eddyi_store_write(sg->store, fire_job_run, &j, &e) != EDDY_OK)
                EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: firing timeouts: %s",
                          sg->def->name, e.message);
            next = j.count == FIRE_MAX ? now : j.next_us; /* more are due */
            due_clear(&j);
        }
        int64_t wait_ms = sg->opts.timer_poll_ms;
        if (next) {
            int64_t ms = (next - eddy_now_us()) / 1000 + 1;
            if (ms < wait_ms)
                wait_ms = ms < 1 ? 1 : ms;
        }
        pthread_mutex_lock(&sg->mu);
        if (!sg->timer_kick && !sg->stop)
            eddyi_cqrs_wait_ms(&sg->cond, &sg->mu, wait_ms);
        pthread_mutex_unlock(&sg->mu);
    }
    free(due);
    return NULL;
}

int eddyi_saga_timer_start(eddy_saga *sg, eddy_error *err)
{
    if (pthread_create(&sg->timer, NULL, timer_main, sg) != 0)
        return eddyi_error(err, EDDY_ENOMEM, "saga %s: cannot start its "
                           "timer thread", sg->def->name);
    sg->timer_started = true;
    return EDDY_OK;
}

void eddyi_saga_timer_join(eddy_saga *sg)
{
    if (sg->timer_started)
        pthread_join(sg->timer, NULL);
    sg->timer_started = false;
}
