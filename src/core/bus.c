/*
 * src/core/bus.c - the in-process event bus.
 *
 * Layout. N workers, each owning a bounded MPSC ring of event pointers
 * (Dmitry Vyukov's bounded queue: one sequence number per cell, producers
 * claim a slot with a CAS on the enqueue position, the single consumer needs
 * no CAS). Publishing hashes the event's partition key (FNV-1a) to choose ONE
 * worker and pushes one pointer holding one event reference; that worker runs
 * every matching subscription for the event, in subscription order. So the
 * order per key holds for every handler, different keys run in parallel, and
 * a publish is all-or-nothing.
 *
 * Sleeping. An idle worker spins briefly, then parks on its mutex + condvar
 * after raising `sleeping` and re-checking its ring; a producer fences after
 * its push and signals only when it sees `sleeping`. Both sides order the
 * flag against the ring with seq_cst fences (Dekker), so a wake-up is never
 * lost and a busy bus makes no system call per event. Producers blocked on a
 * full ring use the same pattern with `full_waiters` and `not_full`.
 *
 * Subscriptions. The list is an immutable, reference-counted table replaced
 * on every subscribe / unsubscribe under a rwlock (copy on write), with a
 * generation number. A worker keeps its own reference to the table and only
 * takes the lock when the generation changed, so handling an event takes no
 * lock. Before calling a subscription a worker publishes it in its `hazard`
 * slot and then checks the subscription's `removed` flag; unsubscribe sets
 * the flag and waits until no worker's hazard names it, so once it returns
 * the handler never runs again. eddy_bus_dispatch, which runs handlers on any
 * thread, counts its calls in the subscription's `inflight` instead.
 *
 * Stopping. `state` goes RUNNING -> STOPPING once. From then on only the
 * bus's own handlers may publish (follow-ups of events being drained; an
 * external publish gets EDDY_ESTOPPED). A publisher announces itself in
 * `publishers` before checking the state and leaves after its push. A worker
 * exits only when the bus is stopping, no publisher is inside publish, and
 * every accepted event on every worker has been handled (the sum of the
 * `handled` counters equals the sum of the enqueue positions): at that point
 * no handler runs, so no follow-up can appear, and nothing accepted is left.
 * The worker that sees this first wakes the others.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "eddy/bus.h"
#include "ctx_internal.h"
#include "internal.h"
#include "pattern.h"

#define BUS_DEFAULT_WORKERS 4u
#define BUS_MAX_WORKERS 256u
#define BUS_DEFAULT_CAPACITY 8192u
#define BUS_MAX_CAPACITY ((size_t)1 << 30)
#define BUS_MAX_NAME 256u
#define BUS_CACHELINE 64

/* How long an idle worker polls before parking (about 30 us with the ~30 ns
 * pause of current Xeons: longer than the gap between events at 100k/s), and
 * a producer before it sleeps on a full ring (the same, then a few yields).
 * The worker does not yield: on a busy machine a yield can hand the CPU to
 * another program for a whole time slice, while a parked thread that is
 * woken gets the CPU back quickly. */
#define BUS_SPIN_PAUSES 1024
#define BUS_SPIN_YIELDS 16
/* A worker looks for producers blocked on its full ring every this many
 * events (and whenever its ring runs empty; looking costs a full fence), and
 * wakes them once half the ring is free: waking them per event would cost
 * two context switches per event when the bus is saturated. */
#define BUS_NOTIFY_EVERY 16u

#define CTX_MESSAGE_MAX 384

enum bus_state { BUS_NEW = 0, BUS_RUNNING = 1, BUS_STOPPING = 2 };

struct sub {
    atomic_uint refs;       /* one per table that lists it */
    atomic_bool removed;    /* set by unsubscribe before it waits */
    atomic_uint inflight;   /* eddy_bus_dispatch calls running it */
    eddyi_pattern match;    /* parsed `pattern` */
    char *pattern;
    char *name;
    eddy_handler_fn fn;
    void *user;
    eddy_filter_fn filter;
    void *filter_user;
};

/* An immutable snapshot of the subscriptions, in subscription order. */
struct subtab {
    atomic_uint refs;
    size_t count;
    struct sub *subs[];
};

struct cell {
    atomic_size_t seq;
    eddy_event *ev;
};

struct worker {
    /* written by producers */
    _Alignas(BUS_CACHELINE) atomic_size_t enqueue_pos;
    /* written by the worker thread */
    _Alignas(BUS_CACHELINE) size_t dequeue_pos; /* worker-private */
    atomic_size_t handled;                      /* events finished */
    _Atomic(struct sub *) hazard;               /* subscription running now */
    struct subtab *tab;                         /* worker's table reference */
    unsigned tab_gen;
    /* the parking lot */
    _Alignas(BUS_CACHELINE) atomic_int sleeping;
    atomic_int full_waiters;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t not_full;
    /* set once */
    struct cell *cells;
    size_t mask;
    eddy_bus *bus;
    pthread_t thread;
    bool started;
};

