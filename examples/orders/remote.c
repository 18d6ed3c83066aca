/*
 * examples/orders/remote.c - `eddy demo --transport URL`: the order flow
 * across processes.
 *
 * The driver starts the five services (`eddy service NAME`, fork + exec of
 * /proc/self/exe) with one store each in a temporary directory, waits for
 * their "ready" lines, then publishes to the transport what the users of
 * the system would send: stock (inventory.stock.added), users
 * (user.registered) and orders (order.placement.requested, which the orders
 * service turns into OrderAggregate.place). It follows the orders service's
 * read model to count finished orders; with --kill it SIGKILLs one service
 * once 30% of the orders finished and starts it again on the same store.
 * Once every order finished and no store has grown for a while, it stops
 * the services (SIGTERM) and runs the in-process demo's report over the
 * five stores: each event type is folded from the store of the service
 * that produced it; stock, mails and the read model are read from the
 * stores that own them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <eddy/transport.h>

#include "orders/internal.h"

enum { SVC_ORDERS, SVC_PAYMENT, SVC_INVENTORY, SVC_EMAIL, SVC_SAGA, NSVC };
static const char *const SVC_NAMES[NSVC] = {"orders", "payment", "inventory",
                                            "email", "saga"};

#define READY_TIMEOUT_MS 60000
#define SETTLE_QUIET_MS 1500

struct child {
    pid_t pid;
    char store[320];  /* sqlite:DIR/NAME.db */
};

struct remote {
    const orders_demo_options *opts;
    char dir[64];
    struct child svc[NSVC];
    char args[5][32];  /* --seed, --payment-failure-rate, ... values */
    char group_prefix[48]; /* this run's consumer groups: "<dir name>-" */
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts service `i` and waits for its "ready" line. Returns 0 or -1 with
 * the reason on stderr (the child, if any, is killed). */
static int spawn(struct remote *r, int i)
{
    struct child *c = &r->svc[i];
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "eddy demo: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "eddy demo: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "eddy", "service", SVC_NAMES[i], "--transport",
              r->opts->transport, "--store", c->store, "--seed", r->args[0],
              "--payment-failure-rate", r->args[1], "--payment-latency-us",
              r->args[2], "--workers", r->args[3], "--saga-timeout-ms",
              r->args[4], "--group-prefix", r->group_prefix, (char *)NULL);
        fprintf(stderr, "eddy demo: exec /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    c->pid = pid;
    char line[128];
    size_t n = 0;
    int64_t deadline = eddy_now_us() + (int64_t)READY_TIMEOUT_MS * 1000;
    int rc = -1;
    for (;;) {
        int left = (int)((deadline - eddy_now_us()) / 1000);
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            fprintf(stderr, "eddy demo: service %s not ready within %d s\n",
                    SVC_NAMES[i], READY_TIMEOUT_MS / 1000);
            break;
        }
        ssize_t got = read(fds[0], line + n, 1);
        if (got <= 0) {
            fprintf(stderr, "eddy demo: service %s exited before it was ready\n",
                    SVC_NAMES[i]);
            break;
        }
        if (line[n] == '\n' || n + 2 >= sizeof line) {
            line[n] = '\0';
            if (strncmp(line, "ready ", 6) == 0 &&
                strcmp(line + 6, SVC_NAMES[i]) == 0)
                rc = 0;
            else
                fprintf(stderr, "eddy demo: service %s said '%s', not ready\n",
                        SVC_NAMES[i], line);
            break;
        }
        n++;
    }
    close(fds[0]);
    if (rc != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        c->pid = 0;
    }
    return rc;
}

/* Sends SIGTERM and waits up to 30 s (then SIGKILL). Returns the exit
 * status, or -1 when it had to be killed or did not exit normally. */
