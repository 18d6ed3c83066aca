/*
 * tests/test_bus.c - the in-process bus: matching, per-key ordering over
 * several workers, error isolation, drain on stop, backpressure, follow-up
 * events, unsubscribe and stop from handlers. Also runs under ThreadSanitizer.
 *
 * Handlers never call cmocka's asserts (they run on worker threads): they
 * record what they saw, and the test thread asserts after stop/join.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "eddy/eddy.h"

/* ---- helpers -------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls `flag` until it reaches `want` (or 10 s pass). */
static bool wait_for(atomic_int *flag, int want)
{
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(flag) >= want)
            return true;
        sleep_ms(1);
    }
    return false;
}

static eddy_event *ev_new(const char *type, const char *subject)
{
    eddy_error err = {0};
    eddy_event *ev = eddy_event_newf(type, "test", subject, &err, NULL);
    if (!ev)
        fail_msg("eddy_event_newf(%s): %s", type, err.message);
    return ev;
}

/* Publishes a new event and drops the test's reference. */
static int publish_new(eddy_bus *bus, const char *type, const char *subject)
{
    eddy_event *ev = ev_new(type, subject);
    int rc = eddy_bus_publish(bus, ev);
    eddy_event_unref(ev);
    return rc;
}

static eddy_bus *bus_new_started(unsigned workers, size_t capacity,
                                 eddy_full_policy policy)
{
    eddy_bus_options o = {.workers = workers, .queue_capacity = capacity,
                          .full_policy = policy, .source = "test-bus"};
    eddy_error err = {0};
    eddy_bus *bus = eddy_bus_new(&o, &err);
    if (!bus)
        fail_msg("eddy_bus_new: %s", err.message);
    assert_int_equal(eddy_bus_start(bus), EDDY_OK);
    return bus;
}

/* A log capture: the lines at WARN and above. */
#define LOG_LINES 64
static struct {
    pthread_mutex_t lock;
    int count;
    char lines[LOG_LINES][1100];
} logcap = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void log_capture(eddy_log_level level, const char *component,
                        const char *message, void *user)
{
    (void)user;
    pthread_mutex_lock(&logcap.lock);
    if (logcap.count < LOG_LINES)
        snprintf(logcap.lines[logcap.count], sizeof logcap.lines[0],
                 "%s %s: %s", eddy_log_level_name(level), component, message);
    logcap.count++;
    pthread_mutex_unlock(&logcap.lock);
}

static void log_start(void)
{
    pthread_mutex_lock(&logcap.lock);
    logcap.count = 0;
    pthread_mutex_unlock(&logcap.lock);
    eddy_log_set(log_capture, EDDY_LOG_WARN, NULL);
}

/* Counts captured lines containing every one of the NULL-terminated words. */
static int log_count(const char *word, ...)
{
    int n = 0;
    pthread_mutex_lock(&logcap.lock);
    for (int i = 0; i < logcap.count && i < LOG_LINES; i++) {
        bool all = true;
        va_list ap;
        va_start(ap, word);
        for (const char *w = word; w; w = va_arg(ap, const char *))
            if (!strstr(logcap.lines[i], w))
                all = false;
        va_end(ap);
        n += all;
    }
    pthread_mutex_unlock(&logcap.lock);
    return n;
}

/* A gate handlers wait at until the test opens it. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    atomic_int entered;  /* handler calls that reached the gate */
    atomic_int finished; /* handler calls that passed it */
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = false;
    atomic_init(&g->entered, 0);
    atomic_init(&g->finished, 0);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static int on_gate(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct gate *g = user;
    atomic_fetch_add(&g->entered, 1);
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    atomic_fetch_add(&g->finished, 1);
    return EDDY_OK;
}

static int on_count(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    return EDDY_OK;
}

/* ---- construction and lifecycle ------------------------------------------ */

