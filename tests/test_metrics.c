/* tests/test_metrics.c - processing metrics: counters, histograms, gauges,
 * snapshots, Prometheus text, the table; concurrency (also under TSan). */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eddy/metrics.h"

/* ---- helpers ------------------------------------------------------------ */

static const eddy_metrics_series_stats *find_stats(const eddy_metrics_snapshot *snap,
                                                   const char *handler,
                                                   const char *type, size_t *index)
{
    for (size_t i = 0; i < eddy_metrics_snapshot_series_count(snap); i++) {
        const eddy_metrics_series_stats *st = eddy_metrics_snapshot_series(snap, i);
        if (strcmp(st->handler, handler) == 0 && strcmp(st->event_type, type) == 0) {
            if (index)
                *index = i;
            return st;
        }
    }
    return NULL;
}

/* Asserts |estimate - exact| <= exact / 32, the documented bound. */
static void assert_within_bound(uint64_t estimate, uint64_t exact, double q)
{
    double diff = fabs((double)estimate - (double)exact);
    if (diff > (double)exact / 32.0)
        fail_msg("q=%g: estimate %" PRIu64 " vs exact %" PRIu64
                 " (relative error %.4f > 1/32)",
                 q, estimate, exact, exact ? diff / (double)exact : diff);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The exact nearest-rank q-quantile of sorted[0..n). */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

/* ---- counters ----------------------------------------------------------- */

static void test_counters_sequence(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, "payment", "order.placed");
    assert_non_null(s);

    for (int i = 0; i < 4; i++)
        eddy_metrics_begin(s);
    eddy_metrics_end(s, EDDY_OUTCOME_SUCCESS, 100);
    eddy_metrics_end(s, EDDY_OUTCOME_SUCCESS, 200);
    eddy_metrics_end(s, EDDY_OUTCOME_FAILURE, 300);
    eddy_metrics_retried(s);
    eddy_metrics_retried(s);
    eddy_metrics_dead_lettered(s);
    /* Any code other than success is a failure: a handler's rc as is. */
    eddy_metrics_begin(s);
    eddy_metrics_end(s, EDDY_EHANDLER, 1000);

    eddy_error err = {0};
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, &err);
    assert_non_null(snap);
    assert_int_equal(eddy_metrics_snapshot_series_count(snap), 1);
    const eddy_metrics_series_stats *st = eddy_metrics_snapshot_series(snap, 0);
    assert_string_equal(st->handler, "payment");
    assert_string_equal(st->event_type, "order.placed");
    assert_int_equal(st->handled, 4);
    assert_int_equal(st->succeeded, 2);
    assert_int_equal(st->failed, 2);
    assert_int_equal(st->retried, 2);
    assert_int_equal(st->dead_lettered, 1);
    assert_int_equal(st->in_flight, 1);
    assert_true(fabs(st->failure_rate - 0.5) < 1e-12);
    assert_int_equal(st->sum_ns, 1600);
    assert_int_equal(st->avg_ns, 400);
    assert_int_equal(st->max_ns, 1000);
    /* 100, 200, 300, 1000: nearest rank of 0.5 is 200. */
    assert_within_bound(st->p50_ns, 200, 0.5);
    assert_within_bound(st->p99_ns, 1000, 0.99);
    assert_null(eddy_metrics_snapshot_series(snap, 1));
    assert_int_equal(eddy_metrics_snapshot_percentile(snap, 1, 0.5), 0);
    assert_int_equal(eddy_metrics_snapshot_percentile(snap, 0, 0.0), 0);
    assert_int_equal(eddy_metrics_snapshot_percentile(snap, 0, 1.5), 0);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
}

