/*
 * bench/bus.c - throughput and publish-to-handle latency of the in-process
 * bus, measured in the same run as two baselines that move the same event
 * pointers: a minimal single-producer single-consumer lock-free ring (the
 * consumer spins) and a mutex + condition-variable queue.
 *
 * Every case publishes the same pre-built events (construction is not
 * measured). The subject of event i is the decimal string "i"; the producer
 * writes the publish time into slot i just before publishing, and the
 * handler (or baseline consumer) parses the subject, reads the slot and
 * records now - slot. Throughput is events handled per second (handler
 * invocations, so 1 -> 4 handlers counts four per event), the median of
 * RUNS runs; the latency figures come from the median run.
 *
 * Usage: bus [events-per-run]   (default 200000). Last line:
 * "bus/ring throughput ratio: R" (1 producer -> 1 handler, batch 1).
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
#include <sys/prctl.h>
#include <unistd.h>

#include "eddy/eddy.h"

#define RUNS 5
#define CASES 5 /* three bus cases, two baselines */
#define RING_CAPACITY 8192 /* the bus's default queue */
#define MAX_HANDLERS 4
#define PACED_RATE 100000   /* events per second */
#define PACED_EVENTS 100000 /* one second */
#define PACED_RUNS 3

static size_t nevents = 200000;
static eddy_event **events;   /* pre-built, subject = index */
static int64_t *published_ns; /* slot i: when event i was published */
static int64_t *latency_ns[MAX_HANDLERS]; /* per handler: per event */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* What every consumer does with an event: find its slot, record latency. */
static inline void consume(const eddy_event *ev, int handler)
{
    size_t i = strtoul(eddy_event_subject(ev), NULL, 10);
    latency_ns[handler][i] = now_ns() - published_ns[i];
}

/* ---- figures -------------------------------------------------------------- */

