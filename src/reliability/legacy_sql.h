/*
 * src/reliability/legacy_sql.h - TRANSITIONAL: the old SQLite helpers that
 * src/cqrs/saga.c, src/cqrs/projection.c, src/observe/trace.c and
 * src/observe/subscriptions.c still use to reach the store's write
 * connection (they include reliability_internal.h, which includes this).
 * Nothing in src/reliability uses them any more. Delete this file and
 * legacy_sql.c with their last caller (issue 10). Not public.
 */
#ifndef EDDY_SRC_RELIABILITY_LEGACY_SQL_H
#define EDDY_SRC_RELIABILITY_LEGACY_SQL_H

#include <sqlite3.h>
#include <stdint.h>

#include "eddy/sqlite.h"
#include "../store/store_internal.h"

/* The SQLite write connection of a job, or EDDY_EUNSUPPORTED for other
 * backends (`*db` NULL). */
int eddyi_rel_db(eddy_txn *txn, sqlite3 **db, eddy_error *err);

/* Fills `err` from the connection's last error (`what` names the step) and
 * returns EDDY_EBUSY for a lock timeout, EDDY_EIO otherwise. */
int eddyi_rel_sqlerr(sqlite3 *db, const char *what, eddy_error *err);

/*
 * Prepares `sql` and binds `?1, ?2, ...` from the variadic arguments as
 * `types` says, one letter each: 't' const char * (NULL binds NULL),
 * 'i' int64_t, 'n' int. Returns EDDY_OK with `*stmt`, or an error.
 */
int eddyi_rel_prepare(sqlite3 *db, sqlite3_stmt **stmt, eddy_error *err,
                      const char *sql, const char *types, ...);

/* As eddyi_rel_prepare, then steps to the end and finalizes. `changes`
 * (may be NULL) receives sqlite3_changes(). */
int eddyi_rel_exec(sqlite3 *db, int64_t *changes, eddy_error *err,
                   const char *sql, const char *types, ...);

/* Column `i` as a malloc'd copy ("" for NULL); NULL only when out of
 * memory. */
char *eddyi_rel_column_text(sqlite3_stmt *st, int i);

#endif