static void test_series_identity_and_input(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *a = eddy_metrics_series_get(m, "h", "t");
    assert_non_null(a);
    assert_ptr_equal(eddy_metrics_series_get(m, "h", "t"), a);
    /* The pair is two strings, not their concatenation. */
    eddy_metrics_series *ab_c = eddy_metrics_series_get(m, "ab", "c");
    eddy_metrics_series *a_bc = eddy_metrics_series_get(m, "a", "bc");
    assert_non_null(ab_c);
    assert_non_null(a_bc);
    assert_ptr_not_equal(ab_c, a_bc);

    assert_null(eddy_metrics_series_get(NULL, "h", "t"));
    assert_null(eddy_metrics_series_get(m, NULL, "t"));
    assert_null(eddy_metrics_series_get(m, "h", NULL));
    assert_null(eddy_metrics_series_get(m, "", "t"));
    assert_null(eddy_metrics_series_get(m, "h", ""));
    assert_null(eddy_metrics_series_get(m, "bad\xff", "t"));
    char *long_name = malloc(1026);
    assert_non_null(long_name);
    memset(long_name, 'x', 1025);
    long_name[1025] = '\0';
    assert_null(eddy_metrics_series_get(m, long_name, "t"));
    long_name[1024] = '\0';
    assert_non_null(eddy_metrics_series_get(m, long_name, "t"));
    free(long_name);

    /* Recording on NULL (no registry, bad name) does nothing. */
    eddy_metrics_begin(NULL);
    eddy_metrics_end(NULL, EDDY_OUTCOME_SUCCESS, 5);
    eddy_metrics_retried(NULL);
    eddy_metrics_dead_lettered(NULL);

    /* UTF-8 names are fine; sorted by handler then type. */
    assert_non_null(eddy_metrics_series_get(m, "\xc3\xa9mail", "user.registered"));
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    assert_int_equal(eddy_metrics_snapshot_series_count(snap), 5);
    for (size_t i = 1; i < eddy_metrics_snapshot_series_count(snap); i++) {
        const eddy_metrics_series_stats *x = eddy_metrics_snapshot_series(snap, i - 1);
        const eddy_metrics_series_stats *y = eddy_metrics_snapshot_series(snap, i);
        int c = strcmp(x->handler, y->handler);
        assert_true(c < 0 || (c == 0 && strcmp(x->event_type, y->event_type) < 0));
    }
    const eddy_metrics_series_stats *st = find_stats(snap, "h", "t", NULL);
    assert_non_null(st);
    assert_int_equal(st->handled, 0);
    assert_int_equal(st->p50_ns, 0);
    assert_int_equal(st->avg_ns, 0);
    assert_true(st->failure_rate == 0.0);
    eddy_metrics_free(m);
    /* A snapshot outlives its registry. */
    assert_string_equal(eddy_metrics_snapshot_series(snap, 0)->handler, "a");
    eddy_metrics_snapshot_free(snap);

    eddy_error err = {0};
    assert_null(eddy_metrics_snapshot_take(NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    eddy_metrics_free(NULL);
    eddy_metrics_snapshot_free(NULL);
    assert_null(eddy_metrics_prometheus(NULL));
    assert_int_equal(eddy_metrics_format_table(NULL, stdout), EDDY_EINVAL);
    assert_int_equal(eddy_metrics_snapshot_series_count(NULL), 0);
    assert_int_equal(eddy_metrics_snapshot_gauge_count(NULL), 0);
}

/* Enough series to grow the hash table several times; every pointer stays
 * valid and is found again. */
static void test_many_series(void **state)
{
    (void)state;
    enum { N = 3000 };
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series **got = calloc(N, sizeof *got);
    assert_non_null(got);
    char h[32], t[32];
    for (int i = 0; i < N; i++) {
        snprintf(h, sizeof h, "handler-%d", i % 37);
        snprintf(t, sizeof t, "type.%d", i);
        got[i] = eddy_metrics_series_get(m, h, t);
        assert_non_null(got[i]);
        for (int k = 0; k <= i % 5; k++) {
            eddy_metrics_begin(got[i]);
            eddy_metrics_end(got[i], EDDY_OUTCOME_SUCCESS, (uint64_t)i);
        }
    }
    for (int i = 0; i < N; i++) {
        snprintf(h, sizeof h, "handler-%d", i % 37);
        snprintf(t, sizeof t, "type.%d", i);
        assert_ptr_equal(eddy_metrics_series_get(m, h, t), got[i]);
    }
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    assert_int_equal(eddy_metrics_snapshot_series_count(snap), N);
    for (int i = 0; i < N; i += 97) {
        snprintf(h, sizeof h, "handler-%d", i % 37);
        snprintf(t, sizeof t, "type.%d", i);
        const eddy_metrics_series_stats *st = find_stats(snap, h, t, NULL);
        assert_non_null(st);
        assert_int_equal(st->handled, (uint64_t)(i % 5 + 1));
        assert_int_equal(st->max_ns, (uint64_t)i);
    }
    eddy_metrics_snapshot_free(snap);
    free(got);
    eddy_metrics_free(m);
}

static void test_series_limit(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    char t[32];
    for (int i = 0; i < EDDY_METRICS_MAX_SERIES; i++) {
        snprintf(t, sizeof t, "t%d", i);
        assert_non_null(eddy_metrics_series_get(m, "h", t));
    }
    assert_null(eddy_metrics_series_get(m, "h", "one.too.many"));
    assert_non_null(eddy_metrics_series_get(m, "h", "t0")); /* still found */
    eddy_metrics_free(m);
}

/* ---- histogram ---------------------------------------------------------- */

static void test_percentiles_uniform(void **state)
{
    (void)state;
    enum { N = 100000 };
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, "h", "t");
    /* 1..N ns in a scrambled order (a multiplier coprime to N). */
    uint64_t sum = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t v = (i * 7919u) % N + 1;
        sum += v;
        eddy_metrics_begin(s);
        eddy_metrics_end(s, EDDY_OUTCOME_SUCCESS, v);
    }
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    const eddy_metrics_series_stats *st = eddy_metrics_snapshot_series(snap, 0);
    assert_int_equal(st->handled, N);
    assert_int_equal(st->max_ns, N);
    assert_int_equal(st->sum_ns, sum);
    assert_int_equal(st->avg_ns, sum / N);
    /* With 1..N the nearest-rank q-quantile is ceil(q N). */
    assert_within_bound(st->p50_ns, 50000, 0.5);
    assert_within_bound(st->p90_ns, 90000, 0.9);
    assert_within_bound(st->p99_ns, 99000, 0.99);
    assert_within_bound(eddy_metrics_snapshot_percentile(snap, 0, 0.999), 99900, 0.999);
    assert_int_equal(eddy_metrics_snapshot_percentile(snap, 0, 1.0), N);
    assert_within_bound(eddy_metrics_snapshot_percentile(snap, 0, 0.0001), 10, 0.0001);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
}

