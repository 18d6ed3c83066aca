/*
 * src/store/state_observe.h - the store's read operations for observing a
 * running system: following one flow (trace), who publishes and handles
 * what (graph), and the figures of durable consumers and outbox
 * destinations (eddy stats, dashboards).
 *
 * All of them read committed data on a reader connection: they work on a
 * read-only store and never wait for the writer. Thread-safe. Strings are
 * borrowed for the row callback; a callback's non-zero return stops the walk
 * and is returned.
 */
#ifndef EDDY_SRC_STORE_STATE_OBSERVE_H
#define EDDY_SRC_STORE_STATE_OBSERVE_H

#include <stdint.h>

#include "eddy/store.h"

/* ---- a flow ----------------------------------------------------------------- */

/*
 * The correlation id of the flow `id` names: an event id (its correlation
 * id, or the id itself when it has none), a correlation id, a stream id or
 * a subject (the correlation of its first event). `*out` receives a
 * malloc'd string, or NULL when nothing matches.
 */
int eddyi_trace_correlation(eddy_store *s, const char *id, char **out,
                            eddy_error *err);

typedef struct eddyi_trace_event {
    int64_t position;
    int64_t recorded_us;
    const char *payload; /* the stored CloudEvents JSON */
    size_t payload_len;
} eddyi_trace_event;

/* Calls `fn` for the event whose id is `correlation` and every event with
 * that correlation id, by position. */
int eddyi_trace_events(eddy_store *s, const char *correlation,
                       int (*fn)(const eddyi_trace_event *ev, void *user),
                       void *user, eddy_error *err);

typedef struct eddyi_trace_command {
    const char *id;
    const char *name;
    const char *saga_type;
    const char *causation_id;
    int64_t created_us;
} eddyi_trace_command;

/* Calls `fn` for each saga command of the flow, in the order queued. */
int eddyi_trace_commands(eddy_store *s, const char *correlation,
                         int (*fn)(const eddyi_trace_command *c, void *user),
                         void *user, eddy_error *err);

/* ---- the graph ---------------------------------------------------------------- */

typedef enum eddyi_graph_query {
    EDDYI_GRAPH_PUBLISHERS, /* (source, type, count) */
    EDDYI_GRAPH_CAUSES,     /* (type of the cause, source of the effect,
                               count): the source handles that type */
    EDDYI_GRAPH_SENDS,      /* (saga type, command name, count) */
    EDDYI_GRAPH_LEADS_TO    /* (command name, type it caused, count) */
} eddyi_graph_query;

/* Calls `fn(from, to, count)` for each row of graph query `q`. */
int eddyi_graph_edges(eddy_store *s, eddyi_graph_query q,
                      int (*fn)(const char *from, const char *to,
                                int64_t count, void *user),
                      void *user, eddy_error *err);

/* Calls `fn` for each distinct stored event type, in order. */
int eddyi_graph_types(eddy_store *s,
                      int (*fn)(const char *type, void *user), void *user,
                      eddy_error *err);

/* ---- figures ------------------------------------------------------------------ */

typedef struct eddyi_consumer_row {
    const char *name;
    const char *kind;     /* "" when not in the registry */
    const char *pattern;  /* "" when not in the registry */
    int64_t checkpoint;   /* -1: none stored */
    int64_t checkpoint_updated_us;
    int64_t retries;
    int64_t dead_letters;
    int64_t redrive_pending;
    int64_t head;         /* read in the same snapshot */
} eddyi_consumer_row;

/* Calls `fn` for every consumer that has a checkpoint, retry rows, dead
 * letters or a registry record, by name; every figure from one snapshot. */
int eddyi_consumers(eddy_store *s,
                    int (*fn)(const eddyi_consumer_row *row, void *user),
                    void *user, eddy_error *err);

typedef struct eddyi_outbox_row {
    const char *destination;
    int64_t pending;
    int64_t sent;
    int64_t oldest_pending_us; /* 0: none pending */
} eddyi_outbox_row;

/* Calls `fn` for each outbox destination, by name. */
int eddyi_outbox_destinations(eddy_store *s,
                              int (*fn)(const eddyi_outbox_row *row,
                                        void *user),
                              void *user, eddy_error *err);

#endif
