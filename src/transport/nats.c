/*
 * src/transport/nats.c - the NATS JetStream transport, through nats.c
 * (libnats).
 *
 * URL: nats://HOST:PORT[,HOST:PORT...][?stream=NAME]. Events are stored in
 * one JetStream stream (EDDY_EVENTS unless ?stream= says otherwise) that
 * covers "<prefix>>" ("events.>"), created on open if missing (file
 * storage). The topic prefix must end with '.'.
 *
 * Publishing: the event goes in CloudEvents binary mode (ce-* headers,
 * percent-encoded as the NATS binding says; content-type; data as the
 * payload) to the subject "<prefix><type>". With ?dedup=on the message
 * carries Nats-Msg-Id = the event id, so that a publish repeated within the
 * stream's duplicate window (2 minutes) is stored once; off by default,
 * since consumers deduplicate by event id anyway. The synchronous publish returns once JetStream acknowledged
 * (stored) it; the asynchronous one calls back from the acknowledgement
 * (or from the library's timeout, timeout_ms). While the connection is down
 * and being re-established, the FAIL policy refuses a publish at once
 * (EDDY_ECONNECT); BUFFER lets libnats keep it in its reconnect buffer
 * (asynchronous publishes in flight bounded by buffer_max).
 *
 * Consuming: one durable pull consumer per (group, type), named
 * "<group>_<type>_<hash>" (characters NATS forbids in names become '_'),
 * created if missing (or updated when its ack wait differs), with explicit
 * acks, AckWait = ack_wait_ms and no server-side delivery limit: eddy
 * counts deliveries (JetStream's NumDelivered) and dead-letters after
 * retry.max_attempts, terminating the message (+TERM) so that it never comes
 * back. Members of a group share the consumer, so they share the load.
 * A nack is +NAK with the delay. Each subscription runs one thread that
 * fetches batches from its consumers in turn; while the server is away the
 * fetches fail and are retried with backoff, and libnats reconnects.
 *
 * Security (all nats.c options): user and password (user:password@,
 * user=, password*), a token (TOKEN@, token=, token_file=, token_env=), an
 * NKey user (nkey=PUBLIC&nkey_seed=FILE), a JWT user (creds=FILE), TLS
 * (tls_ca=FILE, tls_cert=FILE&tls_key=FILE, tls=on, tls_hostname=NAME).
 * The files are checked before connecting, so a wrong path is named as
 * such; the server's refusal (-ERR 'Authorization Violation') and a failed
 * certificate check end natsConnection_Connect at once and are reported
 * by what was refused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nats/nats.h>

#include "core/internal.h"
#include "transport/ce_binary.h"
#include "transport/transport_impl.h"

#define NATS_HEADER_PREFIX "ce-"
#define NATS_TYPES_HEADER "eddy-types"
#define NATS_DEFAULT_STREAM "EDDY_EVENTS"
#define NATS_PENDING_BUCKETS 1024
#define NATS_FETCH_MS 250

/* One asynchronous publish waiting for its acknowledgement, found again by
 * its message pointer (the library hands the message back). */
typedef struct nats_pending {
    struct nats_pending *next;
    natsMsg *msg;
    eddy_event *ev;
    eddy_publish_done_fn done;
    void *user;
} nats_pending;

typedef struct nats_state {
    char *token;            /* a secret (wiped when freed); NULL if none */
    natsConnection *nc;
    jsCtx *js;
    char *stream;
    char *servers;          /* for messages */
    bool dedup;             /* ?dedup=on: Nats-Msg-Id = event id */
    atomic_bool closing;
    atomic_uint_fast64_t reconnects; /* connections re-established */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* inflight moved; the connection closed */
    size_t inflight;
    bool closed;            /* libnats ran the closed callback */
    nats_pending *pending[NATS_PENDING_BUCKETS];
} nats_state;

typedef struct nats_sub {
    eddy_transport_subscription *sub;
    size_t count;
    natsSubscription **subs;
    char **durables;
    pthread_t thread;
    atomic_bool stop;
    uint64_t reconnects;    /* the connection's count when last looked */
} nats_sub;

/* ---- errors ----------------------------------------------------------------- */

/* The library's last error text for this thread, or the status's. */
static const char *nats_why(natsStatus s)
{
    natsStatus last;
    const char *text = nats_GetLastError(&last);
    return text && *text ? text : natsStatus_GetText(s);
}

static int nats_code(natsStatus s)
{
    switch (s) {
    case NATS_TIMEOUT:
        return EDDY_ETIMEDOUT;
    case NATS_NO_MEMORY:
        return EDDY_ENOMEM;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
        return EDDY_ECONNECT;
    default:
        return EDDY_EIO;
    }
}

/* ---- asynchronous publish bookkeeping ---------------------------------------- */

static size_t pending_bucket(const natsMsg *msg)
{
    uintptr_t p = (uintptr_t)msg;
    return (size_t)((p >> 4) ^ (p >> 14)) % NATS_PENDING_BUCKETS;
}

