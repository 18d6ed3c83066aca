/*
 * cli/cmd_store.c - the commands over an event store:
 *   eddy streams       show one stream, or list the streams
 *   eddy store info    counts, head position, size, schema version
 *   eddy store backup DEST   a consistent copy while the store is in use
 *   eddy append        append events from --data or from standard input
 *
 * (`eddy events list` is in cmd_events_list.c.) Every command takes
 * --store URL; the default is $EDDY_STORE, else "sqlite:eddy.db". Reading
 * commands open the store read-only, so they never create a file by mistake.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "eddy/eddy.h"

#define DEFAULT_SOURCE "eddy-cli"

static eddy_store *open_store(const char *url, bool read_only)
{
    eddy_store_options opts = {0};
    opts.read_only = read_only;
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, &opts, &err);
    if (!s)
        cli_fail(1, "cannot open store %s: %s", cli_url_shown(url), err.message);
    return s;
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

/* ---- eddy streams ---------------------------------------------------------- */

static void streams_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy streams show ID [--store URL] " CLI_FORMAT_SYNOPSIS "\n"
            "       eddy streams list [--store URL] " CLI_FORMAT_SYNOPSIS "\n\n"
            "show: the events of stream ID, oldest first (table: version, position,\n"
            "      time, type, id; jsonl and json rows as in 'eddy events list':\n"
            "      {\"position\", \"stream\", \"stream_version\", \"recorded\", \"event\"}).\n"
            "list: every stream with its current version, by stream id (jsonl and\n"
            "      json rows: {\"stream\", \"version\"}).\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            CLI_FORMAT_HELP "\n"
            "exit status: 0 success, 1 no such stream or store error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
}

static int print_stream_row(const char *stream_id, int64_t version, void *user)
{
    cli_writer *w = user;
    if (w->format != CLI_FORMAT_TABLE)
        return cli_writer_put(w, json_pack("{s:s, s:I}", "stream", stream_id, "version",
                                           (json_int_t)version));
    if (w->count++ == 0)
        printf("%-40s %s\n", "STREAM", "VERSION");
    printf("%-40s %" PRId64 "\n", stream_id, version);
    return 0;
}

static int streams_list(eddy_store *s, cli_format format)
{
    cli_writer w;
    cli_writer_init(&w, "streams list", format, stdout);
    eddy_error err = {0};
    int rc = eddy_store_streams(s, NULL, 0, print_stream_row, &w, &err);
    if (rc != EDDY_OK)
        return err.message[0] ? cli_fail(1, "streams list: %s", err.message) : 1;
    if (format == CLI_FORMAT_TABLE && w.count == 0)
        fprintf(stderr, "no streams\n");
    return format == CLI_FORMAT_TABLE ? 0 : cli_writer_end(&w);
}

static int streams_show(eddy_store *s, const char *url, const char *id, cli_format format)
{
    eddy_error err = {0};
    eddy_cursor *cur = NULL;
    int64_t version;
    if (eddy_store_stream_version(s, id, &version, &err) != EDDY_OK)
        return cli_fail(1, "streams show: %s", err.message);
    if (version == 0)
        return cli_fail(1, "streams show: no stream '%s' in %s", id, cli_url_shown(url));
    if (eddy_store_read_stream(s, id, 1, EDDY_FORWARD, 0, &cur, &err) != EDDY_OK)
        return cli_fail(1, "streams show: %s", err.message);
    cli_writer w;
    cli_writer_init(&w, "streams show", format, stdout);
    if (format == CLI_FORMAT_TABLE)
        printf("stream %s: version %" PRId64 "\n%-8s %-10s %-27s %-24s %s\n", id, version,
               "VERSION", "POSITION", "TIME", "TYPE", "ID");
    int status = 0;
    eddy_record rec;
    while (status == 0 && eddy_cursor_next(cur, &rec, &err)) {
        if (format != CLI_FORMAT_TABLE) {
            status = cli_writer_put(&w, cli_json_record(&rec));
            continue;
        }
        char when[EDDY_TIME_STRLEN] = "-";
        if (eddy_event_time(rec.event))
            eddy_time_format(eddy_event_time(rec.event), when, sizeof when);
        printf("%-8" PRId64 " %-10" PRId64 " %-27s %-24s %s\n", rec.stream_version,
               rec.position, when, eddy_event_type(rec.event), eddy_event_id(rec.event));
    }
    if (status == 0 && eddy_cursor_error(cur) != EDDY_OK)
        status = cli_fail(1, "streams show: %s", err.message);
    eddy_cursor_free(cur);
    return status == 0 ? cli_writer_end(&w) : status;
}

