/*
 * bench/store.c - the event store's throughput and the repository's load
 * time, against a raw-SQLite baseline measured in the same run.
 *
 *   store [DIR]     DIR: where the temporary stores go (default: $TMPDIR or
 *                   /tmp); every case, the baseline included, uses it.
 *
 * Cases (each figure is the median of RUNS runs; a run stops at its event
 * budget or after RUN_SECONDS, whichever comes first):
 *   append      batches of 1, 10, 100, 1000 events; 1 and 4 appender
 *               threads (each on its own stream, with the expected version
 *               checked); sync full (durable) and normal (relaxed)
 *   raw-sqlite  the same rows (pre-encoded payloads) inserted with a
 *               prepared statement, one transaction per batch, into a file
 *               the store created (same schema, same pragmas), one thread
 *   read        the global log, front to back
 *   load        aggregates of 10, 1,000 and 100,000 events, with and without
 *               snapshots (every 100 events)
 *   raw read    the same rows through one prepared SELECT on its own
 *               connection, columns fetched, nothing decoded
 * The last lines are `read/raw-sqlite ratio: R` (the cursor's rate over the
 * raw read's, the median of each run's own ratio) and
 * `store/raw-sqlite append ratio: R` for batches of 100, one thread,
 * durable.
 *
 * With EDDY_BENCH_POSTGRES=URL (a database the benchmark may create schemas
 * in), the same on PostgreSQL, each run in a fresh schema (selected with
 * libpq's options=-csearch_path, so the URL must not set `options`):
 *   append        batches of 1, 10, 100; 1 and 4 writer threads; durable
 *   raw-postgres  the same rows into the same schema with raw libpq, 1 and
 *                 4 connections, one round trip per batch in pipeline mode
 *                 (BEGIN, the append lock, the inserts, the stream row,
 *                 COMMIT), the inserts either one multi-row INSERT from
 *                 binary arrays or one INSERT per row: the faster of the two
 *                 is the baseline
 *   costs         for batches of 100 and one writer, the store's and the
 *                 multi-row baseline's CPU per event on the writing thread
 *                 (getrusage RUSAGE_THREAD) and on the server (its
 *                 processes' /proc figures, when it runs on this machine),
 *                 and the writing thread's voluntary context switches per
 *                 batch, from the clock's start to its end
 *   processes     8 processes appending batches of 10, NOTIFY on and off
 *   read          the global log through a cursor and a live subscription
 *   wake-up       how soon another store handle's subscription sees an
 *                 append, NOTIFY on and off
 * ending with `store/raw-postgres append ratio: R` (batches of 100, one
 * writer). `store --postgres-only [DIR]` skips the SQLite part.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <sys/wait.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "eddy/sqlite.h"

#include "eddy/eddy.h"
#include "eddy/es.h"
#include "store/postgres.h"

#define RUNS 5
#define RUN_SECONDS 0.5
#define PG_RUN_SECONDS 1.5 /* PostgreSQL runs: longer, the server is noisier */
#define MAX_THREADS 4

static char bench_dir[512];
static int file_seq;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench/store: %s: %s\n", what, msg);
    exit(1);
}

static void fresh_path(char *buf, size_t size, const char *tag)
{
    snprintf(buf, size, "%s/%s-%d.db", bench_dir, tag, file_seq++);
}

static void remove_db(const char *path)
{
    char p[600];
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static eddy_store *open_url(const char *url, eddy_sync_mode sync)
{
    eddy_store_options o = {0};
    o.sync = sync;
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, &o, &err);
    if (!s)
        die(url, err.message);
    return s;
}

static eddy_store *open_store(const char *path, eddy_sync_mode sync)
{
    char url[620];
    snprintf(url, sizeof url, "sqlite:%s", path);
    eddy_store_options o = {0};
    o.sync = sync;
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, &o, &err);
    if (!s)
        die(url, err.message);
    return s;
}

/* A typical small event: ~200 bytes of CloudEvents JSON. */
static eddy_event **make_events(size_t n, const char *subject)
{
    eddy_event **evs = malloc(n * sizeof *evs);
    if (!evs)
        die("make_events", "out of memory");
    for (size_t i = 0; i < n; i++) {
        eddy_error err = {0};
        evs[i] = eddy_event_newf("account.credited", "bench", subject, &err,
                                 "{s:I, s:s, s:f}", "seq", (json_int_t)i, "note",
                                 "salary for march", "amount", 12.5);
        if (!evs[i])
            die("eddy_event_newf", err.message);
    }
    return evs;
}

/* Events per run for a batch size (per case, split between the threads). */
static size_t budget(size_t batch)
{
    switch (batch) {
    case 1: return 3000;
    case 10: return 12000;
    case 100: return 40000;
    default: return 60000;
    }
}

/* ---- append through the store ------------------------------------------------ */

struct appender {
    eddy_store *store;
    char stream[32];
    eddy_event **evs;
    size_t n, batch, done;
    double deadline;
    double cpu_s; /* this thread's CPU time while appending */
    long vcs;     /* ... and its voluntary context switches */
};

/* ---- what a run costs -------------------------------------------------------- */

/* CPU seconds and voluntary context switches of the calling thread. */
static void thread_usage(double *cpu_s, long *vcs)
{
    struct rusage u;
    getrusage(RUSAGE_THREAD, &u);
    *cpu_s = (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
             ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec) / 1e6;
    *vcs = u.ru_nvcsw;
}

/* The PostgreSQL server's processes, when it runs on this machine: the
 * postmaster (with its reaped children) and its live children. 0: unknown. */
static long pg_postmaster;

static bool proc_stat(long pid, long *ppid, double *cpu_s, bool children)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    long cut = 0, cst = 0;
    if (!p || sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
                     "%ld %ld", ppid, &ut, &st, &cut, &cst) != 5)
        return false;
    double ticks = (double)ut + (double)st;
    if (children)
        ticks += (double)cut + (double)cst;
    *cpu_s = ticks / (double)sysconf(_SC_CLK_TCK);
    return true;
}

