/*
 * eddy/durable.h - durable subscriptions: checkpointed handlers with
 * retries, dead letters and idempotency.
 *
 * WHICH SUBSCRIPTION IS WHICH
 *
 *   eddy_bus_subscribe (eddy/bus.h)   in memory, AT-MOST-ONCE: events queued
 *                                     in the bus are lost if the process dies.
 *   eddy_durable_start (this header)  reads the store from a checkpoint kept
 *                                     in the store, then follows live appends:
 *                                     nothing is skipped across crashes and
 *                                     restarts. Delivery is AT-LEAST-ONCE;
 *                                     the mode says what the handler's
 *                                     effects get:
 *
 *   EDDY_DELIVERY_AT_LEAST_ONCE  The handler may run again for an event it
 *       already handled (a crash before the checkpoint moved past it). Its
 *       effects must be idempotent, or acceptable twice.
 *   EDDY_DELIVERY_INBOX  Each (handler name, event id) is claimed atomically
 *       in the store's inbox (one INSERT ... ON CONFLICT, no check-then-mark
 *       race) before the handler runs, and marked done after it succeeds.
 *       Never two concurrent runs of one event, never a run after a
 *       recorded success; but a crash after the handler's side effect and
 *       before "done" is committed re-runs it on restart (at-least-once for
 *       that window). Good for effects outside the store (e-mail, HTTP).
 *   EDDY_DELIVERY_TRANSACTIONAL  The handler runs inside the store's write
 *       transaction (eddy_txn): its own writes (eddy_txn_exec, eddy/sql.h), its
 *       follow-up events, its inbox row and the checkpoint commit together
 *       or not at all. EXACTLY-ONCE effects for everything it writes to the
 *       store. Effects outside the store are not covered (use INBOX).
 *
 * FOLLOW-UP EVENTS. eddy_ctx_publish / eddy_ctx_publish_init in a durable
 * handler append the follow-up to the store (stream: its subject, else its
 * type; expected version ANY), with correlation and causation filled in.
 * TRANSACTIONAL: in the handler's transaction (exactly once). The other
 * modes append at once, so a re-run (retry, crash) may append the follow-up
 * again under a new id: consumers of such follow-ups deduplicate (INBOX).
 * eddy_ctx_bus() is NULL in a durable handler.
 *
 * ORDER AND RETRIES
 *
 * Events are spread over worker threads by partition key (the subject, else
 * the id); events with one key are handled in store order. A failing event
 * is parked and retried on a timer with exponential backoff (no sleeping in
 * a handler): events with the same key wait behind it, other keys keep
 * flowing. Attempt counts and due times are stored with the checkpoint, so
 * a restart continues where it stopped. After the last attempt (or an error
 * the policy says is not retryable) the event goes to the dead-letter store
 * (eddy_dlq_*) and the key moves on. A dead letter is removed only after a
 * redrive made the handler succeed.
 *
 * COSTS. Each INBOX event takes two store commits (claim, done) and each
 * TRANSACTIONAL event one (shared with concurrent writers by group commit);
 * a running subscription also looks for dead letters marked for redrive
 * every 200 ms (one small query on a reader connection). Inbox rows are
 * never pruned.
 *
 * SEVERAL PROCESSES, ONE SUBSCRIPTION. A subscription name may run in
 * several processes on one store (and in several store handles of one
 * process): its members share the work. The partition keys' hash space is
 * split into `partitions` partitions (eddy_partition_of), fixed per name
 * and kept in the store; each partition is leased to one live member at a
 * time, about partitions / members each, and only that member delivers
 * its events, so per-key order holds across processes. A member renews
 * its leases every lease_ms / 3; one that stops frees them at once; one
 * that dies (SIGKILL, a lost machine) keeps them until its lease ends
 * (lease_ms), or until a member on the same host sees that its process is
 * gone. Then the others take its partitions over, each from the
 * partition's checkpoint. A member joining gets its share within about a
 * second: the others finish the events they have queued for the
 * partitions they give up, persist their checkpoints and free them. Every
 * transaction that commits effects for a partition (a TRANSACTIONAL
 * batch, an INBOX claim, a retry or dead-letter row, the checkpoint)
 * checks inside itself that its member still holds its partitions, so a
 * member that was taken for gone (paused past its lease) and lost one
 * commits nothing more for it: TRANSACTIONAL handlers stay exactly-once
 * across a move, INBOX and AT_LEAST_ONCE ones stay at-least-once. On
 * SQLite the processes must share the file on one machine (SQLite's
 * locking serialises their writers); on PostgreSQL they may run anywhere
 * (hosts' clocks must agree to well within a lease). Single-process use
 * needs nothing: the one member holds every partition. Starting a name
 * with another partition count than the store's fails (EDDY_EBUSY) while
 * any member runs; when none does, the partitions are re-created with the
 * new count, each at the lowest checkpoint of the old ones (events above
 * it are delivered again where an old partition had passed them: INBOX
 * and TRANSACTIONAL handlers skip them, AT_LEAST_ONCE ones may see them
 * twice). Across partitions there is no order: with several members a
 * subscription with one worker no longer sees the store's order, only
 * per-key order (as with several workers).
 *
 * STORE TABLES. The subscriptions keep their state in the store, in tables
 * that are part of the store's schema (on SQLite: eddy_checkpoints,
 * eddy_retries, eddy_dead_letters, eddy_inbox, eddy_members, eddy_leases;
 * each partition's checkpoint is in its lease row, and eddy_checkpoints
 * holds the lowest of them). They are written through the store's writer
 * (group commit) and read on its reader connections; a handler must not
 * write to them itself.
 *
 * THREADING. eddy_durable_* calls are thread-safe unless said otherwise; a
 * subscription runs its handler on its own worker threads (TRANSACTIONAL:
 * on the store's writer thread), and one coordinator thread that renews
 * its leases and moves partitions. One subscription name runs at most once
 * per store handle at a time (EDDY_EEXIST); run it in several processes,
 * or on several handles, to share its work.
 */
