/*
 * examples/orders/orders.h - the specification's order domain, built on
 * eddy's public API only (#include <eddy/eddy.h>).
 *
 *   UserService.register_user    -> user.registered (2.0)   stream user-<id>
 *   EmailNotificationHandler     user.registered  -> welcome mail
 *                                order.confirmed  -> confirmation mail
 *                                (TRANSACTIONAL durable subscriptions that
 *                                insert into the sent_mail table: exactly
 *                                once per event)
 *   OrderService.place_order     -> OrderAggregate.place -> order.placed
 *                                                           stream order-<id>
 *   OrderProcessingSaga          order.placed -> ProcessPayment;
 *                                payment.processed -> ReserveInventory;
 *                                payment.failed -> CancelOrder(payment_failed);
 *                                inventory.reserved -> ConfirmOrder;
 *                                inventory.reservation.failed ->
 *                                  RefundPayment, CancelOrder(out_of_stock);
 *                                timeout -> CancelOrder(timeout) (+ refund /
 *                                  release of whatever succeeded late)
 *   PaymentService               ProcessPayment -> payment.requested; its
 *                                durable subscription simulates the payment
 *                                provider (latency, failure rate) and
 *                                appends payment.processed / payment.failed
 *                                (stream payment-<order id>)
 *   InventoryService             ReserveInventory -> inventory.reservation.
 *                                requested; its TRANSACTIONAL subscription
 *                                decrements the stock table and appends
 *                                inventory.reserved, or appends
 *                                inventory.reservation.failed, in ONE store
 *                                transaction (stream inventory-<order id>)
 *   OrderReadModel               a projection into the order_read_model
 *                                table
 *
 * Every event has subject = the order (or user, or product) id, so all
 * events of one order share a partition key and are handled in order.
 * Event ids of command results are derived from the command id
 * (eddy_id_derive), so re-running a command appends nothing new.
 */
#ifndef EDDY_EXAMPLES_ORDERS_H
#define EDDY_EXAMPLES_ORDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <eddy/eddy.h>

/* ---- event types ---------------------------------------------------------- */

#define ORDERS_USER_REGISTERED "user.registered"
#define ORDERS_ORDER_PLACED "order.placed"
#define ORDERS_ORDER_CONFIRMED "order.confirmed"
#define ORDERS_ORDER_CANCELLED "order.cancelled"
#define ORDERS_PAYMENT_REQUESTED "payment.requested"
#define ORDERS_PAYMENT_PROCESSED "payment.processed"
#define ORDERS_PAYMENT_FAILED "payment.failed"
#define ORDERS_PAYMENT_REFUNDED "payment.refunded"
#define ORDERS_RESERVATION_REQUESTED "inventory.reservation.requested"
#define ORDERS_INVENTORY_RESERVED "inventory.reserved"
#define ORDERS_RESERVATION_FAILED "inventory.reservation.failed"
#define ORDERS_STOCK_ADDED "inventory.stock.added"
#define ORDERS_RELEASE_REQUESTED "inventory.release.requested"
#define ORDERS_INVENTORY_RELEASED "inventory.released"

/* Requests to the OrderService, used only when the services run as separate
 * processes (`eddy service`): the saga's ConfirmOrder / CancelOrder and the
 * driver's place_order cross the transport as events that the orders
 * service's subscription turns into OrderAggregate commands. Data:
 * {order_id, reason?} / {order_id, customer_id, items}. */
#define ORDERS_PLACE_REQUESTED "order.placement.requested"
#define ORDERS_CONFIRM_REQUESTED "order.confirmation.requested"
#define ORDERS_CANCEL_REQUESTED "order.cancellation.requested"


/* Cancellation reasons (order.cancelled data.reason). */
#define ORDERS_REASON_PAYMENT "payment_failed"
#define ORDERS_REASON_STOCK "out_of_stock"
#define ORDERS_REASON_TIMEOUT "timeout"

/* Commands. */
#define ORDERS_CMD_PROCESS_PAYMENT "ProcessPayment"
#define ORDERS_CMD_RESERVE_INVENTORY "ReserveInventory"
#define ORDERS_CMD_CONFIRM_ORDER "ConfirmOrder"
#define ORDERS_CMD_CANCEL_ORDER "CancelOrder"
#define ORDERS_CMD_REFUND_PAYMENT "RefundPayment"
#define ORDERS_CMD_RELEASE_INVENTORY "ReleaseInventory"

