/*
 * src/reliability/durable_ring.c - the dispatcher, the completion ring and
 * the checkpoint of a durable subscription, and its maintenance thread.
 *
 * Threads: eddyi_durable_on_record runs on the store subscription's thread;
 * eddyi_durable_complete on workers, the maintenance thread and the
 * stopping thread; eddyi_durable_maint_main is the maintenance thread. The
 * ring and the watermark are under d->mu.
 *
 * The checkpoint is the ring's low watermark (durable_internal.h): it never
 * passes an uncompleted event. The dispatcher hands a worker only the
 * events of the segment's partitions that their checkpoints had not
 * passed; the others count as completed at once, like events of another
 * type.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/state_durable.h"
#include "../store/state_leases.h"
#include "../store/store_internal.h"
#include "durable_internal.h"

/* Events handed to a worker between two wake-ups (see on_record). */
#define SIGNAL_EVERY 32

/* ---- completion ring and checkpoint -------------------------------------- */

static struct slot *ring_at(eddy_durable *d, size_t i)
{
    return &d->ring[(d->ring_head + i) % d->max_in_flight];
}

/* Pops the completed front; under d->mu. */
static void ring_advance(eddy_durable *d)
{
    bool moved = false;
    while (d->ring_len > 0 && ring_at(d, 0)->done) {
        d->watermark = ring_at(d, 0)->position;
        d->ring_head = (d->ring_head + 1) % d->max_in_flight;
        d->ring_len--;
        d->since_persist++;
        moved = true;
    }
    if (moved) {
        pthread_cond_broadcast(&d->cond);
        if (d->since_persist >= d->ckpt_every)
            pthread_cond_signal(&d->maint_cond);
    }
}

void eddyi_durable_complete(eddy_durable *d, int64_t position)
{
    pthread_mutex_lock(&d->mu);
    size_t lo = 0, hi = d->ring_len;
    while (lo < hi) { /* positions in the ring are increasing */
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(d, mid)->position < position)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < d->ring_len && ring_at(d, lo)->position == position) {
        ring_at(d, lo)->done = true;
        ring_advance(d);
    }
    pthread_mutex_unlock(&d->mu);
}

int64_t eddyi_durable_watermark(eddy_durable *d)
{
    pthread_mutex_lock(&d->mu);
    int64_t w = d->watermark;
    pthread_mutex_unlock(&d->mu);
    return w;
}

struct ckpt_job {
    eddy_durable *d;
    int64_t position;
};

/*
 * The checkpoint of the owned partitions moves to the watermark (fenced:
 * only while this member still holds them), and the subscription's own
 * checkpoint (eddy_checkpoints, what tools and a rebuild read) to the
 * lowest of all its partitions': every event at or below it was handled,
 * whichever member holds its partition.
 */
static int ckpt_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct ckpt_job *j = arg;
    int rc = eddyi_durable_fence(txn, j->d, err);
    int64_t low = 0, held = 0;
    bool found = false;
    if (rc == EDDY_OK)
        rc = eddyi_leases_renew(txn, j->d->name, j->d->member, 0, j->position,
                                &held, err);
    if (rc == EDDY_OK)
        rc = eddyi_leases_low(txn, j->d->name, &low, &found, err);
    if (rc != EDDY_OK || !found)
        return rc;
    rc = eddyi_ckpt_save(txn, j->d->name, low, err);
    /* Retry rows at or below it are stale (their event was handled or
     * dead-lettered); those of partitions still behind are kept. */
    if (rc == EDDY_OK)
        rc = eddyi_retry_prune(txn, j->d->name, low, err);
    return rc;
}

int eddyi_durable_persist(eddy_durable *d, eddy_error *err)
{
    pthread_mutex_lock(&d->mu);
    int64_t w = d->watermark;
    /* A member without partitions has no checkpoint of its own to move;
     * a fenced one may not move it (the coordinator resyncs). */
    bool need = w > d->persisted && d->nowned > 0 && !eddyi_durable_fenced(d);
    d->since_persist = 0;
    pthread_mutex_unlock(&d->mu);
    if (!need)
        return EDDY_OK;
    struct ckpt_job j = {.d = d, .position = w};
    int rc = eddyi_store_write(d->store, ckpt_job_run, &j, err);
    if (rc == EDDY_OK) {
        pthread_mutex_lock(&d->mu);
        if (w > d->persisted)
            d->persisted = w;
        pthread_mutex_unlock(&d->mu);
    }
    return rc;
}

