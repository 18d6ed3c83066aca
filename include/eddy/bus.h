/*
 * eddy/bus.h - the in-process event bus.
 *
 * Producers publish events; named handlers subscribed to a type ("order.placed"),
 * a prefix pattern ("order.*") or everything ("*") run on a worker pool.
 *
 * Delivery guarantees (in-memory, at-most-once): an event accepted by
 * eddy_bus_publish() is handled once by every matching handler unless the
 * process dies first; events are not persisted. For delivery that survives a
 * crash, append to an eddy store and subscribe durably there.
 *
 * Ordering: every event has a partition key (its subject by default, its id
 * when it has no subject). All events with one key are handled by one worker,
 * in the order they were published (by one producer thread; the order between
 * two producers racing is the order their publishes took effect). Events with
 * different keys are handled in parallel.
 *
 * Threading: publish, subscribe and unsubscribe are thread-safe and may be
 * called from handlers. Each handler runs on one of the bus's worker threads;
 * a handler may run concurrently with itself for events of different keys, so
 * it must be thread-safe with respect to its own `user` data.
 */
#ifndef EDDY_BUS_H
#define EDDY_BUS_H

#include <stdbool.h>
#include <stddef.h>

#include "eddy/error.h"
#include "eddy/event.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_bus eddy_bus;

/* The context of one handler invocation; valid only during the call. */
typedef struct eddy_ctx eddy_ctx;

/*
 * A handler. `ev` is borrowed for the call (eddy_event_ref it to keep it).
 * Returns EDDY_OK, or an error code (ideally through eddy_ctx_fail, which
 * records a message): the bus logs the failure with the handler's name and
 * carries on. Runs on a worker thread (or the caller's, for
 * eddy_bus_dispatch). It must not call eddy_bus_free on its own bus.
 */
typedef int (*eddy_handler_fn)(eddy_ctx *ctx, const eddy_event *ev, void *user);

/* An optional filter run before the handler; false skips the event. Same
 * thread and rules as the handler; it must be quick and must not block. */
typedef bool (*eddy_filter_fn)(const eddy_event *ev, void *user);

/*
 * Chooses an event's partition key (borrowed from the event, or NULL for
 * "no key": the event id is used). Runs on the publishing thread.
 */
typedef const char *(*eddy_key_fn)(const eddy_event *ev, void *user);

/* What publish does when a worker's queue is full. */
typedef enum eddy_full_policy {
    EDDY_FULL_BLOCK = 0, /* wait until there is room (default) */
    EDDY_FULL_FAIL = 1   /* return EDDY_EFULL at once; nothing is queued */
} eddy_full_policy;

/* Bus options; the zero value gives the defaults. Copied by eddy_bus_new. */
typedef struct eddy_bus_options {
    unsigned workers;             /* worker threads; 0: 4 */
    size_t queue_capacity;        /* events each worker queues; 0: 8192.
                                     Rounded up to a power of two. */
    eddy_full_policy full_policy; /* see above; default EDDY_FULL_BLOCK */
    const char *source;           /* source of events handlers publish;
                                     NULL: "eddy" */
    eddy_key_fn partition_key;    /* NULL: subject, else id */
    void *partition_key_user;
} eddy_bus_options;

/*
 * Creates a stopped bus. Destructor: eddy_bus_free. Returns NULL with `err`
 * filled on bad options (EDDY_EINVAL) or when out of memory.
 */
eddy_bus *eddy_bus_new(const eddy_bus_options *opts, eddy_error *err);

/*
 * Stops the bus (draining it, as eddy_bus_stop) if it runs, and frees it
 * with its subscriptions and any events still queued. NULL does nothing.
 * Must not be called from one of the bus's handlers.
 */
void eddy_bus_free(eddy_bus *bus);

/* Starts the worker threads. Returns EDDY_OK, EDDY_ESTATE if already
 * started, or EDDY_ENOMEM / EDDY_EIO if a thread cannot be created.
 * Thread-safe. A stopped bus cannot be started again. */
int eddy_bus_start(eddy_bus *bus);

/*
 * Stops accepting events, lets the workers handle every event already
 * accepted (drain), then joins them. After it returns EDDY_OK every accepted
 * event has been handled. Called from inside one of the bus's handlers it
 * cannot wait for itself: it stops accepting, returns EDDY_OK at once, and
 * the drain completes in the background (eddy_bus_free waits for it).
 * Publishing after stop fails with EDDY_ESTOPPED, except for follow-ups
 * that the bus's own handlers publish while it drains: those are accepted
 * and drained too (so handlers that always publish another event would keep
 * the drain from ending). Thread-safe; idempotent.
 */
