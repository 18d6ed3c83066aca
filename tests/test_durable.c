/*
 * tests/test_durable.c - durable subscriptions: catch-up then live, the
 * checkpoint across restarts, retries with growing delays that keep per-key
 * order without blocking other keys, dead letters and their redrive,
 * retry state surviving a restart, dead letters marked for redrive taken
 * at start and waited for by wait_idle, a stop from several threads, inbox
 * and transactional idempotency, metrics, bad options. Also runs under
 * ThreadSanitizer.
 *
 * Handlers never call cmocka's asserts (they run on worker threads): they
 * record what they saw under a mutex, and the test thread asserts.
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
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "store_fixture.h"

/* ---- fixtures ------------------------------------------------------------- */

struct fx {
    char dir[64];
    char path[128];
    eddy_store *store;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static eddy_store *store_open(const char *path)
{
    eddy_error err = {0};
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_store *s = eddyt_store_open(path, &o, &err);
    if (!s)
        fail_msg("eddy_store_open(%s): %s", path, err.message);
    return s;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/eddy-durable-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    f->store = store_open(f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    eddy_store_close(f->store);
    char p[192];
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Appends `type` events n = first..first+count-1 with subject `key`;
 * returns the last position. */
static int64_t append_n(eddy_store *s, const char *type, const char *key,
                        int first, int count)
{
    int64_t last = 0;
    for (int i = 0; i < count; i++) {
        eddy_error err = {0};
        eddy_event *ev = eddy_event_newf(type, "test", key, &err, "{s:i}",
                                         "n", first + i);
        if (!ev)
            fail_msg("event: %s", err.message);
        eddy_append_result r;
        int rc = eddy_store_append(s, key, EDDY_EXPECT_ANY, &ev, 1, &r, &err);
        eddy_event_unref(ev);
        if (rc != EDDY_OK)
            fail_msg("append: %s", err.message);
        last = r.last_position;
    }
    return last;
}

static int64_t head_of(eddy_store *s)
{
    int64_t h = 0;
    assert_int_equal(eddy_store_head(s, &h, NULL), EDDY_OK);
    return h;
}

static int event_n(const eddy_event *ev)
{
    int n = -1;
    json_t *v = json_object_get(eddy_event_data(ev), "n");
    if (v)
        n = (int)json_integer_value(v);
    return n;
}

/* What a handler saw: (key, n, time) in call order, under a mutex. */
#define REC_MAX 4096
struct rec {
    pthread_mutex_t mu;
    int count;
    struct {
        char key[32];
        int n;
        int64_t at_us;
        int ok;
    } e[REC_MAX];
    /* failure plan */
    char fail_key[32];
    int fail_n;          /* the event (key, n) that fails ... */
    int fail_times;      /* ... this many times (-1: always) */
    int fail_code;
    atomic_int failed;
    atomic_int fixed;    /* set: nothing fails any more */
};

static struct rec *rec_new(void)
{
    struct rec *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->fail_n = -1;
    r->fail_code = EDDY_EIO;
    return r;
}

static void rec_free(struct rec *r)
{
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int rec_handler(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct rec *r = user;
    const char *key = eddy_event_subject(ev);
    int n = event_n(ev);
    bool fail = false;
    pthread_mutex_lock(&r->mu);
    if (!atomic_load(&r->fixed) && r->fail_key[0] && key &&
        strcmp(key, r->fail_key) == 0 && (r->fail_n < 0 || n == r->fail_n) &&
        (r->fail_times < 0 || atomic_load(&r->failed) < r->fail_times)) {
        fail = true;
        atomic_fetch_add(&r->failed, 1);
    }
    if (r->count < REC_MAX) {
        snprintf(r->e[r->count].key, sizeof r->e[0].key, "%s",
                 key ? key : "");
        r->e[r->count].n = n;
        r->e[r->count].at_us = eddy_now_us();
        r->e[r->count].ok = !fail;
        r->count++;
    }
    pthread_mutex_unlock(&r->mu);
    if (fail)
        return eddy_ctx_fail(ctx, r->fail_code, "planned failure of %s #%d",
                             key, n);
    return EDDY_OK;
}

/* Successful calls for (key, n). */
static int rec_ok_count(struct rec *r, const char *key, int n)
{
    int c = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->count; i++)
        if (r->e[i].ok && strcmp(r->e[i].key, key) == 0 && r->e[i].n == n)
            c++;
    pthread_mutex_unlock(&r->mu);
    return c;
}

static eddy_durable *start(eddy_store *s, const eddy_durable_options *o)
{
    eddy_error err = {0};
    eddy_durable *d = eddy_durable_start(s, o, &err);
    if (!d)
        fail_msg("eddy_durable_start(%s): %s", o->name, err.message);
    return d;
}

static void wait_idle(eddy_durable *d, int64_t pos)
{
    int rc = eddy_durable_wait_idle(d, pos, 20000);
    if (rc != EDDY_OK)
        fail_msg("wait_idle(%lld): %s, checkpoint %lld", (long long)pos,
                 eddy_errname(rc), (long long)eddy_durable_checkpoint(d));
}

/* ---- catch-up, live, checkpoint ------------------------------------------- */

static void test_catch_up_live_restart(void **state)
{
    struct fx *f = *state;
    append_n(f->store, "order.placed", "a", 0, 30);
    append_n(f->store, "order.placed", "b", 0, 30);
    append_n(f->store, "user.registered", "u", 0, 5); /* filtered out */
    struct rec *r = rec_new();
    eddy_durable_options o = {.name = "orders",
                              .patterns = (const char *const[]){"order.*"},
                              .pattern_count = 1,
                              .handler = rec_handler,
                              .user = r,
                              .workers = 3};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, head_of(f->store));
    int64_t live = append_n(f->store, "order.placed", "a", 30, 20);
    wait_idle(d, live);
    assert_int_equal(eddy_durable_checkpoint(d), live);
    assert_int_equal(eddy_durable_stop(d, NULL), EDDY_OK);
    eddy_durable_free(d);

    pthread_mutex_lock(&r->mu);
    assert_int_equal(r->count, 80);
    int next_a = 0, next_b = 0;
    for (int i = 0; i < r->count; i++) { /* per-key order */
        if (strcmp(r->e[i].key, "a") == 0)
            assert_int_equal(r->e[i].n, next_a++);
        else if (strcmp(r->e[i].key, "b") == 0)
            assert_int_equal(r->e[i].n, next_b++);
        else
            fail_msg("unexpected key %s", r->e[i].key);
    }
    assert_int_equal(next_a, 50);
    assert_int_equal(next_b, 30);
    pthread_mutex_unlock(&r->mu);

    /* A restart continues after the persisted checkpoint: nothing again. */
    struct rec *r2 = rec_new();
    o.user = r2;
    int64_t more = append_n(f->store, "order.shipped", "b", 30, 3);
    d = start(f->store, &o);
    wait_idle(d, more);
    eddy_durable_free(d);
    assert_int_equal(r2->count, 3);
    assert_int_equal(r2->e[0].n, 30);
    rec_free(r);
    rec_free(r2);
}

/* A ring of 8 events in flight over many keys and workers: the dispatcher
 * waits for room often, with events handed to workers between their
 * wake-ups; every event is still handled once, in key order. */
static void test_small_in_flight(void **state)
{
    struct fx *f = *state;
    const char *keys[] = {"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8",
                          "k9"};
    for (int round = 0; round < 20; round++)
        for (size_t k = 0; k < 9; k++)
            append_n(f->store, "order.placed", keys[k], round * 10, 10);
    struct rec *r = rec_new();
    eddy_durable_options o = {.name = "tiny-ring",
                              .patterns = (const char *const[]){"order.*"},
                              .pattern_count = 1,
                              .handler = rec_handler,
                              .user = r,
                              .workers = 4,
                              .max_in_flight = 8};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, head_of(f->store));
    eddy_durable_free(d);
    pthread_mutex_lock(&r->mu);
    assert_int_equal(r->count, 1800);
    int next[9] = {0};
    for (int i = 0; i < r->count; i++) {
        int k = r->e[i].key[1] - '1';
        assert_true(k >= 0 && k < 9);
        assert_int_equal(r->e[i].n, next[k]++);
    }
    pthread_mutex_unlock(&r->mu);
    rec_free(r);
}

static void test_start_from_end(void **state)
{
    struct fx *f = *state;
    append_n(f->store, "x.y", "k", 0, 10);
    struct rec *r = rec_new();
    eddy_durable_options o = {.name = "late",
                              .patterns = (const char *const[]){"x.y"},
                              .pattern_count = 1,
                              .handler = rec_handler, .user = r,
                              .start_from = EDDY_START_END};
    eddy_durable *d = start(f->store, &o);
    int64_t p = append_n(f->store, "x.y", "k", 10, 2);
    wait_idle(d, p);
    eddy_durable_free(d);
    assert_int_equal(r->count, 2);
    assert_int_equal(r->e[0].n, 10);
    rec_free(r);
}

/* Several patterns: an event matching any of them is delivered (exact and
 * prefix alike), the others are skipped; none given means every event. */
static void test_patterns(void **state)
{
    struct fx *f = *state;
    append_n(f->store, "a.x", "ax", 0, 2);
    append_n(f->store, "a.y", "ay", 0, 3);   /* no pattern matches */
    append_n(f->store, "b.z.w", "bz", 0, 4);
    append_n(f->store, "bb.q", "bb", 0, 5);  /* "b.*" is not "bb." */
    int64_t head = head_of(f->store);
    struct rec *r = rec_new(), *all = rec_new();
    static const char *const patterns[] = {"a.x", "b.*"};
    eddy_durable_options o = {.name = "some", .patterns = patterns,
                              .pattern_count = 2, .handler = rec_handler,
                              .user = r};
    eddy_durable_options every = {.name = "every", .handler = rec_handler,
                                  .user = all};
    eddy_durable *d = start(f->store, &o), *e = start(f->store, &every);
    wait_idle(d, head);
    wait_idle(e, head);
    assert_int_equal(eddy_durable_checkpoint(d), head);
    eddy_durable_free(d);
    eddy_durable_free(e);
    assert_int_equal(r->count, 6);
    for (int i = 0; i < r->count; i++)
        if (strcmp(r->e[i].key, "ax") != 0 && strcmp(r->e[i].key, "bz") != 0)
            fail_msg("delivered an event of key %s", r->e[i].key);
    assert_int_equal(all->count, 14);
    rec_free(r);
    rec_free(all);
}

/* ---- retries -------------------------------------------------------------- */

static void test_retry_order_and_backoff(void **state)
{
    struct fx *f = *state;
    eddy_metrics *m = eddy_metrics_new();
    struct rec *r = rec_new();
    snprintf(r->fail_key, sizeof r->fail_key, "slow");
    r->fail_n = 1;
    r->fail_times = 3;
    eddy_durable_options o = {.name = "retrier",
                              .handler = rec_handler,
                              .user = r,
                              .workers = 1, /* one worker: keys share it */
                              .retry = {.max_attempts = 5,
                                        .initial_delay_ms = 60,
                                        .multiplier = 2.0,
                                        .jitter = -1},
                              .metrics = m};
    eddy_durable *d = start(f->store, &o);
    append_n(f->store, "t.e", "slow", 0, 4);   /* #1 fails 3 times */
    int64_t last = append_n(f->store, "t.e", "fast", 0, 20);
    wait_idle(d, last);
    eddy_durable_free(d);

    pthread_mutex_lock(&r->mu);
    /* slow #1: 3 failures then a success, with growing delays. */
    int64_t at[4];
    int k = 0;
    for (int i = 0; i < r->count; i++)
        if (strcmp(r->e[i].key, "slow") == 0 && r->e[i].n == 1 && k < 4)
            at[k++] = r->e[i].at_us;
    assert_int_equal(k, 4);
    int64_t g1 = at[1] - at[0], g2 = at[2] - at[1], g3 = at[3] - at[2];
    assert_true(g1 >= 55000);  /* 60 ms */
    assert_true(g2 >= 115000); /* 120 ms */
    assert_true(g3 >= 235000); /* 240 ms */
    assert_true(g2 > g1 && g3 > g2);
    /* per-key order: slow #2 and #3 only after #1 succeeded */
    int last_slow = -1;
    int64_t slow_ok_at = 0, fast_done_at = 0;
    for (int i = 0; i < r->count; i++) {
        if (strcmp(r->e[i].key, "slow") == 0) {
            if (r->e[i].ok) {
                assert_int_equal(r->e[i].n, last_slow + 1);
                last_slow = r->e[i].n;
                if (r->e[i].n == 1)
                    slow_ok_at = r->e[i].at_us;
            } else {
                assert_int_equal(r->e[i].n, 1);
            }
        } else if (r->e[i].n == 19) {
            fast_done_at = r->e[i].at_us;
        }
    }
    assert_int_equal(last_slow, 3);
    /* other keys were not blocked: all of "fast" ran before slow #1
     * finally succeeded (about 420 ms after its first failure). */
    assert_true(fast_done_at > 0 && fast_done_at < slow_ok_at);
    assert_int_equal(r->count, 4 + 3 + 20);
    pthread_mutex_unlock(&r->mu);

    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    assert_non_null(snap);
    assert_int_equal(eddy_metrics_snapshot_series_count(snap), 1);
    const eddy_metrics_series_stats *st = eddy_metrics_snapshot_series(snap, 0);
    assert_string_equal(st->handler, "retrier");
    assert_int_equal(st->retried, 3);
    assert_int_equal(st->failed, 3);
    assert_int_equal(st->succeeded, 24);
    assert_int_equal(st->dead_lettered, 0);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
    rec_free(r);
}

/* ---- dead letters --------------------------------------------------------- */

struct dl_seen {
    int count;
    int64_t id;
    char handler[32];
    char error[256];
    int attempts;
    int64_t position;
    int64_t first_us, last_us;
    char event_id[64];
    char status[16];
};

static int dl_collect(const eddy_dead_letter *dl, void *user)
{
    struct dl_seen *s = user;
    if (s->count++ == 0) {
        s->id = dl->id;
        snprintf(s->handler, sizeof s->handler, "%s", dl->handler);
        snprintf(s->error, sizeof s->error, "%s", dl->error);
        s->attempts = dl->attempts;
        s->position = dl->position;
        s->first_us = dl->first_failure_us;
        s->last_us = dl->last_failure_us;
        snprintf(s->event_id, sizeof s->event_id, "%s",
                 eddy_event_id(dl->event));
        snprintf(s->status, sizeof s->status, "%s", dl->status);
    }
    return 0;
}

static struct dl_seen dl_list(eddy_store *s, const char *handler)
{
    struct dl_seen seen = {0};
    eddy_error err = {0};
    int rc = eddy_dlq_list(s, handler, dl_collect, &seen, &err);
    if (rc != EDDY_OK)
        fail_msg("dlq list: %s", err.message);
    return seen;
}

static void test_dead_letter_and_redrive(void **state)
{
    struct fx *f = *state;
    eddy_metrics *m = eddy_metrics_new();
    struct rec *r = rec_new();
    snprintf(r->fail_key, sizeof r->fail_key, "bad");
    r->fail_n = 0;
    r->fail_times = -1; /* always, until fixed */
    eddy_durable_options o = {.name = "mailer",
                              .handler = rec_handler,
                              .user = r,
                              .retry = {.max_attempts = 3,
                                        .initial_delay_ms = 10},
                              .metrics = m};
    eddy_durable *d = start(f->store, &o);
    int64_t bad_pos = append_n(f->store, "mail.send", "bad", 0, 1);
    int64_t last = append_n(f->store, "mail.send", "bad", 1, 2);
    append_n(f->store, "mail.send", "good", 0, 5);
    int64_t t0 = eddy_now_us();
    wait_idle(d, head_of(f->store));
    (void)last;

    /* The key moved on after the dead letter: #1 and #2 were handled. */
    assert_int_equal(rec_ok_count(r, "bad", 1), 1);
    assert_int_equal(rec_ok_count(r, "bad", 2), 1);
    assert_int_equal(atomic_load(&r->failed), 3);

    struct dl_seen s = dl_list(f->store, "mailer");
    assert_int_equal(s.count, 1);
    assert_string_equal(s.handler, "mailer");
    assert_int_equal(s.attempts, 3);
    assert_int_equal(s.position, bad_pos);
    assert_string_equal(s.status, "dead");
    assert_non_null(strstr(s.error, "planned failure of bad #0"));
    assert_non_null(strstr(s.error, "EIO"));
    assert_true(s.first_us >= t0 - 1000000 && s.first_us < s.last_us);
    /* 10 + 20 ms of backoff, jitter takes at most 20 % off */
    assert_true(s.last_us - s.first_us >= 24000);
    assert_int_equal(dl_list(f->store, "other").count, 0);

    eddy_dead_letter *dl = NULL;
    assert_int_equal(eddy_dlq_get(f->store, s.id, &dl, NULL), EDDY_OK);
    assert_string_equal(eddy_event_id(dl->event), s.event_id);
    assert_int_equal(event_n(dl->event), 0);
    eddy_dead_letter_free(dl);

    /* Synchronous redrive that fails again: kept, attempts + 1. */
    eddy_error err = {0};
    assert_int_equal(eddy_durable_redrive(d, s.id, &err), EDDY_EIO);
    assert_non_null(strstr(err.message, "planned failure"));
    struct dl_seen s2 = dl_list(f->store, NULL);
    assert_int_equal(s2.count, 1);
    assert_int_equal(s2.attempts, 4);
    assert_string_equal(s2.status, "dead");

    /* Fix the handler; eddy dlq redrive: the running subscription redrives
     * it and deletes it once the handler succeeded. */
    atomic_store(&r->fixed, 1);
    assert_int_equal(eddy_dlq_redrive(f->store, s.id, NULL), EDDY_OK);
    int left = 1;
    for (int i = 0; i < 500 && left; i++) {
        sleep_ms(10);
        left = dl_list(f->store, NULL).count;
    }
    assert_int_equal(left, 0);
    assert_int_equal(rec_ok_count(r, "bad", 0), 1);
    assert_int_equal(eddy_durable_redrive(d, s.id, NULL), EDDY_ENOTFOUND);
    eddy_durable_free(d);

    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    const eddy_metrics_series_stats *st = eddy_metrics_snapshot_series(snap, 0);
    assert_non_null(st);
    assert_int_equal(st->dead_lettered, 1);
    assert_int_equal(st->retried, 2);
    eddy_metrics_snapshot_free(snap);
    eddy_metrics_free(m);
    rec_free(r);
}

/* Issue 15, "redrive that happens": dead letters marked while no
 * subscription of their handler runs are redelivered when it starts, and
 * eddy_durable_wait_idle waits for them; a mark made while it runs counts
 * for wait_idle too, success or failure. */
static void test_redrive_at_start_and_wait_idle(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec_new();
    snprintf(r->fail_key, sizeof r->fail_key, "k");
    r->fail_times = -1;
    eddy_durable_options o = {.name = "payer",
                              .handler = rec_handler,
                              .user = r,
                              .retry = {.max_attempts = 1}};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, append_n(f->store, "pay.x", "k", 0, 3));
    eddy_durable_free(d);
    assert_int_equal(dl_list(f->store, "payer").count, 3);

