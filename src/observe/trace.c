/*
 * src/observe/trace.c - the causal tree of a flow (eddy_trace_*) and the
 * publish / handle graph of a system (eddy_graph_*), read from the store.
 *
 * Both read through a write job on the writer's connection (the store
 * gives other layers no read connection). The correlation lookup uses the
 * expression index eddy_events_by_correlation (store migration 3).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/trace.h"

#include "../core/internal.h"
#include "../reliability/reliability_internal.h"

#define CORR_EXPR "json_extract(payload, '$.correlationid')"

static bool table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (eddyi_rel_prepare(db, &st, NULL,
                          "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = ?1",
                          "t", name) == EDDY_OK) {
        found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    return found;
}

/* Runs a one-row, one-text-column query; `*out` NULL when no row. */
static int query_text(sqlite3 *db, char **out, eddy_error *err,
                      const char *sql, const char *arg)
{
    sqlite3_stmt *st = NULL;
    *out = NULL;
    int rc = eddyi_rel_prepare(db, &st, err, sql, "t", arg);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *out = eddyi_rel_column_text(st, 0);
        if (!*out)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    } else if (s != SQLITE_DONE) {
        rc = eddyi_rel_sqlerr(db, "trace lookup", err);
    }
    sqlite3_finalize(st);
    return rc;
}

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

static int add_events(sqlite3 *db, eddy_trace *t, const char *sql,
                      eddy_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_prepare(db, &st, err, sql, "t", t->correlation);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *payload = (const char *)sqlite3_column_text(st, 1);
        eddy_error de = {0};
        eddy_event *ev = eddy_event_decode(
            payload, (size_t)sqlite3_column_bytes(st, 1), &de);
        if (!ev)
            return eddyi_error(err, EDDY_EPARSE, "stored event at %" PRId64
                               ": %s", (int64_t)sqlite3_column_int64(st, 0),
                               de.message);
        bool dup = false;
        for (size_t i = 0; i < t->count && !dup; i++)
            dup = strcmp(t->nodes[i].id, eddy_event_id(ev)) == 0;
        struct node *n = dup ? NULL : node_add(t);
        if (!dup && !n)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        if (n) {
            n->view.kind = EDDY_TRACE_EVENT;
            n->view.position = sqlite3_column_int64(st, 0);
            n->view.time_us = eddy_event_time(ev)
                                  ? eddy_event_time(ev)
                                  : sqlite3_column_int64(st, 2);
            n->id = eddyi_strdup(eddy_event_id(ev));
            n->name = eddyi_strdup(eddy_event_type(ev));
            n->by = eddyi_strdup(eddy_event_source(ev));
            n->subject = eddyi_strdup(eddy_event_subject(ev));
            n->cause = eddyi_strdup(eddy_event_causation_id(ev));
            if (!n->id || !n->name || !n->by)
                rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        }
        eddy_event_unref(ev);
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading the flow's events", err);
    sqlite3_finalize(st);
    return rc;
}

static int add_commands(sqlite3 *db, eddy_trace *t, eddy_error *err)
{
    if (!table_exists(db, "eddy_saga_commands"))
        return EDDY_OK;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT id, name, saga_type, causation_id, "
                               "created_us FROM eddy_saga_commands WHERE "
                               "correlation_id = ?1 ORDER BY seq",
                               "t", t->correlation);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        struct node *n = node_add(t);
        if (!n) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        n->view.kind = EDDY_TRACE_COMMAND;
        n->id = eddyi_rel_column_text(st, 0);
        n->name = eddyi_rel_column_text(st, 1);
        n->by = eddyi_rel_column_text(st, 2);
        n->handler = eddyi_rel_column_text(st, 2);
        n->cause = eddyi_rel_column_text(st, 3);
        n->view.time_us = sqlite3_column_int64(st, 4);
        if (!n->id || !n->name || !n->by || !n->handler || !n->cause)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading saga commands", err);
    sqlite3_finalize(st);
    return rc;
}

struct collect_job {
    const char *id;
    eddy_trace *t;
};

