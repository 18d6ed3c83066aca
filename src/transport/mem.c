/*
 * src/transport/mem.c - the in-process engine ("mem:" / "mem:NAME"), for
 * tests and single-process use.
 *
 * It models a log-based broker: one append-only log per topic holding the
 * encoded (structured CloudEvents JSON) messages, so the size limit and the
 * decoding path are the real ones. Each consumer group has a read offset
 * and a pending list (delivered, not yet acknowledged) like a Redis
 * stream's PEL: a pending entry whose deadline passed (its member died, or
 * a nack's delay ran out) is claimed by the next member that fetches.
 * Everything is under one mutex; engines are shared by name while a
 * transport uses them and freed with the last one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "transport/transport_impl.h"

typedef struct mem_msg {
    char *data;
    size_t len;
} mem_msg;

typedef struct mem_pending {
    struct mem_pending *next;
    size_t index;          /* in the topic's log */
    uint32_t deliveries;   /* also the claim generation */
    int64_t visible_at;    /* claimable from then (monotonic ms) */
} mem_pending;

typedef struct mem_group {
    struct mem_group *next;
    char *name;
    size_t offset;         /* next never-delivered message */
    mem_pending *pending;  /* ascending index */
} mem_group;

typedef struct mem_topic {
    struct mem_topic *next;
    char *name;
    mem_msg *msgs;
    size_t n, cap;
    mem_group *groups;
} mem_topic;

typedef struct mem_engine {
    struct mem_engine *next;
    char *name;
    int refs;
    mem_topic *topics;
    pthread_cond_t cv;     /* a message, a nack or a stop */
} mem_engine;

static pthread_mutex_t mem_mu = PTHREAD_MUTEX_INITIALIZER;
static mem_engine *mem_engines;

typedef struct mem_sub {
    mem_engine *eng;
    bool stop;
    pthread_t thread;
} mem_sub;

/* ---- engine registry (under mem_mu) ---------------------------------------- */

static void engine_free(mem_engine *e)
{
    for (mem_topic *tp = e->topics, *tn; tp; tp = tn) {
        tn = tp->next;
        for (size_t i = 0; i < tp->n; i++)
            free(tp->msgs[i].data);
        free(tp->msgs);
        for (mem_group *g = tp->groups, *gn; g; g = gn) {
            gn = g->next;
            for (mem_pending *p = g->pending, *pn; p; p = pn) {
                pn = p->next;
                free(p);
            }
            free(g->name);
            free(g);
        }
        free(tp->name);
        free(tp);
    }
    pthread_cond_destroy(&e->cv);
    free(e->name);
    free(e);
}

static mem_topic *topic_get(mem_engine *e, const char *name)
{
    for (mem_topic *tp = e->topics; tp; tp = tp->next)
        if (strcmp(tp->name, name) == 0)
            return tp;
    mem_topic *tp = calloc(1, sizeof *tp);
    if (!tp || !(tp->name = eddyi_strdup(name))) {
        free(tp);
        return NULL;
    }
    tp->next = e->topics;
    e->topics = tp;
    return tp;
}

static int mem_open(eddy_transport *t, eddy_error *err)
{
    const char *name = t->url.path;
    if (*t->url.authority)
        return eddyi_error(err, EDDY_EINVAL,
                           "mem transport: use mem: or mem:NAME, not "
                           "mem://%s", t->url.authority);
    pthread_mutex_lock(&mem_mu);
    mem_engine *e = mem_engines;
    while (e && strcmp(e->name, name) != 0)
        e = e->next;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e || !(e->name = eddyi_strdup(name))) {
            free(e);
            pthread_mutex_unlock(&mem_mu);
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
        }
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&e->cv, &ca);
        pthread_condattr_destroy(&ca);
        e->next = mem_engines;
        mem_engines = e;
    }
    e->refs++;
    pthread_mutex_unlock(&mem_mu);
    t->state = e;
    return EDDY_OK;
}

static void mem_close(eddy_transport *t)
{
    mem_engine *e = t->state;
    pthread_mutex_lock(&mem_mu);
    if (--e->refs == 0) {
        mem_engine **pp = &mem_engines;
        while (*pp != e)
            pp = &(*pp)->next;
        *pp = e->next;
        engine_free(e);
    }
    pthread_mutex_unlock(&mem_mu);
}

/* Appends `data` (taken on success) to `topic`. */
static int mem_append(mem_engine *e, const char *topic, char *data, size_t len,
                      eddy_error *err)
{
    pthread_mutex_lock(&mem_mu);
    mem_topic *tp = topic_get(e, topic);
    if (!tp)
        goto nomem;
    if (tp->n == tp->cap) {
        size_t cap = tp->cap ? tp->cap * 2 : 64;
        mem_msg *m = realloc(tp->msgs, cap * sizeof *m);
        if (!m)
            goto nomem;
        tp->msgs = m;
        tp->cap = cap;
    }
    tp->msgs[tp->n].data = data;
    tp->msgs[tp->n].len = len;
    tp->n++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&mem_mu);
    return EDDY_OK;
