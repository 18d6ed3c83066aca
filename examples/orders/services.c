/*
 * examples/orders/services.c - the services of the order domain and the
 * command handlers the saga's commands reach.
 *
 *   UserService       register_user -> user.registered
 *   OrderService      place_order (OrderAggregate); ConfirmOrder, CancelOrder
 *   PaymentService    ProcessPayment -> payment.requested; a durable
 *                     subscription plays the payment provider; RefundPayment
 *   InventoryService  ReserveInventory / ReleaseInventory -> requests that a
 *                     TRANSACTIONAL subscription applies to the stock table
 *   EmailNotificationHandler  welcome and confirmation mails (sent_mail)
 *
 * Command handlers run on the saga's dispatcher thread: they only append
 * (quickly) and derive their events' ids from the command id, so a command
 * sent twice (at-least-once) stores its event once.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "orders/internal.h"

/* ---- simulated randomness ------------------------------------------------- */

uint64_t orders_hash(uint64_t seed, const char *text)
{
    uint64_t h = 1469598103934665603ULL ^ seed; /* FNV-1a, seeded */
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    /* splitmix64 finaliser: spreads FNV's weak low bits */
    h += 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

double orders_unit(uint64_t h)
{
    return (double)(h >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
}

/* ---- helpers -------------------------------------------------------------- */

static int set_err(eddy_error *err, int code, const char *fmt, const char *a)
{
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, fmt, a ? a : "?");
    }
    return code;
}

/* Builds `type` for order `order_id` with `data` (taken), id derived from
 * the command id, and appends it once to "<prefix>-<order_id>", inside the
 * command's transaction. */
static int append_result(eddy_txn *txn, const char *prefix,
                         const char *source, const char *type,
                         const char *order_id, const eddy_command *cmd,
                         json_t *data, eddy_error *err)
{
    char id[37], stream[ORDERS_ID_MAX + 32];
    if (!data)
        return set_err(err, EDDY_ENOMEM, "%s: out of memory", type);
    eddy_id_derive(cmd->id, type, id);
    snprintf(stream, sizeof stream, "%s-%s", prefix, order_id);
    eddy_event *ev = orders_event_new(type, source, order_id, id,
                                      cmd->correlation_id, cmd->id, data, err);
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code : EDDY_ENOMEM;
    eddy_error e = {0};
    int rc = eddy_txn_append(txn, stream, EDDY_EXPECT_ANY, &ev, 1, NULL, &e);
    eddy_event_unref(ev);
    if (rc == EDDY_EDUPLICATE) /* stored by an earlier send of the command */
        return EDDY_OK;
    if (rc != EDDY_OK && err)
        *err = e;
    return rc;
}

/* ---- UserService / OrderService ------------------------------------------- */

int orders_register_user(orders_app *app, const char *user_id,
                         const char *email, const char *full_name,
                         eddy_error *err)
{
    char stream[ORDERS_ID_MAX + 8];
    snprintf(stream, sizeof stream, "user-%s", user_id);
    json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "user_id", user_id,
                             "email", email, "full_name", full_name,
                             "registration_source", "demo");
    if (!data)
        return set_err(err, EDDY_EINVAL, "user %s: bad fields", user_id);
    eddy_event *ev = orders_event_new(ORDERS_USER_REGISTERED, "user-service",
                                      user_id, NULL, NULL, NULL, data, err);
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_store_append(app->store, stream, EDDY_EXPECT_NO_STREAM, &ev,
                               1, NULL, err);
    eddy_event_unref(ev);
    return rc;
}

int orders_add_stock(orders_app *app, const char *product_id, long quantity,
                     int64_t expected_version, eddy_error *err)
{
    char stream[ORDERS_ID_MAX + 16];
    snprintf(stream, sizeof stream, "product-%s", product_id);
    json_t *data = json_pack("{s:s, s:I}", "product_id", product_id,
                             "quantity", (json_int_t)quantity);
    eddy_event *ev = data ? orders_event_new(ORDERS_STOCK_ADDED,
                                             "inventory-service", product_id,
                                             NULL, NULL, NULL, data, err)
                          : NULL;
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_store_append(app->store, stream, expected_version, &ev, 1,
                               NULL, err);
    eddy_event_unref(ev);
    return rc;
}

