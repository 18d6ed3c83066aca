/*
 * tests/test_store_postgres.c - the event store on PostgreSQL: the backend
 * conformance suite (a new database per test), then what is specific to
 * PostgreSQL: URLs and eddy's URL options, libpq options passed through,
 * clean errors (unreachable server, authentication, missing database, a
 * newer schema, foreign tables), read-only opening, live wake-up of another
 * store handle through LISTEN/NOTIFY and through polling, the native
 * connection of write jobs, a connection lost between transactions, and a
 * connection lost during COMMIT (EDDY_EINDOUBT, then a safe retry), and a
 * reader pool that keeps the connections its concurrent reads opened.
 *
 * The program starts its own PostgreSQL (tests/pg_test_server.h); when it
 * cannot, the test FAILS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg_test_server.h"

#include "eddy/eddy.h"
#include "eddy/sqlite.h"
#include "store/backend.h"
#include "store/postgres.h"
#include "store/store_internal.h"
#include "store_conformance.h"

static pgt_server server;

/* ---- the conformance fixture ------------------------------------------------ */

static char *pg_new_url(void *ctx)
{
    (void)ctx;
    char db[64];
    if (pgt_new_db(&server, "conf", db, sizeof db) != 0)
        fail_msg("cannot create a database");
    char *url = malloc(512);
    pgt_url(&server, db, "", url, 512);
    return url;
}

static void pg_drop_url(const char *url, void *ctx)
{
    (void)ctx;
    const char *db = url + strlen("postgresql:///");
    char name[64];
    size_t n = strcspn(db, "?");
    snprintf(name, sizeof name, "%.*s", (int)n, db);
    pgt_drop_db(&server, name);
}

/* ---- helpers -------------------------------------------------------------- */

static char *fresh_db(char *name, size_t cap)
{
    if (pgt_new_db(&server, "t", name, cap) != 0)
        fail_msg("cannot create a database");
    return name;
}

static eddy_store *open_db(const char *db, const char *extra,
                           const eddy_store_options *o)
{
    char url[512];
    pgt_url(&server, db, extra, url, sizeof url);
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, o, &err);
    if (!s)
        fail_msg("open %s: %s", url, err.message);
    return s;
}

static int append_one(eddy_store *s, const char *sid, eddy_event *ev,
                      eddy_append_result *res, eddy_error *err)
{
    return eddy_store_append(s, sid, EDDY_EXPECT_ANY, &ev, 1, res, err);
}

static void append_n(eddy_store *s, const char *sid, int n)
{
    for (int i = 0; i < n; i++) {
        eddy_event *ev = conf_event("pg.e", NULL, 0, i);
        eddy_error err = {0};
        if (append_one(s, sid, ev, NULL, &err) != EDDY_OK)
            fail_msg("append: %s", err.message);
        eddy_event_unref(ev);
    }
}

/* ---- URLs and errors ------------------------------------------------------- */

static void test_url_options(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    char url[512];
    eddy_error err = {0};
    pgt_url(&server, db, "&eddy_notify=maybe", url, sizeof url);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "eddy_notify=maybe"));
    pgt_url(&server, db, "&eddy_bogus=1", url, sizeof url);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "eddy_bogus"));
    pgt_url(&server, db, "&eddy_poll_ms=0", url, sizeof url);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);

    /* libpq's own options go through: a schema chosen by search_path and an
     * application name; eddy's options are stripped wherever they are. */
    assert_int_equal(pgt_exec(&server, db, "CREATE SCHEMA mine"), 0);
    eddy_store *s = open_db(db,
                            "&eddy_notify=off&options=-csearch_path%3Dmine"
                            "&application_name=eddy-test&eddy_poll_ms=50",
                            NULL);
    append_n(s, "in-mine", 2);
    eddy_store_close(s);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT count(*) FROM mine.events"), 2);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT count(*) FROM pg_tables WHERE "
                                   "schemaname = 'public' AND (tablename LIKE "
                                   "'eddy%' OR tablename = 'events')"), 0);
    /* The scheme postgres:// works as well as postgresql://. */
    snprintf(url, sizeof url, "postgres:///%s?host=%s&port=%d&user=postgres", db,
             server.dir, server.port);
    s = eddy_store_open(url, NULL, &err);
    assert_non_null(s);
    eddy_store_info info;
    assert_int_equal(eddy_store_info_get(s, &info, &err), EDDY_OK);
    assert_string_equal(info.backend, "postgres");
    assert_int_equal(info.head, 0); /* public, not mine */
    eddy_store_close(s);
    pgt_drop_db(&server, db);
}

