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
            "usage: eddy trace ID [--store URL] " CLI_FORMAT_SYNOPSIS "\n\n"
            "Prints the events and saga commands of one flow as a tree by\n"
            "causation, with the time since the first one, the publisher\n"
            "(events) or the saga (commands) and the id. ID is an event id,\n"
            "a correlation id, or a subject / aggregate id (the flow of its\n"
            "first event).\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            CLI_FORMAT_HELP
            "                     (jsonl and json: one row per node, in tree order:\n"
            "                     {\"correlation_id\", \"depth\", \"kind\": \"event\" or\n"
            "                     \"command\", \"id\", \"name\", \"by\", \"handler\", \"subject\",\n"
            "                     \"causation_id\", \"time\", \"offset_us\", \"position\"})\n\n"
            "exit status: 0 success, 1 not found or store error, 2 usage "
            "error.\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

static json_t *node_json(const eddy_trace *t, const eddy_trace_node *n)
{
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:o, s:I, s:I}",
                     "correlation_id", eddy_trace_correlation(t), "depth", n->depth,
                     "kind", n->kind == EDDY_TRACE_COMMAND ? "command" : "event", "id",
                     n->id, "name", n->name, "by", n->by, "handler", n->handler,
                     "subject", n->subject, "causation_id", n->causation_id, "time",
                     cli_json_time(n->time_us), "offset_us", (json_int_t)n->offset_us,
                     "position", (json_int_t)n->position);
}

int cmd_trace(int argc, char **argv)
{
    const char *url = NULL;
    cli_format format = CLI_FORMAT_TABLE;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': url = optarg; break;
        case 'F':
            if (cli_format_parse("trace", optarg, &format) != 0)
                return 2;
            break;
        case 'h': return usage(stdout, 0);
        default: return usage(stderr, 2);
        }
    }
    if (optind != argc - 1)
        return usage(stderr, 2);
    url = cli_store_url(url);
    eddy_error err = {0};
    eddy_store *s = cli_store_open_existing(url, false);
    if (!s)
        return 1;
    eddy_trace *t = NULL;
    int rc = eddy_trace_collect(s, argv[optind], &t, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK)
        return cli_fail(1, "trace %s: %s", argv[optind], err.message);
    int status = 0;
    if (format == CLI_FORMAT_TABLE) {
        printf("correlation %s: %zu nodes\n", eddy_trace_correlation(t),
               eddy_trace_count(t));
        status = eddy_trace_print(t, stdout) == EDDY_OK ? 0 : 1;
    } else {
        cli_writer w;
        cli_writer_init(&w, "trace", format, stdout);
        for (size_t i = 0; status == 0 && i < eddy_trace_count(t); i++)
            status = cli_writer_put(&w, node_json(t, eddy_trace_node_at(t, i)));
        if (status == 0)
            status = cli_writer_end(&w);
    }
    eddy_trace_free(t);
    return status;
}