/* Removes and returns the record of `msg`, or NULL. Caller holds mu. */
static nats_pending *pending_take(nats_state *ns, const natsMsg *msg)
{
    nats_pending **pp = &ns->pending[pending_bucket(msg)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->msg == msg) {
            nats_pending *p = *pp;
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

/* Runs the callback of a finished asynchronous publish and frees it. */
static void pending_finish(nats_state *ns, nats_pending *p, int rc,
                           const eddy_error *e)
{
    if (p->done)
        p->done(rc, p->ev, rc == EDDY_OK ? NULL : e, p->user);
    eddy_event_unref(p->ev);
    free(p);
    pthread_mutex_lock(&ns->mu);
    /* Only a flush waits on `inflight`, and only for zero: waking it for
     * every acknowledgement would cost a context switch per message. */
    if (--ns->inflight == 0)
        pthread_cond_broadcast(&ns->cv);
    pthread_mutex_unlock(&ns->mu);
}

/* JetStream's answer to an asynchronous publish (a libnats thread). */
static void nats_ack_cb(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                        void *closure)
{
    nats_state *ns = closure;
    pthread_mutex_lock(&ns->mu);
    nats_pending *p = pending_take(ns, msg);
    pthread_mutex_unlock(&ns->mu);
    if (p) {
        eddy_error e = {0};
        int rc = EDDY_OK;
        if (!pa) {
            natsStatus s = pae ? pae->Err : NATS_ERR;
            rc = nats_code(s);
            e.code = rc;
            snprintf(e.message, sizeof e.message,
                     "nats: event %s not stored: %s (%d)", eddy_event_id(p->ev),
                     pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(s),
                     pae ? (int)pae->ErrCode : 0);
        }
        pending_finish(ns, p, rc, &e);
    }
    natsMsg_Destroy(msg);
}

/* ---- publishing ---------------------------------------------------------------- */

/* Builds the message of `ev` into `*out`; an error code with `err` filled
 * on failure. */
static int nats_message(eddy_transport *t, const eddy_event *ev,
                        const char *topic, natsMsg **out, eddy_error *err)
{
    nats_state *ns = t->state;
    eddyi_ce_binary b;
    natsMsg *msg = NULL;
    int rc = eddyi_ce_binary_encode(ev, NATS_HEADER_PREFIX, NATS_TYPES_HEADER,
                                    true, &b, err);
    if (rc != EDDY_OK)
        return rc;
    size_t size = eddyi_ce_binary_size(&b);
    int64_t max_payload = natsConnection_GetMaxPayload(ns->nc);
    if (size > t->opts.max_message_bytes) {
        rc = eddyi_error(err, EDDY_ETOOBIG, "event %s is %zu bytes, the limit "
                         "is %zu", eddy_event_id(ev), size,
                         t->opts.max_message_bytes);
        goto out;
    }
    if (max_payload > 0 && (int64_t)size > max_payload) {
        rc = eddyi_error(err, EDDY_ETOOBIG, "event %s is %zu bytes, the NATS "
                    "server's max_payload is %lld", eddy_event_id(ev), size,
                    (long long)max_payload);
        goto out;
    }
    natsStatus s = natsMsg_Create(&msg, topic, NULL, b.payload,
                                  (int)b.payload_len);
    for (size_t i = 0; s == NATS_OK && i < b.count; i++)
        s = natsMsgHeader_Set(msg, b.names[i], b.values[i]);
    if (s == NATS_OK && ns->dedup)
        s = natsMsgHeader_Set(msg, "Nats-Msg-Id", eddy_event_id(ev));
    if (s != NATS_OK) {
        rc = eddyi_error(err, nats_code(s), "nats: cannot build the message "
                         "of event %s: %s", eddy_event_id(ev), nats_why(s));
        natsMsg_Destroy(msg);
        msg = NULL;
    }
out:
    eddyi_ce_binary_clear(&b);
    *out = msg;
    return rc;
}

/* The FAIL policy refuses to publish while the connection is down. */
static int nats_check_connected(eddy_transport *t, eddy_error *err)
{
    nats_state *ns = t->state;
    if (atomic_load(&ns->closing))
        return eddyi_error(err, EDDY_ESTOPPED, "nats: transport closing");
    natsConnStatus st = natsConnection_Status(ns->nc);
    if (st == NATS_CONN_STATUS_CONNECTED ||
        t->opts.disconnected == EDDY_DISCONNECTED_BUFFER)
        return EDDY_OK;
    return eddyi_error(err, EDDY_ECONNECT, "nats %s: not connected (%s)",
                       ns->servers,
                       st == NATS_CONN_STATUS_RECONNECTING ? "reconnecting"
                                                           : "closed");
}

static int nats_publish(eddy_transport *t, const eddy_event *ev,
                        const char *topic, eddy_error *err)
{
    nats_state *ns = t->state;
    int rc = nats_check_connected(t, err);
    if (rc != EDDY_OK)
        return rc;
    natsMsg *msg = NULL;
    if ((rc = nats_message(t, ev, topic, &msg, err)) != EDDY_OK)
        return rc;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = t->opts.timeout_ms;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(&pa, ns->js, msg, &po, &jerr);
    if (s == NATS_OK) {
        jsPubAck_Destroy(pa);
    } else if (s == NATS_NO_RESPONDERS) {
        rc = eddyi_error(err, EDDY_EIO, "nats: no JetStream stream stores "
                         "subject %s (stream %s missing?)", topic, ns->stream);
    } else {
        rc = eddyi_error(err, nats_code(s), "nats: event %s not stored on %s: "
                         "%s (%d)", eddy_event_id(ev), topic, nats_why(s),
                         (int)jerr);
    }
    natsMsg_Destroy(msg);
    return rc;
}

static int nats_publish_async(eddy_transport *t, const eddy_event *ev,
                              const char *topic, eddy_publish_done_fn done,
                              void *user, eddy_error *err)
{
    nats_state *ns = t->state;
    int rc = nats_check_connected(t, err);
    if (rc != EDDY_OK)
        return rc;
    nats_pending *p = calloc(1, sizeof *p);
    if (!p)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory publishing");
    natsMsg *msg = NULL;
    if ((rc = nats_message(t, ev, topic, &msg, err)) != EDDY_OK) {
        free(p);
        return rc;
    }
    p->msg = msg;
    p->ev = eddy_event_ref((eddy_event *)ev);
    p->done = done;
    p->user = user;
    /* Registered before sending: the answer may come before the call
     * returns. */
    pthread_mutex_lock(&ns->mu);
    size_t b = pending_bucket(msg);
    p->next = ns->pending[b];
    ns->pending[b] = p;
    ns->inflight++;
    pthread_mutex_unlock(&ns->mu);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = t->opts.timeout_ms;
    natsMsg *send = msg;
    natsStatus s = js_PublishMsgAsync(ns->js, &send, &po);
    if (s == NATS_OK)
        return EDDY_OK;
    /* Not sent: take the record back (nothing else can have it). */
    pthread_mutex_lock(&ns->mu);
    nats_pending *mine = pending_take(ns, msg);
    if (--ns->inflight == 0)
        pthread_cond_broadcast(&ns->cv);
    pthread_mutex_unlock(&ns->mu);
    if (mine) {
        eddy_event_unref(mine->ev);
        free(mine);
    }
    natsMsg_Destroy(send);
    if (s == NATS_TIMEOUT)
        return eddyi_error(err, EDDY_EFULL, "nats: %zu asynchronous publishes "
                           "in flight", t->opts.buffer_max);
    return eddyi_error(err, nats_code(s), "nats: cannot publish event %s: %s",
                       eddy_event_id(ev), nats_why(s));
}

static int nats_flush(eddy_transport *t, int timeout_ms, eddy_error *err)
{
    nats_state *ns = t->state;
    return eddyi_transport_wait_drained(&ns->mu, &ns->cv, &ns->inflight,
                                        timeout_ms, "nats", err);
}

/* libnats: the connection is back (one of its threads). */
static void nats_reconnected_cb(natsConnection *nc, void *closure)
{
    nats_state *ns = closure;
    atomic_fetch_add(&ns->reconnects, 1);
    EDDYI_LOG(EDDY_LOG_INFO, "nats", "%s: reconnected", ns->servers);
}

/* libnats: the connection is closed for good. libnats runs the connection
 * callbacks in order on one thread of its own, so none runs after this
 * one: the state may be freed once it ran. */
static void nats_closed_cb(natsConnection *nc, void *closure)
{
    nats_state *ns = closure;
    pthread_mutex_lock(&ns->mu);
    ns->closed = true;
    pthread_cond_broadcast(&ns->cv);
    pthread_mutex_unlock(&ns->mu);
}

static void nats_disconnected_cb(natsConnection *nc, void *closure)
{
    nats_state *ns = closure;
    if (!atomic_load(&ns->closing))
        EDDYI_LOG(EDDY_LOG_WARN, "nats", "%s: disconnected, reconnecting",
                  ns->servers);
}

/* ---- open / close ------------------------------------------------------------- */

static void nats_state_free(nats_state *ns)
{
    if (ns->js)
        jsCtx_Destroy(ns->js);
    if (ns->nc) {
        natsConnection_Close(ns->nc);
        /* The disconnected / closed callbacks still to come use `ns`. */
        int64_t deadline = eddyi_transport_now_ms() + 5000;
        pthread_mutex_lock(&ns->mu);
        while (!ns->closed && eddyi_transport_now_ms() < deadline) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 20 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&ns->cv, &ns->mu, &until);
        }
        pthread_mutex_unlock(&ns->mu);
        natsConnection_Destroy(ns->nc);
    }
    free(ns->stream);
    free(ns->servers);
    eddyi_secret_free(ns->token);
    pthread_cond_destroy(&ns->cv);
    pthread_mutex_destroy(&ns->mu);
    free(ns);
}

