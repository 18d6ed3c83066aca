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
 * EDDY_ENOTFOUND (with `err` naming the id and the subscription),
 * EDDY_EPARSE (its stored event does not decode) or a store error (`*out`
 * untouched). Thread-safe.
 */
int eddyi_dlq_load(eddy_store *store, int64_t id, const char *subscription,
                   eddy_dead_letter **out, eddy_error *err);

/*
 * TRANSITIONAL (issue 10). src/cqrs/saga.c, src/cqrs/projection.c,
 * src/observe/trace.c and src/observe/subscriptions.c still reach the
 * store's write connection through the old helpers of legacy_sql.h, and
 * find them through this header, until their own move behind the store's
 * state operations lands. Nothing in src/reliability uses them. Delete
 * this include and legacy_sql.{h,c} together with their last caller.
 */
#include "legacy_sql.h"

#endif
