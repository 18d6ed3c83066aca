/*
 * examples/orders/demo.c - `eddy demo`: the order domain end to end on a
 * durable store, with a progress bar, a summary and invariant checks.
 *
 * The driver seeds the stock and the users, places the orders from several
 * producer threads, follows the store live to count finished orders (the
 * progress bar), waits until every handler is idle, then checks the result
 * against the store itself (report.c).
 *
 * A store that already holds orders (an earlier run, finished or killed)
 * is resumed, not refused: the subscriptions, the projection and the saga
 * continue from their checkpoints and finish the earlier orders, this run's
 * orders are numbered after the highest one in the store, and the checks
 * cover every order in it. The stock is seeded only while the store holds
 * no order, as inventory.stock.added events appended with expected version
 * "no stream" on product-<id> (so a run killed while seeding finishes the
 * seeding, and a product is never seeded twice): the initial stock is the
 * sum of those events, never re-seeded on resume.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orders/internal.h"

/* The catalogue: a few products with their prices in cents. */
static const struct {
    const char *id;
    int64_t price;
} PRODUCTS[] = {
    {"p-keyboard", 4990}, {"p-mouse", 1990},   {"p-monitor", 18900},
    {"p-cable", 450},     {"p-headset", 5900}, {"p-webcam", 3990},
    {"p-dock", 12900},    {"p-lamp", 2400},
};
#define NPRODUCTS (sizeof PRODUCTS / sizeof PRODUCTS[0])

/* ---- a small deterministic RNG --------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rng_next(s) % n);
}

static void order_id(unsigned long i, char *buf, size_t size)
{
    snprintf(buf, size, "o%07lu", i);
}

size_t orders_products(void)
{
    return NPRODUCTS;
}

const char *orders_product_id(size_t i)
{
    return i < NPRODUCTS ? PRODUCTS[i].id : NULL;
}

/* ---- producers ----------------------------------------------------------------- */

struct producer {
    pthread_t thread;
    orders_app *app;
    const orders_demo_options *opts;
    unsigned index, count;
    unsigned long base; /* this run's order i is number base + i */
    int64_t t0;     /* when placing started (for --rate) */
    atomic_ulong *placed;
    atomic_int *failed;
    atomic_int *stop;   /* the run ends early: place no more */
    int rc;
    eddy_error err;
};

/* Order i: 1-3 distinct products, 1-3 units each, a customer; all drawn from
 * the seed and i, so a run is the same whatever the thread scheduling. */
static json_t *order_items(uint64_t seed, unsigned long i, unsigned users,
                           char *customer, size_t size)
{
    char key[32];
    snprintf(key, sizeof key, "order/%lu", i);
    uint64_t s = orders_hash(seed, key);
    snprintf(customer, size, "u%04u", 1 + rng_below(&s, users));
    unsigned lines = 1 + rng_below(&s, 3);
    unsigned first = rng_below(&s, NPRODUCTS);
    json_t *items = json_array();
    for (unsigned l = 0; items && l < lines; l++) {
        unsigned p = (first + l * 3) % NPRODUCTS; /* distinct: 3 and 8 coprime */
        json_t *item = json_pack("{s:s, s:i, s:I}", "product_id",
                                 PRODUCTS[p].id, "quantity",
                                 1 + (int)rng_below(&s, 3), "price",
                                 (json_int_t)PRODUCTS[p].price);
        if (!item || json_array_append_new(items, item) != 0) {
            json_decref(items);
            return NULL;
        }
    }
    return items;
}