    /* Marked with nothing running: nothing happens ... */
    size_t marked = 0;
    assert_int_equal(eddy_dlq_redrive_all(f->store, "payer", &marked, NULL),
                     EDDY_OK);
    assert_int_equal(marked, 3);
    atomic_store(&r->fixed, 1);
    /* ... until the subscription starts: wait_idle returns once all three
     * were redelivered, with no sleep in between. */
    d = start(f->store, &o);
    wait_idle(d, head_of(f->store));
    assert_int_equal(dl_list(f->store, "payer").count, 0);
    for (int n = 0; n < 3; n++)
        assert_int_equal(rec_ok_count(r, "k", n), 1);

    /* Marked while it runs: wait_idle at once, with a handler that fails
     * again (back to "dead", attempts + 1) and then one that succeeds. */
    atomic_store(&r->fixed, 0);
    wait_idle(d, append_n(f->store, "pay.x", "k", 3, 1));
    struct dl_seen s = dl_list(f->store, "payer");
    assert_int_equal(s.count, 1);
    assert_int_equal(s.attempts, 1);
    assert_int_equal(eddy_dlq_redrive(f->store, s.id, NULL), EDDY_OK);
    wait_idle(d, 0);
    s = dl_list(f->store, "payer");
    assert_int_equal(s.count, 1);
    assert_string_equal(s.status, EDDY_DLQ_DEAD);
    assert_int_equal(s.attempts, 2);
    atomic_store(&r->fixed, 1);
    assert_int_equal(eddy_dlq_redrive(f->store, s.id, NULL), EDDY_OK);
    wait_idle(d, 0);
    assert_int_equal(dl_list(f->store, "payer").count, 0);
    assert_int_equal(rec_ok_count(r, "k", 3), 1);

