/*
 * eddy/store.h - the event store: eddy's durable source of truth.
 *
 * A store holds streams of events. Every appended event gets
 *   - a stream version: 1 for the first event of its stream, then 2, 3, ...
 *   - a global position: 1 for the first event of the store, then 2, 3, ...
 *     gap-free, in commit order; the global log is ordered by position,
 *     never by timestamp.
 * Events are kept as their CloudEvents JSON (eddy_event_encode) and come
 * back as equal events (eddy_event_equal).
 *
 * A store is chosen by a URL: "sqlite:PATH" or a bare PATH is the embedded
 * SQLite backend (no server; the file is created when missing);
 * "postgres://..." or "postgresql://..." is the PostgreSQL backend, for
 * many processes on many machines sharing one store (below). An unknown
 * scheme fails with EDDY_EUNSUPPORTED naming it.
 *
 * POSTGRESQL. The URL goes to libpq as it is, so every libpq connection
 * option works (sslmode, passfile, service, host lists, options=-csearch_path
 * %3DNAME to put the tables in another schema, ...), less eddy's own options,
 * which are removed first:
 *   eddy_notify=on|off  other processes' subscriptions and eddy_store_wait
 *                       are woken through LISTEN/NOTIFY (default on; NOTIFY
 *                       takes a cluster-wide lock at commit);
 *   eddy_poll_ms=N      how often each store handle polls the head as well:
 *                       the fallback for a missed notification, or the only
 *                       way with eddy_notify=off (default 1000 with NOTIFY,
 *                       100 without);
 *                       a handle LISTENs and polls (one connection, one
 *                       thread) from its first subscription or
 *                       eddy_store_wait on: a handle that only appends
 *                       never does;
 *   password_file=PATH  the password alone on the first line of PATH, and
 *   password_env=NAME   the password in environment variable NAME (as in
 *                       transport URLs; libpq's user:password@, password=,
 *                       passfile=, PGPASSWORD and PGPASSFILE work too).
 * TLS is libpq's: sslmode=verify-full&sslrootcert=FILE. A wrong password, an
 * unknown user or an untrusted certificate fails the open at once with
 * EDDY_ECONNECT and libpq's reason; the password is never in a message.
 * Positions stay gap-free and in commit order across processes: appends take
 * a transaction-level advisory lock held until their commit is visible, so a
 * reader that sees position N sees every position below it and no
 * subscriber ever skips a late commit (the argument, with PostgreSQL's
 * sources: src/store/postgres.h). The cost: appending commits of different
 * processes take turns. busy_timeout_ms bounds the wait for that lock and
 * for a lost server (reconnection with backoff). The sync modes map to
 * synchronous_commit: FULL keeps on (or a stronger server setting), NORMAL
 * and OFF set off (a server crash may lose the last commits; an eddy
 * process crash loses nothing acknowledged). Every state operation
 * (durable subscriptions, projections, sagas, outbox, dead letters) and the
 * portable SQL of eddy/sql.h run on PostgreSQL as on SQLite; the log table
 * is named `events` on both. One difference: a failed statement aborts a
 * PostgreSQL transaction up to its innermost savepoint, so a handler must
 * return the error (or run a statement that may fail in a savepoint).
 *
 * DURABILITY. eddy_store_append() returns only after the transaction holding
 * the events has committed with the store's sync mode (see eddy_sync_mode).
 * One writer thread per store owns the write connection and commits the
 * appends of all concurrent callers in one transaction (group commit), each
 * caller's append in its own savepoint: one failing append (a conflict, a
 * duplicate) rolls back only itself. A synchronous append that finds the
 * writer idle and nothing queued commits on the calling thread instead,
 * saving two thread switches (appends queued meanwhile wait for it, and
 * the writer thread takes them next); handlers, projections, sagas and
 * every other write job still run on the writer thread.
 *
 * THREADING. An eddy_store handle is thread-safe: any number of threads may
 * append, read, query and subscribe at once. An eddy_cursor is used by one
 * thread at a time. A subscription runs its callback on its own thread.
 * The store starts one writer thread, plus one thread per subscription.
 *
 * Several processes may open the same SQLite file: SQLite's locking
 * serialises their writers and positions stay gap-free, but live
 * notification (subscriptions, eddy_store_wait) is only instant for appends
 * made through the same eddy_store handle; appends by other processes are
 * noticed within about a second. On PostgreSQL, appends by other processes
 * wake subscriptions at once (NOTIFY), or within eddy_poll_ms.
 */
