/*
 * tests/test_transport_redis.c - the transport conformance suite on Redis
 * Streams, plus Pub/Sub, a publisher losing its server (clear error, then
 * reconnection), and a server restart in the middle of a stream (no
 * acknowledged event lost), and the subscription's connection state
 * (eddy_transport_subscription_down_since) across a server stop.
 *
 * The program starts its own redis-server (scripts/test-servers.sh, path
 * compiled in as EDDY_TEST_SERVERS) on loopback, on a free port, with its
 * data in a temporary folder, and stops it at the end. No redis-server: the
 * test FAILS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"
#include <hiredis/hiredis.h>
#include <pthread.h>

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "transport_conformance.h"

static char dir[] = "/tmp/eddy-redis-test-XXXXXX";
static int port;
static char url[128];

/* Runs test-servers.sh ACTION redis DIR [PORT]; returns the port it
 * printed (start) or 0, -1 on failure. */
static int servers(const char *action, int with_port)
{
    char cmd[1024];
    if (with_port)
        snprintf(cmd, sizeof cmd, "bash '%s' %s redis '%s' %d", EDDY_TEST_SERVERS,
                 action, dir, port);
    else
        snprintf(cmd, sizeof cmd, "bash '%s' %s redis '%s'", EDDY_TEST_SERVERS,
                 action, dir);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    int p = 0;
    if (fscanf(f, "%d", &p) != 1)
        p = 0;
    int st = pclose(f);
    return st == 0 ? p : -1;
}

static int redis_inject(eddy_transport *t, const char *topic, const char *raw,
                        size_t len)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "XADD %s * event %b key foreign", topic,
                                 raw, len);
    int rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
    freeReplyObject(r);
    redisFree(c);
    return rc;
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* ---- Pub/Sub ------------------------------------------------------------- */

typedef struct counter {
    pthread_mutex_t mu;
    int n;
    int dead;
    char last_id[64];
} counter;

static int count_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    counter *c = user;
    pthread_mutex_lock(&c->mu);
    c->n++;
    snprintf(c->last_id, sizeof c->last_id, "%s", eddy_event_id(ev));
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void count_dead(const eddy_transport_dead_letter *dl, void *user)
{
    counter *c = user;
    pthread_mutex_lock(&c->mu);
    c->dead++;
    pthread_mutex_unlock(&c->mu);
}

static int get_n(counter *c, int dead)
{
    pthread_mutex_lock(&c->mu);
    int n = dead ? c->dead : c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void test_pubsub(void **state)
{
    char u[160];
    snprintf(u, sizeof u, "%s?mode=pubsub", url);
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(u, NULL, &err);
    assert_non_null(t);
    counter a = {.n = 0}, b = {.n = 0};
    pthread_mutex_init(&a.mu, NULL);
    pthread_mutex_init(&b.mu, NULL);
    const char *types[] = {"ps.test"};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .group = "g", .handler = count_handler,
                                    .user = &a, .dead_letter = count_dead};
    eddy_transport_subscription *sa = NULL, *sb = NULL;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sa, &err), EDDY_OK);
    o.user = &b;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sb, &err), EDDY_OK);
    for (int i = 0; i < 5; i++) {
        eddy_event *ev = eddy_event_newf("ps.test", "t", "k", &err, "{s:i}",
                                         "i", i);
        assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
        eddy_event_unref(ev);
    }
    /* Every subscriber gets every message (no load sharing in Pub/Sub). */
    for (int i = 0; i < 2000 && (get_n(&a, 0) < 5 || get_n(&b, 0) < 5); i++)
        sleep_ms(5);
    assert_int_equal(get_n(&a, 0), 5);
    assert_int_equal(get_n(&b, 0), 5);
    /* A foreign malformed message is dead-lettered, not a crash. */
    redisContext *c = redisConnect("127.0.0.1", port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "PUBLISH events.ps.test %s", "garbage{");
    freeReplyObject(r);
    redisFree(c);
    for (int i = 0; i < 2000 && get_n(&a, 1) < 1; i++)
        sleep_ms(5);
    assert_int_equal(get_n(&a, 1), 1);
    eddy_transport_subscription_free(sa);
    eddy_transport_subscription_free(sb);
    pthread_mutex_destroy(&a.mu);
    pthread_mutex_destroy(&b.mu);
    eddy_transport_close(t);
    assert_null(eddy_transport_open("redis://127.0.0.1:1?mode=fanout", NULL,
                                    &err));
    assert_int_equal(err.code, EDDY_EINVAL);
}