/* Names of the domain's subscriptions, projection and saga. */
#define ORDERS_SUB_PAYMENT "payment-service"
#define ORDERS_SUB_INVENTORY "inventory-service"
#define ORDERS_SUB_WELCOME_MAIL "email-welcome"
#define ORDERS_SUB_CONFIRM_MAIL "email-confirmation"
#define ORDERS_PROJECTION "order_read_model"
#define ORDERS_SAGA "order_processing"

/* Ids are at most this long (the schemas say maxLength 63). */
#define ORDERS_ID_MAX 64

/* ---- schemas (schemas.c) ---------------------------------------------------- */

/*
 * A new registry holding the draft-07 schema of every event type of the
 * domain (user.registered 1.0 and 2.0) and the user.registered 1.0 -> 2.0
 * upcaster. Free with eddy_schema_registry_free. NULL with `err` filled on
 * failure.
 */
eddy_schema_registry *orders_schemas_new(eddy_error *err);

/* The number of (type, version) schemas orders_schemas_new registers. */
size_t orders_schema_count(void);

/* The version the domain writes events of `type` with: the newest one with
 * a schema ("2.0" for user.registered and the types that carry money),
 * "1.0" for types without a schema. A static string. */
const char *orders_event_version(const char *type);

/* ---- money ------------------------------------------------------------------ */

/*
 * Money is an int64_t number of cents (minor units) in events (version 2.0
 * of the types that carry it), saga state, commands and tables.
 * orders_cents reads a JSON amount: an integer is cents; a real is an
 * amount in major units as eddy 0.1.0 wrote it (event data 1.0, saga state
 * and commands of that release), rounded to the nearest cent.
 */
int64_t orders_cents(const json_t *money);

/* Writes `cents` as "1234.56" (a minus sign first when negative) into
 * `buf`; returns `buf`. */
const char *orders_money(int64_t cents, char *buf, size_t size);

/* ---- events (events.c) ---------------------------------------------------- */

/*
 * Builds an event of the domain: `type`, `source`, `subject`, dataversion
 * orders_event_version(type), `id`
 * (NULL: a new UUIDv7), the given correlation / causation ids (may be NULL)
 * and `data` (borrowed). Returns a new event or NULL with `err` filled.
 */
eddy_event *orders_event_new(const char *type, const char *source,
                             const char *subject, const char *id,
                             const char *correlation_id,
                             const char *causation_id, json_t *data,
                             eddy_error *err);

/*
 * Appends one event to `stream` and treats "already stored" as success:
 * events whose ids are derived from a command id are appended again when
 * the command is re-run; the same id with other content (a later time)
 * comes back as EDDY_EDUPLICATE, which means the command had already taken
 * effect. Returns EDDY_OK or the append's error.
 */
int orders_append_once(eddy_store *store, const char *stream,
                       eddy_event *ev, eddy_error *err);

/* ---- the order aggregate (order.c) -------------------------------------- */

typedef enum orders_status {
    ORDERS_NONE = 0,
    ORDERS_PENDING,
    ORDERS_CONFIRMED,
    ORDERS_CANCELLED
} orders_status;

/* "PENDING", "CONFIRMED", "CANCELLED" (NONE: "NONE"). */
const char *orders_status_name(orders_status s);

/* The OrderAggregate type (stream "order-<id>"). */
extern const eddy_aggregate_type orders_order_type;

/* ---- the application -------------------------------------------------------- */

/* Settings of the simulated world. Plain data. */
typedef struct orders_config {
    double payment_failure_rate; /* 0..1 */
    unsigned payment_latency_us; /* simulated provider latency (max) */
    uint64_t seed;               /* outcomes derive from it and the ids */
    unsigned workers;            /* worker threads per subscription */
    unsigned payment_workers;    /* the payment service's workers: its
                                    handler waits on the (simulated)
                                    provider, so it needs many calls in
                                    flight; 0: 32 */
    int saga_timeout_ms;         /* a saga waiting longer cancels */
    unsigned parts;              /* ORDERS_PART_* started by this process;
                                    0: every part (the in-process demo) */
    eddy_metrics *metrics;       /* NULL: none; else the durable
                                    subscriptions record into it (borrowed:
                                    must outlive the app) */
} orders_config;

/* The parts of the domain, one per `eddy service NAME`. */
#define ORDERS_PART_ORDERS 1u    /* OrderAggregate commands + read model */
#define ORDERS_PART_PAYMENT 2u   /* the payment provider */
#define ORDERS_PART_INVENTORY 4u /* the stock */
#define ORDERS_PART_EMAIL 8u     /* welcome and confirmation mails */
#define ORDERS_PART_SAGA 16u     /* OrderProcessingSaga and its commands */
#define ORDERS_PART_ALL 31u