static void test_connection_errors(void **state)
{
    (void)state;
    eddy_error err = {0};
    char url[512];
    /* Nothing listens on port 1. */
    assert_null(eddy_store_open("postgresql://127.0.0.1:1/x?connect_timeout=2",
                                NULL, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "cannot connect to PostgreSQL"));
    assert_non_null(strstr(err.message, "refused"));
    /* Wrong password over TCP (the socket trusts; TCP asks a password). */
    snprintf(url, sizeof url, "postgres://postgres:wrong@127.0.0.1:%d/postgres",
             server.port);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "password authentication failed"));
    assert_null(strstr(err.message, "wrong")); /* the password is not shown */
    /* The right one. */
    char db[64];
    fresh_db(db, sizeof db);
    snprintf(url, sizeof url, "postgres://postgres:eddy@127.0.0.1:%d/%s",
             server.port, db);
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s)
        fail_msg("open over TCP: %s", err.message);
    append_n(s, "tcp", 1);
    eddy_store_close(s);
    /* A database that does not exist. */
    pgt_url(&server, "no_such_db", "", url, sizeof url);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    assert_non_null(strstr(err.message, "no_such_db"));
    pgt_drop_db(&server, db);
}

static void test_schema_versions(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    char url[512];
    pgt_url(&server, db, "", url, sizeof url);
    eddy_error err = {0};
    /* Read-only on an empty database: no store. */
    eddy_store_options ro = {.read_only = true};
    assert_null(eddy_store_open(url, &ro, &err));
    assert_int_equal(err.code, EDDY_ENOTFOUND);
    eddy_store *s = open_db(db, "", NULL);
    append_n(s, "v", 3);
    eddy_store_info info;
    assert_int_equal(eddy_store_info_get(s, &info, &err), EDDY_OK);
    assert_int_equal(info.schema_version, EDDYI_PG_SCHEMA_VERSION);
    eddy_store_close(s);
    /* Read-only works on a current store, and refuses appends. */
    s = eddy_store_open(url, &ro, &err);
    assert_non_null(s);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 3);
    eddy_event *ev = conf_event("x", NULL, 0, 0);
    assert_int_equal(append_one(s, "v", ev, NULL, &err), EDDY_ESTATE);
    eddy_event_unref(ev);
    eddy_store_close(s);
    /* A newer schema is refused, and left as it is. */
    assert_int_equal(pgt_exec(&server, db,
                              "UPDATE eddy_meta SET value = '7' WHERE key = "
                              "'eddy_schema_version'"), 0);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_EVERSION);
    assert_non_null(strstr(err.message, "store schema version 7, this eddy "
                                        "supports up to 3"));
    assert_null(eddy_store_open(url, &ro, &err));
    assert_int_equal(err.code, EDDY_EVERSION);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT value::int FROM eddy_meta"), 7);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT count(*) FROM events"), 3);
    /* Tables that look like eddy's without a version: not an eddy store. */
    char other[64];
    fresh_db(other, sizeof other);
    assert_int_equal(pgt_exec(&server, other, "CREATE TABLE events(x int)"),
                     0);
    pgt_url(&server, other, "", url, sizeof url);
    assert_null(eddy_store_open(url, NULL, &err));
    assert_int_equal(err.code, EDDY_ECORRUPT);
    assert_non_null(strstr(err.message, "not an eddy store"));
    pgt_drop_db(&server, db);
    pgt_drop_db(&server, other);
}

/* A store written by the release with schema 1 (the log as eddy_events, no
 * state tables) is upgraded in place to the current schema on a writable
 * open: the log renamed to events keeps its rows, the envelope columns are
 * filled from the payloads, the state tables (schema 2) and the member and
 * lease tables (schema 3) exist, and appends go on at the next position. */
