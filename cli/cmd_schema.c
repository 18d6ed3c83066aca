/*
 * cli/cmd_schema.c - `eddy schema SUBCOMMAND`: the schema command family,
 * and `eddy schema validate`.
 *
 * `schema` only dispatches: each sub-subcommand is one line in
 * schema_commands[] and one static function here (a later `eddy schema
 * check FILE --type T --version V`, validating events against a registry,
 * is one more line and one more function).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"

static int schema_validate(int argc, char **argv);

static const struct cli_command schema_commands[] = {
    {"validate", "validate a JSON document against a JSON Schema (draft-07)", schema_validate},
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
            "usage: eddy schema validate SCHEMA.json [DATA.json|-]\n\n"
            "Validates the JSON document DATA.json (default: standard input)\n"
            "against the JSON Schema (draft-07) in SCHEMA.json. Prints \"valid\",\n"
            "or every error, one per line:\n"
            "  /items/2/qty: type integer expected, got \"a\"\n"
            "Formats checked: email, date-time, date, time, uri, uuid; the\n"
            "schema's unsupported keywords are reported, never ignored.\n\n"
            "exit status: 0 valid, 1 invalid, 2 bad schema, unreadable or\n"
            "malformed input, usage error.\n");
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
    if (argc >= 2 && cli_is_help(argv[1])) {
        validate_usage(stdout);
        return 0;
    }
    if (argc < 2 || argc > 3) {
        validate_usage(stderr);
        return 2;
    }
    const char *schema_path = argv[1];
    const char *data_path = argc == 3 ? argv[2] : "-";
    int status = 2;
    eddy_schema *schema = NULL;
    json_t *data = NULL;
    char *text = NULL;
    eddy_error err;
    eddy_error_clear(&err);

    schema = eddy_schema_compile_file(schema_path, &err);
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
        cli_fail(2, "validation failed: %s", err.message);
    }
done:
    json_decref(data);
    free(text);
    eddy_schema_free(schema);
    return status;
}