/* ---- losing the server ---------------------------------------------------- */

static void test_disconnected_publish(void **state)
{
    eddy_error err = {0};
    /* Nothing listens on port 1: open fails naming the place. */
    assert_null(eddy_transport_open("redis://127.0.0.1:1", NULL, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "127.0.0.1:1"));

    eddy_transport_options o = {.reconnect_initial_ms = 20,
                                .reconnect_max_ms = 100};
    eddy_transport *t = eddy_transport_open(url, &o, &err);
    assert_non_null(t);
    eddy_event *ev = eddy_event_newf("disc.test", "t", "k", &err, NULL);
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
    assert_int_equal(servers("stop", 0), 0);
    /* The first publish finds the broken connection; then every publish
     * fails at once with the FAIL policy, never silently. */
    int rc = eddy_transport_publish(t, ev, &err);
    assert_int_equal(rc, EDDY_ECONNECT);
    rc = eddy_transport_publish(t, ev, &err);
    assert_int_equal(rc, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "not connected"));
    assert_int_equal(servers("start", 1), port);
    rc = EDDY_ECONNECT;
    for (int i = 0; i < 200 && rc != EDDY_OK; i++) {
        rc = eddy_transport_publish(t, ev, &err);
        if (rc != EDDY_OK)
            sleep_ms(20);
    }
    assert_int_equal(rc, EDDY_OK);
    eddy_transport_close(t);

    /* BUFFER policy: a publish waits for the server to come back. */
    o.disconnected = EDDY_DISCONNECTED_BUFFER;
    o.timeout_ms = 10000;
    t = eddy_transport_open(url, &o, &err);
    assert_non_null(t);
    assert_int_equal(servers("stop", 0), 0);
    assert_int_equal(servers("start", 1), port);
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
    eddy_event_unref(ev);
    eddy_transport_close(t);
}

/* ---- server restart in the middle of a stream ------------------------------ */

#define RESTART_N 300

typedef struct seen {
    pthread_mutex_t mu;
    char ids[RESTART_N * 2][40];
    int n;
} seen;

static int seen_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    seen *s = user;
    pthread_mutex_lock(&s->mu);
    if (s->n < RESTART_N * 2)
        snprintf(s->ids[s->n++], sizeof s->ids[0], "%s", eddy_event_id(ev));
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static bool seen_has(seen *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], id) == 0)
            return true;
    return false;
}

static void test_server_restart(void **state)
{
    eddy_error err = {0};
    eddy_transport_options o = {.reconnect_initial_ms = 20,
                                .reconnect_max_ms = 200};
    eddy_transport *t = eddy_transport_open(url, &o, &err);
    assert_non_null(t);
    seen *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    const char *types[] = {"restart.test"};
    eddy_transport_subscription_options so = {.types = types, .type_count = 1,
                                     .group = "restart", .consumer = "r1",
                                     .handler = seen_handler, .user = s,
                                     .ack_wait_ms = 1000};
    eddy_transport_subscription *sub = NULL;
    assert_int_equal(eddy_transport_subscribe(t, &so, &sub, &err), EDDY_OK);
    static char acked[RESTART_N][40];
    int nacked = 0, failures = 0;
    for (int i = 0; i < RESTART_N; i++) {
        if (i == RESTART_N / 2) {
            assert_int_equal(servers("stop", 0), 0);
            assert_int_equal(servers("start", 1), port);
        }
        eddy_event *ev = eddy_event_newf("restart.test", "t", "agg", &err,
                                         "{s:i}", "i", i);
        int rc = eddy_transport_publish(t, ev, &err);
        if (rc == EDDY_OK)
            snprintf(acked[nacked++], sizeof acked[0], "%s", eddy_event_id(ev));
        else
            failures++;
        eddy_event_unref(ev);
    }
    /* Every acknowledged event arrives, after the subscription
     * reconnected. */
    for (int i = 0; i < 4000; i++) {
        pthread_mutex_lock(&s->mu);
        int missing = 0;
        for (int k = 0; k < nacked; k++)
            missing += !seen_has(s, acked[k]);
        pthread_mutex_unlock(&s->mu);
        if (!missing)
            break;
        sleep_ms(5);
    }
    eddy_transport_subscription_stats st;
    eddy_transport_subscription_stats_get(sub, &st);
    eddy_transport_subscription_free(sub);
    print_message("restart: %d published and acknowledged, %d failed during "
                  "the restart, %d received, %llu reconnects\n", nacked,
                  failures, s->n, (unsigned long long)st.reconnects);
    for (int k = 0; k < nacked; k++)
        if (!seen_has(s, acked[k]))
            fail_msg("acknowledged event %s lost in the restart", acked[k]);
    assert_true(nacked >= RESTART_N / 2);
    assert_true(st.reconnects >= 1);
    pthread_mutex_destroy(&s->mu);
    free(s);
    eddy_transport_close(t);
}

