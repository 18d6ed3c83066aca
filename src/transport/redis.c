/*
 * src/transport/redis.c - Redis through hiredis: Streams with consumer
 * groups (the default) or Pub/Sub (?mode=pubsub).
 *
 * Streams: publish is XADD <topic> MAXLEN ~ N * event <CloudEvents JSON>
 * key <subject>, on one connection shared under a mutex. A subscription
 * has its own connection and thread: XGROUP CREATE ... MKSTREAM (a
 * BUSYGROUP answer means it exists), then in a loop
 *   - XAUTOCLAIM <topic> <group> <me> <ack_wait> ... takes over entries
 *     left pending longer than ack_wait by a dead (or slow) member;
 *   - nacked entries whose delay ran out are taken back with XCLAIM
 *     <min-idle = delay> (if another member took them meanwhile, theirs);
 *   - XREADGROUP ... BLOCK 100 STREAMS <topics> > reads new entries;
 * each entry's delivery count comes from the stream's PEL (1 for a new
 * entry; XPENDING for a claimed one). A handled entry is XACKed; a nacked
 * one stays pending. A prefetched entry older than ack_wait is not handled
 * from the batch (another member may own it by now): XAUTOCLAIM brings it
 * back.
 * Pub/Sub: PUBLISH <channel> <CloudEvents JSON>; SUBSCRIBE on the
 * subscription's connection; at-most-once.
 * Connection loss: every connection is re-established with exponential
 * backoff (reconnect_initial_ms doubling to reconnect_max_ms); groups are
 * created again after a reconnection (the server may have lost them).
 *
 * Credentials: every connection sends AUTH USER PASSWORD (an ACL user) or
 * AUTH PASSWORD (requirepass) first, then PING, so that a wrong password,
 * an unknown user or a server wanting a password is an error of open,
 * named as such, not a NOAUTH on the first publish. Redis answers WRONGPASS
 * alike for an unknown user and a wrong password (on purpose: it does not
 * tell which users exist), so the message names the user and says "or".
 * TLS: hiredis 0.14 (Debian 12) has none; rediss:// is refused.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "core/internal.h"
#include "transport/transport_impl.h"

typedef struct redis_tp {
    char host[256];
    int port;
    int db;
    const char *user;         /* borrowed from t->url; NULL: default user */
    const char *password;     /* borrowed from t->url; a secret */
    bool pubsub;
    pthread_mutex_t mu;       /* the publishing connection and its backoff */
    redisContext *pub;        /* NULL while disconnected */
    int backoff_ms;
    int64_t retry_at_ms;      /* no reconnection attempt before this */
    char last_error[512];
} redis_tp;

typedef struct retry_item {
    struct retry_item *next;
    size_t topic_i;
    char id[64];
    int64_t due_ms;
    int delay_ms;
} retry_item;

typedef struct redis_sub {
    redis_tp *rt;
    redisContext *c;
    _Atomic bool stop;
    pthread_t thread;
    retry_item *retries;
    int64_t next_claim_ms;
    int backoff_ms;
    bool connected_once;
} redis_sub;

/* ---- connections ------------------------------------------------------- */

static struct timeval tv_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Connects, authenticates, checks that commands are allowed (PING) and
 * selects the database. Returns a context or NULL with `why` filled (never
 * with the password). */
