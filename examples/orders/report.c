/*
 * examples/orders/report.c - what `eddy demo` prints at the end: a summary
 * and the invariant checks, computed from the store itself.
 *
 * The store is the source of truth, so every figure and every invariant is
 * computed from a fold of its events and compared with the state the
 * handlers kept (stock, sent_mail, the read model), read through the
 * portable statement API on reader connections. The fold covers EVERY
 * order in the store: a demo resumed on a store of earlier runs checks
 * their orders too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "orders/internal.h"

#define NPRODUCTS_MAX 16

/* Order numbers above this are not the demo's (ids are "o%07lu"). */
#define ORDER_NUMBER_MAX 100000000UL

/* ---- the fold of the store ------------------------------------------------------ */

struct order_fold {
    bool seen;                  /* some event is about it */
    bool placed;
    char customer[ORDERS_ID_MAX];
    int64_t amount;             /* cents */
    int item_count;
    json_t *items;              /* new reference */
    int64_t placed_us, confirmed_us, cancelled_us;
    int64_t paid_us, reserved_us; /* payment answered, stock reserved */
    char reason[24];
    int confirmations, cancellations, payments, refunds;
    int64_t paid, refunded;     /* cents */
};

struct fold {
    unsigned long norders;      /* highest order number seen */
    unsigned long cap;
    struct order_fold *orders;  /* index: the number in the order id - 1 */
    size_t nproducts;
    long stock[NPRODUCTS_MAX];  /* running stock in store order */
    long initial[NPRODUCTS_MAX];
    long min_stock;             /* lowest running stock seen */
    long other_orders;          /* order events for ids the demo did not place */
    unsigned long users;        /* user.registered events */
    int64_t events;
    int64_t last_position;
};

static int product_index(const struct fold *f, const char *id)
{
    for (size_t p = 0; id && p < f->nproducts; p++)
        if (strcmp(orders_product_id(p), id) == 0)
            return (int)p;
    return -1;
}

/* The order number of "o<digits>", or 0. */
static unsigned long order_number(const char *id)
{
    char *end;
    if (!id || id[0] != 'o' || id[1] < '0' || id[1] > '9')
        return 0;
    errno = 0;
    unsigned long i = strtoul(id + 1, &end, 10);
    return errno || *end || i > ORDER_NUMBER_MAX ? 0 : i;
}

/* The fold of the order `ev` is about, grown as needed; NULL when it is no
 * order of the demo (counted) or out of memory (`*oom`). */
static struct order_fold *fold_order(struct fold *f, const eddy_event *ev,
                                     bool *oom)
{
    unsigned long i = order_number(eddy_event_subject(ev));
    if (i == 0) {
        f->other_orders++;
        return NULL;
    }
    if (i > f->cap) {
        unsigned long cap = f->cap ? f->cap : 1024;
        while (cap < i)
            cap *= 2;
        struct order_fold *o = realloc(f->orders, cap * sizeof *o);
        if (!o) {
            *oom = true;
            return NULL;
        }
        memset(o + f->cap, 0, (cap - f->cap) * sizeof *o);
        f->orders = o;
        f->cap = cap;
    }
    if (i > f->norders)
        f->norders = i;
    f->orders[i - 1].seen = true;
    return &f->orders[i - 1];
}

static void stock_move(struct fold *f, const eddy_event *ev, int sign)
{
    json_t *items = json_object_get(eddy_event_data(ev), "items");
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        int p = product_index(f, json_string_value(json_object_get(item, "product_id")));
        if (p < 0)
            continue;
        f->stock[p] += sign * (long)json_integer_value(json_object_get(item, "quantity"));
        if (f->stock[p] < f->min_stock)
            f->min_stock = f->stock[p];
    }
}

static bool is_order_type(const char *type)
{
    return strncmp(type, "order.", 6) == 0 || strncmp(type, "payment.", 8) == 0 ||
           strcmp(type, ORDERS_INVENTORY_RESERVED) == 0 ||
           strcmp(type, ORDERS_INVENTORY_RELEASED) == 0 ||
           strcmp(type, ORDERS_RESERVATION_FAILED) == 0;
}

