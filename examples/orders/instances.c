/*
 * examples/orders/instances.c - the order domain with every service as
 * several processes on ONE shared store, no transport in between.
 *
 *   `eddy service NAME --store URL` (orders_instance_run): one instance of
 *       service NAME on the shared store: its part of the domain, nothing
 *       else. Several instances of one service run its durable
 *       subscriptions, projection and saga as members of the same names
 *       and share their work by partitions (eddy/durable.h, SEVERAL
 *       PROCESSES); different services meet only through the store's
 *       events (the saga's ConfirmOrder / CancelOrder become request events
 *       that the orders service turns into OrderAggregate commands, as
 *       across a transport).
 *   `eddy demo --instances N [--kill SERVICE]` (orders_instances_demo_run):
 *       starts N instances of each of the five services (fork + exec of
 *       /proc/self/exe) on the store (--store URL, or a fresh file in a
 *       temporary directory), appends what the users would send (stock,
 *       users, order placement requests), follows the read model to count
 *       finished orders; with --kill it SIGKILLs one instance of SERVICE
 *       once 30% of the orders finished (its partitions move to the other
 *       instances at once: they see its process is gone) and starts it
 *       again. Once every order finished and every subscription's
 *       checkpoint reached the head with no saga command pending, it stops
 *       the instances (SIGTERM) and runs the report's invariant checks on
 *       the store.
 *
 * On SQLite the instances share the file on this machine (SQLite's locking
 * serialises their writers); appends by another process reach a
 * subscription within about a second (eddy/store.h), so each hop between
 * processes may wait that long.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orders/internal.h"

#define NSVC 5
static const char *const SVC_NAMES[NSVC] = {"orders", "payment", "inventory",
                                            "email", "saga"};
#define READY_TIMEOUT_MS 60000
#define MAX_INSTANCES 16

/* The durable names of the domain: idle when each one's checkpoint (the
 * lowest of its partitions') reached the head. */
static const char *const SUBSCRIPTIONS[] = {
    "order-service-requests", ORDERS_SUB_PAYMENT,      ORDERS_SUB_INVENTORY,
    ORDERS_SUB_WELCOME_MAIL,  ORDERS_SUB_CONFIRM_MAIL, ORDERS_PROJECTION,
    ORDERS_SAGA};
#define NSUBS (sizeof SUBSCRIPTIONS / sizeof SUBSCRIPTIONS[0])

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- one instance ---------------------------------------------------------- */

static int instance_fail(const char *name, const char *what,
                         const eddy_error *e)
{
    fprintf(stderr, "eddy service %s: %s: %s\n", name, what,
            e->message[0] ? e->message : eddy_strerror(e->code));
    return 1;
}

static eddy_store *open_shared(const char *url, eddy_schema_registry *reg,
                               eddy_error *err)
{
    eddy_store_options so = {
        .sync = EDDY_SYNC_FULL,
        .check = eddy_schema_registry_check_hook,
        .check_user = reg,
        .transform = eddy_schema_registry_upcast_hook,
        .transform_user = reg,
    };
    return eddy_store_open(url, &so, err);
}

int orders_instance_run(const orders_service_options *opts, FILE *out)
{
    unsigned part = orders_service_part(opts->name);
    if (!part) {
        fprintf(stderr, "eddy service: unknown service '%s' (expected "
                "orders, payment, inventory, email or saga)\n",
                opts->name ? opts->name : "");
        return 2;
    }
    /* SIGTERM / SIGINT are taken by sigwait below: blocked before any
     * thread starts, so every thread inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    eddy_error err = {0};
    int status = 1;
    eddy_store *store = NULL;
    orders_app *app = NULL;
    eddy_schema_registry *reg = orders_schemas_new(&err);
    if (!reg) {
        status = instance_fail(opts->name, "schemas", &err);
        goto done;
    }
    if (!(store = open_shared(opts->store_url, reg, &err))) {
        status = instance_fail(opts->name, opts->store_url, &err);
        goto done;
    }
    orders_config cfg = opts->cfg;
    cfg.parts = part;
    if (!(app = orders_app_start(store, &cfg, &err))) {
        status = instance_fail(opts->name, "starting the service", &err);
        goto done;
    }
    fprintf(out, "ready %s\n", opts->name);
    fflush(out);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    status = 0;
    /* its checkpoints persisted, its partitions freed for the others */
    if (orders_app_stop(app, &err) != EDDY_OK)
        status = instance_fail(opts->name, "stopping", &err);
done:
    orders_app_free(app);
    eddy_store_close(store);
    eddy_schema_registry_free(reg);
    return status;
}

