/*
 * src/observe/graph.c - the graph of a system (eddy_graph_*): which event
 * types each source publishes, who handles them, which commands the sagas
 * send and what those lead to; and the graph as DOT or Mermaid text.
 *
 * Edges come from the store's observe operations (store/state_observe.h)
 * and its subscription registry (store/state_durable.h), read on reader
 * connections: building works on a read-only store and never waits for the
 * writer. Every edge carries a count from stored data (see eddy/trace.h).
 *
 * A node's kind comes from the registry when it is a recorded subscription
 * (handler, projection, saga); else from the edges it is on, the stronger
 * evidence winning: a saga sends commands; a command is sent or leads to
 * events; an event type is handled, published or led to; a source that is
 * seen handling a type (it published in reaction to it) is a handler; a
 * source that only publishes is a service, an entry point.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/trace.h"

#include "../core/internal.h"
#include "../store/state_durable.h"
#include "../store/state_observe.h"

struct edge {
    eddy_graph_edge view;
    char *from, *to;
};

struct gnode {
    eddy_graph_node view; /* name borrowed from an edge */
    int rank;             /* how strong the evidence for its kind is */
};

struct eddy_graph {
    struct edge *edges;
    size_t count;
    struct gnode *nodes;
    size_t nnodes;
};

void eddy_graph_free(eddy_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->count; i++) {
        free(g->edges[i].from);
        free(g->edges[i].to);
    }
    free(g->edges);
    free(g->nodes);
    free(g);
}

/* Adds an edge, or raises the count of the same edge found again (by
 * another query: a handler both recorded and seen through causation keeps
 * the larger count, never a sum of two different measures). */