json_t *orders_demo_items(uint64_t seed, unsigned long i, unsigned users,
                          char *customer, size_t size)
{
    return order_items(seed, i, users, customer, size);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    for (unsigned long i = 1 + p->index; i <= p->opts->orders; i += p->count) {
        char id[32], customer[32];
        if (p->opts->rate > 0) { /* open loop: order i is due at (i-1)/rate */
            int64_t due = p->t0 + (int64_t)((double)(i - 1) * 1e6 / p->opts->rate);
            /* in slices, so that a stop is seen within 100 ms */
            for (int64_t wait; !atomic_load(p->stop) &&
                               (wait = due - eddy_now_us()) > 0;) {
                if (wait > 100000)
                    wait = 100000;
                struct timespec ts = {0, (long)wait * 1000};
                nanosleep(&ts, NULL);
            }
        }
        if (atomic_load(p->stop))
            break;
        order_id(p->base + i, id, sizeof id);
        json_t *items = order_items(p->opts->cfg.seed, p->base + i,
                                    p->opts->users, customer, sizeof customer);
        if (!items) {
            p->rc = EDDY_ENOMEM;
            snprintf(p->err.message, sizeof p->err.message, "out of memory");
            break;
        }
        p->rc = orders_place_order(p->app, id, customer, items, &p->err);
        json_decref(items);
        if (p->rc != EDDY_OK) {
            atomic_store(p->failed, 1);
            break;
        }
        atomic_fetch_add(p->placed, 1);
    }
    return NULL;
}

/* ---- following the store: finished orders ---------------------------------------- */

struct monitor {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned long finished;
    int64_t last_us; /* wall clock of the last finished order */
};

