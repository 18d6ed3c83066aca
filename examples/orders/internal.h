/*
 * examples/orders/internal.h - what the files of the order domain share
 * (not part of the domain's interface, orders.h).
 */
#ifndef EDDY_EXAMPLES_ORDERS_INTERNAL_H
#define EDDY_EXAMPLES_ORDERS_INTERNAL_H

#include "orders/orders.h"

struct orders_app {
    eddy_store *store;            /* borrowed */
    orders_config cfg;
    eddy_repository *orders;      /* OrderAggregate */
    eddy_command_bus *commands;   /* the saga's commands */
    eddy_durable *inventory;      /* InventoryService (TRANSACTIONAL) */
    eddy_durable *welcome_mail;   /* EmailNotificationHandler (TRANSACTIONAL) */
    eddy_durable *confirm_mail;
    eddy_durable *payment;        /* the simulated payment provider */
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

#endif
