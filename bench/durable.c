/*
 * bench/durable.c - events per second through a durable subscription,
 * against the in-memory bus in the same run.
 *
 * Cases, each over the same pre-built events (64 partition keys, data of
 * about 60 bytes; construction is not measured):
 *   bus            eddy_bus_publish of every event to one no-op handler
 *                  ("*"), timed from the first publish until the handler
 *                  has run for the last event (in memory, at-most-once);
 *   durable no-op  the events are appended to a fresh store first (not
 *                  timed); timed from eddy_durable_start (AT_LEAST_ONCE,
 *                  no-op handler) until eddy_durable_wait_idle returns with
 *                  the checkpoint at the head and persisted: reading the
 *                  log, decoding, dispatch by key, checkpoints in batches;
 *   store sub      reference: eddy_store_subscribe from position 0 with a
 *                  no-op callback (what the durable layer reads through);
 *   durable txn    the same with a TRANSACTIONAL handler that inserts one
 *                  row per event into its own table (eddy_txn_exec, the
 *                  portable statement API), in the transaction
 *                  that also records the inbox row and the checkpoint (the
 *                  exactly-once path).
 *   raw read       baseline: the same rows read from the store's file by
 *                  plain SQLite, one prepared SELECT, columns fetched,
 *                  nothing decoded;
 *   raw txn        baseline: plain SQLite doing what the transactional
 *                  handler does, per batch of 64: the inserts and the
 *                  checkpoint in one transaction.
 * Both sides use 4 worker threads. The store runs with sync NORMAL
 * (survives a process crash; see eddy/store.h). Each case runs RUNS times,
 * interleaved; the figure is the median. After every durable run the
 * handled count (no-op) or the table's row count (txn) is checked to equal
 * the number of events, else the benchmark fails.
 *
 * Usage: durable [events-per-run]  (default 50000). The last two lines:
 * "durable/raw-sqlite read ratio: R" (durable no-op / raw read) and
 * "durable-txn/raw-sqlite ratio: R" (durable transactional / raw txn),
 * each the median of the runs' own ratios.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eddy/durable.h"
#include "eddy/eddy.h"
#include "eddy/sqlite.h" /* sqlite3_libversion() for the machine line */

#define RUNS 5
#define KEYS 64
#define WORKERS 4

static size_t nevents = 50000;
static eddy_event **events;
static atomic_size_t handled;
static char dir[512];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "durable bench: %s: %s\n", what, msg);
    exit(1);
}

static void machine_info(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *v = strchr(line, ':');
                if (v) {
                    v++;
                    while (*v == ' ')
                        v++;
                    snprintf(model, sizeof model, "%.*s",
                             (int)strcspn(v, "\n"), v);
                }
                break;
            }
        }
        fclose(f);
    }
    printf("machine: nproc %ld, CPU \"%s\", SQLite %s, eddy %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, sqlite3_libversion(),
           eddy_version());
}

/* ---- the bus ------------------------------------------------------------- */

static int noop(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    (void)ev;
    (void)user;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return EDDY_OK;
}

static void wait_handled(size_t n)
{
    double t0 = now_s();
    while (atomic_load(&handled) < n) {
        if (now_s() - t0 > 120)
            die("bus", "handlers did not finish in 120 s");
        sched_yield();
    }
}

static double run_bus(void)
{
    eddy_error err = {0};
    eddy_bus_options o = {.workers = WORKERS};
    eddy_bus *bus = eddy_bus_new(&o, &err);
    if (!bus || eddy_bus_subscribe(bus, "*", "noop", noop, NULL, NULL, &err) ||
        eddy_bus_start(bus))
        die("bus", err.message);
    atomic_store(&handled, 0);
    double t0 = now_s();
    for (size_t i = 0; i < nevents; i++)
        if (eddy_bus_publish(bus, events[i]) != EDDY_OK)
            die("bus", "publish failed");
    wait_handled(nevents);
    double t = now_s() - t0;
    eddy_bus_free(bus);
    return (double)nevents / t;
}

