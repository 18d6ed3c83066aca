/*
 * tests/test_transport_secure_nats.c - NATS behind TLS and credentials:
 * nats-server with TLS (a CA made for the run by openssl) and users, with
 * mutual TLS, and with a token, started by scripts/test-servers.sh on
 * loopback. Each way in (user and password in the URL, in a file, in the
 * environment, in a configuration file; NKey; token; client certificate)
 * passes the conformance suite's round trip; a wrong password, an unknown
 * user, a wrong token, an untrusted certificate, a missing client
 * certificate, TLS not asked for, each fails open at once (timed, printed,
 * and bound well under the connect timeout) with a message naming what was
 * refused; and no password, token or seed appears in any message or log
 * line. No nats-server or openssl: the test FAILS.
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

/* Refusals must come this fast; the connect timeout is 5 s (measured:
 * 13-520 ms under ASan on a loaded 2-core machine). */
#define FAST_MS 2000
#define CONNECT_TIMEOUT_MS 5000

static char tls_dir[] = "/tmp/eddy-nats-tls-XXXXXX";
static char mtls_dir[] = "/tmp/eddy-nats-mtls-XXXXXX";
static char token_dir[] = "/tmp/eddy-nats-token-XXXXXX";
static int tls_port, mtls_port, token_port;
static char *user, *password, *nkey_pub, *nkey_seed, *token, *mtls_password;
static const char *secrets[6];
static const eddy_transport_options fast_opts = {
    .connect_timeout_ms = CONNECT_TIMEOUT_MS};

static void url_of(char *buf, size_t size, int port, const char *userinfo,
                   const char *dir, const char *query)
{
    snprintf(buf, size, "nats://%s%s127.0.0.1:%d?tls_ca=%s/tls/ca.pem%s%s",
             userinfo ? userinfo : "", userinfo ? "@" : "", port, dir,
             query ? "&" : "", query ? query : "");
}

static void expect_refused(const char *what, const char *url,
                           const char *needle1, const char *needle2)
{
    eddy_error err;
    int64_t ms = secure_open_refused(url, &fast_opts, &err);
    print_message("nats %-28s refused in %4lld ms: %s\n", what, (long long)ms,
                  err.message);
    assert_int_equal(err.code, EDDY_ECONNECT);
    if (!strstr(err.message, needle1) ||
        (needle2 && !strstr(err.message, needle2)))
        fail_msg("%s: message lacks \"%s\"%s%s: %s", what, needle1,
                 needle2 ? " / " : "", needle2 ? needle2 : "", err.message);
    assert_true(ms < FAST_MS);
}

/* ---- the right credentials: the round trip -------------------------------- */

static int roundtrip(const char *name, const char *url, const char *config)
{
    transport_conformance_env env = {.name = name, .url = url,
                                     .config_file = config};
    return transport_conformance_run_roundtrip(&env);
}

static int run_roundtrips(void)
{
    char url[1024], q[512], userinfo[256];
    int failed = 0;
    /* user:password@ over TLS */
    snprintf(userinfo, sizeof userinfo, "%s:%s", user, password);
    url_of(url, sizeof url, tls_port, userinfo, tls_dir, NULL);
    failed += roundtrip("nats_tls_user_password", url, NULL);
    /* the password from a file, the user from user= */
    char *pwfile = secure_write(tls_dir, "pw.txt", password);
    snprintf(q, sizeof q, "user=%s&password_file=%s", user, pwfile);
    url_of(url, sizeof url, tls_port, NULL, tls_dir, q);
    failed += roundtrip("nats_tls_password_file", url, NULL);
    /* the password from the environment */
    setenv("EDDY_TEST_NATS_PASSWORD", password, 1);
    snprintf(q, sizeof q, "password_env=EDDY_TEST_NATS_PASSWORD");
    snprintf(userinfo, sizeof userinfo, "%s", user);
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?user=%s&tls_ca=%s/tls/ca.pem&%s",
             tls_port, user, tls_dir, q);
    failed += roundtrip("nats_tls_password_env", url, NULL);
    /* everything in a configuration file: the URL has the host only */
    char conf[1024];
    snprintf(conf, sizeof conf, "# eddy transport configuration\n"
             "user=%s\npassword=%s\n\ntls_ca = %s/tls/ca.pem\n", user, password,
             tls_dir);
    char *conffile = secure_write(tls_dir, "transport.conf", conf);
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", tls_port);
    failed += roundtrip("nats_tls_config_file", url, conffile);
    /* an NKey user */
    snprintf(q, sizeof q, "nkey=%s&nkey_seed=%s/nkey.seed", nkey_pub, tls_dir);
    url_of(url, sizeof url, tls_port, NULL, tls_dir, q);
    failed += roundtrip("nats_tls_nkey", url, NULL);
    /* mutual TLS: a client certificate */
    snprintf(userinfo, sizeof userinfo, "%s:%s", user, mtls_password);
    snprintf(q, sizeof q, "tls_cert=%s/tls/client.pem&tls_key=%s/tls/client.key",
             mtls_dir, mtls_dir);
    url_of(url, sizeof url, mtls_port, userinfo, mtls_dir, q);
    failed += roundtrip("nats_mtls_client_cert", url, NULL);
    /* a token, as TOKEN@ and as token_file= */
    snprintf(url, sizeof url, "nats://%s@127.0.0.1:%d", token, token_port);
    failed += roundtrip("nats_token", url, NULL);
    char *tokfile = secure_write(token_dir, "token.txt", token);
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?token_file=%s", token_port,
             tokfile);
    failed += roundtrip("nats_token_file", url, NULL);
    unsetenv("EDDY_TEST_NATS_PASSWORD");
    free(pwfile);
    free(conffile);
    free(tokfile);
    return failed;
}

