/*
 * src/store/state_outbox.h - the store's state operations for the
 * transactional outbox (src/reliability/outbox.c): queue stored events for
 * a destination, page through what is unsent, mark it sent.
 *
 * The store owns the table (each backend creates and migrates it); the
 * reliability layer calls these operations and never sees SQL. As in
 * state_durable.h: operations taking an `eddy_txn` run inside the writer's
 * transaction (a write job); operations taking an `eddy_store` read
 * committed data on a reader connection, work on a read-only store and are
 * thread-safe. Strings in row structs are borrowed for the row callback.
 * Every operation returns EDDY_OK or a store error with `err` naming what
 * failed.
 *
 * ORDER. Every queued row gets a `seq` that is never reused (a pruned row's
 * seq included), and rows committed later have larger seqs than every row
 * a reader saw before: the relay keeps a cursor (the last seq it
 * published) and marks a published range [first, last] sent in one
 * statement without missing or wrongly marking a row.
 */
#ifndef EDDY_SRC_STORE_STATE_OUTBOX_H
#define EDDY_SRC_STORE_STATE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "eddy/sql.h"
#include "eddy/store.h"

/*
 * Queues the stored event `event_id` for `destination` (non-empty): the
 * queued payload is the stored one, copied from the event log in the same
 * transaction. A row already queued for (event id, destination) is left
 * alone (an append retried after a lost acknowledgement queues nothing
 * twice). An id that is not stored queues nothing.
 */
int eddyi_outbox_enqueue(eddy_txn *txn, const char *destination,
                         const char *event_id, eddy_error *err);

typedef struct eddyi_outbox_row {
    int64_t seq;
    const char *destination;
    const char *payload; /* the event's CloudEvents JSON */
    size_t payload_len;
} eddyi_outbox_row;

typedef int (*eddyi_outbox_fn)(const eddyi_outbox_row *row, void *user);

/* Calls `fn` for up to `max` unsent rows with a seq above `after_seq`, by
 * seq: of `destination`, or of every destination when it is NULL. fn's
 * non-zero return stops the walk and is returned. */
int eddyi_outbox_page(eddy_store *s, int64_t after_seq,
                      const char *destination, size_t max,
                      eddyi_outbox_fn fn, void *user, eddy_error *err);

/* Marks the unsent rows with seq in [first, last] (of `destination`, NULL:
 * any) sent at the transaction's time, counting their attempt. `changes`
 * (may be NULL) receives how many. */
int eddyi_outbox_mark_sent(eddy_txn *txn, int64_t first, int64_t last,
                           const char *destination, int64_t *changes,
                           eddy_error *err);

/* Counts one failed publish attempt of row `seq`. */
int eddyi_outbox_attempt(eddy_txn *txn, int64_t seq, eddy_error *err);

/* The number of unsent rows of `destination` (NULL: every destination). */
int eddyi_outbox_pending(eddy_store *s, const char *destination,
                         int64_t *count, eddy_error *err);

/* Deletes the rows sent before `sent_before_us`; unsent rows are never
 * deleted. `deleted` (may be NULL) receives how many. */
int eddyi_outbox_prune(eddy_txn *txn, int64_t sent_before_us,
                       int64_t *deleted, eddy_error *err);

#endif
