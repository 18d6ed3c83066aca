/*
 * fuzz/fuzz_schema.c - libFuzzer target: JSON Schema compile + validate.
 *
 * Input: a schema, then a NUL byte, then an instance (without a NUL: the
 * input is the schema and validates itself). Both are parsed as eddy
 * parses them (jansson, NUL escapes allowed in a schema). No remote
 * directory is given, so nothing outside the input is read. Validation
 * must end with OK, ESCHEMA or ELIMIT (the limits bound its time), and
 * validate and validate_all must agree on the verdict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/eddy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t slen = nul ? (size_t)(nul - text) : size;
    eddy_error err = {0};
    eddy_schema *s = eddy_schema_compile_text(text, slen, &err);
    if (!s) {
        if (!err.message[0])
            abort();
        return 0;
    }
    json_t *instance = nul ? json_loadb(nul + 1, size - slen - 1,
                                        JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)
                           : json_loadb(text, slen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (instance) {
        int rc = eddy_schema_validate(s, instance, &err);
        if (rc != EDDY_OK && rc != EDDY_ESCHEMA && rc != EDDY_ELIMIT)
            abort();
        size_t count = 0;
        int rc_all = eddy_schema_validate_all(s, instance, NULL, NULL, &count, &err);
        if (rc != EDDY_ELIMIT && rc_all != EDDY_ELIMIT &&
            (rc != rc_all || (rc == EDDY_ESCHEMA) != (count > 0)))
            abort();
        json_decref(instance);
    }
    eddy_schema_free(s);
    return 0;
}