static void test_upgrade_from_schema_1(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    /* Schema 1 exactly as released (postgres_schema.c, step 0 -> 1). */
    assert_int_equal(pgt_exec(&server, db,
        "CREATE TABLE eddy_meta(key text COLLATE \"C\" PRIMARY KEY,"
        "  value text NOT NULL);"
        "CREATE TABLE eddy_events(position bigint PRIMARY KEY,"
        "  id text COLLATE \"C\" NOT NULL UNIQUE,"
        "  stream_id text COLLATE \"C\" NOT NULL,"
        "  stream_version bigint NOT NULL, type text COLLATE \"C\" NOT NULL,"
        "  time_us bigint, recorded_us bigint NOT NULL, payload bytea NOT NULL,"
        "  UNIQUE(stream_id, stream_version));"
        "CREATE INDEX eddy_events_by_type ON eddy_events(type, position);"
        "CREATE INDEX eddy_events_by_time ON eddy_events(time_us);"
        "CREATE TABLE eddy_streams(stream_id text COLLATE \"C\" PRIMARY KEY,"
        "  version bigint NOT NULL);"
        "CREATE TABLE eddy_snapshots(stream_id text COLLATE \"C\" NOT NULL,"
        "  version bigint NOT NULL, schema_version integer NOT NULL,"
        "  state text NOT NULL, taken_us bigint NOT NULL,"
        "  PRIMARY KEY(stream_id, version));"
        "INSERT INTO eddy_meta VALUES('eddy_schema_version', '1');"
        "INSERT INTO eddy_streams VALUES('old-1', 1);"
        "INSERT INTO eddy_events VALUES(1, "
        "  '01890000-0000-7000-8000-000000000001', 'old-1', 1, 'old.thing',"
        "  1700000000000000, 1700000000000000, convert_to('{\"specversion\":"
        "\"1.0\",\"id\":\"01890000-0000-7000-8000-000000000001\","
        "\"type\":\"old.thing\",\"source\":\"old-service\","
        "\"subject\":\"old-1\",\"time\":\"2023-11-14T22:13:20Z\","
        "\"correlationid\":\"flow-1\"}', 'UTF8'))"), 0);
    eddy_store *s = open_db(db, "", NULL);
    eddy_error err = {0};
    eddy_store_info info;
    assert_int_equal(eddy_store_info_get(s, &info, &err), EDDY_OK);
    assert_int_equal(info.schema_version, EDDYI_PG_SCHEMA_VERSION);
    assert_int_equal(info.head, 1);
    int64_t n = 0;
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT count(*) FROM events WHERE "
                                        "correlation_id = 'flow-1' AND "
                                        "source = 'old-service' AND "
                                        "subject = 'old-1' AND "
                                        "causation_id IS NULL",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT count(*) FROM eddy_checkpoints",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(n, 0);
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT count(*) FROM eddy_leases",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(n, 0);
    append_n(s, "old-1", 1);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 2);
    eddy_store_close(s);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT count(*) FROM pg_tables WHERE "
                                   "tablename = 'eddy_events'"), 0);
    pgt_drop_db(&server, db);
}

/* ---- live wake-up across handles ----------------------------------------- */

typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int n;
    int64_t last;
} seen;

static int on_rec(const eddy_record *rec, void *user)
{
    seen *b = user;
    pthread_mutex_lock(&b->mu);
    b->n++;
    b->last = rec->position;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

/* Appends one event through `w` and returns how long `r`'s subscription
 * took to see it (microseconds), -1 if not within 5 s. */
static int64_t delivery_us(eddy_store *w, seen *b)
{
    pthread_mutex_lock(&b->mu);
    int before = b->n;
    pthread_mutex_unlock(&b->mu);
    int64_t t0 = eddy_now_us();
    append_n(w, "live", 1);
    pthread_mutex_lock(&b->mu);
    while (b->n == before && eddy_now_us() - t0 < 5000000) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&b->cond, &b->mu, &ts);
    }
    int got = b->n;
    pthread_mutex_unlock(&b->mu);
    return got > before ? eddy_now_us() - t0 : -1;
}

/* The median of 5 deliveries from writer handle to reader handle. */
static int64_t median_delivery(const char *db, const char *reader_opts)
{
    eddy_store *w = open_db(db, "", NULL);
    eddy_store *r = open_db(db, reader_opts, NULL);
    seen b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    int64_t head = 0;
    eddy_error err = {0};
    assert_int_equal(eddy_store_head(r, &head, &err), EDDY_OK);
    eddy_store_subscription *sub = NULL;
    assert_int_equal(eddy_store_subscribe(r, head, on_rec, &b, NULL, &sub, &err),
                     EDDY_OK);
    usleep(200000); /* the subscription and the listener are up */
    int64_t t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = delivery_us(w, &b);
        if (t[i] < 0)
            fail_msg("no delivery within 5 s (%s)", reader_opts);
    }
    eddy_store_subscription_free(sub);
    eddy_store_close(r);
    eddy_store_close(w);
    for (int i = 0; i < 5; i++) /* sort */
        for (int k = i + 1; k < 5; k++)
            if (t[k] < t[i]) {
                int64_t x = t[i];
                t[i] = t[k];
                t[k] = x;
            }
    return t[2];
}