/* Folds one event (already filtered by type). */
static int fold_event(struct fold *f, const eddy_event *ev, eddy_error *err)
{
    const char *type = eddy_event_type(ev);
    json_t *data = (json_t *)eddy_event_data(ev); /* only read */
    if (strcmp(type, ORDERS_USER_REGISTERED) == 0) {
        f->users++;
        return EDDY_OK;
    }
    if (strcmp(type, ORDERS_STOCK_ADDED) == 0) {
        int p = product_index(f, json_string_value(json_object_get(data, "product_id")));
        long q = (long)json_integer_value(json_object_get(data, "quantity"));
        if (p >= 0) {
            f->stock[p] += q;
            f->initial[p] += q;
        }
        return EDDY_OK;
    }
    if (strcmp(type, ORDERS_INVENTORY_RESERVED) == 0)
        stock_move(f, ev, -1);
    else if (strcmp(type, ORDERS_INVENTORY_RELEASED) == 0)
        stock_move(f, ev, +1);
    if (!is_order_type(type))
        return EDDY_OK;
    bool oom = false;
    struct order_fold *o = fold_order(f, ev, &oom);
    if (oom) {
        err->code = EDDY_ENOMEM;
        snprintf(err->message, sizeof err->message, "out of memory");
        return EDDY_ENOMEM;
    }
    if (!o)
        return EDDY_OK;
    json_int_t amount = json_integer_value(json_object_get(data, "amount"));
    if (strcmp(type, ORDERS_ORDER_PLACED) == 0) {
        const char *customer = json_string_value(json_object_get(data, "customer_id"));
        json_t *items = json_object_get(data, "items");
        o->placed = true;
        snprintf(o->customer, sizeof o->customer, "%s", customer ? customer : "");
        o->amount = (int64_t)amount;
        o->item_count = (int)json_array_size(items);
        json_decref(o->items);
        o->items = json_incref(items);
        o->placed_us = eddy_event_time(ev);
    } else if (strcmp(type, ORDERS_ORDER_CONFIRMED) == 0) {
        o->confirmations++;
        o->confirmed_us = eddy_event_time(ev);
    } else if (strcmp(type, ORDERS_ORDER_CANCELLED) == 0) {
        const char *reason = json_string_value(json_object_get(data, "reason"));
        o->cancellations++;
        o->cancelled_us = eddy_event_time(ev);
        snprintf(o->reason, sizeof o->reason, "%s", reason ? reason : "");
    } else if (strcmp(type, ORDERS_PAYMENT_PROCESSED) == 0) {
        o->payments++;
        o->paid += (int64_t)amount;
        o->paid_us = eddy_event_time(ev);
    } else if (strcmp(type, ORDERS_PAYMENT_FAILED) == 0) {
        o->paid_us = eddy_event_time(ev);
    } else if (strcmp(type, ORDERS_INVENTORY_RESERVED) == 0) {
        o->reserved_us = eddy_event_time(ev);
    } else if (strcmp(type, ORDERS_PAYMENT_REFUNDED) == 0) {
        o->refunds++;
        o->refunded += (int64_t)amount;
    }
    return EDDY_OK;
}

/* Folds the events of `store` whose type is one of `types` (NULL: every
 * type): with one store per service, each type is folded from the store of
 * the service that produced it, so nothing is counted twice. Events are
 * read through the store's transform hook: old versions come upcast. */
static int fold_store(eddy_store *store, const char *const *types,
                      size_t ntypes, struct fold *f, eddy_error *err)
{
    eddy_cursor *c;
    eddy_record rec;
    int rc = eddy_store_read_all(store, 1, 0, &c, err);
    if (rc != EDDY_OK)
        return rc;
    while (eddy_cursor_next(c, &rec, err)) {
        const char *type = eddy_event_type(rec.event);
        f->events++;
        f->last_position = rec.position;
        bool wanted = !types;
        for (size_t t = 0; !wanted && t < ntypes; t++)
            wanted = strcmp(type, types[t]) == 0;
        if (wanted && (rc = fold_event(f, rec.event, err)) != EDDY_OK)
            break;
    }
    if (rc == EDDY_OK)
        rc = eddy_cursor_error(c);
    eddy_cursor_free(c);
    return rc;
}

static void fold_init(struct fold *f)
{
    memset(f, 0, sizeof *f);
    f->nproducts = orders_products();
    if (f->nproducts > NPRODUCTS_MAX)
        f->nproducts = NPRODUCTS_MAX;
}

static void fold_free(struct fold *f)
{
    for (unsigned long i = 0; f->orders && i < f->norders; i++)
        json_decref(f->orders[i].items);
    free(f->orders);
}

