/*
 * src/store/postgres_sql.c - the portable statements of eddy/sql.h (the
 * state operations in src/store/state_*.c and user read models) on
 * PostgreSQL: their parameters, their result rows, their errors. Where a
 * statement runs (a reader, or the writer's open transaction) is decided by
 * postgres.c's `sql` entry; both paths come here for the rest.
 *
 * PARAMETERS are typed by the letter the caller gave (eddy/sql.h): 's' text,
 * 'i' 'I' 'b' bigint, 'f' double precision, 'n' left for the server to infer
 * from its place. A text NULL is still text, so "$2 IS NULL" and
 * "COALESCE($1, x)" work on both engines. Every value travels in text
 * format, which the server parses into whatever type it inferred: a
 * statement prepared by a call that bound NULL keeps working when a later
 * call binds a value. (The types are fixed when a statement is first
 * prepared on a connection: a statement bound with different letters for
 * the same parameter in different calls gets the first call's types.)
 *
 * RESULTS come in text format, so every column type reads the same way as on
 * SQLite: integers and reals as their digits (bigint, numeric from sum() of
 * a bigint, double precision), booleans as 1 or 0, and bytea (the log's
 * payloads, the outbox's copies of them) as its bytes, unescaped from the
 * server's hex form once per row and column read.
 *
 * ERRORS name the statement and keep the server's SQLSTATE; constraints map
 * as on SQLite: a UNIQUE or PRIMARY KEY violation is EDDY_EEXIST, the other
 * integrity constraints EDDY_EINVAL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "postgres.h"

#define PG_BOOL 16

/*
 * The highest $N of a statement (as SQLite's own parameter count),
 * outside string literals, quoted identifiers, comments and dollar-quoted
 * strings: the parameters a call must give. The server would refuse a
 * missing one with a protocol error, or infer an unused one's type.
 */