struct eddy_bus {
    atomic_int state;
    atomic_uint publishers; /* threads inside publish right now */
    /* set once at construction */
    unsigned nworkers;
    eddy_full_policy policy;
    char *source;
    eddy_key_fn key_fn;
    void *key_user;
    struct worker *workers;
    /* subscriptions */
    pthread_rwlock_t subs_lock;
    struct subtab *subs;    /* under subs_lock */
    atomic_uint subs_gen;   /* bumped (under the write lock) on each change */
    /* start / stop / join */
    pthread_mutex_t life_lock;
    bool joined;
};

struct eddy_ctx {
    eddy_bus *bus;
    struct sub *sub;
    const eddy_event *ev;
    bool dispatch;          /* run by eddy_bus_dispatch, not a worker */
    const eddyi_ctx_host *host; /* not a bus handler: see ctx_internal.h */
    unsigned followups;     /* follow-ups published so far in this call */
    char message[CTX_MESSAGE_MAX];
};

/* The worker running on this thread (NULL elsewhere), and the handler
 * invocation in progress on this thread (NULL outside handlers). */
static _Thread_local struct worker *tls_worker;
static _Thread_local eddy_ctx *tls_ctx;

/*
 * The Dekker handshakes (`sleeping` and `full_waiters` against the ring):
 * each side stores, then loads what the other side stored. Normal builds
 * order that with a seq_cst fence and a plain load, which costs the producer
 * no write to the worker's cache line. ThreadSanitizer does not model fences
 * (GCC warns with -Wtsan), so its builds use read-modify-writes on the flag,
 * which order the same way through the flag's modification order.
 */
#if defined(__SANITIZE_THREAD__)
#define BUS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BUS_TSAN 1
#endif
#endif

/* Loads `flag` ordered after this thread's earlier stores. */
static inline int flag_load_fenced(atomic_int *flag)
{
#ifdef BUS_TSAN
    return atomic_fetch_add(flag, 0);
#else
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(flag, memory_order_relaxed);
#endif
}

/* Stores `value` in `flag`, ordered before this thread's later loads. */
static inline void flag_store_fenced(atomic_int *flag, int value)
{
#ifdef BUS_TSAN
    atomic_exchange(flag, value);
#else
    atomic_store_explicit(flag, value, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- the ring ------------------------------------------------------------ */

/* Pushes `ev` if there is room; any number of producers at once. */
static bool ring_push(struct worker *w, eddy_event *ev)
{
    size_t pos = atomic_load_explicit(&w->enqueue_pos, memory_order_relaxed);
    struct cell *c;
    for (;;) {
        c = &w->cells[pos & w->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t diff = (intptr_t)seq - (intptr_t)pos;
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(
                    &w->enqueue_pos, &pos, pos + 1, memory_order_relaxed,
                    memory_order_relaxed))
                break;
        } else if (diff < 0) {
            return false; /* the cell still holds an event a lap behind */
        } else {
            pos = atomic_load_explicit(&w->enqueue_pos, memory_order_relaxed);
        }
    }
    c->ev = ev;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return true;
}

/* Pops the oldest event, or NULL when the ring is empty (or its head slot is
 * claimed but not yet written: that producer will wake us). Worker only. */
static eddy_event *ring_pop(struct worker *w)
{
    size_t pos = w->dequeue_pos;
    struct cell *c = &w->cells[pos & w->mask];
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    if (seq != pos + 1)
        return NULL;
    eddy_event *ev = c->ev;
    atomic_store_explicit(&c->seq, pos + w->mask + 1, memory_order_release);
    w->dequeue_pos = pos + 1;
    return ev;
}

/* Wakes `w` if it is parked. Call after pushing (the fence orders the push
 * before the load of `sleeping`; the worker does the mirror image). */
static void worker_wake(struct worker *w)
{
    if (flag_load_fenced(&w->sleeping)) {
        pthread_mutex_lock(&w->lock);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
    }
}

/* Wakes `w` and every producer waiting for room, unconditionally. */
static void worker_kick(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->wake);
    pthread_cond_broadcast(&w->not_full);
    pthread_mutex_unlock(&w->lock);
}

/* Tells producers blocked on a full ring that there is room; unless
 * `always`, only once at least half the ring is free. */
static void worker_notify_room(struct worker *w, bool always)
{
    if (flag_load_fenced(&w->full_waiters) > 0 &&
        (always ||
         atomic_load_explicit(&w->enqueue_pos, memory_order_relaxed) -
                 w->dequeue_pos <= (w->mask + 1) / 2)) {
        pthread_mutex_lock(&w->lock);
        pthread_cond_broadcast(&w->not_full);
        pthread_mutex_unlock(&w->lock);
    }
}

/* ---- subscriptions ------------------------------------------------------- */

static void sub_unref(struct sub *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(s->pattern);
    free(s->name);
    free(s);
}

static struct subtab *subtab_new(size_t count)
{
    struct subtab *t = malloc(sizeof *t + count * sizeof t->subs[0]);
    if (!t)
        return NULL;
    atomic_init(&t->refs, 1);
    t->count = count;
    return t;
}

static void subtab_unref(struct subtab *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < t->count; i++)
        sub_unref(t->subs[i]);
    free(t);
}