static void test_lifecycle(void **state)
{
    eddy_error err = {0};
    eddy_bus_options o = {.workers = 100000};
    assert_null(eddy_bus_new(&o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "workers"));
    o = (eddy_bus_options){.full_policy = (eddy_full_policy)7};
    assert_null(eddy_bus_new(&o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    o = (eddy_bus_options){.source = ""};
    assert_null(eddy_bus_new(&o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    eddy_bus_free(NULL);

    /* Never started: publishing fails, dispatch works, free is clean. */
    eddy_bus *bus = eddy_bus_new(NULL, &err);
    assert_non_null(bus);
    atomic_int n = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "*", "count", on_count, &n, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "a.b", "s"), EDDY_ESTOPPED);
    eddy_event *ev = ev_new("a.b", "s");
    assert_int_equal(eddy_bus_dispatch(bus, ev), EDDY_OK);
    assert_int_equal(atomic_load(&n), 1);
    assert_int_equal(eddy_bus_pending(bus), 0);
    eddy_bus_free(bus);

    /* Start twice; stop is idempotent; a stopped bus cannot restart. */
    bus = eddy_bus_new(NULL, NULL);
    assert_int_equal(eddy_bus_start(bus), EDDY_OK);
    assert_int_equal(eddy_bus_start(bus), EDDY_ESTATE);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(eddy_bus_start(bus), EDDY_ESTATE);
    assert_int_equal(eddy_bus_publish(bus, ev), EDDY_ESTOPPED);
    eddy_bus_free(bus);

    /* Stopped before it ever started. */
    bus = eddy_bus_new(NULL, NULL);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(eddy_bus_start(bus), EDDY_ESTATE);
    eddy_bus_free(bus);

    /* Freed while running, with events queued: it drains first. */
    n = 0;
    bus = bus_new_started(2, 0, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_subscribe(bus, "a.*", "count", on_count, &n,
                                        NULL, NULL), EDDY_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(eddy_bus_publish(bus, ev), EDDY_OK);
    eddy_bus_free(bus);
    assert_int_equal(atomic_load(&n), 100);
    /* Our reference survived 100 queued copies. */
    assert_string_equal(eddy_event_type(ev), "a.b");
    eddy_event_unref(ev);
}

/* ---- matching ------------------------------------------------------------- */

#define MATCH_SUBS 5
static const char *const match_patterns[MATCH_SUBS] = {
    "order.placed", "order.*", "*", "order.item.*", "orders.x"};

struct match_rec {
    atomic_int hits[MATCH_SUBS];
};

static int on_match(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct match_rec *r = user;
    const char *name = eddy_ctx_handler(ctx);
    atomic_fetch_add(&r->hits[name[0] - '0'], 1);
    return EDDY_OK;
}

/* Which handlers eddy_bus_dispatch runs for `type`, as a bit mask. */
static unsigned matched(eddy_bus *bus, struct match_rec *r, const char *type)
{
    for (int i = 0; i < MATCH_SUBS; i++)
        atomic_store(&r->hits[i], 0);
    eddy_event *ev = ev_new(type, NULL);
    assert_int_equal(eddy_bus_dispatch(bus, ev), EDDY_OK);
    eddy_event_unref(ev);
    unsigned mask = 0;
    for (int i = 0; i < MATCH_SUBS; i++)
        if (atomic_load(&r->hits[i]))
            mask |= 1u << i;
    return mask;
}

static void test_matching(void **state)
{
    eddy_bus *bus = eddy_bus_new(NULL, NULL);
    struct match_rec r;
    for (int i = 0; i < MATCH_SUBS; i++) {
        char name[2] = {(char)('0' + i), '\0'};
        assert_int_equal(eddy_bus_subscribe(bus, match_patterns[i], name,
                                            on_match, &r, NULL, NULL),
                         EDDY_OK);
    }
    assert_int_equal(matched(bus, &r, "order.placed"), 1u | 2u | 4u);
    assert_int_equal(matched(bus, &r, "order.item.added"), 2u | 4u | 8u);
    assert_int_equal(matched(bus, &r, "order"), 4u);
    assert_int_equal(matched(bus, &r, "orders.x"), 4u | 16u);
    assert_int_equal(matched(bus, &r, "orders.y"), 4u);
    assert_int_equal(matched(bus, &r, "order.placedx"), 2u | 4u);

    /* Names are unique; bad patterns and names are refused. */
    eddy_error err = {0};
    assert_int_equal(eddy_bus_subscribe(bus, "x", "0", on_match, &r, NULL,
                                        &err), EDDY_EEXIST);
    assert_non_null(strstr(err.message, "\"0\""));
    static const char *const bad[] = {"", "order*", "*.placed", "a.*.b", ".*",
                                      "a b", "**", "a.**", "order.\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = (eddy_error){0};
        assert_int_equal(eddy_bus_subscribe(bus, bad[i], "bad", on_match, &r,
                                            NULL, &err), EDDY_EINVAL);
        assert_int_equal(err.code, EDDY_EINVAL);
        assert_non_null(strstr(err.message, "pattern"));
    }
    assert_int_equal(eddy_bus_subscribe(bus, "x", "", on_match, &r, NULL,
                                        &err), EDDY_EINVAL);
    assert_int_equal(eddy_bus_subscribe(bus, NULL, "n", on_match, &r, NULL,
                                        &err), EDDY_EINVAL);
    assert_int_equal(eddy_bus_subscribe(bus, "x", "n", NULL, &r, NULL, &err),
                     EDDY_EINVAL);
    /* A refused subscription never runs. */
    assert_int_equal(matched(bus, &r, "order.placed"), 1u | 2u | 4u);
    eddy_bus_free(bus);
}

/* The same through the queues, with a can_handle filter. */
static bool only_vip(const eddy_event *ev, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    const char *s = eddy_event_subject(ev);
    return s && strncmp(s, "vip-", 4) == 0;
}

static void test_filter_and_queued_matching(void **state)
{
    eddy_bus *bus = bus_new_started(4, 0, EDDY_FULL_BLOCK);
    atomic_int all = 0, vip = 0, prefix = 0, filtered = 0;
    eddy_subscribe_options so = {.can_handle = only_vip, .filter_user = &filtered};
    assert_int_equal(eddy_bus_subscribe(bus, "*", "all", on_count, &all, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "user.created", "vip", on_count,
                                        &vip, &so, NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "user.*", "prefix", on_count,
                                        &prefix, NULL, NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "user.created", "vip-1"), EDDY_OK);
    assert_int_equal(publish_new(bus, "user.created", "joe"), EDDY_OK);
    assert_int_equal(publish_new(bus, "user.created", "vip-2"), EDDY_OK);
    assert_int_equal(publish_new(bus, "user", "vip-3"), EDDY_OK);
    assert_int_equal(publish_new(bus, "user.deleted", NULL), EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&all), 5);
    assert_int_equal(atomic_load(&vip), 2);
    assert_int_equal(atomic_load(&filtered), 3);
    assert_int_equal(atomic_load(&prefix), 4);
    eddy_bus_free(bus);
}

/* ---- per-key ordering ----------------------------------------------------- */

#define ORDER_KEYS 64
#define ORDER_PER_KEY 500

struct order_rec {
    pthread_mutex_t lock;
    int last[ORDER_KEYS];
    pthread_t thread[ORDER_KEYS];
    bool seen[ORDER_KEYS];
    int out_of_order;
    int thread_changes; /* a key seen on two threads */
    int handled;
    int bad_data;
};

static int on_order(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct order_rec *r = user;
    int k, n;
    if (eddy_event_unpack(ev, NULL, "{s:i, s:i}", "k", &k, "n", &n) != EDDY_OK ||
        k < 0 || k >= ORDER_KEYS) {
        pthread_mutex_lock(&r->lock);
        r->bad_data++;
        pthread_mutex_unlock(&r->lock);
        return eddy_ctx_fail(ctx, EDDY_EINVAL, "bad data");
    }
    pthread_mutex_lock(&r->lock);
    if (n <= r->last[k])
        r->out_of_order++;
    r->last[k] = n;
    if (!r->seen[k]) {
        r->seen[k] = true;
        r->thread[k] = pthread_self();
    } else if (!pthread_equal(r->thread[k], pthread_self())) {
        r->thread_changes++;
    }
    r->handled++;
    pthread_mutex_unlock(&r->lock);
    return EDDY_OK;
}

static void test_per_key_order(void **state)
{
    static struct order_rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    for (int k = 0; k < ORDER_KEYS; k++)
        r.last[k] = -1;
    eddy_bus *bus = bus_new_started(4, 256, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_subscribe(bus, "seq.*", "order", on_order, &r,
                                        NULL, NULL), EDDY_OK);
    /* Keys interleaved, starting one further each round (so no fixed
     * publish pattern maps keys to workers by accident), in batches of 8 and
     * singly, so rings fill and the block policy is exercised too. */
    eddy_event *batch[8];
    size_t nb = 0;
    for (int n = 0; n < ORDER_PER_KEY; n++) {
        for (int j = 0; j < ORDER_KEYS; j++) {
            int k = (j + n) % ORDER_KEYS;
            char subject[16];
            snprintf(subject, sizeof subject, "key-%d", k);
            eddy_error err = {0};
            eddy_event *ev = eddy_event_newf("seq.next", "test", subject, &err,
                                             "{s:i, s:i}", "k", k, "n", n);
            assert_non_null(ev);
            if (j % 2 == 0) {
                assert_int_equal(eddy_bus_publish(bus, ev), EDDY_OK);
                eddy_event_unref(ev);
                continue;
            }
            batch[nb++] = ev;
            if (nb == 8) {
                size_t accepted = 0;
                assert_int_equal(eddy_bus_publish_batch(bus, batch, nb,
                                                        &accepted), EDDY_OK);
                assert_int_equal(accepted, nb);
                for (size_t i = 0; i < nb; i++)
                    eddy_event_unref(batch[i]);
                nb = 0;
            }
        }
    }
    assert_int_equal(nb, 0);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(eddy_bus_pending(bus), 0);
    assert_int_equal(r.bad_data, 0);
    assert_int_equal(r.handled, ORDER_KEYS * ORDER_PER_KEY);
    assert_int_equal(r.out_of_order, 0);
    assert_int_equal(r.thread_changes, 0);
    for (int k = 0; k < ORDER_KEYS; k++)
        assert_int_equal(r.last[k], ORDER_PER_KEY - 1);
    /* Parallelism: the keys were spread over more than one worker. */
    int distinct = 0;
    for (int k = 0; k < ORDER_KEYS; k++) {
        bool dup = false;
        for (int j = 0; j < k && !dup; j++)
            dup = pthread_equal(r.thread[j], r.thread[k]);
        distinct += !dup;
    }
    assert_true(distinct > 1);
    assert_true(distinct <= 4);
    eddy_bus_free(bus);
    pthread_mutex_destroy(&r.lock);
}

/* A custom partition key: every event of one tenant goes to one worker. */
static const char *tenant_key(const eddy_event *ev, void *user)
{
    (void)user;
    return eddy_event_source(ev);
}

static void test_partition_key(void **state)
{
    static struct order_rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    for (int k = 0; k < ORDER_KEYS; k++)
        r.last[k] = -1;
    eddy_bus_options o = {.workers = 4, .partition_key = tenant_key};
    eddy_bus *bus = eddy_bus_new(&o, NULL);
    assert_int_equal(eddy_bus_start(bus), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "*", "order", on_order, &r, NULL,
                                        NULL), EDDY_OK);
    /* Different subjects, one source: one key, so one sequence (k = 0). */
    for (int n = 0; n < 200; n++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s-%d", n);
        eddy_event *ev = eddy_event_newf("t", "tenant-a", subject, NULL,
                                         "{s:i, s:i}", "k", 0, "n", n);
        assert_int_equal(eddy_bus_publish(bus, ev), EDDY_OK);
        eddy_event_unref(ev);
    }
    eddy_bus_free(bus);
    assert_int_equal(r.handled, 200);
    assert_int_equal(r.out_of_order, 0);
    assert_int_equal(r.last[0], 199);
    pthread_mutex_destroy(&r.lock);
}

/* ---- handler errors and warnings ------------------------------------------ */

static int on_fail(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    return eddy_ctx_fail(ctx, EDDY_EINVAL, "no order_id in %s",
                         eddy_event_subject(ev));
}

static void test_error_isolation(void **state)
{
    log_start();
    eddy_bus *bus = bus_new_started(2, 0, EDDY_FULL_BLOCK);
    atomic_int failing = 0, before = 0, after = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "order.placed", "counter-before",
                                        on_count, &before, NULL, NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "order.placed", "failing-handler",
                                        on_fail, &failing, NULL, NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "order.*", "counter-after",
                                        on_count, &after, NULL, NULL), EDDY_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(publish_new(bus, "order.placed", "o-7"), EDDY_OK);
    assert_int_equal(publish_new(bus, "nobody.cares", "x"), EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    assert_int_equal(atomic_load(&failing), 10);
    assert_int_equal(atomic_load(&before), 10);
    assert_int_equal(atomic_load(&after), 10);
    assert_int_equal(log_count("error bus", "failing-handler", "order.placed",
                               "EINVAL", "no order_id in o-7", NULL), 10);
    assert_int_equal(log_count("warn bus", "no subscriber for nobody.cares",
                               NULL), 1);

    /* dispatch returns the first handler error; the others still run. */
    eddy_event *ev = ev_new("order.placed", "o-8");
    assert_int_equal(eddy_bus_dispatch(bus, ev), EDDY_EINVAL);
    assert_int_equal(atomic_load(&after), 11);
    eddy_event_unref(ev);
    eddy_bus_free(bus);
}

/* ---- drain on stop -------------------------------------------------------- */

static void test_drain_on_stop(void **state)
{
    enum { N = 10000 };
    eddy_bus *bus = bus_new_started(4, 0, EDDY_FULL_BLOCK);
    atomic_int n = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "tick", "count", on_count, &n,
                                        NULL, NULL), EDDY_OK);
    eddy_event **evs = calloc(N, sizeof *evs);
    for (int i = 0; i < N; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "k%d", i % 97);
        evs[i] = ev_new("tick", subject);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(eddy_bus_publish(bus, evs[i]), EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&n), N);
    assert_int_equal(eddy_bus_pending(bus), 0);
    assert_int_equal(eddy_bus_publish(bus, evs[0]), EDDY_ESTOPPED);
    size_t accepted = 99;
    assert_int_equal(eddy_bus_publish_batch(bus, evs, 3, &accepted),
                     EDDY_ESTOPPED);
    assert_int_equal(accepted, 0);
    eddy_bus_free(bus);
    /* Each event is still ours alone: readable, then released. */
    for (int i = 0; i < N; i++) {
        assert_string_equal(eddy_event_type(evs[i]), "tick");
        eddy_event_unref(evs[i]);
    }
    free(evs);
}