int cmd_streams(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *format_text = NULL;
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'F': format_text = optarg; break;
        case 'h': streams_usage(stdout); return 0;
        default:
            return cli_fail(2, "streams: bad option '%s' (see 'eddy streams --help')",
                            argv[optind - 1]);
        }
    }
    /* Options may also follow the subcommand: parse the rest again. */
    if (optind >= argc) {
        streams_usage(stderr);
        return 2;
    }
    const char *sub = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    const char *id = NULL;
    optind = 0;
    while ((opt = getopt_long(sub_argc, sub_argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'F': format_text = optarg; break;
        case 'h': streams_usage(stdout); return 0;
        default:
            return cli_fail(2, "streams: bad option '%s' (see 'eddy streams --help')",
                            sub_argv[optind - 1]);
        }
    }
    bool show = strcmp(sub, "show") == 0;
    if (!show && strcmp(sub, "list") != 0)
        return cli_fail(2, "streams: unknown subcommand '%s' (show or list)", sub);
    if (show) {
        if (optind + 1 != sub_argc)
            return cli_fail(2, "streams show: expected one stream ID");
        id = sub_argv[optind];
    } else if (optind != sub_argc) {
        return cli_fail(2, "streams list: unexpected argument '%s'", sub_argv[optind]);
    }
    cli_format format = CLI_FORMAT_TABLE;
    if (format_text && cli_format_parse(show ? "streams show" : "streams list", format_text,
                                        &format) != 0)
        return 2;

    url = cli_store_url(url);
    eddy_store *s = open_store(url, true);
    if (!s)
        return 1;
    int status = show ? streams_show(s, url, id, format) : streams_list(s, format);
    eddy_store_close(s);
    if (fflush(stdout) != 0 && status == 0)
        status = cli_fail(1, "streams: cannot write: %s", strerror(errno));
    return status;
}

/* ---- eddy store info --------------------------------------------------------- */

static void store_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy store info [--store URL] " CLI_FORMAT_SYNOPSIS "\n"
            "       eddy store backup DEST [--store URL]\n\n"
            "info: prints the store's backend, schema version, number of events,\n"
            "streams and snapshots, head (last global) position, size on disk and\n"
            "sync mode (jsonl and json: one object {\"store\", \"backend\",\n"
            "\"schema_version\", \"events\", \"streams\", \"snapshots\", \"head\",\n"
            "\"size_bytes\", \"sync\"}; size_bytes is null when unknown).\n"
            "backup: writes a consistent copy of the store to the NEW file DEST while\n"
            "the store stays in use (other processes may append meanwhile): every\n"
            "commit made before the backup started, compacted into one file, synced\n"
            "to disk. DEST must not exist. Open it as any store (--store DEST).\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            CLI_FORMAT_HELP "\n"
            "exit status: 0 success, 1 store error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
}