/* A wide, skewed distribution (10 ns .. ~10 s, log-uniform) checked at many
 * quantiles against the exact nearest-rank values. */
static void test_percentiles_wide(void **state)
{
    (void)state;
    enum { N = 50000 };
    uint64_t *vals = malloc(N * sizeof *vals);
    assert_non_null(vals);
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, "h", "t");
    uint64_t x = 88172645463325252ull, max = 0;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
        vals[i] = (uint64_t)(10.0 * pow(1e9, u));
        max = vals[i] > max ? vals[i] : max;
        eddy_metrics_begin(s);
        eddy_metrics_end(s, EDDY_OUTCOME_SUCCESS, vals[i]);
    }
    qsort(vals, N, sizeof *vals, cmp_u64);
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    const eddy_metrics_series_stats *st = eddy_metrics_snapshot_series(snap, 0);
    assert_int_equal(st->max_ns, max);
    assert_within_bound(st->p50_ns, exact_quantile(vals, N, 0.5), 0.5);
    assert_within_bound(st->p90_ns, exact_quantile(vals, N, 0.9), 0.9);
    assert_within_bound(st->p99_ns, exact_quantile(vals, N, 0.99), 0.99);
    for (double q = 0.001; q <= 1.0; q += 0.0173)
        assert_within_bound(eddy_metrics_snapshot_percentile(snap, 0, q),
                            exact_quantile(vals, N, q), q);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
    free(vals);
}

/* Below 32 ns every value has its own bucket: percentiles are exact. An
 * overflowing duration (> 2^40 ns) is reported as the exact maximum. */
static void test_percentiles_small_and_overflow(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, "h", "small");
    for (uint64_t v = 0; v < 32; v++) {
        eddy_metrics_begin(s);
        eddy_metrics_end(s, EDDY_OUTCOME_SUCCESS, v);
    }
    eddy_metrics_series *big = eddy_metrics_series_get(m, "h", "big");
    uint64_t huge = (1ull << 41) + 12345;
    eddy_metrics_begin(big);
    eddy_metrics_end(big, EDDY_OUTCOME_SUCCESS, 5);
    eddy_metrics_begin(big);
    eddy_metrics_end(big, EDDY_OUTCOME_SUCCESS, huge);
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    size_t si, bi;
    assert_non_null(find_stats(snap, "h", "small", &si));
    for (int k = 1; k <= 32; k++)
        assert_int_equal(eddy_metrics_snapshot_percentile(snap, si, k / 32.0),
                         (uint64_t)(k - 1));
    const eddy_metrics_series_stats *b = find_stats(snap, "h", "big", &bi);
    assert_non_null(b);
    assert_int_equal(b->max_ns, huge);
    assert_int_equal(b->p99_ns, huge);
    assert_int_equal(b->p50_ns, 5);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
}

/* ---- gauges ------------------------------------------------------------- */

struct lag_source {
    int calls;
    long head, checkpoint;
    int fail;
};

static int lag_fn(double *value, void *user)
{
    struct lag_source *src = user;
    src->calls++;
    if (src->fail)
        return EDDY_ESTOPPED;
    *value = (double)(src->head - src->checkpoint);
    return EDDY_OK;
}

static const eddy_metrics_gauge_stats *find_gauge(const eddy_metrics_snapshot *snap,
                                                  const char *name,
                                                  const char *label_value)
{
    for (size_t i = 0; i < eddy_metrics_snapshot_gauge_count(snap); i++) {
        const eddy_metrics_gauge_stats *g = eddy_metrics_snapshot_gauge(snap, i);
        if (strcmp(g->name, name) == 0 &&
            ((!label_value && !g->label_value) ||
             (label_value && g->label_value && strcmp(g->label_value, label_value) == 0)))
            return g;
    }
    return NULL;
}

