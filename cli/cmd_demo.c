/*
 * cli/cmd_demo.c - `eddy demo`: runs the specification's order system
 * (examples/orders/) on a durable SQLite store and checks its invariants.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "eddy/http.h"
#include "orders/orders.h"

/* `--serve`: the dashboard on the demo's store while it runs. */
struct demo_serve {
    const char *addr;
    eddy_metrics *metrics; /* the demo's subscriptions record into it */
    eddy_http_server *srv;
};

/* orders_demo_options.on_store: starts the server on the open store, and
 * stops it (store NULL) before the store closes. */
static int demo_on_store(eddy_store *store, void *user)
{
    struct demo_serve *ds = user;
    if (!store) {
        eddy_http_server_free(ds->srv);
        ds->srv = NULL;
        return 0;
    }
    eddy_error err = {0};
    eddy_http_options ho = {.store = store, .admin = ds->addr,
                            .metrics = ds->metrics};
    if (!(ds->srv = eddy_http_server_start(&ho, &err))) {
        cli_fail(1, "demo: --serve %s: %s", ds->addr, err.message);
        return 1;
    }
    fprintf(stderr, "eddy demo: dashboard on %s/ while the demo runs\n",
            eddy_http_server_url(ds->srv, EDDY_HTTP_ADMIN));
    return 0;
}

/*
 * SIGINT and SIGTERM end the demo cleanly: blocked in every thread before
 * any starts, so none of the store's or the transports' threads is ever
 * interrupted, and polled by the demo's own thread
 * (orders_demo_options.interrupted), which then stops what runs, removes
 * its temporary store and exits with 128 + the signal. Their default
 * action comes back first: a shell starts a background command with SIGINT
 * ignored, and an ignored signal is discarded instead of kept pending.
 */
static sigset_t demo_stop_signals;

static void demo_block_signals(void)
{
    sigemptyset(&demo_stop_signals);
    sigaddset(&demo_stop_signals, SIGINT);
    sigaddset(&demo_stop_signals, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &demo_stop_signals, NULL);
}

static int demo_interrupted(void *user)
{
    (void)user;
    struct timespec zero = {0, 0};
    int sig = sigtimedwait(&demo_stop_signals, NULL, &zero);
    if (sig <= 0)
        return 0;
    /* A second one ends the process at once, the default way (the
     * services still stop: they die with their parent). Unblocked in this
     * thread only: the others keep it blocked, so it is delivered here. */
    pthread_sigmask(SIG_UNBLOCK, &demo_stop_signals, NULL);
    return sig;
}

