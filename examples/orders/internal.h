/*
 * examples/orders/internal.h - what the files of the order domain share
 * (not part of the domain's interface, orders.h).
 */
#ifndef EDDY_EXAMPLES_ORDERS_INTERNAL_H
#define EDDY_EXAMPLES_ORDERS_INTERNAL_H

#include "orders/orders.h"
#include "eddy/sqlite.h"

struct orders_app {
    eddy_store *store;            /* borrowed */
    orders_config cfg;
    eddy_repository *orders;      /* OrderAggregate */
    eddy_command_bus *commands;   /* the saga's commands */
    eddy_durable *inventory;      /* InventoryService (TRANSACTIONAL) */
    eddy_durable *welcome_mail;   /* EmailNotificationHandler (TRANSACTIONAL) */
    eddy_durable *confirm_mail;
    eddy_durable *payment;        /* the simulated payment provider */
    eddy_durable *order_requests; /* ORDERS_*_REQUESTED -> OrderAggregate
                                     (only when the parts run apart) */
    eddy_projection *read_model;  /* OrderReadModel */
    eddy_saga *saga;              /* OrderProcessingSaga */
    eddy_saga_def saga_def;       /* orders_saga_def, user = &cfg */
    bool stopped;
};

/* Arguments of orders_cmd_place. */
typedef struct orders_place_args {
    const char *customer_id;
    json_t *items;        /* borrowed */
    const char *event_id; /* id (and correlation id) of order.placed */
} orders_place_args;

/* OrderAggregate commands (eddy_command_fn). `arg`: orders_place_args for
 * place, the eddy_command for confirm and cancel (its data: order_id,
 * reason). Confirming a confirmed order or cancelling a cancelled one is a
 * no-op: the saga's commands are sent at least once. */
int orders_cmd_place(eddy_aggregate *agg, void *state, eddy_error *err,
                     void *arg);
int orders_cmd_confirm(eddy_aggregate *agg, void *state, eddy_error *err,
                       void *arg);
int orders_cmd_cancel(eddy_aggregate *agg, void *state, eddy_error *err,
                      void *arg);

/* Whether this process runs `part` (cfg.parts 0: every part). */
#define ORDERS_RUNS(app, part) ((app)->cfg.parts == 0 || ((app)->cfg.parts & (part)))

/* Registers the command handlers on app->commands (services.c). */
int orders_services_register(orders_app *app, eddy_error *err);

/* Starts the inventory, mail and payment subscriptions (services.c). */
int orders_services_start(orders_app *app, eddy_error *err);

/* The OrderReadModel projection definition (read_model.c). */
extern const eddy_projection_def orders_read_model_def;

/* The OrderProcessingSaga definition (saga.c); its `user` must be set to
 * the run's orders_config before it is started. */
extern const eddy_saga_def orders_saga_def;

/* A seeded 64-bit hash of `text` (deterministic outcomes), and a hash
 * mapped to [0, 1). */
uint64_t orders_hash(uint64_t seed, const char *text);
double orders_unit(uint64_t h);

/*
 * Runs `sql` on `db` binding the variadic arguments by `types` ("t": a
 * const char *, "i": an int64_t). With `keep` NULL it steps once and
 * finalizes; else `*keep` receives the prepared statement for the caller to
 * step and finalize. Returns EDDY_OK or EDDY_EIO with `err` filled.
 */
int orders_sql(sqlite3 *db, eddy_error *err, sqlite3_stmt **keep,
               const char *sql, const char *types, ...);

/* One store the demo's report folds: only events of `types` (NULL: all). */
typedef struct orders_demo_source {
    eddy_store *store;
    const char *const *types;
    size_t ntypes;
} orders_demo_source;

/* What the demo's report needs (demo.c): the stores to fold, the tables
 * (stock, sent_mail, order_read_model: the same file in process, each
 * service's own file apart) and the run's figures. Plain data, borrowed. */
typedef struct orders_demo_inputs {
    const orders_demo_source *sources;
    size_t nsources;
    sqlite3 *stock_db, *mail_db, *rm_db;
    bool finished_ok;          /* every order finished in time, idle after */
    unsigned long finished;    /* orders finished while timing */
    int64_t t0, t1;            /* start, last finished order (µs) */
    int64_t events_during;     /* events stored between t0 and t1 */
    long dead;                 /* dead letters, every store */
    unsigned long running;     /* saga instances still running */
} orders_demo_inputs;

/* Folds the stores, prints the summary and the invariant checks to `out`.
 * Returns 0 when every invariant holds, else 1. */
int orders_demo_report(const orders_demo_options *opts,
                       const orders_demo_inputs *r, FILE *out);

/* The demo's catalogue (demo.c): product i's id, for i < orders_products(),
 * and the items and customer of order number i (a new array of
 * {product_id, quantity, price}, or NULL when out of memory). */
size_t orders_products(void);
const char *orders_product_id(size_t i);
json_t *orders_demo_items(uint64_t seed, unsigned long i, unsigned users,
                          char *customer, size_t size);

#endif
