/*
 * tests/test_transport_url.c - the transport URL (src/transport/url.c):
 * eddy_url_redact on every form of secret, user information parsing and
 * percent-decoding, the configuration file (merge order, comments, errors
 * that name the line but not its text), and the secret sources (password=,
 * password_file=, password_env=: one at a time, clear errors). No server.
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

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "test_util.h"
#include "transport/transport_impl.h"

static char dir[] = "/tmp/eddy-url-test-XXXXXX";

static void redacts(const char *url, const char *want)
{
    char buf[512];
    const char *got = eddy_url_redact(url, buf, sizeof buf);
    if (strcmp(got, want) != 0)
        fail_msg("eddy_url_redact(\"%s\")\n  got  \"%s\"\n  want \"%s\"", url,
                 got, want);
}

static void test_redact(void **state)
{
    redacts("redis://alice:s3cret@h:6379/0", "redis://alice:***@h:6379/0");
    redacts("redis://:s3cret@h:6379", "redis://:***@h:6379");
    redacts("redis://h:6379?mode=pubsub", "redis://h:6379?mode=pubsub");
    redacts("nats://t0ken@h:4222,h2:4222", "nats://***@h:4222,h2:4222");
    /* an unescaped '@' in the password: the last '@' ends it */
    redacts("redis://u:p@ss@h:1", "redis://u:***@h:1");
    redacts("kafka://h:9092?sasl.password=x&linger.ms=5&ssl.key.password=y",
            "kafka://h:9092?sasl.password=***&linger.ms=5&ssl.key.password=***");
    redacts("kafka://h?sasl.oauthbearer.client.secret=z&ssl.key.pem=PEM",
            "kafka://h?sasl.oauthbearer.client.secret=***&ssl.key.pem=***");
    redacts("nats://h?token=abc&nkey=UABC&nkey_seed=/s&tls_ca=/ca.pem",
            "nats://h?token=***&nkey=UABC&nkey_seed=/s&tls_ca=/ca.pem");
    /* where a secret is, is not a secret */
    redacts("x://h?password_file=/run/pw&password_env=PW&ssl.key.location=/k",
            "x://h?password_file=/run/pw&password_env=PW&ssl.key.location=/k");
    redacts("postgres://u:p%40ss@h/db?sslmode=verify-full&password=zz",
            "postgres://u:***@h/db?sslmode=verify-full&password=***");
    /* not URLs at all, or half ones */
    redacts("sqlite:orders.db", "sqlite:orders.db");
    redacts("mem:", "mem:");
    redacts("", "");
    redacts("no scheme?password=pw", "no scheme?password=***");
    redacts("a://u:pw@", "a://u:***@");
    char small[12];
    assert_string_equal(eddy_url_redact("redis://alice:s3cret@h", small,
                                        sizeof small), "redis://ali");
    assert_string_equal(eddy_url_redact("redis://u:s3cret@h", small, 1), "");
    assert_string_equal(eddy_url_redact("x", NULL, 0), "");
    assert_string_equal(eddy_url_redact(NULL, small, sizeof small), "(null)");
    assert_true(eddyi_url_key_secret("sasl.password"));
    assert_true(eddyi_url_key_secret("TOKEN"));
    assert_false(eddyi_url_key_secret("password_file"));
    assert_false(eddyi_url_key_secret("linger.ms"));
}

static void test_userinfo(void **state)
{
    eddyi_url u;
    eddy_error err = {0};
    assert_int_equal(eddyi_url_parse("redis://al%40ce:p%3As%2Fs@h:1/2?mode=x",
                                     &u, &err), EDDY_OK);
    assert_string_equal(u.user, "al@ce");
    assert_string_equal(u.password, "p:s/s");
    assert_string_equal(u.authority, "h:1");
    assert_string_equal(u.path, "/2");
    eddyi_url_free(&u);
    assert_int_equal(eddyi_url_parse("nats://tok@h", &u, &err), EDDY_OK);
    assert_string_equal(u.user, "tok");
    assert_null(u.password);
    eddyi_url_free(&u);
    /* a bad escape in the password: said, the URL shown redacted */
    assert_int_equal(eddyi_url_parse("redis://u:pw%zzsecret@h", &u, &err),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "bad percent-escape in the password"));
    assert_null(strstr(err.message, "secret"));
    /* a lone value in the query is not echoed if its key names a secret */
    assert_int_equal(eddyi_url_parse("redis://h?password", &u, &err),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "is not key=value"));
}

/* Opens a mem transport with `url` and `conf` (file text, or NULL) and
 * returns it, or NULL with err. */
static eddy_transport *open_with(const char *url, const char *conf,
                                 eddy_error *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    eddy_transport_options o = {0};
    if (conf) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(conf, f);
        fclose(f);
        o.config_file = path;
    }
    return eddy_transport_open(url, &o, err);
}

