/*
 * tests/test_transport_nats.c - the transport conformance suite on NATS
 * JetStream, against a nats-server -js started by this program (through
 * scripts/test-servers.sh, on loopback, a free port, data in a temporary
 * folder; the test fails when it cannot start it), plus what is specific to
 * NATS: the binary wire format as JetStream stored it, binary-mode messages
 * that are malformed, a server restart in the middle of a stream (no
 * acknowledged event lost), publishing while the server is down, and URL
 * errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"
#include <nats/nats.h>
#include <pthread.h>

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "transport_conformance.h"

static char dir[] = "/tmp/eddy-nats-test-XXXXXX";
static char port[16];
static char url[64];
static natsConnection *raw_nc;
static jsCtx *raw_js;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs test-servers.sh ACTION nats DIR [PORT]; with `out`, its first line. */
static int servers(const char *action, const char *with_port, char *out,
                   size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bash '%s' %s nats '%s' %s", EDDY_TEST_SERVERS,
             action, dir, with_port ? with_port : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[64] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    int rc = pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    if (out)
        snprintf(out, size, "%s", line);
    return rc == 0 ? 0 : -1;
}

/* ---- a foreign producer: the engine's own client ------------------------ */

static int publish_raw(const char *subject, const char *raw, size_t len,
                       const char *const *headers)
{
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, raw, (int)len) != NATS_OK)
        return -1;
    for (size_t i = 0; headers && headers[i]; i += 2)
        natsMsgHeader_Set(m, headers[i], headers[i + 1]);
    jsPubAck *pa = NULL;
    natsStatus s = js_PublishMsg(&pa, raw_js, m, NULL, NULL);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s == NATS_OK ? 0 : -1;
}

/* Structured mode, as the suite's foreign producer. */
static int nats_inject(eddy_transport *t, const char *topic, const char *raw,
                       size_t len)
{
    const char *h[] = {"content-type", "application/cloudevents+json", NULL};
    return publish_raw(topic, raw, len, h);
}

/* ---- a recorder ------------------------------------------------------------ */

typedef struct got {
    pthread_mutex_t mu;
    int n, ndead;
    char ids[256][40];
    char reasons[8][256];
} got;

static int got_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    got *g = user;
    pthread_mutex_lock(&g->mu);
    if (g->n < 256)
        snprintf(g->ids[g->n], sizeof g->ids[0], "%s", eddy_event_id(ev));
    g->n++;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void got_dead(const eddy_transport_dead_letter *dl, void *user)
{
    got *g = user;
    pthread_mutex_lock(&g->mu);
    if (g->ndead < 8)
        snprintf(g->reasons[g->ndead], sizeof g->reasons[0], "%s", dl->reason);
    g->ndead++;
    pthread_mutex_unlock(&g->mu);
}

static int got_count(got *g, int dead)
{
    pthread_mutex_lock(&g->mu);
    int n = dead ? g->ndead : g->n;
    pthread_mutex_unlock(&g->mu);
    return n;
}

static int wait_count(got *g, int dead, int want, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && got_count(g, dead) < want;
         waited += 10)
        sleep_ms(10);
    return got_count(g, dead);
}

static int got_seen(got *g, const char *id)
{
    int n = 0;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < g->n && i < 256; i++)
        n += strcmp(g->ids[i], id) == 0;
    pthread_mutex_unlock(&g->mu);
    return n;
}

static eddy_transport_subscription *sub_open(eddy_transport *t, const char *type,
                                    const char *group, got *g)
{
    const char *types[] = {type};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .group = group, .handler = got_handler,
                                    .user = g, .dead_letter = got_dead,
                                    .ack_wait_ms = 2000};
    eddy_transport_subscription *sub = NULL;
    eddy_error err = {0};
    if (eddy_transport_subscribe(t, &o, &sub, &err) != EDDY_OK)
        fail_msg("subscribe: %s", err.message);
    return sub;
}

static void fresh_type(char *buf, size_t size, const char *what)
{
    char id[EDDY_UUID_STRLEN];
    eddy_uuid7(id);
    snprintf(buf, size, "nats.%s.%s", what, id + 24);
}

/* ---- tests ------------------------------------------------------------------ */

/* JetStream stores CloudEvents binary mode: ce-* headers (percent-encoded),
 * content-type, the data as the payload, on subject events.<type> of the
 * stream EDDY_EVENTS. */