/* ---- durable ---------------------------------------------------------------- */

/* The handler a user writes: one row in its own table, through the
 * portable statement API (eddy/sql.h), in the subscription's transaction. */
static int txn_handler(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                       void *user)
{
    (void)user;
    eddy_error e = {0};
    if (eddy_txn_exec(txn, NULL, &e, "INSERT INTO bench_effects(event_id, "
                      "subject) VALUES($1, $2)", "ss", eddy_event_id(ev),
                      eddy_event_subject(ev)) != EDDY_OK)
        return eddy_ctx_fail(ctx, e.code, "insert: %s", e.message);
    return EDDY_OK;
}

static int create_table(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err, "CREATE TABLE bench_effects("
                         "event_id TEXT NOT NULL, subject TEXT NOT NULL)",
                         NULL);
}

static int64_t count_effects(eddy_store *s)
{
    int64_t n = 0;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM bench_effects",
                           NULL) != EDDY_OK)
        die("count", err.message);
    return n;
}

/* Removes a SQLite file and its -wal and -shm. */
static void remove_db(const char *path)
{
    char buf[620];
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path);
    unlink(buf);
}

/* A fresh store holding every event; returns it open. */
static eddy_store *fill_store(const char *path, bool txn_table)
{
    remove_db(path);
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddy_store_open(path, &so, &err);
    if (!s)
        die("open", err.message);
    for (size_t i = 0; i < nevents; i += 1000) {
        size_t n = nevents - i < 1000 ? nevents - i : 1000;
        if (eddy_store_append(s, "bench", EDDY_EXPECT_ANY, events + i, n, NULL,
                              &err) != EDDY_OK)
            die("append", err.message);
    }
    if (txn_table && eddy_store_transact(s, create_table, NULL, &err) !=
                         EDDY_OK)
        die("create table", err.message);
    return s;
}

static double run_durable(eddy_delivery_mode mode, int run)
{
    char path[600];
    snprintf(path, sizeof path, "%s/durable-%d-%d.db", dir, (int)mode, run);
    bool txn = mode == EDDY_DELIVERY_TRANSACTIONAL;
    eddy_store *s = fill_store(path, txn);
    int64_t head = 0;
    eddy_error err = {0};
    if (eddy_store_head(s, &head, &err) != EDDY_OK || head != (int64_t)nevents)
        die("head", "the store does not hold every event");
    eddy_durable_options o = {.name = txn ? "bench-txn" : "bench-noop",
                              .mode = mode,
                              .workers = WORKERS};
    if (txn)
        o.txn_handler = txn_handler;
    else
        o.handler = noop;
    atomic_store(&handled, 0);
    double t0 = now_s();
    eddy_durable *d = eddy_durable_start(s, &o, &err);
    if (!d)
        die("durable start", err.message);
    int rc = eddy_durable_wait_idle(d, head, 120000);
    double t = now_s() - t0;
    if (rc != EDDY_OK)
        die("durable", eddy_strerror(rc));
    if (eddy_durable_stop(d, &err) != EDDY_OK)
        die("durable stop", err.message);
    eddy_durable_free(d);
    size_t done = txn ? (size_t)count_effects(s) : atomic_load(&handled);
    if (done != nevents) {
        fprintf(stderr, "durable bench: %zu of %zu events handled\n", done,
                nevents);
        exit(1);
    }
    eddy_store_close(s);
    remove_db(path);
    return (double)nevents / t;
}

/* The store's own live subscription with a no-op callback: the floor the
 * durable layer builds on (read, decode, one thread, no checkpoint). */
static int count_record(const eddy_record *rec, void *user)
{
    (void)rec;
    (void)user;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return 0;
}

