/*
 * tests/test_transport_kafka_faults.c - what is specific to the Kafka
 * transport, against librdkafka's built-in mock cluster (3 brokers, in this
 * process, on real loopback listeners): the binary wire format read back by
 * a plain librdkafka consumer, binary-mode messages that are malformed, and
 * broker failures injected by the mock (request errors, a dropped
 * connection, all brokers down). The conformance suite runs in
 * test_transport_kafka (split so that each program stays under a minute).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>

#include "eddy/eddy.h"
#include "eddy/transport.h"

static rd_kafka_t *mock_owner;
static rd_kafka_mock_cluster_t *mock;
static char url[512];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static rd_kafka_t *raw_producer(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers",
                      rd_kafka_mock_cluster_bootstraps(mock), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "log_level", "2", errstr, sizeof errstr);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p)
        fail_msg("raw producer: %s", errstr);
    return p;
}

/* A foreign producer: the payload with the given headers (NULL-terminated
 * name, value pairs), keyed "raw". */
static int produce_raw(const char *topic, const char *raw, size_t len,
                       const char *const *headers)
{
    rd_kafka_t *p = raw_producer();
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    for (size_t i = 0; headers && headers[i]; i += 2)
        rd_kafka_header_add(h, headers[i], -1, headers[i + 1], -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("raw", 3),
        RD_KAFKA_V_VALUE((void *)raw, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    int rc = e ? -1 : 0;
    if (rd_kafka_flush(p, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = -1;
    rd_kafka_destroy(p);
    return rc;
}

/* ---- a recorder for the Kafka-specific tests --------------------------- */

typedef struct got {
    pthread_mutex_t mu;
    int n, ndead;
    char ids[64][40];
    int seqs[64];
    char reasons[8][256];
} got;

static int got_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    got *g = user;
    json_int_t seq = -1;
    eddy_event_unpack(ev, NULL, "{s:I}", "seq", &seq);
    pthread_mutex_lock(&g->mu);
    if (g->n < 64) {
        snprintf(g->ids[g->n], sizeof g->ids[0], "%s", eddy_event_id(ev));
        g->seqs[g->n] = (int)seq;
    }
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

static eddy_transport_subscription *sub_open(eddy_transport *t, const char *type,
                                    const char *group, got *g)
{
    const char *types[] = {type};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .group = group, .handler = got_handler,
                                    .user = g, .dead_letter = got_dead};
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
    snprintf(buf, size, "kafka.%s.%s", what, id + 24);
}

/* ---- tests ---------------------------------------------------------------- */

/* What is on the wire is CloudEvents binary mode: a plain consumer sees
 * ce_* headers, the subject as key, the data as value, in events-<type>. */
static void test_binary_wire(void **state)
{
    char type[64], topic[128];
    fresh_type(type, sizeof type, "wire");
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, NULL, &err);
    assert_non_null(t);
    assert_int_equal(eddy_transport_topic(t, type, topic, sizeof topic), EDDY_OK);
    assert_int_equal(strncmp(topic, "events-", 7), 0);
    eddy_event *ev = eddy_event_newf(type, "orders", "order-42", &err,
                                     "{s:s}", "k", "v");
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);

    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers",
                      rd_kafka_mock_cluster_bootstraps(mock), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "wire-reader", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(c);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
    assert_int_equal(rd_kafka_metadata(c, 0, rkt, &md, 5000), 0);
    assert_int_equal(md->topic_cnt, 1);
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    assert_int_equal(rd_kafka_assign(c, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_message_t *m = NULL;
    for (int i = 0; i < 100 && !m; i++) {
        m = rd_kafka_consumer_poll(c, 100);
        if (m && m->err) {
            rd_kafka_message_destroy(m);
            m = NULL;
        }
    }
    assert_non_null(m);
    assert_int_equal(m->key_len, strlen("order-42"));
    assert_memory_equal(m->key, "order-42", m->key_len);
    assert_int_equal(m->len, strlen("{\"k\":\"v\"}"));
    assert_memory_equal(m->payload, "{\"k\":\"v\"}", m->len);
    rd_kafka_headers_t *h = NULL;
    assert_int_equal(rd_kafka_message_headers(m, &h), 0);
    const void *v;
    size_t len;
    struct {
        const char *name, *value;
    } want[] = {{"ce_id", eddy_event_id(ev)}, {"ce_type", type},
                {"ce_source", "orders"},      {"ce_specversion", "1.0"},
                {"ce_subject", "order-42"},   {"content-type", "application/json"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (rd_kafka_header_get_last(h, want[i].name, &v, &len))
            fail_msg("header %s missing", want[i].name);
        assert_int_equal(len, strlen(want[i].value));
        assert_memory_equal(v, want[i].value, len);
    }
    assert_int_equal(rd_kafka_header_get_last(h, "ce_time", &v, &len), 0);
    rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    eddy_event_unref(ev);
    eddy_transport_close(t);
}

/* Binary-mode messages that are not CloudEvents are dead-lettered with the
 * reason; the good event behind them still arrives. */
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
    const char *no_type[] = {"ce_specversion", "1.0", "ce_id", "x1",
                             "ce_source", "s", NULL};
    assert_int_equal(produce_raw(topic, "{}", 2, no_type), 0);
    const char *bad_json[] = {"ce_specversion", "1.0", "ce_id", "x2",
                              "ce_source", "s", "ce_type", type,
                              "content-type", "application/json", NULL};
    assert_int_equal(produce_raw(topic, "{nope", 5, bad_json), 0);
    const char *bad_int[] = {"ce_specversion", "1.0", "ce_id", "x3",
                             "ce_source", "s", "ce_type", type, "ce_count",
                             "many", "eddy_types", "count=i", NULL};
    assert_int_equal(produce_raw(topic, "", 0, bad_int), 0);
    assert_int_equal(produce_raw(topic, "just bytes", 10, NULL), 0);
    eddy_event *good = eddy_event_newf(type, "s", "raw", &err, "{s:i}", "seq", 7);
    assert_int_equal(eddy_transport_publish(t, good, &err), EDDY_OK);
    assert_int_equal(wait_count(&g, 0, 1, 20000), 1);
    assert_int_equal(wait_count(&g, 1, 4, 20000), 4);
    eddy_transport_subscription_free(sub);
    assert_string_equal(g.ids[0], eddy_event_id(good));
    for (int i = 0; i < 4; i++)
        if (!strstr(g.reasons[i], "malformed"))
            fail_msg("reason %d: %s", i, g.reasons[i]);
    assert_non_null(strstr(g.reasons[0], "type"));
    assert_non_null(strstr(g.reasons[1], "not valid JSON"));
    assert_non_null(strstr(g.reasons[2], "count"));
    eddy_event_unref(good);
    pthread_mutex_destroy(&g.mu);
    eddy_transport_close(t);
}

/* Broker failures injected by the mock: produce requests that fail with
 * retriable errors and a dropped connection still end in one stored copy
 * each (idempotent producer); with every broker down a publish fails
 * cleanly within timeout_ms; once they are back, publishing works again and
 * every event whose publish succeeded is consumed. */
static void test_broker_failure(void **state)
{
    char type[64];
    fresh_type(type, sizeof type, "fail");
    eddy_transport_options to = {.timeout_ms = 1500};
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &to, &err);
    assert_non_null(t);
    got g = {.n = 0};
    pthread_mutex_init(&g.mu, NULL);
    eddy_transport_subscription *sub = sub_open(t, type, "fail", &g);
    enum { N = 6 };
    char acked[N + 2][40];
    int nacked = 0;
    /* Retriable produce errors, one of them a disconnect. */
    rd_kafka_mock_push_request_errors(
        mock, 0 /* Produce */, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    for (int i = 0; i < N; i++) {
        eddy_event *ev = eddy_event_newf(type, "s", "agg-f", &err, "{s:i}",
                                         "seq", i);
        int rc = eddy_transport_publish(t, ev, &err);
        if (rc != EDDY_OK)
            fail_msg("publish %d under injected errors: %s", i, err.message);
        snprintf(acked[nacked++], sizeof acked[0], "%s", eddy_event_id(ev));
        eddy_event_unref(ev);
    }
    /* Every broker down: a clean error within the timeout. */
    rd_kafka_mock_broker_set_down(mock, -1);
    eddy_event *lost = eddy_event_newf(type, "s", "agg-f", &err, "{s:i}",
                                       "seq", 100);
    int64_t t0 = (int64_t)time(NULL);
    int rc = eddy_transport_publish(t, lost, &err);
    assert_int_not_equal(rc, EDDY_OK);
    assert_true(rc == EDDY_ETIMEDOUT || rc == EDDY_EIO);
    assert_non_null(strstr(err.message, eddy_event_id(lost)));
    assert_true((int64_t)time(NULL) - t0 <= 6);
    rd_kafka_mock_broker_set_up(mock, -1);
    eddy_event *after = eddy_event_newf(type, "s", "agg-f", &err, "{s:i}",
                                        "seq", N);
    int ok = 0;
    for (int i = 0; i < 20 && !ok; i++)
        ok = eddy_transport_publish(t, after, &err) == EDDY_OK;
    if (!ok)
        fail_msg("publish after the brokers came back: %s", err.message);
    snprintf(acked[nacked++], sizeof acked[0], "%s", eddy_event_id(after));
    /* Every acknowledged event arrives, exactly once, in order. */
    assert_true(wait_count(&g, 0, nacked, 30000) >= nacked);
    sleep_ms(200);
    eddy_transport_subscription_free(sub);
    int seen_lost = 0, next = 0;
    for (int i = 0; i < g.n && i < 64; i++) {
        if (strcmp(g.ids[i], eddy_event_id(lost)) == 0) {
            seen_lost++;
            continue;
        }
        if (next < nacked && strcmp(g.ids[i], acked[next]) == 0)
            next++;
        else
            fail_msg("delivery %d: %s is a duplicate or out of order", i,
                     g.ids[i]);
    }
    assert_int_equal(next, nacked);
    assert_true(seen_lost <= 1);
    eddy_event_unref(lost);
    eddy_event_unref(after);
    pthread_mutex_destroy(&g.mu);
    eddy_transport_close(t);
}

static void async_count(int rc, const eddy_event *ev, const eddy_error *err,
                        void *user)
{
    int *counts = user;
    __atomic_add_fetch(&counts[rc == EDDY_OK ? 0 : 1], 1, __ATOMIC_SEQ_CST);
}

/* Closing with asynchronous publishes that cannot complete (brokers down)
 * reports each of them once, as an error. */
static void test_close_reports_pending(void **state)
{
    char type[64];
    fresh_type(type, sizeof type, "close");
    eddy_transport_options to = {.timeout_ms = 1000};
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &to, &err);
    assert_non_null(t);
    rd_kafka_mock_broker_set_down(mock, -1);
    int counts[2] = {0, 0};
    for (int i = 0; i < 5; i++) {
        eddy_event *ev = eddy_event_newf(type, "s", "k", &err, NULL);
        assert_int_equal(eddy_transport_publish_async(t, ev, async_count,
                                                      counts, &err), EDDY_OK);
        eddy_event_unref(ev);
    }
    eddy_transport_close(t);
    rd_kafka_mock_broker_set_up(mock, -1);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 5);
}

int main(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!mock_owner) {
        fprintf(stderr, "cannot create the mock cluster's handle: %s\n", errstr);
        return 1;
    }
    mock = rd_kafka_mock_cluster_new(mock_owner, 3);
    if (!mock) {
        fprintf(stderr, "cannot create librdkafka's mock cluster\n");
        return 1;
    }
    snprintf(url, sizeof url, "kafka://%s",
             rd_kafka_mock_cluster_bootstraps(mock));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_wire),
        cmocka_unit_test(test_binary_malformed),
        cmocka_unit_test(test_broker_failure),
        cmocka_unit_test(test_close_reports_pending),
    };
    int failed = cmocka_run_group_tests_name("kafka-faults", tests, NULL, NULL);
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_owner);
    return failed ? 1 : 0;
}
