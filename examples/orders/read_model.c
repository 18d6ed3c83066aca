/*
 * examples/orders/read_model.c - OrderReadModel: the specification's
 * OrderProjectionHandler as an eddy projection.
 *
 * One row per order in order_read_model, PENDING on order.placed, then
 * CONFIRMED or CANCELLED with the time and reason. The projection commits
 * each row change with its checkpoint (exactly once), and its rows are per
 * order (the events' subject), so it may use several workers.
 */
#include <string.h>

#include "orders/internal.h"

static int rm_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    sqlite3 *db = eddy_txn_sqlite(txn);
    if (!db) {
        if (err) {
            err->code = EDDY_EUNSUPPORTED;
            snprintf(err->message, sizeof err->message,
                     "order_read_model needs a SQLite store");
        }
        return EDDY_EUNSUPPORTED;
    }
    return orders_sql(db, err, NULL,
                      "CREATE TABLE IF NOT EXISTS order_read_model("
                      " order_id TEXT PRIMARY KEY,"
                      " customer_id TEXT NOT NULL,"
                      " status TEXT NOT NULL"
                      "  CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),"
                      " total REAL NOT NULL,"
                      " item_count INTEGER NOT NULL,"
                      " created_at INTEGER NOT NULL,"  /* event time, µs */
                      " confirmed_at INTEGER,"
                      " cancelled_at INTEGER,"
                      " cancel_reason TEXT)",
                      "");
}

static int rm_reset(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return orders_sql(eddy_txn_sqlite(txn), err, NULL,
                      "DELETE FROM order_read_model", "");
}

/* Applies one order event; a status change that does not find its PENDING
 * row is an error (the event is retried, then dead-lettered), never a
 * silent skip. */
static int rm_apply(eddy_txn *txn, const eddy_event *ev, void *user,
                    eddy_error *err)
{
    (void)user;
    sqlite3 *db = eddy_txn_sqlite(txn);
    const char *type = eddy_event_type(ev);
    const char *order_id, *customer_id, *reason;
    double amount;
    json_t *items;
    int rc;
    if (strcmp(type, ORDERS_ORDER_PLACED) == 0) {
        if ((rc = eddy_event_unpack(ev, err, "{s:s, s:s, s:F, s:o}", "order_id",
                                    &order_id, "customer_id", &customer_id,
                                    "amount", &amount, "items", &items)) != EDDY_OK)
            return rc;
        sqlite3_stmt *st;
        /* the total is a REAL: bound apart from the text/int helper */
        if ((rc = orders_sql(db, err, &st,
                             "INSERT INTO order_read_model(order_id, "
                             "customer_id, status, total, item_count, "
                             "created_at) VALUES(?1, ?2, 'PENDING', ?5, ?3, ?4)",
                             "ttii", order_id, customer_id,
                             (int64_t)json_array_size(items),
                             eddy_event_time(ev))) != EDDY_OK)
            return rc;
        sqlite3_bind_double(st, 5, amount);
        int s = sqlite3_step(st);
        sqlite3_finalize(st);
        if (s != SQLITE_DONE) {
            if (err) {
                err->code = EDDY_EIO;
                snprintf(err->message, sizeof err->message,
                         "order_read_model: order %s: %s", order_id,
                         sqlite3_errmsg(db));
            }
            return EDDY_EIO;
        }
        return EDDY_OK;
    }
    bool confirmed = strcmp(type, ORDERS_ORDER_CONFIRMED) == 0;
    if (!confirmed && strcmp(type, ORDERS_ORDER_CANCELLED) != 0)
        return EDDY_OK;
    reason = NULL;
    if ((rc = confirmed ? eddy_event_unpack(ev, err, "{s:s}", "order_id", &order_id)
                        : eddy_event_unpack(ev, err, "{s:s, s:s}", "order_id",
                                            &order_id, "reason", &reason)) != EDDY_OK)
        return rc;
    if ((rc = confirmed
                  ? orders_sql(db, err, NULL,
                               "UPDATE order_read_model SET status = 'CONFIRMED', "
                               "confirmed_at = ?2 WHERE order_id = ?1 AND "
                               "status = 'PENDING'",
                               "ti", order_id, eddy_event_time(ev))
                  : orders_sql(db, err, NULL,
                               "UPDATE order_read_model SET status = 'CANCELLED', "
                               "cancelled_at = ?2, cancel_reason = ?3 WHERE "
                               "order_id = ?1 AND status = 'PENDING'",
                               "tit", order_id, eddy_event_time(ev), reason)) != EDDY_OK)
        return rc;
    if (sqlite3_changes(db) != 1) {
        if (err) {
            err->code = EDDY_ESTATE;
            snprintf(err->message, sizeof err->message,
                     "order_read_model: %s for order %s, which is not PENDING",
                     type, order_id);
        }
        return EDDY_ESTATE;
    }
    return EDDY_OK;
}

const eddy_projection_def orders_read_model_def = {
    .name = ORDERS_PROJECTION,
    .pattern = "order.*",
    .setup = rm_setup,
    .apply = rm_apply,
    .reset = rm_reset,
    .mode = EDDY_PROJECTION_ASYNC,
    .workers = 2,
};

void orders_register_projections(void)
{
    eddy_error err = {0};
    if (eddy_projection_register_def(&orders_read_model_def, &err) != EDDY_OK)
        fprintf(stderr, "eddy: %s\n", err.message);
}