/* The running domain: services, handlers, projection and saga on one store. */
typedef struct orders_app orders_app;

/*
 * Builds the domain on `store` (borrowed; must outlive the app) and starts
 * its subscriptions, projection and saga. Returns NULL with `err` filled.
 * Destructor: orders_app_free (stops everything).
 */
orders_app *orders_app_start(eddy_store *store, const orders_config *cfg,
                             eddy_error *err);

/* Stops every subscription and frees the app. NULL does nothing. */
void orders_app_free(orders_app *app);

/*
 * Stops the subscriptions, the saga and the projection (persisting their
 * checkpoints) without freeing. Returns the first error. Idempotent.
 */
int orders_app_stop(orders_app *app, eddy_error *err);

/* UserService.register_user: appends user.registered 2.0 to user-<id>
 * (expected: no stream; EDDY_ECONFLICT when the user is registered
 * already). Thread-safe. */
int orders_register_user(orders_app *app, const char *user_id,
                         const char *email, const char *full_name,
                         eddy_error *err);

/* InventoryService: adds `quantity` units of `product_id` to the stock (an
 * inventory.stock.added event on product-<id>, which the inventory
 * subscription applies), if that stream is at `expected_version`
 * (EDDY_EXPECT_ANY: always; EDDY_EXPECT_NO_STREAM: only as the product's
 * first stock, else EDDY_ECONFLICT). Thread-safe. */
int orders_add_stock(orders_app *app, const char *product_id, long quantity,
                     int64_t expected_version, eddy_error *err);

/*
 * OrderService.place_order: runs OrderAggregate.place on order `order_id`
 * (EDDY_EEXIST if it already exists) with `items` (borrowed: an array of
 * {product_id, quantity, price in cents}). The amount is the sum of
 * price*quantity, in cents.
 * Thread-safe.
 */
int orders_place_order(orders_app *app, const char *order_id,
                       const char *customer_id, json_t *items,
                       eddy_error *err);

/*
 * Waits until the saga (events and commands), every subscription and the
 * projection have handled every event up to the store's head, and the head
 * no longer moves (handling appends more). Saga deadlines are not waited
 * for. Returns EDDY_OK, EDDY_ETIMEDOUT or a store error.
 */
int orders_app_wait_idle(orders_app *app, int timeout_ms);

/* Dead letters of the domain's subscriptions (all handlers), or -1 on a
 * store error. */
long orders_dead_letters(eddy_store *store);

/* ---- the read model (read_model.c) ---------------------------------------- */

/* Registers the OrderReadModel projection definition with the library's
 * registry of known projections, so `eddy projections rebuild
 * order_read_model` can rebuild it. Idempotent. */
void orders_register_projections(void);

/* ---- the demo driver (demo.c) --------------------------------------------- */

/* What `eddy demo` runs; see cmd_demo.c for the defaults. Plain data. */
typedef struct orders_demo_options {
    const char *store_url;  /* NULL: a fresh file in a temporary directory;
                               a store of earlier runs is resumed */
    bool keep;              /* keep the temporary store */
    unsigned users;
    unsigned long orders;
    long stock;             /* units per product; < 0: from --orders */
    unsigned producers;     /* threads placing orders */
    double rate;            /* orders placed per second; 0: as fast as the
                               producers can */
    int timeout_s;          /* for every order to finish */
    const char *transport;  /* NULL: in process; else a transport URL: the
                               five services run as child processes */
    const char *kill;       /* with transport or instances: SIGKILL this
                               service (one instance of it) once mid-run
                               and restart it (NULL: none) */
    unsigned instances;     /* > 0: every service runs as this many
                               processes (`eddy service NAME --store URL`)
                               sharing ONE store (store_url, or a fresh
                               file), no transport (instances.c) */
    int max_disconnected_s; /* with transport: a service (and the driver's
                               publishing) gives up when the transport has
                               been unreachable this long; 0: 10 */
    orders_config cfg;
    /* In process only: called with the open store once the domain has
     * started, and (unless that call returned non-zero, which ends the
     * demo as a failure) with store NULL before the store closes; e.g.
     * `eddy demo --serve` serves the dashboard on the store while the demo
     * runs. NULL: none. */
    int (*on_store)(eddy_store *store, void *user);
    void *on_store_user;
    /* Polled on the thread that called orders_demo_run, at least every
     * 200 ms while the run waits: returns 0 to go on, or a signal number
     * (SIGTERM, SIGINT) to end the run early: it stops placing orders,
     * stops the order domain (persisting its checkpoints) or the services
     * (SIGTERM, then waits for them), removes a temporary store unless
     * `keep`, says so on stderr and returns 128 + that number. NULL:
     * never. */
    int (*interrupted)(void *user);
    void *interrupted_user;
} orders_demo_options;