/* ---- the subscription's connection state --------------------------------- */

/* eddy_transport_subscription_down_since: 0 while connected; once the server is
 * gone, the time of the loss (kept while it stays down) and the reason;
 * 0 again once the subscription reconnected. */
static void test_down_since(void **state)
{
    eddy_error err = {0};
    eddy_transport_options o = {.reconnect_initial_ms = 20,
                                .reconnect_max_ms = 200};
    eddy_transport *t = eddy_transport_open(url, &o, &err);
    assert_non_null(t);
    counter c = {.n = 0};
    pthread_mutex_init(&c.mu, NULL);
    const char *types[] = {"down.test"};
    eddy_transport_subscription_options so = {.types = types, .type_count = 1,
                                     .group = "down", .handler = count_handler,
                                     .user = &c};
    eddy_transport_subscription *sub = NULL;
    assert_int_equal(eddy_transport_subscribe(t, &so, &sub, &err), EDDY_OK);
    char why[256] = "x";
    assert_int_equal(eddy_transport_subscription_down_since(sub, why, sizeof why), 0);
    assert_string_equal(why, "");
    assert_int_equal(eddy_transport_subscription_down_since(NULL, why, sizeof why), 0);

    int64_t stopped = eddy_now_us();
    assert_int_equal(servers("stop", 0), 0);
    int64_t since = 0;
    for (int i = 0; i < 300 && !since; i++) {
        since = eddy_transport_subscription_down_since(sub, why, sizeof why);
        if (!since)
            sleep_ms(10);
    }
    print_message("down after %.0f ms: %s\n",
                  (double)(eddy_now_us() - stopped) / 1000, why);
    assert_true(since >= stopped - 1000000 && since <= eddy_now_us());
    assert_true(why[0] != '\0');
    sleep_ms(300); /* reconnection attempts fail: the loss keeps its time */
    assert_int_equal(eddy_transport_subscription_down_since(sub, NULL, 0), since);

    assert_int_equal(servers("start", 1), port);
    for (int i = 0; i < 500 && eddy_transport_subscription_down_since(sub, why, sizeof why);
         i++)
        sleep_ms(10);
    assert_int_equal(eddy_transport_subscription_down_since(sub, why, sizeof why), 0);
    assert_string_equal(why, "");
    eddy_transport_subscription_free(sub);
    pthread_mutex_destroy(&c.mu);
    eddy_transport_close(t);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    port = servers("start", 0);
    if (port <= 0) {
        fprintf(stderr, "test_transport_redis: FAILED: could not start "
                        "redis-server (see above); it is required\n");
        return 1;
    }
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    transport_conformance_env env = {
        .name = "conformance_redis",
        .url = url,
        .inject_raw = redis_inject,
        .ack_wait_ms = 500,
    };
    int failed = transport_conformance_run(&env);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pubsub),
        cmocka_unit_test(test_disconnected_publish),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_down_since),
    };
    failed += cmocka_run_group_tests_name("transport_redis", tests, NULL, NULL);
    servers("stop", 0);
    eddyt_rmtree(dir); /* reports its own failure */
    return failed ? 1 : 0;
}
