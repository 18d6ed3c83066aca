/*
 * src/store/store_internal.h - the store's internal API for other layers.
 *
 * Everything that writes to a store goes through the store's single writer
 * thread, inside its group-commit transaction. Layers built on the store
 * (durable handlers: checkpoint + inbox + handler writes in one transaction;
 * the outbox) submit their own write jobs with eddyi_store_write().
 */
#ifndef EDDY_SRC_STORE_STORE_INTERNAL_H
#define EDDY_SRC_STORE_STORE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "eddy/sql.h"
#include "eddy/store.h"

/*
 * A write job: runs on the writer thread inside the group-commit
 * transaction, in its own savepoint. Return EDDY_OK to keep its writes, or
 * an error (with `err` filled) to roll back only this job's writes. The job
 * must not block for long (every other appender waits for the commit) and
 * must not call blocking store functions (eddy_store_append, ...).
 */
typedef int (*eddyi_write_fn)(eddy_txn *txn, void *arg, eddy_error *err);

/*
 * Runs `fn(txn, arg, err)` in the writer's next transaction and waits until
 * that transaction has committed durably (per the sync mode). Returns the
 * job's result, or the commit's error (the job's writes are then lost), or
 * EDDY_ESTATE (read-only or closing store). Thread-safe; must not be called
 * from the writer thread (a job or an append-completion callback).
 */
int eddyi_store_write(eddy_store *s, eddyi_write_fn fn, void *arg,
                      eddy_error *err);

/*
 * Nested savepoints inside a job (or a handler): a batch runs each item in
 * its own, so a failing item rolls back only its writes. Begin returns
 * EDDY_OK or an error; every successful begin is ended by exactly one
 * release or rollback (rollback also releases it), innermost first.
 * A release that fails has rolled the savepoint back, and its error is
 * the failure of what ran inside: on PostgreSQL a statement whose result
 * nobody read (eddy_txn_exec without `changes`) reports its error as late
 * as the release of its savepoint. A caller treats it as the failure of
 * the work the savepoint held (and does not roll back again).
 */
int eddyi_txn_savepoint(eddy_txn *txn, eddy_error *err);
int eddyi_txn_release(eddy_txn *txn, eddy_error *err);
void eddyi_txn_rollback(eddy_txn *txn);


/*
 * The store's own statements, for the state operations in src/store: as
 * eddy_txn_exec / eddy_txn_query / eddy_store_sql_query (eddy/sql.h: $N
 * parameters, the same letters), but `sql` MUST be a string literal (or
 * have static storage duration): its prepared form is cached by address.
 * eddyi_sql_read runs on a reader connection.
 */
int eddyi_sql_exec(eddy_txn *txn, int64_t *changes, eddy_error *err,
                   const char *sql, const char *params, ...);
int eddyi_sql_query(eddy_txn *txn, eddy_row_fn fn, void *user,
                    eddy_error *err, const char *sql, const char *params, ...);
int eddyi_sql_read(eddy_store *s, eddy_row_fn fn, void *user,
                   eddy_error *err, const char *sql, const char *params, ...);

/* As eddy_store_sql_int on a reader, for a static `sql`. */
int eddyi_sql_read_int(eddy_store *s, int64_t *out, eddy_error *err,
                       const char *sql, const char *params, ...);

/* A malloc'd copy of column `col` as text ("" for NULL); NULL only when out
 * of memory. */
char *eddyi_row_strdup(const eddy_row *row, int col);

/*
 * An append hook (added for inline projections, src/cqrs/projection.c):
 * runs on the writer thread inside the transaction of every successful
 * append through this store handle (eddy_store_append, _append_async,
 * eddy_txn_append), right after the events were written, with those
 * events (borrowed; `count` >= 1). Also called when every event of the
 * append was already stored (an idempotent retry), so a hook must
 * deduplicate by event id itself. Returning an error fails the append
 * (its savepoint is rolled back). Must be quick; must not block.
 */
typedef int (*eddyi_append_hook_fn)(eddy_txn *txn, const char *stream_id,
                                    eddy_event *const *events, size_t count,
                                    void *user, eddy_error *err);

/* Adds / removes hook (fn, user). Each change is made by a write job, so an
 * append either sees the hook or not. Add returns EDDY_OK, EDDY_ENOMEM or
 * the store's EDDY_ESTATE; remove returns EDDY_OK or EDDY_ENOTFOUND.
 * Thread-safe; not from the writer thread. */
int eddyi_store_add_append_hook(eddy_store *s, eddyi_append_hook_fn fn,
                                void *user, eddy_error *err);
int eddyi_store_remove_append_hook(eddy_store *s, eddyi_append_hook_fn fn,
                                   void *user);

#endif
