/*
 * examples/orders/saga.c - the OrderProcessingSaga, one instance per order.
 *
 *   order.placed                 -> ProcessPayment; deadline "order"
 *   payment.processed            -> ReserveInventory
 *   payment.failed               -> CancelOrder(payment_failed); failed
 *   inventory.reserved           -> ConfirmOrder; completed
 *   inventory.reservation.failed -> RefundPayment (paid), CancelOrder(
 *                                   out_of_stock); failed
 *   deadline "order" passed      -> CancelOrder(timeout) (+ RefundPayment if
 *                                   paid); the instance stays to compensate
 *                                   answers that arrive late (refund a late
 *                                   payment, release a late reservation)
 *                                   until they come or "abandon" passes.
 *
 * The state ({step, customer_id, amount (cents), items, payment_id}) is
 * persisted by the library with the checkpoint; every command is sent at
 * least once and its handler is idempotent.
 */
#include <string.h>

#include "orders/internal.h"

/* After the deadline, how long the instance waits for a late answer to
 * compensate it before giving up (a provider that never answers). */
#define ABANDON_MS (10 * 60 * 1000)

static const char *const START_TYPES[] = {ORDERS_ORDER_PLACED};
static const char *const HANDLED_TYPES[] = {
    ORDERS_PAYMENT_PROCESSED, ORDERS_PAYMENT_FAILED, ORDERS_INVENTORY_RESERVED,
    ORDERS_RESERVATION_FAILED};

/* Every event of the flow has the order id as its subject. */
static int saga_correlate(const eddy_event *ev, char *id, size_t size,
                          void *user)
{
    (void)user;
    const char *subject = eddy_event_subject(ev);
    if (!subject || !*subject)
        return EDDY_ENOTFOUND;
    if ((size_t)snprintf(id, size, "%s", subject) >= size)
        return EDDY_ETOOBIG;
    return EDDY_OK;
}

static const char *step_of(json_t *state)
{
    const char *s = json_string_value(json_object_get(state, "step"));
    return s ? s : "";
}

static void set_step(json_t *state, const char *step)
{
    json_object_set_new(state, "step", json_string(step));
}

static int cancel(eddy_saga_ctx *sc, const char *reason)
{
    return eddy_saga_send(sc, ORDERS_CMD_CANCEL_ORDER, "{s:s, s:s}",
                          "order_id", eddy_saga_id(sc), "reason", reason);
}

/* The amount in the state is cents; an instance started by eddy 0.1.0
 * holds it in major units as a real, which orders_cents converts. */
static int refund(eddy_saga_ctx *sc, json_t *state)
{
    return eddy_saga_send(sc, ORDERS_CMD_REFUND_PAYMENT, "{s:s, s:O, s:I}",
                          "order_id", eddy_saga_id(sc), "payment_id",
                          json_object_get(state, "payment_id"), "amount",
                          (json_int_t)orders_cents(json_object_get(state, "amount")));
}