/* ---- the demo driver -------------------------------------------------------- */

struct proc {
    pid_t pid;
    int svc;
    unsigned index; /* 1.. */
};

struct run {
    const orders_demo_options *opts;
    const char *url;
    char args[5][32]; /* --seed, --payment-failure-rate, ... values */
    struct proc procs[NSVC * MAX_INSTANCES];
    size_t nprocs;
};

/* Starts `p` and waits for its "ready" line. Returns 0 or -1 with the
 * reason on stderr (the child, if any, is killed). */
static int spawn(struct run *r, struct proc *p)
{
    const char *name = SVC_NAMES[p->svc];
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "eddy demo: pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(NULL);
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
        execl("/proc/self/exe", "eddy", "service", name, "--store", r->url,
              "--seed", r->args[0], "--payment-failure-rate", r->args[1],
              "--payment-latency-us", r->args[2], "--workers", r->args[3],
              "--saga-timeout-ms", r->args[4], (char *)NULL);
        fprintf(stderr, "eddy demo: exec /proc/self/exe: %s\n",
                strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    p->pid = pid;
    char line[128];
    size_t n = 0;
    int64_t deadline = eddy_now_us() + (int64_t)READY_TIMEOUT_MS * 1000;
    int rc = -1;
    for (;;) {
        int left = (int)((deadline - eddy_now_us()) / 1000);
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, left) <= 0) {
            fprintf(stderr, "eddy demo: %s instance %u not ready within %d "
                    "s\n", name, p->index, READY_TIMEOUT_MS / 1000);
            break;
        }
        ssize_t got = read(fds[0], line + n, 1);
        if (got <= 0) {
            fprintf(stderr, "eddy demo: %s instance %u exited before it was "
                    "ready\n", name, p->index);
            break;
        }
        if (line[n] == '\n' || n + 2 >= sizeof line) {
            line[n] = '\0';
            if (strncmp(line, "ready ", 6) == 0 && strcmp(line + 6, name) == 0)
                rc = 0;
            else
                fprintf(stderr, "eddy demo: %s instance %u said '%s', not "
                        "ready\n", name, p->index, line);
            break;
        }
        n++;
    }
    close(fds[0]);
    if (rc != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        p->pid = 0;
    }
    return rc;
}

/* SIGTERM, then up to 30 s for a clean exit (then SIGKILL). Returns its
 * exit status, or -1 when it had to be killed or did not exit normally. */
static int stop_proc(struct proc *p)
{
    if (p->pid <= 0)
        return 0;
    kill(p->pid, SIGTERM);
    int st = 0;
    for (int waited = 0; waited < 30000; waited += 50) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_ms(50);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    return -1;
}

/* The first column of the first row of `sql` on a reader, or 0 (e.g. the
 * table does not exist yet). */
static int64_t scalar(eddy_store *s, const char *sql)
{
    int64_t v = 0;
    if (eddy_store_sql_int(s, &v, NULL, sql, "") != EDDY_OK)
        return 0;
    return v;
}

/* Builds and appends one event of the users' (data taken) to `stream`. */
static int append(eddy_store *s, const char *stream, int64_t expected,
                  const char *type, const char *source, const char *subject,
                  json_t *data, eddy_error *err)
{
    if (!data)
        return eddy_error_set(err, EDDY_ENOMEM, "out of memory");
    eddy_event *ev = orders_event_new(type, source, subject, NULL, NULL, NULL,
                                      data, err);
    json_decref(data);
    if (!ev)
        return err->code ? err->code : EDDY_ENOMEM;
    int rc = eddy_store_append(s, stream, expected, &ev, 1, NULL, err);
    eddy_event_unref(ev);
    return rc;
}