    /* Stopped with a mark left: wait_idle says nothing will redeliver it. */
    atomic_store(&r->fixed, 0);
    wait_idle(d, append_n(f->store, "pay.x", "k", 4, 1));
    s = dl_list(f->store, "payer");
    assert_int_equal(s.count, 1);
    assert_int_equal(eddy_durable_stop(d, NULL), EDDY_OK);
    assert_int_equal(eddy_dlq_redrive(f->store, s.id, NULL), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d, 0, 1000), EDDY_ESTOPPED);
    eddy_durable_free(d);
    rec_free(r);
}

static void *stop_thread(void *arg)
{
    return (void *)(intptr_t)eddy_durable_stop(arg, NULL);
}

/* eddy_durable_stop from several threads at once: one stops, all return
 * its status (TSan checks the rest). */
static void test_concurrent_stop(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec_new();
    eddy_durable_options o = {.name = "stopper", .handler = rec_handler,
                              .user = r};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, append_n(f->store, "a.b", "k", 0, 20));
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, stop_thread, d), 0);
    for (int i = 0; i < 4; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_int_equal((int)(intptr_t)rc, EDDY_OK);
    }
    /* The name is free again once stopped. */
    eddy_durable *d2 = start(f->store, &o);
    eddy_durable_free(d2);
    eddy_durable_free(d);
    rec_free(r);
}

