/*
 * tests/projection_fixture.h - a small order read model for the projection
 * tests (test_projection.c, test_projection_crash.c): the projection under
 * test, and an independent fold of the store to compare it with.
 *
 * Events (subject = order id): order.placed {total}, order.confirmed,
 * order.cancelled. Read model rows: (order_id, status, total, applied),
 * where `applied` counts the events folded into the row: an event applied
 * twice shows up as a wrong count, one lost as a wrong status or count.
 */
#ifndef EDDY_TESTS_PROJECTION_FIXTURE_H
#define EDDY_TESTS_PROJECTION_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/eddy.h"

/* The read model, in the portable SQL subset (eddy/sql.h): the same
 * statements run on every backend. */
static int fx_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err,
                         "CREATE TABLE IF NOT EXISTS rm_orders("
                         "order_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
                         "total DOUBLE PRECISION NOT NULL, "
                         "applied BIGINT NOT NULL)",
                         NULL);
}

static int fx_reset(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err, "DELETE FROM rm_orders", NULL);
}

static int fx_apply(eddy_txn *txn, const eddy_event *ev, void *user,
                    eddy_error *err)
{
    (void)user;
    const char *type = eddy_event_type(ev);
    const char *id = eddy_event_subject(ev);
    if (!id)
        return EDDY_OK;
    if (strcmp(type, "order.placed") == 0) {
        double total = 0;
        if (eddy_event_unpack(ev, err, "{s:F}", "total", &total) != EDDY_OK)
            return EDDY_EINVAL;
        return eddy_txn_exec(txn, NULL, err,
                             "INSERT INTO rm_orders(order_id, status, total, "
                             "applied) VALUES($1, 'PENDING', $2, 1)",
                             "sf", id, total);
    }
    const char *status = strcmp(type, "order.confirmed") == 0   ? "CONFIRMED"
                         : strcmp(type, "order.cancelled") == 0 ? "CANCELLED"
                                                                : NULL;
    if (!status)
        return EDDY_OK;
    return eddy_txn_exec(txn, NULL, err,
                         "UPDATE rm_orders SET status = $2, "
                         "applied = applied + 1 WHERE order_id = $1",
                         "ss", id, status);
}

static int fx_dump_row(const eddy_row *row, void *user)
{
    fprintf(user, "%s %s %.2f %lld\n", eddy_row_text(row, 0),
            eddy_row_text(row, 1), eddy_row_double(row, 2),
            (long long)eddy_row_int(row, 3));
    return 0;
}

/* The read model as text, one "id status total applied" line per row, read
 * on a reader connection of `s`. */
static char *fx_dump_db(eddy_store *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    eddy_error err = {0};
    if (eddy_store_sql_query(s, fx_dump_row, f, &err,
                             "SELECT order_id, status, total, applied FROM "
                             "rm_orders ORDER BY order_id",
                             NULL) != EDDY_OK)
        fprintf(f, "cannot read the read model: %s\n", err.message);
    fclose(f);
    return buf;
}

/* The same text computed by folding the store's events in memory. */
struct fx_row {
    char id[64];
    const char *status;
    double total;
    long long applied;
};

static int fx_row_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fx_row *)a)->id,
                  ((const struct fx_row *)b)->id);
}

static char *fx_dump_fold(eddy_store *s)
{
    struct fx_row *rows = NULL;
    size_t n = 0;
    eddy_cursor *c = NULL;
    eddy_record rec;
    if (eddy_store_read_all(s, 0, 0, &c, NULL) != EDDY_OK)
        return NULL;
    while (eddy_cursor_next(c, &rec, NULL)) {
        const char *type = eddy_event_type(rec.event);
        const char *id = eddy_event_subject(rec.event);
        if (!id || strncmp(type, "order.", 6) != 0)
            continue;
        struct fx_row *r = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(rows[i].id, id) == 0)
                r = &rows[i];
        if (strcmp(type, "order.placed") == 0) {
            rows = realloc(rows, (n + 1) * sizeof *rows);
            r = &rows[n++];
            snprintf(r->id, sizeof r->id, "%s", id);
            r->status = "PENDING";
            r->total = 0;
            eddy_event_unpack(rec.event, NULL, "{s:F}", "total", &r->total);
            r->applied = 1;
        } else if (r && strcmp(type, "order.confirmed") == 0) {
            r->status = "CONFIRMED";
            r->applied++;
        } else if (r && strcmp(type, "order.cancelled") == 0) {
            r->status = "CANCELLED";
            r->applied++;
        }
    }
    eddy_cursor_free(c);
    qsort(rows, n, sizeof *rows, fx_row_cmp);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s %s %.2f %lld\n", rows[i].id, rows[i].status,
                rows[i].total, rows[i].applied);
    fclose(f);
    free(rows);
    return buf;
}

/* Appends order `i`'s events: placed, then confirmed (even i) or cancelled
 * (i % 3 == 1), each its own append (so kills land between them). */
static int fx_append_order(eddy_store *s, int i, eddy_error *err)
{
    char id[64];
    snprintf(id, sizeof id, "o-%05d", i);
    eddy_event *ev = eddy_event_newf("order.placed", "orders", id, err,
                                     "{s:s, s:f}", "order_id", id, "total",
                                     10.0 + i);
    if (!ev)
        return EDDY_EINVAL;
    int rc = eddy_store_append(s, id, EDDY_EXPECT_ANY, &ev, 1, NULL, err);
    eddy_event_unref(ev);
    const char *next = i % 2 == 0   ? "order.confirmed"
                       : i % 3 == 1 ? "order.cancelled"
                                    : NULL;
    if (rc != EDDY_OK || !next)
        return rc;
    ev = eddy_event_newf(next, "orders", id, err, "{s:s}", "order_id", id);
    if (!ev)
        return EDDY_EINVAL;
    rc = eddy_store_append(s, id, EDDY_EXPECT_ANY, &ev, 1, NULL, err);
    eddy_event_unref(ev);
    return rc;
}

#endif