/* Stock (only while the store holds no order: a product seeded once) and
 * the users not registered yet. */
static int seed(eddy_store *s, const orders_demo_options *opts, long stock,
                bool has_orders, eddy_error *err)
{
    int rc = EDDY_OK;
    for (size_t p = 0; !has_orders && stock > 0 && rc == EDDY_OK &&
                       p < orders_products();
         p++) {
        const char *pid = orders_product_id(p);
        char stream[ORDERS_ID_MAX + 16];
        snprintf(stream, sizeof stream, "product-%s", pid);
        rc = append(s, stream, EDDY_EXPECT_NO_STREAM, ORDERS_STOCK_ADDED,
                    "inventory-service", pid,
                    json_pack("{s:s, s:I}", "product_id", pid, "quantity",
                              (json_int_t)stock), err);
        if (rc == EDDY_ECONFLICT)
            rc = EDDY_OK;
    }
    for (unsigned u = 1; rc == EDDY_OK && u <= opts->users; u++) {
        char id[16], email[64], name[32], stream[32];
        snprintf(id, sizeof id, "u%04u", u);
        snprintf(email, sizeof email, "user%u@example.com", u);
        snprintf(name, sizeof name, "User %u", u);
        snprintf(stream, sizeof stream, "user-%s", id);
        rc = append(s, stream, EDDY_EXPECT_NO_STREAM, ORDERS_USER_REGISTERED,
                    "user-service", id,
                    json_pack("{s:s, s:s, s:s, s:s}", "user_id", id, "email",
                              email, "full_name", name, "registration_source",
                              "demo"), err);
        if (rc == EDDY_ECONFLICT)
            rc = EDDY_OK;
    }
    return rc;
}

struct placer {
    pthread_t thread;
    eddy_store *s;
    const orders_demo_options *opts;
    unsigned long base; /* this run's order i is number base + i */
    int64_t t0;
    atomic_ulong placed;
    int rc;
    eddy_error err;
};

/* Appends the order placement requests (at --rate if given), which the
 * orders service's instances turn into OrderAggregate.place. */
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
        char id[32], customer[32], stream[48];
        snprintf(id, sizeof id, "o%07lu", p->base + i);
        snprintf(stream, sizeof stream, "orderreq-%s", id);
        json_t *items = orders_demo_items(p->opts->cfg.seed, p->base + i,
                                          p->opts->users, customer,
                                          sizeof customer);
        json_t *data = items ? json_pack("{s:s, s:s, s:o}", "order_id", id,
                                         "customer_id", customer, "items",
                                         items)
                             : NULL;
        if ((p->rc = append(p->s, stream, EDDY_EXPECT_ANY,
                            ORDERS_PLACE_REQUESTED, "demo-driver", id, data,
                            &p->err)) != EDDY_OK)
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

/* Every subscription's checkpoint at `head` and no saga command pending. */
static bool idle_at(eddy_store *s, int64_t head)
{
    for (size_t i = 0; i < NSUBS; i++) {
        int64_t pos = 0;
        if (eddy_store_sql_int(s, &pos, NULL,
                               "SELECT position FROM eddy_checkpoints WHERE "
                               "name = $1", "s", SUBSCRIPTIONS[i]) != EDDY_OK ||
            pos < head)
            return false;
    }
    return scalar(s, "SELECT count(*) FROM eddy_saga_commands WHERE state "
                     "= 'pending'") == 0;
}

struct shares {
    char *out;
    size_t size, off;
};

static int share_row(const eddy_row *row, void *user)
{
    struct shares *w = user;
    if (w->off + 16 < w->size)
        w->off += (size_t)snprintf(w->out + w->off, w->size - w->off, "%s%lld",
                                   w->off ? "+" : "",
                                   (long long)eddy_row_int(row, 0));
    return 0;
}

struct spread {
    int64_t holders, gap;
};

static int spread_row(const eddy_row *row, void *user)
{
    struct spread *sp = user;
    sp->holders = eddy_row_int(row, 0);
    sp->gap = eddy_row_int(row, 1);
    return 0;
}

