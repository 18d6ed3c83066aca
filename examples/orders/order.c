/*
 * examples/orders/order.c - the OrderAggregate: an event-sourced order.
 *
 * State: PENDING after order.placed, then CONFIRMED or CANCELLED. The
 * commands check the specification's invariants ("Order already exists",
 * "Order cannot be confirmed") and raise events whose ids are derived from
 * the command id, so a command run twice stores its event once.
 */
#include <stdio.h>
#include <string.h>

#include "orders/internal.h"

typedef struct order_state {
    orders_status status;
    char customer_id[ORDERS_ID_MAX];
    int64_t amount; /* cents */
    int item_count;
    char cancel_reason[32];
} order_state;

const char *orders_status_name(orders_status s)
{
    switch (s) {
    case ORDERS_PENDING: return "PENDING";
    case ORDERS_CONFIRMED: return "CONFIRMED";
    case ORDERS_CANCELLED: return "CANCELLED";
    default: return "NONE";
    }
}

static int fail(eddy_error *err, int code, const char *msg, const char *id)
{
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, msg, id);
    }
    return code;
}

/* Folds one event into the state. Events out of order for the state
 * machine are refused: they would mean a corrupt stream. */
static int order_apply(void *state, const eddy_event *ev, eddy_error *err)
{
    order_state *o = state;
    const char *type = eddy_event_type(ev);
    const char *id = eddy_event_subject(ev) ? eddy_event_subject(ev) : "?";
    if (strcmp(type, ORDERS_ORDER_PLACED) == 0) {
        const char *customer;
        json_t *items;
        json_int_t amount;
        if (o->status != ORDERS_NONE)
            return fail(err, EDDY_ESTATE, "order %s placed twice", id);
        if (eddy_event_unpack(ev, err, "{s:s, s:I, s:o}", "customer_id",
                              &customer, "amount", &amount, "items",
                              &items) != EDDY_OK)
            return EDDY_EINVAL;
        snprintf(o->customer_id, sizeof o->customer_id, "%s", customer);
        o->amount = (int64_t)amount;
        o->item_count = (int)json_array_size(items);
        o->status = ORDERS_PENDING;
    } else if (strcmp(type, ORDERS_ORDER_CONFIRMED) == 0) {
        if (o->status != ORDERS_PENDING)
            return fail(err, EDDY_ESTATE, "order %s confirmed while not pending", id);
        o->status = ORDERS_CONFIRMED;
    } else if (strcmp(type, ORDERS_ORDER_CANCELLED) == 0) {
        const char *reason;
        if (o->status != ORDERS_PENDING)
            return fail(err, EDDY_ESTATE, "order %s cancelled while not pending", id);
        if (eddy_event_unpack(ev, err, "{s:s}", "reason", &reason) != EDDY_OK)
            return EDDY_EINVAL;
        snprintf(o->cancel_reason, sizeof o->cancel_reason, "%s", reason);
        o->status = ORDERS_CANCELLED;
    }
    return EDDY_OK; /* other types: not the aggregate's business */
}

const eddy_aggregate_type orders_order_type = {
    .name = "order",
    .source = "order-service",
    .state_size = sizeof(order_state),
    .apply = order_apply,
};

/* ---- commands ------------------------------------------------------------ */

/* Raises `type` with `data` (taken) on `agg`, id derived from `cmd_id`. */
static int raise_derived(eddy_aggregate *agg, const char *type, json_t *data,
                         const char *cmd_id, const char *correlation_id,
                         eddy_error *err)
{
    char id[37];
    eddy_id_derive(cmd_id, type, id);
    eddy_event *ev = orders_event_new(type, orders_order_type.source,
                                      eddy_aggregate_id(agg), id,
                                      correlation_id, cmd_id, data, err);
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_aggregate_raise_event(agg, ev, err);
    eddy_event_unref(ev);
    return rc;
}

int orders_decide_place(eddy_aggregate *agg, void *state, void *user,
                        eddy_error *err)
{
    const orders_place_args *a = user;
    order_state *o = state;
    if (o->status != ORDERS_NONE)
        return fail(err, EDDY_EEXIST, "order %s already exists",
                    eddy_aggregate_id(agg));
    /* cents: the sum is exact (the schema checks the items' shape) */
    int64_t amount = 0;
    size_t i;
    json_t *item;
    json_array_foreach(a->items, i, item) {
        json_int_t qty = json_integer_value(json_object_get(item, "quantity"));
        amount += (int64_t)qty * orders_cents(json_object_get(item, "price"));
    }
    json_t *data = json_pack("{s:s, s:s, s:I, s:O}", "order_id",
                             eddy_aggregate_id(agg), "customer_id",
                             a->customer_id, "amount", (json_int_t)amount,
                             "items", a->items);
    if (!data)
        return fail(err, EDDY_EINVAL, "order %s: bad items", eddy_aggregate_id(agg));
    eddy_event *ev = orders_event_new(ORDERS_ORDER_PLACED,
                                      orders_order_type.source,
                                      eddy_aggregate_id(agg), a->event_id,
                                      a->event_id, NULL, data, err);
    json_decref(data);
    if (!ev)
        return err && err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_aggregate_raise_event(agg, ev, err);
    eddy_event_unref(ev);
    return rc;
}

int orders_decide_confirm(eddy_aggregate *agg, void *state, void *user,
                          eddy_error *err)
{
    const eddy_command *cmd = user;
    order_state *o = state;
    if (o->status == ORDERS_CONFIRMED)
        return EDDY_OK; /* confirmed already (a re-sent command): nothing to do */
    if (o->status != ORDERS_PENDING)
        return fail(err, EDDY_ESTATE, "order %s cannot be confirmed",
                    eddy_aggregate_id(agg));
    json_t *data = json_pack("{s:s, s:s}", "order_id", eddy_aggregate_id(agg),
                             "customer_id", o->customer_id);
    return raise_derived(agg, ORDERS_ORDER_CONFIRMED, data, cmd->id,
                         cmd->correlation_id, err);
}

int orders_decide_cancel(eddy_aggregate *agg, void *state, void *user,
                         eddy_error *err)
{
    const eddy_command *cmd = user;
    order_state *o = state;
    const char *reason = NULL;
    if (json_unpack(cmd->data, "{s:s}", "reason", &reason) != 0)
        return fail(err, EDDY_EINVAL, "CancelOrder %s without a reason",
                    eddy_aggregate_id(agg));
    if (o->status == ORDERS_CANCELLED)
        return EDDY_OK; /* cancelled already: a re-sent command */
    if (o->status != ORDERS_PENDING)
        return fail(err, EDDY_ESTATE, "order %s cannot be cancelled",
                    eddy_aggregate_id(agg));
    json_t *data = json_pack("{s:s, s:s}", "order_id", eddy_aggregate_id(agg),
                             "reason", reason);
    return raise_derived(agg, ORDERS_ORDER_CANCELLED, data, cmd->id,
                         cmd->correlation_id, err);
}