/* CPU seconds the server has used so far; < 0 when it cannot be known. */
static double pg_server_cpu(void)
{
    long ppid;
    double total = 0, c;
    if (pg_postmaster <= 0 || !proc_stat(pg_postmaster, &ppid, &total, true))
        return -1;
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = atol(e->d_name);
        if (pid > 0 && proc_stat(pid, &ppid, &c, false) && ppid == pg_postmaster)
            total += c;
    }
    closedir(d);
    return total;
}

/* What the last run cost (one writer thread): its events, that thread's CPU
 * and voluntary context switches, and the server's CPU (< 0: unknown),
 * from its clock's start to its end. */
static struct {
    size_t events;
    double client_s, server_s;
    long vcs;
} last_cost;

static void *appender_main(void *arg)
{
    struct appender *a = arg;
    double cpu0, cpu1;
    long vcs0, vcs1;
    thread_usage(&cpu0, &vcs0);
    int64_t version = 0;
    for (size_t i = 0; i + a->batch <= a->n && now_s() < a->deadline; i += a->batch) {
        eddy_append_result res;
        eddy_error err = {0};
        if (eddy_store_append(a->store, a->stream, version, a->evs + i, a->batch, &res,
                              &err) != EDDY_OK)
            die("eddy_store_append", err.message);
        version = res.stream_version;
        a->done += a->batch;
    }
    thread_usage(&cpu1, &vcs1);
    a->cpu_s = cpu1 - cpu0;
    a->vcs = vcs1 - vcs0;
    return NULL;
}

/* Events per second appended by `threads` threads to `s`, for at most
 * `seconds`. */
static double append_threads(eddy_store *s, int threads, size_t batch,
                             double seconds)
{
    struct appender a[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    size_t per = budget(batch) / (size_t)threads;
    per -= per % batch;
    for (int t = 0; t < threads; t++) {
        a[t] = (struct appender){.store = s, .n = per, .batch = batch};
        snprintf(a[t].stream, sizeof a[t].stream, "account-%d", t);
        a[t].evs = make_events(per, a[t].stream);
    }
    double server0 = pg_server_cpu();
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        a[t].deadline = t0 + seconds;
        if (pthread_create(&th[t], NULL, appender_main, &a[t]) != 0)
            die("pthread_create", strerror(errno));
    }
    size_t total = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        total += a[t].done;
    }
    double elapsed = now_s() - t0;
    double server1 = pg_server_cpu();
    last_cost.events = total;
    last_cost.client_s = a[0].cpu_s;
    last_cost.vcs = a[0].vcs;
    last_cost.server_s = server0 >= 0 && server1 >= 0 ? server1 - server0 : -1;
    for (int t = 0; t < threads; t++)
        eddy_event_array_free(a[t].evs, per);
    return (double)total / elapsed;
}

/* One run: events per second appended by `threads` threads. */
static double append_run(eddy_sync_mode sync, int threads, size_t batch)
{
    char path[600];
    fresh_path(path, sizeof path, "append");
    eddy_store *s = open_store(path, sync);
    double rate = append_threads(s, threads, batch, RUN_SECONDS);
    eddy_store_close(s);
    remove_db(path);
    return rate;
}

/* ---- the raw SQLite baseline --------------------------------------------------- */

static void sql_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        die(what, sqlite3_errmsg(db));
}

/*
 * The rows the store would write, inserted directly: the file is created by
 * the store (so the schema and its indexes are identical), then written with
 * the store's pragmas (WAL, the same synchronous level), one prepared
 * statement, one transaction per batch, and the stream's version row
 * upserted once per batch as the store does. Payloads are encoded before
 * the clock starts: the baseline is SQLite's cost alone.
 */
static double raw_run(eddy_sync_mode sync, size_t batch)
{
    char path[600];
    fresh_path(path, sizeof path, "raw");
    eddy_store_close(open_store(path, sync));

    size_t n = budget(batch);
    n -= n % batch;
    eddy_event **evs = make_events(n, "account-0");
    char **payload = malloc(n * sizeof *payload);
    size_t *plen = malloc(n * sizeof *plen);
    if (!payload || !plen)
        die("raw", "out of memory");
    for (size_t i = 0; i < n; i++)
        payload[i] = eddy_event_encode(evs[i], &plen[i]);

    sqlite3 *db;
    sql_ok(NULL, sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                                 NULL),
           path);
    static const char *sync_sql[] = {"PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL",
                                     "PRAGMA synchronous=OFF"};
    sql_ok(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), "wal");
    sql_ok(db, sqlite3_exec(db, sync_sql[sync], NULL, NULL, NULL), "synchronous");
    sqlite3_stmt *ins, *up, *begin, *commit;
    sql_ok(db,
           sqlite3_prepare_v2(db,
                              "INSERT INTO events(id, stream_id, stream_version, type, "
                              "time_us, recorded_us, payload, correlation_id, "
                              "causation_id, source, subject) "
                              "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                              -1, &ins, NULL),
           "prepare insert");
    sql_ok(db,
           sqlite3_prepare_v2(db,
                              "INSERT INTO streams(stream_id, version) VALUES(?1, ?2) "
                              "ON CONFLICT(stream_id) DO UPDATE SET version = "
                              "excluded.version",
                              -1, &up, NULL),
           "prepare upsert");
    sql_ok(db, sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL), "begin");
    sql_ok(db, sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL), "commit");

    double t0 = now_s(), deadline = t0 + RUN_SECONDS;
    size_t done = 0;
    for (size_t i = 0; i + batch <= n && now_s() < deadline; i += batch) {
        sql_ok(db, sqlite3_step(begin), "BEGIN");
        sqlite3_reset(begin);
        int64_t recorded = eddy_now_us();
        for (size_t k = i; k < i + batch; k++) {
            sqlite3_bind_text(ins, 1, eddy_event_id(evs[k]), -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, "account-0", -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 3, (sqlite3_int64)k + 1);
            sqlite3_bind_text(ins, 4, eddy_event_type(evs[k]), -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 5, eddy_event_time(evs[k]));
            sqlite3_bind_int64(ins, 6, recorded);
            sqlite3_bind_text(ins, 7, payload[k], (int)plen[k], SQLITE_STATIC);
            /* the envelope columns the store writes with every event */
            sqlite3_bind_text(ins, 8, eddy_event_correlation_id(evs[k]), -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 9, eddy_event_causation_id(evs[k]), -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 10, eddy_event_source(evs[k]), -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 11, eddy_event_subject(evs[k]), -1, SQLITE_STATIC);
            sql_ok(db, sqlite3_step(ins), "INSERT");
            sqlite3_reset(ins);
        }
        sqlite3_bind_text(up, 1, "account-0", -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 2, (sqlite3_int64)(i + batch));
        sql_ok(db, sqlite3_step(up), "UPSERT");
        sqlite3_reset(up);
        sql_ok(db, sqlite3_step(commit), "COMMIT");
        sqlite3_reset(commit);
        done += batch;
    }
    double elapsed = now_s() - t0;
    sqlite3_finalize(ins);
    sqlite3_finalize(up);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    for (size_t i = 0; i < n; i++)
        free(payload[i]);
    free(payload);
    free(plen);
    eddy_event_array_free(evs, n);
    remove_db(path);
    return (double)done / elapsed;
}

