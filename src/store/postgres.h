/*
 * src/store/postgres.h - the PostgreSQL backend of the event store (libpq):
 * its design, and what its source files share.
 *
 *   postgres.c         the backend table: the writer's transaction, append,
 *                      snapshots, opening
 *   postgres_read.c    reads on the pool of reader connections
 *   postgres_conn.c    connections: URL options, connecting and reconnecting
 *                      with backoff, statements, parameters, errors
 *   postgres_schema.c  the tables and their versioned migrations
 *   postgres_sql.c     the portable statements (eddy/sql.h, the state
 *                      operations of src/store/state_*.c): parameters,
 *                      result rows, errors
 *   postgres_watch.c   the wake-up thread: LISTEN/NOTIFY, and a poll
 *
 * URL. "postgres://..." or "postgresql://..." is handed to libpq as it is
 * (every libpq connection option works: sslmode, passfile, service, host
 * lists, ...), less the options of eddy's own, which start with "eddy_" and
 * are removed first:
 *   eddy_notify=on|off  wake other processes' subscriptions through
 *                       LISTEN/NOTIFY (default on). NOTIFY takes a
 *                       cluster-wide lock at commit; with it off, other
 *                       processes notice commits by polling.
 *   eddy_poll_ms=N      how often the wake-up thread polls the head: the
 *                       fallback when a notification is missed (connection
 *                       lost), or the only way with eddy_notify=off.
 *                       Default 1000 with NOTIFY, 100 without.
 * and, as in transport URLs (eddy/transport.h), where the password comes
 * from when it should not sit in the URL:
 *   password_file=PATH  the password alone on the first line of PATH
 *   password_env=NAME   the password in the environment variable NAME
 * (libpq's own routes work too: user:password@ or password=, passfile=,
 * PGPASSWORD, PGPASSFILE, service files). At most one of user:password@,
 * password=, password_file= and password_env= may be given. A password is
 * never copied into a message or a log line: messages name the server as
 * "host:port/database", and errors about these keys name the file or the
 * variable, never the value.
 * The tables live in the first schema of the connection's search_path (set
 * it with libpq's options=-csearch_path%3DNAME to share a database).
 *
 * CONNECTIONS. One writer connection, used by the store's writer only
 * (group commit; backend.h); a pool of reader connections shared by every other thread
 * (a read takes one, runs one statement in autocommit, puts it back); one
 * connection for the wake-up thread. Each connection is used by one thread
 * at a time, as libpq requires.
 *
 * POSITIONS, AND WHY NO SUBSCRIBER EVER SKIPS A LATE COMMIT
 *
 * The store's contract (eddy/store.h) is one int64 global position per
 * event, gap-free, in commit order, and every checkpoint above the store is
 * "everything up to position P is done". With several writers in several
 * processes, a position handed out by a sequence before commit breaks it: T1
 * takes 10, T2 takes 11, T2 commits, a reader sees 11 and moves its
 * checkpoint past 10, then T1 commits 10: skipped forever (Marten's lost
 * events; Axon and Eventuous wait out gaps with a timeout).
 *
 * Here a position is taken under a lock that is held until the commit is
 * visible:
 *   1. Right after its BEGIN, every transaction of the writer takes
 *      pg_advisory_xact_lock(EDDYI_PG_LOCK_CLASS, OID of the log table
 *      `events`), in a statement of its own (under READ COMMITTED the next
 *      statement's snapshot is taken after the lock was granted, so it
 *      sees every commit made before).
 *   2. Each append statement reads max(position) and the stream's version
 *      and inserts at max+1, max+2, ... and version+1, ... Every writer of
 *      events (every eddy process, and the raw SQL of bench/store.c) does
 *      this under the same lock, so no two transactions ever hold positions
 *      at the same time, and a rolled-back append or savepoint leaves no
 *      gap (the next max+1 reuses the number).
 *   3. The lock is released only after the commit is visible to every new
 *      snapshot. PostgreSQL's CommitTransaction()
 *      (src/backend/access/transam/xact.c) calls RecordTransactionCommit()
 *      (the commit record, flushed per synchronous_commit, and pg_xact),
 *      then ProcArrayEndTransaction() with the comment "Let others know
 *      about no transaction in progress by me. Note that this must be done
 *      _before_ releasing locks we hold and _after_
 *      RecordTransactionCommit", and only then
 *      ResourceOwnerRelease(..., RESOURCE_RELEASE_LOCKS, ...), whose
 *      ProcReleaseLocks() (src/backend/storage/lmgr/proc.c) releases the
 *      transaction-level advisory locks ("LockReleaseAll(USER_LOCKMETHOD,
 *      false)"); the comment there: "We want to release locks at the point
 *      where any backend waiting for us will see our transaction as being
 *      fully cleaned up". AbortTransaction() keeps the same order.
 * Hence commit order = position order: if T2 holds position N, T2 got the
 * lock after every earlier holder's commit was visible. A snapshot that sees
 * position N sees every position below N; so "read everything after P, then
 * after the last position read" never skips, without a timeout or a gap
 * check. A subscriber's int64 checkpoint stays exact.
 *
 * Per-stream order follows: a stream's version is read and written only by
 * transactions holding the same lock, so versions of one stream increase
 * with positions. (The xid8 / pg_snapshot_xmin() design that Emmett uses
 * orders rows by (transaction id, position); it does not give this: T1 may
 * take its transaction id before T2 yet lock the stream after T2, so T1's
 * version 6 would be read before T2's version 5, and its positions are not
 * gap-free. So it does not keep eddy's single-int64 contract.)
 *
 * LOCK ORDER. The lock is the first lock of every write transaction, even
 * one that only updates state rows (checkpoints, leases, sagas): several
 * processes share such rows (one subscription's members update its
 * checkpoint and lease rows), and a transaction that locked one of them and
 * then waited for the append lock would deadlock with the holder of the
 * append lock waiting for that row (seen with `eddy demo --instances 2`
 * before). Taken first, the lock orders every eddy write transaction, as
 * SQLite's single writer does, and no two of them can wait for each other.
 *
 * The cost: write transactions serialize across processes (one holder at a
 * time, for its statements and its commit's WAL flush). Group commit
 * amortizes it inside each process; bench/README.md gives the throughput of
 * 8 processes. Readers never take the lock and never wait.
 *
 * WAKE-UP. A transaction that appended ends with pg_notify(channel,
 * max(position)) just before COMMIT, computed under the lock, so the payload
 * is exactly the head after that commit; PostgreSQL delivers a notification
 * only once its transaction is committed and no longer in progress for the
 * listener (AtCommit_Notify runs after ProcArrayEndTransaction), so the
 * head it carries is visible to any later read. The wake-up thread LISTENs,
 * and also polls the head every eddy_poll_ms (a notification sent while its
 * connection was down is lost). The payload is only a hint of where the head
 * is; delivery still reads the log.
 *
 * STATE OPERATIONS AND USER SQL (the backend's `sql` entry). On the writer
 * a statement runs inside the open group-commit transaction, queued in the
 * pipeline behind the BEGIN and the savepoints it needs (all sent lazily:
 * a job that writes nothing sends nothing), so it costs one round trip;
 * none when the caller reads neither its rows nor its count of changes: it
 * is deferred to the next exchange, and its error is reported then, at the
 * latest by the release of its savepoint (postgres.c, DEFERRED
 * STATEMENTS); writer thread only, as every write_* function. On a reader it takes a
 * pooled connection (autocommit; any thread). Nested savepoints (depth 1,
 * 2, ... inside a job's depth 0) are named eddy_sp<depth> and sent lazily
 * too; a rollback to one that was never sent sends nothing, and the append
 * lock taken inside a savepoint that is rolled back is known to be gone.
 * Reads inside the transaction (eddy_txn_read_stream) run the page query
 * on the writer, so they see its own appends. A statement that fails
 * aborts the PostgreSQL transaction up to the innermost savepoint sent:
 * the writer remembers it and refuses later statements with a clear
 * EDDY_ESTATE until that savepoint is rolled back (a release after an
 * ignored failure rolls back instead and says so), where SQLite would have
 * undone the one statement only (eddy/sql.h).
 *
 * LIMITS. Each job of a group commit runs in a savepoint, which PostgreSQL
 * makes a subtransaction once it writes: a transaction of more than 64
 * writing jobs (thousands of small asynchronous appends committed together)
 * overflows the subtransaction cache of its backend, which slows other
 * sessions' snapshots while it is open. One append's arrays travel as one
 * statement: PostgreSQL refuses a parameter over 1 GB (10,000 events of
 * 100 kB would be refused with EDDY_EIO).
 *
 * FAULTS. A lost connection is reconnected with exponential backoff for up
 * to busy_timeout_ms per operation; the loss is logged once, the recovery
 * once. A transaction whose connection is lost before COMMIT was sent is
 * rolled back by the server: its appends fail with EDDY_ECONNECT ("nothing
 * was stored"). A connection lost after COMMIT was sent and before its
 * answer leaves the outcome unknown: EDDY_EINDOUBT; appending the same
 * events again is safe (idempotent by event id).
 */