static void test_non_retryable(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec_new();
    snprintf(r->fail_key, sizeof r->fail_key, "k");
    r->fail_times = -1;
    r->fail_code = EDDY_EINVAL;
    eddy_durable_options o = {.name = "strict", .handler = rec_handler,
                              .user = r};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, append_n(f->store, "a.b", "k", 0, 2));
    eddy_durable_free(d);
    assert_int_equal(atomic_load(&r->failed), 2); /* once each */
    struct dl_seen s = dl_list(f->store, "strict");
    assert_int_equal(s.count, 2);
    assert_int_equal(s.attempts, 1);
    rec_free(r);
}

/* Retry state is stored: a restart continues the attempt count. */
static void test_retry_state_survives_restart(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec_new();
    snprintf(r->fail_key, sizeof r->fail_key, "k");
    r->fail_times = -1;
    eddy_durable_options o = {.name = "persist",
                              .handler = rec_handler,
                              .user = r,
                              .retry = {.max_attempts = 4,
                                        .initial_delay_ms = 150,
                                        .multiplier = 1.0,
                                        .jitter = -1}};
    eddy_durable *d = start(f->store, &o);
    int64_t p = append_n(f->store, "a.b", "k", 0, 1);
    for (int i = 0; i < 1000 && atomic_load(&r->failed) < 2; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&r->failed), 2);
    assert_int_equal(eddy_durable_stop(d, NULL), EDDY_OK);
    eddy_durable_free(d);
    assert_int_equal(eddy_durable_checkpoint(NULL), 0);

    d = start(f->store, &o);
    wait_idle(d, p);
    eddy_durable_free(d);
    /* 2 before the restart + 2 after = max_attempts, not 2 + 4. */
    assert_int_equal(atomic_load(&r->failed), 4);
    struct dl_seen s = dl_list(f->store, "persist");
    assert_int_equal(s.count, 1);
    assert_int_equal(s.attempts, 4);
    rec_free(r);
}

