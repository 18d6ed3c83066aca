/*
 * eddy/event.h - the event envelope and its CloudEvents 1.0 JSON form.
 *
 * An eddy_event is an immutable, reference-counted CloudEvents 1.0 event:
 *
 *   id              string, non-empty; a new event gets a UUIDv7 (time-ordered)
 *   type            string, non-empty ("order.placed")
 *   source          URI-reference, non-empty ("order-service")
 *   time            UTC, microsecond precision (optional when decoded)
 *   subject         string, optional; the stream / aggregate id and the
 *                   default partition key
 *   datacontenttype RFC 2046 media type, optional
 *   dataschema      absolute URI, optional
 *   data            any JSON value, optional (or data_base64 for binary)
 *   dataversion     extension: the schema version of data ("1.0")
 *   correlationid   extension: the id shared by every event of one flow
 *   causationid     extension: the id of the event that caused this one
 *   other extensions: lower-case [a-z0-9] names, string, boolean or integer
 *
 * Thread safety: an event never changes after it is built, so any number of
 * threads may read it at once. eddy_event_ref / eddy_event_unref are atomic.
 */
#ifndef EDDY_EVENT_H
#define EDDY_EVENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "eddy/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_event eddy_event;

/*
 * What a new event is built from. Plain data: zero-initialise, set what you
 * need. Every pointer is borrowed for the duration of eddy_event_new(): the
 * event copies the strings and the `extensions` values, and takes its own
 * reference to `data` (json_incref), so the caller keeps its references and
 * must not modify `data` afterwards. jansson's reference counts are not
 * atomic: do not json_incref an event's data from several threads at once
 * (copy it with json_deep_copy instead).
 */
typedef struct eddy_event_init {
    const char *type;            /* required */
    const char *source;          /* required */
    const char *id;              /* NULL: a new UUIDv7 */
    const char *subject;         /* NULL: none */
    int64_t time_us;             /* microseconds since the epoch; 0: now */
    const char *datacontenttype; /* NULL: "application/json" if data is set */
    const char *dataschema;      /* NULL: none */
    const char *dataversion;     /* NULL: none */
    json_t *data;                /* NULL: no data */
    const char *data_base64;     /* binary data, base64; exclusive with data */
    const char *correlation_id;  /* NULL: none */
    const char *causation_id;    /* NULL: none */
    json_t *extensions;          /* NULL or an object of extension attributes */
} eddy_event_init;

/*
 * Builds an event. Every attribute is checked as the CloudEvents decoder
 * checks it (non-empty id/type/source, valid extension names and values,
 * valid UTF-8). Returns a new event with one reference (release it with
 * eddy_event_unref), or NULL with `err` filled (EDDY_EINVAL naming the
 * attribute and the rule, or EDDY_ENOMEM); nothing is leaked on failure.
 * Thread-safe.
 */
eddy_event *eddy_event_new(const eddy_event_init *init, eddy_error *err);

/*
 * Shorthand for the common case: type, source, subject (may be NULL) and
 * data built with jansson's json_pack format (`fmt` NULL: no data).
 * Example: eddy_event_newf("order.placed", "orders", "o-1", &err,
 *                          "{s:s, s:f}", "order_id", "o-1", "amount", 9.5);
 * Returns a new event or NULL with `err` filled (a pack error is EDDY_EINVAL
 * with jansson's message). Thread-safe.
 */
eddy_event *eddy_event_newf(const char *type, const char *source,
                            const char *subject, eddy_error *err,
                            const char *fmt, ...);

/* Takes one more reference and returns `ev`. NULL gives NULL. Thread-safe. */
eddy_event *eddy_event_ref(eddy_event *ev);

/* Drops one reference; the last one frees the event. NULL does nothing. */
void eddy_event_unref(eddy_event *ev);

/*
 * Attribute accessors. Strings are borrowed: valid while the caller holds a
 * reference to the event. Optional attributes that are absent give NULL.
 */
const char *eddy_event_id(const eddy_event *ev);
const char *eddy_event_type(const eddy_event *ev);
const char *eddy_event_source(const eddy_event *ev);
const char *eddy_event_subject(const eddy_event *ev);
const char *eddy_event_datacontenttype(const eddy_event *ev);
const char *eddy_event_dataschema(const eddy_event *ev);
const char *eddy_event_dataversion(const eddy_event *ev);
const char *eddy_event_correlation_id(const eddy_event *ev);
const char *eddy_event_causation_id(const eddy_event *ev);
const char *eddy_event_data_base64(const eddy_event *ev);

/* Event time in microseconds since the Unix epoch (UTC); 0 if it has none. */
int64_t eddy_event_time(const eddy_event *ev);

/* The data as JSON, borrowed and read-only; NULL if the event has none. */
const json_t *eddy_event_data(const eddy_event *ev);

/*
 * The extension attributes other than dataversion, correlationid and
 * causationid, as a JSON object (borrowed, read-only, never NULL).
 */
const json_t *eddy_event_extensions(const eddy_event *ev);

/* One extension attribute by name (borrowed), or NULL. */
const json_t *eddy_event_extension(const eddy_event *ev, const char *name);

