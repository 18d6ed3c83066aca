/*
 * eddy/metrics.h - processing metrics: counters, latency histograms, gauges,
 * snapshots, Prometheus text exposition.
 *
 * A metrics registry (eddy_metrics) holds one *series* per (handler, event
 * type) pair. A series counts events whose handling began and ended, their
 * outcome (succeeded / failed), retries and dead letters, the events in
 * flight, and a latency histogram. Recording on a series is lock-free (C11
 * atomics only) and allocation-free, so it belongs on a hot path: look the
 * series up once, cache the pointer (valid until eddy_metrics_free), and
 * call eddy_metrics_begin / eddy_metrics_end around each handler call.
 *
 *     eddy_metrics_series *s = eddy_metrics_series_get(m, "payment",
 *                                                      "order.placed");
 *     eddy_metrics_begin(s);
 *     uint64_t t0 = eddy_metrics_clock_ns();
 *     int rc = handle(ev);
 *     eddy_metrics_end(s, rc, eddy_metrics_clock_ns() - t0);
 *
 * LATENCY HISTOGRAM
 *
 * Durations are recorded in nanoseconds into fixed log-linear buckets:
 * exact below 32 ns, then every power-of-two range [2^e, 2^(e+1)) is split
 * into 16 equal sub-buckets, up to 2^40 ns (about 18.3 minutes); longer
 * durations share one overflow bucket. A percentile is reported as the
 * midpoint of the bucket that holds it, capped at the exact maximum, so it
 * is within 1/32 (3.125 %) of the true nearest-rank percentile of the
 * recorded values (for durations up to 2^40 ns; above that the maximum is
 * reported). The 100th percentile is the maximum, and the sum (hence the
 * average) and the maximum are exact.
 * A histogram costs about 5 KiB per series.
 *
 * GAUGES
 *
 * Named gauges with at most one label, such as the depth of a queue or the
 * lag of a subscription (global head position minus its checkpoint). A gauge
 * either holds a value set with eddy_metrics_gauge_set, or calls a function
 * registered with eddy_metrics_gauge_register each time a snapshot or an
 * exposition is taken, so that a lag is computed on demand.
 *
 * SNAPSHOTS
 *
 * eddy_metrics_snapshot_take copies every series and gauge. A snapshot taken
 * while other threads record is not an atomic cut: each counter is exact at
 * the moment it was read, but counters are read one after the other, so two
 * of them (say handled and the histogram's count) may be a few events apart.
 *
 * THREADING
 *
 * Every function here is thread-safe, except eddy_metrics_free, which must
 * not run concurrently with any other call on the same registry.
 */
#ifndef EDDY_METRICS_H
#define EDDY_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eddy/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_metrics eddy_metrics;

/* One (handler, event type) series; owned by its registry. */
typedef struct eddy_metrics_series eddy_metrics_series;

/* A copy of a registry's series and gauges at one time. */
typedef struct eddy_metrics_snapshot eddy_metrics_snapshot;

/*
 * The outcome passed to eddy_metrics_end. EDDY_OUTCOME_SUCCESS equals
 * EDDY_OK, and every other value counts as a failure, so a handler's return
 * code can be passed as it is.
 */
enum {
    EDDY_OUTCOME_SUCCESS = 0,
    EDDY_OUTCOME_FAILURE = 1
};

/* Well-known gauge names (Prometheus conventions: base unit, no _total). */
#define EDDY_METRIC_QUEUE_DEPTH "eddy_queue_depth"
#define EDDY_METRIC_SUBSCRIPTION_LAG "eddy_subscription_lag_events"

/* The most series one registry holds (about 50 MiB of histograms). */
#define EDDY_METRICS_MAX_SERIES 10000

/* ---- the registry ----------------------------------------------------- */

/*
 * Creates an empty registry. Destructor: eddy_metrics_free. Returns NULL
 * when out of memory. Thread-safe.
 */
eddy_metrics *eddy_metrics_new(void);

/*
 * Frees the registry, its series (every eddy_metrics_series pointer it gave
 * out becomes invalid) and its gauges. NULL does nothing. No other call on
 * `m` may run concurrently or follow.
 */
void eddy_metrics_free(eddy_metrics *m);

/*
 * A monotonic clock in nanoseconds (CLOCK_MONOTONIC), for durations passed
 * to eddy_metrics_end. Only differences are meaningful. Thread-safe.
 */
uint64_t eddy_metrics_clock_ns(void);

/* ---- series and recording --------------------------------------------- */

/*
 * Finds the series of (`handler`, `event_type`), creating it on first use.
 * Both strings are copied; each must be non-empty, valid UTF-8 and at most
 * 1024 bytes. The returned pointer is owned by `m` and stays valid until
 * eddy_metrics_free: cache it on a hot path.
 *
 * Finding an existing series is lock-free (a hash and string compares);
 * creating one takes the registry's mutex and allocates about 5 KiB.
 *
 * Returns NULL when `m`, `handler` or `event_type` is NULL or invalid (a
 * warning is logged naming the problem), when the registry already holds
 * EDDY_METRICS_MAX_SERIES series (a bound on memory when event types come
 * from outside; a warning is logged once) or when out of memory. The recording
 * functions below accept NULL and do nothing, so a caller need not check.
 * Thread-safe.
 */