#ifndef EDDY_STORE_H
#define EDDY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "eddy/error.h"
#include "eddy/event.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_store eddy_store;
typedef struct eddy_cursor eddy_cursor;
typedef struct eddy_store_subscription eddy_store_subscription;

/* ---- opening ---------------------------------------------------------- */

/*
 * How hard a commit is pushed to disk before an append is acknowledged.
 *
 * EDDY_SYNC_FULL (default): the write-ahead log is fsync'ed at every group
 *   commit. An acknowledged append survives a process crash, an operating
 *   system crash and a power loss.
 * EDDY_SYNC_NORMAL: the log is fsync'ed only at checkpoints. An acknowledged
 *   append survives a process crash (SIGKILL included); an OS crash or power
 *   loss may lose the last commits before the crash (the store stays
 *   consistent: whole transactions are lost, never parts, and positions stay
 *   gap-free). Several times faster for small appends.
 * EDDY_SYNC_OFF: no fsync at all. Survives a process crash; an OS crash or
 *   power loss may lose commits or corrupt the file. For tests and
 *   benchmarks only.
 */
typedef enum eddy_sync_mode {
    EDDY_SYNC_FULL = 0,
    EDDY_SYNC_NORMAL = 1,
    EDDY_SYNC_OFF = 2
} eddy_sync_mode;

#define EDDY_STORE_DEFAULT_MAX_EVENT_BYTES ((size_t)1 << 20) /* 1 MiB */
#define EDDY_STORE_DEFAULT_MAX_BATCH_EVENTS 10000
#define EDDY_STORE_DEFAULT_BUSY_TIMEOUT_MS 5000

/*
 * Store options; the zero value gives the defaults. Copied by
 * eddy_store_open (the hook `user` pointers are kept as they are: they must
 * stay valid until eddy_store_close).
 */
typedef struct eddy_store_options {
    eddy_sync_mode sync;      /* EDDY_SYNC_FULL by default */
    size_t max_event_bytes;   /* largest encoded event accepted;
                                 0: EDDY_STORE_DEFAULT_MAX_EVENT_BYTES; at
                                 most EDDY_EVENT_MAX_BYTES (what every
                                 decoder reads back), else EDDY_EINVAL */
    size_t max_batch_events;  /* group commit: most events the writer puts
                                 in one transaction (a single larger append
                                 still goes in whole, alone);
                                 0: EDDY_STORE_DEFAULT_MAX_BATCH_EVENTS */
    int busy_timeout_ms;      /* how long to wait for another process's lock;
                                 0: EDDY_STORE_DEFAULT_BUSY_TIMEOUT_MS */
    bool read_only;           /* open an existing store for reading only:
                                 nothing is created, upgraded or written;
                                 appends fail with EDDY_ESTATE */
    /*
     * Run on every event before it is appended, on the appending thread.
     * A failure rejects the whole append (nothing stored) with the hook's
     * error. NULL: no check.
     */
    eddy_event_check_fn check;
    void *check_user;
    /*
     * Applied to every event read (cursors and subscriptions), on the
     * reading thread; e.g. upcasting old versions. A NULL result fails the
     * read with the hook's error. NULL: events come back as stored.
     */
    eddy_event_transform_fn transform;
    void *transform_user;
} eddy_store_options;