static int saga_on_event(eddy_saga_ctx *sc, json_t *state,
                         const eddy_event *ev, void *user)
{
    const orders_config *cfg = user;
    const char *type = eddy_event_type(ev);
    const char *step = step_of(state);
    const char *timeout = eddy_saga_timeout_name(sc);
    const char *payment_id;
    eddy_error err = {0};
    int rc = EDDY_OK;

    if (timeout) {
        if (strcmp(timeout, "abandon") == 0)
            return eddy_saga_fail(sc, "CANCELLED");
        if (strcmp(step, "payment") == 0) {
            /* the payment may still answer: wait for it to refund it */
            rc = cancel(sc, ORDERS_REASON_TIMEOUT);
        } else if (strcmp(step, "inventory") == 0) {
            if ((rc = refund(sc, state)) == EDDY_OK)
                rc = cancel(sc, ORDERS_REASON_TIMEOUT);
        } else {
            return EDDY_OK;
        }
        if (rc == EDDY_OK) {
            json_object_set_new(state, "timed_out_in", json_string(step));
            set_step(state, "timed_out");
            rc = eddy_saga_set_timeout(sc, "abandon", ABANDON_MS);
        }
        return rc;
    }

    if (strcmp(type, ORDERS_ORDER_PLACED) == 0) {
        const char *customer_id;
        json_int_t amount;
        json_t *items;
        if (!eddy_saga_is_new(sc))
            return EDDY_OK; /* the same order placed twice: ignore */
        if (eddy_event_unpack(ev, &err, "{s:s, s:I, s:o}", "customer_id",
                              &customer_id, "amount", &amount, "items",
                              &items) != EDDY_OK)
            return eddy_saga_ctx_fail(sc, EDDY_EINVAL, "%s", err.message);
        json_object_set_new(state, "customer_id", json_string(customer_id));
        json_object_set_new(state, "amount", json_integer(amount));
        /* a copy: jansson's reference counts are not atomic, and the
         * event's data is not ours to share */
        json_object_set_new(state, "items", json_deep_copy(items));
        set_step(state, "payment");
        if ((rc = eddy_saga_set_timeout(sc, "order", cfg->saga_timeout_ms)) != EDDY_OK)
            return rc;
        return eddy_saga_send(sc, ORDERS_CMD_PROCESS_PAYMENT,
                              "{s:s, s:s, s:I}", "order_id", eddy_saga_id(sc),
                              "customer_id", customer_id, "amount", amount);
    }

    if (strcmp(type, ORDERS_PAYMENT_PROCESSED) == 0) {
        if (eddy_event_unpack(ev, &err, "{s:s}", "payment_id", &payment_id) != EDDY_OK)
            return eddy_saga_ctx_fail(sc, EDDY_EINVAL, "%s", err.message);
        json_object_set_new(state, "payment_id", json_string(payment_id));
        if (strcmp(step, "payment") == 0) {
            set_step(state, "inventory");
            return eddy_saga_send(sc, ORDERS_CMD_RESERVE_INVENTORY,
                                  "{s:s, s:O}", "order_id", eddy_saga_id(sc),
                                  "items", json_object_get(state, "items"));
        }
        if (strcmp(step, "timed_out") == 0) { /* paid after the deadline */
            if ((rc = refund(sc, state)) == EDDY_OK)
                rc = eddy_saga_fail(sc, "CANCELLED");
        }
        return rc;
    }

    if (strcmp(type, ORDERS_PAYMENT_FAILED) == 0) {
        if (strcmp(step, "payment") == 0) {
            if ((rc = cancel(sc, ORDERS_REASON_PAYMENT)) == EDDY_OK)
                rc = eddy_saga_fail(sc, "CANCELLED");
        } else if (strcmp(step, "timed_out") == 0) {
            rc = eddy_saga_fail(sc, "CANCELLED"); /* nothing to give back */
        }
        return rc;
    }

    if (strcmp(type, ORDERS_INVENTORY_RESERVED) == 0) {
        if (strcmp(step, "inventory") == 0) {
            if ((rc = eddy_saga_send(sc, ORDERS_CMD_CONFIRM_ORDER, "{s:s}",
                                     "order_id", eddy_saga_id(sc))) == EDDY_OK)
                rc = eddy_saga_complete(sc, "CONFIRMED");
        } else if (strcmp(step, "timed_out") == 0) { /* reserved too late */
            if ((rc = eddy_saga_send(sc, ORDERS_CMD_RELEASE_INVENTORY,
                                     "{s:s, s:O}", "order_id", eddy_saga_id(sc),
                                     "items", json_object_get(state, "items"))) == EDDY_OK)
                rc = eddy_saga_fail(sc, "CANCELLED");
        }
        return rc;
    }

    if (strcmp(type, ORDERS_RESERVATION_FAILED) == 0) {
        if (strcmp(step, "inventory") == 0) {
            /* payment.processed came first, so the order was paid */
            if ((rc = refund(sc, state)) == EDDY_OK &&
                (rc = cancel(sc, ORDERS_REASON_STOCK)) == EDDY_OK)
                rc = eddy_saga_fail(sc, "CANCELLED");
        } else if (strcmp(step, "timed_out") == 0) {
            rc = eddy_saga_fail(sc, "CANCELLED"); /* refunded at the deadline */
        }
        return rc;
    }
    return EDDY_OK;
}

const eddy_saga_def orders_saga_def = {
    .name = ORDERS_SAGA,
    .start_types = START_TYPES,
    .start_count = sizeof START_TYPES / sizeof START_TYPES[0],
    .handled_types = HANDLED_TYPES,
    .handled_count = sizeof HANDLED_TYPES / sizeof HANDLED_TYPES[0],
    .correlate = saga_correlate,
    .on_event = saga_on_event,
    .user = NULL, /* set per run: see orders_app_start */
};