/* A new reference to the current table. */
static struct subtab *bus_subs_get(eddy_bus *bus, unsigned *gen)
{
    pthread_rwlock_rdlock(&bus->subs_lock);
    struct subtab *t = bus->subs;
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    if (gen)
        *gen = atomic_load_explicit(&bus->subs_gen, memory_order_relaxed);
    pthread_rwlock_unlock(&bus->subs_lock);
    return t;
}

static bool sub_matches(const struct sub *s, const char *type)
{
    return eddyi_pattern_match(&s->match, s->pattern, type);
}

static int name_check(const char *name, eddy_error *err)
{
    size_t len = strlen(name);
    if (len == 0)
        return eddyi_error(err, EDDY_EINVAL, "handler name: empty");
    if (len > BUS_MAX_NAME)
        return eddyi_error(err, EDDY_EINVAL,
                           "handler name: longer than %u bytes", BUS_MAX_NAME);
    if (!eddyi_utf8_valid(name, len))
        return eddyi_error(err, EDDY_EINVAL, "handler name: not valid UTF-8");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return eddyi_error(err, EDDY_EINVAL,
                               "handler name: control character at offset %zu",
                               i);
    }
    return EDDY_OK;
}

/* ---- running handlers ---------------------------------------------------- */

/* Runs one handler with a fresh context and logs its failure. */
static int sub_run(eddy_bus *bus, struct sub *s, const eddy_event *ev,
                   bool dispatch)
{
    eddy_ctx ctx; /* not zeroed: the message buffer is large */
    ctx.bus = bus;
    ctx.sub = s;
    ctx.ev = ev;
    ctx.dispatch = dispatch;
    ctx.host = NULL;
    ctx.followups = 0;
    ctx.message[0] = '\0';
    eddy_ctx *outer = tls_ctx;
    tls_ctx = &ctx;
    int rc = s->fn(&ctx, ev, s->user);
    tls_ctx = outer;
    if (rc != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_ERROR, "bus",
                  "handler \"%s\" failed on %s (event %s): %s: %s", s->name,
                  eddy_event_type(ev), eddy_event_id(ev), eddy_errname(rc),
                  ctx.message[0] ? ctx.message : eddy_strerror(rc));
    return rc;
}

/* Runs every subscription matching `ev` on worker `w`, in order. */
static void worker_handle(struct worker *w, eddy_event *ev)
{
    eddy_bus *bus = w->bus;
    unsigned gen = atomic_load_explicit(&bus->subs_gen, memory_order_acquire);
    if (gen != w->tab_gen || !w->tab) {
        struct subtab *old = w->tab;
        w->tab = bus_subs_get(bus, &w->tab_gen);
        subtab_unref(old);
    }
    const struct subtab *t = w->tab;
    const char *type = eddy_event_type(ev);
    bool matched = false;
    for (size_t i = 0; i < t->count; i++) {
        struct sub *s = t->subs[i];
        if (!sub_matches(s, type))
            continue;
        matched = true;
        /* Announce, then look: unsubscribe does the opposite (see top). */
        atomic_store_explicit(&w->hazard, s, memory_order_seq_cst);
        if (!atomic_load_explicit(&s->removed, memory_order_seq_cst) &&
            (!s->filter || s->filter(ev, s->filter_user)))
            sub_run(bus, s, ev, false);
        atomic_store_explicit(&w->hazard, NULL, memory_order_release);
    }
    /* Said here rather than at publish, so that publishing never looks at
     * the subscription table: the worker has it cached already. */
    if (EDDYI_UNLIKELY(!matched))
        EDDYI_LOG(EDDY_LOG_WARN, "bus", "no subscriber for %s (event %s)",
                  type, eddy_event_id(ev));
}

/*
 * True when every worker may exit: the bus is stopping, nobody is inside
 * publish, and every event accepted by any worker has been handled.
 * All `handled` counters are read before all enqueue positions. Each
 * handled[i] read covers only events whose push is visible by then
 * (release/acquire through the ring cell and the counter), so
 * handled[i] <= enqueued[i] as read, and the sums are equal only if every
 * worker's are. An event still outstanding was pushed either by a thread
 * outside the bus (it was inside publish, and `publishers` read 0 after it
 * left, so its push is visible) or by a handler, whose own event is then
 * counted as unhandled (by induction). So equality means the bus was idle,
 * and an idle stopping bus stays idle: only handlers may still publish.
 */
static bool bus_drained(const eddy_bus *bus)
{
    if (atomic_load(&bus->state) != BUS_STOPPING ||
        atomic_load(&bus->publishers) != 0)
        return false;
    size_t done = 0, in = 0;
    for (unsigned i = 0; i < bus->nworkers; i++)
        done += atomic_load(&bus->workers[i].handled);
    for (unsigned i = 0; i < bus->nworkers; i++)
        in += atomic_load(&bus->workers[i].enqueue_pos);
    return done == in;
}

static void bus_kick_all(eddy_bus *bus);

