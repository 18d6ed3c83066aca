/*
 * src/observe/metrics.c - the metrics registry: series lookup, lock-free
 * recording, gauges and snapshots.
 *
 * Series live in an open-addressing hash table of atomic pointers. Readers
 * never lock: they load the current table (acquire) and probe it. Writers
 * insert under `series_lock`; when the table is half full they build a
 * larger copy and publish it, keeping the old one until eddy_metrics_free
 * (a reader may still be probing it; the tables' total size is less than
 * twice the last one). A reader that probes an old table and misses falls
 * back to the locked path, which sees the current table.
 *
 * A series is published fully built (release store of its pointer); after
 * that only its atomic counters change.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy/metrics.h"
#include "../core/internal.h"
#include "metrics_internal.h"

#define NAME_MAX_LEN 1024
#define TABLE_MIN 64

const uint64_t eddyi_prom_bounds_ns[EDDYI_PROM_BOUNDS] = {
    1000ull,       2500ull,       5000ull,       10000ull,      25000ull,
    50000ull,      100000ull,     250000ull,     500000ull,     1000000ull,
    2500000ull,    5000000ull,    10000000ull,   25000000ull,   50000000ull,
    100000000ull,  250000000ull,  500000000ull,  1000000000ull, 2500000000ull,
    5000000000ull, 10000000000ull};

struct eddy_metrics_series {
    /* Set before publication, read-only afterwards. */
    uint64_t hash;
    char *handler;
    char *event_type;
    struct eddy_metrics_series *next; /* creation order; under series_lock */

    /* Written by recording threads; on their own cache lines, away from
     * the read-only fields that lookups read. To keep the hot path to few
     * atomic read-modify-writes, some numbers are derived at snapshot time:
     * handled = the histogram's count, succeeded = handled - failed,
     * in flight = begun - handled. */
    _Alignas(64) atomic_uint_least64_t begun;
    atomic_uint_least64_t failed;
    atomic_uint_least64_t retried;
    atomic_uint_least64_t dead_lettered;
    atomic_uint_least64_t sum_ns;
    atomic_uint_least64_t max_ns;
    /* hist[b] counts bucket b's durations, except that a bucket holding a
     * Prometheus bound inside it counts the durations above the bound in
     * hist[EDDYI_HIST_BUCKETS + index of that bound] instead: so the
     * Prometheus buckets are exact sums of these slots. */
    atomic_uint_least64_t hist[EDDYI_HIST_SLOTS];
};

struct table {
    size_t mask;           /* capacity - 1; capacity is a power of two */
    struct table *retired; /* the table this one replaced */
    _Atomic(struct eddy_metrics_series *) slots[];
};

struct gauge {
    char *name;
    char *help;
    char *label_name;  /* NULL: no label */
    char *label_value;
    double value;
    eddy_metrics_gauge_fn fn; /* NULL: a set gauge */
    void *user;
};

struct eddy_metrics {
    _Atomic(struct table *) table;
    pthread_mutex_t series_lock; /* inserts, `all`, `nseries`, `table` swaps */
    struct eddy_metrics_series *all;
    size_t nseries;
    atomic_bool full_warned;

    pthread_mutex_t gauge_lock; /* gauges[], and held while gauge fns run */
    struct gauge *gauges;
    size_t ngauges, gauges_cap;
};

/* For each histogram bucket, the first Prometheus bound that is >= the
 * bucket's lowest value, and that bound when it lies inside the bucket
 * (below its highest value; else UINT64_MAX). Every bucket is narrower
 * than 1/16 of its lowest value and consecutive bounds are at least 2x
 * apart, so a bucket holds at most one bound. */
static uint8_t prom_of_bucket[EDDYI_HIST_BUCKETS];
static uint64_t split_at[EDDYI_HIST_BUCKETS];
static pthread_once_t prom_once = PTHREAD_ONCE_INIT;

/* ---- buckets ---------------------------------------------------------- */