static void test_wake_other_handle(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    /* NOTIFY alone (polls far apart): other handles are woken at once. The
     * front's own fallback poll is 1 s, so this proves the notification. */
    int64_t notify = median_delivery(db, "&eddy_poll_ms=60000");
    print_message("delivery to another handle, NOTIFY: %lld us\n",
                  (long long)notify);
    assert_true(notify < 300000);
    /* NOTIFY off: the 50 ms poll finds the commits. */
    int64_t polled = median_delivery(db, "&eddy_notify=off&eddy_poll_ms=50");
    print_message("delivery to another handle, poll 50 ms: %lld us\n",
                  (long long)polled);
    assert_true(polled < 400000);
    /* NOTIFY off and no short poll: only the front's 1 s fallback. */
    int64_t slow = median_delivery(db, "&eddy_notify=off&eddy_poll_ms=60000");
    print_message("delivery to another handle, no NOTIFY, no poll: %lld us\n",
                  (long long)slow);
    assert_true(slow > notify);
    /* A writer with NOTIFY off sends none: its appends take the same
     * lock, and a reader that polls still sees them. */
    eddy_store *w = open_db(db, "&eddy_notify=off", NULL);
    append_n(w, "quiet", 3);
    eddy_store_close(w);
    pgt_drop_db(&server, db);
}

static int listeners(const char *db)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND "
             "application_name = 'eddy listener'", db);
    return pgt_query_int(&server, "postgres", sql);
}

/* A handle that only appends never listens (no connection, no thread, no
 * wake-up per commit); the first wait starts its listener. */
static void test_listener_starts_with_first_wait(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    eddy_store *w = open_db(db, "", NULL);
    append_n(w, "a", 3);
    assert_int_equal(listeners(db), 0);
    eddy_store *r = open_db(db, "&eddy_poll_ms=60000", NULL);
    assert_int_equal(listeners(db), 0);
    seen b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    eddy_store_subscription *sub = NULL;
    eddy_error err = {0};
    assert_int_equal(eddy_store_subscribe(r, 3, on_rec, &b, NULL, &sub, &err),
                     EDDY_OK);
    for (int i = 0; i < 100 && listeners(db) == 0; i++)
        usleep(50000);
    assert_int_equal(listeners(db), 1);
    /* ... and it hears the other handle's commits at once (the polls are a
     * minute and a second apart). */
    int64_t best = -1;
    for (int i = 0; i < 3; i++) {
        int64_t t = delivery_us(w, &b);
        assert_true(t >= 0);
        if (best < 0 || t < best)
            best = t;
    }
    assert_true(best < 500000);
    /* A second waiter on the same handle shares it. */
    int64_t head = 0;
    assert_int_equal(eddy_store_wait(r, 0, 0, &head), EDDY_OK);
    assert_int_equal(listeners(db), 1);
    eddy_store_subscription_free(sub);
    eddy_store_close(r);
    eddy_store_close(w);
    for (int i = 0; i < 100 && listeners(db) != 0; i++)
        usleep(50000); /* the server ends the session a little later */
    assert_int_equal(listeners(db), 0);
    pgt_drop_db(&server, db);
}

/* ---- the native connection -------------------------------------------------- */

typedef struct native_arg {
    int pid;
    bool fail;
} native_arg;

static int native_job(eddy_txn *txn, void *arg, eddy_error *err)
{
    native_arg *a = arg;
    PGconn *c = eddyi_txn_native_of(txn, &eddyi_postgres_backend);
    if (!c || eddy_txn_sqlite(txn) != NULL) {
        snprintf(err->message, sizeof err->message, "no native PGconn");
        return err->code = EDDY_EUNSUPPORTED;
    }
    a->pid = PQbackendPID(c);
    PGresult *r = PQexec(c, "CREATE TABLE native_t(x int); "
                            "INSERT INTO native_t VALUES (42)");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        snprintf(err->message, sizeof err->message, "native statement failed");
        return err->code = EDDY_EIO;
    }
    eddy_event *ev = conf_event("native.e", NULL, 0, 1);
    int rc = eddy_txn_append(txn, "native", EDDY_EXPECT_ANY, &ev, 1, NULL, err);
    eddy_event_unref(ev);
    if (rc == EDDY_OK && a->fail) {
        snprintf(err->message, sizeof err->message, "the job gives up");
        rc = err->code = EDDY_EHANDLER;
    }
    return rc;
}

