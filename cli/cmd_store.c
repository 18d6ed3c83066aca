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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int status = 0, rc;
    eddy_record rec;
    while (status == 0 && (rc = eddy_cursor_next(cur, &rec, &err)) > 0) {
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
    if (status == 0 && rc < 0)
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
            "Blank lines are skipped. For every event acknowledged durable, as soon\n"
            "as it is, prints one line:\n"
            "  STREAM_VERSION GLOBAL_POSITION EVENT_ID\n"
            "  --store URL             the store (default: $EDDY_STORE, else %s)\n"
            "  --stream ID             the stream to append to (required)\n"
            "  --type T                the type of bare-data events\n"
            "  --source S              their source (default: %s)\n"
            "  --data-version V        their dataversion, the version of the schema\n"
            "                          their data follows (\"2.0\"; default: none), as\n"
            "                          eddy schema check --version expects\n"
            "  --expected-version V    the stream's version before the first event:\n"
            "                          N (0: the stream must not exist), any (default),\n"
            "                          exists; event k of the input then expects V+k-1\n"
            "  --data JSON             the data of the one event to append\n\n"
            "A line that cannot be read or appended is reported as \"line N: ERROR\"\n"
            "and stops the input; events acknowledged before stay stored.\n"
            "exit status: 0 all appended, 1 an event was refused (conflict, bad\n"
            "line, store error), 2 usage error.\n",
            CLI_DEFAULT_STORE_URL, DEFAULT_SOURCE);
}

/* How the events to append are built and which version each expects. */
struct append_spec {
    const char *stream;
    const char *type;
    const char *source;
    const char *dataversion; /* of bare-data events; NULL: none */
    int64_t expected; /* EDDY_EXPECT_* or a version */
};

/* The expected version of the k-th event (0-based) of the input. */
static int64_t expected_for(const struct append_spec *sp, int64_t k)
{
    return sp->expected >= 0 ? sp->expected + k : sp->expected;
}

/*
 * Builds the event for one input value: a CloudEvents object (it has
 * "specversion") as it is, anything else as the data of a new event.
 * Returns a new event or NULL with `err` filled.
 */
static eddy_event *event_from_value(const struct append_spec *sp, json_t *value,
                                    eddy_error *err)
{
    if (json_is_object(value) && json_object_get(value, "specversion"))
        return eddy_event_from_json(value, err);
    if (!sp->type) {
        eddy_error_clear(err);
        err->code = EDDY_EINVAL;
        snprintf(err->message, sizeof err->message,
                 "bare data needs --type (or give a CloudEvents event)");
        return NULL;
    }
    eddy_event_init init = {.type = sp->type,
                            .source = sp->source,
                            .subject = sp->stream,
                            .dataversion = sp->dataversion,
                            .data = value};
    return eddy_event_new(&init, err);
}

static void print_ack(const eddy_append_result *res, const eddy_event *ev)
{
    printf("%" PRId64 " %" PRId64 " %s\n", res->stream_version, res->last_position,
           eddy_event_id(ev));
    fflush(stdout);
}

static int append_one(eddy_store *s, const struct append_spec *sp, const char *data)
{
    json_error_t jerr;
    json_t *value = json_loads(data, JSON_DECODE_ANY, &jerr);
    if (!value)
        return cli_fail(1, "append: --data: %s (column %d)", jerr.text, jerr.column);
    eddy_error err = {0};
    eddy_event *ev = event_from_value(sp, value, &err);
    json_decref(value);
    if (!ev)
        return cli_fail(1, "append: --data: %s", err.message);
    eddy_append_result res;
    int rc = eddy_store_append(s, sp->stream, expected_for(sp, 0), &ev, 1, &res, &err);
    if (rc == EDDY_OK)
        print_ack(&res, ev);
    eddy_event_unref(ev);
    return rc == EDDY_OK ? 0 : cli_fail(1, "append: %s", err.message);
}

/*
 * Appending standard input: the reading thread decodes lines and queues them
 * with eddy_store_append_async (up to WINDOW in flight, so many lines share
 * one group commit); a printer thread waits for the oldest in-flight append
 * and prints its acknowledgement the moment it is durable, in input order.
 */
enum { WINDOW = 512 };

struct inflight {
    struct stdin_appender *app;
    long line;
    eddy_event *ev;
    bool done;
    int rc;
    eddy_append_result res;
    char message[EDDY_ERROR_MESSAGE_MAX];
};

