/*
 * eddy/projection.h - CQRS projections: read models kept exactly once.
 *
 * A projection folds the events of the store into a read model (its own
 * tables in the store file, e.g. an `orders_view` table). It is a durable
 * subscription in EDDY_DELIVERY_TRANSACTIONAL mode: for every event, the
 * projection's `apply` writes, the inbox row and the checkpoint commit in
 * ONE store transaction. A crash (SIGKILL included) at any point loses no
 * event and applies none twice: the read model always equals a fold of the
 * events up to its checkpoint.
 *
 * MODES
 *   EDDY_PROJECTION_ASYNC (default): the read model follows the store a
 *     little behind (usually milliseconds); appends never wait for it.
 *   EDDY_PROJECTION_INLINE: `apply` also runs inside the transaction of
 *     every append made through the same store handle (eddy_store_append,
 *     eddy_store_append_async, eddy_txn_append, the repository): when the
 *     append returns, the read model already shows its events. An `apply`
 *     error then fails the append itself (nothing is stored). Events written
 *     by other processes are picked up by the subscription, as in ASYNC.
 *
 * CATCH-UP AND REBUILD. At start a projection first catches up from its
 * checkpoint in large transactions (many events per commit), then follows
 * live appends. eddy_projection_rebuild clears the read model (`reset`) and
 * replays the whole store into it the same way.
 *
 * WHO RUNS IT. A running projection records itself in the store as
 * 'running', with its owner (process id and host) and a heartbeat: the
 * row's updated_us is refreshed every 2 s. A stopped one keeps the owner
 * that ran (or rebuilt) it last, so that a tool without its definition can
 * say where it lives (`eddy projections rebuild NAME`). A rebuild refuses while the row
 * says another runner is alive (heartbeat younger than 10 s, and, for an
 * owner on this host, its process still exists), so a SIGKILLed process
 * does not block a rebuild. Hosts are told apart by name (gethostname):
 * processes in separate PID namespaces under one host name count as one
 * host.
 *
 * SEVERAL PROCESSES may run one projection on one store: they share its
 * events by partitions of their subject (eddy/durable.h, SEVERAL
 * PROCESSES), each applying those of the partitions it holds, exactly
 * once. The catch-up of a start reads every partition and marks what it
 * applies in the inbox, so it never applies an event twice with a running
 * member. Per subject the order holds; across subjects (several
 * processes, like several workers) it does not. The registry row names
 * the process that recorded itself last.
 *
 * STORE TABLES. Projections are recorded in the store's projection
 * registry (name, pattern, mode, state 'running' / 'stopped' /
 * 'rebuilding', owner, updated_us) and subscription registry (kind
 * 'projection', for `eddy graph`); checkpoints, inbox rows, retries and
 * dead letters are those of eddy/durable.h. They are part of the store's
 * schema, on every backend.
 *
 * THREADING. Every function here is thread-safe. `setup`, `apply` and
 * `reset` run on the store's writer thread inside a write transaction: they
 * must be quick, must write only through their `txn` (eddy_txn_exec and
 * eddy_txn_query of eddy/sql.h, eddy_txn_append; eddy_txn_sqlite of
 * eddy/sqlite.h on SQLite only), and must not call blocking store
 * functions (eddy_store_append, eddy_store_head, eddy_projection_*, ...).
 */
#ifndef EDDY_PROJECTION_H
#define EDDY_PROJECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/durable.h"
#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_projection eddy_projection;

typedef enum eddy_projection_mode {
    EDDY_PROJECTION_ASYNC = 0,
    EDDY_PROJECTION_INLINE = 1
} eddy_projection_mode;

/*
 * A projection definition: plain data, usually a `static const` object.
 * Borrowed (not copied) by eddy_projection_start, _rebuild and
 * _register_def: it must outlive their use of it.
 */
