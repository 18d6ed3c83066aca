/*
 * src/cqrs/saga_internal.h - what the saga files share: the layout of a
 * running saga type and the entry points of its parts. Not public.
 *
 *   saga.c           definition checks, start, stop, wait_idle
 *   saga_ctx.c       handling one event on the writer thread, and the
 *                    context API on_event uses (eddy_saga_send, ...)
 *   saga_dispatch.c  the command dispatcher: a feeder thread and a fixed
 *                    pool of lanes
 *   saga_timer.c     the timer thread: due deadlines become events
 *   saga_query.c     eddy_saga_list / eddy_saga_get, on readers
 *   saga_lease.c     the command lease: which process sends the commands
 *                    and fires the timeouts when several run the saga
 */
#ifndef EDDY_SRC_CQRS_SAGA_INTERNAL_H
#define EDDY_SRC_CQRS_SAGA_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "eddy/durable.h"
#include "eddy/saga.h"

#include "../core/lifecycle.h"
#include "eddy/sql.h"

typedef struct eddyi_saga_dispatcher eddyi_saga_dispatcher;

struct eddy_saga {
    eddy_store *store;            /* borrowed */
    const eddy_saga_def *def;     /* borrowed */
    eddy_command_bus *commands;   /* borrowed */
    eddy_saga_options opts;       /* copied, defaults filled in */
    eddy_retry_policy retry;      /* opts.command_retry, resolved */
    char *pattern;  /* recorded for the graph: the types, comma-separated */
    eddy_durable *durable;
    eddyi_claim *claim;
    eddyi_stop stopper;

    pthread_mutex_t mu;
    pthread_cond_t cond;  /* feeder / timer wake-ups and idle waits; on the
                             monotonic clock (eddyi_cqrs_cond_init) */
    bool stop;            /* the threads end */
    bool dispatch_kick;   /* commands were queued, or an idle wait began */
    bool timer_kick;      /* a deadline was set */
    uint64_t kick_gen;    /* dispatch kicks so far */
    uint64_t pass_gen;    /* dispatcher passes started */
    uint64_t idle_gen;    /* last pass that found nothing pending */
    pthread_t timer;
    bool timer_started;
    eddyi_saga_dispatcher *dispatcher;

    /* The command lease (saga_lease.c). */
    char *lease_key;                  /* "<name>#commands" */
    char member[EDDY_UUID_STRLEN];    /* this process's saga, a UUIDv7 */
    char owner[EDDYI_OWNER_MAX];      /* "pid@host" */
    int64_t lease_us;
    bool lease_held;                  /* under mu */
    int64_t lease_renew_at, lease_until; /* feeder thread only */
};

/*
 * Takes or renews the command lease when due (a write job; a look on a
 * reader first when another process holds it). Returns whether this
 * process holds it: only then does it send commands and fire timeouts.
 * Feeder thread.
 */
bool eddyi_saga_lease_hold(eddy_saga *sg);

/* Whether this process holds the command lease, as last known. Any
 * thread. */
bool eddyi_saga_lease_held(eddy_saga *sg);

/* In a write job: renews the lease and checks that it is still this
 * process's; EDDY_ESTATE naming the problem when another took it over. */
int eddyi_saga_lease_fence(eddy_txn *txn, eddy_saga *sg, eddy_error *err);

/* The fence failed: this process no longer holds the lease. */
void eddyi_saga_lease_lost(eddy_saga *sg);

/* Frees the lease (a stop), so that another process takes it at once. */
void eddyi_saga_lease_release(eddy_saga *sg);

/* The durable subscription's handler (saga_ctx.c): one event, in the
 * writer's transaction. */
int eddyi_saga_handle_event(eddy_ctx *ctx, const eddy_event *ev,
                            eddy_txn *txn, void *user);

/* Wakes the dispatcher (commands were queued) and / or the timer (a
 * deadline was set). Any thread. */
void eddyi_saga_kick(eddy_saga *sg, bool dispatch, bool timer);

/* Starts the dispatcher: its lanes and feeder thread. Returns EDDY_OK or
 * EDDY_ENOMEM with nothing left running. */
int eddyi_saga_dispatch_start(eddy_saga *sg, eddy_error *err);

/* Joins the dispatcher's threads (after sg->stop was set: a command being
 * sent finishes, the outcomes of the last pass are recorded) and frees it.
 * NULL-safe on sg->dispatcher. */
void eddyi_saga_dispatch_stop(eddy_saga *sg);

/* Starts / joins the timer thread (join after sg->stop was set). */
int eddyi_saga_timer_start(eddy_saga *sg, eddy_error *err);
void eddyi_saga_timer_join(eddy_saga *sg);

#endif
