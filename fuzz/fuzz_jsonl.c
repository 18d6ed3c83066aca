/*
 * fuzz/fuzz_jsonl.c - libFuzzer target: the JSON-lines input of `eddy
 * append` (and `events check`): eddy_line_reader over a stream delivered in
 * reads of varying sizes, with a line limit chosen by the input, each line
 * decoded as `eddy append` decodes it (eddy_json_decode; a CloudEvents
 * object, or bare data wrapped in a new event).
 *
 * Input: byte 0 picks the read size (1..32, or 0: all at once), byte 1 the
 * line limit (0: EDDY_EVENT_MAX_BYTES, else 1..255), the rest is the stream.
 * Properties: lines come back in order, each at most the limit, their bytes
 * exactly the stream's with "\n" (and a "\r" before it) removed; no read
 * asks for zero bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/eddy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct stream {
    const uint8_t *p;
    size_t len, pos, chunk;
};

static long stream_read(void *user, void *buf, size_t want)
{
    struct stream *s = user;
    if (want == 0)
        abort();
    size_t n = s->len - s->pos;
    if (s->chunk && n > s->chunk)
        n = s->chunk;
    if (n > want)
        n = want;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return (long)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct stream s = {.p = data + 2, .len = size - 2, .chunk = data[0] % 33};
    size_t limit = data[1];
    eddy_line_reader *r = eddy_line_reader_new(stream_read, &s, limit);
    if (!r)
        return 0;
    size_t max = limit ? limit : EDDY_EVENT_MAX_BYTES;
    const uint8_t *expect = s.p; /* where the next line starts in the stream */
    const uint8_t *end = s.p + s.len;
    for (;;) {
        const char *line;
        size_t len;
        eddy_error err = {0};
        int got = eddy_line_reader_next(r, &line, &len, &err);
        if (got == 0)
            break;
        /* the stream's next line, as the reader should cut it */
        const uint8_t *nl = memchr(expect, '\n', (size_t)(end - expect));
        size_t raw = nl ? (size_t)(nl - expect) : (size_t)(end - expect);
        size_t want_len = raw > 0 && expect[raw - 1] == '\r' ? raw - 1 : raw;
        if (got < 0) {
            if (err.code != EDDY_ETOOBIG || want_len <= max)
                abort();
        } else {
            if (len != want_len || len > max || memcmp(line, expect, len) != 0 ||
                line[len] != '\0')
                abort();
            json_t *v = eddy_json_decode(line, len, &err);
            if (v) {
                eddy_event *ev = NULL;
                if (json_is_object(v) && json_object_get(v, "specversion")) {
                    ev = eddy_event_from_json(v, &err);
                } else {
                    eddy_event_init init = {.type = "fuzz", .source = "fuzz", .subject = "s",
                                            .data = v};
                    ev = eddy_event_new(&init, &err);
                }
                if (ev) {
                    char *text = eddy_event_encode(ev, NULL);
                    if (!text)
                        abort();
                    free(text);
                    eddy_event_unref(ev);
                }
                json_decref(v);
            }
        }
        expect = nl ? nl + 1 : end;
    }
    if (expect != end)
        abort(); /* a line went missing */
    eddy_line_reader_free(r);
    return 0;
}
