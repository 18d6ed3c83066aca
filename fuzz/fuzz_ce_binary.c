/*
 * fuzz/fuzz_ce_binary.c - libFuzzer target: the CloudEvents binary-mode
 * decoder of the Kafka and NATS transports (src/transport/ce_binary.c):
 * headers and a payload from an untrusted message.
 *
 * Input layout: the first byte picks the dialect (bit 0: NATS, "ce-" names
 * and percent-encoded values; else Kafka, "ce_" names); then header lines
 * "name: value" up to an empty line; the rest is the payload. Header values
 * may hold any byte but "\n" (their length is passed, as on the wire).
 * Property: a decoded event encodes in the same dialect and decodes back to
 * an equal event.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/eddy.h"
#include "transport/ce_binary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_HEADERS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool nats = data[0] & 1;
    const char *prefix = nats ? "ce-" : "ce_";
    const char *types = nats ? "eddy-types" : "eddy_types";
    /* a NUL-terminated copy to cut into headers */
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    size_t len = size - 1;
    char *names[MAX_HEADERS], *values[MAX_HEADERS];
    size_t value_lens[MAX_HEADERS], n = 0, pos = 0;
    while (pos < len && n < MAX_HEADERS) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl || nl == buf + pos) { /* no line, or the empty line */
            if (nl)
                pos++;
            break;
        }
        *nl = '\0';
        char *colon = memchr(buf + pos, ':', (size_t)(nl - (buf + pos)));
        if (colon) {
            *colon = '\0';
            char *v = colon + 1;
            if (*v == ' ')
                v++;
            names[n] = buf + pos;
            values[n] = v;
            value_lens[n] = (size_t)(nl - v);
            n++;
        }
        pos = (size_t)(nl - buf) + 1;
    }
    const char *payload = pos < len ? buf + pos : NULL;
    size_t payload_len = pos < len ? len - pos : 0;
    char reason[EDDY_ERROR_MESSAGE_MAX + 128];
    eddy_event *ev = eddyi_ce_binary_decode((const char *const *)names,
                                            (const char *const *)values, value_lens, n, prefix,
                                            types, nats, payload, payload_len, reason,
                                            sizeof reason);
    if (ev) {
        eddyi_ce_binary enc;
        eddy_error err = {0};
        if (eddyi_ce_binary_encode(ev, prefix, types, nats, &enc, &err) != EDDY_OK)
            abort();
        size_t *lens = malloc((enc.count ? enc.count : 1) * sizeof *lens);
        if (!lens)
            abort();
        for (size_t i = 0; i < enc.count; i++)
            lens[i] = strlen(enc.values[i]);
        eddy_event *back = eddyi_ce_binary_decode(
            (const char *const *)enc.names, (const char *const *)enc.values, lens, enc.count,
            prefix, types, nats, enc.payload, enc.payload_len, reason, sizeof reason);
        if (!back || !eddy_event_equal(ev, back)) {
            fprintf(stderr, "binary round trip failed: %s\n", back ? "not equal" : reason);
            abort();
        }
        eddy_event_unref(back);
        free(lens);
        eddyi_ce_binary_clear(&enc);
        eddy_event_unref(ev);
    } else if (!reason[0]) {
        abort(); /* a refusal always says why */
    }
    free(buf);
    return 0;
}
