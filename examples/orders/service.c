/*
 * examples/orders/service.c - `eddy service NAME`: one service of the order
 * domain as a process of its own, with its own store, talking to the other
 * services through a transport (Redis, NATS, Kafka).
 *
 *   IN:  a bridge subscription (consumer group = the service name) appends
 *        the event types the service reacts to into its store, idempotently
 *        by event id (a redelivery is stored once); the service's durable
 *        subscriptions, projection and saga then run on its store exactly
 *        as in the in-process demo (retries, dead letters, exactly-once
 *        effects).
 *   OUT: the forwarder, a durable subscription of the service's own store,
 *        publishes the event types the service PRODUCES (the two lists are
 *        disjoint, so a received event is never sent back out). The store
 *        is the outbox: an event reaches the forwarder only once committed,
 *        and the forwarder's checkpoint moves only after the transport
 *        acknowledged the publish, so an event leaves the process iff it
 *        was committed, at least once (a crash between the publish and the
 *        checkpoint publishes it again; receivers absorb it by id). This is
 *        used instead of eddy_outbox_append because the domain appends
 *        through many paths (the repository, transactional handlers, the
 *        saga's commands), and all of them land in the store.
 */
#include <signal.h>
#include <string.h>

#include <eddy/transport.h>

#include "orders/internal.h"

struct service_def {
    const char *name;
    unsigned part;
    const char *const *receives;
    size_t nreceives;
    const char *const *produces;
    size_t nproduces;
};

static const char *const ORDERS_IN[] = {ORDERS_PLACE_REQUESTED,
                                        ORDERS_CONFIRM_REQUESTED,
                                        ORDERS_CANCEL_REQUESTED};
static const char *const ORDERS_OUT[] = {ORDERS_ORDER_PLACED,
                                         ORDERS_ORDER_CONFIRMED,
                                         ORDERS_ORDER_CANCELLED};
static const char *const PAYMENT_IN[] = {ORDERS_PAYMENT_REQUESTED};
static const char *const PAYMENT_OUT[] = {ORDERS_PAYMENT_PROCESSED,
                                          ORDERS_PAYMENT_FAILED};
static const char *const INVENTORY_IN[] = {ORDERS_STOCK_ADDED,
                                           ORDERS_RESERVATION_REQUESTED,
                                           ORDERS_RELEASE_REQUESTED};
static const char *const INVENTORY_OUT[] = {ORDERS_INVENTORY_RESERVED,
                                            ORDERS_RESERVATION_FAILED,
                                            ORDERS_INVENTORY_RELEASED};
static const char *const EMAIL_IN[] = {ORDERS_USER_REGISTERED,
                                       ORDERS_ORDER_CONFIRMED};
static const char *const SAGA_IN[] = {ORDERS_ORDER_PLACED,
                                      ORDERS_PAYMENT_PROCESSED,
                                      ORDERS_PAYMENT_FAILED,
                                      ORDERS_INVENTORY_RESERVED,
                                      ORDERS_RESERVATION_FAILED};
static const char *const SAGA_OUT[] = {ORDERS_PAYMENT_REQUESTED,
                                       ORDERS_PAYMENT_REFUNDED,
                                       ORDERS_RESERVATION_REQUESTED,
                                       ORDERS_RELEASE_REQUESTED,
                                       ORDERS_CONFIRM_REQUESTED,
                                       ORDERS_CANCEL_REQUESTED};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct service_def SERVICES[] = {
    {"orders", ORDERS_PART_ORDERS, ORDERS_IN, N(ORDERS_IN), ORDERS_OUT, N(ORDERS_OUT)},
    {"payment", ORDERS_PART_PAYMENT, PAYMENT_IN, N(PAYMENT_IN), PAYMENT_OUT, N(PAYMENT_OUT)},
    {"inventory", ORDERS_PART_INVENTORY, INVENTORY_IN, N(INVENTORY_IN), INVENTORY_OUT,
     N(INVENTORY_OUT)},
    {"email", ORDERS_PART_EMAIL, EMAIL_IN, N(EMAIL_IN), NULL, 0},
    {"saga", ORDERS_PART_SAGA, SAGA_IN, N(SAGA_IN), SAGA_OUT, N(SAGA_OUT)},
};

static const struct service_def *service_def(const char *name)
{
    for (size_t i = 0; name && i < N(SERVICES); i++)
        if (strcmp(SERVICES[i].name, name) == 0)
            return &SERVICES[i];
    return NULL;
}

unsigned orders_service_part(const char *name)
{
    const struct service_def *d = service_def(name);
    return d ? d->part : 0;
}

struct forwarder {
    const struct service_def *def;
    eddy_transport *transport;
};

/* The forwarder's handler (see the file comment): publishes the service's
 * own events; a failed publish is retried by the durable subscription. */