#ifndef EDDY_DURABLE_H
#define EDDY_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/bus.h"
#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/metrics.h"
#include "eddy/retry.h"
#include "eddy/sql.h"
#include "eddy/start.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_durable eddy_durable;

typedef enum eddy_delivery_mode {
    EDDY_DELIVERY_AT_LEAST_ONCE = 0,
    EDDY_DELIVERY_INBOX = 1,
    EDDY_DELIVERY_TRANSACTIONAL = 2
} eddy_delivery_mode;

/*
 * A transactional handler: as eddy_handler_fn, plus `txn`, the store's open
 * write transaction (borrowed for the call). It runs ON THE STORE'S WRITER
 * THREAD, inside a savepoint: it must be quick, must not call blocking
 * store functions (eddy_store_append, eddy_store_snapshot_save, ...) nor
 * stop its subscription, and must only write through `txn`. Returning an
 * error rolls back everything it wrote. eddy_ctx_publish appends the
 * follow-up inside the same transaction.
 */
typedef int (*eddy_txn_handler_fn)(eddy_ctx *ctx, const eddy_event *ev,
                                   eddy_txn *txn, void *user);

/* Options of a durable subscription; zero values give the defaults.
 * Copied by eddy_durable_start (`user`, `metrics` and the predicate's user
 * are kept as pointers: they must outlive the subscription). */
typedef struct eddy_durable_options {
    const char *name;    /* required: the handler's name, unique per store;
                            the key of its checkpoint, inbox rows and dead
                            letters */
    const char *const *patterns; /* the event types it receives (copied),
                                    each as eddy_bus_subscribe: "x.y"
                                    (exact), "x.*" (prefix) or "*"; an event
                                    matching any of them is delivered, the
                                    others are skipped at once, without a
                                    handler call, an inbox row or a write
                                    (the store filters them out) */
    size_t pattern_count;        /* 0: every event (as {"*"}) */
    eddy_delivery_mode mode;
    eddy_handler_fn handler;         /* AT_LEAST_ONCE and INBOX */
    eddy_txn_handler_fn txn_handler; /* TRANSACTIONAL */
    void *user;                      /* passed to the handler */
    unsigned workers;                /* worker threads; 0: 4 */
    size_t max_in_flight;            /* events read and not yet completed
                                        (parked ones included); reading
                                        pauses at this bound; 0: 4096 */
    eddy_retry_policy retry;
    unsigned checkpoint_every;       /* persist after this many completed
                                        events; 0: 100 */
    unsigned checkpoint_interval_ms; /* ... or this long; 0: 200 */
    eddy_start_from start_from;      /* where it starts without a stored
                                        checkpoint (eddy/start.h); 0:
                                        EDDY_START_BEGINNING, every event */
    eddy_metrics *metrics;           /* NULL: no metrics. Else per (name,
                                        event type): begin/end, retried,
                                        dead-lettered; and the gauge
                                        eddy_subscription_lag_events
                                        {subscription="name"} */
    const char *source;              /* source of follow-up events; NULL:
                                        the name */
    unsigned partitions;             /* partitions of the partition keys'
                                        hash, shared by every member of the
                                        name (see SEVERAL PROCESSES); 0: 16;
                                        at most 4096 */
    unsigned lease_ms;               /* how long a member's partitions stay
                                        its own without a renewal (after a
                                        crash: before others take them over,
                                        unless they see its process is
                                        gone); 0: 10000; at least 100 */
} eddy_durable_options;