int cmd_store(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL;
    cli_format format = CLI_FORMAT_TABLE;
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'F':
            if (cli_format_parse("store info", optarg, &format) != 0)
                return 2;
            break;
        case 'h': store_usage(stdout); return 0;
        default:
            return cli_fail(2, "store: bad option '%s' (see 'eddy store --help')",
                            argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        store_usage(stderr);
        return 2;
    }
    if (strcmp(argv[optind], "backup") == 0) {
        if (optind + 2 != argc)
            return cli_fail(2, "store backup: expected one destination file "
                            "(see 'eddy store --help')");
        url = cli_store_url(url);
        eddy_store *s = open_store(url, true);
        if (!s)
            return 1;
        eddy_error err = {0};
        int64_t head = 0;
        int rc = eddy_store_backup(s, argv[optind + 1], &err);
        if (rc == EDDY_OK)
            rc = eddy_store_head(s, &head, &err);
        eddy_store_close(s);
        if (rc != EDDY_OK)
            return cli_fail(1, "store backup: %s", err.message);
        printf("backed up %s to %s (head position at least %" PRId64 ")\n",
               cli_url_shown(url), argv[optind + 1], head);
        return fflush(stdout) == 0 ? 0 : cli_fail(1, "store backup: cannot write");
    }
    if (strcmp(argv[optind], "info") != 0)
        return cli_fail(2, "store: unknown subcommand '%s' (see 'eddy store --help')",
                        argv[optind]);
    if (optind + 1 < argc)
        return cli_fail(2, "store info: unexpected argument '%s'", argv[optind + 1]);
    url = cli_store_url(url);
    eddy_store *s = open_store(url, true);
    if (!s)
        return 1;
    eddy_store_info info;
    eddy_error err = {0};
    int rc = eddy_store_info_get(s, &info, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK)
        return cli_fail(1, "store info: %s", err.message);
    static const char *const sync_names[] = {"full", "normal", "off"};
    const char *sync = (unsigned)info.sync < 3 ? sync_names[info.sync] : "unknown";
    if (format != CLI_FORMAT_TABLE)
        return cli_print_object(
            "store info", format,
            json_pack("{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:o, s:s}", "store",
                      cli_url_shown(url),
                      "backend", info.backend, "schema_version", info.schema_version,
                      "events", (json_int_t)info.event_count, "streams",
                      (json_int_t)info.stream_count, "snapshots",
                      (json_int_t)info.snapshot_count, "head", (json_int_t)info.head,
                      "size_bytes",
                      info.file_bytes >= 0 ? json_integer(info.file_bytes) : json_null(),
                      "sync", sync));
    printf("store:           %s\n"
           "backend:         %s\n"
           "schema version:  %d\n"
           "events:          %" PRId64 "\n"
           "streams:         %" PRId64 "\n"
           "snapshots:       %" PRId64 "\n"
           "head position:   %" PRId64 "\n",
           cli_url_shown(url), info.backend, info.schema_version, info.event_count,
           info.stream_count,
           info.snapshot_count, info.head);
    if (info.file_bytes >= 0)
        printf("size:            %" PRId64 " bytes\n", info.file_bytes);
    else
        printf("size:            unknown\n");
    printf("sync:            %s\n", sync);
    return fflush(stdout) == 0 ? 0 : cli_fail(1, "store info: cannot write");
}

/* ---- eddy append ------------------------------------------------------------ */

static void append_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy append [--store URL] --stream ID [--type T] [--source S]\n"
            "                   [--data-version V] [--expected-version V] [--data JSON]\n\n"
            "Appends one event with --data, or else one event per line of standard\n"
            "input: each line is a CloudEvents JSON event (an object with\n"
            "\"specversion\"; its own attributes are kept) or bare data (any\n"
            "other JSON value; the event gets --type, --source and subject = ID).\n"
            "Blank lines are skipped; a line may hold at most 1 MiB, nested at\n"
            "most 256 levels, without a duplicated member or a NUL.\n"
            "For every event acknowledged durable, as soon as it is, prints one line:\n"
            "  STREAM_VERSION GLOBAL_POSITION EVENT_ID LINE\n"
            "(LINE: the input line of the event; \"-\" for --data).\n"
            "  --store URL             the store (default: $EDDY_STORE, else %s)\n"
            "  --stream ID             the stream to append to (required)\n"
            "  --type T                the type of bare-data events\n"
            "  --source S              their source (default: %s)\n"
            "  --data-version V        their dataversion, the version of the schema\n"
            "                          their data follows (\"2.0\"; default: none), as\n"
            "                          eddy schema check --version expects\n"
            "  --expected-version V    the stream's version before the first event:\n"
            "                          N (0 or no-stream: the stream must not exist),\n"
            "                          exists, or any (default). Other than any, it\n"
            "                          guards the whole input: no other writer's event\n"
            "                          can land between its events\n"
            "  --data JSON             the data of the one event to append\n\n"
            "Lines are appended in order, in atomic groups (as many as have arrived\n"
            "while the previous group committed). A line that cannot be read or\n"
            "appended is reported as \"line N: ERROR\" and stops the input: nothing\n"
            "after it is appended; events acknowledged before it stay stored.\n"
            "exit status: 0 all appended, 1 an event was refused (conflict, bad\n"
            "line, store error) or an acknowledgement could not be written,\n"
            "2 usage error.\n",
            CLI_DEFAULT_STORE_URL, DEFAULT_SOURCE);
}

/* How the events to append are built and which version the first expects. */
struct append_spec {
    const char *stream;
    const char *type;
    const char *source;
    const char *dataversion; /* of bare-data events; NULL: none */
    int64_t expected; /* EDDY_EXPECT_* or a version */
};

