/*
 * src/reliability/legacy_sql.c - TRANSITIONAL: the old SQLite helpers of
 * legacy_sql.h, moved here unchanged from dlq.c for the callers outside
 * src/reliability that still use them. Delete with their last caller.
 */
#include <stdarg.h>
#include <stdlib.h>

#include "../core/internal.h"
#include "legacy_sql.h"

int eddyi_rel_sqlerr(sqlite3 *db, const char *what, eddy_error *err)
{
    int code = sqlite3_errcode(db);
    int ec = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? EDDY_EBUSY
                                                            : EDDY_EIO;
    return eddyi_error(err, ec, "%s: %s", what, sqlite3_errmsg(db));
}

int eddyi_rel_db(eddy_txn *txn, sqlite3 **db, eddy_error *err)
{
    *db = eddyi_txn_native(txn);
    if (!*db)
        return eddyi_error(err, EDDY_EUNSUPPORTED,
                           "durable subscriptions and dead letters need the "
                           "SQLite store backend");
    return EDDY_OK;
}

static int vprepare(sqlite3 *db, sqlite3_stmt **stmt, eddy_error *err,
                    const char *sql, const char *types, va_list ap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return eddyi_rel_sqlerr(db, "preparing a reliability statement", err);
    int rc = SQLITE_OK;
    for (int i = 0; types && types[i] && rc == SQLITE_OK; i++) {
        switch (types[i]) {
        case 't': {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'n':
            rc = sqlite3_bind_int(st, i + 1, va_arg(ap, int));
            break;
        default:
            sqlite3_finalize(st);
            return eddyi_error(err, EDDY_EINVAL, "bad bind type '%c'",
                               types[i]);
        }
    }
    if (rc != SQLITE_OK) {
        int e = eddyi_rel_sqlerr(db, "binding a reliability statement", err);
        sqlite3_finalize(st);
        return e;
    }
    *stmt = st;
    return EDDY_OK;
}

int eddyi_rel_prepare(sqlite3 *db, sqlite3_stmt **stmt, eddy_error *err,
                      const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = vprepare(db, stmt, err, sql, types, ap);
    va_end(ap);
    return rc;
}

int eddyi_rel_exec(sqlite3 *db, int64_t *changes, eddy_error *err,
                   const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    va_start(ap, types);
    int rc = vprepare(db, &st, err, sql, types, ap);
    va_end(ap);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reliability statement", err);
    else if (changes)
        *changes = sqlite3_changes(db);
    sqlite3_finalize(st);
    return rc;
}

char *eddyi_rel_column_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return eddyi_strdup(t ? (const char *)t : "");
}
