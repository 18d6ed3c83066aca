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
 *   WATCH: while it waits for SIGTERM or SIGINT, the main thread looks
 *        every WATCH_MS at the bridge's connection (a loss is reported on
 *        stderr at once, and is fatal once it lasted max_disconnected_s)
 *        and, every second, at whether the store can still write
 *        (faults.c). A fatal fault stops the service with exit status
 *        ORDERS_EXIT_FATAL and its cause on stderr and stdout.
 *   STOP: bounded: a stop that has not finished STOP_GRACE_S after the
 *        signal (or the fault) ends the process by SIGALRM's default
 *        action, so a service never outlives its demo by much.
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    atomic_bool stopping; /* publish nothing more: the next run will */
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
    /* stopping: the events left are published by the next run, from the
     * checkpoint; a publish now might wait out a lost connection */
    if (atomic_load(&fw->stopping))
        return eddy_ctx_fail(ctx, EDDY_ESTOPPED, "stopping: %s %s is "
                             "published by the next run", type,
                             eddy_event_id(ev));
    eddy_error err = {0};
    int rc = eddy_transport_publish(fw->transport, ev, &err);
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "publishing %s %s: %s", type,
                             eddy_event_id(ev), err.message);
    return EDDY_OK;
}

#define WATCH_MS 250
#define PROBE_EVERY_US 1000000
#define STOP_GRACE_S 20

/*
 * Waits for SIGTERM or SIGINT (blocked in every thread) while watching for
 * faults. Returns the signal, or 0 with `cause` filled when a fault is
 * fatal.
 */
static int watch(const struct service_def *def,
                 const orders_service_options *opts, eddy_store *store,
                 eddy_transport_bridge *bridge, const sigset_t *stop_signals,
                 char *cause, size_t size)
{
    char shown[1024];
    eddy_url_redact(opts->transport, shown, sizeof shown);
    int64_t reported = 0, next_probe = 0;
    for (;;) {
        struct timespec tick = {0, WATCH_MS * 1000000L};
        int sig = sigtimedwait(stop_signals, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        char why[256];
        int64_t now = eddy_now_us();
        int64_t down = eddy_transport_subscription_down_since(
            eddy_transport_bridge_sub(bridge), why, sizeof why);
        if (down && down != reported) {
            if (opts->max_disconnected_s > 0)
                fprintf(stderr, "eddy service %s: lost the connection to %s: "
                        "%s; giving up if it is not back within %d s\n",
                        def->name, shown, why, opts->max_disconnected_s);
            else
                fprintf(stderr, "eddy service %s: lost the connection to %s: "
                        "%s; waiting for it\n", def->name, shown, why);
            reported = down;
        } else if (!down && reported) {
            fprintf(stderr, "eddy service %s: reconnected to %s after %.1f s\n",
                    def->name, shown, (double)(now - reported) / 1e6);
            reported = 0;
        }
        if (down && opts->max_disconnected_s > 0 &&
            now - down >= (int64_t)opts->max_disconnected_s * 1000000) {
            snprintf(cause, size, "lost the connection to %.600s for %.0f s: %.250s",
                     shown, (double)(now - down) / 1e6, why);
            return 0;
        }
        if (now >= next_probe) {
            next_probe = now + PROBE_EVERY_US;
            if (orders_store_probe(store, opts->store_url, cause, size) != EDDY_OK)
                return 0;
        }
    }
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
    /* (an ignored signal would be discarded, not kept for sigtimedwait) */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
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
     * fail at once: the forwarder retries anyway. Not longer than 2 s: a
     * stop waits for the publish in progress. */
    eddy_transport_options to = {.disconnected = EDDY_DISCONNECTED_BUFFER,
                                 .timeout_ms = 2000};
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
    eddy_transport_subscription_options bo = {
        .types = def->receives,
        .type_count = def->nreceives,
        .group = group,
        .start_from = opts->group_prefix ? EDDY_START_END : EDDY_START_BEGINNING,
        .consumer = def->name,
        .ack_wait_ms = 2000,
        /* an append failure is retried (200 ms doubling up to 5 s), not
         * dropped */
        .retry = {.max_attempts = 1000000, .initial_delay_ms = 200,
                  .max_delay_ms = 5000},
    };
    if (eddy_transport_bridge_start(t, store, &bo, &bridge, &err) != EDDY_OK) {
        status = service_fail(def->name, "subscribing", &err);
        goto done;
    }
    fprintf(out, "ready %s\n", def->name);
    fflush(out);

    char cause[1024] = "";
    watch(def, opts, store, bridge, &stop_signals, cause, sizeof cause);
    alarm(STOP_GRACE_S); /* SIGALRM is not blocked: its default ends us */
    status = 0;
    if (cause[0]) {
        fprintf(stderr, "eddy service %s: fatal: %s\n", def->name, cause);
        fprintf(out, "fatal %s\n", cause); /* for the demo (faults.c) */
        fflush(out);
        status = ORDERS_EXIT_FATAL;
    }
    /* stop receiving first, then the handlers, then the forwarder (their
     * last events are committed; what was not published yet is published
     * by the next run, from the forwarder's checkpoint). After a fault
     * their errors are that fault again: not repeated. */
    eddy_transport_bridge_free(bridge);
    bridge = NULL;
    if (orders_app_stop(app, &err) != EDDY_OK && status == 0)
        status = service_fail(def->name, "stopping", &err);
    atomic_store(&fw.stopping, true);
    if (fwd_sub && eddy_durable_stop(fwd_sub, &err) != EDDY_OK && status == 0)
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
