/*
 * examples/orders/schemas.c - the JSON Schemas (draft-07) of the order
 * domain's events, and their upcasters.
 *
 * Every event the demo appends carries the newest version of its type (see
 * SCHEMAS) and is validated against these schemas by the store's check hook
 * before it is accepted, so a malformed event never reaches the log. The
 * older versions are registered too, with their upcasters, so an old event
 * (user.registered 1.0; the money-carrying types 1.0, written by eddy
 * 0.1.0) is read back in the newest version by the store's transform hook.
 */
#include <math.h>
#include <string.h>

#include "orders/orders.h"

/*
 * MONEY. Amounts and prices are integers in minor units (cents) from
 * version 2.0 on: a double cannot hold 507.70 exactly, so sums drift and a
 * check that money balances cannot be exact. Version 1.0 (eddy 0.1.0) had
 * them as JSON numbers in major units; its schemas stay registered so old
 * events still validate, and money_v1_to_v2 upcasts them on read.
 */
#define MONEY_V1 "{\"type\": \"number\", \"minimum\": 0}"
#define MONEY_V2                                                               \
    "{\"type\": \"integer\", \"minimum\": 0, \"maximum\": 9007199254740991,"    \
    " \"description\": \"minor units (cents)\"}"

/* The shape of one order line, shared by several schemas; `money` is the
 * price's schema. */
#define ITEMS_SCHEMA(money)                                                    \
    "{\"type\": \"array\", \"minItems\": 1, \"maxItems\": 50,"                 \
    " \"items\": {\"type\": \"object\","                                       \
    "  \"required\": [\"product_id\", \"quantity\", \"price\"],"               \
    "  \"additionalProperties\": false,"                                       \
    "  \"properties\": {\"product_id\": {\"type\": \"string\", \"minLength\": 1},"  \
    "   \"quantity\": {\"type\": \"integer\", \"minimum\": 1},"                \
    "   \"price\": " money "}}}"

#define ID_SCHEMA "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 63}"
#define HEAD(title)                                                            \
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","               \
    " \"title\": \"" title "\", \"type\": \"object\","

static const char USER_REGISTERED_V1[] =
    HEAD("user.registered 1.0")
    " \"required\": [\"user_id\", \"email\", \"name\"],"
    " \"properties\": {\"user_id\": " ID_SCHEMA ","
    "  \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    "  \"name\": {\"type\": \"string\", \"minLength\": 1}}}";

static const char USER_REGISTERED_V2[] =
    HEAD("user.registered 2.0")
    " \"required\": [\"user_id\", \"email\", \"full_name\", \"registration_source\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"user_id\": " ID_SCHEMA ","
    "  \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    "  \"full_name\": {\"type\": \"string\", \"minLength\": 1},"
    "  \"registration_source\": {\"type\": \"string\"}}}";

/* The types that carry money exist in 1.0 (MONEY_V1) and 2.0 (MONEY_V2):
 * one text per type, instantiated for both. */
#define ORDER_PLACED(v, money)                                                 \
    HEAD("order.placed " v)                                                    \
    " \"required\": [\"order_id\", \"customer_id\", \"amount\", \"items\"],"   \
    " \"additionalProperties\": false,"                                        \
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"customer_id\": " ID_SCHEMA "," \
    "  \"amount\": " money ", \"items\": " ITEMS_SCHEMA(money) "}}"

#define PAYMENT_REQUESTED(v, money)                                            \
    HEAD("payment.requested " v)                                               \
    " \"required\": [\"order_id\", \"customer_id\", \"amount\"],"              \
    " \"additionalProperties\": false,"                                        \
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"customer_id\": " ID_SCHEMA "," \
    "  \"amount\": " money "}}"

#define PAYMENT_PROCESSED(v, money)                                            \
    HEAD("payment.processed " v)                                               \
    " \"required\": [\"payment_id\", \"order_id\", \"amount\", \"status\"],"   \
    " \"additionalProperties\": false,"                                        \
    " \"properties\": {\"payment_id\": {\"type\": \"string\", \"format\": \"uuid\"}," \
    "  \"order_id\": " ID_SCHEMA ", \"amount\": " money ","                    \
    "  \"status\": {\"const\": \"captured\"}}}"

#define PAYMENT_FAILED(v, money)                                               \
    HEAD("payment.failed " v)                                                  \
    " \"required\": [\"order_id\", \"amount\", \"reason\"],"                   \
    " \"additionalProperties\": false,"                                        \
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"amount\": " money ","    \
    "  \"reason\": {\"type\": \"string\", \"minLength\": 1}}}"

