/*
 * cli/cmd_sagas.c - `eddy sagas list [--state S] [--type T]` and
 * `eddy sagas show ID`, as a table, JSON lines or JSON: the saga instances
 * recorded in the store, their state, the commands they sent and the
 * deadlines they wait for.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "eddy/eddy.h"


static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: eddy sagas list [--state S] [--type T] [--store URL]\n"
            "                       " CLI_FORMAT_SYNOPSIS "\n"
            "       eddy sagas show ID [--store URL] " CLI_FORMAT_SYNOPSIS "\n\n"
            "list  saga instances, oldest first.\n"
            "show  the instances with id ID (one per saga type having it): status,\n"
            "      state JSON, commands sent and pending timeouts.\n"
            "  --state S          only instances whose status (running, completed,\n"
            "                     failed) or result (e.g. CONFIRMED) is S, in any\n"
            "                     case; another value is an error naming the valid ones\n"
            "  --type T           only instances of saga type T (one the store has)\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            CLI_FORMAT_HELP
            "                     (jsonl and json rows: {\"type\", \"id\", \"status\",\n"
            "                     \"result\", \"version\", \"correlation_id\", \"created\",\n"
            "                     \"updated\", \"state\"}; show adds \"commands\" and\n"
            "                     \"timeouts\")\n\n"
            "exit status: 0 success, 1 no such saga or store error, 2 usage\n"
            "error (an unknown --state or --type too).\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

static void fmt_time(int64_t us, char *buf, size_t size)
{
    if (us > 0)
        eddy_time_format(us, buf, size);
    else
        snprintf(buf, size, "-");
}

/* A saga instance as a JSON row; `full` adds its commands and timeouts. */
static json_t *saga_json(const eddy_saga_info *info, bool full)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:I, s:s?, s:o, s:o, s:O?}", "type",
                          info->type, "id", info->id, "status", info->status, "result",
                          info->result && info->result[0] ? info->result : NULL,
                          "version", (json_int_t)info->version, "correlation_id",
                          info->correlation_id, "created", cli_json_time(info->created_us),
                          "updated", cli_json_time(info->updated_us), "state",
                          (json_t *)info->state);
    if (o && full &&
        (json_object_set_new(o, "commands", info->commands
                                                ? json_deep_copy(info->commands)
                                                : json_array()) ||
         json_object_set_new(o, "timeouts", info->timeouts
                                                ? json_deep_copy(info->timeouts)
                                                : json_array()))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The list: every instance is walked, so that --state and --type can be
 * matched case-insensitively (state) and checked against what the store
 * has; the rows that match are printed as they come. */
struct list_walk {
    cli_writer w;
    const char *state, *type;
    cli_names results, types; /* seen in the store */
};

static const char *const statuses[] = {"running", "completed", "failed"};

static int list_row(const eddy_saga_info *info, void *user)
{
    struct list_walk *lw = user;
    cli_names_add(&lw->results, info->result);
    cli_names_add(&lw->types, info->type);
    if (lw->type && strcmp(lw->type, info->type) != 0)
        return 0;
    if (lw->state && strcasecmp(lw->state, info->status) != 0 &&
        (!info->result || strcasecmp(lw->state, info->result) != 0))
        return 0;
    if (lw->w.format != CLI_FORMAT_TABLE)
        return cli_writer_put(&lw->w, saga_json(info, false));
    char updated[EDDY_TIME_STRLEN];
    fmt_time(info->updated_us, updated, sizeof updated);
    if (lw->w.count++ == 0)
        printf("%-24s %-28s %-10s %-10s %4s  %s\n", "TYPE", "ID", "STATUS",
               "RESULT", "VER", "UPDATED");
    printf("%-24s %-28s %-10s %-10s %4" PRId64 "  %s\n", info->type,
           info->id, info->status, info->result[0] ? info->result : "-",
           info->version, updated);
    return 0;
}

/* Fails with the valid values when --state or --type names nothing the
 * store has; returns 0 when both are known. */
static int check_filters(struct list_walk *lw)
{
    if (lw->type && cli_find_name(lw->type, (const char *const *)lw->types.v, lw->types.n,
                                  false) < 0)
        return cli_fail_unknown(2, "sagas list", "saga type", lw->type,
                                (const char *const *)lw->types.v, lw->types.n);
    if (!lw->state || cli_find_name(lw->state, statuses, 3, true) >= 0 ||
        cli_find_name(lw->state, (const char *const *)lw->results.v, lw->results.n, true) >= 0)
        return 0;
    size_t n = 3 + lw->results.n;
    const char **valid = calloc(n, sizeof *valid);
    if (!valid)
        return cli_fail(1, "sagas list: out of memory");
    for (size_t i = 0; i < n; i++)
        valid[i] = i < 3 ? statuses[i] : lw->results.v[i - 3];
    int status = cli_fail_unknown(2, "sagas list", "state", lw->state, valid, n);
    free(valid);
    return status;
}

static int sagas_list(eddy_store *s, const char *state, const char *type, cli_format format)
{
    struct list_walk lw = {.state = state, .type = type};
    cli_writer_init(&lw.w, "sagas list", format, stdout);
    eddy_error err = {0};
    int status = 0;
    int rc = eddy_saga_list(s, NULL, NULL, list_row, &lw, &err);
    if (rc != EDDY_OK)
        status = err.message[0] ? cli_fail(1, "sagas list: %s", err.message) : 1;
    else if (lw.results.oom || lw.types.oom)
        status = cli_fail(1, "sagas list: out of memory");
    else if (lw.w.count == 0 && (status = check_filters(&lw)) != 0)
        ; /* an unknown value: nothing was printed */
    else if (format != CLI_FORMAT_TABLE)
        status = cli_writer_end(&lw.w);
    else if (lw.w.count == 0)
        printf("no sagas%s%s\n", state ? " with state " : "", state ? state : "");
    cli_names_free(&lw.results);
    cli_names_free(&lw.types);
    return status;
}

static int print_one(const eddy_saga_info *info, void *user)
{
    cli_writer *w = user;
    if (w->format != CLI_FORMAT_TABLE)
        return cli_writer_put(w, saga_json(info, true));
    w->count++;
    char created[EDDY_TIME_STRLEN], updated[EDDY_TIME_STRLEN];
    fmt_time(info->created_us, created, sizeof created);
    fmt_time(info->updated_us, updated, sizeof updated);
    char *state = json_dumps(info->state, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("saga         %s %s\n", info->type, info->id);
    printf("status       %s%s%s\n", info->status, info->result[0] ? " " : "",
           info->result);
    printf("correlation  %s\n", info->correlation_id);
    printf("version      %" PRId64 "\n", info->version);
    printf("created      %s\nupdated      %s\n", created, updated);
    printf("state        %s\n", state ? state : "?");
    free(state);
    size_t i;
    json_t *c;
    printf("commands     %zu\n", json_array_size(info->commands));
    json_array_foreach(info->commands, i, c)
    {
        char *data = json_dumps(json_object_get(c, "data"),
                                JSON_COMPACT | JSON_ENCODE_ANY);
        const char *last = json_string_value(json_object_get(c, "last_error"));
        printf("  %-8s %-18s attempts %" JSON_INTEGER_FORMAT "  %s  %s%s%s\n",
               json_string_value(json_object_get(c, "state")),
               json_string_value(json_object_get(c, "name")),
               json_integer_value(json_object_get(c, "attempts")),
               json_string_value(json_object_get(c, "id")),
               data ? data : "null", last && *last ? "  last error: " : "",
               last && *last ? last : "");
        free(data);
    }
    printf("timeouts     %zu\n", json_array_size(info->timeouts));
    json_array_foreach(info->timeouts, i, c)
    {
        char when[EDDY_TIME_STRLEN];
        fmt_time(json_integer_value(json_object_get(c, "deadline_us")), when,
                 sizeof when);
        printf("  %-18s at %s%s\n",
               json_string_value(json_object_get(c, "name")), when,
               json_integer_value(json_object_get(c, "fired")) ? " (fired)"
                                                              : "");
    }
    return 0;
}

int cmd_sagas(int argc, char **argv)
{
    const char *url = NULL, *state = NULL, *type = NULL;
    cli_format format = CLI_FORMAT_TABLE;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"state", required_argument, NULL, 'S'},
        {"type", required_argument, NULL, 't'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    if (argc < 2 || cli_is_help(argv[1]))
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
    const char *sub = argv[1];
    optind = 2;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "s:S:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': url = optarg; break;
        case 'S': state = optarg; break;
        case 't': type = optarg; break;
        case 'F':
            if (cli_format_parse("sagas", optarg, &format) != 0)
                return 2;
            break;
        case 'h': return usage(stdout, 0);
        default:
            return cli_fail(2, "sagas: bad option '%s' (see 'eddy sagas --help')",
                            argv[optind - 1]);
        }
    }
    url = cli_store_url(url);
    bool list = strcmp(sub, "list") == 0, show = strcmp(sub, "show") == 0;
    if (!list && !show) {
        fprintf(stderr, "eddy sagas: unknown subcommand \"%s\"\n", sub);
        return usage(stderr, 2);
    }
    if ((list && optind != argc) || (show && optind != argc - 1))
        return usage(stderr, 2);
    if (show && (state || type))
        return cli_fail(2, "sagas show: --state and --type only apply to list");
    eddy_error err = {0};
    eddy_store *s = cli_store_open_existing(url, false);
    if (!s)
        return 1;
    int status;
    if (list) {
        status = sagas_list(s, state, type, format);
    } else {
        cli_writer w;
        cli_writer_init(&w, "sagas show", format, stdout);
        int rc = eddy_saga_get(s, argv[optind], print_one, &w, &err);
        if (rc != EDDY_OK)
            status = err.message[0] ? cli_fail(1, "%s", err.message) : 1;
        else
            status = format == CLI_FORMAT_TABLE ? 0 : cli_writer_end(&w);
    }
    eddy_store_close(s);
    return status;
}