/*
 * The partition of partition key `key` (an event's subject, else its id)
 * among `partitions`: the FNV-1a 64-bit hash of the key's bytes, modulo
 * `partitions`. The same in every process, on every backend and in every
 * release (the stored checkpoints per partition depend on it). 0 when
 * `partitions` is 0 or `key` NULL. Thread-safe.
 */
unsigned eddy_partition_of(const char *key, unsigned partitions);

/*
 * Starts durable subscription `opts->name`: records it in the store with
 * what it receives (its patterns, comma-separated; for `eddy graph` and
 * `eddy stats`), loads its checkpoint
 * and pending retries, then delivers every event after the checkpoint
 * (catch-up) and follows live appends, until stopped. Dead letters of
 * this name marked for redrive (eddy_dlq_redrive) while it did not run are
 * redelivered at once.
 * It joins the name's members (see SEVERAL PROCESSES) and delivers the
 * events of the partitions it holds; alone, it holds them all.
 * Returns a running subscription (destructor: eddy_durable_free), or NULL
 * with `err`: EDDY_EINVAL (no name, a bad pattern, missing or mismatched
 * handler for the mode, bad policy, partitions or lease out of range: the
 * message names it), EDDY_EEXIST (that name already runs on this store
 * handle), EDDY_EBUSY (other members run the name with another partition
 * count: "durable \"payment\" runs with 16 partitions in member ... (pid
 * 4242@db1); this one asks for 8: ..."), EDDY_ESTATE (read-only or closing
 * store), EDDY_ENOMEM, or a store error. On failure no handler ever runs.
 * The handler is never called from inside this call. Thread-safe.
 */
eddy_durable *eddy_durable_start(eddy_store *store,
                                 const eddy_durable_options *opts,
                                 eddy_error *err);

/*
 * Stops reading, lets the workers finish the handler calls in progress and
 * the queued events that are not parked, persists the final checkpoint,
 * frees its partitions for the other members (they take them over at once)
 * and joins the threads. Parked events stay in the store (their retry
 * rows) and resume at the next start, or at the partition's next owner.
 * Returns EDDY_OK, or the error that stopped the subscription (a store
 * read error) or that the final checkpoint write failed with (`err`
 * filled). Idempotent. Must not be called from the subscription's own
 * handler. Thread-safe.
 */
int eddy_durable_stop(eddy_durable *d, eddy_error *err);

/* Stops (as eddy_durable_stop) and frees. NULL does nothing. */
void eddy_durable_free(eddy_durable *d);

/*
 * The subscription's checkpoint: the highest position P such that every
 * event at or below P was handled, skipped (matching none of its
 * patterns, or already done per the inbox) or dead-lettered. May be ahead
 * of the value persisted in the store by up to one checkpoint batch. With several members, of the
 * events of the partitions this member holds (a member holding none
 * follows the head); it moves back when the member takes over a partition
 * whose checkpoint is lower. Thread-safe.
 */
int64_t eddy_durable_checkpoint(const eddy_durable *d);

/*
 * Waits until the checkpoint reaches `position` (>= position) and no dead
 * letter of this subscription is marked for redrive (each marked one was
 * redelivered: deleted after a success, back to "dead" after a failure;
 * with several members, by the member holding its event's partition), or
 * until `timeout_ms` passes (< 0: no limit); then persists the
 * checkpoint. Returns EDDY_OK, EDDY_ETIMEDOUT, EDDY_ESTOPPED if the
 * subscription ended before (or is stopped with dead letters still
 * marked), or a store error reading the dead letters. Thread-safe; not
 * from the subscription's handler.
 */
int eddy_durable_wait_idle(eddy_durable *d, int64_t position, int timeout_ms);

/*
 * Redelivers dead letter `id` of this subscription to its handler now, on
 * the calling thread (TRANSACTIONAL: in a write job), once. On success the
 * dead letter is deleted (for TRANSACTIONAL, in the handler's transaction);
 * on failure it stays, status "dead", attempts + 1, with the new error.
 * Returns EDDY_OK, the handler's error (`err` holds its message),
 * EDDY_ENOTFOUND (no such dead letter of this subscription) or a store
 * error. Thread-safe; not from the subscription's own handler.
 */
