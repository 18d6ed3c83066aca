/*
 * src/reliability/durable_internal.h - what the files of a durable
 * subscription (eddy/durable.h) share. Not public.
 *
 *   durable.c          options, start (loading the stored state on a
 *                      reader), stop, free, checkpoint, wait_idle
 *   durable_ring.c     the dispatcher (store subscription callback), the
 *                      completion ring and its checkpoint, the
 *                      maintenance thread
 *   durable_worker.c   the workers: per-key order, parking, transactional
 *                      batches
 *   durable_deliver.c  one delivery in each of the three modes
 *   durable_dead.c     failures: retry rows, dead letters, redrive
 *   durable_members.c  several processes on one subscription: membership,
 *                      partition leases, the fence, rebalancing
 *
 * THREADS of one subscription:
 *   - the store subscription's thread runs the dispatcher: it filters by
 *     its patterns, records the position in the completion ring and
 *     hands the event to the worker chosen by the hash of its partition
 *     key. It blocks while max_in_flight events are uncompleted
 *     (backpressure).
 *   - N workers: each keeps an inbound FIFO (shared, under its mutex) and a
 *     private list of parked keys. A key whose event failed is parked with
 *     a due time; its later events queue behind it; other keys keep
 *     flowing. A worker sleeps on its condvar until new work or the
 *     earliest due time: nothing ever sleeps inside a handler.
 *   - a maintenance thread: persists the checkpoint every checkpoint_every
 *     completions or checkpoint_interval_ms, and redrives the dead letters
 *     marked "redrive" (eddy_dlq_redrive): at once when the subscription
 *     starts, when eddy_durable_wait_idle asks, and every REDRIVE_POLL_MS.
 *   - TRANSACTIONAL handlers and the bookkeeping around every mode run in
 *     write jobs, on the store's writer thread.
 *
 * The checkpoint is the completion ring's low watermark: positions enter the
 * ring in store order; a completed position is flagged; the front pops
 * while flagged. So the checkpoint never passes an uncompleted event, and
 * after a crash everything above it is delivered again (at-least-once).
 *
 * PARTITIONS AND SEGMENTS. The partition keys' hash space is split into
 * `partitions` partitions, leased to the live members of the subscription
 * (durable_members.c, which says how). The reader, the workers and the
 * maintenance thread above make up the PIPELINE; it runs one SEGMENT at a
 * time: a fixed set of owned partitions, each with the checkpoint it had
 * when the segment began (`passed`). The reader starts at the lowest of
 * them and the dispatcher treats an event as done at once (like an event
 * of another type) when its partition is not owned or its position is at
 * or below its partition's `passed`. So the watermark W of a segment means:
 * every event at or below W of an owned partition was handled, and every
 * owned partition's checkpoint may be raised to W. When the owned set must
 * change, the coordinator stops the pipeline (the workers finish what is
 * runnable, parked events stay in their retry rows, the checkpoint is
 * persisted), changes the leases, and starts a new segment.
 *
 * Every table access goes through the store's state operations
 * (src/store/state_durable.h); reads of stored state run on readers.
 */
#ifndef EDDY_SRC_RELIABILITY_DURABLE_INTERNAL_H
#define EDDY_SRC_RELIABILITY_DURABLE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "eddy/durable.h"

#include "../core/lifecycle.h"
#include "../core/pattern.h"
#include "reliability_internal.h"

#define MESSAGE_MAX 384
/* How often a running subscription looks for dead letters marked for
 * redrive by another handle or process. */
#define REDRIVE_POLL_MS 200
/* Dead letters redriven per pass of the maintenance thread. */
#define REDRIVE_BATCH 64
/* Events of a TRANSACTIONAL worker run in one write job. */
#define TXN_BATCH 64
/* Partitions of a subscription, by default and at most; the lease of a
 * member, by default and at least (milliseconds). */
#define DEFAULT_PARTITIONS 16
#define MAX_PARTITIONS 4096
#define DEFAULT_LEASE_MS 10000
#define MIN_LEASE_MS 100

/* ---- types --------------------------------------------------------------- */