/* Creates the stream if it does not exist. */
static int nats_ensure_stream(eddy_transport *t, eddy_error *err)
{
    nats_state *ns = t->state;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, ns->js, ns->stream, NULL, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return EDDY_OK;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        if (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT)
            return eddyi_error(err, EDDY_ECONNECT, "nats %s: JetStream is not "
                               "available (start nats-server with -js): %s",
                               ns->servers, nats_why(s));
        return eddyi_error(err, nats_code(s), "nats %s: stream %s: %s (%d)",
                           ns->servers, ns->stream, nats_why(s), (int)jerr);
    }
    char subject[512];
    snprintf(subject, sizeof subject, "%s>", t->prefix);
    const char *subjects[] = {subject};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = ns->stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    s = js_AddStream(&si, ns->js, &cfg, NULL, &jerr);
    if (s != NATS_OK)
        return eddyi_error(err, nats_code(s), "nats %s: cannot create stream "
                           "%s for %s: %s (%d)", ns->servers, ns->stream,
                           subject, nats_why(s), (int)jerr);
    jsStreamInfo_Destroy(si);
    return EDDY_OK;
}

/* The security settings of the URL. Strings borrowed from t->url. */
typedef struct nats_security {
    const char *nkey, *nkey_seed, *creds;
    const char *tls_ca, *tls_cert, *tls_key, *tls_hostname;
    bool tls;
} nats_security;

/* A file the URL names must be readable: said now, by name, rather than
 * as libnats' "I/O error" after connecting. */
static int check_file(const char *key, const char *path, eddy_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        char why[128];
        strerror_r(errno, why, sizeof why);
        return eddyi_error(err, EDDY_EINVAL, "nats URL: %s=%s: cannot open: "
                           "%s", key, path, why);
    }
    fclose(f);
    return EDDY_OK;
}

/* Sets the credentials and TLS options of `sec` on `nopts`. */
static int nats_secure(eddy_transport *t, nats_state *ns, natsOptions *nopts,
                       const nats_security *sec, eddy_error *err)
{
    natsStatus s = NATS_OK;
    const char *what = "";
    int rc;
    if (sec->tls_ca && (rc = check_file("tls_ca", sec->tls_ca, err)))
        return rc;
    if (sec->tls_cert && (rc = check_file("tls_cert", sec->tls_cert, err)))
        return rc;
    if (sec->tls_key && (rc = check_file("tls_key", sec->tls_key, err)))
        return rc;
    if (sec->nkey_seed && (rc = check_file("nkey_seed", sec->nkey_seed, err)))
        return rc;
    if (sec->creds && (rc = check_file("creds", sec->creds, err)))
        return rc;
    if (t->url.user && t->url.password) {
        what = "user and password";
        s = natsOptions_SetUserInfo(nopts, t->url.user, t->url.password);
    }
    if (s == NATS_OK && ns->token) {
        what = "token";
        s = natsOptions_SetToken(nopts, ns->token);
    }
    if (s == NATS_OK && sec->nkey) {
        what = "nkey";
        s = natsOptions_SetNKeyFromSeed(nopts, sec->nkey, sec->nkey_seed);
    }
    if (s == NATS_OK && sec->creds) {
        what = "creds";
        s = natsOptions_SetUserCredentialsFromFiles(nopts, sec->creds, NULL);
    }
    if (s == NATS_OK && (sec->tls || sec->tls_ca || sec->tls_cert)) {
        what = "tls";
        s = natsOptions_SetSecure(nopts, true);
    }
    if (s == NATS_OK && sec->tls_ca) {
        what = "tls_ca";
        s = natsOptions_LoadCATrustedCertificates(nopts, sec->tls_ca);
    }
    if (s == NATS_OK && sec->tls_cert) {
        what = "tls_cert and tls_key";
        s = natsOptions_LoadCertificatesChain(nopts, sec->tls_cert,
                                              sec->tls_key);
    }
    if (s == NATS_OK && sec->tls_hostname) {
        what = "tls_hostname";
        s = natsOptions_SetExpectedHostname(nopts, sec->tls_hostname);
    }
    if (s != NATS_OK)
        return eddyi_error(err, EDDY_EINVAL, "nats URL: %s: %s", what,
                           nats_why(s));
    return EDDY_OK;
}