static int stop_child(struct child *c)
{
    if (c->pid <= 0)
        return 0;
    kill(c->pid, SIGTERM);
    int st = 0;
    for (int waited = 0; waited < 30000; waited += 50) {
        pid_t w = waitpid(c->pid, &st, WNOHANG);
        if (w == c->pid) {
            c->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_ms(50);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
    return -1;
}

/* Opens service store `url` read-only (it only reads: the service is its
 * writer), with the upcasting hook for the report's fold. NULL on failure,
 * with the reason on stderr. */
static eddy_store *open_ro(const char *url, eddy_schema_registry *reg)
{
    eddy_error err = {0};
    eddy_store_options so = {.read_only = true,
                             .transform = eddy_schema_registry_upcast_hook,
                             .transform_user = reg};
    eddy_store *s = eddy_store_open(url, &so, &err);
    if (!s)
        fprintf(stderr, "eddy demo: cannot read %s: %s\n", url, err.message);
    return s;
}

/* The first column of the first row of `sql` on a reader of `s`, or 0
 * (e.g. the table does not exist yet). */
static int64_t scalar(eddy_store *s, const char *sql)
{
    int64_t v = 0;
    if (!s || eddy_store_sql_int(s, &v, NULL, sql, "") != EDDY_OK)
        return 0;
    return v;
}

static int64_t heads(eddy_store *const *stores)
{
    int64_t sum = 0;
    for (int i = 0; i < NSVC; i++) {
        int64_t h = 0;
        if (stores[i] && eddy_store_head(stores[i], &h, NULL) == EDDY_OK)
            sum += h;
    }
    return sum;
}

/* Builds and publishes one event (data taken). */
static int publish(eddy_transport *t, const char *type, const char *source,
                   const char *subject, json_t *data, eddy_error *err)
{
    if (!data) {
        err->code = EDDY_ENOMEM;
        snprintf(err->message, sizeof err->message, "out of memory");
        return EDDY_ENOMEM;
    }
    eddy_event *ev = orders_event_new(type, source, subject, NULL, NULL, NULL,
                                      data, err);
    json_decref(data);
    if (!ev)
        return err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_transport_publish(t, ev, err);
    eddy_event_unref(ev);
    return rc;
}

struct placer {
    pthread_t thread;
    eddy_transport *t;
    const orders_demo_options *opts;
    int64_t t0;
    atomic_ulong placed;
    int rc;
    eddy_error err;
};

/* Publishes the order placement requests (at --rate if given). */
static void *placer_main(void *arg)
{
    struct placer *p = arg;
    for (unsigned long i = 1; i <= p->opts->orders; i++) {
        if (p->opts->rate > 0) {
            int64_t due = p->t0 + (int64_t)((double)(i - 1) * 1e6 / p->opts->rate);
            int64_t wait = due - eddy_now_us();
            if (wait > 0)
                sleep_ms((long)(wait / 1000));
        }
        char id[32], customer[32];
        snprintf(id, sizeof id, "o%07lu", i);
        json_t *items = orders_demo_items(p->opts->cfg.seed, i, p->opts->users,
                                          customer, sizeof customer);
        json_t *data = items ? json_pack("{s:s, s:s, s:o}", "order_id", id,
                                         "customer_id", customer, "items", items)
                             : NULL;
        if ((p->rc = publish(p->t, ORDERS_PLACE_REQUESTED, "demo-driver", id,
                             data, &p->err)) != EDDY_OK)
            break;
        atomic_fetch_add(&p->placed, 1);
    }
    return NULL;
}

static int count_running(const eddy_saga_info *info, void *user)
{
    (void)info;
    (*(unsigned long *)user)++;
    return 0;
}

/* Which event types the report folds from which service's store. */
static const char *const FOLD_ORDERS[] = {ORDERS_ORDER_PLACED,
                                          ORDERS_ORDER_CONFIRMED,
                                          ORDERS_ORDER_CANCELLED};
static const char *const FOLD_PAYMENT[] = {ORDERS_PAYMENT_PROCESSED,
                                           ORDERS_PAYMENT_FAILED};
static const char *const FOLD_INVENTORY[] = {ORDERS_STOCK_ADDED,
                                             ORDERS_INVENTORY_RESERVED,
                                             ORDERS_INVENTORY_RELEASED};
static const char *const FOLD_SAGA[] = {ORDERS_PAYMENT_REFUNDED};
static const char *const FOLD_EMAIL[] = {ORDERS_USER_REGISTERED};

int orders_remote_demo_run(const orders_demo_options *opts, FILE *out)
{
    struct remote r = {.opts = opts};
    eddy_error err = {0};
    eddy_transport *t = NULL;
    eddy_store *dbs[NSVC] = {NULL};    /* read-only: progress and report */
    eddy_store *stores[NSVC] = {NULL}; /* writable, after the services stop */
    eddy_schema_registry *reg = NULL;
    struct placer pl = {.opts = opts};
    bool placer_started = false, failed = false;
    int status = 1, kill_idx = -1;
    long stock = opts->stock >= 0 ? opts->stock
                                  : (long)((opts->orders * 9 + 19) / 20);

    if (opts->kill) {
        for (int i = 0; i < NSVC; i++)
            if (strcmp(opts->kill, SVC_NAMES[i]) == 0)
                kill_idx = i;
        if (kill_idx < 0) {
            fprintf(stderr, "eddy demo: --kill: unknown service '%s' (expected "
                    "orders, payment, inventory, email or saga)\n", opts->kill);
            return 2;
        }
    }
    snprintf(r.dir, sizeof r.dir, "/tmp/eddy-demo-XXXXXX");
    if (!mkdtemp(r.dir)) {
        fprintf(stderr, "eddy demo: cannot create a temporary directory: %s\n",
                strerror(errno));
        return 1;
    }
    /* "eddy-demo-XXXXXX-": the temporary directory names the run. */
    snprintf(r.group_prefix, sizeof r.group_prefix, "%.40s-", r.dir + 5);
    snprintf(r.args[0], sizeof r.args[0], "%llu", (unsigned long long)opts->cfg.seed);
    snprintf(r.args[1], sizeof r.args[1], "%.17g", opts->cfg.payment_failure_rate);
    snprintf(r.args[2], sizeof r.args[2], "%u", opts->cfg.payment_latency_us);
    snprintf(r.args[3], sizeof r.args[3], "%u", opts->cfg.workers ? opts->cfg.workers : 4);
    snprintf(r.args[4], sizeof r.args[4], "%d",
             opts->cfg.saga_timeout_ms > 0 ? opts->cfg.saga_timeout_ms : 120000);
    char shown[1024]; /* the URL as printed: its password hidden */
    fprintf(out, "eddy demo: %lu orders from %u users, %zu products x %ld in "
            "stock, payment failure rate %.2f, seed %llu; five services as "
            "processes over %s, stores in %s%s\n",
            opts->orders, opts->users, orders_products(), stock,
            opts->cfg.payment_failure_rate, (unsigned long long)opts->cfg.seed,
            eddy_url_redact(opts->transport, shown, sizeof shown), r.dir,
            opts->keep ? " (kept)" : " (removed at exit)");
    fflush(out);

    /* the driver's own connection first: a bad URL fails before any fork */
    if (!(t = eddy_transport_open(opts->transport, NULL, &err))) {
        fprintf(stderr, "eddy demo: %s: %s\n",
                eddy_url_redact(opts->transport, shown, sizeof shown),
                err.message);
        goto done;
    }
    for (int i = 0; i < NSVC; i++) {
        snprintf(r.svc[i].store, sizeof r.svc[i].store, "sqlite:%s/%s.db",
                 r.dir, SVC_NAMES[i]);
        if (spawn(&r, i) != 0)
            goto done;
    }
    if (!(reg = orders_schemas_new(&err))) {
        fprintf(stderr, "eddy demo: schemas: %s\n", err.message);
        goto done;
    }
    for (int i = 0; i < NSVC; i++)
        if (!(dbs[i] = open_ro(r.svc[i].store, reg)))
            goto done;

    /* stock and users first, and handled, so the orders find them */
    for (size_t p = 0; stock > 0 && p < orders_products(); p++) {
        const char *pid = orders_product_id(p);
        if (publish(t, ORDERS_STOCK_ADDED, "inventory-service", pid,
                    json_pack("{s:s, s:I}", "product_id", pid, "quantity",
                              (json_int_t)stock), &err) != EDDY_OK) {
            fprintf(stderr, "eddy demo: adding stock: %s\n", err.message);
            goto done;
        }
    }
    for (unsigned u = 1; u <= opts->users; u++) {
        char id[16], email[64], name[32];
        snprintf(id, sizeof id, "u%04u", u);
        snprintf(email, sizeof email, "user%u@example.com", u);
        snprintf(name, sizeof name, "User %u", u);
        if (publish(t, ORDERS_USER_REGISTERED, "user-service", id,
                    json_pack("{s:s, s:s, s:s, s:s}", "user_id", id, "email",
                              email, "full_name", name, "registration_source",
                              "demo"), &err) != EDDY_OK) {
            fprintf(stderr, "eddy demo: registering users: %s\n", err.message);
            goto done;
        }
    }
    int64_t deadline = eddy_now_us() + 60 * 1000000LL;
    while (scalar(dbs[SVC_INVENTORY], "SELECT count(*) FROM stock") <
               (stock > 0 ? (int64_t)orders_products() : 0) ||
           scalar(dbs[SVC_EMAIL], "SELECT count(*) FROM sent_mail WHERE "
                  "kind = 'welcome'") < (int64_t)opts->users) {
        if (eddy_now_us() > deadline) {
            fprintf(stderr, "eddy demo: stock and users not handled within 60 s\n");
            goto done;
        }
        sleep_ms(50);
    }

    /* place the orders, follow the read model */
    int64_t head1 = heads(dbs);
    pl.t = t;
    pl.t0 = eddy_now_us();
    if (pthread_create(&pl.thread, NULL, placer_main, &pl) != 0) {
        fprintf(stderr, "eddy demo: cannot start the order thread\n");
        goto done;
    }
    placer_started = true;
    deadline = pl.t0 + (int64_t)opts->timeout_s * 1000000;
    unsigned long finished = 0, kill_at = opts->orders * 3 / 10;
    int64_t t1 = 0;
    int decile = -1;
    bool killed = false, timed_out = false;
    for (;;) {
        unsigned long now = (unsigned long)scalar(
            dbs[SVC_ORDERS], "SELECT count(*) FROM order_read_model WHERE "
            "status <> 'PENDING'");
        if (now != finished)
            t1 = eddy_now_us();
        finished = now;
        int pct = (int)(finished * 100 / opts->orders);
        if (pct / 10 > decile) {
            decile = pct / 10;
            fprintf(stderr, "eddy demo: %d%% (%lu/%lu orders finished, %lu "
                    "placed)\n", pct, finished, opts->orders,
                    atomic_load(&pl.placed));
        }
        if (finished >= opts->orders)
            break;
        if (kill_idx >= 0 && !killed && finished >= kill_at) {
            struct child *c = &r.svc[kill_idx];
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->pid = 0;
            killed = true;
            fprintf(out, "killed %s (SIGKILL) after %lu/%lu orders finished; "
                    "restarting it\n", SVC_NAMES[kill_idx], finished,
                    opts->orders);
            fflush(out);
            if (spawn(&r, kill_idx) != 0) {
                failed = true;
                break;
            }
        }
        for (int i = 0; i < NSVC; i++) { /* nobody else may die */
            int st;
            if (r.svc[i].pid > 0 && waitpid(r.svc[i].pid, &st, WNOHANG) == r.svc[i].pid) {
                fprintf(stderr, "eddy demo: service %s exited unexpectedly "
                        "(status %d)\n", SVC_NAMES[i], st);
                r.svc[i].pid = 0;
                failed = true;
            }
        }
        if (failed)
            break;
        if (eddy_now_us() >= deadline) {
            timed_out = true;
            break;
        }
        sleep_ms(50);
    }
    pthread_join(pl.thread, NULL);
    placer_started = false;
    if (pl.rc != EDDY_OK) {
        fprintf(stderr, "eddy demo: placing orders: %s\n", pl.err.message);
        failed = true;
    }
    if (t1 == 0)
        t1 = eddy_now_us();
    int64_t head2 = heads(dbs);
    /* the tail (mails, refunds, the read model, forwarders): wait until no
     * store grew for SETTLE_QUIET_MS, at most 60 s */
    bool settled = false;
    int64_t last = heads(dbs), quiet_since = eddy_now_us();
    for (int64_t end = eddy_now_us() + 60 * 1000000LL; !failed && eddy_now_us() < end;) {
        sleep_ms(100);
        int64_t h = heads(dbs);
        if (h != last) {
            last = h;
            quiet_since = eddy_now_us();
        } else if (eddy_now_us() - quiet_since >= SETTLE_QUIET_MS * 1000LL) {
            settled = true;
            break;
        }
    }
    for (int i = 0; i < NSVC; i++)
        if (stop_child(&r.svc[i]) != 0) {
            fprintf(stderr, "eddy demo: service %s did not stop cleanly\n",
                    SVC_NAMES[i]);
            failed = true;
        }

    /* the report, from the stores: folds and tables through the read-only
     * handles; dead letters and saga instances through writable ones (the
     * services have stopped), as eddy_dlq_list and eddy_saga_list still
     * read through the store's writer */
    long dead = 0;
    for (int i = 0; i < NSVC; i++) {
        if (!(stores[i] = eddy_store_open(r.svc[i].store, NULL, &err))) {
            fprintf(stderr, "eddy demo: %s: %s\n", r.svc[i].store, err.message);
            goto done;
        }
        long d = orders_dead_letters(stores[i]);
        dead += d < 0 ? 1 : d; /* an unreadable DLQ counts as a failure */
    }
    unsigned long running = 0;
    eddy_saga_list(stores[SVC_SAGA], ORDERS_SAGA, "running", count_running,
                   &running, NULL);
    orders_demo_source src[] = {
        {dbs[SVC_ORDERS], FOLD_ORDERS, sizeof FOLD_ORDERS / sizeof FOLD_ORDERS[0]},
        {dbs[SVC_PAYMENT], FOLD_PAYMENT, sizeof FOLD_PAYMENT / sizeof FOLD_PAYMENT[0]},
        {dbs[SVC_INVENTORY], FOLD_INVENTORY,
         sizeof FOLD_INVENTORY / sizeof FOLD_INVENTORY[0]},
        {dbs[SVC_SAGA], FOLD_SAGA, sizeof FOLD_SAGA / sizeof FOLD_SAGA[0]},
        {dbs[SVC_EMAIL], FOLD_EMAIL, sizeof FOLD_EMAIL / sizeof FOLD_EMAIL[0]},
    };
    orders_demo_inputs in = {
        .sources = src,
        .nsources = sizeof src / sizeof src[0],
        .stock_store = dbs[SVC_INVENTORY],
        .mail_store = dbs[SVC_EMAIL],
        .rm_store = dbs[SVC_ORDERS],
        .expected = opts->orders,
        .first_new = 1,
        .finished_ok = !timed_out && !failed && settled,
        .finished = finished,
        .t0 = pl.t0,
        .t1 = t1,
        .events_during = head2 - head1,
        .dead = dead,
        .running = running,
    };
    status = orders_demo_report(opts, &in, out);

done:
    if (placer_started)
        pthread_join(pl.thread, NULL);
    for (int i = 0; i < NSVC; i++)
        if (r.svc[i].pid > 0) {
            kill(r.svc[i].pid, SIGKILL);
            waitpid(r.svc[i].pid, NULL, 0);
        }
    for (int i = 0; i < NSVC; i++) {
        eddy_store_close(stores[i]);
        eddy_store_close(dbs[i]);
    }
    eddy_schema_registry_free(reg);
    eddy_transport_close(t);
    if (!opts->keep) {
        static const char *const SUFFIX[] = {"", "-wal", "-shm"};
        for (int i = 0; i < NSVC; i++)
            for (size_t k = 0; k < 3; k++) {
                char p[sizeof r.dir + 32];
                snprintf(p, sizeof p, "%s/%s.db%s", r.dir, SVC_NAMES[i], SUFFIX[k]);
                unlink(p);
            }
        rmdir(r.dir);
    } else {
        fprintf(out, "stores kept in %s\n", r.dir);
    }
    return status;
}