static void test_gauges(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_error err = {0};
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_QUEUE_DEPTH, NULL, "queue",
                                            "bus", 12, &err), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_QUEUE_DEPTH, "ignored",
                                            "queue", "bus", 7, &err), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_QUEUE_DEPTH, NULL, "queue",
                                            "outbox", 3, &err), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_set(m, "app_up", "Is it up.", NULL, NULL, 1,
                                            &err), EDDY_OK);

    struct lag_source lag = {0, 120, 100, 0};
    assert_int_equal(eddy_metrics_gauge_register(m, EDDY_METRIC_SUBSCRIPTION_LAG, NULL,
                                                 "subscription", "orders", lag_fn,
                                                 &lag, &err), EDDY_OK);
    assert_int_equal(lag.calls, 0); /* never from inside the registering call */

    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, &err);
    assert_non_null(snap);
    assert_int_equal(lag.calls, 1);
    assert_int_equal(eddy_metrics_snapshot_gauge_count(snap), 4);
    const eddy_metrics_gauge_stats *g = find_gauge(snap, EDDY_METRIC_QUEUE_DEPTH, "bus");
    assert_non_null(g);
    assert_true(g->value == 7.0);
    assert_string_equal(g->label_name, "queue");
    assert_string_equal(g->help, "Events waiting in a queue."); /* first help kept */
    g = find_gauge(snap, EDDY_METRIC_QUEUE_DEPTH, "outbox");
    assert_non_null(g);
    assert_true(g->value == 3.0);
    g = find_gauge(snap, "app_up", NULL);
    assert_non_null(g);
    assert_null(g->label_name);
    assert_string_equal(g->help, "Is it up.");
    g = find_gauge(snap, EDDY_METRIC_SUBSCRIPTION_LAG, "orders");
    assert_non_null(g);
    assert_true(g->value == 20.0);
    /* Sorted by name, then label value. */
    for (size_t i = 1; i < eddy_metrics_snapshot_gauge_count(snap); i++)
        assert_true(strcmp(eddy_metrics_snapshot_gauge(snap, i - 1)->name,
                           eddy_metrics_snapshot_gauge(snap, i)->name) <= 0);
    assert_null(eddy_metrics_snapshot_gauge(snap, 4));
    eddy_metrics_snapshot_free(snap);

    /* Computed on demand; a failing function leaves its gauge out. */
    lag.checkpoint = 115;
    snap = eddy_metrics_snapshot_take(m, NULL);
    assert_true(find_gauge(snap, EDDY_METRIC_SUBSCRIPTION_LAG, "orders")->value == 5.0);
    eddy_metrics_snapshot_free(snap);
    lag.fail = 1;
    snap = eddy_metrics_snapshot_take(m, NULL);
    assert_null(find_gauge(snap, EDDY_METRIC_SUBSCRIPTION_LAG, "orders"));
    assert_int_equal(eddy_metrics_snapshot_gauge_count(snap), 3);
    eddy_metrics_snapshot_free(snap);
    lag.fail = 0;

    /* Conflicts and bad input. */
    eddy_error_clear(&err);
    assert_int_equal(eddy_metrics_gauge_register(m, EDDY_METRIC_SUBSCRIPTION_LAG, NULL,
                                                 "subscription", "orders", lag_fn,
                                                 &lag, &err), EDDY_EEXIST);
    assert_non_null(strstr(err.message, "exists"));
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_SUBSCRIPTION_LAG, NULL,
                                            "subscription", "orders", 1, &err),
                     EDDY_EEXIST);
    assert_int_equal(eddy_metrics_gauge_set(m, "9lives", NULL, NULL, NULL, 1, &err),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "9lives"));
    assert_int_equal(eddy_metrics_gauge_set(m, "a-b", NULL, NULL, NULL, 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(m, NULL, NULL, NULL, NULL, 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(m, "eddy_handler_x", NULL, NULL, NULL, 1,
                                            &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "reserved"));
    assert_int_equal(eddy_metrics_gauge_set(m, "g", NULL, "__x", "v", 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(m, "g", NULL, "a:b", "v", 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(m, "g", NULL, "q", NULL, 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(m, "g", NULL, "q", "", 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(m, "g", NULL, "q", "\xc0", 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_set(NULL, "g", NULL, NULL, NULL, 1, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_metrics_gauge_register(m, "g", NULL, NULL, NULL, NULL, NULL,
                                                 &err), EDDY_EINVAL);

    /* Unregistered: never called again. */
    int before = lag.calls;
    assert_int_equal(eddy_metrics_gauge_unregister(m, EDDY_METRIC_SUBSCRIPTION_LAG,
                                                   "subscription", "orders"), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_unregister(m, EDDY_METRIC_SUBSCRIPTION_LAG,
                                                   "subscription", "orders"),
                     EDDY_ENOTFOUND);
    assert_int_equal(eddy_metrics_gauge_unregister(m, "app_up", NULL, NULL), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_unregister(m, NULL, NULL, NULL), EDDY_EINVAL);
    snap = eddy_metrics_snapshot_take(m, NULL);
    assert_int_equal(lag.calls, before);
    assert_int_equal(eddy_metrics_snapshot_gauge_count(snap), 2);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
}

/* ---- Prometheus text ------------------------------------------------------ */

struct family {
    char name[128];
    int help, type;
    char kind[256];
    int samples;
};

struct label {
    char name[64];
    char value[256]; /* unescaped */
};

struct sample {
    char name[128];
    int nlabels;
    struct label labels[4];
    char value[64];
};

/* Parses one sample line of the 0.0.4 format; fails the test on any
 * syntax error. */
static void parse_sample(const char *line, struct sample *out)
{
    memset(out, 0, sizeof *out);
    const char *p = line;
    size_t n = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
           *p == ':' || (n && *p >= '0' && *p <= '9')) {
        assert_true(n + 1 < sizeof out->name);
        out->name[n++] = *p++;
    }
    if (n == 0)
        fail_msg("no metric name in: %s", line);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            assert_true(out->nlabels < 4);
            struct label *l = &out->labels[out->nlabels++];
            size_t k = 0;
            while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                   (k && *p >= '0' && *p <= '9'))
                l->name[k++] = *p++;
            if (k == 0 || *p != '=' || p[1] != '"')
                fail_msg("bad label in: %s", line);
            p += 2;
            k = 0;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n')
                    fail_msg("unterminated label value in: %s", line);
                char c = *p++;
                if (c == '\\') {
                    char e = *p++;
                    if (e == 'n')
                        c = '\n';
                    else if (e == '\\' || e == '"')
                        c = e;
                    else
                        fail_msg("bad escape \\%c in: %s", e, line);
                }
                assert_true(k + 1 < sizeof l->value);
                l->value[k++] = c;
            }
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                fail_msg("expected , or } in: %s", line);
        }
        p++;
    }
    if (*p != ' ')
        fail_msg("expected a space before the value in: %s", line);
    p++;
    assert_true(strlen(p) < sizeof out->value);
    snprintf(out->value, sizeof out->value, "%s", p);
    if (strcmp(p, "+Inf") && strcmp(p, "-Inf") && strcmp(p, "NaN")) {
        char *end;
        strtod(p, &end);
        if (*end != '\0' || end == p)
            fail_msg("value is not a number in: %s", line);
    }
}

static const char *label_of(const struct sample *s, const char *name)
{
    for (int i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}

static struct family *family_of(struct family *fams, int nfams, const char *name)
{
    for (int i = 0; i < nfams; i++)
        if (strcmp(fams[i].name, name) == 0)
            return &fams[i];
    return NULL;
}

static void test_prometheus_text(void **state)
{
    (void)state;
    const char *odd = "pay\"ment\\x\nnew";
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, odd, "order.placed");
    eddy_metrics_series *q = eddy_metrics_series_get(m, "email", "user.registered");
    assert_non_null(s);
    assert_non_null(q);
    const uint64_t durs[] = {500, 1000, 1001, 3000000, 20000000000ull};
    for (size_t i = 0; i < 5; i++) {
        eddy_metrics_begin(s);
        eddy_metrics_end(s, i == 2 ? EDDY_OUTCOME_FAILURE : EDDY_OUTCOME_SUCCESS, durs[i]);
    }
    eddy_metrics_retried(s);
    eddy_metrics_dead_lettered(s);
    eddy_metrics_begin(s);
    eddy_metrics_begin(q);
    eddy_metrics_end(q, EDDY_OUTCOME_SUCCESS, 2500);
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_QUEUE_DEPTH, NULL, "queue",
                                            "b\"us", 12, NULL), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_QUEUE_DEPTH, NULL, "queue",
                                            "outbox", 0.5, NULL), EDDY_OK);
    assert_int_equal(eddy_metrics_gauge_set(m, "app_ratio", "A ratio \\ with\nnewline.",
                                            NULL, NULL, NAN, NULL), EDDY_OK);

    char *text = eddy_metrics_prometheus(m);
    assert_non_null(text);
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    /* The escaped label exactly as the format wants it. */
    assert_non_null(strstr(text, "{handler=\"pay\\\"ment\\\\x\\nnew\",type=\"order.placed\"}"));
    assert_non_null(strstr(text, "# HELP app_ratio A ratio \\\\ with\\nnewline.\n"));
    assert_non_null(strstr(text, "app_ratio NaN\n"));

    struct family fams[32];
    int nfams = 0;
    struct family *current = NULL;
    uint64_t last_cum = 0;
    double last_le = -1;
    uint64_t inf_count = UINT64_MAX;
    int odd_buckets = 0, checked_counters = 0;

    char *nl;
    for (char *line = text; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        *nl = '\0';
        if (line[0] == '#') {
            char kw[8], name[128], rest[256];
            assert_int_equal(sscanf(line, "# %7s %127s %255[^\n]", kw, name, rest), 3);
            struct family *f = family_of(fams, nfams, name);
            if (!f) {
                assert_true(nfams < 32);
                f = &fams[nfams++];
                memset(f, 0, sizeof *f);
                snprintf(f->name, sizeof f->name, "%s", name);
            }
            if (strcmp(kw, "HELP") == 0) {
                assert_int_equal(f->samples, 0); /* before the samples */
                f->help++;
            } else if (strcmp(kw, "TYPE") == 0) {
                assert_int_equal(f->samples, 0);
                f->type++;
                snprintf(f->kind, sizeof f->kind, "%s", rest);
                assert_true(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 ||
                            strcmp(rest, "histogram") == 0);
            } else {
                fail_msg("unknown comment: %s", line);
            }
            current = f;
            continue;
        }
        struct sample smp;
        parse_sample(line, &smp);
        /* A sample belongs to the family announced last. */
        assert_non_null(current);
        size_t flen = strlen(current->name);
        assert_memory_equal(smp.name, current->name, flen);
        const char *suffix = smp.name + flen;
        if (strcmp(current->kind, "histogram") == 0)
            assert_true(strcmp(suffix, "_bucket") == 0 || strcmp(suffix, "_sum") == 0 ||
                        strcmp(suffix, "_count") == 0);
        else
            assert_string_equal(suffix, "");
        current->samples++;

        const char *handler = label_of(&smp, "handler");
        if (strcmp(smp.name, "eddy_handler_duration_seconds_bucket") == 0) {
            const char *le = label_of(&smp, "le");
            assert_non_null(le);
            uint64_t cum = strtoull(smp.value, NULL, 10);
            if (strcmp(handler, odd) != 0)
                continue;
            double lev = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
            if (odd_buckets > 0) {
                assert_true(lev > last_le);     /* bounds increase */
                assert_true(cum >= last_cum);  /* counts are cumulative */
            }
            last_le = lev;
            last_cum = cum;
            odd_buckets++;
            if (strcmp(le, "0.000001") == 0)
                assert_int_equal(cum, 2); /* 500 and exactly 1000 ns */
            if (strcmp(le, "0.0000025") == 0)
                assert_int_equal(cum, 3);
            if (strcmp(le, "0.0025") == 0)
                assert_int_equal(cum, 3);
            if (strcmp(le, "0.005") == 0)
                assert_int_equal(cum, 4);
            if (strcmp(le, "10") == 0)
                assert_int_equal(cum, 4);
            if (isinf(lev))
                inf_count = cum;
        } else if (strcmp(smp.name, "eddy_handler_duration_seconds_count") == 0 &&
                   strcmp(handler, odd) == 0) {
            assert_int_equal(strtoull(smp.value, NULL, 10), inf_count);
            assert_int_equal(inf_count, 5);
        } else if (strcmp(smp.name, "eddy_handler_duration_seconds_sum") == 0 &&
                   strcmp(handler, odd) == 0) {
            assert_string_equal(smp.value, "20.003002501");
        } else if (handler && strcmp(handler, odd) == 0) {
            assert_string_equal(label_of(&smp, "type"), "order.placed");
            const char *want = NULL;
            if (strcmp(smp.name, "eddy_handler_events_handled_total") == 0)
                want = "5";
            else if (strcmp(smp.name, "eddy_handler_events_failed_total") == 0)
                want = "1";
            else if (strcmp(smp.name, "eddy_handler_events_retried_total") == 0)
                want = "1";
            else if (strcmp(smp.name, "eddy_handler_events_dead_lettered_total") == 0)
                want = "1";
            else if (strcmp(smp.name, "eddy_handler_events_in_flight") == 0)
                want = "1";
            else
                fail_msg("unexpected series sample: %s", line);
            assert_string_equal(smp.value, want);
            checked_counters++;
        } else if (strcmp(smp.name, EDDY_METRIC_QUEUE_DEPTH) == 0) {
            const char *qv = label_of(&smp, "queue");
            assert_non_null(qv);
            assert_string_equal(smp.value, strcmp(qv, "b\"us") == 0 ? "12" : "0.5");
        }
    }
    assert_int_equal(odd_buckets, 23);
    assert_int_equal(checked_counters, 5);
    assert_true(isinf(last_le));

    const char *expected[] = {
        "eddy_handler_events_handled_total", "eddy_handler_events_failed_total",
        "eddy_handler_events_retried_total", "eddy_handler_events_dead_lettered_total",
        "eddy_handler_events_in_flight", "eddy_handler_duration_seconds",
        EDDY_METRIC_QUEUE_DEPTH, "app_ratio"};
    assert_int_equal(nfams, 8);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        struct family *f = family_of(fams, nfams, expected[i]);
        if (!f)
            fail_msg("family %s missing", expected[i]);
        assert_int_equal(f->help, 1);
        assert_int_equal(f->type, 1);
        assert_true(f->samples > 0);
        /* Counters end in _total, nothing else does (conventions). */
        int is_total = strlen(f->name) > 6 &&
                       strcmp(f->name + strlen(f->name) - 6, "_total") == 0;
        assert_int_equal(is_total, strcmp(f->kind, "counter") == 0);
    }
    assert_int_equal(family_of(fams, nfams, EDDY_METRIC_QUEUE_DEPTH)->samples, 2);
    /* Two series x 23 buckets + _sum + _count. */
    assert_int_equal(family_of(fams, nfams, "eddy_handler_duration_seconds")->samples,
                     2 * 25);
    free(text);

    /* An empty registry exposes nothing, and that is valid. */
    eddy_metrics *empty = eddy_metrics_new();
    text = eddy_metrics_prometheus(empty);
    assert_non_null(text);
    assert_string_equal(text, "");
    free(text);
    eddy_metrics_free(empty);
    eddy_metrics_free(m);
}