/* ---- idempotency ---------------------------------------------------------- */

static int rewind_fn(eddy_txn *txn, void *user, eddy_error *err)
{
    int64_t changes = 0, parts = 0;
    int rc = eddy_txn_exec(txn, &changes, err,
                           "UPDATE eddy_checkpoints SET position = 0 "
                           "WHERE name = $1",
                           "s", (const char *)user);
    /* The checkpoint a start reads is each partition's, in its lease. */
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, &parts, err,
                           "UPDATE eddy_leases SET position = 0 "
                           "WHERE subscription = $1",
                           "s", (const char *)user);
    if (rc == EDDY_OK && (changes != 1 || parts < 1))
        rc = EDDY_ENOTFOUND;
    return rc;
}

/* Moves a subscription's stored checkpoint back, as a crash right after
 * its handler ran would leave it. The subscription must be stopped. */
static void rewind_checkpoint(eddy_store *s, const char *name)
{
    eddy_error err = {0};
    if (eddy_store_transact(s, rewind_fn, (void *)name, &err) != EDDY_OK)
        fail_msg("rewinding %s: %s", name, err.message);
}

static void test_inbox_and_at_least_once(void **state)
{
    struct fx *f = *state;
    struct rec *ri = rec_new(), *ra = rec_new();
    eddy_durable_options oi = {.name = "inboxed",
                               .mode = EDDY_DELIVERY_INBOX,
                               .handler = rec_handler,
                               .user = ri};
    eddy_durable_options oa = {.name = "plain", .handler = rec_handler,
                               .user = ra};
    int64_t p = append_n(f->store, "a.b", "k", 0, 10);
    eddy_durable *di = start(f->store, &oi), *da = start(f->store, &oa);
    wait_idle(di, p);
    wait_idle(da, p);
    eddy_durable_free(di);
    eddy_durable_free(da);
    rewind_checkpoint(f->store, "inboxed");
    rewind_checkpoint(f->store, "plain");
    eddy_store_close(f->store);
    f->store = store_open(f->path);
    di = start(f->store, &oi);
    da = start(f->store, &oa);
    wait_idle(di, p);
    wait_idle(da, p);
    eddy_durable_free(di);
    eddy_durable_free(da);
    /* The inbox skipped what was done; the plain handler ran again. */
    assert_int_equal(ri->count, 10);
    assert_int_equal(ra->count, 20);
    rec_free(ri);
    rec_free(ra);
}