/* Per-event CPU cost of encoding (what the store does and the baseline
 * does not): events per second of eddy_event_encode alone. */
/* The read baseline: every row of the log through one prepared SELECT on
 * its own read-only connection, each column fetched (the payload's bytes
 * included), nothing decoded. Returns rows per second; dies unless it saw
 * `expect` rows. */
static double raw_read(const char *path, int64_t expect)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    sql_ok(db, sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), "raw read open");
    sql_ok(db, sqlite3_prepare_v2(db,
                                  "SELECT position, id, stream_id, stream_version, "
                                  "type, time_us, recorded_us, payload FROM events "
                                  "WHERE position >= ?1 ORDER BY position",
                                  -1, &st, NULL),
           "raw read prepare");
    double t0 = now_s();
    sqlite3_bind_int64(st, 1, 1);
    int64_t seen = 0;
    size_t bytes = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (void)sqlite3_column_int64(st, 0);
        for (int c = 1; c <= 4; c++)
            bytes += (size_t)sqlite3_column_bytes(st, c) + (sqlite3_column_text(st, c) != NULL);
        (void)sqlite3_column_int64(st, 5);
        (void)sqlite3_column_int64(st, 6);
        const unsigned char *payload = sqlite3_column_text(st, 7);
        bytes += (size_t)sqlite3_column_bytes(st, 7) + (payload ? payload[0] : 0);
        seen++;
    }
    double rate = (double)seen / (now_s() - t0);
    if (rc != SQLITE_DONE)
        sql_ok(db, rc, "raw read");
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (seen != expect || bytes == 0)
        die("raw read", "short read");
    return rate;
}

static double encode_rate(void)
{
    size_t n = 20000;
    eddy_event **evs = make_events(n, "account-0");
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        free(eddy_event_encode(evs[i], NULL));
    double rate = (double)n / (now_s() - t0);
    eddy_event_array_free(evs, n);
    return rate;
}

/* ---- the aggregate ------------------------------------------------------------ */

struct account {
    int64_t credits;
    double balance;
};

static int account_apply(void *state, const eddy_event *ev, eddy_error *err)
{
    struct account *a = state;
    const json_t *amount = json_object_get(eddy_event_data(ev), "amount");
    a->credits++;
    a->balance += json_number_value(amount);
    return EDDY_OK;
}

static json_t *account_snapshot(const void *state)
{
    const struct account *a = state;
    return json_pack("{s:I, s:f}", "credits", (json_int_t)a->credits, "balance",
                     a->balance);
}

static int account_restore(void *state, const json_t *snap, eddy_error *err)
{
    struct account *a = state;
    json_int_t credits;
    if (json_unpack((json_t *)snap, "{s:I, s:F}", "credits", &credits, "balance",
                    &a->balance) != 0)
        return EDDY_EINVAL;
    a->credits = credits;
    return EDDY_OK;
}

static const eddy_aggregate_type account_plain = {
    .name = "account",
    .state_size = sizeof(struct account),
    .apply = account_apply,
};

static const eddy_aggregate_type account_snap = {
    .name = "account",
    .state_size = sizeof(struct account),
    .apply = account_apply,
    .snapshot = account_snapshot,
    .restore = account_restore,
    .snapshot_schema_version = 1,
    .snapshot_every = 100,
};

static int credit(eddy_aggregate *agg, void *state, void *arg, eddy_error *err)
{
    return eddy_aggregate_raise(agg, err, "account.credited", "{s:f}", "amount", 12.5);
}

/* Writes aggregate `id` with `len` events: all but the last 5 appended
 * directly, the last 5 through the repository, which snapshots when a
 * multiple of 100 is crossed. */
static void populate(eddy_store *s, eddy_repository *snap_repo, const char *id, size_t len)
{
    char stream[64];
    eddy_repository_stream_id(snap_repo, id, stream, sizeof stream);
    size_t direct = len - 5;
    for (size_t i = 0; i < direct; i += 1000) {
        size_t k = direct - i < 1000 ? direct - i : 1000;
        eddy_event **evs = make_events(k, id);
        eddy_error err = {0};
        if (eddy_store_append(s, stream, EDDY_EXPECT_ANY, evs, k, NULL, &err) != EDDY_OK)
            die("populate", err.message);
        eddy_event_array_free(evs, k);
    }
    for (int i = 0; i < 5; i++) {
        eddy_error err = {0};
        if (eddy_repository_execute(snap_repo, id, credit, NULL, 1, NULL, &err) != EDDY_OK)
            die("populate execute", err.message);
    }
}

