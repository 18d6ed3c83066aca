/*
 * cli/cmd_graph.c - `eddy graph [--format dot|mermaid]`: who publishes and
 * who handles which event type, from the subscriptions recorded in the
 * store and the causation links between stored events.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"


static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: eddy graph [--store URL] [--format dot|mermaid]\n\n"
            "Prints the flow of the system recorded in the store as a graph:\n"
            "event type -> handler (subscriptions and observed causation),\n"
            "publisher -> event type, saga -> command -> event type. Edges\n"
            "seen in stored data carry a count.\n"
            "  --store URL      the store (default: $EDDY_STORE, else %s)\n"
            "  --format FORMAT  dot (Graphviz, default) or mermaid\n\n"
            "exit status: 0 success, 1 store error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

int cmd_graph(int argc, char **argv)
{
    const char *url = NULL;
    eddy_graph_format format = EDDY_GRAPH_DOT;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:f:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            url = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "dot") == 0)
                format = EDDY_GRAPH_DOT;
            else if (strcmp(optarg, "mermaid") == 0)
                format = EDDY_GRAPH_MERMAID;
            else {
                fprintf(stderr, "eddy graph: unknown format \"%s\" (dot or "
                        "mermaid)\n", optarg);
                return 2;
            }
            break;
        case 'h':
            return usage(stdout, 0);
        default:
            return usage(stderr, 2);
        }
    }
    if (optind != argc)
        return usage(stderr, 2);
    url = cli_store_url(url);
    eddy_error err = {0};
    eddy_store *s = cli_store_open_existing(url, false);
    if (!s)
        return 1;
    eddy_graph *g = NULL;
    int rc = eddy_graph_build(s, &g, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK)
        return cli_fail(1, "graph: %s", err.message);
    rc = eddy_graph_write(g, format, stdout);
    eddy_graph_free(g);
    return rc == EDDY_OK ? 0 : 1;
}
