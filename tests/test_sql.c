/*
 * tests/test_sql.c - the portable statement API (eddy/sql.h): parameters,
 * rows, errors, transactions and savepoints, the SQLite escape hatch. Runs
 * on SQLite, and on PostgreSQL as test_sql_postgres (store_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "eddy/sqlite.h"
#include "core/internal.h"
#include "store/store_internal.h"
#include "store_fixture.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/eddy-sql-test-XXXXXX";
static int counter;

static eddy_store *open_new(char *path, size_t cap)
{
    snprintf(path, cap, "%s/s%d.db", tmpdir, counter++);
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(path, NULL, &err);
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
    assert_non_null(strcasestr(err.message, "UNIQUE"));
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

/* A statement that may fail runs in a savepoint of its own: the job goes on
 * after its failure, on every engine. */
static int failure_in_savepoint(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    assert_int_equal(eddy_txn_exec(txn, NULL, err,
                                   "INSERT INTO t(k) VALUES('first')", NULL),
                     EDDY_OK);
    assert_int_equal(eddyi_txn_savepoint(txn, err), EDDY_OK);
    eddy_error e = {0};
    assert_int_equal(eddy_txn_exec(txn, NULL, &e,
                                   "INSERT INTO t(k) VALUES('first')", NULL),
                     EDDY_EEXIST);
    eddyi_txn_rollback(txn);
    return eddy_txn_exec(txn, NULL, err, "INSERT INTO t(k) VALUES('second')",
                         NULL);
}

/* Going on after a failed statement without a savepoint: SQLite undoes the
 * statement only; PostgreSQL refuses every later statement of the job with
 * a message that says why. */
static int failure_ignored(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    eddy_error e = {0};
    assert_int_equal(eddy_txn_exec(txn, NULL, &e,
                                   "INSERT INTO t(k) VALUES('first')", NULL),
                     EDDY_EEXIST);
    return eddy_txn_exec(txn, NULL, err, "INSERT INTO t(k) VALUES('third')",
                         NULL);
}

struct typed {
    char text[64];
    int64_t sum;
    bool null;
};

static int typed_row(const eddy_row *row, void *user)
{
    struct typed *t = user;
    snprintf(t->text, sizeof t->text, "%s", eddy_row_text(row, 0));
    t->sum = eddy_row_int(row, 1);
    t->null = eddy_row_is_null(row, 2);
    return 0;
}

static int payload_row(const eddy_row *row, void *user)
{
    snprintf(user, 512, "%s", eddy_row_text(row, 0));
    return 1;
}

static void test_engine_differences(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, failure_in_savepoint, NULL, &err),
                     EDDY_OK);
    int64_t n = 0;
    assert_int_equal(eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM t",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(n, 2);
    err = (eddy_error){0};
    int rc = eddy_store_transact(s, failure_ignored, NULL, &err);
    if (eddyt_pg()) {
        assert_int_equal(rc, EDDY_ESTATE);
        assert_non_null(strstr(err.message, "an earlier statement of this "
                                            "transaction failed"));
    } else {
        assert_int_equal(rc, EDDY_OK);
    }
    /* A text NULL is typed ("$1 IS NULL" works on both engines); sum() of
     * a BIGINT (numeric on PostgreSQL) reads as an integer; a NULL 'n'. */
    struct typed t = {0};
    assert_int_equal(eddy_store_sql_query(s, typed_row, &t, &err,
                                          "SELECT COALESCE($1, 'none'), "
                                          "(SELECT sum(x) FROM (SELECT "
                                          "CAST(2 AS BIGINT) AS x UNION ALL "
                                          "SELECT CAST(3 AS BIGINT)) y) + $2, "
                                          "$3",
                                          "sIn", NULL, (int64_t)5),
                     EDDY_OK);
    assert_string_equal(t.text, "none");
    assert_int_equal(t.sum, 10);
    assert_true(t.null);
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT count(*) FROM t WHERE "
                                        "$1 IS NULL OR k = $1",
                                        "s", NULL),
                     EDDY_OK);
    assert_int_equal(n, eddyt_pg() ? 2 : 3);
    /* A literal $1 in a string and in a comment is not a parameter. */
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT length('$1') /* $2 */ + $1",
                                        "I", (int64_t)1),
                     EDDY_OK);
    assert_int_equal(n, 3);
    /* The log's payloads read as their JSON text on both engines. */
    eddy_event *ev = eddy_event_newf("t.happened", "test", "s-1", &err,
                                     "{s:s}", "quote", "a\"b");
    assert_non_null(ev);
    assert_int_equal(eddy_store_append(s, "s-1", EDDY_EXPECT_ANY, &ev, 1, NULL,
                                       &err),
                     EDDY_OK);
    char payload[512] = "";
    assert_int_equal(eddy_store_sql_query(s, payload_row, payload, &err,
                                          "SELECT payload FROM events "
                                          "WHERE id = $1",
                                          "s", eddy_event_id(ev)),
                     1);
    eddy_event *back = eddy_event_decode(payload, strlen(payload), &err);
    assert_non_null(back);
    assert_true(eddy_event_equal(back, ev));
    eddy_event_unref(back);
    eddy_event_unref(ev);
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
    EDDYT_SQLITE_ONLY("eddy_txn_sqlite is SQLite's escape hatch");
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    int in_txn = 0;
    assert_int_equal(eddy_store_transact(s, sqlite_escape, &in_txn, NULL),
                     EDDY_OK);
    assert_int_equal(in_txn, 1);
    assert_null(eddy_txn_sqlite(NULL));
    eddy_store_close(s);
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
        cmocka_unit_test(test_engine_differences),
        cmocka_unit_test(test_sqlite_escape_hatch),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