static double load_ms(eddy_repository *repo, const char *id, size_t len, int reps)
{
    double v[32];
    for (int r = 0; r < reps; r++) {
        eddy_error err = {0};
        double t0 = now_s();
        eddy_aggregate *agg = eddy_repository_load(repo, id, &err);
        v[r] = (now_s() - t0) * 1e3;
        if (!agg)
            die("load", err.message);
        if ((size_t)eddy_aggregate_version(agg) != len ||
            ((struct account *)eddy_aggregate_state(agg))->credits != (int64_t)len)
            die("load", "wrong state");
        eddy_aggregate_free(agg);
    }
    return median(v, reps);
}

/* ---- PostgreSQL ------------------------------------------------------------ */

static const char *pg_base; /* EDDY_BENCH_POSTGRES */
static PGconn *pg_admin;
static int pg_schema_seq;

static void pg_admin_exec(const char *sql)
{
    PGresult *r = PQexec(pg_admin, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die(sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* A fresh schema, and the URL of a store in it (`extra`: more options). */
static void pg_fresh(char *schema, size_t ssize, char *url, size_t usize,
                     const char *extra)
{
    snprintf(schema, ssize, "eddy_bench_%d_%d", (int)getpid(), pg_schema_seq++);
    char sql[256];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s",
             schema, schema);
    pg_admin_exec(sql);
    snprintf(url, usize, "%s%soptions=-csearch_path%%3D%s%s", pg_base,
             strchr(pg_base, '?') ? "&" : "?", schema, extra ? extra : "");
}

static void pg_drop(const char *schema)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
    pg_admin_exec(sql);
}

static double pg_append_run(int threads, size_t batch)
{
    char schema[64], url[1024];
    pg_fresh(schema, sizeof schema, url, sizeof url, NULL);
    eddy_store *s = open_url(url, EDDY_SYNC_FULL);
    double rate = append_threads(s, threads, batch, PG_RUN_SECONDS);
    eddy_store_close(s);
    pg_drop(schema);
    return rate;
}

enum { RAW_MULTI, RAW_ROWS };

struct raw_pg {
    const char *url;
    int mode;
    int32_t lock_key;
    char stream[32];
    size_t n, batch, done;
    eddy_event **evs;
    char **payload;
    size_t *plen;
    double start, deadline;
    double cpu_s; /* this thread's CPU time while inserting */
    long vcs;     /* ... and its voluntary context switches */
};

static void pg_check(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
        st != PGRES_PIPELINE_SYNC)
        die(what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
}

static void pg_prepare(PGconn *c, const char *name, const char *sql)
{
    PGresult *r = PQprepare(c, name, sql, 0, NULL);
    pg_check(c, r, sql);
    PQclear(r);
}

/*
 * The rows the store writes, written by hand: one pipeline per batch
 * (BEGIN, the append lock that gap-free positions need with several
 * writers, the events at max(position)+1.., the stream row, COMMIT) and one
 * round trip. Payloads are encoded before the clock starts.
 */
static void *raw_pg_main(void *arg)
{
    struct raw_pg *w = arg;
    PGconn *c = PQconnectdb(w->url);
    if (PQstatus(c) != CONNECTION_OK)
        die(w->url, PQerrorMessage(c));
    pg_prepare(c, "b", "BEGIN");
    pg_prepare(c, "c", "COMMIT");
    pg_prepare(c, "l", "SELECT pg_advisory_xact_lock($1::int4, $2::int4)");
    pg_prepare(c, "m",
               "INSERT INTO events(position, id, stream_id, stream_version, "
               "type, time_us, recorded_us, payload, correlation_id, "
               "causation_id, source, subject) SELECT m.p + e.n, e.id, $1::text, "
               "$2::int8 + e.n, e.type, e.t, $3::int8, e.payload, e.co, e.ca, "
               "e.so, e.su FROM (SELECT "
               "COALESCE(max(position), 0) AS p FROM events) m, "
               "unnest($4::text[], $5::text[], $6::int8[], $7::bytea[], "
               "$8::text[], $9::text[], $10::text[], $11::text[]) WITH "
               "ORDINALITY AS e(id, type, t, payload, co, ca, so, su, n)");
    pg_prepare(c, "r",
               "INSERT INTO events(position, id, stream_id, stream_version, "
               "type, time_us, recorded_us, payload, correlation_id, "
               "causation_id, source, subject) VALUES((SELECT "
               "COALESCE(max(position), 0) + 1 FROM events), $1, $2, $3, $4, "
               "$5, $6, $7::bytea, $8, $9, $10, $11)");
    pg_prepare(c, "u",
               "INSERT INTO eddy_streams(stream_id, version) VALUES($1, $2) ON "
               "CONFLICT (stream_id) DO UPDATE SET version = excluded.version");
    if (!PQenterPipelineMode(c))
        die("pipeline", PQerrorMessage(c));
    char lk1[16], lk2[16];
    snprintf(lk1, sizeof lk1, "%d", EDDYI_PG_LOCK_CLASS);
    snprintf(lk2, sizeof lk2, "%d", w->lock_key);
    const char *lock_v[] = {lk1, lk2};
    while (now_s() < w->start)
        ;
    double cpu0, cpu1;
    long vcs0, vcs1;
    thread_usage(&cpu0, &vcs0);
    for (size_t i = 0; i + w->batch <= w->n && now_s() < w->deadline;
         i += w->batch) {
        int sent = 0;
        char rec[32], ver[32], ver_after[32];
        snprintf(rec, sizeof rec, "%lld", (long long)eddy_now_us());
        snprintf(ver, sizeof ver, "%zu", i);
        snprintf(ver_after, sizeof ver_after, "%zu", i + w->batch);
        sent += PQsendQueryPrepared(c, "b", 0, NULL, NULL, NULL, 0);
        sent += PQsendQueryPrepared(c, "l", 2, lock_v, NULL, NULL, 0);
        eddyi_buf ids = {0}, types = {0}, times = {0}, pays = {0};
        /* the envelope columns the store writes with every event */
        eddyi_buf env[4] = {{0}};
        const char *(*const env_get[4])(const eddy_event *) = {
            eddy_event_correlation_id, eddy_event_causation_id,
            eddy_event_source, eddy_event_subject};
        if (w->mode == RAW_MULTI) {
            int32_t n = (int32_t)w->batch;
            eddyi_pg_array_begin(&ids, EDDYI_PG_TEXT, n, false);
            eddyi_pg_array_begin(&types, EDDYI_PG_TEXT, n, false);
            eddyi_pg_array_begin(&times, EDDYI_PG_INT8, n, false);
            eddyi_pg_array_begin(&pays, EDDYI_PG_BYTEA, n, false);
            for (int a = 0; a < 4; a++)
                eddyi_pg_array_begin(&env[a], EDDYI_PG_TEXT, n, true);
            for (size_t k = i; k < i + w->batch; k++) {
                const char *id = eddy_event_id(w->evs[k]);
                const char *type = eddy_event_type(w->evs[k]);
                eddyi_pg_array_elem(&ids, id, strlen(id));
                eddyi_pg_array_elem(&types, type, strlen(type));
                eddyi_pg_buf_i32(&times, 8);
                eddyi_pg_buf_i64(&times, eddy_event_time(w->evs[k]));
                eddyi_pg_array_elem(&pays, w->payload[k], w->plen[k]);
                for (int a = 0; a < 4; a++) {
                    const char *x = env_get[a](w->evs[k]);
                    if (x)
                        eddyi_pg_array_elem(&env[a], x, strlen(x));
                    else
                        eddyi_pg_array_null(&env[a]);
                }
            }
            const char *v[] = {w->stream, ver,      rec,      ids.p,
                               types.p,   times.p,  pays.p,   env[0].p,
                               env[1].p,  env[2].p, env[3].p};
            int l[] = {0, 0, 0, (int)ids.n, (int)types.n, (int)times.n,
                       (int)pays.n, (int)env[0].n, (int)env[1].n,
                       (int)env[2].n, (int)env[3].n};
            int f[] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
            sent += PQsendQueryPrepared(c, "m", 11, v, l, f, 0);
        } else {
            for (size_t k = i; k < i + w->batch; k++) {
                char kv[32], t[32];
                snprintf(kv, sizeof kv, "%zu", k + 1);
                snprintf(t, sizeof t, "%lld", (long long)eddy_event_time(w->evs[k]));
                const char *v[] = {eddy_event_id(w->evs[k]), w->stream, kv,
                                   eddy_event_type(w->evs[k]), t, rec,
                                   w->payload[k], env_get[0](w->evs[k]),
                                   env_get[1](w->evs[k]), env_get[2](w->evs[k]),
                                   env_get[3](w->evs[k])};
                int l[] = {0, 0, 0, 0, 0, 0, (int)w->plen[k], 0, 0, 0, 0};
                int f[] = {0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
                sent += PQsendQueryPrepared(c, "r", 11, v, l, f, 0);
            }
        }
        const char *uv[] = {w->stream, ver_after};
        sent += PQsendQueryPrepared(c, "u", 2, uv, NULL, NULL, 0);
        sent += PQsendQueryPrepared(c, "c", 0, NULL, NULL, NULL, 0);
        if (!PQpipelineSync(c))
            die("sync", PQerrorMessage(c));
        eddyi_buf_free(&ids);
        eddyi_buf_free(&types);
        eddyi_buf_free(&times);
        eddyi_buf_free(&pays);
        for (int a = 0; a < 4; a++)
            eddyi_buf_free(&env[a]);
        for (int q = 0; q < sent; q++) {
            PGresult *r = PQgetResult(c);
            pg_check(c, r, "raw statement");
            PQclear(r);
            while ((r = PQgetResult(c)) != NULL)
                PQclear(r);
        }
        PGresult *r = PQgetResult(c);
        if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
            die("raw", "no pipeline sync");
        PQclear(r);
        w->done += w->batch;
    }
    thread_usage(&cpu1, &vcs1);
    w->cpu_s = cpu1 - cpu0;
    w->vcs = vcs1 - vcs0;
    PQfinish(c);
    return NULL;
}

static double raw_pg_run(int mode, int threads, size_t batch)
{
    char schema[64], url[1024];
    pg_fresh(schema, sizeof schema, url, sizeof url, NULL);
    eddy_store_close(open_url(url, EDDY_SYNC_FULL)); /* the same schema */
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT '%s.events'::regclass::oid::bigint", schema);
    PGresult *r = PQexec(pg_admin, sql);
    pg_check(pg_admin, r, sql);
    int32_t key = (int32_t)(uint32_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    struct raw_pg w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    size_t per = budget(batch) / (size_t)threads;
    per -= per % batch;
    double start = now_s() + 0.2; /* after every connection is up */
    for (int t = 0; t < threads; t++) {
        w[t] = (struct raw_pg){.url = url, .mode = mode, .lock_key = key,
                               .n = per, .batch = batch, .start = start,
                               .deadline = start + PG_RUN_SECONDS};
        snprintf(w[t].stream, sizeof w[t].stream, "account-%d", t);
        w[t].evs = make_events(per, w[t].stream);
        w[t].payload = malloc(per * sizeof *w[t].payload);
        w[t].plen = malloc(per * sizeof *w[t].plen);
        for (size_t i = 0; i < per; i++)
            w[t].payload[i] = eddy_event_encode(w[t].evs[i], &w[t].plen[i]);
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, raw_pg_main, &w[t]) != 0)
            die("pthread_create", strerror(errno));
    while (now_s() < start)
        usleep(1000);
    double server0 = pg_server_cpu();
    size_t total = 0;
    double end = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        total += w[t].done;
    }
    end = now_s();
    double server1 = pg_server_cpu();
    last_cost.events = total;
    last_cost.client_s = w[0].cpu_s;
    last_cost.vcs = w[0].vcs;
    last_cost.server_s = server0 >= 0 && server1 >= 0 ? server1 - server0 : -1;
    for (int t = 0; t < threads; t++) {
        for (size_t i = 0; i < per; i++)
            free(w[t].payload[i]);
        free(w[t].payload);
        free(w[t].plen);
        eddy_event_array_free(w[t].evs, per);
    }
    pg_drop(schema);
    return (double)total / (end - start);
}

/* `procs` processes, each its own store handle and stream, batches of 10,
 * for PG_PROC_SECONDS; they start together once all have made their
 * events. */
#define PG_PROC_SECONDS 3.0
static double pg_processes_run(int procs, const char *extra)
{
    char schema[64], url[1024];
    pg_fresh(schema, sizeof schema, url, sizeof url, extra);
    eddy_store_close(open_url(url, EDDY_SYNC_FULL));
    int out[2], ready[2], go[2];
    if (pipe(out) != 0 || pipe(ready) != 0 || pipe(go) != 0)
        die("pipe", strerror(errno));
    pid_t pids[16];
    for (int p = 0; p < procs; p++) {
        pids[p] = fork();
        if (pids[p] < 0)
            die("fork", strerror(errno));
        if (pids[p] == 0) {
            close(out[0]);
            close(ready[0]);
            close(go[1]);
            struct appender a = {.batch = 10, .n = 60000};
            snprintf(a.stream, sizeof a.stream, "proc-%d", p);
            a.evs = make_events(a.n, a.stream);
            a.store = open_url(url, EDDY_SYNC_FULL);
            char c = 'r';
            if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 0)
                _exit(1);
            double t0 = now_s();
            a.deadline = t0 + PG_PROC_SECONDS;
            appender_main(&a);
            double rate = (double)a.done / (now_s() - t0);
            eddy_store_close(a.store);
            dprintf(out[1], "%.0f\n", rate);
            _exit(0);
        }
    }
    close(out[1]);
    close(ready[1]);
    close(go[0]);
    for (int p = 0; p < procs; p++) {
        char c;
        if (read(ready[0], &c, 1) != 1)
            die("processes", "a child did not start");
    }
    close(go[1]); /* all start */
    FILE *f = fdopen(out[0], "r");
    double total = 0, rate;
    int reported = 0;
    while (f && fscanf(f, "%lf", &rate) == 1) {
        total += rate;
        reported++;
    }
    if (f)
        fclose(f);
    close(ready[0]);
    for (int p = 0; p < procs; p++)
        waitpid(pids[p], NULL, 0);
    if (reported != procs)
        die("processes", "a child failed");
    pg_drop(schema);
    return total;
}