struct result {
    double rate;          /* handled per second */
    int64_t p50, p99, max; /* ns */
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_result(const void *a, const void *b)
{
    double x = ((const struct result *)a)->rate;
    double y = ((const struct result *)b)->rate;
    return (x > y) - (x < y);
}

/* Percentiles over the latencies of `handlers` handlers for `n` events. */
static void latencies(struct result *r, int handlers, size_t n)
{
    size_t total = (size_t)handlers * n;
    int64_t *all = malloc(total * sizeof *all);
    if (!all) {
        perror("malloc");
        exit(1);
    }
    for (int h = 0; h < handlers; h++)
        memcpy(all + (size_t)h * n, latency_ns[h], n * sizeof *all);
    qsort(all, total, sizeof *all, cmp_i64);
    r->p50 = all[total / 2];
    r->p99 = all[total * 99 / 100];
    r->max = all[total - 1];
    free(all);
}

/* The run with the median throughput (sorts `runs`). */
static struct result median(struct result *runs)
{
    qsort(runs, RUNS, sizeof *runs, cmp_result);
    return runs[RUNS / 2];
}

static void print_result(const char *name, int batch, struct result r)
{
    printf("%-28s batch %2d  %10.0f ev/s   latency p50 %7.1f us  p99 %8.1f us"
           "  max %9.1f us\n",
           name, batch, r.rate, r.p50 / 1e3, r.p99 / 1e3, r.max / 1e3);
    fflush(stdout);
}

/* ---- the bus -------------------------------------------------------------- */

static atomic_size_t handled;

static int on_event(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    consume(ev, (int)(intptr_t)user);
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return EDDY_OK;
}

static const char *one_key(const eddy_event *ev, void *user)
{
    return "k";
}

struct producer {
    eddy_bus *bus;
    size_t from, to; /* events [from, to) */
    int batch;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (size_t i = p->from; i < p->to;) {
        size_t n = p->to - i < (size_t)p->batch ? p->to - i : (size_t)p->batch;
        int64_t t = now_ns();
        for (size_t j = 0; j < n; j++)
            published_ns[i + j] = t;
        int rc = n == 1 ? eddy_bus_publish(p->bus, events[i])
                        : eddy_bus_publish_batch(p->bus, events + i, n, NULL);
        if (rc != EDDY_OK) {
            fprintf(stderr, "publish: %s\n", eddy_strerror(rc));
            exit(1);
        }
        i += n;
    }
    return NULL;
}

/* One run: `producers` threads over all events, `handlers` subscriptions.
 * `single_key`: every event on one worker (1 -> 1); else keyed by subject. */
static struct result bus_run(int producers, int handlers, int batch,
                             bool single_key)
{
    eddy_bus_options o = {.workers = 4};
    if (single_key)
        o.partition_key = one_key;
    eddy_error err = {0};
    eddy_bus *bus = eddy_bus_new(&o, &err);
    if (!bus) {
        fprintf(stderr, "eddy_bus_new: %s\n", err.message);
        exit(1);
    }
    for (int h = 0; h < handlers; h++) {
        char name[16];
        snprintf(name, sizeof name, "h%d", h);
        eddy_bus_subscribe(bus, "bench.event", name, on_event,
                           (void *)(intptr_t)h, NULL, NULL);
    }
    eddy_bus_start(bus);
    atomic_store(&handled, 0);
    struct producer p[2];
    pthread_t t[2];
    int64_t start = now_ns();
    for (int i = 0; i < producers; i++) {
        p[i] = (struct producer){bus, nevents * i / producers,
                                 nevents * (i + 1) / producers, batch};
        pthread_create(&t[i], NULL, produce, &p[i]);
    }
    for (int i = 0; i < producers; i++)
        pthread_join(t[i], NULL);
    eddy_bus_stop(bus); /* drains */
    int64_t elapsed = now_ns() - start;
    size_t n = atomic_load(&handled);
    if (n != nevents * (size_t)handlers) {
        fprintf(stderr, "bus: handled %zu of %zu\n", n,
                nevents * (size_t)handlers);
        exit(1);
    }
    eddy_bus_free(bus);
    struct result r = {.rate = (double)n * 1e9 / (double)elapsed};
    latencies(&r, handlers, nevents);
    return r;
}

/* ---- baseline 1: SPSC lock-free ring, spinning consumer ------------------- */

static struct {
    _Alignas(64) atomic_size_t head; /* written by the producer */
    _Alignas(64) atomic_size_t tail; /* written by the consumer */
    _Alignas(64) eddy_event *slots[RING_CAPACITY];
} ring;

static void *ring_consume(void *arg)
{
    size_t tail = 0;
    while (tail < nevents) {
        size_t head = atomic_load_explicit(&ring.head, memory_order_acquire);
        if (head == tail) {
            cpu_relax();
            continue;
        }
        /* Frees each slot as soon as it is read, so the producer refills
         * while we work (freeing a whole run at once would serialise them). */
        for (; tail < head; tail++) {
            eddy_event *ev = ring.slots[tail % RING_CAPACITY];
            atomic_store_explicit(&ring.tail, tail + 1, memory_order_release);
            consume(ev, 0);
            eddy_event_unref(ev);
        }
    }
    return NULL;
}

static struct result ring_run(int batch)
{
    atomic_store(&ring.head, 0);
    atomic_store(&ring.tail, 0);
    pthread_t c;
    int64_t start = now_ns();
    pthread_create(&c, NULL, ring_consume, NULL);
    size_t head = 0, tail = 0; /* tail: the consumer's, as last seen */
    for (size_t i = 0; i < nevents;) {
        size_t n = nevents - i < (size_t)batch ? nevents - i : (size_t)batch;
        while (head + n - tail > RING_CAPACITY) {
            tail = atomic_load_explicit(&ring.tail, memory_order_acquire);
            /* Full: back off, or re-reading `tail` slows its writer. */
            for (int k = 0; k < 64 && head + n - tail > RING_CAPACITY; k++)
                cpu_relax();
        }
        int64_t t = now_ns();
        for (size_t j = 0; j < n; j++) {
            published_ns[i + j] = t;
            ring.slots[(head + j) % RING_CAPACITY] = eddy_event_ref(events[i + j]);
        }
        head += n;
        atomic_store_explicit(&ring.head, head, memory_order_release);
        i += n;
    }
    pthread_join(c, NULL);
    int64_t elapsed = now_ns() - start;
    struct result r = {.rate = (double)nevents * 1e9 / (double)elapsed};
    latencies(&r, 1, nevents);
    return r;
}

/* ---- baseline 2: mutex + condition variable queue ------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    size_t head, tail;
    eddy_event *slots[RING_CAPACITY];
} mq = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
        PTHREAD_COND_INITIALIZER, 0, 0, {0}};

static void *mq_consume(void *arg)
{
    eddy_event *local[RING_CAPACITY];
    size_t done = 0;
    while (done < nevents) {
        pthread_mutex_lock(&mq.lock);
        while (mq.head == mq.tail)
            pthread_cond_wait(&mq.not_empty, &mq.lock);
        size_t n = 0;
        for (; mq.tail < mq.head; mq.tail++)
            local[n++] = mq.slots[mq.tail % RING_CAPACITY];
        pthread_cond_signal(&mq.not_full);
        pthread_mutex_unlock(&mq.lock);
        for (size_t i = 0; i < n; i++) {
            consume(local[i], 0);
            eddy_event_unref(local[i]);
        }
        done += n;
    }
    return NULL;
}

static struct result mq_run(int batch)
{
    mq.head = mq.tail = 0;
    pthread_t c;
    int64_t start = now_ns();
    pthread_create(&c, NULL, mq_consume, NULL);
    for (size_t i = 0; i < nevents;) {
        size_t n = nevents - i < (size_t)batch ? nevents - i : (size_t)batch;
        pthread_mutex_lock(&mq.lock);
        while (mq.head + n - mq.tail > RING_CAPACITY)
            pthread_cond_wait(&mq.not_full, &mq.lock);
        int64_t t = now_ns();
        for (size_t j = 0; j < n; j++) {
            published_ns[i + j] = t;
            mq.slots[(mq.head + j) % RING_CAPACITY] = eddy_event_ref(events[i + j]);
        }
        mq.head += n;
        pthread_cond_signal(&mq.not_empty);
        pthread_mutex_unlock(&mq.lock);
        i += n;
    }
    pthread_join(c, NULL);
    int64_t elapsed = now_ns() - start;
    struct result r = {.rate = (double)nevents * 1e9 / (double)elapsed};
    latencies(&r, 1, nevents);
    return r;
}

/* ---- paced latency -------------------------------------------------------- */

/* Publishes at PACED_RATE, the producer either spinning until each event is
 * due (it holds a CPU, as a busy producer would) or sleeping until then
 * (events then leave in small bursts, and the worker may park between). */
static struct result paced_run(bool sleeping)
{
    eddy_bus_options o = {.workers = 4, .partition_key = one_key};
    eddy_bus *bus = eddy_bus_new(&o, NULL);
    eddy_bus_subscribe(bus, "bench.event", "h0", on_event, (void *)0, NULL,
                       NULL);
    eddy_bus_start(bus);
    atomic_store(&handled, 0);
    size_t n = PACED_EVENTS < nevents ? PACED_EVENTS : nevents;
    int64_t gap = 1000000000 / PACED_RATE;
    int64_t start = now_ns();
    for (size_t i = 0; i < n; i++) {
        int64_t due = start + (int64_t)i * gap, t;
        if (sleeping && due - now_ns() > 2000) {
            struct timespec ts = {(time_t)(due / 1000000000),
                                  (long)(due % 1000000000)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        while ((t = now_ns()) < due)
            cpu_relax();
        published_ns[i] = t;
        if (eddy_bus_publish(bus, events[i]) != EDDY_OK) {
            fprintf(stderr, "paced publish failed\n");
            exit(1);
        }
    }
    eddy_bus_stop(bus);
    eddy_bus_free(bus);
    struct result r = {.rate = (double)PACED_RATE};
    latencies(&r, 1, n);
    return r;
}

/* ---- main ----------------------------------------------------------------- */

/* The 1-minute load average: figures taken while other programs run are
 * not comparable with those of an idle machine, so it is printed. */
static void print_load(const char *when)
{
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            snprintf(buf, sizeof buf, "?");
        fclose(f);
    }
    buf[strcspn(buf, " ")] = '\0';
    printf("load average (1 min) %s: %s\n", when, buf);
}

static void machine_info(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(model, sizeof model, "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    printf("machine: %ld cpus online, %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           model);
    print_load("at start");
    printf("eddy %s; %zu events per run, median of %d runs; bus: 4 workers, "
           "queue %d\n\n", eddy_version(), nevents, RUNS, RING_CAPACITY);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nevents = strtoul(argv[1], NULL, 10);
    if (nevents < PACED_EVENTS)
        nevents = PACED_EVENTS;
    events = malloc(nevents * sizeof *events);
    published_ns = calloc(nevents, sizeof *published_ns);
    for (int h = 0; h < MAX_HANDLERS; h++)
        latency_ns[h] = calloc(nevents, sizeof *latency_ns[h]);
    if (!events || !published_ns) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < nevents; i++) {
        char subject[24];
        snprintf(subject, sizeof subject, "%zu", i);
        eddy_error err = {0};
        events[i] = eddy_event_newf("bench.event", "bench", subject, &err, NULL);
        if (!events[i] || !latency_ns[MAX_HANDLERS - 1]) {
            fprintf(stderr, "event: %s\n", err.message);
            return 1;
        }
    }
    machine_info();

