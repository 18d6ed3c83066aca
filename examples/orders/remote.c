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
 *
 * THE SERVICES' LIVES. Each service is a child in a process group of its
 * own (a Ctrl-C at the terminal reaches only the driver, which stops them
 * in order) that dies with the driver, even a SIGKILLed one: it asks the
 * kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG; then checks
 * that the parent did not die before it asked), which stops it cleanly,
 * within STOP_GRACE_S at worst (service.c). Between its waits the driver
 * looks at (check_run): a signal (opts->interrupted), a service that
 * exited (a service that gave up left "fatal CAUSE" on its control pipe,
 * its stdout: faults.c), the order thread's failure (its publishes wait
 * out a transport outage of up to max_disconnected_s). Any of them ends
 * the run at once: the services are stopped, the temporary stores
 * removed (unless --keep), and the cause named, without the report.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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
#define STOP_TIMEOUT_MS 30000
#define DEFAULT_MAX_DISCONNECTED_S 10

struct child {
    pid_t pid;
    int ctl;          /* read end of its stdout ("ready", "fatal"); -1 */
    char store[1100]; /* sqlite:DIR/NAME.db */
};

struct remote {
    const orders_demo_options *opts;
    char dir[1024];
    struct child svc[NSVC];
    char args[6][32];  /* --seed, --payment-failure-rate, ... values */
    char group_prefix[48]; /* this run's consumer groups: "<dir name>-" */
    int max_down_s;    /* the longest transport outage waited out */
    int signal;        /* the signal that ended the run, or 0 */
    char cause[1536];  /* the fault that ended it, or "" */
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whether the driver was asked to stop (it looks between its waits). */
static bool interrupted(struct remote *r)
{
    if (!r->signal && r->opts->interrupted)
        r->signal = r->opts->interrupted(r->opts->interrupted_user);
    return r->signal != 0;
}

/* Reads what is left on child `c`'s control pipe and fills `fatal` with
 * the cause of its "fatal CAUSE" line, or "" if none. */
static void read_fatal(struct child *c, char *fatal, size_t size)
{
    char buf[2048];
    size_t n = 0;
    fatal[0] = '\0';
    while (c->ctl >= 0 && n + 1 < sizeof buf) {
        ssize_t got = read(c->ctl, buf + n, sizeof buf - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, "fatal ", 6) == 0)
            snprintf(fatal, size, "%s", line + 6);
        line = nl ? nl + 1 : NULL;
    }
}

static void child_close(struct child *c)
{
    if (c->ctl >= 0)
        close(c->ctl);
    c->ctl = -1;
    c->pid = 0;
}

/* Says in r->cause how child `i` ended (wait status `st`): the cause it
 * gave up with, or its exit status or signal. */
