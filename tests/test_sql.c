/*
 * tests/test_sql.c - the portable statement API (eddy/sql.h) on the SQLite
 * backend: parameters, rows, errors, transactions and savepoints, reads on
 * readers, read-only stores (including a read-only mount), and the store
 * file being complete after a clean close.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "eddy/sqlite.h"
#include "core/internal.h"
#include "store/store_internal.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/eddy-sql-test-XXXXXX";
static int counter;

static eddy_store *open_new(char *path, size_t cap)
{
    snprintf(path, cap, "%s/s%d.db", tmpdir, counter++);
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, NULL, &err);
    if (!s)
        fail_msg("open %s: %s", path, err.message);
    return s;
}

static int setup_table(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err,
                         "CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY, "
                         "n BIGINT, x DOUBLE PRECISION, b BIGINT, z TEXT)",
                         NULL);
}

struct rows {
    int count;
    char k[8][32];
    int64_t n[8];
    double x[8];
    bool z_null[8];
};

static int collect(const eddy_row *row, void *user)
{
    struct rows *r = user;
    if (r->count == 8)
        return 99;
    assert_int_equal(eddy_row_columns(row), 4);
    snprintf(r->k[r->count], 32, "%s", eddy_row_text(row, 0));
    r->n[r->count] = eddy_row_int(row, 1);
    r->x[r->count] = eddy_row_double(row, 2);
    r->z_null[r->count] = eddy_row_is_null(row, 3);
    assert_null(eddy_row_text(row, 3));
    assert_null(eddy_row_text(row, 4)); /* out of range */
    assert_true(eddy_row_is_null(row, -1));
    r->count++;
    return 0;
}

static int insert_rows(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int64_t changes = 0;
    int rc = eddy_txn_exec(txn, &changes, err,
                           "INSERT INTO t(k, n, x, b, z) VALUES($1, $2, $3, "
                           "$4, $5)",
                           "sIfbn", "a", (int64_t)1 << 40, 2.5, 7);
    if (rc == EDDY_OK && changes != 1)
        return eddyi_error(err, EDDY_EIO, "changes %lld, expected 1",
                           (long long)changes);
    if (rc == EDDY_OK) /* parameters out of order, a literal '$1' untouched */
        rc = eddy_txn_exec(txn, &changes, err,
                           "INSERT INTO t(k, n, x, b, z) VALUES($2 || '$1', "
                           "$1, 0.5, 0, NULL)",
                           "is", 42, "b");
    return rc;
}

static void test_exec_and_query(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, insert_rows, NULL, &err), EDDY_OK);

    struct rows r = {0};
    assert_int_equal(eddy_store_sql_query(s, collect, &r, &err,
                                          "SELECT k, n, x, z FROM t ORDER BY k",
                                          NULL),
                     EDDY_OK);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.k[0], "a");
    assert_true(r.n[0] == (int64_t)1 << 40);
    assert_true(r.x[0] == 2.5);
    assert_true(r.z_null[0]);
    assert_string_equal(r.k[1], "b$1");
    assert_int_equal(r.n[1], 42);

    int64_t v = -1;
    assert_int_equal(eddy_store_sql_int(s, &v, &err,
                                        "SELECT sum(b) FROM t WHERE k >= $1",
                                        "s", "a"),
                     EDDY_OK);
    assert_int_equal(v, 1); /* 'b' bound 7 as true */
    assert_int_equal(eddy_store_sql_int(s, &v, &err,
                                        "SELECT n FROM t WHERE k = 'none'",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(v, 0);
    /* A text column read as an integer is parsed. */
    assert_int_equal(eddy_store_sql_int(s, &v, &err, "SELECT '123'", NULL),
                     EDDY_OK);
    assert_int_equal(v, 123);
    eddy_store_close(s);
}

static int stop_early(const eddy_row *row, void *user)
{
    (void)row;
    (*(int *)user)++;
    return 7;
}

static void test_errors(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, insert_rows, NULL, &err), EDDY_OK);

    /* A row callback's value stops the query and comes back. */
    int calls = 0;
    assert_int_equal(eddy_store_sql_query(s, stop_early, &calls, &err,
                                          "SELECT k FROM t", NULL),
                     7);
    assert_int_equal(calls, 1);

    err = (eddy_error){0};
    assert_int_equal(eddy_store_sql_query(s, NULL, NULL, &err,
                                          "SELECT $1", "x", 1),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "unknown parameter letter 'x'"));

    err = (eddy_error){0};
    assert_int_equal(eddy_store_sql_query(s, NULL, NULL, &err,
                                          "SELECT $1, $2", "s", "a"),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "takes 2 parameter(s), 1 given"));

    err = (eddy_error){0};
    assert_int_equal(eddy_store_sql_query(s, NULL, NULL, &err,
                                          "SELEKT 1", NULL),
                     EDDY_EIO);
    assert_non_null(strstr(err.message, "SELEKT 1"));

    err = (eddy_error){0};
    assert_int_equal(eddy_store_sql_query(s, NULL, NULL, &err, NULL, NULL),
                     EDDY_EINVAL);

    /* A UNIQUE constraint is EDDY_EEXIST, and the failed transaction
     * leaves nothing behind. */
    err = (eddy_error){0};
    assert_int_equal(eddy_store_transact(s, insert_rows, NULL, &err),
                     EDDY_EEXIST);
    assert_non_null(strstr(err.message, "UNIQUE"));
    int64_t n = 0;
    assert_int_equal(eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM t",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(n, 2);
    eddy_store_close(s);
}