#define PAYMENT_REFUNDED(v, money)                                             \
    HEAD("payment.refunded " v)                                                \
    " \"required\": [\"payment_id\", \"order_id\", \"amount\"],"               \
    " \"additionalProperties\": false,"                                        \
    " \"properties\": {\"payment_id\": {\"type\": \"string\", \"format\": \"uuid\"}," \
    "  \"order_id\": " ID_SCHEMA ", \"amount\": " money "}}"

/* inventory.reservation.requested, inventory.reserved,
 * inventory.release.requested, inventory.released: {order_id, items}. */
#define ORDER_ITEMS(title, money)                                              \
    HEAD(title)                                                                \
    " \"required\": [\"order_id\", \"items\"],"                                \
    " \"additionalProperties\": false,"                                        \
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"items\": " ITEMS_SCHEMA(money) "}}"

static const char ORDER_CONFIRMED[] =
    HEAD("order.confirmed 1.0")
    " \"required\": [\"order_id\", \"customer_id\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"customer_id\": " ID_SCHEMA "}}";

static const char ORDER_CANCELLED[] =
    HEAD("order.cancelled 1.0")
    " \"required\": [\"order_id\", \"reason\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ","
    "  \"reason\": {\"enum\": [\"payment_failed\", \"out_of_stock\", \"timeout\"]}}}";

static const char RESERVATION_FAILED[] =
    HEAD("inventory.reservation.failed 1.0")
    " \"required\": [\"order_id\", \"product_id\", \"requested\", \"available\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"product_id\": " ID_SCHEMA ","
    "  \"requested\": {\"type\": \"integer\", \"minimum\": 1},"
    "  \"available\": {\"type\": \"integer\", \"minimum\": 0}}}";

static const char STOCK_ADDED[] =
    HEAD("inventory.stock.added 1.0")
    " \"required\": [\"product_id\", \"quantity\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"product_id\": " ID_SCHEMA ","
    "  \"quantity\": {\"type\": \"integer\", \"minimum\": 1}}}";

/* Every schema, oldest version of a type first: the last entry of a type
 * is the version the domain writes (orders_event_version). */
static const struct {
    const char *type, *version, *text;
} SCHEMAS[] = {
    {ORDERS_USER_REGISTERED, "1.0", USER_REGISTERED_V1},
    {ORDERS_USER_REGISTERED, "2.0", USER_REGISTERED_V2},
    {ORDERS_ORDER_PLACED, "1.0", ORDER_PLACED("1.0", MONEY_V1)},
    {ORDERS_ORDER_PLACED, "2.0", ORDER_PLACED("2.0", MONEY_V2)},
    {ORDERS_ORDER_CONFIRMED, "1.0", ORDER_CONFIRMED},
    {ORDERS_ORDER_CANCELLED, "1.0", ORDER_CANCELLED},
    {ORDERS_PAYMENT_REQUESTED, "1.0", PAYMENT_REQUESTED("1.0", MONEY_V1)},
    {ORDERS_PAYMENT_REQUESTED, "2.0", PAYMENT_REQUESTED("2.0", MONEY_V2)},
    {ORDERS_PAYMENT_PROCESSED, "1.0", PAYMENT_PROCESSED("1.0", MONEY_V1)},
    {ORDERS_PAYMENT_PROCESSED, "2.0", PAYMENT_PROCESSED("2.0", MONEY_V2)},
    {ORDERS_PAYMENT_FAILED, "1.0", PAYMENT_FAILED("1.0", MONEY_V1)},
    {ORDERS_PAYMENT_FAILED, "2.0", PAYMENT_FAILED("2.0", MONEY_V2)},
    {ORDERS_PAYMENT_REFUNDED, "1.0", PAYMENT_REFUNDED("1.0", MONEY_V1)},
    {ORDERS_PAYMENT_REFUNDED, "2.0", PAYMENT_REFUNDED("2.0", MONEY_V2)},
    {ORDERS_RESERVATION_REQUESTED, "1.0",
     ORDER_ITEMS("inventory.reservation.requested 1.0", MONEY_V1)},
    {ORDERS_RESERVATION_REQUESTED, "2.0",
     ORDER_ITEMS("inventory.reservation.requested 2.0", MONEY_V2)},
    {ORDERS_INVENTORY_RESERVED, "1.0",
     ORDER_ITEMS("inventory.reserved 1.0", MONEY_V1)},
    {ORDERS_INVENTORY_RESERVED, "2.0",
     ORDER_ITEMS("inventory.reserved 2.0", MONEY_V2)},
    {ORDERS_RESERVATION_FAILED, "1.0", RESERVATION_FAILED},
    {ORDERS_STOCK_ADDED, "1.0", STOCK_ADDED},
    {ORDERS_RELEASE_REQUESTED, "1.0",
     ORDER_ITEMS("inventory.release.requested 1.0", MONEY_V1)},
    {ORDERS_RELEASE_REQUESTED, "2.0",
     ORDER_ITEMS("inventory.release.requested 2.0", MONEY_V2)},
    {ORDERS_INVENTORY_RELEASED, "1.0",
     ORDER_ITEMS("inventory.released 1.0", MONEY_V1)},
    {ORDERS_INVENTORY_RELEASED, "2.0",
     ORDER_ITEMS("inventory.released 2.0", MONEY_V2)},
};
#define NSCHEMAS (sizeof SCHEMAS / sizeof SCHEMAS[0])

