/*
 * cli/cmd_dlq.c - `eddy dlq`: inspect and redrive the dead-letter store.
 *
 *   eddy dlq list    [--store URL] [--handler H] [--format table|jsonl|json]
 *   eddy dlq show    ID [--store URL] [--format table|jsonl|json]
 *   eddy dlq redrive ID|--all [--store URL] [--handler H]
 *   eddy dlq delete  ID [--store URL]
 *   eddy dlq purge   [--store URL] [--handler H]
 *
 * `retry` is the old name of `redrive`, kept as an alias: it does exactly
 * what `redrive` does; messages name the action as typed.
 *
 * Over the library's DLQ API (eddy/durable.h). `list` and `show` only read
 * (on the store's reader connections), so they open the store read-only and
 * work on read-only media; the others open it for writing, after a
 * read-only open made sure it exists: these commands never create a store
 * file. `redrive` only marks dead letters for redrive and says which handler
 * must run: the durable subscription of that handler redelivers them and
 * deletes each one only after its handler succeeded.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/durable.h"
#include "eddy/eddy.h"


static void dlq_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy dlq list    [--store URL] [--handler H] " CLI_FORMAT_SYNOPSIS "\n"
            "       eddy dlq show    ID [--store URL] " CLI_FORMAT_SYNOPSIS "\n"
            "       eddy dlq redrive ID|--all [--store URL] [--handler H]\n"
            "       eddy dlq delete  ID [--store URL]\n"
            "       eddy dlq purge   [--store URL] [--handler H]\n\n"
            "The dead letters of durable subscriptions: events whose handler failed\n"
            "its last attempt.\n"
            "  list     one line per dead letter, oldest first\n"
            "  show     every detail of dead letter ID, and its event\n"
            "  redrive  mark dead letter ID (or --all, of --handler H or of every\n"
            "           handler) for redrive. Nothing is redelivered until the durable\n"
            "           subscription of its handler runs: a running one redelivers it\n"
            "           within about 200 ms, one that starts later at its start; it\n"
            "           deletes it only after the handler succeeds\n"
            "  retry    the old name of redrive, still accepted (the same command)\n"
            "  delete   delete dead letter ID for good\n"
            "  purge    delete every dead letter of --handler H (default: of every\n"
            "           handler) for good\n"
            "  --store URL        the store (default: $EDDY_STORE, else %s)\n"
            "  --handler H        only the dead letters of handler (subscription) H;\n"
            "                     a handler the store knows neither from its\n"
            "                     subscriptions nor from its dead letters is an error\n"
            CLI_FORMAT_HELP
            "                     (jsonl and json rows: {\"id\", \"handler\", \"position\",\n"
            "                     \"status\", \"error\", \"error_code\", \"error_name\",\n"
            "                     \"attempts\", \"first_failure\", \"last_failure\", \"event\"})\n\n"
            "exit status: 0 success, 1 store error or no such dead letter,\n"
            "2 usage error (an unknown --handler too).\n",
            CLI_DEFAULT_STORE_URL);
}

static bool parse_id(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v <= 0)
        return false;
    *out = v;
    return true;
}

static const char *time_text(int64_t us, char *buf, size_t size)
{
    if (us <= 0 || !eddy_time_format(us, buf, size))
        snprintf(buf, size, "-");
    return buf;
}

/* Copies `s` into `buf` on one line, cut to `width` characters with "...". */
static const char *one_line(const char *s, char *buf, size_t width)
{
    size_t i = 0;
    for (; s && s[i] && i < width; i++)
        buf[i] = (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') ? ' ' : s[i];
    buf[i] = '\0';
    if (s && s[i] && width >= 3) {
        /* Back off to a UTF-8 character boundary before the ellipsis. */
        size_t j = width - 3;
        while (j > 0 && ((unsigned char)buf[j] & 0xC0) == 0x80)
            j--;
        memcpy(buf + j, "...", 4);
    }
    return buf;
}

/* ---- list ------------------------------------------------------------------- */

static json_t *dead_letter_json(const eddy_dead_letter *dl)
{
    json_t *o = json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:i, s:s, s:i, s:o, s:o}",
                          "id", (json_int_t)dl->id,
                          "handler", dl->handler,
                          "position", (json_int_t)dl->position,
                          "event_id", dl->event_id,
                          "event_type", dl->event_type,
                          "status", dl->status,
                          "error", dl->error ? dl->error : "",
                          "error_code", dl->error_code,
                          "error_name", eddy_errname(dl->error_code),
                          "attempts", dl->attempts,
                          "first_failure", cli_json_time(dl->first_failure_us),
                          "last_failure", cli_json_time(dl->last_failure_us));
    if (o && dl->event && json_object_set_new(o, "event", eddy_event_to_json(dl->event))) {
        json_decref(o);
        return NULL;
    }
    if (o && dl->event_error &&
        json_object_set_new(o, "event_error", json_string(dl->event_error))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int list_one(const eddy_dead_letter *dl, void *user)
{
    cli_writer *w = user;
    if (w->format != CLI_FORMAT_TABLE)
        return cli_writer_put(w, dead_letter_json(dl));
    char last[64], err[49];
    printf("%-6" PRId64 " %-20s %9" PRId64 " %8d  %-7s %-27s %-24s %s\n",
           dl->id, dl->handler, dl->position, dl->attempts, dl->status,
           time_text(dl->last_failure_us, last, sizeof last),
           dl->event ? dl->event_type : "(damaged)",
           one_line(dl->error, err, sizeof err - 1));
    w->count++;
    return 0;
}

static int dlq_list(eddy_store *s, const char *handler, cli_format format)
{
    cli_writer w;
    cli_writer_init(&w, "dlq list", format, stdout);
    if (format == CLI_FORMAT_TABLE)
        printf("%-6s %-20s %9s %8s  %-7s %-27s %-24s %s\n", "ID", "HANDLER",
               "POSITION", "ATTEMPTS", "STATUS", "LAST FAILURE", "TYPE", "ERROR");
    eddy_error err = {0};
    int rc = eddy_dlq_list(s, handler, list_one, &w, &err);
    if (rc != EDDY_OK)
        return err.message[0] ? cli_fail(1, "dlq list: %s", err.message) : 1;
    if (format != CLI_FORMAT_TABLE)
        return cli_writer_end(&w);
    fprintf(stderr, "%zu dead letter%s\n", w.count, w.count == 1 ? "" : "s");
    return 0;
}

static int collect_consumer(const eddy_consumer_info *info, void *user)
{
    cli_names_add(user, info->name);
    return 0;
}

/*
 * --handler H must name a consumer the store knows (eddy/status.h: one with
 * a checkpoint, retry rows, dead letters or a record of itself). An unknown
 * name is an error naming the known ones, where a filter would silently
 * match nothing. Returns 0, or the exit status after printing why.
 */
static int check_handler(eddy_store *s, const char *action, const char *handler)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "dlq %s", action);
    cli_names known = {0};
    eddy_error err = {0};
    int status = 0;
    if (eddy_status_consumers(s, collect_consumer, &known, &err) != EDDY_OK)
        status = cli_fail(1, "%s: %s", cmd, err.message);
    else if (known.oom)
        status = cli_fail(1, "%s: out of memory", cmd);
    else if (cli_find_name(handler, (const char *const *)known.v, known.n,
                           false) < 0)
        status = cli_fail_unknown(2, cmd, "handler", handler,
                                  (const char *const *)known.v, known.n);
    cli_names_free(&known);
    return status;
}