/* A write, then a nested savepoint rolled back, then one released. */
static int nested(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO t(k) VALUES('outer')", NULL);
    assert_int_equal(rc, EDDY_OK);
    assert_int_equal(eddyi_txn_savepoint(txn, err), EDDY_OK);
    assert_int_equal(eddy_txn_exec(txn, NULL, err,
                                   "INSERT INTO t(k) VALUES('gone')", NULL),
                     EDDY_OK);
    eddyi_txn_rollback(txn);
    assert_int_equal(eddyi_txn_savepoint(txn, err), EDDY_OK);
    assert_int_equal(eddy_txn_exec(txn, NULL, err,
                                   "INSERT INTO t(k) VALUES('kept')", NULL),
                     EDDY_OK);
    assert_int_equal(eddyi_txn_release(txn, err), EDDY_OK);
    /* The transaction sees its own writes. */
    struct rows r = {0};
    assert_int_equal(eddy_txn_query(txn, collect, &r, err,
                                    "SELECT k, n, x, z FROM t ORDER BY k",
                                    NULL),
                     EDDY_OK);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.k[0], "kept");
    assert_string_equal(r.k[1], "outer");
    return EDDY_OK;
}

static int fails_after_write(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    eddy_txn_exec(txn, NULL, err, "INSERT INTO t(k) VALUES('never')", NULL);
    return eddyi_error(err, EDDY_EHANDLER, "refused on purpose");
}

static int leaves_savepoint(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddyi_txn_savepoint(txn, err);
}

static void test_transactions(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, nested, NULL, &err), EDDY_OK);
    err = (eddy_error){0};
    assert_int_equal(eddy_store_transact(s, fails_after_write, NULL, &err),
                     EDDY_EHANDLER);
    assert_string_equal(err.message, "refused on purpose");
    err = (eddy_error){0};
    assert_int_equal(eddy_store_transact(s, leaves_savepoint, NULL, &err),
                     EDDY_ESTATE);
    int64_t n = 0;
    assert_int_equal(eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM t",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(eddy_store_transact(s, NULL, NULL, &err), EDDY_EINVAL);
    eddy_store_close(s);
}

static int sqlite_escape(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)err;
    sqlite3 *db = eddy_txn_sqlite(txn);
    *(int *)user = db != NULL && sqlite3_get_autocommit(db) == 0;
    return EDDY_OK;
}

static void test_sqlite_escape_hatch(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    int in_txn = 0;
    assert_int_equal(eddy_store_transact(s, sqlite_escape, &in_txn, NULL),
                     EDDY_OK);
    assert_int_equal(in_txn, 1);
    assert_null(eddy_txn_sqlite(NULL));
    eddy_store_close(s);
}

static eddy_store *append_some(const char *path, int n)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, NULL, &err);
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        eddy_event *ev = eddy_event_newf("t.happened", "test", "s-1", &err,
                                         "{s:i}", "i", i);
        assert_non_null(ev);
        assert_int_equal(eddy_store_append(s, "s-1", EDDY_EXPECT_ANY, &ev, 1,
                                           NULL, &err),
                         EDDY_OK);
        eddy_event_unref(ev);
    }
    return s;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* After a clean close, the .db alone is the whole store. */