#ifndef EDDY_SRC_STORE_POSTGRES_H
#define EDDY_SRC_STORE_POSTGRES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "../core/internal.h"
#include "backend.h"

/* The store schema version this eddy writes in PostgreSQL (its own count,
 * independent of the SQLite file's). */
#define EDDYI_PG_SCHEMA_VERSION 3

/* First key of eddy's advisory locks: 'eddy' in ASCII. The second key is the
 * OID of the store's log table (events) (the append lock) or 0 (migrations,
 * database-wide). */
#define EDDYI_PG_LOCK_CLASS 0x65646479

/* Prepared statements kept per connection: the log's and the state
 * operations' statements (about 80 shapes) fit; an evicted statement is
 * deallocated on the server before its slot is reused (evicted[]), so a
 * program that runs ever new SQL does not grow the server's memory. */
#define EDDYI_PG_STMT_CACHE 128

/* One connection and its prepared statements. */
typedef struct eddyi_pg_conn {
    PGconn *pg;
    unsigned generation; /* eddyi_pg.generation when it was opened */
    struct {
        const char *key; /* static SQL: compared by pointer */
        char *sql;       /* dynamic SQL: compared by content */
        unsigned id;     /* prepared as "eddy_<id>" */
    } cache[EDDYI_PG_STMT_CACHE];
    unsigned next_id, next_evict;
    unsigned evicted; /* id of an evicted statement still to deallocate
                         (0: none) */
    struct eddyi_pg_conn *next_idle;
} eddyi_pg_conn;

