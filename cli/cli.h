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

#include <stdio.h>

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

/* The store URL a command uses when --store is not given. */
#define CLI_DEFAULT_STORE_URL "sqlite:eddy.db"

/* The store URL to use: `opt` (the --store value) if not NULL, else
 * $EDDY_STORE if set and non-empty, else CLI_DEFAULT_STORE_URL. */
const char *cli_store_url(const char *opt);

/*
 * Commands built on the store's state operations (checkpoints, inbox,
 * retries, dead letters, outbox, sagas, projections, the subscription
 * registry) cannot run on a PostgreSQL store yet. Returns 0 for any other
 * URL; for a postgres:// or postgresql:// one, prints what is missing for
 * `command` and returns 2.
 */
int cli_store_state_check(const char *url, const char *command);

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