int eddy_bus_stop(eddy_bus *bus);

/* Per-subscription options; the zero value gives the defaults. */
typedef struct eddy_subscribe_options {
    eddy_filter_fn can_handle; /* NULL: every matching event */
    void *filter_user;         /* passed to can_handle */
} eddy_subscribe_options;

/*
 * Subscribes handler `name` (unique on this bus, copied) to `pattern`:
 * an exact type ("order.placed"), a prefix ending in ".*" ("order.*" matches
 * "order.placed" and "order.item.added", not "order") or "*" (everything).
 * `user` is passed to the handler. `opts` may be NULL.
 * Returns EDDY_OK, EDDY_EEXIST if `name` is taken, EDDY_EINVAL for a bad
 * pattern or name (message in `err`). If it fails the handler never runs.
 * Events published after it returns reach the handler. Thread-safe.
 */
int eddy_bus_subscribe(eddy_bus *bus, const char *pattern, const char *name,
                       eddy_handler_fn fn, void *user,
                       const eddy_subscribe_options *opts, eddy_error *err);

/*
 * Removes handler `name`. Events published afterwards do not reach it; an
 * event it is handling right now finishes, and events already queued for it
 * may still be delivered until the call returns. After it returns the handler
 * is never called again and its `user` may be freed, except when called from
 * that very handler (then: after the handler returns).
 * Returns EDDY_OK or EDDY_ENOTFOUND. Thread-safe.
 */
int eddy_bus_unsubscribe(eddy_bus *bus, const char *name);

/*
 * Queues `ev` for every matching handler; the bus takes its own reference
 * (the caller keeps its own). Returns EDDY_OK once queued, EDDY_EFULL (fail
 * policy, queue full), EDDY_ESTOPPED (bus stopped or not started).
 * An event no handler matches is dropped with a warning in the log (written
 * by the worker that takes it from the queue), and the call returns EDDY_OK. From inside a handler publishing never blocks (it
 * would risk waiting on its own worker): a full queue gives EDDY_EFULL.
 * Thread-safe.
 */
int eddy_bus_publish(eddy_bus *bus, eddy_event *ev);

/*
 * Publishes `count` events, in order, with one wake-up per worker. Stops at
 * the first failure: returns EDDY_OK, or an error with `*accepted` (if not
 * NULL) saying how many of the first events were queued. Thread-safe.
 */
int eddy_bus_publish_batch(eddy_bus *bus, eddy_event *const *events,
                           size_t count, size_t *accepted);

/*
 * Runs every matching handler on the calling thread, now, in subscription
 * order, ignoring the queues (for tests and simple programs). Events that
 * handlers publish go through the queues as usual. Returns EDDY_OK or the
 * first handler error (the others still run). Works on a stopped bus.
 * Thread-safe.
 */
int eddy_bus_dispatch(eddy_bus *bus, eddy_event *ev);

/* Events queued and not yet handled (an event counts until every matching
 * handler has returned), over all workers. Exact when nothing is published
 * or handled meanwhile; while the bus works, an approximate snapshot.
 * Thread-safe. */
size_t eddy_bus_pending(const eddy_bus *bus);

/* ---- inside a handler --------------------------------------------------- */

/*
 * Publishes a follow-up event from a handler: type `type`, data built with
 * json_pack format `fmt` (NULL: no data), the bus's source, and the handled
 * event's subject; its correlation id is the handled event's correlation id
 * (or its id when it has none), its causation id the handled event's id.
 * Returns as eddy_bus_publish (never blocks).
 */
int eddy_ctx_publish(eddy_ctx *ctx, const char *type, const char *fmt, ...);

/*
 * Publishes a follow-up event built from `init` (borrowed); correlation,
 * causation, source and subject left NULL in `init` are filled in as above.
 */
int eddy_ctx_publish_init(eddy_ctx *ctx, const eddy_event_init *init);

/*
 * Records why the handler failed and returns `code`, so a handler can say
 * `return eddy_ctx_fail(ctx, EDDY_EINVAL, "no order_id in %s", id);`.
 * The message (printf format) is logged with the handler's name.
 */
int eddy_ctx_fail(eddy_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The name of the running handler (borrowed for the call). */
const char *eddy_ctx_handler(const eddy_ctx *ctx);

/* The bus running the handler. */
eddy_bus *eddy_ctx_bus(const eddy_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_BUS_H */
