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
            "  error WHERE: MESSAGE   (WHERE: event, [INDEX], batch or line N)\n\n"
            "Events are decoded as every eddy input decodes them (eddy append, the\n"
            "transports): an event may hold at most 1 MiB (a batch 16 MiB), nested\n"
            "at most 256 levels, with no duplicated member and no NUL; input larger\n"
            "than 1 MiB that is not a batch is read as JSON lines, one line at a\n"
            "time.\n\n"
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

/* JSON lines: every non-blank line is one event. Returns 0, 1 (some
 * invalid) or 2 (unreadable); counts the events in *checked. */
static int check_lines(cli_input *in, size_t *checked)
{
    eddy_line_reader *r = cli_input_lines(in);
    if (!r)
        return 2;
    int status = 0;
    for (;;) {
        const char *p;
        size_t n;
        eddy_error err;
        eddy_error_clear(&err);
        int got = eddy_line_reader_next(r, &p, &n, &err);
        if (got == 0)
            break;
        if (got < 0 && err.code == EDDY_ETOOBIG) {
            /* "line N: longer than ...": the reader skips the rest of it */
            printf("error %s (EDDY_EVENT_MAX_BYTES)\n", err.message);
            status = 1;
            (*checked)++;
            continue;
        }
        if (got < 0)
            return cli_fail(2, "%s: %s", in->name, err.message);
        if (cli_line_blank(p, n))
            continue;
        eddy_event *ev = eddy_event_decode(p, n, &err);
        if (ev) {
            printf("ok %s\n", eddy_event_id(ev));
            eddy_event_unref(ev);
        } else {
            printf("error line %ld: %s\n", eddy_line_reader_line(r), err.message);
            status = 1;
        }
        (*checked)++;
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
    cli_input in;
    if (cli_input_open(&in, path) != 0)
        return 2;
    int status = 0;
    size_t checked = 0;
    json_t *root = NULL;
    eddy_error err;
    eddy_error_clear(&err);
    switch (cli_input_shape(&in, &root, &err)) {
    case CLI_INPUT_BATCH:
        checked = 1; /* an empty batch is a valid batch */
        if (!root) {
            printf("error batch: %s\n", err.message);
            status = 1;
            break;
        }
        for (size_t i = 0; i < json_array_size(root); i++) {
            char where[32];
            snprintf(where, sizeof where, "[%zu]", i);
            if (!check_value(json_array_get(root, i), where))
                status = 1;
        }
        break;
    case CLI_INPUT_VALUE:
        checked = 1;
        if (!check_value(root, "event"))
            status = 1;
        break;
    case CLI_INPUT_LINES:
        status = check_lines(&in, &checked);
        break;
    default:
        status = 2;
        break;
    }
    json_decref(root);
    const char *name = in.name;
    if (status != 2 && checked == 0)
        status = cli_fail(2, "events check: no events in %s", name);
    cli_input_close(&in);
    return status;
}
