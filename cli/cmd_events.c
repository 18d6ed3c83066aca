/*
 * cli/cmd_events.c - `eddy events SUBCOMMAND`: the events command family,
 * and `eddy events check`.
 *
 * `events` only dispatches: each sub-subcommand is one line in
 * events_commands[] and one cmd_events_NAME function (declared in cli.h),
 * which may live in its own file.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"

static const struct cli_command events_commands[] = {
    {"check", "validate CloudEvents JSON (event, batch or JSON lines)",
     cmd_events_check},
    {"list", "list stored events, with filters; --follow: a live tail", cmd_events_list},
    {NULL, NULL, NULL},
};

static void events_usage(FILE *out)
{
    fprintf(out, "usage: eddy events SUBCOMMAND [ARGS...]\n"
                 "       eddy events SUBCOMMAND --help\n\n"
                 "subcommands:\n");
    for (const struct cli_command *c = events_commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
}

int cmd_events(int argc, char **argv)
{
    if (argc < 2) {
        events_usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1])) {
        events_usage(stdout);
        return 0;
    }
    for (const struct cli_command *c = events_commands; c->name; c++)
        if (strcmp(c->name, argv[1]) == 0)
            return c->run(argc - 1, argv + 1);
    return cli_fail(2, "events: unknown subcommand '%s' (see 'eddy events --help')",
                    argv[1]);
}

/* ---- eddy events check -------------------------------------------------- */

static void check_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy events check [FILE|-]\n\n"
            "Validates CloudEvents 1.0 JSON read from FILE (default: standard\n"
            "input): one event (an object), a batch (an array of events), or JSON\n"
            "lines (one event per non-empty line). Prints one line per event:\n"
            "  ok ID\n"
            "  error WHERE: MESSAGE   (WHERE: event, [INDEX] or line N)\n\n"
            "exit status: 0 all events valid, 1 some invalid, 2 usage error,\n"
            "unreadable or empty input.\n");
}

/* Checks one JSON value; prints the verdict. Returns true when valid. */
static bool check_value(const json_t *value, const char *where)
{
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_from_json(value, &err);
    if (!ev) {
        printf("error %s: %s\n", where, err.message);
        return false;
    }
    printf("ok %s\n", eddy_event_id(ev));
    eddy_event_unref(ev);
    return true;
}

/* JSON lines: every non-blank line is one event. */
static int check_lines(const char *text, size_t len, size_t *checked)
{
    int status = 0;
    size_t lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(eol - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++)
            blank = strchr(" \t\r", p[i]) != NULL;
        if (!blank) {
            char where[32];
            snprintf(where, sizeof where, "line %zu", lineno);
            eddy_error err;
            eddy_error_clear(&err);
            eddy_event *ev = eddy_event_decode(p, n, &err);
            if (ev) {
                printf("ok %s\n", eddy_event_id(ev));
                eddy_event_unref(ev);
            } else {
                printf("error %s: %s\n", where, err.message);
                status = 1;
            }
            (*checked)++;
        }
        p = eol + 1;
    }
    return status;
}

int cmd_events_check(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            check_usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_fail(2, "events check: unknown option '%s'", argv[i]);
        if (path)
            return cli_fail(2, "events check: one FILE at most (see --help)");
        path = argv[i];
    }

    size_t len = 0;
    char *text = cli_read_file(path, &len);
    if (!text)
        return 2;

    int status = 0;
    size_t checked = 0;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                              &jerr);
    if (root && json_is_array(root)) {
        for (size_t i = 0; i < json_array_size(root); i++) {
            char where[32];
            snprintf(where, sizeof where, "[%zu]", i);
            if (!check_value(json_array_get(root, i), where))
                status = 1;
        }
        checked = 1; /* an empty batch is a valid batch */
    } else if (root) {
        if (!check_value(root, "event"))
            status = 1;
        checked = 1;
    } else {
        size_t start = strspn(text, " \t\r\n");
        if (start < len && text[start] == '[') {
            /* An array that does not parse is a broken batch, not lines. */
            printf("error batch: JSON parse error at line %d, column %d: %s\n",
                   jerr.line, jerr.column, jerr.text);
            status = 1;
            checked = 1;
        } else {
            status = check_lines(text, len, &checked);
        }
    }
    json_decref(root);
    free(text);
    if (checked == 0)
        return cli_fail(2, "events check: no events in %s",
                        path && strcmp(path, "-") != 0 ? path : "standard input");
    return status;
}