static void child_ended(struct remote *r, int i, int st)
{
    struct child *c = &r->svc[i];
    char fatal[1024];
    read_fatal(c, fatal, sizeof fatal);
    if (fatal[0])
        snprintf(r->cause, sizeof r->cause, "service %s gave up: %s",
                 SVC_NAMES[i], fatal);
    else if (WIFSIGNALED(st))
        snprintf(r->cause, sizeof r->cause, "service %s was killed by %s "
                 "(signal %d)", SVC_NAMES[i], orders_signal_name(WTERMSIG(st)),
                 WTERMSIG(st));
    else
        snprintf(r->cause, sizeof r->cause, "service %s exited unexpectedly "
                 "with status %d (its messages are above)", SVC_NAMES[i],
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    child_close(c);
}

/* In the child, between fork and exec: dies with the driver. */
static void child_setup(pid_t parent)
{
    /* SIGTERM (a clean stop) when the thread that forked it ends: the
     * driver's main thread, which ends only with the process, however it
     * ends. Had the driver died before the call, nobody would ever send
     * it: the check after it covers that race (the child was re-parented
     * by then). */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
        _exit(1);
    /* a process group of its own: the terminal's Ctrl-C reaches the
     * driver only, which stops the services in order */
    setpgid(0, 0);
}

/* Starts service `i` and waits for its "ready" line. Returns 0, or -1 with
 * the reason on stderr or in r->cause (the child, if any, is killed), or
 * when interrupted. Called on the driver's main thread only: the parent
 * death signal is tied to the thread that forks. */
static int spawn(struct remote *r, int i)
{
    struct child *c = &r->svc[i];
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fprintf(stderr, "eddy demo: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "eddy demo: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        child_setup(parent);
        dup2(fds[1], STDOUT_FILENO); /* the copy is not close-on-exec */
        /* the driver blocks SIGINT and SIGTERM; the service waits for them
         * its own way */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl("/proc/self/exe", "eddy", "service", SVC_NAMES[i], "--transport",
              r->opts->transport, "--store", c->store, "--seed", r->args[0],
              "--payment-failure-rate", r->args[1], "--payment-latency-us",
              r->args[2], "--workers", r->args[3], "--saga-timeout-ms",
              r->args[4], "--group-prefix", r->group_prefix,
              "--max-disconnected", r->args[5], (char *)NULL);
        fprintf(stderr, "eddy demo: exec /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    c->pid = pid;
    c->ctl = fds[0];
    char line[128];
    size_t n = 0;
    int64_t deadline = eddy_now_us() + (int64_t)READY_TIMEOUT_MS * 1000;
    int rc = -1;
    for (;;) {
        if (interrupted(r))
            break;
        int left = (int)((deadline - eddy_now_us()) / 1000);
        if (left <= 0) {
            fprintf(stderr, "eddy demo: service %s not ready within %d s\n",
                    SVC_NAMES[i], READY_TIMEOUT_MS / 1000);
            break;
        }
        struct pollfd p = {.fd = c->ctl, .events = POLLIN};
        int ready = poll(&p, 1, left < 100 ? left : 100);
        if (ready < 0 && errno != EINTR) {
            fprintf(stderr, "eddy demo: poll: %s\n", strerror(errno));
            break;
        }
        if (ready <= 0)
            continue;
        ssize_t got = read(c->ctl, line + n, 1);
        if (got <= 0) { /* it exited; its messages went to stderr */
            int st = 0;
            waitpid(pid, &st, 0);
            child_ended(r, i, st);
            if (WIFEXITED(st) && WEXITSTATUS(st) != ORDERS_EXIT_FATAL)
                snprintf(r->cause, sizeof r->cause, "service %s exited before "
                         "it was ready (status %d; its messages are above)",
                         SVC_NAMES[i], WEXITSTATUS(st));
            return -1;
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
    if (rc != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        child_close(c);
        return -1;
    }
    /* later lines ("fatal CAUSE") are read when it is reaped */
    fcntl(c->ctl, F_SETFL, fcntl(c->ctl, F_GETFL) | O_NONBLOCK);
    return 0;
}

/* Reaps the services that exited since the last look. Returns true (with
 * r->cause) when one did: nobody may exit while the run goes on. */
static bool reap(struct remote *r)
{
    for (int i = 0; i < NSVC; i++) {
        int st = 0;
        if (r->svc[i].pid > 0 &&
            waitpid(r->svc[i].pid, &st, WNOHANG) == r->svc[i].pid) {
            child_ended(r, i, st);
            return true;
        }
    }
    return false;
}

/* Stops every running service: SIGTERM to all, then waits for all up to
 * STOP_TIMEOUT_MS (then SIGKILL). Returns how many did not stop cleanly
 * (exit status 0), naming each on stderr unless `quiet`. */
static int stop_all(struct remote *r, bool quiet)
{
    int unclean = 0;
    for (int i = 0; i < NSVC; i++)
        if (r->svc[i].pid > 0)
            kill(r->svc[i].pid, SIGTERM);
    int64_t deadline = eddy_now_us() + (int64_t)STOP_TIMEOUT_MS * 1000;
    for (;;) {
        bool left = false;
        for (int i = 0; i < NSVC; i++) {
            struct child *c = &r->svc[i];
            int st = 0;
            if (c->pid <= 0)
                continue;
            if (waitpid(c->pid, &st, WNOHANG) != c->pid) {
                left = true;
                continue;
            }
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                unclean++;
                if (!quiet)
                    fprintf(stderr, "eddy demo: service %s did not stop "
                            "cleanly (%s %d)\n", SVC_NAMES[i],
                            WIFSIGNALED(st) ? "signal" : "exit status",
                            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            }
            child_close(c);
        }
        if (!left)
            return unclean;
        if (eddy_now_us() >= deadline)
            break;
        sleep_ms(20);
    }
    for (int i = 0; i < NSVC; i++) {
        struct child *c = &r->svc[i];
        if (c->pid <= 0)
            continue;
        if (!quiet)
            fprintf(stderr, "eddy demo: service %s did not stop within %d s; "
                    "killed\n", SVC_NAMES[i], STOP_TIMEOUT_MS / 1000);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        child_close(c);
        unclean++;
    }
    return unclean;
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

/*
 * Builds and publishes one event (data taken), waiting out a transport
 * outage: a publish that fails for want of a connection (EDDY_ECONNECT,
 * EDDY_ETIMEDOUT) is tried again every 200 ms, the same event (a bridge
 * stores it once), until the outage lasted r->max_down_s; then it fails
 * with EDDY_ECONNECT, "lost the connection to URL for N s: <the
 * transport's message>". Gives up at once (EDDY_ESTOPPED) when `stop` (the
 * order thread's flag; NULL on the main thread) is set, or, on the main
 * thread, when the driver is interrupted.
 */
static int publish(struct remote *r, atomic_int *stop, eddy_transport *t,
                   const char *type, const char *source, const char *subject,
                   json_t *data, eddy_error *err)
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
    int64_t first_failure = 0;
    int rc;
    while ((rc = eddy_transport_publish(t, ev, err)) == EDDY_ECONNECT ||
           rc == EDDY_ETIMEDOUT) {
        int64_t now = eddy_now_us();
        if (!first_failure)
            first_failure = now;
        if (now - first_failure >= (int64_t)r->max_down_s * 1000000) {
            char shown[1024], why[EDDY_ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%s", err->message);
            rc = eddy_error_set(err, EDDY_ECONNECT, "lost the connection to "
                                "%s for %.0f s: %s",
                                eddy_url_redact(r->opts->transport, shown,
                                                sizeof shown),
                                (double)(now - first_failure) / 1e6, why);
            break;
        }
        if (stop ? atomic_load(stop) : interrupted(r)) {
            rc = eddy_error_set(err, EDDY_ESTOPPED, "stopped");
            break;
        }
        sleep_ms(200);
    }
    eddy_event_unref(ev);
    return rc;
}

struct placer {
    pthread_t thread;
    struct remote *r;
    eddy_transport *t;
    const orders_demo_options *opts;
    int64_t t0;
    atomic_ulong placed;
    atomic_int stop;  /* the run ends early: place no more */
    atomic_int done;  /* the thread ended; rc and err say how */
    int rc;
    eddy_error err;
};

/* Publishes the order placement requests (at --rate if given). */
static void *placer_main(void *arg)
{
    struct placer *p = arg;
    for (unsigned long i = 1; i <= p->opts->orders && !atomic_load(&p->stop); i++) {
        if (p->opts->rate > 0) {
            int64_t due = p->t0 + (int64_t)((double)(i - 1) * 1e6 / p->opts->rate);
            /* in slices, so that a stop is seen within 100 ms */
            for (int64_t wait; !atomic_load(&p->stop) &&
                               (wait = due - eddy_now_us()) > 0;)
                sleep_ms(wait > 100000 ? 100 : (long)(wait / 1000) + 1);
            if (atomic_load(&p->stop))
                break;
        }
        char id[32], customer[32];
        snprintf(id, sizeof id, "o%07lu", i);
        json_t *items = orders_demo_items(p->opts->cfg.seed, i, p->opts->users,
                                          customer, sizeof customer);
        json_t *data = items ? json_pack("{s:s, s:s, s:o}", "order_id", id,
                                         "customer_id", customer, "items", items)
                             : NULL;
        if ((p->rc = publish(p->r, &p->stop, p->t, ORDERS_PLACE_REQUESTED,
                             "demo-driver", id, data, &p->err)) != EDDY_OK)
            break;
        atomic_fetch_add(&p->placed, 1);
    }
    atomic_store(&p->done, 1);
    return NULL;
}

/* Between the driver's waits: whether the run must end now, and why
 * (r->signal or r->cause): a signal, a service that exited (none may
 * while the run goes on), the order thread's failure (`pl` may be NULL). */
static bool check_run(struct remote *r, struct placer *pl)
{
    if (r->cause[0] || interrupted(r) || reap(r))
        return true;
    if (pl && atomic_load(&pl->done) && pl->rc != EDDY_OK) {
        snprintf(r->cause, sizeof r->cause, "placing orders: %s",
                 pl->err.message[0] ? pl->err.message : eddy_strerror(pl->rc));
        return true;
    }
    return false;
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
    unsigned long finished = 0;
    long stock = opts->stock >= 0 ? opts->stock
                                  : (long)((opts->orders * 9 + 19) / 20);
    int max_down_s = opts->max_disconnected_s > 0 ? opts->max_disconnected_s
                                                  : DEFAULT_MAX_DISCONNECTED_S;

    for (int i = 0; i < NSVC; i++)
        r.svc[i].ctl = -1;
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
    if (orders_temp_dir(r.dir, sizeof r.dir) != 0) {
        fprintf(stderr, "eddy demo: cannot create a temporary directory: %s\n",
                strerror(errno));
        return 1;
    }
    /* "eddy-demo-XXXXXX-": the temporary directory names the run. */
    const char *base = strrchr(r.dir, '/');
    snprintf(r.group_prefix, sizeof r.group_prefix, "%.40s-",
             base ? base + 1 : r.dir);
    snprintf(r.args[0], sizeof r.args[0], "%llu", (unsigned long long)opts->cfg.seed);
    snprintf(r.args[1], sizeof r.args[1], "%.17g", opts->cfg.payment_failure_rate);
    snprintf(r.args[2], sizeof r.args[2], "%u", opts->cfg.payment_latency_us);
    snprintf(r.args[3], sizeof r.args[3], "%u", opts->cfg.workers ? opts->cfg.workers : 4);
    snprintf(r.args[4], sizeof r.args[4], "%d",
             opts->cfg.saga_timeout_ms > 0 ? opts->cfg.saga_timeout_ms : 120000);
    snprintf(r.args[5], sizeof r.args[5], "%d", max_down_s);
    char shown[1024]; /* the URL as printed: its password hidden */
    fprintf(out, "eddy demo: %lu orders from %u users, %zu products x %ld in "
            "stock, payment failure rate %.2f, seed %llu; five services as "
            "processes over %s, stores in %s%s\n",
            opts->orders, opts->users, orders_products(), stock,
            opts->cfg.payment_failure_rate, (unsigned long long)opts->cfg.seed,
            eddy_url_redact(opts->transport, shown, sizeof shown), r.dir,
            opts->keep ? " (kept)" : " (removed at exit)");
    fflush(out);

    /* the driver's own connection first: a bad URL fails before any fork.
     * Its publishes wait out an outage as long as the services do
     * (publish), in attempts that fail at once while it lasts. */
    r.max_down_s = max_down_s;
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
            goto ended;
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
        if (publish(&r, NULL, t, ORDERS_STOCK_ADDED, "inventory-service", pid,
                    json_pack("{s:s, s:I}", "product_id", pid, "quantity",
                              (json_int_t)stock), &err) != EDDY_OK) {
            snprintf(r.cause, sizeof r.cause, "adding stock: %s", err.message);
            goto ended;
        }
    }
    for (unsigned u = 1; u <= opts->users; u++) {
        char id[16], email[64], name[32];
        snprintf(id, sizeof id, "u%04u", u);
        snprintf(email, sizeof email, "user%u@example.com", u);
        snprintf(name, sizeof name, "User %u", u);
        if (publish(&r, NULL, t, ORDERS_USER_REGISTERED, "user-service", id,
                    json_pack("{s:s, s:s, s:s, s:s}", "user_id", id, "email",
                              email, "full_name", name, "registration_source",
                              "demo"), &err) != EDDY_OK) {
            snprintf(r.cause, sizeof r.cause, "registering users: %s",
                     err.message);
            goto ended;
        }
    }
    int64_t deadline = eddy_now_us() + 60 * 1000000LL;
    while (scalar(dbs[SVC_INVENTORY], "SELECT count(*) FROM stock") <
               (stock > 0 ? (int64_t)orders_products() : 0) ||
           scalar(dbs[SVC_EMAIL], "SELECT count(*) FROM sent_mail WHERE "
                  "kind = 'welcome'") < (int64_t)opts->users) {
        if (check_run(&r, NULL))
            goto ended;
        if (eddy_now_us() > deadline) {
            fprintf(stderr, "eddy demo: stock and users not handled within 60 s\n");
            goto done;
        }
        sleep_ms(50);
    }

    /* place the orders, follow the read model */
    int64_t head1 = heads(dbs);
    pl.r = &r;
    pl.t = t;
    pl.t0 = eddy_now_us();
    if (pthread_create(&pl.thread, NULL, placer_main, &pl) != 0) {
        fprintf(stderr, "eddy demo: cannot start the order thread\n");
        goto done;
    }
    placer_started = true;
    deadline = pl.t0 + (int64_t)opts->timeout_s * 1000000;
    unsigned long kill_at = opts->orders * 3 / 10;
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
            child_close(c);
            killed = true;
            fprintf(out, "killed %s (SIGKILL) after %lu/%lu orders finished; "
                    "restarting it\n", SVC_NAMES[kill_idx], finished,
                    opts->orders);
            fflush(out);
            if (spawn(&r, kill_idx) != 0) {
                if (!r.cause[0] && !r.signal)
                    snprintf(r.cause, sizeof r.cause, "service %s did not "
                             "start again", SVC_NAMES[kill_idx]);
                goto ended;
            }
        }
        if (check_run(&r, &pl))
            goto ended;
        if (eddy_now_us() >= deadline) {
            timed_out = true;
            break;
        }
        sleep_ms(50);
    }
    atomic_store(&pl.stop, 1); /* when timed out: the rest is not placed */
    pthread_join(pl.thread, NULL);
    placer_started = false;
    if (pl.rc != EDDY_OK) {
        snprintf(r.cause, sizeof r.cause, "placing orders: %s",
                 pl.err.message[0] ? pl.err.message : eddy_strerror(pl.rc));
        goto ended;
    }
    if (t1 == 0)
        t1 = eddy_now_us();
    int64_t head2 = heads(dbs);
    /* the tail (mails, refunds, the read model, forwarders): wait until no
     * store grew for SETTLE_QUIET_MS, at most 60 s */
    bool settled = false;
    int64_t last = heads(dbs), quiet_since = eddy_now_us();
    for (int64_t end = eddy_now_us() + 60 * 1000000LL; eddy_now_us() < end;) {
        sleep_ms(100);
        if (check_run(&r, NULL))
            goto ended;
        int64_t h = heads(dbs);
        if (h != last) {
            last = h;
            quiet_since = eddy_now_us();
        } else if (eddy_now_us() - quiet_since >= SETTLE_QUIET_MS * 1000LL) {
            settled = true;
            break;
        }
    }
    if (stop_all(&r, false) != 0)
        failed = true;

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
    goto done;

ended:
    /* a signal or a fault (or a service that could not start): no more
     * orders, every service stops at its checkpoints, no report */
    if (placer_started) {
        atomic_store(&pl.stop, 1);
        pthread_join(pl.thread, NULL);
        placer_started = false;
    }
    stop_all(&r, true);
    if (r.signal) {
        fprintf(stderr, "eddy demo: interrupted by %s with %lu/%lu orders "
                "finished; the services stopped\n",
                orders_signal_name(r.signal), finished, opts->orders);
        status = 128 + r.signal;
    } else if (r.cause[0]) {
        fprintf(stderr, "eddy demo: giving up with %lu/%lu orders finished: "
                "%s\n", finished, opts->orders, r.cause);
    }

done:
    if (placer_started) {
        atomic_store(&pl.stop, 1);
        pthread_join(pl.thread, NULL);
    }
    stop_all(&r, true);
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
        if (rmdir(r.dir) == 0 && (r.signal || r.cause[0]))
            fprintf(stderr, "eddy demo: removed the temporary stores %s\n", r.dir);
    } else {
        fprintf(out, "stores kept in %s\n", r.dir);
    }
    return status;
}