static void demo_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy demo [--store URL] [--users N] [--orders N]\n"
            "                 [--payment-failure-rate P] [--stock N] [--seed S]\n"
            "                 [--workers W] [--producers N] [--payment-workers N]\n"
            "                 [--payment-latency-us US]\n"
            "                 [--rate R] [--saga-timeout-ms MS] [--timeout S] [--keep]\n"
            "                 [--transport URL [--max-disconnected S] | --instances N]\n"
            "                 [--kill SERVICE]\n"
            "                 [--serve HOST:PORT]\n\n"
            "Runs the order system end to end: users register (welcome mail),\n"
            "orders are placed (OrderAggregate), the OrderProcessingSaga drives\n"
            "payment (simulated), inventory reservation (stock table), the\n"
            "confirmation mail, refunds and cancellations; the OrderReadModel\n"
            "projection follows. Prints a summary and checks the invariants:\n"
            "exit 0 only if every one holds. A fault no waiting cures (the store\n"
            "cannot write, e.g. a full disk; a service gave up; the transport\n"
            "stayed unreachable) ends it at once with exit status 1, naming the\n"
            "cause. SIGINT or SIGTERM stops it cleanly (the services, the\n"
            "temporary store unless --keep) with exit status 130 or 143.\n\n"
            "  --store URL               the store (default: a fresh file in a\n"
            "                            temporary directory, removed at exit); a\n"
            "                            store of earlier runs, even killed ones, is\n"
            "                            resumed: their orders are finished first,\n"
            "                            the stock is not seeded again, and the checks\n"
            "                            cover every order in the store\n"
            "  --keep                    keep the temporary store (its path is printed)\n"
            "  --users N                 users registered first (default 20)\n"
            "  --orders N                orders placed (default 1000)\n"
            "  --payment-failure-rate P  share of declined payments, 0..1 (default 0.05)\n"
            "  --payment-latency-us US   simulated provider latency, up to US (default 2000)\n"
            "  --stock N                 units of each of the 8 products, seeded once,\n"
            "                            by the first run on a store (default: 45%% of\n"
            "                            --orders, so the last orders run out)\n"
            "  --seed S                  seeds items, customers, payment outcomes (default 1)\n"
            "  --workers W               worker threads per subscription (default 4)\n"
            "  --producers N             threads placing orders (default 16)\n"
            "  --payment-workers N       the payment service's workers: calls to the\n"
            "                            (simulated) provider in flight (default 32)\n"
            "  --rate R                  place R orders per second (default 0: as fast\n"
            "                            as possible, so latency includes the backlog)\n"
            "  --saga-timeout-ms MS      an order unanswered this long is cancelled\n"
            "                            (reason timeout; default 120000)\n"
            "  --timeout S               give up waiting for the orders (default 600)\n"
            "  --transport URL           run the five services (orders, payment,\n"
            "                            inventory, email, saga) as separate processes\n"
            "                            ('eddy service'), each with its own store,\n"
            "                            talking through redis://, nats://, kafka://\n"
            "  --instances N             run every service (orders, payment,\n"
            "                            inventory, email, saga) as N processes\n"
            "                            ('eddy service NAME --store URL') sharing the\n"
            "                            one store (--store, or a fresh file): the\n"
            "                            instances of a service share its work by\n"
            "                            partitions of the events' subjects (1 to 16)\n"
            "  --kill SERVICE            with --transport: SIGKILL that service once\n"
            "                            30%% of the orders finished, then restart it;\n"
            "                            with --instances: one instance of it (the\n"
            "                            others take its partitions over)\n"
            "  --max-disconnected S      with --transport: give up when the transport\n"
            "                            has been unreachable for S seconds (default 10)\n"
            "  --serve HOST:PORT         serve the dashboard (and /metrics) on the\n"
            "                            demo's store while it runs, to watch the\n"
            "                            order flow live (loopback only; port 0: any\n"
            "                            free port, printed on stderr)\n");
}