static redisContext *redis_connect(redis_tp *rt, const eddy_transport_options *o,
                                   char *why, size_t why_size)
{
    redisContext *c = redisConnectWithTimeout(rt->host, rt->port,
                                              tv_ms(o->connect_timeout_ms));
    if (!c) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(why, why_size, "%s", c->errstr);
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv_ms(o->timeout_ms));
    redisReply *r = NULL;
    if (rt->password) {
        /* Sent as arguments, never formatted into a string. */
        const char *argv[3] = {"AUTH", rt->user, rt->password};
        size_t argl[3] = {4, rt->user ? strlen(rt->user) : 0,
                          strlen(rt->password)};
        r = rt->user ? redisCommandArgv(c, 3, argv, argl)
                     : redisCommandArgv(c, 2, (const char *[]){"AUTH",
                                                              rt->password},
                                        (size_t[]){4, argl[2]});
        if (!r)
            goto broken;
        if (r->type == REDIS_REPLY_ERROR) {
            if (strncmp(r->str, "WRONGPASS", 9) == 0 ||
                strncmp(r->str, "ERR invalid password", 20) == 0)
                snprintf(why, why_size, "authentication failed for user %s "
                         "(unknown user or wrong password): %s",
                         rt->user ? rt->user : "default", r->str);
            else
                snprintf(why, why_size, "authentication as %s refused: %s",
                         rt->user ? rt->user : "the default user", r->str);
            goto fail;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "PING");
    if (!r)
        goto broken;
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "NOAUTH", 6) == 0)
            snprintf(why, why_size, "the server requires authentication and "
                     "no password was given (redis://USER:PASSWORD@HOST:PORT, "
                     "?password_file= or ?password_env=): %s", r->str);
        else if (strncmp(r->str, "NOPERM", 6) == 0)
            snprintf(why, why_size, "user %s may not run commands: %s",
                     rt->user ? rt->user : "default", r->str);
        else
            snprintf(why, why_size, "PING: %s", r->str);
        goto fail;
    }
    freeReplyObject(r);
    if (rt->db) {
        r = redisCommand(c, "SELECT %d", rt->db);
        if (!r)
            goto broken;
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(why, why_size, "SELECT %d: %s", rt->db, r->str);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
broken:
    snprintf(why, why_size, "%s", c->errstr);
fail:
    freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static int redis_open(eddy_transport *t, eddy_error *err)
{
    if (strcmp(t->url.scheme, "rediss") == 0)
        return eddyi_error(err, EDDY_EINVAL, "transport URL \"%s\": rediss:// "
                           "(TLS) is not supported: this eddy is built with "
                           "hiredis %d.%d, and TLS needs hiredis >= 1.0; reach "
                           "the server through a TLS tunnel (stunnel) or a "
                           "trusted network rather than in the clear",
                           eddyi_transport_shown(t), HIREDIS_MAJOR,
                           HIREDIS_MINOR);
    redis_tp *rt = calloc(1, sizeof *rt);
    if (!rt)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    const char *auth = t->url.authority;
    const char *colon = strrchr(auth, ':');
    size_t hlen = colon ? (size_t)(colon - auth) : strlen(auth);
    rt->port = 6379;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p <= 0 || p > 65535) {
            free(rt);
            return eddyi_error(err, EDDY_EINVAL,
                               "redis URL: bad port \"%s\"", colon + 1);
        }
        rt->port = (int)p;
    }
    if (hlen == 0 || hlen >= sizeof rt->host) {
        free(rt);
        return eddyi_error(err, EDDY_EINVAL, "redis URL: no host (expected "
                           "redis://HOST:PORT)");
    }
    memcpy(rt->host, auth, hlen);
    rt->host[hlen] = '\0';
    if (t->url.path[0] == '/' && t->url.path[1]) {
        char *end;
        long db = strtol(t->url.path + 1, &end, 10);
        if (*end || db < 0 || db > 65535) {
            free(rt);
            return eddyi_error(err, EDDY_EINVAL,
                               "redis URL: bad database \"%s\"", t->url.path);
        }
        rt->db = (int)db;
    }
    rt->user = t->url.user;
    rt->password = t->url.password;
    if (rt->user && !rt->password) {
        free(rt);
        return eddyi_error(err, EDDY_EINVAL, "redis URL: user %s without a "
                           "password (redis://USER:PASSWORD@..., or "
                           "?password_file= / ?password_env=)", t->url.user);
    }
    const char *mode = eddyi_url_param(t, "mode");
    if (mode && strcmp(mode, "pubsub") == 0) {
        rt->pubsub = true;
    } else if (mode && strcmp(mode, "streams") != 0) {
        free(rt);
        return eddyi_error(err, EDDY_EINVAL,
                           "redis URL: unknown mode \"%s\" (expected streams "
                           "or pubsub)", mode);
    }
    for (size_t i = 0; i < t->url.nparams; i++)
        if (strcmp(t->url.keys[i], "mode") != 0) {
            int rc = eddyi_error(err, EDDY_EINVAL,
                                 "redis URL: unknown parameter \"%s\" (known: "
                                 "mode, user, password, password_file, "
                                 "password_env)", t->url.keys[i]);
            free(rt);
            return rc;
        }
    char why[512];
    rt->pub = redis_connect(rt, &t->opts, why, sizeof why);
    if (!rt->pub) {
        int rc = eddyi_error(err, EDDY_ECONNECT, "redis %s:%d: %s", rt->host,
                             rt->port, why);
        free(rt);
        return rc;
    }
    pthread_mutex_init(&rt->mu, NULL);
    rt->backoff_ms = t->opts.reconnect_initial_ms;
    t->state = rt;
    return EDDY_OK;
}

