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
#include "transport/transport_impl.h"

/* The engines, by URL scheme. */
static const eddyi_transport_ops *const transport_backends[] = {
    &eddyi_transport_mem_ops,
    &eddyi_transport_kafka_ops,
    &eddyi_transport_nats_ops,
    &eddyi_transport_redis_ops,
};

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

/* ---- URL ----------------------------------------------------------------- */

static void url_free(eddyi_url *u)
{
    free(u->scheme);
    free(u->authority);
    free(u->path);
    for (size_t i = 0; i < u->nparams; i++) {
        free(u->keys[i]);
        free(u->values[i]);
    }
    free(u->keys);
    free(u->values);
    memset(u, 0, sizeof *u);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes `len` bytes of `s` into a new string; NULL if malformed
 * (EINVAL) or out of memory (ENOMEM), told apart by `*code`. */
static char *pct_decode(const char *s, size_t len, int *code)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out) {
        *code = EDDY_ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                *code = EDDY_EINVAL;
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static char *strndup_checked(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int url_parse(const char *text, eddyi_url *u, eddy_error *err)
{
    memset(u, 0, sizeof *u);
    const char *colon = strchr(text, ':');
    if (!colon || colon == text)
        return eddyi_error(err, EDDY_EINVAL,
                           "transport URL \"%s\": no scheme (expected "
                           "mem:, redis://, kafka:// or nats://)", text);
    for (const char *p = text; p < colon; p++)
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return eddyi_error(err, EDDY_EINVAL,
                               "transport URL \"%s\": invalid scheme", text);
    int code = EDDY_ENOMEM;
    u->scheme = strndup_checked(text, (size_t)(colon - text));
    if (!u->scheme)
        goto fail;
    for (char *p = u->scheme; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *rest = colon + 1;
    const char *q = strchr(rest, '?');
    const char *end = q ? q : rest + strlen(rest);
    if (rest[0] == '/' && rest[1] == '/') {
        rest += 2;
        const char *slash = memchr(rest, '/', (size_t)(end - rest));
        const char *aend = slash ? slash : end;
        u->authority = strndup_checked(rest, (size_t)(aend - rest));
        u->path = strndup_checked(aend, (size_t)(end - aend));
    } else {
        u->authority = strndup_checked("", 0);
        u->path = strndup_checked(rest, (size_t)(end - rest));
    }
    if (!u->authority || !u->path)
        goto fail;
    if (q && q[1]) {
        size_t n = 1;
        for (const char *p = q + 1; *p; p++)
            n += *p == '&';
        u->keys = calloc(n, sizeof *u->keys);
        u->values = calloc(n, sizeof *u->values);
        if (!u->keys || !u->values)
            goto fail;
        const char *p = q + 1;
        while (*p) {
            const char *amp = strchr(p, '&');
            const char *pend = amp ? amp : p + strlen(p);
            if (pend > p) {
                const char *eq = memchr(p, '=', (size_t)(pend - p));
                if (!eq || eq == p) {
                    code = eddyi_error(err, EDDY_EINVAL,
                                       "transport URL \"%s\": query "
                                       "parameter \"%.*s\" is not key=value",
                                       text, (int)(pend - p), p);
                    goto fail_set;
                }
                u->keys[u->nparams] = pct_decode(p, (size_t)(eq - p), &code);
                if (!u->keys[u->nparams])
                    goto fail;
                u->values[u->nparams] =
                    pct_decode(eq + 1, (size_t)(pend - eq - 1), &code);
                u->nparams++;
                if (!u->values[u->nparams - 1])
                    goto fail;
            }
            p = amp ? amp + 1 : pend;
        }
    }
    return EDDY_OK;
fail:
    if (code == EDDY_EINVAL)
        eddyi_error(err, code, "transport URL \"%s\": bad percent-escape",
                    text);
    else
        eddyi_error(err, code, "out of memory parsing transport URL");
fail_set:
    url_free(u);
    return code;
}

const char *eddyi_url_param(const eddy_transport *t, const char *key)
{
    for (size_t i = 0; i < t->url.nparams; i++)
        if (strcmp(t->url.keys[i], key) == 0)
            return t->url.values[i];
    return NULL;
}

/* ---- open / close --------------------------------------------------------- */

eddy_transport *eddy_transport_open(const char *url,
                                    const eddy_transport_options *opts,
                                    eddy_error *err)
{
    if (!url) {
        eddyi_error(err, EDDY_EINVAL, "transport URL is NULL");
        return NULL;
    }
    eddy_transport *t = calloc(1, sizeof *t);
    if (!t) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory opening a transport");
        return NULL;
    }
    if (url_parse(url, &t->url, err) != EDDY_OK)
        goto fail;
    for (size_t i = 0;
         i < sizeof transport_backends / sizeof transport_backends[0]; i++)
        if (strcmp(transport_backends[i]->engine, t->url.scheme) == 0)
            t->ops = transport_backends[i];
    if (!t->ops) {
        eddyi_error(err, EDDY_EINVAL,
                    "transport URL \"%s\": unknown scheme \"%s\" (expected "
                    "mem, redis, kafka or nats)", url, t->url.scheme);
        goto fail;
    }
    if (opts)
        t->opts = *opts;
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
    if (t->ops->open(t, err) != EDDY_OK)
        goto fail;
    return t;
fail:
    url_free(&t->url);
    free(t->prefix);
    free(t);
    return NULL;
}

static void async_queue_free(eddy_transport *t);

void eddy_transport_close(eddy_transport *t)
{
    if (!t)
        return;
    async_queue_free(t);
    t->ops->close(t);
    url_free(&t->url);
    free(t->prefix);
    free(t);
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

static void sub_release(eddy_transport_sub *sub)
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
    free(sub);
}

int eddy_transport_subscribe(eddy_transport *t,
                             const eddy_transport_sub_options *o,
                             eddy_transport_sub **out, eddy_error *err)
{
    if (!t || !o || !out)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: NULL argument");
    *out = NULL;
    if (!o->types || o->type_count == 0)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: no event types");
    if (!o->handler)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: no handler");
    if (o->ack_wait_ms < 0 || o->max_deliveries < 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "subscribe: negative ack_wait_ms or max_deliveries");
    if (o->group && !*o->group)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: empty group name");
    if (o->consumer && !*o->consumer)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: empty consumer name");
    for (size_t i = 0; i < o->type_count; i++)
        if (!o->types[i] || !*o->types[i])
            return eddyi_error(err, EDDY_EINVAL,
                               "subscribe: type %zu is NULL or empty", i);
    int rc = EDDY_ENOMEM;
    eddy_transport_sub *sub = calloc(1, sizeof *sub);
    if (!sub)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    sub->t = t;
    sub->o = *o;
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
    if (!sub->o.max_deliveries)
        sub->o.max_deliveries = EDDY_TRANSPORT_DEFAULT_MAX_DELIVERIES;
    if (!sub->o.nack_delay_ms)
        sub->o.nack_delay_ms = EDDY_TRANSPORT_DEFAULT_NACK_DELAY_MS;
    else if (sub->o.nack_delay_ms < 0)
        sub->o.nack_delay_ms = 0;
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

int eddy_transport_sub_stop(eddy_transport_sub *sub, eddy_error *err)
{
    if (!sub)
        return eddyi_error(err, EDDY_EINVAL, "sub_stop: NULL subscription");
    if (!sub->stopped) {
        sub->stopped = true;
        sub->t->ops->sub_stop(sub);
    }
    return EDDY_OK;
}

void eddy_transport_sub_free(eddy_transport_sub *sub)
{
    if (!sub)
        return;
    eddy_transport_sub_stop(sub, NULL);
    sub->t->ops->sub_free(sub);
    sub_release(sub);
}

void eddy_transport_sub_stats_get(const eddy_transport_sub *sub,
                                  eddy_transport_sub_stats *out)
{
    eddy_transport_sub *s = (eddy_transport_sub *)sub;
    out->delivered = atomic_load(&s->delivered);
    out->acked = atomic_load(&s->acked);
    out->nacked = atomic_load(&s->nacked);
    out->dead_lettered = atomic_load(&s->dead_lettered);
    out->reconnects = atomic_load(&s->reconnects);
}

void eddyi_transport_sub_reconnected(eddy_transport_sub *sub)
{
    atomic_fetch_add(&sub->reconnects, 1);
}

/* ---- dispatch ---------------------------------------------------------------- */

enum { DECIDE_NONE, DECIDE_ACK, DECIDE_NACK };

struct eddy_delivery {
    eddy_transport_sub *sub;
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

eddy_transport_sub *eddyi_delivery_sub(eddy_delivery *d)
{
    return d->sub;
}

const char *eddy_delivery_topic(const eddy_delivery *d)
{
    return d ? d->topic : NULL;
}

void eddyi_transport_dead_letter(eddy_transport_sub *sub,
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

eddy_event *eddyi_transport_decode(eddy_transport_sub *sub, const char *raw,
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

eddyi_settle eddyi_transport_dispatch(eddy_transport_sub *sub,
                                      const eddy_event *ev, const char *topic,
                                      uint32_t attempt, const char *raw,
                                      size_t raw_len, int *delay_ms)
{
    char reason[128];
    uint32_t max = (uint32_t)sub->o.max_deliveries;
    *delay_ms = 0;
    if (attempt > max) {
        snprintf(reason, sizeof reason,
                 "delivered %u times, max_deliveries is %u", attempt, max);
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
            d.delay_ms = sub->o.nack_delay_ms;
        }
    }
    if (d.decision == DECIDE_ACK) {
        atomic_fetch_add(&sub->acked, 1);
        return EDDYI_SETTLE_ACK;
    }
    atomic_fetch_add(&sub->nacked, 1);
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