static void test_native_connection(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    eddy_store *s = open_db(db, "", NULL);
    eddy_error err = {0};
    native_arg a = {0};
    assert_int_equal(eddyi_store_write(s, native_job, &a, &err), EDDY_OK);
    assert_true(a.pid > 0);
    assert_int_equal(pgt_query_int(&server, db, "SELECT x FROM native_t"), 42);
    /* A job that fails rolls back its native statements with it. */
    a.fail = true;
    assert_int_equal(pgt_exec(&server, db, "DROP TABLE native_t"), 0);
    assert_int_equal(eddyi_store_write(s, native_job, &a, &err), EDDY_EHANDLER);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT count(*) FROM pg_tables WHERE "
                                   "tablename = 'native_t'"), 0);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 1);
    append_n(s, "after", 2); /* the writer is back in pipeline mode */
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 3);
    eddy_store_close(s);
    pgt_drop_db(&server, db);
}

/* ---- lost connections ------------------------------------------------------ */

static void terminate(const char *db, const char *app)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
             "datname = '%s' AND application_name = '%s'", db, app);
    assert_int_equal(pgt_exec(&server, "postgres", sql), 0);
}

static void test_connection_lost_between_transactions(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    eddy_store *s = open_db(db, "", NULL);
    append_n(s, "a", 2);
    /* Every connection of the store goes away while it is idle; the next
     * operations reconnect without failing. */
    terminate(db, "eddy writer");
    terminate(db, "eddy reader");
    terminate(db, "eddy listener");
    usleep(100000);
    append_n(s, "a", 2);
    eddy_error err = {0};
    int64_t v = 0;
    assert_int_equal(eddy_store_stream_version(s, "a", &v, &err), EDDY_OK);
    assert_int_equal(v, 4);
    eddy_store_close(s);
    pgt_drop_db(&server, db);
}

typedef struct slow_append {
    eddy_store *store;
    eddy_event *ev;
    int rc;
    eddy_error err;
} slow_append;

static void *slow_append_main(void *arg)
{
    slow_append *a = arg;
    a->rc = append_one(a->store, "slow", a->ev, NULL, &a->err);
    return NULL;
}

static void test_commit_in_doubt(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    eddy_store *s = open_db(db, "", NULL);
    append_n(s, "before", 1);
    /* A deferred trigger makes COMMIT of stream "slow" take 5 s: long
     * enough to kill the writer's backend while it runs. */
    assert_int_equal(pgt_exec(&server, db,
                              "CREATE FUNCTION slow() RETURNS trigger LANGUAGE "
                              "plpgsql AS $$ BEGIN IF NEW.stream_id = 'slow' "
                              "THEN PERFORM pg_sleep(5); END IF; RETURN NULL; "
                              "END $$; CREATE CONSTRAINT TRIGGER slow AFTER "
                              "INSERT ON events DEFERRABLE INITIALLY "
                              "DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()"),
                     0);
    slow_append a = {.store = s, .ev = conf_event("slow.e", NULL, 0, 1)};
    pthread_t th;
    pthread_create(&th, NULL, slow_append_main, &a);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND "
             "application_name = 'eddy writer' AND state = 'active' AND "
             "query = 'COMMIT'", db);
    int waited = 0;
    while (pgt_query_int(&server, "postgres", sql) != 1 && waited++ < 400)
        usleep(10000);
    assert_true(waited < 400);
    terminate(db, "eddy writer");
    pthread_join(th, NULL);
    assert_int_equal(a.rc, EDDY_EINDOUBT);
    assert_non_null(strstr(a.err.message, "may or may not"));
    /* Retrying the same append is safe: it is stored exactly once. */
    assert_int_equal(pgt_exec(&server, db, "DROP TRIGGER slow ON events"), 0);
    eddy_error err = {0};
    eddy_append_result r1 = {0}, r2 = {0};
    assert_int_equal(append_one(s, "slow", a.ev, &r1, &err), EDDY_OK);
    assert_int_equal(append_one(s, "slow", a.ev, &r2, &err), EDDY_OK);
    assert_int_equal(r1.first_position, r2.first_position);
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM events WHERE id = '%s'",
             eddy_event_id(a.ev));
    assert_int_equal(pgt_query_int(&server, db, q), 1);
    assert_int_equal(pgt_query_int(&server, db,
                                   "SELECT max(position) FROM events"), 2);
    eddy_event_unref(a.ev);
    eddy_store_close(s);
    pgt_drop_db(&server, db);
}