static void redis_close(eddy_transport *t)
{
    redis_tp *rt = t->state;
    if (rt->pub)
        redisFree(rt->pub);
    pthread_mutex_destroy(&rt->mu);
    free(rt);
}

/* Makes sure the publishing connection is up, under rt->mu. With the FAIL
 * policy one attempt is made (when the backoff allows); with BUFFER the
 * caller keeps trying until timeout_ms. */
static int pub_ensure(eddy_transport *t, eddy_error *err)
{
    redis_tp *rt = t->state;
    int64_t deadline = eddyi_transport_now_ms() + t->opts.timeout_ms;
    for (;;) {
        if (rt->pub)
            return EDDY_OK;
        int64_t now = eddyi_transport_now_ms();
        if (now >= rt->retry_at_ms) {
            rt->pub = redis_connect(rt, &t->opts, rt->last_error,
                                    sizeof rt->last_error);
            if (rt->pub) {
                rt->backoff_ms = t->opts.reconnect_initial_ms;
                EDDYI_LOG(EDDY_LOG_INFO, "transport",
                          "redis %s:%d: reconnected", rt->host, rt->port);
                return EDDY_OK;
            }
            rt->retry_at_ms = now + rt->backoff_ms;
            rt->backoff_ms = rt->backoff_ms * 2 > t->opts.reconnect_max_ms
                                 ? t->opts.reconnect_max_ms
                                 : rt->backoff_ms * 2;
        }
        if (t->opts.disconnected == EDDY_DISCONNECTED_FAIL)
            return eddyi_error(err, EDDY_ECONNECT,
                               "redis %s:%d: not connected: %s", rt->host,
                               rt->port, rt->last_error);
        if (now >= deadline)
            return eddyi_error(err, EDDY_ETIMEDOUT,
                               "redis %s:%d: still not connected after %d ms: "
                               "%s", rt->host, rt->port, t->opts.timeout_ms,
                               rt->last_error);
        int64_t wait = rt->retry_at_ms - now;
        if (wait > deadline - now)
            wait = deadline - now;
        pthread_mutex_unlock(&rt->mu);
        eddyi_transport_sleep_ms(wait > 0 ? (int)wait : 1);
        pthread_mutex_lock(&rt->mu);
    }
}

static int redis_publish(eddy_transport *t, const eddy_event *ev,
                         const char *topic, eddy_error *err)
{
    redis_tp *rt = t->state;
    size_t len;
    char *data = eddyi_transport_encode(t, ev, &len, err);
    if (!data)
        return err ? err->code : EDDY_ETOOBIG;
    const char *key = eddyi_transport_key(ev);
    char maxlen[32];
    snprintf(maxlen, sizeof maxlen, "%lld", t->opts.stream_maxlen);
    const char *argv[10];
    size_t argl[10];
    int argc = 0;
#define ARG(s, l) (argv[argc] = (s), argl[argc] = (l), argc++)
    if (rt->pubsub) {
        ARG("PUBLISH", 7);
        ARG(topic, strlen(topic));
        ARG(data, len);
    } else {
        ARG("XADD", 4);
        ARG(topic, strlen(topic));
        if (t->opts.stream_maxlen > 0) {
            ARG("MAXLEN", 6);
            ARG("~", 1);
            ARG(maxlen, strlen(maxlen));
        }
        ARG("*", 1);
        ARG("event", 5);
        ARG(data, len);
        ARG("key", 3);
        ARG(key, strlen(key));
    }
#undef ARG
    int rc;
    int64_t deadline = eddyi_transport_now_ms() + t->opts.timeout_ms;
    redisReply *r;
    pthread_mutex_lock(&rt->mu);
    for (;;) {
        if ((rc = pub_ensure(t, err)) != EDDY_OK)
            goto out;
        r = redisCommandArgv(rt->pub, argc, argv, argl);
        if (r)
            break;
        /* The connection broke: the event may or may not be stored. With
         * the BUFFER policy it is sent again once reconnected (a possible
         * duplicate: at-least-once); with FAIL the caller hears it now. */
        snprintf(rt->last_error, sizeof rt->last_error, "%s", rt->pub->errstr);
        rc = eddyi_error(err, EDDY_ECONNECT,
                         "redis %s:%d: publishing %s to %s: %s (it may or may "
                         "not have been stored)", rt->host, rt->port,
                         eddy_event_id(ev), topic, rt->pub->errstr);
        redisFree(rt->pub);
        rt->pub = NULL;
        if (t->opts.disconnected == EDDY_DISCONNECTED_FAIL ||
            eddyi_transport_now_ms() >= deadline)
            goto out;
    }
    if (r->type == REDIS_REPLY_ERROR)
        rc = eddyi_error(err, EDDY_EIO, "redis %s:%d: %s %s: %s", rt->host,
                         rt->port, argv[0], topic, r->str);
    else
        rc = EDDY_OK;
    freeReplyObject(r);
out:
    pthread_mutex_unlock(&rt->mu);
    free(data);
    return rc;
}