/* Every le bucket equals the exact number of recorded durations <= le, for
 * durations at, just below and just above every bound and a wide spread. */
static void test_prometheus_buckets_exact(void **state)
{
    (void)state;
    enum { MAXV = 40000 };
    uint64_t *vals = malloc(MAXV * sizeof *vals);
    assert_non_null(vals);
    size_t n = 0;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, "h", "t");
    const double les[] = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
                          5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
                          0.25, 0.5, 1, 2.5, 5, 10};
    for (size_t i = 0; i < sizeof les / sizeof les[0]; i++) {
        uint64_t b = (uint64_t)llround(les[i] * 1e9);
        vals[n++] = b - 1;
        vals[n++] = b;
        vals[n++] = b;
        vals[n++] = b + 1;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    while (n < MAXV) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0;
        vals[n++] = (uint64_t)(pow(3e10, u)); /* 1 ns .. 30 s */
    }
    for (size_t i = 0; i < n; i++) {
        eddy_metrics_begin(s);
        eddy_metrics_end(s, EDDY_OUTCOME_SUCCESS, vals[i]);
    }
    char *text = eddy_metrics_prometheus(m);
    assert_non_null(text);
    const char *prefix = "eddy_handler_duration_seconds_bucket{handler=\"h\",type=\"t\",le=\"";
    int buckets = 0;
    for (const char *p = strstr(text, prefix); p; p = strstr(p + 1, prefix)) {
        const char *le = p + strlen(prefix);
        unsigned long long got;
        char lebuf[32];
        assert_int_equal(sscanf(le, "%31[^\"]\"} %llu", lebuf, &got), 2);
        uint64_t want = 0;
        if (strcmp(lebuf, "+Inf") == 0) {
            want = n;
        } else {
            uint64_t bound = (uint64_t)llround(strtod(lebuf, NULL) * 1e9);
            for (size_t i = 0; i < n; i++)
                want += vals[i] <= bound;
        }
        if (got != want)
            fail_msg("le=%s: %llu in the bucket, %" PRIu64 " expected", lebuf, got, want);
        buckets++;
    }
    assert_int_equal(buckets, 23);
    free(text);
    free(vals);
    eddy_metrics_free(m);
}

