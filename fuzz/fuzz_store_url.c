/*
 * fuzz/fuzz_store_url.c - libFuzzer target: the store URL parser
 * (backend_for in src/store/store.c: "sqlite:PATH", "sqlite:///PATH", a
 * bare path, an unsupported scheme).
 *
 * The parser is file-local; this target includes store.c itself so that it
 * tests that very code without widening the library's interface (the rest
 * of the library comes from the static archive, whose copy of store.c is
 * then never linked). Nothing is opened. Property: a URL is either refused
 * with a message, or picks a backend and a location inside the URL.
 */
#include "../src/store/store.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    const char *location = NULL;
    eddy_error err = {0};
    const eddyi_backend *b = backend_for(url, &location, &err);
    if (b) {
        if (!location || location < url || location > url + strlen(url))
            abort();
    } else if (err.code != EDDY_EUNSUPPORTED || !err.message[0]) {
        abort();
    }
    free(url);
    return 0;
}
