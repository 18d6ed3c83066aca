/*
 * cli/cmd_projections.c - `eddy projections list` and
 * `eddy projections rebuild NAME`.
 *
 * list shows what running systems recorded in the store (name, pattern,
 * mode, state, checkpoint, lag = head - checkpoint). rebuild can only
 * rebuild projections whose definition this program knows: the example
 * order domain registers its OrderReadModel (orders_register_projections);
 * an unknown name is an error naming it and listing the known ones.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "eddy/eddy.h"
#include "orders/orders.h"


static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: eddy projections list [--store URL] " CLI_FORMAT_SYNOPSIS "\n"
            "       eddy projections rebuild NAME [--store URL]\n\n"
            "list     the projections recorded in the store: name, mode, state\n"
            "         (running, stopped, rebuilding), checkpoint and lag (events\n"
            "         of the store after the checkpoint). jsonl and json rows:\n"
            "         {\"name\", \"mode\", \"state\", \"checkpoint\", \"head\", \"lag\",\n"
            "         \"pattern\", \"updated\"}.\n"
            "rebuild  clears the read model of projection NAME and replays the\n"
            "         whole store into it (stop the programs running it first).\n"
            "         Progress: a bar on a terminal, else a line every 10%%.\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            CLI_FORMAT_HELP "\n"
            "exit status: 0 success, 1 store error or unknown projection,\n"
            "2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

static int print_row(const eddy_projection_info *info, void *user)
{
    cli_writer *w = user;
    if (w->format != CLI_FORMAT_TABLE)
        return cli_writer_put(
            w, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:o}", "name", info->name,
                         "mode", info->mode, "state", info->state, "checkpoint",
                         (json_int_t)info->checkpoint, "head", (json_int_t)info->head,
                         "lag", (json_int_t)info->lag, "pattern", info->pattern,
                         "updated", cli_json_time(info->updated_us)));
    if (w->count++ == 0)
        printf("%-24s %-7s %-11s %12s %10s  %s\n", "NAME", "MODE", "STATE",
               "CHECKPOINT", "LAG", "PATTERN");
    printf("%-24s %-7s %-11s %12" PRId64 " %10" PRId64 "  %s\n", info->name,
           info->mode, info->state, info->checkpoint, info->lag,
           info->pattern);
    return 0;
}

struct progress {
    bool tty;
    int last_decile;
};

static void on_progress(int64_t done, int64_t total, void *user)
{
    struct progress *p = user;
    int pct = total > 0 ? (int)(done * 100 / total) : 100;
    if (p->tty) {
        char bar[21];
        int fill = pct / 5;
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[20] = '\0';
        fprintf(stderr, "\r[%s] %3d%% %" PRId64 "/%" PRId64 " events", bar,
                pct, done, total);
        fflush(stderr);
    } else if (pct / 10 > p->last_decile || done == 0) {
        p->last_decile = pct / 10;
        fprintf(stderr, "rebuild: %d%% (%" PRId64 "/%" PRId64 " events)\n",
                pct, done, total);
    }
}

int cmd_projections(int argc, char **argv)
{
    const char *url = NULL;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    if (argc < 2 || cli_is_help(argv[1]))
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
    const char *sub = argv[1];
    cli_format format = CLI_FORMAT_TABLE;
    bool format_given = false;
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            url = optarg;
            break;
        case 'F':
            if (cli_format_parse("projections", optarg, &format) != 0)
                return 2;
            format_given = true;
            break;
        case 'h':
            return usage(stdout, 0);
        default:
            return usage(stderr, 2);
        }
    }
    url = cli_store_url(url);
    eddy_error err = {0};
    if (strcmp(sub, "list") == 0) {
        if (optind != argc)
            return usage(stderr, 2);
        eddy_store *s = cli_store_open_existing(url, false);
        if (!s)
            return 1;
        cli_writer w;
        cli_writer_init(&w, "projections list", format, stdout);
        int rc = eddy_projection_list(s, print_row, &w, &err);
        eddy_store_close(s);
        if (rc != EDDY_OK)
            return err.message[0] ? cli_fail(1, "listing projections: %s", err.message) : 1;
        if (format != CLI_FORMAT_TABLE)
            return cli_writer_end(&w);
        if (w.count == 0)
            printf("no projections recorded in %s\n", url);
        return 0;
    }
    if (strcmp(sub, "rebuild") == 0) {
        if (format_given)
            return cli_fail(2, "projections rebuild: --format only applies to list");
        if (optind != argc - 1)
            return usage(stderr, 2);
        const char *name = argv[optind];
        orders_register_projections();
        const eddy_projection_def *def = eddy_projection_find_def(name);
        if (!def)
            return cli_fail(1, "unknown projection \"%s\": this eddy can "
                            "rebuild only the projections it knows (%s)",
                            name, ORDERS_PROJECTION);
        eddy_store *s = cli_store_open_existing(url, true);
        if (!s)
            return 1;
        struct progress p = {.tty = isatty(STDERR_FILENO) != 0,
                             .last_decile = -1};
        int rc = eddy_projection_rebuild(s, def, on_progress, &p, &err);
        if (p.tty)
            fputc('\n', stderr);
        int64_t head = 0;
        eddy_store_head(s, &head, NULL);
        eddy_store_close(s);
        if (rc != EDDY_OK)
            return cli_fail(1, "rebuilding %s: %s", name, err.message);
        printf("rebuilt %s: replayed %" PRId64 " events\n", name, head);
        return 0;
    }
    fprintf(stderr, "eddy projections: unknown subcommand \"%s\"\n", sub);
    return usage(stderr, 2);
}