static double run_store_sub(int run)
{
    char path[600];
    snprintf(path, sizeof path, "%s/sub-%d.db", dir, run);
    eddy_store *s = fill_store(path, false);
    eddy_error err = {0};
    eddy_store_subscription *sub = NULL;
    atomic_store(&handled, 0);
    double t0 = now_s();
    if (eddy_store_subscribe(s, 0, count_record, NULL, NULL, &sub, &err) !=
        EDDY_OK)
        die("subscribe", err.message);
    wait_handled(nevents);
    double t = now_s() - t0;
    eddy_store_subscription_free(sub);
    eddy_store_close(s);
    remove_db(path);
    return (double)nevents / t;
}

/* ---- the raw-SQLite baselines ------------------------------------------------------ */

/* The store's file, written by eddy, read with plain SQLite: one prepared
 * SELECT over the log, every column the durable layer needs fetched,
 * nothing decoded. What reading the log costs at the engine. */
static double run_raw_read(int run)
{
    char path[600];
    snprintf(path, sizeof path, "%s/rawread-%d.db", dir, run);
    eddy_store_close(fill_store(path, false));
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT position, stream_id, stream_version, "
                           "recorded_us, type, payload FROM events WHERE "
                           "position > ?1 ORDER BY position", -1, &st,
                           NULL) != SQLITE_OK)
        die("raw read", sqlite3_errmsg(db));
    double t0 = now_s();
    sqlite3_bind_int64(st, 1, 0);
    size_t n = 0, bytes = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        bytes += (size_t)sqlite3_column_int64(st, 0);
        bytes += (size_t)sqlite3_column_bytes(st, 1);
        bytes += (size_t)sqlite3_column_int64(st, 2);
        bytes += (size_t)sqlite3_column_int64(st, 3);
        bytes += (size_t)sqlite3_column_bytes(st, 4);
        const unsigned char *payload = sqlite3_column_text(st, 5);
        bytes += payload ? (size_t)sqlite3_column_bytes(st, 5) : 0;
        n++;
    }
    double t = now_s() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (n != nevents || bytes == 0)
        die("raw read", "not every row was read");
    remove_db(path); /* the read-only connection left its -wal and -shm */
    return (double)nevents / t;
}

/*
 * What a transactional handler does, in plain SQLite on the same file and
 * pragmas: read the events, then per batch of 64 (the durable layer's
 * transactional batch) one transaction with one insert per event and the
 * checkpoint's upsert.
 */
static double run_raw_txn(int run)
{
    char path[600];
    snprintf(path, sizeof path, "%s/rawtxn-%d.db", dir, run);
    eddy_store_close(fill_store(path, true));
    sqlite3 *db = NULL;
    sqlite3_stmt *rd = NULL, *ins = NULL, *ck = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT position, id, subject FROM events "
                           "WHERE position > ?1 ORDER BY position LIMIT 64",
                           -1, &rd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO bench_effects(event_id, subject) "
                           "VALUES(?1, ?2)", -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO eddy_checkpoints(name, position, "
                           "updated_us) VALUES('raw', ?1, 0) ON CONFLICT(name) "
                           "DO UPDATE SET position = excluded.position",
                           -1, &ck, NULL) != SQLITE_OK)
        die("raw txn", sqlite3_errmsg(db));
    double t0 = now_s();
    int64_t last = 0;
    size_t n = 0;
    for (;;) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_bind_int64(rd, 1, last);
        size_t k = 0;
        while (sqlite3_step(rd) == SQLITE_ROW) {
            last = sqlite3_column_int64(rd, 0);
            sqlite3_bind_text(ins, 1, (const char *)sqlite3_column_text(rd, 1),
                              -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 2, (const char *)sqlite3_column_text(rd, 2),
                              -1, SQLITE_TRANSIENT);
            if (sqlite3_step(ins) != SQLITE_DONE)
                die("raw txn insert", sqlite3_errmsg(db));
            sqlite3_reset(ins);
            k++;
        }
        sqlite3_reset(rd);
        sqlite3_bind_int64(ck, 1, last);
        if (sqlite3_step(ck) != SQLITE_DONE)
            die("raw txn checkpoint", sqlite3_errmsg(db));
        sqlite3_reset(ck);
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            die("raw txn commit", sqlite3_errmsg(db));
        n += k;
        if (k == 0)
            break;
    }
    double t = now_s() - t0;
    sqlite3_finalize(rd);
    sqlite3_finalize(ins);
    sqlite3_finalize(ck);
    sqlite3_close(db);
    if (n != nevents)
        die("raw txn", "not every event was handled");
    remove_db(path);
    return (double)nevents / t;
}