/* A transactional handler: writes a row to its own table and appends a
 * follow-up; its first attempt on each event fails AFTER writing. */
struct txn_state {
    atomic_int calls;
    atomic_int tried[64];
};

static int txn_handler(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                       void *user)
{
    struct txn_state *t = user;
    int call = atomic_fetch_add(&t->calls, 1);
    eddy_error e = {0};
    if (eddy_txn_exec(txn, NULL, &e, "CREATE TABLE IF NOT EXISTS "
                      "effects(event_id TEXT)", NULL) != EDDY_OK ||
        eddy_txn_exec(txn, NULL, &e, "INSERT INTO effects VALUES($1)", "s",
                      eddy_event_id(ev)) != EDDY_OK)
        return eddy_ctx_fail(ctx, e.code, "effects: %s", e.message);
    int rc = eddy_ctx_publish(ctx, "effect.done", "{s:i}", "n", event_n(ev));
    if (rc != EDDY_OK)
        return rc;
    int n = event_n(ev);
    (void)call;
    if (n >= 0 && n < 64 && n % 2 == 0 && atomic_exchange(&t->tried[n], 1) == 0)
        return eddy_ctx_fail(ctx, EDDY_EBUSY, "first try fails");
    return EDDY_OK;
}

static int64_t count_sql(eddy_store *s, const char *sql)
{
    int64_t n = 0;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &n, &err, sql, NULL) != EDDY_OK)
        fail_msg("%s: %s", sql, err.message);
    return n;
}

