/*
 * tests/test_transport_secure_redis.c - Redis with an ACL user and
 * requirepass (redis-server started by scripts/test-servers.sh on loopback,
 * secrets made for the run). The ACL user (user:password@, password_file=,
 * password_env=, a configuration file) and the default user's requirepass
 * (:password@) pass the conformance suite's round trip; a wrong password,
 * an unknown user and no password each fail open at once (timed, printed,
 * bound well under the connect timeout) with a message naming the user and
 * the server; rediss:// is refused with the reason (hiredis 0.14 has no
 * TLS); and no password appears in any message or log line, including the
 * reconnection after a server restart. No redis-server: the test FAILS.
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

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "test_util.h"
#include "transport_conformance.h"
#include "transport_secure.h"

#define FAST_MS 2000
#define CONNECT_TIMEOUT_MS 5000

static char dir[] = "/tmp/eddy-redis-auth-XXXXXX";
static int port;
static char *user, *password, *default_password;
static const char *secrets[3];
static const eddy_transport_options fast_opts = {
    .connect_timeout_ms = CONNECT_TIMEOUT_MS};

static void expect_refused(const char *what, const char *url, int code,
                           const char *needle1, const char *needle2)
{
    eddy_error err;
    int64_t ms = secure_open_refused(url, &fast_opts, &err);
    print_message("redis %-22s refused in %4lld ms: %s\n", what, (long long)ms,
                  err.message);
    assert_int_equal(err.code, code);
    if (!strstr(err.message, needle1) ||
        (needle2 && !strstr(err.message, needle2)))
        fail_msg("%s: message lacks \"%s\"%s%s: %s", what, needle1,
                 needle2 ? " / " : "", needle2 ? needle2 : "", err.message);
    assert_true(ms < FAST_MS);
}

static int roundtrip(const char *name, const char *url, const char *config)
{
    transport_conformance_env env = {.name = name, .url = url,
                                     .config_file = config};
    return transport_conformance_run_roundtrip(&env);
}

static int run_roundtrips(void)
{
    char url[1024];
    int failed = 0;
    snprintf(url, sizeof url, "redis://%s:%s@127.0.0.1:%d", user, password,
             port);
    failed += roundtrip("redis_acl_user", url, NULL);
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", default_password,
             port);
    failed += roundtrip("redis_requirepass", url, NULL);
    char *pwfile = secure_write(dir, "pw.txt", password);
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d?password_file=%s", user,
             port, pwfile);
    failed += roundtrip("redis_password_file", url, NULL);
    setenv("EDDY_TEST_REDIS_PASSWORD", password, 1);
    snprintf(url, sizeof url,
             "redis://127.0.0.1:%d?user=%s&password_env=EDDY_TEST_REDIS_PASSWORD",
             port, user);
    failed += roundtrip("redis_password_env", url, NULL);
    unsetenv("EDDY_TEST_REDIS_PASSWORD");
    char conf[512];
    snprintf(conf, sizeof conf, "user=%s\npassword=%s\n", user, password);
    char *conffile = secure_write(dir, "transport.conf", conf);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    failed += roundtrip("redis_config_file", url, conffile);
    free(pwfile);
    free(conffile);
    return failed;
}

static void test_wrong_password(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "redis://%s:not-%s@127.0.0.1:%d", user, password,
             port);
    expect_refused("wrong password", url, EDDY_ECONNECT,
                   "authentication failed for user eddy", "127.0.0.1");
}

static void test_unknown_user(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "redis://mallory:%s@127.0.0.1:%d", password, port);
    expect_refused("unknown user", url, EDDY_ECONNECT,
                   "authentication failed for user mallory", "WRONGPASS");
}

static void test_wrong_default_password(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "redis://:not-%s@127.0.0.1:%d", default_password,
             port);
    expect_refused("wrong requirepass", url, EDDY_ECONNECT,
                   "authentication failed for user default", NULL);
}

static void test_no_password(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    expect_refused("no password", url, EDDY_ECONNECT,
                   "requires authentication", "NOAUTH");
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d", user, port);
    expect_refused("user without password", url, EDDY_EINVAL,
                   "without a password", NULL);
}

static void test_rediss_refused(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "rediss://%s:%s@127.0.0.1:%d", user, password,
             port);
    expect_refused("rediss://", url, EDDY_EINVAL, "TLS", "hiredis 0.14");
}

/* The subscription's connection authenticates too, and after a restart
 * both connections authenticate again; what they log has no secret. */
static void test_restart_reauthenticates(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "redis://%s:%s@127.0.0.1:%d", user, password,
             port);
    eddy_transport_options o = {.reconnect_initial_ms = 20,
                                .reconnect_max_ms = 100};
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &o, &err);
    assert_non_null(t);
    assert_int_equal(secure_servers("stop", "redis-auth", dir, 0), 0);
    eddy_event *ev = eddy_event_newf("secure.restart", "t", "k", &err, NULL);
    assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_ECONNECT);
    secure_record(err.message);
    assert_int_equal(secure_servers("start", "redis-auth", dir, port), port);
    int rc = EDDY_ECONNECT;
    for (int i = 0; i < 200 && rc != EDDY_OK; i++)
        if ((rc = eddy_transport_publish(t, ev, &err)) != EDDY_OK) {
            secure_record(err.message);
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    assert_int_equal(rc, EDDY_OK);
    eddy_event_unref(ev);
    secure_record(eddy_transport_url(t));
    assert_non_null(strstr(eddy_transport_url(t), "redis://eddy:***@"));
    eddy_transport_close(t);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    port = secure_servers("start", "redis-auth", dir, 0);
    if (port <= 0) {
        fprintf(stderr, "test_transport_secure_redis: FAILED: could not start "
                        "redis-server with ACL users (see above); it is "
                        "required\n");
        return 1;
    }
    user = secure_read(dir, "user");
    password = secure_read(dir, "password");
    default_password = secure_read(dir, "default-password");
    if (!user || !password || !default_password)
        return 1;
    secrets[0] = password;
    secrets[1] = default_password;
    secrets[2] = NULL;
    secure_log_start();
    int failed = run_roundtrips();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_unknown_user),
        cmocka_unit_test(test_wrong_default_password),
        cmocka_unit_test(test_no_password),
        cmocka_unit_test(test_rediss_refused),
        cmocka_unit_test(test_restart_reauthenticates),
    };
    failed += cmocka_run_group_tests_name("transport_secure_redis", tests, NULL,
                                          NULL);
    char *logged = secure_log_stop();
    int leaks = 0;
    for (size_t i = 0; secrets[i]; i++)
        if (strstr(logged, secrets[i]) || strstr(secure_recorded(), secrets[i])) {
            fprintf(stderr, "test_transport_secure_redis: FAILED: secret %zu "
                            "found in the %s\n", i,
                    strstr(logged, secrets[i]) ? "log" : "messages");
            leaks++;
        }
    printf("secrets: %zu bytes of log lines and %zu bytes of messages "
           "searched, %d secrets found\n", strlen(logged),
           strlen(secure_recorded()), leaks);
    if (!*logged || !*secure_recorded()) {
        fprintf(stderr, "test_transport_secure_redis: FAILED: nothing was "
                        "logged or recorded, the search proves nothing\n");
        leaks++;
    }
    failed += leaks;
    free(logged);
    secure_record_free();
    secure_servers("stop", "redis-auth", dir, 0);
    eddyt_rmtree(dir);
    free(user);
    free(password);
    free(default_password);
    return failed ? 1 : 0;
}
