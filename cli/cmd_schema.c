/*
 * cli/cmd_schema.c - `eddy schema SUBCOMMAND`: the schema command family,
 * and `eddy schema validate`.
 *
 * `schema` only dispatches: each sub-subcommand is one line in
 * schema_commands[] and one static function here. `eddy schema check FILE
 * --type T --version V` validates events (or bare data) against the schema
 * registered for (T, V) in a registry: the order system's, or one loaded
 * from a directory of TYPE@VERSION.json files.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"
#include "orders/orders.h"

static int schema_validate(int argc, char **argv);
static int schema_check(int argc, char **argv);

static const struct cli_command schema_commands[] = {
    {"validate", "validate a JSON document against a JSON Schema (draft-07)", schema_validate},
    {"check", "validate events (or data) against a registered schema (type, version)",
     schema_check},
    {NULL, NULL, NULL},
};

static void schema_usage(FILE *out)
{
    fprintf(out, "usage: eddy schema SUBCOMMAND [ARGS...]\n"
                 "       eddy schema SUBCOMMAND --help\n\n"
                 "subcommands:\n");
    for (const struct cli_command *c = schema_commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
}

int cmd_schema(int argc, char **argv)
{
    if (argc < 2) {
        schema_usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1])) {
        schema_usage(stdout);
        return 0;
    }
    for (const struct cli_command *c = schema_commands; c->name; c++)
        if (strcmp(c->name, argv[1]) == 0)
            return c->run(argc - 1, argv + 1);
    return cli_fail(2, "schema: unknown subcommand '%s' (see 'eddy schema --help')", argv[1]);
}

/* ---- eddy schema validate -------------------------------------------------- */

static void validate_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy schema validate SCHEMA.json [DATA.json|-]\n"
            "                            [--remote URI_PREFIX=DIR]...\n\n"
            "Validates the JSON document DATA.json (default: standard input)\n"
            "against the JSON Schema (draft-07) in SCHEMA.json. Prints \"valid\",\n"
            "or every error, one per line:\n"
            "  /items/2/qty: type integer expected, got \"a\"\n"
            "Formats checked: email, date-time, date, time, uri, uuid; the\n"
            "schema's unsupported keywords are reported, never ignored.\n\n"
            "$ref: relative references are served from SCHEMA.json's directory;\n"
            "  --remote URI_PREFIX=DIR   serves the schemas whose URIs start with\n"
            "                            URI_PREFIX from files under DIR (e.g.\n"
            "                            https://example.com/schemas/=./schemas);\n"
            "                            nothing is fetched over a network\n\n"
            "exit status: 0 valid, 1 invalid, 2 bad schema, unreadable or\n"
            "malformed input, usage error, or validation that had to stop at a\n"
            "limit (a regular expression that backtracks without end, $refs\n"
            "nested too deep): such a value is neither valid nor invalid.\n");
}

static int print_error(const char *path, const char *keyword, const char *message, void *user)
{
    (void)path;
    (void)keyword;
    (void)user;
    printf("%s\n", message);
    return 0;
}