/* Whether every subscription's partitions are spread over `n` instances
 * (as many as have some to hold), within one of each other. */
static bool spread_evenly(eddy_store *s, unsigned n)
{
    for (size_t i = 0; i < NSUBS; i++) {
        struct spread sp = {0};
        int64_t parts = 0;
        if (eddy_store_sql_int(s, &parts, NULL, "SELECT count(*) FROM "
                               "eddy_leases WHERE subscription = $1", "s",
                               SUBSCRIPTIONS[i]) != EDDY_OK ||
            eddy_store_sql_query(s, spread_row, &sp, NULL,
                                 "SELECT count(*), max(c) - min(c) FROM "
                                 "(SELECT count(*) AS c FROM eddy_leases "
                                 "WHERE subscription = $1 AND member <> '' "
                                 "GROUP BY member) AS held", "s",
                                 SUBSCRIPTIONS[i]) != EDDY_OK)
            return false;
        if (sp.holders != (parts < n ? parts : (int64_t)n) || sp.gap > 1)
            return false;
    }
    return true;
}

/* How the subscriptions' partitions are spread over the instances right
 * now: "payment-service 8+8, ..." (one figure per instance holding some). */
static void print_shares(eddy_store *s, FILE *out, const char *when)
{
    fprintf(out, "partitions per instance %s:", when);
    for (size_t i = 0; i < NSUBS; i++) {
        char buf[128] = "";
        struct shares w = {buf, sizeof buf, 0};
        if (eddy_store_sql_query(s, share_row, &w, NULL,
                                 "SELECT count(*) FROM eddy_leases WHERE "
                                 "subscription = $1 AND member <> '' GROUP "
                                 "BY member ORDER BY 1 DESC", "s",
                                 SUBSCRIPTIONS[i]) != EDDY_OK || !buf[0])
            snprintf(buf, sizeof buf, "none");
        fprintf(out, "%s %s %s", i ? "," : "", SUBSCRIPTIONS[i], buf);
    }
    fprintf(out, "\n");
    fflush(out);
}

