/*
 * eddy/es.h - event sourcing: aggregates, the repository, snapshots.
 *
 * An aggregate type is a plain C struct (its state) plus an `apply`
 * function that folds one event into it. A decision is a plain function that
 * checks the state's invariants and raises events with eddy_aggregate_raise
 * (what other toolkits call the aggregate's command handler; in eddy a
 * "command" is the message of eddy/command.h, which a decision serves);
 * raising applies the event to the state at once and queues it as
 * uncommitted. The repository loads an aggregate (latest usable snapshot,
 * then a replay of the events after it) and saves it (appends the
 * uncommitted events with the loaded version as the expected version, so a
 * concurrent writer is detected as EDDY_ECONFLICT instead of overwritten).
 *
 *     static int order_confirm(eddy_aggregate *agg, void *state,
 *                              void *user, eddy_error *err)
 *     {
 *         struct order *o = state;
 *         if (o->status != ORDER_PENDING)
 *             return eddy_error_set(err, EDDY_ESTATE, "order %s is not pending",
 *                                   o->order_id);
 *         return eddy_aggregate_raise(agg, err, "order.confirmed", "{s:s}",
 *                                     "order_id", o->order_id);
 *     }
 *
 *     eddy_repository_execute(orders, "o-1", order_confirm, NULL, 5, &err);
 *
 * STREAMS. The events of aggregate `id` of type `name` live in the store
 * stream "<name>-<id>" (an "order" with id "o-1" is the stream "order-o-1");
 * every event it raises has `subject` = id and `source` = the type's source
 * (its name when NULL). Stream versions start at 1; a new aggregate has
 * version 0.
 *
 * SNAPSHOTS. When the type has `snapshot` and `restore` and a non-zero
 * `snapshot_every` N, a save whose new version crosses a multiple of N
 * stores a snapshot of the state (the JSON that `snapshot` returns) with the
 * aggregate version it reflects and the type's `snapshot_schema_version`.
 * Load uses the latest snapshot only when its schema version equals the
 * type's current one (and `restore` accepts it); otherwise the snapshot is
 * ignored and the aggregate is rebuilt from all its events. A snapshot is
 * only a cache: failing to write one never fails the save (it is logged).
 *
 * THREADING. A repository is thread-safe (it only reads its type and calls
 * the store, which is thread-safe). An aggregate is a private working copy:
 * one thread at a time per aggregate.
 */
#ifndef EDDY_ES_H
#define EDDY_ES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/sql.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An aggregate type: static data describing the state struct and how events
 * change it. Borrowed by eddy_repository_new for the repository's lifetime
 * (usually a `static const` object). Callbacks run on the thread calling
 * load / raise / execute, must not call back into the same aggregate, and
 * get the state as a zeroed block of `state_size` bytes that `init` (if
 * any) prepared.
 */
typedef struct eddy_aggregate_type {
    /* Required, non-empty: the type's name, also the stream prefix
     * ("order"). */
    const char *name;
    /* CloudEvents source of raised events; NULL: `name`. */
    const char *source;
    /* Required: sizeof the state struct (> 0). */
    size_t state_size;
    /* Optional: sets up a fresh state (the block is already zeroed). */
    void (*init)(void *state);
    /* Required: folds one event into the state. `ev` is borrowed for the
     * call. Returns EDDY_OK, or an error (with `err` filled) for an event the
     * state cannot take; load then fails with that error. Unknown event
     * types should be ignored (return EDDY_OK) so that new types do not
     * break old readers. */
    int (*apply)(void *state, const eddy_event *ev, eddy_error *err);
    /* Optional: the state as a new JSON reference (NULL: no snapshot this
     * time). */
    json_t *(*snapshot)(const void *state);
    /* Optional: rebuilds the state from a snapshot (borrowed) written with
     * the current `snapshot_schema_version`. The state was init'ed first.
     * Returns EDDY_OK or an error: the snapshot is then ignored, the state
     * re-initialised and the aggregate rebuilt from all its events. */
    int (*restore)(void *state, const json_t *snap, eddy_error *err);
    /* Optional: releases what the state owns (not the block itself). */
    void (*fini)(void *state);
    /* The schema version of the snapshot JSON; bump it whenever the
     * snapshot's shape or meaning changes, and old snapshots are ignored. */
    int snapshot_schema_version;
    /* Take a snapshot every this many events; 0: never. */
    unsigned snapshot_every;
    /* Optional: the dataversion (the schema version of the data, "1.0")
     * that eddy_aggregate_raise gives an event of `event_type`, so that the
     * events a decision raises name the schema they follow (eddy/schema.h
     * validates and upcasts by type and dataversion; `eddy schema check`
     * refuses events without one). NULL, or a NULL return: no dataversion.
     * The string returned must stay valid while the repository is used
     * (usually a literal). Runs on the thread raising the event. */
    const char *(*dataversion)(const char *event_type);
} eddy_aggregate_type;