/* ---- the dispatcher (store subscription callback) ------------------------ */

uint64_t eddyi_durable_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *key; key++) {
        h ^= (unsigned char)*key;
        h *= 1099511628211ULL;
    }
    return h;
}

/* The worker of a key: the hash mixed first (splitmix64's finaliser), so
 * that the keys of a member's partitions (one residue class modulo the
 * partition count each) still spread over every worker. */
static unsigned worker_of(const eddy_durable *d, uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (unsigned)(h % d->nworkers);
}

/* Whether the record at `position` with key hash `h` is this member's to
 * deliver in the running segment: its partition is owned, and that
 * partition's checkpoint had not passed it when the segment began. */
static bool mine(const eddy_durable *d, uint64_t h, int64_t position)
{
    unsigned p = eddyi_durable_part(d, h);
    return d->owned[p] && position > d->passed[p];
}

static bool wanted_type(const eddy_durable *d, const char *type)
{
    for (size_t i = 0; i < d->npatterns; i++)
        if (eddyi_pattern_match(&d->matches[i], d->patterns[i], type))
            return true;
    return false;
}

static const struct restored *restored_find(const eddy_durable *d,
                                            int64_t pos)
{
    size_t lo = 0, hi = d->nrestored;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->restored[mid].position < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->nrestored && d->restored[lo].position == pos
               ? &d->restored[lo]
               : NULL;
}

