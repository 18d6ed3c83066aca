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
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

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

/* Opens the EXISTING store at `url`, read-only unless `write` (a reading
 * command then works on a store it cannot write): a read-only open first
 * refuses a missing or foreign file, so a mistyped --store never creates
 * one. Returns the store, or NULL after printing "eddy: cannot open store
 * URL: REASON". */
eddy_store *cli_store_open_existing(const char *url, bool write);

/*
 * `url` as it may be printed: every secret replaced by "***"
 * (eddy_url_redact: a PostgreSQL password, a password= or password_file
 * value stays hidden; the file's path and an environment variable's name
 * show). A store or transport URL never reaches the screen, an error or a
 * log line any other way. Returns one of 4 rotating static buffers (valid
 * until the 4th next call); main thread only.
 */
const char *cli_url_shown(const char *url);

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
/* `eddy events list` (cli/cmd_events_list.c); `eddy streams`, `eddy store`,
 * `eddy append` (cli/cmd_store.c). */
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
/* `eddy publish`, `eddy subscribe`, `eddy transport info`
 * (cli/cmd_transport.c). */
int cmd_publish(int argc, char **argv);
int cmd_subscribe(int argc, char **argv);
int cmd_transport(int argc, char **argv);

/* ---- output formats (cli/output.c) ------------------------------------------
 *
 * One grammar for every listing command: --format table|jsonl|json, table by
 * default. table is for a person (aligned columns, a header; the command
 * prints it itself); jsonl is one compact JSON object per line, one line per
 * row; json is one JSON document: for a listing the array of exactly the
 * objects jsonl prints, for a single thing (store info, dlq show) the object,
 * indented. eddy(1) describes the grammar under OUTPUT FORMATS.
 */
typedef enum cli_format {
    CLI_FORMAT_TABLE = 0,
    CLI_FORMAT_JSONL = 1,
    CLI_FORMAT_JSON = 2
} cli_format;

/* The usage synopsis and the --help lines of --format, the same everywhere. */
#define CLI_FORMAT_SYNOPSIS "[--format table|jsonl|json]"
#define CLI_FORMAT_HELP                                                        \
    "  --format FORMAT    table (default), jsonl (a JSON object per line) or\n" \
    "                     json (one JSON document); see eddy(1)\n"

/* Parses a --format value (exact, lower case) into `*out`. Returns 0, or 2
 * after printing "eddy: CMD: unknown format "xml" (valid: table, jsonl,
 * json)". */
int cli_format_parse(const char *cmd, const char *text, cli_format *out);

/* The index of `text` in `names` (`count` entries), compared
 * case-insensitively when `nocase`; -1 when absent. */
int cli_find_name(const char *text, const char *const *names, size_t count, bool nocase);

/* Prints "eddy: CMD: unknown WHAT "VALUE" (valid: A, B, C)" (or "(there are
 * none)" when `count` is 0) and returns `status`. */
int cli_fail_unknown(int status, const char *cmd, const char *what, const char *value,
                     const char *const *valid, size_t count);

/* A set of distinct names, in the order added: the valid values that a
 * "CMD: unknown WHAT" message lists when they come from the store. */
typedef struct cli_names {
    char **v;
    size_t n;
    bool oom; /* a name could not be added */
} cli_names;

/* Adds a copy of `name` unless it is NULL, "" or already there; on
 * out-of-memory sets `oom` instead. */
void cli_names_add(cli_names *ns, const char *name);
/* Sorts the names (strcmp order). */
void cli_names_sort(cli_names *ns);
/* Frees the names; the set is empty again. */
void cli_names_free(cli_names *ns);

/* Writes the rows of a listing as jsonl or json (table rows are printed by the
 * command). Initialise with cli_writer_init, put each row, then end. */
typedef struct cli_writer {
    cli_format format;
    const char *cmd;  /* names the command in error messages */
    FILE *out;
    bool flush_each;  /* flush after every row (live output) */
    size_t count;     /* rows written */
} cli_writer;

void cli_writer_init(cli_writer *w, const char *cmd, cli_format format, FILE *out);

/* Writes one row, taking the reference `row` (also on failure; NULL is taken
 * as out of memory). Returns 0, or 1 after printing why (out of memory, a
 * write error). Must not be called in table format. */
int cli_writer_put(cli_writer *w, json_t *row);

/* Ends the listing (json: closes the array, "[]" when empty) and flushes.
 * Returns 0, or 1 after printing "cannot write". */
int cli_writer_end(cli_writer *w);

/* Prints one object in jsonl (a compact line) or json (indented) format,
 * taking the reference `obj` (NULL: out of memory), and flushes. Returns 0
 * or 1 after printing why. */
int cli_print_object(const char *cmd, cli_format format, json_t *obj);

/* A time as JSON: an RFC 3339 string, or null when `us` <= 0. New
 * reference (NULL only when out of memory). */
json_t *cli_json_time(int64_t us);

/* A stored event as the JSON row of `events list` and `streams show`:
 *   {"position": P, "stream": "S", "stream_version": V,
 *    "recorded": "TIME", "event": {CloudEvents JSON}}
 * so that a script can resume with --from P+1. New reference or NULL (out of
 * memory). */
json_t *cli_json_record(const eddy_record *rec);

/* `eddy serve`: the store over HTTP (cli/cmd_serve.c). */
int cmd_serve(int argc, char **argv);

#endif