/* Parses a number for option `name`; 0 on success, else a usage error. */
static int number(const char *name, const char *text, double min, double max,
                  double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    /* NaN compares false with everything: without isfinite() it would pass
     * both bounds. */
    if (errno || end == text || *end || !isfinite(v) || v < min || v > max)
        return cli_fail(2, "%s: expected a number from %g to %g, got '%s'",
                        name, min, max, text);
    *out = v;
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    struct demo_serve serve = {0};
    orders_demo_options o = {
        .users = 20,
        .orders = 1000,
        .stock = -1,
        .producers = 16,
        .timeout_s = 600,
        .cfg = {.payment_failure_rate = 0.05, .payment_latency_us = 2000,
                .seed = 1, .workers = 4, .saga_timeout_ms = 120000},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v = 0;
        if (cli_is_help(a)) {
            demo_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--keep") == 0) {
            o.keep = true;
            continue;
        }
        if (i + 1 >= argc) {
            if (strncmp(a, "--", 2) == 0)
                return cli_fail(2, "%s needs a value (see 'eddy demo --help')", a);
            return cli_fail(2, "demo: unexpected argument '%s'", a);
        }
        const char *val = argv[++i];
        int rc = 0;
        if (strcmp(a, "--store") == 0) {
            o.store_url = val;
        } else if (strcmp(a, "--transport") == 0) {
            o.transport = val;
        } else if (strcmp(a, "--kill") == 0) {
            o.kill = val;
        } else if (strcmp(a, "--instances") == 0) {
            if (!(rc = number(a, val, 1, 16, &v)))
                o.instances = (unsigned)v;
        } else if (strcmp(a, "--serve") == 0) {
            serve.addr = val;
        } else if (strcmp(a, "--users") == 0) {
            if (!(rc = number(a, val, 1, 9999, &v)))
                o.users = (unsigned)v;
        } else if (strcmp(a, "--orders") == 0) {
            if (!(rc = number(a, val, 1, 9999999, &v)))
                o.orders = (unsigned long)v;
        } else if (strcmp(a, "--payment-failure-rate") == 0) {
            if (!(rc = number(a, val, 0, 1, &v)))
                o.cfg.payment_failure_rate = v;
        } else if (strcmp(a, "--payment-latency-us") == 0) {
            if (!(rc = number(a, val, 0, 10000000, &v)))
                o.cfg.payment_latency_us = (unsigned)v;
        } else if (strcmp(a, "--stock") == 0) {
            if (!(rc = number(a, val, 0, 1e12, &v)))
                o.stock = (long)v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!(rc = number(a, val, 0, 1.8e19, &v)))
                o.cfg.seed = strtoull(val, NULL, 10);
        } else if (strcmp(a, "--workers") == 0) {
            if (!(rc = number(a, val, 1, 64, &v)))
                o.cfg.workers = (unsigned)v;
        } else if (strcmp(a, "--payment-workers") == 0) {
            if (!(rc = number(a, val, 1, 256, &v)))
                o.cfg.payment_workers = (unsigned)v;
        } else if (strcmp(a, "--producers") == 0) {
            if (!(rc = number(a, val, 1, 64, &v)))
                o.producers = (unsigned)v;
        } else if (strcmp(a, "--rate") == 0) {
            if (!(rc = number(a, val, 0, 1e7, &v)))
                o.rate = v;
        } else if (strcmp(a, "--saga-timeout-ms") == 0) {
            if (!(rc = number(a, val, 1, 86400000, &v)))
                o.cfg.saga_timeout_ms = (int)v;
        } else if (strcmp(a, "--max-disconnected") == 0) {
            if (!(rc = number(a, val, 1, 86400, &v)))
                o.max_disconnected_s = (int)v;
        } else if (strcmp(a, "--timeout") == 0) {
            if (!(rc = number(a, val, 1, 86400, &v)))
                o.timeout_s = (int)v;
        } else {
            return cli_fail(2, "demo: unknown option '%s' (see 'eddy demo --help')", a);
        }
        if (rc)
            return rc;
    }
    if (o.kill && !o.transport && !o.instances)
        return cli_fail(2, "demo: --kill needs --transport or --instances");
    if (o.instances && o.transport)
        return cli_fail(2, "demo: --instances and --transport exclude each "
                        "other (--instances runs the services on one shared "
                        "store, without a transport)");
    if (o.instances && serve.addr)
        return cli_fail(2, "demo: --serve and --instances exclude each other "
                        "(serve the shared store with 'eddy serve')");
    if (o.transport && o.store_url)
        return cli_fail(2, "demo: --store and --transport exclude each other "
                        "(with --transport every service has its own store)");
    if (o.transport && serve.addr)
        return cli_fail(2, "demo: --serve and --transport exclude each other "
                        "(serve one service's store with 'eddy serve')");
    if (o.max_disconnected_s && !o.transport)
        return cli_fail(2, "demo: --max-disconnected needs --transport");
    demo_block_signals(); /* before the demo starts any thread */
    o.interrupted = demo_interrupted;
    if (!serve.addr)
        return orders_demo_run(&o, stdout);
    if (!(serve.metrics = eddy_metrics_new()))
        return cli_fail(1, "out of memory");
    o.cfg.metrics = serve.metrics;
    o.on_store = demo_on_store;
    o.on_store_user = &serve;
    int status = orders_demo_run(&o, stdout);
    eddy_http_server_free(serve.srv); /* when the demo failed before */
    eddy_metrics_free(serve.metrics);
    return status;
}
