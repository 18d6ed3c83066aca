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

/* The commit timestamp shared by every write of this transaction. */
int64_t eddyi_txn_now_us(const eddyi_txn *txn);

/* The store a transaction belongs to. */
eddy_store *eddyi_txn_store(const eddyi_txn *txn);

#endif