/*
 * Builds the event for one input text: a CloudEvents object (it has
 * "specversion") as it is, anything else as the data of a new event. The
 * text goes through eddy_json_decode, the decoder every event input shares.
 * Returns a new event or NULL with `err` filled.
 */
static eddy_event *event_from_text(const struct append_spec *sp, const char *text, size_t len,
                                   bool *given_id, eddy_error *err)
{
    json_t *value = eddy_json_decode(text, len, err);
    if (!value)
        return NULL;
    eddy_event *ev = NULL;
    *given_id = false;
    if (json_is_object(value) && json_object_get(value, "specversion")) {
        ev = eddy_event_from_json(value, err);
        *given_id = true;
    } else if (!sp->type) {
        eddy_error_clear(err);
        err->code = EDDY_EINVAL;
        snprintf(err->message, sizeof err->message,
                 "bare data needs --type (or give a CloudEvents event)");
    } else {
        eddy_event_init init = {.type = sp->type,
                                .source = sp->source,
                                .subject = sp->stream,
                                .dataversion = sp->dataversion,
                                .data = value};
        ev = eddy_event_new(&init, err);
    }
    json_decref(value);
    return ev;
}

/* Prints one acknowledgement, and flushes standard output when `flush`
 * (once per commit: everything printed before it is durable). False (with
 * errno) when it cannot be written. */
static bool print_ack(int64_t version, int64_t position, const eddy_event *ev, long line,
                      bool flush)
{
    char where[24] = "-";
    if (line > 0)
        snprintf(where, sizeof where, "%ld", line);
    if (printf("%" PRId64 " %" PRId64 " %s %s\n", version, position, eddy_event_id(ev),
               where) < 0)
        return false;
    return !flush || fflush(stdout) == 0;
}

static int append_one(eddy_store *s, const struct append_spec *sp, const char *data)
{
    eddy_error err = {0};
    bool given_id;
    eddy_event *ev = event_from_text(sp, data, strlen(data), &given_id, &err);
    if (!ev)
        return cli_fail(1, "append: --data: %s", err.message);
    eddy_append_result res;
    int rc = eddy_store_append(s, sp->stream, sp->expected, &ev, 1, &res, &err);
    int status = 0;
    if (rc != EDDY_OK)
        status = cli_fail(1, "append: %s", err.message);
    else if (!print_ack(res.stream_version, res.last_position, ev, 0, true))
        status = cli_fail(1, "append: event %s stored, but its acknowledgement could not "
                          "be written: %s", eddy_event_id(ev), strerror(errno));
    eddy_event_unref(ev);
    return status;
}

/*
 * Appending standard input.
 *
 * The reading thread (the caller) decodes lines into the pending group; a
 * committer thread takes the whole pending group whenever it is idle,
 * appends it as ONE atomic append, prints its acknowledgements and comes
 * back for the next. So a steady stream of lines is committed in groups as
 * large as what arrived during the previous commit (one fsync each), and a
 * line arriving alone is appended at once.
 *
 * Only one append is ever in flight: a group is submitted after the
 * previous one is known to have committed. That is what makes a refused
 * line stop the input with nothing after it stored (an append queued behind
 * a failing one would commit on its own), and what lets the expected
 * version be chained exactly: with --expected-version other than any, each
 * group expects the version the previous group left, so another writer's
 * event between two groups is a conflict, never an interleaving. (The
 * alternative, the whole input as one append, would hold all of it in
 * memory; chaining gives the same guarantee for input of any length.)
 *
 * When a group is refused, its events are appended one by one in order, so
 * that the lines before the refused one are stored and acknowledged and the
 * error names the exact line; the rest of the input is not appended. A
 * group that a retried input had partly stored already (its events skipped
 * as identical) is acknowledged event by event through idempotent appends,
 * which return each event's stored version and position.
 */
enum {
    GROUP_MAX_EVENTS = 512,
    GROUP_MAX_BYTES = 8 << 20, /* input bytes of one group */
};

struct pending {
    long line;
    eddy_event *ev;
    bool given_id; /* the line chose the id (a CloudEvents event) */
};

struct stdin_appender {
    eddy_store *store;
    const struct append_spec *sp;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pending *group; /* the pending group, filled by the reader */
    size_t count, bytes;
    bool input_done; /* the reader adds nothing more */
    bool failed;     /* a line was refused (or an ack not written): stop */
    int64_t expected; /* what the next append expects (committer only) */
    int wake[2];     /* the committer writes here to end a blocked read */
};