/*
 * Unpacks the event's data with jansson's json_unpack format. Strings it
 * stores are borrowed from the event. Returns EDDY_OK, or EDDY_EINVAL with
 * jansson's message in `err` when the data does not match `fmt` (or the event
 * has no data). Thread-safe.
 */
int eddy_event_unpack(const eddy_event *ev, eddy_error *err,
                      const char *fmt, ...);

/*
 * True when two events carry the same attributes and data (the id included).
 * Used for idempotent appends: same id, same content.
 */
bool eddy_event_equal(const eddy_event *a, const eddy_event *b);

/* ---- time and ids ------------------------------------------------------ */

/* Current UTC time in microseconds since the epoch. Thread-safe. */
int64_t eddy_now_us(void);

/*
 * Formats `time_us` as RFC 3339 UTC with microseconds
 * ("2018-04-05T17:31:00.000000Z") into `buf` (at least 28 bytes).
 * Returns `buf`. Thread-safe.
 */
#define EDDY_TIME_STRLEN 28
char *eddy_time_format(int64_t time_us, char *buf, size_t size);

/*
 * Parses an RFC 3339 timestamp with seconds and an offset ("Z" or +hh:mm);
 * fractions beyond microseconds are truncated. Returns EDDY_OK and sets
 * `*time_us`, or EDDY_EINVAL. Thread-safe.
 */
int eddy_time_parse(const char *text, int64_t *time_us);

/*
 * Writes a new UUIDv7 (RFC 9562: 48-bit millisecond time, then random bits,
 * monotonic within one process) as 36 lower-case characters and a NUL into
 * `out`. Thread-safe.
 */
#define EDDY_UUID_STRLEN 37
void eddy_uuid7(char out[EDDY_UUID_STRLEN]);

/*
 * Derives a stable id from `base` and `salt`: the SHA-1 of "base/salt" in a
 * namespace of eddy's own (RFC 9562). When `base` is a UUIDv7 (eddy's own
 * ids) the result is a UUIDv7 with the base's 48-bit time and 74 hash bits,
 * so derived ids sort next to their base (a store's id index grows at its
 * end); otherwise it is a name-based UUID, version 5. The same inputs give
 * the same id in every process, so a handler that names its events this
 * way makes a re-run idempotent (the store skips an identical event it
 * already has). Writes 36 characters and a NUL. Thread-safe; can't fail.
 */
void eddy_id_derive(const char *base, const char *salt,
                    char out[EDDY_UUID_STRLEN]);

/* ---- CloudEvents JSON format ------------------------------------------ */

/*
 * The event in CloudEvents 1.0 JSON form, as a new JSON object reference
 * (json_decref it). Returns NULL only when out of memory. Thread-safe.
 */
json_t *eddy_event_to_json(const eddy_event *ev);

/*
 * The event as compact CloudEvents JSON text, NUL-terminated, allocated with
 * malloc (free() it). `len`, if not NULL, receives the length. Returns NULL
 * only when out of memory. Thread-safe.
 */
char *eddy_event_encode(const eddy_event *ev, size_t *len);

/*
 * Builds an event from a CloudEvents 1.0 JSON object (borrowed), strictly:
 * specversion must be "1.0"; id, type, source required and non-empty;
 * optional attributes, when present, non-empty and well-formed (RFC 3339
 * time, RFC 2046 datacontenttype, absolute-URI dataschema); extension names
 * lower-case alphanumeric, values string, boolean or integer; not both data
 * and data_base64. A null attribute counts as absent.
 * Returns a new event or NULL with `err` filled: EDDY_EINVAL with a message
 * naming the attribute and the rule ("time: not an RFC 3339 timestamp").
 * Thread-safe.
 */
eddy_event *eddy_event_from_json(const json_t *obj, eddy_error *err);

/* As eddy_event_from_json, from JSON text of `len` bytes (EDDY_EPARSE for
 * malformed JSON, with jansson's line and column). */
eddy_event *eddy_event_decode(const char *text, size_t len, eddy_error *err);

/*
 * Decodes a CloudEvents JSON batch (an array of events, possibly empty).
 * All or nothing: on success `*events` is a malloc'd array of `*count` new
 * references (free with eddy_event_array_free); on failure nothing is
 * returned, `err` names the index of the offending element and why.
 * Thread-safe.
 */
int eddy_event_decode_batch(const char *text, size_t len, eddy_event ***events,
                            size_t *count, eddy_error *err);

/* Encodes `count` events as a CloudEvents JSON batch (malloc'd text). */
char *eddy_event_encode_batch(eddy_event *const *events, size_t count,
                              size_t *len);

/* Unrefs each of `count` events and frees the array. NULL does nothing. */
void eddy_event_array_free(eddy_event **events, size_t count);

/* ---- hooks ---------------------------------------------------------------- */

/*
 * Hooks a store or bus can run on every event: check before accepting
 * (return EDDY_OK, or an error with `err` filled to reject the event), and
 * transform after reading (take a borrowed event, return a NEW reference —
 * possibly `eddy_event_ref(ev)` itself — or NULL with `err` filled).
 * Schema validation and upcasting (eddy/schema.h) plug in through these.
 */
typedef int (*eddy_event_check_fn)(const eddy_event *ev, void *user,
                                   eddy_error *err);
typedef eddy_event *(*eddy_event_transform_fn)(eddy_event *ev, void *user,
                                               eddy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_EVENT_H */
