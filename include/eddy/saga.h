/*
 * eddy/saga.h - durable sagas (process managers).
 *
 * A saga type coordinates a long-running flow across services: it reacts
 * to events, keeps a small JSON state per instance, sends commands, sets
 * deadlines, and ends as completed or failed. The specification's
 * OrderProcessingSaga, for instance:
 *
 *   order.placed                 -> send ProcessPayment
 *   payment.processed            -> send ReserveInventory
 *   inventory.reserved           -> send ConfirmOrder, complete
 *   payment.failed               -> send CancelOrder, fail
 *   inventory.reservation.failed -> send RefundPayment (only if paid), then
 *                                   CancelOrder, fail
 *   timeout "payment"            -> send CancelOrder, fail
 *
 * A saga type is declared as data (eddy_saga_def) plus one `on_event`
 * function over the instance's persisted state:
 *
 *     static int on_event(eddy_saga_ctx *sc, json_t *state,
 *                         const eddy_event *ev, void *user)
 *     {
 *         if (strcmp(eddy_event_type(ev), "order.placed") == 0) {
 *             json_object_set_new(state, "amount", ...);
 *             eddy_saga_set_timeout(sc, "payment", 30000);
 *             return eddy_saga_send(sc, "ProcessPayment", "{s:s, s:f}",
 *                                   "order_id", eddy_saga_id(sc), ...);
 *         }
 *         ...
 *     }
 *
 * EXACTLY ONCE. A running saga type is a durable subscription in
 * EDDY_DELIVERY_TRANSACTIONAL mode (eddy/durable.h). For each event, in ONE
 * store transaction: the instance's row is loaded, `on_event` runs, and the
 * new state, the commands it queued, the timeouts it set or cancelled, the
 * inbox row and the checkpoint are written. A crash at any point neither
 * loses nor repeats a step.
 *
 * COMMANDS. Queued commands are stored (state 'pending') and the saga's
 * dispatcher sends them through the eddy_command_bus given at start, in
 * order per saga instance, AT-LEAST-ONCE: a command is marked 'sent' after
 * its handler succeeded, so a crash in between sends it again. Each command
 * has a stable id derived from the event that queued it (eddy_id_derive),
 * its correlation id is the saga's and its causation id the event's: a
 * handler that derives its events' ids from the command id
 * (eddy_id_derive(cmd->id, ...)) is idempotent. A failing command is
 * retried with the backoff of eddy_saga_options.command_retry (the later
 * commands of the same instance wait); the attempts and last error are
 * stored in its row. A command is NEVER dropped: after max_attempts failed
 * sends (or an error the policy's `retryable` refuses) it stays pending,
 * is tried again every max_delay_ms, and each failure is logged at
 * EDDY_LOG_ERROR (`eddy sagas get ID` shows its attempts and last error).
 *
 * TIMEOUTS. eddy_saga_set_timeout stores a deadline (eddy_saga_timeouts).
 * A timer thread, when it passes, APPENDS an event of type
 * EDDY_SAGA_TIMEOUT_TYPE ("saga.timeout"; subject = the instance id, data
 * {"saga": type name, "id": instance id, "timeout": name, "deadline_us": N},
 * id derived from those, so firing twice appends it once). The saga handles
 * it like any other event (eddy_saga_timeout_name() says which timeout it
 * is). Deadlines live in the store, so they fire after a restart too; a
 * timeout cancelled or set again before its event is handled is ignored.
 *
 * LIFECYCLE OF AN INSTANCE. An event whose type is in `start_types` creates
 * the instance when it does not exist; an event of `handled_types` reaches
 * an existing, running instance only (it is skipped otherwise). Once
 * `on_event` calls eddy_saga_complete or eddy_saga_fail the instance is
 * finished: its pending timeouts are deleted and later events skip it (the
 * commands it queued are still sent).
 *
 * SEVERAL PROCESSES may run one saga type on one store (eddy/durable.h,
 * SEVERAL PROCESSES): its events are shared by partitions of their subject
 * (so an instance whose events all carry one subject, e.g. the order id,
 * keeps their order; instances load and save their rows inside the
 * handler's transaction, so events of one instance under different
 * subjects are still applied one at a time, though in no set order).
 * Its queued commands and its timeouts are handled by one process at a
 * time, the holder of the saga type's command lease (a row of the lease
 * table, "<name>#commands", renewed every lease_ms / 3; freed by a stop,
 * taken over when it ends or its holder's process is gone): commands stay
 * in order per instance and are sent at-least-once (a holder that lost the
 * lease records nothing more, and the new holder sends its last pass
 * again).
 *
 * STORE TABLES (part of the store's schema, on every backend): the saga
 * instances (type, id, status 'running'|'completed'|'failed', result,
 * state, version, correlation id, times), their queued commands (id, seq,
 * name, data, correlation and causation ids, state 'pending'|'sent',
 * attempts, last error, times) and timeouts (name, deadline, fired), and
 * the subscription registry (kind 'saga', for `eddy graph`).
 *
 * THREADING. Every function outside "inside on_event" is thread-safe.
 * `correlate` and `on_event` run on the store's writer thread: they must be
 * quick, must not block nor call store functions; command handlers run on
 * the saga's dispatcher threads (see eddy_saga_options.dispatchers).
 */
