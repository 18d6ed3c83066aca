/*
 * src/store/sql.c - the portable statement API (eddy/sql.h) and the store's
 * own statement helpers (store_internal.h): parameters parsed from the
 * jansson-like letters, then handed to the backend's `sql` entry, on the
 * writer (inside a transaction) or on a reader.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "store_impl.h"

/* Statements take at most this many parameters. */
#define MAX_PARAMS 32

/* Reads the arguments `params` names into `out`. */
static int parse_params(const char *sql, const char *params, va_list ap,
                        eddyi_value *out, size_t *n, eddy_error *err)
{
    *n = 0;
    if (!sql)
        return eddyi_error(err, EDDY_EINVAL, "SQL statement is NULL");
    for (const char *p = params ? params : ""; *p; p++) {
        if (*n == MAX_PARAMS)
            return eddyi_error(err, EDDY_EINVAL,
                               "\"%.80s\": more than %d parameters", sql,
                               MAX_PARAMS);
        eddyi_value *v = &out[*n];
        memset(v, 0, sizeof *v);
        switch (*p) {
        case 's':
            v->declared = EDDYI_V_TEXT;
            v->s = va_arg(ap, const char *);
            if (v->s) {
                v->kind = EDDYI_V_TEXT;
                v->len = strlen(v->s);
            }
            break;
        case 'i':
            v->declared = EDDYI_V_INT;
            v->kind = EDDYI_V_INT;
            v->i = va_arg(ap, int);
            break;
        case 'I':
            v->declared = EDDYI_V_INT;
            v->kind = EDDYI_V_INT;
            v->i = va_arg(ap, int64_t);
            break;
        case 'b':
            v->declared = EDDYI_V_INT;
            v->kind = EDDYI_V_INT;
            v->i = va_arg(ap, int) != 0;
            break;
        case 'f':
            v->declared = EDDYI_V_REAL;
            v->kind = EDDYI_V_REAL;
            v->d = va_arg(ap, double);
            break;
        case 'n':
            break;
        default:
            return eddyi_error(err, EDDY_EINVAL,
                               "\"%.80s\": unknown parameter letter '%c' "
                               "(expected s, i, I, b, f or n)",
                               sql, *p);
        }
        (*n)++;
    }
    return EDDY_OK;
}

static int vrun(eddy_store *s, eddyi_conn where, bool static_sql,
                int64_t *changes, eddy_row_fn fn, void *user, eddy_error *err,
                const char *sql, const char *params, va_list ap)
{
    eddyi_value v[MAX_PARAMS];
    size_t n = 0;
    int rc = parse_params(sql, params, ap, v, &n, err);
    if (rc != EDDY_OK)
        return rc;
    if (!s->backend->sql)
        return eddyi_error(err, EDDY_EUNSUPPORTED,
                           "the %s backend runs no SQL statements",
                           s->backend->name);
    return s->backend->sql(s->impl, where, sql, static_sql, v, n, fn, user,
                           changes, err);
}

#define RUN(store, where, static_sql, changes, fn, user)                      \
    do {                                                                       \
        va_list ap;                                                            \
        va_start(ap, params);                                                  \
        int rc_ = vrun(store, where, static_sql, changes, fn, user, err, sql,  \
                       params, ap);                                            \
        va_end(ap);                                                            \
        return rc_;                                                            \
    } while (0)

static eddy_store *txn_store(eddy_txn *txn) { return txn->store; }

/* ---- public ------------------------------------------------------------- */

int eddy_txn_exec(eddy_txn *txn, int64_t *changes, eddy_error *err,
                  const char *sql, const char *params, ...)
{
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "txn_exec: no transaction");
    RUN(txn_store(txn), EDDYI_ON_WRITER, false, changes, NULL, NULL);
}

int eddy_txn_query(eddy_txn *txn, eddy_row_fn fn, void *user,
                   eddy_error *err, const char *sql, const char *params, ...)
{
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "txn_query: no transaction");
    RUN(txn_store(txn), EDDYI_ON_WRITER, false, NULL, fn, user);
}

int eddy_store_sql_query(eddy_store *s, eddy_row_fn fn, void *user,
                         eddy_error *err, const char *sql,
                         const char *params, ...)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "sql_query: store is NULL");
    RUN(s, EDDYI_ON_READER, false, NULL, fn, user);
}

static int first_int(const eddy_row *row, void *user)
{
    *(int64_t *)user = eddy_row_int(row, 0);
    return 1; /* the first row is enough */
}

static int vread_int(eddy_store *s, bool static_sql, int64_t *out,
                     eddy_error *err, const char *sql, const char *params,
                     va_list ap)
{
    if (!s || !out)
        return eddyi_error(err, EDDY_EINVAL, "sql_int: NULL argument");
    *out = 0;
    int rc = vrun(s, EDDYI_ON_READER, static_sql, NULL, first_int, out, err,
                  sql, params, ap);
    return rc == 1 ? EDDY_OK : rc;
}

int eddy_store_sql_int(eddy_store *s, int64_t *out, eddy_error *err,
                       const char *sql, const char *params, ...)
{
    va_list ap;
    va_start(ap, params);
    int rc = vread_int(s, false, out, err, sql, params, ap);
    va_end(ap);
    return rc;
}

int eddy_row_columns(const eddy_row *row)
{
    return row ? row->ops->columns(row->native) : 0;
}

static bool in_range(const eddy_row *row, int col)
{
    return row && col >= 0 && col < row->ops->columns(row->native);
}

bool eddy_row_is_null(const eddy_row *row, int col)
{
    return !in_range(row, col) || row->ops->is_null(row->native, col);
}

const char *eddy_row_text(const eddy_row *row, int col)
{
    return eddy_row_is_null(row, col) ? NULL
                                      : row->ops->text(row->native, col);
}

int64_t eddy_row_int(const eddy_row *row, int col)
{
    return eddy_row_is_null(row, col) ? 0
                                      : row->ops->integer(row->native, col);
}

double eddy_row_double(const eddy_row *row, int col)
{
    return eddy_row_is_null(row, col) ? 0.0
                                      : row->ops->real(row->native, col);
}

/* ---- the store's own statements (store_internal.h) ---------------------- */

int eddyi_sql_exec(eddy_txn *txn, int64_t *changes, eddy_error *err,
                   const char *sql, const char *params, ...)
{
    RUN(txn_store(txn), EDDYI_ON_WRITER, true, changes, NULL, NULL);
}

int eddyi_sql_query(eddy_txn *txn, eddy_row_fn fn, void *user,
                    eddy_error *err, const char *sql, const char *params, ...)
{
    RUN(txn_store(txn), EDDYI_ON_WRITER, true, NULL, fn, user);
}

int eddyi_sql_read(eddy_store *s, eddy_row_fn fn, void *user,
                   eddy_error *err, const char *sql, const char *params, ...)
{
    RUN(s, EDDYI_ON_READER, true, NULL, fn, user);
}

int eddyi_sql_read_int(eddy_store *s, int64_t *out, eddy_error *err,
                       const char *sql, const char *params, ...)
{
    va_list ap;
    va_start(ap, params);
    int rc = vread_int(s, true, out, err, sql, params, ap);
    va_end(ap);
    return rc;
}

char *eddyi_row_strdup(const eddy_row *row, int col)
{
    const char *t = eddy_row_text(row, col);
    return eddyi_strdup(t ? t : "");
}
