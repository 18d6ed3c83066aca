/*
 * src/es/es_internal.h - the layouts shared by the event-sourcing files.
 */
#ifndef EDDY_SRC_ES_ES_INTERNAL_H
#define EDDY_SRC_ES_ES_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eddy/es.h"

struct eddy_repository {
    eddy_store *store;               /* borrowed */
    const eddy_aggregate_type *type; /* borrowed */
    const char *source;              /* type->source or type->name */
    bool snapshots;                  /* snapshot + restore + snapshot_every */
    atomic_uint_fast64_t loads, snapshot_hits, snapshot_misses,
        events_replayed, saves, conflicts, snapshots_written;
};

struct eddy_aggregate {
    eddy_repository *repo; /* borrowed */
    char *id;
    char *stream_id;       /* "<type name>-<id>" */
    int64_t version;       /* loaded / last saved stream version */
    void *state;           /* type->state_size bytes */
    eddy_event **pending;  /* uncommitted events, one reference each */
    size_t npending, cap;
};

/* A new aggregate with a freshly init'ed state and version 0, or NULL
 * (out of memory; `err` filled). */
eddy_aggregate *eddyi_aggregate_new(eddy_repository *repo, const char *id,
                                    eddy_error *err);

/* Puts the state back to a freshly init'ed one (after a failed restore). */
void eddyi_aggregate_reset(eddy_aggregate *agg);

/* Drops the uncommitted events (after a successful save). */
void eddyi_aggregate_clear_pending(eddy_aggregate *agg);

#endif