/* ---- show ------------------------------------------------------------------- */

static int dlq_show(eddy_store *s, int64_t id, cli_format format)
{
    eddy_dead_letter *dl = NULL;
    eddy_error err = {0};
    int rc = eddy_dlq_get(s, id, &dl, &err);
    if (rc == EDDY_ENOTFOUND)
        return cli_fail(1, "dlq show: no dead letter %" PRId64, id);
    if (rc != EDDY_OK)
        return cli_fail(1, "dlq show: %s", err.message);
    if (format != CLI_FORMAT_TABLE) {
        int status = cli_print_object("dlq show", format, dead_letter_json(dl));
        eddy_dead_letter_free(dl);
        return status;
    }
    char first[64], last[64];
    printf("id:             %" PRId64 "\n", dl->id);
    printf("handler:        %s\n", dl->handler);
    printf("status:         %s\n", dl->status);
    printf("position:       %" PRId64 "\n", dl->position);
    printf("attempts:       %d\n", dl->attempts);
    printf("error:          %s (%s)\n", dl->error ? dl->error : "",
           eddy_errname(dl->error_code));
    printf("first failure:  %s\n",
           time_text(dl->first_failure_us, first, sizeof first));
    printf("last failure:   %s\n", time_text(dl->last_failure_us, last, sizeof last));
    printf("event id:       %s\n", dl->event_id);
    printf("event type:     %s\n", dl->event_type);
    if (dl->event_error)
        printf("event:          (damaged) %s\n", dl->event_error);
    if (dl->event) {
        json_t *j = eddy_event_to_json(dl->event);
        char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        json_decref(j);
        if (!text) {
            eddy_dead_letter_free(dl);
            return cli_fail(1, "out of memory");
        }
        printf("event:\n%s\n", text);
        free(text);
    }
    eddy_dead_letter_free(dl);
    return 0;
}

