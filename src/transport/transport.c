/*
 * src/transport/transport.c - the transport front: URL, options, topics,
 * argument checks, handler dispatch (ack / nack / dead letter), and an
 * asynchronous publisher for backends that have none. The engines live
 * behind eddyi_transport_ops (transport_impl.h).
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/retry.h"
#include "transport/transport_impl.h"

/* The engines, by URL scheme. A build without a client library
 * (cmake -DEDDY_WITH_REDIS=OFF, or hiredis not found) has no backend for it
 * and says so when its URL is opened. */
#ifndef EDDY_HAVE_REDIS
#define EDDY_HAVE_REDIS 1
#endif
#ifndef EDDY_HAVE_KAFKA
#define EDDY_HAVE_KAFKA 1
#endif
#ifndef EDDY_HAVE_NATS
#define EDDY_HAVE_NATS 1
#endif

static const eddyi_transport_ops *const transport_backends[] = {
    &eddyi_transport_mem_ops,
#if EDDY_HAVE_KAFKA
    &eddyi_transport_kafka_ops,
#endif
#if EDDY_HAVE_NATS
    &eddyi_transport_nats_ops,
#endif
#if EDDY_HAVE_REDIS
    &eddyi_transport_redis_ops,
#endif
};

static const eddy_transport_engine_info transport_engines[] = {
    {"mem", "in-process", "", true},
    {"redis", "Redis", "hiredis", EDDY_HAVE_REDIS},
    {"kafka", "Kafka", "librdkafka", EDDY_HAVE_KAFKA},
    {"nats", "NATS", "libnats", EDDY_HAVE_NATS},
};

const eddy_transport_engine_info *eddy_transport_engines(size_t *count)
{
    if (count)
        *count = sizeof transport_engines / sizeof transport_engines[0];
    return transport_engines;
}

/* The backend for `scheme`, or NULL with `err` saying why. */
static const eddyi_transport_ops *backend_find(const char *scheme,
                                               const char *shown,
                                               eddy_error *err)
{
    for (size_t i = 0;
         i < sizeof transport_backends / sizeof transport_backends[0]; i++) {
        const eddyi_transport_ops *ops = transport_backends[i];
        if (strcmp(ops->engine, scheme) == 0 ||
            (ops->alt_scheme && strcmp(ops->alt_scheme, scheme) == 0))
            return ops;
    }
    for (size_t i = 0; i < sizeof transport_engines / sizeof transport_engines[0];
         i++) {
        const eddy_transport_engine_info *e = &transport_engines[i];
        size_t n = strlen(e->name);
        /* "rediss" is Redis too */
        if (strncmp(e->name, scheme, n) == 0 &&
            (scheme[n] == '\0' || strcmp(scheme + n, "s") == 0)) {
            eddyi_error(err, EDDY_EINVAL, "transport URL \"%s\": this eddy "
                        "was built without %s support (%s)", shown, e->title,
                        e->library);
            return NULL;
        }
    }
    char have[128] = "";
    for (size_t i = 0;
         i < sizeof transport_backends / sizeof transport_backends[0]; i++) {
        size_t len = strlen(have);
        snprintf(have + len, sizeof have - len, "%s%s", i ? ", " : "",
                 transport_backends[i]->engine);
    }
    eddyi_error(err, EDDY_EINVAL, "transport URL \"%s\": unknown scheme "
                "\"%s\" (this eddy has: %s)", shown, scheme, have);
    return NULL;
}

/* Applies the configuration file, then gathers the credentials that every
 * engine reads the same way: user from user@ or user=, password from
 * user:password@, password=, password_file= or password_env=. */
static int url_credentials(eddy_transport *t, const char *config_file,
                           eddy_error *err)
{
    eddyi_url *u = &t->url;
    int rc;
    if (config_file && (rc = eddyi_url_merge_file(u, config_file, err)))
        return rc;
    for (size_t i = 0; i < u->nparams; i++) {
        if (strcmp(u->keys[i], "user") != 0)
            continue;
        if (u->user)
            return eddyi_error(err, EDDY_EINVAL, "transport URL \"%s\": the "
                               "user is given twice (user@ and user=)",
                               t->shown);
        u->user = u->values[i];
        free(u->keys[i]);
        memmove(&u->keys[i], &u->keys[i + 1],
                (u->nparams - i - 1) * sizeof *u->keys);
        memmove(&u->values[i], &u->values[i + 1],
                (u->nparams - i - 1) * sizeof *u->values);
        u->nparams--;
        break;
    }
    char *password = NULL;
    if ((rc = eddyi_url_take_secret(u, "password", true, &password, err)))
        return rc;
    u->password = password;
    return EDDY_OK;
}