static int on_finished(const eddy_record *rec, void *user)
{
    (void)rec;
    struct monitor *m = user;
    pthread_mutex_lock(&m->mu);
    m->finished++;
    m->last_us = eddy_now_us();
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static void progress(unsigned long done, unsigned long placed,
                     unsigned long total, bool tty, int *last_decile)
{
    int pct = total ? (int)(done * 100 / total) : 100;
    if (tty) {
        char bar[41];
        int fill = pct * 40 / 100;
        for (int i = 0; i < 40; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[40] = '\0';
        fprintf(stderr, "\r[%s] %3d%% %lu/%lu orders finished, %lu placed",
                bar, pct, done, total, placed);
        if (done >= total)
            fputc('\n', stderr);
        fflush(stderr);
    } else if (pct / 10 > *last_decile) {
        *last_decile = pct / 10;
        fprintf(stderr, "eddy demo: %d%% (%lu/%lu orders finished, %lu "
                "placed)\n", pct, done, total, placed);
    }
}

/* ---- the run ---------------------------------------------------------------------- */

static int fail_status(const char *what, const eddy_error *e)
{
    fprintf(stderr, "eddy demo: %s: %s\n", what,
            e->message[0] ? e->message : eddy_strerror(e->code));
    return 1;
}

static int count_running(const eddy_saga_info *info, void *user)
{
    (void)info;
    (*(unsigned long *)user)++;
    return 0;
}

/* The store as messages show it: the SQLite file behind "sqlite:PATH" or
 * PATH; any other URL with its password hidden (eddy_url_redact). Uses one
 * static buffer: the demo's main thread only. */
static const char *store_path(const char *url)
{
    static char shown[1024];
    if (strncmp(url, "sqlite:", 7) == 0)
        return url + 7;
    return eddy_url_redact(url, shown, sizeof shown);
}

/* Seeds `stock` units of every product, only while the store holds no
 * order (see the file comment): inventory.stock.added on product-<id> with
 * expected version "no stream", so a product seeded by an earlier run is
 * left alone. Then registers the users u0001..u<users> not registered yet
 * (user-<id> exists: an earlier run's). */
static int seed(orders_app *app, const orders_demo_options *opts, long stock,
                bool has_orders, eddy_error *err)
{
    int rc = EDDY_OK;
    for (size_t p = 0; !has_orders && stock > 0 && rc == EDDY_OK && p < NPRODUCTS; p++) {
        rc = orders_add_stock(app, PRODUCTS[p].id, stock, EDDY_EXPECT_NO_STREAM,
                              err);
        if (rc == EDDY_ECONFLICT)
            rc = EDDY_OK;
    }
    for (unsigned u = 1; rc == EDDY_OK && u <= opts->users; u++) {
        char id[16], email[64], name[32];
        snprintf(id, sizeof id, "u%04u", u);
        snprintf(email, sizeof email, "user%u@example.com", u);
        snprintf(name, sizeof name, "User %u", u);
        rc = orders_register_user(app, id, email, name, err);
        if (rc == EDDY_ECONFLICT)
            rc = EDDY_OK;
    }
    return rc;
}

/* ---- ending early ------------------------------------------------------------------ */

/* How often the run asks the store's writer whether it can still commit. */
#define PROBE_EVERY_US 1000000

/*
 * What ends a run before its orders finished: a signal the caller's
 * `interrupted` reports, or a fault that no waiting cures (the store cannot
 * write: faults.c). The driver thread looks between its waits, which are
 * all cut into slices of at most 500 ms.
 */
struct guard {
    const orders_demo_options *opts;
    eddy_store *store;     /* NULL until open */
    const char *url;
    int64_t next_probe_us;
    int signal;            /* the signal that ended the run, or 0 */
    char cause[1024];      /* the fault that ended it, or "" */
};

/* Whether the run must end now (g->signal or g->cause says why). */
static bool guard_stop(struct guard *g)
{
    if (g->signal || g->cause[0])
        return true;
    if (g->opts->interrupted &&
        (g->signal = g->opts->interrupted(g->opts->interrupted_user)) != 0)
        return true;
    int64_t now = eddy_now_us();
    if (g->store && now >= g->next_probe_us) {
        g->next_probe_us = now + PROBE_EVERY_US;
        if (orders_store_probe(g->store, g->url, g->cause, sizeof g->cause) !=
            EDDY_OK)
            return true;
    }
    return false;
}

/* orders_app_wait_idle for up to `timeout_ms`, in slices with the guard
 * looking between them. Returns EDDY_OK, EDDY_ETIMEDOUT, EDDY_ESTOPPED (the
 * guard ended the run) or a store error. */
static int wait_idle(orders_app *app, struct guard *g, int timeout_ms)
{
    int64_t deadline = eddy_now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        if (guard_stop(g))
            return EDDY_ESTOPPED;
        int64_t left = (deadline - eddy_now_us()) / 1000;
        if (left <= 0)
            return EDDY_ETIMEDOUT;
        int rc = orders_app_wait_idle(app, left < 500 ? (int)left : 500);
        if (rc != EDDY_ETIMEDOUT)
            return rc;
    }
}

/* ---- the run ---------------------------------------------------------------------- */

enum follow_end { FOLLOW_DONE, FOLLOW_TIMEOUT, FOLLOW_PRODUCER_FAILED, FOLLOW_STOPPED };

/* Waits on the monitor until `target` orders finished, the deadline passes,
 * a producer fails or the guard ends the run, drawing the progress. `*t1`
 * receives when the last order finished. */
static enum follow_end follow(struct monitor *mon, unsigned long target,
                              atomic_ulong *placed, atomic_int *producer_failed,
                              bool all_started, int64_t deadline,
                              struct guard *g, int64_t *t1)
{
    bool tty = isatty(STDERR_FILENO);
    enum follow_end end = FOLLOW_DONE;
    int decile = -1;
    pthread_mutex_lock(&mon->mu);
    for (;;) {
        unsigned long finished = mon->finished;
        pthread_mutex_unlock(&mon->mu);
        progress(finished, atomic_load(placed), target, tty, &decile);
        if (finished < target && guard_stop(g))
            end = FOLLOW_STOPPED;
        pthread_mutex_lock(&mon->mu);
        if (end != FOLLOW_DONE || mon->finished >= target)
            break;
        if (atomic_load(producer_failed) || !all_started) {
            end = FOLLOW_PRODUCER_FAILED;
            break;
        }
        if (eddy_now_us() >= deadline) {
            end = FOLLOW_TIMEOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&mon->cv, &mon->mu, &ts);
    }
    *t1 = mon->last_us ? mon->last_us : eddy_now_us();
    pthread_mutex_unlock(&mon->mu);
    if (tty && end != FOLLOW_DONE)
        fputc('\n', stderr);
    return end;
}

/* Removes the temporary store `dir` holds (orders.db and its WAL files),
 * then `dir`. */
static void remove_temp_store(const char *dir)
{
    static const char *const SUFFIX[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[1100];
        snprintf(p, sizeof p, "%s/orders.db%s", dir, SUFFIX[i]);
        unlink(p);
    }
    rmdir(dir);
}

int orders_demo_run(const orders_demo_options *opts, FILE *out)
{
    eddy_error err = {0};
    char dir[1024];
    char path[sizeof dir + 32];
    const char *url = opts->store_url;
    eddy_schema_registry *reg = NULL;
    eddy_store *store = NULL;
    orders_app *app = NULL;
    eddy_store_subscription *sub = NULL;
    struct producer *prod = NULL;
    unsigned started = 0;
    int status = 1;
    bool made_dir = false, hooked = false;
    struct monitor mon = {.mu = PTHREAD_MUTEX_INITIALIZER,
                          .cv = PTHREAD_COND_INITIALIZER};
    atomic_ulong placed = 0;
    atomic_int producer_failed = 0, stop_producers = 0;
    unsigned nprod = opts->producers ? opts->producers : 16;
    long stock = opts->stock >= 0 ? opts->stock
                                  : (long)((opts->orders * 9 + 19) / 20);
    struct guard g = {.opts = opts};
    unsigned long target = 0;
    int rc;

    if (opts->transport)
        return orders_remote_demo_run(opts, out);
    if (opts->instances)
        return orders_instances_demo_run(opts, out);
    if (!url) {
        if (orders_temp_dir(dir, sizeof dir) != 0) {
            fprintf(stderr, "eddy demo: cannot create a temporary directory: %s\n",
                    strerror(errno));
            return 1;
        }
        made_dir = true;
        snprintf(path, sizeof path, "sqlite:%s/orders.db", dir);
        url = path;
    }
    g.url = url;
    if (!(reg = orders_schemas_new(&err))) {
        status = fail_status("schemas", &err);
        goto done;
    }
    eddy_store_options so = {
        .sync = EDDY_SYNC_FULL, /* the durable default */
        .check = eddy_schema_registry_check_hook,
        .check_user = reg,
        .transform = eddy_schema_registry_upcast_hook,
        .transform_user = reg,
    };
    if (!(store = eddy_store_open(url, &so, &err))) {
        status = fail_status(store_path(url), &err);
        goto done;
    }
    /* what earlier runs left: this run finishes their orders and numbers
     * its own after them */
    orders_demo_survey sv;
    if (orders_demo_survey_store(store, &sv, &err) != EDDY_OK) {
        status = fail_status(store_path(url), &err);
        goto done;
    }
    bool resuming = sv.placed > 0 || sv.last_number > 0;
    fprintf(out, "eddy demo: %lu orders from %u users, %zu products x %ld in "
            "stock, payment failure rate %.2f, latency up to %u us, seed %llu, "
            "%u workers, %u producers\n",
            opts->orders, opts->users, NPRODUCTS,
            resuming ? (long)(sv.stock_units / (long)NPRODUCTS) : stock,
            opts->cfg.payment_failure_rate, opts->cfg.payment_latency_us,
            (unsigned long long)opts->cfg.seed, opts->cfg.workers ? opts->cfg.workers : 4,
            nprod);
    if (resuming)
        fprintf(out, "resuming: the store holds %lld events and %lu orders, "
                "%lu of them unfinished (they finish first); its stock (%ld "
                "units) was seeded by the first run and is not seeded "
                "again%s; new orders from o%07lu\n",
                (long long)sv.head, sv.placed, sv.unfinished, sv.stock_units,
                opts->stock >= 0 ? " (--stock ignored)" : "",
                sv.last_number + 1);
    if (opts->rate > 0)
        fprintf(out, "orders placed at %.1f per second (open loop)\n", opts->rate);
    fprintf(out, "store: %s (sync full, %zu event schemas checked on append)%s\n",
            store_path(url), orders_schema_count(),
            made_dir && !opts->keep ? ", removed at exit (--keep keeps it)" : "");
    fflush(out);
    target = sv.unfinished + opts->orders;

    /* count finished orders from the surveyed head on: the earlier runs'
     * unfinished ones and this run's */
    static const char *const FINISHED[] = {ORDERS_ORDER_CONFIRMED,
                                           ORDERS_ORDER_CANCELLED};
    eddy_store_subscribe_options sub_opts = {.types = FINISHED, .type_count = 2};
    if (eddy_store_subscribe(store, sv.head, on_finished, &mon, &sub_opts,
                             &sub, &err) != EDDY_OK) {
        status = fail_status("following the store", &err);
        goto done;
    }
    if (!(app = orders_app_start(store, &opts->cfg, &err))) {
        status = fail_status("starting the order domain", &err);
        goto done;
    }
    if (opts->on_store && opts->on_store(store, opts->on_store_user) != 0)
        goto done;
    hooked = opts->on_store != NULL;
    if (app->read_model_rebuilt) {
        fprintf(out, "order_read_model: rebuilt from the events (its table "
                "had amounts in major units)\n");
        fflush(out);
    }
    g.store = store; /* the domain's tables exist: probe from now on */
    if (guard_stop(&g))
        goto ended_early;
    /* stock and users first, and handled (with the earlier runs' orders),
     * so the orders find them */
    if ((rc = seed(app, opts, stock, sv.placed > 0, &err)) != EDDY_OK) {
        if (orders_store_fault(url, rc, err.message, g.cause, sizeof g.cause) ||
            orders_store_probe(store, url, g.cause, sizeof g.cause) != EDDY_OK)
            goto ended_early;
        status = fail_status("seeding stock and users", &err);
        goto done;
    }
    int setup_ms = opts->timeout_s > 60 ? opts->timeout_s * 1000 : 60000;
    rc = wait_idle(app, &g, setup_ms);
    if (rc == EDDY_ESTOPPED)
        goto ended_early;
    if (rc != EDDY_OK) {
        fprintf(stderr, "eddy demo: stock, users and earlier orders not "
                "handled within %d s\n", setup_ms / 1000);
        goto done;
    }

    /* place the orders */
    int64_t head1 = 0;
    if (eddy_store_head(store, &head1, &err) != EDDY_OK) {
        status = fail_status(store_path(url), &err);
        goto done;
    }
    if (!(prod = calloc(nprod, sizeof *prod))) {
        fprintf(stderr, "eddy demo: out of memory\n");
        goto done;
    }
    pthread_mutex_lock(&mon.mu);
    unsigned long finished0 = mon.finished;
    pthread_mutex_unlock(&mon.mu);
    int64_t t0 = eddy_now_us();
    for (; started < nprod; started++) {
        prod[started] = (struct producer){.app = app, .opts = opts,
                                          .index = started, .count = nprod,
                                          .base = sv.last_number, .t0 = t0,
                                          .placed = &placed,
                                          .failed = &producer_failed,
                                          .stop = &stop_producers};
        if (pthread_create(&prod[started].thread, NULL, producer_main,
                           &prod[started]) != 0)
            break;
    }
    /* the progress bar, until every order finished or the time is up */
    int64_t t1 = 0;
    enum follow_end end = follow(&mon, target, &placed, &producer_failed,
                                 started == nprod,
                                 t0 + (int64_t)opts->timeout_s * 1000000, &g,
                                 &t1);
    if (end == FOLLOW_STOPPED)
        goto ended_early;
    pthread_mutex_lock(&mon.mu);
    unsigned long finished = mon.finished - finished0;
    pthread_mutex_unlock(&mon.mu);
    int producer_rc = EDDY_OK;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(prod[i].thread, NULL);
        if (prod[i].rc != EDDY_OK && producer_rc == EDDY_OK) {
            producer_rc = prod[i].rc;
            /* the orders cannot all be placed: give up with the cause (the
             * store's, when it is the store that cannot write) */
            if (!orders_store_fault(url, prod[i].rc, prod[i].err.message,
                                    g.cause, sizeof g.cause) &&
                orders_store_probe(store, url, g.cause, sizeof g.cause) == EDDY_OK)
                snprintf(g.cause, sizeof g.cause, "placing orders: %s",
                         prod[i].err.message[0] ? prod[i].err.message
                                                : eddy_strerror(prod[i].rc));
        }
    }
    started = 0;
    if (end == FOLLOW_PRODUCER_FAILED && !g.cause[0])
        snprintf(g.cause, sizeof g.cause, "cannot start the order threads");
    if (g.cause[0])
        goto ended_early;
    eddy_store_subscription_free(sub);
    sub = NULL;
    int64_t head2 = 0;
    eddy_store_head(store, &head2, NULL);
    /* let mails, refunds and the read model finish, then stop (persisting
     * every checkpoint) before reading the results */
    int idle = wait_idle(app, &g, 60000);
    if (idle == EDDY_ESTOPPED)
        goto ended_early;
    unsigned long running = 0;
    eddy_saga_list(store, ORDERS_SAGA, "running", count_running, &running, NULL);
    if (orders_app_stop(app, &err) != EDDY_OK)
        fail_status("stopping the order domain", &err);
    long dead = orders_dead_letters(store);
    eddy_store_stats writer;
    eddy_store_stats_get(store, &writer);

    orders_demo_source src = {.store = store};
    orders_demo_inputs in = {
        .sources = &src, .nsources = 1,
        .stock_store = store, .mail_store = store, .rm_store = store,
        .expected = sv.placed + opts->orders,
        .first_new = sv.last_number + 1,
        .finished_ok = end == FOLLOW_DONE && idle == EDDY_OK,
        .finished = finished, .t0 = t0, .t1 = t1,
        .events_during = head2 - head1, .dead = dead, .running = running,
        .writer = writer,
    };
    status = orders_demo_report(opts, &in, out);
    goto done;

ended_early:
    /* a signal or a fault: no more orders, the domain stops at its
     * checkpoints (a later run on the same store resumes from them), and
     * no invariant check, as the run did not finish */
    atomic_store(&stop_producers, 1);
    for (unsigned i = 0; i < started; i++)
        pthread_join(prod[i].thread, NULL);
    started = 0;
    eddy_store_subscription_free(sub);
    sub = NULL;
    if (orders_app_stop(app, &err) != EDDY_OK && g.signal)
        fail_status("stopping the order domain", &err); /* after a fault:
                                                           the same fault */
    pthread_mutex_lock(&mon.mu);
    unsigned long done_orders = mon.finished;
    pthread_mutex_unlock(&mon.mu);
    if (g.signal) {
        fprintf(stderr, "eddy demo: interrupted by %s with %lu/%lu orders "
                "finished; the order domain stopped at its checkpoints\n",
                orders_signal_name(g.signal), done_orders, target);
        status = 128 + g.signal;
    } else {
        fprintf(stderr, "eddy demo: giving up with %lu/%lu orders finished: "
                "%s\n", done_orders, target, g.cause);
        status = 1;
    }

done:
    if (hooked)
        opts->on_store(NULL, opts->on_store_user);
    atomic_store(&stop_producers, 1);
    for (unsigned i = 0; i < started; i++)
        pthread_join(prod[i].thread, NULL);
    free(prod);
    eddy_store_subscription_free(sub);
    orders_app_free(app);
    eddy_store_close(store);
    eddy_schema_registry_free(reg);
    if (made_dir && !opts->keep) {
        remove_temp_store(dir);
        if (g.signal || g.cause[0])
            fprintf(stderr, "eddy demo: removed the temporary store %s\n", dir);
    } else if (made_dir) {
        fprintf(out, "store kept: %s\n", store_path(url));
    }
    if ((g.signal || g.cause[0]) && (!made_dir || opts->keep))
        fprintf(stderr, "eddy demo: resume with: eddy demo --store %s\n", url);
    return status;
}
