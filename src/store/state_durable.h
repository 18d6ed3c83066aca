/*
 * src/store/state_durable.h - the store's state operations for durable
 * consumers: checkpoints, the inbox, retry state, dead letters and the
 * registry of who subscribes to what.
 *
 * The store owns these tables (each backend creates and migrates them); the
 * layers above (reliability, cqrs, observe) call these operations and never
 * see SQL. Operations taking an `eddy_txn` run inside the writer's
 * transaction (writer thread, in a write job or a handler); operations
 * taking an `eddy_store` read committed data on a reader connection and are
 * thread-safe. Strings in row structs are borrowed: for the call (writes) or
 * the row callback (reads). Every operation returns EDDY_OK or a store error
 * with `err` naming what failed.
 */
#ifndef EDDY_SRC_STORE_STATE_DURABLE_H
#define EDDY_SRC_STORE_STATE_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/sql.h"
#include "eddy/store.h"

/* ---- checkpoints ---------------------------------------------------------- */

/* Stores the checkpoint of `name` at `position`, or keeps the stored one
 * when it is higher: a checkpoint never moves back. */
int eddyi_ckpt_save(eddy_txn *txn, const char *name, int64_t position,
                    eddy_error *err);

/* The checkpoint of `name`: `*found` false (and `*position` 0) when none is
 * stored. */
int eddyi_ckpt_load(eddy_store *s, const char *name, int64_t *position,
                    bool *found, eddy_error *err);

/* Forgets everything durable about consumer `name`: its checkpoint, inbox
 * rows, retry rows, dead letters, partitions and members (a projection
 * rebuild). */
int eddyi_ckpt_reset(eddy_txn *txn, const char *name, eddy_error *err);

/* ---- the inbox: (handler, event id) claimed, then done --------------------- */

/* Claims (handler, event id) in one statement (no check-then-mark race).
 * `*done` is set when an earlier call recorded success already: the caller
 * skips the handler. */
int eddyi_inbox_claim(eddy_txn *txn, const char *handler, const char *event_id,
                      bool *done, eddy_error *err);

/* Whether (handler, event id) is recorded done, as the transaction sees
 * it. */
int eddyi_inbox_is_done(eddy_txn *txn, const char *handler,
                        const char *event_id, bool *done, eddy_error *err);

/* Records (handler, event id) as done in one statement, for a handler
 * whose effects commit in the same transaction: `*fresh` is set when it
 * was not done before (run the handler; rolling back undoes the record
 * too), clear when it was (skip it). */
int eddyi_inbox_take(eddy_txn *txn, const char *handler, const char *event_id,
                     bool *fresh, eddy_error *err);

/* Records (handler, event id) as done. */
int eddyi_inbox_done(eddy_txn *txn, const char *handler, const char *event_id,
                     eddy_error *err);

/* ---- retry state of parked events ------------------------------------------ */

typedef struct eddyi_retry_row {
    int64_t position;
    const char *event_id;
    int attempts;
    int64_t first_failure_us;
    int64_t last_failure_us;
    int64_t next_at_us;
    int error_code;
    const char *error;
} eddyi_retry_row;

/* Inserts or updates the retry row of (subscription, position). */
int eddyi_retry_save(eddy_txn *txn, const char *subscription,
                     const eddyi_retry_row *row, eddy_error *err);

/* Deletes the retry row of (subscription, position), if any. */
int eddyi_retry_delete(eddy_txn *txn, const char *subscription,
                       int64_t position, eddy_error *err);

/* Deletes the retry rows of `subscription` at or below `upto` (their
 * events were handled or dead-lettered: the checkpoint passed them). */
int eddyi_retry_prune(eddy_txn *txn, const char *subscription, int64_t upto,
                      eddy_error *err);

/* Calls `fn` for each retry row of `subscription` above `above`, by
 * position. fn's non-zero return stops the walk and is returned. */
typedef int (*eddyi_retry_fn)(const eddyi_retry_row *row, void *user);
int eddyi_retry_load(eddy_store *s, const char *subscription, int64_t above,
                     eddyi_retry_fn fn, void *user, eddy_error *err);

