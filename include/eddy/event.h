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
 * valid UTF-8 without control characters). Returns a new event with one
 * reference (release it with eddy_event_unref), or NULL with `err` filled
 * (EDDY_EINVAL naming the attribute and the rule, EDDY_ETOOBIG for data
 * nested deeper than EDDY_EVENT_MAX_DEPTH allows, or EDDY_ENOMEM); nothing
 * is leaked on failure.
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

/* ---- limits of event input ------------------------------------------------ */

/*
 * The limits every path that reads events applies, the same everywhere
 * (eddy_event_decode, eddy_event_decode_batch, eddy_json_decode and the
 * eddy_line_reader; hence `eddy events check`, `eddy append`, the transports
 * and HTTP), each named in the error that enforces it:
 *
 *   EDDY_EVENT_MAX_BYTES  the JSON text of one event (1 MiB);
 *   EDDY_BATCH_MAX_BYTES  the JSON text of one batch (16 MiB), each of its
 *                         events still at most EDDY_EVENT_MAX_BYTES;
 *   EDDY_EVENT_MAX_DEPTH  nesting of arrays and objects in an event's JSON
 *                         text, the event object itself being level 1 (so
 *                         its data may nest 255 levels). Far below the 2000
 *                         levels SQLite's JSON functions accept, so a stored
 *                         event is always readable by them; eddy_event_new
 *                         applies it to data too.
 */
#define EDDY_EVENT_MAX_BYTES ((size_t)1 << 20)
#define EDDY_BATCH_MAX_BYTES ((size_t)16 << 20)
#define EDDY_EVENT_MAX_DEPTH 256

/*
 * The one strict JSON decoder of event input: parses `len` bytes of `text`
 * (borrowed; need not be NUL-terminated) as any JSON value, refusing what
 * jansson alone would let through or report in its own terms:
 *   EDDY_ETOOBIG  more than EDDY_EVENT_MAX_BYTES, or nested deeper than
 *                 EDDY_EVENT_MAX_DEPTH ("event: nested deeper than 256 levels
 *                 (EDDY_EVENT_MAX_DEPTH)"); checked before anything is parsed;
 *   EDDY_EPARSE   malformed JSON, with line and column; a NUL byte anywhere
 *                 (nothing after it is ignored); a "\u0000" escape; an
 *                 object with a duplicated member ("duplicate object key
 *                 near '"id"'": which one would count?).
 * Returns a new reference (json_decref it), or NULL with `err` filled.
 * Thread-safe.
 */
json_t *eddy_json_decode(const char *text, size_t len, eddy_error *err);

/*
 * As eddy_json_decode, for the text of a batch: at most EDDY_BATCH_MAX_BYTES,
 * each element of a top-level array at most EDDY_EVENT_MAX_BYTES ("batch: [3]
 * 1048577 bytes, larger than ..."), one more level of nesting for the array.
 * For callers that report on each event of a batch (eddy_event_decode_batch
 * is all or nothing). Thread-safe.
 */
json_t *eddy_json_decode_batch(const char *text, size_t len, eddy_error *err);

/* ---- reading lines ---------------------------------------------------------- */

/*
 * A reader of newline-separated input (JSON lines) that never holds more
 * than one bounded line: a line longer than its limit is refused as soon as
 * the limit is passed, without reading the rest of it into memory.
 */
typedef struct eddy_line_reader eddy_line_reader;

/*
 * Where a line reader gets its bytes: reads at most `size` bytes into `buf`
 * and returns how many (0 at the end of input), or -1 with errno set. A
 * short read is not the end. Called on the thread that calls
 * eddy_line_reader_next.
 */
typedef long (*eddy_read_fn)(void *user, void *buf, size_t size);

/*
 * A new reader over `read` (with `user`, borrowed until the reader is
 * freed) whose lines may hold at most `max_line` bytes, the newline not
 * counted (0: EDDY_EVENT_MAX_BYTES). Free it with eddy_line_reader_free.
 * Returns NULL only when out of memory.
 */
eddy_line_reader *eddy_line_reader_new(eddy_read_fn read, void *user,
                                       size_t max_line);

/* As eddy_line_reader_new, reading file descriptor `fd` (borrowed, not
 * closed; reads are retried on EINTR). */
eddy_line_reader *eddy_line_reader_fd(int fd, size_t max_line);

/*
 * The next line: returns 1 with `*line` (borrowed until the next call; NUL-
 * terminated after `*len` bytes, but may itself hold NUL bytes) and `*len`
 * (without the "\n" and a "\r" before it), 0 at the end of input, or -1
 * with `err` filled:
 *   EDDY_ETOOBIG  the line is longer than max_line ("line 7: longer than
 *                 the 1048576-byte limit"); the next call skips the rest of
 *                 it (reading, not keeping, its bytes) and goes on with the
 *                 line after it, so a caller may stop here without reading
 *                 any further;
 *   EDDY_EIO      the read failed (errno's message);
 *   EDDY_ENOMEM.
 * One thread at a time per reader.
 */
int eddy_line_reader_next(eddy_line_reader *r, const char **line, size_t *len,
                          eddy_error *err);

/* The number of the line last returned or refused (1 for the first line),
 * 0 before the first. */
long eddy_line_reader_line(const eddy_line_reader *r);

/* Frees the reader. NULL does nothing. */
void eddy_line_reader_free(eddy_line_reader *r);

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
 * and data_base64; data of a non-JSON datacontenttype a string; no String
 * attribute holding a control character (U+0000-U+001F, U+007F-U+009F) or a
 * noncharacter; data nested at most EDDY_EVENT_MAX_DEPTH - 1 levels
 * (EDDY_ETOOBIG). A null attribute counts as absent.
 * Returns a new event or NULL with `err` filled: EDDY_EINVAL with a message
 * naming the attribute and the rule ("time: not an RFC 3339 timestamp").
 * Thread-safe.
 */
eddy_event *eddy_event_from_json(const json_t *obj, eddy_error *err);

/*
 * As eddy_event_from_json, from JSON text of `len` bytes, parsed by
 * eddy_json_decode: EDDY_EPARSE for malformed JSON (with line and column), a
 * NUL byte, "\u0000" or a duplicated member; EDDY_ETOOBIG beyond
 * EDDY_EVENT_MAX_BYTES or EDDY_EVENT_MAX_DEPTH. Every path that receives
 * events as text (the CLI, the transports, HTTP) decodes through here.
 */
eddy_event *eddy_event_decode(const char *text, size_t len, eddy_error *err);

/*
 * Decodes a CloudEvents JSON batch (an array of events, possibly empty).
 * All or nothing: on success `*events` is a malloc'd array of `*count` new
 * references (free with eddy_event_array_free); on failure nothing is
 * returned, `err` names the index of the offending element and why. The text
 * may hold EDDY_BATCH_MAX_BYTES, each event in it EDDY_EVENT_MAX_BYTES
 * (EDDY_ETOOBIG otherwise); it is parsed as eddy_event_decode parses one
 * event. Thread-safe.
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
