/*
 * cli/cmd_demo.c - `eddy demo`: runs the specification's order system
 * (examples/orders/) on a durable SQLite store and checks its invariants.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "orders/orders.h"

static void demo_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy demo [--store URL] [--users N] [--orders N]\n"
            "                 [--payment-failure-rate P] [--stock N] [--seed S]\n"
            "                 [--workers W] [--producers N] [--payment-latency-us US]\n"
            "                 [--rate R] [--saga-timeout-ms MS] [--timeout S] [--keep]\n"
            "                 [--transport URL [--kill SERVICE]]\n\n"
            "Runs the order system end to end: users register (welcome mail),\n"
            "orders are placed (OrderAggregate), the OrderProcessingSaga drives\n"
            "payment (simulated), inventory reservation (stock table), the\n"
            "confirmation mail, refunds and cancellations; the OrderReadModel\n"
            "projection follows. Prints a summary and checks the invariants:\n"
            "exit 0 only if every one holds.\n\n"
            "  --store URL               an EMPTY store (default: a fresh file in a\n"
            "                            temporary directory, removed at exit)\n"
            "  --keep                    keep the temporary store (its path is printed)\n"
            "  --users N                 users registered first (default 20)\n"
            "  --orders N                orders placed (default 1000)\n"
            "  --payment-failure-rate P  share of declined payments, 0..1 (default 0.05)\n"
            "  --payment-latency-us US   simulated provider latency, up to US (default 2000)\n"
            "  --stock N                 units of each of the 8 products (default:\n"
            "                            45%% of --orders, so the last orders run out)\n"
            "  --seed S                  seeds items, customers, payment outcomes (default 1)\n"
            "  --workers W               worker threads per subscription (default 4)\n"
            "  --producers N             threads placing orders (default 4)\n"
            "  --rate R                  place R orders per second (default 0: as fast\n"
            "                            as possible, so latency includes the backlog)\n"
            "  --saga-timeout-ms MS      an order unanswered this long is cancelled\n"
            "                            (reason timeout; default 120000)\n"
            "  --timeout S               give up waiting for the orders (default 600)\n"
            "  --transport URL           run the five services (orders, payment,\n"
            "                            inventory, email, saga) as separate processes\n"
            "                            ('eddy service'), each with its own store,\n"
            "                            talking through redis://, nats://, kafka://\n"
            "  --kill SERVICE            with --transport: SIGKILL that service once\n"
            "                            30%% of the orders finished, then restart it\n");
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
    orders_demo_options o = {
        .users = 20,
        .orders = 1000,
        .stock = -1,
        .producers = 4,
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
        } else if (strcmp(a, "--producers") == 0) {
            if (!(rc = number(a, val, 1, 64, &v)))
                o.producers = (unsigned)v;
        } else if (strcmp(a, "--rate") == 0) {
            if (!(rc = number(a, val, 0, 1e7, &v)))
                o.rate = v;
        } else if (strcmp(a, "--saga-timeout-ms") == 0) {
            if (!(rc = number(a, val, 1, 86400000, &v)))
                o.cfg.saga_timeout_ms = (int)v;
        } else if (strcmp(a, "--timeout") == 0) {
            if (!(rc = number(a, val, 1, 86400, &v)))
                o.timeout_s = (int)v;
        } else {
            return cli_fail(2, "demo: unknown option '%s' (see 'eddy demo --help')", a);
        }
        if (rc)
            return rc;
    }
    if (o.kill && !o.transport)
        return cli_fail(2, "demo: --kill needs --transport");
    if (o.transport && o.store_url)
        return cli_fail(2, "demo: --store and --transport exclude each other "
                        "(with --transport every service has its own store)");
    return orders_demo_run(&o, stdout);
}