int orders_place_order(orders_app *app, const char *order_id,
                       const char *customer_id, json_t *items,
                       eddy_error *err)
{
    char event_id[EDDY_UUID_STRLEN];
    eddy_uuid7(event_id); /* also the flow's correlation id */
    orders_place_args args = {.customer_id = customer_id, .items = items,
                              .event_id = event_id};
    return eddy_repository_execute(app->orders, order_id, orders_decide_place,
                                   &args, 3, NULL, err);
}

static const char *order_id_of(const eddy_command *cmd, eddy_error *err)
{
    const char *order_id = NULL;
    if (!cmd->data ||
        json_unpack(cmd->data, "{s:s}", "order_id", &order_id) != 0) {
        set_err(err, EDDY_EINVAL, "%s without order_id", cmd->name);
        return NULL;
    }
    return order_id;
}

/*
 * ConfirmOrder / CancelOrder sent by a saga whose process does not hold the
 * OrderAggregate (`eddy service saga`): the command becomes a request event
 * (id derived from the command id, so a re-sent command stores it once)
 * that reaches the orders service through the transport, where
 * on_order_request runs the aggregate with the same command id.
 */
static int request_order_change(eddy_txn *txn, const eddy_command *cmd,
                                const char *type, const char *order_id,
                                eddy_error *err)
{
    json_t *data = json_deep_copy(cmd->data);
    if (data && json_object_set_new(data, "command_id", json_string(cmd->id)) != 0) {
        json_decref(data);
        data = NULL;
    }
    return append_result(txn, "orderreq", "order-service", type,
                         order_id, cmd, data, err);
}

static int on_confirm_order(eddy_txn *txn, const eddy_command *cmd,
                  void *user,
                            eddy_error *err)
{
    orders_app *app = user;
    const char *order_id = order_id_of(cmd, err);
    if (!order_id)
        return EDDY_EINVAL;
    if (!ORDERS_RUNS(app, ORDERS_PART_ORDERS))
        return request_order_change(txn, cmd, ORDERS_CONFIRM_REQUESTED,
                                    order_id, err);
    return eddy_repository_execute_txn(app->orders, txn, order_id,
                                       orders_decide_confirm, (void *)cmd, NULL,
                                       err);
}

static int on_cancel_order(eddy_txn *txn, const eddy_command *cmd,
                  void *user,
                           eddy_error *err)
{
    orders_app *app = user;
    const char *order_id = order_id_of(cmd, err);
    if (!order_id)
        return EDDY_EINVAL;
    if (!ORDERS_RUNS(app, ORDERS_PART_ORDERS))
        return request_order_change(txn, cmd, ORDERS_CANCEL_REQUESTED,
                                    order_id, err);
    return eddy_repository_execute_txn(app->orders, txn, order_id,
                                       orders_decide_cancel, (void *)cmd, NULL,
                                       err);
}

/* ---- PaymentService ----------------------------------------------------------- */

/* The `amount` of a command's data in cents (orders_cents: a command
 * stored by eddy 0.1.0 holds a real in major units), or -1 if missing. */
static int64_t amount_of(const eddy_command *cmd)
{
    json_t *v = cmd->data ? json_object_get(cmd->data, "amount") : NULL;
    return json_is_number(v) ? orders_cents(v) : -1;
}

static int on_process_payment(eddy_txn *txn, const eddy_command *cmd,
                  void *user,
                              eddy_error *err)
{
    (void)user;
    const char *order_id, *customer_id;
    int64_t amount = amount_of(cmd);
    if (amount < 0 || json_unpack(cmd->data, "{s:s, s:s}", "order_id",
                                  &order_id, "customer_id", &customer_id) != 0)
        return set_err(err, EDDY_EINVAL, "%s without order_id, customer_id "
                       "and amount", cmd->name);
    json_t *data = json_pack("{s:s, s:s, s:I}", "order_id", order_id,
                             "customer_id", customer_id, "amount",
                             (json_int_t)amount);
    return append_result(txn, "payment", "payment-service",
                         ORDERS_PAYMENT_REQUESTED, order_id, cmd, data, err);
}

