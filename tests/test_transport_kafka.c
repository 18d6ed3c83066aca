/*
 * tests/test_transport_kafka.c - the transport conformance suite on Kafka,
 * against librdkafka's built-in mock cluster (3 brokers, in this process,
 * on real loopback listeners), and the Kafka URL forms. Failure injection
 * and the wire format are in test_transport_kafka_faults.
 *
 * Security: librdkafka 2.0.2's mock cluster speaks neither SASL nor TLS
 * (measured: a SASL client gets "SASL Handshake not supported by
 * broker"), so a login cannot be tried for real. Instead: the SASL and TLS
 * properties from the URL, user:password@, password_file=, password_env=
 * and a configuration file are shown to reach librdkafka's configuration
 * (rd_kafka_conf_get); a SASL client against the mock fails open at once,
 * named as an authentication failure; an untrusted certificate is tried
 * against a real TLS listener (openssl s_server with a certificate made for
 * the run, started by scripts/test-servers.sh: librdkafka's TLS handshake
 * fails before any Kafka is spoken) and fails open at once as "certificate not trusted";
 * and librdkafka's own debug log of the configuration, like every message,
 * holds no password.
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
#include "test_util.h"
#include "transport/transport_impl.h"
#include "transport_conformance.h"
#include "transport_secure.h"

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

/* ---- security --------------------------------------------------------------- */

#define FAST_MS 2000
static const char *const kafka_secrets[] = {"pw-from-url-5ec4e7", "pw-from-file-9b2",
                                            "pw-from-env-71aa", "pw-conf-file-3c0d",
                                            NULL};
static char tls_dir[] = "/tmp/eddy-kafka-tls-XXXXXX";

static void expect_conf(const char *u, const eddy_transport_options *o,
                        const char *key, const char *want)
{
    char got[512] = "";
    eddy_error err = {0};
    int rc = eddyi_transport_kafka_conf_get(u, o, key, got, sizeof got, &err);
    if (rc != EDDY_OK)
        fail_msg("%s: %s", key, err.message);
    if (strcmp(got, want) != 0)
        fail_msg("%s is \"%s\", expected \"%s\"", key,
                 eddyi_url_key_secret(key) ? "(secret)" : got,
                 eddyi_url_key_secret(key) ? "(secret)" : want);
}

static void test_sasl_properties_reach_librdkafka(void **state)
{
    /* user:password@: SASL PLAIN over TLS unless said otherwise */
    const char *u = "kafka://alice:pw-from-url-5ec4e7@broker.example:9093";
    expect_conf(u, NULL, "sasl.username", "alice");
    expect_conf(u, NULL, "sasl.password", "pw-from-url-5ec4e7");
    expect_conf(u, NULL, "sasl.mechanisms", "PLAIN");
    expect_conf(u, NULL, "security.protocol", "sasl_ssl");
    expect_conf(u, NULL, "bootstrap.servers", "broker.example:9093");
    /* the query's properties win and pass through untouched */
    u = "kafka://alice:pw-from-url-5ec4e7@b:9093?sasl.mechanism=SCRAM-SHA-512"
        "&security.protocol=sasl_plaintext&ssl.ca.location=/etc/ca.pem";
    expect_conf(u, NULL, "sasl.mechanisms", "SCRAM-SHA-512");
    expect_conf(u, NULL, "security.protocol", "sasl_plaintext");
    /* the password from a file and from the environment */
    char path[256];
    snprintf(path, sizeof path, "%s/pw", tls_dir);
    free(secure_write(tls_dir, "pw", "pw-from-file-9b2\n"));
    char pwurl[512];
    snprintf(pwurl, sizeof pwurl, "kafka://b:9093?user=bob&password_file=%s&"
             "sasl.mechanism=SCRAM-SHA-256", path);
    expect_conf(pwurl, NULL, "sasl.username", "bob");
    expect_conf(pwurl, NULL, "sasl.password", "pw-from-file-9b2");
    expect_conf(pwurl, NULL, "sasl.mechanisms", "SCRAM-SHA-256");
    setenv("EDDY_TEST_KAFKA_PW", "pw-from-env-71aa", 1);
    expect_conf("kafka://carol@b:9093?password_env=EDDY_TEST_KAFKA_PW", NULL,
                "sasl.password", "pw-from-env-71aa");
    unsetenv("EDDY_TEST_KAFKA_PW");
    /* a librdkafka properties file (kcat -F), the URL winning over it */
    char *conf = secure_write(tls_dir, "kafka.properties",
                              "# managed cluster\n"
                              "security.protocol=SASL_SSL\n"
                              "sasl.mechanisms=SCRAM-SHA-256\n"
                              "sasl.username = dave\n"
                              "sasl.password=pw-conf-file-3c0d\n"
                              "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt\n"
                              "linger.ms=5\n");
    eddy_transport_options o = {.config_file = conf};
    expect_conf("kafka://b:9093?linger.ms=7", &o, "sasl.username", "dave");
    expect_conf("kafka://b:9093?linger.ms=7", &o, "sasl.password",
                "pw-conf-file-3c0d");
    expect_conf("kafka://b:9093?linger.ms=7", &o, "ssl.ca.location",
                "/etc/ssl/certs/ca-certificates.crt");
    expect_conf("kafka://b:9093?linger.ms=7", &o, "linger.ms", "7");
    expect_conf("kafka://b:9093?linger.ms=7", &o, "security.protocol",
                "sasl_ssl");
    /* a property librdkafka refuses: named, its secret value not shown */
    eddy_error err = {0};
    char got[64];
    assert_int_equal(eddyi_transport_kafka_conf_get(
                         "kafka://b:9093?sasl.passwd=pw-from-url-5ec4e7",
                         NULL, "x", got, sizeof got, &err),
                     EDDY_EINVAL);
    secure_record(err.message);
    assert_non_null(strstr(err.message, "sasl.passwd=***"));
    /* a bad configuration file line: its number, not its text */
    char *bad = secure_write(tls_dir, "bad.properties",
                             "linger.ms=1\npw-conf-file-3c0d\n");
    o.config_file = bad;
    assert_int_equal(eddyi_transport_kafka_conf_get("kafka://b:9093", &o, "x",
                                                    got, sizeof got, &err),
                     EDDY_EINVAL);
    secure_record(err.message);
    assert_non_null(strstr(err.message, "line 2: expected key=value"));
    free(bad);
    free(conf);
}