/*
 * Opens (creating if missing, unless read_only) the store at `url`:
 * "sqlite:PATH", a bare PATH, or "postgres://..." / "postgresql://...".
 * `opts` may be NULL for the defaults. An older store is upgraded to the
 * current schema in one transaction.
 * Returns a new store (destructor: eddy_store_close), or NULL with `err`:
 *   EDDY_EUNSUPPORTED  unknown URL scheme (named in the message);
 *   EDDY_ECONNECT      PostgreSQL unreachable, authentication refused, no
 *                      such database (libpq's reason in the message);
 *   EDDY_EINVAL        an unknown or bad eddy_ option in a postgres URL;
 *   EDDY_ECORRUPT      "FILE is not an eddy store" (another SQLite
 *                      database, a text file, ...);
 *   EDDY_EVERSION      "FILE has store schema version 7, this eddy supports
 *                      up to 2";
 *   EDDY_EIO / EDDY_EBUSY / EDDY_ENOTFOUND (read_only, file missing).
 * On ECORRUPT and EVERSION the file is not changed. Thread-safe.
 */
eddy_store *eddy_store_open(const char *url, const eddy_store_options *opts,
                            eddy_error *err);

/*
 * Finishes the queued appends, stops the writer and closes the store.
 * Every cursor and subscription of the store must have been freed before.
 * NULL does nothing. Must not be called from a store callback.
 */
void eddy_store_close(eddy_store *s);

/* ---- appending -------------------------------------------------------- */

/*
 * Expected version of an append (optimistic concurrency):
 *   EDDY_EXPECT_ANY        no check;
 *   EDDY_EXPECT_NO_STREAM  the stream must not exist yet (version 0);
 *   EDDY_EXPECT_EXISTS     the stream must have at least one event;
 *   N >= 1                 the stream's current version must be exactly N.
 * Other negative values are EDDY_EINVAL.
 */
#define EDDY_EXPECT_ANY ((int64_t)-1)
#define EDDY_EXPECT_NO_STREAM ((int64_t)0)
#define EDDY_EXPECT_EXISTS ((int64_t)-2)

/* What an append did. Plain data, filled on success. */
typedef struct eddy_append_result {
    int64_t first_position;  /* global position of the first event */
    int64_t last_position;   /* global position of the last event */
    int64_t stream_version;  /* stream version of the last event */
} eddy_append_result;

/*
 * Appends `count` (>= 1) events to stream `stream_id`, all or nothing, and
 * returns once the commit is durable (per the sync mode).
 * `stream_id`: non-empty valid UTF-8, borrowed. `events`: borrowed (the store
 * encodes them; it keeps no reference). `result` may be NULL.
 *
 * Idempotence: an event whose id is already stored with identical content
 * in the same stream is skipped without error. If EVERY event of the call is
 * already stored that way, the call succeeds with their stored positions
 * without checking `expected_version`, so a retry after a lost
 * acknowledgement succeeds.
 *
 * Errors (nothing is stored), with `err` naming the problem:
 *   EDDY_EINVAL      NULL/empty/invalid UTF-8 stream id, no events, a NULL
 *                    event, invalid UTF-8 in an event's type, one id twice
 *                    in the call, a bad expected version;
 *   EDDY_ETOOBIG     an event whose encoding exceeds max_event_bytes
 *                    ("event ID is 2000000 bytes, the limit is 1048576");
 *   EDDY_ECONFLICT   "stream order-1: expected version 3, actual 5";
 *   EDDY_EDUPLICATE  an id already stored with different content or in
 *                    another stream;
 *   EDDY_ESTATE      the store is read-only or closing;
 *   EDDY_EINDOUBT    (PostgreSQL) the connection was lost during COMMIT: the
 *                    events may or may not be stored; appending the same
 *                    events again is safe (idempotence, above);
 *   EDDY_ECONNECT    (PostgreSQL) the server could not be reached, or the
 *                    connection was lost before COMMIT: nothing was stored;
 *   the check hook's error; EDDY_EIO / EDDY_EBUSY from the backend.
 * Thread-safe; blocks the caller until the commit. Must not be called from
 * an append-completion callback (it runs on the writer thread).
 */