/* ---- subscriptions ------------------------------------------------------------ */

/* Drops the subscription's connection after an error. */
static void sub_broken(eddy_transport_subscription *sub, const char *what)
{
    redis_sub *rs = sub->state;
    const char *why = rs->c && rs->c->errstr[0] ? rs->c->errstr : what;
    EDDYI_LOG(EDDY_LOG_WARN, "transport", "redis %s:%d: %s (group %s): %s",
              rs->rt->host, rs->rt->port, what, sub->group, why);
    eddyi_transport_sub_lost(sub, why);
    if (rs->c)
        redisFree(rs->c);
    rs->c = NULL;
}

/* Creates the group on every topic (BUSYGROUP: it exists). */
static int create_groups(eddy_transport_subscription *sub, char *why, size_t size)
{
    redis_sub *rs = sub->state;
    for (size_t i = 0; i < sub->ntopics; i++) {
        redisReply *r = redisCommand(rs->c, "XGROUP CREATE %s %s %s MKSTREAM",
                                     sub->topics[i], sub->group,
                                     sub->o.start_from == EDDY_START_END
                                         ? "$" : "0");
        if (!r) {
            snprintf(why, size, "%s", rs->c->errstr);
            return EDDY_ECONNECT;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9)) {
            snprintf(why, size, "XGROUP CREATE %s %s: %s", sub->topics[i],
                     sub->group, r->str);
            freeReplyObject(r);
            return EDDY_EIO;
        }
        freeReplyObject(r);
    }
    return EDDY_OK;
}

static int subscribe_channels(eddy_transport_subscription *sub, char *why, size_t size)
{
    redis_sub *rs = sub->state;
    for (size_t i = 0; i < sub->ntopics; i++) {
        redisReply *r = redisCommand(rs->c, "SUBSCRIBE %s", sub->topics[i]);
        if (!r) {
            snprintf(why, size, "%s", rs->c->errstr);
            return EDDY_ECONNECT;
        }
        freeReplyObject(r);
    }
    return EDDY_OK;
}

/* (Re)connects the subscription's connection, with backoff; false when
 * stopped first. */
static bool sub_connect(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    const eddy_transport_options *o = &sub->t->opts;
    while (!rs->c && !atomic_load(&rs->stop)) {
        char why[512];
        rs->c = redis_connect(rs->rt, o, why, sizeof why);
        int rc = EDDY_ECONNECT;
        if (rs->c) {
            rc = rs->rt->pubsub ? subscribe_channels(sub, why, sizeof why)
                                : create_groups(sub, why, sizeof why);
            if (rc != EDDY_OK) {
                redisFree(rs->c);
                rs->c = NULL;
            }
        }
        if (rs->c) {
            rs->backoff_ms = o->reconnect_initial_ms;
            if (rs->connected_once)
                eddyi_transport_sub_reconnected(sub);
            rs->connected_once = true;
            eddyi_transport_sub_alive(sub);
            break;
        }
        eddyi_transport_sub_lost(sub, why);
        EDDYI_LOG(EDDY_LOG_WARN, "transport",
                  "redis %s:%d: subscription %s reconnecting in %d ms: %s",
                  rs->rt->host, rs->rt->port, sub->group, rs->backoff_ms, why);
        for (int slept = 0; slept < rs->backoff_ms && !atomic_load(&rs->stop);
             slept += 20)
            eddyi_transport_sleep_ms(20);
        rs->backoff_ms = rs->backoff_ms * 2 > o->reconnect_max_ms
                             ? o->reconnect_max_ms
                             : rs->backoff_ms * 2;
    }
    return rs->c != NULL;
}