typedef struct eddyi_pg eddyi_pg;

/* The shared part of the backend (postgres.c owns the rest). */
struct eddyi_pg {
    char *conninfo;          /* the URL without eddy's options */
    char *password;          /* from password_file= / password_env=, or
                                NULL (libpq's routes: the URL, passfile,
                                PGPASSWORD, PGPASSFILE); wiped at close */
    char where[256];         /* "host:port/database", for messages */
    eddy_store_options opts;
    bool notify;             /* eddy_notify */
    int poll_ms;             /* eddy_poll_ms */
    int32_t lock_key;        /* OID of events, as the lock's 2nd key */
    char channel[64];        /* NOTIFY channel of this store */
    atomic_uint generation;  /* bumped when a dead connection is found */
    atomic_bool lost;        /* a loss was reported, no recovery yet */
    pthread_mutex_t pool_mu; /* guards the idle reader connections */
    eddyi_pg_conn *idle;
    size_t idle_count;
};

/* ---- postgres_conn.c -------------------------------------------------- */

/* Statement parameters: text ones as C strings, the rest binary (the
 * portable statements of eddy/sql.h send every value as text: see
 * postgres_sql.c). `text_results`: results in text format (default:
 * binary). */
#define EDDYI_PG_MAX_PARAMS 32
typedef struct eddyi_pg_params {
    int n;
    bool text_results;
    const char *what; /* names the statement in errors (NULL: generic) */
    const char *values[EDDYI_PG_MAX_PARAMS];
    int lengths[EDDYI_PG_MAX_PARAMS];
    int formats[EDDYI_PG_MAX_PARAMS];
    Oid types[EDDYI_PG_MAX_PARAMS];
    char ints[EDDYI_PG_MAX_PARAMS][32];
} eddyi_pg_params;

#define EDDYI_PG_INT4 23
#define EDDYI_PG_INT8 20
#define EDDYI_PG_TEXT 25
#define EDDYI_PG_BYTEA 17
#define EDDYI_PG_TEXT_ARRAY 1009
#define EDDYI_PG_INT8_ARRAY 1016
#define EDDYI_PG_BYTEA_ARRAY 1001
#define EDDYI_PG_FLOAT8 701

void eddyi_pg_param_text(eddyi_pg_params *p, const char *s);
void eddyi_pg_param_int8(eddyi_pg_params *p, int64_t v);
void eddyi_pg_param_int4(eddyi_pg_params *p, int32_t v);
/* Binary data of type `type` (bytea, or an array built with eddyi_buf);
 * borrowed until the statement ran. */
void eddyi_pg_param_bin(eddyi_pg_params *p, const void *data, size_t len,
                        Oid type);

