/*
 * src/store/backend.h - the table of functions a store backend implements.
 *
 * The front (store.c, cursor.c, subscription.c) validates arguments, runs
 * the hooks, encodes events, owns the writer thread and its queue, and
 * pages cursors; a backend only talks to its engine. The front never tests
 * which backend it has.
 *
 * Threading contract: the `write_*` functions, `append`, `append_alone`
 * and `snapshot_save` are called only by the writer: the writer thread, or
 * a synchronous appender standing in for it while it is idle (store.c,
 * run_here), one at a time, the hand-over ordered by the front's mutex.
 * Every other function may be called from any thread concurrently (a
 * backend keeps a pool of read connections).
 */
#ifndef EDDY_SRC_STORE_BACKEND_H
#define EDDY_SRC_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/sql.h"
#include "eddy/store.h"

/* One event about to be appended: the event (borrowed) and its canonical
 * CloudEvents JSON, encoded once by the front. */
typedef struct eddyi_pending {
    eddy_event *event;
    char *payload;
    size_t len;
} eddyi_pending;

/*
 * What a cursor reads. When `stream_id` is set the key is the stream
 * version (the stream index), otherwise the global position. The position
 * bounds, types and time bounds are filters on top.
 */
typedef struct eddyi_read_spec {
    char *stream_id;     /* NULL: every stream */
    char **types;        /* exact types; with prefixes: a type matches if
                            it is one of them OR has one of the prefixes;
                            both empty: every type */
    size_t type_count;
    char **prefixes;     /* type prefixes ("order." for the pattern
                            "order.*"), compared as text ranges so an index
                            on type serves them: a type matches when it is
                            > the prefix (a prefix alone does not match)
                            and < its end */
    char **prefix_ends;  /* each prefix with its last byte + 1 ("order/") */
    size_t prefix_count;
    int64_t from_time_us; /* 0: unbounded; inclusive */
    int64_t to_time_us;   /* 0: unbounded; exclusive */
    int64_t min_position; /* 0: unbounded; inclusive */
    int64_t max_position; /* 0: unbounded; inclusive */
    char *event_id;       /* NULL: any; else only the event with this id
                             (looked up through the unique id index) */
    bool descending;
    bool on_writer;       /* read on the writer, inside the open write
                             transaction (its own writes included): writer
                             thread only (eddy_txn_read_stream) */
} eddyi_read_spec;

/* One row read, owned by the page that holds it. */
typedef struct eddyi_row {
    eddy_event *event;   /* one reference, decoded from the payload */
    char *stream_id;     /* malloc'd */
    int64_t stream_version;
    int64_t position;
    int64_t recorded_us;
} eddyi_row;

/* Frees the contents of `n` rows (not the array). */
void eddyi_rows_clear(eddyi_row *rows, size_t n);

/*
 * A parameter bound to a statement (eddy/sql.h). Text is borrowed for the
 * call; `len` is its length in bytes.
 */
typedef enum eddyi_vkind {
    EDDYI_V_NULL = 0,
    EDDYI_V_INT,
    EDDYI_V_REAL,
    EDDYI_V_TEXT
} eddyi_vkind;

typedef struct eddyi_value {
    eddyi_vkind kind;
    eddyi_vkind declared; /* what the caller's letter says, also for a NULL
                             ('s' given NULL: TEXT): engines that type
                             parameters (PostgreSQL) type it so */
    int64_t i;
    double d;
    const char *s;
    size_t len;
} eddyi_value;

/*
 * A result row as the engine has it: the front's eddy_row accessors
 * (eddy/sql.h) call these with `native` (a statement, a result and a row
 * number, ...). `col` is in range (the front checks against `columns`).
 * Text is borrowed until the row callback returns.
 */
typedef struct eddyi_row_ops {
    int (*columns)(const void *native);
    bool (*is_null)(const void *native, int col);
    const char *(*text)(const void *native, int col);
    int64_t (*integer)(const void *native, int col);
    double (*real)(const void *native, int col);
} eddyi_row_ops;

/* The row view handed to row callbacks (eddy/sql.h's eddy_row). */
struct eddy_row {
    const eddyi_row_ops *ops;
    const void *native;
};

typedef int (*eddyi_row_fn)(const struct eddy_row *row, void *user);

/* Where a statement runs. */
typedef enum eddyi_conn {
    EDDYI_ON_READER = 0, /* a reader connection: committed data */
    EDDYI_ON_WRITER = 1  /* the writer, inside the open transaction; writer
                            thread only */
} eddyi_conn;

/* Checks a stream's `actual` version against an append's `expected` one
 * (eddy_store_append); EDDY_ECONFLICT names both ("stream order-1: expected
 * version 3, actual 5"). Shared by the backends so the messages agree. */
int eddyi_expected_check(const char *stream_id, int64_t expected,
                         int64_t actual, eddy_error *err);