int orders_demo_survey_store(eddy_store *store, orders_demo_survey *sv,
                             eddy_error *err)
{
    struct fold f;
    fold_init(&f);
    memset(sv, 0, sizeof *sv);
    int rc = fold_store(store, NULL, 0, &f, err);
    if (rc == EDDY_OK) {
        sv->head = f.last_position;
        sv->last_number = f.norders;
        sv->users = f.users;
        for (size_t p = 0; p < f.nproducts; p++)
            sv->stock_units += f.initial[p];
        for (unsigned long i = 0; i < f.norders; i++) {
            const struct order_fold *o = &f.orders[i];
            sv->placed += o->placed;
            sv->unfinished += o->placed && o->confirmations + o->cancellations == 0;
        }
    }
    fold_free(&f);
    return rc;
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

/* A table read failed: the check it feeds fails, saying why. */
static void read_failed(struct checks *c, const char *what, const eddy_error *e)
{
    check(c, false, "%s: %s", what, e->message[0] ? e->message : eddy_strerror(e->code));
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct stock_rows {
    const struct fold *f;
    long table[NPRODUCTS_MAX];
    long min;
};

static int on_stock_row(const eddy_row *row, void *user)
{
    struct stock_rows *s = user;
    long q = (long)eddy_row_int(row, 1);
    int p = product_index(s->f, eddy_row_text(row, 0));
    if (q < s->min)
        s->min = q;
    if (p >= 0)
        s->table[p] = q;
    return 0;
}

/* Stock: the table and the running fold both equal the initial stock (the
 * inventory.stock.added events) minus the confirmed orders' quantities. A
 * product without a row has none: with --stock 0 no row is ever made. */
static void check_stock(struct checks *c, eddy_store *store, const struct fold *f)
{
    struct stock_rows s = {.f = f};
    long expect[NPRODUCTS_MAX];
    eddy_error e = {0};
    int bad = 0;
    for (size_t p = 0; p < f->nproducts; p++)
        expect[p] = f->initial[p];
    for (unsigned long i = 0; i < f->norders; i++) {
        const struct order_fold *o = &f->orders[i];
        if (o->confirmations != 1)
            continue;
        size_t k;
        json_t *item;
        json_array_foreach(o->items, k, item) {
            int p = product_index(f, json_string_value(json_object_get(item, "product_id")));
            if (p >= 0)
                expect[p] -= (long)json_integer_value(json_object_get(item, "quantity"));
        }
    }
    if (eddy_store_sql_query(store, on_stock_row, &s, &e,
                             "SELECT product_id, quantity FROM stock", "") != EDDY_OK) {
        read_failed(c, "reading the stock table", &e);
        return;
    }
    long initial = 0;
    for (size_t p = 0; p < f->nproducts; p++) {
        initial += f->initial[p];
        if (s.table[p] != expect[p] || f->stock[p] != expect[p])
            bad++;
    }
    check(c, s.min >= 0 && f->min_stock >= 0 && bad == 0,
          "stock never negative (lowest %ld) and = initial (%ld units) - "
          "confirmed quantities for %d/%zu products",
          f->min_stock < s.min ? f->min_stock : s.min, initial,
          (int)(f->nproducts - (size_t)bad), f->nproducts);
}

struct mail_rows {
    const struct fold *f;
    unsigned long good, mails, welcome, stray;
    unsigned long welcome_mails;
};

static int on_mail_row(const eddy_row *row, void *user)
{
    struct mail_rows *m = user;
    const char *kind = eddy_row_text(row, 0);
    int64_t n = eddy_row_int(row, 2);
    if (kind && strcmp(kind, "welcome") == 0) {
        m->welcome_mails += (unsigned long)n;
        m->welcome += n == 1;
        m->stray += n != 1;
        return 0;
    }
    m->mails += (unsigned long)n;
    unsigned long i = order_number(eddy_row_text(row, 1));
    if (i >= 1 && i <= m->f->norders && n == 1 &&
        m->f->orders[i - 1].confirmations == 1)
        m->good++;
    else
        m->stray++;
    return 0;
}

/* Mails: exactly one confirmation per confirmed order, one welcome per
 * user (read before the summary, which shows the counts). */
static void check_mails(struct checks *c, const struct mail_rows *m,
                        const eddy_error *read_err, const struct fold *f,
                        unsigned long confirmed)
{
    if (read_err->code) {
        read_failed(c, "reading the sent_mail table", read_err);
        return;
    }
    check(c, m->good == confirmed && m->mails == confirmed && m->stray == 0,
          "every confirmed order had exactly one confirmation mail "
          "(%lu/%lu; %lu mails)", m->good, confirmed, m->mails);
    check(c, m->welcome == f->users && m->stray == 0,
          "every user got exactly one welcome mail (%lu/%lu)", m->welcome,
          f->users);
}

struct rm_rows {
    const struct fold *f;
    unsigned long rows, same;
};

static bool text_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static int on_rm_row(const eddy_row *row, void *user)
{
    struct rm_rows *r = user;
    r->rows++;
    unsigned long i = order_number(eddy_row_text(row, 0));
    if (i < 1 || i > r->f->norders)
        return 0;
    const struct order_fold *o = &r->f->orders[i - 1];
    const char *status = o->confirmations ? "CONFIRMED"
                         : o->cancellations ? "CANCELLED"
                                            : "PENDING";
    r->same += o->placed && text_eq(eddy_row_text(row, 1), o->customer) &&
               text_eq(eddy_row_text(row, 2), status) &&
               eddy_row_int(row, 3) == o->amount &&
               eddy_row_int(row, 4) == o->item_count &&
               eddy_row_int(row, 5) == o->placed_us &&
               eddy_row_int(row, 6) == o->confirmed_us &&
               eddy_row_int(row, 7) == o->cancelled_us &&
               text_eq(eddy_row_text(row, 8), o->reason);
    return 0;
}

/* The read model against the fold: one equal row per placed order. */
static void check_read_model(struct checks *c, eddy_store *store,
                             const struct fold *f, unsigned long placed)
{
    struct rm_rows r = {.f = f};
    eddy_error e = {0};
    if (eddy_store_sql_query(store, on_rm_row, &r, &e,
                             "SELECT order_id, customer_id, status, "
                             "total_cents, item_count, created_at, "
                             "confirmed_at, cancelled_at, cancel_reason "
                             "FROM order_read_model", "") != EDDY_OK) {
        read_failed(c, "reading order_read_model", &e);
        return;
    }
    check(c, r.rows == placed && r.same == placed,
          "read model equals a fold of the store (%lu/%lu rows match)", r.same,
          placed);
}

/* ---- the report --------------------------------------------------------------------- */

int orders_demo_report(const orders_demo_options *opts,
                       const orders_demo_inputs *r, FILE *out)
{
    eddy_error err = {0};
    struct fold f;
    int64_t *lat = NULL;
    /* per hop, for confirmed orders: placed -> payment answered -> stock
     * reserved -> confirmed: where an order waits */
    enum { HOPS = 3 };
    int64_t *hop[HOPS] = {0};
    int status = 1;
    fold_init(&f);
    for (size_t k = 0; k < r->nsources; k++)
        if (fold_store(r->sources[k].store, r->sources[k].types,
                       r->sources[k].ntypes, &f, &err) != EDDY_OK) {
            fprintf(stderr, "eddy demo: reading the store: %s\n", err.message);
            goto done;
        }

    /* figures, over every order in the store */
    unsigned long n_placed = 0, confirmed = 0, cancelled = 0, ended = 0;
    unsigned long by_reason[3] = {0}, refunds = 0, paid_cancelled = 0;
    unsigned long refund_ok = 0, orphans = 0, balanced = 0;
    int64_t charged = 0, refunded = 0, revenue = 0;
    size_t nhop = 0;
    if (!(lat = calloc(f.norders ? f.norders : 1, sizeof *lat))) {
        fprintf(stderr, "eddy demo: out of memory\n");
        goto done;
    }
    for (int h = 0; h < HOPS; h++)
        if (!(hop[h] = calloc(f.norders ? f.norders : 1, sizeof *hop[h]))) {
            fprintf(stderr, "eddy demo: out of memory\n");
            goto done;
        }
    size_t nlat = 0;
    for (unsigned long i = 0; i < f.norders; i++) {
        struct order_fold *o = &f.orders[i];
        if (!o->seen)
            continue; /* a number no run used */
        orphans += !o->placed; /* events of an order never placed */
        n_placed += o->placed;
        confirmed += o->confirmations == 1;
        cancelled += o->cancellations == 1;
        refunds += (unsigned long)o->refunds;
        charged += o->paid;
        refunded += o->refunded;
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
        /* money: a confirmed order keeps its amount, a cancelled one
         * keeps nothing (to the cent: integer minor units) */
        if (o->confirmations == 1) {
            revenue += o->amount;
            balanced += o->paid == o->amount && o->refunded == 0;
        } else {
            balanced += o->paid == o->refunded;
        }
        if (one_end && i + 1 >= r->first_new)
            lat[nlat++] = (o->confirmations ? o->confirmed_us : o->cancelled_us) -
                          o->placed_us;
        if (o->confirmations == 1 && i + 1 >= r->first_new && o->paid_us &&
            o->reserved_us) {
            hop[0][nhop] = o->paid_us - o->placed_us;
            hop[1][nhop] = o->reserved_us - o->paid_us;
            hop[2][nhop] = o->confirmed_us - o->reserved_us;
            nhop++;
        }
    }
    qsort(lat, nlat, sizeof *lat, cmp_i64);
    for (int h = 0; h < HOPS; h++)
        qsort(hop[h], nhop, sizeof *hop[h], cmp_i64);
    double secs = (double)(r->t1 - r->t0) / 1e6;
    if (secs <= 0)
        secs = 1e-6;

    struct mail_rows mails = {.f = &f};
    eddy_error mail_err = {0};
    if (eddy_store_sql_query(r->mail_store, on_mail_row, &mails, &mail_err,
                             "SELECT kind, about, count(*) FROM sent_mail "
                             "GROUP BY kind, about", "") != EDDY_OK && !mail_err.code)
        mail_err.code = EDDY_EIO;

    char m1[32], m2[32], m3[32];
    fprintf(out, "\n");
    fprintf(out, "orders placed       %lu\n", n_placed);
    fprintf(out, "  confirmed         %lu\n", confirmed);
    fprintf(out, "  cancelled         %lu (payment_failed %lu, out_of_stock %lu, "
            "timeout %lu)\n", cancelled, by_reason[0], by_reason[1], by_reason[2]);
    fprintf(out, "refunds             %lu\n", refunds);
    fprintf(out, "money               charged %s, refunded %s, kept %s for "
            "confirmed orders\n", orders_money(charged, m1, sizeof m1),
            orders_money(refunded, m2, sizeof m2), orders_money(revenue, m3, sizeof m3));
    fprintf(out, "mails sent          %lu (welcome %lu, order confirmation "
            "%lu)\n", mails.welcome_mails + mails.mails, mails.welcome_mails,
            mails.mails);
    fprintf(out, "events stored       %lld\n", (long long)f.events);
    fprintf(out, "dead letters        %ld\n", r->dead);
    fprintf(out, "throughput          %.1f orders/s, %.1f events/s (%.2f s)\n",
            (double)r->finished / secs, (double)r->events_during / secs, secs);
    if (r->writer.commits)
        fprintf(out, "group commit        %llu commits, %.1f write jobs and "
                "%.1f events each, %.3f ms committing each\n",
                (unsigned long long)r->writer.commits,
                (double)r->writer.jobs / (double)r->writer.commits,
                (double)r->writer.events / (double)r->writer.commits,
                (double)r->writer.commit_ns / 1e6 / (double)r->writer.commits);
    if (nlat)
        fprintf(out, "latency per order   p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
                lat[(nlat - 1) / 2] / 1e3, lat[(size_t)((double)(nlat - 1) * 0.99)] / 1e3,
                lat[nlat - 1] / 1e3);
    if (nhop) {
        static const char *const names[HOPS] = {
            "placed -> payment", "payment -> stock", "stock -> confirmed"};
        fprintf(out, "latency per hop     (confirmed orders)\n");
        for (int h = 0; h < HOPS; h++)
            fprintf(out, "  %-18s p50 %.1f ms, p99 %.1f ms\n", names[h],
                    hop[h][(nhop - 1) / 2] / 1e3,
                    hop[h][(size_t)((double)(nhop - 1) * 0.99)] / 1e3);
    }

    fprintf(out, "\ninvariants\n");
    struct checks c = {.out = out};
    check(&c, r->finished_ok,
          "every order finished within %d s and the handlers went idle",
          opts->timeout_s);
    check(&c, n_placed == r->expected && ended == n_placed &&
                  confirmed + cancelled == n_placed && f.other_orders == 0 &&
                  orphans == 0,
          "every order ends CONFIRMED or CANCELLED, exactly once (%lu/%lu)",
          ended, r->expected);
    check(&c, refund_ok == n_placed && refunds == paid_cancelled,
          "refunds (%lu) equal orders paid then cancelled (%lu)", refunds,
          paid_cancelled);
    check(&c, balanced == n_placed && charged - refunded == revenue,
          "money balances to the cent: charged - refunded = confirmed orders' "
          "total (%s) for %lu/%lu orders", orders_money(revenue, m1, sizeof m1),
          balanced, n_placed);
    check_stock(&c, r->stock_store, &f);
    check_mails(&c, &mails, &mail_err, &f, confirmed);
    check_read_model(&c, r->rm_store, &f, n_placed);
    check(&c, r->dead == 0, "no dead letters (%ld)", r->dead);
    check(&c, r->running == 0, "no saga instance left running (%lu)",
          r->running);
    status = c.failed ? 1 : 0;
    fprintf(out, "%s\n", c.failed ? "some invariants FAILED" : "all invariants hold");

done:
    free(lat);
    for (int h = 0; h < HOPS; h++)
        free(hop[h]);
    fold_free(&f);
    return status;
}
