/*
 * cli/cmd_events_list.c - `eddy events list`: the store's global log, as a
 * table, JSON lines or a JSON array, and with --follow a live tail of it.
 *
 * The listing is one query cursor. --follow is one live subscription of the
 * store (eddy_store_subscribe): it reads from the start position, then waits
 * for commits and prints each new event as soon as it is noticed (at once
 * for appends through this process, within about a second for appends by
 * other processes). The main thread meanwhile waits in sigtimedwait() for
 * SIGINT or SIGTERM, which every thread has blocked since before the store
 * was opened: an interruption is a clean end (the callback in progress
 * finishes its line, exit status 0), never a signal delivered to a store
 * thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "eddy/eddy.h"

static void list_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy events list [--store URL] [--type T]... [--since TIME]\n"
            "                        [--until TIME] [--stream ID] [--from POSITION]\n"
            "                        [--limit N] [--follow] " CLI_FORMAT_SYNOPSIS "\n\n"
            "Prints the store's events in global-position order, oldest first.\n"
            "With --follow, keeps running and prints every event appended later,\n"
            "as it is appended, until interrupted (Ctrl-C or SIGTERM: exit 0).\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            "  --type T           only events of type T (repeat for several)\n"
            "  --since TIME       only events whose time is at or after TIME (RFC 3339)\n"
            "  --until TIME       only events whose time is before TIME (RFC 3339)\n"
            "  --stream ID        only the events of stream ID\n"
            "  --from POSITION    start at global position POSITION (inclusive);\n"
            "                     default: the first event, or with --follow the\n"
            "                     first one appended after the command started\n"
            "  --limit N          at most N events (--follow: then stop)\n"
            "  -f, --follow       a live tail: wait for new events and print them\n"
            CLI_FORMAT_HELP
            "                     table: position, stream, version, time, type, id;\n"
            "                     jsonl and json rows: {\"position\", \"stream\",\n"
            "                     \"stream_version\", \"recorded\", \"event\": CloudEvents}\n"
            "                     (--follow takes table or jsonl)\n\n"
            "To resume where a listing stopped, pass --from LAST_POSITION+1; an\n"
            "interrupted --follow prints that position on standard error.\n\n"
            "exit status: 0 success (a --follow ended by Ctrl-C or SIGTERM too),\n"
            "1 store or read error, 2 usage error.\n",
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
    int status = 0;
    eddy_record rec;
    while (eddy_cursor_next(cur, &rec, &err))
        if ((status = print_record(&w, &rec)) != 0)
            break;
    if (status == 0 && eddy_cursor_error(cur) != EDDY_OK)
        status = cli_fail(1, "events list: %s", err.message);
    eddy_cursor_free(cur);
    if (status == 0)
        status = cli_writer_end(&w);
    return status;
}

/* ---- --follow ---------------------------------------------------------------- */

struct follow {
    const eddy_query *q; /* stream and time filters (types: the subscription's) */
    cli_writer w;
    size_t printed;
    pthread_t main_thread;
    int status;          /* 0, or 1 after a write error */
    bool limit_reached;
};

/* The records the subscription's type filter let through, against the rest
 * of the query. */
static bool follow_matches(const eddy_query *q, const eddy_record *rec)
{
    if (q->stream_id && strcmp(q->stream_id, rec->stream_id) != 0)
        return false;
    if (q->from_time_us || q->to_time_us) {
        int64_t t = eddy_event_time(rec->event);
        if (!t || (q->from_time_us && t < q->from_time_us) ||
            (q->to_time_us && t >= q->to_time_us))
            return false;
    }
    return true;
}

/* Runs on the subscription's thread. Non-zero stops the subscription; the
 * main thread is woken to notice it. */
static int follow_record(const eddy_record *rec, void *user)
{
    struct follow *f = user;
    if (!follow_matches(f->q, rec))
        return 0;
    if (print_record(&f->w, rec) != 0) {
        f->status = 1;
        pthread_kill(f->main_thread, SIGUSR1);
        return 1;
    }
    if (f->q->limit && ++f->printed >= f->q->limit) {
        f->limit_reached = true;
        pthread_kill(f->main_thread, SIGUSR1);
        return 1;
    }
    return 0;
}

/*
 * Blocks SIGINT, SIGTERM and SIGUSR1 (the subscription's wake-up) in this
 * thread and so in every thread started after it. SIGINT and SIGTERM get
 * their default action back first: a shell starts a background command with
 * SIGINT ignored, and an ignored signal is discarded instead of waited for.
 */