static void test_transactional_exactly_once(void **state)
{
    struct fx *f = *state;
    struct txn_state t = {0};
    eddy_durable_options o = {.name = "projector",
                              .patterns = (const char *const[]){"in.*"},
                              .pattern_count = 1,
                              .mode = EDDY_DELIVERY_TRANSACTIONAL,
                              .txn_handler = txn_handler,
                              .user = &t,
                              .retry = {.initial_delay_ms = 5}};
    int64_t p = append_n(f->store, "in.x", "k1", 0, 6);
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, p);
    eddy_durable_free(d);
    /* Crash simulation: the checkpoint goes back; the inbox rows committed
     * with the effects make the re-delivery skip them. */
    rewind_checkpoint(f->store, "projector");
    eddy_store_close(f->store);
    f->store = store_open(f->path);
    d = start(f->store, &o);
    wait_idle(d, p);
    eddy_durable_free(d);

    assert_int_equal(count_sql(f->store, "SELECT count(*) FROM effects"), 6);
    assert_int_equal(count_sql(f->store, "SELECT count(DISTINCT event_id) "
                                         "FROM effects"), 6);
    /* Follow-ups: exactly one per event (failed attempts rolled back),
     * in stream k1 (the subject), with correlation and causation. */
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_stream(f->store, "k1", 1, EDDY_FORWARD, 0,
                                            &c, NULL), EDDY_OK);
    eddy_record rec;
    int followups = 0;
    char ids[6][64];
    int nids = 0, caused[6] = {0}, last_n = -1;
    while (eddy_cursor_next(c, &rec, NULL)) {
        if (strcmp(eddy_event_type(rec.event), "in.x") == 0) {
            assert_true(nids < 6);
            snprintf(ids[nids++], sizeof ids[0], "%s", eddy_event_id(rec.event));
            continue;
        }
        followups++;
        assert_string_equal(eddy_event_type(rec.event), "effect.done");
        /* handled in order, though even events failed once: one key */
        assert_int_equal(event_n(rec.event), last_n + 1);
        last_n = event_n(rec.event);
        assert_string_equal(eddy_event_source(rec.event), "projector");
        const char *cause = eddy_event_causation_id(rec.event);
        assert_non_null(cause);
        assert_string_equal(eddy_event_correlation_id(rec.event), cause);
        for (int i = 0; i < nids; i++)
            if (strcmp(ids[i], cause) == 0)
                caused[i]++;
    }
    for (int i = 0; i < 6; i++)
        assert_int_equal(caused[i], 1);
    eddy_cursor_free(c);
    assert_int_equal(followups, 6);
    assert_int_equal(atomic_load(&t.calls), 9); /* 6 + 3 failed first tries */
}

/* A transactional handler whose statement fails at the server (a duplicate
 * key) with an error that, on PostgreSQL, comes only after the handler
 * returned (a statement whose result nobody read): that event alone fails,
 * with the statement's message, and ends as a dead letter; the events
 * batched with it commit their rows. */
static int late_handler(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                        void *user)
{
    (void)user;
    char k[32];
    int n = event_n(ev);
    if (n == 3)
        snprintf(k, sizeof k, "taken");
    else
        snprintf(k, sizeof k, "e%d", n);
    eddy_error e = {0};
    if (eddy_txn_exec(txn, NULL, &e, "INSERT INTO late_effects(k) VALUES($1)",
                      "s", k) != EDDY_OK)
        return eddy_ctx_fail(ctx, e.code, "%s", e.message);
    return EDDY_OK;
}

static int late_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err, "CREATE TABLE late_effects("
                           "k TEXT PRIMARY KEY)", NULL);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err, "INSERT INTO late_effects(k) "
                           "VALUES('taken')", NULL);
    return rc;
}

