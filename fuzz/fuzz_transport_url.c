/*
 * fuzz/fuzz_transport_url.c - libFuzzer target: the transport URL parser
 * (eddyi_url_parse in src/transport/url.c: scheme, authority, path, query
 * parameters with percent-decoding).
 *
 * The parser is internal (transport_impl.h); the static archive carries it.
 * Nothing connects. Properties: a parsed URL has a lower-case scheme, every
 * parameter key is non-empty, and eddyi_url_free leaves nothing behind
 * (LSan); a refusal says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    eddyi_url u;
    eddy_error err = {0};
    if (eddyi_url_parse(text, &u, &err) == EDDY_OK) {
        if (!u.scheme || !u.authority || !u.path)
            abort();
        for (const char *p = u.scheme; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                abort();
        for (size_t i = 0; i < u.nparams; i++)
            if (!u.keys[i] || !u.values[i])
                abort();
        eddyi_url_free(&u);
    } else if (!err.message[0]) {
        abort();
    }
    free(text);
    return 0;
}