/* Who the connection authenticates as, for messages. */
static void nats_identity(const eddy_transport *t, const nats_state *ns,
                          const nats_security *sec, char *buf, size_t size)
{
    if (t->url.user)
        snprintf(buf, size, "user %s", t->url.user);
    else if (ns->token)
        snprintf(buf, size, "the token");
    else if (sec->nkey)
        snprintf(buf, size, "nkey %s", sec->nkey);
    else if (sec->creds)
        snprintf(buf, size, "the credentials of %s", sec->creds);
    else
        snprintf(buf, size, "no credentials");
}

/* libnats' last error without its source location ("(conn.c:1905): "). */
static const char *nats_reason(natsStatus s)
{
    const char *why = nats_why(s);
    if (why[0] == '(') {
        const char *end = strstr(why, "): ");
        if (end && end - why < 40)
            return end + 3;
    }
    return why;
}

/* natsConnection_Connect's failure, said by what failed. */
static int nats_connect_error(const eddy_transport *t, const nats_state *ns,
                              const nats_security *sec, natsStatus s,
                              eddy_error *err)
{
    const char *why = nats_reason(s);
    char who[300];
    nats_identity(t, ns, sec, who, sizeof who);
    bool tls = sec->tls || sec->tls_ca || sec->tls_cert;
    if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED ||
        strstr(why, "Authorization Violation") ||
        strstr(why, "Authentication")) {
        if (strcmp(who, "no credentials") == 0)
            return eddyi_error(err, EDDY_ECONNECT, "nats %s: authentication "
                               "failed: the server wants credentials and "
                               "none were given (user:password@, token, "
                               "nkey, creds): %s", t->url.authority, why);
        return eddyi_error(err, EDDY_ECONNECT, "nats %s: authentication "
                           "failed for %s: %s", t->url.authority, who, why);
    }
    if (strstr(why, "certificate"))
        return eddyi_error(err, EDDY_ECONNECT, "nats %s: certificate not "
                           "trusted (%s%s): %s", t->url.authority,
                           sec->tls_ca ? "tls_ca=" : "the system's CAs; "
                                                     "name the server's CA "
                                                     "with tls_ca=FILE",
                           sec->tls_ca ? sec->tls_ca : "", why);
    if (s == NATS_SECURE_CONNECTION_REQUIRED)
        return eddyi_error(err, EDDY_ECONNECT, "nats %s: the server requires "
                           "TLS: add ?tls_ca=FILE (its CA) or ?tls=on: %s",
                           t->url.authority, why);
    if (s == NATS_SECURE_CONNECTION_WANTED)
        return eddyi_error(err, EDDY_ECONNECT, "nats %s: TLS was asked for but "
                           "the server does not offer it: %s",
                           t->url.authority, why);
    if (s == NATS_SSL_ERROR)
        return eddyi_error(err, EDDY_ECONNECT, "nats %s: TLS failed: %s",
                           t->url.authority, why);
    /* A server that verifies client certificates hangs up right after the
     * handshake when given none (or one it does not trust): libnats then
     * reads nothing where the first PONG should be. */
    if (tls && strstr(why, "PONG"))
        return eddyi_error(err, EDDY_ECONNECT, "nats %s: the server closed the "
                           "TLS connection before answering: it wants a "
                           "client certificate %s(tls_cert=FILE&tls_key=FILE): "
                           "%s", t->url.authority,
                           sec->tls_cert ? "signed by a CA it trusts " : "",
                           why);
    return eddyi_error(err, EDDY_ECONNECT, "nats %s: cannot connect: %s",
                       t->url.authority, why);
}

