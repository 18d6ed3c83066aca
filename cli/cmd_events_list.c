/*
 * cli/cmd_events_list.c - `eddy events list`: the store's global log, as a
 * table, JSON lines or a JSON array, through one query cursor.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"

static void list_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy events list [--store URL] [--type T]... [--since TIME]\n"
            "                        [--until TIME] [--stream ID] [--from POSITION]\n"
            "                        [--limit N] " CLI_FORMAT_SYNOPSIS "\n\n"
            "Prints the store's events in global-position order, oldest first.\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            "  --type T           only events of type T (repeat for several)\n"
            "  --since TIME       only events whose time is at or after TIME (RFC 3339)\n"
            "  --until TIME       only events whose time is before TIME (RFC 3339)\n"
            "  --stream ID        only the events of stream ID\n"
            "  --from POSITION    start at global position POSITION (inclusive)\n"
            "  --limit N          at most N events\n"
            CLI_FORMAT_HELP
            "                     table: position, stream, version, time, type, id;\n"
            "                     jsonl and json rows: {\"position\", \"stream\",\n"
            "                     \"stream_version\", \"recorded\", \"event\": CloudEvents}\n\n"
            "To resume where a listing stopped, pass --from LAST_POSITION+1.\n\n"
            "exit status: 0 success, 1 store or read error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
}

/* Parses a non-negative decimal integer; false on anything else. */
static bool parse_count(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < 0)
        return false;
    *out = v;
    return true;
}

static void print_table_header(void)
{
    printf("%-10s %-24s %-8s %-27s %-24s %s\n", "POSITION", "STREAM", "VERSION", "TIME",
           "TYPE", "ID");
}

/* Prints one record as a table row or a JSON row. Returns 0 or 1 (message
 * printed). */
static int print_record(cli_writer *w, const eddy_record *rec)
{
    if (w->format != CLI_FORMAT_TABLE)
        return cli_writer_put(w, cli_json_record(rec));
    char when[EDDY_TIME_STRLEN] = "-";
    if (eddy_event_time(rec->event))
        eddy_time_format(eddy_event_time(rec->event), when, sizeof when);
    if (printf("%-10" PRId64 " %-24s %-8" PRId64 " %-27s %-24s %s\n", rec->position,
               rec->stream_id, rec->stream_version, when, eddy_event_type(rec->event),
               eddy_event_id(rec->event)) < 0 ||
        (w->flush_each && fflush(stdout) != 0))
        return cli_fail(1, "events list: cannot write: %s", strerror(errno));
    return 0;
}

/* ---- the listing ------------------------------------------------------------ */

static int list_once(eddy_store *s, const eddy_query *q, cli_format format)
{
    eddy_error err = {0};
    eddy_cursor *cur = NULL;
    if (eddy_store_query(s, q, &cur, &err) != EDDY_OK)
        return cli_fail(err.code == EDDY_EINVAL ? 2 : 1, "events list: %s", err.message);
    cli_writer w;
    cli_writer_init(&w, "events list", format, stdout);
    if (format == CLI_FORMAT_TABLE)
        print_table_header();
    int status = 0, rc;
    eddy_record rec;
    while ((rc = eddy_cursor_next(cur, &rec, &err)) > 0)
        if ((status = print_record(&w, &rec)) != 0)
            break;
    if (status == 0 && rc < 0)
        status = cli_fail(1, "events list: %s", err.message);
    eddy_cursor_free(cur);
    if (status == 0)
        status = cli_writer_end(&w);
    return status;
}

/* ---- the command --------------------------------------------------------------- */

int cmd_events_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},
        {"since", required_argument, NULL, 'S'},
        {"until", required_argument, NULL, 'U'},
        {"stream", required_argument, NULL, 'i'},
        {"from", required_argument, NULL, 'F'},
        {"limit", required_argument, NULL, 'n'},
        {"format", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL;
    const char **types = NULL;
    eddy_query q = {0};
    eddy_store *s = NULL;
    cli_format format = CLI_FORMAT_TABLE;
    int status = 2, opt;
    int64_t n;

    types = calloc((size_t)argc + 1, sizeof *types);
    if (!types)
        return cli_fail(1, "out of memory");
    q.types = types;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 't':
            if (!*optarg) {
                cli_fail(2, "events list: --type needs a non-empty type");
                goto done;
            }
            types[q.type_count++] = optarg;
            break;
        case 'S':
        case 'U':
            if (eddy_time_parse(optarg, opt == 'S' ? &q.from_time_us : &q.to_time_us) !=
                EDDY_OK) {
                cli_fail(2, "events list: --%s: '%s' is not an RFC 3339 time",
                         opt == 'S' ? "since" : "until", optarg);
                goto done;
            }
            break;
        case 'i': q.stream_id = optarg; break;
        case 'F':
            if (!parse_count(optarg, &q.min_position)) {
                cli_fail(2, "events list: --from: '%s' is not a position", optarg);
                goto done;
            }
            break;
        case 'n':
            if (!parse_count(optarg, &n) || n == 0) {
                cli_fail(2, "events list: --limit: '%s' is not a positive count", optarg);
                goto done;
            }
            q.limit = (size_t)n;
            break;
        case 'o':
            if (cli_format_parse("events list", optarg, &format) != 0)
                goto done;
            break;
        case 'h':
            list_usage(stdout);
            status = 0;
            goto done;
        default:
            cli_fail(2, "events list: bad option '%s' (see 'eddy events list --help')",
                     argv[optind - 1]);
            goto done;
        }
    }
    if (optind < argc) {
        cli_fail(2, "events list: unexpected argument '%s'", argv[optind]);
        goto done;
    }
    status = 1;
    url = cli_store_url(url);
    eddy_error err = {0};
    eddy_store_options opts = {.read_only = true};
    s = eddy_store_open(url, &opts, &err);
    if (!s) {
        cli_fail(1, "cannot open store %s: %s", url, err.message);
        goto done;
    }
    status = list_once(s, &q, format);
done:
    eddy_store_close(s);
    free(types);
    return status;
}