/* ---- backpressure --------------------------------------------------------- */

static void test_full_fail(void **state)
{
    struct gate g;
    gate_init(&g);
    eddy_bus *bus = bus_new_started(1, 3, EDDY_FULL_FAIL); /* rounds to 4 */
    assert_int_equal(eddy_bus_subscribe(bus, "*", "gate", on_gate, &g, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "job", "a"), EDDY_OK);
    assert_true(wait_for(&g.entered, 1)); /* the worker holds it, ring empty */
    for (int i = 0; i < 4; i++)
        assert_int_equal(publish_new(bus, "job", "a"), EDDY_OK);
    assert_int_equal(publish_new(bus, "job", "a"), EDDY_EFULL);
    assert_int_equal(eddy_bus_pending(bus), 5);
    /* A batch stops at the first failure and says how much went in. */
    eddy_event *b[2] = {ev_new("job", "a"), ev_new("job", "a")};
    size_t accepted = 99;
    assert_int_equal(eddy_bus_publish_batch(bus, b, 2, &accepted), EDDY_EFULL);
    assert_int_equal(accepted, 0);
    gate_open(&g);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&g.finished), 5);
    eddy_event_unref(b[0]);
    eddy_event_unref(b[1]);
    eddy_bus_free(bus);
    gate_destroy(&g);
}