/* eddy_read_fn over standard input that ends the input early once the
 * committer has failed, even while no line arrives. */
static long stdin_read(void *user, void *buf, size_t size)
{
    struct stdin_appender *app = user;
    struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                            {.fd = app->wake[0], .events = POLLIN}};
    for (;;) {
        int n = poll(fds, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (fds[1].revents)
            return 0; /* stop: nothing after a refused line is appended */
        ssize_t got = read(STDIN_FILENO, buf, size);
        if (got < 0 && errno == EINTR)
            continue;
        return (long)got;
    }
}

/*
 * True when the `n` events of group `g`, appended with result `res`, are
 * stored as versions stream_version - n + 1 .. stream_version at positions
 * first_position + i, in input order. Checked by reading them back when an
 * event chose its own id: a retried input may have had them stored before,
 * in another order (ids eddy generated now are always new).
 */
static bool group_in_order(struct stdin_appender *app, struct pending *g, size_t n,
                           const eddy_append_result *res)
{
    bool given = false;
    for (size_t i = 0; i < n && !given; i++)
        given = g[i].given_id;
    if (!given)
        return true;
    eddy_cursor *cur = NULL;
    if (eddy_store_read_stream(app->store, app->sp->stream,
                               res->stream_version - (int64_t)n + 1, EDDY_FORWARD, n, &cur,
                               NULL) != EDDY_OK)
        return false;
    eddy_record rec;
    size_t i = 0;
    bool same = true;
    while (same && i < n && eddy_cursor_next(cur, &rec, NULL)) {
        same = rec.position == res->first_position + (int64_t)i &&
               strcmp(eddy_event_id(rec.event), eddy_event_id(g[i].ev)) == 0;
        i++;
    }
    eddy_cursor_free(cur);
    return same && i == n;
}

/* The next group's expected version after an append that left the stream
 * at `version` (committer only). With any, every group expects any. */
static void chain(struct stdin_appender *app, int64_t version)
{
    if (app->sp->expected == EDDY_EXPECT_ANY)
        return;
    /* EXISTS (negative) or NO_STREAM (0) become the exact version; an
     * idempotent re-append of stored events (an older version) keeps it. */
    if (app->expected < 0 || version > app->expected)
        app->expected = version;
}

/* Appends the events of group `g` one by one from `from`: acknowledges each
 * or reports the first refusal. Returns 0, or 1 once something failed. */
