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
    eddy_durable *order_requests; /* ORDERS_*_REQUESTED -> OrderAggregate
                                     (only when the parts run apart) */
    eddy_projection *read_model;  /* OrderReadModel */
    eddy_saga *saga;              /* OrderProcessingSaga */
    eddy_saga_def saga_def;       /* orders_saga_def, user = &cfg */
    bool read_model_rebuilt;      /* orders_read_model_upgrade rebuilt it */
    bool stopped;
};

/* Arguments of orders_decide_place. */
typedef struct orders_place_args {
    const char *customer_id;
    json_t *items;        /* borrowed */
    const char *event_id; /* id (and correlation id) of order.placed */
} orders_place_args;

/* OrderAggregate decisions (eddy_decide_fn). `user`: orders_place_args for
 * place, the eddy_command for confirm and cancel (its data: order_id,
 * reason). Confirming a confirmed order or cancelling a cancelled one is a
 * no-op: the saga's commands are sent at least once. */
int orders_decide_place(eddy_aggregate *agg, void *state, void *user,
                        eddy_error *err);
int orders_decide_confirm(eddy_aggregate *agg, void *state, void *user,
                          eddy_error *err);
int orders_decide_cancel(eddy_aggregate *agg, void *state, void *user,
                         eddy_error *err);

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
 * Rebuilds the OrderReadModel when the store holds eddy 0.1.0's shape of
 * its table (a `total REAL` in major units instead of total_cents): the
 * read model is derived from the events, so the rebuild (whose reset drops
 * and recreates the table) gives the current shape with every order in
 * cents. `*rebuilt` says whether it did. Call before the projection
 * starts. Returns EDDY_OK or the rebuild's error.
 */
int orders_read_model_upgrade(eddy_store *store, bool *rebuilt,
                              eddy_error *err);

/* One store the demo's report folds: only events of `types` (NULL: all). */
typedef struct orders_demo_source {
    eddy_store *store;
    const char *const *types;
    size_t ntypes;
} orders_demo_source;

/* What the demo's report needs (report.c): the stores to fold, the stores
 * holding the tables (stock, sent_mail, order_read_model: the demo's one
 * store in process, each service's own store apart; read through
 * eddy_store_sql_query) and the run's figures. Plain data, borrowed. */
typedef struct orders_demo_inputs {
    const orders_demo_source *sources;
    size_t nsources;
    eddy_store *stock_store, *mail_store, *rm_store;
    unsigned long expected;    /* orders the store must hold: the earlier
                                  runs' and this run's */
    unsigned long first_new;   /* the number of this run's first order (its
                                  orders give the latency figures) */
    bool finished_ok;          /* every order finished in time, idle after */
    unsigned long finished;    /* orders finished while timing */
    int64_t t0, t1;            /* start, last finished order (µs) */
    int64_t events_during;     /* events stored between t0 and t1 */
    long dead;                 /* dead letters, every store */
    unsigned long running;     /* saga instances still running */
    eddy_store_stats writer;   /* the store's group commits (in process;
                                  zeros across processes) */
} orders_demo_inputs;

/* Folds the stores, prints the summary and the invariant checks to `out`.
 * Returns 0 when every invariant holds, else 1. */
int orders_demo_report(const orders_demo_options *opts,
                       const orders_demo_inputs *r, FILE *out);

/* What a store already holds, for `eddy demo` on a store of an earlier
 * run (report.c). Plain data. */
typedef struct orders_demo_survey {
    int64_t head;              /* the store's head when surveyed */
    unsigned long placed;      /* orders placed */
    unsigned long unfinished;  /* ... neither confirmed nor cancelled yet */
    unsigned long last_number; /* the highest order number (o<number>) */
    unsigned long users;       /* users registered */
    long stock_units;          /* stock added, every product */
} orders_demo_survey;

/* Fills `*sv` from a fold of `store` (every event up to its head).
 * Returns EDDY_OK or the read's error with `err` filled. */
int orders_demo_survey_store(eddy_store *store, orders_demo_survey *sv,
                             eddy_error *err);

/* The demo's catalogue (demo.c): product i's id, for i < orders_products(),
 * and the items and customer of order number i (a new array of
 * {product_id, quantity, price}, or NULL when out of memory). */
size_t orders_products(void);
const char *orders_product_id(size_t i);
json_t *orders_demo_items(uint64_t seed, unsigned long i, unsigned users,
                          char *customer, size_t size);

/* ---- faults and stopping (faults.c) --------------------------------------- */

/* "SIGTERM", "SIGINT", ... for messages; a static string. */
const char *orders_signal_name(int sig);

/* Creates a new directory $TMPDIR/eddy-demo-XXXXXX (TMPDIR unset or empty:
 * /tmp) and writes its path into `buf`. Returns 0, or -1 with errno. */
int orders_temp_dir(char *buf, size_t size);

/*
 * Asks the store's writer whether it can still commit: one small write in
 * its next group commit. Returns EDDY_OK when it committed or failed for
 * another reason than a fault (orders_store_fault: the writer is only
 * busy, say); else the error, with `cause` naming the store (its URL,
 * redacted), the store's message and, for a SQLite file, the room left on
 * its file system ("the disk under store sqlite:/m/o.db is full: COMMIT:
 * database or disk is full (0 KiB free of 4096 KiB on its file system)").
 * Thread-safe; not from a store callback.
 */
int orders_store_probe(eddy_store *store, const char *url, char *cause,
                       size_t size);

/*
 * Whether error `rc` (message `msg`) of a write to the store at `url` is a
 * fault that no waiting cures: an I/O error (a full disk, a failing or
 * read-only medium) or a corrupt file. If so, fills `cause` as
 * orders_store_probe does and returns true. A probe may pass right after
 * such a failure (a small write can fit where a large one did not), so a
 * failure seen directly is judged on its own.
 */
bool orders_store_fault(const char *url, int rc, const char *msg,
                        char *cause, size_t size);

#endif