#define ASYNC_QUEUE_MAX 65536

/* ---- time ---------------------------------------------------------------- */

int64_t eddyi_transport_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int eddyi_transport_wait_drained(pthread_mutex_t *mu, pthread_cond_t *cv,
                                 const size_t *inflight, int timeout_ms,
                                 const char *engine, eddy_error *err)
{
    int64_t deadline = eddyi_transport_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    int rc = EDDY_OK;
    pthread_mutex_lock(mu);
    while (*inflight) {
        int64_t left = deadline - eddyi_transport_now_ms();
        if (left <= 0) {
            rc = eddyi_error(err, EDDY_ETIMEDOUT, "flush: %zu %s publishes "
                             "still pending after %d ms", *inflight, engine,
                             timeout_ms);
            break;
        }
        /* Wake at least every 100 ms to look at the clock again. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(left > 100 ? 100 : left) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(cv, mu, &until);
    }
    pthread_mutex_unlock(mu);
    return rc;
}

void eddyi_transport_sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- open / close --------------------------------------------------------- */

eddy_transport *eddyi_transport_prepare(const char *url,
                                       const eddy_transport_options *opts,
                                       eddy_error *err)
{
    if (!url) {
        eddyi_error(err, EDDY_EINVAL, "transport URL is NULL");
        return NULL;
    }
    eddy_transport *t = calloc(1, sizeof *t);
    size_t shown_size = strlen(url) + 64;
    if (t)
        t->shown = malloc(shown_size);
    if (!t || !t->shown) {
        free(t);
        eddyi_error(err, EDDY_ENOMEM, "out of memory opening a transport");
        return NULL;
    }
    eddy_url_redact(url, t->shown, shown_size);
    if (eddyi_url_parse(url, &t->url, err) != EDDY_OK)
        goto fail;
    if (!(t->ops = backend_find(t->url.scheme, t->shown, err)))
        goto fail;
    if (url_credentials(t, opts ? opts->config_file : NULL, err) != EDDY_OK)
        goto fail;
    if (opts)
        t->opts = *opts;
    t->opts.config_file = NULL; /* read above; not kept */
    eddy_transport_options *o = &t->opts;
    if (o->connect_timeout_ms < 0 || o->timeout_ms < 0 ||
        o->reconnect_initial_ms < 0 || o->reconnect_max_ms < 0 ||
        (o->disconnected != EDDY_DISCONNECTED_FAIL &&
         o->disconnected != EDDY_DISCONNECTED_BUFFER)) {
        eddyi_error(err, EDDY_EINVAL,
                    "transport options: negative timeout or unknown "
                    "disconnected policy %d", (int)o->disconnected);
        goto fail;
    }
    if (!o->max_message_bytes)
        o->max_message_bytes = EDDY_TRANSPORT_DEFAULT_MAX_MESSAGE_BYTES;
    if (o->max_message_bytes > EDDY_EVENT_MAX_BYTES) {
        eddyi_error(err, EDDY_EINVAL,
                    "transport options: max_message_bytes %zu is above "
                    "EDDY_EVENT_MAX_BYTES (%zu), which no receiver decodes",
                    o->max_message_bytes, EDDY_EVENT_MAX_BYTES);
        goto fail;
    }
    if (!o->connect_timeout_ms)
        o->connect_timeout_ms = EDDY_TRANSPORT_DEFAULT_TIMEOUT_MS;
    if (!o->timeout_ms)
        o->timeout_ms = EDDY_TRANSPORT_DEFAULT_TIMEOUT_MS;
    if (!o->reconnect_initial_ms)
        o->reconnect_initial_ms = EDDY_TRANSPORT_DEFAULT_RECONNECT_INITIAL_MS;
    if (!o->reconnect_max_ms)
        o->reconnect_max_ms = EDDY_TRANSPORT_DEFAULT_RECONNECT_MAX_MS;
    if (o->reconnect_max_ms < o->reconnect_initial_ms)
        o->reconnect_max_ms = o->reconnect_initial_ms;
    if (!o->buffer_max)
        o->buffer_max = 10000;
    if (!o->stream_maxlen)
        o->stream_maxlen = EDDY_TRANSPORT_DEFAULT_STREAM_MAXLEN;
    t->prefix = eddyi_strdup(o->topic_prefix ? o->topic_prefix
                                             : t->ops->default_prefix);
    if (!t->prefix) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory opening a transport");
        goto fail;
    }
    o->topic_prefix = t->prefix;
    return t;
fail:
    eddyi_url_free(&t->url);
    free(t->prefix);
    free(t->shown);
    free(t);
    return NULL;
}

void eddyi_transport_unprepare(eddy_transport *t)
{
    if (!t)
        return;
    eddyi_url_free(&t->url);
    free(t->prefix);
    free(t->shown);
    free(t);
}

eddy_transport *eddy_transport_open(const char *url,
                                    const eddy_transport_options *opts,
                                    eddy_error *err)
{
    eddy_transport *t = eddyi_transport_prepare(url, opts, err);
    if (t && t->ops->open(t, err) != EDDY_OK) {
        eddyi_transport_unprepare(t);
        return NULL;
    }
    return t;
}

static void async_queue_free(eddy_transport *t);

void eddy_transport_close(eddy_transport *t)
{
    if (!t)
        return;
    async_queue_free(t);
    t->ops->close(t);
    eddyi_url_free(&t->url);
    free(t->prefix);
    free(t->shown);
    free(t);
}

const char *eddy_transport_url(const eddy_transport *t)
{
    return t ? t->shown : "";
}

const char *eddyi_transport_shown(const eddy_transport *t)
{
    return t->shown;
}

const char *eddy_transport_engine(const eddy_transport *t)
{
    return t ? t->ops->engine : "none";
}

int eddy_transport_topic(const eddy_transport *t, const char *type,
                         char *buf, size_t size)
{
    if (!t || !type || !*type || !buf)
        return EDDY_EINVAL;
    int n = snprintf(buf, size, "%s%s", t->prefix, type);
    if (n < 0 || (size_t)n >= size)
        return EDDY_ETOOBIG;
    return EDDY_OK;
}

/* ---- publishing ------------------------------------------------------------ */

const char *eddyi_transport_key(const eddy_event *ev)
{
    const char *s = eddy_event_subject(ev);
    return s ? s : eddy_event_id(ev);
}

char *eddyi_transport_encode(const eddy_transport *t, const eddy_event *ev,
                             size_t *len, eddy_error *err)
{
    char *text = eddy_event_encode(ev, len);
    if (!text) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory encoding event %s",
                    eddy_event_id(ev));
        return NULL;
    }
    if (*len > t->opts.max_message_bytes) {
        eddyi_error(err, EDDY_ETOOBIG, "event %s is %zu bytes, the limit is %zu",
                    eddy_event_id(ev), *len, t->opts.max_message_bytes);
        free(text);
        return NULL;
    }
    return text;
}

