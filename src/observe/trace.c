/*
 * src/observe/trace.c - the causal tree of a flow (eddy_trace_*) and the
 * publish / handle graph of a system (eddy_graph_*), read from the store.
 *
 * Both read through the store's observe operations
 * (store/state_observe.h) on reader connections: they work on a read-only
 * store and never wait for the writer.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/trace.h"

#include "../core/internal.h"
#include "../store/state_durable.h"
#include "../store/state_observe.h"

/* ---- the trace ----------------------------------------------------------- */

struct node {
    eddy_trace_node view;
    char *id, *name, *by, *handler, *subject, *cause;
    size_t parent; /* index + 1, 0: root */
    bool placed;
};

struct eddy_trace {
    char *correlation;
    struct node *nodes; /* collected */
    size_t count;
    struct node **order; /* tree order */
    size_t placed;
};

void eddy_trace_free(eddy_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++) {
        struct node *n = &t->nodes[i];
        free(n->id);
        free(n->name);
        free(n->by);
        free(n->handler);
        free(n->subject);
        free(n->cause);
    }
    free(t->nodes);
    free(t->order);
    free(t->correlation);
    free(t);
}

static struct node *node_add(eddy_trace *t)
{
    struct node *n = realloc(t->nodes, (t->count + 1) * sizeof *n);
    if (!n)
        return NULL;
    t->nodes = n;
    memset(&n[t->count], 0, sizeof *n);
    return &n[t->count++];
}

static int add_event(const eddyi_trace_event *row, void *user)
{
    eddy_trace *t = user;
    eddy_error de = {0};
    eddy_event *ev = eddy_event_decode(row->payload, row->payload_len, &de);
    if (!ev)
        return EDDY_EPARSE;
    struct node *n = node_add(t);
    int rc = EDDY_OK;
    if (!n) {
        rc = EDDY_ENOMEM;
    } else {
        n->view.kind = EDDY_TRACE_EVENT;
        n->view.position = row->position;
        n->view.time_us = eddy_event_time(ev) ? eddy_event_time(ev)
                                              : row->recorded_us;
        n->id = eddyi_strdup(eddy_event_id(ev));
        n->name = eddyi_strdup(eddy_event_type(ev));
        n->by = eddyi_strdup(eddy_event_source(ev));
        n->subject = eddyi_strdup(eddy_event_subject(ev));
        n->cause = eddyi_strdup(eddy_event_causation_id(ev));
        if (!n->id || !n->name || !n->by ||
            (eddy_event_subject(ev) && !n->subject) ||
            (eddy_event_causation_id(ev) && !n->cause))
            rc = EDDY_ENOMEM;
    }
    eddy_event_unref(ev);
    return rc;
}

static int add_command(const eddyi_trace_command *c, void *user)
{
    eddy_trace *t = user;
    struct node *n = node_add(t);
    if (!n)
        return EDDY_ENOMEM;
    n->view.kind = EDDY_TRACE_COMMAND;
    n->id = eddyi_strdup(c->id);
    n->name = eddyi_strdup(c->name);
    n->by = eddyi_strdup(c->saga_type);
    n->handler = eddyi_strdup(c->saga_type);
    n->cause = eddyi_strdup(c->causation_id);
    n->view.time_us = c->created_us;
    return n->id && n->name && n->by && n->handler && n->cause ? EDDY_OK
                                                               : EDDY_ENOMEM;
}

static int collect(eddy_store *store, const char *id, eddy_trace *t,
                   eddy_error *err)
{
    int rc = eddyi_trace_correlation(store, id, &t->correlation, err);
    if (rc != EDDY_OK)
        return rc;
    if (!t->correlation)
        return eddyi_error(err, EDDY_ENOTFOUND,
                           "no event, correlation, stream or subject \"%s\"",
                           id);
    rc = eddyi_trace_events(store, t->correlation, add_event, t, err);
    if (rc == EDDY_EPARSE)
        return eddyi_error(err, rc, "a stored event of flow %s does not "
                           "decode", t->correlation);
    if (rc == EDDY_OK)
        rc = eddyi_trace_commands(store, t->correlation, add_command, t, err);
    if (rc == EDDY_ENOMEM)
        return eddyi_error(err, rc, "out of memory");
    return rc;
}