static int schema_validate(int argc, char **argv)
{
    const char *schema_path = NULL, *data_path = NULL;
    eddy_schema_remote *remotes = calloc((size_t)argc, sizeof *remotes);
    size_t nremotes = 0;
    int status = 2;
    eddy_schema *schema = NULL;
    json_t *data = NULL;
    char *text = NULL;
    eddy_error err;
    eddy_error_clear(&err);
    if (!remotes)
        return cli_fail(2, "schema validate: out of memory");
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            validate_usage(stdout);
            status = 0;
            goto done;
        }
        if (strcmp(argv[i], "--remote") == 0 || strncmp(argv[i], "--remote=", 9) == 0) {
            const char *spec = argv[i][8] == '=' ? argv[i] + 9 : i + 1 < argc ? argv[++i] : NULL;
            char *eq = spec ? strchr(spec, '=') : NULL;
            if (!eq || eq == spec || !eq[1]) {
                cli_fail(2, "schema validate: --remote needs URI_PREFIX=DIR");
                goto done;
            }
            *eq = '\0'; /* argv is ours to cut */
            remotes[nremotes++] = (eddy_schema_remote){.prefix = spec, .dir = eq + 1};
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_fail(2, "schema validate: unknown option '%s' (see --help)", argv[i]);
            goto done;
        }
        if (!schema_path) {
            schema_path = argv[i];
        } else if (!data_path) {
            data_path = argv[i];
        } else {
            validate_usage(stderr);
            goto done;
        }
    }
    if (!schema_path) {
        validate_usage(stderr);
        goto done;
    }
    if (!data_path)
        data_path = "-";

    eddy_schema_options opts = {.remotes = remotes, .nremotes = nremotes};
    schema = eddy_schema_compile_file_with(schema_path, &opts, &err);
    if (!schema) {
        cli_fail(2, "%s: bad schema: %s", schema_path, err.message);
        goto done;
    }
    size_t len = 0;
    text = cli_read_file(data_path, &len);
    if (!text)
        goto done; /* cli_read_file printed why */
    json_error_t jerr;
    data = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!data) {
        cli_fail(2, "%s: line %d, column %d: %s",
                 strcmp(data_path, "-") == 0 ? "standard input" : data_path, jerr.line,
                 jerr.column, jerr.text);
        goto done;
    }
    size_t count = 0;
    int rc = eddy_schema_validate_all(schema, data, print_error, NULL, &count, &err);
    if (rc == EDDY_OK) {
        printf("valid\n");
        status = 0;
    } else if (rc == EDDY_ESCHEMA) {
        status = 1;
    } else {
        cli_fail(2, "cannot validate (%s): %s", eddy_errname(rc), err.message);
    }
done:
    json_decref(data);
    free(text);
    free(remotes);
    eddy_schema_free(schema);
    return status;
}

/* ---- eddy schema check ----------------------------------------------------- */

static void check_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy schema check [FILE|-] --type TYPE --version VERSION\n"
            "                         [--schemas DIR]\n\n"
            "Validates events read from FILE (default: standard input) against\n"
            "the JSON Schema registered for (TYPE, VERSION). FILE holds one\n"
            "CloudEvents 1.0 JSON event (an object with \"specversion\"), a batch\n"
            "(an array of events), JSON lines (one event per non-empty line), or\n"
            "bare data: any other JSON value (e.g. an object without\n"
            "\"specversion\"), validated directly as the data.\n\n"
            "Each event is first decoded as a CloudEvent (strictly, as `eddy events\n"
            "check` does); then its data is validated against the schema of\n"
            "(TYPE, VERSION), whatever the event's own type and dataversion: when\n"
            "they differ from TYPE / VERSION (or it has no dataversion), that is\n"
            "reported as a mismatch error. An event without data is validated as\n"
            "null; binary data (data_base64) cannot be validated and is an error.\n\n"
            "options:\n"
            "  --type TYPE        the event type whose schema is used (required)\n"
            "  --version VERSION  its dataversion, a dotted number: \"2.0\" (required)\n"
            "  --schemas DIR      load the schemas from DIR: every file named\n"
            "                     TYPE@VERSION.json (e.g. user.registered@2.0.json)\n"
            "                     is registered for (TYPE, VERSION); other *.json\n"
            "                     names are an error, files not ending in .json\n"
            "                     and hidden files are skipped. Default: the\n"
            "                     schemas of the order system that `eddy demo` runs.\n\n"
            "output, one line per event (per error for an invalid one):\n"
            "  ok ID\n"
            "  invalid ID: /email: format email expected, got \"x@\"\n"
            "  invalid ID: type mismatch: event is order.placed, checked against "
            "user.registered 2.0\n"
            "  invalid WHERE: MESSAGE   (not a CloudEvent; WHERE: event, [INDEX]\n"
            "                            or line N)\n"
            "ID is \"data\" for bare data.\n\n"
            "exit status: 0 all valid, 1 some invalid, 2 usage error, unreadable,\n"
            "malformed or empty input, bad schemas directory, or no schema\n"
            "registered for (TYPE, VERSION) (the message lists the type's\n"
            "registered versions).\n");
}