/* The topic of `ev` into `buf`, or an error naming the type. */
static int event_topic(const eddy_transport *t, const eddy_event *ev,
                       char *buf, size_t size, eddy_error *err)
{
    int rc = eddy_transport_topic(t, eddy_event_type(ev), buf, size);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "event type \"%s\": topic name too long",
                           eddy_event_type(ev));
    return EDDY_OK;
}

int eddy_transport_publish(eddy_transport *t, const eddy_event *ev,
                           eddy_error *err)
{
    if (!t || !ev)
        return eddyi_error(err, EDDY_EINVAL, "publish: NULL %s",
                           t ? "event" : "transport");
    char topic[512];
    int rc = event_topic(t, ev, topic, sizeof topic, err);
    if (rc != EDDY_OK)
        return rc;
    return t->ops->publish(t, ev, topic, err);
}

/* The front's asynchronous publisher: a FIFO and one thread calling the
 * backend's synchronous publish. */
typedef struct async_item {
    struct async_item *next;
    eddy_event *ev;
    eddy_publish_done_fn done;
    void *user;
} async_item;

struct eddyi_async_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* work queued, or stopping */
    pthread_cond_t idle;     /* pending dropped */
    async_item *head, *tail;
    size_t queued;           /* in the list */
    size_t pending;          /* queued + the one being published */
    bool stop;
    int64_t deadline_ms;     /* when stopping: give up after this */
    pthread_t thread;
};

