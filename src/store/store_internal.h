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

#include <stdint.h>

#include "eddy/store.h"

/* The writer's open transaction, as a job sees it. Valid during the job. */
typedef struct eddyi_txn eddyi_txn;

/*
 * A write job: runs on the writer thread inside the group-commit
 * transaction, in its own savepoint. Return EDDY_OK to keep its writes, or
 * an error (with `err` filled) to roll back only this job's writes. The job
 * must not block for long (every other appender waits for the commit) and
 * must not call blocking store functions (eddy_store_append, ...).
 */
typedef int (*eddyi_write_fn)(eddyi_txn *txn, void *arg, eddy_error *err);

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
 * Appends inside the job's transaction, with the same checks and semantics
 * as eddy_store_append (expected version, idempotence, size limit, check
 * hook). Its writes commit or roll back with the job.
 */
int eddyi_txn_append(eddyi_txn *txn, const char *stream_id,
                     int64_t expected_version, eddy_event *const *events,
                     size_t count, eddy_append_result *result,
                     eddy_error *err);

/* The backend's write connection: a `sqlite3 *` for the SQLite backend,
 * NULL for other backends. Valid during the job only. */
void *eddyi_txn_sqlite(eddyi_txn *txn);

/* The write connection if the store's backend is `engine` ("sqlite":
 * `sqlite3 *`, "postgres": `PGconn *`, idle and out of pipeline mode, inside
 * the group-commit transaction and the job's savepoint), else NULL. Valid
 * during the job only. */
void *eddyi_txn_native(eddyi_txn *txn, const char *engine);

/* The commit timestamp shared by every write of this transaction. */
int64_t eddyi_txn_now_us(const eddyi_txn *txn);

/* The store a transaction belongs to. */
eddy_store *eddyi_txn_store(const eddyi_txn *txn);

/*
 * An append hook (added for inline projections, src/cqrs/projection.c):
 * runs on the writer thread inside the transaction of every successful
 * append through this store handle (eddy_store_append, _append_async,
 * eddyi_txn_append), right after the events were written, with those
 * events (borrowed; `count` >= 1). Also called when every event of the
 * append was already stored (an idempotent retry), so a hook must
 * deduplicate by event id itself. Returning an error fails the append
 * (its savepoint is rolled back). Must be quick; must not block.
 */
typedef int (*eddyi_append_hook_fn)(eddyi_txn *txn, const char *stream_id,
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
