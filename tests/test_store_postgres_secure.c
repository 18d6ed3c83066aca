/*
 * tests/test_store_postgres_secure.c - the PostgreSQL store on a secured
 * server: TLS (ssl=on, certificates made for the run by openssl) and a
 * password user (test-servers.sh postgres-tls).
 *
 *   - the store connects with sslmode=verify-full and sslrootcert, and its
 *     password from each route: the URL, password_file=, password_env=,
 *     libpq's passfile= and PGPASSWORD; each one appends, runs a state
 *     operation and reads, over TLS;
 *   - a wrong password, an unknown user and an untrusted certificate each
 *     fail at once (EDDY_ECONNECT) with libpq's reason naming which;
 *   - a password given twice, a missing password file or variable are
 *     refused naming the key, never the value;
 *   - the password never appears in an error message, a log line, or the
 *     output of the eddy command (store info, stats, demo, and a failed
 *     open).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "pg_test_server.h"

static pgt_server server;
static char password[128], user[64], ca[128], rogue[128];

/* Everything eddy said: error messages and log lines, checked for the
 * password at the end. */
static char said[1 << 20];
static size_t said_len;
static pthread_mutex_t said_mu = PTHREAD_MUTEX_INITIALIZER;

static void remember(const char *text)
{
    pthread_mutex_lock(&said_mu);
    size_t n = strlen(text);
    if (said_len + n + 2 < sizeof said) {
        memcpy(said + said_len, text, n);
        said_len += n;
        said[said_len++] = '\n';
        said[said_len] = 0;
    }
    pthread_mutex_unlock(&said_mu);
}

static void on_log(eddy_log_level level, const char *component,
                   const char *message, void *user_)
{
    (void)level;
    (void)component;
    (void)user_;
    remember(message);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void read_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)cap, f));
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

/* postgresql://USER[:PASS]@127.0.0.1:PORT/DB?sslmode=verify-full&
 * sslrootcert=CA&EXTRA */
static void url_for(char *out, size_t cap, const char *u, const char *pass,
                    const char *root, const char *extra)
{
    snprintf(out, cap,
             "postgresql://%s%s%s@127.0.0.1:%d/%s?sslmode=verify-full&"
             "sslrootcert=%s%s",
             u, pass ? ":" : "", pass ? pass : "", server.port, user, root,
             extra ? extra : "");
}

static int first_int(const eddy_row *row, void *u)
{
    *(int64_t *)u = eddy_row_int(row, 0);
    return 0;
}

static int state_op(eddy_txn *txn, void *u, eddy_error *err)
{
    (void)u;
    int rc = eddy_txn_exec(txn, NULL, err,
                           "CREATE TABLE IF NOT EXISTS visits(n BIGINT)", NULL);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err, "INSERT INTO visits VALUES($1)",
                           "I", (int64_t)1);
    return rc;
}

/* Opens `url`, appends, runs a state operation and reads, checking that the
 * connection is TLS. */
static void works(const char *url, const char *route)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s) {
        remember(err.message);
        fail_msg("%s: %s", route, err.message);
    }
    eddy_event *ev = eddy_event_newf("secure.ping", "test", "s", &err, "{s:s}",
                                     "route", route);
    assert_non_null(ev);
    assert_int_equal(eddy_store_append(s, route, EDDY_EXPECT_ANY, &ev, 1, NULL,
                                       &err),
                     EDDY_OK);
    eddy_event_unref(ev);
    assert_int_equal(eddy_store_transact(s, state_op, NULL, &err), EDDY_OK);
    int64_t v = 0;
    assert_int_equal(eddy_store_sql_query(s, first_int, &v, &err,
                                          "SELECT count(*) FROM pg_stat_ssl "
                                          "WHERE pid = pg_backend_pid() AND "
                                          "ssl",
                                          NULL),
                     EDDY_OK);
    assert_int_equal(v, 1);
    assert_int_equal(eddy_store_sql_int(s, &v, &err,
                                        "SELECT count(*) FROM events WHERE "
                                        "stream_id = $1",
                                        "s", route),
                     EDDY_OK);
    assert_true(v >= 1);
    eddy_store_close(s);
}

