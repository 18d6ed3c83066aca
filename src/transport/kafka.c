/*
 * src/transport/kafka.c - the Kafka transport, through librdkafka.
 *
 * URL: kafka://HOST:PORT[,HOST:PORT...][?property=value&...]; every query
 * parameter is a librdkafka configuration property, set after eddy's own
 * defaults so it overrides them ("kafka://h:9092?linger.ms=0").
 *
 * Publishing: one idempotent producer per transport (enable.idempotence:
 * acks=all, no duplicates or reordering from its retries). The event goes
 * in CloudEvents binary mode (ce_* headers, data as the value), keyed by
 * its subject, so one aggregate is one partition. A delivery report ends
 * every publish: the synchronous publish waits for it, the asynchronous one
 * calls its callback from it. message.timeout.ms is the transport's
 * timeout_ms, so a broker that stays away makes a publish fail with
 * EDDY_ETIMEDOUT instead of waiting forever; until then librdkafka keeps the
 * message in its queue and retries it across reconnections. The queue holds
 * at most buffer_max messages: a publish that finds it full waits for room
 * (RD_KAFKA_MSG_F_BLOCK), which comes as messages are acknowledged or time
 * out, so at most about timeout_ms. A thread per transport serves the
 * delivery reports (rd_kafka_poll).
 *
 * Consuming: one consumer (its own rd_kafka_t) per subscription, in the
 * group `group`, with a thread that polls it and handles one message at a
 * time. Offsets are stored (rd_kafka_offset_store) only once the handler
 * acknowledged the message or it was dead-lettered, and committed from the
 * stored offsets (auto commit every second, on a rebalance and on close):
 * a message is never committed before its handler succeeded. A nack blocks
 * its partition: the same message is handled again after the nack delay
 * (keeping per-key order), up to retry.max_attempts, then dead-lettered.
 *
 * Delivery counts: Kafka keeps none, so before each attempt the member
 * commits the message's own offset (not the next one: it is not done) with
 * the metadata "eddy-attempts=N" (an asynchronous commit). A member that
 * is assigned the partition later reads the committed offset and its
 * metadata, and numbers its delivery of that message N + 1. A commit lost
 * in a crash makes the count low by one, never the message lost.
 *
 * ack_wait_ms: a member whose handler has not returned after ack_wait_ms
 * (at least 6 s) leaves the group (max.poll.interval.ms); a member whose
 * process died is dropped by the broker after session.timeout.ms (6 s, the
 * brokers' usual minimum; ?session.timeout.ms= in the URL overrides it).
 * Its partitions go to the other members, which resume from the last
 * committed offset.
 *
 * Security is librdkafka's own: security.protocol, sasl.*, ssl.* come from
 * the URL's query or the configuration file unchanged; user:password@ (or
 * user= / password= / password_file= / password_env=) become sasl.username
 * and sasl.password, with sasl.mechanism=PLAIN and
 * security.protocol=sasl_ssl unless given. Open waits for the first broker
 * in 50 ms slices and serves librdkafka's error callback between them, so
 * a refused SASL login or an untrusted certificate (errors librdkafka
 * reports as soon as the handshake fails, then retries forever) fails open
 * one slice after the handshake, named as such, instead of after
 * connect_timeout_ms as "no broker answered".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "core/internal.h"
#include "transport/ce_binary.h"
#include "transport/transport_impl.h"

#define KAFKA_HEADER_PREFIX "ce_"
#define KAFKA_TYPES_HEADER "eddy_types"
#define KAFKA_ATTEMPTS_META "eddy-attempts="
#define KAFKA_MAX_MARKS 256
#define KAFKA_POLL_MS 100

/* One publish in flight; the delivery report settles it. */
typedef struct kafka_pending {
    eddy_event *ev;
    eddy_publish_done_fn done;
    void *user;
    bool sync;
    /* synchronous publish: the waiter and the reporter share these under
     * kafka_state.mu; the last of the two frees the record */
    bool finished;
    bool abandoned;
    int rc;
    char message[EDDY_ERROR_MESSAGE_MAX];
} kafka_pending;

typedef struct kafka_state {
    rd_kafka_t *producer;
    pthread_t poller;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* a synchronous publish finished; inflight moved */
    size_t inflight;     /* asynchronous publishes not yet reported */
    /* the first authentication or TLS error seen while opening (the error
     * callback, under mu) */
    int open_error;      /* rd_kafka_resp_err_t; 0: none */
    char open_reason[512];
    char user[128];      /* sasl.username, for messages; "" if none */
    char mechanism[32];  /* sasl.mechanism */
} kafka_state;

/* A delivery count found in the group's committed offset of a partition:
 * the message at `offset` was delivered `attempts` times already. */
typedef struct kafka_mark {
    char *topic;
    int32_t partition;
    int64_t offset;
    uint32_t attempts;
} kafka_mark;

typedef struct kafka_sub {
    rd_kafka_t *rk;
    kafka_mark marks[KAFKA_MAX_MARKS]; /* only the subscription's thread */
    size_t nmarks;
    eddy_transport_subscription *sub;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool assigned;       /* the first rebalance gave this member its share */
    bool go;             /* subscribe returned: the handler may run */
} kafka_sub;

/* ---- configuration -------------------------------------------------------- */

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    eddy_log_level l = level <= 3   ? EDDY_LOG_ERROR
                       : level == 4 ? EDDY_LOG_WARN
                       : level <= 6 ? EDDY_LOG_INFO
                                    : EDDY_LOG_DEBUG;
    EDDYI_LOG(l, "kafka", "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                    eddy_error *err)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        /* librdkafka's own message may quote the value: not for a
         * secret. */
        bool secret = eddyi_url_key_secret(key);
        return eddyi_error(err, EDDY_EINVAL, "kafka property %s=%s: %s", key,
                           secret ? "***" : value,
                           secret ? "refused by librdkafka" : errstr);
    }
    return EDDY_OK;
}