/* One event on its way through a worker. */
struct item {
    struct item *next;
    eddy_event *ev;
    int64_t position;
    uint64_t hash;
    const char *key;        /* borrowed from ev */
    int attempts;           /* failed handler calls so far */
    int64_t first_fail_us;
    int64_t last_fail_us;
    int64_t next_at_us;     /* when parked: due time (wall clock) */
    int last_code;
    char last_error[MESSAGE_MAX];
    bool dl_pending;        /* given up; the dead-letter write must retry */
};

/* A key whose head event waits for its retry; later events of the key wait
 * behind it. Private to its worker. */
struct parked {
    struct parked *next;
    struct item *head;
    struct item *wait_head, *wait_tail;
};

struct worker {
    eddy_durable *d;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct item *in_head, *in_tail; /* under mu */
    bool stop;                      /* under mu */
    unsigned unsignalled;           /* items queued since the last signal
                                       (dispatcher thread only) */
    struct parked *parked;          /* worker thread only */
    uint64_t rng;                   /* jitter; worker thread only */
};

/* A retry row loaded at start. */
struct restored {
    int64_t position;
    int attempts;
    int64_t first_fail_us, last_fail_us, next_at_us;
    int code;
    char *error;
};

struct slot {
    int64_t position;
    bool done;
};

struct eddy_durable {
    eddy_store *store;
    char *name;
    char **patterns;        /* at least one: none given is {"*"} */
    size_t npatterns;
    eddyi_pattern *matches; /* `patterns`, parsed */
    char *source;
    eddy_delivery_mode mode;
    eddy_handler_fn handler;
    eddy_txn_handler_fn txn_handler;
    void *user;
    unsigned nworkers;
    size_t max_in_flight;
    eddy_retry_policy retry; /* resolved: no zero fields */
    unsigned ckpt_every;
    unsigned ckpt_interval_ms;
    eddy_metrics *metrics;
    bool gauge_registered;
    eddyi_claim *claim;  /* the name, on this store handle */
    eddyi_stop stop;

    /* Membership (durable_members.c). Fixed after start. */
    unsigned partitions;
    int64_t lease_us;
    char member[EDDY_UUID_STRLEN]; /* this member's id, a UUIDv7; a new
                                      one when it rejoins after it was
                                      taken for gone (changed only by the
                                      rebalance job, on the writer thread,
                                      the pipeline stopped) */
    char owner[EDDYI_OWNER_MAX];   /* "pid@host" */
    int64_t first_checkpoint;      /* for partitions created by this one */
    int64_t joined_us;
    /* The segment: written under mu and only while the pipeline is
     * stopped; read by the pipeline's threads while it runs. */
    bool *owned;                   /* [partitions] */
    int64_t *passed;               /* [partitions]: checkpoint at the
                                      segment's start */
    unsigned nowned;
    /* Set by the fence when another member took a partition over: the
     * pipeline's work is dropped until the coordinator has resynced. */
    atomic_bool fenced;
    pthread_t coord;               /* the coordinator thread */
    bool coord_started;
    bool coord_stop;               /* under mu */
    pthread_cond_t coord_cond;     /* wakes the coordinator (under mu) */
    bool pipeline_running;         /* coordinator / starting thread only */

    struct worker *workers;
    eddy_store_subscription *sub;  /* of the running segment */

    pthread_mutex_t mu;       /* ring, watermark, flags below */
    pthread_cond_t cond;      /* ring room, watermark moved, redrive pass */
    pthread_cond_t maint_cond;
    struct slot *ring;        /* max_in_flight slots */
    size_t ring_head, ring_len;
    int64_t watermark;        /* the checkpoint in memory */
    int64_t persisted;        /* last checkpoint written */
    unsigned since_persist;   /* completions since */
    bool stopping;            /* the pipeline stops: the dispatcher must not
                                 queue more */
    bool closing;             /* eddy_durable_stop began */
    bool failed;              /* nothing delivers any more: the store
                                 subscription ended with an error, or the
                                 member cannot go on (fail_status) */
    int fail_status;
    eddy_error fail_err;
    bool maint_stop;
    bool stopped;             /* the stop ended */
    bool redrive_now;         /* wait_idle asks for a redrive pass */
    uint64_t redrive_started; /* redrive passes begun ... */
    uint64_t redrive_passes;  /* ... and finished (one at a time) */