int orders_instances_demo_run(const orders_demo_options *opts, FILE *out)
{
    struct run r = {.opts = opts};
    char dir[] = "/tmp/eddy-demo-XXXXXX";
    char path[sizeof dir + 32];
    bool made_dir = false, placer_started = false, failed = false;
    eddy_error err = {0};
    eddy_schema_registry *reg = NULL;
    eddy_store *store = NULL;
    struct placer pl = {.opts = opts};
    int status = 1, kill_svc = -1;
    unsigned n = opts->instances;
    long stock = opts->stock >= 0 ? opts->stock
                                  : (long)((opts->orders * 9 + 19) / 20);
    if (n < 1 || n > MAX_INSTANCES) {
        fprintf(stderr, "eddy demo: --instances %u: from 1 to %d\n", n,
                MAX_INSTANCES);
        return 2;
    }
    if (opts->kill) {
        for (int i = 0; i < NSVC; i++)
            if (strcmp(opts->kill, SVC_NAMES[i]) == 0)
                kill_svc = i;
        if (kill_svc < 0) {
            fprintf(stderr, "eddy demo: --kill: unknown service '%s' "
                    "(expected orders, payment, inventory, email or saga)\n",
                    opts->kill);
            return 2;
        }
    }
    r.url = opts->store_url;
    if (!r.url) {
        if (!mkdtemp(dir)) {
            fprintf(stderr, "eddy demo: cannot create a temporary directory: "
                    "%s\n", strerror(errno));
            return 1;
        }
        made_dir = true;
        snprintf(path, sizeof path, "sqlite:%s/orders.db", dir);
        r.url = path;
    }
    snprintf(r.args[0], sizeof r.args[0], "%llu", (unsigned long long)opts->cfg.seed);
    snprintf(r.args[1], sizeof r.args[1], "%.17g", opts->cfg.payment_failure_rate);
    snprintf(r.args[2], sizeof r.args[2], "%u", opts->cfg.payment_latency_us);
    snprintf(r.args[3], sizeof r.args[3], "%u", opts->cfg.workers ? opts->cfg.workers : 4);
    snprintf(r.args[4], sizeof r.args[4], "%d",
             opts->cfg.saga_timeout_ms > 0 ? opts->cfg.saga_timeout_ms : 120000);

    /* the driver's own handle first: a bad URL fails before any fork */
    if (!(reg = orders_schemas_new(&err))) {
        fprintf(stderr, "eddy demo: schemas: %s\n", err.message);
        goto done;
    }
    if (!(store = open_shared(r.url, reg, &err))) {
        fprintf(stderr, "eddy demo: %s: %s\n", r.url, err.message);
        goto done;
    }
    orders_demo_survey sv;
    if (orders_demo_survey_store(store, &sv, &err) != EDDY_OK) {
        fprintf(stderr, "eddy demo: %s: %s\n", r.url, err.message);
        goto done;
    }
    char shown[1024];
    fprintf(out, "eddy demo: %lu orders from %u users, %zu products x %ld in "
            "stock, payment failure rate %.2f, seed %llu; every service as %u "
            "processes sharing the store %s%s\n",
            opts->orders, opts->users, orders_products(),
            sv.placed ? (long)(sv.stock_units / (long)orders_products()) : stock,
            opts->cfg.payment_failure_rate, (unsigned long long)opts->cfg.seed,
            n, eddy_url_redact(r.url, shown, sizeof shown),
            made_dir && !opts->keep ? " (removed at exit)" : "");
    if (sv.placed)
        fprintf(out, "resuming: the store holds %lu orders, %lu of them "
                "unfinished (they finish first); new orders from o%07lu\n",
                sv.placed, sv.unfinished, sv.last_number + 1);
    fflush(out);

    for (int i = 0; i < NSVC; i++)
        for (unsigned k = 1; k <= n; k++) {
            struct proc *p = &r.procs[r.nprocs++];
            *p = (struct proc){.svc = i, .index = k};
            if (spawn(&r, p) != 0)
                goto done;
        }

    /* stock and users first, and handled, so the orders find them */
    if (seed(store, opts, stock, sv.placed > 0, &err) != EDDY_OK) {
        fprintf(stderr, "eddy demo: seeding stock and users: %s\n",
                err.message);
        goto done;
    }
    int64_t deadline = eddy_now_us() + 60 * 1000000LL;
    while (scalar(store, "SELECT count(*) FROM stock") <
               (int64_t)orders_products() ||
           scalar(store, "SELECT count(*) FROM sent_mail WHERE kind = "
                         "'welcome'") < (int64_t)opts->users) {
        if (eddy_now_us() > deadline) {
            fprintf(stderr, "eddy demo: stock and users not handled within "
                    "60 s\n");
            goto done;
        }
        sleep_ms(50);
    }

    /* the instances share the work within a second or two of starting */
    for (int64_t end = eddy_now_us() + 15 * 1000000LL;
         !spread_evenly(store, n) && eddy_now_us() < end;)
        sleep_ms(100);
    print_shares(store, out, "once started");

    /* place the orders, follow the read model */
    int64_t head1 = 0;
    eddy_store_head(store, &head1, NULL);
    pl.s = store;
    pl.base = sv.last_number;
    pl.t0 = eddy_now_us();
    atomic_init(&pl.placed, 0);
    if (pthread_create(&pl.thread, NULL, placer_main, &pl) != 0) {
        fprintf(stderr, "eddy demo: cannot start the order thread\n");
        goto done;
    }
    placer_started = true;
    deadline = pl.t0 + (int64_t)opts->timeout_s * 1000000;
    unsigned long target = sv.placed + opts->orders, before = sv.placed - sv.unfinished;
    unsigned long finished = 0, kill_at = opts->orders * 3 / 10;
    int64_t t1 = 0;
    int decile = -1;
    bool killed = false, timed_out = false;
    for (;;) {
        unsigned long all = (unsigned long)scalar(
            store, "SELECT count(*) FROM order_read_model WHERE status <> "
                   "'PENDING'");
        unsigned long now = all > before ? all - before : 0;
        if (now != finished)
            t1 = eddy_now_us();
        finished = now;
        unsigned long goal = target - before;
        int pct = goal ? (int)(finished * 100 / goal) : 100;
        if (pct / 10 > decile) {
            decile = pct / 10;
            fprintf(stderr, "eddy demo: %d%% (%lu/%lu orders finished, %lu "
                    "placed)\n", pct, finished, goal,
                    atomic_load(&pl.placed));
        }
        if (finished >= goal)
            break;
        if (kill_svc >= 0 && !killed && finished >= kill_at) {
            struct proc *p = &r.procs[(size_t)kill_svc * n];
            pid_t pid = p->pid;
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            p->pid = 0;
            killed = true;
            fprintf(out, "killed %s instance %u of %u (pid %ld, SIGKILL) "
                    "after %lu/%lu orders finished; the other instances take "
                    "its partitions over; restarting it\n",
                    SVC_NAMES[kill_svc], p->index, n, (long)pid, finished,
                    goal);
            fflush(out);
            if (spawn(&r, p) != 0) {
                failed = true;
                break;
            }
        }
        for (size_t i = 0; i < r.nprocs; i++) { /* nobody else may die */
            struct proc *p = &r.procs[i];
            int st;
            if (p->pid > 0 && waitpid(p->pid, &st, WNOHANG) == p->pid) {
                fprintf(stderr, "eddy demo: %s instance %u exited "
                        "unexpectedly (status %d)\n", SVC_NAMES[p->svc],
                        p->index, st);
                p->pid = 0;
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
    int64_t head2 = 0;
    eddy_store_head(store, &head2, NULL);
    /* the tail (mails, refunds, the read model): until every
     * subscription's checkpoint is at a head that no longer moves and no
     * saga command is pending, at most 60 s */
    bool settled = false;
    for (int64_t end = eddy_now_us() + 60 * 1000000LL;
         !failed && !timed_out && eddy_now_us() < end;) {
        int64_t h = 0, h2 = 0;
        eddy_store_head(store, &h, NULL);
        if (idle_at(store, h)) {
            sleep_ms(300);
            eddy_store_head(store, &h2, NULL);
            if (h2 == h && idle_at(store, h)) {
                settled = true;
                break;
            }
        }
        sleep_ms(100);
    }
    print_shares(store, out, "at the end");
    for (size_t i = 0; i < r.nprocs; i++)
        if (stop_proc(&r.procs[i]) != 0) {
            fprintf(stderr, "eddy demo: %s instance %u did not stop "
                    "cleanly\n", SVC_NAMES[r.procs[i].svc], r.procs[i].index);
            failed = true;
        }
    long dead = orders_dead_letters(store);
    unsigned long running = 0;
    eddy_saga_list(store, ORDERS_SAGA, "running", count_running, &running,
                   NULL);
    orders_demo_source src = {.store = store};
    orders_demo_inputs in = {
        .sources = &src,
        .nsources = 1,
        .stock_store = store,
        .mail_store = store,
        .rm_store = store,
        .expected = target,
        .first_new = sv.last_number + 1,
        .finished_ok = !timed_out && !failed && settled,
        .finished = finished,
        .t0 = pl.t0,
        .t1 = t1,
        .events_during = head2 - head1,
        .dead = dead < 0 ? 1 : dead,
        .running = running,
    };
    status = orders_demo_report(opts, &in, out);

done:
    if (placer_started)
        pthread_join(pl.thread, NULL);
    for (size_t i = 0; i < r.nprocs; i++)
        if (r.procs[i].pid > 0) {
            kill(r.procs[i].pid, SIGKILL);
            waitpid(r.procs[i].pid, NULL, 0);
        }
    eddy_store_close(store);
    eddy_schema_registry_free(reg);
    if (made_dir && !opts->keep) {
        static const char *const SUFFIX[] = {"", "-wal", "-shm"};
        for (size_t k = 0; k < 3; k++) {
            char p[sizeof path + 8];
            snprintf(p, sizeof p, "%s/orders.db%s", dir, SUFFIX[k]);
            unlink(p);
        }
        rmdir(dir);
    } else if (made_dir) {
        fprintf(out, "store kept: %s/orders.db\n", dir);
    }
    return status;
}