static bool url_has(const eddy_transport *t, const char *key)
{
    return eddyi_url_param(t, key) != NULL;
}

static int conf_set_int(rd_kafka_conf_t *conf, const char *key, long long v,
                        eddy_error *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return conf_set(conf, key, buf, err);
}

/* A configuration with the brokers, eddy's settings shared by producer and
 * consumer, then the URL's properties. NULL with `err` on failure. */
static int kafka_conf(const eddy_transport *t, const char *client_id,
                      rd_kafka_conf_t **out, eddy_error *err)
{
    const eddy_transport_options *o = &t->opts;
    int rc;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory configuring kafka");
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    if ((rc = conf_set(conf, "bootstrap.servers", t->url.authority, err)) ||
        (rc = conf_set(conf, "client.id", client_id, err)) ||
        (rc = conf_set_int(conf, "socket.connection.setup.timeout.ms",
                           o->connect_timeout_ms < 1000 ? 1000
                                                        : o->connect_timeout_ms,
                           err)) ||
        (rc = conf_set_int(conf, "reconnect.backoff.ms",
                           o->reconnect_initial_ms, err)) ||
        (rc = conf_set_int(conf, "reconnect.backoff.max.ms",
                           o->reconnect_max_ms, err)))
        goto fail;
    /* Room for the largest event plus headers and framing. */
    if (o->max_message_bytes + 65536 > 1000000 &&
        (rc = conf_set_int(conf, "message.max.bytes",
                           (long long)o->max_message_bytes + 65536, err)))
        goto fail;
    /* user:password@ is a SASL login; a password never goes in the clear
     * unless the URL says security.protocol=sasl_plaintext. */
    if (t->url.user && (rc = conf_set(conf, "sasl.username", t->url.user, err)))
        goto fail;
    if (t->url.password &&
        (rc = conf_set(conf, "sasl.password", t->url.password, err)))
        goto fail;
    if (t->url.user || t->url.password) {
        if (!url_has(t, "sasl.mechanism") && !url_has(t, "sasl.mechanisms") &&
            (rc = conf_set(conf, "sasl.mechanism", "PLAIN", err)))
            goto fail;
        if (!url_has(t, "security.protocol") &&
            (rc = conf_set(conf, "security.protocol", "sasl_ssl", err)))
            goto fail;
    }
    for (size_t i = 0; i < t->url.nparams; i++)
        if ((rc = conf_set(conf, t->url.keys[i], t->url.values[i], err)))
            goto fail;
    *out = conf;
    return EDDY_OK;
fail:
    rd_kafka_conf_destroy(conf);
    return rc;
}

/* ---- publishing ----------------------------------------------------------- */

static int dr_error(const rd_kafka_message_t *m, const char *id, int timeout_ms,
                    char *msg, size_t size)
{
    const char *why = rd_kafka_err2str(m->err);
    switch (m->err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        snprintf(msg, size, "kafka: event %s not acknowledged within %d ms: %s",
                 id, timeout_ms, why);
        return EDDY_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        snprintf(msg, size, "kafka: transport closed before event %s was "
                 "acknowledged", id);
        return EDDY_ESTOPPED;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        snprintf(msg, size, "kafka: event %s refused as too large: %s", id, why);
        return EDDY_ETOOBIG;
    default:
        snprintf(msg, size, "kafka: event %s refused by the broker: %s", id, why);
        return EDDY_EIO;
    }
}

/* Delivery report, on the poller thread (or in close). */
static void kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    eddy_transport *t = opaque;
    kafka_state *ks = t->state;
    kafka_pending *p = m->_private;
    if (!p)
        return;
    eddy_error e = {0};
    int rc = EDDY_OK;
    if (m->err) {
        rc = dr_error(m, eddy_event_id(p->ev), t->opts.timeout_ms, e.message,
                      sizeof e.message);
        e.code = rc;
    }
    if (p->sync) {
        pthread_mutex_lock(&ks->mu);
        bool abandoned = p->abandoned;
        p->rc = rc;
        memcpy(p->message, e.message, sizeof p->message);
        p->finished = true;
        pthread_cond_broadcast(&ks->cv);
        pthread_mutex_unlock(&ks->mu);
        if (abandoned) {
            eddy_event_unref(p->ev);
            free(p);
        }
        return;
    }
    if (p->done)
        p->done(rc, p->ev, rc == EDDY_OK ? NULL : &e, p->user);
    eddy_event_unref(p->ev);
    free(p);
    pthread_mutex_lock(&ks->mu);
    /* Only a flush waits on `inflight`, and only for zero: waking it for
     * every report would cost a context switch per message. */
    if (--ks->inflight == 0)
        pthread_cond_broadcast(&ks->cv);
    pthread_mutex_unlock(&ks->mu);
}

static bool kafka_auth_error(int e)
{
    return e == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
           e == RD_KAFKA_RESP_ERR__SSL ||
           e == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
}

/* librdkafka's error callback (from rd_kafka_poll: the opening thread, then
 * the poller). While opening, keeps the first authentication or TLS error
 * for open to report; afterwards logs (a password rotated under a running
 * process shows here). librdkafka's reasons name brokers, never
 * secrets. */
