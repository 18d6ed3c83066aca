/*
 * cli/cmd_trace.c - `eddy trace ID`: the causal tree of the flow that ID (an
 * event id, a correlation id, or a subject / aggregate id) belongs to.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "eddy/eddy.h"


static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: eddy trace ID [--store URL]\n\n"
            "Prints the events and saga commands of one flow as a tree by\n"
            "causation, with the time since the first one, the publisher\n"
            "(events) or the saga (commands) and the id. ID is an event id,\n"
            "a correlation id, or a subject / aggregate id (the flow of its\n"
            "first event).\n"
            "  --store URL   the store (default: $EDDY_STORE, else %s)\n\n"
            "exit status: 0 success, 1 not found or store error, 2 usage "
            "error.\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

int cmd_trace(int argc, char **argv)
{
    const char *url = NULL;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': url = optarg; break;
        case 'h': return usage(stdout, 0);
        default: return usage(stderr, 2);
        }
    }
    if (optind != argc - 1)
        return usage(stderr, 2);
    url = cli_store_url(url);
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddy_store_open(url, &ro, &err);
    if (!s)
        return cli_fail(1, "cannot open store %s: %s", url, err.message);
    eddy_trace *t = NULL;
    int rc = eddy_trace_collect(s, argv[optind], &t, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK)
        return cli_fail(1, "trace %s: %s", argv[optind], err.message);
    printf("correlation %s: %zu nodes\n", eddy_trace_correlation(t),
           eddy_trace_count(t));
    rc = eddy_trace_print(t, stdout);
    eddy_trace_free(t);
    return rc == EDDY_OK ? 0 : 1;
}