/* The value of `field` in an entry's field array, or NULL. */
static const redisReply *entry_field(const redisReply *fields,
                                     const char *field)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, field) == 0)
            return fields->element[i + 1];
    return NULL;
}

/* How many times the group delivered entry `id` (from its PEL); 0 when it
 * is not pending (acked by someone), -1 on a connection error. */
static long long delivery_count(eddy_transport_subscription *sub, const char *topic,
                                const char *id)
{
    redis_sub *rs = sub->state;
    redisReply *r = redisCommand(rs->c, "XPENDING %s %s %s %s 1", topic,
                                 sub->group, id, id);
    if (!r)
        return -1;
    long long n = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 4 &&
        r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        n = r->element[0]->element[3]->integer;
    freeReplyObject(r);
    return n;
}

/* Handles one stream entry. Returns false on a connection error. */
static bool handle_entry(eddy_transport_subscription *sub, size_t topic_i,
                         const redisReply *entry, bool claimed)
{
    redis_sub *rs = sub->state;
    const char *topic = sub->topics[topic_i];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return true; /* a trimmed entry (nil fields): nothing to handle */
    const char *id = entry->element[0]->str;
    long long attempt = 1;
    if (claimed) {
        attempt = delivery_count(sub, topic, id);
        if (attempt < 0)
            return false;
        if (attempt == 0)
            return true;
    }
    const redisReply *f = entry_field(entry->element[1], "event");
    eddyi_settle how = EDDYI_SETTLE_ACK;
    int delay = 0;
    const char *raw = f && f->type == REDIS_REPLY_STRING ? f->str : NULL;
    size_t raw_len = raw ? f->len : 0;
    eddy_event *ev = eddyi_transport_decode(sub, raw, raw_len, topic,
                                            (uint32_t)attempt);
    if (ev)
        how = eddyi_transport_dispatch(sub, ev, topic, (uint32_t)attempt, raw,
                                       raw_len, &delay);
    eddy_event_unref(ev);
    if (how == EDDYI_SETTLE_ACK) {
        redisReply *r = redisCommand(rs->c, "XACK %s %s %s", topic, sub->group,
                                     id);
        if (!r)
            return false;
        freeReplyObject(r);
        return true;
    }
    /* Nacked: it stays pending; taken back after `delay` (or by another
     * member after ack_wait). */
    if (delay >= sub->o.ack_wait_ms)
        return true;
    retry_item *it = calloc(1, sizeof *it);
    if (!it) {
        EDDYI_LOG(EDDY_LOG_ERROR, "transport",
                  "redis: out of memory; entry %s redelivered after ack_wait",
                  id);
        return true;
    }
    it->topic_i = topic_i;
    snprintf(it->id, sizeof it->id, "%s", id);
    it->delay_ms = delay;
    it->due_ms = eddyi_transport_now_ms() + delay;
    retry_item **pp = &rs->retries;
    while (*pp)
        pp = &(*pp)->next;
    *pp = it;
    return true;
}

/* Handles the entries of an XREADGROUP / XCLAIM / XAUTOCLAIM answer for
 * one topic. Stops early (leaving the rest pending) when the batch is older
 * than ack_wait or the subscription stops. */
static bool handle_entries(eddy_transport_subscription *sub, size_t topic_i,
                           const redisReply *entries, bool claimed,
                           int64_t fetched_ms)
{
    redis_sub *rs = sub->state;
    if (!entries || entries->type != REDIS_REPLY_ARRAY)
        return true;
    for (size_t i = 0; i < entries->elements; i++) {
        if (atomic_load(&rs->stop) ||
            eddyi_transport_now_ms() - fetched_ms > sub->o.ack_wait_ms)
            return true;
        if (!handle_entry(sub, topic_i, entries->element[i], claimed))
            return false;
    }
    return true;
}

