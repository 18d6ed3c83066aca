/*
 * cli/cmd_service.c - `eddy service NAME`: runs one service of the order
 * system as a process of its own, until SIGTERM or SIGINT: with
 * --transport, on a store of its own (examples/orders/service.c; `eddy demo
 * --transport URL` starts five of them); without, on a store shared with
 * every other service and instance (examples/orders/instances.c; `eddy demo
 * --instances N` starts N of each).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "orders/orders.h"

static void service_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy service NAME --store URL\n"
            "                    [--transport URL [--group-prefix P] [--max-disconnected S]]\n"
            "                    [--seed S] [--payment-failure-rate P]\n"
            "                    [--payment-latency-us US] [--workers W]\n"
            "                    [--saga-timeout-ms MS]\n\n"
            "Runs one service of the order system (NAME: orders, payment,\n"
            "inventory, email or saga). Prints 'ready NAME' once started; stops\n"
            "on SIGTERM or SIGINT.\n\n"
            "Without --transport, the store is shared by every service: start\n"
            "each service once or several times on it. The instances of one\n"
            "service share its work: its subscriptions, projection and saga\n"
            "split the events by partitions of their subject, each partition\n"
            "leased to one live instance; an instance that dies hands its\n"
            "partitions over when its lease ends (at once when another instance\n"
            "on this machine sees its process gone). On SQLite the instances\n"
            "must run on one machine.\n\n"
            "With --transport, the store is this service's own: it receives the\n"
            "event types it reacts to from the transport (consumer group NAME)\n"
            "into its store and publishes the events it produces, at least once.\n"
            "--group-prefix P: consumer group P+NAME, new groups starting at the\n"
            "latest event (eddy demo gives each run its own groups this way).\n"
            "--max-disconnected S: a lost connection to the transport is reported\n"
            "on stderr at once; once it lasted S seconds (default 60; 0: never)\n"
            "the service gives up. So it does when its store cannot write (a full\n"
            "disk): it prints 'eddy service NAME: fatal: CAUSE' on stderr and\n"
            "'fatal CAUSE' on stdout, and exits with status 3.\n");
}

static int number(const char *name, const char *text, double min, double max,
                  double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || v < min || v > max)
        return cli_fail(2, "%s: expected a number from %g to %g, got '%s'",
                        name, min, max, text);
    *out = v;
    return 0;
}

int cmd_service(int argc, char **argv)
{
    orders_service_options o = {
        .max_disconnected_s = 60,
        .cfg = {.payment_failure_rate = 0.05, .payment_latency_us = 2000,
                .seed = 1, .workers = 4, .saga_timeout_ms = 120000},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v = 0;
        int rc = 0;
        if (cli_is_help(a)) {
            service_usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (o.name)
                return cli_fail(2, "service: unexpected argument '%s'", a);
            o.name = a;
            continue;
        }
        if (i + 1 >= argc)
            return cli_fail(2, "%s needs a value (see 'eddy service --help')", a);
        const char *val = argv[++i];
        if (strcmp(a, "--transport") == 0) {
            o.transport = val;
        } else if (strcmp(a, "--store") == 0) {
            o.store_url = val;
        } else if (strcmp(a, "--group-prefix") == 0) {
            o.group_prefix = val;
        } else if (strcmp(a, "--max-disconnected") == 0) {
            if (!(rc = number(a, val, 0, 86400, &v)))
                o.max_disconnected_s = (int)v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!(rc = number(a, val, 0, 1.8e19, &v)))
                o.cfg.seed = strtoull(val, NULL, 10);
        } else if (strcmp(a, "--payment-failure-rate") == 0) {
            if (!(rc = number(a, val, 0, 1, &v)))
                o.cfg.payment_failure_rate = v;
        } else if (strcmp(a, "--payment-latency-us") == 0) {
            if (!(rc = number(a, val, 0, 10000000, &v)))
                o.cfg.payment_latency_us = (unsigned)v;
        } else if (strcmp(a, "--workers") == 0) {
            if (!(rc = number(a, val, 1, 64, &v)))
                o.cfg.workers = (unsigned)v;
        } else if (strcmp(a, "--saga-timeout-ms") == 0) {
            if (!(rc = number(a, val, 1, 86400000, &v)))
                o.cfg.saga_timeout_ms = (int)v;
        } else {
            return cli_fail(2, "service: unknown option '%s' (see 'eddy service --help')", a);
        }
        if (rc)
            return rc;
    }
    if (!o.name)
        return cli_fail(2, "service: which one? (orders, payment, inventory, "
                        "email or saga; see 'eddy service --help')");
    if (orders_service_part(o.name) == 0)
        return cli_fail(2, "service: unknown service '%s' (expected orders, "
                        "payment, inventory, email or saga)", o.name);
    if (!o.store_url)
        return cli_fail(2, "service %s needs --store URL (with --transport: "
                        "its own store; without: the store every service "
                        "shares)", o.name);
    if (!o.transport && o.group_prefix)
        return cli_fail(2, "service %s: --group-prefix needs --transport",
                        o.name);
    if (!o.transport)
        return orders_instance_run(&o, stdout);
    return orders_service_run(&o, stdout);
}