/*
 * Runs the demo: opens the store (schemas checked on append, old event
 * versions upcast on read), seeds stock and users, places the orders from
 * several threads, waits for every order's saga, prints the summary and the
 * invariant checks to `out` (a progress bar on stderr). On a store of
 * earlier runs (finished, or killed mid-run) it resumes: their unfinished
 * orders are finished by the handlers from their checkpoints, the stock is
 * not seeded again, this run's orders are numbered after theirs, and the
 * checks cover every order in the store. A fault that no waiting cures
 * (the store cannot write, e.g. its disk is full; a service gave up; the
 * transport stayed unreachable) ends the run at once, naming the cause on
 * stderr, without the invariant checks. Returns the exit status: 0 when
 * every invariant holds, 1 otherwise (or on an error, or a fault), 128 +
 * the signal when `interrupted` ended it.
 */
int orders_demo_run(const orders_demo_options *opts, FILE *out);

/* ---- one service as a process (service.c, remote.c) ----------------------- */

/* What `eddy service NAME` runs. Plain data. */
typedef struct orders_service_options {
    const char *name;       /* orders, payment, inventory, email or saga */
    const char *transport;  /* transport URL */
    const char *store_url;  /* this service's own store */
    const char *group_prefix; /* NULL: consumer group NAME, read from the
                               oldest event the engine keeps; else group
                               "<prefix>NAME", a new one starting at the
                               latest event (a run of its own, as the demo
                               does, ignoring earlier runs' events) */
    int max_disconnected_s; /* give up (ORDERS_EXIT_FATAL) when the
                               transport has been unreachable this long;
                               0: never */
    orders_config cfg;      /* parts is set from the name */
} orders_service_options;

/* The exit status of a service that gave up on a fault it cannot recover
 * from (its store cannot write, the transport stayed unreachable): it
 * printed "eddy service NAME: fatal: CAUSE" on stderr and the line
 * "fatal CAUSE" on its standard output, after "ready NAME". */
#define ORDERS_EXIT_FATAL 3

/* The ORDERS_PART_* of service `name`, or 0 for an unknown name. */
unsigned orders_service_part(const char *name);

/*
 * Runs one service until SIGTERM or SIGINT: opens its store and the
 * transport, starts its part of the domain, a bridge that appends the event
 * types it reacts to (consumer group = the service name) and a forwarder
 * that publishes the events it produces, prints "ready NAME" on `out`, then
 * waits for the signal and stops everything. Meanwhile it watches for
 * faults (faults.c): a lost connection is reported on stderr at once and
 * is fatal after max_disconnected_s; a store that cannot write is fatal at
 * once. Returns the exit status: 0 on a clean stop, 1 with the reason on
 * stderr (a failed start or stop), ORDERS_EXIT_FATAL on a fault. SIGTERM
 * and SIGINT must not be ignored (a shell starts background jobs with
 * SIGINT ignored): it blocks them in every thread and waits for them.
 */
int orders_service_run(const orders_service_options *opts, FILE *out);

/* `eddy demo --transport URL`: the five services as child processes of the
 * program at `self` (argv[0] of `eddy`); see orders_demo_run. */
int orders_remote_demo_run(const orders_demo_options *opts, FILE *out);

/* ---- every service as several processes on one store (instances.c) -------- */

/*
 * `eddy service NAME --store URL` without a transport: one instance of
 * service NAME on a store shared by every service. Several instances of a
 * service may run at once: its durable subscriptions, projection and saga
 * share their work by partitions (eddy/durable.h, SEVERAL PROCESSES).
 * Prints "ready NAME" on `out` once started, runs until SIGTERM or SIGINT,
 * then stops (its checkpoints persisted, its partitions freed for the other
 * instances). Returns the exit status: 0 on a clean stop, 1 with the
 * reason on stderr, 2 for an unknown NAME. `opts->transport` and
 * `group_prefix` are not used.
 */
int orders_instance_run(const orders_service_options *opts, FILE *out);

/* `eddy demo --instances N [--kill SERVICE]`: opts->instances processes of
 * each service on one store; see orders_demo_run and instances.c. */
int orders_instances_demo_run(const orders_demo_options *opts, FILE *out);

#endif
