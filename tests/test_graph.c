/*
 * tests/test_graph.c - eddy graph's model (src/observe/graph.c): a durable
 * handler's types filter decides what it is drawn handling (not only its
 * pattern), every edge has a count, nodes have kinds (service, event type,
 * handler, projection, saga, command), and the DOT / Mermaid text has one
 * style per kind, counted edge labels and a legend.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "test_util.h"

static char g_dir[] = "/tmp/eddy-test-graph-XXXXXX";
EDDYT_RMTREE_TEARDOWN(group_teardown, g_dir)

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(g_dir) ? 0 : -1;
}

static eddy_store *open_store(const char *name)
{
    char url[256];
    snprintf(url, sizeof url, "sqlite:%s/%s.db", g_dir, name);
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(url, &o, &err);
    if (!s)
        fail_msg("open %s: %s", url, err.message);
    return s;
}

static void append(eddy_store *s, const char *type, const char *subject)
{
    eddy_error err = {0};
    eddy_event *ev = eddy_event_newf(type, "svc", subject, &err, "{s:s}", "k", "v");
    assert_non_null(ev);
    if (eddy_store_append(s, subject, EDDY_EXPECT_ANY, &ev, 1, NULL, &err) != EDDY_OK)
        fail_msg("append %s: %s", type, err.message);
    eddy_event_unref(ev);
}

/* Handles a.two by publishing c.done (so causation shows it too). */
static int on_two(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)user;
    return eddy_ctx_publish(ctx, "c.done", "{s:s}", "of", eddy_event_id(ev));
}

static int on_any(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    (void)ev;
    (void)user;
    return EDDY_OK;
}

static eddy_durable *start(eddy_store *s, const char *name,
                           const char *const *patterns, size_t npatterns,
                           eddy_handler_fn fn)
{
    eddy_durable_options o = {.name = name, .patterns = patterns,
                              .pattern_count = npatterns, .handler = fn,
                              .workers = 1};
    eddy_error err = {0};
    eddy_durable *d = eddy_durable_start(s, &o, &err);
    if (!d)
        fail_msg("start %s: %s", name, err.message);
    return d;
}

static const eddy_graph_edge *find_edge(const eddy_graph *g, eddy_graph_edge_kind kind,
                                        const char *from, const char *to)
{
    for (size_t i = 0; i < eddy_graph_edge_count(g); i++) {
        const eddy_graph_edge *e = eddy_graph_edge_at(g, i);
        if (e->kind == kind && strcmp(e->from, from) == 0 && strcmp(e->to, to) == 0)
            return e;
    }
    return NULL;
}

static int kind_of(const eddy_graph *g, const char *name)
{
    for (size_t i = 0; i < eddy_graph_node_count(g); i++) {
        const eddy_graph_node *n = eddy_graph_node_at(g, i);
        if (strcmp(n->name, name) == 0)
            return (int)n->kind;
    }
    return -1;
}

static int apply_nothing(eddy_txn *txn, const eddy_event *ev, void *user, eddy_error *err)
{
    (void)txn;
    (void)ev;
    (void)user;
    (void)err;
    return EDDY_OK;
}

struct consumers {
    char only_two[64], none[64], mixed[64];
};

static int consumer_row(const eddy_consumer_info *info, void *user)
{
    struct consumers *c = user;
    if (strcmp(info->name, "only-two") == 0)
        snprintf(c->only_two, sizeof c->only_two, "%s", info->pattern);
    if (strcmp(info->name, "none") == 0)
        snprintf(c->none, sizeof c->none, "[%s]", info->pattern);
    if (strcmp(info->name, "mixed") == 0)
        snprintf(c->mixed, sizeof c->mixed, "%s", info->pattern);
    return 0;
}

/* A handler's patterns decide its edges: {"a.two"} handles a.two only,
 * {"a.two", "b.*"} both, {"b.x"} (no such event stored) nothing. */
