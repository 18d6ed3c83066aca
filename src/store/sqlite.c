/*
 * src/store/sqlite.c - the SQLite backend of the event store.
 *
 * One write connection, used only by the store's writer (backend.h), and a pool
 * of read connections (WAL mode: readers never block the writer nor each
 * other). Every statement is prepared once per connection and cached.
 *
 * The file: application_id 0x65646479 ('eddy') and a meta table holding
 * 'eddy_schema_version'. Positions are the events table's INTEGER PRIMARY
 * KEY without AUTOINCREMENT: SQLite gives a new row max(rowid)+1, rows are
 * never deleted, and a rolled-back insert leaves no trace, so positions are
 * gap-free by construction.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "eddy/sqlite.h"

#include "../core/event_internal.h"
#include "../core/internal.h"
#include "backend.h"
#include "sqlite_schema.h"

#define STMT_CACHE 128
#define POOL_IDLE_MAX 8

typedef struct conn {
    sqlite3 *db;
    struct {
        const char *key; /* static SQL: compared by pointer */
        char *sql;       /* dynamic SQL: compared by content */
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    unsigned next_evict;
    struct conn *next_idle;
} conn;

typedef struct sqlite_impl {
    char *path;
    /* What reader connections open: the path, or, for a store on media
     * this process cannot write (no -shm can be created), a file: URI with
     * immutable=1. */
    char *reader_path;
    int reader_flags;
    eddy_store_options opts;
    conn *writer; /* NULL when read-only */
    pthread_mutex_t pool_mu;
    conn *idle;
    size_t idle_count;
    /* The checkpointer: copies the write-ahead log into the main file from
     * a connection of its own, so the writer never stalls on it. */
    pthread_t ckpt_thread;
    bool ckpt_started;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cond;
    bool ckpt_wanted, ckpt_stop;
} sqlite_impl;

/* WAL pages after which the checkpointer runs (SQLite's own default for
 * its automatic checkpoint). */
#define CHECKPOINT_PAGES 1000

/* ---- errors ------------------------------------------------------------ */

static int code_for(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EDDY_EBUSY;
    case SQLITE_NOMEM:
        return EDDY_ENOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return EDDY_ECORRUPT;
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    default:
        return EDDY_EIO;
    }
}

static int db_error(sqlite3 *db, int rc, eddy_error *err, const char *what)
{
    return eddyi_error(err, code_for(rc), "%s: %s", what,
                       db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* ---- connections -------------------------------------------------------- */

static void conn_free(conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < STMT_CACHE; i++) {
        sqlite3_finalize(c->cache[i].st);
        free(c->cache[i].sql);
    }
    sqlite3_close(c->db);
    free(c);
}

static int conn_open(const char *path, int flags, const eddy_store_options *o,
                     conn **out, eddy_error *err)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int code = db_error(c->db, rc, err, path);
        conn_free(c);
        return code;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, o->busy_timeout_ms);
    *out = c;
    return EDDY_OK;
}

/* Runs SQL without results. */
static int conn_exec(conn *c, const char *sql, eddy_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int code = eddyi_error(err, code_for(rc), "%s: %s", sql,
                               msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return code;
    }
    return EDDY_OK;
}

/*
 * A portable statement (eddy/sql.h) uses $1, $2, ...: SQLite reads "$1" as a
 * parameter NAMED "$1", numbered by first appearance, so "$2 ... $1" would
 * swap them. Rewriting to ?1, ?2 (numbered exactly) outside string
 * literals and quoted identifiers keeps the numbers. Returns a malloc'd
 * copy, or NULL when out of memory.
 */
static char *portable_to_sqlite(const char *sql)
{
    char *out = eddyi_strdup(sql);
    if (!out)
        return NULL;
    char quote = 0;
    for (char *p = out; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            *p = '?';
        }
    }
    return out;
}

/*
 * The cached prepared statement for `sql`, reset and ready to bind. Static
 * strings hit by pointer; `dynamic` SQL is matched by content. `portable`:
 * $N parameters (see portable_to_sqlite).
 */
static sqlite3_stmt *conn_stmt_ex(conn *c, const char *sql, bool dynamic,
                                  bool portable, eddy_error *err)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        if (!c->cache[i].st)
            continue;
        if ((!dynamic && c->cache[i].key == sql) ||
            (dynamic && c->cache[i].sql && strcmp(c->cache[i].sql, sql) == 0))
            return c->cache[i].st;
    }
    sqlite3_stmt *st = NULL;
    char *text = portable ? portable_to_sqlite(sql) : NULL;
    if (portable && !text) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    int rc = sqlite3_prepare_v3(c->db, text ? text : sql, -1,
                                SQLITE_PREPARE_PERSISTENT, &st, NULL);
    free(text);
    if (rc != SQLITE_OK) {
        eddyi_error(err, code_for(rc), "preparing \"%.120s\": %s", sql,
                    sqlite3_errmsg(c->db));
        return NULL;
    }
    char *copy = NULL;
    if (dynamic && !(copy = eddyi_strdup(sql))) {
        sqlite3_finalize(st);
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    int slot = -1;
    for (int i = 0; i < STMT_CACHE && slot < 0; i++)
        if (!c->cache[i].st)
            slot = i;
    if (slot < 0) {
        slot = (int)(c->next_evict++ % STMT_CACHE);
        sqlite3_finalize(c->cache[slot].st);
        free(c->cache[slot].sql);
    }
    c->cache[slot].key = dynamic ? NULL : sql;
    c->cache[slot].sql = copy;
    c->cache[slot].st = st;
    return st;
}

static sqlite3_stmt *conn_stmt(conn *c, const char *sql, bool dynamic,
                               eddy_error *err)
{
    return conn_stmt_ex(c, sql, dynamic, false, err);
}

static int reader_get(sqlite_impl *im, conn **out, eddy_error *err)
{
    pthread_mutex_lock(&im->pool_mu);
    conn *c = im->idle;
    if (c) {
        im->idle = c->next_idle;
        im->idle_count--;
    }
    pthread_mutex_unlock(&im->pool_mu);
    if (c) {
        *out = c;
        return EDDY_OK;
    }
    int rc = conn_open(im->reader_path, im->reader_flags, &im->opts, out, err);
    if (rc == EDDY_OK) /* pages read through a mapping: no copy per read */
        sqlite3_exec((*out)->db, "PRAGMA mmap_size=268435456", NULL, NULL,
                     NULL);
    return rc;
}