static inline unsigned bucket_of(uint64_t v)
{
    if (v < 2 * EDDYI_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS + 1 */
    if (e >= EDDYI_HIST_MAX_EXP)
        return EDDYI_HIST_OVERFLOW;
    unsigned sub = (unsigned)(v >> (e - EDDYI_HIST_SUB_BITS)) & (EDDYI_HIST_SUB - 1);
    return (e - EDDYI_HIST_SUB_BITS + 1) * EDDYI_HIST_SUB + sub;
}

/* The lowest value of bucket `i` and its width (i < EDDYI_HIST_OVERFLOW). */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
    if (i < 2 * EDDYI_HIST_SUB) {
        *lo = i;
        *width = 1;
        return;
    }
    unsigned e = i / EDDYI_HIST_SUB + EDDYI_HIST_SUB_BITS - 1;
    uint64_t sub = i % EDDYI_HIST_SUB;
    *width = 1ull << (e - EDDYI_HIST_SUB_BITS);
    *lo = (EDDYI_HIST_SUB + sub) << (e - EDDYI_HIST_SUB_BITS);
}

static void prom_table_init(void)
{
    for (unsigned i = 0; i < EDDYI_HIST_BUCKETS; i++) {
        uint64_t lo, width = UINT64_MAX;
        if (i == EDDYI_HIST_OVERFLOW)
            lo = 1ull << EDDYI_HIST_MAX_EXP;
        else
            bucket_range(i, &lo, &width);
        unsigned j = 0;
        while (j < EDDYI_PROM_BOUNDS && eddyi_prom_bounds_ns[j] < lo)
            j++;
        prom_of_bucket[i] = (uint8_t)j;
        split_at[i] = UINT64_MAX;
        if (j < EDDYI_PROM_BOUNDS && i != EDDYI_HIST_OVERFLOW &&
            eddyi_prom_bounds_ns[j] < lo + width - 1)
            split_at[i] = eddyi_prom_bounds_ns[j];
    }
}

/* ---- registry --------------------------------------------------------- */

static struct table *table_new(size_t capacity)
{
    struct table *t = calloc(1, sizeof *t + capacity * sizeof t->slots[0]);
    if (!t)
        return NULL;
    t->mask = capacity - 1;
    for (size_t i = 0; i < capacity; i++)
        atomic_init(&t->slots[i], NULL);
    return t;
}

eddy_metrics *eddy_metrics_new(void)
{
    pthread_once(&prom_once, prom_table_init);
    eddy_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    struct table *t = table_new(TABLE_MIN);
    if (!t)
        goto fail;
    atomic_init(&m->table, t);
    atomic_init(&m->full_warned, false);
    if (pthread_mutex_init(&m->series_lock, NULL) != 0)
        goto fail_table;
    if (pthread_mutex_init(&m->gauge_lock, NULL) != 0)
        goto fail_lock;
    return m;

fail_lock:
    pthread_mutex_destroy(&m->series_lock);
fail_table:
    free(t);
fail:
    free(m);
    return NULL;
}

static void gauge_clear(struct gauge *g)
{
    free(g->name);
    free(g->help);
    free(g->label_name);
    free(g->label_value);
}

void eddy_metrics_free(eddy_metrics *m)
{
    if (!m)
        return;
    struct eddy_metrics_series *s = m->all;
    while (s) {
        struct eddy_metrics_series *next = s->next;
        free(s->handler);
        free(s->event_type);
        free(s);
        s = next;
    }
    struct table *t = atomic_load(&m->table);
    while (t) {
        struct table *older = t->retired;
        free(t);
        t = older;
    }
    for (size_t i = 0; i < m->ngauges; i++)
        gauge_clear(&m->gauges[i]);
    free(m->gauges);
    pthread_mutex_destroy(&m->gauge_lock);
    pthread_mutex_destroy(&m->series_lock);
    free(m);
}

uint64_t eddy_metrics_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- series ----------------------------------------------------------- */

/* FNV-1a over handler, a 0 byte, then the event type. */
static uint64_t series_hash(const char *handler, const char *type)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)handler; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h = (h ^ 0u) * 1099511628211ull;
    for (const unsigned char *p = (const unsigned char *)type; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static eddy_metrics_series *table_find(struct table *t, uint64_t h,
                                       const char *handler, const char *type)
{
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        eddy_metrics_series *s =
            atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!s)
            return NULL;
        if (s->hash == h && strcmp(s->handler, handler) == 0 &&
            strcmp(s->event_type, type) == 0)
            return s;
    }
}

/* Stores `s` into the first free slot of its probe sequence. */
static void table_put(struct table *t, eddy_metrics_series *s)
{
    size_t i = (size_t)s->hash & t->mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed))
        i = (i + 1) & t->mask;
    atomic_store_explicit(&t->slots[i], s, memory_order_release);
}