static int param_count(const char *sql)
{
    int max = 0;
    const char *p = sql;
    while (*p) {
        if (*p == '\'' || *p == '"') {
            char q = *p++;
            while (*p && *p != q)
                p++;
            if (*p)
                p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            int k = 0;
            for (p++; *p >= '0' && *p <= '9'; p++)
                k = k < 100000 ? k * 10 + (*p - '0') : k;
            if (k > max)
                max = k;
        } else if (*p == '$') {
            /* $tag$ ... $tag$ (the tag may be empty) */
            const char *t = p + 1;
            while (*t == '_' || (*t >= 'a' && *t <= 'z') ||
                   (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9'))
                t++;
            if (*t != '$') {
                p++;
                continue;
            }
            size_t len = (size_t)(t + 1 - p);
            const char *body = t + 1, *e = body;
            while ((e = strchr(e, '$')) && strncmp(e, p, len) != 0)
                e++;
            p = e ? e + len : body + strlen(body);
        } else {
            p++;
        }
    }
    return max;
}

int eddyi_pg_sql_params(const char *sql, const eddyi_value *v, size_t n,
                        eddyi_pg_params *p, eddy_error *err)
{
    memset(p, 0, sizeof *p);
    int expected = param_count(sql);
    if ((size_t)expected != n)
        return eddyi_error(err, EDDY_EINVAL,
                           "\"%.120s\" takes %d parameter(s), %zu given", sql,
                           expected, n);
    if (n > EDDYI_PG_MAX_PARAMS)
        return eddyi_error(err, EDDY_EINVAL,
                           "\"%.80s\": more than %d parameters", sql,
                           EDDYI_PG_MAX_PARAMS);
    p->text_results = true;
    for (size_t i = 0; i < n; i++) {
        p->formats[i] = 0;
        p->lengths[i] = 0;
        switch (v[i].declared) {
        case EDDYI_V_TEXT:
            p->types[i] = EDDYI_PG_TEXT;
            break;
        case EDDYI_V_INT:
            p->types[i] = EDDYI_PG_INT8;
            break;
        case EDDYI_V_REAL:
            p->types[i] = EDDYI_PG_FLOAT8;
            break;
        case EDDYI_V_NULL:
        default:
            p->types[i] = 0; /* inferred by the server */
            break;
        }
        switch (v[i].kind) {
        case EDDYI_V_INT:
            snprintf(p->ints[i], sizeof p->ints[i], "%lld", (long long)v[i].i);
            p->values[i] = p->ints[i];
            break;
        case EDDYI_V_REAL:
            /* %.17g round-trips every double. */
            snprintf(p->ints[i], sizeof p->ints[i], "%.17g", v[i].d);
            p->values[i] = p->ints[i];
            break;
        case EDDYI_V_TEXT: /* NUL-terminated (sql.c) */
            p->values[i] = v[i].s;
            break;
        case EDDYI_V_NULL:
        default:
            p->values[i] = NULL;
            break;
        }
    }
    p->n = (int)n;
    return EDDY_OK;
}

/* ---- rows ----------------------------------------------------------------- */

typedef struct pg_row {
    const PGresult *r;
    int row;
    int ncols;
    unsigned char **bytea; /* unescaped bytea columns of this row, lazily */
} pg_row;

static int row_columns(const void *native)
{
    return ((const pg_row *)native)->ncols;
}

static bool row_is_null(const void *native, int col)
{
    const pg_row *x = native;
    return PQgetisnull(x->r, x->row, col) != 0;
}

static const char *row_text(const void *native, int col)
{
    /* The view is read-only for the caller; the unescaped copies are a
     * cache of the row, hence the cast. */
    pg_row *x = (pg_row *)native;
    const char *t = PQgetvalue(x->r, x->row, col);
    if (PQftype(x->r, col) == EDDYI_PG_BYTEA) {
        if (!x->bytea[col]) {
            size_t len = 0;
            unsigned char *raw = PQunescapeBytea((const unsigned char *)t,
                                                 &len);
            if (!raw)
                return NULL; /* out of memory: read as NULL */
            /* PQunescapeBytea does not terminate: copy with a NUL. */
            unsigned char *z = malloc(len + 1);
            if (z) {
                memcpy(z, raw, len);
                z[len] = 0;
            }
            PQfreemem(raw);
            x->bytea[col] = z;
        }
        return (const char *)x->bytea[col];
    }
    if (PQftype(x->r, col) == PG_BOOL)
        return t[0] == 't' ? "1" : "0";
    return t;
}

static int64_t row_integer(const void *native, int col)
{
    const pg_row *x = native;
    const char *t = PQgetvalue(x->r, x->row, col);
    if (PQftype(x->r, col) == PG_BOOL)
        return t[0] == 't';
    char *end = NULL;
    long long v = strtoll(t, &end, 10);
    if (end && (*end == '.' || *end == 'e' || *end == 'E'))
        return (int64_t)strtod(t, NULL); /* a real read as an integer */
    return (int64_t)v;
}

static double row_real(const void *native, int col)
{
    const pg_row *x = native;
    const char *t = PQgetvalue(x->r, x->row, col);
    if (PQftype(x->r, col) == PG_BOOL)
        return t[0] == 't';
    return strtod(t, NULL);
}

static const eddyi_row_ops row_ops = {
    .columns = row_columns,
    .is_null = row_is_null,
    .text = row_text,
    .integer = row_integer,
    .real = row_real,
};

int eddyi_pg_sql_rows(const PGresult *r, eddyi_row_fn fn, void *user,
                      int64_t *changes, eddy_error *err)
{
    if (changes) {
        const char *t = PQcmdTuples((PGresult *)r);
        *changes = t && *t ? strtoll(t, NULL, 10) : 0;
    }
    int rows = PQntuples(r);
    if (!fn || rows == 0)
        return EDDY_OK;
    pg_row x = {.r = r, .ncols = PQnfields(r)};
    x.bytea = calloc((size_t)(x.ncols ? x.ncols : 1), sizeof *x.bytea);
    if (!x.bytea)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    struct eddy_row view = {.ops = &row_ops, .native = &x};
    int rc = EDDY_OK;
    for (int i = 0; i < rows && rc == EDDY_OK; i++) {
        x.row = i;
        rc = fn(&view, user);
        for (int c = 0; c < x.ncols; c++) {
            free(x.bytea[c]);
            x.bytea[c] = NULL;
        }
    }
    free(x.bytea);
    return rc;
}

void eddyi_pg_sql_what(const char *sql, char *out, size_t cap)
{
    snprintf(out, cap, "\"%.120s%s\"", sql, strlen(sql) > 120 ? "..." : "");
}