int eddy_durable_redrive(eddy_durable *d, int64_t id, eddy_error *err);

/* ---- the dead-letter store -------------------------------------------- */

/* A dead letter's status. */
#define EDDY_DLQ_DEAD "dead"       /* parked for inspection */
#define EDDY_DLQ_REDRIVE "redrive" /* marked for the running subscription
                                      to redeliver */

/*
 * A dead letter: a read-only view. Strings and `event` are borrowed from
 * whoever gave the view (the list callback: for the call; eddy_dlq_get:
 * until eddy_dead_letter_free).
 */
typedef struct eddy_dead_letter {
    int64_t id;               /* the dead letter's id (1, 2, ...) */
    const char *handler;      /* the subscription / handler name */
    eddy_event *event;        /* the event that failed; NULL when its
                                 stored copy does not decode (damaged
                                 bytes): then `event_error` says why */
    const char *event_id;     /* the event's id and type, kept beside it */
    const char *event_type;
    const char *event_error;  /* NULL, or why `event` is NULL */
    int64_t position;         /* its global position */
    int error_code;           /* the last error code */
    const char *error;        /* the last error message */
    int attempts;             /* handler calls that failed */
    int64_t first_failure_us; /* microseconds since the epoch */
    int64_t last_failure_us;
    const char *status;       /* EDDY_DLQ_DEAD or EDDY_DLQ_REDRIVE */
} eddy_dead_letter;

/* Called for each dead letter; `dl` is borrowed for the call. Return
 * non-zero to stop the walk (that value is returned). */
typedef int (*eddy_dead_letter_fn)(const eddy_dead_letter *dl, void *user);

/*
 * Calls `fn` for the dead letters of `handler` (NULL: every handler), oldest
 * id first. The rows are read on a reader connection (never queued behind
 * the writer; works on a store opened read-only), a page at a time, then
 * `fn` runs on the calling thread with no connection held (it may call
 * other eddy_dlq_* functions). A dead letter whose stored event does not
 * decode is still listed, with `event` NULL and `event_error` saying why,
 * so one damaged row hides no other. Returns EDDY_OK, `fn`'s non-zero
 * value or a store error. Thread-safe.
 */
int eddy_dlq_list(eddy_store *store, const char *handler,
                  eddy_dead_letter_fn fn, void *user, eddy_error *err);

/*
 * Loads dead letter `id` into `*out` (destructor: eddy_dead_letter_free),
 * on a reader connection (works on a read-only store). Returns EDDY_OK,
 * EDDY_ENOTFOUND, EDDY_EPARSE (its stored event does not decode) or a store
 * error. Thread-safe.
 */
int eddy_dlq_get(eddy_store *store, int64_t id, eddy_dead_letter **out,
                 eddy_error *err);

/* Frees a dead letter from eddy_dlq_get. NULL does nothing. */
void eddy_dead_letter_free(eddy_dead_letter *dl);

/*
 * Marks dead letter `id` for redrive. Nothing is redelivered by this call:
 * the durable subscription of its handler (eddy_dead_letter.handler) does
 * it, so that subscription must run, in this process or another one on the
 * same store. A running one redelivers it within about 200 ms (at once
 * when eddy_durable_wait_idle is called on it), one that starts later
 * redelivers it when it starts; it deletes the dead letter if the handler
 * succeeds and puts it back to "dead" (attempts + 1, new error) if not. It
 * is never deleted before a success. Redrive ignores per-key order: the key
 * moved on when the event was dead-lettered. Returns EDDY_OK,
 * EDDY_ENOTFOUND or a store error. Thread-safe.
 */
int eddy_dlq_redrive(eddy_store *store, int64_t id, eddy_error *err);

/* Marks every "dead" dead letter of `handler` (NULL: all) for redrive;
 * `*count` (may be NULL) receives how many. Thread-safe. */
int eddy_dlq_redrive_all(eddy_store *store, const char *handler,
                         size_t *count, eddy_error *err);

/* Deletes dead letter `id` for good. Returns EDDY_OK, EDDY_ENOTFOUND or a
 * store error. Thread-safe. */
int eddy_dlq_delete(eddy_store *store, int64_t id, eddy_error *err);

/* Deletes every dead letter of `handler` (NULL: all); `*count` (may be
 * NULL) receives how many. Thread-safe. */
int eddy_dlq_purge(eddy_store *store, const char *handler, size_t *count,
                   eddy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_DURABLE_H */