static void test_close_leaves_a_complete_file(void **state)
{
    (void)state;
    char path[256], wal[300], copy[300];
    snprintf(path, sizeof path, "%s/closed.db", tmpdir);
    eddy_store *s = append_some(path, 25);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    eddy_store_close(s);
    snprintf(wal, sizeof wal, "%s-wal", path);
    assert_false(exists(wal));

    /* Copy only the main file and read everything from the copy. */
    snprintf(copy, sizeof copy, "%s/copy.db", tmpdir);
    FILE *in = fopen(path, "rb"), *out = fopen(copy, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, k, out), k);
    fclose(in);
    fclose(out);
    eddy_store_options ro = {.read_only = true};
    s = eddy_store_open(copy, &ro, &err);
    assert_non_null(s);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 25);
    eddy_store_close(s);
}

/* Reads everything from the store at `path` opened read-only; writes must
 * fail. Returns 0, or 1 with a message on stderr (it may run in a child). */
static int read_only_checks(const char *path)
{
    eddy_store_options ro = {.read_only = true};
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, &ro, &err);
    if (!s) {
        fprintf(stderr, "open on read-only media: %s\n", err.message);
        return 1;
    }
    int64_t head = 0, n = 0;
    int bad = eddy_store_head(s, &head, &err) != EDDY_OK || head != 10;
    bad |= eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM t", NULL) !=
               EDDY_OK ||
           n != 2;
    eddy_cursor *c = NULL;
    int count = 0, rc = eddy_store_read_all(s, 0, 0, &c, &err);
    eddy_record rec;
    if (rc == EDDY_OK)
        while ((rc = eddy_cursor_next(c, &rec, &err)) > 0)
            count++;
    bad |= rc != 0 || count != 10;
    eddy_cursor_free(c);
    eddy_error werr = {0};
    bad |= eddy_store_transact(s, setup_table, NULL, &werr) != EDDY_ESTATE;
    if (bad)
        fprintf(stderr, "read-only checks failed: head %lld, rows %lld, "
                "events %d, last error: %s\n", (long long)head,
                (long long)n, count, err.message);
    eddy_store_close(s);
    return bad;
}

/*
 * A store on media this process cannot write: a read-only bind mount when
 * we may mount (root with CAP_SYS_ADMIN); and a folder without write
 * permission, read by a non-root process (root ignores file modes): this
 * process when it is not root, else a child that drops to user nobody.
 */
static void test_read_only_media(void **state)
{
    (void)state;
    char src[256], mnt[256], path[300];
    snprintf(src, sizeof src, "%s/ro-src", tmpdir);
    snprintf(mnt, sizeof mnt, "%s/ro-mnt", tmpdir);
    assert_int_equal(mkdir(src, 0755), 0);
    assert_int_equal(mkdir(mnt, 0755), 0);
    snprintf(path, sizeof path, "%s/s.db", src);
    eddy_store *s = append_some(path, 10);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, insert_rows, NULL, &err), EDDY_OK);
    eddy_store_close(s);

    bool mounted = false;
    if (geteuid() == 0 && mount(src, mnt, NULL, MS_BIND, NULL) == 0) {
        mounted = mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY,
                        NULL) == 0;
        if (!mounted)
            umount(mnt);
    }
    if (mounted) {
        snprintf(path, sizeof path, "%s/s.db", mnt);
        char probe[320];
        snprintf(probe, sizeof probe, "%s.probe", path);
        FILE *f = fopen(probe, "w"); /* really not writable? */
        int bad = f != NULL || read_only_checks(path) != 0;
        if (f)
            fclose(f);
        assert_int_equal(umount(mnt), 0);
        assert_int_equal(bad, 0);
        snprintf(path, sizeof path, "%s/s.db", src);
    }
    assert_int_equal(chmod(tmpdir, 0755), 0);
    assert_int_equal(chmod(src, 0555), 0);
    if (geteuid() != 0) {
        assert_int_equal(read_only_checks(path), 0);
    } else {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) {
                perror("dropping to nobody");
                _exit(2);
            }
            _exit(read_only_checks(path));
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    chmod(src, 0755);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

EDDYT_RMTREE_TEARDOWN(group_teardown, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_and_query),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_sqlite_escape_hatch),
        cmocka_unit_test(test_close_leaves_a_complete_file),
        cmocka_unit_test(test_read_only_media),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
