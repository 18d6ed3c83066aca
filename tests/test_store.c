/*
 * tests/test_store.c - the event store on SQLite: the backend conformance
 * suite, then what is specific to the SQLite file: URLs, pragmas, schema
 * migrations, refusing foreign and newer files without touching them,
 * read-only opening.
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

#include "test_util.h"
#include <sqlite3.h>

#include "eddy/sqlite.h"

#include "eddy/eddy.h"
#include "store/sqlite_schema.h"
#include "store/store_internal.h"
#include "store_conformance.h"

static char tmpdir[] = "/tmp/eddy-store-test-XXXXXX";
static int counter;

static char *new_path(const char *name)
{
    char *p = malloc(512);
    snprintf(p, 512, "%s/%s-%d.db", tmpdir, name, counter++);
    return p;
}

static char *sqlite_new_url(void *ctx)
{
    (void)ctx;
    char *path = new_path("conf");
    char *url = malloc(600);
    snprintf(url, 600, "sqlite:%s", path);
    free(path);
    return url;
}

static void remove_db(const char *path)
{
    char buf[600];
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path);
    unlink(buf);
}

static void sqlite_drop_url(const char *url, void *ctx)
{
    (void)ctx;
    remove_db(url + strlen("sqlite:"));
}

/* FNV-1a of a file's bytes, and its size. */
static uint64_t file_hash(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    uint64_t h = 1469598103934665603ULL;
    int c;
    long n = 0;
    while ((c = fgetc(f)) != EOF) {
        h = (h ^ (uint64_t)c) * 1099511628211ULL;
        n++;
    }
    fclose(f);
    *size = n;
    return h;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Opening `path` must fail with `code` and a message containing `text`, and
 * leave the file's bytes as they were. */
static void assert_refused(const char *path, int code, const char *text)
{
    long size0 = 0, size1 = 0;
    uint64_t h0 = file_hash(path, &size0);
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, NULL, &err);
    assert_null(s);
    assert_int_equal(err.code, code);
    if (!strstr(err.message, text))
        fail_msg("message \"%s\" lacks \"%s\"", err.message, text);
    assert_non_null(strstr(err.message, path));
    uint64_t h1 = file_hash(path, &size1);
    assert_int_equal(size0, size1);
    assert_true(h0 == h1);
}