struct stdin_appender {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct inflight slots[WINDOW];
    uint64_t oldest, next; /* slots [oldest, next) are in flight */
    bool input_done;       /* the reader submits nothing more */
    bool failed;           /* an append was refused */
};

static void on_appended(int rc, const eddy_append_result *result, const eddy_error *err,
                        void *user)
{
    struct inflight *f = user;
    pthread_mutex_lock(&f->app->mu);
    f->rc = rc;
    if (rc == EDDY_OK)
        f->res = *result;
    else
        snprintf(f->message, sizeof f->message, "%s",
                 err && err->message[0] ? err->message : eddy_strerror(rc));
    f->done = true;
    pthread_cond_broadcast(&f->app->cv);
    pthread_mutex_unlock(&f->app->mu);
}

static void *printer_main(void *arg)
{
    struct stdin_appender *app = arg;
    pthread_mutex_lock(&app->mu);
    for (;;) {
        while (app->oldest == app->next && !app->input_done)
            pthread_cond_wait(&app->cv, &app->mu);
        if (app->oldest == app->next)
            break;
        struct inflight *f = &app->slots[app->oldest % WINDOW];
        while (!f->done)
            pthread_cond_wait(&app->cv, &app->mu);
        pthread_mutex_unlock(&app->mu);
        if (f->rc == EDDY_OK)
            print_ack(&f->res, f->ev);
        else
            cli_fail(1, "line %ld: %s", f->line, f->message);
        eddy_event_unref(f->ev);
        pthread_mutex_lock(&app->mu);
        if (f->rc != EDDY_OK)
            app->failed = true;
        app->oldest++;
        pthread_cond_broadcast(&app->cv);
    }
    pthread_mutex_unlock(&app->mu);
    return NULL;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s))
            return false;
    return true;
}

static int append_stdin(eddy_store *s, const struct append_spec *sp)
{
    struct stdin_appender *app = calloc(1, sizeof *app);
    if (!app)
        return cli_fail(1, "append: out of memory");
    pthread_mutex_init(&app->mu, NULL);
    pthread_cond_init(&app->cv, NULL);
    pthread_t printer;
    if (pthread_create(&printer, NULL, printer_main, app) != 0) {
        pthread_cond_destroy(&app->cv);
        pthread_mutex_destroy(&app->mu);
        free(app);
        return cli_fail(1, "append: cannot start a thread");
    }
    int status = 0;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int64_t submitted = 0;
    while (getline(&line, &cap, stdin) != -1) {
        lineno++;
        if (blank(line))
            continue;
        eddy_error err = {0};
        json_error_t jerr;
        json_t *value = json_loads(line, JSON_DECODE_ANY, &jerr);
        if (!value) {
            status = cli_fail(1, "line %ld: %s (column %d)", lineno, jerr.text, jerr.column);
            break;
        }
        eddy_event *ev = event_from_value(sp, value, &err);
        json_decref(value);
        if (!ev) {
            status = cli_fail(1, "line %ld: %s", lineno, err.message);
            break;
        }
        /* Wait for room in the window, and stop once anything failed. */
        pthread_mutex_lock(&app->mu);
        while (app->next - app->oldest == WINDOW && !app->failed)
            pthread_cond_wait(&app->cv, &app->mu);
        bool failed = app->failed;
        struct inflight *f = &app->slots[app->next % WINDOW];
        if (!failed)
            *f = (struct inflight){.app = app, .line = lineno, .ev = ev};
        pthread_mutex_unlock(&app->mu);
        if (failed) {
            eddy_event_unref(ev);
            status = 1;
            break;
        }
        int rc = eddy_store_append_async(s, sp->stream, expected_for(sp, submitted), &ev,
                                         1, on_appended, f, &err);
        if (rc != EDDY_OK) {
            eddy_event_unref(ev);
            status = cli_fail(1, "line %ld: %s", lineno, err.message);
            break;
        }
        submitted++;
        pthread_mutex_lock(&app->mu);
        app->next++;
        pthread_cond_broadcast(&app->cv);
        pthread_mutex_unlock(&app->mu);
    }
    if (status == 0 && ferror(stdin))
        status = cli_fail(1, "line %ld: cannot read standard input", lineno + 1);
    free(line);
    pthread_mutex_lock(&app->mu);
    app->input_done = true;
    pthread_cond_broadcast(&app->cv);
    pthread_mutex_unlock(&app->mu);
    pthread_join(printer, NULL);
    if (app->failed)
        status = 1;
    pthread_cond_destroy(&app->cv);
    pthread_mutex_destroy(&app->mu);
    free(app);
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
