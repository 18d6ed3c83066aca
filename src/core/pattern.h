/*
 * src/core/pattern.h - event type patterns, shared by every kind of
 * subscription (the bus, durable subscriptions): "order.placed" (exact),
 * "order.*" (prefix: matches "order.placed" and "order.item.added", not
 * "order"), "*" (everything).
 */
#ifndef EDDY_SRC_CORE_PATTERN_H
#define EDDY_SRC_CORE_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#include "eddy/error.h"

#define EDDYI_PATTERN_MAX 1024u

typedef enum eddyi_pattern_kind {
    EDDYI_PATTERN_EXACT,
    EDDYI_PATTERN_PREFIX,
    EDDYI_PATTERN_ALL
} eddyi_pattern_kind;

typedef struct eddyi_pattern {
    eddyi_pattern_kind kind;
    size_t prefix_len; /* PREFIX: the length of "order." (the dot kept) */
} eddyi_pattern;

/*
 * Checks `text` ("*", "a.b", "a.b.*": no other '*', no spaces or control
 * characters, valid UTF-8, at most EDDYI_PATTERN_MAX bytes) and fills
 * `*out`. Returns EDDY_OK or EDDY_EINVAL with a message naming the pattern
 * and the rule. Thread-safe.
 */
int eddyi_pattern_parse(const char *text, eddyi_pattern *out, eddy_error *err);

/* True when `type` matches the pattern parsed from `text`. */
bool eddyi_pattern_match(const eddyi_pattern *p, const char *text,
                         const char *type);

/* The same, parsing `text` on the fly (NULL matches everything); for
 * callers that keep only the text. */
bool eddyi_pattern_match_text(const char *text, const char *type);

#endif