struct producer {
    eddy_bus *bus;
    int count;
    atomic_int done;
    int rc;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    p->rc = EDDY_OK;
    for (int i = 0; i < p->count && p->rc == EDDY_OK; i++)
        p->rc = publish_new(p->bus, "job", "a");
    atomic_store(&p->done, 1);
    return NULL;
}

static void test_full_block(void **state)
{
    struct gate g;
    gate_init(&g);
    eddy_bus *bus = bus_new_started(1, 4, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_subscribe(bus, "*", "gate", on_gate, &g, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "job", "a"), EDDY_OK);
    assert_true(wait_for(&g.entered, 1));
    struct producer p = {.bus = bus, .count = 10};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    /* The producer fills the ring (4) and then waits for room. */
    for (int i = 0; i < 5000 && eddy_bus_pending(bus) < 5; i++)
        sleep_ms(1);
    assert_int_equal(eddy_bus_pending(bus), 5);
    sleep_ms(50);
    assert_int_equal(atomic_load(&p.done), 0);
    gate_open(&g);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&g.finished), 11);
    eddy_bus_free(bus);
    gate_destroy(&g);
}

static void *stop_thread(void *arg)
{
    eddy_bus_stop(arg);
    return NULL;
}

/* A producer blocked on a full ring is released by stop with ESTOPPED. */
static void test_full_block_then_stop(void **state)
{
    struct gate g;
    gate_init(&g);
    eddy_bus *bus = bus_new_started(1, 2, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_subscribe(bus, "*", "gate", on_gate, &g, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "job", "a"), EDDY_OK);
    assert_true(wait_for(&g.entered, 1));
    struct producer p = {.bus = bus, .count = 10};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    for (int i = 0; i < 5000 && eddy_bus_pending(bus) < 3; i++)
        sleep_ms(1);
    sleep_ms(20);
    /* Stop from another thread while the handler still holds the worker. */
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stop_thread, bus), 0);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, EDDY_ESTOPPED);
    gate_open(&g);
    pthread_join(stopper, NULL);
    assert_int_equal(atomic_load(&g.finished), 3); /* everything accepted */
    eddy_bus_free(bus);
    gate_destroy(&g);
}

