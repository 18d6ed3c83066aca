/*
 * tests/test_sql.c - the portable statement API (eddy/sql.h): parameters,
 * rows, errors, transactions and savepoints, the SQLite escape hatch, and
 * a statement's error reported late (PostgreSQL's deferred statements)
 * failing its own job or savepoint only. Runs on SQLite, and on PostgreSQL
 * as test_sql_postgres (store_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
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
 * after its failure, on every engine. (`changes` asks for the error at
 * once: without it, PostgreSQL may report it later; see the deferred
 * cases below.) */
static int failure_in_savepoint(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    assert_int_equal(eddy_txn_exec(txn, NULL, err,
                                   "INSERT INTO t(k) VALUES('first')", NULL),
                     EDDY_OK);
    assert_int_equal(eddyi_txn_savepoint(txn, err), EDDY_OK);
    eddy_error e = {0};
    int64_t changes = 0;
    assert_int_equal(eddy_txn_exec(txn, &changes, &e,
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
    int64_t changes = 0;
    assert_int_equal(eddy_txn_exec(txn, &changes, &e,
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

/* ---- a statement's error reported late ----------------------------------- *
 * On PostgreSQL an exec without `changes` is sent without waiting for its
 * result; its error comes with the next exchange. Whatever the engine, a
 * failed statement fails its own job (or savepoint) with its own message,
 * and nothing else. */

#define STMT_DUP "INSERT INTO t(k) VALUES($1)"

static int seed_row(eddy_txn *txn, void *user, eddy_error *err)
{
    return eddy_txn_exec(txn, NULL, err, STMT_DUP, "s", (const char *)user);
}

/* Two rows per append: `stream` and `stream`-2; the first fails when the
 * row exists, and the server then skips the second. */
static int row_per_append(eddy_txn *txn, const char *stream_id,
                          eddy_event *const *events, size_t count,
                          void *user, eddy_error *err)
{
    (void)events;
    (void)count;
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err, STMT_DUP, "s", stream_id);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO t(k) VALUES($1 || '-2')", "s",
                           stream_id);
    return rc;
}

/* Holds the writer in a job of its own while appends queue behind it, so
 * that they all run in the next group commit, in the order queued. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool holding, open;
    eddy_store *store;
    int rc;
};

static int gate_job(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)txn;
    (void)err;
    struct gate *g = user;
    pthread_mutex_lock(&g->mu);
    g->holding = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return EDDY_OK;
}

static void *gate_main(void *arg)
{
    struct gate *g = arg;
    g->rc = eddy_store_transact(g->store, gate_job, g, NULL);
    return NULL;
}

struct appended {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done;
    int rc[3];
    eddy_error err[3];
    eddy_append_result res[3];
};

struct append_slot {
    struct appended *a;
    int i;
};

static void append_done(int rc, const eddy_append_result *res,
                        const eddy_error *err, void *user)
{
    struct append_slot *slot = user;
    struct appended *a = slot->a;
    pthread_mutex_lock(&a->mu);
    a->rc[slot->i] = rc;
    if (res)
        a->res[slot->i] = *res;
    if (err)
        a->err[slot->i] = *err;
    a->done++;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

static int64_t count_rows(eddy_store *s, const char *k)
{
    int64_t n = -1;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM t WHERE k = $1",
                           "s", k) != EDDY_OK)
        fail_msg("count: %s", err.message);
    return n;
}

/* Three appends in one group commit, each with a hook writing rows: the
 * middle one's row exists. It fails alone, with the INSERT's message; the
 * appends before and after it commit, at consecutive positions. */
static void test_late_error_fails_its_job_alone(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, seed_row, "late-bad", &err),
                     EDDY_OK);
    assert_int_equal(eddyi_store_add_append_hook(s, row_per_append, NULL,
                                                 &err),
                     EDDY_OK);
    eddy_store_stats before;
    eddy_store_stats_get(s, &before);

    struct gate g = {.store = s};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cond, NULL);
    pthread_t th;
    pthread_create(&th, NULL, gate_main, &g);
    pthread_mutex_lock(&g.mu);
    while (!g.holding)
        pthread_cond_wait(&g.cond, &g.mu);
    pthread_mutex_unlock(&g.mu);

    struct appended a = {.done = 0};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cond, NULL);
    const char *streams[3] = {"late-a", "late-bad", "late-c"};
    struct append_slot slots[3];
    for (int i = 0; i < 3; i++) {
        slots[i] = (struct append_slot){.a = &a, .i = i};
        eddy_event *ev = eddy_event_newf("t.late", "test", streams[i], &err,
                                         "{s:i}", "i", i);
        assert_non_null(ev);
        assert_int_equal(eddy_store_append_async(s, streams[i],
                                                 EDDY_EXPECT_ANY, &ev, 1,
                                                 append_done, &slots[i],
                                                 &err),
                         EDDY_OK);
        eddy_event_unref(ev);
    }
    pthread_mutex_lock(&g.mu);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.mu);
    pthread_join(th, NULL);
    assert_int_equal(g.rc, EDDY_OK);
    pthread_mutex_lock(&a.mu);
    while (a.done < 3)
        pthread_cond_wait(&a.cond, &a.mu);
    pthread_mutex_unlock(&a.mu);

    assert_int_equal(a.rc[0], EDDY_OK);
    assert_int_equal(a.rc[2], EDDY_OK);
    assert_int_equal(a.rc[1], EDDY_EEXIST);
    if (!strstr(a.err[1].message, STMT_DUP))
        fail_msg("the error does not name the failed statement: %s",
                 a.err[1].message);
    /* One commit for the gate and one for the three appends. */
    eddy_store_stats after;
    eddy_store_stats_get(s, &after);
    assert_int_equal(after.commits - before.commits, 2);
    assert_int_equal(a.res[2].first_position, a.res[0].last_position + 1);
    int64_t version = -1;
    assert_int_equal(eddy_store_stream_version(s, "late-bad", &version, &err),
                     EDDY_OK);
    assert_int_equal(version, 0);
    assert_int_equal(count_rows(s, "late-a"), 1);
    assert_int_equal(count_rows(s, "late-a-2"), 1);
    assert_int_equal(count_rows(s, "late-c"), 1);
    assert_int_equal(count_rows(s, "late-c-2"), 1);
    assert_int_equal(count_rows(s, "late-bad"), 1); /* the seeded one */
    assert_int_equal(count_rows(s, "late-bad-2"), 0);
    assert_int_equal(eddyi_store_remove_append_hook(s, row_per_append, NULL),
                     EDDY_OK);
    pthread_mutex_destroy(&a.mu);
    pthread_cond_destroy(&a.cond);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cond);
    eddy_store_close(s);
}

