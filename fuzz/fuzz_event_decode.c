/*
 * fuzz/fuzz_event_decode.c - libFuzzer target: the CloudEvents JSON decoder,
 * single events and batches, through the entry points every input path
 * uses (eddy_event_decode, eddy_event_decode_batch, eddy_json_decode).
 *
 * Beyond "no crash, no leak, no undefined behaviour", it checks a property:
 * whatever decodes must encode, and decode back to an equal event (batches
 * likewise). A failure of the property aborts, so libFuzzer reports it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "eddy/eddy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const eddy_event *ev)
{
    size_t len = 0;
    char *text = eddy_event_encode(ev, &len);
    if (!text)
        abort();
    eddy_error err = {0};
    eddy_event *back = eddy_event_decode(text, len, &err);
    if (!back || !eddy_event_equal(ev, back)) {
        fprintf(stderr, "round trip failed: %s\n%s\n", back ? "not equal" : err.message, text);
        abort();
    }
    eddy_event_unref(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    eddy_error err = {0};
    eddy_event *ev = eddy_event_decode(text, size, &err);
    if (ev) {
        round_trip(ev);
        eddy_event_unref(ev);
    } else if (err.code == EDDY_OK || !err.message[0]) {
        abort(); /* a refusal always says why */
    }

    eddy_event **events = NULL;
    size_t count = 0;
    if (eddy_event_decode_batch(text, size, &events, &count, &err) == EDDY_OK) {
        size_t len = 0;
        char *again = eddy_event_encode_batch(events, count, &len);
        eddy_event **back = NULL;
        size_t nback = 0;
        if (!again || eddy_event_decode_batch(again, len, &back, &nback, &err) != EDDY_OK ||
            nback != count)
            abort();
        for (size_t i = 0; i < count; i++)
            if (!eddy_event_equal(events[i], back[i]))
                abort();
        eddy_event_array_free(back, nback);
        free(again);
        eddy_event_array_free(events, count);
    } else if (events || count) {
        abort(); /* all or nothing */
    }

    json_t *v = eddy_json_decode(text, size, &err);
    if (v) {
        /* the object decoder on any value: no crash, refusals explained */
        eddy_event *ev2 = eddy_event_from_json(v, &err);
        if (ev2)
            round_trip(ev2);
        eddy_event_unref(ev2);
        json_decref(v);
    }
    return 0;
}