struct wake_box {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t n;
};

static int wake_count(const eddy_record *rec, void *user)
{
    struct wake_box *b = user;
    pthread_mutex_lock(&b->mu);
    b->n++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    (void)rec;
    return 0;
}

/* Median microseconds from an append on one store handle to the callback
 * of a subscription on another (as another process would see it). */
static double pg_wake_us(const char *extra)
{
    char schema[64], url[1024];
    pg_fresh(schema, sizeof schema, url, sizeof url, extra);
    eddy_store *w = open_url(url, EDDY_SYNC_FULL);
    eddy_store *r = open_url(url, EDDY_SYNC_FULL);
    struct wake_box b = {.mu = PTHREAD_MUTEX_INITIALIZER,
                         .cond = PTHREAD_COND_INITIALIZER};
    eddy_store_subscription *sub = NULL;
    eddy_error err = {0};
    if (eddy_store_subscribe(r, 0, wake_count, &b, NULL, &sub, &err) != EDDY_OK)
        die("subscribe", err.message);
    usleep(200000);
    enum { N = 21 };
    double v[N];
    eddy_event **evs = make_events(N, "wake");
    for (int i = 0; i < N; i++) {
        double t0 = now_s();
        if (eddy_store_append(w, "wake", EDDY_EXPECT_ANY, &evs[i], 1, NULL, &err) !=
            EDDY_OK)
            die("append", err.message);
        pthread_mutex_lock(&b.mu);
        while (b.n < i + 1)
            pthread_cond_wait(&b.cond, &b.mu);
        pthread_mutex_unlock(&b.mu);
        v[i] = (now_s() - t0) * 1e6;
        usleep(20000 + (useconds_t)(rand() % 20000)); /* off the poll's beat */
    }
    eddy_event_array_free(evs, N);
    eddy_store_subscription_free(sub);
    eddy_store_close(r);
    eddy_store_close(w);
    pg_drop(schema);
    return median(v, N);
}

