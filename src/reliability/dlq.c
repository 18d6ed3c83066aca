/*
 * src/reliability/dlq.c - the dead-letter store (eddy_dlq_*) and the
 * SQLite helpers of the reliability layer.
 *
 * Every call here runs through the store's writer (eddyi_store_write): the
 * store exposes no read connection to other layers. Listing pages through the
 * table in jobs of DLQ_PAGE rows and calls the user's callback between
 * jobs, never on the writer thread.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "reliability_internal.h"

#define DLQ_PAGE 256

/* ---- schema and helpers --------------------------------------------------- */

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

/* ---- dead letters as views ------------------------------------------------ */

/* A dead letter read from the table: the public view plus its storage. */
struct dl_row {
    eddy_dead_letter view; /* first: eddy_dead_letter_free casts back */
    char *handler;
    char *error;
    char *status;
    char *payload; /* until decoded */
};

static void dl_row_clear(struct dl_row *r)
{
    free(r->handler);
    free(r->error);
    free(r->status);
    free(r->payload);
    eddy_event_unref(r->view.event);
    memset(r, 0, sizeof *r);
}

void eddy_dead_letter_free(eddy_dead_letter *dl)
{
    if (!dl)
        return;
    dl_row_clear((struct dl_row *)dl);
    free(dl);
}

#define DL_COLUMNS                                                             \
    "id, subscription, position, payload, error_code, error, attempts, "       \
    "first_failure_us, last_failure_us, status"

/* Reads the current row of a DL_COLUMNS select into `r` (payload not yet
 * decoded). */
static int dl_row_read(sqlite3_stmt *st, struct dl_row *r, eddy_error *err)
{
    memset(r, 0, sizeof *r);
    r->view.id = sqlite3_column_int64(st, 0);
    r->handler = eddyi_rel_column_text(st, 1);
    r->view.position = sqlite3_column_int64(st, 2);
    r->payload = eddyi_rel_column_text(st, 3);
    r->view.error_code = sqlite3_column_int(st, 4);
    r->error = eddyi_rel_column_text(st, 5);
    r->view.attempts = sqlite3_column_int(st, 6);
    r->view.first_failure_us = sqlite3_column_int64(st, 7);
    r->view.last_failure_us = sqlite3_column_int64(st, 8);
    r->status = eddyi_rel_column_text(st, 9);
    if (!r->handler || !r->payload || !r->error || !r->status) {
        dl_row_clear(r);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    r->view.handler = r->handler;
    r->view.error = r->error;
    r->view.status = r->status;
    return EDDY_OK;
}

/* Decodes the payload into the view's event (outside the writer). */
static int dl_row_decode(struct dl_row *r, eddy_error *err)
{
    eddy_error e = {0};
    r->view.event = eddy_event_decode(r->payload, strlen(r->payload), &e);
    if (!r->view.event)
        return eddyi_error(err, e.code ? e.code : EDDY_EPARSE,
                           "dead letter %lld: stored event does not decode: "
                           "%.300s", (long long)r->view.id, e.message);
    free(r->payload);
    r->payload = NULL;
    return EDDY_OK;
}

/* ---- list ----------------------------------------------------------------- */

struct list_job {
    const char *handler;
    int64_t after_id;
    struct dl_row rows[DLQ_PAGE];
    size_t n;
};

static int list_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct list_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    if (j->handler)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                               "WHERE id > ?1 AND subscription = ?2 "
                               "ORDER BY id LIMIT ?3",
                               "itn", j->after_id, j->handler, DLQ_PAGE);
    else
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                               "WHERE id > ?1 ORDER BY id LIMIT ?2",
                               "in", j->after_id, DLQ_PAGE);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && j->n < DLQ_PAGE) {
        rc = dl_row_read(st, &j->rows[j->n], err);
        if (rc != EDDY_OK)
            break;
        j->n++;
    }
    if (rc == EDDY_OK && s != SQLITE_ROW && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "listing dead letters", err);
    sqlite3_finalize(st);
    return rc;
}

int eddy_dlq_list(eddy_store *store, const char *handler,
                  eddy_dead_letter_fn fn, void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL, "dlq list: store and callback "
                                             "are required");
    struct list_job *j = calloc(1, sizeof *j);
    if (!j)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    j->handler = handler;
    int rc = EDDY_OK;
    for (;;) {
        j->n = 0;
        rc = eddyi_store_write(store, list_job_run, j, err);
        if (rc != EDDY_OK)
            break;
        size_t i = 0;
        for (; i < j->n && rc == EDDY_OK; i++) {
            rc = dl_row_decode(&j->rows[i], err);
            if (rc == EDDY_OK)
                rc = fn(&j->rows[i].view, user);
            j->after_id = j->rows[i].view.id;
        }
        for (size_t k = 0; k < j->n; k++)
            dl_row_clear(&j->rows[k]);
        if (rc != EDDY_OK || j->n < DLQ_PAGE)
            break;
    }
    for (size_t k = 0; k < j->n; k++)
        dl_row_clear(&j->rows[k]);
    free(j);
    return rc;
}