static int node_time_cmp(const void *a, const void *b)
{
    const struct node *x = *(const struct node *const *)a;
    const struct node *y = *(const struct node *const *)b;
    if (x->view.time_us != y->view.time_us)
        return x->view.time_us < y->view.time_us ? -1 : 1;
    if (x->view.position != y->view.position)
        return x->view.position < y->view.position ? -1 : 1;
    return 0;
}

/* Places `n` and then its children (time order) depth first. */
static void place(eddy_trace *t, struct node **sorted, struct node *n,
                  int depth)
{
    if (n->placed)
        return;
    n->placed = true;
    n->view.depth = depth;
    t->order[t->placed++] = n;
    size_t self = (size_t)(n - t->nodes) + 1;
    for (size_t i = 0; i < t->count; i++)
        if (sorted[i]->parent == self)
            place(t, sorted, sorted[i], depth + 1);
}

static int arrange(eddy_trace *t, eddy_error *err)
{
    struct node **sorted = calloc(t->count + 1, sizeof *sorted);
    t->order = calloc(t->count + 1, sizeof *t->order);
    if (!sorted || !t->order) {
        free(sorted);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < t->count; i++) {
        struct node *n = &t->nodes[i];
        sorted[i] = n;
        for (size_t k = 0; n->cause && k < t->count && !n->parent; k++)
            if (k != i && strcmp(t->nodes[k].id, n->cause) == 0)
                n->parent = k + 1;
    }
    if (t->count)
        qsort(sorted, t->count, sizeof *sorted, node_time_cmp);
    int64_t t0 = t->count ? sorted[0]->view.time_us : 0;
    for (size_t i = 0; i < t->count; i++)
        if (!sorted[i]->parent)
            place(t, sorted, sorted[i], 0);
    for (size_t i = 0; i < t->count; i++) /* causation cycles: as roots */
        place(t, sorted, sorted[i], 0);
    for (size_t i = 0; i < t->count; i++) {
        struct node *n = &t->nodes[i];
        n->view.id = n->id;
        n->view.name = n->name;
        n->view.by = n->by;
        n->view.handler = n->handler;
        n->view.subject = n->subject;
        n->view.causation_id = n->cause;
        n->view.offset_us = n->view.time_us - t0;
    }
    free(sorted);
    return EDDY_OK;
}

int eddy_trace_collect(eddy_store *store, const char *id, eddy_trace **out,
                       eddy_error *err)
{
    if (!store || !id || !*id || !out)
        return eddyi_error(err, EDDY_EINVAL,
                           "trace: store, id and output required");
    eddy_trace *t = calloc(1, sizeof *t);
    if (!t)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = collect(store, id, t, err);
    if (rc == EDDY_OK)
        rc = arrange(t, err);
    if (rc != EDDY_OK) {
        eddy_trace_free(t);
        return rc;
    }
    *out = t;
    return EDDY_OK;
}

const char *eddy_trace_correlation(const eddy_trace *t)
{
    return t ? t->correlation : NULL;
}

size_t eddy_trace_count(const eddy_trace *t) { return t ? t->placed : 0; }

const eddy_trace_node *eddy_trace_node_at(const eddy_trace *t, size_t i)
{
    return t && i < t->placed ? &t->order[i]->view : NULL;
}