    pthread_t maint;
    bool maint_started;
    pthread_mutex_t redrive_mu; /* one redrive at a time */

    /* Loaded at each segment's start, read by the dispatcher only. */
    struct restored *restored;
    size_t nrestored;
    int64_t *dead;            /* dead-lettered positions above the checkpoint */
    size_t ndead;
};

/* The bookkeeping of one delivery, run in a write job around (TRANSACTIONAL)
 * or after (INBOX, redrives) the handler call. */
struct txn_job {
    eddy_durable *d;
    const eddy_event *ev;
    int64_t position;
    int64_t dead_letter_id; /* > 0: a redrive; delete it on success */
    bool had_retry;         /* delete the retry row on success */
    eddy_txn *txn;
    bool skipped;           /* the inbox said "done" already */
    bool inbox_taken;       /* the inbox row is written (inbox_take) */
    bool batched;           /* the batch writes the checkpoint once */
    char msg[MESSAGE_MAX];
};

static inline void eddyi_abs_deadline(struct timespec *ts, int64_t at_us)
{
    ts->tv_sec = (time_t)(at_us / 1000000);
    ts->tv_nsec = (long)(at_us % 1000000) * 1000;
}

/* ---- durable_ring.c ------------------------------------------------------ */

/* The hash of a partition key (the subject, else the id): FNV-1a 64 of its
 * bytes. Its partition is this modulo the partition count, in every
 * process (eddy_partition_of); its worker, this mixed. */
uint64_t eddyi_durable_hash(const char *key);

/* The store subscription callback (the dispatcher). */
int eddyi_durable_on_record(const eddy_record *rec, void *user);
/* The store subscription's progress callback (eddy_progress_fn). */
void eddyi_durable_on_progress(int64_t position, void *user);

/* Marks `position` completed (handled, skipped or dead-lettered). Any
 * thread. */
void eddyi_durable_complete(eddy_durable *d, int64_t position);

/* The checkpoint in memory. Any thread. */
int64_t eddyi_durable_watermark(eddy_durable *d);

/* Writes the in-memory checkpoint if it moved (and prunes the retry rows
 * it passed). Not from the writer thread. */
int eddyi_durable_persist(eddy_durable *d, eddy_error *err);

/* The maintenance thread. */
void *eddyi_durable_maint_main(void *arg);

/* ---- durable_worker.c ---------------------------------------------------- */

void *eddyi_durable_worker_main(void *arg);

/* Frees the worker's parked keys and queued events (after it stopped). */
void eddyi_durable_worker_drop(struct worker *w);

/* ---- durable_deliver.c --------------------------------------------------- */

/* The metrics series of (d, event type), or NULL without metrics. */
eddy_metrics_series *eddyi_durable_series(const eddy_durable *d,
                                          const eddy_event *ev);

/*
 * Delivers `ev` once in the subscription's mode. `dead_letter_id` > 0: a
 * redrive (deleted with the success bookkeeping). Returns EDDY_OK (handled,
 * or skipped as already done) or the failure, with `msg` (MESSAGE_MAX
 * bytes) set. Not from the writer thread.
 */
int eddyi_durable_deliver(eddy_durable *d, const eddy_event *ev,
                          int64_t position, bool had_retry,
                          int64_t dead_letter_id, char *msg);

/* TRANSACTIONAL, inside a write job (fenced by the caller): inbox check,
 * handler, success bookkeeping. */
int eddyi_durable_txn_item(eddy_txn *txn, struct txn_job *j, eddy_error *err);

/* ---- durable_dead.c ------------------------------------------------------ */

/* What became of an item after a run. */
enum item_outcome {
    ITEM_PARK = 0, /* failed: parked until it->next_at_us */
    ITEM_DONE = 1, /* completed: handled, skipped or dead-lettered */
    ITEM_DROP = 2  /* fenced: this member lost a partition; the item is
                      neither completed nor parked (the pipeline resyncs
                      and the partition's owner delivers it) */
};

