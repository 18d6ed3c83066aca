/*
 * eddy/outbox.h - the transactional outbox and its relay: how events leave
 * the process.
 *
 * A producer appends events to the store and queues them for an external
 * publisher in ONE transaction (eddy_outbox_append): either the events are
 * stored and queued, or neither. A relay thread (eddy_outbox_relay_start)
 * then reads the queued rows in queue order, hands each event to a
 * publisher (an eddy_publisher: a table of functions; the transports come
 * later, eddy_publisher_bus is the in-process one) and marks them sent, in
 * batches.
 *
 * DELIVERY: at-least-once, in queue order. A row is marked sent only after
 * its publish returned EDDY_OK, so a crash (or a stop) between the publish
 * and the mark makes the next relay publish it again: consumers deduplicate
 * by event id (eddy_event_id). A failed publish is retried with backoff
 * (the relay's `retry` policy, eddy/retry.h); the relay never skips ahead
 * of a row it could not publish, and never drops one.
 *
 * STORAGE: the store's outbox table, part of the store's schema (on
 * SQLite: eddy_outbox(seq, position, event_id, destination, payload,
 * created_us, sent_us, attempts)). The relay reads it on the store's reader
 * connections and writes (marks sent) through the store's writer.
 *
 * THREADING: every function here is thread-safe unless it says otherwise.
 * A relay runs one thread of its own; run one relay per store and
 * destination (two relays over the same rows would publish them twice,
 * which is still at-least-once but wasteful).
 */
#ifndef EDDY_OUTBOX_H
#define EDDY_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "eddy/bus.h"
#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/retry.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- publishers ------------------------------------------------------- */

/*
 * Where a relay sends events: a table of functions, like a backend table.
 *
 * publish: sends `ev` (borrowed for the call; eddy_event_ref it to keep it)
 *   to `destination` (borrowed: the destination the row was queued with).
 *   Returns EDDY_OK once the event is handed over, or an error code (with
 *   `err` filled when there is something to say); the relay then retries
 *   the same event later. It runs on the relay's thread, one call at a time,
 *   and must not stop or free the relay that calls it. It may be called
 *   again for an event it already accepted (after a crash or a stop).
 * close: releases `self`; called once by eddy_outbox_relay_free. NULL: none.
 * self: the publisher's state, passed to both.
 */
typedef struct eddy_publisher {
    int (*publish)(void *self, const eddy_event *ev, const char *destination,
                   eddy_error *err);
    void (*close)(void *self);
    void *self;
} eddy_publisher;

/*
 * The in-process publisher: publish() is eddy_bus_publish(bus, ev) (the bus
 * takes its own reference), whatever the destination. `bus` is borrowed: it
 * must outlive every relay using the publisher, and close is NULL (the bus
 * is not freed). A full bus (EDDY_EFULL) or a stopped one (EDDY_ESTOPPED)
 * makes the relay retry. Cannot fail; thread-safe.
 */
eddy_publisher eddy_publisher_bus(eddy_bus *bus);

/* ---- producing -------------------------------------------------------- */

/*
 * Appends `count` events to stream `stream_id` exactly as eddy_store_append
 * does (expected version, idempotence, size limit, check hook), and in the
 * same transaction queues each of them for `destination` (non-empty UTF-8,
 * copied). Returns once the commit is durable; `result` (may be NULL) as
 * for eddy_store_append. All or nothing: on failure neither the events nor
 * the queue rows are stored.
 * Idempotent like eddy_store_append: a retry of the same events (same ids,
 * same content, same destination) after a lost acknowledgement stores and
 * queues nothing twice.
 * Errors: those of eddy_store_append; EDDY_EINVAL for a NULL/empty/invalid
 * destination; EDDY_EUNSUPPORTED for a store backend without SQL tables.
 * Thread-safe; blocks until the commit. Must not be called from a store
 * callback that runs on the writer thread.
 */
int eddy_outbox_append(eddy_store *s, const char *stream_id,
                       int64_t expected_version, eddy_event *const *events,
                       size_t count, const char *destination,
                       eddy_append_result *result, eddy_error *err);

/*
 * Sets `*count` to the number of queued rows not yet marked sent (every
 * destination when `destination` is NULL, else only that one). Reads on a
 * reader connection: works on a read-only store and never waits for the
 * writer. Returns EDDY_OK or a store error. Thread-safe.
 */
int eddy_outbox_pending(eddy_store *s, const char *destination,
                        int64_t *count, eddy_error *err);

/*
 * Deletes the rows marked sent before `sent_before_us` (microseconds since
 * the epoch; e.g. eddy_now_us() - 7 days). Unsent rows are never deleted.
 * `deleted` (may be NULL) receives the number of rows removed. Returns
 * EDDY_OK, EDDY_EINVAL (sent_before_us <= 0) or a store error. Thread-safe.
 */
int eddy_outbox_cleanup(eddy_store *s, int64_t sent_before_us,
                        int64_t *deleted, eddy_error *err);