static void *worker_main(void *arg)
{
    eddyi_thread_name("eddy-bus");
    struct worker *w = arg;
    eddy_bus *bus = w->bus;
    size_t handled = 0;
    tls_worker = w;
    for (;;) {
        eddy_event *ev = ring_pop(w);
        for (int i = 0; !ev && i < BUS_SPIN_PAUSES; i++) {
            if (i == 0)
                worker_notify_room(w, true);
            cpu_pause();
            ev = ring_pop(w);
        }
        if (!ev) {
            pthread_mutex_lock(&w->lock);
            flag_store_fenced(&w->sleeping, 1);
            ev = ring_pop(w);
            if (!ev) {
                if (bus_drained(bus)) {
                    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
                    pthread_mutex_unlock(&w->lock);
                    /* The others may sleep: tell them (no lock held here, so
                     * two exiting workers cannot deadlock on each other). */
                    bus_kick_all(bus);
                    break;
                }
                pthread_cond_wait(&w->wake, &w->lock);
            }
            atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
            pthread_mutex_unlock(&w->lock);
            if (!ev)
                continue;
        }
        worker_handle(w, ev);
        eddy_event_unref(ev);
        /* release: whoever reads this count also sees the follow-ups the
         * handlers pushed (bus_drained relies on it) */
        atomic_store_explicit(&w->handled, ++handled, memory_order_release);
        if (handled % BUS_NOTIFY_EVERY == 0)
            worker_notify_room(w, false);
    }
    subtab_unref(w->tab);
    w->tab = NULL;
    tls_worker = NULL;
    return NULL;
}

/* ---- construction -------------------------------------------------------- */

static size_t round_pow2(size_t n)
{
    size_t p = 2;
    while (p < n)
        p <<= 1;
    return p;
}

static void worker_destroy(struct worker *w)
{
    eddy_event *ev;
    if (w->cells)
        while ((ev = ring_pop(w)) != NULL)
            eddy_event_unref(ev);
    free(w->cells);
    pthread_cond_destroy(&w->not_full);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
}

static int worker_init(struct worker *w, eddy_bus *bus, size_t capacity)
{
    w->bus = bus;
    w->mask = capacity - 1;
    atomic_init(&w->enqueue_pos, 0);
    w->dequeue_pos = 0;
    atomic_init(&w->handled, 0);
    atomic_init(&w->hazard, NULL);
    atomic_init(&w->sleeping, 0);
    atomic_init(&w->full_waiters, 0);
    w->cells = NULL;
    if (pthread_mutex_init(&w->lock, NULL) != 0)
        return EDDY_ENOMEM;
    if (pthread_cond_init(&w->wake, NULL) != 0)
        goto fail_mutex;
    if (pthread_cond_init(&w->not_full, NULL) != 0)
        goto fail_wake;
    w->cells = malloc(capacity * sizeof *w->cells);
    if (!w->cells)
        goto fail_not_full;
    for (size_t i = 0; i < capacity; i++) {
        atomic_init(&w->cells[i].seq, i);
        w->cells[i].ev = NULL;
    }
    return EDDY_OK;
fail_not_full:
    pthread_cond_destroy(&w->not_full);
fail_wake:
    pthread_cond_destroy(&w->wake);
fail_mutex:
    pthread_mutex_destroy(&w->lock);
    return EDDY_ENOMEM;
}