/* ---- follow-up events ----------------------------------------------------- */

struct follow {
    pthread_mutex_t lock;
    eddy_event *got[4]; /* references kept past the handler */
    int n;
    atomic_int publish_rc;
};

static int on_placed(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct follow *f = user;
    const char *order_id;
    if (eddy_event_unpack(ev, NULL, "{s:s}", "order_id", &order_id) != EDDY_OK)
        return eddy_ctx_fail(ctx, EDDY_EINVAL, "order.placed without order_id");
    int rc = eddy_ctx_publish(ctx, "payment.processed", "{s:s, s:f}",
                              "order_id", order_id, "amount", 9.5);
    atomic_store(&f->publish_rc, rc);
    return rc;
}

static int on_paid(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct follow *f = user;
    pthread_mutex_lock(&f->lock);
    if (f->n < 4)
        f->got[f->n++] = eddy_event_ref((eddy_event *)ev);
    pthread_mutex_unlock(&f->lock);
    return EDDY_OK;
}

static void test_follow_up(void **state)
{
    struct follow f = {.lock = PTHREAD_MUTEX_INITIALIZER};
    eddy_bus *bus = bus_new_started(4, 0, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_subscribe(bus, "order.placed", "payment",
                                        on_placed, &f, NULL, NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "payment.processed", "paid",
                                        on_paid, &f, NULL, NULL), EDDY_OK);
    eddy_event *first = eddy_event_newf("order.placed", "shop", "o-1", NULL,
                                        "{s:s}", "order_id", "o-1");
    json_t *data = json_pack("{s:s}", "order_id", "o-2");
    eddy_event_init init = {.type = "order.placed", .source = "shop",
                            .subject = "o-2", .data = data,
                            .correlation_id = "corr-42"};
    eddy_event *second = eddy_event_new(&init, NULL);
    json_decref(data);
    assert_non_null(first);
    assert_non_null(second);
    assert_int_equal(eddy_bus_publish(bus, first), EDDY_OK);
    assert_int_equal(eddy_bus_publish(bus, second), EDDY_OK);
    /* Wait for both follow-ups, then stop (the follow-ups were queued
     * before their causes finished, so the drain covers them anyway). */
    for (int i = 0; i < 10000; i++) {
        pthread_mutex_lock(&f.lock);
        int n = f.n;
        pthread_mutex_unlock(&f.lock);
        if (n == 2)
            break;
        sleep_ms(1);
    }
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&f.publish_rc), EDDY_OK);
    assert_int_equal(f.n, 2);
    for (int i = 0; i < 2; i++) {
        eddy_event *ev = f.got[i];
        bool is_first = strcmp(eddy_event_subject(ev), "o-1") == 0;
        eddy_event *cause = is_first ? first : second;
        assert_string_equal(eddy_event_type(ev), "payment.processed");
        assert_string_equal(eddy_event_source(ev), "test-bus");
        assert_string_equal(eddy_event_subject(ev), eddy_event_subject(cause));
        assert_string_equal(eddy_event_causation_id(ev), eddy_event_id(cause));
        assert_string_equal(eddy_event_correlation_id(ev),
                            is_first ? eddy_event_id(first) : "corr-42");
        const char *oid;
        double amount;
        assert_int_equal(eddy_event_unpack(ev, NULL, "{s:s, s:F}", "order_id",
                                           &oid, "amount", &amount), EDDY_OK);
        assert_string_equal(oid, eddy_event_subject(cause));
        eddy_event_unref(ev);
    }
    /* A follow-up after stop fails, and the handler says why. */
    log_start();
    assert_int_equal(eddy_bus_dispatch(bus, first), EDDY_ESTOPPED);
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    assert_int_equal(log_count("payment", "ESTOPPED", "payment.processed",
                               NULL), 1);
    eddy_event_unref(first);
    eddy_event_unref(second);
    eddy_bus_free(bus);
}