static void test_binary_wire(void **state)
{
    char type[64], topic[128];
    fresh_type(type, sizeof type, "wire");
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, NULL, &err);
    assert_non_null(t);
    assert_int_equal(eddy_transport_topic(t, type, topic, sizeof topic), EDDY_OK);
    assert_int_equal(strncmp(topic, "events.", 7), 0);
    eddy_event_init in = {.type = type, .source = "orders",
                          .subject = "order 42",
                          .data = json_pack("{s:s}", "k", "v")};
    eddy_event *ev = eddy_event_new(&in, &err);
    json_decref(in.data);
    assert_non_null(ev);
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
    natsMsg *m = NULL;
    assert_int_equal(js_GetLastMsg(&m, raw_js, "EDDY_EVENTS", topic, NULL, NULL),
                     NATS_OK);
    assert_int_equal(natsMsg_GetDataLength(m), (int)strlen("{\"k\":\"v\"}"));
    assert_memory_equal(natsMsg_GetData(m), "{\"k\":\"v\"}",
                        strlen("{\"k\":\"v\"}"));
    struct {
        const char *name, *value;
    } want[] = {{"ce-id", eddy_event_id(ev)},
                {"ce-type", type},
                {"ce-source", "orders"},
                {"ce-specversion", "1.0"},
                {"ce-subject", "order%2042"}, /* percent-encoded space */
                {"content-type", "application/json"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *v = NULL;
        if (natsMsgHeader_Get(m, want[i].name, &v) != NATS_OK)
            fail_msg("header %s missing", want[i].name);
        assert_string_equal(v, want[i].value);
    }
    natsMsg_Destroy(m);
    eddy_event_unref(ev);
    eddy_transport_close(t);
}

/* Binary-mode messages that are not CloudEvents are dead-lettered (and
 * terminated) with the reason; the good event behind them arrives. */
static void test_binary_malformed(void **state)
{
    char type[64], topic[128];
    fresh_type(type, sizeof type, "badbin");
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, NULL, &err);
    assert_non_null(t);
    eddy_transport_topic(t, type, topic, sizeof topic);
    got g = {.n = 0};
    pthread_mutex_init(&g.mu, NULL);
    eddy_transport_subscription *sub = sub_open(t, type, "badbin", &g);
    const char *no_type[] = {"ce-specversion", "1.0", "ce-id", "x1",
                             "ce-source", "s", NULL};
    assert_int_equal(publish_raw(topic, "{}", 2, no_type), 0);
    const char *bad_escape[] = {"ce-specversion", "1.0", "ce-id", "x%zz",
                                "ce-source", "s", "ce-type", type, NULL};
    assert_int_equal(publish_raw(topic, "{}", 2, bad_escape), 0);
    const char *bad_json[] = {"ce-specversion", "1.0", "ce-id", "x3",
                              "ce-source", "s", "ce-type", type,
                              "content-type", "application/json", NULL};
    assert_int_equal(publish_raw(topic, "{nope", 5, bad_json), 0);
    eddy_event *good = eddy_event_newf(type, "s", "raw", &err, NULL);
    assert_int_equal(eddy_transport_publish(t, good, &err), EDDY_OK);
    assert_int_equal(wait_count(&g, 0, 1, 20000), 1);
    assert_int_equal(wait_count(&g, 1, 3, 20000), 3);
    sleep_ms(300);
    eddy_transport_subscription_free(sub);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.ndead, 3); /* terminated: never redelivered */
    assert_string_equal(g.ids[0], eddy_event_id(good));
    for (int i = 0; i < 3; i++)
        if (!strstr(g.reasons[i], "malformed"))
            fail_msg("reason %d: %s", i, g.reasons[i]);
    assert_non_null(strstr(g.reasons[0], "type"));
    assert_non_null(strstr(g.reasons[1], "escape"));
    assert_non_null(strstr(g.reasons[2], "not valid JSON"));
    eddy_event_unref(good);
    pthread_mutex_destroy(&g.mu);
    eddy_transport_close(t);
}

/* The server stops and starts again (same port, same data) in the middle
 * of a stream: while it is down a publish fails at once with
 * EDDY_ECONNECT (FAIL policy) and the subscription says it is down
 * (eddy_transport_subscription_down_since); afterwards the transport and the
 * subscription reconnect by themselves, and every event whose publish
 * succeeded is received. */