eddy_bus *eddy_bus_new(const eddy_bus_options *opts, eddy_error *err)
{
    static const eddy_bus_options defaults = {0};
    if (!opts)
        opts = &defaults;
    unsigned nworkers = opts->workers ? opts->workers : BUS_DEFAULT_WORKERS;
    size_t capacity = opts->queue_capacity ? opts->queue_capacity
                                           : BUS_DEFAULT_CAPACITY;
    const char *source = opts->source ? opts->source : "eddy";
    if (nworkers > BUS_MAX_WORKERS) {
        eddyi_error(err, EDDY_EINVAL, "workers: %u is more than %u", nworkers,
                    BUS_MAX_WORKERS);
        return NULL;
    }
    if (capacity > BUS_MAX_CAPACITY) {
        eddyi_error(err, EDDY_EINVAL, "queue_capacity: %zu is more than %zu",
                    capacity, BUS_MAX_CAPACITY);
        return NULL;
    }
    if (opts->full_policy != EDDY_FULL_BLOCK &&
        opts->full_policy != EDDY_FULL_FAIL) {
        eddyi_error(err, EDDY_EINVAL, "full_policy: unknown value %d",
                    (int)opts->full_policy);
        return NULL;
    }
    if (source[0] == '\0' || !eddyi_utf8_valid(source, strlen(source))) {
        eddyi_error(err, EDDY_EINVAL, "source: empty or not valid UTF-8");
        return NULL;
    }
    capacity = round_pow2(capacity);

    unsigned inited = 0;
    bool rwlock = false, life = false;
    eddy_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        goto fail;
    atomic_init(&bus->state, BUS_NEW);
    atomic_init(&bus->publishers, 0);
    atomic_init(&bus->subs_gen, 0);
    bus->nworkers = nworkers;
    bus->policy = opts->full_policy;
    bus->key_fn = opts->partition_key;
    bus->key_user = opts->partition_key_user;
    bus->source = eddyi_strdup(source);
    bus->subs = subtab_new(0);
    bus->workers = aligned_alloc(BUS_CACHELINE,
                                 nworkers * sizeof *bus->workers);
    if (!bus->source || !bus->subs || !bus->workers)
        goto fail;
    memset(bus->workers, 0, nworkers * sizeof *bus->workers);
    if (pthread_rwlock_init(&bus->subs_lock, NULL) != 0)
        goto fail;
    rwlock = true;
    if (pthread_mutex_init(&bus->life_lock, NULL) != 0)
        goto fail;
    life = true;
    for (; inited < nworkers; inited++)
        if (worker_init(&bus->workers[inited], bus, capacity) != EDDY_OK)
            goto fail;
    return bus;
fail:
    eddyi_error(err, EDDY_ENOMEM, "bus: out of memory");
    if (bus) {
        for (unsigned i = 0; i < inited; i++)
            worker_destroy(&bus->workers[i]);
        if (life)
            pthread_mutex_destroy(&bus->life_lock);
        if (rwlock)
            pthread_rwlock_destroy(&bus->subs_lock);
        free(bus->workers);
        subtab_unref(bus->subs);
        free(bus->source);
        free(bus);
    }
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void bus_join(eddy_bus *bus)
{
    pthread_mutex_lock(&bus->life_lock);
    if (!bus->joined) {
        for (unsigned i = 0; i < bus->nworkers; i++)
            if (bus->workers[i].started)
                pthread_join(bus->workers[i].thread, NULL);
        bus->joined = true;
    }
    pthread_mutex_unlock(&bus->life_lock);
}

static void bus_kick_all(eddy_bus *bus)
{
    for (unsigned i = 0; i < bus->nworkers; i++)
        worker_kick(&bus->workers[i]);
}

int eddy_bus_start(eddy_bus *bus)
{
    if (!bus)
        return EDDY_EINVAL;
    int rc = EDDY_OK;
    pthread_mutex_lock(&bus->life_lock);
    if (atomic_load(&bus->state) != BUS_NEW || bus->joined) {
        rc = EDDY_ESTATE;
        goto out;
    }
    for (unsigned i = 0; i < bus->nworkers; i++) {
        struct worker *w = &bus->workers[i];
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e != 0) {
            EDDYI_LOG(EDDY_LOG_ERROR, "bus", "cannot start worker %u: %s", i,
                      strerror(e));
            rc = e == EAGAIN || e == ENOMEM ? EDDY_ENOMEM : EDDY_EIO;
            break;
        }
        w->started = true;
    }
    if (rc != EDDY_OK) {
        /* The started workers exit at once: the bus is stopped for good. */
        atomic_store(&bus->state, BUS_STOPPING);
        bus_kick_all(bus);
        for (unsigned i = 0; i < bus->nworkers; i++)
            if (bus->workers[i].started)
                pthread_join(bus->workers[i].thread, NULL);
        bus->joined = true;
        goto out;
    }
    int expected = BUS_NEW;
    atomic_compare_exchange_strong(&bus->state, &expected, BUS_RUNNING);
out:
    pthread_mutex_unlock(&bus->life_lock);
    return rc;
}

int eddy_bus_stop(eddy_bus *bus)
{
    if (!bus)
        return EDDY_EINVAL;
    atomic_store(&bus->state, BUS_STOPPING);
    bus_kick_all(bus);
    /* A handler cannot wait for its own worker: the drain finishes in the
     * background and eddy_bus_free joins. */
    if (tls_worker && tls_worker->bus == bus)
        return EDDY_OK;
    bus_join(bus);
    return EDDY_OK;
}

void eddy_bus_free(eddy_bus *bus)
{
    if (!bus)
        return;
    eddy_bus_stop(bus);
    for (unsigned i = 0; i < bus->nworkers; i++)
        worker_destroy(&bus->workers[i]);
    pthread_mutex_destroy(&bus->life_lock);
    pthread_rwlock_destroy(&bus->subs_lock);
    free(bus->workers);
    subtab_unref(bus->subs);
    free(bus->source);
    free(bus);
}

/* ---- subscribe ----------------------------------------------------------- */