/* What one `schema check` run validates against, and how it went. */
typedef struct check_run {
    const eddy_schema *schema; /* borrowed from the registry */
    const char *type;          /* --type */
    const char *version;       /* --version */
    int status;                /* 0 all valid so far, 1 some invalid */
    bool failed;               /* validation itself failed (out of memory) */
} check_run;

/* eddy_schema_error_fn: one "invalid LABEL: MESSAGE" line per error. */
static int print_invalid(const char *path, const char *keyword, const char *message, void *user)
{
    (void)path;
    (void)keyword;
    printf("invalid %s: %s\n", (const char *)user, message);
    return 0;
}

/* Validates `data` (NULL: JSON null) against the run's schema, every error on
 * its own line prefixed by `label`. Returns true when valid. */
static bool check_data(check_run *run, const char *label, const json_t *data)
{
    json_t *null_data = NULL;
    if (!data)
        data = null_data = json_null();
    eddy_error err;
    eddy_error_clear(&err);
    int rc = eddy_schema_validate_all(run->schema, data, print_invalid, (void *)label, NULL,
                                      &err);
    json_decref(null_data);
    if (rc == EDDY_OK)
        return true;
    if (rc != EDDY_ESCHEMA) {
        /* e.g. EDDY_ELIMIT: neither valid nor invalid */
        cli_fail(2, "schema check: %s: cannot validate (%s): %s", label, eddy_errname(rc),
                 err.message);
        run->failed = true;
    }
    return false;
}

/* Checks one JSON value as a CloudEvent, then its data against the schema;
 * prints the verdict. `where` names the value when it is not a CloudEvent.
 * Updates run->status. */
static void check_event(check_run *run, const json_t *value, const char *where)
{
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event *ev = eddy_event_from_json(value, &err);
    if (!ev) {
        printf("invalid %s: %s\n", where, err.message);
        run->status = 1;
        return;
    }
    const char *id = eddy_event_id(ev);
    bool ok = true;
    if (strcmp(eddy_event_type(ev), run->type) != 0) {
        printf("invalid %s: type mismatch: event is %s, checked against %s %s\n", id,
               eddy_event_type(ev), run->type, run->version);
        ok = false;
    }
    const char *version = eddy_event_dataversion(ev);
    if (!version) {
        printf("invalid %s: dataversion mismatch: event has none, checked against %s %s\n", id,
               run->type, run->version);
        ok = false;
    } else if (eddy_schema_version_cmp(version, run->version) != 0) {
        printf("invalid %s: dataversion mismatch: event is %s, checked against %s %s\n", id,
               version, run->type, run->version);
        ok = false;
    }
    if (eddy_event_data_base64(ev)) {
        printf("invalid %s: binary data (data_base64) cannot be validated against a JSON "
               "schema\n",
               id);
        ok = false;
    } else if (!check_data(run, id, eddy_event_data(ev))) {
        ok = false;
    }
    if (ok)
        printf("ok %s\n", id);
    else
        run->status = 1;
    eddy_event_unref(ev);
}

/* JSON lines: every non-blank line is one event (or bare data). The first
 * one must be JSON: otherwise the input is not JSON lines but a malformed
 * document, a usage error (2), reported with `doc_err` (why the whole input
 * is not one value) when there is one. Updates run->status; returns 2 for a
 * malformed or unreadable input, else 0. */