/* ---- dead letters ---------------------------------------------------------- */

typedef struct eddyi_dl_row {
    int64_t id;               /* assigned by the store; ignored by put */
    const char *subscription;
    int64_t position;
    const char *event_id;
    const char *event_type;
    const char *payload;      /* the event's CloudEvents JSON */
    size_t payload_len;
    int error_code;
    const char *error;
    int attempts;
    int64_t first_failure_us;
    int64_t last_failure_us;
    const char *status;       /* "dead" or "redrive"; ignored by put */
} eddyi_dl_row;

/* Stores the dead letter of (subscription, position) with status "dead"
 * (an existing one is updated: error, attempts, last failure), and deletes
 * that event's retry row. */
int eddyi_dl_put(eddy_txn *txn, const eddyi_dl_row *row, eddy_error *err);

/* Deletes dead letter `id`; `*changes` (may be NULL) 0 when it was not
 * there. */
int eddyi_dl_delete(eddy_txn *txn, int64_t id, int64_t *changes,
                    eddy_error *err);

/* Deletes every dead letter of `subscription` (NULL: all). */
int eddyi_dl_purge(eddy_txn *txn, const char *subscription, int64_t *changes,
                   eddy_error *err);

/* Marks dead letter `id` (> 0), or every "dead" one of `subscription`
 * (id 0; subscription NULL: all), for redrive. */
int eddyi_dl_mark(eddy_txn *txn, int64_t id, const char *subscription,
                  int64_t *changes, eddy_error *err);

/* A redrive of dead letter `id` failed again: back to "dead", attempts + 1,
 * the new error and failure time. */
int eddyi_dl_failed_again(eddy_txn *txn, int64_t id, int error_code,
                          const char *error, eddy_error *err);

typedef int (*eddyi_dl_fn)(const eddyi_dl_row *row, void *user);

/* Calls `fn` for up to `max` dead letters of `subscription` (NULL: all)
 * with an id above `after_id`, by id. */
int eddyi_dl_page(eddy_store *s, const char *subscription, int64_t after_id,
                  size_t max, eddyi_dl_fn fn, void *user, eddy_error *err);

/* Calls `fn` once for dead letter `id` (of `subscription` unless NULL);
 * EDDY_ENOTFOUND when there is none. */
int eddyi_dl_get(eddy_store *s, int64_t id, const char *subscription,
                 eddyi_dl_fn fn, void *user, eddy_error *err);

/* Up to `max` ids of `subscription`'s dead letters marked for redrive, by
 * id, into `ids`; `*n` receives how many. */
int eddyi_dl_marked(eddy_store *s, const char *subscription, int64_t *ids,
                    size_t max, size_t *n, eddy_error *err);

/* Calls `fn` with the position of each dead letter of `subscription` above
 * `above`, ascending. */
typedef int (*eddyi_position_fn)(int64_t position, void *user);
int eddyi_dl_positions(eddy_store *s, const char *subscription, int64_t above,
                       eddyi_position_fn fn, void *user, eddy_error *err);

/* ---- who subscribes to what (eddy graph) ----------------------------------- */

/* Records (or refreshes) consumer `name` with what it receives, `pattern`
 * (a pattern, or a comma-separated list of patterns and exact types as a
 * durable handler's types filter gives; "" for nothing; NULL: "*"), and
 * `kind` ("handler", "projection", "saga"). A "handler" record never
 * replaces a "projection" or "saga" record of the same name (those run on
 * a durable subscription of their name and record themselves first). */
int eddyi_subs_record(eddy_txn *txn, const char *name, const char *pattern,
                      const char *kind, eddy_error *err);

typedef struct eddyi_subs_row {
    const char *name;
    const char *pattern;
    const char *kind;
    int64_t updated_us;
} eddyi_subs_row;

/* Calls `fn` for each recorded consumer, by name. */
int eddyi_subs_list(eddy_store *s, int (*fn)(const eddyi_subs_row *row,
                                             void *user),
                    void *user, eddy_error *err);

#endif