static void test_server_restart(void **state)
{
    enum { N = 40 };
    char type[64];
    fresh_type(type, sizeof type, "restart");
    eddy_transport_options to = {.reconnect_initial_ms = 100,
                                 .reconnect_max_ms = 500, .timeout_ms = 2000};
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &to, &err);
    assert_non_null(t);
    got g = {.n = 0};
    pthread_mutex_init(&g.mu, NULL);
    eddy_transport_subscription *sub = sub_open(t, type, "restart", &g);
    char acked[N][40];
    int nacked = 0;
    for (int i = 0; i < N; i++) {
        if (i == N / 2) {
            assert_int_equal(eddy_transport_subscription_down_since(sub, NULL, 0), 0);
            int64_t stopped = eddy_now_us();
            assert_int_equal(servers("stop", NULL, NULL, 0), 0);
            sleep_ms(200);
            /* the subscription says its connection is down, since when and
             * why, until it reconnects (checked after the restart) */
            char why[256] = "";
            int64_t since = 0;
            for (int k = 0; k < 300 && !since; k++) {
                since = eddy_transport_subscription_down_since(sub, why, sizeof why);
                if (!since)
                    sleep_ms(10);
            }
            print_message("down after %.0f ms: %s\n",
                          (double)(eddy_now_us() - stopped) / 1000, why);
            assert_true(since >= stopped - 1000000 && since <= eddy_now_us());
            assert_true(why[0] != '\0');
            eddy_event *ev = eddy_event_newf(type, "s", "agg-r", &err, NULL);
            int64_t t0 = (int64_t)time(NULL);
            assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_ECONNECT);
            assert_true((int64_t)time(NULL) - t0 <= 1);
            assert_non_null(strstr(err.message, "not connected"));
            eddy_event_unref(ev);
            char again[16];
            assert_int_equal(servers("start", port, again, sizeof again), 0);
            assert_string_equal(again, port);
        }
        eddy_event *ev = eddy_event_newf(type, "s", "agg-r", &err, "{s:i}",
                                         "seq", i);
        int rc = EDDY_ECONNECT;
        /* Until the client has reconnected, publishing fails cleanly. */
        for (int tries = 0; tries < 100 && rc != EDDY_OK; tries++) {
            rc = eddy_transport_publish(t, ev, &err);
            if (rc != EDDY_OK)
                sleep_ms(100);
        }
        if (rc != EDDY_OK)
            fail_msg("publish %d after the restart: %s", i, err.message);
        snprintf(acked[nacked++], sizeof acked[0], "%s", eddy_event_id(ev));
        eddy_event_unref(ev);
    }
    wait_count(&g, 0, nacked, 30000);
    for (int i = 0; i < 500 && eddy_transport_subscription_down_since(sub, NULL, 0); i++)
        sleep_ms(10);
    assert_int_equal(eddy_transport_subscription_down_since(sub, NULL, 0), 0);
    eddy_transport_subscription_stats st;
    eddy_transport_subscription_stats_get(sub, &st);
    eddy_transport_subscription_free(sub);
    for (int i = 0; i < nacked; i++)
        if (got_seen(&g, acked[i]) < 1)
            fail_msg("acknowledged event %d (%s) lost across the restart", i,
                     acked[i]);
    assert_true(st.reconnects >= 1);
    pthread_mutex_destroy(&g.mu);
    eddy_transport_close(t);
}

static void test_urls(void **state)
{
    eddy_error err = {0};
    char bad[128];
    snprintf(bad, sizeof bad, "%s?nope=1", url);
    assert_null(eddy_transport_open(bad, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "nope"));
    snprintf(bad, sizeof bad, "%s?stream=a.b", url);
    assert_null(eddy_transport_open(bad, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    eddy_transport_options o = {.topic_prefix = "ev-"};
    assert_null(eddy_transport_open(url, &o, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "ev-"));
    assert_null(eddy_transport_open("nats://", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    eddy_transport_options c = {.connect_timeout_ms = 500};
    assert_null(eddy_transport_open("nats://127.0.0.1:1", &c, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "127.0.0.1:1"));
    /* Another stream, and deduplication by event id. */
    snprintf(bad, sizeof bad, "%s?stream=EDDY_OTHER&dedup=on", url);
    o.topic_prefix = "other.";
    eddy_transport *t = eddy_transport_open(bad, &o, &err);
    assert_non_null(t);
    eddy_event *ev = eddy_event_newf("dedup.test", "s", "k", &err, NULL);
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, raw_js, "EDDY_OTHER", NULL, NULL),
                     NATS_OK);
    assert_int_equal(si->State.Msgs, 1);
    jsStreamInfo_Destroy(si);
    eddy_event_unref(ev);
    eddy_transport_close(t);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (servers("start", NULL, port, sizeof port) != 0 || !port[0]) {
        fprintf(stderr, "test_transport_nats: cannot start nats-server -js "
                "(is the nats-server package installed?)\n");
        return 1;
    }
    snprintf(url, sizeof url, "nats://127.0.0.1:%s", port);
    char raw_url[64];
    snprintf(raw_url, sizeof raw_url, "nats://127.0.0.1:%s", port);
    natsOptions *o = NULL;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, raw_url);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 100);
    int failed = 1;
    if (natsConnection_Connect(&raw_nc, o) != NATS_OK ||
        natsConnection_JetStream(&raw_js, raw_nc, NULL) != NATS_OK) {
        fprintf(stderr, "test_transport_nats: cannot connect to %s\n", raw_url);
        goto out;
    }
    /* The stream exists once a transport was opened. */
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, NULL, &err);
    if (!t) {
        fprintf(stderr, "test_transport_nats: %s\n", err.message);
        goto out;
    }
    eddy_transport_close(t);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_wire),
        cmocka_unit_test(test_binary_malformed),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_urls),
    };
    failed = cmocka_run_group_tests_name("nats", tests, NULL, NULL);
    transport_conformance_env env = {
        .name = "nats-conformance", .url = url, .inject_raw = nats_inject,
        .ack_wait_ms = 1000, .settle_ms = 0,
    };
    failed += transport_conformance_run(&env);
out:
    if (raw_js)
        jsCtx_Destroy(raw_js);
    if (raw_nc) {
        natsConnection_Close(raw_nc);
        natsConnection_Destroy(raw_nc);
    }
    natsOptions_Destroy(o);
    nats_CloseAndWait(2000);
    servers("stop", NULL, NULL, 0);
    eddyt_rmtree(dir); /* reports its own failure */
    return failed ? 1 : 0;
}