static bool name_valid(const char *what, const char *s)
{
    if (!s) {
        EDDYI_LOG(EDDY_LOG_WARN, "metrics", "series %s is NULL", what);
        return false;
    }
    size_t len = strlen(s);
    if (len == 0 || len > NAME_MAX_LEN || !eddyi_utf8_valid(s, len)) {
        EDDYI_LOG(EDDY_LOG_WARN, "metrics",
                  "series %s must be 1..%d bytes of UTF-8 (got %zu bytes%s)",
                  what, NAME_MAX_LEN, len,
                  len && len <= NAME_MAX_LEN ? ", not UTF-8" : "");
        return false;
    }
    return true;
}

static eddy_metrics_series *series_create(uint64_t h, const char *handler,
                                          const char *type)
{
    eddy_metrics_series *s =
        aligned_alloc(_Alignof(eddy_metrics_series), sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    s->hash = h;
    s->handler = eddyi_strdup(handler);
    s->event_type = eddyi_strdup(type);
    if (!s->handler || !s->event_type)
        goto fail;
    return s;

fail:
    free(s->handler);
    free(s->event_type);
    free(s);
    return NULL;
}

eddy_metrics_series *eddy_metrics_series_get(eddy_metrics *m,
                                             const char *handler,
                                             const char *event_type)
{
    if (!m) {
        EDDYI_LOG(EDDY_LOG_WARN, "metrics", "series_get on a NULL registry");
        return NULL;
    }
    if (!name_valid("handler", handler) || !name_valid("event type", event_type))
        return NULL;
    uint64_t h = series_hash(handler, event_type);
    eddy_metrics_series *s = table_find(
        atomic_load_explicit(&m->table, memory_order_acquire), h, handler,
        event_type);
    if (EDDYI_LIKELY(s != NULL))
        return s;

    pthread_mutex_lock(&m->series_lock);
    struct table *t = atomic_load_explicit(&m->table, memory_order_relaxed);
    s = table_find(t, h, handler, event_type);
    if (s)
        goto out;
    if (m->nseries >= EDDY_METRICS_MAX_SERIES) {
        if (!atomic_exchange(&m->full_warned, true))
            EDDYI_LOG(EDDY_LOG_WARN, "metrics",
                      "registry full (%d series): not recording handler "
                      "'%s' type '%s' and any further new pair",
                      EDDY_METRICS_MAX_SERIES, handler, event_type);
        goto out;
    }
    if ((m->nseries + 1) * 2 > t->mask + 1) {
        struct table *bigger = table_new((t->mask + 1) * 2);
        if (!bigger)
            goto out;
        for (size_t i = 0; i <= t->mask; i++) {
            eddy_metrics_series *old =
                atomic_load_explicit(&t->slots[i], memory_order_relaxed);
            if (old)
                table_put(bigger, old);
        }
        bigger->retired = t;
        atomic_store_explicit(&m->table, bigger, memory_order_release);
        t = bigger;
    }
    s = series_create(h, handler, event_type);
    if (!s)
        goto out;
    s->next = m->all;
    m->all = s;
    m->nseries++;
    table_put(t, s);
out:
    pthread_mutex_unlock(&m->series_lock);
    return s;
}

/* ---- recording -------------------------------------------------------- */

void eddy_metrics_begin(eddy_metrics_series *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->begun, 1, memory_order_relaxed);
}

void eddy_metrics_end(eddy_metrics_series *s, int outcome, uint64_t duration_ns)
{
    if (!s)
        return;
    atomic_fetch_add_explicit(&s->sum_ns, duration_ns, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&s->max_ns, memory_order_relaxed);
    while (duration_ns > max &&
           !atomic_compare_exchange_weak_explicit(&s->max_ns, &max, duration_ns,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    unsigned b = bucket_of(duration_ns);
    if (duration_ns > split_at[b])
        b = EDDYI_HIST_BUCKETS + prom_of_bucket[b];
    /* Release: a snapshot that sees this bucket's count (acquire) also sees
     * the maximum raised above (so a percentile capped at the maximum is
     * never capped below a value it counts) and the begin of this
     * invocation (so in flight = begun - handled is never negative). */
    atomic_fetch_add_explicit(&s->hist[b], 1, memory_order_release);
    /* After the bucket, with release: a snapshot that reads `failed` first
     * (acquire) sees the buckets of those failures, so failed <= handled. */
    if (outcome != EDDY_OUTCOME_SUCCESS)
        atomic_fetch_add_explicit(&s->failed, 1, memory_order_release);
}

void eddy_metrics_retried(eddy_metrics_series *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->retried, 1, memory_order_relaxed);
}

void eddy_metrics_dead_lettered(eddy_metrics_series *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->dead_lettered, 1, memory_order_relaxed);
}