nomem:
    pthread_mutex_unlock(&mem_mu);
    return eddyi_error(err, EDDY_ENOMEM, "out of memory publishing");
}

static int mem_publish(eddy_transport *t, const eddy_event *ev,
                       const char *topic, eddy_error *err)
{
    size_t len;
    char *data = eddyi_transport_encode(t, ev, &len, err);
    if (!data)
        return err ? err->code : EDDY_ETOOBIG;
    int rc = mem_append(t->state, topic, data, len, err);
    if (rc != EDDY_OK)
        free(data);
    return rc;
}

int eddyi_transport_mem_inject(eddy_transport *t, const char *topic,
                               const char *raw, size_t len, eddy_error *err)
{
    if (t->ops != &eddyi_transport_mem_ops)
        return eddyi_error(err, EDDY_EINVAL, "not a mem transport");
    char *copy = malloc(len + 1);
    if (!copy)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    memcpy(copy, raw, len);
    copy[len] = '\0';
    int rc = mem_append(t->state, topic, copy, len, err);
    if (rc != EDDY_OK)
        free(copy);
    return rc;
}

/* ---- consuming ----------------------------------------------------------- */

static mem_group *group_get(mem_topic *tp, const char *name,
                            eddy_start_from from)
{
    for (mem_group *g = tp->groups; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return g;
    mem_group *g = calloc(1, sizeof *g);
    if (!g || !(g->name = eddyi_strdup(name))) {
        free(g);
        return NULL;
    }
    g->offset = from == EDDY_START_END ? tp->n : 0;
    g->next = tp->groups;
    tp->groups = g;
    return g;
}

/* One fetched message, copied out of the lock. */
typedef struct mem_fetch {
    char *data;
    size_t len;
    size_t topic_i;
    size_t index;
    uint32_t deliveries;
} mem_fetch;

/* Takes the next message for the group, claimable pending entries first.
 * Under mem_mu. Returns 1 with `*f` filled, 0 if none, -1 out of memory. */
static int fetch_one(mem_engine *e, eddy_transport_subscription *sub, mem_fetch *f)
{
    int64_t now = eddyi_transport_now_ms();
    for (size_t i = 0; i < sub->ntopics; i++) {
        mem_topic *tp = topic_get(e, sub->topics[i]);
        mem_group *g = tp ? group_get(tp, sub->group, sub->o.start_from) : NULL;
        if (!g)
            return -1;
        mem_pending *p = g->pending;
        while (p && p->visible_at > now)
            p = p->next;
        if (!p && g->offset < tp->n) {
            p = calloc(1, sizeof *p);
            if (!p)
                return -1;
            p->index = g->offset++;
            mem_pending **pp = &g->pending;
            while (*pp && (*pp)->index < p->index)
                pp = &(*pp)->next;
            p->next = *pp;
            *pp = p;
        }
        if (!p)
            continue;
        f->data = malloc(tp->msgs[p->index].len + 1);
        if (!f->data)
            return -1;
        memcpy(f->data, tp->msgs[p->index].data, tp->msgs[p->index].len + 1);
        f->len = tp->msgs[p->index].len;
        f->topic_i = i;
        f->index = p->index;
        f->deliveries = ++p->deliveries;
        p->visible_at = now + sub->o.ack_wait_ms;
        return 1;
    }
    return 0;
}

/* Settles a fetched message, unless another member claimed it since. */
static void settle(mem_engine *e, eddy_transport_subscription *sub, const mem_fetch *f,
                   eddyi_settle how, int delay_ms)
{
    pthread_mutex_lock(&mem_mu);
    mem_topic *tp = topic_get(e, sub->topics[f->topic_i]);
    mem_group *g = tp ? group_get(tp, sub->group, false) : NULL;
    for (mem_pending **pp = g ? &g->pending : NULL; pp && *pp;
         pp = &(*pp)->next) {
        mem_pending *p = *pp;
        if (p->index != f->index)
            continue;
        if (p->deliveries != f->deliveries)
            break; /* claimed again by someone: theirs to settle */
        if (how == EDDYI_SETTLE_ACK) {
            *pp = p->next;
            free(p);
        } else {
            p->visible_at = eddyi_transport_now_ms() + delay_ms;
            pthread_cond_broadcast(&e->cv);
        }
        break;
    }
    pthread_mutex_unlock(&mem_mu);
}

static void *mem_sub_main(void *arg)
{
    eddyi_thread_name("eddy-mem-sub");
    eddy_transport_subscription *sub = arg;
    mem_sub *ms = sub->state;
    mem_engine *e = ms->eng;
    pthread_mutex_lock(&mem_mu);
    while (!ms->stop) {
        mem_fetch f;
        int got = fetch_one(e, sub, &f);
        if (got <= 0) {
            if (got < 0)
                EDDYI_LOG(EDDY_LOG_ERROR, "transport",
                          "mem: out of memory fetching; retrying");
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += 20 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cv, &mem_mu, &until);
            continue;
        }
        pthread_mutex_unlock(&mem_mu);
        const char *topic = sub->topics[f.topic_i];
        eddyi_settle how = EDDYI_SETTLE_ACK;
        int delay = 0;
        eddy_event *ev = eddyi_transport_decode(sub, f.data, f.len, topic,
                                                f.deliveries);
        if (ev)
            how = eddyi_transport_dispatch(sub, ev, topic, f.deliveries,
                                           f.data, f.len, &delay);
        eddy_event_unref(ev);
        settle(e, sub, &f, how, delay);
        free(f.data);
        pthread_mutex_lock(&mem_mu);
    }
    pthread_mutex_unlock(&mem_mu);
    return NULL;
}