static int read_count(const eddy_record *rec, void *user)
{
    (void)rec;
    (*(int64_t *)user)++;
    return 0;
}

static void pg_read_rates(void)
{
    char schema[64], url[1024];
    pg_fresh(schema, sizeof schema, url, sizeof url, NULL);
    eddy_store *s = open_url(url, EDDY_SYNC_NORMAL);
    enum { TOTAL = 100000, CHUNK = 1000 };
    for (int i = 0; i < TOTAL / CHUNK; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "read-%d", i % 10);
        eddy_event **evs = make_events(CHUNK, sid);
        eddy_error err = {0};
        if (eddy_store_append(s, sid, EDDY_EXPECT_ANY, evs, CHUNK, NULL, &err) !=
            EDDY_OK)
            die("populate", err.message);
        eddy_event_array_free(evs, CHUNK);
    }
    double cv[RUNS], sv[RUNS];
    for (int r = 0; r < RUNS; r++) {
        eddy_error err = {0};
        eddy_cursor *c = NULL;
        eddy_record rec;
        int64_t seen = 0;
        double t0 = now_s();
        if (eddy_store_read_all(s, 1, 0, &c, &err) != EDDY_OK)
            die("read_all", err.message);
        while (eddy_cursor_next(c, &rec, &err))
            seen++;
        cv[r] = (double)seen / (now_s() - t0);
        eddy_cursor_free(c);
        if (seen != TOTAL)
            die("read_all", "short read");
        int64_t got = 0;
        eddy_store_subscription *sub = NULL;
        t0 = now_s();
        if (eddy_store_subscribe(s, 0, read_count, &got, NULL, &sub, &err) !=
            EDDY_OK)
            die("subscribe", err.message);
        while (eddy_store_subscription_position(sub) < TOTAL)
            usleep(500);
        sv[r] = (double)TOTAL / (now_s() - t0);
        eddy_store_subscription_free(sub);
    }
    printf("read the global log (%d events): cursor %.0f events/s, live "
           "subscription catching up %.0f events/s\n",
           TOTAL, median(cv, RUNS), median(sv, RUNS));
    eddy_store_close(s);
    pg_drop(schema);
}