static void test_urls(void **state)
{
    (void)state;
    eddy_error err = {0};
    assert_null(eddy_store_open("mysql://localhost/db", NULL, &err));
    assert_int_equal(err.code, EDDY_EUNSUPPORTED);
    assert_non_null(strstr(err.message, "\"mysql\""));
    assert_non_null(strstr(err.message, "postgres://"));
    assert_null(eddy_store_open("", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_store_open("sqlite:", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    eddy_store_options bad = {.sync = (eddy_sync_mode)9};
    char *path = new_path("url");
    assert_null(eddy_store_open(path, &bad, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    /* An event limit above what the decoders read back is refused. */
    eddy_store_options huge = {.max_event_bytes = EDDY_EVENT_MAX_BYTES + 1};
    assert_null(eddy_store_open(path, &huge, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "max_event_bytes"));

    /* A bare path and a sqlite: URL open the same file. */
    eddy_store *s = eddy_store_open(path, NULL, &err);
    assert_non_null(s);
    eddy_event *ev = conf_event("u.e", NULL, 0, 1);
    assert_int_equal(eddy_store_append(s, "u", EDDY_EXPECT_ANY, &ev, 1, NULL, &err),
                     EDDY_OK);
    eddy_store_close(s);
    char url[600];
    snprintf(url, sizeof url, "sqlite:%s", path);
    s = eddy_store_open(url, NULL, &err);
    assert_non_null(s);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 1);
    eddy_store_close(s);
    eddy_event_unref(ev);
    remove_db(path);
    free(path);
}

static int read_pragmas(eddy_txn *txn, void *arg, eddy_error *err)
{
    (void)err;
    sqlite3 *db = eddy_txn_sqlite(txn);
    int64_t *out = arg;
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &st, NULL);
    out[0] = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    out[1] = sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    return EDDY_OK;
}

static void test_pragmas(void **state)
{
    (void)state;
    char *path = new_path("pragma");
    eddy_error err = {0};
    static const int64_t want[] = {2, 1, 0}; /* FULL, NORMAL, OFF */
    for (int mode = 0; mode < 3; mode++) {
        eddy_store_options o = {.sync = (eddy_sync_mode)mode};
        eddy_store *s = eddy_store_open(path, &o, &err);
        assert_non_null(s);
        int64_t got[2] = {-1, -1};
        assert_int_equal(eddyi_store_write(s, read_pragmas, got, &err), EDDY_OK);
        assert_int_equal(got[0], want[mode]);
        assert_int_equal(got[1], 1);
        eddy_store_info info;
        assert_int_equal(eddy_store_info_get(s, &info, &err), EDDY_OK);
        assert_int_equal(info.sync, mode);
        assert_int_equal(info.schema_version, EDDYI_SQLITE_SCHEMA_VERSION);
        eddy_store_close(s);
    }
    assert_int_equal(raw_int(path, "PRAGMA application_id"), EDDYI_SQLITE_APP_ID);
    remove_db(path);
    free(path);
}

static void test_migrate_v1(void **state)
{
    (void)state;
    char *path = new_path("v1");
    /* A version-1 file as an older eddy wrote it, with one event. */
    eddy_event *ev = conf_event("old.event", NULL, 0, 7);
    char *payload = eddy_event_encode(ev, NULL);
    char *sql = NULL;
    size_t cap = strlen(payload) * 2 + 1024;
    sql = malloc(cap);
    char *quoted = sqlite3_mprintf("%Q", payload);
    snprintf(sql, cap,
             "BEGIN; %s INSERT INTO meta VALUES('eddy_schema_version', 1);"
             "INSERT INTO events(id, stream_id, stream_version, type, time_us,"
             " recorded_us, payload) VALUES('%s', 'old-1', 1, 'old.event', %lld,"
             " 1, %s);"
             "INSERT INTO streams VALUES('old-1', 1); COMMIT;",
             eddyi_sqlite_migrations[0], eddy_event_id(ev),
             (long long)eddy_event_time(ev), quoted);
    sqlite3_free(quoted);
    raw_exec(path, sql);
    free(sql);
    free(payload);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE "
                                   "name = 'events_by_type'"), 0);

    /* Read-only refuses to use it until upgraded, and changes nothing. */
    eddy_store_options ro = {.read_only = true};
    eddy_error err = {0};
    assert_null(eddy_store_open(path, &ro, &err));
    assert_int_equal(err.code, EDDY_EVERSION);

    eddy_store *s = eddy_store_open(path, NULL, &err);
    if (!s)
        fail_msg("open v1: %s", err.message);
    eddy_store_info info;
    assert_int_equal(eddy_store_info_get(s, &info, &err), EDDY_OK);
    assert_int_equal(info.schema_version, EDDYI_SQLITE_SCHEMA_VERSION);
    assert_int_equal(info.head, 1);
    eddy_cursor *c = NULL;
    eddy_record rec;
    assert_int_equal(eddy_store_read_stream(s, "old-1", 1, EDDY_FORWARD, 0, &c, &err),
                     EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_true(eddy_event_equal(rec.event, ev));
    eddy_cursor_free(c);
    /* Appends continue the old stream; snapshots (new in v2) work. */
    eddy_event *next = conf_event("old.event", NULL, 0, 8);
    eddy_append_result res;
    assert_int_equal(eddy_store_append(s, "old-1", 1, &next, 1, &res, &err), EDDY_OK);
    assert_int_equal(res.first_position, 2);
    json_t *st = json_pack("{s:i}", "n", 8);
    assert_int_equal(eddy_store_snapshot_save(s, "old-1", 2, 1, st, &err), EDDY_OK);
    json_decref(st);
    eddy_store_close(s);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE "
                                   "name IN ('events_by_type', 'events_by_time')"),
                     2);
    assert_int_equal(raw_int(path, "SELECT value FROM meta WHERE "
                                   "key = 'eddy_schema_version'"),
                     EDDYI_SQLITE_SCHEMA_VERSION);
    /* v3: the tables of the layers above the store came with the upgrade. */
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE "
                                   "type = 'table' AND name IN ("
                                   "'eddy_checkpoints', 'eddy_retries', "
                                   "'eddy_dead_letters', 'eddy_inbox', "
                                   "'eddy_outbox', 'eddy_projections', "
                                   "'eddy_sagas', 'eddy_saga_commands', "
                                   "'eddy_saga_timeouts', 'eddy_subscriptions')"),
                     10);
    /* Now the read-only open works, and refuses writes. */
    s = eddy_store_open(path, &ro, &err);
    assert_non_null(s);
    assert_int_equal(eddy_store_append(s, "old-1", EDDY_EXPECT_ANY, &next, 1, NULL,
                                       &err), EDDY_ESTATE);
    eddy_store_close(s);
    eddy_event_unref(next);
    eddy_event_unref(ev);
    remove_db(path);
    free(path);
}

