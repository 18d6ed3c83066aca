/*
 * tests/store_fixture.h - the store a layer test runs on (header only: every
 * test is its own program).
 *
 * EDDY_TEST_STORE picks the backend: "sqlite" (the default) or "postgres".
 * A test names its store by a file path as always and opens
 * eddyt_store_url(path): on SQLite that is the path itself; on PostgreSQL
 * the first call starts a throwaway server for the program
 * (tests/pg_test_server.h, stopped at exit) and each new path gets a fresh
 * database of its own, the same one every time the path is opened again
 * (a reopen after close, a forked child). ctest registers the PostgreSQL
 * runs as NAME_postgres (tests/CMakeLists.txt).
 *
 * A case that is about SQLite itself (its file, its escape hatch) starts
 * with EDDYT_SQLITE_ONLY("reason"): on PostgreSQL it is reported as skipped
 * with that reason.
 */
#ifndef EDDY_TESTS_STORE_FIXTURE_H
#define EDDY_TESTS_STORE_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/sql.h"
#include "eddy/store.h"

#ifdef EDDY_TEST_SERVERS
#include "pg_test_server.h"
#endif

/* True when the tests run on PostgreSQL (EDDY_TEST_STORE=postgres). */
static inline bool eddyt_pg(void)
{
    const char *e = getenv("EDDY_TEST_STORE");
    return e && (!strcmp(e, "postgres") || !strcmp(e, "postgresql"));
}

/* The name of the backend under test, for messages. */
static inline const char *eddyt_backend(void)
{
    return eddyt_pg() ? "postgres" : "sqlite";
}

#define EDDYT_SQLITE_ONLY(why)                                                 \
    do {                                                                       \
        if (eddyt_pg()) {                                                      \
            print_message("skipped on PostgreSQL: %s\n", why);                 \
            skip();                                                            \
        }                                                                      \
    } while (0)

#ifdef EDDY_TEST_SERVERS
#define EDDYT_MAX_STORES 512

struct eddyt_store_map {
    pthread_mutex_t mu;
    bool started;
    pid_t owner; /* the process that started the server stops it */
    pgt_server server;
    size_t n;
    struct {
        char path[256];
        char url[512];
    } entry[EDDYT_MAX_STORES];
};

static struct eddyt_store_map eddyt_stores = {
    .mu = PTHREAD_MUTEX_INITIALIZER};

static inline void eddyt_store_stop(void)
{
    if (eddyt_stores.started && eddyt_stores.owner == getpid())
        pgt_stop(&eddyt_stores.server);
}
#endif

/*
 * The store URL for `path` on the backend under test (borrowed: valid until
 * the program exits). On PostgreSQL a server that cannot be started, or a
 * database that cannot be made, ends the program with the reason (a test
 * never skips silently). Thread-safe.
 */
static inline const char *eddyt_store_url(const char *path)
{
    if (!eddyt_pg())
        return path;
#ifndef EDDY_TEST_SERVERS
    fprintf(stderr, "EDDY_TEST_STORE=postgres: this test program was built "
                    "without the PostgreSQL test server\n");
    exit(1);
#else
    struct eddyt_store_map *m = &eddyt_stores;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++) {
        if (!strcmp(m->entry[i].path, path)) {
            pthread_mutex_unlock(&m->mu);
            return m->entry[i].url;
        }
    }
    if (!m->started) {
        if (pgt_start(&m->server) != 0) {
            fprintf(stderr, "cannot start the PostgreSQL test server\n");
            exit(1);
        }
        m->started = true;
        m->owner = getpid();
        atexit(eddyt_store_stop);
    }
    if (m->n == EDDYT_MAX_STORES || strlen(path) >= sizeof m->entry[0].path) {
        fprintf(stderr, "store_fixture: too many stores or path too long\n");
        exit(1);
    }
    char db[64];
    if (pgt_new_db(&m->server, "t", db, sizeof db) != 0) {
        fprintf(stderr, "store_fixture: cannot create a database\n");
        exit(1);
    }
    size_t i = m->n;
    snprintf(m->entry[i].path, sizeof m->entry[i].path, "%s", path);
    pgt_url(&m->server, db, "", m->entry[i].url, sizeof m->entry[i].url);
    m->n++;
    pthread_mutex_unlock(&m->mu);
    return m->entry[i].url;
#endif
}

/* Opens the store for `path` on the backend under test. */
static inline eddy_store *eddyt_store_open(const char *path,
                                           const eddy_store_options *o,
                                           eddy_error *err)
{
    return eddy_store_open(eddyt_store_url(path), o, err);
}

static inline int eddyt_first_text(const eddy_row *row, void *user)
{
    const char *t = eddy_row_text(row, 0);
    snprintf(user, 128, "%s", t ? t : "(null)");
    return 1;
}

/*
 * The store's integrity after a crash, checked by the engine: SQLite's
 * integrity_check; on PostgreSQL (whose own recovery is not in question)
 * eddy's invariants: positions 1..head with no gap, and every stream's
 * version equal to its number of events. Writes "ok" or what is wrong to
 * `out` (128 bytes).
 */
static inline void eddyt_store_integrity(eddy_store *s, char out[128])
{
    eddy_error err = {0};
    int rc;
    if (!eddyt_pg()) {
        rc = eddy_store_sql_query(s, eddyt_first_text, out, &err,
                                  "PRAGMA integrity_check", NULL);
    } else {
        rc = eddy_store_sql_query(
            s, eddyt_first_text, out, &err,
            "SELECT CASE WHEN (SELECT count(*) FROM events) <> "
            "(SELECT COALESCE(max(position), 0) FROM events) "
            "THEN 'positions have gaps' "
            "WHEN EXISTS (SELECT 1 FROM eddy_streams s WHERE s.version <> "
            "(SELECT count(*) FROM events e WHERE e.stream_id = s.stream_id)) "
            "THEN 'a stream version differs from its event count' "
            "ELSE 'ok' END",
            NULL);
    }
    if (rc != 1)
        snprintf(out, 128, "integrity query failed: %.100s", err.message);
}

#endif