static void test_format_table(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    eddy_metrics_series *s = eddy_metrics_series_get(m, "payment", "order.placed");
    for (int i = 0; i < 3; i++) {
        eddy_metrics_begin(s);
        eddy_metrics_end(s, i == 0 ? EDDY_OUTCOME_FAILURE : EDDY_OUTCOME_SUCCESS,
                         2000000);
    }
    eddy_metrics_retried(s);
    assert_non_null(eddy_metrics_series_get(m, "idle", "x"));
    assert_int_equal(eddy_metrics_gauge_set(m, EDDY_METRIC_QUEUE_DEPTH, NULL, "queue",
                                            "bus", 4, NULL), EDDY_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(eddy_metrics_format_table(m, out), EDDY_OK);
    fclose(out);
    assert_non_null(buf);
    assert_non_null(strstr(buf, "HANDLER"));
    assert_non_null(strstr(buf, "P99"));
    /* payment row: handled 3, failed 1, retried 1, dead 0, in flight 0,
     * p50 = p99 = max = 2.0ms (within the bucket bound, capped at max). */
    const char *row = strstr(buf, "payment");
    assert_non_null(row);
    unsigned long long handled, failed, retried, dead;
    long long flight;
    char type[32], p50[16], p99[16], max[16];
    assert_int_equal(sscanf(row, "payment %31s %llu %llu %llu %llu %lld %15s %15s %15s",
                            type, &handled, &failed, &retried, &dead, &flight, p50,
                            p99, max), 9);
    assert_string_equal(type, "order.placed");
    assert_int_equal(handled, 3);
    assert_int_equal(failed, 1);
    assert_int_equal(retried, 1);
    assert_int_equal(dead, 0);
    assert_int_equal(flight, 0);
    assert_string_equal(max, "2.0ms");
    assert_string_equal(p99, "2.0ms");
    row = strstr(buf, "idle");
    assert_non_null(row);
    assert_non_null(strstr(row, " - ")); /* no durations yet */
    assert_non_null(strstr(buf, "eddy_queue_depth{queue=\"bus\"}  4"));
    free(buf);
    eddy_metrics_free(m);
}

/* ---- concurrency -------------------------------------------------------- */

enum { THREADS = 4, PER_THREAD = 50000 };

struct worker {
    eddy_metrics *m;
    int id;
};

static void *record_worker(void *arg)
{
    struct worker *w = arg;
    char own[32];
    snprintf(own, sizeof own, "worker-%d", w->id);
    for (int i = 0; i < PER_THREAD; i++) {
        /* Looked up every time on purpose: lookups race with creations
         * of other series and with table growth. */
        eddy_metrics_series *shared = eddy_metrics_series_get(w->m, "shared", "t");
        char type[32];
        snprintf(type, sizeof type, "t%d", i % 50);
        eddy_metrics_series *mine = eddy_metrics_series_get(w->m, own, type);
        if (!shared || !mine)
            return (void *)1;
        uint64_t d = (uint64_t)(i % 5000) + (uint64_t)w->id;
        eddy_metrics_begin(shared);
        eddy_metrics_begin(mine);
        eddy_metrics_end(shared, i % 7 == 0 ? EDDY_OUTCOME_FAILURE : EDDY_OUTCOME_SUCCESS, d);
        eddy_metrics_end(mine, EDDY_OUTCOME_SUCCESS, d);
        if (i % 3 == 0)
            eddy_metrics_retried(shared);
        if (i % 11 == 0)
            eddy_metrics_dead_lettered(shared);
        if (i % 1000 == 0) {
            char label[16];
            snprintf(label, sizeof label, "q%d", w->id);
            if (eddy_metrics_gauge_set(w->m, EDDY_METRIC_QUEUE_DEPTH, NULL, "queue",
                                       label, i, NULL) != EDDY_OK)
                return (void *)1;
        }
    }
    return NULL;
}

static int counting_gauge(double *value, void *user)
{
    int *calls = user;
    (*calls)++; /* serialised by the registry's gauge mutex */
    *value = *calls;
    return EDDY_OK;
}

static void test_concurrent_recording(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    assert_non_null(m);
    int calls = 0;
    assert_int_equal(eddy_metrics_gauge_register(m, "test_calls", NULL, NULL, NULL,
                                                 counting_gauge, &calls, NULL), EDDY_OK);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){m, i};
        assert_int_equal(pthread_create(&th[i], NULL, record_worker, &w[i]), 0);
    }
    /* Snapshots and expositions while the workers record: counters only
     * grow. */
    uint64_t last_handled = 0;
    for (int k = 0; k < 20; k++) {
        eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
        assert_non_null(snap);
        const eddy_metrics_series_stats *st = find_stats(snap, "shared", "t", NULL);
        if (st) {
            assert_true(st->handled >= last_handled);
            assert_true(st->handled <= (uint64_t)THREADS * PER_THREAD);
            last_handled = st->handled;
        }
        eddy_metrics_snapshot_free(snap);
        char *text = eddy_metrics_prometheus(m);
        assert_non_null(text);
        free(text);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        assert_int_equal(pthread_join(th[i], &rv), 0);
        assert_null(rv);
    }

    uint64_t failed = 0, retried = 0, dead = 0, sum = 0, max = 0;
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            uint64_t d = (uint64_t)(i % 5000) + (uint64_t)t;
            failed += i % 7 == 0;
            retried += i % 3 == 0;
            dead += i % 11 == 0;
            sum += d;
            max = d > max ? d : max;
        }
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    assert_int_equal(eddy_metrics_snapshot_series_count(snap), 1 + THREADS * 50);
    size_t idx;
    const eddy_metrics_series_stats *st = find_stats(snap, "shared", "t", &idx);
    assert_non_null(st);
    assert_int_equal(st->handled, (uint64_t)THREADS * PER_THREAD);
    assert_int_equal(st->failed, failed);
    assert_int_equal(st->succeeded, (uint64_t)THREADS * PER_THREAD - failed);
    assert_int_equal(st->retried, retried);
    assert_int_equal(st->dead_lettered, dead);
    assert_int_equal(st->in_flight, 0);
    assert_int_equal(st->sum_ns, sum);
    assert_int_equal(st->max_ns, max);
    assert_int_equal(eddy_metrics_snapshot_percentile(snap, idx, 1.0), max);
    for (int t = 0; t < THREADS; t++) {
        char own[32];
        snprintf(own, sizeof own, "worker-%d", t);
        st = find_stats(snap, own, "t7", NULL);
        assert_non_null(st);
        assert_int_equal(st->handled, PER_THREAD / 50);
        assert_int_equal(st->in_flight, 0);
    }
    assert_int_equal(eddy_metrics_snapshot_gauge_count(snap), 1 + THREADS);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
}

static void test_clock(void **state)
{
    (void)state;
    uint64_t a = eddy_metrics_clock_ns();
    uint64_t b = eddy_metrics_clock_ns();
    assert_true(a > 0);
    assert_true(b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_sequence),
        cmocka_unit_test(test_series_identity_and_input),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_percentiles_uniform),
        cmocka_unit_test(test_percentiles_wide),
        cmocka_unit_test(test_percentiles_small_and_overflow),
        cmocka_unit_test(test_gauges),
        cmocka_unit_test(test_prometheus_text),
        cmocka_unit_test(test_prometheus_buckets_exact),
        cmocka_unit_test(test_format_table),
        cmocka_unit_test(test_concurrent_recording),
        cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