static bool run_retries(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    int64_t now = eddyi_transport_now_ms();
    retry_item **pp = &rs->retries;
    while (*pp && !atomic_load(&rs->stop)) {
        retry_item *it = *pp;
        if (it->due_ms > now) {
            pp = &it->next;
            continue;
        }
        *pp = it->next;
        size_t ti = it->topic_i;
        /* MIN-IDLE = the delay: if another member claimed it since (its idle
         * time was reset), it is theirs now and nothing comes back. */
        redisReply *r = redisCommand(rs->c, "XCLAIM %s %s %s %d %s",
                                     sub->topics[ti], sub->group,
                                     sub->consumer, it->delay_ms, it->id);
        free(it);
        if (!r)
            return false;
        bool ok = handle_entries(sub, ti, r, true, eddyi_transport_now_ms());
        freeReplyObject(r);
        if (!ok)
            return false;
        pp = &rs->retries; /* the list may have grown */
    }
    return true;
}

static bool run_autoclaim(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    int64_t now = eddyi_transport_now_ms();
    if (now < rs->next_claim_ms)
        return true;
    int every = sub->o.ack_wait_ms / 4;
    rs->next_claim_ms = now + (every < 20 ? 20 : every > 1000 ? 1000 : every);
    for (size_t i = 0; i < sub->ntopics && !atomic_load(&rs->stop); i++) {
        char cursor[64] = "0-0";
        for (int rounds = 0; rounds < 16; rounds++) {
            redisReply *r = redisCommand(
                rs->c, "XAUTOCLAIM %s %s %s %d %s COUNT %d", sub->topics[i],
                sub->group, sub->consumer, sub->o.ack_wait_ms, cursor,
                (int)sub->o.batch);
            if (!r)
                return false;
            if (r->type == REDIS_REPLY_ERROR) {
                EDDYI_LOG(EDDY_LOG_WARN, "transport", "redis XAUTOCLAIM %s: %s",
                          sub->topics[i], r->str);
                freeReplyObject(r);
                break;
            }
            bool ok = true, more = false;
            if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
                ok = handle_entries(sub, i, r->element[1], true,
                                    eddyi_transport_now_ms());
                if (r->element[0]->type == REDIS_REPLY_STRING) {
                    snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
                    more = strcmp(cursor, "0-0") != 0;
                }
            }
            freeReplyObject(r);
            if (!ok)
                return false;
            if (!more)
                break;
        }
    }
    return true;
}

static bool run_read(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    size_t argc = 7 + 2 * sub->ntopics;
    const char **argv = calloc(argc, sizeof *argv);
    if (!argv)
        return true;
    char count[32];
    snprintf(count, sizeof count, "%zu", sub->o.batch);
    size_t a = 0;
    argv[a++] = "XREADGROUP";
    argv[a++] = "GROUP";
    argv[a++] = sub->group;
    argv[a++] = sub->consumer;
    argv[a++] = "COUNT";
    argv[a++] = count;
    argv[a++] = "BLOCK";
    const char *block = "100";
    const char **full = realloc(argv, (argc + 2) * sizeof *argv);
    if (!full) {
        free(argv);
        return true;
    }
    argv = full;
    argv[a++] = block;
    argv[a++] = "STREAMS";
    for (size_t i = 0; i < sub->ntopics; i++)
        argv[a++] = sub->topics[i];
    for (size_t i = 0; i < sub->ntopics; i++)
        argv[a++] = ">";
    redisReply *r = redisCommandArgv(rs->c, (int)a, argv, NULL);
    free(argv);
    if (!r)
        return false;
    int64_t fetched = eddyi_transport_now_ms();
    bool ok = true;
    if (r->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: the stream or group vanished (a server that lost its
         * data): create them again. */
        EDDYI_LOG(EDDY_LOG_WARN, "transport", "redis XREADGROUP: %s", r->str);
        char why[512];
        if (strncmp(r->str, "NOGROUP", 7) == 0 &&
            create_groups(sub, why, sizeof why) == EDDY_ECONNECT)
            ok = false;
        else
            eddyi_transport_sleep_ms(100);
    } else if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; ok && i < r->elements; i++) {
            const redisReply *s = r->element[i];
            if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
                continue;
            size_t ti = 0;
            while (ti < sub->ntopics &&
                   strcmp(sub->topics[ti], s->element[0]->str) != 0)
                ti++;
            if (ti < sub->ntopics)
                ok = handle_entries(sub, ti, s->element[1], false, fetched);
        }
    }
    freeReplyObject(r);
    return ok;
}