static void test_password_routes(void **state)
{
    (void)state;
    char url[1024];
    /* in the URL */
    url_for(url, sizeof url, user, password, ca, NULL);
    works(url, "url");
    /* eddy's password_file= and password_env= (as in transport URLs) */
    char file[160];
    snprintf(file, sizeof file, "%s/pw.txt", server.dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", password);
    fclose(f);
    char extra[256];
    snprintf(extra, sizeof extra, "&password_file=%s", file);
    url_for(url, sizeof url, user, NULL, ca, extra);
    works(url, "password_file");
    setenv("EDDY_TEST_PG_PASSWORD", password, 1);
    url_for(url, sizeof url, user, NULL, ca,
            "&password_env=EDDY_TEST_PG_PASSWORD");
    works(url, "password_env");
    unsetenv("EDDY_TEST_PG_PASSWORD");
    /* libpq's passfile= and PGPASSWORD */
    char passfile[160];
    snprintf(passfile, sizeof passfile, "%s/pgpass", server.dir);
    f = fopen(passfile, "w");
    assert_non_null(f);
    fprintf(f, "127.0.0.1:%d:%s:%s:%s\n", server.port, user, user, password);
    fclose(f);
    chmod(passfile, 0600);
    snprintf(extra, sizeof extra, "&passfile=%s", passfile);
    url_for(url, sizeof url, user, NULL, ca, extra);
    works(url, "passfile");
    setenv("PGPASSWORD", password, 1);
    url_for(url, sizeof url, user, NULL, ca, NULL);
    works(url, "PGPASSWORD");
    unsetenv("PGPASSWORD");
}

/* Opening `url` fails at once with EDDY_ECONNECT and a message holding
 * `expect`. */
static void refused(const char *url, const char *expect, const char *what)
{
    eddy_error err = {0};
    int64_t t0 = now_ms();
    eddy_store *s = eddy_store_open(url, NULL, &err);
    int64_t ms = now_ms() - t0;
    remember(err.message);
    if (s)
        fail_msg("%s: opened", what);
    assert_int_equal(err.code, EDDY_ECONNECT);
    if (!strstr(err.message, expect))
        fail_msg("%s: \"%s\" lacks \"%s\"", what, err.message, expect);
    if (ms > 5000)
        fail_msg("%s: failed after %lld ms, not at once", what, (long long)ms);
    print_message("%s (%lld ms): %s\n", what, (long long)ms, err.message);
}

static void test_wrong_credentials(void **state)
{
    (void)state;
    char url[1024], expect[128];
    url_for(url, sizeof url, user, "not-the-password", ca, NULL);
    snprintf(expect, sizeof expect,
             "password authentication failed for user \"%s\"", user);
    refused(url, expect, "wrong password");
    url_for(url, sizeof url, "nobody", password, ca, NULL);
    refused(url, "password authentication failed for user \"nobody\"",
            "unknown user");
    url_for(url, sizeof url, user, password, rogue, NULL);
    refused(url, "certificate verify failed", "untrusted certificate");
    /* verify-full also checks the name: the certificate is for 127.0.0.1
     * and localhost, so another name for the host is refused too. */
    char other[1024];
    snprintf(other, sizeof other,
             "postgresql://%s:%s@127.0.0.1:%d/%s?sslmode=verify-full&"
             "sslrootcert=%s&hostaddr=127.0.0.1&host=eddy.invalid",
             user, password, server.port, user, ca);
    refused(other, "does not match host name", "certificate for another name");
}

static void test_password_keys_refused(void **state)
{
    (void)state;
    eddy_error err = {0};
    char url[1024];
    url_for(url, sizeof url, user, password, ca,
            "&password_env=EDDY_TEST_PG_PASSWORD");
    assert_null(eddy_store_open(url, NULL, &err));
    remember(err.message);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "given more than once"));
    unsetenv("EDDY_TEST_NO_SUCH_VARIABLE");
    url_for(url, sizeof url, user, NULL, ca,
            "&password_env=EDDY_TEST_NO_SUCH_VARIABLE");
    assert_null(eddy_store_open(url, NULL, &err));
    remember(err.message);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "EDDY_TEST_NO_SUCH_VARIABLE is not set"));
    url_for(url, sizeof url, user, NULL, ca,
            "&password_file=/nonexistent/eddy-pw");
    assert_null(eddy_store_open(url, NULL, &err));
    remember(err.message);
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "password_file /nonexistent/eddy-pw: "
                                        "cannot open"));
}

