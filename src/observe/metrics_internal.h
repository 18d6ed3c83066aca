/*
 * src/observe/metrics_internal.h - what metrics.c (registry, recording,
 * snapshots) shares with metrics_text.c (Prometheus text, tables); not
 * public.
 */
#ifndef EDDY_SRC_OBSERVE_METRICS_INTERNAL_H
#define EDDY_SRC_OBSERVE_METRICS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "eddy/metrics.h"

/*
 * The latency histogram's buckets. Durations below 2^EDDYI_HIST_SUB_BITS+1
 * ns (32) each have their own bucket; above, every range [2^e, 2^(e+1)) is
 * split into 2^EDDYI_HIST_SUB_BITS (16) equal sub-buckets, up to
 * 2^EDDYI_HIST_MAX_EXP ns; larger durations go to the last (overflow)
 * bucket.
 */
#define EDDYI_HIST_SUB_BITS 4
#define EDDYI_HIST_SUB (1u << EDDYI_HIST_SUB_BITS)
#define EDDYI_HIST_MAX_EXP 40
#define EDDYI_HIST_OVERFLOW                                                    \
    ((EDDYI_HIST_MAX_EXP - EDDYI_HIST_SUB_BITS + 1) * EDDYI_HIST_SUB)
#define EDDYI_HIST_BUCKETS (EDDYI_HIST_OVERFLOW + 1)

/* The Prometheus histogram's finite upper bounds (1 us .. 10 s, in ns); the
 * counter at index EDDYI_PROM_BOUNDS counts durations above the last. */
#define EDDYI_PROM_BOUNDS 22
extern const uint64_t eddyi_prom_bounds_ns[EDDYI_PROM_BOUNDS];

/* A series' atomic slots: a slot per bucket, plus one per Prometheus bound
 * for the durations above the bound inside the bucket that holds it. */
#define EDDYI_HIST_SLOTS (EDDYI_HIST_BUCKETS + EDDYI_PROM_BOUNDS)

/* One series in a snapshot: the public view plus the raw buckets. */
struct eddyi_snap_series {
    eddy_metrics_series_stats st;
    uint64_t hist_count;                     /* sum of hist[] */
    uint64_t hist[EDDYI_HIST_BUCKETS];       /* split slots merged back */
    uint64_t prom[EDDYI_PROM_BOUNDS + 1];    /* not cumulative */
};

struct eddy_metrics_snapshot {
    size_t nseries;
    struct eddyi_snap_series *series;
    size_t ngauges;
    eddy_metrics_gauge_stats *gauges;
};

#endif
