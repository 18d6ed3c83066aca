/*
 * eddy/sqlite.h - the SQLite escape hatch.
 *
 * Everything a program needs from the store works through the portable API
 * (eddy/sql.h) on every backend. When a handler on the SQLite backend needs
 * something only SQLite has (a virtual table, an extension function, a
 * prepared statement of its own), it can reach the store's write connection
 * here. This is the only public header that includes <sqlite3.h>; code that
 * uses it runs on the SQLite backend only.
 */
#ifndef EDDY_SQLITE_H
#define EDDY_SQLITE_H

#include <sqlite3.h>

#include "eddy/sql.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The store's SQLite write connection inside transaction `txn`, or NULL
 * when the store is not on the SQLite backend. Valid during the callback
 * that received `txn`, on its thread (the store's writer). Statements the
 * caller prepares must be finalized before the callback returns; the
 * caller must not begin, commit or roll back transactions on it (use
 * SAVEPOINT/RELEASE if needed) nor close it.
 */
sqlite3 *eddy_txn_sqlite(eddy_txn *txn);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_SQLITE_H */