/* ---- main ---------------------------------------------------------------------- */

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

int main(int argc, char **argv)
{
    if (argc > 1) {
        char *end;
        long long n = strtoll(argv[1], &end, 10);
        if (*end || n < 1000 || n > 10000000) {
            fprintf(stderr, "usage: durable [events-per-run: 1000..10000000]\n");
            return 2;
        }
        nevents = (size_t)n;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/eddy-bench-durable-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        die("mkdtemp", dir);
    machine_info();
    printf("events per run: %zu, %d runs (interleaved), %d partition keys, "
           "%d workers on each side,\nstore sync normal, durable checkpoints "
           "every 100 events or 200 ms (the defaults)\n\n",
           nevents, RUNS, KEYS, WORKERS);
    fflush(stdout);

    events = calloc(nevents, sizeof *events);
    if (!events)
        die("events", "out of memory");
    eddy_error err = {0};
    for (size_t i = 0; i < nevents; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "order-%zu", i % KEYS);
        events[i] = eddy_event_newf("order.placed", "bench", subject, &err,
                                    "{s:s, s:i, s:f}", "order_id", subject,
                                    "n", (int)i, "amount", 9.5);
        if (!events[i])
            die("event", err.message);
    }

    double bus[RUNS], sub_d[RUNS], noop_d[RUNS], txn_d[RUNS], rread[RUNS],
        rtxn[RUNS], read_ratio[RUNS], txn_ratio[RUNS];
    for (int r = 0; r < RUNS; r++) {
        bus[r] = run_bus();
        rread[r] = run_raw_read(r);
        sub_d[r] = run_store_sub(r);
        noop_d[r] = run_durable(EDDY_DELIVERY_AT_LEAST_ONCE, r);
        rtxn[r] = run_raw_txn(r);
        txn_d[r] = run_durable(EDDY_DELIVERY_TRANSACTIONAL, r);
        /* each run's own ratio: both sides measured back to back */
        read_ratio[r] = noop_d[r] / rread[r];
        txn_ratio[r] = txn_d[r] / rtxn[r];
        fprintf(stderr, "run %d: bus %.0f, raw read %.0f, store subscription "
                "%.0f, durable no-op %.0f, raw txn %.0f, durable txn %.0f "
                "events/s\n", r + 1, bus[r], rread[r], sub_d[r], noop_d[r],
                rtxn[r], txn_d[r]);
    }
    double mb = median(bus, RUNS), ms = median(sub_d, RUNS),
           mn = median(noop_d, RUNS), mt = median(txn_d, RUNS),
           mrr = median(rread, RUNS), mrt = median(rtxn, RUNS);
    printf("%-52s %14s\n", "case", "events/s");
    printf("%-52s %14.0f\n", "in-memory bus, no-op handler", mb);
    printf("%-52s %14.0f\n", "raw SQLite: one SELECT over the log, no decode",
           mrr);
    printf("%-52s %14.0f\n", "store subscription (no durable layer), no-op", ms);
    printf("%-52s %14.0f\n", "durable at-least-once, no-op handler", mn);
    printf("%-52s %14.0f\n", "raw SQLite: insert + checkpoint per 64 events",
           mrt);
    printf("%-52s %14.0f\n", "durable transactional, 1 row per event", mt);
    printf("durable/in-memory throughput ratio: %.3f (information)\n",
           mn / mb);
    printf("durable/raw-sqlite read ratio: %.2f\n", median(read_ratio, RUNS));
    printf("durable-txn/raw-sqlite ratio: %.2f\n", median(txn_ratio, RUNS));

    eddy_event_array_free(events, nevents);
    rmdir(dir);
    return 0;
}