static int append_singly(struct stdin_appender *app, struct pending *g, size_t n, size_t from,
                         bool stored_already)
{
    for (size_t i = from; i < n; i++) {
        eddy_error err = {0};
        eddy_append_result res;
        /* Events a group just stored are re-appended only to learn their
         * version and position: identical, so no check and no effect. */
        int64_t expected = stored_already ? EDDY_EXPECT_ANY : app->expected;
        int rc = eddy_store_append(app->store, app->sp->stream, expected, &g[i].ev, 1, &res,
                                   &err);
        if (rc != EDDY_OK) {
            cli_fail(1, "line %ld: %s", g[i].line, err.message);
            return 1;
        }
        if (!stored_already)
            chain(app, res.stream_version);
        if (!print_ack(res.stream_version, res.last_position, g[i].ev, g[i].line, true)) {
            cli_fail(1, "line %ld: stored, but its acknowledgement could not be written: %s",
                     g[i].line, strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* Appends one group atomically and acknowledges every event of it. */
static int append_group(struct stdin_appender *app, struct pending *g, size_t n)
{
    eddy_event **evs = calloc(n, sizeof *evs);
    if (!evs) {
        cli_fail(1, "line %ld: out of memory", g[0].line);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        evs[i] = g[i].ev;
    eddy_error err = {0};
    eddy_append_result res;
    int rc = eddy_store_append(app->store, app->sp->stream, app->expected, evs, n, &res, &err);
    free(evs);
    if (rc != EDDY_OK) {
        if (n == 1) {
            cli_fail(1, "line %ld: %s", g[0].line, err.message);
            return 1;
        }
        /* Find the refused line: the ones before it are stored. */
        return append_singly(app, g, n, 0, false);
    }
    chain(app, res.stream_version);
    if (res.last_position - res.first_position + 1 != (int64_t)n || res.first_position <= 0 ||
        !group_in_order(app, g, n, &res))
        return append_singly(app, g, n, 0, true); /* (partly) stored before */
    bool written = true;
    for (size_t i = 0; i < n && written; i++) {
        int64_t version = res.stream_version - (int64_t)(n - 1 - i);
        written = print_ack(version, res.first_position + (int64_t)i, g[i].ev, g[i].line,
                            i + 1 == n);
    }
    if (!written) {
        if (n == 1)
            cli_fail(1, "line %ld: stored, but its acknowledgement could not be written: %s",
                     g[0].line, strerror(errno));
        else
            cli_fail(1, "lines %ld-%ld: stored, but their acknowledgements could not be "
                     "written: %s", g[0].line, g[n - 1].line, strerror(errno));
        return 1;
    }
    return 0;
}

static void *committer_main(void *arg)
{
    struct stdin_appender *app = arg;
    struct pending *spare = NULL;
    pthread_mutex_lock(&app->mu);
    for (;;) {
        while (app->count == 0 && !app->input_done && !app->failed)
            pthread_cond_wait(&app->cv, &app->mu);
        if (app->failed || app->count == 0)
            break;
        struct pending *g = app->group;
        size_t n = app->count;
        app->group = spare;
        app->count = app->bytes = 0;
        pthread_cond_broadcast(&app->cv); /* room for the reader */
        pthread_mutex_unlock(&app->mu);

        int failed = append_group(app, g, n);
        for (size_t i = 0; i < n; i++)
            eddy_event_unref(g[i].ev);
        spare = g;

        pthread_mutex_lock(&app->mu);
        if (failed) {
            app->failed = true;
            pthread_cond_broadcast(&app->cv);
            /* End a read that waits for input nobody will append. */
            ssize_t w = write(app->wake[1], "x", 1);
            (void)w;
        }
        if (!app->group) { /* the reader has not started a new group */
            app->group = spare;
            spare = NULL;
        }
    }
    pthread_mutex_unlock(&app->mu);
    free(spare);
    return NULL;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r", s[i]))
            return false;
    return true;
}

/*
 * Adds one decoded event to the pending group, waiting while the group is
 * full, or while it already holds the same event id (one append may not
 * hold an id twice; in separate appends a repeated identical event is an
 * idempotent no-op). `ids` mirrors the ids of the pending group. Returns
 * false, without taking `ev`, once the committer has failed.
 */
static bool add_pending(struct stdin_appender *app, json_t *ids, long line, eddy_event *ev,
                        bool given_id, size_t bytes)
{
    const char *id = eddy_event_id(ev);
    pthread_mutex_lock(&app->mu);
    for (;;) {
        if (app->failed)
            break;
        if (app->count == 0)
            json_object_clear(ids); /* the committer took the group */
        bool full = app->count >= GROUP_MAX_EVENTS ||
                    (app->count > 0 && app->bytes + bytes > GROUP_MAX_BYTES);
        if (!full && !json_object_get(ids, id))
            break;
        pthread_cond_wait(&app->cv, &app->mu);
    }
    bool ok = !app->failed;
    if (ok && !app->group) {
        app->group = malloc(GROUP_MAX_EVENTS * sizeof *app->group);
        if (!app->group) {
            cli_fail(1, "line %ld: out of memory", line);
            app->failed = true;
            ok = false;
        }
    }
    if (ok && json_object_set_new(ids, id, json_true()) != 0) {
        cli_fail(1, "line %ld: out of memory", line);
        app->failed = true;
        ok = false;
    }
    if (ok) {
        app->group[app->count++] =
            (struct pending){.line = line, .ev = ev, .given_id = given_id};
        app->bytes += bytes;
    }
    pthread_cond_broadcast(&app->cv);
    pthread_mutex_unlock(&app->mu);
    return ok;
}

static int append_stdin(eddy_store *s, const struct append_spec *sp)
{
    struct stdin_appender app = {.store = s, .sp = sp, .expected = sp->expected};
    if (pipe(app.wake) != 0)
        return cli_fail(1, "append: cannot create a pipe: %s", strerror(errno));
    eddy_line_reader *reader = eddy_line_reader_new(stdin_read, &app, EDDY_EVENT_MAX_BYTES);
    json_t *ids = json_object();
    pthread_t committer;
    int status = 1;
    if (!reader || !ids) {
        cli_fail(1, "append: out of memory");
        goto done;
    }
    pthread_mutex_init(&app.mu, NULL);
    pthread_cond_init(&app.cv, NULL);
    if (pthread_create(&committer, NULL, committer_main, &app) != 0) {
        pthread_cond_destroy(&app.cv);
        pthread_mutex_destroy(&app.mu);
        cli_fail(1, "append: cannot start a thread");
        goto done;
    }
    /* A line that cannot be read or decoded: reported once the lines before
     * it are committed (and only if none of them was refused). */
    char bad[EDDY_ERROR_MESSAGE_MAX + 64] = "";
    for (;;) {
        const char *text;
        size_t len;
        eddy_error err = {0};
        int got = eddy_line_reader_next(reader, &text, &len, &err);
        if (got == 0)
            break;
        long line = eddy_line_reader_line(reader);
        if (got < 0) {
            if (err.code == EDDY_ETOOBIG)
                snprintf(bad, sizeof bad, "%s (EDDY_EVENT_MAX_BYTES)", err.message);
            else
                snprintf(bad, sizeof bad, "%s", err.message);
            break;
        }
        if (blank(text, len))
            continue;
        bool given_id = false;
        eddy_event *ev = event_from_text(sp, text, len, &given_id, &err);
        if (!ev) {
            snprintf(bad, sizeof bad, "line %ld: %s", line, err.message);
            break;
        }
        if (!add_pending(&app, ids, line, ev, given_id, len)) {
            eddy_event_unref(ev);
            break;
        }
    }
    pthread_mutex_lock(&app.mu);
    app.input_done = true;
    pthread_cond_broadcast(&app.cv);
    pthread_mutex_unlock(&app.mu);
    pthread_join(committer, NULL);

    status = app.failed ? 1 : 0;
    if (!app.failed && bad[0])
        status = cli_fail(1, "%s", bad);
    for (size_t i = 0; i < app.count; i++) /* left by a failed committer */
        eddy_event_unref(app.group[i].ev);
    free(app.group);
    pthread_cond_destroy(&app.cv);
    pthread_mutex_destroy(&app.mu);
done:
    eddy_line_reader_free(reader);
    json_decref(ids);
    close(app.wake[0]);
    close(app.wake[1]);
    return status;
}

int cmd_append(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"stream", required_argument, NULL, 'i'},
        {"type", required_argument, NULL, 't'},
        {"source", required_argument, NULL, 'o'},
        {"data-version", required_argument, NULL, 'v'},
        {"expected-version", required_argument, NULL, 'e'},
        {"data", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct append_spec sp = {.source = DEFAULT_SOURCE, .expected = EDDY_EXPECT_ANY};
    const char *url = NULL, *data = NULL;
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'i': sp.stream = optarg; break;
        case 't': sp.type = optarg; break;
        case 'o': sp.source = optarg; break;
        case 'd': data = optarg; break;
        case 'v': sp.dataversion = optarg; break;
        case 'e':
            if (strcmp(optarg, "any") == 0)
                sp.expected = EDDY_EXPECT_ANY;
            else if (strcmp(optarg, "exists") == 0)
                sp.expected = EDDY_EXPECT_EXISTS;
            else if (strcmp(optarg, "no-stream") == 0)
                sp.expected = EDDY_EXPECT_NO_STREAM;
            else if (!parse_count(optarg, &sp.expected))
                return cli_fail(2,
                                "append: --expected-version: '%s' is not a version, "
                                "any, exists or no-stream",
                                optarg);
            break;
        case 'h': append_usage(stdout); return 0;
        default:
            return cli_fail(2, "append: bad option '%s' (see 'eddy append --help')",
                            argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_fail(2, "append: unexpected argument '%s'", argv[optind]);
    if (!sp.stream || !*sp.stream)
        return cli_fail(2, "append: --stream ID is required");
    for (const unsigned char *p = (const unsigned char *)sp.stream; *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            return cli_fail(2, "append: --stream: contains the control character U+%04X",
                            *p);
    if (sp.type && !*sp.type)
        return cli_fail(2, "append: --type must not be empty");
    if (!*sp.source)
        return cli_fail(2, "append: --source must not be empty");
    if (sp.dataversion && !*sp.dataversion)
        return cli_fail(2, "append: --data-version must not be empty");

    url = cli_store_url(url);
    eddy_store *s = open_store(url, false);
    if (!s)
        return 1;
    int status = data ? append_one(s, &sp, data) : append_stdin(s, &sp);
    eddy_store_close(s);
    return status;
}