    /* The runs of all cases are interleaved (case 1, 2, ..., 5, then
     * again), so a slow spell of a noisy machine hits every case alike. */
    static const int batches[2] = {1, 64};
    static const char *const names[CASES] = {
        "bus 1 producer -> 1 handler", "bus 1 producer -> 4 handlers",
        "bus 2 producers -> 1 handler", "spsc ring 1 -> 1",
        "mutex+cond queue 1 -> 1"};
    double ring_ratio_b1 = 0;
    for (int b = 0; b < 2; b++) {
        int batch = batches[b];
        struct result runs[CASES][RUNS], med[CASES];
        for (int r = 0; r < RUNS; r++) {
            runs[0][r] = bus_run(1, 1, batch, true);
            runs[1][r] = bus_run(1, 4, batch, false);
            runs[2][r] = bus_run(2, 1, batch, false);
            runs[3][r] = ring_run(batch);
            runs[4][r] = mq_run(batch);
        }
        for (int c = 0; c < CASES; c++) {
            med[c] = median(runs[c]);
            print_result(names[c], batch, med[c]);
        }
        printf("batch %2d, 1 -> 1: bus/ring %.2f, bus/mutex %.2f\n\n", batch,
               med[0].rate / med[3].rate, med[0].rate / med[4].rate);
        if (batch == 1)
            ring_ratio_b1 = med[0].rate / med[3].rate;
    }

    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* precise sleeps */
    for (int i = 0; i < 2 * PACED_RUNS; i++) {
        bool sleeping = i % 2;
        struct result r = paced_run(sleeping);
        printf("paced %d ev/s, 1 -> 1, %s producer, run %d: latency p50 %.1f us"
               "  p99 %.1f us  max %.1f us\n", PACED_RATE,
               sleeping ? "sleeping" : "spinning", i / 2 + 1, r.p50 / 1e3,
               r.p99 / 1e3, r.max / 1e3);
    }
    print_load("at end");
    printf("\n");

    for (size_t i = 0; i < nevents; i++)
        eddy_event_unref(events[i]);
    free(events);
    free(published_ns);
    for (int h = 0; h < MAX_HANDLERS; h++)
        free(latency_ns[h]);
    printf("bus/ring throughput ratio: %.2f\n", ring_ratio_b1);
    return 0;
}