/* ---- refusals ---------------------------------------------------------------- */

static void test_wrong_password(void **state)
{
    char url[1024], userinfo[256];
    snprintf(userinfo, sizeof userinfo, "%s:not-%s", user, password);
    url_of(url, sizeof url, tls_port, userinfo, tls_dir, NULL);
    expect_refused("wrong password", url, "authentication failed for user eddy",
                   "127.0.0.1");
}

static void test_unknown_user(void **state)
{
    char url[1024], userinfo[256];
    snprintf(userinfo, sizeof userinfo, "mallory:%s", password);
    url_of(url, sizeof url, tls_port, userinfo, tls_dir, NULL);
    expect_refused("unknown user", url, "authentication failed for user mallory",
                   NULL);
}

static void test_no_credentials(void **state)
{
    char url[1024];
    url_of(url, sizeof url, tls_port, NULL, tls_dir, NULL);
    expect_refused("no credentials", url, "authentication failed",
                   "none were given");
}

static void test_wrong_nkey(void **state)
{
    /* the server knows the public key, the seed is of another key: the
     * signature does not verify */
    char url[1024], q[512];
    snprintf(q, sizeof q, "nkey=%s&nkey_seed=%s/nkey.seed", nkey_pub,
             mtls_dir);
    url_of(url, sizeof url, tls_port, NULL, tls_dir, q);
    expect_refused("nkey with another seed", url, "authentication failed",
                   "nkey U");
}

static void test_untrusted_certificate(void **state)
{
    char url[1024], userinfo[256];
    snprintf(userinfo, sizeof userinfo, "%s:%s", user, password);
    snprintf(url, sizeof url, "nats://%s@127.0.0.1:%d?tls_ca=%s/tls/rogue-ca.pem",
             userinfo, tls_port, tls_dir);
    expect_refused("untrusted certificate", url, "certificate not trusted",
                   "rogue-ca.pem");
}

static void test_tls_not_asked(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "nats://%s:%s@127.0.0.1:%d", user, password,
             tls_port);
    /* libnats upgrades to TLS when the server requires it, and then
     * checks the certificate against the system's CAs */
    expect_refused("TLS not asked for", url, "certificate not trusted",
                   "tls_ca=FILE");
}

static void test_no_client_certificate(void **state)
{
    char url[1024], userinfo[256];
    snprintf(userinfo, sizeof userinfo, "%s:%s", user, mtls_password);
    url_of(url, sizeof url, mtls_port, userinfo, mtls_dir, NULL);
    expect_refused("no client certificate", url, "client certificate",
                   "tls_cert=FILE");
}

/* A server restart under an open transport: the reconnection is logged
 * (with the server's address), and the log has no secret. */
static void test_reconnect_logged(void **state)
{
    char url[1024], userinfo[256];
    snprintf(userinfo, sizeof userinfo, "%s:%s", user, password);
    url_of(url, sizeof url, tls_port, userinfo, tls_dir, NULL);
    eddy_transport_options o = {.reconnect_initial_ms = 50};
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &o, &err);
    assert_non_null(t);
    assert_int_equal(secure_servers("stop", "nats-tls", tls_dir, 0), 0);
    assert_int_equal(secure_servers("start", "nats-tls", tls_dir, tls_port),
                     tls_port);
    eddy_event *ev = eddy_event_newf("secure.reconnect", "t", "k", &err, NULL);
    int rc = EDDY_ECONNECT;
    for (int i = 0; i < 200 && rc != EDDY_OK; i++)
        if ((rc = eddy_transport_publish(t, ev, &err)) != EDDY_OK) {
            secure_record(err.message);
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    assert_int_equal(rc, EDDY_OK);
    eddy_event_unref(ev);
    eddy_transport_close(t);
}

static void test_wrong_token(void **state)
{
    char url[1024];
    snprintf(url, sizeof url, "nats://not-%s@127.0.0.1:%d", token, token_port);
    expect_refused("wrong token", url, "authentication failed for the token",
                   NULL);
}