static void test_refuse_foreign_and_newer(void **state)
{
    (void)state;
    eddy_error err = {0};
    /* Another application's SQLite database. */
    char *foreign = new_path("foreign");
    raw_exec(foreign, "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);"
                      "INSERT INTO customers(name) VALUES('ada');");
    assert_refused(foreign, EDDY_ECORRUPT, "is not an eddy store");

    /* A text file, short and long. */
    char *text = new_path("text");
    FILE *f = fopen(text, "w");
    for (int i = 0; i < 200; i++)
        fprintf(f, "line %d: this is a plain text file, not a database\n", i);
    fclose(f);
    assert_refused(text, EDDY_ECORRUPT, "is not an eddy store");
    char *shorttext = new_path("short");
    f = fopen(shorttext, "w");
    fputs("hello\n", f);
    fclose(f);
    assert_refused(shorttext, EDDY_ECORRUPT, "is not an eddy store");

    /* Our application id but no meta table. */
    char *nometa = new_path("nometa");
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; CREATE TABLE x(a);",
             EDDYI_SQLITE_APP_ID);
    raw_exec(nometa, sql);
    assert_refused(nometa, EDDY_ECORRUPT, "no store schema version");

    /* A store from a newer eddy. */
    char *newer = new_path("newer");
    eddy_store *s = eddy_store_open(newer, NULL, &err);
    assert_non_null(s);
    eddy_event *ev = conf_event("n.e", NULL, 0, 1);
    assert_int_equal(eddy_store_append(s, "n", EDDY_EXPECT_ANY, &ev, 1, NULL, &err),
                     EDDY_OK);
    eddy_event_unref(ev);
    eddy_store_close(s);
    raw_exec(newer, "UPDATE meta SET value = 7 WHERE key = 'eddy_schema_version';"
                    "PRAGMA journal_mode = DELETE;");
    char expect[96];
    snprintf(expect, sizeof expect,
             "has store schema version 7, this eddy supports up to %d",
             EDDYI_SQLITE_SCHEMA_VERSION);
    assert_refused(newer, EDDY_EVERSION, expect);

    /* Read-only on a missing file: not found, nothing created. */
    char *missing = new_path("missing");
    eddy_store_options ro = {.read_only = true};
    assert_null(eddy_store_open(missing, &ro, &err));
    assert_int_equal(err.code, EDDY_ENOTFOUND);
    assert_int_equal(access(missing, F_OK), -1);

    /* An empty file is initialised. */
    char *empty = new_path("empty");
    f = fopen(empty, "w");
    fclose(f);
    s = eddy_store_open(empty, NULL, &err);
    assert_non_null(s);
    eddy_store_close(s);
    assert_int_equal(raw_int(empty, "PRAGMA application_id"), EDDYI_SQLITE_APP_ID);

    char *all[] = {foreign, text, shorttext, nometa, newer, missing, empty};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        remove_db(all[i]);
        free(all[i]);
    }
}

static int rm_dir(void)
{
    return eddyt_rmtree(tmpdir);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    store_backend_fixture fx = {.name = "sqlite", .new_url = sqlite_new_url,
                                .drop_url = sqlite_drop_url};
    int failed = store_conformance_run(&fx);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_pragmas),
        cmocka_unit_test(test_migrate_v1),
        cmocka_unit_test(test_refuse_foreign_and_newer),
    };
    failed += cmocka_run_group_tests_name("sqlite file", tests, NULL, NULL);
    if (rm_dir() != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return failed ? 1 : 0;
}