/* The machine's load average (other work on it skews the figures). */
static const char *loadavg(void)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "unknown");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(buf, sizeof buf, f))
            buf[strcspn(buf, "\n")] = 0;
        fclose(f);
    }
    return buf;
}

/* Finds the postmaster when the server runs on this machine (a unix socket
 * or a loopback address, and the backend is a local "postgres" process). */
static void find_postmaster(void)
{
    const char *host = PQhost(pg_admin);
    if (!host || !(host[0] == '/' || !strcmp(host, "localhost") ||
                   !strcmp(host, "127.0.0.1") || !strcmp(host, "::1")))
        return;
    long backend = PQbackendPID(pg_admin), ppid = 0;
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", backend);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(comm, sizeof comm, f))
            comm[0] = '\0';
        fclose(f);
    }
    double cpu;
    if (strncmp(comm, "postgres", 8) == 0 &&
        proc_stat(backend, &ppid, &cpu, false))
        pg_postmaster = ppid;
}

/* Per-event costs of the runs of one case: medians printed in one line. */
typedef struct costs {
    double client_us[RUNS], server_us[RUNS], vcs_per_batch[RUNS];
    int n;
} costs;

static void costs_add(costs *c, size_t batch)
{
    if (c->n >= RUNS || last_cost.events == 0)
        return;
    double ev = (double)last_cost.events;
    c->client_us[c->n] = last_cost.client_s * 1e6 / ev;
    c->server_us[c->n] =
        last_cost.server_s >= 0 ? last_cost.server_s * 1e6 / ev : -1;
    c->vcs_per_batch[c->n] = (double)last_cost.vcs * (double)batch / ev;
    c->n++;
}

static void costs_print(const char *what, costs *c)
{
    if (c->n == 0)
        return;
    double server = median(c->server_us, c->n);
    printf("  %-10s client CPU %5.2f us/event (the writing thread), server CPU "
           "%s%5.2f us/event, %4.1f voluntary context switches per batch\n",
           what, median(c->client_us, c->n), server < 0 ? "n/a " : "",
           server < 0 ? 0.0 : server, median(c->vcs_per_batch, c->n));
}

/* The PostgreSQL part; returns store/raw for batches of 100, one writer. */
static double bench_postgres(void)
{
    pg_admin = PQconnectdb(pg_base);
    if (PQstatus(pg_admin) != CONNECTION_OK)
        die(pg_base, PQerrorMessage(pg_admin));
    pg_admin_exec("SET client_min_messages = warning");
    find_postmaster();
    printf("PostgreSQL %d (server), libpq %d, <= %.1f s per run; load "
           "average before: %s\n", PQserverVersion(pg_admin), PQlibVersion(),
           PG_RUN_SECONDS, loadavg());
    static const size_t batches[] = {1, 10, 100};
    double ratio = 0;
    costs store_cost = {0}, raw_cost = {0};
    printf("append throughput on PostgreSQL, durable, events/s\n");
    printf("%-8s %7s %12s %12s %12s %12s\n", "writers", "batch", "store",
           "raw-multi", "raw-rows", "store/raw");
    for (size_t bi = 0; bi < 3; bi++)
        for (int threads = 1; threads <= MAX_THREADS; threads += MAX_THREADS - 1) {
            double st[RUNS], multi[RUNS], rows[RUNS];
            bool costed = threads == 1 && batches[bi] == 100;
            for (int r = 0; r < RUNS; r++) {
                multi[r] = raw_pg_run(RAW_MULTI, threads, batches[bi]);
                if (costed)
                    costs_add(&raw_cost, batches[bi]);
                rows[r] = raw_pg_run(RAW_ROWS, threads, batches[bi]);
                st[r] = pg_append_run(threads, batches[bi]);
                if (costed)
                    costs_add(&store_cost, batches[bi]);
            }
            double sm = median(st, RUNS), mm = median(multi, RUNS),
                   rm = median(rows, RUNS);
            double raw = mm > rm ? mm : rm;
            printf("%-8d %7zu %12.0f %12.0f %12.0f %12.2f\n", threads,
                   batches[bi], sm, mm, rm, sm / raw);
            if (threads == 1 && batches[bi] == 100)
                ratio = sm / raw;
        }
    printf("\nwhat one writer's batches of 100 cost (medians; the raw "
           "baseline's payloads were encoded before its clock):\n");
    costs_print("store", &store_cost);
    costs_print("raw-multi", &raw_cost);
    double one = pg_processes_run(1, NULL);
    double eight = pg_processes_run(8, NULL);
    double eight_off = pg_processes_run(8, "&eddy_notify=off");
    printf("\nprocesses appending batches of 10 (each its own store handle), "
           "events/s: 1 process %.0f; 8 processes %.0f (NOTIFY on), %.0f "
           "(NOTIFY off)\n", one, eight, eight_off);
    pg_read_rates();
    printf("another handle's subscription sees an append after (median): "
           "%.0f us with NOTIFY, %.0f us with eddy_notify=off (poll 100 ms)\n",
           pg_wake_us(NULL), pg_wake_us("&eddy_notify=off"));
    printf("load average after: %s\n", loadavg());
    PQfinish(pg_admin);
    return ratio;
}