static void test_patterns_decide_edges(void **state)
{
    (void)state;
    eddy_store *s = open_store("filter");
    append(s, "a.one", "k-1");
    append(s, "a.one", "k-2");
    append(s, "a.two", "k-1");
    append(s, "a.two", "k-2");
    append(s, "a.two", "k-3");
    append(s, "b.other", "k-1");

    static const char *const two[] = {"a.two"};
    static const char *const all_a[] = {"a.*"};
    static const char *const outside[] = {"b.x"};
    static const char *const mixed[] = {"a.two", "b.*"};
    eddy_durable *d_two = start(s, "only-two", two, 1, on_two);
    eddy_durable *d_all = start(s, "all-a", all_a, 1, on_any);
    eddy_durable *d_none = start(s, "none", outside, 1, on_any);
    eddy_durable *d_mixed = start(s, "mixed", mixed, 2, on_any);
    eddy_projection_def def = {.name = "view", .pattern = "b.*", .apply = apply_nothing};
    eddy_error err = {0};
    eddy_projection *p = eddy_projection_start(s, &def, &err);
    assert_non_null(p);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d_two, head, 10000), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d_all, head, 10000), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d_none, head, 10000), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d_mixed, head, 10000), EDDY_OK);
    assert_int_equal(eddy_projection_wait_idle(p, head, 10000), EDDY_OK);

    /* What the registry says each receives (eddy stats shows it too). */
    struct consumers c = {{0}, {0}, {0}};
    assert_int_equal(eddy_status_consumers(s, consumer_row, &c, &err), EDDY_OK);
    assert_string_equal(c.only_two, "a.two");
    assert_string_equal(c.none, "[b.x]");
    assert_string_equal(c.mixed, "a.two,b.*"); /* its patterns, in order */

    eddy_graph *g = NULL;
    assert_int_equal(eddy_graph_build(s, &g, &err), EDDY_OK);
    const eddy_graph_edge *e = find_edge(g, EDDY_GRAPH_HANDLES, "a.two", "only-two");
    assert_non_null(e);
    assert_int_equal(e->count, 3); /* the stored a.two events */
    assert_null(find_edge(g, EDDY_GRAPH_HANDLES, "a.one", "only-two"));
    e = find_edge(g, EDDY_GRAPH_HANDLES, "a.one", "all-a");
    assert_non_null(e);
    assert_int_equal(e->count, 2);
    assert_non_null(find_edge(g, EDDY_GRAPH_HANDLES, "a.two", "all-a"));
    assert_null(find_edge(g, EDDY_GRAPH_HANDLES, "b.other", "all-a"));
    assert_non_null(find_edge(g, EDDY_GRAPH_HANDLES, "a.two", "mixed"));
    assert_non_null(find_edge(g, EDDY_GRAPH_HANDLES, "b.other", "mixed"));
    assert_null(find_edge(g, EDDY_GRAPH_HANDLES, "a.one", "mixed"));
    e = find_edge(g, EDDY_GRAPH_HANDLES, "b.other", "view");
    assert_non_null(e);
    assert_int_equal(e->count, 1);
    e = find_edge(g, EDDY_GRAPH_PUBLISHES, "only-two", "c.done");
    assert_non_null(e);
    assert_int_equal(e->count, 3);
    e = find_edge(g, EDDY_GRAPH_PUBLISHES, "svc", "a.one");
    assert_non_null(e);
    assert_int_equal(e->count, 2);
    for (size_t i = 0; i < eddy_graph_edge_count(g); i++) {
        e = eddy_graph_edge_at(g, i);
        assert_string_not_equal(e->to, "none");
        if (e->count < 1)
            fail_msg("edge %s -> %s has no count", e->from, e->to);
    }

    /* Kinds: the registry's, else from the edges. */
    assert_int_equal(kind_of(g, "svc"), EDDY_GRAPH_NODE_SERVICE);
    assert_int_equal(kind_of(g, "a.two"), EDDY_GRAPH_NODE_EVENT_TYPE);
    assert_int_equal(kind_of(g, "c.done"), EDDY_GRAPH_NODE_EVENT_TYPE);
    assert_int_equal(kind_of(g, "only-two"), EDDY_GRAPH_NODE_HANDLER);
    assert_int_equal(kind_of(g, "view"), EDDY_GRAPH_NODE_PROJECTION);
    assert_int_equal(kind_of(g, "none"), -1); /* no edge, no node */
    /* sorted by kind, then name */
    for (size_t i = 1; i < eddy_graph_node_count(g); i++) {
        const eddy_graph_node *a = eddy_graph_node_at(g, i - 1), *b = eddy_graph_node_at(g, i);
        assert_true(a->kind < b->kind || (a->kind == b->kind && strcmp(a->name, b->name) < 0));
    }
    assert_null(eddy_graph_node_at(g, eddy_graph_node_count(g)));

    /* DOT: a style per kind, "kind count" on every edge, a legend of the
     * kinds present (and only those). */
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(eddy_graph_write(g, EDDY_GRAPH_DOT, out), EDDY_OK);
    fclose(out);
    assert_non_null(strstr(buf, "label=\"svc\", shape=parallelogram"));
    assert_non_null(strstr(buf, "label=\"view\", shape=cylinder"));
    assert_non_null(strstr(buf, "label=\"only-two\", shape=box, style=\"filled,rounded\""));
    assert_non_null(strstr(buf, "label=\"a.two\", shape=ellipse"));
    assert_non_null(strstr(buf, "subgraph cluster_legend"));
    assert_non_null(strstr(buf, "label=\"projection (read model)\""));
    assert_null(strstr(buf, "label=\"saga\"")); /* no saga here */
    size_t edges = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, " -> "))
            continue;
        edges++;
        char kind[32];
        long long count = 0;
        const char *label = strstr(line, "label=\"");
        assert_non_null(label);
        if (sscanf(label, "label=\"%31[a-z ]%lld\"", kind, &count) != 2 || count < 1)
            fail_msg("edge without a count: %s", line);
    }
    assert_int_equal(edges, eddy_graph_edge_count(g));
    free(buf);

    /* Mermaid: shapes and classes, counted labels, the legend subgraph. */
    buf = NULL;
    out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(eddy_graph_write(g, EDDY_GRAPH_MERMAID, out), EDDY_OK);
    fclose(out);
    assert_non_null(strstr(buf, "flowchart LR\n"));
    assert_non_null(strstr(buf, "[/\"svc\"/]:::service"));
    assert_non_null(strstr(buf, "[(\"view\")]:::projection"));
    assert_non_null(strstr(buf, "-->|handles 3|"));
    assert_non_null(strstr(buf, "subgraph legend [legend]"));
    assert_non_null(strstr(buf, "classDef projection fill:"));
    assert_non_null(strstr(buf, "  linkStyle "));
    free(buf);
    assert_int_equal(eddy_graph_write(g, (eddy_graph_format)9, stdout), EDDY_EINVAL);
    eddy_graph_free(g);

    eddy_projection_free(p);
    eddy_durable_free(d_none);
    eddy_durable_free(d_mixed);
    eddy_durable_free(d_all);
    eddy_durable_free(d_two);
    eddy_store_close(s);
}

/* An empty store: no nodes, no edges, no legend; still valid text. */
static void test_empty_graph(void **state)
{
    (void)state;
    eddy_store *s = open_store("empty");
    eddy_error err = {0};
    eddy_graph *g = NULL;
    assert_int_equal(eddy_graph_build(s, &g, &err), EDDY_OK);
    assert_int_equal(eddy_graph_edge_count(g), 0);
    assert_int_equal(eddy_graph_node_count(g), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(eddy_graph_write(g, EDDY_GRAPH_DOT, out), EDDY_OK);
    fclose(out);
    assert_non_null(strstr(buf, "digraph eddy {"));
    assert_null(strstr(buf, "legend"));
    free(buf);
    eddy_graph_free(g);
    assert_int_equal(eddy_graph_node_count(NULL), 0);
    assert_null(eddy_graph_node_at(NULL, 0));
    assert_int_equal(eddy_graph_build(NULL, &g, &err), EDDY_EINVAL);
    eddy_graph_free(NULL);
    eddy_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns_decide_edges),
        cmocka_unit_test(test_empty_graph),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