int eddy_trace_print(const eddy_trace *t, FILE *out)
{
    if (!t || !out)
        return EDDY_EINVAL;
    for (size_t i = 0; i < t->placed; i++) {
        const eddy_trace_node *n = &t->order[i]->view;
        int w = 2 * n->depth;
        double ms = (double)n->offset_us / 1000.0;
        if (n->kind == EDDY_TRACE_COMMAND)
            fprintf(out, "+%10.3f ms  %*s-> %s  [%s]  %s\n", ms, w, "",
                    n->name, n->handler, n->id);
        else
            fprintf(out, "+%10.3f ms  %*s%s  (%s)  %s\n", ms, w, "", n->name,
                    n->by, n->id);
    }
    return ferror(out) ? EDDY_EIO : EDDY_OK;
}

/* ---- the graph ------------------------------------------------------------ */

struct edge {
    eddy_graph_edge view;
    char *from, *to;
};

struct eddy_graph {
    struct edge *edges;
    size_t count;
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
    free(g);
}

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
            e->view.count += count;
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

/* Does `type` match a pattern or comma-separated list of patterns? */
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

struct graph_build {
    eddy_graph *g;
    eddy_graph_edge_kind kind;
    char **types; /* the stored event types */
    size_t ntypes;
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
    if (!(n[b->ntypes] = eddyi_strdup(type)))
        return eddyi_error(b->err, EDDY_ENOMEM, "out of memory");
    b->ntypes++;
    return EDDY_OK;
}

/* A recorded consumer handles every stored type its pattern matches. */
static int consumer_row(const eddyi_subs_row *row, void *user)
{
    struct graph_build *b = user;
    int rc = EDDY_OK;
    for (size_t i = 0; i < b->ntypes && rc == EDDY_OK; i++)
        if (match_list(row->pattern, b->types[i]))
            rc = edge_add(b->g, EDDY_GRAPH_HANDLES, b->types[i], row->name, 0,
                          b->err);
    return rc;
}

static int graph_collect(eddy_store *store, eddy_graph *g, eddy_error *err)
{
    struct graph_build b = {.g = g, .err = err};
    int rc = eddyi_graph_types(store, type_row, &b, err);
    if (rc == EDDY_OK)
        rc = eddyi_subs_list(store, consumer_row, &b, err);
    /* Publishers: each event's source publishes its type. Causation: an
     * event caused by an event of type T and published by H means H
     * handles T. Then the saga commands: sent, and what they led to. */
    static const struct {
        eddyi_graph_query q;
        eddy_graph_edge_kind kind;
    } queries[] = {
        {EDDYI_GRAPH_PUBLISHERS, EDDY_GRAPH_PUBLISHES},
        {EDDYI_GRAPH_CAUSES, EDDY_GRAPH_HANDLES},
        {EDDYI_GRAPH_SENDS, EDDY_GRAPH_SENDS},
        {EDDYI_GRAPH_LEADS_TO, EDDY_GRAPH_LEADS_TO},
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0] && rc == EDDY_OK;
         i++) {
        b.kind = queries[i].kind;
        rc = eddyi_graph_edges(store, queries[i].q, edge_row, &b, err);
    }
    for (size_t i = 0; i < b.ntypes; i++)
        free(b.types[i]);
    free(b.types);
    return rc;
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
    int rc = graph_collect(store, g, err);
    if (rc != EDDY_OK) {
        eddy_graph_free(g);
        return rc;
    }
    if (g->count)
        qsort(g->edges, g->count, sizeof *g->edges, edge_cmp);
    for (size_t i = 0; i < g->count; i++) {
        g->edges[i].view.from = g->edges[i].from;
        g->edges[i].view.to = g->edges[i].to;
    }
    *out = g;
    return EDDY_OK;
}

size_t eddy_graph_edge_count(const eddy_graph *g) { return g ? g->count : 0; }

const eddy_graph_edge *eddy_graph_edge_at(const eddy_graph *g, size_t i)
{
    return g && i < g->count ? &g->edges[i].view : NULL;
}