static int on_refund_payment(eddy_txn *txn, const eddy_command *cmd,
                  void *user,
                             eddy_error *err)
{
    (void)user;
    const char *order_id, *payment_id;
    int64_t amount = amount_of(cmd);
    if (amount < 0 || json_unpack(cmd->data, "{s:s, s:s}", "order_id",
                                  &order_id, "payment_id", &payment_id) != 0)
        return set_err(err, EDDY_EINVAL, "%s without order_id, payment_id "
                       "and amount", cmd->name);
    json_t *data = json_pack("{s:s, s:s, s:I}", "payment_id", payment_id,
                             "order_id", order_id, "amount",
                             (json_int_t)amount);
    return append_result(txn, "payment", "payment-service",
                         ORDERS_PAYMENT_REFUNDED, order_id, cmd, data, err);
}

/*
 * The payment provider, simulated: a latency and an outcome drawn from the
 * seed and the order id, then payment.processed or payment.failed. A
 * request has ONE answer: both outcomes get the same id, derived from the
 * request's, so a re-delivery (at-least-once, e.g. after a crash) appends
 * nothing new even when it decides otherwise (a resumed demo with another
 * --seed or failure rate): the store refuses the second answer as a
 * duplicate id and the first one stands. Runs on the payment
 * subscription's workers, several orders at once.
 */
static int on_payment_requested(eddy_ctx *ctx, const eddy_event *ev,
                                void *user)
{
    orders_app *app = user;
    const char *order_id;
    json_int_t amount; /* cents */
    eddy_error err = {0};
    if (eddy_event_unpack(ev, &err, "{s:s, s:I}", "order_id", &order_id,
                          "amount", &amount) != EDDY_OK)
        return eddy_ctx_fail(ctx, EDDY_EINVAL, "%s", err.message);
    uint64_t h = orders_hash(app->cfg.seed, order_id);
    if (app->cfg.payment_latency_us > 0) {
        long us = (long)(orders_unit(orders_hash(h, "latency")) *
                         app->cfg.payment_latency_us);
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    bool ok = orders_unit(h) >= app->cfg.payment_failure_rate;
    const char *type = ok ? ORDERS_PAYMENT_PROCESSED : ORDERS_PAYMENT_FAILED;
    char payment_id[37], id[37], stream[ORDERS_ID_MAX + 16];
    eddy_id_derive(eddy_event_id(ev), "payment", payment_id);
    eddy_id_derive(eddy_event_id(ev), "payment.result", id);
    json_t *data = ok ? json_pack("{s:s, s:s, s:I, s:s}", "payment_id",
                                  payment_id, "order_id", order_id, "amount",
                                  amount, "status", "captured")
                      : json_pack("{s:s, s:I, s:s}", "order_id", order_id,
                                  "amount", amount, "reason", "card declined");
    eddy_event *out = data ? orders_event_new(type, "payment-service",
                                              order_id, id,
                                              eddy_event_correlation_id(ev),
                                              eddy_event_id(ev), data, &err)
                           : NULL;
    json_decref(data);
    if (!out)
        return eddy_ctx_fail(ctx, EDDY_ENOMEM, "%s", err.message);
    snprintf(stream, sizeof stream, "payment-%s", order_id);
    int rc = orders_append_once(app->store, stream, out, &err);
    eddy_event_unref(out);
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "%s %s: %s", type, order_id, err.message);
    return EDDY_OK;
}

/* ---- InventoryService ------------------------------------------------------- */

static int on_reserve_inventory(eddy_txn *txn, const eddy_command *cmd,
                  void *user,
                                eddy_error *err)
{
    (void)user;
    const char *order_id;
    json_t *items;
    if (!cmd->data || json_unpack(cmd->data, "{s:s, s:o}", "order_id",
                                  &order_id, "items", &items) != 0)
        return set_err(err, EDDY_EINVAL, "%s without order_id and items",
                       cmd->name);
    json_t *data = json_pack("{s:s, s:O}", "order_id", order_id, "items",
                             items);
    return append_result(txn, "inventory", "inventory-service",
                         ORDERS_RESERVATION_REQUESTED, order_id, cmd, data,
                         err);
}