/* A bad pack format is EDDY_EINVAL with jansson's message in the log. */
static int on_bad_pack(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    return eddy_ctx_publish(ctx, "x.y", "{s:s}", "k", NULL);
}

static void test_follow_up_bad_data(void **state)
{
    log_start();
    eddy_bus *bus = bus_new_started(1, 0, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_subscribe(bus, "a", "packer", on_bad_pack, NULL,
                                        NULL, NULL), EDDY_OK);
    eddy_event *ev = ev_new("a", NULL);
    assert_int_equal(eddy_bus_dispatch(bus, ev), EDDY_EINVAL);
    eddy_event_unref(ev);
    eddy_bus_free(bus);
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    assert_int_equal(log_count("packer", "EINVAL", "x.y", NULL), 1);
}

/* ---- stop and unsubscribe from handlers ---------------------------------- */

static int on_shutdown(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    int rc = eddy_bus_stop(eddy_ctx_bus(ctx));
    /* Stopping, but a follow-up of an event being drained is still taken. */
    int rc2 = eddy_ctx_publish(ctx, "after.stop", NULL);
    return rc != EDDY_OK ? rc : rc2;
}

static void test_stop_in_handler(void **state)
{
    log_start();
    eddy_bus *bus = bus_new_started(4, 0, EDDY_FULL_BLOCK);
    atomic_int stops = 0, n = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "shutdown", "shutdown",
                                        on_shutdown, &stops, NULL, NULL),
                     EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "*", "count", on_count, &n, NULL,
                                        NULL), EDDY_OK);
    atomic_int after = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "after.stop", "after", on_count,
                                        &after, NULL, NULL), EDDY_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(publish_new(bus, "work", "k"), EDDY_OK);
    assert_int_equal(publish_new(bus, "shutdown", "k"), EDDY_OK);
    assert_true(wait_for(&stops, 1));
    /* The bus refuses new events at once. */
    int rc = EDDY_OK;
    for (int i = 0; i < 10000 && rc == EDDY_OK; i++) {
        rc = publish_new(bus, "work", "k");
        if (rc == EDDY_OK)
            sleep_ms(1);
    }
    assert_int_equal(rc, EDDY_ESTOPPED);
    eddy_bus_free(bus); /* joins the background drain */
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    assert_true(atomic_load(&n) >= 102);
    assert_int_equal(atomic_load(&after), 1);
    assert_int_equal(log_count("error", "shutdown", NULL), 0);
}