/* Node roles, for shapes: 0 event type, 1 handler, 2 command. */
static int role_of(const eddy_graph *g, const char *name)
{
    for (size_t i = 0; i < g->count; i++) {
        const struct edge *e = &g->edges[i];
        bool from = strcmp(e->from, name) == 0, to = strcmp(e->to, name) == 0;
        switch (e->view.kind) {
        case EDDY_GRAPH_HANDLES:
            if (from) return 0;
            if (to) return 1;
            break;
        case EDDY_GRAPH_PUBLISHES:
            if (from) return 1;
            if (to) return 0;
            break;
        case EDDY_GRAPH_SENDS:
            if (from) return 1;
            if (to) return 2;
            break;
        case EDDY_GRAPH_LEADS_TO:
            if (from) return 2;
            if (to) return 0;
            break;
        }
    }
    return 0;
}

static const char *const KIND_LABEL[] = {"handles", "publishes", "sends",
                                         "leads to"};

/* The distinct node names, in first-seen order (borrowed from edges). */
static const char **node_names(const eddy_graph *g, size_t *count)
{
    const char **names = calloc(2 * g->count + 1, sizeof *names);
    size_t n = 0;
    if (!names)
        return NULL;
    for (size_t i = 0; i < g->count; i++) {
        const char *pair[2] = {g->edges[i].from, g->edges[i].to};
        for (int k = 0; k < 2; k++) {
            bool seen = false;
            for (size_t m = 0; m < n && !seen; m++)
                seen = strcmp(names[m], pair[k]) == 0;
            if (!seen)
                names[n++] = pair[k];
        }
    }
    *count = n;
    return names;
}

static size_t index_of(const char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return 0;
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

int eddy_graph_write(const eddy_graph *g, eddy_graph_format format,
                     FILE *out)
{
    if (!g || !out)
        return EDDY_EINVAL;
    if (format != EDDY_GRAPH_DOT && format != EDDY_GRAPH_MERMAID)
        return EDDY_EINVAL;
    bool mermaid = format == EDDY_GRAPH_MERMAID;
    size_t n = 0;
    const char **names = node_names(g, &n);
    if (!names)
        return EDDY_ENOMEM;
    if (mermaid)
        fputs("flowchart LR\n", out);
    else
        fputs("digraph eddy {\n  rankdir=LR;\n", out);
    for (size_t i = 0; i < n; i++) {
        int role = role_of(g, names[i]);
        if (mermaid) {
            static const char *const open[] = {"([\"", "[\"", "{{\""};
            static const char *const close[] = {"\"])", "\"]", "\"}}"};
            fprintf(out, "  n%zu%s", i, open[role]);
            put_quoted(out, names[i], true);
            fprintf(out, "%s\n", close[role]);
        } else {
            static const char *const shape[] = {"ellipse", "box", "hexagon"};
            fprintf(out, "  n%zu [label=\"", i);
            put_quoted(out, names[i], false);
            fprintf(out, "\", shape=%s];\n", shape[role]);
        }
    }
    for (size_t i = 0; i < g->count; i++) {
        const struct edge *e = &g->edges[i];
        size_t a = index_of(names, n, e->from), b = index_of(names, n, e->to);
        const char *label = KIND_LABEL[e->view.kind];
        if (mermaid) {
            if (e->view.count)
                fprintf(out, "  n%zu -->|%s %" PRId64 "| n%zu\n", a, label,
                        e->view.count, b);
            else
                fprintf(out, "  n%zu -->|%s| n%zu\n", a, label, b);
        } else {
            if (e->view.count)
                fprintf(out, "  n%zu -> n%zu [label=\"%s %" PRId64 "\"];\n", a,
                        b, label, e->view.count);
            else
                fprintf(out, "  n%zu -> n%zu [label=\"%s\"];\n", a, b, label);
        }
    }
    if (!mermaid)
        fputs("}\n", out);
    free(names);
    return ferror(out) ? EDDY_EIO : EDDY_OK;
}