static void test_config_file(void **state)
{
    eddy_error err = {0};
    eddy_transport *t = open_with("mem:cf?b=url&c=url",
                                  "# comment\n\n  a = file \nb=file\r\n"
                                  "a=file-again\nd==x=y\n", &err);
    assert_non_null(t);
    assert_string_equal(eddyi_url_param(t, "a"), "file-again");
    assert_string_equal(eddyi_url_param(t, "b"), "url");
    assert_string_equal(eddyi_url_param(t, "c"), "url");
    assert_string_equal(eddyi_url_param(t, "d"), "=x=y");
    size_t n = 0;
    for (size_t i = 0; i < t->url.nparams; i++)
        n += strcmp(t->url.keys[i], "a") == 0;
    assert_int_equal(n, 1);
    eddy_transport_close(t);
    /* user and password from the file become the credentials */
    t = open_with("mem:cf", "user=bob\npassword=pw-in-file\n", &err);
    assert_non_null(t);
    assert_string_equal(t->url.user, "bob");
    assert_string_equal(t->url.password, "pw-in-file");
    assert_null(eddyi_url_param(t, "password"));
    eddy_transport_close(t);
    /* errors name the file and line, not the line */
    assert_null(open_with("mem:cf", "a=1\nhunter2\n", &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "t.conf, line 2: expected key=value"));
    assert_null(strstr(err.message, "hunter2"));
    eddy_transport_options o = {.config_file = "/nonexistent/eddy.conf"};
    assert_null(eddy_transport_open("mem:cf", &o, &err));
    assert_non_null(strstr(err.message, "/nonexistent/eddy.conf: cannot open"));
}

static void test_secret_sources(void **state)
{
    eddy_error err = {0};
    char path[256], url[512];
    snprintf(path, sizeof path, "%s/pw", dir);
    FILE *f = fopen(path, "w");
    fputs("from-file\n", f);
    fclose(f);
    snprintf(url, sizeof url, "mem:s?user=u&password_file=%s", path);
    eddy_transport *t = eddy_transport_open(url, NULL, &err);
    assert_non_null(t);
    assert_string_equal(t->url.password, "from-file");
    assert_null(eddyi_url_param(t, "password_file"));
    eddy_transport_close(t);
    setenv("EDDY_TEST_URL_PW", "from-env", 1);
    t = eddy_transport_open("mem:s?password_env=EDDY_TEST_URL_PW", NULL, &err);
    assert_non_null(t);
    assert_string_equal(t->url.password, "from-env");
    eddy_transport_close(t);
    /* two sources: refused, neither value shown */
    assert_null(eddy_transport_open("mem://u:from-url@?password_env="
                                    "EDDY_TEST_URL_PW", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "password is given 2 times"));
    assert_null(strstr(err.message, "from-url"));
    assert_null(strstr(err.message, "from-env"));
    unsetenv("EDDY_TEST_URL_PW");
    assert_null(eddy_transport_open("mem:s?password_env=EDDY_TEST_URL_PW",
                                    NULL, &err));
    assert_non_null(strstr(err.message, "EDDY_TEST_URL_PW is not set"));
    f = fopen(path, "w");
    fputs("line one\nline two\n", f);
    fclose(f);
    snprintf(url, sizeof url, "mem:s?password_file=%s", path);
    assert_null(eddy_transport_open(url, NULL, &err));
    assert_non_null(strstr(err.message, "several lines"));
    assert_null(strstr(err.message, "line one"));
    f = fopen(path, "w");
    fclose(f);
    assert_null(eddy_transport_open(url, NULL, &err));
    assert_non_null(strstr(err.message, "an empty file"));
    /* user twice */
    assert_null(eddy_transport_open("mem://a@?user=b", NULL, &err));
    assert_non_null(strstr(err.message, "user is given twice"));
}

static void test_engines(void **state)
{
    size_t n = 0;
    const eddy_transport_engine_info *e = eddy_transport_engines(&n);
    assert_int_equal(n, 4);
    assert_string_equal(e[0].name, "mem");
    assert_true(e[0].built_in);
    eddy_error err = {0};
    assert_null(eddy_transport_open("amqp://u:pw-x@h", NULL, &err));
    assert_non_null(strstr(err.message, "unknown scheme \"amqp\""));
    assert_non_null(strstr(err.message, "amqp://u:***@h"));
    assert_null(strstr(err.message, "pw-x"));
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_userinfo),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_secret_sources),
        cmocka_unit_test(test_engines),
    };
    int failed = cmocka_run_group_tests_name("transport_url", tests, NULL, NULL);
    eddyt_rmtree(dir);
    return failed ? 1 : 0;
}