int eddy_store_append(eddy_store *s, const char *stream_id,
                      int64_t expected_version, eddy_event *const *events,
                      size_t count, eddy_append_result *result,
                      eddy_error *err);

/*
 * Called once an asynchronous append has committed (rc = EDDY_OK, `result`
 * filled) or failed (rc = the error, `err` describes it; `result` is NULL).
 * Runs on the store's writer thread, in submission order relative to other
 * appends of the same group commit; it must be quick and must not call
 * eddy_store_append, eddy_store_snapshot_save or eddy_store_close (they
 * wait for the writer: deadlock). `result` and `err` are borrowed for the
 * call.
 */
typedef void (*eddy_append_fn)(int rc, const eddy_append_result *result,
                               const eddy_error *err, void *user);

/*
 * As eddy_store_append, but returns as soon as the append is queued; `done`
 * (required) reports the outcome. Used to pipeline many appends (e.g. the
 * CLI acknowledging each line of input as soon as it is durable) without a
 * thread per append. Checks that need no database (arguments, sizes, the
 * check hook) run on the calling thread: when they fail the call returns the
 * error and `done` is never called. On EDDY_OK, `done` is called exactly
 * once, never from inside this call. Thread-safe.
 */
int eddy_store_append_async(eddy_store *s, const char *stream_id,
                            int64_t expected_version,
                            eddy_event *const *events, size_t count,
                            eddy_append_fn done, void *user, eddy_error *err);

/* ---- reading ---------------------------------------------------------- */

/*
 * One stored event, as a cursor or subscription presents it. A read-only
 * view: every pointer is borrowed until the next eddy_cursor_next() on the
 * same cursor (or the end of the subscription callback); eddy_event_ref the
 * event to keep it.
 */
typedef struct eddy_record {
    eddy_event *event;       /* the event (after the transform hook) */
    const char *stream_id;   /* the stream it was appended to */
    int64_t stream_version;  /* its version in that stream (1, 2, ...) */
    int64_t position;        /* its global position (1, 2, ...) */
    int64_t recorded_us;     /* commit time, microseconds since the epoch */
} eddy_record;

typedef enum eddy_direction {
    EDDY_FORWARD = 0,  /* oldest first: ascending version / position */
    EDDY_BACKWARD = 1  /* newest first */
} eddy_direction;

/* For a backward read: start at the stream's last event. */
#define EDDY_STREAM_END INT64_MAX

/*
 * Opens a cursor over one stream's events, starting AT `from_version`
 * (inclusive; forward: use 1 for the whole stream; backward: use
 * EDDY_STREAM_END for the newest event first), at most `limit` events
 * (0: no limit). A missing stream reads as empty (no error).
 * Uses the stream index; pages through the store (never loads the whole
 * stream). Returns EDDY_OK with `*out` (destructor: eddy_cursor_free), or
 * EDDY_EINVAL (NULL/empty stream id, from_version < 0). Thread-safe.
 */
int eddy_store_read_stream(eddy_store *s, const char *stream_id,
                           int64_t from_version, eddy_direction dir,
                           size_t limit, eddy_cursor **out, eddy_error *err);

/*
 * Opens a cursor over the global log, oldest first, starting AT
 * `from_position` (inclusive; 0 or 1: from the beginning), at most `limit`
 * events (0: no limit). Returns as eddy_store_read_stream. Thread-safe.
 */
int eddy_store_read_all(eddy_store *s, int64_t from_position, size_t limit,
                        eddy_cursor **out, eddy_error *err);

