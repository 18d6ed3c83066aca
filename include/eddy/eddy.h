/*
 * eddy/eddy.h - eddy, an event-driven architecture toolkit for C.
 *
 * Include this header for the whole public API.
 *
 * THREADING MODEL
 *
 * eddy starts threads of its own only where a header says so (the bus's
 * worker pool, the store's writer, subscriptions). Every public function is
 * tagged in its header:
 *   - "Thread-safe": any thread, any time, concurrently with other calls on
 *     the same handle;
 *   - "One thread at a time per handle": the caller serialises calls on that
 *     handle (different handles are independent).
 * Callbacks (handlers, filters, log) say which thread runs them and what
 * they must not call. A callback is never called from inside the call that
 * registers it, and never after its registration was removed.
 *
 * OWNERSHIP
 *
 * Pointers passed in are *borrowed* (valid for the call) unless a comment
 * says *copied* or *taken* (taken only on success). Returned pointers say
 * whether the caller frees them and with what. Events are reference-counted
 * (eddy_event_ref / eddy_event_unref).
 *
 * ERRORS
 *
 * Functions return EDDY_OK (0) or an EDDY_E* code (eddy/error.h); calls that
 * can fail in detail fill an optional eddy_error with a message.
 */
#ifndef EDDY_EDDY_H
#define EDDY_EDDY_H

#define EDDY_VERSION_MAJOR 0
#define EDDY_VERSION_MINOR 1
#define EDDY_VERSION_PATCH 0
#define EDDY_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, for compile-time comparisons */
#define EDDY_VERSION_NUMBER                                                    \
    (EDDY_VERSION_MAJOR * 10000 + EDDY_VERSION_MINOR * 100 + EDDY_VERSION_PATCH)

#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/bus.h"
#include "eddy/metrics.h"
#include "eddy/store.h"
#include "eddy/sql.h"
#include "eddy/retry.h"
#include "eddy/start.h"
#include "eddy/durable.h"
#include "eddy/es.h"
#include "eddy/schema.h"
#include "eddy/outbox.h"
#include "eddy/command.h"
#include "eddy/projection.h"
#include "eddy/saga.h"
#include "eddy/trace.h"
#include "eddy/status.h"
#include "eddy/transport.h"
#include "eddy/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version string ("0.1.0"), which may differ from the header
 * the program was compiled with. Thread-safe. */
const char *eddy_version(void);

/* The library's EDDY_VERSION_NUMBER. Thread-safe. */
int eddy_version_number(void);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_EDDY_H */