#ifndef EDDY_SAGA_H
#define EDDY_SAGA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "eddy/command.h"
#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/retry.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_saga eddy_saga;

/* What on_event uses to act; valid only during the call. */
typedef struct eddy_saga_ctx eddy_saga_ctx;

/* The type of the events the timer appends when a deadline passes. */
#define EDDY_SAGA_TIMEOUT_TYPE "saga.timeout"

/* Longest saga instance id, NUL included. */
#define EDDY_SAGA_ID_MAX 256

/*
 * A saga type: plain data, usually a `static const` object; borrowed by
 * eddy_saga_start for the saga's lifetime.
 */
typedef struct eddy_saga_def {
    /* Required: unique per store ("OrderProcessingSaga"); also the durable
     * subscription's name and the source of its timeout events. */
    const char *name;
    /* Event types that create an instance (at least one). */
    const char *const *start_types;
    size_t start_count;
    /* Further event types that reach an existing instance (may be 0). The
     * timeout events of this saga type always do. */
    const char *const *handled_types;
    size_t handled_count;
    /*
     * Required: writes the instance id the event belongs to (e.g. its
     * data.order_id) into `id` (`size` bytes, EDDY_SAGA_ID_MAX) and returns
     * EDDY_OK; EDDY_ENOTFOUND: the event belongs to no instance (skipped);
     * another error: the event is retried, then dead-lettered. Not called
     * for timeout events (they carry their instance id).
     */
    int (*correlate)(const eddy_event *ev, char *id, size_t size, void *user);
    /*
     * Required: handles one event for instance eddy_saga_id(sc). `state` is
     * the instance's JSON object ({} for a new one), borrowed and mutable:
     * whatever it holds when on_event returns EDDY_OK is saved. `ev`
     * borrowed. Returning an error (ideally via eddy_saga_ctx_fail) rolls
     * back everything (state, commands, timeouts) and the event is retried
     * with backoff, then dead-lettered.
     */
    int (*on_event)(eddy_saga_ctx *sc, json_t *state, const eddy_event *ev,
                    void *user);
    void *user; /* passed to correlate and on_event */
} eddy_saga_def;

/* Options of a running saga; the zero value gives the defaults. Copied. */
typedef struct eddy_saga_options {
    unsigned timer_poll_ms;      /* how often the timer looks for deadlines
                                    set by other processes; 0: 1000 (its own
                                    deadlines wake it at once) */
    /* Backoff between the sends of a failing command (eddy/retry.h; the
     * zero value: 100 ms doubling up to 30 s, jitter 0.2). Past
     * max_attempts the command stays pending and is sent every
     * max_delay_ms (see COMMANDS above). */
    eddy_retry_policy command_retry;
    unsigned event_max_attempts; /* handler attempts per event before it is
                                    dead-lettered (eddy_retry_policy); 0: 5 */
    /* Worker threads of the saga's subscription; 0: 1 (every event in store
     * order). More let several events commit in one group commit, but only
     * events with the same subject keep their store order: use it only when
     * an instance's events all have one subject (e.g. the order id). */
    unsigned workers;
    /* Threads sending commands, created at start; 0: 4. An instance's
     * commands are always sent one after another, in order, by the same
     * thread; different instances' commands are sent in parallel (a
     * command handler usually waits for a durable commit). At most 16. */
    unsigned dispatchers;
    /* Partitions of its subscription and the lease of a process, for
     * several processes (eddy_durable_options.partitions and .lease_ms;
     * the lease also bounds how long the commands wait after their
     * sender died); 0: 16 and 10000 ms. */
    unsigned partitions;
    unsigned lease_ms;
} eddy_saga_options;

/*
 * Starts saga type `def` on `store`: creates its tables, records it in
 * eddy_subscriptions, starts its durable subscription (from the beginning
 * of the store for a new saga type, else from its checkpoint), its command
 * dispatcher (commands left 'pending' by an earlier run are sent) and its
 * timer (deadlines stored by an earlier run fire). `store` and `commands`
 * are borrowed and must outlive the saga; `opts` may be NULL.
 * Returns a running saga (destructor: eddy_saga_free) or NULL with `err`:
 * EDDY_EINVAL (the message names the missing field, or the bad
 * command_retry field), EDDY_EEXIST (that name already runs on this
 * handle), EDDY_EUNSUPPORTED (a backend without SQL), EDDY_ESTATE
 * (read-only store), or a store error. Thread-safe.
 */
eddy_saga *eddy_saga_start(eddy_store *store, const eddy_saga_def *def,
                           eddy_command_bus *commands,
                           const eddy_saga_options *opts, eddy_error *err);