/* A repository of aggregates of one type in one store. */
typedef struct eddy_repository eddy_repository;

/* One loaded aggregate: state, version and uncommitted events. */
typedef struct eddy_aggregate eddy_aggregate;

/*
 * Creates a repository for aggregates of `type` kept in `store`. Both are
 * borrowed and must outlive the repository. Destructor:
 * eddy_repository_free. Returns NULL with `err` filled (EDDY_EINVAL naming
 * the missing or invalid field of `type`, or EDDY_ENOMEM). Thread-safe.
 */
eddy_repository *eddy_repository_new(eddy_store *store,
                                     const eddy_aggregate_type *type,
                                     eddy_error *err);

/* Frees a repository (aggregates loaded from it must be freed first). NULL
 * does nothing. */
void eddy_repository_free(eddy_repository *repo);

/*
 * Writes the stream id of aggregate `id` ("<name>-<id>") into `buf` of
 * `size` bytes. Returns EDDY_OK, or EDDY_ETOOBIG when it does not fit.
 * Thread-safe.
 */
int eddy_repository_stream_id(const eddy_repository *repo, const char *id,
                              char *buf, size_t size);

/*
 * Loads aggregate `id` (copied): the latest usable snapshot, then every
 * later event applied in order. An aggregate with no events is returned
 * fresh (version 0, state just init'ed): whether it "exists" is the
 * decisions' business. Returns a new aggregate (eddy_aggregate_free it) or
 * NULL with `err` filled: EDDY_EINVAL (empty id), an `apply` error naming
 * the stream and version of the event it refused, or a store error.
 * Thread-safe.
 */
eddy_aggregate *eddy_repository_load(eddy_repository *repo, const char *id,
                                     eddy_error *err);

/*
 * Appends the aggregate's uncommitted events to its stream in one atomic
 * append, expecting the stream to be at the version it was loaded (or last
 * saved) at. On success the events are durable, the aggregate's version
 * moves past them, the uncommitted list is emptied and, if the version
 * crossed a multiple of `snapshot_every`, a snapshot is stored. Nothing to
 * save is a successful no-op.
 * On failure nothing is stored and the aggregate is unchanged:
 * EDDY_ECONFLICT (another writer got there first; `err` names the stream and
 * both versions) means: load again and re-run the decision. Thread-safe for
 * different aggregates; one thread at a time per aggregate.
 */
int eddy_repository_save(eddy_repository *repo, eddy_aggregate *agg,
                         eddy_error *err);

/*
 * A decision: checks `state`'s invariants and raises events on `agg` with
 * eddy_aggregate_raise (or refuses with an error code and `err` filled,
 * raising nothing). `state` is eddy_aggregate_state(agg). `user` is the
 * caller's pointer passed to eddy_repository_execute. It may run more than
 * once (each attempt after a conflict runs it again on a freshly loaded
 * state), so it must have no side effects outside the aggregate.
 */
typedef int (*eddy_decide_fn)(eddy_aggregate *agg, void *state, void *user,
                              eddy_error *err);

/*
 * Load, run `decide`, save; on EDDY_ECONFLICT from the save, start again,
 * up to `max_attempts` attempts in all (0 counts as 1). Returns EDDY_OK
 * (the events are durable; a decision that raised nothing also succeeds),
 * the decision's own error (nothing saved), EDDY_ECONFLICT after the last
 * attempt conflicted, or a load / store error; `err` says which.
 * If `version` is not NULL it receives the aggregate's version after the
 * successful save. Thread-safe.
 */