/* Pub/Sub: waits up to 100 ms for one message and handles it. */
static bool run_pubsub(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    void *reply = NULL;
    if (redisGetReplyFromReader(rs->c, &reply) != REDIS_OK)
        return false;
    if (!reply) {
        struct pollfd pfd = {.fd = rs->c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, 100);
        if (n > 0 && redisBufferRead(rs->c) != REDIS_OK)
            return false;
        if (redisGetReplyFromReader(rs->c, &reply) != REDIS_OK)
            return false;
        if (!reply)
            return true;
    }
    redisReply *r = reply;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, "message") == 0 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        const char *topic = r->element[1]->str;
        const char *raw = r->element[2]->str;
        size_t len = r->element[2]->len;
        eddy_event *ev = eddyi_transport_decode(sub, raw, len, topic, 1);
        int delay;
        if (ev)
            eddyi_transport_dispatch(sub, ev, topic, 1, raw, len, &delay);
        eddy_event_unref(ev);
    }
    freeReplyObject(r);
    return true;
}

static void *redis_sub_main(void *arg)
{
    eddyi_thread_name("eddy-redis-sub");
    eddy_transport_subscription *sub = arg;
    redis_sub *rs = sub->state;
    while (!atomic_load(&rs->stop)) {
        if (!sub_connect(sub))
            break;
        bool ok;
        if (rs->rt->pubsub)
            ok = run_pubsub(sub);
        else
            ok = run_retries(sub) && run_autoclaim(sub) && run_read(sub);
        if (!ok)
            sub_broken(sub, "connection lost");
    }
    return NULL;
}

static int redis_subscribe(eddy_transport_subscription *sub, eddy_error *err)
{
    redis_sub *rs = calloc(1, sizeof *rs);
    if (!rs)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    rs->rt = sub->t->state;
    rs->backoff_ms = sub->t->opts.reconnect_initial_ms;
    sub->state = rs;
    /* The first connection and the groups are made here, so that a
     * missing server or a refused group is an error of this call. */
    char why[512];
    int rc = EDDY_ECONNECT;
    rs->c = redis_connect(rs->rt, &sub->t->opts, why, sizeof why);
    if (rs->c)
        rc = rs->rt->pubsub ? subscribe_channels(sub, why, sizeof why)
                            : create_groups(sub, why, sizeof why);
    if (rc != EDDY_OK) {
        rc = eddyi_error(err, rc, "redis %s:%d: subscribing %s: %s",
                         rs->rt->host, rs->rt->port, sub->group, why);
        goto fail;
    }
    rs->connected_once = true;
    if (pthread_create(&rs->thread, NULL, redis_sub_main, sub) != 0) {
        rc = eddyi_error(err, EDDY_ENOMEM, "cannot start the subscription "
                         "thread");
        goto fail;
    }
    return EDDY_OK;
fail:
    if (rs->c)
        redisFree(rs->c);
    free(rs);
    sub->state = NULL;
    return rc;
}

static void redis_sub_stop(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    atomic_store(&rs->stop, true);
    pthread_join(rs->thread, NULL);
}

static void redis_sub_free(eddy_transport_subscription *sub)
{
    redis_sub *rs = sub->state;
    if (!rs)
        return;
    if (rs->c)
        redisFree(rs->c);
    for (retry_item *it = rs->retries, *n; it; it = n) {
        n = it->next;
        free(it);
    }
    free(rs);
    sub->state = NULL;
}

/* ---- info ----------------------------------------------------------------------- */

/* An integer field of a flat field/value reply (XINFO GROUPS entry); -1 if
 * absent or nil. */
static int64_t reply_int(const redisReply *map, const char *field)
{
    const redisReply *v = entry_field(map, field);
    if (!v)
        return -1;
    if (v->type == REDIS_REPLY_INTEGER)
        return v->integer;
    if (v->type == REDIS_REPLY_STRING)
        return strtoll(v->str, NULL, 10);
    return -1;
}

