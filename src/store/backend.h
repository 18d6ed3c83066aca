/*
 * src/store/backend.h - the table of functions a store backend implements.
 *
 * The front (store.c, cursor.c, subscription.c) validates arguments, runs
 * the hooks, encodes events, owns the writer thread and its queue, and
 * pages cursors; a backend only talks to its engine. The front never tests
 * which backend it has.
 *
 * Threading contract: the `write_*` functions, `append` and `snapshot_save`
 * are called only from the writer thread; every other function may be
 * called from any thread concurrently (a backend keeps a pool of read
 * connections).
 */
#ifndef EDDY_SRC_STORE_BACKEND_H
#define EDDY_SRC_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    char **types;        /* NULL/0: every type */
    size_t type_count;
    int64_t from_time_us; /* 0: unbounded; inclusive */
    int64_t to_time_us;   /* 0: unbounded; exclusive */
    int64_t min_position; /* 0: unbounded; inclusive */
    int64_t max_position; /* 0: unbounded; inclusive */
    bool descending;
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

    /* Writer thread only: the group-commit transaction and per-job
     * savepoints. */
    int (*write_begin)(void *impl, eddy_error *err);
    int (*write_commit)(void *impl, eddy_error *err);
    void (*write_rollback)(void *impl);
    int (*savepoint)(void *impl, eddy_error *err);
    int (*savepoint_release)(void *impl, eddy_error *err);
    void (*savepoint_rollback)(void *impl);
    /* Appends inside the open transaction (expected version, idempotence:
     * see eddy_store_append). Leaves no partial writes on failure. */
    int (*append)(void *impl, const char *stream_id, int64_t expected,
                  const eddyi_pending *events, size_t count,
                  int64_t recorded_us, eddy_append_result *result,
                  eddy_error *err);
    int (*snapshot_save)(void *impl, const char *stream_id, int64_t version,
                         int schema_version, const char *state,
                         int64_t taken_us, eddy_error *err);
    /* The engine's write connection (sqlite3 *, PGconn *), or NULL. */
    void *(*write_native)(void *impl);

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

#endif