/* ---- gauges ----------------------------------------------------------- */

static bool metric_name_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool label_name_ok(const char *s)
{
    if (!s || !*s || strncmp(s, "__", 2) == 0)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static int gauge_check(const char *name, const char *help,
                       const char *label_name, const char *label_value,
                       eddy_error *err)
{
    if (!metric_name_ok(name))
        return eddyi_error(err, EDDY_EINVAL,
                           "gauge name '%s' does not match "
                           "[a-zA-Z_:][a-zA-Z0-9_:]*",
                           name ? name : "(null)");
    if (strncmp(name, "eddy_handler_", 13) == 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "gauge name '%s': the prefix eddy_handler_ is "
                           "reserved for handler series",
                           name);
    if (strlen(name) > NAME_MAX_LEN)
        return eddyi_error(err, EDDY_EINVAL, "gauge name longer than %d bytes",
                           NAME_MAX_LEN);
    if (help && !eddyi_utf8_valid(help, strlen(help)))
        return eddyi_error(err, EDDY_EINVAL, "gauge '%s': help is not UTF-8",
                           name);
    if (!label_name != !label_value)
        return eddyi_error(err, EDDY_EINVAL,
                           "gauge '%s': label name and value must both be "
                           "set or both be NULL",
                           name);
    if (!label_name)
        return EDDY_OK;
    if (!label_name_ok(label_name))
        return eddyi_error(err, EDDY_EINVAL,
                           "gauge '%s': label name '%s' does not match "
                           "[a-zA-Z_][a-zA-Z0-9_]* or starts with __",
                           name, label_name);
    size_t len = strlen(label_value);
    if (len == 0 || len > NAME_MAX_LEN || !eddyi_utf8_valid(label_value, len))
        return eddyi_error(err, EDDY_EINVAL,
                           "gauge '%s': value of label '%s' must be 1..%d "
                           "bytes of UTF-8",
                           name, label_name, NAME_MAX_LEN);
    return EDDY_OK;
}

static bool str_eq_null(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The gauge of that identity, or NULL. Under gauge_lock. */
static struct gauge *gauge_find(eddy_metrics *m, const char *name,
                                const char *label_name, const char *label_value)
{
    for (size_t i = 0; i < m->ngauges; i++) {
        struct gauge *g = &m->gauges[i];
        if (strcmp(g->name, name) == 0 && str_eq_null(g->label_name, label_name) &&
            str_eq_null(g->label_value, label_value))
            return g;
    }
    return NULL;
}

/* The help of the well-known gauges, when the caller gives none. */
static const char *default_help(const char *name)
{
    if (strcmp(name, EDDY_METRIC_QUEUE_DEPTH) == 0)
        return "Events waiting in a queue.";
    if (strcmp(name, EDDY_METRIC_SUBSCRIPTION_LAG) == 0)
        return "Events in the store a subscription has not processed yet "
               "(global head position minus its checkpoint).";
    return "";
}

/* Appends a new gauge (value 0, no fn). The family's help is the first
 * gauge's of that name. Under gauge_lock. NULL when out of memory. */
static struct gauge *gauge_add(eddy_metrics *m, const char *name,
                               const char *help, const char *label_name,
                               const char *label_value)
{
    const char *family_help = help ? help : default_help(name);
    for (size_t i = 0; i < m->ngauges; i++)
        if (strcmp(m->gauges[i].name, name) == 0) {
            family_help = m->gauges[i].help;
            break;
        }
    if (m->ngauges == m->gauges_cap) {
        size_t cap = m->gauges_cap ? m->gauges_cap * 2 : 8;
        struct gauge *grown = realloc(m->gauges, cap * sizeof *grown);
        if (!grown)
            return NULL;
        m->gauges = grown;
        m->gauges_cap = cap;
    }
    struct gauge g = {0};
    g.name = eddyi_strdup(name);
    g.help = eddyi_strdup(family_help);
    g.label_name = eddyi_strdup(label_name);
    g.label_value = eddyi_strdup(label_value);
    if (!g.name || !g.help || (label_name && (!g.label_name || !g.label_value)))
        goto fail;
    m->gauges[m->ngauges] = g;
    return &m->gauges[m->ngauges++];

fail:
    gauge_clear(&g);
    return NULL;
}

int eddy_metrics_gauge_set(eddy_metrics *m, const char *name, const char *help,
                           const char *label_name, const char *label_value,
                           double value, eddy_error *err)
{
    if (!m)
        return eddyi_error(err, EDDY_EINVAL, "gauge_set on a NULL registry");
    int rc = gauge_check(name, help, label_name, label_value, err);
    if (rc != EDDY_OK)
        return rc;
    pthread_mutex_lock(&m->gauge_lock);
    struct gauge *g = gauge_find(m, name, label_name, label_value);
    if (g && g->fn) {
        rc = eddyi_error(err, EDDY_EEXIST,
                         "gauge '%s' is computed by a registered function",
                         name);
        goto out;
    }
    if (!g)
        g = gauge_add(m, name, help, label_name, label_value);
    if (!g) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory adding gauge '%s'",
                         name);
        goto out;
    }
    g->value = value;
out:
    pthread_mutex_unlock(&m->gauge_lock);
    return rc;
}

