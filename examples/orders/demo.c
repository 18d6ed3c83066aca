/*
 * examples/orders/demo.c - `eddy demo`: the order domain end to end on a
 * durable store, with a progress bar, a summary and invariant checks.
 *
 * The driver seeds the stock and the users, places the orders from several
 * producer threads, follows the store live to count finished orders (the
 * progress bar), waits until every handler is idle, then checks the result
 * against the store itself: the store is the source of truth, so every
 * figure of the summary and every invariant is computed from a fold of its
 * events, compared with the state the handlers kept (stock, sent_mail, the
 * read model).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orders/internal.h"

/* The catalogue: a few products with their prices. */
static const struct {
    const char *id;
    double price;
} PRODUCTS[] = {
    {"p-keyboard", 49.90}, {"p-mouse", 19.90},   {"p-monitor", 189.00},
    {"p-cable", 4.50},     {"p-headset", 59.00}, {"p-webcam", 39.90},
    {"p-dock", 129.00},    {"p-lamp", 24.00},
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
    int64_t t0;     /* when placing started (for --rate) */
    atomic_ulong *placed;
    atomic_int *failed;
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
        json_t *item = json_pack("{s:s, s:i, s:f}", "product_id",
                                 PRODUCTS[p].id, "quantity",
                                 1 + (int)rng_below(&s, 3), "price",
                                 PRODUCTS[p].price);
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
            int64_t wait = due - eddy_now_us();
            if (wait > 0) {
                struct timespec ts = {wait / 1000000, (wait % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
        }
        order_id(i, id, sizeof id);
        json_t *items = order_items(p->opts->cfg.seed, i, p->opts->users,
                                    customer, sizeof customer);
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

/* ---- the fold of the store ------------------------------------------------------ */

struct order_fold {
    bool placed;
    char customer[ORDERS_ID_MAX];
    double amount;
    int item_count;
    json_t *items;              /* new reference */
    int64_t placed_us, confirmed_us, cancelled_us;
    char reason[24];
    int confirmations, cancellations, payments, refunds;
};

struct fold {
    unsigned long norders;
    struct order_fold *orders;  /* index: the number in the order id */
    long stock[NPRODUCTS];      /* running stock in store order */
    long initial[NPRODUCTS];
    long min_stock;             /* lowest running stock seen */
    long other_orders;          /* order events for ids the demo did not place */
    int64_t events;
};

static int product_index(const char *id)
{
    for (size_t p = 0; p < NPRODUCTS; p++)
        if (strcmp(PRODUCTS[p].id, id) == 0)
            return (int)p;
    return -1;
}

static struct order_fold *fold_order(struct fold *f, const eddy_event *ev)
{
    const char *subject = eddy_event_subject(ev);
    char *end;
    if (!subject || subject[0] != 'o')
        return NULL;
    errno = 0;
    unsigned long i = strtoul(subject + 1, &end, 10);
    if (errno || *end || i == 0 || i > f->norders) {
        f->other_orders++;
        return NULL;
    }
    return &f->orders[i - 1];
}

static void stock_move(struct fold *f, const eddy_event *ev, int sign)
{
    json_t *items = json_object_get(eddy_event_data(ev), "items");
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        int p = product_index(json_string_value(json_object_get(item, "product_id")));
        if (p < 0)
            continue;
        f->stock[p] += sign * (long)json_integer_value(json_object_get(item, "quantity"));
        if (f->stock[p] < f->min_stock)
            f->min_stock = f->stock[p];
    }
}

/* Folds the events of `store` whose type is one of `types` (NULL: every
 * type): with one store per service, each type is folded from the store of
 * the service that produced it, so nothing is counted twice. */
static int fold_store(eddy_store *store, const char *const *types,
                      size_t ntypes, struct fold *f, eddy_error *err)
{
    eddy_cursor *c;
    eddy_record rec;
    int rc = eddy_store_read_all(store, 1, 0, &c, err);
    if (rc != EDDY_OK)
        return rc;
    while ((rc = eddy_cursor_next(c, &rec, err)) > 0) {
        const eddy_event *ev = rec.event;
        const char *type = eddy_event_type(ev);
        struct order_fold *o;
        f->events++;
        bool wanted = !types;
        for (size_t t = 0; !wanted && t < ntypes; t++)
            wanted = strcmp(type, types[t]) == 0;
        if (!wanted)
            continue;
        if (strcmp(type, ORDERS_STOCK_ADDED) == 0) {
            const char *pid = NULL;
            json_int_t q = 0;
            eddy_event_unpack(ev, NULL, "{s:s, s:I}", "product_id", &pid,
                              "quantity", &q);
            int p = pid ? product_index(pid) : -1;
            if (p >= 0) {
                f->stock[p] += (long)q;
                f->initial[p] += (long)q;
            }
        } else if (strcmp(type, ORDERS_INVENTORY_RESERVED) == 0) {
            stock_move(f, ev, -1);
        } else if (strcmp(type, ORDERS_INVENTORY_RELEASED) == 0) {
            stock_move(f, ev, +1);
        }
        if (!(o = fold_order(f, ev)))
            continue;
        if (strcmp(type, ORDERS_ORDER_PLACED) == 0) {
            const char *customer = "";
            json_t *items = NULL;
            eddy_event_unpack(ev, NULL, "{s:s, s:F, s:o}", "customer_id",
                              &customer, "amount", &o->amount, "items", &items);
            o->placed = true;
            snprintf(o->customer, sizeof o->customer, "%s", customer);
            o->item_count = (int)json_array_size(items);
            json_decref(o->items);
            o->items = json_incref(items);
            o->placed_us = eddy_event_time(ev);
        } else if (strcmp(type, ORDERS_ORDER_CONFIRMED) == 0) {
            o->confirmations++;
            o->confirmed_us = eddy_event_time(ev);
        } else if (strcmp(type, ORDERS_ORDER_CANCELLED) == 0) {
            const char *reason = "";
            eddy_event_unpack(ev, NULL, "{s:s}", "reason", &reason);
            o->cancellations++;
            o->cancelled_us = eddy_event_time(ev);
            snprintf(o->reason, sizeof o->reason, "%s", reason);
        } else if (strcmp(type, ORDERS_PAYMENT_PROCESSED) == 0) {
            o->payments++;
        } else if (strcmp(type, ORDERS_PAYMENT_REFUNDED) == 0) {
            o->refunds++;
        }
    }
    eddy_cursor_free(c);
    return rc < 0 ? -rc : EDDY_OK;
}

static void fold_free(struct fold *f)
{
    for (unsigned long i = 0; f->orders && i < f->norders; i++)
        json_decref(f->orders[i].items);
    free(f->orders);
}

/* ---- checks ------------------------------------------------------------------- */

struct checks {
    FILE *out;
    int failed;
};

static void check(struct checks *c, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check(struct checks *c, bool ok, const char *fmt, ...)
{
    va_list ap;
    fputs(ok ? "ok   " : "FAIL ", c->out);
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
    if (!ok)
        c->failed++;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The SQLite file behind `url` ("sqlite:PATH" or PATH). */
static const char *sqlite_path(const char *url)
{
    return strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
}

/* Compares the handlers' tables with the fold: stock, mails, read model. */
static void check_tables(struct checks *c, sqlite3 *stock_db,
                         sqlite3 *mail_db, sqlite3 *rm_db,
                         const struct fold *f, unsigned long confirmed,
                         unsigned users)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db = stock_db;
    /* stock */
    long table[NPRODUCTS], expect[NPRODUCTS];
    bool known[NPRODUCTS] = {false};
    long min_table = 0;
    int bad = 0;
    for (size_t p = 0; p < NPRODUCTS; p++)
        expect[p] = f->initial[p];
    for (unsigned long i = 0; i < f->norders; i++) {
        const struct order_fold *o = &f->orders[i];
        if (o->confirmations != 1)
            continue;
        size_t k;
        json_t *item;
        json_array_foreach(o->items, k, item) {
            int p = product_index(json_string_value(json_object_get(item, "product_id")));
            if (p >= 0)
                expect[p] -= (long)json_integer_value(json_object_get(item, "quantity"));
        }
    }
    if (sqlite3_prepare_v2(db, "SELECT product_id, quantity FROM stock", -1,
                           &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            int p = product_index((const char *)sqlite3_column_text(st, 0));
            long q = (long)sqlite3_column_int64(st, 1);
            if (q < min_table)
                min_table = q;
            if (p < 0)
                continue;
            table[p] = q;
            known[p] = true;
        }
    }
    sqlite3_finalize(st);
    for (size_t p = 0; p < NPRODUCTS; p++)
        if (!known[p] || table[p] != expect[p] || f->stock[p] != expect[p])
            bad++;
    check(c, min_table >= 0 && f->min_stock >= 0 && bad == 0,
          "stock never negative (lowest %ld) and = initial - confirmed "
          "quantities for %d/%zu products",
          f->min_stock < min_table ? f->min_stock : min_table,
          (int)(NPRODUCTS - (size_t)bad), NPRODUCTS);

    /* mails: exactly one confirmation per confirmed order, one welcome per user */
    db = mail_db;
    unsigned long good = 0, mails = 0, welcome = 0, stray = 0;
    if (sqlite3_prepare_v2(db, "SELECT kind, about, count(*) FROM sent_mail "
                           "GROUP BY kind, about", -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *kind = (const char *)sqlite3_column_text(st, 0);
            const char *about = (const char *)sqlite3_column_text(st, 1);
            long n = (long)sqlite3_column_int64(st, 2);
            if (strcmp(kind, "welcome") == 0) {
                welcome += n == 1;
                stray += n != 1;
                continue;
            }
            mails += (unsigned long)n;
            char *end;
            unsigned long i = about[0] == 'o' ? strtoul(about + 1, &end, 10) : 0;
            if (i >= 1 && i <= f->norders && n == 1 &&
                f->orders[i - 1].confirmations == 1)
                good++;
            else
                stray++;
        }
    }
    sqlite3_finalize(st);
    check(c, good == confirmed && mails == confirmed && stray == 0,
          "every confirmed order had exactly one confirmation mail "
          "(%lu/%lu; %lu mails)", good, confirmed, mails);
    check(c, welcome == users && stray == 0,
          "every user got exactly one welcome mail (%lu/%u)", welcome, users);

    /* the read model against the fold */
    db = rm_db;
    unsigned long rows = 0, same = 0;
    if (sqlite3_prepare_v2(db, "SELECT order_id, customer_id, status, total, "
                           "item_count, created_at, confirmed_at, cancelled_at, "
                           "cancel_reason FROM order_read_model", -1, &st,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            rows++;
            const char *id = (const char *)sqlite3_column_text(st, 0);
            char *end;
            unsigned long i = id[0] == 'o' ? strtoul(id + 1, &end, 10) : 0;
            if (i < 1 || i > f->norders)
                continue;
            const struct order_fold *o = &f->orders[i - 1];
            const char *status = o->confirmations ? "CONFIRMED"
                                 : o->cancellations ? "CANCELLED"
                                                    : "PENDING";
            const char *reason = (const char *)sqlite3_column_text(st, 8);
            bool eq = o->placed &&
                      strcmp((const char *)sqlite3_column_text(st, 1), o->customer) == 0 &&
                      strcmp((const char *)sqlite3_column_text(st, 2), status) == 0 &&
                      fabs(sqlite3_column_double(st, 3) - o->amount) < 1e-6 &&
                      sqlite3_column_int(st, 4) == o->item_count &&
                      sqlite3_column_int64(st, 5) == o->placed_us &&
                      sqlite3_column_int64(st, 6) == o->confirmed_us &&
                      sqlite3_column_int64(st, 7) == o->cancelled_us &&
                      strcmp(reason ? reason : "", o->reason) == 0;
            same += eq;
        }
    }
    sqlite3_finalize(st);
    unsigned long placed = 0;
    for (unsigned long i = 0; i < f->norders; i++)
        placed += f->orders[i].placed;
    check(c, rows == placed && same == placed,
          "read model equals a fold of the store (%lu/%lu rows match)", same,
          placed);
}

static int count_running(const eddy_saga_info *info, void *user)
{
    (void)info;
    (*(unsigned long *)user)++;
    return 0;
}

/* ---- the run ---------------------------------------------------------------------- */

static int fail_status(FILE *out, const char *what, const eddy_error *e)
{
    fprintf(stderr, "eddy demo: %s: %s\n", what,
            e->message[0] ? e->message : eddy_strerror(e->code));
    (void)out;
    return 1;
}

int orders_demo_report(const orders_demo_options *opts,
                       const orders_demo_inputs *r, FILE *out)
{
    eddy_error err = {0};
    struct fold f = {0};
    int status = 1;
    f.norders = opts->orders;
    if (!(f.orders = calloc(opts->orders ? opts->orders : 1, sizeof *f.orders))) {
        fprintf(stderr, "eddy demo: out of memory\n");
        goto done;
    }
    for (size_t k = 0; k < r->nsources; k++)
        if (fold_store(r->sources[k].store, r->sources[k].types,
                       r->sources[k].ntypes, &f, &err) != EDDY_OK) {
            status = fail_status(out, "reading the store", &err);
            goto done;
        }

    /* figures */
    unsigned long n_placed = 0, confirmed = 0, cancelled = 0, ended = 0;
    unsigned long by_reason[3] = {0}, refunds = 0, paid_cancelled = 0;
    unsigned long refund_ok = 0;
    int64_t *lat = calloc(opts->orders ? opts->orders : 1, sizeof *lat);
    size_t nlat = 0;
    if (!lat) {
        fprintf(stderr, "eddy demo: out of memory\n");
        goto done;
    }
    for (unsigned long i = 0; i < f.norders; i++) {
        struct order_fold *o = &f.orders[i];
        n_placed += o->placed;
        confirmed += o->confirmations == 1;
        cancelled += o->cancellations == 1;
        refunds += (unsigned long)o->refunds;
        bool one_end = o->placed && o->confirmations + o->cancellations == 1;
        ended += one_end;
        if (o->cancellations == 1) {
            by_reason[strcmp(o->reason, ORDERS_REASON_PAYMENT) == 0 ? 0
                      : strcmp(o->reason, ORDERS_REASON_STOCK) == 0 ? 1 : 2]++;
            paid_cancelled += o->payments > 0;
        }
        /* a refund exactly when the order was paid and then cancelled */
        refund_ok += (o->payments > 0 && o->cancellations == 1) ? o->refunds == 1
                                                                : o->refunds == 0;
        if (one_end)
            lat[nlat++] = (o->confirmations ? o->confirmed_us : o->cancelled_us) -
                          o->placed_us;
    }
    qsort(lat, nlat, sizeof *lat, cmp_i64);
    double secs = (double)(r->t1 - r->t0) / 1e6;
    if (secs <= 0)
        secs = 1e-6;

    long welcome = 0, confirm_mails = 0;
    sqlite3 *db = r->mail_db;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT sum(kind = 'welcome'), sum(kind = "
                           "'order_confirmation') FROM sent_mail", -1, &st,
                           NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        welcome = (long)sqlite3_column_int64(st, 0);
        confirm_mails = (long)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);

    fprintf(out, "\n");
    fprintf(out, "orders placed       %lu\n", n_placed);
    fprintf(out, "  confirmed         %lu\n", confirmed);
    fprintf(out, "  cancelled         %lu (payment_failed %lu, out_of_stock %lu, "
            "timeout %lu)\n", cancelled, by_reason[0], by_reason[1], by_reason[2]);
    fprintf(out, "refunds             %lu\n", refunds);
    fprintf(out, "mails sent          %ld (welcome %ld, order confirmation %ld)\n",
            welcome + confirm_mails, welcome, confirm_mails);
    fprintf(out, "events stored       %lld\n", (long long)f.events);
    fprintf(out, "dead letters        %ld\n", r->dead);
    fprintf(out, "throughput          %.1f orders/s, %.1f events/s (%.2f s)\n",
            (double)r->finished / secs, (double)r->events_during / secs, secs);
    if (nlat)
        fprintf(out, "latency per order   p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
                lat[(nlat - 1) / 2] / 1e3, lat[(size_t)((double)(nlat - 1) * 0.99)] / 1e3,
                lat[nlat - 1] / 1e3);
    free(lat);
    fprintf(out, "\ninvariants\n");
    struct checks c = {.out = out};
    check(&c, r->finished_ok,
          "every order finished within %d s and the handlers went idle",
          opts->timeout_s);
    check(&c, n_placed == opts->orders && ended == opts->orders &&
                  confirmed + cancelled == opts->orders && f.other_orders == 0,
          "every order ends CONFIRMED or CANCELLED, exactly once (%lu/%lu)",
          ended, opts->orders);
    check(&c, refund_ok == f.norders && refunds == paid_cancelled,
          "refunds (%lu) equal orders paid then cancelled (%lu)", refunds,
          paid_cancelled);
    check_tables(&c, r->stock_db, r->mail_db, r->rm_db, &f, confirmed,
                 opts->users);
    check(&c, r->dead == 0, "no dead letters (%ld)", r->dead);
    check(&c, r->running == 0, "no saga instance left running (%lu)",
          r->running);
    status = c.failed ? 1 : 0;
    fprintf(out, "%s\n", c.failed ? "some invariants FAILED" : "all invariants hold");

done:
    fold_free(&f);
    return status;
}

int orders_demo_run(const orders_demo_options *opts, FILE *out)
{
    eddy_error err = {0};
    char dir[] = "/tmp/eddy-demo-XXXXXX";
    char path[sizeof dir + 32];
    const char *url = opts->store_url;
    eddy_schema_registry *reg = NULL;
    eddy_store *store = NULL;
    orders_app *app = NULL;
    eddy_store_subscription *sub = NULL;
    struct producer *prod = NULL;
    sqlite3 *db = NULL;
    int status = 1;
    bool made_dir = false, hooked = false;
    struct monitor mon = {.mu = PTHREAD_MUTEX_INITIALIZER,
                          .cv = PTHREAD_COND_INITIALIZER};
    atomic_ulong placed = 0;
    atomic_int producer_failed = 0;
    unsigned nprod = opts->producers ? opts->producers : 4;
    long stock = opts->stock >= 0 ? opts->stock
                                  : (long)((opts->orders * 9 + 19) / 20);

    if (opts->transport)
        return orders_remote_demo_run(opts, out);
    if (!url) {
        if (!mkdtemp(dir)) {
            fprintf(stderr, "eddy demo: cannot create a temporary directory: %s\n",
                    strerror(errno));
            return 1;
        }
        made_dir = true;
        snprintf(path, sizeof path, "sqlite:%s/orders.db", dir);
        url = path;
    }
    if (!(reg = orders_schemas_new(&err))) {
        status = fail_status(out, "schemas", &err);
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
        status = fail_status(out, url, &err);
        goto done;
    }
    int64_t head0 = 0;
    if (eddy_store_head(store, &head0, &err) != EDDY_OK) {
        status = fail_status(out, url, &err);
        goto done;
    }
    if (head0 != 0) {
        fprintf(stderr, "eddy demo: %s already holds %lld events; the demo "
                "needs an empty store\n", url, (long long)head0);
        goto done;
    }
    fprintf(out, "eddy demo: %lu orders from %u users, %zu products x %ld in "
            "stock, payment failure rate %.2f, latency up to %u us, seed %llu, "
            "%u workers, %u producers\n",
            opts->orders, opts->users, NPRODUCTS, stock,
            opts->cfg.payment_failure_rate, opts->cfg.payment_latency_us,
            (unsigned long long)opts->cfg.seed, opts->cfg.workers ? opts->cfg.workers : 4,
            nprod);
    if (opts->rate > 0)
        fprintf(out, "orders placed at %.1f per second (open loop)\n", opts->rate);
    fprintf(out, "store: %s (sync full, %zu event schemas checked on append)%s\n",
            sqlite_path(url), orders_schema_count(),
            made_dir && !opts->keep ? ", removed at exit (--keep keeps it)" : "");
    fflush(out);

    if (!(app = orders_app_start(store, &opts->cfg, &err))) {
        status = fail_status(out, "starting the order domain", &err);
        goto done;
    }
    if (opts->on_store && opts->on_store(store, opts->on_store_user) != 0)
        goto done;
    hooked = opts->on_store != NULL;
    /* stock and users first, and handled, so the orders find them */
    for (size_t p = 0; stock > 0 && p < NPRODUCTS; p++)
        if (orders_add_stock(app, PRODUCTS[p].id, stock, &err) != EDDY_OK) {
            status = fail_status(out, "adding stock", &err);
            goto done;
        }
    for (unsigned u = 1; u <= opts->users; u++) {
        char id[16], email[64], name[32];
        snprintf(id, sizeof id, "u%04u", u);
        snprintf(email, sizeof email, "user%u@example.com", u);
        snprintf(name, sizeof name, "User %u", u);
        if (orders_register_user(app, id, email, name, &err) != EDDY_OK) {
            status = fail_status(out, "registering users", &err);
            goto done;
        }
    }
    if (orders_app_wait_idle(app, 60000) != EDDY_OK) {
        fprintf(stderr, "eddy demo: stock and users not handled within 60 s\n");
        goto done;
    }

    /* follow finished orders live, then place the orders */
    int64_t head1 = 0;
    if (eddy_store_head(store, &head1, &err) != EDDY_OK) {
        status = fail_status(out, url, &err);
        goto done;
    }
    static const char *const FINISHED[] = {ORDERS_ORDER_CONFIRMED,
                                           ORDERS_ORDER_CANCELLED};
    eddy_store_subscribe_options sub_opts = {.types = FINISHED, .type_count = 2};
    if (eddy_store_subscribe(store, head1, on_finished, &mon, &sub_opts, &sub,
                             &err) != EDDY_OK) {
        status = fail_status(out, "following the store", &err);
        goto done;
    }
    if (!(prod = calloc(nprod, sizeof *prod))) {
        fprintf(stderr, "eddy demo: out of memory\n");
        goto done;
    }
    int64_t t0 = eddy_now_us();
    unsigned started = 0;
    for (; started < nprod; started++) {
        prod[started] = (struct producer){.app = app, .opts = opts,
                                          .index = started, .count = nprod,
                                          .t0 = t0,
                                          .placed = &placed,
                                          .failed = &producer_failed};
        if (pthread_create(&prod[started].thread, NULL, producer_main,
                           &prod[started]) != 0)
            break;
    }
    /* the progress bar, until every order finished or the time is up */
    bool tty = isatty(STDERR_FILENO);
    int decile = -1;
    int64_t deadline = t0 + (int64_t)opts->timeout_s * 1000000;
    unsigned long finished = 0;
    bool timed_out = false;
    pthread_mutex_lock(&mon.mu);
    for (;;) {
        finished = mon.finished;
        pthread_mutex_unlock(&mon.mu);
        progress(finished, atomic_load(&placed), opts->orders, tty, &decile);
        pthread_mutex_lock(&mon.mu);
        if (mon.finished >= opts->orders)
            break;
        if (eddy_now_us() >= deadline || atomic_load(&producer_failed) ||
            started < nprod) {
            timed_out = true;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&mon.cv, &mon.mu, &ts);
    }
    finished = mon.finished;
    int64_t t1 = mon.last_us ? mon.last_us : eddy_now_us();
    pthread_mutex_unlock(&mon.mu);
    if (tty && timed_out)
        fputc('\n', stderr);
    int producer_rc = EDDY_OK;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(prod[i].thread, NULL);
        if (prod[i].rc != EDDY_OK && producer_rc == EDDY_OK) {
            producer_rc = prod[i].rc;
            fail_status(out, "placing orders", &prod[i].err);
        }
    }
    eddy_store_subscription_free(sub);
    sub = NULL;
    int64_t head2 = 0;
    eddy_store_head(store, &head2, NULL);
    /* let mails, refunds and the read model finish, then stop (persisting
     * every checkpoint) before reading the results */
    int idle = orders_app_wait_idle(app, 60000);
    unsigned long running = 0;
    eddy_saga_list(store, ORDERS_SAGA, "running", count_running, &running, NULL);
    if (orders_app_stop(app, &err) != EDDY_OK)
        fail_status(out, "stopping the order domain", &err);
    long dead = orders_dead_letters(store);

    {
        orders_demo_source src = {.store = store};
        orders_demo_inputs in = {
            .sources = &src, .nsources = 1,
            .finished_ok = !timed_out && producer_rc == EDDY_OK && idle == EDDY_OK,
            .finished = finished, .t0 = t0, .t1 = t1,
            .events_during = head2 - head1, .dead = dead, .running = running,
        };
        const char *file = sqlite_path(url);
        if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            fprintf(stderr, "eddy demo: cannot read %s: %s\n", file,
                    db ? sqlite3_errmsg(db) : "out of memory");
            goto done;
        }
        sqlite3_busy_timeout(db, 5000);
        in.stock_db = in.mail_db = in.rm_db = db;
        status = orders_demo_report(opts, &in, out);
    }

done:
    if (hooked)
        opts->on_store(NULL, opts->on_store_user);
    if (db)
        sqlite3_close(db);
    free(prod);
    eddy_store_subscription_free(sub);
    orders_app_free(app);
    eddy_store_close(store);
    eddy_schema_registry_free(reg);
    if (made_dir && !opts->keep) {
        const char *suffix[] = {"", "-wal", "-shm"};
        for (size_t i = 0; i < 3; i++) {
            char p[sizeof path + 8];
            snprintf(p, sizeof p, "%s/orders.db%s", dir, suffix[i]);
            unlink(p);
        }
        rmdir(dir);
    } else if (made_dir) {
        fprintf(out, "store kept: %s\n", sqlite_path(url));
    }
    return status;
}