static void *async_main(void *arg)
{
    eddyi_thread_name("eddy-publish");
    eddy_transport *t = arg;
    eddyi_async_queue *q = t->async;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        if (!q->head)
            break;
        async_item *it = q->head;
        q->head = it->next;
        if (!q->head)
            q->tail = NULL;
        q->queued--;
        bool give_up = q->stop && eddyi_transport_now_ms() > q->deadline_ms;
        pthread_mutex_unlock(&q->mu);
        eddy_error e = {0};
        int rc;
        if (give_up)
            rc = eddyi_error(&e, EDDY_ESTOPPED,
                             "transport closed before event %s was published",
                             eddy_event_id(it->ev));
        else
            rc = eddy_transport_publish(t, it->ev, &e);
        if (it->done)
            it->done(rc, it->ev, rc == EDDY_OK ? NULL : &e, it->user);
        eddy_event_unref(it->ev);
        free(it);
        pthread_mutex_lock(&q->mu);
        q->pending--;
        if (!q->pending)
            pthread_cond_broadcast(&q->idle);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static pthread_mutex_t async_start_mu = PTHREAD_MUTEX_INITIALIZER;

static int async_queue_get(eddy_transport *t, eddyi_async_queue **out,
                           eddy_error *err)
{
    pthread_mutex_lock(&async_start_mu);
    if (!t->async) {
        eddyi_async_queue *q = calloc(1, sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&async_start_mu);
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
        }
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, NULL);
        pthread_cond_init(&q->idle, NULL);
        t->async = q;
        if (pthread_create(&q->thread, NULL, async_main, t) != 0) {
            t->async = NULL;
            pthread_cond_destroy(&q->idle);
            pthread_cond_destroy(&q->cv);
            pthread_mutex_destroy(&q->mu);
            free(q);
            pthread_mutex_unlock(&async_start_mu);
            return eddyi_error(err, EDDY_ENOMEM,
                               "cannot start the publishing thread");
        }
    }
    *out = t->async;
    pthread_mutex_unlock(&async_start_mu);
    return EDDY_OK;
}

static void async_queue_free(eddy_transport *t)
{
    eddyi_async_queue *q = t->async;
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    q->deadline_ms = eddyi_transport_now_ms() + t->opts.timeout_ms;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->idle);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    t->async = NULL;
}

int eddy_transport_publish_async(eddy_transport *t, const eddy_event *ev,
                                 eddy_publish_done_fn done, void *user,
                                 eddy_error *err)
{
    if (!t || !ev)
        return eddyi_error(err, EDDY_EINVAL, "publish: NULL %s",
                           t ? "event" : "transport");
    char topic[512];
    int rc = event_topic(t, ev, topic, sizeof topic, err);
    if (rc != EDDY_OK)
        return rc;
    if (t->ops->publish_async)
        return t->ops->publish_async(t, ev, topic, done, user, err);
    eddyi_async_queue *q = NULL;
    if ((rc = async_queue_get(t, &q, err)) != EDDY_OK)
        return rc;
    async_item *it = calloc(1, sizeof *it);
    if (!it)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    it->ev = eddy_event_ref((eddy_event *)ev);
    it->done = done;
    it->user = user;
    pthread_mutex_lock(&q->mu);
    /* With the BUFFER policy the queue is the disconnected buffer: its
     * bound is buffer_max. */
    size_t bound = t->opts.disconnected == EDDY_DISCONNECTED_BUFFER
                       ? t->opts.buffer_max
                       : ASYNC_QUEUE_MAX;
    if (q->stop || q->queued >= bound) {
        bool stopping = q->stop;
        pthread_mutex_unlock(&q->mu);
        eddy_event_unref(it->ev);
        free(it);
        return stopping ? eddyi_error(err, EDDY_ESTOPPED, "transport closing")
                        : eddyi_error(err, EDDY_EFULL,
                                      "%zu asynchronous publishes pending",
                                      bound);
    }
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->queued++;
    q->pending++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return EDDY_OK;
}

