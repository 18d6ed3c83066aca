/*
 * examples/orders/events.c - building the domain's events, appending a
 * command's result exactly once, and printing money.
 */
#include <string.h>

#include "orders/orders.h"

eddy_event *orders_event_new(const char *type, const char *source,
                             const char *subject, const char *id,
                             const char *correlation_id,
                             const char *causation_id, json_t *data,
                             eddy_error *err)
{
    eddy_event_init init = {
        .type = type,
        .source = source,
        .subject = subject,
        .id = id,
        .dataversion = orders_event_version(type),
        .data = data,
        .correlation_id = correlation_id,
        .causation_id = causation_id,
    };
    return eddy_event_new(&init, err);
}

const char *orders_money(int64_t cents, char *buf, size_t size)
{
    /* the magnitude as unsigned: -INT64_MIN does not fit an int64_t */
    uint64_t m = cents < 0 ? 0 - (uint64_t)cents : (uint64_t)cents;
    snprintf(buf, size, "%s%llu.%02llu", cents < 0 ? "-" : "",
             (unsigned long long)(m / 100), (unsigned long long)(m % 100));
    return buf;
}

int orders_append_once(eddy_store *store, const char *stream,
                       eddy_event *ev, eddy_error *err)
{
    eddy_error e = {0};
    int rc = eddy_store_append(store, stream, EDDY_EXPECT_ANY, &ev, 1, NULL,
                               &e);
    if (rc == EDDY_EDUPLICATE)
        return EDDY_OK;
    if (rc != EDDY_OK && err)
        *err = e;
    return rc;
}
