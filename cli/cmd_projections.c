/*
 * cli/cmd_projections.c - `eddy projections list` and
 * `eddy projections rebuild NAME`.
 *
 * list shows what running systems recorded in the store (name, pattern,
 * mode, state, owner, checkpoint, lag = head - checkpoint). rebuild can
 * only rebuild projections whose definition this program knows: the
 * example order domain registers its OrderReadModel
 * (orders_register_projections). A projection an application defined is
 * recorded in the store with its owner (the process that runs it or ran
 * it last) but not its code: rebuild says so, names that process and how
 * to rebuild it there. A name recorded nowhere is an error listing the
 * recorded and the known ones.
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
            "         (running, stopped, rebuilding), checkpoint, lag (events of\n"
            "         the store after the checkpoint) and owner (the process that\n"
            "         runs it, or ran it last: pid@host). jsonl and json rows:\n"
            "         {\"name\", \"mode\", \"state\", \"checkpoint\", \"head\", \"lag\",\n"
            "         \"pattern\", \"updated\", \"owner\"}.\n"
            "rebuild  clears the read model of projection NAME and replays the\n"
            "         whole store into it (stop the programs running it first).\n"
            "         Progress: a bar on a terminal, else a line every 10%%.\n"
            "         This eddy has the code of the demo's projections only\n"
            "         (" ORDERS_PROJECTION "); one that an application defines is\n"
            "         rebuilt by that application, with eddy_projection_rebuild():\n"
            "         for such a NAME, rebuild names the process that runs it.\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            CLI_FORMAT_HELP "\n"
            "exit status: 0 success, 1 store error, unknown projection or one\n"
            "this eddy has no code for,\n"
            "2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

static int print_row(const eddy_projection_info *info, void *user)
{
    cli_writer *w = user;
    if (w->format != CLI_FORMAT_TABLE)
        return cli_writer_put(
            w, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:o, s:s?}", "name", info->name,
                         "mode", info->mode, "state", info->state, "checkpoint",
                         (json_int_t)info->checkpoint, "head", (json_int_t)info->head,
                         "lag", (json_int_t)info->lag, "pattern", info->pattern,
                         "updated", cli_json_time(info->updated_us), "owner",
                         info->owner[0] ? info->owner : NULL));
    if (w->count++ == 0)
        printf("%-24s %-7s %-11s %12s %10s  %-24s %s\n", "NAME", "MODE", "STATE",
               "CHECKPOINT", "LAG", "OWNER", "PATTERN");
    printf("%-24s %-7s %-11s %12" PRId64 " %10" PRId64 "  %-24s %s\n", info->name,
           info->mode, info->state, info->checkpoint, info->lag,
           info->owner[0] ? info->owner : "-", info->pattern);
    return 0;
}

/* ---- a projection this eddy has no code for ----------------------------------- */

/* "3 s", "4 min", "2 h", "5 days": how long ago `us` was. */
static const char *age(int64_t us, char *buf, size_t size)
{
    int64_t s = (eddy_now_us() - us) / 1000000;
    if (s < 0)
        s = 0; /* another host's clock ahead of ours */
    if (s < 120)
        snprintf(buf, size, "%" PRId64 " s", s);
    else if (s < 2 * 3600)
        snprintf(buf, size, "%" PRId64 " min", s / 60);
    else if (s < 2 * 86400)
        snprintf(buf, size, "%" PRId64 " h", s / 3600);
    else
        snprintf(buf, size, "%" PRId64 " days", s / 86400);
    return buf;
}

struct recorded {
    const char *name;
    bool found;
    char state[16], owner[320];
    int64_t updated_us;
    cli_names names; /* every recorded name, for the message */
};

static int recorded_row(const eddy_projection_info *info, void *user)
{
    struct recorded *r = user;
    cli_names_add(&r->names, info->name);
    if (strcmp(info->name, r->name) == 0) {
        r->found = true;
        snprintf(r->state, sizeof r->state, "%s", info->state);
        snprintf(r->owner, sizeof r->owner, "%s", info->owner);
        r->updated_us = info->updated_us;
    }
    return 0;
}

/*
 * Explains why this eddy cannot rebuild projection `name`: the store
 * records it (an application defined it: name the process that runs it or
 * ran it last, and how to rebuild it there) or it does not (list what it
 * records). Returns 1 (or 1 after the store's own error).
 */
static int not_defined_here(const char *url, const char *name)
{
    eddy_store *s = cli_store_open_existing(url, false);
    if (!s)
        return 1;
    struct recorded r = {.name = name};
    eddy_error err = {0};
    int rc = eddy_projection_list(s, recorded_row, &r, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK) {
        cli_names_free(&r.names);
        return cli_fail(1, "projections rebuild: listing the projections of %s: %s", cli_url_shown(url),
                        err.message);
    }
    if (!r.found) {
        fprintf(stderr, "eddy: projections rebuild: unknown projection \"%s\": %s records ",
                name, cli_url_shown(url));
        if (r.names.n == 0)
            fputs("no projections", stderr);
        for (size_t i = 0; i < r.names.n; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", r.names.v[i]);
        fprintf(stderr, ", and this eddy can rebuild only %s\n", ORDERS_PROJECTION);
        cli_names_free(&r.names);
        return 1;
    }
    cli_names_free(&r.names);
    char when[32], who[340];
    bool live = strcmp(r.state, "stopped") != 0;
    if (r.owner[0])
        snprintf(who, sizeof who, "pid %s", r.owner);
    else
        snprintf(who, sizeof who, "owner unknown");
    age(r.updated_us, when, sizeof when);
    fprintf(stderr,
            "eddy: projections rebuild: projection \"%s\" is defined by the application "
            "that %s it (%s, %s%s %s ago); this eddy has only the code of %s\n",
            name, live ? "runs" : "ran", who, r.state, live ? ", last seen" : "", when,
            ORDERS_PROJECTION);
    fprintf(stderr,
            "eddy: rebuild it there with eddy_projection_rebuild(): stop the projection "
            "(eddy_projection_stop), rebuild, start it again; or stop that application and "
            "rebuild from any program that registers the definition "
            "(eddy_projection_register_def)\n");
    return 1;
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
            printf("no projections recorded in %s\n", cli_url_shown(url));
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
            return not_defined_here(url, name);
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