int eddy_bus_subscribe(eddy_bus *bus, const char *pattern, const char *name,
                       eddy_handler_fn fn, void *user,
                       const eddy_subscribe_options *opts, eddy_error *err)
{
    if (!bus || !pattern || !name || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "subscribe: bus, pattern, name and handler are "
                           "required");
    eddyi_pattern match;
    int rc = eddyi_pattern_parse(pattern, &match, err);
    if (rc != EDDY_OK)
        return rc;
    if ((rc = name_check(name, err)) != EDDY_OK)
        return rc;

    struct subtab *next = NULL, *old = NULL;
    struct sub *s = calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    atomic_init(&s->refs, 1);
    atomic_init(&s->removed, false);
    atomic_init(&s->inflight, 0);
    s->match = match;
    s->pattern = eddyi_strdup(pattern);
    s->name = eddyi_strdup(name);
    s->fn = fn;
    s->user = user;
    if (opts) {
        s->filter = opts->can_handle;
        s->filter_user = opts->filter_user;
    }
    if (!s->pattern || !s->name)
        goto nomem;

    pthread_rwlock_wrlock(&bus->subs_lock);
    old = bus->subs;
    for (size_t i = 0; i < old->count; i++) {
        if (strcmp(old->subs[i]->name, name) == 0) {
            pthread_rwlock_unlock(&bus->subs_lock);
            sub_unref(s);
            return eddyi_error(err, EDDY_EEXIST,
                               "handler \"%s\" is already subscribed", name);
        }
    }
    next = subtab_new(old->count + 1);
    if (!next) {
        pthread_rwlock_unlock(&bus->subs_lock);
        goto nomem;
    }
    for (size_t i = 0; i < old->count; i++) {
        next->subs[i] = old->subs[i];
        atomic_fetch_add_explicit(&next->subs[i]->refs, 1,
                                  memory_order_relaxed);
    }
    next->subs[old->count] = s; /* the table takes our reference */
    bus->subs = next;
    atomic_fetch_add_explicit(&bus->subs_gen, 1, memory_order_release);
    pthread_rwlock_unlock(&bus->subs_lock);
    subtab_unref(old);
    return EDDY_OK;
nomem:
    sub_unref(s);
    return eddyi_error(err, EDDY_ENOMEM, "subscribe \"%s\": out of memory",
                       name);
}

/* Sleeps a little while waiting for another thread's handler to return. */
static void wait_a_little(unsigned *round)
{
    if (++*round < 64) {
        sched_yield();
    } else {
        struct timespec ts = {0, 100000}; /* 100 µs */
        nanosleep(&ts, NULL);
    }
}

int eddy_bus_unsubscribe(eddy_bus *bus, const char *name)
{
    if (!bus || !name)
        return EDDY_EINVAL;
    pthread_rwlock_wrlock(&bus->subs_lock);
    struct subtab *old = bus->subs;
    struct sub *s = NULL;
    size_t at = 0;
    for (; at < old->count; at++)
        if (strcmp(old->subs[at]->name, name) == 0) {
            s = old->subs[at];
            break;
        }
    if (!s) {
        pthread_rwlock_unlock(&bus->subs_lock);
        return EDDY_ENOTFOUND;
    }
    struct subtab *next = subtab_new(old->count - 1);
    if (!next) {
        pthread_rwlock_unlock(&bus->subs_lock);
        return EDDY_ENOMEM;
    }
    for (size_t i = 0, j = 0; i < old->count; i++) {
        if (i == at)
            continue;
        next->subs[j++] = old->subs[i];
        atomic_fetch_add_explicit(&old->subs[i]->refs, 1, memory_order_relaxed);
    }
    /* Keep `s` alive while we wait below, whatever the workers' tables do. */
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    bus->subs = next;
    atomic_fetch_add_explicit(&bus->subs_gen, 1, memory_order_release);
    atomic_store_explicit(&s->removed, true, memory_order_seq_cst);
    pthread_rwlock_unlock(&bus->subs_lock);
    subtab_unref(old);

    /* Wait until no other thread runs the handler. The caller's own
     * invocation (unsubscribe from within the handler) finishes later. */
    unsigned round = 0;
    for (unsigned i = 0; i < bus->nworkers; i++) {
        struct worker *w = &bus->workers[i];
        if (w == tls_worker)
            continue;
        while (atomic_load_explicit(&w->hazard, memory_order_seq_cst) == s)
            wait_a_little(&round);
    }
    /* A handler run by eddy_bus_dispatch unsubscribing itself counts once. */
    unsigned mine = tls_ctx && tls_ctx->sub == s && tls_ctx->dispatch;
    while (atomic_load_explicit(&s->inflight, memory_order_seq_cst) > mine)
        wait_a_little(&round);
    sub_unref(s);
    return EDDY_OK;
}

/* ---- publish ------------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static struct worker *bus_pick(eddy_bus *bus, const eddy_event *ev)
{
    if (bus->nworkers == 1)
        return &bus->workers[0];
    const char *key = NULL;
    if (bus->key_fn)
        key = bus->key_fn(ev, bus->key_user);
    else
        key = eddy_event_subject(ev);
    if (!key)
        key = eddy_event_id(ev);
    return &bus->workers[fnv1a(key) % bus->nworkers];
}

/*
 * Pushes one reference to `ev` into `w`'s ring, waiting for room under the
 * block policy unless `nonblock`. Does not wake the worker on success (the
 * caller does, once). Returns EDDY_OK, EDDY_EFULL or EDDY_ESTOPPED; on
 * failure nothing is queued and the reference is not taken.
 */
