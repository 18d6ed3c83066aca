/*
 * eddy/status.h - what a system recorded in its store, for `eddy stats`,
 * dashboards and health checks: each durable consumer's checkpoint, lag,
 * retries and dead letters, and each outbox destination's backlog.
 *
 * These read committed data on the store's reader connections: they work
 * on a store opened read-only (a monitoring process, a copy, a read-only
 * mount), on every backend, while the system runs in other threads or
 * processes, and never wait for the writer. Every figure of one call comes
 * from one snapshot of the store.
 */
#ifndef EDDY_STATUS_H
#define EDDY_STATUS_H

#include <stdint.h>

#include "eddy/error.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One durable consumer (a durable handler, a projection or a saga: they
 * share the checkpoint, retry and dead-letter tables by name). A read-only
 * view; strings borrowed for the callback.
 */
typedef struct eddy_consumer_info {
    const char *name;
    const char *kind;          /* "handler", "projection", "saga"; "" when
                                  the consumer never recorded itself */
    const char *pattern;       /* the event types it reads: a pattern, or
                                  the comma-separated exact types of a
                                  durable handler's types filter; "" when
                                  it reads none, or as kind */
    int64_t checkpoint;        /* stored checkpoint; -1: none yet */
    int64_t checkpoint_updated_us; /* when it was written; 0: never */
    int64_t head;              /* the store's head in the same snapshot */
    int64_t lag;               /* head - checkpoint (checkpoint -1 counts
                                  as 0): events not yet behind it, of any
                                  type */
    int64_t retries;           /* events parked for a retry */
    int64_t dead_letters;      /* dead letters waiting ("dead") */
    int64_t redrive_pending;   /* dead letters marked for redrive */
} eddy_consumer_info;

typedef int (*eddy_consumer_info_fn)(const eddy_consumer_info *info,
                                     void *user);

/*
 * Calls `fn` for every consumer the store knows (a checkpoint, retry rows,
 * dead letters or a record of itself), by name. The rows are read first;
 * `fn` runs on the calling thread with no store resource held. `fn`
 * returning non-zero stops the walk (that value is returned). Returns
 * EDDY_OK, fn's value, EDDY_EINVAL or a store error. Thread-safe.
 */
int eddy_status_consumers(eddy_store *store, eddy_consumer_info_fn fn,
                          void *user, eddy_error *err);

/* One outbox destination (eddy/outbox.h). A read-only view. */
typedef struct eddy_outbox_info {
    const char *destination;
    int64_t pending;           /* rows not yet published */
    int64_t sent;              /* rows published and still kept */
    int64_t oldest_pending_us; /* created time of the oldest pending row;
                                  0: none pending */
} eddy_outbox_info;

typedef int (*eddy_outbox_info_fn)(const eddy_outbox_info *info, void *user);

/* Calls `fn` for each outbox destination, by name; as
 * eddy_status_consumers. Thread-safe. */
int eddy_status_outbox(eddy_store *store, eddy_outbox_info_fn fn, void *user,
                       eddy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_STATUS_H */