/*
 * Opens a cursor over the event whose id is `event_id` (borrowed): it gives
 * that one record, or nothing when the store holds no such event. Looks the
 * id up through the store's unique index (it never scans the log).
 * Returns as eddy_store_read_stream (EDDY_EINVAL for a NULL or empty id).
 * Thread-safe.
 */
int eddy_store_read_event(eddy_store *s, const char *event_id,
                          eddy_cursor **out, eddy_error *err);

/*
 * A query over the global log. Plain data; the zero value selects
 * everything, oldest first. All pointers are borrowed for the call
 * (eddy_store_query copies what it keeps).
 */
typedef struct eddy_query {
    const char *const *types; /* event types to match (any of them) */
    size_t type_count;        /* 0: every type */
    const char *stream_id;    /* NULL: every stream */
    int64_t from_time_us;     /* event time >= this (0: no lower bound) */
    int64_t to_time_us;       /* event time < this (0: no upper bound) */
    int64_t min_position;     /* position >= this (0: no lower bound) */
    int64_t max_position;     /* position <= this (0: no upper bound) */
    size_t limit;             /* most records (0: no limit) */
    bool newest_first;        /* descending position instead of ascending */
} eddy_query;

/*
 * Opens a cursor over the events matching `q`, ordered by global position
 * (never by timestamp). Events without a time never match a time bound.
 * Returns as eddy_store_read_stream (EDDY_EINVAL for a NULL/empty type or
 * inverted bounds). Thread-safe.
 */
int eddy_store_query(eddy_store *s, const eddy_query *q, eddy_cursor **out,
                     eddy_error *err);

/*
 * Advances the cursor. Returns true with `*out` filled (a view valid until
 * the next call or eddy_cursor_free); false at the end, with `err` (if not
 * NULL) cleared, or on an error, with `err` filled: EDDY_EIO, EDDY_EPARSE
 * (an undecodable stored event) or the transform hook's code. So `err.code`
 * (or eddy_cursor_error) tells the end from an error:
 *     while (eddy_cursor_next(c, &rec, &err)) { ... }
 *     if (err.code != EDDY_OK) { ... the read failed ... }
 * After an error the cursor stays at the failing record. Each page of
 * records is read in its own short read transaction, so a cursor never
 * blocks the writer; records appended while a cursor is open may or may
 * not be seen (never partially). One thread at a time per cursor.
 */
bool eddy_cursor_next(eddy_cursor *c, eddy_record *out, eddy_error *err);

/* The error code of the last eddy_cursor_next: EDDY_OK after a record or
 * at the end. (EDDY_EINVAL for a NULL cursor.) */
int eddy_cursor_error(const eddy_cursor *c);

/* Frees a cursor and its current record. NULL does nothing. */
void eddy_cursor_free(eddy_cursor *c);

/*
 * Sets `*head` to the store's last global position (0 when empty), as
 * committed in the file. Returns EDDY_OK or EDDY_EIO. Thread-safe.
 */
int eddy_store_head(eddy_store *s, int64_t *head, eddy_error *err);

/*
 * Sets `*version` to the stream's current version (0: no such stream).
 * Returns EDDY_OK, EDDY_EINVAL (bad stream id) or EDDY_EIO. Thread-safe.
 */
int eddy_store_stream_version(eddy_store *s, const char *stream_id,
                              int64_t *version, eddy_error *err);

/*
 * Calls `fn` for each stream, ordered by stream id, starting after
 * `after_stream_id` (NULL: from the first), at most `limit` (0: all).
 * `stream_id` is borrowed for the call. `fn` returning non-zero stops the
 * walk and that value is returned. Pages through the store. Thread-safe.
 */
typedef int (*eddy_stream_fn)(const char *stream_id, int64_t version,
                              void *user);
int eddy_store_streams(eddy_store *s, const char *after_stream_id,
                       size_t limit, eddy_stream_fn fn, void *user,
                       eddy_error *err);