static void reader_put(sqlite_impl *im, conn *c)
{
    pthread_mutex_lock(&im->pool_mu);
    if (im->idle_count < POOL_IDLE_MAX) {
        c->next_idle = im->idle;
        im->idle = c;
        im->idle_count++;
        c = NULL;
    }
    pthread_mutex_unlock(&im->pool_mu);
    conn_free(c);
}

/* ---- opening and migrations --------------------------------------------- */

/* Reads the schema version of an open connection: 0 for an empty database,
 * -1 (with err) for something that is not an eddy store. */
static int schema_version_of(conn *c, const char *path, int *version,
                             eddy_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA application_id", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int code = code_for(rc);
        const char *msg = sqlite3_errmsg(c->db);
        sqlite3_finalize(st);
        if (code == EDDY_ECORRUPT)
            return eddyi_error(err, EDDY_ECORRUPT,
                               "%s is not an eddy store (%s)", path, msg);
        return eddyi_error(err, code, "%s: %s", path, msg);
    }
    int64_t app_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);

    rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_master", -1,
                            &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int code = db_error(c->db, rc, err, path);
        sqlite3_finalize(st);
        return code;
    }
    int64_t objects = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);

    if (app_id == 0 && objects == 0) {
        *version = 0;
        return EDDY_OK;
    }
    if (app_id != EDDYI_SQLITE_APP_ID)
        return eddyi_error(err, EDDY_ECORRUPT,
                           "%s is not an eddy store (an SQLite database "
                           "with application id 0x%llx)",
                           path, (unsigned long long)app_id);
    rc = sqlite3_prepare_v2(c->db,
                            "SELECT value FROM meta WHERE key = "
                            "'eddy_schema_version'",
                            -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return eddyi_error(err, EDDY_ECORRUPT,
                           "%s is not an eddy store (no store schema version)",
                           path);
    }
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (v < 1)
        return eddyi_error(err, EDDY_ECORRUPT,
                           "%s is not an eddy store (schema version %lld)",
                           path, (long long)v);
    if (v > EDDYI_SQLITE_SCHEMA_VERSION)
        return eddyi_error(err, EDDY_EVERSION,
                           "%s has store schema version %lld, this eddy "
                           "supports up to %d",
                           path, (long long)v, EDDYI_SQLITE_SCHEMA_VERSION);
    *version = (int)v;
    return EDDY_OK;
}

/*
 * Looks at the file through a read-only connection before anything writes
 * to it. `*create` is set when there is nothing yet (missing/empty file).
 */
static int inspect(const sqlite_impl *im, int *version, bool *create,
                   eddy_error *err)
{
    struct stat sb;
    *create = false;
    if (stat(im->path, &sb) != 0 || sb.st_size == 0) {
        if (im->opts.read_only)
            return eddyi_error(err, EDDY_ENOTFOUND, "%s: no such store",
                               im->path);
        *create = true;
        *version = 0;
        return EDDY_OK;
    }
    if (S_ISDIR(sb.st_mode))
        return eddyi_error(err, EDDY_EIO, "%s is a directory", im->path);
    conn *c = NULL;
    int rc = conn_open(im->reader_path, im->reader_flags, &im->opts, &c, err);
    if (rc == EDDY_OK)
        rc = schema_version_of(c, im->path, version, err);
    conn_free(c);
    return rc;
}

/* The size of PATH-wal: 0 when there is none. */
static int64_t wal_bytes(const char *path)
{
    char buf[4096];
    struct stat sb;
    if ((size_t)snprintf(buf, sizeof buf, "%s-wal", path) >= sizeof buf)
        return -1;
    return stat(buf, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* Whether the folder holding `path` takes new files (the -shm, -wal). */
static bool folder_writable(const char *path)
{
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s", path) >= sizeof dir)
        return true;
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    return access(dir, W_OK) == 0;
}

/* "file:" + `path` percent-encoded + "?immutable=1" (malloc'd). */
static char *immutable_uri(const char *path)
{
    size_t n = strlen(path);
    char *uri = malloc(n * 3 + 32);
    if (!uri)
        return NULL;
    memcpy(uri, "file:", 5);
    size_t k = 5;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || strchr("/._-~", *p))
            uri[k++] = (char)*p;
        else
            k += (size_t)snprintf(uri + k, 4, "%%%02X", *p);
    }
    snprintf(uri + k, 16, "?immutable=1");
    return uri;
}

/*
 * A read-only open of a WAL store on media this process cannot write (a
 * read-only mount, a folder it may not write): SQLite cannot create the
 * -shm file it coordinates readers through. When no -wal holds commits the
 * main file is the whole store and nothing can change it from here, so it
 * is opened as immutable. Otherwise the error says what to do.
 */
static int inspect_read_only(sqlite_impl *im, int *version, bool *create,
                             eddy_error *err)
{
    eddy_error first = {0};
    int rc = inspect(im, version, create, &first);
    if (rc == EDDY_OK || rc == EDDY_ENOTFOUND || rc == EDDY_ECORRUPT ||
        rc == EDDY_EVERSION || folder_writable(im->path)) {
        if (rc != EDDY_OK && err)
            *err = first;
        return rc;
    }
    if (wal_bytes(im->path) != 0)
        return eddyi_error(err, EDDY_EIO,
                           "%s: cannot read the store: the folder is not "
                           "writable and %s-wal holds commits not yet in the "
                           "main file; open the store once where it can be "
                           "written (or copy it with `eddy store backup`)",
                           im->path, im->path);
    char *uri = immutable_uri(im->path);
    if (!uri)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    free(im->reader_path);
    im->reader_path = uri;
    im->reader_flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
    rc = inspect(im, version, create, err);
    if (rc == EDDY_OK)
        EDDYI_LOG(EDDY_LOG_INFO, "store", "%s: on read-only media, read as "
                  "an immutable file", im->path);
    return rc;
}

static int migrate(sqlite_impl *im, eddy_error *err)
{
    conn *w = im->writer;
    int rc = conn_exec(w, "BEGIN IMMEDIATE", err);
    if (rc != EDDY_OK)
        return rc;
    int version = 0;
    /* Checked again inside the write lock: another process may have
     * created or upgraded the file since inspect(). */
    rc = schema_version_of(w, im->path, &version, err);
    for (int v = version; rc == EDDY_OK && v < EDDYI_SQLITE_SCHEMA_VERSION; v++) {
        rc = conn_exec(w, eddyi_sqlite_migrations[v], err);
        if (rc == EDDY_OK) {
            char sql[160];
            snprintf(sql, sizeof sql,
                     "INSERT OR REPLACE INTO meta(key, value) "
                     "VALUES('eddy_schema_version', %d)", v + 1);
            rc = conn_exec(w, sql, err);
        }
        if (rc == EDDY_OK)
            EDDYI_LOG(EDDY_LOG_INFO, "store", "%s: store schema %d -> %d",
                      im->path, v, v + 1);
    }
    if (rc == EDDY_OK)
        return conn_exec(w, "COMMIT", err);
    conn_exec(w, "ROLLBACK", NULL);
    return rc;
}