static void test_sasl_refused_fast(void **state)
{
    /* The mock cluster has no SASL: librdkafka reports the login failed
     * at once, and open says so instead of waiting connect_timeout_ms. */
    char u[600];
    snprintf(u, sizeof u, "kafka://alice:pw-from-url-5ec4e7@%s?"
             "security.protocol=sasl_plaintext&debug=conf,security",
             rd_kafka_mock_cluster_bootstraps(mock));
    eddy_transport_options o = {.connect_timeout_ms = 5000};
    eddy_error err;
    int64_t ms = secure_open_refused(u, &o, &err);
    print_message("kafka SASL login refused in %lld ms: %s\n", (long long)ms,
                  err.message);
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "authentication failed for user alice "
                                        "(SASL PLAIN)"));
    assert_true(ms < FAST_MS);
}

static void test_untrusted_certificate(void **state)
{
    int port = secure_servers("start", "tls", tls_dir, 0);
    assert_true(port > 0);
    char u[600];
    eddy_transport_options o = {.connect_timeout_ms = 5000};
    eddy_error err;
    snprintf(u, sizeof u, "kafka://127.0.0.1:%d?security.protocol=ssl&"
             "ssl.ca.location=%s/tls/rogue-ca.pem", port, tls_dir);
    int64_t ms = secure_open_refused(u, &o, &err);
    print_message("kafka untrusted certificate refused in %lld ms: %s\n",
                  (long long)ms, err.message);
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "certificate not trusted"));
    assert_true(ms < FAST_MS);
    /* with SASL over it too: still the certificate that is named */
    snprintf(u, sizeof u, "kafka://alice:pw-from-url-5ec4e7@127.0.0.1:%d?"
             "ssl.ca.location=%s/tls/rogue-ca.pem", port, tls_dir);
    ms = secure_open_refused(u, &o, &err);
    print_message("kafka untrusted certificate (SASL_SSL) refused in %lld ms: "
                  "%s\n", (long long)ms, err.message);
    assert_non_null(strstr(err.message, "certificate not trusted"));
    assert_true(ms < FAST_MS);
    secure_servers("stop", "tls", tls_dir, 0);
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
    if (!mkdtemp(tls_dir)) {
        perror("mkdtemp");
        return 1;
    }
    secure_log_start();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_sasl_properties_reach_librdkafka),
        cmocka_unit_test(test_sasl_refused_fast),
        cmocka_unit_test(test_untrusted_certificate),
    };
    int failed = cmocka_run_group_tests_name("kafka", tests, NULL, NULL);
    char *logged = secure_log_stop();
    for (size_t i = 0; kafka_secrets[i]; i++)
        if (strstr(logged, kafka_secrets[i]) ||
            strstr(secure_recorded(), kafka_secrets[i])) {
            fprintf(stderr, "test_transport_kafka: FAILED: secret %zu found "
                            "in the %s\n", i,
                    strstr(logged, kafka_secrets[i]) ? "log" : "messages");
            failed++;
        }
    printf("secrets: %zu bytes of log lines (librdkafka's debug=conf,security "
           "among them) and %zu bytes of messages searched\n", strlen(logged),
           strlen(secure_recorded()));
    if (!strstr(logged, "sasl.password")) {
        fprintf(stderr, "test_transport_kafka: FAILED: librdkafka's debug log "
                        "of the configuration was not captured\n");
        failed++;
    }
    free(logged);
    secure_record_free();
    eddyt_rmtree(tls_dir);
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