static int forward(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct forwarder *fw = user;
    const char *type = eddy_event_type(ev);
    bool own = false;
    for (size_t i = 0; !own && i < fw->def->nproduces; i++)
        own = strcmp(type, fw->def->produces[i]) == 0;
    if (!own)
        return EDDY_OK;
    eddy_error err = {0};
    int rc = eddy_transport_publish(fw->transport, ev, &err);
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "publishing %s %s: %s", type,
                             eddy_event_id(ev), err.message);
    return EDDY_OK;
}

static int service_fail(const char *name, const char *what,
                        const eddy_error *e)
{
    fprintf(stderr, "eddy service %s: %s: %s\n", name, what,
            e->message[0] ? e->message : eddy_strerror(e->code));
    return 1;
}

int orders_service_run(const orders_service_options *opts, FILE *out)
{
    const struct service_def *def = service_def(opts->name);
    eddy_error err = {0};
    eddy_schema_registry *reg = NULL;
    eddy_store *store = NULL;
    eddy_transport *t = NULL;
    orders_app *app = NULL;
    eddy_transport_bridge *bridge = NULL;
    eddy_durable *fwd_sub = NULL;
    int status = 1;
    if (!def) {
        fprintf(stderr, "eddy service: unknown service '%s' (expected orders, "
                "payment, inventory, email or saga)\n",
                opts->name ? opts->name : "");
        return 2;
    }
    struct forwarder fw = {.def = def};

    /* SIGTERM / SIGINT are taken by sigwait below: block them before any
     * thread starts, so every thread inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!(reg = orders_schemas_new(&err))) {
        status = service_fail(def->name, "schemas", &err);
        goto done;
    }
    eddy_store_options so = {
        .sync = EDDY_SYNC_FULL,
        .check = eddy_schema_registry_check_hook,
        .check_user = reg,
        .transform = eddy_schema_registry_upcast_hook,
        .transform_user = reg,
    };
    if (!(store = eddy_store_open(opts->store_url, &so, &err))) {
        char shown[1024];
        status = service_fail(def->name,
                              eddy_url_redact(opts->store_url, shown,
                                              sizeof shown),
                              &err);
        goto done;
    }
    /* publishes wait for a lost connection (up to timeout_ms) rather than
     * fail at once: the forwarder retries anyway */
    eddy_transport_options to = {.disconnected = EDDY_DISCONNECTED_BUFFER};
    if (!(t = eddy_transport_open(opts->transport, &to, &err))) {
        char shown[1024];
        status = service_fail(def->name,
                              eddy_url_redact(opts->transport, shown,
                                              sizeof shown), &err);
        goto done;
    }
    fw.transport = t;
    orders_config cfg = opts->cfg;
    cfg.parts = def->part;
    if (!(app = orders_app_start(store, &cfg, &err))) {
        status = service_fail(def->name, "starting the service", &err);
        goto done;
    }
    if (def->nproduces > 0) {
        eddy_durable_options fo = {
            .name = "outbox-forwarder",
            .pattern = "*",
            .mode = EDDY_DELIVERY_AT_LEAST_ONCE,
            .handler = forward,
            .user = &fw,
            .workers = 2,
            /* a transport outage must not dead-letter what has to leave */
            .retry = {.max_attempts = 100000, .max_delay_ms = 2000},
        };
        if (!(fwd_sub = eddy_durable_start(store, &fo, &err))) {
            status = service_fail(def->name, "starting the forwarder", &err);
            goto done;
        }
    }
    /* One member per group, with a fixed name: a restarted service takes
     * back what its killed predecessor had read but not acknowledged. */
    char group[128];
    snprintf(group, sizeof group, "%s%s",
             opts->group_prefix ? opts->group_prefix : "", def->name);
    eddy_transport_sub_options bo = {
        .types = def->receives,
        .type_count = def->nreceives,
        .group = group,
        .from_latest = opts->group_prefix != NULL,
        .consumer = def->name,
        .ack_wait_ms = 2000,
        .nack_delay_ms = 200,
        .max_deliveries = 1000000, /* an append failure is retried, not dropped */
    };
    if (eddy_transport_bridge_start(t, store, &bo, &bridge, &err) != EDDY_OK) {
        status = service_fail(def->name, "subscribing", &err);
        goto done;
    }
    fprintf(out, "ready %s\n", def->name);
    fflush(out);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    status = 0;
    /* stop receiving first, then the handlers, then the forwarder (their
     * last events are committed; what was not published yet is published
     * by the next run, from the forwarder's checkpoint) */
    eddy_transport_bridge_free(bridge);
    bridge = NULL;
    if (orders_app_stop(app, &err) != EDDY_OK)
        status = service_fail(def->name, "stopping", &err);
    if (fwd_sub && eddy_durable_stop(fwd_sub, &err) != EDDY_OK)
        status = service_fail(def->name, "stopping the forwarder", &err);
done:
    eddy_transport_bridge_free(bridge);
    orders_app_free(app);
    eddy_durable_free(fwd_sub);
    eddy_transport_close(t);
    eddy_store_close(store);
    eddy_schema_registry_free(reg);
    return status;
}