static void test_bad_paths(void **state)
{
    /* A missing file is named, at once, before any connection. */
    char url[1024];
    eddy_error err;
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?tls_ca=/nonexistent/ca.pem",
             tls_port);
    secure_open_refused(url, &fast_opts, &err);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "tls_ca=/nonexistent/ca.pem"));
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?creds=/nonexistent/u.creds",
             tls_port);
    secure_open_refused(url, &fast_opts, &err);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "creds=/nonexistent/u.creds"));
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?user=%s&password_file=/no/pw",
             tls_port, user);
    secure_open_refused(url, &fast_opts, &err);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "/no/pw"));
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?user=%s&password_env=EDDY_NO_SUCH_VARIABLE",
             tls_port, user);
    secure_open_refused(url, &fast_opts, &err);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "EDDY_NO_SUCH_VARIABLE is not set"));
    /* Two passwords: refused, neither shown. */
    snprintf(url, sizeof url, "nats://%s:%s@127.0.0.1:%d?password=%s", user,
             password, tls_port, password);
    secure_open_refused(url, &fast_opts, &err);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "given 2 times"));
    snprintf(url, sizeof url, "nats://127.0.0.1:%d?nkey=%s", tls_port, nkey_pub);
    secure_open_refused(url, &fast_opts, &err);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "nkey and nkey_seed"));
}

static void test_redacted_url(void **state)
{
    char url[1024], userinfo[256];
    snprintf(userinfo, sizeof userinfo, "%s:%s", user, password);
    url_of(url, sizeof url, tls_port, userinfo, tls_dir, NULL);
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &fast_opts, &err);
    assert_non_null(t);
    const char *shown = eddy_transport_url(t);
    secure_record(shown);
    assert_non_null(strstr(shown, "nats://eddy:***@127.0.0.1:"));
    eddy_transport_info *info = NULL;
    assert_int_equal(eddy_transport_info_get(t, NULL, 0, &info, &err), EDDY_OK);
    secure_record(info->url);
    eddy_transport_info_free(info);
    eddy_transport_close(t);
}

int main(void)
{
    if (!mkdtemp(tls_dir) || !mkdtemp(mtls_dir) || !mkdtemp(token_dir)) {
        perror("mkdtemp");
        return 1;
    }
    tls_port = secure_servers("start", "nats-tls", tls_dir, 0);
    mtls_port = secure_servers("start", "nats-mtls", mtls_dir, 0);
    token_port = secure_servers("start", "nats-token", token_dir, 0);
    if (tls_port <= 0 || mtls_port <= 0 || token_port <= 0) {
        fprintf(stderr, "test_transport_secure_nats: FAILED: could not start "
                        "nats-server with TLS (see above); it is required\n");
        return 1;
    }
    user = secure_read(tls_dir, "user");
    password = secure_read(tls_dir, "password");
    nkey_pub = secure_read(tls_dir, "nkey.pub");
    nkey_seed = secure_read(tls_dir, "nkey.seed");
    token = secure_read(token_dir, "token");
    mtls_password = secure_read(mtls_dir, "password");
    if (!user || !password || !nkey_pub || !nkey_seed || !token ||
        !mtls_password)
        return 1;
    secrets[0] = password;
    secrets[1] = nkey_seed;
    secrets[2] = token;
    secrets[3] = mtls_password;
    secrets[4] = NULL;

    secure_log_start();
    int failed = run_roundtrips();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_unknown_user),
        cmocka_unit_test(test_no_credentials),
        cmocka_unit_test(test_wrong_nkey),
        cmocka_unit_test(test_untrusted_certificate),
        cmocka_unit_test(test_tls_not_asked),
        cmocka_unit_test(test_no_client_certificate),
        cmocka_unit_test(test_wrong_token),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_redacted_url),
        cmocka_unit_test(test_reconnect_logged),
    };
    failed += cmocka_run_group_tests_name("transport_secure_nats", tests, NULL,
                                          NULL);
    char *logged = secure_log_stop();
    /* Every message and log line of the run, without a secret. */
    int leaks = 0;
    for (size_t i = 0; secrets[i]; i++) {
        if (strstr(logged, secrets[i]) || strstr(secure_recorded(), secrets[i])) {
            fprintf(stderr, "test_transport_secure_nats: FAILED: secret %zu "
                            "found in the %s\n", i,
                    strstr(logged, secrets[i]) ? "log" : "messages");
            leaks++;
        }
    }
    printf("secrets: %zu bytes of log lines and %zu bytes of messages "
           "searched, %d secrets found\n", strlen(logged),
           strlen(secure_recorded()), leaks);
    if (strlen(logged) == 0 || strlen(secure_recorded()) == 0) {
        fprintf(stderr, "test_transport_secure_nats: FAILED: nothing was "
                        "logged or recorded, the search proves nothing\n");
        leaks++;
    }
    failed += leaks;
    free(logged);
    secure_record_free();
    secure_servers("stop", "nats-tls", tls_dir, 0);
    secure_servers("stop", "nats-mtls", mtls_dir, 0);
    secure_servers("stop", "nats-token", token_dir, 0);
    eddyt_rmtree(tls_dir);
    eddyt_rmtree(mtls_dir);
    eddyt_rmtree(token_dir);
    free(user);
    free(password);
    free(nkey_pub);
    free(nkey_seed);
    free(token);
    free(mtls_password);
    return failed ? 1 : 0;
}
