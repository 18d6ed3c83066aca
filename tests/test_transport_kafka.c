/*
 * tests/test_transport_kafka.c - the transport conformance suite on Kafka,
 * against librdkafka's built-in mock cluster (3 brokers, in this process,
 * on real loopback listeners), and the Kafka URL forms. Failure injection
 * and the wire format are in test_transport_kafka_faults.
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

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "transport_conformance.h"

static rd_kafka_t *mock_owner;
static rd_kafka_mock_cluster_t *mock;
static char url[512];

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

/* The suite's foreign producer sends structured-mode CloudEvents, as the
 * Kafka binding defines them (content-type application/cloudevents+json). */
static int kafka_inject(eddy_transport *t, const char *topic, const char *raw,
                        size_t len)
{
    const char *h[] = {"content-type", "application/cloudevents+json", NULL};
    return produce_raw(topic, raw, len, h);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_urls(void **state)
{
    eddy_error err = {0};
    assert_null(eddy_transport_open("kafka://", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    char bad[600];
    snprintf(bad, sizeof bad, "%s?no.such.property=1", url);
    assert_null(eddy_transport_open(bad, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "no.such.property"));
    eddy_transport_options o = {.connect_timeout_ms = 1000};
    assert_null(eddy_transport_open("kafka://127.0.0.1:1", &o, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "127.0.0.1:1"));
    /* Properties pass through to librdkafka. */
    snprintf(bad, sizeof bad, "%s?linger.ms=0&acks=all", url);
    eddy_transport *t = eddy_transport_open(bad, NULL, &err);
    assert_non_null(t);
    assert_string_equal(eddy_transport_engine(t), "kafka");
    eddy_transport_close(t);
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
        cmocka_unit_test(test_urls),
    };
    int failed = cmocka_run_group_tests_name("kafka", tests, NULL, NULL);
    /* The mock accepts a session timeout below the brokers' usual 6 s
     * minimum: 4 s keeps its rebalances (which it times by the session
     * timeout) and the crash test short, and still holds its 3 s initial
     * join delay. */
    char conf_url[600];
    snprintf(conf_url, sizeof conf_url, "%s?session.timeout.ms=4000", url);
    transport_conformance_env env = {
        .name = "kafka-conformance", .url = conf_url,
        .inject_raw = kafka_inject, .ack_wait_ms = 4000, .settle_ms = 0,
    };
    failed += transport_conformance_run(&env);
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_owner);
    return failed ? 1 : 0;
}
