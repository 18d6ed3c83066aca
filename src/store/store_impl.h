/*
 * src/store/store_impl.h - the layout of eddy_store, shared by the store's
 * own source files (store.c, cursor.c, subscription.c). Not for other layers:
 * they use store_internal.h.
 */
#ifndef EDDY_SRC_STORE_STORE_IMPL_H
#define EDDY_SRC_STORE_STORE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "backend.h"
#include "store_internal.h"

typedef struct eddyi_job eddyi_job;

/* One append hook (store_internal.h); a list changed by write jobs. */
struct eddyi_append_hook {
    struct eddyi_append_hook *next;
    eddyi_append_hook_fn fn;
    void *user;
};

/* The writer's open transaction, as jobs and handlers see it. */
#define EDDYI_TXN_DEPTHS 8

struct eddy_txn {
    eddy_store *store;
    int64_t now_us;
    int depth; /* nested savepoints open inside the current job */
    /* What the transaction appended, for the head and the stats without
     * asking the engine: kept per savepoint so a rollback forgets what it
     * undid ([0]: at the job's start). */
    int64_t last_position, events;
    int64_t saved_position[EDDYI_TXN_DEPTHS + 1];
    int64_t saved_events[EDDYI_TXN_DEPTHS + 1];
};

struct eddy_store {
    const eddyi_backend *backend;
    void *impl;
    eddy_store_options opts; /* defaults filled in */

    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t queue_cond; /* writer: jobs queued or stopping */
    pthread_cond_t head_cond;  /* waiters: head moved or stopping */
    eddyi_job *queue_head, *queue_tail;
    bool stopping;
    bool writer_started;
    /* A batch runs: on the writer thread, or a lone synchronous append on
     * its caller's (run_here). One at a time: it owns the write
     * connection and every "writer thread only" field. */
    bool busy;
    /* eddy_store_stats, written by the writer thread only */
    _Atomic uint64_t stat_commits, stat_jobs, stat_events, stat_commit_ns;
    int64_t head;            /* last committed position known here */
    /* The backend's watcher runs (started by the first waiter:
     * eddyi_store_watch); set under mu. */
    atomic_bool watching;
    pthread_t writer;
    struct eddyi_append_hook *append_hooks; /* writer thread only */
};

/* Starts the backend's watcher (backend.h `watch`: another process's
 * commits wake the waiters) if it does not run yet. Called before waiting
 * for the head: a handle that only appends never listens. Thread-safe. */
void eddyi_store_watch(eddy_store *s);

/* Page sizes of cursors: rows per read, and payload bytes per read. */
#define EDDYI_PAGE_ROWS 256
#define EDDYI_PAGE_BYTES ((size_t)4 << 20)

/* Opens a cursor over `spec` (taken on success: the cursor frees its
 * strings). Used by the public read calls and by subscriptions. */
int eddyi_cursor_open(eddy_store *s, eddyi_read_spec *spec,
                      int64_t start_key, size_t limit, eddy_cursor **out,
                      eddy_error *err);

/* Frees the strings of a spec. */
void eddyi_read_spec_clear(eddyi_read_spec *spec);

/* Copies `count` type strings into spec->types (EDDY_EINVAL for a NULL or
 * empty type). */
int eddyi_read_spec_set_types(eddyi_read_spec *spec, const char *const *types,
                              size_t count, eddy_error *err);

/* Adds `count` event-type patterns to the spec's filter: "x.y" an exact
 * type, "x.*" a prefix, "*" everything (`*all` is set: the caller drops
 * the filter). EDDY_EINVAL names a bad pattern. */
int eddyi_read_spec_add_patterns(eddyi_read_spec *spec,
                                 const char *const *patterns, size_t count,
                                 bool *all, eddy_error *err);

/* Copies the type filter (types and prefixes) of `src` into `dst`. */
int eddyi_read_spec_copy_filter(eddyi_read_spec *dst,
                                const eddyi_read_spec *src, eddy_error *err);

/* Validates a stream id: non-NULL, non-empty, valid UTF-8. */
int eddyi_stream_id_check(const char *stream_id, eddy_error *err);

#endif