static int on_release_inventory(eddy_txn *txn, const eddy_command *cmd,
                  void *user,
                                eddy_error *err)
{
    (void)user;
    const char *order_id;
    json_t *items;
    if (!cmd->data || json_unpack(cmd->data, "{s:s, s:o}", "order_id",
                                  &order_id, "items", &items) != 0)
        return set_err(err, EDDY_EINVAL, "%s without order_id and items",
                       cmd->name);
    json_t *data = json_pack("{s:s, s:O}", "order_id", order_id, "items",
                             items);
    return append_result(txn, "inventory", "inventory-service",
                         ORDERS_RELEASE_REQUESTED, order_id, cmd, data, err);
}

/* The stock table: one row per product; a product without a row has
 * none in stock. */
static const char STOCK_TABLE[] =
    "CREATE TABLE IF NOT EXISTS stock("
    " product_id TEXT PRIMARY KEY,"
    " quantity BIGINT NOT NULL CHECK (quantity >= 0))";

static int first_int(const eddy_row *row, void *user)
{
    *(int64_t *)user = eddy_row_int(row, 0);
    return 0;
}

/* The quantity of `product` in stock (0 when it has no row), or -1 with
 * `err` filled. */
static int64_t stock_of(eddy_txn *txn, const char *product, eddy_error *err)
{
    int64_t q = 0;
    if (eddy_txn_query(txn, first_int, &q, err,
                       "SELECT quantity FROM stock WHERE product_id = $1",
                       "s", product) != EDDY_OK)
        return -1;
    return q;
}

/* Appends `type` with `data` (taken) to inventory-<order_id> in the txn,
 * id derived from the request event. */
static int txn_result(eddy_txn *txn, const eddy_event *req, const char *type,
                      const char *order_id, json_t *data, eddy_error *err)
{
    char id[37], stream[ORDERS_ID_MAX + 16];
    eddy_id_derive(eddy_event_id(req), type, id);
    snprintf(stream, sizeof stream, "inventory-%s", order_id);
    eddy_event *ev = data ? orders_event_new(type, "inventory-service",
                                             order_id, id,
                                             eddy_event_correlation_id(req),
                                             eddy_event_id(req), data, err)
                          : NULL;
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_txn_append(txn, stream, EDDY_EXPECT_ANY, &ev, 1, NULL, err);
    eddy_event_unref(ev);
    return rc;
}

/*
 * The InventoryService, in the store's write transaction: stock changes and
 * the resulting event commit together with the subscription's checkpoint,
 * exactly once. The writer thread is the only writer, so checking every
 * line and then decrementing cannot race; CHECK (quantity >= 0) stands
 * guard anyway.
 */
static int on_inventory_event(eddy_ctx *ctx, const eddy_event *ev,
                              eddy_txn *txn, void *user)
{
    (void)user;
    const char *type = eddy_event_type(ev);
    eddy_error err = {0};
    const char *order_id, *product;
    json_t *items, *item;
    json_int_t qty;
    size_t i;
    if (strcmp(type, ORDERS_STOCK_ADDED) == 0) {
        if (eddy_event_unpack(ev, &err, "{s:s, s:I}", "product_id", &product,
                              "quantity", &qty) != EDDY_OK ||
            eddy_txn_exec(txn, NULL, &err,
                          "INSERT INTO stock(product_id, quantity) "
                          "VALUES($1, $2) ON CONFLICT (product_id) DO UPDATE "
                          "SET quantity = stock.quantity + excluded.quantity",
                          "sI", product, (int64_t)qty) != EDDY_OK)
            goto fail;
        return EDDY_OK;
    }
    bool reserve = strcmp(type, ORDERS_RESERVATION_REQUESTED) == 0;
    bool release = strcmp(type, ORDERS_RELEASE_REQUESTED) == 0;
    if (!reserve && !release)
        return EDDY_OK; /* its own results, which it does not react to */
    if (eddy_event_unpack(ev, &err, "{s:s, s:o}", "order_id", &order_id,
                          "items", &items) != EDDY_OK)
        goto fail;
    if (reserve) {
        json_array_foreach(items, i, item) {
            if (json_unpack(item, "{s:s, s:I}", "product_id", &product,
                            "quantity", &qty) != 0) {
                set_err(&err, EDDY_EINVAL, "order %s: bad item", order_id);
                goto fail;
            }
            int64_t have = stock_of(txn, product, &err);
            if (have < 0)
                goto fail;
            if (have < qty) {
                json_t *data = json_pack("{s:s, s:s, s:I, s:I}", "order_id",
                                         order_id, "product_id", product,
                                         "requested", qty, "available",
                                         (json_int_t)have);
                if (txn_result(txn, ev, ORDERS_RESERVATION_FAILED, order_id,
                               data, &err) != EDDY_OK)
                    goto fail;
                return EDDY_OK;
            }
        }
    }
    json_array_foreach(items, i, item) {
        if (json_unpack(item, "{s:s, s:I}", "product_id", &product,
                        "quantity", &qty) != 0) {
            set_err(&err, EDDY_EINVAL, "order %s: bad item", order_id);
            goto fail;
        }
        /* a release puts back what a reservation took: the row exists */
        if (eddy_txn_exec(txn, NULL, &err,
                          reserve ? "UPDATE stock SET quantity = quantity - $2 "
                                    "WHERE product_id = $1"
                                  : "UPDATE stock SET quantity = quantity + $2 "
                                    "WHERE product_id = $1",
                          "sI", product, (int64_t)qty) != EDDY_OK)
            goto fail;
    }
    json_t *data = json_pack("{s:s, s:o}", "order_id", order_id, "items",
                             json_deep_copy(items)); /* not the event's own */
    if (txn_result(txn, ev, reserve ? ORDERS_INVENTORY_RESERVED
                                    : ORDERS_INVENTORY_RELEASED,
                   order_id, data, &err) != EDDY_OK)
        goto fail;
    return EDDY_OK;
fail:
    return eddy_ctx_fail(ctx, err.code ? err.code : EDDY_EIO, "%s %s: %s",
                         type, eddy_event_id(ev), err.message);
}

