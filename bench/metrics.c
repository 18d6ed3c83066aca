/*
 * bench/metrics.c - the cost of recording one handler invocation
 * (eddy_metrics_begin + eddy_metrics_end) in ns, on one thread and on two,
 * and of looking a series up; with a mutex-guarded recorder of the same
 * data as the point of comparison for "no locks on the hot path".
 *
 *   bench/metrics [records-per-thread]     (default 10000000)
 *
 * Prints one line per case: name, threads, records, ns per record (wall
 * time of the whole run divided by the records of one thread, i.e. the
 * latency a recording thread sees, not throughput), as the minimum and the
 * median of REPS runs: the machine may be shared, and the minimum is the
 * least disturbed run.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/metrics.h"

static uint64_t records = 10000000;

#define REPS 5

/* Durations that move over the histogram (0 .. ~40 us), as a handler's do. */
static inline uint64_t duration_of(uint64_t i)
{
    return (i * 2654435761u) % 40000u;
}

/* ---- the lock-free recorder ---------------------------------------------- */

struct job {
    eddy_metrics_series *series;
    pthread_barrier_t *start;
};

static void *record_loop(void *arg)
{
    struct job *job = arg;
    pthread_barrier_wait(job->start);
    for (uint64_t i = 0; i < records; i++) {
        eddy_metrics_begin(job->series);
        eddy_metrics_end(job->series, (i & 63) ? EDDY_OUTCOME_SUCCESS
                                               : EDDY_OUTCOME_FAILURE,
                         duration_of(i));
    }
    return NULL;
}

/* ---- a mutex-guarded recorder of the same data, for comparison ------------ */

struct locked_series {
    pthread_mutex_t lock;
    int64_t in_flight;
    uint64_t succeeded, failed, sum_ns, max_ns;
    uint64_t hist[600];
};

struct locked_job {
    struct locked_series *series;
    pthread_barrier_t *start;
};

static void *locked_loop(void *arg)
{
    struct locked_job *job = arg;
    struct locked_series *s = job->series;
    pthread_barrier_wait(job->start);
    for (uint64_t i = 0; i < records; i++) {
        pthread_mutex_lock(&s->lock);
        s->in_flight++;
        pthread_mutex_unlock(&s->lock);
        uint64_t d = duration_of(i);
        pthread_mutex_lock(&s->lock);
        s->in_flight--;
        if (i & 63)
            s->succeeded++;
        else
            s->failed++;
        s->sum_ns += d;
        if (d > s->max_ns)
            s->max_ns = d;
        s->hist[d >> 6 < 600 ? d >> 6 : 599]++;
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

/* Runs `fn` on `n` threads, each with its own argument, and returns the
 * wall time in ns from the common start to the last join. */
static uint64_t run_threads(int n, void *(*fn)(void *), void **args,
                            pthread_barrier_t *start)
{
    pthread_t th[8];
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, args[i]) != 0) {
            fprintf(stderr, "metrics bench: pthread_create failed\n");
            exit(1);
        }
    uint64_t t0 = eddy_metrics_clock_ns();
    pthread_barrier_wait(start);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return eddy_metrics_clock_ns() - t0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* `ns` holds REPS wall times; sorted here. */
static void report(const char *name, int threads, uint64_t *ns)
{
    qsort(ns, REPS, sizeof *ns, cmp_u64);
    printf("%-38s threads=%d records/thread=%" PRIu64
           "  min %.1f  median %.1f ns/record\n",
           name, threads, records, (double)ns[0] / (double)records,
           (double)ns[REPS / 2] / (double)records);
}

static uint64_t lockfree_case(eddy_metrics *m, int threads, int shared)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    struct job jobs[8];
    void *args[8];
    for (int i = 0; i < threads; i++) {
        char handler[32];
        snprintf(handler, sizeof handler, "h%d%s", threads, shared ? "" : "own");
        if (!shared)
            snprintf(handler + strlen(handler), sizeof handler - strlen(handler),
                     "%d", i);
        jobs[i].series = eddy_metrics_series_get(m, handler, "bench.event");
        jobs[i].start = &start;
        args[i] = &jobs[i];
        if (!jobs[i].series) {
            fprintf(stderr, "metrics bench: series_get failed\n");
            exit(1);
        }
    }
    uint64_t ns = run_threads(threads, record_loop, args, &start);
    pthread_barrier_destroy(&start);
    return ns;
}

static uint64_t locked_case(int threads)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    struct locked_series *s = calloc(1, sizeof *s);
    if (!s)
        exit(1);
    pthread_mutex_init(&s->lock, NULL);
    struct locked_job jobs[8];
    void *args[8];
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct locked_job){s, &start};
        args[i] = &jobs[i];
    }
    uint64_t ns = run_threads(threads, locked_loop, args, &start);
    if (s->succeeded + s->failed != records * (uint64_t)threads) {
        fprintf(stderr, "metrics bench: locked recorder lost counts\n");
        exit(1);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_barrier_destroy(&start);
    free(s);
    return ns;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        char *end;
        records = strtoull(argv[1], &end, 10);
        if (*end || records == 0) {
            fprintf(stderr, "usage: %s [records-per-thread]\n", argv[0]);
            return 2;
        }
    }
    eddy_metrics *m = eddy_metrics_new();
    if (!m)
        return 1;

    uint64_t ns[REPS];
    for (int r = 0; r < REPS; r++)
        ns[r] = lockfree_case(m, 1, 1);
    report("lock-free, one series", 1, ns);
    for (int r = 0; r < REPS; r++)
        ns[r] = lockfree_case(m, 2, 1);
    report("lock-free, one shared series", 2, ns);
    for (int r = 0; r < REPS; r++)
        ns[r] = lockfree_case(m, 2, 0);
    report("lock-free, a series per thread", 2, ns);
    for (int r = 0; r < REPS; r++)
        ns[r] = locked_case(1);
    report("mutex (comparison), one series", 1, ns);
    for (int r = 0; r < REPS; r++)
        ns[r] = locked_case(2);
    report("mutex (comparison), one shared series", 2, ns);

    /* The lock-free lookup of an existing series (hash + compares). */
    eddy_metrics_series *first = eddy_metrics_series_get(m, "h1", "bench.event");
    for (int r = 0; r < REPS; r++) {
        uint64_t t0 = eddy_metrics_clock_ns();
        for (uint64_t i = 0; i < records; i++)
            if (eddy_metrics_series_get(m, "h1", "bench.event") != first)
                return 1;
        ns[r] = eddy_metrics_clock_ns() - t0;
    }
    report("series_get of an existing series", 1, ns);

    /* The counts are exact: 1 + 2 + 2 threads recorded `records` each,
     * REPS times. */
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    uint64_t total = 0;
    for (size_t i = 0; i < eddy_metrics_snapshot_series_count(snap); i++)
        total += eddy_metrics_snapshot_series(snap, i)->handled;
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
    if (total != 5 * REPS * records) {
        fprintf(stderr, "metrics bench: %" PRIu64 " recorded, expected %" PRIu64 "\n",
                total, 5 * REPS * records);
        return 1;
    }
    return 0;
}