eddy_metrics_series *eddy_metrics_series_get(eddy_metrics *m,
                                             const char *handler,
                                             const char *event_type);

/*
 * Marks the start of one handler invocation: in flight + 1. Lock-free,
 * wait-free, never fails; NULL does nothing. Thread-safe.
 */
void eddy_metrics_begin(eddy_metrics_series *s);

/*
 * Marks the end of an invocation started with eddy_metrics_begin: in flight
 * - 1, handled + 1, succeeded + 1 when `outcome` is EDDY_OUTCOME_SUCCESS
 * (0) or else failed + 1, and `duration_ns` added to the histogram, the sum
 * and the maximum. Lock-free (the maximum is raised by a compare-and-swap
 * loop that only runs while the value is a new maximum), never fails; NULL
 * does nothing. Thread-safe.
 */
void eddy_metrics_end(eddy_metrics_series *s, int outcome,
                      uint64_t duration_ns);

/* Counts one retry scheduled after a failure. Lock-free; NULL does nothing.
 * Thread-safe. */
void eddy_metrics_retried(eddy_metrics_series *s);

/* Counts one event moved to the dead-letter store. Lock-free; NULL does
 * nothing. Thread-safe. */
void eddy_metrics_dead_lettered(eddy_metrics_series *s);

/* ---- gauges ----------------------------------------------------------- */

/*
 * Computes a gauge's value into `*value`. Returns EDDY_OK, or an error code
 * to leave the gauge out of this snapshot (for example when the store it
 * reads is closed).
 *
 * It runs on the thread that takes a snapshot or an exposition, with the
 * registry's gauge mutex held (so it is never called concurrently with
 * itself, and eddy_metrics_gauge_unregister waits for it to return). It
 * must be quick and must not call eddy_metrics_gauge_*,
 * eddy_metrics_snapshot_take, eddy_metrics_prometheus or
 * eddy_metrics_format_table on the same registry (that would deadlock).
 */
typedef int (*eddy_metrics_gauge_fn)(double *value, void *user);

/*
 * Sets the gauge `name`{`label_name`="`label_value`"} to `value`, creating
 * it on first use. `label_name` and `label_value` are both NULL for a gauge
 * without a label, or both set. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*
 * and not start with "eddy_handler_" (those are the series' families);
 * `label_name` must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__";
 * `label_value` must be valid UTF-8. `help` (may be NULL) describes the
 * metric family; the help of the first gauge of a name is kept. All strings
 * are copied.
 *
 * Takes the gauge mutex: fine for a value that changes now and then; for a
 * value that changes on every event, register a function instead.
 *
 * Returns EDDY_OK; EDDY_EINVAL for a bad name or label; EDDY_EEXIST when
 * that gauge is a registered function; EDDY_ENOMEM. `err` (may be NULL) is
 * filled on failure. Thread-safe.
 */
int eddy_metrics_gauge_set(eddy_metrics *m, const char *name, const char *help,
                           const char *label_name, const char *label_value,
                           double value, eddy_error *err);

/*
 * Registers `fn` as the gauge `name`{`label_name`="`label_value`"}: it is
 * called with `user` each time a snapshot or an exposition is taken, never
 * from inside this call. Names, labels and `help` as for
 * eddy_metrics_gauge_set. `user` is borrowed until the gauge is
 * unregistered or the registry freed.
 *
 * Returns EDDY_OK; EDDY_EINVAL for a bad name or label or a NULL `fn`;
 * EDDY_EEXIST when that gauge exists already; EDDY_ENOMEM. On failure `fn`
 * is never called and `err` (may be NULL) is filled. Thread-safe.
 */
int eddy_metrics_gauge_register(eddy_metrics *m, const char *name,
                                const char *help, const char *label_name,
                                const char *label_value,
                                eddy_metrics_gauge_fn fn, void *user,
                                eddy_error *err);

/*
 * Removes the gauge `name`{`label_name`="`label_value`"}, set or registered.
 * Once it returns, a registered function is not running and is never called
 * again, so its `user` data may be freed. Must not be called from a gauge
 * function. Returns EDDY_OK, EDDY_EINVAL (NULL `m` or `name`) or
 * EDDY_ENOTFOUND. Thread-safe.
 */
int eddy_metrics_gauge_unregister(eddy_metrics *m, const char *name,
                                  const char *label_name,
                                  const char *label_value);

/* ---- snapshots -------------------------------------------------------- */