/* ---- get ------------------------------------------------------------------ */

struct get_job {
    int64_t id;
    const char *subscription; /* NULL: any */
    struct dl_row *row;
    bool found;
};

static int get_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct get_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                               "WHERE id = ?1 AND (?2 IS NULL OR "
                               "subscription = ?2)",
                               "it", j->id, j->subscription);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        rc = dl_row_read(st, j->row, err);
        j->found = rc == EDDY_OK;
    } else if (s != SQLITE_DONE) {
        rc = eddyi_rel_sqlerr(db, "reading a dead letter", err);
    }
    sqlite3_finalize(st);
    return rc;
}

int eddyi_dlq_load(eddy_store *store, int64_t id, const char *subscription,
                   eddy_dead_letter **out, eddy_error *err)
{
    struct dl_row *row = calloc(1, sizeof *row);
    if (!row)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    struct get_job j = {.id = id, .subscription = subscription, .row = row};
    int rc = eddyi_store_write(store, get_job_run, &j, err);
    if (rc == EDDY_OK && !j.found)
        rc = eddyi_error(err, EDDY_ENOTFOUND,
                         subscription ? "no dead letter %lld for handler "
                                        "\"%s\""
                                      : "no dead letter %lld%s",
                         (long long)id, subscription ? subscription : "");
    if (rc == EDDY_OK)
        rc = dl_row_decode(row, err);
    if (rc != EDDY_OK) {
        eddy_dead_letter_free(&row->view);
        return rc;
    }
    *out = &row->view;
    return EDDY_OK;
}

int eddy_dlq_get(eddy_store *store, int64_t id, eddy_dead_letter **out,
                 eddy_error *err)
{
    if (!store || !out)
        return eddyi_error(err, EDDY_EINVAL, "dlq get: store and out are "
                                             "required");
    return eddyi_dlq_load(store, id, NULL, out, err);
}

/* ---- retry / delete / purge ----------------------------------------------- */

struct update_job {
    const char *sql;
    const char *types;
    int64_t id;
    const char *handler;
    int64_t changes;
};

static int update_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct update_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    if (strcmp(j->types, "i") == 0)
        return eddyi_rel_exec(db, &j->changes, err, j->sql, "i", j->id);
    return eddyi_rel_exec(db, &j->changes, err, j->sql, "t", j->handler);
}

/* Runs `sql` (one ?1 = a dead letter id) through the writer; EDDY_ENOTFOUND
 * when it changed no row. `what` names the call in messages. */
static int dlq_by_id(eddy_store *store, const char *what, const char *sql,
                     int64_t id, eddy_error *err)
{
    if (!store)
        return eddyi_error(err, EDDY_EINVAL, "%s: no store", what);
    struct update_job j = {.sql = sql, .types = "i", .id = id};
    int rc = eddyi_store_write(store, update_job_run, &j, err);
    if (rc == EDDY_OK && j.changes == 0)
        return eddyi_error(err, EDDY_ENOTFOUND, "no dead letter %lld",
                           (long long)id);
    return rc;
}

/* Runs `sql` (?1 = a handler name or NULL for all) through the writer;
 * `*count` (may be NULL) receives the rows changed. */
static int dlq_by_handler(eddy_store *store, const char *what, const char *sql,
                          const char *handler, size_t *count, eddy_error *err)
{
    if (!store)
        return eddyi_error(err, EDDY_EINVAL, "%s: no store", what);
    struct update_job j = {.sql = sql, .types = "t", .handler = handler};
    int rc = eddyi_store_write(store, update_job_run, &j, err);
    if (rc == EDDY_OK && count)
        *count = (size_t)j.changes;
    return rc;
}

int eddy_dlq_retry(eddy_store *store, int64_t id, eddy_error *err)
{
    return dlq_by_id(store, "dlq retry",
                     "UPDATE eddy_dead_letters SET status = 'redrive' WHERE id = ?1",
                     id, err);
}

int eddy_dlq_retry_all(eddy_store *store, const char *handler, size_t *count,
                       eddy_error *err)
{
    return dlq_by_handler(store, "dlq retry",
                          "UPDATE eddy_dead_letters SET status = 'redrive' "
                          "WHERE status = 'dead' AND (?1 IS NULL OR subscription = ?1)",
                          handler, count, err);
}

int eddy_dlq_delete(eddy_store *store, int64_t id, eddy_error *err)
{
    return dlq_by_id(store, "dlq delete",
                     "DELETE FROM eddy_dead_letters WHERE id = ?1", id, err);
}

int eddy_dlq_purge(eddy_store *store, const char *handler, size_t *count,
                   eddy_error *err)
{
    return dlq_by_handler(store, "dlq purge",
                          "DELETE FROM eddy_dead_letters "
                          "WHERE ?1 IS NULL OR subscription = ?1",
                          handler, count, err);
}