/* ---- machine ------------------------------------------------------------------- */

static void print_machine(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(model, sizeof model, "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    printf("machine: nproc %ld, CPU %s, %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           u.sysname, u.release);
    printf("eddy %s, SQLite %s, stores in %s, median of %d runs, <= %.1f s per run\n\n",
           eddy_version(), sqlite3_libversion(), bench_dir, RUNS, RUN_SECONDS);
}

int main(int argc, char **argv)
{
    bool sqlite = true;
    if (argc > 1 && strcmp(argv[1], "--postgres-only") == 0) {
        sqlite = false;
        argc--;
        argv++;
    }
    pg_base = getenv("EDDY_BENCH_POSTGRES");
    if (pg_base && !*pg_base)
        pg_base = NULL;
    if (!sqlite && !pg_base)
        die("--postgres-only", "set EDDY_BENCH_POSTGRES to a PostgreSQL URL");
    const char *base = argc > 1 ? argv[1] : getenv("TMPDIR");
    snprintf(bench_dir, sizeof bench_dir, "%s/eddy-bench-store-XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(bench_dir))
        die(bench_dir, strerror(errno));
    setvbuf(stdout, NULL, _IOLBF, 0);
    print_machine();
    if (!sqlite) {
        double r = bench_postgres();
        rmdir(bench_dir);
        printf("\nstore/raw-postgres append ratio: %.2f\n", r);
        return 0;
    }

    static const size_t batches[] = {1, 10, 100, 1000};
    static const eddy_sync_mode syncs[] = {EDDY_SYNC_FULL, EDDY_SYNC_NORMAL};
    static const char *sync_names[] = {"full (durable)", "normal (relaxed)"};
    double ratio_store = 0, ratio_raw = 0;

    printf("append throughput, events/s\n");
    printf("%-18s %-8s %7s %12s %12s %12s\n", "sync", "threads", "batch", "store",
           "raw-sqlite", "store/raw");
    for (int si = 0; si < 2; si++)
        for (size_t bi = 0; bi < 4; bi++) {
            /* Store and baseline runs alternate, so that a drift of the
             * disk's speed during the run weighs on both alike. */
            double raw[RUNS], one[RUNS], four[RUNS];
            for (int r = 0; r < RUNS; r++) {
                raw[r] = raw_run(syncs[si], batches[bi]);
                one[r] = append_run(syncs[si], 1, batches[bi]);
                four[r] = append_run(syncs[si], MAX_THREADS, batches[bi]);
            }
            double raw_med = median(raw, RUNS), one_med = median(one, RUNS);
            printf("%-18s %-8d %7zu %12.0f %12.0f %12.2f\n", sync_names[si], 1,
                   batches[bi], one_med, raw_med, one_med / raw_med);
            printf("%-18s %-8d %7zu %12.0f %12s %12s\n", sync_names[si], MAX_THREADS,
                   batches[bi], median(four, RUNS), "-", "-");
            if (si == 0 && batches[bi] == 100) {
                ratio_store = one_med;
                ratio_raw = raw_med;
            }
        }
    printf("eddy_event_encode alone: %.0f events/s\n\n", encode_rate());

    /* The aggregate store: 10, 1,000 and 100,000 events; read it whole too. */
    char path[600];
    fresh_path(path, sizeof path, "agg");
    eddy_store *s = open_store(path, EDDY_SYNC_NORMAL);
    eddy_error err = {0};
    eddy_repository *plain = eddy_repository_new(s, &account_plain, &err);
    eddy_repository *snap = eddy_repository_new(s, &account_snap, &err);
    if (!plain || !snap)
        die("repository", err.message);
    static const size_t lens[] = {10, 1000, 100000};
    static const char *ids[] = {"a10", "a1000", "a100000"};
    for (int i = 0; i < 3; i++)
        populate(s, snap, ids[i], lens[i]);

    int64_t head = 0;
    eddy_store_head(s, &head, &err);
    double rv[RUNS], raw_rv[RUNS], read_ratio[RUNS];
    for (int r = 0; r < RUNS; r++) {
        raw_rv[r] = raw_read(path, head);
        eddy_cursor *cur;
        eddy_record rec;
        int64_t seen = 0;
        double t0 = now_s();
        if (eddy_store_read_all(s, 1, 0, &cur, &err) != EDDY_OK)
            die("read_all", err.message);
        int rc;
        while (eddy_cursor_next(cur, &rec, &err))
            seen++;
        rc = -eddy_cursor_error(cur);
        rv[r] = (double)seen / (now_s() - t0);
        eddy_cursor_free(cur);
        if (rc < 0 || seen != head)
            die("read_all", rc < 0 ? err.message : "short read");
        read_ratio[r] = rv[r] / raw_rv[r];
    }
    printf("read the global log (%" PRId64 " events), events/s: cursor %.0f, "
           "raw-sqlite %.0f\n\n", head, median(rv, RUNS), median(raw_rv, RUNS));

    printf("aggregate load time, ms (median)\n");
    printf("%-10s %16s %16s\n", "events", "no snapshots", "snapshot/100");
    for (int i = 0; i < 3; i++) {
        /* A snapshot load takes microseconds: many repetitions steady it. */
        double without = load_ms(plain, ids[i], lens[i], lens[i] >= 100000 ? 3 : 15);
        double with = load_ms(snap, ids[i], lens[i], 31);
        printf("%-10zu %16.3f %16.3f\n", lens[i], without, with);
    }
    eddy_repository_free(plain);
    eddy_repository_free(snap);
    eddy_store_close(s);
    remove_db(path);
    rmdir(bench_dir);

    double pg_ratio = pg_base ? bench_postgres() : 0;
    printf("\nread/raw-sqlite ratio: %.2f\n", median(read_ratio, RUNS));
    printf("store/raw-sqlite append ratio: %.2f\n", ratio_store / ratio_raw);
    if (pg_base)
        printf("store/raw-postgres append ratio: %.2f\n", pg_ratio);
    return 0;
}