/*
 * The state of one series in a snapshot: a read-only view whose strings are
 * owned by the snapshot. Durations are in nanoseconds. New fields are only
 * ever added at the end.
 */
typedef struct eddy_metrics_series_stats {
    const char *handler;
    const char *event_type;
    uint64_t handled;       /* ended invocations: succeeded + failed */
    uint64_t succeeded;
    uint64_t failed;
    uint64_t retried;
    uint64_t dead_lettered;
    int64_t in_flight;      /* begun and not yet ended */
    double failure_rate;    /* failed / handled; 0 when nothing was handled */
    uint64_t sum_ns;        /* exact sum of recorded durations */
    uint64_t avg_ns;        /* sum_ns / handled (rounded down); 0 if none */
    uint64_t p50_ns;        /* percentiles within 3.125 %, see above */
    uint64_t p90_ns;
    uint64_t p99_ns;
    uint64_t max_ns;        /* exact */
} eddy_metrics_series_stats;

/* One gauge in a snapshot; strings owned by the snapshot. */
typedef struct eddy_metrics_gauge_stats {
    const char *name;
    const char *help;        /* never NULL; "" when none was given */
    const char *label_name;  /* NULL for a gauge without a label */
    const char *label_value; /* NULL for a gauge without a label */
    double value;
} eddy_metrics_gauge_stats;

/*
 * Copies every series (sorted by handler, then event type) and every gauge
 * (sorted by name, then label value; registered functions are called now,
 * and a gauge whose function fails is left out). Not an atomic cut, see
 * SNAPSHOTS above. Destructor: eddy_metrics_snapshot_free. Returns NULL
 * with `err` (may be NULL) filled when `m` is NULL (EDDY_EINVAL) or out of
 * memory. Thread-safe; never blocks recording threads.
 */
eddy_metrics_snapshot *eddy_metrics_snapshot_take(eddy_metrics *m,
                                                  eddy_error *err);

/* Frees a snapshot and every view it gave out. NULL does nothing. */
void eddy_metrics_snapshot_free(eddy_metrics_snapshot *snap);

/* The number of series in `snap` (0 for NULL). Thread-safe (read-only). */
size_t eddy_metrics_snapshot_series_count(const eddy_metrics_snapshot *snap);

/* The `i`th series of `snap`, borrowed from it; NULL when `i` is out of
 * range. Thread-safe (read-only). */
const eddy_metrics_series_stats *
eddy_metrics_snapshot_series(const eddy_metrics_snapshot *snap, size_t i);

/*
 * The `q`-quantile (0 < q <= 1, e.g. 0.999) of the `i`th series' durations
 * in nanoseconds, with the error stated above; 0 when `i` is out of range,
 * `q` is outside (0, 1] or nothing was recorded. Thread-safe (read-only).
 */
uint64_t eddy_metrics_snapshot_percentile(const eddy_metrics_snapshot *snap,
                                          size_t i, double q);

/* The number of gauges in `snap` (0 for NULL). Thread-safe (read-only). */
size_t eddy_metrics_snapshot_gauge_count(const eddy_metrics_snapshot *snap);

/* The `i`th gauge of `snap`, borrowed from it; NULL when out of range.
 * Thread-safe (read-only). */
const eddy_metrics_gauge_stats *
eddy_metrics_snapshot_gauge(const eddy_metrics_snapshot *snap, size_t i);

/* ---- output ----------------------------------------------------------- */

/*
 * The registry in the Prometheus text exposition format 0.0.4, from a fresh
 * snapshot. Per series, labelled {handler="...",type="..."}:
 *
 *   eddy_handler_events_handled_total        counter
 *   eddy_handler_events_failed_total         counter
 *   eddy_handler_events_retried_total        counter
 *   eddy_handler_events_dead_lettered_total  counter
 *   eddy_handler_events_in_flight            gauge
 *   eddy_handler_duration_seconds            histogram, buckets le = 1 us,
 *                                            2.5 us, 5 us, 10 us ... 10 s
 *                                            (1-2.5-5 steps) and +Inf
 *
 * then every gauge. Each family has one # HELP and one # TYPE line; label
 * values are escaped (\\, \", \n). Bucket counts are exact (each bound is
 * counted by its own atomic counter) and _count equals the +Inf bucket.
 *
 * Returns a NUL-terminated string the caller frees with free(), or NULL
 * when `m` is NULL or out of memory. Thread-safe.
 */
char *eddy_metrics_prometheus(eddy_metrics *m);

/*
 * Writes a human-readable table to `out`: one row per series (handler,
 * type, handled, failed, retried, dead, in flight, p50, p99, max, with
 * durations in ns / us / ms / s), then the gauges. Returns EDDY_OK,
 * EDDY_EINVAL (NULL argument), EDDY_ENOMEM or EDDY_EIO (write error).
 * Thread-safe (writes to `out` are the caller's to serialise).
 */
int eddy_metrics_format_table(eddy_metrics *m, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_METRICS_H */
