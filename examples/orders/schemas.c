/*
 * examples/orders/schemas.c - the JSON Schemas (draft-07) of the order
 * domain's events, and the user.registered 1.0 -> 2.0 upcaster.
 *
 * Every event the demo appends carries dataversion "1.0" (user.registered:
 * "2.0") and is validated against these schemas by the store's check hook
 * before it is accepted, so a malformed event never reaches the log.
 * user.registered 1.0 is registered too, with its upcaster, so an old event
 * is read back as 2.0 by the store's transform hook.
 */
#include <string.h>

#include "orders/orders.h"

/* The shape of one order line, shared by several schemas. */
#define ITEMS_SCHEMA                                                           \
    "{\"type\": \"array\", \"minItems\": 1, \"maxItems\": 50,"                 \
    " \"items\": {\"type\": \"object\","                                       \
    "  \"required\": [\"product_id\", \"quantity\", \"price\"],"               \
    "  \"additionalProperties\": false,"                                       \
    "  \"properties\": {\"product_id\": {\"type\": \"string\", \"minLength\": 1},"  \
    "   \"quantity\": {\"type\": \"integer\", \"minimum\": 1},"                \
    "   \"price\": {\"type\": \"number\", \"minimum\": 0}}}}"

#define ID_SCHEMA "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 63}"

