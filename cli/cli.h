/*
 * cli/cli.h - the eddy command's subcommands.
 *
 * Each subcommand is `int cmd_NAME(int argc, char **argv)` where argv[0] is
 * the subcommand's name; it returns the process exit status (0 success,
 * 1 failure, 2 usage error unless its help says otherwise), prints results to
 * stdout and errors to stderr, and answers --help itself.
 */
#ifndef EDDY_CLI_H
#define EDDY_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "eddy/eddy.h"

struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

/* The table of subcommands, in the order `eddy help` lists them. */
extern const struct cli_command cli_commands[];

/* Prints "eddy: <message>" to stderr (printf format) and returns `status`. */
int cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads all of `path` ("-" or NULL: standard input) into a malloc'd,
 * NUL-terminated buffer. Returns NULL with a message on stderr on failure. */
char *cli_read_file(const char *path, size_t *len);

/*
 * Event input of `events check` and `schema check` (cli/input.c): a file or
 * standard input holding one JSON value, a batch or JSON lines, read within
 * eddy's event limits (EDDY_EVENT_MAX_BYTES, EDDY_BATCH_MAX_BYTES) and
 * decoded by eddy_json_decode. Fields are private to input.c.
 */
typedef struct cli_input {
    int fd;
    bool close_fd;
    const char *name; /* "standard input" or the path, for messages */
    char *head;       /* what was read to decide the shape */
    size_t head_len, head_pos;
    bool eof;         /* the head is the whole input */
    eddy_line_reader *lines;
} cli_input;

enum { CLI_INPUT_BATCH, CLI_INPUT_VALUE, CLI_INPUT_LINES };

/* Opens `path` ("-" or NULL: standard input). Returns 0, or 2 with the
 * reason on stderr. Close with cli_input_close. */
int cli_input_open(cli_input *in, const char *path);

/*
 * Reads what deciding the shape needs and returns it: CLI_INPUT_BATCH (the
 * input starts with '['; *root is the array, or NULL with `err` when the
 * batch is broken or over a limit), CLI_INPUT_VALUE (the whole input, at most
 * EDDY_EVENT_MAX_BYTES, is one JSON value: *root), CLI_INPUT_LINES (read
 * them with cli_input_lines; `err` says why the whole input, when it was
 * small enough to try, is not one value), or -1 when the input cannot be
 * read (reason on stderr). *root is a new reference.
 */
int cli_input_shape(cli_input *in, json_t **root, eddy_error *err);

/* The JSON lines of the input, from its first byte (borrowed from `in`);
 * NULL when out of memory (reason on stderr). */
eddy_line_reader *cli_input_lines(cli_input *in);

void cli_input_close(cli_input *in);

/* True when the `n` bytes at `p` are only spaces, tabs and CRs. */
bool cli_line_blank(const char *p, size_t n);

/* The store URL a command uses when --store is not given. */
#define CLI_DEFAULT_STORE_URL "sqlite:eddy.db"

/* The store URL to use: `opt` (the --store value) if not NULL, else
 * $EDDY_STORE if set and non-empty, else CLI_DEFAULT_STORE_URL. */
const char *cli_store_url(const char *opt);

/* True when `arg` is "-h" or "--help". */
int cli_is_help(const char *arg);

/* `eddy demo`: the order system of examples/orders/ (cli/cmd_demo.c). */
int cmd_demo(int argc, char **argv);
/* `eddy service NAME`: one service of the order system (cli/cmd_service.c). */
int cmd_service(int argc, char **argv);
int cmd_events(int argc, char **argv);
/* `eddy schema validate` and the schema family (cli/cmd_schema.c). */
int cmd_schema(int argc, char **argv);
/* `eddy events check`: dispatched by cmd_events (cli/cmd_events.c). */
int cmd_events_check(int argc, char **argv);
/* `eddy events list`, `eddy streams`, `eddy store`, `eddy append`
 * (cli/cmd_store.c). */
int cmd_events_list(int argc, char **argv);
int cmd_streams(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_append(int argc, char **argv);
/* `eddy dlq` (cli/cmd_dlq.c) and `eddy stats` (cli/cmd_stats.c). */
int cmd_dlq(int argc, char **argv);
int cmd_stats(int argc, char **argv);
/* `eddy projections`, `eddy sagas`, `eddy trace`, `eddy graph`
 * (cli/cmd_projections.c, cmd_sagas.c, cmd_trace.c, cmd_graph.c). */
int cmd_projections(int argc, char **argv);
int cmd_sagas(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_graph(int argc, char **argv);

#endif
