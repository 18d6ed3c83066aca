/*
 * src/observe/trace.c - the causal tree of a flow (eddy_trace_*), read from
 * the store. The graph of a system is in graph.c.
 *
 * It reads through the store's observe operations
 * (store/state_observe.h) on reader connections: it works on a read-only
 * store and never waits for the writer.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/trace.h"

#include "../core/internal.h"
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
