/*
 * tests/test_migrate_v3.c - a store written by the release before the
 * persistence boundary (tests/data/store-v3.db.gz: store schema 3, 60 demo
 * orders of eddy 0.1.0, every invariant held; see tests/data/README.md)
 * opens in the current eddy, migrates, keeps every row of every table, and
 * passes `eddy demo`'s checks: a resumed demo (EDDY_CLI_PATH) places 10 more
 * orders and checks all 70, the 60 written before the migration included
 * (their events are order.placed 1.0 etc., amounts in major units, read
 * back upcast to 2.0, cents).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eddy/eddy.h"

#ifndef EDDY_FIXTURES_DIR
#error "EDDY_FIXTURES_DIR (tests/data) must be defined by the build"
#endif

#define FIXTURE EDDY_FIXTURES_DIR "/store-v3.db.gz"
#define MAX_TABLES 64

static char tmpdir[] = "/tmp/eddy-migrate-v3-XXXXXX";
static char db_path[600];
static char url[620];

EDDYT_RMTREE_TEARDOWN(remove_tmpdir, tmpdir)

struct table_counts {
    size_t n;
    char name[MAX_TABLES][64];
    long long rows[MAX_TABLES];
};

/* Runs argv[0] with stdout to `out_path` (NULL: inherited), stdin from
 * /dev/null; returns its exit status (-1 if it did not exit). */
static int run(char *const argv[], const char *out_path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0)
            dup2(in, STDIN_FILENO);
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0)
                _exit(126);
            dup2(fd, STDOUT_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every table of the SQLite file and its row count, by name. */
static void count_tables(const char *path, struct table_counts *tc)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    memset(tc, 0, sizeof *tc);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master "
                                            "WHERE type = 'table' ORDER BY name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        assert_true(tc->n < MAX_TABLES);
        snprintf(tc->name[tc->n], sizeof tc->name[0], "%s",
                 (const char *)sqlite3_column_text(st, 0));
        tc->n++;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < tc->n; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", tc->name[i]);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        tc->rows[i] = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static long long rows_of(const struct table_counts *tc, const char *name)
{
    for (size_t i = 0; i < tc->n; i++)
        if (strcmp(tc->name[i], name) == 0)
            return tc->rows[i];
    return -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void expect_line(const char *text, const char *line)
{
    if (!strstr(text, line))
        fail_msg("no line '%s' in the demo's output:\n%s", line, text);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/v3.db", tmpdir);
    snprintf(url, sizeof url, "sqlite:%s", db_path);
    char *gunzip[] = {"gzip", "-dc", FIXTURE, NULL};
    return run(gunzip, db_path) == 0 ? 0 : -1;
}

static void test_migrate_keeps_rows_and_passes_demo(void **state)
{
    (void)state;
    struct table_counts before, after, after_demo;
    count_tables(db_path, &before);
    /* the fixture is what its README says: a v3 store with 60 orders */
    assert_int_equal(rows_of(&before, "order_read_model"), 60);
    assert_int_equal(rows_of(&before, "events"), 375);

    /* the current eddy opens it (writable) and migrates it */
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s)
        fail_msg("opening the v3 store: %s", err.message);
    eddy_store_info info;
    assert_int_equal(eddy_store_info_get(s, &info, &err), EDDY_OK);
    assert_true(info.schema_version >= 4);
    assert_int_equal(info.event_count, 375);
    eddy_store_close(s);

    /* every table of v3 is still there with every row */
    count_tables(db_path, &after);
    for (size_t i = 0; i < before.n; i++) {
        long long now = rows_of(&after, before.name[i]);
        if (now != before.rows[i])
            fail_msg("table %s: %lld rows before the migration, %lld after",
                     before.name[i], before.rows[i], now);
    }

    /* read-only now works (it refuses a store that needs upgrading) */
    eddy_store_options ro = {.read_only = true};
    s = eddy_store_open(url, &ro, &err);
    if (!s)
        fail_msg("opening the migrated store read-only: %s", err.message);
    int64_t rows = 0;
    assert_int_equal(eddy_store_sql_int(s, &rows, &err,
                                        "SELECT count(*) FROM sent_mail", ""),
                     EDDY_OK);
    assert_int_equal(rows, rows_of(&before, "sent_mail"));
    eddy_store_close(s);

    /* the demo resumes it: 10 new orders, checks over all 70 */
    char out_path[700];
    snprintf(out_path, sizeof out_path, "%s/demo.out", tmpdir);
    char *demo[] = {EDDY_CLI_PATH, "demo", "--store", url, "--orders", "10",
                    NULL};
    int status = run(demo, out_path);
    char *out = read_file(out_path);
    if (status != 0)
        fail_msg("eddy demo --store %s --orders 10: exit status %d\n%s", url,
                 status, out);
    expect_line(out, "resuming: the store holds 375 events and 60 orders, 0 of "
                     "them unfinished");
    expect_line(out, "orders placed       70\n");
    expect_line(out, "ok   every order ends CONFIRMED or CANCELLED, exactly "
                     "once (70/70)\n");
    expect_line(out, "ok   refunds (");
    expect_line(out, "ok   money balances to the cent: ");
    expect_line(out, " for 70/70 orders\n");
    expect_line(out, "ok   stock never negative ");
    expect_line(out, "ok   every confirmed order had exactly one confirmation mail");
    expect_line(out, "ok   every user got exactly one welcome mail");
    expect_line(out, "ok   read model equals a fold of the store (70/70 rows "
                     "match)\n");
    expect_line(out, "\nall invariants hold\n");
    if (strstr(out, "\nFAIL "))
        fail_msg("a failed invariant:\n%s", out);
    free(out);

    /* and the log, the saga history and the handlers' tables kept the
     * earlier release's rows (the read model was rebuilt in the current
     * shape, and with it the projection's inbox rows) */
    static const char *const GROWS[] = {
        "events", "streams", "eddy_sagas", "eddy_saga_commands",
        "eddy_checkpoints", "eddy_subscriptions", "sent_mail",
        "mail_recipients", "stock"};
    count_tables(db_path, &after_demo);
    for (size_t i = 0; i < sizeof GROWS / sizeof GROWS[0]; i++) {
        long long was = rows_of(&before, GROWS[i]);
        long long now = rows_of(&after_demo, GROWS[i]);
        if (was <= 0 || now < was)
            fail_msg("table %s: %lld rows before, %lld after the demo",
                     GROWS[i], was, now);
    }
    assert_int_equal(rows_of(&after_demo, "order_read_model"), 70);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_keeps_rows_and_passes_demo),
    };
    return cmocka_run_group_tests(tests, setup, remove_tmpdir);
}