int eddy_transport_flush(eddy_transport *t, int timeout_ms, eddy_error *err)
{
    if (!t)
        return eddyi_error(err, EDDY_EINVAL, "flush: NULL transport");
    if (t->ops->flush)
        return t->ops->flush(t, timeout_ms, err);
    pthread_mutex_lock(&async_start_mu);
    eddyi_async_queue *q = t->async;
    pthread_mutex_unlock(&async_start_mu);
    if (!q)
        return EDDY_OK;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = EDDY_OK;
    pthread_mutex_lock(&q->mu);
    while (q->pending) {
        if (pthread_cond_timedwait(&q->idle, &q->mu, &until) == ETIMEDOUT) {
            rc = eddyi_error(err, EDDY_ETIMEDOUT,
                             "flush: %zu publishes still pending after %d ms",
                             q->pending, timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* ---- subscribing ----------------------------------------------------------- */

static void sub_release(eddy_transport_subscription *sub)
{
    if (!sub)
        return;
    for (size_t i = 0; i < sub->ntopics; i++) {
        if (sub->types)
            free(sub->types[i]);
        if (sub->topics)
            free(sub->topics[i]);
    }
    free(sub->types);
    free(sub->topics);
    free(sub->group);
    free(sub->consumer);
    pthread_mutex_destroy(&sub->down_mu);
    free(sub);
}

int eddy_transport_subscribe(eddy_transport *t,
                             const eddy_transport_subscription_options *o,
                             eddy_transport_subscription **out, eddy_error *err)
{
    if (!t || !o || !out)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: NULL argument");
    *out = NULL;
    if (!o->types || o->type_count == 0)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: no event types");
    if (!o->handler)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: no handler");
    if (o->ack_wait_ms < 0)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: negative ack_wait_ms");
    if (o->start_from != EDDY_START_BEGINNING && o->start_from != EDDY_START_END)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: unknown start_from %d",
                           (int)o->start_from);
    eddy_retry_policy retry;
    if (eddyi_retry_resolve(&o->retry, &retry, "subscribe", err) != EDDY_OK)
        return EDDY_EINVAL;
    if (o->group && !*o->group)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: empty group name");
    if (o->consumer && !*o->consumer)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: empty consumer name");
    for (size_t i = 0; i < o->type_count; i++)
        if (!o->types[i] || !*o->types[i])
            return eddyi_error(err, EDDY_EINVAL,
                               "subscribe: type %zu is NULL or empty", i);
    int rc = EDDY_ENOMEM;
    eddy_transport_subscription *sub = calloc(1, sizeof *sub);
    if (!sub)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    sub->t = t;
    sub->o = *o;
    pthread_mutex_init(&sub->down_mu, NULL);
    sub->types = calloc(o->type_count, sizeof *sub->types);
    sub->topics = calloc(o->type_count, sizeof *sub->topics);
    if (!sub->types || !sub->topics)
        goto fail_mem;
    sub->ntopics = o->type_count;
    for (size_t i = 0; i < o->type_count; i++) {
        size_t n = strlen(t->prefix) + strlen(o->types[i]) + 1;
        sub->types[i] = eddyi_strdup(o->types[i]);
        sub->topics[i] = malloc(n);
        if (!sub->types[i] || !sub->topics[i])
            goto fail_mem;
        snprintf(sub->topics[i], n, "%s%s", t->prefix, o->types[i]);
    }
    sub->group = eddyi_strdup(o->group ? o->group : EDDY_TRANSPORT_DEFAULT_GROUP);
    if (o->consumer) {
        sub->consumer = eddyi_strdup(o->consumer);
    } else {
        char host[128] = "host", id[EDDY_UUID_STRLEN], name[256];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        eddy_uuid7(id);
        snprintf(name, sizeof name, "%s-%ld-%s", host, (long)getpid(), id + 24);
        sub->consumer = eddyi_strdup(name);
    }
    if (!sub->group || !sub->consumer)
        goto fail_mem;
    sub->o.types = (const char *const *)sub->types;
    sub->o.group = sub->group;
    sub->o.consumer = sub->consumer;
    if (!sub->o.ack_wait_ms)
        sub->o.ack_wait_ms = EDDY_TRANSPORT_DEFAULT_ACK_WAIT_MS;
    sub->o.retry = retry;
    sub->rng = (uint64_t)eddyi_clock_ns() | 1;
    if (!sub->o.batch)
        sub->o.batch = 64;
    rc = t->ops->subscribe(sub, err);
    if (rc != EDDY_OK)
        goto fail;
    *out = sub;
    return EDDY_OK;
fail_mem:
    eddyi_error(err, EDDY_ENOMEM, "out of memory subscribing");
fail:
    sub_release(sub);
    return rc;
}

int eddy_transport_subscription_stop(eddy_transport_subscription *sub, eddy_error *err)
{
    if (!sub)
        return eddyi_error(err, EDDY_EINVAL, "sub_stop: NULL subscription");
    if (!sub->stopped) {
        sub->stopped = true;
        sub->t->ops->sub_stop(sub);
    }
    return EDDY_OK;
}

void eddy_transport_subscription_free(eddy_transport_subscription *sub)
{
    if (!sub)
        return;
    eddy_transport_subscription_stop(sub, NULL);
    sub->t->ops->sub_free(sub);
    sub_release(sub);
}

void eddy_transport_subscription_stats_get(const eddy_transport_subscription *sub,
                                  eddy_transport_subscription_stats *out)
{
    eddy_transport_subscription *s = (eddy_transport_subscription *)sub;
    out->delivered = atomic_load(&s->delivered);
    out->acked = atomic_load(&s->acked);
    out->nacked = atomic_load(&s->nacked);
    out->dead_lettered = atomic_load(&s->dead_lettered);
    out->reconnects = atomic_load(&s->reconnects);
}

void eddyi_transport_sub_reconnected(eddy_transport_subscription *sub)
{
    atomic_fetch_add(&sub->reconnects, 1);
}

int64_t eddy_transport_subscription_down_since(const eddy_transport_subscription *sub,
                                      char *why, size_t why_size)
{
    eddy_transport_subscription *s = (eddy_transport_subscription *)sub;
    if (why && why_size > 0)
        why[0] = '\0';
    if (!s)
        return 0;
    pthread_mutex_lock(&s->down_mu);
    int64_t since = atomic_load(&s->down_since_us);
    if (since && why && why_size > 0)
        snprintf(why, why_size, "%s", s->down_reason);
    pthread_mutex_unlock(&s->down_mu);
    return since;
}

void eddyi_transport_sub_lost(eddy_transport_subscription *sub, const char *why)
{
    pthread_mutex_lock(&sub->down_mu);
    snprintf(sub->down_reason, sizeof sub->down_reason, "%s",
             why && *why ? why : "connection lost");
    if (atomic_load(&sub->down_since_us) == 0)
        atomic_store(&sub->down_since_us, eddy_now_us());
    pthread_mutex_unlock(&sub->down_mu);
}

void eddyi_transport_sub_alive(eddy_transport_subscription *sub)
{
    if (atomic_load(&sub->down_since_us) == 0)
        return;
    pthread_mutex_lock(&sub->down_mu);
    atomic_store(&sub->down_since_us, 0);
    sub->down_reason[0] = '\0';
    pthread_mutex_unlock(&sub->down_mu);
}

/* ---- dispatch ---------------------------------------------------------------- */

enum { DECIDE_NONE, DECIDE_ACK, DECIDE_NACK };

struct eddy_delivery {
    eddy_transport_subscription *sub;
    uint32_t attempt;
    const char *topic;
    int decision;
    int delay_ms;
};

void eddy_delivery_ack(eddy_delivery *d)
{
    if (d && d->decision == DECIDE_NONE)
        d->decision = DECIDE_ACK;
}

void eddy_delivery_nack(eddy_delivery *d, int delay_ms)
{
    if (d && d->decision == DECIDE_NONE) {
        d->decision = DECIDE_NACK;
        d->delay_ms = delay_ms < 0 ? 0 : delay_ms;
    }
}

uint32_t eddy_delivery_attempt(const eddy_delivery *d)
{
    return d ? d->attempt : 0;
}

eddy_transport_subscription *eddyi_delivery_sub(eddy_delivery *d)
{
    return d->sub;
}

const char *eddy_delivery_topic(const eddy_delivery *d)
{
    return d ? d->topic : NULL;
}

void eddyi_transport_dead_letter(eddy_transport_subscription *sub,
                                 const eddy_event *ev, const char *raw,
                                 size_t raw_len, const char *topic,
                                 const char *reason, uint32_t attempt)
{
    atomic_fetch_add(&sub->dead_lettered, 1);
    if (sub->o.dead_letter) {
        eddy_transport_dead_letter dl = {
            .event = ev, .raw = raw, .raw_len = raw_len, .topic = topic,
            .reason = reason, .deliveries = attempt ? attempt : 1,
        };
        sub->o.dead_letter(&dl, sub->o.user);
    } else {
        EDDYI_LOG(EDDY_LOG_WARN, "transport",
                  "%s: dead letter from %s (group %s): %s", topic,
                  ev ? eddy_event_id(ev) : "undecodable message", sub->group,
                  reason);
    }
}

eddy_event *eddyi_transport_decode(eddy_transport_subscription *sub, const char *raw,
                                   size_t len, const char *topic,
                                   uint32_t attempt)
{
    char reason[EDDY_ERROR_MESSAGE_MAX + 64];
    size_t limit = sub->t->opts.max_message_bytes;
    if (len > limit) {
        snprintf(reason, sizeof reason, "oversized: %zu bytes, limit %zu", len,
                 limit);
        eddyi_transport_dead_letter(sub, NULL, raw, len, topic, reason, attempt);
        return NULL;
    }
    eddy_error e = {0};
    eddy_event *ev = raw ? eddy_event_decode(raw, len, &e) : NULL;
    if (!ev) {
        snprintf(reason, sizeof reason, "malformed: %s",
                 raw ? e.message : "no event field");
        eddyi_transport_dead_letter(sub, NULL, raw, len, topic, reason, attempt);
    }
    return ev;
}

eddyi_settle eddyi_transport_dispatch(eddy_transport_subscription *sub,
                                      const eddy_event *ev, const char *topic,
                                      uint32_t attempt, const char *raw,
                                      size_t raw_len, int *delay_ms)
{
    char reason[128];
    uint32_t max = sub->o.retry.max_attempts;
    *delay_ms = 0;
    if (attempt > max) {
        snprintf(reason, sizeof reason,
                 "delivered %u times, retry.max_attempts is %u", attempt, max);
        eddyi_transport_dead_letter(sub, ev, raw, raw_len, topic, reason,
                                    attempt);
        return EDDYI_SETTLE_ACK;
    }
    eddy_delivery d = {.sub = sub, .attempt = attempt, .topic = topic};
    atomic_fetch_add(&sub->delivered, 1);
    int rc = sub->o.handler(&d, ev, sub->o.user);
    if (d.decision == DECIDE_NONE) {
        if (rc == 0) {
            d.decision = DECIDE_ACK;
        } else {
            d.decision = DECIDE_NACK;
            d.delay_ms = (int)(eddyi_retry_delay_us(&sub->o.retry, attempt,
                                                    &sub->rng) / 1000);
        }
    }
    if (d.decision == DECIDE_ACK) {
        atomic_fetch_add(&sub->acked, 1);
        return EDDYI_SETTLE_ACK;
    }
    atomic_fetch_add(&sub->nacked, 1);
    if (rc != 0 && attempt < max && !eddyi_retry_again(&sub->o.retry, rc, attempt)) {
        snprintf(reason, sizeof reason, "handler failed: %s (%d), not retryable",
                 eddy_strerror(rc), rc);
        eddyi_transport_dead_letter(sub, ev, raw, raw_len, topic, reason,
                                    attempt);
        return EDDYI_SETTLE_ACK;
    }
    if (attempt >= max) {
        if (rc != 0)
            snprintf(reason, sizeof reason, "handler failed %u times: %s (%d)",
                     attempt, eddy_strerror(rc), rc);
        else
            snprintf(reason, sizeof reason, "handler refused it %u times",
                     attempt);
        eddyi_transport_dead_letter(sub, ev, raw, raw_len, topic, reason,
                                    attempt);
        return EDDYI_SETTLE_ACK;
    }
    *delay_ms = d.delay_ms;
    return EDDYI_SETTLE_NACK;
}

/* ---- the outbox publisher ----------------------------------------------------- */

static int transport_publisher_publish(void *self, const eddy_event *ev,
                                       const char *destination,
                                       eddy_error *err)
{
    return eddy_transport_publish(self, ev, err);
}

eddy_publisher eddy_transport_publisher(eddy_transport *t)
{
    eddy_publisher p = {.publish = transport_publisher_publish, .close = NULL,
                        .self = t};
    return p;
}

/* ---- info ------------------------------------------------------------------ */

ssize_t eddyi_info_topic(eddy_transport_info *info, const char *name,
                         int64_t messages, int partitions)
{
    eddy_transport_topic_info *topics =
        realloc(info->topics, (info->topic_count + 1) * sizeof *topics);
    if (!topics)
        return -1;
    info->topics = topics;
    eddy_transport_topic_info *ti = &topics[info->topic_count];
    memset(ti, 0, sizeof *ti);
    if (!(ti->name = eddyi_strdup(name)))
        return -1;
    ti->messages = messages;
    ti->partitions = partitions;
    return (ssize_t)info->topic_count++;
}

int eddyi_info_group(eddy_transport_info *info, size_t topic_i,
                     const char *name, int64_t consumers, int64_t pending,
                     int64_t lag)
{
    eddy_transport_topic_info *ti = &info->topics[topic_i];
    eddy_transport_group_info *groups =
        realloc(ti->groups, (ti->group_count + 1) * sizeof *groups);
    if (!groups)
        return -1;
    ti->groups = groups;
    eddy_transport_group_info *g = &groups[ti->group_count];
    if (!(g->name = eddyi_strdup(name)))
        return -1;
    g->consumers = consumers;
    g->pending = pending;
    g->lag = lag;
    ti->group_count++;
    return 0;
}

bool eddyi_info_group_wanted(const char *group, const char *const *groups,
                             size_t ngroups)
{
    if (!ngroups)
        return true;
    for (size_t i = 0; i < ngroups; i++)
        if (strcmp(groups[i], group) == 0)
            return true;
    return false;
}

static int topic_cmp(const void *a, const void *b)
{
    const eddy_transport_topic_info *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int group_cmp(const void *a, const void *b)
{
    const eddy_transport_group_info *x = a, *y = b;
    return strcmp(x->name, y->name);
}

void eddy_transport_info_free(eddy_transport_info *info)
{
    if (!info)
        return;
    for (size_t i = 0; i < info->topic_count; i++) {
        for (size_t k = 0; k < info->topics[i].group_count; k++)
            free((char *)info->topics[i].groups[k].name);
        free(info->topics[i].groups);
        free((char *)info->topics[i].name);
    }
    free(info->topics);
    free((char *)info->note);
    free((char *)info->url);
    free(info);
}

int eddy_transport_info_get(eddy_transport *t, const char *const *groups,
                            size_t ngroups, eddy_transport_info **out,
                            eddy_error *err)
{
    if (!t || !out || (ngroups && !groups))
        return eddyi_error(err, EDDY_EINVAL, "transport info: NULL argument");
    *out = NULL;
    for (size_t i = 0; i < ngroups; i++)
        if (!groups[i] || !*groups[i])
            return eddyi_error(err, EDDY_EINVAL, "transport info: group %zu "
                               "is NULL or empty", i);
    eddy_transport_info *info = calloc(1, sizeof *info);
    if (!info || !(info->url = eddyi_strdup(t->shown))) {
        free(info);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    info->engine = t->ops->engine;
    int rc = t->ops->info(t, groups, ngroups, info, err);
    if (rc != EDDY_OK) {
        eddy_transport_info_free(info);
        return rc;
    }
    if (info->topic_count)
        qsort(info->topics, info->topic_count, sizeof *info->topics, topic_cmp);
    for (size_t i = 0; i < info->topic_count; i++)
        if (info->topics[i].group_count)
            qsort(info->topics[i].groups, info->topics[i].group_count,
                  sizeof *info->topics[i].groups, group_cmp);
    *out = info;
    return EDDY_OK;
}