static bool dead_find(const eddy_durable *d, int64_t pos)
{
    size_t lo = 0, hi = d->ndead;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->dead[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->ndead && d->dead[lo] == pos;
}

/* A new item for `rec`, with the retry state restored at start; NULL when
 * out of memory. */
static struct item *item_new(const eddy_durable *d, const eddy_record *rec,
                             const char *key, uint64_t hash)
{
    struct item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->ev = eddy_event_ref(rec->event);
    it->position = rec->position;
    it->key = key;
    it->hash = hash;
    const struct restored *r = restored_find(d, rec->position);
    if (r) {
        it->attempts = r->attempts;
        it->first_fail_us = r->first_fail_us;
        it->last_fail_us = r->last_fail_us;
        it->next_at_us = r->next_at_us;
        it->last_code = r->code;
        snprintf(it->last_error, sizeof it->last_error, "%s", r->error);
    }
    return it;
}

static void signal_workers(eddy_durable *d);

/*
 * The store subscription read the log up to `position` and delivered every
 * record its filter passed: the records in between are not this
 * subscription's (the store skipped them without reading them into memory)
 * and count as completed, like a record of another type. A done slot at
 * the ring's tail is moved forward rather than a new one queued.
 */
void eddyi_durable_on_progress(int64_t position, void *user)
{
    eddy_durable *d = user;
    signal_workers(d);
    pthread_mutex_lock(&d->mu);
    if (d->ring_len == 0) {
        if (position > d->watermark) {
            d->watermark = position;
            d->since_persist++;
            pthread_cond_broadcast(&d->cond);
        }
    } else {
        struct slot *tail = ring_at(d, d->ring_len - 1);
        if (tail->done) {
            if (position > tail->position)
                tail->position = position;
        } else {
            while (d->ring_len >= d->max_in_flight && !d->stopping)
                pthread_cond_wait(&d->cond, &d->mu);
            if (!d->stopping && position > tail->position) {
                struct slot *s = ring_at(d, d->ring_len++);
                s->position = position;
                s->done = true;
            }
        }
    }
    pthread_mutex_unlock(&d->mu);
}

int eddyi_durable_on_record(const eddy_record *rec, void *user)
{
    eddy_durable *d = user;
    /* The partition key: the subject, else the id (borrowed from the
     * event, which the item keeps a reference to). */
    const char *key = eddy_event_subject(rec->event);
    if (!key)
        key = eddy_event_id(rec->event);
    uint64_t hash = eddyi_durable_hash(key);
    bool wanted = wanted_type(d, eddy_event_type(rec->event)) &&
                  mine(d, hash, rec->position) &&
                  !dead_find(d, rec->position);
    struct item *it = NULL;
    if (wanted && !(it = item_new(d, rec, key, hash)))
        return EDDY_ENOMEM; /* ends the subscription; status says so */
    pthread_mutex_lock(&d->mu);
    if (d->ring_len >= d->max_in_flight) {
        /* full: the events in flight must reach their workers */
        pthread_mutex_unlock(&d->mu);
        signal_workers(d);
        pthread_mutex_lock(&d->mu);
    }
    while (d->ring_len >= d->max_in_flight && !d->stopping)
        pthread_cond_wait(&d->cond, &d->mu);
    if (d->stopping) {
        pthread_mutex_unlock(&d->mu);
        if (it) {
            eddy_event_unref(it->ev);
            free(it);
        }
        return EDDY_ESTOPPED;
    }
    if (!wanted && d->ring_len == 0) {
        d->watermark = rec->position;
        d->since_persist++;
        pthread_cond_broadcast(&d->cond);
    } else {
        struct slot *s = ring_at(d, d->ring_len++);
        s->position = rec->position;
        s->done = !wanted;
    }
    pthread_mutex_unlock(&d->mu);
    if (it) {
        struct worker *w = &d->workers[worker_of(d, it->hash)];
        pthread_mutex_lock(&w->mu);
        if (w->in_tail)
            w->in_tail->next = it;
        else
            w->in_head = it;
        w->in_tail = it;
        /* A worker woken per event sleeps again after it, and each event
         * costs two context switches. So wake it once per SIGNAL_EVERY
         * events, and for the rest at the end of the store's pass
         * (eddyi_durable_on_progress): a page of events is one wake-up. */
        if (++w->unsignalled >= SIGNAL_EVERY) {
            w->unsignalled = 0;
            pthread_cond_signal(&w->cond);
        }
        pthread_mutex_unlock(&w->mu);
    }
    return 0;
}

/* Wakes the workers that were handed events since their last signal. */
static void signal_workers(eddy_durable *d)
{
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        pthread_mutex_lock(&w->mu);
        if (w->unsignalled) {
            w->unsignalled = 0;
            pthread_cond_signal(&w->cond);
        }
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- maintenance thread -------------------------------------------------- */

/*
 * Persists the checkpoint in batches and redrives marked dead letters. The
 * first pass runs at once: dead letters marked while no subscription of
 * this name ran are redelivered when it starts. Later passes come every
 * REDRIVE_POLL_MS (marks made by another handle or process), or at once
 * when eddy_durable_wait_idle asks (redrive_now). redrive_started and
 * redrive_passes count the passes begun and finished: wait_idle waits for
 * a pass that began after its request.
 */
void *eddyi_durable_maint_main(void *arg)
{
    eddyi_thread_name("eddy-dur-maint");
    eddy_durable *d = arg;
    unsigned tick = d->ckpt_interval_ms < REDRIVE_POLL_MS ? d->ckpt_interval_ms
                                                          : REDRIVE_POLL_MS;
    int64_t next_redrive = 0; /* at once */
    pthread_mutex_lock(&d->mu);
    while (!d->maint_stop) {
        if (next_redrive > 0 && d->since_persist < d->ckpt_every &&
            !d->redrive_now) {
            struct timespec ts;
            eddyi_abs_deadline(&ts, eddy_now_us() + (int64_t)tick * 1000);
            pthread_cond_timedwait(&d->maint_cond, &d->mu, &ts);
            if (d->maint_stop)
                break;
        }
        bool redrive = d->redrive_now || eddy_now_us() >= next_redrive;
        d->redrive_now = false;
        if (redrive)
            d->redrive_started++;
        pthread_mutex_unlock(&d->mu);
        eddy_error e = {0};
        if (eddyi_durable_persist(d, &e) != EDDY_OK)
            EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: checkpoint not "
                      "persisted: %s", d->name, e.message);
        if (redrive) {
            eddyi_durable_redrive_marked(d);
            next_redrive = eddy_now_us() + REDRIVE_POLL_MS * 1000;
        }
        pthread_mutex_lock(&d->mu);
        if (redrive) {
            d->redrive_passes++;
            pthread_cond_broadcast(&d->cond);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}