static void block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGUSR1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static int follow(eddy_store *s, const char *url, const eddy_query *q, bool from_given,
                  const sigset_t *stop_signals, cli_format format)
{
    eddy_error err = {0};
    int64_t after = q->min_position > 0 ? q->min_position - 1 : 0;
    if (!from_given && eddy_store_head(s, &after, &err) != EDDY_OK)
        return cli_fail(1, "events list: %s", err.message);
    struct follow f = {.q = q, .main_thread = pthread_self()};
    cli_writer_init(&f.w, "events list", format, stdout);
    f.w.flush_each = true;
    if (format == CLI_FORMAT_TABLE) {
        print_table_header();
        fflush(stdout);
    }
    eddy_store_subscribe_options opts = {.types = q->types, .type_count = q->type_count};
    eddy_store_subscription *sub = NULL;
    if (eddy_store_subscribe(s, after, follow_record, &f, &opts, &sub, &err) != EDDY_OK)
        return cli_fail(1, "events list: %s", err.message);
    fprintf(stderr, "eddy: events list: following %s after position %" PRId64
                    " (Ctrl-C to stop)\n", cli_url_shown(url), after);

    int sig = 0;
    while (eddy_store_subscription_running(sub)) {
        /* SIGUSR1 says the subscription stopped itself; the timeout covers
         * a subscription ended by a read error, which sends nothing. */
        struct timespec wait = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
        int got = sigtimedwait(stop_signals, NULL, &wait);
        if (got == SIGINT || got == SIGTERM) {
            sig = got;
            break;
        }
    }
    int rc = eddy_store_subscription_stop(sub, &err);
    int64_t last = eddy_store_subscription_position(sub);
    eddy_store_subscription_free(sub);
    if (f.status)
        return f.status;
    if (rc != EDDY_OK && !f.limit_reached)
        return cli_fail(1, "events list: %s", err.message[0] ? err.message : eddy_strerror(rc));
    if (sig)
        fprintf(stderr, "eddy: events list: %s after position %" PRId64
                        "; resume with --from %" PRId64 "\n",
                sig == SIGINT ? "interrupted" : "terminated", last ? last : after,
                (last ? last : after) + 1);
    return fflush(stdout) == 0 ? 0 : cli_fail(1, "events list: cannot write: %s",
                                              strerror(errno));
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
        {"follow", no_argument, NULL, 'f'},
        {"format", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *since = NULL, *until = NULL;
    const char **types = NULL;
    eddy_query q = {0};
    eddy_store *s = NULL;
    cli_format format = CLI_FORMAT_TABLE;
    bool follow_mode = false, from_given = false;
    int status = 2, opt;
    int64_t n;

    types = calloc((size_t)argc + 1, sizeof *types);
    if (!types)
        return cli_fail(1, "out of memory");
    q.types = types;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "fh", longopts, NULL)) != -1) {
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
            *(opt == 'S' ? &since : &until) = optarg;
            break;
        case 'i': q.stream_id = optarg; break;
        case 'F':
            if (!parse_count(optarg, &q.min_position)) {
                cli_fail(2, "events list: --from: '%s' is not a position", optarg);
                goto done;
            }
            from_given = true;
            break;
        case 'n':
            if (!parse_count(optarg, &n) || n == 0) {
                cli_fail(2, "events list: --limit: '%s' is not a positive count", optarg);
                goto done;
            }
            q.limit = (size_t)n;
            break;
        case 'f': follow_mode = true; break;
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
    if (follow_mode && format == CLI_FORMAT_JSON) {
        cli_fail(2, "events list: --follow never ends a JSON document: use --format "
                    "jsonl (or table)");
        goto done;
    }
    /* Said here in the options' terms; the store would name its fields. */
    if (since && until && q.to_time_us <= q.from_time_us) {
        cli_fail(2, "events list: --since %s is not before --until %s: no event can match",
                 since, until);
        goto done;
    }
    sigset_t stop_signals;
    if (follow_mode)
        block_stop_signals(&stop_signals); /* before the store starts threads */
    status = 1;
    url = cli_store_url(url);
    eddy_error err = {0};
    eddy_store_options opts = {.read_only = true};
    s = eddy_store_open(url, &opts, &err);
    if (!s) {
        cli_fail(1, "cannot open store %s: %s", cli_url_shown(url), err.message);
        goto done;
    }
    status = follow_mode ? follow(s, url, &q, from_given, &stop_signals, format)
                         : list_once(s, &q, format);
done:
    eddy_store_close(s);
    free(types);
    return status;
}