static int nats_open(eddy_transport *t, eddy_error *err)
{
    const eddy_transport_options *o = &t->opts;
    const char *stream = NATS_DEFAULT_STREAM;
    bool dedup = false;
    nats_security sec = {0};
    char *token = NULL;
    int trc = eddyi_url_take_secret(&t->url, "token", false, &token, err);
    if (trc != EDDY_OK)
        return trc;
    /* nats://TOKEN@host: a user information without a password is a
     * token, as in the NATS URL convention. */
    if (t->url.user && !t->url.password) {
        if (token) {
            eddyi_secret_free(token);
            return eddyi_error(err, EDDY_EINVAL, "nats URL: a token is given "
                               "twice (TOKEN@ and token=)");
        }
        token = t->url.user;
        t->url.user = NULL;
    }
    if (t->url.password && !t->url.user) {
        eddyi_secret_free(token);
        return eddyi_error(err, EDDY_EINVAL, "nats URL: a password without a "
                           "user (user:password@ or user=; a token is "
                           "TOKEN@ or token=)");
    }
    for (size_t i = 0; i < t->url.nparams; i++) {
        const char *k = t->url.keys[i], *v = t->url.values[i];
        if (strcmp(k, "stream") == 0) {
            stream = v;
        } else if (strcmp(k, "dedup") == 0 &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
            dedup = strcmp(v, "on") == 0;
        } else if (strcmp(k, "tls") == 0 &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
            sec.tls = strcmp(v, "on") == 0;
        } else if (strcmp(k, "nkey") == 0) {
            sec.nkey = v;
        } else if (strcmp(k, "nkey_seed") == 0) {
            sec.nkey_seed = v;
        } else if (strcmp(k, "creds") == 0) {
            sec.creds = v;
        } else if (strcmp(k, "tls_ca") == 0) {
            sec.tls_ca = v;
        } else if (strcmp(k, "tls_cert") == 0) {
            sec.tls_cert = v;
        } else if (strcmp(k, "tls_key") == 0) {
            sec.tls_key = v;
        } else if (strcmp(k, "tls_hostname") == 0) {
            sec.tls_hostname = v;
        } else {
            eddyi_secret_free(token);
            return eddyi_error(err, EDDY_EINVAL, "nats URL: unknown parameter "
                               "\"%s\" (known: stream, dedup, user, "
                               "password[_file|_env], token[_file|_env], nkey, "
                               "nkey_seed, creds, tls, tls_ca, tls_cert, "
                               "tls_key, tls_hostname)", k);
        }
    }
    const char *half = !sec.nkey != !sec.nkey_seed ? "nkey and nkey_seed"
                       : !sec.tls_cert != !sec.tls_key ? "tls_cert and tls_key"
                                                       : NULL;
    natsStatus s = NATS_OK;
    nats_state *ns = NULL;
    if (half) {
        trc = eddyi_error(err, EDDY_EINVAL, "nats URL: %s go together", half);
    } else if (!*stream || strpbrk(stream, ". *>/\\\t")) {
        trc = eddyi_error(err, EDDY_EINVAL, "nats URL: stream name \"%s\" is "
                          "empty or has '.', '*', '>', '/' or a space", stream);
    } else if (strlen(t->prefix) == 0 ||
               t->prefix[strlen(t->prefix) - 1] != '.' ||
               strpbrk(t->prefix, "*> \t")) {
        trc = eddyi_error(err, EDDY_EINVAL, "nats: topic prefix \"%s\" must "
                          "end with '.' and have no wildcard or space",
                          t->prefix);
    } else if (!t->url.authority[0]) {
        trc = eddyi_error(err, EDDY_EINVAL, "nats URL: no server (expected "
                          "nats://HOST:PORT)");
    } else if ((s = nats_Open(-1)) != NATS_OK) {
        /* Initialises the library once per process (later calls do
         * nothing); never undone here: nats_Close is process-wide. */
        trc = eddyi_error(err, EDDY_ENOMEM, "nats: library initialisation "
                          "failed: %s", natsStatus_GetText(s));
    } else if (!(ns = calloc(1, sizeof *ns))) {
        trc = eddyi_error(err, EDDY_ENOMEM, "out of memory opening nats");
    }
    if (trc != EDDY_OK) {
        eddyi_secret_free(token);
        return trc;
    }
    pthread_mutex_init(&ns->mu, NULL);
    pthread_cond_init(&ns->cv, NULL);
    ns->dedup = dedup;
    ns->token = token;
    token = NULL;
    t->state = ns;
    natsOptions *nopts = NULL;
    const char **servers = NULL;
    int nservers = 0;
    int rc = EDDY_ENOMEM;
    ns->stream = eddyi_strdup(stream);
    ns->servers = eddyi_strdup(t->url.authority);
    if (!ns->stream || !ns->servers)
        goto nomem;

    /* "h1:4222,h2:4222" -> nats://h1:4222, nats://h2:4222 */
    char *list = eddyi_strdup(t->url.authority);
    size_t n = 1;
    for (const char *p = t->url.authority; *p; p++)
        n += *p == ',';
    servers = calloc(n, sizeof *servers);
    if (!list || !servers) {
        free(list);
        goto nomem;
    }
    for (char *tok = list; tok;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = '\0';
        if (*tok) {
            size_t len = strlen(tok) + 8;
            char *url = malloc(len);
            if (!url) {
                free(list);
                goto nomem;
            }
            snprintf(url, len, "nats://%s", tok);
            servers[nservers++] = url;
        }
        tok = comma ? comma + 1 : NULL;
    }
    free(list);
    if (nservers == 0) {
        rc = eddyi_error(err, EDDY_EINVAL, "nats URL: no server in \"%s\"",
                         t->url.authority);
        goto fail;
    }
    if ((s = natsOptions_Create(&nopts)) != NATS_OK ||
        (s = natsOptions_SetServers(nopts, servers, nservers)) != NATS_OK ||
        (s = natsOptions_SetTimeout(nopts, o->connect_timeout_ms)) != NATS_OK ||
        (s = natsOptions_SetMaxReconnect(nopts, -1)) != NATS_OK ||
        (s = natsOptions_SetReconnectWait(nopts, o->reconnect_initial_ms)) !=
            NATS_OK ||
        (s = natsOptions_SetName(nopts, "eddy")) != NATS_OK ||
        (s = natsOptions_SetReconnectedCB(nopts, nats_reconnected_cb, ns)) !=
            NATS_OK ||
        (s = natsOptions_SetDisconnectedCB(nopts, nats_disconnected_cb, ns)) !=
            NATS_OK ||
        (s = natsOptions_SetClosedCB(nopts, nats_closed_cb, ns)) != NATS_OK) {
        rc = eddyi_error(err, nats_code(s), "nats: options: %s", nats_why(s));
        goto fail;
    }
    if ((rc = nats_secure(t, ns, nopts, &sec, err)) != EDDY_OK)
        goto fail;
    s = natsConnection_Connect(&ns->nc, nopts);
    if (s != NATS_OK) {
        rc = nats_connect_error(t, ns, &sec, s, err);
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = o->timeout_ms;
    jo.PublishAsync.AckHandler = nats_ack_cb;
    jo.PublishAsync.AckHandlerClosure = ns;
    jo.PublishAsync.MaxPending =
        o->buffer_max > 1000000 ? 1000000 : (int64_t)o->buffer_max;
    jo.PublishAsync.StallWait = o->timeout_ms;
    if ((s = natsConnection_JetStream(&ns->js, ns->nc, &jo)) != NATS_OK) {
        rc = eddyi_error(err, nats_code(s), "nats %s: JetStream context: %s",
                         t->url.authority, nats_why(s));
        goto fail;
    }
    if ((rc = nats_ensure_stream(t, err)) != EDDY_OK)
        goto fail;
    natsOptions_Destroy(nopts);
    for (int i = 0; i < nservers; i++)
        free((void *)servers[i]);
    free(servers);
    return EDDY_OK;

nomem:
    rc = eddyi_error(err, EDDY_ENOMEM, "out of memory opening nats");
fail:
    natsOptions_Destroy(nopts);
    for (int i = 0; i < nservers; i++)
        free((void *)servers[i]);
    free(servers);
    nats_state_free(ns);
    t->state = NULL;
    return rc;
}

static void nats_close(eddy_transport *t)
{
    nats_state *ns = t->state;
    if (!ns)
        return;
    nats_flush(t, t->opts.timeout_ms, NULL);
    atomic_store(&ns->closing, true);
    /* Publishes still unanswered: their callbacks get EDDY_ESTOPPED. An
     * answer arriving meanwhile finds no record and only frees its
     * message. */
    pthread_mutex_lock(&ns->mu);
    size_t inflight = ns->inflight;
    pthread_mutex_unlock(&ns->mu);
    /* (libnats crashes asking for the pending list when nothing was ever
     * published asynchronously, so only ask when something is left.) */
    natsMsgList left;
    if (inflight > 0 &&
        js_PublishAsyncGetPendingList(&left, ns->js) == NATS_OK) {
        for (int i = 0; i < left.Count; i++) {
            pthread_mutex_lock(&ns->mu);
            nats_pending *p = pending_take(ns, left.Msgs[i]);
            pthread_mutex_unlock(&ns->mu);
            if (p) {
                eddy_error e = {0};
                e.code = eddyi_error(&e, EDDY_ESTOPPED, "transport closed before "
                                     "event %s was acknowledged",
                                     eddy_event_id(p->ev));
                pending_finish(ns, p, EDDY_ESTOPPED, &e);
            }
        }
        natsMsgList_Destroy(&left);
    }
    nats_state_free(ns);
    t->state = NULL;
}

/* ---- consuming ---------------------------------------------------------------- */

/* "<group>_<type>_<hash>": NATS names allow no '.', '*', '>', '/', space. */
static char *durable_name(const char *group, const char *type)
{
    uint32_t h = 2166136261u; /* FNV-1a of "group\0type" */
    for (const char *p = group; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h *= 16777619u;
    for (const char *p = type; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    size_t len = strlen(group) + strlen(type) + 12;
    char *name = malloc(len);
    if (!name)
        return NULL;
    snprintf(name, len, "%s_%s_%08x", group, type, h);
    for (char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            *p = '_';
    }
    return name;
}

/* Creates the durable consumer, or brings its ack wait in line. */
static int nats_ensure_consumer(eddy_transport_subscription *sub, const char *durable,
                                const char *topic, eddy_error *err)
{
    nats_state *ns = sub->t->state;
    int64_t ack_wait_ns = (int64_t)sub->o.ack_wait_ms * 1000000LL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, ns->js, ns->stream, durable, NULL,
                                      &jerr);
    if (s == NATS_OK) {
        if (ci->Config && ci->Config->AckWait != ack_wait_ns) {
            jsConsumerConfig cc = *ci->Config;
            cc.AckWait = ack_wait_ns;
            jsConsumerInfo *ci2 = NULL;
            s = js_UpdateConsumer(&ci2, ns->js, ns->stream, &cc, NULL, &jerr);
            if (s != NATS_OK)
                EDDYI_LOG(EDDY_LOG_WARN, "nats", "consumer %s: cannot update "
                          "its ack wait: %s", durable, nats_why(s));
            jsConsumerInfo_Destroy(ci2);
        }
        jsConsumerInfo_Destroy(ci);
        return EDDY_OK;
    }
    if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr)
        return eddyi_error(err, nats_code(s) == EDDY_EIO ? EDDY_EIO
                                                         : EDDY_ECONNECT,
                           "nats: consumer %s of stream %s: %s (%d)", durable,
                           ns->stream, nats_why(s), (int)jerr);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = ack_wait_ns;
    cc.MaxDeliver = -1;
    cc.FilterSubject = topic;
    cc.DeliverPolicy = sub->o.start_from == EDDY_START_END ? js_DeliverNew
                                                        : js_DeliverAll;
    s = js_AddConsumer(&ci, ns->js, ns->stream, &cc, NULL, &jerr);
    if (s != NATS_OK)
        return eddyi_error(err, EDDY_EIO, "nats: cannot create consumer %s on "
                           "stream %s: %s (%d)", durable, ns->stream,
                           nats_why(s), (int)jerr);
    jsConsumerInfo_Destroy(ci);
    return EDDY_OK;
}

/* Decodes one message; NULL when it was dead-lettered. */
static eddy_event *nats_decode(nats_sub *nsub, natsMsg *msg, const char *topic,
                               uint32_t attempt)
{
    eddy_transport_subscription *sub = nsub->sub;
    const char *data = natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    if (!data)
        data = "";
    const char **keys = NULL;
    int n = 0;
    if (natsMsgHeader_Keys(msg, &keys, &n) != NATS_OK) {
        keys = NULL;
        n = 0;
    }
    const char **values = calloc(n > 0 ? (size_t)n : 1, sizeof *values);
    size_t *lens = calloc(n > 0 ? (size_t)n : 1, sizeof *lens);
    eddy_event *ev = NULL;
    char reason[EDDY_ERROR_MESSAGE_MAX];
    if (!values || !lens) {
        snprintf(reason, sizeof reason, "out of memory decoding a message");
        goto dead;
    }
    size_t size = len;
    const char *ct = NULL;
    bool has_specversion = false;
    for (int i = 0; i < n; i++) {
        const char *v = NULL;
        if (natsMsgHeader_Get(msg, keys[i], &v) != NATS_OK || !v)
            v = "";
        values[i] = v;
        lens[i] = strlen(v);
        size += strlen(keys[i]) + lens[i];
        if (strcasecmp(keys[i], "content-type") == 0)
            ct = v;
        if (strcasecmp(keys[i], NATS_HEADER_PREFIX "specversion") == 0)
            has_specversion = true;
    }
    if (size > sub->t->opts.max_message_bytes) {
        snprintf(reason, sizeof reason, "oversized: %zu bytes, limit %zu", size,
                 sub->t->opts.max_message_bytes);
        goto dead;
    }
    if (!has_specversion && eddyi_ce_binary_is_structured(ct)) {
        ev = eddyi_transport_decode(sub, data, len, topic, attempt);
        goto out;
    }
    ev = eddyi_ce_binary_decode(keys, values, lens, (size_t)n,
                                NATS_HEADER_PREFIX, NATS_TYPES_HEADER, true,
                                data, len, reason, sizeof reason);
    if (ev)
        goto out;
dead:
    eddyi_transport_dead_letter(sub, NULL, data, len, topic, reason, attempt);
out:
    free((void *)keys);
    free(values);
    free(lens);
    return ev;
}

static void nats_handle(nats_sub *nsub, natsMsg *msg)
{
    const char *topic = natsMsg_GetSubject(msg);
    uint32_t attempt = 1;
    jsMsgMetaData *md = NULL;
    if (natsMsg_GetMetaData(&md, msg) == NATS_OK) {
        attempt = md->NumDelivered > UINT32_MAX ? UINT32_MAX
                                                : (uint32_t)md->NumDelivered;
        jsMsgMetaData_Destroy(md);
    }
    eddy_event *ev = nats_decode(nsub, msg, topic, attempt);
    if (!ev) {
        natsMsg_Term(msg, NULL); /* dead-lettered: never again */
        return;
    }
    const char *data = natsMsg_GetData(msg);
    int delay = 0;
    eddyi_settle s = eddyi_transport_dispatch(
        nsub->sub, ev, topic, attempt, data ? data : "",
        (size_t)natsMsg_GetDataLength(msg), &delay);
    natsStatus st = s == EDDYI_SETTLE_ACK ? natsMsg_Ack(msg, NULL)
                    : delay > 0 ? natsMsg_NakWithDelay(msg, delay, NULL)
                                : natsMsg_Nak(msg, NULL);
    if (st != NATS_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "nats", "%s: cannot %s event %s: %s "
                  "(redelivered after the ack wait)", nsub->sub->consumer,
                  s == EDDYI_SETTLE_ACK ? "ack" : "nak", eddy_event_id(ev),
                  natsStatus_GetText(st));
    eddy_event_unref(ev);
}

/* Counts the connection's reconnections in the subscription's stats. */
static void nats_note_reconnects(nats_sub *nsub)
{
    nats_state *ns = nsub->sub->t->state;
    uint64_t now = atomic_load(&ns->reconnects);
    while (nsub->reconnects < now) {
        nsub->reconnects++;
        eddyi_transport_sub_reconnected(nsub->sub);
    }
}

/* Tells the front whether the subscription reaches the server: down while
 * libnats is not connected (a fetch may still time out quietly then) or
 * fetching failed (`fetch_error`), up once a round of fetches was
 * answered on a connected connection. */
static void nats_note_state(nats_sub *nsub, const char *fetch_error)
{
    nats_state *ns = nsub->sub->t->state;
    natsConnStatus st = natsConnection_Status(ns->nc);
    if (st == NATS_CONN_STATUS_CONNECTED && !fetch_error) {
        eddyi_transport_sub_alive(nsub->sub);
        return;
    }
    char why[256];
    if (st != NATS_CONN_STATUS_CONNECTED) {
        /* libnats keeps the error that broke the connection, if any */
        const char *last = NULL;
        natsStatus ls = natsConnection_GetLastError(ns->nc, &last);
        const char *detail = last && *last ? last
                             : ls != NATS_OK ? natsStatus_GetText(ls)
                                             : NULL;
        snprintf(why, sizeof why, "%s%s%s",
                 st == NATS_CONN_STATUS_RECONNECTING
                     ? "disconnected, libnats is reconnecting"
                     : "connection closed",
                 detail ? ": " : "", detail ? detail : "");
    } else {
        snprintf(why, sizeof why, "fetch failed: %s", fetch_error);
    }
    eddyi_transport_sub_lost(nsub->sub, why);
}

static void *nats_sub_main(void *arg)
{
    eddyi_thread_name("eddy-nats-sub");
    nats_sub *nsub = arg;
    eddy_transport_subscription *sub = nsub->sub;
    const eddy_transport_options *o = &sub->t->opts;
    int backoff = 0;
    int fetch_ms = NATS_FETCH_MS / (int)(nsub->count < 5 ? nsub->count : 5);
    int batch = sub->o.batch > 0 && sub->o.batch < 100000 ? (int)sub->o.batch
                                                            : 64;
    while (!atomic_load(&nsub->stop)) {
        bool failed = false;
        const char *fetch_error = NULL;
        for (size_t i = 0; i < nsub->count && !atomic_load(&nsub->stop); i++) {
            natsMsgList list = {0};
            jsErrCode jerr = 0;
            natsStatus s = natsSubscription_Fetch(&list, nsub->subs[i], batch,
                                                  fetch_ms, &jerr);
            nats_note_reconnects(nsub);
            if (s == NATS_OK) {
                /* A message left when stopping stays unacknowledged: the
                 * server redelivers it after the ack wait. */
                for (int k = 0; k < list.Count && !atomic_load(&nsub->stop); k++)
                    nats_handle(nsub, list.Msgs[k]);
                natsMsgList_Destroy(&list);
            } else if (s != NATS_TIMEOUT) {
                failed = true;
                fetch_error = natsStatus_GetText(s);
                EDDYI_LOG(EDDY_LOG_DEBUG, "nats", "%s: fetch from %s: %s (%d)",
                          sub->consumer, nsub->durables[i],
                          natsStatus_GetText(s), (int)jerr);
            }
        }
        nats_note_state(nsub, failed ? fetch_error : NULL);
        if (failed) {
            backoff = backoff ? backoff * 2 : o->reconnect_initial_ms;
            if (backoff > o->reconnect_max_ms)
                backoff = o->reconnect_max_ms;
            for (int64_t until = eddyi_transport_now_ms() + backoff;
                 !atomic_load(&nsub->stop) && eddyi_transport_now_ms() < until;)
                eddyi_transport_sleep_ms(20);
        } else {
            backoff = 0;
        }
    }
    return NULL;
}

static void nats_sub_destroy(nats_sub *nsub)
{
    for (size_t i = 0; i < nsub->count; i++) {
        /* Destroy, not Unsubscribe: the durable consumer stays for the
         * group. */
        if (nsub->subs)
            natsSubscription_Destroy(nsub->subs[i]);
        if (nsub->durables)
            free(nsub->durables[i]);
    }
    free(nsub->subs);
    free(nsub->durables);
    free(nsub);
}

static int nats_subscribe(eddy_transport_subscription *sub, eddy_error *err)
{
    nats_state *ns = sub->t->state;
    nats_sub *nsub = calloc(1, sizeof *nsub);
    if (!nsub)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory subscribing");
    nsub->sub = sub;
    nsub->subs = calloc(sub->ntopics, sizeof *nsub->subs);
    nsub->durables = calloc(sub->ntopics, sizeof *nsub->durables);
    int rc = EDDY_ENOMEM;
    if (!nsub->subs || !nsub->durables) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory subscribing");
        goto fail;
    }
    for (size_t i = 0; i < sub->ntopics; i++) {
        nsub->durables[i] = durable_name(sub->group, sub->types[i]);
        nsub->count = i + 1;
        if (!nsub->durables[i]) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory subscribing");
            goto fail;
        }
        if ((rc = nats_ensure_consumer(sub, nsub->durables[i], sub->topics[i],
                                       err)) != EDDY_OK)
            goto fail;
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = ns->stream;
        so.Consumer = nsub->durables[i];
        jsErrCode jerr = 0;
        natsStatus s = js_PullSubscribe(&nsub->subs[i], ns->js, sub->topics[i],
                                        nsub->durables[i], NULL, &so, &jerr);
        if (s != NATS_OK) {
            rc = eddyi_error(err, nats_code(s) == EDDY_ECONNECT ? EDDY_ECONNECT
                                                               : EDDY_EIO,
                             "nats: cannot bind to consumer %s: %s (%d)",
                             nsub->durables[i], nats_why(s), (int)jerr);
            goto fail;
        }
    }
    /* Reconnections before this subscription do not count for it. */
    nsub->reconnects = atomic_load(&ns->reconnects);
    sub->state = nsub;
    if (pthread_create(&nsub->thread, NULL, nats_sub_main, nsub) != 0) {
        sub->state = NULL;
        rc = eddyi_error(err, EDDY_ENOMEM, "nats: cannot start the "
                         "subscription thread");
        goto fail;
    }
    return EDDY_OK;