/* Runs the eddy command with `args` (after "eddy"), the URL in EDDY_STORE;
 * remembers its output and returns its exit status. */
static int run_cli(const char *args, const char *url)
{
    char out[160], cmd[1024];
    snprintf(out, sizeof out, "%s/cli.out", server.dir);
    setenv("EDDY_STORE", url, 1);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>&1", EDDY_CLI_PATH, args, out);
    int st = system(cmd);
    unsetenv("EDDY_STORE");
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        remember(line);
    }
    fclose(f);
    return st;
}

static void test_cli_never_shows_the_password(void **state)
{
    (void)state;
    char url[1024], sql[128];
    /* The demo in a database of its own, owned by the password user. */
    snprintf(sql, sizeof sql, "CREATE DATABASE demo OWNER %s", user);
    assert_int_equal(pgt_exec(&server, "postgres", sql), 0);
    snprintf(url, sizeof url,
             "postgresql://%s:%s@127.0.0.1:%d/demo?sslmode=verify-full&"
             "sslrootcert=%s",
             user, password, server.port, ca);
    assert_int_equal(run_cli("demo --orders 40 --users 5", url), 0);
    url_for(url, sizeof url, user, password, ca, NULL);
    assert_int_equal(run_cli("store info", url), 0);
    assert_int_equal(run_cli("stats", url), 0);
    assert_int_equal(run_cli("store info --format json", url), 0);
    assert_non_null(strstr(said, ":***@127.0.0.1")); /* shown, redacted */
    char bad[1024];
    url_for(bad, sizeof bad, user, "wrong-password-shown-nowhere", ca, NULL);
    assert_true(run_cli("store info", bad) != 0);
    assert_null(strstr(said, "wrong-password-shown-nowhere"));
    assert_non_null(strstr(said, "password authentication failed"));
}

/* Last: nothing eddy said holds the password. */
static void test_password_nowhere(void **state)
{
    (void)state;
    assert_true(said_len > 0);
    if (strstr(said, password))
        fail_msg("the password appears in eddy's output:\n%s", said);
    /* The server's log neither (libpq never sends it in the clear: SCRAM) */
    char log[160], line[4096];
    snprintf(log, sizeof log, "%s/postgres.log", server.dir);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        assert_null(strstr(line, password));
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    if (pgt_start_tls(&server) != 0) {
        fprintf(stderr, "cannot start PostgreSQL with TLS\n");
        return -1;
    }
    char path[160];
    snprintf(path, sizeof path, "%s/password", server.dir);
    read_line(path, password, sizeof password);
    snprintf(path, sizeof path, "%s/user", server.dir);
    read_line(path, user, sizeof user);
    snprintf(ca, sizeof ca, "%s/tls/ca.pem", server.dir);
    snprintf(rogue, sizeof rogue, "%s/tls/rogue-ca.pem", server.dir);
    eddy_log_set(on_log, EDDY_LOG_DEBUG, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    pgt_stop(&server);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_routes),
        cmocka_unit_test(test_wrong_credentials),
        cmocka_unit_test(test_password_keys_refused),
        cmocka_unit_test(test_cli_never_shows_the_password),
        cmocka_unit_test(test_password_nowhere),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