/* Follow-ups published by handlers during the drain, on other workers, are
 * handled before stop returns. */
static int on_hop(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    const char *type = eddy_event_type(ev);
    char subject[64];
    snprintf(subject, sizeof subject, "%s+", eddy_event_subject(ev));
    eddy_event_init init = {.type = strcmp(type, "hop.a") == 0 ? "hop.b"
                                                               : "hop.c",
                            .subject = subject};
    return eddy_ctx_publish_init(ctx, &init);
}

static void test_drain_follow_ups(void **state)
{
    log_start();
    eddy_bus *bus = bus_new_started(4, 0, EDDY_FULL_BLOCK);
    atomic_int c = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "hop.a", "a", on_hop, NULL, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "hop.b", "b", on_hop, NULL, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "hop.c", "c", on_count, &c, NULL,
                                        NULL), EDDY_OK);
    for (int i = 0; i < 1000; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", i);
        assert_int_equal(publish_new(bus, "hop.a", subject), EDDY_OK);
    }
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&c), 1000);
    assert_int_equal(eddy_bus_pending(bus), 0);
    eddy_bus_free(bus);
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    assert_int_equal(log_count("error", NULL), 0);
}

struct unsub_self {
    atomic_int calls;
    atomic_int rc;
};

static int on_unsub_self(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct unsub_self *u = user;
    atomic_fetch_add(&u->calls, 1);
    atomic_store(&u->rc, eddy_bus_unsubscribe(eddy_ctx_bus(ctx),
                                              eddy_ctx_handler(ctx)));
    return EDDY_OK;
}

struct unsub_arg {
    eddy_bus *bus;
    const char *name;
    atomic_int done;
    int rc;
};

static void *unsub_thread(void *arg)
{
    struct unsub_arg *a = arg;
    a->rc = eddy_bus_unsubscribe(a->bus, a->name);
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_unsubscribe(void **state)
{
    eddy_bus *bus = bus_new_started(2, 0, EDDY_FULL_BLOCK);
    assert_int_equal(eddy_bus_unsubscribe(bus, "nobody"), EDDY_ENOTFOUND);

    /* From within its own handler: called once, later events skip it. */
    struct unsub_self u = {0};
    atomic_int n = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "e", "self", on_unsub_self, &u,
                                        NULL, NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "e", "count", on_count, &n, NULL,
                                        NULL), EDDY_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(publish_new(bus, "e", "same-key"), EDDY_OK);
    for (int i = 0; i < 10000 && atomic_load(&n) < 20; i++)
        sleep_ms(1);
    assert_int_equal(atomic_load(&n), 20);
    assert_int_equal(atomic_load(&u.calls), 1);
    assert_int_equal(atomic_load(&u.rc), EDDY_OK);
    assert_int_equal(eddy_bus_unsubscribe(bus, "self"), EDDY_ENOTFOUND);

    /* From another thread while the handler runs: waits for it to return. */
    struct gate g;
    gate_init(&g);
    assert_int_equal(eddy_bus_subscribe(bus, "g", "gate", on_gate, &g, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "g", "k"), EDDY_OK);
    assert_true(wait_for(&g.entered, 1));
    struct unsub_arg a = {.bus = bus, .name = "gate"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, unsub_thread, &a), 0);
    sleep_ms(50);
    assert_int_equal(atomic_load(&a.done), 0);
    /* Already removed from matching: this event has no subscriber. */
    assert_int_equal(publish_new(bus, "g", "k"), EDDY_OK);
    gate_open(&g);
    pthread_join(t, NULL);
    assert_int_equal(a.rc, EDDY_OK);
    assert_int_equal(atomic_load(&g.finished), 1);
    /* Removed while an earlier handler of the same event blocks: the worker
     * still holds the old list, yet never calls the removed handler. */
    struct gate g2;
    gate_init(&g2);
    atomic_int later = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "h", "first", on_gate, &g2, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "h", "later", on_count, &later,
                                        NULL, NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "h", "k"), EDDY_OK);
    assert_true(wait_for(&g2.entered, 1));
    assert_int_equal(eddy_bus_unsubscribe(bus, "later"), EDDY_OK);
    gate_open(&g2);
    assert_true(wait_for(&g2.finished, 1));
    /* The name is free again. */
    atomic_int n2 = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "g", "gate", on_count, &n2, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(publish_new(bus, "g", "k"), EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&g.entered), 1);
    assert_int_equal(atomic_load(&n2), 1);
    assert_int_equal(atomic_load(&later), 0);
    eddy_bus_free(bus);
    gate_destroy(&g);
    gate_destroy(&g2);
}