/* In a savepoint: the statement's error comes from the exec (SQLite) or
 * from the release (PostgreSQL), which then has rolled the savepoint back;
 * the job goes on after it either way. */
static int late_error_in_savepoint(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    assert_int_equal(eddy_txn_exec(txn, NULL, err, STMT_DUP, "s", "before"),
                     EDDY_OK);
    assert_int_equal(eddyi_txn_savepoint(txn, err), EDDY_OK);
    eddy_error e = {0};
    int rc = eddy_txn_exec(txn, NULL, &e, STMT_DUP, "s", "before");
    if (rc == EDDY_OK) {
        assert_true(eddyt_pg());
        rc = eddyi_txn_release(txn, &e);
    } else {
        eddyi_txn_rollback(txn);
    }
    assert_int_equal(rc, EDDY_EEXIST);
    if (!strstr(e.message, STMT_DUP))
        fail_msg("the error does not name the failed statement: %s",
                 e.message);
    return eddy_txn_exec(txn, NULL, err, STMT_DUP, "s", "after");
}

static int int_row(const eddy_row *row, void *user)
{
    *(int64_t *)user = eddy_row_int(row, 0);
    return 0;
}

/* The error of a statement whose result nobody read is the error of the
 * next call that waits for the server (here a query), on PostgreSQL; the
 * job fails with it and stores nothing. */
static int late_error_then_query(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err, STMT_DUP, "s", "third");
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err, STMT_DUP, "s", "before");
    if (rc == EDDY_OK) {
        assert_true(eddyt_pg());
        int64_t n = 0;
        rc = eddy_txn_query(txn, int_row, &n, err, "SELECT count(*) FROM t",
                            NULL);
    }
    return rc;
}

static void test_late_error_attribution(void **state)
{
    (void)state;
    char path[256];
    eddy_store *s = open_new(path, sizeof path);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, late_error_in_savepoint, NULL,
                                         &err),
                     EDDY_OK);
    assert_int_equal(count_rows(s, "before"), 1);
    assert_int_equal(count_rows(s, "after"), 1);

    err = (eddy_error){0};
    assert_int_equal(eddy_store_transact(s, late_error_then_query, NULL, &err),
                     EDDY_EEXIST);
    if (!strstr(err.message, STMT_DUP))
        fail_msg("the error does not name the failed statement: %s",
                 err.message);
    assert_int_equal(count_rows(s, "third"), 0);
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
        cmocka_unit_test(test_late_error_fails_its_job_alone),
        cmocka_unit_test(test_late_error_attribution),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