/*
 * Readers close first and the writer last, after copying the write-ahead
 * log into the main file: the last connection to close removes the -wal,
 * so after a clean close the store file alone holds every commit (a copy
 * of just the .db is a complete store). Another process still holding the
 * store open keeps its -wal, but the checkpoint has copied what is
 * committed.
 */
static void sqlite_close(void *impl)
{
    sqlite_impl *im = impl;
    if (!im)
        return;
    if (im->ckpt_started) {
        pthread_mutex_lock(&im->ckpt_mu);
        im->ckpt_stop = true;
        pthread_cond_signal(&im->ckpt_cond);
        pthread_mutex_unlock(&im->ckpt_mu);
        pthread_join(im->ckpt_thread, NULL);
    }
    pthread_cond_destroy(&im->ckpt_cond);
    pthread_mutex_destroy(&im->ckpt_mu);
    while (im->idle) {
        conn *c = im->idle;
        im->idle = c->next_idle;
        conn_free(c);
    }
    if (im->writer) {
        eddy_error e = {0};
        if (conn_exec(im->writer, "PRAGMA wal_checkpoint(TRUNCATE)", &e) !=
            EDDY_OK)
            EDDYI_LOG(EDDY_LOG_WARN, "store", "%s: checkpoint at close: %s",
                      im->path, e.message);
    }
    conn_free(im->writer);
    pthread_mutex_destroy(&im->pool_mu);
    free(im->reader_path);
    free(im->path);
    free(im);
}

/*
 * SQLite's automatic checkpoint runs inside the commit that crosses its
 * threshold, on the committing connection: the store's writer would stop
 * for as long as copying the log into the main file and syncing it takes
 * (tens to hundreds of milliseconds on a busy disk), and every appender
 * with it. The writer's automatic checkpoint is off; its WAL hook wakes
 * this thread, which runs a PASSIVE checkpoint on its own connection while
 * the writer goes on appending to the log.
 */
static int wal_hook(void *user, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    sqlite_impl *im = user;
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&im->ckpt_mu);
        im->ckpt_wanted = true;
        pthread_cond_signal(&im->ckpt_cond);
        pthread_mutex_unlock(&im->ckpt_mu);
    }
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
    eddyi_thread_name("eddy-checkpoint");
    sqlite_impl *im = arg;
    conn *c = NULL;
    eddy_error err = {0};
    if (conn_open(im->path, SQLITE_OPEN_READWRITE, &im->opts, &c, &err) !=
        EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "store", "%s: no checkpointer (%s); the "
                  "log is copied at close", im->path, err.message);
        return NULL;
    }
    static const char *const sync_sql[] = {"PRAGMA synchronous=FULL",
                                           "PRAGMA synchronous=NORMAL",
                                           "PRAGMA synchronous=OFF"};
    sqlite3_exec(c->db, sync_sql[im->opts.sync], NULL, NULL, NULL);
    pthread_mutex_lock(&im->ckpt_mu);
    while (!im->ckpt_stop) {
        if (!im->ckpt_wanted) {
            pthread_cond_wait(&im->ckpt_cond, &im->ckpt_mu);
            continue;
        }
        im->ckpt_wanted = false;
        pthread_mutex_unlock(&im->ckpt_mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL,
                                           SQLITE_CHECKPOINT_PASSIVE, &log,
                                           &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            EDDYI_LOG(EDDY_LOG_WARN, "store", "%s: checkpoint: %s", im->path,
                      sqlite3_errmsg(c->db));
        pthread_mutex_lock(&im->ckpt_mu);
    }
    pthread_mutex_unlock(&im->ckpt_mu);
    conn_free(c);
    return NULL;
}

static int sqlite_open(const char *location, const eddy_store_options *opts,
                       void **impl, eddy_error *err)
{
    sqlite_impl *im = calloc(1, sizeof *im);
    if (!im)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    pthread_mutex_init(&im->pool_mu, NULL);
    pthread_mutex_init(&im->ckpt_mu, NULL);
    pthread_cond_init(&im->ckpt_cond, NULL);
    im->opts = *opts;
    int rc = EDDY_ENOMEM;
    if (!(im->path = eddyi_strdup(location)) ||
        !(im->reader_path = eddyi_strdup(location))) {
        eddyi_error(err, rc, "out of memory");
        goto fail;
    }
    im->reader_flags = SQLITE_OPEN_READONLY;
    int version = 0;
    bool create = false;
    rc = opts->read_only ? inspect_read_only(im, &version, &create, err)
                         : inspect(im, &version, &create, err);
    if (rc != EDDY_OK)
        goto fail;
    if (opts->read_only) {
        if (version < EDDYI_SQLITE_SCHEMA_VERSION) {
            rc = eddyi_error(err, EDDY_EVERSION,
                             "%s has store schema version %d; open it "
                             "writable once to upgrade it to %d",
                             im->path, version, EDDYI_SQLITE_SCHEMA_VERSION);
            goto fail;
        }
    } else {
        rc = conn_open(im->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                       opts, &im->writer, err);
        if (rc != EDDY_OK)
            goto fail;
        static const char *sync_sql[] = {"PRAGMA synchronous=FULL",
                                         "PRAGMA synchronous=NORMAL",
                                         "PRAGMA synchronous=OFF"};
        rc = conn_exec(im->writer, "PRAGMA journal_mode=WAL", err);
        if (rc == EDDY_OK)
            rc = conn_exec(im->writer, sync_sql[opts->sync], err);
        /* The savepoint around each job of a group commit keeps its undo
         * pages in a statement journal; past 64 KiB SQLite spills it to a
         * temporary file (created, written and unlinked per commit, ~1 in
         * 3 commits of the demo). In memory it costs no system call; its
         * size is bounded by the pages one group commit changes. */
        if (rc == EDDY_OK)
            rc = conn_exec(im->writer, "PRAGMA temp_store=MEMORY", err);
        if (rc == EDDY_OK)
            rc = migrate(im, err);
        if (rc == EDDY_OK)
            rc = conn_exec(im->writer, "PRAGMA wal_autocheckpoint=0", err);
        if (rc != EDDY_OK)
            goto fail;
        sqlite3_wal_hook(im->writer->db, wal_hook, im);
        if (pthread_create(&im->ckpt_thread, NULL, checkpointer_main, im) ==
            0)
            im->ckpt_started = true;
        else /* the log is then copied at close, or by another process */
            conn_exec(im->writer, "PRAGMA wal_autocheckpoint=1000", NULL);
    }
    *impl = im;
    return EDDY_OK;
fail:
    sqlite_close(im);
    return rc;
}

