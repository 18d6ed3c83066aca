/*
 * cli/cmd_sagas.c - `eddy sagas list [--state S] [--type T]` and
 * `eddy sagas show ID`: the saga instances recorded in the store, their
 * state, the commands they sent and the deadlines they wait for.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"


static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: eddy sagas list [--state S] [--type T] [--store URL]\n"
            "       eddy sagas show ID [--store URL]\n\n"
            "list  saga instances, oldest first; --state filters by status\n"
            "      (running, completed, failed) or result (e.g. CANCELLED),\n"
            "      --type by saga type.\n"
            "show  one instance (every saga type having that id): status,\n"
            "      state JSON, commands sent and pending timeouts.\n"
            "  --store URL   the store (default: $EDDY_STORE, else %s)\n\n"
            "exit status: 0 success, 1 no such saga or store error, 2 usage "
            "error.\n",
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

static int print_row(const eddy_saga_info *info, void *user)
{
    int *rows = user;
    char updated[EDDY_TIME_STRLEN];
    fmt_time(info->updated_us, updated, sizeof updated);
    if ((*rows)++ == 0)
        printf("%-24s %-28s %-10s %-10s %4s  %s\n", "TYPE", "ID", "STATUS",
               "RESULT", "VER", "UPDATED");
    printf("%-24s %-28s %-10s %-10s %4" PRId64 "  %s\n", info->type,
           info->id, info->status, info->result[0] ? info->result : "-",
           info->version, updated);
    return 0;
}

static int print_one(const eddy_saga_info *info, void *user)
{
    (void)user;
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
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"state", required_argument, NULL, 'S'},
        {"type", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    if (argc < 2 || cli_is_help(argv[1]))
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
    const char *sub = argv[1];
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "s:S:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': url = optarg; break;
        case 'S': state = optarg; break;
        case 't': type = optarg; break;
        case 'h': return usage(stdout, 0);
        default: return usage(stderr, 2);
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
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddy_store_open(url, &ro, &err);
    if (!s)
        return cli_fail(1, "cannot open store %s: %s", url, err.message);
    int rows = 0, rc;
    if (list)
        rc = eddy_saga_list(s, type, state, print_row, &rows, &err);
    else
        rc = eddy_saga_get(s, argv[optind], print_one, NULL, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK)
        return cli_fail(1, "%s", err.message);
    if (list && rows == 0)
        printf("no sagas%s%s\n", state ? " with state " : "",
               state ? state : "");
    return 0;
}