static int mem_subscribe(eddy_transport_subscription *sub, eddy_error *err)
{
    mem_engine *e = sub->t->state;
    mem_sub *ms = calloc(1, sizeof *ms);
    if (!ms)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    ms->eng = e;
    /* Create the topics and the group now, so that EDDY_START_END means
     * "after what is stored at subscribe time". */
    pthread_mutex_lock(&mem_mu);
    for (size_t i = 0; i < sub->ntopics; i++) {
        mem_topic *tp = topic_get(e, sub->topics[i]);
        if (!tp || !group_get(tp, sub->group, sub->o.start_from)) {
            pthread_mutex_unlock(&mem_mu);
            free(ms);
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
        }
    }
    pthread_mutex_unlock(&mem_mu);
    sub->state = ms;
    if (pthread_create(&ms->thread, NULL, mem_sub_main, sub) != 0) {
        sub->state = NULL;
        free(ms);
        return eddyi_error(err, EDDY_ENOMEM,
                           "cannot start the subscription thread");
    }
    return EDDY_OK;
}

static void mem_sub_stop(eddy_transport_subscription *sub)
{
    mem_sub *ms = sub->state;
    pthread_mutex_lock(&mem_mu);
    ms->stop = true;
    pthread_cond_broadcast(&ms->eng->cv);
    pthread_mutex_unlock(&mem_mu);
    pthread_join(ms->thread, NULL);
}

static void mem_sub_free(eddy_transport_subscription *sub)
{
    free(sub->state);
    sub->state = NULL;
}

/* Topics under the prefix, with each group's pending count and lag. Members
 * are not tracked by the mem engine (consumers: -1). */
static int mem_info(eddy_transport *t, const char *const *groups,
                    size_t ngroups, eddy_transport_info *info, eddy_error *err)
{
    mem_engine *e = t->state;
    size_t plen = strlen(t->prefix);
    int rc = EDDY_OK;
    pthread_mutex_lock(&mem_mu);
    for (mem_topic *tp = e->topics; tp && rc == EDDY_OK; tp = tp->next) {
        if (strncmp(tp->name, t->prefix, plen) != 0)
            continue;
        ssize_t ti = eddyi_info_topic(info, tp->name, (int64_t)tp->n, 1);
        if (ti < 0) {
            rc = EDDY_ENOMEM;
            break;
        }
        for (mem_group *g = tp->groups; g; g = g->next) {
            if (!eddyi_info_group_wanted(g->name, groups, ngroups))
                continue;
            int64_t pending = 0;
            for (mem_pending *p = g->pending; p; p = p->next)
                pending++;
            if (eddyi_info_group(info, (size_t)ti, g->name, -1, pending,
                                 (int64_t)(tp->n - g->offset)) != 0) {
                rc = EDDY_ENOMEM;
                break;
            }
        }
    }
    pthread_mutex_unlock(&mem_mu);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "out of memory");
    return EDDY_OK;
}

const eddyi_transport_ops eddyi_transport_mem_ops = {
    .engine = "mem",
    .default_prefix = "events.",
    .open = mem_open,
    .close = mem_close,
    .publish = mem_publish,
    .publish_async = NULL,
    .flush = NULL,
    .subscribe = mem_subscribe,
    .sub_stop = mem_sub_stop,
    .sub_free = mem_sub_free,
    .info = mem_info,
};