static const char USER_REGISTERED_V1[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"user.registered 1.0\", \"type\": \"object\","
    " \"required\": [\"user_id\", \"email\", \"name\"],"
    " \"properties\": {\"user_id\": " ID_SCHEMA ","
    "  \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    "  \"name\": {\"type\": \"string\", \"minLength\": 1}}}";

static const char USER_REGISTERED_V2[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"user.registered 2.0\", \"type\": \"object\","
    " \"required\": [\"user_id\", \"email\", \"full_name\", \"registration_source\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"user_id\": " ID_SCHEMA ","
    "  \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    "  \"full_name\": {\"type\": \"string\", \"minLength\": 1},"
    "  \"registration_source\": {\"type\": \"string\"}}}";

static const char ORDER_PLACED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"order.placed 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"customer_id\", \"amount\", \"items\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"customer_id\": " ID_SCHEMA ","
    "  \"amount\": {\"type\": \"number\", \"minimum\": 0},"
    "  \"items\": " ITEMS_SCHEMA "}}";

static const char ORDER_CONFIRMED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"order.confirmed 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"customer_id\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"customer_id\": " ID_SCHEMA "}}";

static const char ORDER_CANCELLED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"order.cancelled 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"reason\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ","
    "  \"reason\": {\"enum\": [\"payment_failed\", \"out_of_stock\", \"timeout\"]}}}";

static const char PAYMENT_REQUESTED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"payment.requested 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"customer_id\", \"amount\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"customer_id\": " ID_SCHEMA ","
    "  \"amount\": {\"type\": \"number\", \"minimum\": 0}}}";

static const char PAYMENT_PROCESSED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"payment.processed 1.0\", \"type\": \"object\","
    " \"required\": [\"payment_id\", \"order_id\", \"amount\", \"status\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"payment_id\": {\"type\": \"string\", \"format\": \"uuid\"},"
    "  \"order_id\": " ID_SCHEMA ", \"amount\": {\"type\": \"number\", \"minimum\": 0},"
    "  \"status\": {\"const\": \"captured\"}}}";

static const char PAYMENT_FAILED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"payment.failed 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"amount\", \"reason\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ","
    "  \"amount\": {\"type\": \"number\", \"minimum\": 0},"
    "  \"reason\": {\"type\": \"string\", \"minLength\": 1}}}";

static const char PAYMENT_REFUNDED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"payment.refunded 1.0\", \"type\": \"object\","
    " \"required\": [\"payment_id\", \"order_id\", \"amount\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"payment_id\": {\"type\": \"string\", \"format\": \"uuid\"},"
    "  \"order_id\": " ID_SCHEMA ", \"amount\": {\"type\": \"number\", \"minimum\": 0}}}";

static const char RESERVATION_REQUESTED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"inventory.reservation.requested 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"items\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"items\": " ITEMS_SCHEMA "}}";

static const char INVENTORY_RESERVED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"inventory.reserved 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"items\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"items\": " ITEMS_SCHEMA "}}";

static const char RESERVATION_FAILED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"inventory.reservation.failed 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"product_id\", \"requested\", \"available\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"product_id\": " ID_SCHEMA ","
    "  \"requested\": {\"type\": \"integer\", \"minimum\": 1},"
    "  \"available\": {\"type\": \"integer\", \"minimum\": 0}}}";

static const char RELEASE_REQUESTED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"inventory.release.requested 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"items\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"items\": " ITEMS_SCHEMA "}}";

static const char INVENTORY_RELEASED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"inventory.released 1.0\", \"type\": \"object\","
    " \"required\": [\"order_id\", \"items\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"order_id\": " ID_SCHEMA ", \"items\": " ITEMS_SCHEMA "}}";

static const char STOCK_ADDED[] =
    "{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
    " \"title\": \"inventory.stock.added 1.0\", \"type\": \"object\","
    " \"required\": [\"product_id\", \"quantity\"],"
    " \"additionalProperties\": false,"
    " \"properties\": {\"product_id\": " ID_SCHEMA ","
    "  \"quantity\": {\"type\": \"integer\", \"minimum\": 1}}}";

static const struct {
    const char *type, *version, *text;
} SCHEMAS[] = {
    {ORDERS_USER_REGISTERED, "1.0", USER_REGISTERED_V1},
    {ORDERS_USER_REGISTERED, "2.0", USER_REGISTERED_V2},
    {ORDERS_ORDER_PLACED, "1.0", ORDER_PLACED},
    {ORDERS_ORDER_CONFIRMED, "1.0", ORDER_CONFIRMED},
    {ORDERS_ORDER_CANCELLED, "1.0", ORDER_CANCELLED},
    {ORDERS_PAYMENT_REQUESTED, "1.0", PAYMENT_REQUESTED},
    {ORDERS_PAYMENT_PROCESSED, "1.0", PAYMENT_PROCESSED},
    {ORDERS_PAYMENT_FAILED, "1.0", PAYMENT_FAILED},
    {ORDERS_PAYMENT_REFUNDED, "1.0", PAYMENT_REFUNDED},
    {ORDERS_RESERVATION_REQUESTED, "1.0", RESERVATION_REQUESTED},
    {ORDERS_INVENTORY_RESERVED, "1.0", INVENTORY_RESERVED},
    {ORDERS_RESERVATION_FAILED, "1.0", RESERVATION_FAILED},
    {ORDERS_STOCK_ADDED, "1.0", STOCK_ADDED},
    {ORDERS_RELEASE_REQUESTED, "1.0", RELEASE_REQUESTED},
    {ORDERS_INVENTORY_RELEASED, "1.0", INVENTORY_RELEASED},
};

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
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message,
                     "user.registered 1.0 without user_id, email and name");
        }
        return NULL;
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "user_id", user_id,
                            "email", email, "full_name", name,
                            "registration_source", "unknown");
    if (!out && err) {
        err->code = EDDY_ENOMEM;
        snprintf(err->message, sizeof err->message, "out of memory");
    }
    return out;
}

eddy_schema_registry *orders_schemas_new(eddy_error *err)
{
    eddy_schema_registry *reg = eddy_schema_registry_new();
    if (!reg) {
        if (err) {
            err->code = EDDY_ENOMEM;
            snprintf(err->message, sizeof err->message, "out of memory");
        }
        return NULL;
    }
    for (size_t i = 0; i < sizeof SCHEMAS / sizeof SCHEMAS[0]; i++)
        if (eddy_schema_registry_add_text(reg, SCHEMAS[i].type,
                                          SCHEMAS[i].version, SCHEMAS[i].text,
                                          strlen(SCHEMAS[i].text), err) != EDDY_OK)
            goto fail;
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
    return sizeof SCHEMAS / sizeof SCHEMAS[0];
}
