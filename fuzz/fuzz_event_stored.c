/*
 * fuzz/fuzz_event_stored.c - libFuzzer target: the fast decoder of stored
 * events (src/core/event_stored.c) against the strict one.
 *
 * The store reads every event through eddyi_event_decode_stored, which scans
 * the envelope itself and hands what it does not expect to the strict
 * decoder. The properties, for any input:
 *   - what the strict decoder takes, the fast one decodes to an equal
 *     event, whose data (parsed lazily) equals the strict one's;
 *   - when both refuse, they refuse with the same code;
 *   - the fast decoder may take what the strict one refuses (it does not
 *     re-check the rules the append checked: a String's characters, a
 *     URI's form, the grammar inside data), but then its attributes are
 *     valid UTF-8 C strings and it re-encodes to exactly the input bytes,
 *     so nothing it passes on differs from what is stored;
 *   - an event the fast path took itself re-encodes to its input bytes.
 * A broken property aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event_internal.h"
#include "core/internal.h"
#include "eddy/eddy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void disagree(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "stored decoder: %s on %.*s\n", what, (int)(size > 400 ? 400 : size),
            (const char *)data);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    eddy_error e1 = {0}, e2 = {0};
    eddy_event *strict = eddy_event_decode(text, size, &e1);
    eddy_event *fast = eddyi_event_decode_stored(text, size, &e2);
    if (!strict) {
        if (!fast && e1.code != e2.code)
            disagree("refused with another code", data, size);
        if (fast) {
            const char *attrs[] = {eddy_event_id(fast), eddy_event_type(fast),
                                   eddy_event_source(fast), eddy_event_subject(fast),
                                   eddy_event_datacontenttype(fast),
                                   eddy_event_dataschema(fast),
                                   eddy_event_dataversion(fast),
                                   eddy_event_correlation_id(fast),
                                   eddy_event_causation_id(fast)};
            for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++)
                if (attrs[i] && !eddyi_utf8_valid(attrs[i], strlen(attrs[i])))
                    disagree("took an attribute that is not UTF-8", data, size);
            size_t len = 0;
            char *again = eddy_event_encode(fast, &len);
            if (!again || len != size || memcmp(again, text, size) != 0)
                disagree("took a refused text and re-encoded other bytes", data, size);
            free(again);
            (void)eddy_event_data(fast); /* parses, or reads as no data */
        }
    } else {
        if (!fast)
            disagree("refused what the strict decoder took", data, size);
        if (!eddy_event_equal(strict, fast))
            disagree("decoded another event", data, size);
        size_t len = 0;
        char *again = eddy_event_encode(fast, &len);
        if (!again)
            abort();
        if (fast->raw && (len != size || memcmp(again, text, size) != 0))
            disagree("re-encoded other bytes", data, size);
        free(again);
        /* Data is parsed on first access: it must equal the strict one's. */
        const json_t *d1 = eddy_event_data(strict), *d2 = eddy_event_data(fast);
        if ((d1 == NULL) != (d2 == NULL) || (d1 && !json_equal(d1, d2)))
            disagree("parsed other data", data, size);
    }
    eddy_event_unref(strict);
    eddy_event_unref(fast);
    return 0;
}
