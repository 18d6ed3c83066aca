/*
 * cli/output.c - the output grammar shared by the listing commands:
 * --format table|jsonl|json, the rows of jsonl and json, and the messages
 * for a value that is not one of the valid ones.
 *
 * json rows are streamed (one row a line inside "[" and "]"), so a listing
 * of a large store never holds all its rows in memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "eddy/eddy.h"

static const char *const format_names[] = {"table", "jsonl", "json"};

int cli_format_parse(const char *cmd, const char *text, cli_format *out)
{
    int i = cli_find_name(text, format_names, 3, false);
    if (i < 0)
        return cli_fail_unknown(2, cmd, "format", text, format_names, 3);
    *out = (cli_format)i;
    return 0;
}

int cli_find_name(const char *text, const char *const *names, size_t count, bool nocase)
{
    for (size_t i = 0; text && i < count; i++)
        if (names[i] && (nocase ? strcasecmp(text, names[i]) : strcmp(text, names[i])) == 0)
            return (int)i;
    return -1;
}

int cli_fail_unknown(int status, const char *cmd, const char *what, const char *value,
                     const char *const *valid, size_t count)
{
    fprintf(stderr, "eddy: %s: unknown %s \"%s\" (", cmd, what, value);
    if (count == 0)
        fputs("there are none", stderr);
    else
        fputs("valid: ", stderr);
    for (size_t i = 0; i < count; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", valid[i]);
    fputs(")\n", stderr);
    return status;
}

void cli_names_add(cli_names *ns, const char *name)
{
    if (!name || !*name || cli_find_name(name, (const char *const *)ns->v, ns->n, false) >= 0)
        return;
    char **bigger = realloc(ns->v, (ns->n + 1) * sizeof *bigger);
    if (bigger)
        ns->v = bigger;
    char *copy = bigger ? strdup(name) : NULL;
    if (!copy) {
        ns->oom = true;
        return;
    }
    ns->v[ns->n++] = copy;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cli_names_sort(cli_names *ns)
{
    if (ns->n > 1)
        qsort(ns->v, ns->n, sizeof *ns->v, cmp_names);
}

void cli_names_free(cli_names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
    *ns = (cli_names){0};
}

void cli_writer_init(cli_writer *w, const char *cmd, cli_format format, FILE *out)
{
    *w = (cli_writer){.format = format, .cmd = cmd, .out = out};
}

static int write_failed(const char *cmd)
{
    return cli_fail(1, "%s: cannot write: %s", cmd, strerror(errno));
}

int cli_writer_put(cli_writer *w, json_t *row)
{
    if (w->format == CLI_FORMAT_TABLE) {
        json_decref(row);
        return cli_fail(1, "%s: internal error: a JSON row in table format", w->cmd);
    }
    char *text = row ? json_dumps(row, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(row);
    if (!text)
        return cli_fail(1, "%s: out of memory", w->cmd);
    const char *sep = "";
    if (w->format == CLI_FORMAT_JSON)
        sep = w->count == 0 ? "[\n" : ",\n";
    int rc = fprintf(w->out, "%s%s%s", sep, text, w->format == CLI_FORMAT_JSONL ? "\n" : "");
    free(text);
    if (rc < 0 || (w->flush_each && fflush(w->out) != 0))
        return write_failed(w->cmd);
    w->count++;
    return 0;
}

int cli_writer_end(cli_writer *w)
{
    if (w->format == CLI_FORMAT_JSON &&
        fputs(w->count == 0 ? "[]\n" : "\n]\n", w->out) == EOF)
        return write_failed(w->cmd);
    if (fflush(w->out) != 0)
        return write_failed(w->cmd);
    return 0;
}

int cli_print_object(const char *cmd, cli_format format, json_t *obj)
{
    size_t flags = format == CLI_FORMAT_JSON ? JSON_INDENT(2) : JSON_COMPACT;
    char *text = obj ? json_dumps(obj, flags) : NULL;
    json_decref(obj);
    if (!text)
        return cli_fail(1, "%s: out of memory", cmd);
    int rc = fprintf(stdout, "%s\n", text);
    free(text);
    if (rc < 0 || fflush(stdout) != 0)
        return write_failed(cmd);
    return 0;
}

json_t *cli_json_time(int64_t us)
{
    char buf[EDDY_TIME_STRLEN];
    if (us <= 0 || !eddy_time_format(us, buf, sizeof buf))
        return json_null();
    return json_string(buf);
}

json_t *cli_json_record(const eddy_record *rec)
{
    json_t *event = eddy_event_to_json(rec->event);
    if (!event)
        return NULL;
    return json_pack("{s:I, s:s, s:I, s:o, s:o}", "position", (json_int_t)rec->position,
                     "stream", rec->stream_id, "stream_version",
                     (json_int_t)rec->stream_version, "recorded",
                     cli_json_time(rec->recorded_us), "event", event);
}