static int bus_push(eddy_bus *bus, struct worker *w, eddy_event *ev,
                    bool nonblock)
{
    eddy_event_ref(ev);
    if (EDDYI_LIKELY(ring_push(w, ev)))
        return EDDY_OK;
    int rc = EDDY_EFULL;
    if (nonblock || bus->policy == EDDY_FULL_FAIL)
        goto fail;
    /* The worker must be running to make room (a batch defers its wake). */
    worker_wake(w);
    for (int i = 0; i < BUS_SPIN_PAUSES + BUS_SPIN_YIELDS; i++) {
        if (i < BUS_SPIN_PAUSES)
            cpu_pause();
        else
            sched_yield();
        /* Retry now and then only: each try reads the cell the worker is
         * writing, and hammering it slows the worker down. */
        if (i < BUS_SPIN_PAUSES && i % 32 != 31)
            continue;
        if (ring_push(w, ev))
            return EDDY_OK;
        if (atomic_load_explicit(&bus->state, memory_order_relaxed) !=
            BUS_RUNNING) {
            rc = EDDY_ESTOPPED;
            goto fail;
        }
    }
    pthread_mutex_lock(&w->lock);
    /* A seq_cst read-modify-write: ordered before the ring_push below. */
    atomic_fetch_add(&w->full_waiters, 1);
#ifndef BUS_TSAN
    atomic_thread_fence(memory_order_seq_cst);
#endif
    for (;;) {
        if (atomic_load(&bus->state) != BUS_RUNNING) {
            rc = EDDY_ESTOPPED;
            break;
        }
        if (ring_push(w, ev)) {
            rc = EDDY_OK;
            break;
        }
        if (atomic_load(&w->sleeping))
            pthread_cond_signal(&w->wake);
        pthread_cond_wait(&w->not_full, &w->lock);
    }
    atomic_fetch_sub(&w->full_waiters, 1);
    pthread_mutex_unlock(&w->lock);
    if (rc == EDDY_OK)
        return EDDY_OK;
fail:
    eddy_event_unref(ev);
    return rc;
}

/* Leaves publish; if the bus stopped meanwhile, a worker may be waiting for
 * the last publisher before it exits. */
static void bus_leave(eddy_bus *bus)
{
    atomic_fetch_sub(&bus->publishers, 1);
    /* A handler of this bus need not: its own event is still unhandled, and
     * its worker checks for the end of the drain when it next goes idle. */
    if (EDDYI_UNLIKELY(atomic_load(&bus->state) != BUS_RUNNING) &&
        !(tls_ctx && tls_worker && tls_worker->bus == bus))
        bus_kick_all(bus);
}

/* Whether the bus takes events from this thread now: while it runs, and
 * while it drains from its own handlers (follow-ups of accepted events). */
static bool bus_accepting(const eddy_bus *bus)
{
    int state = atomic_load(&bus->state);
    return EDDYI_LIKELY(state == BUS_RUNNING) ||
           (state == BUS_STOPPING && tls_ctx && tls_worker &&
            tls_worker->bus == bus);
}

static int bus_publish(eddy_bus *bus, eddy_event *ev, bool nonblock)
{
    int rc;
    atomic_fetch_add(&bus->publishers, 1);
    if (EDDYI_UNLIKELY(!bus_accepting(bus))) {
        rc = EDDY_ESTOPPED;
        goto out;
    }
    struct worker *w = bus_pick(bus, ev);
    rc = bus_push(bus, w, ev, nonblock);
    if (rc == EDDY_OK)
        worker_wake(w);
out:
    bus_leave(bus);
    return rc;
}

int eddy_bus_publish(eddy_bus *bus, eddy_event *ev)
{
    if (!bus || !ev)
        return EDDY_EINVAL;
    return bus_publish(bus, ev, tls_ctx != NULL);
}

int eddy_bus_publish_batch(eddy_bus *bus, eddy_event *const *events,
                           size_t count, size_t *accepted)
{
    size_t done = 0;
    int rc = EDDY_OK;
    /* Which workers got events, to wake each once at the end. */
    uint64_t touched[BUS_MAX_WORKERS / 64] = {0};
    if (!bus || (!events && count > 0)) {
        rc = EDDY_EINVAL;
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        if (!events[i]) {
            rc = EDDY_EINVAL;
            goto out;
        }
    bool nonblock = tls_ctx != NULL;
    atomic_fetch_add(&bus->publishers, 1);
    if (!bus_accepting(bus)) {
        rc = EDDY_ESTOPPED;
        goto leave;
    }
    for (; done < count; done++) {
        eddy_event *ev = events[done];
        struct worker *w = bus_pick(bus, ev);
        unsigned wi = (unsigned)(w - bus->workers);
        rc = bus_push(bus, w, ev, nonblock);
        if (rc != EDDY_OK)
            break;
        touched[wi / 64] |= (uint64_t)1 << (wi % 64);
    }
    for (unsigned i = 0; i < bus->nworkers; i++)
        if (touched[i / 64] & ((uint64_t)1 << (i % 64)))
            worker_wake(&bus->workers[i]);
leave:
    bus_leave(bus);
out:
    if (accepted)
        *accepted = done;
    return rc;
}

int eddy_bus_dispatch(eddy_bus *bus, eddy_event *ev)
{
    if (!bus || !ev)
        return EDDY_EINVAL;
    struct subtab *t = bus_subs_get(bus, NULL);
    const char *type = eddy_event_type(ev);
    int first = EDDY_OK;
    bool any = false;
    for (size_t i = 0; i < t->count; i++) {
        struct sub *s = t->subs[i];
        if (!sub_matches(s, type))
            continue;
        any = true;
        atomic_fetch_add_explicit(&s->inflight, 1, memory_order_seq_cst);
        if (!atomic_load_explicit(&s->removed, memory_order_seq_cst) &&
            (!s->filter || s->filter(ev, s->filter_user))) {
            int rc = sub_run(bus, s, ev, true);
            if (rc != EDDY_OK && first == EDDY_OK)
                first = rc;
        }
        atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_release);
    }
    subtab_unref(t);
    if (!any)
        EDDYI_LOG(EDDY_LOG_WARN, "bus", "no subscriber for %s (event %s)",
                  type, eddy_event_id(ev));
    return first;
}

