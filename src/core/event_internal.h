/*
 * src/core/event_internal.h - the layout of an eddy_event and the one
 * validating constructor that eddy_event_new and the CloudEvents decoder
 * share. Not public.
 */
#ifndef EDDY_SRC_CORE_EVENT_INTERNAL_H
#define EDDY_SRC_CORE_EVENT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "eddy/event.h"

struct eddy_event {
    atomic_uint refs;
    char *id;
    char *type;
    char *source;
    char *subject;         /* NULL: none */
    char *datacontenttype; /* NULL: none */
    char *dataschema;      /* NULL: none */
    char *dataversion;     /* NULL: none */
    char *correlation_id;  /* NULL: none */
    char *causation_id;    /* NULL: none */
    char *data_base64;     /* NULL: none */
    int64_t time_us;
    bool has_time;         /* a decoded event may have no time */
    /* NULL: none, or (data_raw set) not parsed yet; never JSON null. Read
     * through eddyi_event_data. */
    _Atomic(json_t *) data;
    /* An object, possibly empty; NULL only on a stored event that has none
     * until first asked for. Read through eddyi_event_extensions. */
    _Atomic(json_t *) extensions;
    /* A stored event (eddyi_event_decode_stored): the bytes it was decoded
     * from, which eddy_event_encode returns as they are, the span of its
     * data in them (parsed on first access), and the one allocation its
     * strings live in. */
    const char *raw;
    size_t raw_len;
    const char *data_raw;
    size_t data_raw_len;
    char *arena;
};

/* The event's data (parsed from the stored bytes on first access; any
 * thread), or NULL. */
json_t *eddyi_event_data(const eddy_event *ev);

/* The event's extensions object (created empty on first access for a
 * stored event without any; any thread). NULL only when out of memory. */
json_t *eddyi_event_extensions(const eddy_event *ev);

/*
 * Decodes an event the store holds, as eddy wrote it (eddy_event_encode,
 * validated when it was appended): one allocation for the event and its
 * strings, the data kept as bytes until asked for, the encoding kept for
 * re-encoding. Anything it does not expect (an extension attribute, an
 * escape it does not take, another shape) goes to the strict decoder
 * (eddy_event_decode), so the result is the same event either way. Returns
 * a new event or NULL with `err` (as eddy_event_decode).
 */
eddy_event *eddyi_event_decode_stored(const char *text, size_t len,
                                      eddy_error *err);

/* How eddyi_event_build treats absent attributes. */
typedef enum eddyi_event_mode {
    /* eddy_event_new: id NULL -> new UUIDv7, time 0 -> now, data without a
     * datacontenttype -> "application/json". */
    EDDYI_EVENT_NEW,
    /* decoding: id is required, time 0 means "no time" unless `has_time`,
     * nothing is defaulted. */
    EDDYI_EVENT_DECODED
} eddyi_event_mode;

/*
 * Validates `init` (every CloudEvents rule; the message names the attribute
 * and the rule) and builds the event. `has_time` is only read in
 * EDDYI_EVENT_DECODED mode (a decoded time of exactly the epoch is still a
 * time). Returns a new event with one reference, or NULL with `err` filled
 * (EDDY_EINVAL or EDDY_ENOMEM); nothing is leaked on failure.
 */
eddy_event *eddyi_event_build(const eddy_event_init *init,
                              eddyi_event_mode mode, bool has_time,
                              eddy_error *err);

/* True when `s` is a valid base64 string (RFC 4648, padded, may be ""). */
bool eddyi_base64_valid(const char *s);

/*
 * eddy_json_decode with another size limit (`max_bytes`: EDDY_EVENT_MAX_BYTES,
 * or EDDY_BATCH_MAX_BYTES for a batch, whose depth limit is one more and
 * whose elements are each held to EDDY_EVENT_MAX_BYTES); `what` names the
 * input in messages ("event", "batch"). jsontext.c.
 */
json_t *eddyi_json_decode(const char *text, size_t len, size_t max_bytes,
                          const char *what, eddy_error *err);

/* The nesting depth of `v` (a scalar 0, [] 1), computed no further than
 * limit + 1: bounded by `limit` whatever `v` is. jsontext.c. */
size_t eddyi_json_depth(const json_t *v, size_t limit);

#endif