/* The stream `key`: its length and groups. */
static int info_stream(eddy_transport *t, const char *key,
                       const char *const *groups, size_t ngroups,
                       eddy_transport_info *info, eddy_error *err)
{
    redis_tp *rt = t->state;
    redisReply *r = redisCommand(rt->pub, "XLEN %s", key);
    if (!r)
        return EDDY_ECONNECT;
    int64_t len = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    ssize_t ti = eddyi_info_topic(info, key, len, 1);
    if (ti < 0)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    if (!(r = redisCommand(rt->pub, "XINFO GROUPS %s", key)))
        return EDDY_ECONNECT;
    int rc = EDDY_OK;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        const redisReply *name = entry_field(g, "name");
        if (!name || name->type != REDIS_REPLY_STRING ||
            !eddyi_info_group_wanted(name->str, groups, ngroups))
            continue;
        /* "lag" is Redis 7's; nil when the server cannot tell (entries
         * deleted in the middle) */
        if (eddyi_info_group(info, (size_t)ti, name->str,
                             reply_int(g, "consumers"), reply_int(g, "pending"),
                             reply_int(g, "lag")) != 0) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
    }
    freeReplyObject(r);
    return rc;
}

static int redis_info(eddy_transport *t, const char *const *groups,
                      size_t ngroups, eddy_transport_info *info,
                      eddy_error *err)
{
    redis_tp *rt = t->state;
    /* the prefix as a glob pattern, its special characters escaped */
    char pattern[1024];
    size_t o = 0;
    for (const char *p = t->prefix; *p && o + 3 < sizeof pattern; p++) {
        if (strchr("*?[]\\", *p))
            pattern[o++] = '\\';
        pattern[o++] = *p;
    }
    pattern[o++] = '*';
    pattern[o] = '\0';
    int rc = EDDY_OK;
    pthread_mutex_lock(&rt->mu);
    if ((rc = pub_ensure(t, err)) != EDDY_OK)
        goto out;
    redisReply *r = NULL;
    if (rt->pubsub) {
        /* Pub/Sub keeps nothing: the channels with subscribers now. */
        if (!(r = redisCommand(rt->pub, "PUBSUB CHANNELS %s", pattern)))
            goto broken;
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            const char *ch = r->element[i]->str;
            redisReply *n = redisCommand(rt->pub, "PUBSUB NUMSUB %s", ch);
            if (!n) {
                freeReplyObject(r);
                goto broken;
            }
            int64_t subs = n->type == REDIS_REPLY_ARRAY && n->elements == 2 &&
                                   n->element[1]->type == REDIS_REPLY_INTEGER
                               ? n->element[1]->integer
                               : -1;
            freeReplyObject(n);
            ssize_t ti = eddyi_info_topic(info, ch, -1, 1);
            if (ti < 0 || eddyi_info_group(info, (size_t)ti, "(subscribers)",
                                           subs, -1, -1) != 0) {
                rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
                break;
            }
        }
        freeReplyObject(r);
        if (rc == EDDY_OK && !(info->note = eddyi_strdup(
                                   "Pub/Sub stores nothing: channels with "
                                   "subscribers now, no lag")))
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto out;
    }
    char cursor[64] = "0";
    do {
        if (!(r = redisCommand(rt->pub, "SCAN %s MATCH %s COUNT 1000 TYPE stream",
                               cursor, pattern)))
            goto broken;
        if (r->type == REDIS_REPLY_ERROR) {
            rc = eddyi_error(err, EDDY_EIO, "redis %s:%d: SCAN: %s", rt->host,
                             rt->port, r->str);
            freeReplyObject(r);
            goto out;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            rc = eddyi_error(err, EDDY_EIO, "redis %s:%d: SCAN: unexpected "
                             "answer", rt->host, rt->port);
            goto out;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; rc == EDDY_OK && i < keys->elements; i++)
            rc = info_stream(t, keys->element[i]->str, groups, ngroups, info,
                             err);
        freeReplyObject(r);
        if (rc == EDDY_ECONNECT)
            goto broken;
    } while (rc == EDDY_OK && strcmp(cursor, "0") != 0);
    goto out;
broken:
    rc = eddyi_error(err, EDDY_ECONNECT, "redis %s:%d: %s", rt->host,
                     rt->port, rt->pub->errstr);
    redisFree(rt->pub);
    rt->pub = NULL;
out:
    pthread_mutex_unlock(&rt->mu);
    return rc;
}

const eddyi_transport_ops eddyi_transport_redis_ops = {
    .engine = "redis",
    .default_prefix = "events.",
    .open = redis_open,
    .close = redis_close,
    .publish = redis_publish,
    .publish_async = NULL,
    .flush = NULL,
    .subscribe = redis_subscribe,
    .sub_stop = redis_sub_stop,
    .sub_free = redis_sub_free,
    .info = redis_info,
    .alt_scheme = "rediss",
};