/* ---- the write transaction ---------------------------------------------- */

static int step_done(conn *c, sqlite3_stmt *st, eddy_error *err,
                     const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_error(c->db, rc, err, what);
    return EDDY_OK;
}

static int run_static(conn *c, const char *sql, eddy_error *err)
{
    sqlite3_stmt *st = conn_stmt(c, sql, false, err);
    if (!st)
        return err ? err->code : EDDY_EIO;
    return step_done(c, st, err, sql);
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
/* Savepoint statements by depth: static strings, so they are prepared once
 * and found in the statement cache by address. */
#define SP_DEPTHS 8
#define SP_NAME(d) "eddy_sp" #d
#define SP_ROW(d)                                                              \
    {"SAVEPOINT " SP_NAME(d), "RELEASE " SP_NAME(d),                          \
     "ROLLBACK TO " SP_NAME(d)}
static const char *const SQL_SP[SP_DEPTHS][3] = {
    SP_ROW(0), SP_ROW(1), SP_ROW(2), SP_ROW(3),
    SP_ROW(4), SP_ROW(5), SP_ROW(6), SP_ROW(7)};
enum { SP_BEGIN, SP_RELEASE, SP_ROLLBACK };

static int sp_check(int depth, eddy_error *err)
{
    if (depth < 0 || depth >= SP_DEPTHS)
        return eddyi_error(err, EDDY_EINVAL,
                           "savepoints nested %d deep (at most %d)", depth,
                           SP_DEPTHS);
    return EDDY_OK;
}

static int sqlite_write_begin(void *impl, eddy_error *err)
{
    return run_static(((sqlite_impl *)impl)->writer, SQL_BEGIN, err);
}

static int sqlite_write_commit(void *impl, eddy_error *err)
{
    return run_static(((sqlite_impl *)impl)->writer, SQL_COMMIT, err);
}

static void sqlite_write_rollback(void *impl)
{
    conn *w = ((sqlite_impl *)impl)->writer;
    if (!sqlite3_get_autocommit(w->db))
        run_static(w, SQL_ROLLBACK, NULL);
}

static int sqlite_savepoint(void *impl, int depth, eddy_error *err)
{
    int rc = sp_check(depth, err);
    return rc != EDDY_OK ? rc
                         : run_static(((sqlite_impl *)impl)->writer,
                                      SQL_SP[depth][SP_BEGIN], err);
}

static void sqlite_savepoint_rollback(void *impl, int depth)
{
    if (sp_check(depth, NULL) != EDDY_OK)
        return;
    conn *w = ((sqlite_impl *)impl)->writer;
    run_static(w, SQL_SP[depth][SP_ROLLBACK], NULL);
    run_static(w, SQL_SP[depth][SP_RELEASE], NULL);
}

/* A release that fails rolls the savepoint back (backend.h). */
static int sqlite_savepoint_release(void *impl, int depth, eddy_error *err)
{
    int rc = sp_check(depth, err);
    if (rc != EDDY_OK)
        return rc;
    rc = run_static(((sqlite_impl *)impl)->writer, SQL_SP[depth][SP_RELEASE],
                    err);
    if (rc != EDDY_OK)
        sqlite_savepoint_rollback(impl, depth);
    return rc;
}

static void *sqlite_write_native(void *impl)
{
    return ((sqlite_impl *)impl)->writer->db;
}

/* ---- append ------------------------------------------------------------- */

static const char SQL_STREAM_VERSION[] =
    "SELECT version FROM streams WHERE stream_id = ?1";
static const char SQL_INSERT_EVENT[] =
    "INSERT INTO events(id, stream_id, stream_version, type, time_us, "
    "recorded_us, payload, correlation_id, causation_id, source, subject) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
static const char SQL_UPSERT_STREAM[] =
    "INSERT INTO streams(stream_id, version) VALUES(?1, ?2) "
    "ON CONFLICT(stream_id) DO UPDATE SET version = excluded.version";
static const char SQL_EVENT_BY_ID[] =
    "SELECT position, stream_id, stream_version, payload FROM events "
    "WHERE id = ?1";
static const char SQL_DELETE_FROM[] = "DELETE FROM events WHERE position >= ?1";

static int stream_version_on(conn *c, const char *stream_id, int64_t *version,
                             eddy_error *err)
{
    sqlite3_stmt *st = conn_stmt(c, SQL_STREAM_VERSION, false, err);
    if (!st)
        return err ? err->code : EDDY_EIO;
    sqlite3_bind_text(st, 1, stream_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        *version = 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(c->db, rc, err, "reading a stream version");
    return EDDY_OK;
}

/* Inserts one event; returns the raw SQLite code. */
static int insert_event(conn *w, sqlite3_stmt *ins, const char *stream_id,
                        int64_t version, const eddyi_pending *p,
                        int64_t recorded_us)
{
    int64_t t = eddy_event_time(p->event);
    sqlite3_bind_text(ins, 1, eddy_event_id(p->event), -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, stream_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, version);
    sqlite3_bind_text(ins, 4, eddy_event_type(p->event), -1, SQLITE_STATIC);
    if (t)
        sqlite3_bind_int64(ins, 5, t);
    else
        sqlite3_bind_null(ins, 5);
    sqlite3_bind_int64(ins, 6, recorded_us);
    sqlite3_bind_text(ins, 7, p->payload, (int)p->len, SQLITE_STATIC);
    const char *attrs[4] = {eddy_event_correlation_id(p->event),
                            eddy_event_causation_id(p->event),
                            eddy_event_source(p->event),
                            eddy_event_subject(p->event)};
    for (int i = 0; i < 4; i++) {
        if (attrs[i])
            sqlite3_bind_text(ins, 8 + i, attrs[i], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(ins, 8 + i);
    }
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    EDDYI_UNUSED(w);
    return rc;
}

static int set_stream_version(conn *w, const char *stream_id, int64_t version,
                              eddy_error *err)
{
    sqlite3_stmt *st = conn_stmt(w, SQL_UPSERT_STREAM, false, err);
    if (!st)
        return err ? err->code : EDDY_EIO;
    sqlite3_bind_text(st, 1, stream_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    return step_done(w, st, err, "updating a stream version");
}

/* How an event of an append relates to what is stored. */
enum { EV_NEW, EV_SAME };

/*
 * The careful path, taken when the fast path hit an id that is already
 * stored: classify every event (new / stored identically / stored
 * differently), succeed without a version check when all are stored
 * identically, else append the new ones.
 */
static int append_slow(conn *w, const char *stream_id, int64_t expected,
                       const eddyi_pending *ev, size_t count,
                       int64_t recorded_us, eddy_append_result *res,
                       eddy_error *err)
{
    unsigned char *state = calloc(count, 1);
    if (!state)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = EDDY_OK;
    size_t stored = 0;
    int64_t min_pos = 0, max_pos = 0, max_ver = 0;
    sqlite3_stmt *sel = conn_stmt(w, SQL_EVENT_BY_ID, false, err);
    if (!sel) {
        rc = err ? err->code : EDDY_EIO;
        goto done;
    }
    for (size_t i = 0; i < count && rc == EDDY_OK; i++) {
        const char *id = eddy_event_id(ev[i].event);
        sqlite3_bind_text(sel, 1, id, -1, SQLITE_STATIC);
        int s = sqlite3_step(sel);
        if (s == SQLITE_ROW) {
            int64_t pos = sqlite3_column_int64(sel, 0);
            const char *sid = (const char *)sqlite3_column_text(sel, 1);
            int64_t ver = sqlite3_column_int64(sel, 2);
            const char *payload = (const char *)sqlite3_column_text(sel, 3);
            size_t plen = (size_t)sqlite3_column_bytes(sel, 3);
            bool same = sid && strcmp(sid, stream_id) == 0;
            if (same && !(plen == ev[i].len &&
                          memcmp(payload, ev[i].payload, plen) == 0)) {
                eddy_event *old = eddy_event_decode(payload, plen, NULL);
                same = old && eddy_event_equal(old, ev[i].event);
                eddy_event_unref(old);
            }
            if (!same && sid && strcmp(sid, stream_id) != 0) {
                rc = eddyi_error(err, EDDY_EDUPLICATE,
                                 "event id %s is already stored in stream %s "
                                 "(version %lld), not in stream %s",
                                 id, sid, (long long)ver, stream_id);
            } else if (!same) {
                rc = eddyi_error(err, EDDY_EDUPLICATE,
                                 "event id %s is already stored (stream %s, "
                                 "version %lld) with different content",
                                 id, sid ? sid : "?", (long long)ver);
            } else {
                state[i] = EV_SAME;
                stored++;
                if (!min_pos || pos < min_pos)
                    min_pos = pos;
                if (pos > max_pos)
                    max_pos = pos;
                if (ver > max_ver)
                    max_ver = ver;
            }
        } else if (s != SQLITE_DONE) {
            rc = db_error(w->db, s, err, "looking up an event id");
        }
        sqlite3_reset(sel);
    }
    if (rc != EDDY_OK)
        goto done;
    if (stored == count) { /* a retried append: report what is stored */
        res->first_position = min_pos;
        res->last_position = max_pos;
        res->stream_version = max_ver;
        goto done;
    }
    int64_t version = 0;
    if ((rc = stream_version_on(w, stream_id, &version, err)) != EDDY_OK ||
        (rc = eddyi_expected_check(stream_id, expected, version, err)) != EDDY_OK)
        goto done;
    sqlite3_stmt *ins = conn_stmt(w, SQL_INSERT_EVENT, false, err);
    if (!ins) {
        rc = err ? err->code : EDDY_EIO;
        goto done;
    }
    int64_t first = 0;
    for (size_t i = 0; i < count; i++) {
        if (state[i] == EV_SAME)
            continue;
        int s = insert_event(w, ins, stream_id, version + 1, &ev[i],
                             recorded_us);
        if (s != SQLITE_DONE) {
            if ((s & 0xff) == SQLITE_CONSTRAINT)
                rc = eddyi_error(err, EDDY_EINVAL,
                                 "stream %s: event id %s appears twice in "
                                 "one append", stream_id,
                                 eddy_event_id(ev[i].event));
            else
                rc = db_error(w->db, s, err, "inserting an event");
            goto done; /* the caller's savepoint undoes the inserts */
        }
        version++;
        int64_t pos = sqlite3_last_insert_rowid(w->db);
        if (!first)
            first = pos;
        res->last_position = pos;
    }
    res->first_position = first;
    res->stream_version = version;
    rc = set_stream_version(w, stream_id, version, err);
done:
    free(state);
    return rc;
}

static int sqlite_append(void *impl, const char *stream_id, int64_t expected,
                         const eddyi_pending *ev, size_t count,
                         int64_t recorded_us, eddy_append_result *res,
                         eddy_error *err)
{
    sqlite_impl *im = impl;
    conn *w = im->writer;
    int64_t version = 0;
    int rc = stream_version_on(w, stream_id, &version, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_stmt *ins = conn_stmt(w, SQL_INSERT_EVENT, false, err);
    if (!ins)
        return err ? err->code : EDDY_EIO;
    /* Fast path: insert everything; a known id sends us to the slow path
     * (and a known id may also explain a version mismatch: a retry). */
    int64_t first = 0;
    bool conflict = eddyi_expected_check(stream_id, expected, version, NULL) != EDDY_OK;
    for (size_t i = 0; i < count && !conflict; i++) {
        int s = insert_event(w, ins, stream_id, version + 1, &ev[i],
                             recorded_us);
        if (s == SQLITE_DONE) {
            version++;
            int64_t pos = sqlite3_last_insert_rowid(w->db);
            if (!first)
                first = pos;
            res->last_position = pos;
            continue;
        }
        if ((s & 0xff) != SQLITE_CONSTRAINT)
            return db_error(w->db, s, err, "inserting an event");
        conflict = true;
    }
    if (!conflict) {
        res->first_position = first;
        res->stream_version = version;
        return set_stream_version(w, stream_id, version, err);
    }
    if (first) { /* undo the partial fast path; positions stay gap-free */
        sqlite3_stmt *del = conn_stmt(w, SQL_DELETE_FROM, false, err);
        if (!del)
            return err ? err->code : EDDY_EIO;
        sqlite3_bind_int64(del, 1, first);
        if ((rc = step_done(w, del, err, "undoing an append")) != EDDY_OK)
            return rc;
    }
    memset(res, 0, sizeof *res);
    return append_slow(w, stream_id, expected, ev, count, recorded_us, res, err);
}

/* ---- snapshots ---------------------------------------------------------- */

static const char SQL_SNAPSHOT_SAVE[] =
    "INSERT OR REPLACE INTO snapshots(stream_id, version, schema_version, "
    "state, taken_us) VALUES(?1, ?2, ?3, ?4, ?5)";
static const char SQL_SNAPSHOT_LOAD[] =
    "SELECT version, schema_version, state FROM snapshots WHERE stream_id = ?1 "
    "ORDER BY version DESC LIMIT 1";

static int sqlite_snapshot_save(void *impl, const char *stream_id,
                                int64_t version, int schema_version,
                                const char *state, int64_t taken_us,
                                eddy_error *err)
{
    conn *w = ((sqlite_impl *)impl)->writer;
    int64_t current = 0;
    int rc = stream_version_on(w, stream_id, &current, err);
    if (rc != EDDY_OK)
        return rc;
    if (version > current)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: snapshot version %lld is beyond the "
                           "stream's version %lld",
                           stream_id, (long long)version, (long long)current);
    sqlite3_stmt *st = conn_stmt(w, SQL_SNAPSHOT_SAVE, false, err);
    if (!st)
        return err ? err->code : EDDY_EIO;
    sqlite3_bind_text(st, 1, stream_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_int(st, 3, schema_version);
    sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, taken_us);
    return step_done(w, st, err, "saving a snapshot");
}

static int sqlite_snapshot_load(void *impl, const char *stream_id,
                                int64_t *version, int *schema_version,
                                char **state, eddy_error *err)
{
    sqlite_impl *im = impl;
    conn *c = NULL;
    int rc = reader_get(im, &c, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_stmt *st = conn_stmt(c, SQL_SNAPSHOT_LOAD, false, err);
    if (!st) {
        rc = err ? err->code : EDDY_EIO;
        goto out;
    }
    sqlite3_bind_text(st, 1, stream_id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        *schema_version = sqlite3_column_int(st, 1);
        *state = eddyi_strdup((const char *)sqlite3_column_text(st, 2));
        if (!*state)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    } else if (s == SQLITE_DONE) {
        rc = eddyi_error(err, EDDY_ENOTFOUND, "stream %s has no snapshot",
                         stream_id);
    } else {
        rc = db_error(c->db, s, err, "loading a snapshot");
    }
    sqlite3_reset(st);
out:
    reader_put(im, c);
    return rc;
}

/* ---- reads -------------------------------------------------------------- */

void eddyi_rows_clear(eddyi_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        eddy_event_unref(rows[i].event);
        free(rows[i].stream_id);
        rows[i].event = NULL;
        rows[i].stream_id = NULL;
    }
}

/* Builds the page query for `spec` into a malloc'd string. */
static char *page_sql(const eddyi_read_spec *spec)
{
    size_t cap = 512 + spec->type_count * 4 + spec->prefix_count * 40;
    char *sql = malloc(cap);
    if (!sql)
        return NULL;
    const char *key = spec->stream_id ? "stream_version" : "position";
    /* Over the global log with several types or type prefixes, the planner
     * would merge the type index's ranges and sort every match from the
     * start position on, for each page: the position order itself (the
     * table's key) with the filter checked per row reads each row once.
     * One exact type keeps its (type, position) index. */
    bool filtered = spec->type_count + spec->prefix_count > 0;
    bool one_type = spec->type_count == 1 && spec->prefix_count == 0;
    bool by_position = !spec->stream_id && !spec->event_id && filtered &&
                       !one_type;
    size_t n = (size_t)snprintf(
        sql, cap,
        "SELECT position, stream_id, stream_version, recorded_us, payload "
        "FROM events%s WHERE %s %s %s ?",
        by_position ? " NOT INDEXED" : "",
        spec->stream_id ? "stream_id = ? AND" : "", key,
        spec->descending ? "<=" : ">=");
    if (spec->type_count || spec->prefix_count) {
        /* exact types OR prefixes, a prefix as a range of text
         * [prefix, prefix with its last byte + 1) */
        n += (size_t)snprintf(sql + n, cap - n, " AND (");
        if (spec->type_count) {
            n += (size_t)snprintf(sql + n, cap - n, "type IN (");
            for (size_t i = 0; i < spec->type_count; i++)
                n += (size_t)snprintf(sql + n, cap - n, i ? ",?" : "?");
            n += (size_t)snprintf(sql + n, cap - n, ")");
        }
        for (size_t i = 0; i < spec->prefix_count; i++)
            n += (size_t)snprintf(sql + n, cap - n, "%s(type > ? AND type < ?)",
                                  i || spec->type_count ? " OR " : "");
        n += (size_t)snprintf(sql + n, cap - n, ")");
    }
    if (spec->from_time_us)
        n += (size_t)snprintf(sql + n, cap - n, " AND time_us >= ?");
    if (spec->to_time_us)
        n += (size_t)snprintf(sql + n, cap - n, " AND time_us < ?");
    if (spec->min_position)
        n += (size_t)snprintf(sql + n, cap - n, " AND position >= ?");
    if (spec->max_position)
        n += (size_t)snprintf(sql + n, cap - n, " AND position <= ?");
    if (spec->event_id)
        n += (size_t)snprintf(sql + n, cap - n, " AND id = ?");
    snprintf(sql + n, cap - n, " ORDER BY %s %s LIMIT ?", key,
             spec->descending ? "DESC" : "ASC");
    return sql;
}

static int sqlite_read_page(void *impl, const eddyi_read_spec *spec,
                            int64_t start_key, size_t max_rows,
                            size_t max_bytes, eddyi_row *rows, size_t *n,
                            eddy_error *err)
{
    sqlite_impl *im = impl;
    *n = 0;
    char *sql = page_sql(spec);
    if (!sql)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    conn *c = NULL;
    int rc = EDDY_OK;
    if (spec->on_writer) {
        if (!(c = im->writer))
            rc = eddyi_error(err, EDDY_ESTATE, "the store is open read-only");
    } else {
        rc = reader_get(im, &c, err);
    }
    if (rc != EDDY_OK) {
        free(sql);
        return rc;
    }
    sqlite3_stmt *st = conn_stmt(c, sql, true, err);
    free(sql);
    if (!st) {
        rc = err ? err->code : EDDY_EIO;
        goto out;
    }
    int k = 1;
    if (spec->stream_id)
        sqlite3_bind_text(st, k++, spec->stream_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, k++, start_key);
    for (size_t i = 0; i < spec->type_count; i++)
        sqlite3_bind_text(st, k++, spec->types[i], -1, SQLITE_STATIC);
    for (size_t i = 0; i < spec->prefix_count; i++) {
        sqlite3_bind_text(st, k++, spec->prefixes[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, k++, spec->prefix_ends[i], -1, SQLITE_STATIC);
    }
    if (spec->from_time_us)
        sqlite3_bind_int64(st, k++, spec->from_time_us);
    if (spec->to_time_us)
        sqlite3_bind_int64(st, k++, spec->to_time_us);
    if (spec->min_position)
        sqlite3_bind_int64(st, k++, spec->min_position);
    if (spec->max_position)
        sqlite3_bind_int64(st, k++, spec->max_position);
    if (spec->event_id)
        sqlite3_bind_text(st, k++, spec->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, k++, (sqlite3_int64)max_rows);
    size_t bytes = 0;
    int s;
    while (*n < max_rows && bytes < max_bytes &&
           (s = sqlite3_step(st)) == SQLITE_ROW) {
        eddyi_row *r = &rows[*n];
        r->position = sqlite3_column_int64(st, 0);
        r->stream_version = sqlite3_column_int64(st, 2);
        r->recorded_us = sqlite3_column_int64(st, 3);
        const char *payload = (const char *)sqlite3_column_text(st, 4);
        size_t plen = (size_t)sqlite3_column_bytes(st, 4);
        eddy_error derr = {0};
        r->event = eddyi_event_decode_stored(payload ? payload : "", plen,
                                             &derr);
        if (!r->event) {
            rc = eddyi_error(err, EDDY_EPARSE,
                             "stored event at position %lld cannot be "
                             "decoded: %s",
                             (long long)r->position, derr.message);
            break;
        }
        r->stream_id = eddyi_strdup((const char *)sqlite3_column_text(st, 1));
        if (!r->stream_id) {
            eddy_event_unref(r->event);
            r->event = NULL;
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        bytes += plen;
        (*n)++;
    }
    if (rc == EDDY_OK && *n < max_rows && bytes < max_bytes && s != SQLITE_DONE)
        rc = db_error(c->db, s, err, "reading events");
    sqlite3_reset(st);
    if (rc != EDDY_OK) {
        eddyi_rows_clear(rows, *n);
        *n = 0;
    }
out:
    if (!spec->on_writer)
        reader_put(im, c);
    return rc;
}

/* Runs a one-integer query on a reader. */
static int reader_int(sqlite_impl *im, const char *sql, const char *bind,
                      int64_t *out, eddy_error *err)
{
    conn *c = NULL;
    int rc = reader_get(im, &c, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_stmt *st = conn_stmt(c, sql, false, err);
    if (!st) {
        rc = err ? err->code : EDDY_EIO;
        goto out;
    }
    if (bind)
        sqlite3_bind_text(st, 1, bind, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (s == SQLITE_DONE)
        *out = 0;
    else
        rc = db_error(c->db, s, err, sql);
    sqlite3_reset(st);
out:
    reader_put(im, c);
    return rc;
}

static const char SQL_HEAD[] = "SELECT COALESCE(MAX(position), 0) FROM events";
static const char SQL_STREAM_COUNT[] = "SELECT count(*) FROM streams";
static const char SQL_SNAPSHOT_COUNT[] = "SELECT count(*) FROM snapshots";
static const char SQL_SCHEMA[] =
    "SELECT value FROM meta WHERE key = 'eddy_schema_version'";
static const char SQL_STREAMS_PAGE[] =
    "SELECT stream_id, version FROM streams WHERE stream_id > ?1 "
    "ORDER BY stream_id LIMIT ?2";

static int sqlite_head(void *impl, int64_t *head, eddy_error *err)
{
    return reader_int(impl, SQL_HEAD, NULL, head, err);
}

static int sqlite_stream_version(void *impl, const char *stream_id,
                                 int64_t *version, eddy_error *err)
{
    return reader_int(impl, SQL_STREAM_VERSION, stream_id, version, err);
}

static int sqlite_streams_page(void *impl, const char *after, size_t max,
                               char **ids, int64_t *versions, size_t *n,
                               eddy_error *err)
{
    sqlite_impl *im = impl;
    *n = 0;
    conn *c = NULL;
    int rc = reader_get(im, &c, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_stmt *st = conn_stmt(c, SQL_STREAMS_PAGE, false, err);
    if (!st) {
        rc = err ? err->code : EDDY_EIO;
        goto out;
    }
    sqlite3_bind_text(st, 1, after ? after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int s;
    while (*n < max && (s = sqlite3_step(st)) == SQLITE_ROW) {
        ids[*n] = eddyi_strdup((const char *)sqlite3_column_text(st, 0));
        if (!ids[*n]) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        versions[*n] = sqlite3_column_int64(st, 1);
        (*n)++;
    }
    if (rc == EDDY_OK && *n < max && s != SQLITE_DONE)
        rc = db_error(c->db, s, err, "listing streams");
    sqlite3_reset(st);
    if (rc != EDDY_OK) {
        for (size_t i = 0; i < *n; i++)
            free(ids[i]);
        *n = 0;
    }
out:
    reader_put(im, c);
    return rc;
}

static int64_t file_size(const char *path, const char *suffix)
{
    char buf[4096];
    if ((size_t)snprintf(buf, sizeof buf, "%s%s", path, suffix) >= sizeof buf)
        return -1;
    struct stat sb;
    return stat(buf, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static int sqlite_info(void *impl, eddy_store_info *info, eddy_error *err)
{
    sqlite_impl *im = impl;
    int64_t schema = 0;
    int rc;
    if ((rc = reader_int(im, SQL_HEAD, NULL, &info->head, err)) != EDDY_OK ||
        (rc = reader_int(im, SQL_STREAM_COUNT, NULL, &info->stream_count,
                         err)) != EDDY_OK ||
        (rc = reader_int(im, SQL_SNAPSHOT_COUNT, NULL, &info->snapshot_count,
                         err)) != EDDY_OK ||
        (rc = reader_int(im, SQL_SCHEMA, NULL, &schema, err)) != EDDY_OK)
        return rc;
    info->event_count = info->head; /* positions are gap-free */
    info->schema_version = (int)schema;
    int64_t db = file_size(im->path, ""), wal = file_size(im->path, "-wal");
    info->file_bytes = db < 0 || wal < 0 ? -1 : db + wal;
    return EDDY_OK;
}

/* ---- backup ------------------------------------------------------------- */

/* fsync()s `path`, then its folder (so the new entry is durable too). */
static int sync_path(const char *path, eddy_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return eddyi_error(err, EDDY_EIO, "cannot sync %s: %s", path,
                           strerror(e));
    }
    close(fd);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse it on folders */
        close(fd);
    }
    return EDDY_OK;
}

/*
 * VACUUM INTO on a reader: one read transaction, so the copy is the
 * snapshot at its start while the writer goes on; the output is compacted
 * and has no -wal of its own. SQLite refuses an existing non-empty output
 * file; an existing empty one is refused here, so a backup never replaces
 * anything.
 */
static int sqlite_backup(void *impl, const char *path, eddy_error *err)
{
    struct stat sb;
    if (lstat(path, &sb) == 0)
        return eddyi_error(err, EDDY_EEXIST,
                           "%s exists; a backup never overwrites",
                           path);
    sqlite_impl *im = impl;
    conn *c = NULL;
    int rc = reader_get(im, &c, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    int s = sqlite3_prepare_v2(c->db, "VACUUM INTO ?1", -1, &st, NULL);
    if (s == SQLITE_OK)
        s = sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    if (s == SQLITE_OK)
        s = sqlite3_step(st);
    if (s != SQLITE_DONE) {
        rc = eddyi_error(err, EDDY_EIO, "cannot write %s: %s", path,
                         sqlite3_errmsg(c->db));
        if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            unlink(path); /* a partial copy is worse than none */
    }
    sqlite3_finalize(st);
    reader_put(im, c);
    if (rc == EDDY_OK && (rc = sync_path(path, err)) != EDDY_OK)
        unlink(path);
    return rc;
}

/* ---- statements of the portable API (eddy/sql.h) ------------------------ */

static int row_columns(const void *native)
{
    return sqlite3_data_count((sqlite3_stmt *)native);
}

static bool row_is_null(const void *native, int col)
{
    return sqlite3_column_type((sqlite3_stmt *)native, col) == SQLITE_NULL;
}

static const char *row_text(const void *native, int col)
{
    return (const char *)sqlite3_column_text((sqlite3_stmt *)native, col);
}

static int64_t row_integer(const void *native, int col)
{
    sqlite3_stmt *st = (sqlite3_stmt *)native;
    if (sqlite3_column_type(st, col) == SQLITE_TEXT) { /* "12" -> 12 */
        const char *t = (const char *)sqlite3_column_text(st, col);
        return t ? strtoll(t, NULL, 10) : 0;
    }
    return sqlite3_column_int64(st, col);
}

static double row_real(const void *native, int col)
{
    return sqlite3_column_double((sqlite3_stmt *)native, col);
}

static const eddyi_row_ops row_ops = {
    .columns = row_columns,
    .is_null = row_is_null,
    .text = row_text,
    .integer = row_integer,
    .real = row_real,
};

/* The eddy code for a failed statement: constraints are the caller's. */
static int stmt_code(int rc)
{
    if ((rc & 0xff) != SQLITE_CONSTRAINT)
        return code_for(rc);
    return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
               ? EDDY_EEXIST
               : EDDY_EINVAL;
}

static int bind_params(conn *c, sqlite3_stmt *st, const char *sql,
                       const eddyi_value *params, size_t n, eddy_error *err)
{
    int expected = sqlite3_bind_parameter_count(st);
    if ((size_t)expected != n)
        return eddyi_error(err, EDDY_EINVAL,
                           "\"%.120s\" takes %d parameter(s), %zu given", sql,
                           expected, n);
    for (size_t i = 0; i < n; i++) {
        int k = (int)i + 1, rc;
        switch (params[i].kind) {
        case EDDYI_V_INT:
            rc = sqlite3_bind_int64(st, k, params[i].i);
            break;
        case EDDYI_V_REAL:
            rc = sqlite3_bind_double(st, k, params[i].d);
            break;
        case EDDYI_V_TEXT:
            rc = sqlite3_bind_text64(st, k, params[i].s, params[i].len,
                                     SQLITE_STATIC, SQLITE_UTF8);
            break;
        case EDDYI_V_NULL:
        default:
            rc = sqlite3_bind_null(st, k);
            break;
        }
        if (rc != SQLITE_OK)
            return db_error(c->db, rc, err, "binding a parameter");
    }
    return EDDY_OK;
}

static int sqlite_sql(void *impl, eddyi_conn where, const char *sql,
                      bool static_sql, const eddyi_value *params,
                      size_t nparams, eddyi_row_fn fn, void *user,
                      int64_t *changes, eddy_error *err)
{
    sqlite_impl *im = impl;
    conn *c = NULL;
    int rc;
    if (where == EDDYI_ON_WRITER) {
        if (!(c = im->writer))
            return eddyi_error(err, EDDY_ESTATE, "the store is open read-only");
    } else if ((rc = reader_get(im, &c, err)) != EDDY_OK) {
        return rc;
    }
    sqlite3_stmt *st = conn_stmt_ex(c, sql, !static_sql, true, err);
    if (!st) {
        rc = err && err->code ? err->code : EDDY_EIO;
        goto out;
    }
    rc = bind_params(c, st, sql, params, nparams, err);
    int s = SQLITE_DONE;
    struct eddy_row row = {.ops = &row_ops, .native = st};
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW)
        if (fn)
            rc = fn(&row, user);
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_error(err, stmt_code(sqlite3_extended_errcode(c->db)),
                         "\"%.120s\": %s", sql, sqlite3_errmsg(c->db));
    if (rc == EDDY_OK && changes)
        *changes = sqlite3_changes64(c->db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
out:
    if (where == EDDYI_ON_READER)
        reader_put(im, c);
    return rc;
}

const eddyi_backend eddyi_sqlite_backend = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .write_begin = sqlite_write_begin,
    .write_commit = sqlite_write_commit,
    .write_rollback = sqlite_write_rollback,
    .savepoint = sqlite_savepoint,
    .savepoint_release = sqlite_savepoint_release,
    .savepoint_rollback = sqlite_savepoint_rollback,
    .append = sqlite_append,
    .snapshot_save = sqlite_snapshot_save,
    .write_native = sqlite_write_native,
    .sql = sqlite_sql,
    .backup = sqlite_backup,
    .read_page = sqlite_read_page,
    .head = sqlite_head,
    .stream_version = sqlite_stream_version,
    .streams_page = sqlite_streams_page,
    .snapshot_load = sqlite_snapshot_load,
    .info = sqlite_info,
};

sqlite3 *eddy_txn_sqlite(eddy_txn *txn)
{
    return eddyi_txn_native_of(txn, &eddyi_sqlite_backend);
}