static void kafka_error_cb(rd_kafka_t *rk, int e, const char *reason,
                           void *opaque)
{
    eddy_transport *t = opaque;
    kafka_state *ks = t->state;
    if (kafka_auth_error(e)) {
        pthread_mutex_lock(&ks->mu);
        if (!ks->open_error) {
            ks->open_error = e;
            snprintf(ks->open_reason, sizeof ks->open_reason, "%s", reason);
        }
        pthread_mutex_unlock(&ks->mu);
    }
    EDDYI_LOG(kafka_auth_error(e) ? EDDY_LOG_ERROR : EDDY_LOG_WARN, "kafka",
              "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(e), reason);
}

/* The message for an authentication or TLS error seen while opening. */
static int kafka_auth_fail(eddy_transport *t, eddy_error *err)
{
    kafka_state *ks = t->state;
    const char *r = ks->open_reason;
    if (ks->open_error == RD_KAFKA_RESP_ERR__SSL) {
        if (strstr(r, "certificate verify failed") ||
            strstr(r, "could not be verified"))
            return eddyi_error(err, EDDY_ECONNECT, "kafka %s: certificate not "
                               "trusted (ssl.ca.location must name the CA "
                               "that signed the broker's certificate): %s",
                               t->url.authority, r);
        return eddyi_error(err, EDDY_ECONNECT, "kafka %s: TLS handshake "
                           "failed: %s", t->url.authority, r);
    }
    if (ks->open_error == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        ks->open_error == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
        return eddyi_error(err, EDDY_ECONNECT, "kafka %s: user %s is not "
                           "authorized: %s", t->url.authority,
                           ks->user[0] ? ks->user : "(anonymous)", r);
    return eddyi_error(err, EDDY_ECONNECT, "kafka %s: authentication failed "
                       "for user %s (SASL %s): %s", t->url.authority,
                       ks->user[0] ? ks->user : "(none)",
                       ks->mechanism[0] ? ks->mechanism : "?", r);
}

static void *kafka_poller_main(void *arg)
{
    eddyi_thread_name("eddy-kafka-poll");
    kafka_state *ks = arg;
    while (!atomic_load(&ks->stop))
        rd_kafka_poll(ks->producer, KAFKA_POLL_MS);
    return NULL;
}

/* Hands `ev` to librdkafka with `p` as the delivery report's opaque. On an
 * error return nothing was queued and `p` is untouched. */
static int kafka_produce(eddy_transport *t, const eddy_event *ev,
                         const char *topic, kafka_pending *p, eddy_error *err)
{
    kafka_state *ks = t->state;
    eddyi_ce_binary b;
    int rc = eddyi_ce_binary_encode(ev, KAFKA_HEADER_PREFIX, KAFKA_TYPES_HEADER,
                                    false, &b, err);
    if (rc != EDDY_OK)
        return rc;
    const char *key = eddyi_transport_key(ev);
    size_t size = eddyi_ce_binary_size(&b) + strlen(key);
    if (size > t->opts.max_message_bytes) {
        rc = eddyi_error(err, EDDY_ETOOBIG, "event %s is %zu bytes, the limit "
                         "is %zu", eddy_event_id(ev), size,
                         t->opts.max_message_bytes);
        goto out;
    }
    /* F_BLOCK: while the queue is full, wait for room (the poller thread
     * frees it as reports come in; with no broker, messages time out after
     * timeout_ms and free it too). Never on the poller thread itself (a
     * done callback publishing): it would wait for itself. */
    int block = pthread_equal(pthread_self(), ks->poller) ? 0
                                                          : RD_KAFKA_MSG_F_BLOCK;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(b.count);
    for (size_t i = 0; i < b.count; i++)
        rd_kafka_header_add(hdrs, b.names[i], -1, b.values[i],
                            (ssize_t)strlen(b.values[i]));
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        ks->producer, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(b.payload, b.payload_len),
        RD_KAFKA_V_MSGFLAGS((b.payload ? RD_KAFKA_MSG_F_FREE : 0) | block),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
    if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        b.payload = NULL; /* librdkafka frees it */
        goto out;
    }
    rd_kafka_headers_destroy(hdrs);
    if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rc = eddyi_error(err, EDDY_EFULL, "kafka: producer queue full (%zu "
                         "messages waiting for a broker)", t->opts.buffer_max);
    else if (kerr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        rc = eddyi_error(err, EDDY_ETOOBIG, "kafka: event %s is too large for "
                         "message.max.bytes", eddy_event_id(ev));
    else if (kerr == RD_KAFKA_RESP_ERR__FATAL)
        rc = eddyi_error(err, EDDY_EIO, "kafka: producer failed: %s",
                         rd_kafka_err2str(kerr));
    else
        rc = eddyi_error(err, EDDY_EIO, "kafka: cannot publish event %s to %s: "
                         "%s", eddy_event_id(ev), topic,
                         rd_kafka_err2str(kerr));
out:
    eddyi_ce_binary_clear(&b);
    return rc;
}

static int kafka_publish(eddy_transport *t, const eddy_event *ev,
                         const char *topic, eddy_error *err)
{
    kafka_state *ks = t->state;
    if (atomic_load(&ks->stop))
        return eddyi_error(err, EDDY_ESTOPPED, "kafka: transport closing");
    kafka_pending *p = calloc(1, sizeof *p);
    if (!p)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory publishing");
    p->ev = eddy_event_ref((eddy_event *)ev);
    p->sync = true;
    int rc = kafka_produce(t, ev, topic, p, err);
    if (rc != EDDY_OK) {
        eddy_event_unref(p->ev);
        free(p);
        return rc;
    }
    /* message.timeout.ms bounds the wait; the margin covers the report's
     * trip through the poller. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t wait_ms = (int64_t)t->opts.timeout_ms + 2000;
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ks->mu);
    while (!p->finished)
        if (pthread_cond_timedwait(&ks->cv, &ks->mu, &until) != 0 &&
            !p->finished)
            break;
    bool finished = p->finished;
    if (!finished)
        p->abandoned = true; /* the report frees it */
    pthread_mutex_unlock(&ks->mu);
    if (!finished)
        return eddyi_error(err, EDDY_ETIMEDOUT, "kafka: no delivery report for "
                           "event %s after %lld ms", eddy_event_id(ev),
                           (long long)wait_ms);
    rc = p->rc;
    if (rc != EDDY_OK)
        eddyi_error(err, rc, "%s", p->message);
    eddy_event_unref(p->ev);
    free(p);
    return rc;
}

static int kafka_publish_async(eddy_transport *t, const eddy_event *ev,
                               const char *topic, eddy_publish_done_fn done,
                               void *user, eddy_error *err)
{
    kafka_state *ks = t->state;
    if (atomic_load(&ks->stop))
        return eddyi_error(err, EDDY_ESTOPPED, "kafka: transport closing");
    kafka_pending *p = calloc(1, sizeof *p);
    if (!p)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory publishing");
    p->ev = eddy_event_ref((eddy_event *)ev);
    p->done = done;
    p->user = user;
    pthread_mutex_lock(&ks->mu);
    ks->inflight++;
    pthread_mutex_unlock(&ks->mu);
    int rc = kafka_produce(t, ev, topic, p, err);
    if (rc != EDDY_OK) {
        pthread_mutex_lock(&ks->mu);
        if (--ks->inflight == 0)
            pthread_cond_broadcast(&ks->cv);
        pthread_mutex_unlock(&ks->mu);
        eddy_event_unref(p->ev);
        free(p);
    }
    return rc;
}

static int kafka_flush(eddy_transport *t, int timeout_ms, eddy_error *err)
{
    kafka_state *ks = t->state;
    return eddyi_transport_wait_drained(&ks->mu, &ks->cv, &ks->inflight,
                                        timeout_ms, "kafka", err);
}

/* ---- open / close --------------------------------------------------------- */

static void kafka_state_free(kafka_state *ks)
{
    pthread_cond_destroy(&ks->cv);
    pthread_mutex_destroy(&ks->mu);
    free(ks);
}

static int kafka_open(eddy_transport *t, eddy_error *err)
{
    if (!t->url.authority[0])
        return eddyi_error(err, EDDY_EINVAL, "kafka URL: no broker (expected "
                           "kafka://HOST:PORT[,HOST:PORT...])");
    kafka_state *ks = calloc(1, sizeof *ks);
    if (!ks)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory opening kafka");
    pthread_mutex_init(&ks->mu, NULL);
    pthread_cond_init(&ks->cv, NULL);
    t->state = ks;

    const eddy_transport_options *o = &t->opts;
    int rc;
    rd_kafka_conf_t *conf = NULL;
    if ((rc = kafka_conf(t, "eddy-producer", &conf, err)) != EDDY_OK)
        goto fail;
    /* eddy's producer settings go first, then the URL's again so that
     * they win over these too. */
    long long qmax = o->buffer_max > 10000000 ? 10000000 : (long long)o->buffer_max;
    if ((rc = conf_set(conf, "enable.idempotence", "true", err)) ||
        (rc = conf_set_int(conf, "message.timeout.ms", o->timeout_ms, err)) ||
        (rc = conf_set_int(conf, "queue.buffering.max.messages", qmax, err))) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    for (size_t i = 0; i < t->url.nparams; i++)
        if ((rc = conf_set(conf, t->url.keys[i], t->url.values[i], err))) {
            rd_kafka_conf_destroy(conf);
            goto fail;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_dr_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    rd_kafka_conf_set_opaque(conf, t);
    size_t vlen = sizeof ks->user;
    if (rd_kafka_conf_get(conf, "sasl.username", ks->user, &vlen) !=
        RD_KAFKA_CONF_OK)
        ks->user[0] = '\0';
    vlen = sizeof ks->mechanism;
    if (rd_kafka_conf_get(conf, "sasl.mechanism", ks->mechanism, &vlen) !=
        RD_KAFKA_CONF_OK)
        ks->mechanism[0] = '\0';
    char errstr[512];
    ks->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!ks->producer) {
        rd_kafka_conf_destroy(conf);
        rc = eddyi_error(err, EDDY_EINVAL, "kafka: cannot create producer: %s",
                         errstr);
        goto fail;
    }
    /* Check that a broker answers, so that a wrong address fails here; in
     * slices, serving the error callback between them, so that a refused
     * login or certificate fails at once. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = RD_KAFKA_RESP_ERR__TRANSPORT;
    int64_t deadline = eddyi_transport_now_ms() + o->connect_timeout_ms;
    for (;;) {
        int64_t left = deadline - eddyi_transport_now_ms();
        int64_t began = eddyi_transport_now_ms();
        kerr = rd_kafka_metadata(ks->producer, 0, NULL, &md,
                                 left > 50 ? 50 : left < 1 ? 1 : (int)left);
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (eddyi_transport_now_ms() - began < 20)
            eddyi_transport_sleep_ms(20); /* an answer at once: no spin */
        rd_kafka_poll(ks->producer, 0);
        pthread_mutex_lock(&ks->mu);
        int auth = ks->open_error;
        pthread_mutex_unlock(&ks->mu);
        if (auth) {
            rc = kafka_auth_fail(t, err);
            goto fail;
        }
        if (eddyi_transport_now_ms() >= deadline)
            break;
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = eddyi_error(err, EDDY_ECONNECT, "kafka %s: no broker answered "
                         "within %d ms: %s", t->url.authority,
                         o->connect_timeout_ms, rd_kafka_err2str(kerr));
        goto fail;
    }
    rd_kafka_metadata_destroy(md);
    if (pthread_create(&ks->poller, NULL, kafka_poller_main, ks) != 0) {
        rc = eddyi_error(err, EDDY_ENOMEM, "kafka: cannot start the delivery "
                         "report thread");
        goto fail;
    }
    return EDDY_OK;
fail:
    if (ks->producer)
        rd_kafka_destroy(ks->producer);
    kafka_state_free(ks);
    t->state = NULL;
    return rc;
}

static void kafka_close(eddy_transport *t)
{
    kafka_state *ks = t->state;
    if (!ks)
        return;
    kafka_flush(t, t->opts.timeout_ms, NULL);
    atomic_store(&ks->stop, true);
    pthread_join(ks->poller, NULL);
    /* Whatever is still queued or in flight is reported as purged
     * (EDDY_ESTOPPED) by the polls below. */
    rd_kafka_purge(ks->producer,
                   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = eddyi_transport_now_ms() + 5000;
    while (rd_kafka_outq_len(ks->producer) > 0 &&
           eddyi_transport_now_ms() < deadline)
        rd_kafka_poll(ks->producer, 50);
    rd_kafka_destroy(ks->producer);
    kafka_state_free(ks);
    t->state = NULL;
}

/* ---- consuming ------------------------------------------------------------ */

static void kafka_marks_clear(kafka_sub *ksub)
{
    for (size_t i = 0; i < ksub->nmarks; i++)
        free(ksub->marks[i].topic);
    ksub->nmarks = 0;
}

/* Reads the delivery counts left in the committed offsets of the newly
 * assigned partitions. Best effort: without them counts start at 1. */
static void kafka_marks_load(kafka_sub *ksub,
                             const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
    if (!c)
        return;
    rd_kafka_resp_err_t e = rd_kafka_committed(ksub->rk, c, 5000);
    if (e) {
        EDDYI_LOG(EDDY_LOG_WARN, "kafka", "%s: cannot read committed offsets: "
                  "%s", ksub->sub->consumer, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(c);
        return;
    }
    size_t plen = strlen(KAFKA_ATTEMPTS_META);
    for (int i = 0; i < c->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &c->elems[i];
        char meta[32];
        if (tp->err || tp->offset < 0 || !tp->metadata ||
            tp->metadata_size <= plen || tp->metadata_size >= sizeof meta)
            continue;
        memcpy(meta, tp->metadata, tp->metadata_size);
        meta[tp->metadata_size] = '\0';
        if (strncmp(meta, KAFKA_ATTEMPTS_META, plen) != 0)
            continue;
        long n = strtol(meta + plen, NULL, 10);
        if (n <= 0)
            continue;
        if (ksub->nmarks == KAFKA_MAX_MARKS) {
            free(ksub->marks[0].topic);
            memmove(&ksub->marks[0], &ksub->marks[1],
                    (KAFKA_MAX_MARKS - 1) * sizeof ksub->marks[0]);
            ksub->nmarks--;
        }
        kafka_mark *mk = &ksub->marks[ksub->nmarks];
        mk->topic = eddyi_strdup(tp->topic);
        if (!mk->topic)
            continue;
        mk->partition = tp->partition;
        mk->offset = tp->offset;
        mk->attempts = n > 1000000 ? 1000000 : (uint32_t)n;
        ksub->nmarks++;
    }
    rd_kafka_topic_partition_list_destroy(c);
}

/* Deliveries of `m` made before this member had it (0 if none known). */
static uint32_t kafka_marks_prior(kafka_sub *ksub, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    for (size_t i = 0; i < ksub->nmarks; i++) {
        kafka_mark *mk = &ksub->marks[i];
        if (mk->partition == m->partition && mk->offset == m->offset &&
            strcmp(mk->topic, topic) == 0)
            return mk->attempts;
    }
    return 0;
}

/* Commits `m`'s own offset with "eddy-attempts=N" (asynchronously). */
static void kafka_mark_attempt(kafka_sub *ksub, const rd_kafka_message_t *m,
                               uint32_t attempt)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return;
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(
        l, rd_kafka_topic_name(m->rkt), m->partition);
    char meta[32];
    int n = snprintf(meta, sizeof meta, KAFKA_ATTEMPTS_META "%u", attempt);
    tp->offset = m->offset;
    tp->metadata = malloc((size_t)n);
    if (tp->metadata) {
        memcpy(tp->metadata, meta, (size_t)n);
        tp->metadata_size = (size_t)n;
        rd_kafka_resp_err_t e = rd_kafka_commit(ksub->rk, l, 1);
        if (e)
            EDDYI_LOG(EDDY_LOG_DEBUG, "kafka", "%s: delivery count commit: %s",
                      ksub->sub->consumer, rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t *parts,
                               void *opaque)
{
    kafka_sub *ksub = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kafka_marks_load(ksub, parts);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                EDDYI_LOG(EDDY_LOG_WARN, "kafka", "assign: %s",
                          rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        EDDYI_LOG(EDDY_LOG_DEBUG, "kafka", "%s: %d partitions assigned",
                  ksub->sub->consumer, parts->cnt);
        pthread_mutex_lock(&ksub->mu);
        ksub->assigned = true;
        pthread_cond_broadcast(&ksub->cv);
        pthread_mutex_unlock(&ksub->mu);
    } else {
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
    }
}

/* Marks `m` done for the group: its offset + 1 is committed with the next
 * commit. */
static void kafka_settled(kafka_sub *ksub, const rd_kafka_message_t *m)
{
    rd_kafka_resp_err_t e = rd_kafka_offset_store(m->rkt, m->partition, m->offset);
    if (e)
        EDDYI_LOG(EDDY_LOG_WARN, "kafka", "%s: cannot store offset %lld of "
                  "%s [%d]: %s", ksub->sub->consumer, (long long)m->offset,
                  rd_kafka_topic_name(m->rkt), (int)m->partition,
                  rd_kafka_err2str(e));
}

/* Sleeps `ms`, waking early when the subscription stops. False if it did. */
static bool kafka_wait(kafka_sub *ksub, int ms)
{
    int64_t until = eddyi_transport_now_ms() + ms;
    while (!atomic_load(&ksub->stop)) {
        int64_t left = until - eddyi_transport_now_ms();
        if (left <= 0)
            return true;
        eddyi_transport_sleep_ms(left > 50 ? 50 : (int)left);
    }
    return false;
}

/* Decodes one message: binary mode, or structured mode when its
 * content-type says so. NULL when it was dead-lettered. */
static eddy_event *kafka_decode(kafka_sub *ksub, const rd_kafka_message_t *m,
                                const char *topic)
{
    eddy_transport_subscription *sub = ksub->sub;
    const char *payload = m->payload ? m->payload : "";
    rd_kafka_headers_t *hdrs = NULL;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        n = rd_kafka_header_cnt(hdrs);
    size_t size = m->len + (m->key_len);
    const char **names = calloc(n ? n : 1, sizeof *names);
    const char **values = calloc(n ? n : 1, sizeof *values);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    eddy_event *ev = NULL;
    char reason[EDDY_ERROR_MESSAGE_MAX];
    if (!names || !values || !lens) {
        snprintf(reason, sizeof reason, "out of memory decoding a message");
        goto dead;
    }
    const char *ct = NULL;
    bool has_specversion = false;
    for (size_t i = 0; i < n; i++) {
        const void *v;
        size_t len;
        rd_kafka_header_get_all(hdrs, i, &names[i], &v, &len);
        values[i] = v ? v : "";
        lens[i] = v ? len : 0;
        size += strlen(names[i]) + lens[i];
        if (strcmp(names[i], "content-type") == 0 && v &&
            memchr(v, '\0', len) == NULL)
            ct = values[i];
        if (strcmp(names[i], KAFKA_HEADER_PREFIX "specversion") == 0)
            has_specversion = true;
    }
    if (size > sub->t->opts.max_message_bytes) {
        snprintf(reason, sizeof reason, "oversized: %zu bytes, limit %zu", size,
                 sub->t->opts.max_message_bytes);
        goto dead;
    }
    if (!has_specversion && ct && eddyi_ce_binary_is_structured(ct)) {
        /* dead-letters by itself on failure */
        ev = eddyi_transport_decode(sub, payload, m->len, topic, 1);
        goto out;
    }
    ev = eddyi_ce_binary_decode(names, values, lens, n, KAFKA_HEADER_PREFIX,
                                KAFKA_TYPES_HEADER, false, payload, m->len,
                                reason, sizeof reason);
    if (ev)
        goto out;
dead:
    eddyi_transport_dead_letter(sub, NULL, payload, m->len, topic, reason, 1);
out:
    free(names);
    free(values);
    free(lens);
    return ev;
}

/* Handles one message to its end: acknowledged, dead-lettered, or left
 * unsettled because the subscription stopped during a nack delay. */
static void kafka_handle(kafka_sub *ksub, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    eddy_event *ev = kafka_decode(ksub, m, topic);
    if (!ev) {
        kafka_settled(ksub, m);
        return;
    }
    const char *raw = m->payload ? m->payload : "";
    uint32_t prior = kafka_marks_prior(ksub, m);
    for (uint32_t attempt = prior + 1;; attempt++) {
        int delay = 0;
        kafka_mark_attempt(ksub, m, attempt);
        eddyi_settle s = eddyi_transport_dispatch(ksub->sub, ev, topic, attempt,
                                                  raw, m->len, &delay);
        if (s == EDDYI_SETTLE_ACK) {
            kafka_settled(ksub, m);
            break;
        }
        /* Nack: the partition waits, so later events of the key stay
         * behind this one. */
        if (!kafka_wait(ksub, delay))
            break; /* stopping: not stored, the group redelivers it */
    }
    eddy_event_unref(ev);
}

static void *kafka_sub_main(void *arg)
{
    eddyi_thread_name("eddy-kafka-sub");
    kafka_sub *ksub = arg;
    while (!atomic_load(&ksub->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(ksub->rk, KAFKA_POLL_MS);
        if (!m)
            continue;
        if (m->err) {
            eddy_log_level l = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                                       m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                                   ? EDDY_LOG_DEBUG
                                   : EDDY_LOG_WARN;
            EDDYI_LOG(l, "kafka", "%s: %s", ksub->sub->consumer,
                      rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        /* The handler never runs before subscribe returned. */
        pthread_mutex_lock(&ksub->mu);
        while (!ksub->go && !atomic_load(&ksub->stop))
            pthread_cond_wait(&ksub->cv, &ksub->mu);
        pthread_mutex_unlock(&ksub->mu);
        if (!atomic_load(&ksub->stop))
            kafka_handle(ksub, m);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static void kafka_sub_destroy(kafka_sub *ksub)
{
    kafka_marks_clear(ksub);
    if (ksub->rk)
        rd_kafka_destroy(ksub->rk);
    pthread_cond_destroy(&ksub->cv);
    pthread_mutex_destroy(&ksub->mu);
    free(ksub);
}

static int kafka_subscribe(eddy_transport_subscription *sub, eddy_error *err)
{
    eddy_transport *t = sub->t;
    kafka_sub *ksub = calloc(1, sizeof *ksub);
    if (!ksub)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory subscribing");
    ksub->sub = sub;
    pthread_mutex_init(&ksub->mu, NULL);
    pthread_cond_init(&ksub->cv, NULL);
    int rc;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_conf_t *conf = NULL;
    if ((rc = kafka_conf(t, sub->consumer, &conf, err)) != EDDY_OK)
        goto fail;
    /* A dead process is noticed after the session timeout (6 s, the
     * brokers' usual minimum; a longer one also slows every rebalance); a
     * handler stuck longer than ack_wait_ms makes the member leave
     * (max.poll.interval.ms, which may not be below the session timeout). */
    const char *session_param = eddyi_url_param(t, "session.timeout.ms");
    long long session = session_param ? atoll(session_param) : 6000;
    if (session <= 0)
        session = 6000;
    long long max_poll = sub->o.ack_wait_ms > session ? sub->o.ack_wait_ms
                                                      : session;
    if ((rc = conf_set(conf, "group.id", sub->group, err)) ||
        (rc = conf_set(conf, "enable.auto.commit", "true", err)) ||
        (rc = conf_set(conf, "enable.auto.offset.store", "false", err)) ||
        (rc = conf_set(conf, "auto.commit.interval.ms", "1000", err)) ||
        (rc = conf_set(conf, "auto.offset.reset",
                       sub->o.start_from == EDDY_START_END ? "latest"
                                                           : "earliest",
                       err)) ||
        (rc = conf_set(conf, "allow.auto.create.topics", "true", err)) ||
        (rc = conf_set_int(conf, "session.timeout.ms", session, err)) ||
        (rc = conf_set_int(conf, "max.poll.interval.ms", max_poll, err)) ||
        /* Frequent heartbeats: a member learns of a rebalance (another
         * member joining or leaving) within half a second. */
        (rc = conf_set(conf, "heartbeat.interval.ms", "500", err))) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    for (size_t i = 0; i < t->url.nparams; i++)
        if ((rc = conf_set(conf, t->url.keys[i], t->url.values[i], err))) {
            rd_kafka_conf_destroy(conf);
            goto fail;
        }
    rd_kafka_conf_set_rebalance_cb(conf, kafka_rebalance_cb);
    rd_kafka_conf_set_opaque(conf, ksub);
    char errstr[512];
    ksub->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!ksub->rk) {
        rd_kafka_conf_destroy(conf);
        rc = eddyi_error(err, EDDY_EINVAL, "kafka: cannot create consumer: %s",
                         errstr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(ksub->rk);
    topics = rd_kafka_topic_partition_list_new((int)sub->ntopics);
    for (size_t i = 0; i < sub->ntopics; i++)
        rd_kafka_topic_partition_list_add(topics, sub->topics[i],
                                          RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(ksub->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        rc = eddyi_error(err, EDDY_EIO, "kafka: cannot subscribe group %s: %s",
                         sub->group, rd_kafka_err2str(kerr));
        rd_kafka_consumer_close(ksub->rk);
        goto fail;
    }
    if (pthread_create(&ksub->thread, NULL, kafka_sub_main, ksub) != 0) {
        rc = eddyi_error(err, EDDY_ENOMEM, "kafka: cannot start the "
                         "subscription thread");
        rd_kafka_consumer_close(ksub->rk);
        goto fail;
    }
    /* Wait for this member's first assignment, so that events published
     * after subscribe returned reach the group with this member in it.
     * A slow group is not an error: the member joins later. */
    int64_t deadline = eddyi_transport_now_ms() +
                       (t->opts.connect_timeout_ms > 15000
                            ? t->opts.connect_timeout_ms : 15000);
    pthread_mutex_lock(&ksub->mu);
    while (!ksub->assigned && eddyi_transport_now_ms() < deadline) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ksub->cv, &ksub->mu, &until);
    }
    if (!ksub->assigned)
        EDDYI_LOG(EDDY_LOG_WARN, "kafka", "%s: group %s gave no assignment yet",
                  sub->consumer, sub->group);
    ksub->go = true;
    pthread_cond_broadcast(&ksub->cv);
    pthread_mutex_unlock(&ksub->mu);
    sub->state = ksub;
    return EDDY_OK;
fail:
    kafka_sub_destroy(ksub);
    return rc;
}

static void kafka_sub_stop(eddy_transport_subscription *sub)
{
    kafka_sub *ksub = sub->state;
    if (!ksub)
        return;
    pthread_mutex_lock(&ksub->mu);
    atomic_store(&ksub->stop, true);
    pthread_cond_broadcast(&ksub->cv);
    pthread_mutex_unlock(&ksub->mu);
    pthread_join(ksub->thread, NULL);
    /* Commits the stored offsets (handled messages only) and leaves the
     * group, so its partitions move to the other members at once. */
    rd_kafka_consumer_close(ksub->rk);
}

static void kafka_sub_free(eddy_transport_subscription *sub)
{
    kafka_sub *ksub = sub->state;
    if (!ksub)
        return;
    kafka_sub_destroy(ksub);
    sub->state = NULL;
}

/* ---- info ------------------------------------------------------------------- */

/* Adds `group` to every topic of `info` where it has committed offsets,
 * with its lag (high watermark - committed, summed over partitions; a
 * partition without a commit counts whole). `hi`/`lo`: watermarks per
 * topic and partition, as in `md`. */
static int kafka_info_group(eddy_transport *t, const struct rd_kafka_metadata *md,
                            const ssize_t *topic_of, int64_t **hi, int64_t **lo,
                            const char *group, int64_t members,
                            eddy_transport_info *info, bool *found,
                            eddy_error *err)
{
    rd_kafka_conf_t *conf = NULL;
    int rc = kafka_conf(t, "eddy-info", &conf, err);
    if (rc != EDDY_OK)
        return rc;
    if ((rc = conf_set(conf, "group.id", group, err))) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return eddyi_error(err, EDDY_EINVAL, "kafka: cannot create a consumer "
                           "for group %s: %s", group, errstr);
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (int i = 0; i < md->topic_cnt; i++)
        if (topic_of[i] >= 0)
            for (int p = 0; p < md->topics[i].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(l, md->topics[i].topic,
                                                  md->topics[i].partitions[p].id);
    rd_kafka_resp_err_t kerr = rd_kafka_committed(rk, l, t->opts.timeout_ms);
    if (kerr) {
        rc = eddyi_error(err, EDDY_EIO, "kafka %s: committed offsets of group "
                         "%s: %s", t->url.authority, group,
                         rd_kafka_err2str(kerr));
        goto out;
    }
    for (int i = 0; i < md->topic_cnt && rc == EDDY_OK; i++) {
        if (topic_of[i] < 0)
            continue;
        bool any = false;
        int64_t lag = 0;
        for (int p = 0; p < md->topics[i].partition_cnt; p++) {
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
                l, md->topics[i].topic, md->topics[i].partitions[p].id);
            int64_t done = tp && !tp->err && tp->offset >= 0 ? tp->offset
                                                             : lo[i][p];
            any |= tp && !tp->err && tp->offset >= 0;
            if (hi[i][p] > done)
                lag += hi[i][p] - done;
        }
        if (!any)
            continue;
        *found = true;
        if (eddyi_info_group(info, (size_t)topic_of[i], group, members, -1,
                             lag) != 0)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
out:
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

static int kafka_info(eddy_transport *t, const char *const *groups,
                      size_t ngroups, eddy_transport_info *info,
                      eddy_error *err)
{
    kafka_state *ks = t->state;
    const struct rd_kafka_metadata *md = NULL;
    int tmo = t->opts.timeout_ms;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(ks->producer, 1, NULL, &md, tmo);
    if (kerr)
        return eddyi_error(err, EDDY_ECONNECT, "kafka %s: metadata: %s",
                           t->url.authority, rd_kafka_err2str(kerr));
    int rc = EDDY_OK;
    size_t plen = strlen(t->prefix);
    ssize_t *topic_of = calloc((size_t)md->topic_cnt + 1, sizeof *topic_of);
    int64_t **hi = calloc((size_t)md->topic_cnt + 1, sizeof *hi);
    int64_t **lo = calloc((size_t)md->topic_cnt + 1, sizeof *lo);
    const struct rd_kafka_group_list *gl = NULL;
    if (!topic_of || !hi || !lo) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[i];
        topic_of[i] = -1;
        if (strncmp(mt->topic, t->prefix, plen) != 0 || mt->err)
            continue;
        hi[i] = calloc((size_t)mt->partition_cnt + 1, sizeof **hi);
        lo[i] = calloc((size_t)mt->partition_cnt + 1, sizeof **lo);
        if (!hi[i] || !lo[i]) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            goto out;
        }
        int64_t messages = 0;
        for (int p = 0; p < mt->partition_cnt; p++) {
            int64_t l = 0, h = 0;
            kerr = rd_kafka_query_watermark_offsets(
                ks->producer, mt->topic, mt->partitions[p].id, &l, &h, tmo);
            if (kerr) {
                rc = eddyi_error(err, EDDY_EIO, "kafka %s: offsets of %s [%d]: "
                                 "%s", t->url.authority, mt->topic,
                                 (int)mt->partitions[p].id,
                                 rd_kafka_err2str(kerr));
                goto out;
            }
            hi[i][p] = h;
            lo[i][p] = l;
            messages += h - l;
        }
        if ((topic_of[i] = eddyi_info_topic(info, mt->topic, messages,
                                            mt->partition_cnt)) < 0) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            goto out;
        }
    }
    /* The groups: those the brokers list, or those asked for by name. */
    kerr = rd_kafka_list_groups(ks->producer, NULL, &gl, tmo);
    if (kerr && !ngroups) {
        char note[256];
        snprintf(note, sizeof note, "the broker did not list consumer groups "
                 "(%s): name them to see their lag", rd_kafka_err2str(kerr));
        if (!(info->note = eddyi_strdup(note)))
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto out;
    }
    if (!kerr) {
        for (int g = 0; g < gl->group_cnt && rc == EDDY_OK; g++) {
            const struct rd_kafka_group_info *gi = &gl->groups[g];
            bool found = false;
            if (strcmp(gi->protocol_type, "consumer") != 0 ||
                !eddyi_info_group_wanted(gi->group, groups, ngroups))
                continue;
            rc = kafka_info_group(t, md, topic_of, hi, lo, gi->group,
                                  gi->member_cnt, info, &found, err);
        }
    } else {
        for (size_t g = 0; g < ngroups && rc == EDDY_OK; g++) {
            bool found = false;
            rc = kafka_info_group(t, md, topic_of, hi, lo, groups[g], -1, info,
                                  &found, err);
            if (rc == EDDY_OK && !found && !info->note) {
                char note[256];
                snprintf(note, sizeof note, "group %s has no committed offset "
                         "on these topics", groups[g]);
                if (!(info->note = eddyi_strdup(note)))
                    rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            }
        }
    }
out:
    if (gl)
        rd_kafka_group_list_destroy(gl);
    for (int i = 0; hi && lo && i < md->topic_cnt; i++) {
        free(hi[i]);
        free(lo[i]);
    }
    free(hi);
    free(lo);
    free(topic_of);
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Test hook (transport_impl.h). */
int eddyi_transport_kafka_conf_get(const char *url,
                                   const eddy_transport_options *opts,
                                   const char *key, char *buf, size_t size,
                                   eddy_error *err)
{
    eddy_transport *t = eddyi_transport_prepare(url, opts, err);
    if (!t)
        return err ? err->code : EDDY_EINVAL;
    rd_kafka_conf_t *conf = NULL;
    int rc = kafka_conf(t, "eddy-test", &conf, err);
    if (rc == EDDY_OK) {
        if (rd_kafka_conf_get(conf, key, buf, &size) != RD_KAFKA_CONF_OK)
            rc = eddyi_error(err, EDDY_ENOTFOUND, "kafka property %s: not set "
                             "or unknown", key);
        rd_kafka_conf_destroy(conf);
    }
    eddyi_transport_unprepare(t);
    return rc;
}

const eddyi_transport_ops eddyi_transport_kafka_ops = {
    .engine = "kafka",
    .default_prefix = "events-",
    .open = kafka_open,
    .close = kafka_close,
    .publish = kafka_publish,
    .publish_async = kafka_publish_async,
    .flush = kafka_flush,
    .subscribe = kafka_subscribe,
    .sub_stop = kafka_sub_stop,
    .sub_free = kafka_sub_free,
    .info = kafka_info,
};