/* ---- EmailNotificationHandler ----------------------------------------------- */

/* sent_mail is keyed by the event that caused the mail: a mail is sent
 * (recorded) once per event. A store written by eddy 0.1.0 has an extra
 * `id INTEGER PRIMARY KEY` column, which the inserts below leave to
 * SQLite. */
static const char SENT_MAIL_TABLE[] =
    "CREATE TABLE IF NOT EXISTS sent_mail("
    " event_id TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL,"          /* 'welcome' or 'order_confirmation' */
    " recipient TEXT NOT NULL,"
    " about TEXT NOT NULL,"         /* the user or order id */
    " sent_us BIGINT NOT NULL)";
static const char RECIPIENTS_TABLE[] =
    "CREATE TABLE IF NOT EXISTS mail_recipients("
    " user_id TEXT PRIMARY KEY, email TEXT NOT NULL, full_name TEXT NOT NULL)";

/* Welcome mail: remembers the address for later mails and "sends" one. */
static int on_user_registered(eddy_ctx *ctx, const eddy_event *ev,
                              eddy_txn *txn, void *user)
{
    (void)user;
    eddy_error err = {0};
    const char *user_id, *email, *name;
    if (eddy_event_unpack(ev, &err, "{s:s, s:s, s:s}", "user_id", &user_id,
                          "email", &email, "full_name", &name) != EDDY_OK ||
        eddy_txn_exec(txn, NULL, &err,
                      "INSERT INTO mail_recipients(user_id, email, full_name) "
                      "VALUES($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET "
                      "email = excluded.email, full_name = excluded.full_name",
                      "sss", user_id, email, name) != EDDY_OK ||
        eddy_txn_exec(txn, NULL, &err,
                      "INSERT INTO sent_mail(kind, recipient, about, event_id, "
                      "sent_us) VALUES('welcome', $1, $2, $3, $4)",
                      "sssI", email, user_id, eddy_event_id(ev),
                      eddy_txn_now_us(txn)) != EDDY_OK)
        return eddy_ctx_fail(ctx, err.code ? err.code : EDDY_EIO, "%s",
                             err.message);
    return EDDY_OK;
}

