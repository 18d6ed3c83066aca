/*
 * src/store/state_cqrs.h - the store's state operations for the cqrs layer:
 * the projection registry, saga instances, their queued commands and their
 * timeouts, and the events of the open write transaction (what an INLINE
 * projection applies when it arms its append hook).
 *
 * The store owns these tables (each backend creates and migrates them); the
 * cqrs layer calls these operations and never sees SQL. As in
 * state_durable.h: operations taking an `eddy_txn` run inside the writer's
 * transaction (writer thread, in a write job or a handler) and see its
 * uncommitted writes; operations taking an `eddy_store` read committed
 * data on a reader connection, work on a read-only store and are
 * thread-safe. Strings in row structs are borrowed: for the call (writes)
 * or the row callback (reads). A callback's non-zero return stops the walk
 * and is returned. Every operation returns EDDY_OK or a store error with
 * `err` naming what failed.
 */
#ifndef EDDY_SRC_STORE_STATE_CQRS_H
#define EDDY_SRC_STORE_STATE_CQRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/sql.h"
#include "eddy/store.h"

/* ---- the projection registry ------------------------------------------------ */

typedef struct eddyi_proj_row {
    const char *name;
    const char *pattern;
    const char *mode;     /* "async" or "inline" */
    const char *state;    /* "running", "stopped" or "rebuilding" */
    const char *owner;    /* who runs or rebuilds it, or when stopped who
                             ran or rebuilt it last ("pid@host"); "" when
                             nobody (an interrupted rebuild, or recorded
                             before owners) */
    int64_t checkpoint;   /* eddyi_proj_list only: its checkpoint (0: none) */
    int64_t updated_us;   /* the last state change or heartbeat */
} eddyi_proj_row;

typedef int (*eddyi_proj_fn)(const eddyi_proj_row *row, void *user);

/* Records projection `name` (inserted or replaced) with updated_us = the
 * transaction's time. `owner` NULL: "". */
int eddyi_proj_record(eddy_txn *txn, const char *name, const char *pattern,
                      const char *mode, const char *state, const char *owner,
                      eddy_error *err);

/* The heartbeat of a running (or rebuilding) projection: sets updated_us of
 * `name` to the transaction's time if `owner` still owns the row (a row
 * another process took over is left alone). */
int eddyi_proj_heartbeat(eddy_txn *txn, const char *name, const char *owner,
                         eddy_error *err);

/* Calls `fn` once with the row of `name` if there is one (checkpoint 0). */
int eddyi_proj_get(eddy_txn *txn, const char *name, eddyi_proj_fn fn,
                   void *user, eddy_error *err);

/* Calls `fn` for each recorded projection with its checkpoint, by name. */
int eddyi_proj_list(eddy_store *s, eddyi_proj_fn fn, void *user,
                    eddy_error *err);

/* ---- the events of the open transaction ------------------------------------- */

/* One event: `ev` is one reference handed to the callback (it unrefs it). */
typedef int (*eddyi_txn_event_fn)(int64_t position, eddy_event *ev,
                                  void *user);

/*
 * Calls `fn` for each event above position `after`, by position, as the
 * write transaction sees the log (its own uncommitted appends included),
 * decoded and passed through the store's transform hook like a cursor's.
 * For the few events between a catch-up and arming an append hook: all of
 * them are loaded before the first call. EDDY_EPARSE for an undecodable
 * stored event, the transform hook's error, or a store error.
 */
int eddyi_txn_events_after(eddy_txn *txn, int64_t after,
                           eddyi_txn_event_fn fn, void *user,
                           eddy_error *err);

/* ---- saga instances ---------------------------------------------------------- */

typedef struct eddyi_saga_row {
    const char *type;
    const char *id;
    const char *status;         /* "running", "completed", "failed" */
    const char *result;         /* "" while running */
    const char *state;          /* the JSON object, as text */
    int64_t version;            /* events handled */
    const char *correlation_id; /* "" when none */
    int64_t created_us;
    int64_t updated_us;
    bool commands_pending;      /* eddyi_saga_load only (else false): a
                                   command of the instance is pending, as
                                   the transaction sees it, so a later one
                                   must queue behind it */
} eddyi_saga_row;

typedef int (*eddyi_saga_fn)(const eddyi_saga_row *row, void *user);

/* Calls `fn` once with instance (type, id) if it exists, with
 * commands_pending (one statement: a saga's event needs both). A missing
 * instance has no commands. */
int eddyi_saga_load(eddy_txn *txn, const char *type, const char *id,
                    eddyi_saga_fn fn, void *user, eddy_error *err);

/* Inserts the instance (created_us, updated_us as given) or updates status,
 * result, state, version and updated_us of the existing one. */
int eddyi_saga_save(eddy_txn *txn, const eddyi_saga_row *row,
                    eddy_error *err);

/* Calls `fn` for the instances of `type` (NULL: all types) whose status or
 * result is `status` (NULL: any), oldest first (created_us, type, id). */
int eddyi_saga_list(eddy_store *s, const char *type, const char *status,
                    eddyi_saga_fn fn, void *user, eddy_error *err);

/* Calls `fn` for every instance with id `id` (one per saga type), oldest
 * first. */
int eddyi_saga_find(eddy_store *s, const char *id, eddyi_saga_fn fn,
                    void *user, eddy_error *err);