static int edge_add(eddy_graph *g, eddy_graph_edge_kind kind,
                    const char *from, const char *to, int64_t count,
                    eddy_error *err)
{
    if (!from || !to || !*from || !*to)
        return EDDY_OK;
    for (size_t i = 0; i < g->count; i++) {
        struct edge *e = &g->edges[i];
        if (e->view.kind == kind && strcmp(e->from, from) == 0 &&
            strcmp(e->to, to) == 0) {
            if (count > e->view.count)
                e->view.count = count;
            return EDDY_OK;
        }
    }
    struct edge *n = realloc(g->edges, (g->count + 1) * sizeof *n);
    if (!n)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    g->edges = n;
    struct edge *e = &n[g->count];
    memset(e, 0, sizeof *e);
    e->from = eddyi_strdup(from);
    e->to = eddyi_strdup(to);
    if (!e->from || !e->to) {
        free(e->from);
        free(e->to);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    e->view.kind = kind;
    e->view.count = count;
    g->count++;
    return EDDY_OK;
}

/* Does `type` match a pattern or comma-separated list of patterns (what
 * the registry records: "order.*", "a.one,a.two", "*"; "" matches
 * nothing)? */
static bool match_list(const char *patterns, const char *type)
{
    const char *p = patterns;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 1 && p[0] == '*')
            return true;
        if (n >= 2 && p[n - 1] == '*' && p[n - 2] == '.') {
            if (strncmp(type, p, n - 1) == 0)
                return true;
        } else if (strlen(type) == n && strncmp(type, p, n) == 0) {
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* ---- building ------------------------------------------------------------- */

struct consumer {
    char *name;
    eddy_graph_node_kind kind;
};

struct graph_build {
    eddy_graph *g;
    eddy_graph_edge_kind kind;
    char **types;     /* the stored event types */
    int64_t *counts;  /* how many events of each are stored */
    size_t ntypes;
    struct consumer *consumers; /* the recorded subscriptions */
    size_t nconsumers;
    eddy_error *err;
};

static int edge_row(const char *from, const char *to, int64_t count,
                    void *user)
{
    struct graph_build *b = user;
    return edge_add(b->g, b->kind, from, to, count, b->err);
}

static int type_row(const char *type, void *user)
{
    struct graph_build *b = user;
    char **n = realloc(b->types, (b->ntypes + 1) * sizeof *n);
    if (!n)
        return eddyi_error(b->err, EDDY_ENOMEM, "out of memory");
    b->types = n;
    int64_t *c = realloc(b->counts, (b->ntypes + 1) * sizeof *c);
    if (!c)
        return eddyi_error(b->err, EDDY_ENOMEM, "out of memory");
    b->counts = c;
    if (!(n[b->ntypes] = eddyi_strdup(type)))
        return eddyi_error(b->err, EDDY_ENOMEM, "out of memory");
    c[b->ntypes++] = 0;
    return EDDY_OK;
}

/* "source publishes type": an edge, and the count of the type's events. */
static int publisher_row(const char *source, const char *type, int64_t count,
                         void *user)
{
    struct graph_build *b = user;
    for (size_t i = 0; i < b->ntypes; i++)
        if (strcmp(b->types[i], type) == 0) {
            b->counts[i] += count;
            break;
        }
    return edge_add(b->g, EDDY_GRAPH_PUBLISHES, source, type, count, b->err);
}

/* A recorded consumer handles every stored type that what it receives
 * matches: one edge per type, counting the type's stored events. */
static int consumer_row(const eddyi_subs_row *row, void *user)
{
    struct graph_build *b = user;
    struct consumer *n =
        realloc(b->consumers, (b->nconsumers + 1) * sizeof *n);
    if (!n)
        return eddyi_error(b->err, EDDY_ENOMEM, "out of memory");
    b->consumers = n;
    struct consumer *c = &n[b->nconsumers];
    if (!(c->name = eddyi_strdup(row->name)))
        return eddyi_error(b->err, EDDY_ENOMEM, "out of memory");
    c->kind = strcmp(row->kind, "projection") == 0 ? EDDY_GRAPH_NODE_PROJECTION
              : strcmp(row->kind, "saga") == 0     ? EDDY_GRAPH_NODE_SAGA
                                                   : EDDY_GRAPH_NODE_HANDLER;
    b->nconsumers++;
    int rc = EDDY_OK;
    for (size_t i = 0; i < b->ntypes && rc == EDDY_OK; i++)
        if (match_list(row->pattern, b->types[i]))
            rc = edge_add(b->g, EDDY_GRAPH_HANDLES, b->types[i], row->name,
                          b->counts[i], b->err);
    return rc;
}

static int graph_collect(eddy_store *store, struct graph_build *b,
                         eddy_error *err)
{
    /* The types and how many of each are stored first: the subscriptions'
     * edges count them. */
    int rc = eddyi_graph_types(store, type_row, b, err);
    if (rc == EDDY_OK)
        rc = eddyi_graph_edges(store, EDDYI_GRAPH_PUBLISHERS, publisher_row,
                               b, err);
    if (rc == EDDY_OK)
        rc = eddyi_subs_list(store, consumer_row, b, err);
    /* Causation: an event caused by an event of type T and published by H
     * means H handles T. Then the saga commands: sent, and what they led
     * to. */
    static const struct {
        eddyi_graph_query q;
        eddy_graph_edge_kind kind;
    } queries[] = {
        {EDDYI_GRAPH_CAUSES, EDDY_GRAPH_HANDLES},
        {EDDYI_GRAPH_SENDS, EDDY_GRAPH_SENDS},
        {EDDYI_GRAPH_LEADS_TO, EDDY_GRAPH_LEADS_TO},
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0] && rc == EDDY_OK;
         i++) {
        b->kind = queries[i].kind;
        rc = eddyi_graph_edges(store, queries[i].q, edge_row, b, err);
    }
    return rc;
}

/* Notes that `name` is of `kind` with evidence `rank`; the strongest
 * evidence wins. `g->nodes` has room for every endpoint. */
static void node_note(eddy_graph *g, const char *name,
                      eddy_graph_node_kind kind, int rank)
{
    for (size_t i = 0; i < g->nnodes; i++) {
        struct gnode *n = &g->nodes[i];
        if (strcmp(n->view.name, name) == 0) {
            if (rank > n->rank) {
                n->view.kind = kind;
                n->rank = rank;
            }
            return;
        }
    }
    g->nodes[g->nnodes++] =
        (struct gnode){.view = {.kind = kind, .name = name}, .rank = rank};
}

enum {
    RANK_PUBLISHER = 1, /* publishes: a service unless seen handling */
    RANK_HANDLER = 2,   /* handles a type (causation) */
    RANK_EVENT = 3,
    RANK_SAGA_COMMAND = 4,
    RANK_RECORDED = 5   /* the registry says */
};

static int node_cmp(const void *a, const void *b)
{
    const struct gnode *x = a, *y = b;
    if (x->view.kind != y->view.kind)
        return x->view.kind < y->view.kind ? -1 : 1;
    return strcmp(x->view.name, y->view.name);
}

/* Gives every endpoint of an edge a node and a kind (see the top of this
 * file), sorted by kind and name. */
static int node_kinds(eddy_graph *g, const struct graph_build *b,
                      eddy_error *err)
{
    g->nodes = calloc(2 * g->count + 1, sizeof *g->nodes);
    if (!g->nodes)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    for (size_t i = 0; i < g->count; i++) {
        const struct edge *e = &g->edges[i];
        switch (e->view.kind) {
        case EDDY_GRAPH_HANDLES:
            node_note(g, e->from, EDDY_GRAPH_NODE_EVENT_TYPE, RANK_EVENT);
            node_note(g, e->to, EDDY_GRAPH_NODE_HANDLER, RANK_HANDLER);
            break;
        case EDDY_GRAPH_PUBLISHES:
            node_note(g, e->from, EDDY_GRAPH_NODE_SERVICE, RANK_PUBLISHER);
            node_note(g, e->to, EDDY_GRAPH_NODE_EVENT_TYPE, RANK_EVENT);
            break;
        case EDDY_GRAPH_SENDS:
            node_note(g, e->from, EDDY_GRAPH_NODE_SAGA, RANK_SAGA_COMMAND);
            node_note(g, e->to, EDDY_GRAPH_NODE_COMMAND, RANK_SAGA_COMMAND);
            break;
        case EDDY_GRAPH_LEADS_TO:
            node_note(g, e->from, EDDY_GRAPH_NODE_COMMAND, RANK_SAGA_COMMAND);
            node_note(g, e->to, EDDY_GRAPH_NODE_EVENT_TYPE, RANK_EVENT);
            break;
        }
    }
    /* The registry knows best; a consumer without edges gets no node. */
    for (size_t i = 0; i < b->nconsumers; i++)
        for (size_t k = 0; k < g->nnodes; k++)
            if (strcmp(g->nodes[k].view.name, b->consumers[i].name) == 0) {
                g->nodes[k].view.kind = b->consumers[i].kind;
                g->nodes[k].rank = RANK_RECORDED;
            }
    if (g->nnodes)
        qsort(g->nodes, g->nnodes, sizeof *g->nodes, node_cmp);
    return EDDY_OK;
}

static int edge_cmp(const void *a, const void *b)
{
    const struct edge *x = a, *y = b;
    if (x->view.kind != y->view.kind)
        return x->view.kind < y->view.kind ? -1 : 1;
    int c = strcmp(x->from, y->from);
    return c ? c : strcmp(x->to, y->to);
}

int eddy_graph_build(eddy_store *store, eddy_graph **out, eddy_error *err)
{
    if (!store || !out)
        return eddyi_error(err, EDDY_EINVAL, "graph: store and output "
                           "required");
    eddy_graph *g = calloc(1, sizeof *g);
    if (!g)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    struct graph_build b = {.g = g, .err = err};
    int rc = graph_collect(store, &b, err);
    if (rc == EDDY_OK) {
        if (g->count)
            qsort(g->edges, g->count, sizeof *g->edges, edge_cmp);
        for (size_t i = 0; i < g->count; i++) {
            g->edges[i].view.from = g->edges[i].from;
            g->edges[i].view.to = g->edges[i].to;
        }
        rc = node_kinds(g, &b, err);
    }
    for (size_t i = 0; i < b.ntypes; i++)
        free(b.types[i]);
    free(b.types);
    free(b.counts);
    for (size_t i = 0; i < b.nconsumers; i++)
        free(b.consumers[i].name);
    free(b.consumers);
    if (rc != EDDY_OK) {
        eddy_graph_free(g);
        return rc;
    }
    *out = g;
    return EDDY_OK;
}

size_t eddy_graph_edge_count(const eddy_graph *g) { return g ? g->count : 0; }

const eddy_graph_edge *eddy_graph_edge_at(const eddy_graph *g, size_t i)
{
    return g && i < g->count ? &g->edges[i].view : NULL;
}

size_t eddy_graph_node_count(const eddy_graph *g) { return g ? g->nnodes : 0; }

const eddy_graph_node *eddy_graph_node_at(const eddy_graph *g, size_t i)
{
    return g && i < g->nnodes ? &g->nodes[i].view : NULL;
}

/* ---- writing -------------------------------------------------------------- */

/* How each node kind looks: its legend entry, Graphviz shape and style,
 * colours (fill, line), Mermaid shape brackets and class. */
static const struct node_style {
    const char *legend;
    const char *shape, *style, *extra;
    const char *fill, *line;
    const char *open, *close, *cls;
} NODE_STYLES[] = {
    [EDDY_GRAPH_NODE_EVENT_TYPE] = {"event type", "ellipse", "filled", "",
                                    "#dbeafe", "#1d4ed8", "([\"", "\"])",
                                    "event"},
    [EDDY_GRAPH_NODE_SERVICE] = {"service (a source)", "parallelogram",
                                 "filled", "", "#e5e7eb", "#374151", "[/\"",
                                 "\"/]", "service"},
    [EDDY_GRAPH_NODE_HANDLER] = {"handler", "box", "filled,rounded", "",
                                 "#dcfce7", "#15803d", "(\"", "\")",
                                 "handler"},
    [EDDY_GRAPH_NODE_PROJECTION] = {"projection (read model)", "cylinder",
                                    "filled", "", "#fef9c3", "#a16207",
                                    "[(\"", "\")]", "projection"},
    [EDDY_GRAPH_NODE_SAGA] = {"saga", "box", "filled", ", peripheries=2",
                              "#ede9fe", "#6d28d9", "[[\"", "\"]]", "saga"},
    [EDDY_GRAPH_NODE_COMMAND] = {"command", "hexagon", "filled", "",
                                 "#ffedd5", "#c2410c", "{{\"", "\"}}",
                                 "command"},
};
#define NODE_KINDS (sizeof NODE_STYLES / sizeof NODE_STYLES[0])

/* Each edge kind: its label, colour and line. */
static const struct edge_style {
    const char *label, *color, *style, *dash;
} EDGE_STYLES[] = {
    [EDDY_GRAPH_HANDLES] = {"handles", "#15803d", "solid", ""},
    [EDDY_GRAPH_PUBLISHES] = {"publishes", "#374151", "solid", ""},
    [EDDY_GRAPH_SENDS] = {"sends", "#6d28d9", "dashed", ",stroke-dasharray:5 3"},
    [EDDY_GRAPH_LEADS_TO] = {"leads to", "#c2410c", "dashed",
                             ",stroke-dasharray:5 3"},
};
#define EDGE_KINDS (sizeof EDGE_STYLES / sizeof EDGE_STYLES[0])

static size_t node_index(const eddy_graph *g, const char *name)
{
    for (size_t i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].view.name, name) == 0)
            return i;
    return 0; /* every endpoint has a node */
}