/* ---- the relay -------------------------------------------------------- */

typedef struct eddy_outbox_relay eddy_outbox_relay;

#define EDDY_OUTBOX_DEFAULT_PAGE_ROWS 256
#define EDDY_OUTBOX_DEFAULT_MARK_BATCH 64
/* The relay's own defaults for retry.initial_delay_ms and
 * retry.max_delay_ms: it publishes one row at a time, in order, so every
 * row behind a failing one waits as long as it does. */
#define EDDY_OUTBOX_DEFAULT_RETRY_INITIAL_MS 50
#define EDDY_OUTBOX_DEFAULT_RETRY_MAX_MS 5000

/* Relay options; the zero value gives the defaults. Copied. */
typedef struct eddy_outbox_relay_options {
    const char *destination;  /* only rows queued for this destination;
                                 NULL: every destination */
    size_t page_rows;         /* rows read per page;
                                 0: EDDY_OUTBOX_DEFAULT_PAGE_ROWS */
    size_t mark_batch;        /* published rows marked sent per write (a
                                 smaller batch is marked whenever the relay
                                 runs out of rows, fails or stops);
                                 0: EDDY_OUTBOX_DEFAULT_MARK_BATCH */
    /* After a failed publish (eddy/retry.h): the row is retried after
     * the policy's backoff. Zero fields take the policy's defaults, except
     * initial_delay_ms (0: EDDY_OUTBOX_DEFAULT_RETRY_INITIAL_MS, or
     * max_delay_ms if smaller) and max_delay_ms (0:
     * EDDY_OUTBOX_DEFAULT_RETRY_MAX_MS, or initial_delay_ms if larger).
     * The relay NEVER drops a row: after retry.max_attempts failed
     * attempts, or an error retry.retryable refuses, it reports the row
     * (an error in the log, stats.stalled_seq) and keeps retrying it every
     * max_delay_ms until it succeeds or the relay stops; the rows behind
     * it wait. */
    eddy_retry_policy retry;
    int64_t cleanup_after_ms; /* > 0: the relay deletes rows sent more than
                                 this long ago (checked about once per
                                 cleanup_after_ms / 2, at most every
                                 second); 0: sent rows are kept */
} eddy_outbox_relay_options;

/* What a relay has done since it started. Plain data. */
typedef struct eddy_outbox_relay_stats {
    uint64_t published;   /* successful publish calls */
    uint64_t failures;    /* failed publish calls (each retried) */
    uint64_t marked;      /* rows marked sent */
    int64_t last_seq;     /* queue seq of the last row published (0: none) */
    int64_t stalled_seq;  /* queue seq of the row the relay is stuck on:
                             it failed beyond the retry policy and is
                             retried every retry.max_delay_ms (0: none) */
} eddy_outbox_relay_stats;

/*
 * Starts a relay thread that publishes the store's queued rows in queue
 * order through `pub`, and marks them sent. It catches up with every unsent
 * row, then sleeps until the store commits again (woken by the commit, not
 * by a polling timer; rows queued by OTHER processes are noticed within
 * about a second).
 * `pub` is copied; its `self` is taken on success (eddy_outbox_relay_free
 * calls pub->close(self)), untouched on failure. `opts` may be NULL.
 * Returns a new relay (destructor: eddy_outbox_relay_free), or NULL with
 * `err`: EDDY_EINVAL (no publish function, bad options or retry policy:
 * the message names the field), EDDY_ESTATE (read-only store),
 * EDDY_ENOMEM.
 * A failing publish is logged (component "outbox") at warn level and
 * retried with the backoff of opts->retry; past the policy it is logged at
 * error level and retried every retry.max_delay_ms, until it succeeds or
 * the relay stops. Thread-safe.
 */
eddy_outbox_relay *eddy_outbox_relay_start(eddy_store *s,
                                           const eddy_publisher *pub,
                                           const eddy_outbox_relay_options *opts,
                                           eddy_error *err);

/*
 * Stops the relay: a publish in progress finishes, the rows published so
 * far are marked sent, and the thread is joined. Returns EDDY_OK, or the
 * error that made the relay give up (a store error; `err` filled). Rows not
 * yet published stay queued for the next relay. Idempotent and
 * thread-safe: concurrent calls all return once the thread is joined, with
 * the same status. Must not be called from the relay's publisher.
 */
int eddy_outbox_relay_stop(eddy_outbox_relay *r, eddy_error *err);

/* Copies the relay's counters into `*out`. Thread-safe. */
void eddy_outbox_relay_stats_get(const eddy_outbox_relay *r,
                                 eddy_outbox_relay_stats *out);

/*
 * Stops the relay (as eddy_outbox_relay_stop), closes its publisher and
 * frees it. The store must still be open. NULL does nothing.
 */
void eddy_outbox_relay_free(eddy_outbox_relay *r);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_OUTBOX_H */