static int set_err(eddy_error *err, int code, const char *msg)
{
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

/*
 * user.registered 1.0 -> 2.0: `name` becomes `full_name`, and
 * `registration_source` (unknown in 1.0) is filled with "unknown".
 * Thread-safe: it only reads `data` and builds a new object.
 */
static json_t *user_registered_v1_to_v2(const json_t *data, void *user,
                                        eddy_error *err)
{
    (void)user;
    const char *user_id, *email, *name;
    if (json_unpack((json_t *)data, "{s:s, s:s, s:s}", "user_id", &user_id,
                    "email", &email, "name", &name) != 0) {
        set_err(err, EDDY_EINVAL,
                "user.registered 1.0 without user_id, email and name");
        return NULL;
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "user_id", user_id,
                            "email", email, "full_name", name,
                            "registration_source", "unknown");
    if (!out)
        set_err(err, EDDY_ENOMEM, "out of memory");
    return out;
}

/* Replaces the number at `key` of `obj` by orders_cents of it. */
static int to_cents(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0; /* absent: the schema of 1.0 says whether it may be */
    if (!json_is_number(v))
        return -1;
    return json_object_set_new(obj, key, json_integer(orders_cents(v)));
}

/*
 * Every money-carrying type 1.0 -> 2.0: `amount` and each item's `price`
 * become integer cents (see MONEY above); nothing else changes.
 * Thread-safe: it builds a new object from a deep copy.
 */
static json_t *money_v1_to_v2(const json_t *data, void *user, eddy_error *err)
{
    const char *type = user;
    json_t *out = json_deep_copy(data);
    if (!out) {
        set_err(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    int bad = to_cents(out, "amount");
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(out, "items"), i, item)
        bad |= to_cents(item, "price");
    if (bad) {
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message,
                     "%s 1.0: amount or price is not a number", type);
        }
        json_decref(out);
        return NULL;
    }
    return out;
}

int64_t orders_cents(const json_t *money)
{
    if (json_is_integer(money))
        return (int64_t)json_integer_value(money);
    /* major units as a double (507.69999999999999): the nearest cent */
    return (int64_t)llround(json_number_value(money) * 100.0);
}

const char *orders_event_version(const char *type)
{
    const char *version = "1.0"; /* types without a schema (requests) */
    for (size_t i = 0; type && i < NSCHEMAS; i++)
        if (strcmp(SCHEMAS[i].type, type) == 0)
            version = SCHEMAS[i].version;
    return version;
}

eddy_schema_registry *orders_schemas_new(eddy_error *err)
{
    eddy_schema_registry *reg = eddy_schema_registry_new();
    if (!reg) {
        set_err(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < NSCHEMAS; i++) {
        if (eddy_schema_registry_add_text(reg, SCHEMAS[i].type,
                                          SCHEMAS[i].version, SCHEMAS[i].text,
                                          strlen(SCHEMAS[i].text), err) != EDDY_OK)
            goto fail;
        /* a 2.0 after a 1.0 of the same type: the money upcaster (the
         * user.registered one is its own, below) */
        if (i > 0 && strcmp(SCHEMAS[i].version, "2.0") == 0 &&
            strcmp(SCHEMAS[i].type, ORDERS_USER_REGISTERED) != 0 &&
            strcmp(SCHEMAS[i - 1].type, SCHEMAS[i].type) == 0 &&
            eddy_schema_registry_add_upcaster(reg, SCHEMAS[i].type, "1.0",
                                              "2.0", money_v1_to_v2,
                                              (void *)SCHEMAS[i].type,
                                              err) != EDDY_OK)
            goto fail;
    }
    if (eddy_schema_registry_add_upcaster(reg, ORDERS_USER_REGISTERED, "1.0",
                                          "2.0", user_registered_v1_to_v2,
                                          NULL, err) != EDDY_OK)
        goto fail;
    return reg;
fail:
    eddy_schema_registry_free(reg);
    return NULL;
}

size_t orders_schema_count(void)
{
    return NSCHEMAS;
}