size_t eddy_bus_pending(const eddy_bus *bus)
{
    if (!bus)
        return 0;
    size_t n = 0;
    for (unsigned i = 0; i < bus->nworkers; i++) {
        const struct worker *w = &bus->workers[i];
        size_t done = atomic_load_explicit(&w->handled, memory_order_acquire);
        size_t in = atomic_load_explicit(&w->enqueue_pos, memory_order_acquire);
        /* Read apart, the two counters may cross under concurrency. */
        if (in > done)
            n += in - done;
    }
    return n;
}

/* ---- inside a handler ---------------------------------------------------- */

int eddy_ctx_publish_init(eddy_ctx *ctx, const eddy_event_init *init)
{
    if (!ctx || !init)
        return EDDY_EINVAL;
    const eddy_event *parent = ctx->ev;
    eddy_event_init in = *init;
    if (!in.source)
        in.source = ctx->host ? ctx->host->source : ctx->bus->source;
    if (!in.subject)
        in.subject = eddy_event_subject(parent);
    if (!in.correlation_id) {
        in.correlation_id = eddy_event_correlation_id(parent);
        if (!in.correlation_id)
            in.correlation_id = eddy_event_id(parent);
    }
    if (!in.causation_id)
        in.causation_id = eddy_event_id(parent);
    /* A durable handler may run again for the same event (at-least-once):
     * its n-th follow-up gets an id derived from the handled event, the
     * handler and n, so the re-run's follow-ups are the same events and the
     * store's idempotent append keeps one copy of each. */
    char derived[EDDY_UUID_STRLEN];
    unsigned nth = ctx->followups++;
    if (!in.id && ctx->host) {
        char salt[320];
        snprintf(salt, sizeof salt, "%.300s#%u", ctx->host->name ? ctx->host->name : "", nth);
        eddy_id_derive(eddy_event_id(parent), salt, derived);
        in.id = derived;
    }
    eddy_error err = {0};
    eddy_event *ev = eddy_event_new(&in, &err);
    if (!ev) {
        snprintf(ctx->message, sizeof ctx->message, "follow-up %s: %.300s",
                 in.type ? in.type : "(no type)", err.message);
        return err.code != EDDY_OK ? err.code : EDDY_EINVAL;
    }
    int rc = ctx->host ? ctx->host->publish(ctx->host->host_user, ev)
                       : bus_publish(ctx->bus, ev, true);
    if (rc != EDDY_OK)
        snprintf(ctx->message, sizeof ctx->message,
                 "follow-up %s (event %s) not published: %s", in.type,
                 eddy_event_id(ev), eddy_strerror(rc));
    eddy_event_unref(ev);
    return rc;
}

int eddy_ctx_publish(eddy_ctx *ctx, const char *type, const char *fmt, ...)
{
    if (!ctx || !type)
        return EDDY_EINVAL;
    json_t *data = NULL;
    if (fmt) {
        json_error_t jerr;
        va_list ap;
        va_start(ap, fmt);
        data = json_vpack_ex(&jerr, 0, fmt, ap);
        va_end(ap);
        if (!data) {
            snprintf(ctx->message, sizeof ctx->message,
                     "follow-up %s: bad data: %s", type, jerr.text);
            return EDDY_EINVAL;
        }
    }
    eddy_event_init init = {.type = type, .data = data};
    int rc = eddy_ctx_publish_init(ctx, &init);
    json_decref(data);
    return rc;
}

int eddy_ctx_fail(eddy_ctx *ctx, int code, const char *fmt, ...)
{
    if (!ctx)
        return code;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
        va_end(ap);
    } else {
        ctx->message[0] = '\0';
    }
    return code;
}

const char *eddy_ctx_handler(const eddy_ctx *ctx)
{
    if (!ctx)
        return NULL;
    return ctx->host ? ctx->host->name : ctx->sub->name;
}

eddy_bus *eddy_ctx_bus(const eddy_ctx *ctx)
{
    return ctx ? ctx->bus : NULL;
}

int eddyi_ctx_run(const eddyi_ctx_host *host, const eddy_event *ev,
                  int (*call)(eddy_ctx *ctx, void *arg), void *arg,
                  char *message, size_t message_size)
{
    /* tls_ctx is left alone: this handler is not on a bus worker, so bus
     * publishes from it may block like any other thread's. */
    eddy_ctx ctx = {.host = host, .ev = ev};
    int rc = call(&ctx, arg);
    if (message && message_size)
        snprintf(message, message_size, "%s", ctx.message);
    return rc;
}