/* A summary of the store, for `eddy store info`. Plain data. */
typedef struct eddy_store_info {
    char backend[16];        /* "sqlite" or "postgres" */
    int schema_version;      /* the file's store schema version */
    int64_t head;            /* last global position */
    int64_t event_count;     /* number of events (== head) */
    int64_t stream_count;    /* number of streams */
    int64_t snapshot_count;  /* number of snapshots */
    int64_t file_bytes;      /* size on disk (database + WAL; PostgreSQL:
                                the store's tables and indexes), -1 unknown */
    eddy_sync_mode sync;     /* the sync mode in use */
} eddy_store_info;

/* Fills `*info`. Returns EDDY_OK or EDDY_EIO. Thread-safe. */
/*
 * What this store handle's writer did since it was opened (this process
 * only): group commits, the write jobs they held (appends, handlers'
 * transactions, state writes), the events appended, and the time spent
 * committing (the engine's commit: the fsync for SQLite). Jobs per commit
 * is the batching group commit achieved. Plain data.
 */
typedef struct eddy_store_stats {
    uint64_t commits;
    uint64_t jobs;
    uint64_t events;
    uint64_t commit_ns; /* total time inside the engine's commit */
} eddy_store_stats;

/* Copies the counters into `*out` (zeros for NULL `s`). Thread-safe. */
void eddy_store_stats_get(eddy_store *s, eddy_store_stats *out);

int eddy_store_info_get(eddy_store *s, eddy_store_info *info,
                        eddy_error *err);

/*
 * Writes a consistent copy of the store to a NEW file at `path`, while the
 * store stays in use (appends and reads go on meanwhile): the copy holds
 * every transaction committed when it started and nothing later, compacted,
 * as one self-contained store file (no -wal), synced to disk before this
 * returns. Open it like any store ("sqlite:PATH"). Returns EDDY_OK, or with
 * `err`: EDDY_EINVAL (NULL or empty path), EDDY_EEXIST (`path` exists: a
 * backup never overwrites), EDDY_EUNSUPPORTED (a backend whose server has
 * its own tools, e.g. pg_dump for PostgreSQL), EDDY_EIO (the message names
 * the path and the cause: a full disk, a missing folder). On failure no
 * partial file is left at `path`. Thread-safe; works on a store opened
 * read-only.
 */
int eddy_store_backup(eddy_store *s, const char *path, eddy_error *err);

/* ---- snapshots -------------------------------------------------------- */

/*
 * Saves `state` (borrowed; serialised) as the snapshot of `stream_id` at
 * stream version `version` (>= 1, at most the stream's current version),
 * with the state's `schema_version` (for upcasting old snapshots). A
 * snapshot at the same version is replaced. Durable like an append.
 * Returns EDDY_OK, EDDY_EINVAL (bad id, NULL state, version out of range),
 * EDDY_ESTATE (read-only) or a backend error. Thread-safe.
 */
int eddy_store_snapshot_save(eddy_store *s, const char *stream_id,
                             int64_t version, int schema_version,
                             json_t *state, eddy_error *err);

/*
 * Loads the newest snapshot of `stream_id`: `*version` and `*schema_version`
 * are set, `*state` receives a new JSON reference (json_decref it).
 * Returns EDDY_OK, EDDY_ENOTFOUND (no snapshot; outputs untouched),
 * EDDY_EINVAL or EDDY_EIO/EDDY_EPARSE. Thread-safe.
 */
int eddy_store_snapshot_load(eddy_store *s, const char *stream_id,
                             int64_t *version, int *schema_version,
                             json_t **state, eddy_error *err);

/* ---- live subscriptions ------------------------------------------------ */

