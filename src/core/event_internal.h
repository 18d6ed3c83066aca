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
    json_t *data;          /* NULL: none; never JSON null */
    json_t *extensions;    /* always an object, possibly empty */
};

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