/* Binary values and arrays, built in an eddyi_buf (core/internal.h). */
void eddyi_pg_buf_i32(eddyi_buf *b, int32_t v);
void eddyi_pg_buf_i64(eddyi_buf *b, int64_t v);
/* Starts a one-dimensional array of `count` elements of type `elem`; then
 * one eddyi_pg_array_elem / _null per element. */
void eddyi_pg_array_begin(eddyi_buf *b, Oid elem, int32_t count,
                          bool has_nulls);
void eddyi_pg_array_elem(eddyi_buf *b, const void *data, size_t len);
void eddyi_pg_array_null(eddyi_buf *b);

/* A binary-format result column as an integer (int2/int4/int8), 0 for
 * NULL. */
int64_t eddyi_pg_int(const PGresult *r, int row, int col);

/*
 * Parses the URL into pg->conninfo, notify, poll_ms. Returns EDDY_OK, or
 * EDDY_EINVAL naming an unknown or bad eddy_ option.
 */
int eddyi_pg_parse_url(eddyi_pg *pg, const char *url, eddy_error *err);

/*
 * Opens a connection for `role` ("writer", "reader", "listener": its
 * fallback application_name is "eddy <role>"). With `retry`, a failure is
 * retried with exponential backoff (50 ms doubling to 1 s) for up to
 * busy_timeout_ms; the first failure after a working connection is logged
 * once. Returns EDDY_OK and `*out` (eddyi_pg_conn_free), or EDDY_ECONNECT
 * with libpq's reason ("... password authentication failed for user ...").
 */
int eddyi_pg_connect(eddyi_pg *pg, const char *role, bool retry,
                     eddyi_pg_conn **out, eddy_error *err);
void eddyi_pg_conn_free(eddyi_pg_conn *c);

/* Wipes and frees pg->password (at close). */
void eddyi_pg_password_free(eddyi_pg *pg);

/* True when the connection is gone; records the loss (generation bump,
 * logged once). */
bool eddyi_pg_conn_dead(eddyi_pg *pg, eddyi_pg_conn *c, const char *detail);

/* False when an idle connection is known to be gone: its socket shows the
 * server's end, say after a server restart. Costs one poll(), no round
 * trip. */
bool eddyi_pg_conn_alive(eddyi_pg_conn *c);

/* Logs the recovery once, after a loss. */
void eddyi_pg_recovered(eddyi_pg *pg);

/*
 * The name ("eddy_<n>") of the prepared statement for `sql` on `c`: static
 * SQL is matched by pointer, `dynamic` SQL by content. `*fresh` tells that
 * it is new: the caller prepares it, and calls eddyi_pg_stmt_forget when
 * that fails. A full cache forgets its oldest entry (the server keeps that
 * statement until the connection closes: a handful at most, as the SQL
 * shapes are few). Returns EDDY_OK or EDDY_ENOMEM.
 */
int eddyi_pg_stmt_name(eddyi_pg_conn *c, const char *sql, bool dynamic,
                       char name[32], bool *fresh, eddy_error *err);
void eddyi_pg_stmt_forget(eddyi_pg_conn *c, const char *name);

/*
 * Runs `sql` on `c` (not in pipeline mode) as a prepared statement, binary
 * results. Returns the result (PQclear it) or NULL with `err` filled: the
 * server's message, EDDY_ECONNECT when the connection is gone.
 */
PGresult *eddyi_pg_exec(eddyi_pg *pg, eddyi_pg_conn *c, const char *sql,
                        bool dynamic, const eddyi_pg_params *p,
                        eddy_error *err);

/* Runs SQL without parameters (several statements allowed). */
int eddyi_pg_exec_simple(eddyi_pg *pg, eddyi_pg_conn *c, const char *sql,
                         eddy_error *err);

/*
 * Fills `err` from a failed result (or from the connection when `r` is
 * NULL) and returns the code: EDDY_ECONNECT (connection gone), EDDY_EBUSY
 * (lock timeout, deadlock, serialization failure), else EDDY_EIO. The
 * message starts with `what` and ends with the SQLSTATE.
 */
int eddyi_pg_error(eddyi_pg *pg, PGconn *c, const PGresult *r,
                   const char *what, eddy_error *err);

/* ---- postgres_read.c -------------------------------------------------- */

/* Gives a reader connection back to the pool (a dead one, or one over the
 * pool's size, is closed). */
void eddyi_pg_pool_put(eddyi_pg *pg, eddyi_pg_conn *c);
/* Closes the idle reader connections (at close). */
void eddyi_pg_pool_clear(eddyi_pg *pg);

