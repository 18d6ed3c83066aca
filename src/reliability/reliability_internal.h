/*
 * src/reliability/reliability_internal.h - what durable.c and dlq.c share:
 * the reliability tables and small SQLite helpers. Not public.
 *
 * The tables (eddy_checkpoints, eddy_retries, eddy_dead_letters,
 * eddy_inbox, eddy_outbox) are part of the store file's schema: store
 * migration 3 in src/store/sqlite_schema.c creates them.
 */
#ifndef EDDY_SRC_RELIABILITY_INTERNAL_H
#define EDDY_SRC_RELIABILITY_INTERNAL_H

#include <sqlite3.h>

#include "eddy/sqlite.h"
#include <stdint.h>

#include "eddy/durable.h"
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

/*
 * Loads dead letter `id` (limited to `subscription` unless NULL) into
 * `*out` (destructor: eddy_dead_letter_free). EDDY_ENOTFOUND when missing.
 * Not from the writer thread.
 */
int eddyi_dlq_load(eddy_store *store, int64_t id, const char *subscription,
                   eddy_dead_letter **out, eddy_error *err);

#endif