/* ---- redrive ---------------------------------------------------------------- */

/* The handlers whose dead letters a `redrive --all` marks, each once. */
#define REDRIVE_HANDLERS_MAX 8

typedef struct redrive_ctx {
    char *names[REDRIVE_HANDLERS_MAX];
    size_t n;
    size_t more; /* handlers beyond REDRIVE_HANDLERS_MAX */
} redrive_ctx;

static int redrive_collect(const eddy_dead_letter *dl, void *user)
{
    redrive_ctx *c = user;
    if (strcmp(dl->status, EDDY_DLQ_DEAD) != 0)
        return 0; /* redrive --all marks only "dead" ones */
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->names[i], dl->handler) == 0)
            return 0;
    if (c->n == REDRIVE_HANDLERS_MAX) {
        c->more++;
        return 0;
    }
    c->names[c->n] = strdup(dl->handler);
    if (!c->names[c->n])
        return EDDY_ENOMEM;
    c->n++;
    return 0;
}

/* Marks dead letter `id` (or every "dead" one of `handler`, NULL: all, when
 * `all`) and says which handler must run to redeliver them: marking alone
 * redelivers nothing. `action` ("redrive", or its old name "retry") names
 * the command in messages. */
static int dlq_redrive(eddy_store *s, const char *action, bool all, int64_t id,
                       const char *handler)
{
    eddy_error err = {0};
    if (!all) {
        eddy_dead_letter *dl = NULL;
        int rc = eddy_dlq_get(s, id, &dl, &err);
        if (rc == EDDY_OK)
            rc = eddy_dlq_redrive(s, id, &err);
        if (rc == EDDY_ENOTFOUND)
            rc = cli_fail(1, "dlq %s: no dead letter %" PRId64, action, id);
        else if (rc != EDDY_OK)
            rc = cli_fail(1, "dlq %s: %s", action, err.message);
        else
            printf("marked dead letter %" PRId64 " for redrive: handler "
                   "\"%s\" redelivers it when it runs\n", id, dl->handler);
        eddy_dead_letter_free(dl);
        return rc;
    }
    redrive_ctx c = {.n = 0};
    size_t count = 0;
    int rc = eddy_dlq_list(s, handler, redrive_collect, &c, &err);
    if (rc == EDDY_ENOMEM)
        rc = cli_fail(1, "out of memory");
    else if (rc != EDDY_OK)
        rc = cli_fail(1, "dlq %s: %s", action, err.message);
    else if ((rc = eddy_dlq_redrive_all(s, handler, &count, &err)) != EDDY_OK)
        rc = cli_fail(1, "dlq %s: %s", action, err.message);
    if (rc == EDDY_OK) {
        printf("%zu dead letter%s marked for redrive", count,
               count == 1 ? "" : "s");
        if (count && c.n) {
            printf(": handler%s", c.n + c.more == 1 ? "" : "s");
            for (size_t i = 0; i < c.n; i++)
                printf("%s \"%s\"", i ? "," : "", c.names[i]);
            if (c.more)
                printf(" and %zu more", c.more);
            printf(" redeliver%s %s when %s\n",
                   c.n + c.more == 1 ? "s" : "", count == 1 ? "it" : "them",
                   c.n + c.more == 1 ? "it runs" : "they run");
        } else {
            printf("\n");
        }
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.names[i]);
    return rc;
}