/*
 * Blocks until the store's head is greater than `after_position`, or
 * `timeout_ms` passes (< 0: no timeout). Woken at once by commits through
 * this handle (appends by other processes are noticed within about a
 * second; on PostgreSQL at once, or within eddy_poll_ms). `head` (may be NULL) receives the head seen. Returns EDDY_OK,
 * EDDY_ETIMEDOUT or EDDY_ESTOPPED (the store is closing). Thread-safe.
 */
int eddy_store_wait(eddy_store *s, int64_t after_position, int timeout_ms,
                    int64_t *head);

/*
 * A subscription callback: one record, oldest first, positions strictly
 * increasing. `rec` is borrowed for the call. Return 0 to continue, non-zero
 * to stop the subscription (the value is kept as its status). Runs on the
 * subscription's own thread; it may append to and read from the store, but
 * must not stop or free its own subscription, nor close the store.
 */
typedef int (*eddy_record_fn)(const eddy_record *rec, void *user);

/*
 * Called by a live subscription when it has read the log up to `position`
 * and delivered every record at or below it that its filter matches: a
 * filtered subscription's way to learn that the events it skipped are
 * behind it (e.g. to move a checkpoint past them). Runs on the
 * subscription's thread, between record callbacks, with `position`
 * strictly increasing; the same rules as eddy_record_fn.
 */
typedef void (*eddy_progress_fn)(int64_t position, void *user);

/* Subscription options; the zero value gives the defaults. Copied. The
 * filter is evaluated by the store (an event filtered out is never read
 * into memory): a record is delivered when its type is one of `types` or
 * matches one of `patterns` (the rules of eddy_bus_subscribe: "x.*"
 * matches "x.y", not "x."); with neither, every record is. The filter sees
 * the type as stored, before the transform hook (an upcaster that renames
 * types must be matched by the stored names). */
typedef struct eddy_store_subscribe_options {
    const char *const *types; /* exact event types (0 count: none) */
    size_t type_count;
    const char *const *patterns; /* "x.y", "x.*" (a prefix) or "*" */
    size_t pattern_count;
    eddy_progress_fn progress;   /* NULL: none; gets the callback's `user` */
} eddy_store_subscribe_options;

/*
 * Starts a live subscription to the global log: a thread reads every event
 * AFTER `after_position` (exclusive: pass the last position you processed,
 * 0 for the whole log) in pages, calls `fn` for each, then waits for new
 * commits and continues with them without polling delay, until stopped.
 * A read that fails because the server is unreachable (EDDY_ECONNECT, say
 * while PostgreSQL restarts) or busy (EDDY_EBUSY) is retried with backoff
 * (up to 1 s apart) from the last record delivered; any other read error
 * ends the subscription.
 * `opts` may be NULL. Returns EDDY_OK with `*out` (destructor:
 * eddy_store_subscription_free), or EDDY_EINVAL / EDDY_ENOMEM; `fn` is
 * never called if it fails, and never from inside this call. Thread-safe.
 */
int eddy_store_subscribe(eddy_store *s, int64_t after_position,
                         eddy_record_fn fn, void *user,
                         const eddy_store_subscribe_options *opts,
                         eddy_store_subscription **out, eddy_error *err);

/*
 * Stops the subscription and waits for its thread (a callback in progress
 * finishes first; no callback runs after this returns). Returns the
 * subscription's status: EDDY_OK if it was running fine, the callback's
 * non-zero return value if it stopped itself, or the read error that ended
 * it (`err` filled). Idempotent. Must not be called from its own callback.
 */
int eddy_store_subscription_stop(eddy_store_subscription *sub,
                                 eddy_error *err);

/*
 * The position of the last record the callback returned from (0: none
 * yet), and whether the subscription is still running. Thread-safe.
 */
int64_t eddy_store_subscription_position(const eddy_store_subscription *sub);
bool eddy_store_subscription_running(const eddy_store_subscription *sub);

/* Stops (as eddy_store_subscription_stop) and frees. NULL does nothing. */
void eddy_store_subscription_free(eddy_store_subscription *sub);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_STORE_H */