static int check_lines(check_run *run, cli_input *in, const eddy_error *doc_err)
{
    eddy_line_reader *r = cli_input_lines(in);
    if (!r)
        return 2;
    bool first = true;
    while (!run->failed) {
        const char *p;
        size_t n;
        eddy_error err;
        eddy_error_clear(&err);
        int got = eddy_line_reader_next(r, &p, &n, &err);
        if (got == 0)
            break;
        if (got < 0 && err.code != EDDY_ETOOBIG)
            return cli_fail(2, "schema check: %s: %s", in->name, err.message);
        if (got > 0 && cli_line_blank(p, n))
            continue;
        char where[32];
        snprintf(where, sizeof where, "line %ld", eddy_line_reader_line(r));
        json_t *value = got > 0 ? eddy_json_decode(p, n, &err) : NULL;
        if (!value && first && doc_err->message[0]) /* say where the document breaks */
            return cli_fail(2, "schema check: %s: %s", in->name, doc_err->message);
        if (!value && first)
            return cli_fail(2, "schema check: %s: %s%s", in->name, err.message,
                            err.code == EDDY_ETOOBIG && got < 0 ? " (EDDY_EVENT_MAX_BYTES)" : "");
        first = false;
        if (value) {
            if (json_is_object(value) && json_object_get(value, "specversion")) {
                check_event(run, value, where);
            } else {
                /* bare data, validated directly */
                if (check_data(run, where, value))
                    printf("ok %s\n", where);
                else
                    run->status = 1;
            }
            json_decref(value);
        } else {
            printf("invalid %s: %s\n", where, err.message);
            run->status = 1;
        }
    }
    if (first && !run->failed)
        return cli_fail(2, "schema check: no events in %s", in->name);
    return 0;
}

/* Loads every DIR/TYPE@VERSION.json into a new registry. Returns NULL with
 * the reason on stderr. */
static eddy_schema_registry *load_schemas_dir(const char *dir)
{
    struct dirent **names = NULL;
    int count = scandir(dir, &names, NULL, alphasort);
    if (count < 0) {
        cli_fail(2, "schema check: --schemas %s: %s", dir, strerror(errno));
        return NULL;
    }
    eddy_schema_registry *reg = eddy_schema_registry_new();
    char *path = NULL;
    size_t loaded = 0;
    eddy_error err;
    eddy_error_clear(&err);
    if (!reg) {
        cli_fail(2, "schema check: out of memory");
        goto fail;
    }
    for (int i = 0; i < count; i++) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        if (name[0] == '.' || len < 5 || strcmp(name + len - 5, ".json") != 0)
            continue;
        size_t dlen = strlen(dir);
        free(path);
        path = malloc(dlen + 1 + len + 1);
        if (!path) {
            cli_fail(2, "schema check: out of memory");
            goto fail;
        }
        memcpy(path, dir, dlen);
        path[dlen] = '/';
        memcpy(path + dlen + 1, name, len + 1);
        const char *at = strrchr(name, '@');
        size_t stem = len - 5;
        if (!at || at == name || (size_t)(at - name) + 1 >= stem) {
            cli_fail(2, "schema check: %s: not named TYPE@VERSION.json", path);
            goto fail;
        }
        size_t tlen = (size_t)(at - name);
        char *type = strndup(name, tlen);
        char *version = strndup(at + 1, stem - tlen - 1);
        int rc = type && version ? eddy_schema_registry_add_file(reg, type, version, path, &err)
                                 : EDDY_ENOMEM;
        free(type);
        free(version);
        if (rc != EDDY_OK) {
            cli_fail(2, "schema check: %s: %s", path,
                     rc == EDDY_ENOMEM && !err.message[0] ? "out of memory" : err.message);
            goto fail;
        }
        loaded++;
    }
    if (loaded == 0) {
        cli_fail(2, "schema check: --schemas %s: no TYPE@VERSION.json schema files", dir);
        goto fail;
    }
    free(path);
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return reg;
fail:
    free(path);
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    eddy_schema_registry_free(reg);
    return NULL;
}

/* Explains on stderr that `reg` has no schema for (type, version), listing
 * the type's registered versions. The registry has no listing call, so this
 * asks eddy_schema_registry_validate_event about a probe event of (type,
 * version): it names the versions that exist, or passes when the type has
 * no schema at all. Returns 2. */