/* ---- the subcommand ---------------------------------------------------------- */

int cmd_dlq(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"handler", required_argument, NULL, 'H'},
        {"format", required_argument, NULL, 'F'},
        {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        dlq_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    /* "retry": the old name of "redrive", the same command. */
    bool redrive = !strcmp(action, "redrive") || !strcmp(action, "retry");
    if (strcmp(action, "list") && strcmp(action, "show") && !redrive &&
        strcmp(action, "delete") && strcmp(action, "purge")) {
        cli_fail(2, "dlq: unknown action \"%s\"", action);
        dlq_usage(stderr);
        return 2;
    }
    const char *url = NULL, *handler = NULL;
    cli_format format = CLI_FORMAT_TABLE;
    bool format_given = false;
    bool all = false;
    int opt;
    optind = 0;
    opterr = 0;
    /* argv + 1: getopt sees the action as the program name. */
    while ((opt = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'H':
            if (!*optarg)
                return cli_fail(2, "dlq: --handler needs a name");
            handler = optarg;
            break;
        case 'F': {
            char cmd[32];
            snprintf(cmd, sizeof cmd, "dlq %s", action);
            if (cli_format_parse(cmd, optarg, &format) != 0)
                return 2;
            format_given = true;
            break;
        }
        case 'a': all = true; break;
        case 'h': dlq_usage(stdout); return 0;
        default:
            cli_fail(2, "dlq %s: unknown or incomplete option \"%s\"", action,
                     (argv + 1)[optind - 1]);
            return 2;
        }
    }
    char **rest = argv + 1 + optind;
    int nrest = argc - 1 - optind;
    bool wants_id = !strcmp(action, "show") || !strcmp(action, "delete") ||
                    (redrive && !all);
    int64_t id = 0;
    if (wants_id) {
        if (nrest != 1)
            return cli_fail(2, "dlq %s: expected one dead-letter ID%s", action,
                            redrive ? " or --all" : "");
        if (!parse_id(rest[0], &id))
            return cli_fail(2, "dlq %s: \"%s\" is not a dead-letter ID "
                            "(a positive integer)", action, rest[0]);
    } else if (nrest != 0) {
        return cli_fail(2, "dlq %s: unexpected argument \"%s\"", action, rest[0]);
    }
    if (all && !redrive)
        return cli_fail(2, "dlq %s: --all only applies to redrive", action);
    if (handler && (!strcmp(action, "show") || !strcmp(action, "delete") ||
                    (redrive && !all)))
        return cli_fail(2, "dlq %s: --handler does not apply to one ID", action);
    if (format_given && strcmp(action, "list") && strcmp(action, "show"))
        return cli_fail(2, "dlq %s: --format only applies to list and show", action);

    url = cli_store_url(url);
    bool reads = !strcmp(action, "list") || !strcmp(action, "show");
    eddy_store *s = cli_store_open_existing(url, !reads);
    if (!s)
        return 1;
    eddy_error err = {0};
    int status = 0, rc;
    size_t count = 0;
    if (handler && (status = check_handler(s, action, handler)) != 0) {
        /* an unknown handler: nothing listed, marked or deleted */
    } else if (!strcmp(action, "list")) {
        status = dlq_list(s, handler, format);
    } else if (!strcmp(action, "show")) {
        status = dlq_show(s, id, format);
    } else if (redrive) {
        status = dlq_redrive(s, action, all, id, handler);
    } else if (!strcmp(action, "delete")) {
        rc = eddy_dlq_delete(s, id, &err);
        if (rc == EDDY_ENOTFOUND)
            status = cli_fail(1, "dlq delete: no dead letter %" PRId64, id);
        else if (rc != EDDY_OK)
            status = cli_fail(1, "dlq delete: %s", err.message);
        else
            printf("dead letter %" PRId64 " deleted\n", id);
    } else { /* purge */
        rc = eddy_dlq_purge(s, handler, &count, &err);
        if (rc != EDDY_OK)
            status = cli_fail(1, "dlq purge: %s", err.message);
        else
            printf("%zu dead letter%s deleted\n", count, count == 1 ? "" : "s");
    }
    eddy_store_close(s);
    return status;
}