int eddy_metrics_gauge_register(eddy_metrics *m, const char *name,
                                const char *help, const char *label_name,
                                const char *label_value,
                                eddy_metrics_gauge_fn fn, void *user,
                                eddy_error *err)
{
    if (!m)
        return eddyi_error(err, EDDY_EINVAL, "gauge_register on a NULL registry");
    if (!fn)
        return eddyi_error(err, EDDY_EINVAL, "gauge '%s': NULL function",
                           name ? name : "(null)");
    int rc = gauge_check(name, help, label_name, label_value, err);
    if (rc != EDDY_OK)
        return rc;
    pthread_mutex_lock(&m->gauge_lock);
    struct gauge *g = gauge_find(m, name, label_name, label_value);
    if (g) {
        rc = eddyi_error(err, EDDY_EEXIST, "gauge '%s'%s%s%s%s%s exists already",
                         name, label_name ? " {" : "",
                         label_name ? label_name : "", label_name ? "=" : "",
                         label_value ? label_value : "", label_name ? "}" : "");
        goto out;
    }
    g = gauge_add(m, name, help, label_name, label_value);
    if (!g) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory adding gauge '%s'",
                         name);
        goto out;
    }
    g->fn = fn;
    g->user = user;
out:
    pthread_mutex_unlock(&m->gauge_lock);
    return rc;
}

int eddy_metrics_gauge_unregister(eddy_metrics *m, const char *name,
                                  const char *label_name,
                                  const char *label_value)
{
    if (!m || !name)
        return EDDY_EINVAL;
    int rc = EDDY_ENOTFOUND;
    pthread_mutex_lock(&m->gauge_lock);
    struct gauge *g = gauge_find(m, name, label_name, label_value);
    if (g) {
        gauge_clear(g);
        size_t i = (size_t)(g - m->gauges);
        memmove(g, g + 1, (m->ngauges - i - 1) * sizeof *g);
        m->ngauges--;
        rc = EDDY_OK;
    }
    pthread_mutex_unlock(&m->gauge_lock);
    return rc;
}

/* ---- snapshots -------------------------------------------------------- */

static uint64_t hist_percentile(const struct eddyi_snap_series *ss, double q)
{
    if (ss->hist_count == 0 || !(q > 0.0 && q <= 1.0))
        return 0;
    /* Nearest rank: the smallest value with at least ceil(q * n) values
     * at or below it. */
    double r = ceil(q * (double)ss->hist_count);
    uint64_t rank = r < 1.0 ? 1 : (uint64_t)r;
    if (rank >= ss->hist_count)
        return ss->st.max_ns; /* the largest value is known exactly */
    uint64_t seen = 0;
    for (unsigned i = 0; i < EDDYI_HIST_BUCKETS; i++) {
        seen += ss->hist[i];
        if (seen < rank)
            continue;
        if (i == EDDYI_HIST_OVERFLOW)
            return ss->st.max_ns;
        uint64_t lo, width;
        bucket_range(i, &lo, &width);
        uint64_t mid = lo + width / 2;
        return mid < ss->st.max_ns ? mid : ss->st.max_ns;
    }
    return ss->st.max_ns; /* unreachable: seen ends at hist_count >= rank */
}