/* ---- the reader pool --------------------------------------------------------- */

#define POOL_THREADS 16
#define POOL_ROUNDS 4

typedef struct pool_reader {
    eddy_store *store;
    pthread_barrier_t *start;
    int64_t pids[POOL_ROUNDS];
    int rc;
} pool_reader;

static int pid_row(const eddy_row *row, void *user)
{
    *(int64_t *)user = eddy_row_int(row, 0);
    return 0;
}

static void *pool_reader_main(void *arg)
{
    pool_reader *r = arg;
    for (int round = 0; round < POOL_ROUNDS && r->rc == EDDY_OK; round++) {
        pthread_barrier_wait(r->start);
        eddy_error err = {0};
        /* Long enough that every thread holds a connection at once. */
        r->rc = eddy_store_sql_query(r->store, pid_row, &r->pids[round], &err,
                                     "SELECT pg_backend_pid() FROM "
                                     "pg_sleep(0.2)",
                                     NULL);
        if (r->rc != EDDY_OK)
            fprintf(stderr, "read: %s\n", err.message);
    }
    return NULL;
}

/* Reads by 16 threads at once, four times over: the pool keeps the 16
 * connections it had to open, so the later rounds open none (a pool that
 * closes what it cannot keep shows up as new backend pids). */
static void test_reader_pool_keeps_connections(void **state)
{
    (void)state;
    char db[64];
    fresh_db(db, sizeof db);
    eddy_store *s = open_db(db, "", NULL);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, POOL_THREADS);
    pool_reader readers[POOL_THREADS];
    pthread_t th[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        readers[i] = (pool_reader){.store = s, .start = &start};
        pthread_create(&th[i], NULL, pool_reader_main, &readers[i]);
    }
    for (int i = 0; i < POOL_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    int64_t pids[POOL_THREADS * POOL_ROUNDS];
    int distinct = 0;
    for (int i = 0; i < POOL_THREADS; i++) {
        assert_int_equal(readers[i].rc, EDDY_OK);
        for (int round = 0; round < POOL_ROUNDS; round++) {
            int64_t pid = readers[i].pids[round];
            assert_true(pid > 0);
            int k = 0;
            while (k < distinct && pids[k] != pid)
                k++;
            if (k == distinct)
                pids[distinct++] = pid;
        }
    }
    /* Round one opens one connection per thread (the pool was empty but
     * for the store's own); later rounds reuse them. */
    if (distinct > POOL_THREADS + 1)
        fail_msg("%d reader connections for %d threads reading at once: "
                 "the pool closed connections it then opened again",
                 distinct, POOL_THREADS);
    eddy_store_close(s);
    pgt_drop_db(&server, db);
}

static int start_server(void **state)
{
    (void)state;
    if (pgt_start(&server) != 0) {
        fprintf(stderr, "cannot start PostgreSQL (scripts/test-servers.sh)\n");
        return -1;
    }
    return 0;
}

static int stop_server(void **state)
{
    (void)state;
    pgt_stop(&server);
    return 0;
}

int main(void)
{
    if (start_server(NULL) != 0)
        return 1;
    store_backend_fixture fx = {.name = "postgres",
                                .new_url = pg_new_url,
                                .drop_url = pg_drop_url};
    int failed = store_conformance_run(&fx);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_options),
        cmocka_unit_test(test_connection_errors),
        cmocka_unit_test(test_schema_versions),
        cmocka_unit_test(test_upgrade_from_schema_1),
        cmocka_unit_test(test_wake_other_handle),
        cmocka_unit_test(test_listener_starts_with_first_wait),
        cmocka_unit_test(test_native_connection),
        cmocka_unit_test(test_connection_lost_between_transactions),
        cmocka_unit_test(test_commit_in_doubt),
        cmocka_unit_test(test_reader_pool_keeps_connections),
    };
    failed += cmocka_run_group_tests_name("store on postgres", tests, NULL, NULL);
    stop_server(NULL);
    return failed ? 1 : 0;
}