int eddy_repository_execute(eddy_repository *repo, const char *id,
                            eddy_decide_fn decide, void *user,
                            unsigned max_attempts, int64_t *version,
                            eddy_error *err);

/*
 * The same three inside a store write transaction (`txn`: a transactional
 * handler's, a transactional command handler's, or eddy_store_transact's):
 * the load sees the transaction's own appends, the save appends (and
 * snapshots) in the transaction, so the aggregate's events commit or roll
 * back with everything else it wrote. execute_txn makes ONE attempt: in
 * the transaction no other writer of this store can interleave, so
 * EDDY_ECONFLICT only means another process appended first; fail the
 * transaction and let it run again. Runs on the store's writer thread:
 * the decision must be quick. Returns as eddy_repository_load / _save /
 * _execute.
 */
eddy_aggregate *eddy_repository_load_txn(eddy_repository *repo, eddy_txn *txn,
                                         const char *id, eddy_error *err);
int eddy_repository_save_txn(eddy_repository *repo, eddy_txn *txn,
                             eddy_aggregate *agg, eddy_error *err);
int eddy_repository_execute_txn(eddy_repository *repo, eddy_txn *txn,
                                const char *id, eddy_decide_fn decide,
                                void *user, int64_t *version, eddy_error *err);

/* Counters of one repository since it was created (atomic snapshots of
 * each; not mutually consistent under concurrency). */
typedef struct eddy_repository_stats {
    uint64_t loads;             /* successful loads */
    uint64_t snapshot_hits;     /* loads that started from a snapshot */
    uint64_t snapshot_misses;   /* loads that found an unusable snapshot */
    uint64_t events_replayed;   /* events applied while loading */
    uint64_t saves;             /* successful saves that stored events */
    uint64_t conflicts;         /* saves refused with EDDY_ECONFLICT */
    uint64_t snapshots_written; /* snapshots stored */
} eddy_repository_stats;

/* Copies the repository's counters into `out`. Thread-safe. */
void eddy_repository_stats_get(const eddy_repository *repo,
                               eddy_repository_stats *out);

/* ---- the aggregate ------------------------------------------------------ */

/* Frees an aggregate, its state (through the type's `fini`) and its
 * uncommitted events, which are dropped. NULL does nothing. */
void eddy_aggregate_free(eddy_aggregate *agg);

/* The aggregate's id (borrowed, valid until eddy_aggregate_free). */
const char *eddy_aggregate_id(const eddy_aggregate *agg);

/* The state block (borrowed; cast it to the type's struct). */
void *eddy_aggregate_state(eddy_aggregate *agg);

/* The stream version the state was loaded or last saved at; 0 for a new
 * aggregate. Uncommitted events are not counted. */
int64_t eddy_aggregate_version(const eddy_aggregate *agg);

/* The number of uncommitted events. */
size_t eddy_aggregate_uncommitted_count(const eddy_aggregate *agg);

/* Uncommitted event `i` (borrowed; NULL when out of range). */
const eddy_event *eddy_aggregate_uncommitted(const eddy_aggregate *agg,
                                             size_t i);

/*
 * Raises an event from inside a decision: builds an event of `type` whose
 * data is packed from `fmt` (jansson json_pack; NULL: no data), with subject
 * = the aggregate id, source = the type's source and dataversion = what the
 * type's `dataversion` says for `type` (none without it), applies it to the
 * state and queues it for the next save. Returns EDDY_OK, or the pack
 * error (EDDY_EINVAL) or the `apply` error with `err` filled; then nothing
 * is queued (the state may have been partly changed by a failing `apply`,
 * so the decision should give up and let the aggregate be discarded).
 * One thread at a time per aggregate.
 */
int eddy_aggregate_raise(eddy_aggregate *agg, eddy_error *err,
                         const char *type, const char *fmt, ...);

/*
 * As eddy_aggregate_raise, with a ready-made event (borrowed; the aggregate
 * takes its own reference on success). Its subject must be the aggregate id
 * (EDDY_EINVAL otherwise: events are immutable, so build it with the id as
 * subject). The event is raised as it is: the type's `dataversion` is not
 * consulted (set eddy_event_init.dataversion when building it).
 */
int eddy_aggregate_raise_event(eddy_aggregate *agg, eddy_event *ev,
                               eddy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_ES_H */