static void series_copy(struct eddyi_snap_series *ss,
                        const eddy_metrics_series *s)
{
    eddy_metrics_series_stats *st = &ss->st;
    /* The order of these loads matters; see eddy_metrics_end. */
    st->failed = atomic_load_explicit(&s->failed, memory_order_acquire);
    uint64_t raw[EDDYI_HIST_SLOTS];
    for (unsigned i = 0; i < EDDYI_HIST_SLOTS; i++)
        raw[i] = atomic_load_explicit(&s->hist[i], memory_order_acquire);
    uint64_t begun = atomic_load_explicit(&s->begun, memory_order_relaxed);

    /* Merge the split slots back into their buckets for the percentiles;
     * give each slot to the first Prometheus bound at or above its values. */
    ss->hist_count = 0;
    memset(ss->prom, 0, sizeof ss->prom);
    for (unsigned i = 0; i < EDDYI_HIST_BUCKETS; i++) {
        uint64_t above = 0;
        unsigned p = prom_of_bucket[i];
        if (split_at[i] != UINT64_MAX) {
            above = raw[EDDYI_HIST_BUCKETS + p];
            ss->prom[p + 1] += above;
        }
        ss->prom[p] += raw[i];
        ss->hist[i] = raw[i] + above;
        ss->hist_count += ss->hist[i];
    }
    st->max_ns = atomic_load_explicit(&s->max_ns, memory_order_relaxed);
    st->sum_ns = atomic_load_explicit(&s->sum_ns, memory_order_relaxed);
    st->retried = atomic_load_explicit(&s->retried, memory_order_relaxed);
    st->dead_lettered =
        atomic_load_explicit(&s->dead_lettered, memory_order_relaxed);
    st->handled = ss->hist_count;
    st->succeeded = st->handled - st->failed;
    /* Negative only if a caller ended more invocations than it began. */
    st->in_flight = (int64_t)(begun - st->handled);
    st->failure_rate =
        st->handled ? (double)st->failed / (double)st->handled : 0.0;
    st->avg_ns = st->handled ? st->sum_ns / st->handled : 0;
    st->p50_ns = hist_percentile(ss, 0.50);
    st->p90_ns = hist_percentile(ss, 0.90);
    st->p99_ns = hist_percentile(ss, 0.99);
}

static int cmp_series(const void *a, const void *b)
{
    const eddy_metrics_series_stats *x = a, *y = b;
    int c = strcmp(x->handler, y->handler);
    return c ? c : strcmp(x->event_type, y->event_type);
}

static int cmp_gauge(const void *a, const void *b)
{
    const eddy_metrics_gauge_stats *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if (!x->label_value || !y->label_value)
        return !!x->label_value - !!y->label_value;
    c = strcmp(x->label_name, y->label_name);
    return c ? c : strcmp(x->label_value, y->label_value);
}

/* Copies the series. The list is walked under series_lock (its links are
 * written under it); the counters are read after, lock-free. */
static int snapshot_series(eddy_metrics *m, eddy_metrics_snapshot *snap,
                           eddy_error *err)
{
    pthread_mutex_lock(&m->series_lock);
    size_t n = m->nseries;
    eddy_metrics_series **list = n ? calloc(n, sizeof *list) : NULL;
    size_t k = 0;
    if (list)
        for (eddy_metrics_series *s = m->all; s && k < n; s = s->next)
            list[k++] = s;
    pthread_mutex_unlock(&m->series_lock);
    if (n && !list)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory copying %zu series", n);

    int rc = EDDY_OK;
    snap->series = n ? calloc(n, sizeof *snap->series) : NULL;
    if (n && !snap->series) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory copying %zu series", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct eddyi_snap_series *ss = &snap->series[i];
        /* Counted before the copies so that a failure frees what was made. */
        snap->nseries = i + 1;
        char *handler = eddyi_strdup(list[i]->handler);
        char *type = eddyi_strdup(list[i]->event_type);
        ss->st.handler = handler;
        ss->st.event_type = type;
        if (!handler || !type) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory copying series");
            goto out;
        }
        series_copy(ss, list[i]);
    }
    /* The view comes first in each element, so sorting elements by their
     * view's fields is sorting by handler, then type. */
    if (n > 1)
        qsort(snap->series, n, sizeof *snap->series, cmp_series);