/* The backend's read functions (backend.h); `impl` is the backend's, whose
 * first member is its eddyi_pg. Any thread. */
int eddyi_pg_read_page(void *impl, const eddyi_read_spec *spec,
                       int64_t start_key, size_t max_rows, size_t max_bytes,
                       eddyi_row *rows, size_t *n, eddy_error *err);
int eddyi_pg_head(void *impl, int64_t *head, eddy_error *err);
int eddyi_pg_stream_version(void *impl, const char *stream_id,
                            int64_t *version, eddy_error *err);
int eddyi_pg_streams_page(void *impl, const char *after, size_t max,
                          char **ids, int64_t *versions, size_t *n,
                          eddy_error *err);
int eddyi_pg_snapshot_load(void *impl, const char *stream_id, int64_t *version,
                           int *schema_version, char **state, eddy_error *err);
int eddyi_pg_info(void *impl, eddy_store_info *info, eddy_error *err);

/* ---- postgres_sql.c ------------------------------------------------- */

/* The parameters of a portable statement (eddy/sql.h) for libpq: typed by
 * their letters, sent as text, results asked for in text. EDDY_EINVAL when
 * there are too many. */
int eddyi_pg_sql_params(const char *sql, const eddyi_value *v, size_t n,
                        eddyi_pg_params *p, eddy_error *err);

/* Hands the rows of `r` (a text-format result) to `fn` through the row
 * view of backend.h, and its count of changed rows to `changes` (may be
 * NULL). Returns EDDY_OK, fn's non-zero value, or EDDY_ENOMEM. */
int eddyi_pg_sql_rows(const PGresult *r, eddyi_row_fn fn, void *user,
                      int64_t *changes, eddy_error *err);

/* The statement as errors name it: "\"SELECT ...\"" (cut at 120 bytes). */
void eddyi_pg_sql_what(const char *sql, char *out, size_t cap);

/* Runs one statement on a pooled reader connection (autocommit), once more
 * on a new connection when the first turns out dead. Returns the result
 * (PQclear it) or NULL with `err`. Any thread. */
PGresult *eddyi_pg_read_exec(eddyi_pg *pg, const char *sql, bool dynamic,
                             const eddyi_pg_params *p, eddy_error *err);

/* The page query of a read (read_page) and its parameters: `*sql` is
 * malloc'd, `bufs` (two) hold the arrays the parameters point into
 * (eddyi_buf_free both). EDDY_ENOMEM on failure, nothing to free. */
int eddyi_pg_page_query(const eddyi_read_spec *spec, int64_t start_key,
                        size_t max_rows, size_t max_bytes, char **sql,
                        eddyi_pg_params *p, eddyi_buf bufs[3],
                        eddy_error *err);

/* Decodes the rows of a page result into `rows` (read_page). */
int eddyi_pg_page_rows(const PGresult *r, size_t max_rows, eddyi_row *rows,
                       size_t *n, eddy_error *err);

/* ---- postgres_schema.c ------------------------------------------------ */

/*
 * Brings the store's tables to EDDYI_PG_SCHEMA_VERSION on `c` in one
 * transaction, under a database-wide advisory lock (processes opening at
 * once take turns). Refuses, changing nothing: EDDY_EVERSION for a newer
 * schema, EDDY_ECORRUPT for eddy tables without a schema version.
 */
int eddyi_pg_migrate(eddyi_pg *pg, eddyi_pg_conn *c, eddy_error *err);

/* For a read-only open: checks that the schema is there and current
 * (EDDY_ENOTFOUND: no store; EDDY_EVERSION: older or newer). */
int eddyi_pg_schema_check(eddyi_pg *pg, eddyi_pg_conn *c, eddy_error *err);

/* Reads the OID of events into pg->lock_key and pg->channel. */
int eddyi_pg_store_ids(eddyi_pg *pg, eddyi_pg_conn *c, eddy_error *err);

/* ---- postgres_watch.c ------------------------------------------------- */

typedef struct eddyi_pg_watch eddyi_pg_watch;

/* Starts the wake-up thread. Returns EDDY_OK and `*out`, or an error. */
int eddyi_pg_watch_start(eddyi_pg *pg, void (*wake)(void *ctx, int64_t head),
                         void *ctx, eddyi_pg_watch **out, eddy_error *err);
/* Stops and joins the thread; no wake runs after it returns. NULL: no-op. */
void eddyi_pg_watch_stop(eddyi_pg_watch *w);

/* The head query shared by the backend and the watcher. */
extern const char eddyi_pg_sql_head[];

#endif