typedef struct eddyi_backend {
    const char *name; /* "sqlite" */

    /* Opens the store at `location` (the URL without its scheme), checks
     * and upgrades its schema (unless opts->read_only). Returns EDDY_OK and
     * `*impl`, or an error with nothing changed. */
    int (*open)(const char *location, const eddy_store_options *opts,
                void **impl, eddy_error *err);
    void (*close)(void *impl);

    /* Writer thread only: the group-commit transaction and savepoints.
     * `depth` 0 is a job's own savepoint; 1, 2, ... nest inside it
     * (eddyi_txn_savepoint). Rolling back to a savepoint also releases
     * it. A failed release has rolled the savepoint back: a statement run
     * inside it failed, whose error an engine may report only then
     * (PostgreSQL's deferred statements), or the transaction is lost. */
    int (*write_begin)(void *impl, eddy_error *err);
    int (*write_commit)(void *impl, eddy_error *err);
    void (*write_rollback)(void *impl);
    int (*savepoint)(void *impl, int depth, eddy_error *err);
    int (*savepoint_release)(void *impl, int depth, eddy_error *err);
    void (*savepoint_rollback)(void *impl, int depth);
    /* Appends inside the open transaction (expected version, idempotence:
     * see eddy_store_append). Leaves no partial writes on failure. */
    int (*append)(void *impl, const char *stream_id, int64_t expected,
                  const eddyi_pending *events, size_t count,
                  int64_t recorded_us, eddy_append_result *result,
                  eddy_error *err);
    /*
     * Optional (NULL: not offered). An append that is a whole transaction
     * of its own (the writer's only job, no append hooks): begin, append
     * and commit, in as few exchanges with the engine as it can (one on
     * PostgreSQL, whose statements are pipelined). Returns EDDY_OK when
     * committed (`result` set); or `*careful` = true with nothing stored when
     * the append needs the general way (a known id, an expected version that
     * does not match: the caller runs it through write_begin, append and
     * write_commit); or an error, EDDY_EINDOUBT when the commit's outcome is
     * unknown, with nothing left open.
     */
    int (*append_alone)(void *impl, const char *stream_id, int64_t expected,
                        const eddyi_pending *events, size_t count,
                        int64_t recorded_us, eddy_append_result *result,
                        bool *careful, eddy_error *err);
    int (*snapshot_save)(void *impl, const char *stream_id, int64_t version,
                         int schema_version, const char *state,
                         int64_t taken_us, eddy_error *err);
    /* The engine's write connection (the SQLite or libpq handle: the engine's
     * escape hatch, eddy/sqlite.h), or NULL. */
    void *(*write_native)(void *impl);

    /*
     * Runs one SQL statement with numbered parameters $1..$n (eddy/sql.h):
     * on the writer inside the open transaction (writer thread only), or on
     * a reader. `fn` (may be NULL) is called per result row; its non-zero
     * return stops the statement and is returned. `changes` (may be NULL)
     * receives the rows changed. `static_sql`: `sql` has static storage
     * duration, so its prepared form may be cached by address; otherwise
     * by content. Errors: EDDY_ECONFLICT for a constraint, EDDY_EBUSY,
     * EDDY_EIO with the engine's message naming the statement.
     */
    int (*sql)(void *impl, eddyi_conn where, const char *sql, bool static_sql,
               const eddyi_value *params, size_t nparams, eddyi_row_fn fn,
               void *user, int64_t *changes, eddy_error *err);

    /* Any thread. */
    /* Reads up to `max_rows` rows (stopping early once `max_bytes` of
     * payload were read) whose key is >= start_key (ascending) or
     * <= start_key (descending). Sets `*n`. */
    int (*read_page)(void *impl, const eddyi_read_spec *spec,
                     int64_t start_key, size_t max_rows, size_t max_bytes,
                     eddyi_row *rows, size_t *n, eddy_error *err);
    int (*head)(void *impl, int64_t *head, eddy_error *err);
    int (*stream_version)(void *impl, const char *stream_id,
                          int64_t *version, eddy_error *err);
    /* Up to `max` streams after `after` (NULL: the first), in id order;
     * `ids` receives malloc'd strings. */
    int (*streams_page)(void *impl, const char *after, size_t max,
                        char **ids, int64_t *versions, size_t *n,
                        eddy_error *err);
    int (*snapshot_load)(void *impl, const char *stream_id, int64_t *version,
                         int *schema_version, char **state, eddy_error *err);
    int (*info)(void *impl, eddy_store_info *info, eddy_error *err);
    /* A consistent copy to a new file at `path` (eddy_store_backup); NULL
     * when the engine has its own tools. */
    int (*backup)(void *impl, const char *path, eddy_error *err);

    /* Optional (NULL: the front only polls `head`). Called once, right
     * after a successful open: from then until `close` returns, the backend
     * calls `wake(ctx, head)` from a thread of its own whenever it learns
     * that the store's head (a committed, visible position: every position
     * up to it is visible to the readers) reached `head`, e.g. because
     * another process committed. `wake` is quick and never calls back into
     * the backend. Returns EDDY_OK, or an error that fails the open. */
    int (*watch)(void *impl, void (*wake)(void *ctx, int64_t head), void *ctx,
                 eddy_error *err);
} eddyi_backend;

extern const eddyi_backend eddyi_sqlite_backend;
extern const eddyi_backend eddyi_postgres_backend;

/* The engine's write connection of `txn` when its store runs on backend
 * `b`, else NULL: the engine-specific escape hatches (eddy_txn_sqlite). */
void *eddyi_txn_native_of(eddy_txn *txn, const eddyi_backend *b);

#endif