typedef struct eddy_projection_def {
    /* Required: unique per store; the key of its checkpoint ("orders"). */
    const char *name;
    /* Which event types it reads: "x.y", "x.*" or "*"; NULL: "*". */
    const char *pattern;
    /* Optional: creates the read-model tables (CREATE TABLE IF NOT
     * EXISTS...). Runs at every start and rebuild, so it must be
     * idempotent. */
    int (*setup)(eddy_txn *txn, void *user, eddy_error *err);
    /* Required: folds one event into the read model. `ev` borrowed for the
     * call. Return EDDY_OK, or an error with `err` filled: everything the
     * call wrote is rolled back and the event is retried with backoff, then
     * dead-lettered (eddy/durable.h); INLINE: the append fails. Unknown
     * types should be ignored (EDDY_OK). */
    int (*apply)(eddy_txn *txn, const eddy_event *ev, void *user,
                 eddy_error *err);
    /* Required for eddy_projection_rebuild: deletes the read model's rows
     * (not the tables). Runs in the same transaction as the checkpoint
     * reset. */
    int (*reset)(eddy_txn *txn, void *user, eddy_error *err);
    /* Passed to the three callbacks. */
    void *user;
    eddy_projection_mode mode;
    /*
     * Live worker threads (eddy_durable_options.workers); 0: 1. With 1,
     * events are applied in store order. With more, events are spread by
     * partition key (the subject): events of one subject keep their store
     * order, events of different subjects may be applied in any order, so
     * use it only when the read model's rows are per subject.
     */
    unsigned workers;
    /* Events per transaction during catch-up and rebuild; 0: 500. */
    unsigned batch;
    /* Partitions of its subscription and the lease of a process, when
     * several processes run it (eddy_durable_options.partitions and
     * .lease_ms; see SEVERAL PROCESSES there); 0: 16 and 10000 ms. */
    unsigned partitions;
    unsigned lease_ms;
} eddy_projection_def;

/*
 * Starts projection `def->name` on `store` (borrowed; it must outlive the
 * projection): runs `setup`, records the projection as 'running', catches
 * up from its checkpoint (0 for a new one) to the head, then follows live
 * appends (INLINE: installs the append hook too). Returns a running
 * projection (destructor: eddy_projection_free) or NULL with `err`:
 * EDDY_EINVAL (missing name or apply, bad pattern), EDDY_EEXIST (that name
 * already runs or rebuilds on this store handle), EDDY_EUNSUPPORTED (a
 * backend without SQL), EDDY_ESTATE (read-only store), the error of
 * `setup`, or a store error. It does not check other processes: a start
 * right after a crash must not wait for the dead process's heartbeat to
 * age. An `apply` error during the catch-up does not fail the start: it
 * is logged and the subscription takes over at that event, with its
 * retries and dead letters. Thread-safe.
 */
eddy_projection *eddy_projection_start(eddy_store *store,
                                       const eddy_projection_def *def,
                                       eddy_error *err);

/*
 * Stops following the store (INLINE: removes the append hook first),
 * persists the checkpoint and records the projection as 'stopped'.
 * Returns EDDY_OK or the subscription's error. Idempotent. Thread-safe:
 * when several threads call it at once, one stops the projection, the
 * others wait for it, and all return the same result. Not from a
 * projection callback.
 */
int eddy_projection_stop(eddy_projection *p, eddy_error *err);

/* Stops (as eddy_projection_stop) and frees. NULL does nothing. */
void eddy_projection_free(eddy_projection *p);

/*
 * Waits until the projection is idle up to global position `position` (use
 * eddy_store_head for "everything so far"): it has applied (or skipped)
 * every event up to it and redelivered each of its dead letters marked for
 * redrive; or until `timeout_ms` passes (< 0: no limit). It is
 * eddy_durable_wait_idle on the projection's subscription. Returns EDDY_OK,
 * EDDY_ETIMEDOUT, EDDY_ESTOPPED or a store error reading the dead letters.
 * Thread-safe; not from the projection's callbacks.
 */
int eddy_projection_wait_idle(eddy_projection *p, int64_t position,
                              int timeout_ms);

/* The projection's checkpoint (see eddy_durable_checkpoint). Thread-safe. */
int64_t eddy_projection_checkpoint(const eddy_projection *p);