/*
 * Stops the subscription, the dispatcher (a command being sent finishes)
 * and the timer. Everything not done stays in the store for the next start.
 * Returns EDDY_OK or the subscription's error. Idempotent. Thread-safe:
 * when several threads call it at once, one stops the saga, the others
 * wait for it, and all return the same result. Not from on_event nor from
 * a command handler it sends.
 */
int eddy_saga_stop(eddy_saga *sg, eddy_error *err);

/* Stops (as eddy_saga_stop) and frees. NULL does nothing. */
void eddy_saga_free(eddy_saga *sg);

/*
 * Waits until the saga has handled every event up to `position` AND sent
 * every command queued so far, or `timeout_ms` passes (< 0: no limit).
 * Handy in tests: it does not wait for deadlines. Returns EDDY_OK,
 * EDDY_ETIMEDOUT or EDDY_ESTOPPED. Thread-safe.
 */
int eddy_saga_wait_idle(eddy_saga *sg, int64_t position, int timeout_ms);

/* ---- inside on_event -------------------------------------------------- */

/* The instance id (borrowed for the call). */
const char *eddy_saga_id(const eddy_saga_ctx *sc);

/* True when this event created the instance. */
bool eddy_saga_is_new(const eddy_saga_ctx *sc);

/* The name of the timeout this event is ("payment"), or NULL when the
 * event is not one of this saga's timeout events. Borrowed for the call. */
const char *eddy_saga_timeout_name(const eddy_saga_ctx *sc);

/*
 * Queues command `name` with data packed by json_pack format `fmt` (NULL:
 * no data); it is stored with the state and sent after the commit, after
 * the commands queued before it for this instance. Returns EDDY_OK, or
 * EDDY_EINVAL (bad name or pack error; on_event should return it).
 */
int eddy_saga_send(eddy_saga_ctx *sc, const char *name, const char *fmt, ...);

/* As eddy_saga_send with ready data (borrowed: copied; NULL: none). */
int eddy_saga_send_json(eddy_saga_ctx *sc, const char *name,
                        const json_t *data);

/* Sets (or moves) timeout `name` of this instance to fire `delay_ms` after
 * now. Returns EDDY_OK or EDDY_EINVAL. */
int eddy_saga_set_timeout(eddy_saga_ctx *sc, const char *name,
                          int64_t delay_ms);

/* Cancels timeout `name` (nothing if it is not set). Returns EDDY_OK or
 * EDDY_EINVAL. */
int eddy_saga_cancel_timeout(eddy_saga_ctx *sc, const char *name);

/* Finishes the instance as completed with `result` ("CONFIRMED", copied;
 * may be NULL). Its timeouts are cancelled. */
int eddy_saga_complete(eddy_saga_ctx *sc, const char *result);

/* Finishes the instance as failed with `result` ("CANCELLED"). */
int eddy_saga_fail(eddy_saga_ctx *sc, const char *result);

/* Records why on_event failed (printf format, logged with the saga's name)
 * and returns `code`. */
int eddy_saga_ctx_fail(eddy_saga_ctx *sc, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- queries (for `eddy sagas`) ---------------------------------------- */

/* A saga instance: a read-only view, borrowed for the callback. */
typedef struct eddy_saga_info {
    const char *type;           /* the saga type's name */
    const char *id;             /* the instance id */
    const char *status;         /* "running", "completed" or "failed" */
    const char *result;         /* complete/fail result, "" when running */
    const char *correlation_id; /* of the event that started it */
    const json_t *state;        /* the persisted state */
    int64_t version;            /* events handled */
    int64_t created_us, updated_us;
    /* eddy_saga_get only (NULL in lists): arrays of objects
     *   commands: {"id","name","data","state","attempts","last_error",
     *              "causation_id","created_us","sent_us"}
     *   timeouts: {"name","deadline_us","fired"} */
    const json_t *commands;
    const json_t *timeouts;
} eddy_saga_info;

typedef int (*eddy_saga_info_fn)(const eddy_saga_info *info, void *user);

/*
 * Calls `fn` for each saga instance of type `type` (NULL: all) whose status
 * or result equals `status` (NULL: any; e.g. "running", "failed",
 * "CANCELLED"), oldest first. Rows are read first (on a reader
 * connection: works on a store opened read-only), then `fn` runs on the
 * calling thread with no lock held; non-zero stops the walk (and is
 * returned). Returns EDDY_OK, fn's value or a store error. Thread-safe.
 */
int eddy_saga_list(eddy_store *store, const char *type, const char *status,
                   eddy_saga_info_fn fn, void *user, eddy_error *err);

/*
 * Calls `fn` for every instance with id `id` (one per saga type having it),
 * with its commands and timeouts, read as eddy_saga_list reads. Returns
 * EDDY_OK, EDDY_EINVAL (no id), EDDY_ENOTFOUND (no such instance), fn's
 * value or a store error. Thread-safe.
 */
int eddy_saga_get(eddy_store *store, const char *id, eddy_saga_info_fn fn,
                  void *user, eddy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_SAGA_H */