/* Subscribing and unsubscribing while events flow: nothing is lost for the
 * steady handler, and the churned one never runs after unsubscribe. */
struct churn {
    atomic_int calls;
    atomic_int after_unsub;
    atomic_int unsubscribed;
};

static int on_churn(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct churn *c = user;
    atomic_fetch_add(&c->calls, 1);
    if (atomic_load(&c->unsubscribed))
        atomic_fetch_add(&c->after_unsub, 1);
    return EDDY_OK;
}

static void *churn_producer(void *arg)
{
    struct producer *p = arg;
    p->rc = EDDY_OK;
    for (int i = 0; i < p->count && p->rc == EDDY_OK; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "k%d", i % 13);
        p->rc = publish_new(p->bus, "c", subject);
    }
    atomic_store(&p->done, 1);
    return NULL;
}

static void test_subscribe_churn(void **state)
{
    eddy_bus *bus = bus_new_started(4, 64, EDDY_FULL_BLOCK);
    atomic_int steady = 0;
    assert_int_equal(eddy_bus_subscribe(bus, "c", "steady", on_count, &steady,
                                        NULL, NULL), EDDY_OK);
    struct producer p = {.bus = bus, .count = 4000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn_producer, &p), 0);
    for (int round = 0; round < 50; round++) {
        struct churn c = {0};
        assert_int_equal(eddy_bus_subscribe(bus, "*", "churn", on_churn, &c,
                                            NULL, NULL), EDDY_OK);
        sleep_ms(1);
        assert_int_equal(eddy_bus_unsubscribe(bus, "churn"), EDDY_OK);
        atomic_store(&c.unsubscribed, 1);
        sleep_ms(1);
        assert_int_equal(atomic_load(&c.after_unsub), 0);
        /* `c` goes out of scope: a late call would be a use after return. */
    }
    pthread_join(t, NULL);
    assert_int_equal(p.rc, EDDY_OK);
    assert_int_equal(eddy_bus_stop(bus), EDDY_OK);
    assert_int_equal(atomic_load(&steady), 4000);
    eddy_bus_free(bus);
}

/* ---- dispatch ------------------------------------------------------------- */

struct trail {
    char order[8];
    int n;
    pthread_t thread;
};

static int on_trail(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct trail *t = user;
    if (t->n < 7)
        t->order[t->n++] = eddy_ctx_handler(ctx)[0];
    t->thread = pthread_self();
    return t->n == 2 ? eddy_ctx_fail(ctx, EDDY_EHANDLER, "second") : EDDY_OK;
}

static void test_dispatch(void **state)
{
    eddy_bus *bus = eddy_bus_new(NULL, NULL);
    struct trail t = {0};
    assert_int_equal(eddy_bus_subscribe(bus, "*", "c", on_trail, &t, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "x.*", "a", on_trail, &t, NULL,
                                        NULL), EDDY_OK);
    assert_int_equal(eddy_bus_subscribe(bus, "x.y", "b", on_trail, &t, NULL,
                                        NULL), EDDY_OK);
    eddy_event *ev = ev_new("x.y", NULL);
    assert_int_equal(eddy_bus_dispatch(bus, ev), EDDY_EHANDLER);
    assert_string_equal(t.order, "cab"); /* subscription order */
    assert_true(pthread_equal(t.thread, pthread_self()));
    assert_int_equal(eddy_bus_dispatch(NULL, ev), EDDY_EINVAL);
    assert_int_equal(eddy_bus_publish(bus, NULL), EDDY_EINVAL);
    eddy_event_unref(ev);
    eddy_bus_free(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_filter_and_queued_matching),
        cmocka_unit_test(test_per_key_order),
        cmocka_unit_test(test_partition_key),
        cmocka_unit_test(test_error_isolation),
        cmocka_unit_test(test_drain_on_stop),
        cmocka_unit_test(test_full_fail),
        cmocka_unit_test(test_full_block),
        cmocka_unit_test(test_full_block_then_stop),
        cmocka_unit_test(test_follow_up),
        cmocka_unit_test(test_follow_up_bad_data),
        cmocka_unit_test(test_stop_in_handler),
        cmocka_unit_test(test_drain_follow_ups),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_subscribe_churn),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
