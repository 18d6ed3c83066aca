/*
 * src/reliability/reliability_internal.h - what the files of the
 * reliability layer share beyond one job (durable subscriptions and the
 * dead-letter store). Not public.
 *
 * The layer keeps its state in the store, through the store's state
 * operations (src/store/state_durable.h, state_outbox.h): it holds no SQL
 * of its own.
 */
#ifndef EDDY_SRC_RELIABILITY_INTERNAL_H
#define EDDY_SRC_RELIABILITY_INTERNAL_H

#include <stdint.h>

#include "eddy/durable.h"

/*
 * Loads dead letter `id` (limited to `subscription` unless NULL) into
 * `*out` (destructor: eddy_dead_letter_free), on a reader. Returns EDDY_OK,
 * EDDY_ENOTFOUND (with `err` naming the id and the subscription) or a
 * store error (`*out` untouched). A stored event that does not decode
 * leaves `event` NULL with `event_error` saying why. Thread-safe.
 */
int eddyi_dlq_load(eddy_store *store, int64_t id, const char *subscription,
                   eddy_dead_letter **out, eddy_error *err);

#endif
