/*
 * examples/orders/read_model.c - OrderReadModel: the specification's
 * OrderProjectionHandler as an eddy projection.
 *
 * One row per order in order_read_model, PENDING on order.placed, then
 * CONFIRMED or CANCELLED with the time and reason. The projection commits
 * each row change with its checkpoint (exactly once), and its rows are per
 * order (the events' subject), so it may use several workers. Written in
 * the portable SQL of eddy/sql.h: it runs on every store backend.
 */
#include <string.h>

#include "orders/internal.h"

/* The total is in cents (order.placed 2.0). eddy 0.1.0's table had a
 * `total REAL` in major units instead: orders_read_model_upgrade replaces
 * it. */
static const char RM_TABLE[] =
    "CREATE TABLE IF NOT EXISTS order_read_model("
    " order_id TEXT PRIMARY KEY,"
    " customer_id TEXT NOT NULL,"
    " status TEXT NOT NULL"
    "  CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),"
    " total_cents BIGINT NOT NULL,"
    " item_count BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL,"  /* event time, µs */
    " confirmed_at BIGINT,"
    " cancelled_at BIGINT,"
    " cancel_reason TEXT)";

static int rm_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err, RM_TABLE, "");
}

/* A rebuild starts from a table of the current shape, whatever shape the
 * store had: the read model is derived data, rebuilt from the events. */
static int rm_reset(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err,
                           "DROP TABLE IF EXISTS order_read_model", "");
    return rc == EDDY_OK ? eddy_txn_exec(txn, NULL, err, RM_TABLE, "") : rc;
}

/* Applies one order event; a status change that does not find its PENDING
 * row is an error (the event is retried, then dead-lettered), never a
 * silent skip. */
static int rm_apply(eddy_txn *txn, const eddy_event *ev, void *user,
                    eddy_error *err)
{
    (void)user;
    const char *type = eddy_event_type(ev);
    const char *order_id, *customer_id, *reason = NULL;
    json_int_t amount;
    json_t *items;
    int64_t changed = 0;
    int rc;
    if (strcmp(type, ORDERS_ORDER_PLACED) == 0) {
        if ((rc = eddy_event_unpack(ev, err, "{s:s, s:s, s:I, s:o}", "order_id",
                                    &order_id, "customer_id", &customer_id,
                                    "amount", &amount, "items", &items)) != EDDY_OK)
            return rc;
        return eddy_txn_exec(txn, NULL, err,
                             "INSERT INTO order_read_model(order_id, "
                             "customer_id, status, total_cents, item_count, "
                             "created_at) VALUES($1, $2, 'PENDING', $3, $4, $5)",
                             "ssIII", order_id, customer_id, (int64_t)amount,
                             (int64_t)json_array_size(items),
                             eddy_event_time(ev));
    }
    bool confirmed = strcmp(type, ORDERS_ORDER_CONFIRMED) == 0;
    if (!confirmed && strcmp(type, ORDERS_ORDER_CANCELLED) != 0)
        return EDDY_OK;
    if ((rc = confirmed ? eddy_event_unpack(ev, err, "{s:s}", "order_id", &order_id)
                        : eddy_event_unpack(ev, err, "{s:s, s:s}", "order_id",
                                            &order_id, "reason", &reason)) != EDDY_OK)
        return rc;
    if ((rc = confirmed
                  ? eddy_txn_exec(txn, &changed, err,
                                  "UPDATE order_read_model SET status = "
                                  "'CONFIRMED', confirmed_at = $2 WHERE "
                                  "order_id = $1 AND status = 'PENDING'",
                                  "sI", order_id, eddy_event_time(ev))
                  : eddy_txn_exec(txn, &changed, err,
                                  "UPDATE order_read_model SET status = "
                                  "'CANCELLED', cancelled_at = $2, "
                                  "cancel_reason = $3 WHERE order_id = $1 AND "
                                  "status = 'PENDING'",
                                  "sIs", order_id, eddy_event_time(ev),
                                  reason)) != EDDY_OK)
        return rc;
    if (changed != 1) {
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

int orders_read_model_upgrade(eddy_store *store, bool *rebuilt,
                              eddy_error *err)
{
    int64_t n = 0;
    *rebuilt = false;
    /* Asked on a reader, where a failing statement harms nothing (inside a
     * transaction it would abort it on some engines): no table at all is
     * fine (the projection's setup creates it); a table without
     * total_cents is eddy 0.1.0's. */
    if (eddy_store_sql_int(store, &n, NULL,
                           "SELECT count(*) FROM order_read_model", "") != EDDY_OK ||
        eddy_store_sql_int(store, &n, NULL,
                           "SELECT count(total_cents) FROM order_read_model",
                           "") == EDDY_OK)
        return EDDY_OK;
    int rc = eddy_projection_rebuild(store, &orders_read_model_def, NULL, NULL,
                                     err);
    *rebuilt = rc == EDDY_OK;
    return rc;
}