static int unknown_schema(const eddy_schema_registry *reg, const char *type,
                          const char *version, const char *origin)
{
    eddy_error err;
    eddy_error_clear(&err);
    eddy_event_init init = {.type = type, .source = "eddy-schema-check", .id = "probe",
                            .dataversion = version};
    eddy_event *probe = eddy_event_new(&init, &err);
    if (!probe)
        return cli_fail(2, "schema check: no schema registered for %s %s in %s (%s)", type,
                        version, origin, err.message);
    int rc = eddy_schema_registry_validate_event(reg, probe, &err);
    eddy_event_unref(probe);
    if (rc == EDDY_OK)
        return cli_fail(2, "schema check: type %s has no schema in %s", type, origin);
    return cli_fail(2, "schema check: %s (in %s)", err.message, origin);
}

/* Matches option `name` at argv[*i], as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *value (advancing *i past a separate value), 0 when
 * argv[*i] is another argument, -1 when the value is missing. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static int schema_check(int argc, char **argv)
{
    const char *path = NULL, *type = NULL, *version = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            check_usage(stdout);
            return 0;
        }
        static const char *const names[] = {"--type", "--version", "--schemas"};
        const char **slots[] = {&type, &version, &dir};
        int matched = 0;
        for (size_t k = 0; k < 3 && !matched; k++) {
            matched = option_value(argc, argv, &i, names[k], slots[k]);
            if (matched < 0)
                return cli_fail(2, "schema check: %s needs a value (see --help)", names[k]);
            if (matched && (*slots[k])[0] == '\0')
                return cli_fail(2, "schema check: %s must not be empty", names[k]);
        }
        if (matched)
            continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_fail(2, "schema check: unknown option '%s' (see --help)", argv[i]);
        if (path)
            return cli_fail(2, "schema check: one FILE at most (see --help)");
        path = argv[i];
    }
    if (!type || !version)
        return cli_fail(2, "schema check: --type and --version are required (see --help)");

    int status = 2;
    json_t *root = NULL;
    cli_input in;
    bool opened = false;
    eddy_error err;
    eddy_error_clear(&err);
    const char *origin = dir ? dir : "the order system's schemas";
    eddy_schema_registry *reg = dir ? load_schemas_dir(dir) : orders_schemas_new(&err);
    if (!reg) {
        if (!dir)
            cli_fail(2, "schema check: order system schemas: %s", err.message);
        goto done;
    }
    check_run run = {.schema = eddy_schema_registry_get(reg, type, version),
                     .type = type,
                     .version = version};
    if (!run.schema) {
        unknown_schema(reg, type, version, origin);
        goto done;
    }

    if (cli_input_open(&in, path) != 0)
        goto done;
    opened = true;
    int shape = cli_input_shape(&in, &root, &err);
    if (shape < 0)
        goto done;
    if (shape == CLI_INPUT_BATCH && !root) {
        cli_fail(2, "schema check: %s: %s", in.name, err.message);
        goto done;
    }
    if (shape == CLI_INPUT_BATCH) {
        for (size_t i = 0; i < json_array_size(root) && !run.failed; i++) {
            char where[32];
            snprintf(where, sizeof where, "[%zu]", i);
            check_event(&run, json_array_get(root, i), where);
        }
        /* an empty batch is a valid batch, with nothing to print */
    } else if (shape == CLI_INPUT_VALUE && json_is_object(root) &&
               json_object_get(root, "specversion")) {
        check_event(&run, root, "event");
    } else if (shape == CLI_INPUT_VALUE) {
        if (check_data(&run, "data", root))
            printf("ok data\n");
        else
            run.status = 1;
    } else if (check_lines(&run, &in, &err) != 0) {
        goto done;
    }
    if (run.failed)
        goto done;
    status = run.status;
done:
    json_decref(root);
    if (opened)
        cli_input_close(&in);
    eddy_schema_registry_free(reg);
    return status;
}
