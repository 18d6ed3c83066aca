/*
 * eddy/trace.h - following a flow through the store: the causal tree of
 * one correlation (`eddy trace`) and the graph of who publishes and who
 * handles which event type (`eddy graph`).
 *
 * Both read the store's events (their correlationid / causationid / source
 * attributes), the saga commands (eddy/saga.h) and the subscriptions that
 * running systems record in the store's subscription registry (name, what
 * it receives, kind) - projections and sagas record themselves; durable
 * handlers are recorded by eddy_durable_start.
 *
 * Both read committed data on the store's reader connections (correlation
 * lookups use the index on the events' correlation id): they work on a
 * store opened read-only, on every backend, while other threads and
 * processes write.
 *
 * THREADING. Every function is thread-safe for different objects; one
 * thread at a time per eddy_trace / eddy_graph.
 */
#ifndef EDDY_TRACE_H
#define EDDY_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "eddy/error.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_trace eddy_trace;
typedef struct eddy_graph eddy_graph;

typedef enum eddy_trace_kind {
    EDDY_TRACE_EVENT = 0,
    EDDY_TRACE_COMMAND = 1
} eddy_trace_kind;

/* One node of a trace: a read-only view, borrowed from the trace. */
typedef struct eddy_trace_node {
    eddy_trace_kind kind;
    const char *id;           /* event id or command id */
    const char *name;         /* event type or command name */
    const char *by;           /* event: its source (the handler or service
                                 that published it); command: the saga
                                 that sent it */
    const char *handler;      /* command: the saga type that sent it;
                                 event: NULL */
    const char *subject;      /* event subject (may be NULL) */
    const char *causation_id; /* may be NULL for the root */
    int64_t time_us;          /* event time / command creation time */
    int64_t offset_us;        /* time_us - the root's time_us */
    int64_t position;         /* event: global position; command: 0 */
    int depth;                /* 0 for roots */
} eddy_trace_node;

/*
 * Collects the flow that `id` belongs to: an event id (its correlation id
 * is used, or the id itself when the event has none), a correlation id, or
 * else a subject / aggregate id (the correlation of its first event).
 * Every event of that correlation and every saga command they caused are
 * arranged in a tree by causation, depth first, roots and children in time
 * order. Returns EDDY_OK with `*out` (destructor: eddy_trace_free), or
 * EDDY_ENOTFOUND ("no event, correlation, stream or subject \"X\""),
 * EDDY_EINVAL, EDDY_EPARSE (a stored event of the flow does not decode) or
 * a store error. Thread-safe.
 */
int eddy_trace_collect(eddy_store *store, const char *id, eddy_trace **out,
                       eddy_error *err);

/* Frees a trace. NULL does nothing. */
void eddy_trace_free(eddy_trace *t);

/* The correlation id traced (borrowed). */
const char *eddy_trace_correlation(const eddy_trace *t);

/* The number of nodes, and node `i` in tree order (NULL if out of range). */
size_t eddy_trace_count(const eddy_trace *t);
const eddy_trace_node *eddy_trace_node_at(const eddy_trace *t, size_t i);

/*
 * Prints the tree, one node a line, indented two spaces per depth:
 *   "+12.345 ms  order.placed  (orders)  0190...": event type, source, id;
 *   "+13.002 ms  -> ProcessPayment  [OrderProcessingSaga]  id": command.
 * Returns EDDY_OK or EDDY_EIO.
 */
int eddy_trace_print(const eddy_trace *t, FILE *out);

/* ---- the graph ----------------------------------------------------------- */

typedef enum eddy_graph_format {
    EDDY_GRAPH_DOT = 0,     /* Graphviz */
    EDDY_GRAPH_MERMAID = 1  /* Mermaid flowchart */
} eddy_graph_format;

typedef enum eddy_graph_edge_kind {
    EDDY_GRAPH_HANDLES = 0,   /* event type -> handler (subscription) */
    EDDY_GRAPH_PUBLISHES = 1, /* handler / source -> event type */
    EDDY_GRAPH_SENDS = 2,     /* saga -> command name */
    EDDY_GRAPH_LEADS_TO = 3   /* command name -> event type it caused */
} eddy_graph_edge_kind;

/* What a node of the graph is. */
typedef enum eddy_graph_node_kind {
    EDDY_GRAPH_NODE_EVENT_TYPE = 0, /* a stored event type */
    EDDY_GRAPH_NODE_SERVICE = 1,    /* a source that publishes events and is
                                       not seen handling any: an entry point
                                       (a service, a tool, an HTTP client) */
    EDDY_GRAPH_NODE_HANDLER = 2,    /* a durable handler, or a source seen
                                       publishing in reaction to an event */
    EDDY_GRAPH_NODE_PROJECTION = 3, /* a projection (eddy/projection.h) */
    EDDY_GRAPH_NODE_SAGA = 4,       /* a saga (eddy/saga.h) */
    EDDY_GRAPH_NODE_COMMAND = 5     /* a command a saga sends */
} eddy_graph_node_kind;

/* One edge: a read-only view borrowed from the graph. */
typedef struct eddy_graph_edge {
    eddy_graph_edge_kind kind;
    const char *from;
    const char *to;
    int64_t count; /* how many stored events / commands show it: for
                      HANDLES, the stored events of that type (a recorded
                      subscription receives each of them) or, for a handler
                      known only from what it published, the events it
                      published in reaction to that type */
} eddy_graph_edge;

/* One node: a read-only view borrowed from the graph. */
typedef struct eddy_graph_node {
    eddy_graph_node_kind kind;
    const char *name; /* event type, source, subscription or command name */
} eddy_graph_node;

/*
 * Builds the graph from the store: HANDLES edges from what the recorded
 * subscriptions receive (a pattern, or the exact types of a durable
 * handler's types filter) matched against the stored event types;
 * PUBLISHES edges from causation (an event whose causation event it names,
 * published by source H, means H publishes its type; events without a
 * cause give "source -> type" too, the entry points); SENDS / LEADS_TO from
 * the saga commands. Every edge has a count. Nodes get their kind from the
 * subscription registry (handler, projection, saga) and else from the
 * edges they are on. Returns EDDY_OK with `*out` (destructor:
 * eddy_graph_free) or a store error. Thread-safe.
 */
int eddy_graph_build(eddy_store *store, eddy_graph **out, eddy_error *err);

/* Frees a graph. NULL does nothing. */
void eddy_graph_free(eddy_graph *g);

/* The number of edges and edge `i` (NULL if out of range), sorted by kind,
 * from, to. */
size_t eddy_graph_edge_count(const eddy_graph *g);
const eddy_graph_edge *eddy_graph_edge_at(const eddy_graph *g, size_t i);

/* The number of nodes (every name an edge starts or ends at) and node `i`
 * (NULL if out of range), sorted by kind, then name. */
size_t eddy_graph_node_count(const eddy_graph *g);
const eddy_graph_node *eddy_graph_node_at(const eddy_graph *g, size_t i);

/*
 * Writes the graph in `format`, left to right: one shape and colour per
 * node kind, every edge labelled with its kind and count ("handles 42"),
 * and a legend of the node kinds present. Graphviz's `dot` turns the DOT
 * text into SVG or PNG (`eddy graph --format svg` runs it). Returns
 * EDDY_OK, EDDY_EINVAL (unknown format) or EDDY_EIO.
 */
int eddy_graph_write(const eddy_graph *g, eddy_graph_format format,
                     FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_TRACE_H */