/*
 * Progress of a rebuild: `done` of `total` events read (total = the head
 * when the replay started; it may grow while appends continue). Runs on
 * the thread calling eddy_projection_rebuild, between transactions; it may
 * print, must not call eddy_projection_* on the same projection.
 */
typedef void (*eddy_projection_progress_fn)(int64_t done, int64_t total,
                                            void *user);

/*
 * Rebuilds the read model of `def` from scratch, on the calling thread:
 * in one transaction runs `setup`, `reset`, deletes the projection's
 * checkpoint, inbox rows, retry rows and dead letters and records it as
 * 'rebuilding'; then replays every matching event from position 1 to the
 * head in transactions of `def->batch` events (fewer when `progress` is
 * set, so that it is called about 20 times; each commits the read-model
 * writes with the checkpoint: after a crash mid-rebuild, the next start
 * continues from there; a new rebuild starts over), calling
 * `progress` (may be NULL) after each; finally records 'stopped'.
 * The projection must not run meanwhile: EDDY_EBUSY when it runs or
 * rebuilds on this store handle, or when the store records another runner
 * that is alive (see WHO RUNS IT: "projection \"orders_view\" is running
 * (pid 4242 on db1, last seen 1 s ago); stop it first"). A rebuild that
 * fails leaves the projection 'rebuilding' and owned by nobody: the next
 * start continues it, the next rebuild starts over. Returns EDDY_OK or,
 * with `err`: EDDY_EINVAL (no reset/apply), EDDY_EBUSY, the error of a
 * callback (naming the event), or a store error. Thread-safe.
 */
int eddy_projection_rebuild(eddy_store *store, const eddy_projection_def *def,
                            eddy_projection_progress_fn progress, void *user,
                            eddy_error *err);

/* ---- what is recorded in the store (for `eddy projections list`) ------- */

/* One recorded projection: a read-only view, borrowed for the callback. */
typedef struct eddy_projection_info {
    const char *name;
    const char *pattern;
    const char *mode;       /* "async" or "inline" */
    const char *state;      /* "running", "stopped" or "rebuilding" */
    int64_t checkpoint;     /* persisted checkpoint (0: none yet) */
    int64_t head;           /* the store's head when listed */
    int64_t lag;            /* head - checkpoint: events not applied yet
                               (events of other types count too) */
    int64_t updated_us;     /* when the state last changed or, while it
                               runs or rebuilds, its last heartbeat */
    const char *owner;      /* the process that runs or rebuilds it or,
                               when stopped, ran or rebuilt it last:
                               "pid@host" (e.g. "4242@db1"); "" when
                               unknown (an interrupted rebuild, or a row
                               written before eddy recorded owners) */
} eddy_projection_info;

typedef int (*eddy_projection_info_fn)(const eddy_projection_info *info,
                                       void *user);

/*
 * Calls `fn` for each projection recorded in the store, by name. The rows
 * are read first; `fn` runs on the calling thread with no store lock held.
 * `fn` returning non-zero stops the walk (that value is returned).
 * Reads on a reader connection: works on a store opened read-only.
 * Returns EDDY_OK, fn's value, or a store error. Thread-safe.
 */
int eddy_projection_list(eddy_store *store, eddy_projection_info_fn fn,
                         void *user, eddy_error *err);

/* ---- the process-wide registry of known definitions -------------------- */

/*
 * Makes `def` (borrowed: must stay valid until the process ends, e.g. a
 * static object) findable by name, so tools such as `eddy projections
 * rebuild NAME` can rebuild projections defined by application code.
 * Returns EDDY_OK, EDDY_OK again for the very same pointer, EDDY_EEXIST
 * (another definition has that name) or EDDY_EINVAL. Thread-safe.
 */
int eddy_projection_register_def(const eddy_projection_def *def,
                                 eddy_error *err);

/* The registered definition named `name` (borrowed), or NULL. Thread-safe. */
const eddy_projection_def *eddy_projection_find_def(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_PROJECTION_H */