fail:
    nats_sub_destroy(nsub);
    return rc;
}

static void nats_sub_stop(eddy_transport_subscription *sub)
{
    nats_sub *nsub = sub->state;
    if (!nsub)
        return;
    atomic_store(&nsub->stop, true);
    pthread_join(nsub->thread, NULL);
}

static void nats_sub_free(eddy_transport_subscription *sub)
{
    nats_sub *nsub = sub->state;
    if (!nsub)
        return;
    nats_sub_destroy(nsub);
    sub->state = NULL;
}

/* ---- info -------------------------------------------------------------------- */

/* The subjects of the stream under the prefix with their message counts,
 * and the durable consumers on each (a group is one durable per type,
 * "<group>_<type>_<hash>"): NumPending is the lag, NumAckPending the
 * pending, NumWaiting the pull requests waiting (members fetching now). */
static int nats_info(eddy_transport *t, const char *const *groups,
                     size_t ngroups, eddy_transport_info *info,
                     eddy_error *err)
{
    nats_state *ns = t->state;
    char filter[512];
    snprintf(filter, sizeof filter, "%s>", t->prefix);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Stream.Info.SubjectsFilter = filter;
    jsStreamInfo *si = NULL;
    jsConsumerInfoList *cl = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, ns->js, ns->stream, &jo, &jerr);
    if (s != NATS_OK)
        return eddyi_error(err, nats_code(s) == EDDY_EIO ? EDDY_EIO
                                                         : EDDY_ECONNECT,
                           "nats %s: stream %s: %s (%d)", ns->servers,
                           ns->stream, nats_why(s), (int)jerr);
    int rc = EDDY_OK;
    const jsStreamStateSubjects *subs = si->State.Subjects;
    for (int i = 0; subs && i < subs->Count && rc == EDDY_OK; i++)
        if (eddyi_info_topic(info, subs->List[i].Subject,
                             (int64_t)subs->List[i].Msgs, 1) < 0)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    if (rc != EDDY_OK)
        goto out;
    s = js_Consumers(&cl, ns->js, ns->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        s = NATS_OK; /* no consumer at all */
    } else if (s != NATS_OK) {
        rc = eddyi_error(err, EDDY_EIO, "nats %s: consumers of stream %s: %s "
                         "(%d)", ns->servers, ns->stream, nats_why(s),
                         (int)jerr);
        goto out;
    }
    size_t plen = strlen(t->prefix);
    for (int c = 0; cl && c < cl->Count && rc == EDDY_OK; c++) {
        const jsConsumerInfo *ci = cl->List[c];
        const char *subject = ci->Config ? ci->Config->FilterSubject : NULL;
        if (!subject || strncmp(subject, t->prefix, plen) != 0)
            continue;
        if (ngroups) {
            /* asked for by group name: its durable for this type */
            bool wanted = false;
            for (size_t g = 0; g < ngroups && !wanted; g++) {
                char *d = durable_name(groups[g], subject + plen);
                wanted = d && strcmp(d, ci->Name) == 0;
                free(d);
            }
            if (!wanted)
                continue;
        }
        ssize_t ti = -1;
        for (size_t k = 0; k < info->topic_count; k++)
            if (strcmp(info->topics[k].name, subject) == 0)
                ti = (ssize_t)k;
        /* a consumer whose subject has no message yet */
        if (ti < 0 && (ti = eddyi_info_topic(info, subject, 0, 1)) < 0) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        if (eddyi_info_group(info, (size_t)ti, ci->Name, ci->NumWaiting,
                             ci->NumAckPending,
                             (int64_t)ci->NumPending) != 0)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
out:
    jsConsumerInfoList_Destroy(cl);
    jsStreamInfo_Destroy(si);
    return rc;
}

const eddyi_transport_ops eddyi_transport_nats_ops = {
    .engine = "nats",
    .default_prefix = "events.",
    .open = nats_open,
    .close = nats_close,
    .publish = nats_publish,
    .publish_async = nats_publish_async,
    .flush = nats_flush,
    .subscribe = nats_subscribe,
    .sub_stop = nats_sub_stop,
    .sub_free = nats_sub_free,
    .info = nats_info,
};