/* ---- queued saga commands ---------------------------------------------------- */

typedef struct eddyi_saga_cmd_row {
    int64_t seq;                /* assigned by the store; queue order */
    const char *id;             /* the command id (unique) */
    const char *saga_type;
    const char *saga_id;
    const char *name;
    const char *data;           /* JSON text, or NULL for none */
    const char *correlation_id;
    const char *causation_id;
    const char *state;          /* "pending" or "sent" */
    int attempts;               /* sends tried (failures, then the success) */
    const char *last_error;     /* "" when none */
    int64_t created_us;
    int64_t sent_us;            /* 0: not sent */
} eddyi_saga_cmd_row;

typedef int (*eddyi_saga_cmd_fn)(const eddyi_saga_cmd_row *row, void *user);

/* Queues command row->id as 'pending' with row->attempts and
 * row->last_error (0 and NULL for a new command; seq, state and sent_us
 * are ignored); a command id queued already is left as it is (a replayed
 * event queues nothing twice). */
int eddyi_saga_cmd_queue(eddy_txn *txn, const eddyi_saga_cmd_row *row,
                         eddy_error *err);

/* Records a command that was already executed inside this transaction
 * (a transactional handler run at once): state 'sent', one attempt, sent
 * at the transaction's time. A command id already there is left as it
 * is. */
int eddyi_saga_cmd_record_sent(eddy_txn *txn, const eddyi_saga_cmd_row *row,
                               eddy_error *err);

/* Calls `fn` for up to `max` pending commands of saga type `type`, by seq:
 * in the write transaction (sees commands queued but not yet committed)... */
int eddyi_saga_cmd_pending(eddy_txn *txn, const char *type, size_t max,
                           eddyi_saga_cmd_fn fn, void *user, eddy_error *err);
/* ... or on a reader (committed ones only). */
int eddyi_saga_cmd_pending_read(eddy_store *s, const char *type, size_t max,
                                eddyi_saga_cmd_fn fn, void *user,
                                eddy_error *err);

/* Command `seq` was sent: state 'sent', attempts + 1, sent_us = the
 * transaction's time. */
int eddyi_saga_cmd_sent(eddy_txn *txn, int64_t seq, eddy_error *err);

/* Sending command `seq` failed: attempts + 1, last_error = `error`; it
 * stays pending. */
int eddyi_saga_cmd_failed(eddy_txn *txn, int64_t seq, const char *error,
                          eddy_error *err);

/* Calls `fn` for the commands of instance (type, id), by seq. */
int eddyi_saga_cmd_list(eddy_store *s, const char *type, const char *id,
                        eddyi_saga_cmd_fn fn, void *user, eddy_error *err);

/* ---- saga timeouts ------------------------------------------------------------ */

typedef struct eddyi_saga_tmo_row {
    const char *saga_type;
    const char *saga_id;
    const char *name;
    int64_t deadline_us;
    bool fired;                 /* its saga.timeout event was appended */
    const char *correlation_id; /* "" when none */
    const char *causation_id;   /* "" when none */
} eddyi_saga_tmo_row;

typedef int (*eddyi_saga_tmo_fn)(const eddyi_saga_tmo_row *row, void *user);

/* Sets timeout (saga_type, saga_id, name) to row->deadline_us, not fired,
 * with row's causation (row->fired ignored; the correlation id is kept
 * when the timeout exists). */
int eddyi_saga_tmo_set(eddy_txn *txn, const eddyi_saga_tmo_row *row,
                       eddy_error *err);

/* Deletes timeout `name` of (type, id); NULL name: all of the instance's. */
int eddyi_saga_tmo_cancel(eddy_txn *txn, const char *type, const char *id,
                          const char *name, eddy_error *err);

/* A saga.timeout event for (type, id, name, deadline_us) is being handled:
 * `*current` is true when that timeout is still set to that deadline (not
 * cancelled or moved since); it is then deleted. */
int eddyi_saga_tmo_take(eddy_txn *txn, const char *type, const char *id,
                        const char *name, int64_t deadline_us, bool *current,
                        eddy_error *err);

/* Calls `fn` for up to `max` unfired timeouts of `type` due at `now_us`
 * (deadline <= now), earliest first. */
int eddyi_saga_tmo_due(eddy_txn *txn, const char *type, int64_t now_us,
                       size_t max, eddyi_saga_tmo_fn fn, void *user,
                       eddy_error *err);

/* Flags timeout (type, id, name) fired, if its deadline is still
 * `deadline_us`. */
int eddyi_saga_tmo_fired(eddy_txn *txn, const char *type, const char *id,
                         const char *name, int64_t deadline_us,
                         eddy_error *err);

/* The earliest unfired deadline of `type`: `*found` false when none; in
 * the write transaction or on a reader. */
int eddyi_saga_tmo_next(eddy_txn *txn, const char *type, int64_t *deadline_us,
                        bool *found, eddy_error *err);
int eddyi_saga_tmo_next_read(eddy_store *s, const char *type,
                             int64_t *deadline_us, bool *found,
                             eddy_error *err);

/* Calls `fn` for the timeouts of instance (type, id), by deadline. */
int eddyi_saga_tmo_list(eddy_store *s, const char *type, const char *id,
                        eddyi_saga_tmo_fn fn, void *user, eddy_error *err);

#endif
