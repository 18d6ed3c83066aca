/*
 * src/transport/ce_binary.h - CloudEvents binary content mode, shared by the
 * engines that carry headers (Kafka, NATS). Not public.
 *
 * Binary mode puts every attribute in a header named <prefix><attribute>
 * ("ce_id" for Kafka, "ce-id" for NATS), datacontenttype in "content-type",
 * and the data, as bytes, in the payload:
 *
 *   data with a JSON content type (or none)  the JSON text
 *   data that is a JSON string, with another content type  the string's bytes
 *   data_base64                              the decoded bytes
 *
 * Extension values travel as text (CloudEvents' canonical string form).
 * So that eddy gets back exactly the event it sent, one more header (the
 * `types_header`, "eddy_types" / "eddy-types") says what the text cannot:
 * which extensions are booleans or integers and, when the data is not JSON
 * text, whether it was a string or data_base64: "flag=b,count=i,data=s".
 * Other consumers ignore it. Decoding obeys it when present; without it
 * (a foreign producer) the content type decides: JSON (or none) -> the
 * payload must be JSON (with an explicit JSON type, otherwise the message
 * is malformed; with no type, non-JSON bytes become data_base64); text/... ->
 * a string if valid UTF-8; anything else -> data_base64; extensions are
 * strings.
 *
 * Every function here is thread-safe (no shared state).
 */
#ifndef EDDY_SRC_TRANSPORT_CE_BINARY_H
#define EDDY_SRC_TRANSPORT_CE_BINARY_H

#include <stdbool.h>
#include <stddef.h>

#include "eddy/event.h"

/* One encoded event: headers (names and NUL-terminated values, owned) and
 * the payload (owned; NULL with payload_len 0 when the event has no data). */
typedef struct eddyi_ce_binary {
    size_t count;
    char **names;       /* point into `arena` */
    char **values;
    char *payload;
    size_t payload_len;
    char *arena;        /* one block: the two arrays and every string */
} eddyi_ce_binary;

/*
 * Encodes `ev` (borrowed) with header names prefixed by `prefix`. With
 * `percent`, header values are percent-encoded (space, '"', '%', control
 * and non-ASCII bytes) as the CloudEvents NATS and HTTP bindings require.
 * Returns EDDY_OK with `*out` filled (release it with eddyi_ce_binary_clear)
 * or EDDY_ENOMEM / EDDY_EINVAL with `err` filled; `*out` is then empty.
 */
int eddyi_ce_binary_encode(const eddy_event *ev, const char *prefix,
                           const char *types_header, bool percent,
                           eddyi_ce_binary *out, eddy_error *err);

/* Frees what `b` owns and empties it. NULL does nothing. */
void eddyi_ce_binary_clear(eddyi_ce_binary *b);

/* Bytes on the wire: every header name and value plus the payload. */
size_t eddyi_ce_binary_size(const eddyi_ce_binary *b);

/*
 * Decodes a binary-mode message: `n` headers (`names` NUL-terminated,
 * `values` of `value_lens` bytes, both borrowed; headers without the prefix
 * are ignored, names compare case-insensitively) and the payload.
 * Returns a new event, or NULL with `reason` filled ("malformed: ...")
 * naming the missing or invalid attribute.
 */
eddy_event *eddyi_ce_binary_decode(const char *const *names,
                                   const char *const *values,
                                   const size_t *value_lens, size_t n,
                                   const char *prefix,
                                   const char *types_header, bool percent,
                                   const void *payload, size_t payload_len,
                                   char *reason, size_t reason_size);

/* True when `content_type` (may be NULL) announces a structured-mode
 * message ("application/cloudevents+json; ..."). */
bool eddyi_ce_binary_is_structured(const char *content_type);

#endif