static void test_transactional_late_error(void **state)
{
    struct fx *f = *state;
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(f->store, late_setup, NULL, &err),
                     EDDY_OK);
    /* One key per event (no event waits behind another's failure), one
     * worker: the six arrive in one batch. */
    int64_t last = 0, bad_pos = 0;
    for (int n = 0; n < 6; n++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", n);
        last = append_n(f->store, "late.x", key, n, 1);
        if (n == 3)
            bad_pos = last;
    }
    eddy_durable_options o = {.name = "late",
                              .patterns = (const char *const[]){"late.*"},
                              .pattern_count = 1,
                              .mode = EDDY_DELIVERY_TRANSACTIONAL,
                              .txn_handler = late_handler,
                              .workers = 1,
                              .retry = {.max_attempts = 2,
                                        .initial_delay_ms = 5}};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, last);
    eddy_durable_free(d);
    assert_int_equal(count_sql(f->store, "SELECT count(*) FROM late_effects"),
                     6); /* 'taken' and e0..e5 but e3 */
    assert_int_equal(count_sql(f->store, "SELECT count(*) FROM late_effects "
                                         "WHERE k = 'e3'"), 0);
    struct dl_seen s = dl_list(f->store, "late");
    assert_int_equal(s.count, 1);
    assert_int_equal(s.position, bad_pos);
    assert_int_equal(s.attempts, 2);
    if (!strstr(s.error, "INSERT INTO late_effects"))
        fail_msg("the dead letter does not name the failed statement: %s",
                 s.error);
}

/* ---- options -------------------------------------------------------------- */

static int txn_noop(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                    void *user)
{
    return EDDY_OK;
}

static void test_bad_options(void **state)
{
    struct fx *f = *state;
    struct rec *r = rec_new();
    eddy_error err = {0};
    eddy_durable_options o = {.handler = rec_handler, .user = r};
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "name"));

    o.name = "h";
    const char *const bad[] = {"a.b", "a*"};
    o.patterns = bad;
    o.pattern_count = 2;
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_non_null(strstr(err.message, "pattern \"a*\""));
    o.patterns = NULL;
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_non_null(strstr(err.message, "pattern_count without patterns"));
    const char *const null_one[] = {"a.b", NULL};
    o.patterns = null_one;
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_non_null(strstr(err.message, "patterns[1] is NULL"));

    o.patterns = NULL;
    o.pattern_count = 0;
    o.mode = EDDY_DELIVERY_TRANSACTIONAL;
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_non_null(strstr(err.message, "txn_handler"));

    o.mode = EDDY_DELIVERY_AT_LEAST_ONCE;
    o.start_from = (eddy_start_from)7;
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_non_null(strstr(err.message, "start_from"));
    o.start_from = EDDY_START_BEGINNING;
    o.retry.multiplier = 0.5;
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_non_null(strstr(err.message, "multiplier"));
    o.retry.multiplier = 0;

    eddy_durable *d = start(f->store, &o);
    assert_null(eddy_durable_start(f->store, &o, &err));
    assert_int_equal(err.code, EDDY_EEXIST);
    eddy_durable_options t = {.name = "t",
                              .mode = EDDY_DELIVERY_TRANSACTIONAL,
                              .txn_handler = txn_noop};
    eddy_durable *d2 = start(f->store, &t);
    assert_int_equal(eddy_durable_stop(d, NULL), EDDY_OK);
    assert_int_equal(eddy_durable_stop(d, NULL), EDDY_OK); /* idempotent */
    eddy_durable_free(d);
    eddy_durable_free(d2);
    eddy_durable_free(NULL);
    /* The name is free again after free. */
    d = start(f->store, &o);
    eddy_durable_free(d);
    rec_free(r);
}

static void test_lag_gauge(void **state)
{
    struct fx *f = *state;
    eddy_metrics *m = eddy_metrics_new();
    struct rec *r = rec_new();
    eddy_durable_options o = {.name = "lagging", .handler = rec_handler,
                              .user = r, .metrics = m};
    eddy_durable *d = start(f->store, &o);
    wait_idle(d, append_n(f->store, "a.b", "k", 0, 5));
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    bool found = false;
    for (size_t i = 0; i < eddy_metrics_snapshot_gauge_count(snap); i++) {
        const eddy_metrics_gauge_stats *g = eddy_metrics_snapshot_gauge(snap, i);
        if (strcmp(g->name, EDDY_METRIC_SUBSCRIPTION_LAG) == 0 &&
            g->label_value && strcmp(g->label_value, "lagging") == 0) {
            found = true;
            assert_true(g->value == 0.0);
        }
    }
    assert_true(found);
    eddy_metrics_snapshot_free(snap);
    eddy_durable_free(d);
    eddy_metrics_free(m);
    rec_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_catch_up_live_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_start_from_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_order_and_backoff, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_and_redrive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redrive_at_start_and_wait_idle,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_retryable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_state_survives_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_and_at_least_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transactional_exactly_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transactional_late_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lag_gauge, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