out:
    free(list);
    return rc;
}

static int snapshot_gauges(eddy_metrics *m, eddy_metrics_snapshot *snap,
                           eddy_error *err)
{
    int rc = EDDY_OK;
    pthread_mutex_lock(&m->gauge_lock);
    size_t n = m->ngauges;
    snap->gauges = n ? calloc(n, sizeof *snap->gauges) : NULL;
    if (n && !snap->gauges) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory copying gauges");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct gauge *g = &m->gauges[i];
        double value = g->value;
        if (g->fn) {
            int frc = g->fn(&value, g->user);
            if (frc != EDDY_OK) {
                EDDYI_LOG(EDDY_LOG_DEBUG, "metrics",
                          "gauge '%s' left out: its function returned %s",
                          g->name, eddy_errname(frc));
                continue;
            }
        }
        eddy_metrics_gauge_stats *gs = &snap->gauges[snap->ngauges++];
        gs->value = value;
        char *name = eddyi_strdup(g->name);
        char *help = eddyi_strdup(g->help);
        char *lname = eddyi_strdup(g->label_name);
        char *lvalue = eddyi_strdup(g->label_value);
        gs->name = name;
        gs->help = help;
        gs->label_name = lname;
        gs->label_value = lvalue;
        if (!name || !help || (g->label_name && (!lname || !lvalue))) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory copying gauges");
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&m->gauge_lock);
    if (rc == EDDY_OK && snap->ngauges > 1)
        qsort(snap->gauges, snap->ngauges, sizeof *snap->gauges, cmp_gauge);
    return rc;
}

eddy_metrics_snapshot *eddy_metrics_snapshot_take(eddy_metrics *m,
                                                  eddy_error *err)
{
    if (!m) {
        eddyi_error(err, EDDY_EINVAL, "snapshot of a NULL registry");
        return NULL;
    }
    eddy_metrics_snapshot *snap = calloc(1, sizeof *snap);
    if (!snap) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory taking a snapshot");
        return NULL;
    }
    if (snapshot_series(m, snap, err) != EDDY_OK)
        goto fail;
    if (snapshot_gauges(m, snap, err) != EDDY_OK)
        goto fail;
    return snap;

fail:
    eddy_metrics_snapshot_free(snap);
    return NULL;
}

void eddy_metrics_snapshot_free(eddy_metrics_snapshot *snap)
{
    if (!snap)
        return;
    for (size_t i = 0; i < snap->nseries; i++) {
        free((char *)snap->series[i].st.handler);
        free((char *)snap->series[i].st.event_type);
    }
    free(snap->series);
    for (size_t i = 0; i < snap->ngauges; i++) {
        eddy_metrics_gauge_stats *g = &snap->gauges[i];
        free((char *)g->name);
        free((char *)g->help);
        free((char *)g->label_name);
        free((char *)g->label_value);
    }
    free(snap->gauges);
    free(snap);
}

size_t eddy_metrics_snapshot_series_count(const eddy_metrics_snapshot *snap)
{
    return snap ? snap->nseries : 0;
}

const eddy_metrics_series_stats *
eddy_metrics_snapshot_series(const eddy_metrics_snapshot *snap, size_t i)
{
    return snap && i < snap->nseries ? &snap->series[i].st : NULL;
}

uint64_t eddy_metrics_snapshot_percentile(const eddy_metrics_snapshot *snap,
                                          size_t i, double q)
{
    if (!snap || i >= snap->nseries)
        return 0;
    return hist_percentile(&snap->series[i], q);
}

size_t eddy_metrics_snapshot_gauge_count(const eddy_metrics_snapshot *snap)
{
    return snap ? snap->ngauges : 0;
}

const eddy_metrics_gauge_stats *
eddy_metrics_snapshot_gauge(const eddy_metrics_snapshot *snap, size_t i)
{
    return snap && i < snap->ngauges ? &snap->gauges[i] : NULL;
}
