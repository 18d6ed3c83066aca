/*
 * src/core/lifecycle.h - what every long-running component (durable
 * subscriptions, projections, sagas, relays) needs the same way: a
 * process-wide claim on its name ("this name runs on this store handle")
 * and a stop that is safe to call from several threads at once. Not
 * public.
 */
#ifndef EDDY_SRC_CORE_LIFECYCLE_H
#define EDDY_SRC_CORE_LIFECYCLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "eddy/error.h"

/* ---- name claims ---------------------------------------------------------- */

typedef struct eddyi_claim eddyi_claim;

/*
 * Claims `name` of `kind` ("durable", "projection", "saga", ...) for
 * `owner` (e.g. the store handle; compared by address). Returns EDDY_OK and
 * `*out` (release with eddyi_claim_release), EDDY_EEXIST with `err` ("saga
 * \"orders\" already runs on this store handle") when held, or
 * EDDY_ENOMEM. `kind` must be a string literal; `name` is copied.
 * Thread-safe.
 */
int eddyi_claim_take(const void *owner, const char *kind, const char *name,
                     eddyi_claim **out, eddy_error *err);

/* Releases a claim. NULL does nothing. Thread-safe. */
void eddyi_claim_release(eddyi_claim *c);

/* Whether (owner, kind, name) is claimed right now. Thread-safe. */
bool eddyi_claim_held(const void *owner, const char *kind, const char *name);

/* ---- owners: which process runs something --------------------------------- */

/* Room for an owner name ("pid@host"). */
#define EDDYI_OWNER_MAX 300

/* This process as an owner name, "pid@host" (gethostname; "unknown" when
 * it fails), into `out` (cut to `size`). Never fails. Thread-safe. */
void eddyi_owner_self(char *out, size_t size);

/*
 * Whether `owner` ("pid@host") names a process of THIS host that no longer
 * exists: a crash (SIGKILL leaves its rows behind). False when it cannot
 * tell: another host, a name it cannot parse, this very process, or a pid
 * that exists (possibly reused by another program: the caller then waits
 * for the owner's lease or heartbeat to age). Hosts are told apart by
 * name: processes in separate PID namespaces under one host name count as
 * one host. Thread-safe.
 */
bool eddyi_owner_gone(const char *owner);

/* ---- stopping once -------------------------------------------------------- */

/*
 * The stop state of a component. Several threads may call the component's
 * stop at once: exactly one of them does the work, the others wait for it
 * and all return the same status.
 *
 *     if (eddyi_stop_begin(&x->stop)) {
 *         ... stop threads, persist ...
 *         eddyi_stop_end(&x->stop, rc, &e);
 *     }
 *     return eddyi_stop_wait(&x->stop, err);
 */
typedef struct eddyi_stop {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int state; /* 0 running, 1 stopping, 2 stopped */
    int status;
    eddy_error err;
} eddyi_stop;

void eddyi_stop_init(eddyi_stop *s);
void eddyi_stop_destroy(eddyi_stop *s);

/* True for the one caller that must stop the component; false when a stop
 * began already. */
bool eddyi_stop_begin(eddyi_stop *s);

/* Records the outcome of the stop (`err` may be NULL) and wakes waiters. */
void eddyi_stop_end(eddyi_stop *s, int status, const eddy_error *err);

/* Waits until the stop ended; returns its status and copies its error. */
int eddyi_stop_wait(eddyi_stop *s, eddy_error *err);

/* Whether a stop began (or ended). */
bool eddyi_stop_requested(eddyi_stop *s);

#endif