/* Confirmation mail, to the customer's registered address. */
static int on_order_confirmed(eddy_ctx *ctx, const eddy_event *ev,
                              eddy_txn *txn, void *user)
{
    (void)user;
    eddy_error err = {0};
    const char *order_id, *customer_id;
    int64_t sent = 0;
    /* CAST: a parameter in a select list has no type of its own on every
     * engine */
    if (eddy_event_unpack(ev, &err, "{s:s, s:s}", "order_id", &order_id,
                          "customer_id", &customer_id) != EDDY_OK ||
        eddy_txn_exec(txn, &sent, &err,
                      "INSERT INTO sent_mail(kind, recipient, about, event_id, "
                      "sent_us) SELECT 'order_confirmation', email, "
                      "CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT) "
                      "FROM mail_recipients WHERE user_id = $4",
                      "ssIs", order_id, eddy_event_id(ev),
                      eddy_txn_now_us(txn), customer_id) != EDDY_OK)
        return eddy_ctx_fail(ctx, err.code ? err.code : EDDY_EIO, "%s",
                             err.message);
    if (sent != 1) /* retried: the welcome mail may lag */
        return eddy_ctx_fail(ctx, EDDY_ENOTFOUND,
                             "order %s: no address for customer %s", order_id,
                             customer_id);
    return EDDY_OK;
}

/* Creates the tables of the parts this process runs (in the store's next
 * write transaction), before their subscriptions deliver anything. */
static int tables_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    orders_app *app = user;
    int rc = EDDY_OK;
    if (ORDERS_RUNS(app, ORDERS_PART_INVENTORY))
        rc = eddy_txn_exec(txn, NULL, err, STOCK_TABLE, "");
    if (rc == EDDY_OK && ORDERS_RUNS(app, ORDERS_PART_EMAIL))
        rc = eddy_txn_exec(txn, NULL, err, SENT_MAIL_TABLE, "");
    if (rc == EDDY_OK && ORDERS_RUNS(app, ORDERS_PART_EMAIL))
        rc = eddy_txn_exec(txn, NULL, err, RECIPIENTS_TABLE, "");
    return rc;
}

/* ---- OrderService requests (services in separate processes) ------------------ */

/*
 * Runs the OrderAggregate command a request event asks for (at-least-once
 * delivery): placement derives order.placed's id from the request id and
 * takes "already exists" as done (a redelivered request); confirmation and
 * cancellation rebuild the saga's command (same id, so the same derived
 * event id) and are no-ops when already applied (orders_decide_confirm/cancel).
 */
static int on_order_request(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    orders_app *app = user;
    const char *type = eddy_event_type(ev);
    const char *order_id = NULL, *command_id = NULL, *customer_id = NULL;
    json_t *items = NULL;
    eddy_error err = {0};
    int rc;
    if (strcmp(type, ORDERS_PLACE_REQUESTED) == 0) {
        if (eddy_event_unpack(ev, &err, "{s:s, s:s, s:o}", "order_id",
                              &order_id, "customer_id", &customer_id,
                              "items", &items) != EDDY_OK)
            return eddy_ctx_fail(ctx, EDDY_EINVAL, "%s", err.message);
        char event_id[EDDY_UUID_STRLEN];
        eddy_id_derive(eddy_event_id(ev), ORDERS_ORDER_PLACED, event_id);
        orders_place_args args = {.customer_id = customer_id, .items = items,
                                  .event_id = event_id};
        rc = eddy_repository_execute(app->orders, order_id, orders_decide_place,
                                     &args, 5, NULL, &err);
        if (rc == EDDY_EEXIST)
            rc = EDDY_OK; /* placed by an earlier delivery of this request */
    } else {
        bool confirm = strcmp(type, ORDERS_CONFIRM_REQUESTED) == 0;
        if (!confirm && strcmp(type, ORDERS_CANCEL_REQUESTED) != 0)
            return EDDY_OK;
        if (eddy_event_unpack(ev, &err, "{s:s, s:s}", "order_id", &order_id,
                              "command_id", &command_id) != EDDY_OK)
            return eddy_ctx_fail(ctx, EDDY_EINVAL, "%s", err.message);
        eddy_command cmd = {
            .name = confirm ? ORDERS_CMD_CONFIRM_ORDER : ORDERS_CMD_CANCEL_ORDER,
            .id = command_id,
            .data = (json_t *)eddy_event_data(ev), /* only read */
            .correlation_id = eddy_event_correlation_id(ev),
            .causation_id = eddy_event_id(ev),
        };
        rc = eddy_repository_execute(app->orders, order_id,
                                     confirm ? orders_decide_confirm
                                             : orders_decide_cancel,
                                     &cmd, 5, NULL, &err);
    }
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "%s %s: %s", type, order_id, err.message);
    return EDDY_OK;
}