/* Writes `s` escaped for a double-quoted DOT / Mermaid string. */
static void put_quoted(FILE *out, const char *s, bool mermaid)
{
    for (; *s; s++) {
        if (*s == '"')
            fputs(mermaid ? "#quot;" : "\\\"", out);
        else if (*s == '\\' && !mermaid)
            fputs("\\\\", out);
        else if (*s == '\n')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

static void dot_node(FILE *out, const char *id, size_t i, const char *label,
                     eddy_graph_node_kind kind)
{
    const struct node_style *st = &NODE_STYLES[kind];
    fprintf(out, "  %s%zu [label=\"", id, i);
    put_quoted(out, label, false);
    fprintf(out, "\", shape=%s, style=\"%s\", fillcolor=\"%s\", "
            "color=\"%s\"%s];\n", st->shape, st->style, st->fill, st->line,
            st->extra);
}

static void write_dot(const eddy_graph *g, const bool *present, FILE *out)
{
    fputs("digraph eddy {\n  rankdir=LR;\n"
          "  node [fontname=\"Helvetica\", fontsize=11];\n"
          "  edge [fontname=\"Helvetica\", fontsize=9];\n", out);
    for (size_t i = 0; i < g->nnodes; i++)
        dot_node(out, "n", i, g->nodes[i].view.name, g->nodes[i].view.kind);
    for (size_t i = 0; i < g->count; i++) {
        const eddy_graph_edge *e = &g->edges[i].view;
        const struct edge_style *st = &EDGE_STYLES[e->kind];
        fprintf(out, "  n%zu -> n%zu [label=\"%s %" PRId64 "\", color=\"%s\", "
                "fontcolor=\"%s\", style=%s];\n", node_index(g, e->from),
                node_index(g, e->to), st->label, e->count, st->color,
                st->color, st->style);
    }
    bool any = false;
    for (size_t k = 0; k < NODE_KINDS; k++)
        any = any || present[k];
    if (any) {
        fputs("  subgraph cluster_legend {\n    label=\"legend\"; "
              "fontname=\"Helvetica\"; fontsize=10; style=\"rounded,dashed\"; "
              "color=\"#9ca3af\";\n", out);
        for (size_t k = 0; k < NODE_KINDS; k++)
            if (present[k]) {
                fputs("  ", out);
                dot_node(out, "k", k, NODE_STYLES[k].legend,
                         (eddy_graph_node_kind)k);
            }
        fputs("  }\n", out);
    }
    fputs("}\n", out);
}

static void write_mermaid(const eddy_graph *g, const bool *present, FILE *out)
{
    fputs("flowchart LR\n", out);
    for (size_t i = 0; i < g->nnodes; i++) {
        const struct node_style *st = &NODE_STYLES[g->nodes[i].view.kind];
        fprintf(out, "  n%zu%s", i, st->open);
        put_quoted(out, g->nodes[i].view.name, true);
        fprintf(out, "%s:::%s\n", st->close, st->cls);
    }
    for (size_t i = 0; i < g->count; i++) {
        const eddy_graph_edge *e = &g->edges[i].view;
        fprintf(out, "  n%zu -->|%s %" PRId64 "| n%zu\n",
                node_index(g, e->from), EDGE_STYLES[e->kind].label, e->count,
                node_index(g, e->to));
    }
    /* Edge colours by kind: Mermaid numbers links in the order written. */
    for (size_t k = 0; k < EDGE_KINDS; k++) {
        bool first = true;
        for (size_t i = 0; i < g->count; i++) {
            if (g->edges[i].view.kind != (eddy_graph_edge_kind)k)
                continue;
            fprintf(out, "%s%zu", first ? "  linkStyle " : ",", i);
            first = false;
        }
        if (!first)
            fprintf(out, " stroke:%s,color:%s%s\n", EDGE_STYLES[k].color,
                    EDGE_STYLES[k].color, EDGE_STYLES[k].dash);
    }
    bool any = false;
    for (size_t k = 0; k < NODE_KINDS; k++)
        any = any || present[k];
    if (any) {
        fputs("  subgraph legend [legend]\n", out);
        for (size_t k = 0; k < NODE_KINDS; k++)
            if (present[k])
                fprintf(out, "    k%zu%s%s%s:::%s\n", k, NODE_STYLES[k].open,
                        NODE_STYLES[k].legend, NODE_STYLES[k].close,
                        NODE_STYLES[k].cls);
        fputs("  end\n", out);
    }
    for (size_t k = 0; k < NODE_KINDS; k++)
        if (present[k])
            fprintf(out, "  classDef %s fill:%s,stroke:%s\n",
                    NODE_STYLES[k].cls, NODE_STYLES[k].fill,
                    NODE_STYLES[k].line);
}

int eddy_graph_write(const eddy_graph *g, eddy_graph_format format,
                     FILE *out)
{
    if (!g || !out)
        return EDDY_EINVAL;
    if (format != EDDY_GRAPH_DOT && format != EDDY_GRAPH_MERMAID)
        return EDDY_EINVAL;
    bool present[NODE_KINDS] = {false};
    for (size_t i = 0; i < g->nnodes; i++)
        present[g->nodes[i].view.kind] = true;
    if (format == EDDY_GRAPH_MERMAID)
        write_mermaid(g, present, out);
    else
        write_dot(g, present, out);
    return ferror(out) ? EDDY_EIO : EDDY_OK;
}