/* Runs `it` once on worker `w`. */
enum item_outcome eddyi_durable_item_run(struct worker *w, struct item *it);

/* Records a failed call of `it` (error `rc`, message `msg`): schedules a
 * retry (ITEM_PARK) or dead-letters it (ITEM_DONE: the key moves on);
 * ITEM_DROP when the member was fenced. */
enum item_outcome eddyi_durable_item_failed(struct worker *w, struct item *it,
                                            int rc, const char *msg);

/* One pass over the dead letters of `d` marked for redrive (at most
 * REDRIVE_BATCH of them) whose events are in partitions this member owns.
 * Maintenance thread. */
void eddyi_durable_redrive_marked(eddy_durable *d);

/* ---- durable.c: the pipeline ---------------------------------------------- */

/* Starts a segment over the owned partitions (d->owned, d->passed): loads
 * the retry rows and dead-lettered positions above its start, then starts
 * the workers, the maintenance thread and the store subscription. Returns
 * EDDY_OK or an error with nothing left running. Coordinator (or starting)
 * thread, the pipeline stopped. */
int eddyi_durable_pipeline_start(eddy_durable *d, eddy_error *err);

/* Stops the running segment: the reader first, then the workers (they
 * finish what is runnable; parked events stay in their retry rows), the
 * maintenance thread; persists the checkpoint (unless fenced). Returns the
 * store subscription's status (EDDY_OK, or the read error that had ended
 * it, with `err`) or the final checkpoint write's error. Does nothing when
 * no segment runs. */
int eddyi_durable_pipeline_stop(eddy_durable *d, eddy_error *err);

/* ---- durable_members.c ------------------------------------------------------ */

/* The partition of `key` (the subject, else the id): FNV-1a 64 of its
 * bytes modulo d->partitions (as eddy_partition_of). */
unsigned eddyi_durable_part(const eddy_durable *d, uint64_t key_hash);

/*
 * Joins the subscription's members at start: records this member, creates
 * the partitions at d->first_checkpoint when none exist yet (or re-creates
 * them with another count when no member runs: see durable_members.c),
 * takes this member's share of the free ones and fills the first segment.
 * Returns EDDY_OK, EDDY_EBUSY (other members run with another partition
 * count; the message names them) or a store error. Starting thread.
 */
int eddyi_durable_join(eddy_durable *d, eddy_error *err);

/* Starts / stops the coordinator thread (it renews the leases and
 * rebalances while the subscription runs). */
int eddyi_durable_coord_start(eddy_durable *d, eddy_error *err);
void eddyi_durable_coord_stop(eddy_durable *d);

/* Leaves the members: frees this member's leases (their checkpoints as
 * persisted) and deletes its row, so that others take its partitions at
 * once. Logged, never fatal. After the pipeline stopped. */
void eddyi_durable_leave(eddy_durable *d);

/*
 * THE FENCE, first in a write job that commits effects of this member's
 * partitions (a transactional batch, an inbox claim, a retry row or dead
 * letter, the checkpoint): renews this member's row (its lease on all its
 * partitions) in the same transaction. If the row is gone (the member was
 * taken for gone and its partitions may have moved), sets d->fenced, wakes
 * the coordinator and returns EDDY_ESTATE naming the problem: the caller
 * returns it and the job rolls back, so a member that lost a partition
 * commits nothing for it. A member without partitions has nothing to
 * fence (EDDY_OK). Writer thread.
 */
int eddyi_durable_fence(eddy_txn *txn, eddy_durable *d, eddy_error *err);

/* Whether the fence tripped and the coordinator has not resynced yet. Any
 * thread. */
static inline bool eddyi_durable_fenced(eddy_durable *d)
{
    return atomic_load_explicit(&d->fenced, memory_order_acquire);
}

/* Whether the event of `key_hash` is in a partition this member delivers
 * in the running segment. Pipeline threads. */
static inline bool eddyi_durable_owns(const eddy_durable *d,
                                      uint64_t key_hash)
{
    return d->owned[eddyi_durable_part(d, key_hash)];
}

#endif