/* ---- wiring ------------------------------------------------------------------ */

int orders_services_register(orders_app *app, eddy_error *err)
{
    /* Transactional: a saga's command runs in the saga's own transaction,
     * with its events (eddy/command.h). */
    static const struct {
        const char *name;
        eddy_command_txn_fn fn;
    } handlers[] = {
        {ORDERS_CMD_PROCESS_PAYMENT, on_process_payment},
        {ORDERS_CMD_REFUND_PAYMENT, on_refund_payment},
        {ORDERS_CMD_RESERVE_INVENTORY, on_reserve_inventory},
        {ORDERS_CMD_RELEASE_INVENTORY, on_release_inventory},
        {ORDERS_CMD_CONFIRM_ORDER, on_confirm_order},
        {ORDERS_CMD_CANCEL_ORDER, on_cancel_order},
    };
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
        int rc = eddy_command_bus_register_txn(app->commands,
                                               handlers[i].name,
                                               handlers[i].fn, app, err);
        if (rc != EDDY_OK)
            return rc;
    }
    return EDDY_OK;
}

/* Starts one of the domain's durable subscriptions into `*out`: a plain
 * handler (at-least-once) when `txn_fn` is NULL, else a transactional one. */
static int start_subscription(orders_app *app, const char *name,
                              const char *pattern, eddy_handler_fn fn,
                              eddy_txn_handler_fn txn_fn, unsigned workers,
                              eddy_durable **out, eddy_error *err)
{
    eddy_durable_options o = {
        .name = name,
        .patterns = (const char *const[]){pattern}, .pattern_count = 1,
        .mode = txn_fn ? EDDY_DELIVERY_TRANSACTIONAL : EDDY_DELIVERY_AT_LEAST_ONCE,
        .handler = fn,
        .txn_handler = txn_fn,
        .user = app,
        .workers = workers ? workers : app->cfg.workers,
        .metrics = app->cfg.metrics,
    };
    *out = eddy_durable_start(app->store, &o, err);
    return *out ? EDDY_OK : err && err->code ? err->code : EDDY_EIO;
}

int orders_services_start(orders_app *app, eddy_error *err)
{
    int rc = EDDY_OK;
    if (ORDERS_RUNS(app, ORDERS_PART_INVENTORY | ORDERS_PART_EMAIL))
        rc = eddy_store_transact(app->store, tables_setup, app, err);
    /* Order requests come from other processes only (multi-process runs). */
    if (rc == EDDY_OK && app->cfg.parts != 0 &&
        (app->cfg.parts & ORDERS_PART_ORDERS))
        rc = start_subscription(app, "order-service-requests", "order.*",
                                on_order_request, NULL, 0, &app->order_requests, err);
    if (rc == EDDY_OK && ORDERS_RUNS(app, ORDERS_PART_INVENTORY))
        rc = start_subscription(app, ORDERS_SUB_INVENTORY, "inventory.*", NULL,
                                on_inventory_event, 0, &app->inventory, err);
    if (rc == EDDY_OK && ORDERS_RUNS(app, ORDERS_PART_EMAIL))
        rc = start_subscription(app, ORDERS_SUB_WELCOME_MAIL, ORDERS_USER_REGISTERED,
                                NULL, on_user_registered, 0, &app->welcome_mail, err);
    if (rc == EDDY_OK && ORDERS_RUNS(app, ORDERS_PART_EMAIL))
        rc = start_subscription(app, ORDERS_SUB_CONFIRM_MAIL, ORDERS_ORDER_CONFIRMED,
                                NULL, on_order_confirmed, 0, &app->confirm_mail, err);
    if (rc == EDDY_OK && ORDERS_RUNS(app, ORDERS_PART_PAYMENT))
        rc = start_subscription(app, ORDERS_SUB_PAYMENT, ORDERS_PAYMENT_REQUESTED,
                                on_payment_requested, NULL,
                                app->cfg.payment_workers ? app->cfg.payment_workers
                                                         : 32,
                                &app->payment, err);
    return rc;
}