static int collect_job_run(eddyi_txn *txn, void *arg, eddy_error *err)
{
    struct collect_job *j = arg;
    sqlite3 *db;
    char *corr = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    /* An event id: its correlation, or itself. */
    rc = query_text(db, &corr, err,
                    "SELECT coalesce(" CORR_EXPR ", id) FROM events "
                    "WHERE id = ?1",
                    j->id);
    /* A correlation id. */
    if (rc == EDDY_OK && !corr)
        rc = query_text(db, &corr, err,
                        "SELECT " CORR_EXPR " FROM events WHERE " CORR_EXPR
                        " = ?1 LIMIT 1",
                        j->id);
    /* A stream / subject: the correlation of its first event. */
    if (rc == EDDY_OK && !corr)
        rc = query_text(db, &corr, err,
                        "SELECT coalesce(" CORR_EXPR ", id) FROM events "
                        "WHERE stream_id = ?1 ORDER BY stream_version "
                        "LIMIT 1",
                        j->id);
    if (rc == EDDY_OK && !corr)
        rc = query_text(db, &corr, err,
                        "SELECT coalesce(" CORR_EXPR ", id) FROM events "
                        "WHERE json_extract(payload, '$.subject') = ?1 "
                        "ORDER BY position LIMIT 1",
                        j->id);
    if (rc != EDDY_OK)
        return rc;
    if (!corr)
        return eddyi_error(err, EDDY_ENOTFOUND,
                           "no event, correlation or subject %s", j->id);
    j->t->correlation = corr;
    rc = add_events(db, j->t,
                    "SELECT position, payload, recorded_us FROM events "
                    "WHERE id = ?1",
                    err);
    if (rc == EDDY_OK)
        rc = add_events(db, j->t,
                        "SELECT position, payload, recorded_us FROM events "
                        "WHERE " CORR_EXPR " = ?1 ORDER BY position",
                        err);
    if (rc == EDDY_OK)
        rc = add_commands(db, j->t, err);
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
    struct collect_job j = {.id = id, .t = t};
    int rc = eddyi_store_write(store, collect_job_run, &j, err);
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

/* Adds an edge per row of a (from, to, count) query. */
static int edges_from(sqlite3 *db, eddy_graph *g, eddy_graph_edge_kind kind,
                      const char *sql, eddy_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_prepare(db, &st, err, sql, NULL);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = edge_add(g, kind, (const char *)sqlite3_column_text(st, 0),
                      (const char *)sqlite3_column_text(st, 1),
                      sqlite3_column_int64(st, 2), err);
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "building the graph", err);
    sqlite3_finalize(st);
    return rc;
}

static int graph_job_run(eddyi_txn *txn, void *arg, eddy_error *err)
{
    eddy_graph *g = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc != EDDY_OK)
        return rc;
    /* Subscriptions x stored types. */
    if (table_exists(db, "eddy_subscriptions")) {
        sqlite3_stmt *subs = NULL, *types = NULL;
        rc = eddyi_rel_prepare(db, &subs, err,
                               "SELECT name, pattern FROM eddy_subscriptions "
                               "ORDER BY name",
                               NULL);
        if (rc == EDDY_OK)
            rc = eddyi_rel_prepare(db, &types, err,
                                   "SELECT DISTINCT type FROM events "
                                   "ORDER BY type",
                                   NULL);
        while (rc == EDDY_OK && sqlite3_step(subs) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(subs, 0);
            const char *pattern = (const char *)sqlite3_column_text(subs, 1);
            sqlite3_reset(types);
            while (rc == EDDY_OK && sqlite3_step(types) == SQLITE_ROW) {
                const char *type = (const char *)sqlite3_column_text(types, 0);
                if (type && pattern && match_list(pattern, type))
                    rc = edge_add(g, EDDY_GRAPH_HANDLES, type, name, 0, err);
            }
        }
        sqlite3_finalize(subs);
        sqlite3_finalize(types);
        if (rc != EDDY_OK)
            return rc;
    }
    /* Publishers: each event's source publishes its type. */
    rc = edges_from(db, g, EDDY_GRAPH_PUBLISHES,
                    "SELECT json_extract(payload, '$.source'), type, "
                    "count(*) FROM events GROUP BY 1, 2",
                    err);
    /* Causation: an event caused by an event of type T and published by H
     * means H handles T. */
    if (rc == EDDY_OK)
        rc = edges_from(db, g, EDDY_GRAPH_HANDLES,
                        "SELECT c.type, json_extract(e.payload, '$.source'), "
                        "count(*) FROM events e JOIN events c ON c.id = "
                        "json_extract(e.payload, '$.causationid') "
                        "GROUP BY 1, 2",
                        err);
    if (rc == EDDY_OK && table_exists(db, "eddy_saga_commands")) {
        rc = edges_from(db, g, EDDY_GRAPH_SENDS,
                        "SELECT saga_type, name, count(*) FROM "
                        "eddy_saga_commands GROUP BY 1, 2",
                        err);
        if (rc == EDDY_OK)
            rc = edges_from(db, g, EDDY_GRAPH_LEADS_TO,
                            "SELECT m.name, e.type, count(*) FROM events e "
                            "JOIN eddy_saga_commands m ON m.id = "
                            "json_extract(e.payload, '$.causationid') "
                            "GROUP BY 1, 2",
                            err);
    }
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
    int rc = eddyi_store_write(store, graph_job_run, g, err);
    if (rc != EDDY_OK) {
        eddy_graph_free(g);
        return rc;
    }
    if (g->count > 0) /* qsort(NULL, 0, ...) is undefined behaviour */
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
