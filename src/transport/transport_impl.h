/*
 * src/transport/transport_impl.h - the table every transport backend
 * implements, and the helpers the front (transport.c) gives them. Not
 * public.
 *
 * One file per engine: mem.c, redis.c, kafka.c, nats.c. Each defines one
 *
 *     const eddyi_transport_ops eddyi_transport_<engine>_ops = { ... };
 *
 * and the front lists them in its scheme table; the front never tests which
 * backend it has.
 *
 * Division of work:
 *   front  parses the URL, resolves option defaults, validates arguments,
 *          names topics, copies subscription options, runs handlers and
 *          decides ack / nack / dead letter (eddyi_transport_dispatch),
 *          gives an asynchronous publish to backends without one (a queue
 *          and one thread, started when first needed), counts statistics.
 *   backend  talks to the engine: publish, fetch, ack, nack, redelivery,
 *          reconnection, its own thread per subscription.
 */
#ifndef EDDY_SRC_TRANSPORT_IMPL_H
#define EDDY_SRC_TRANSPORT_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "eddy/transport.h"

/* The URL, split. Every string is owned by the transport. */
typedef struct eddyi_url {
    char *scheme;      /* "redis" (lower-case, without ':') */
    char *authority;   /* "127.0.0.1:6379" or "h1:9092,h2:9092"; "" if none;
                          without the user information */
    char *user;        /* from user[:password]@ or the user= parameter,
                          percent-decoded; NULL if none */
    char *password;    /* a secret: from user:password@, password=,
                          password_file= or password_env=; NULL if none.
                          Never printed; wiped when freed */
    char *path;        /* after the authority, before '?': "/0", "name"
                          (for "mem:name"), "" if none */
    size_t nparams;    /* query parameters, in order, percent-decoded, then
                          those of the configuration file that the query
                          does not override (the file's first); the front's
                          own keys (user, password*, ...) taken out */
    char **keys;
    char **values;
} eddyi_url;

typedef struct eddyi_async_queue eddyi_async_queue;

struct eddy_transport {
    const struct eddyi_transport_ops *ops;
    void *state;                    /* the backend's */
    eddyi_url url;
    eddy_transport_options opts;    /* defaults resolved; topic_prefix
                                       points to `prefix` */
    char *prefix;
    eddyi_async_queue *async;       /* the front's async publisher, when the
                                       backend has none; NULL until used */
    char *shown;                    /* the URL as eddy_url_redact shows it */
};

struct eddy_transport_subscription {
    eddy_transport *t;
    eddy_transport_subscription_options o;   /* defaults resolved; the strings and
                                       `types` point to the copies below */
    char **types;
    char **topics;                  /* topic of types[i] */
    size_t ntopics;
    char *group;
    char *consumer;
    void *state;                    /* the backend's */
    bool stopped;
    uint64_t rng;                   /* jitter of retry delays (the
                                       subscription's thread only) */
    _Atomic uint64_t delivered, acked, nacked, dead_lettered, reconnects;
    /* The connection's state (eddy_transport_subscription_down_since): 0 while up,
     * else when it was lost; the reason under down_mu. */
    _Atomic int64_t down_since_us;
    pthread_mutex_t down_mu;
    char down_reason[256];
};

typedef struct eddyi_transport_ops {
    const char *engine;          /* "redis" */
    const char *default_prefix;  /* "events." */

    /* Connects. Reads t->url and t->opts, sets t->state. Returns EDDY_OK or
     * an error with `err` filled (then close is not called). */
    int (*open)(eddy_transport *t, eddy_error *err);
    /* Disconnects and frees t->state. Every subscription is freed. */
    void (*close)(eddy_transport *t);

    /* Synchronous publish of `ev` to `topic` (already computed), key =
     * eddyi_transport_key(ev). Arguments already checked. Thread-safe. */
    int (*publish)(eddy_transport *t, const eddy_event *ev, const char *topic,
                   eddy_error *err);

    /* Native asynchronous publish (NULL: the front queues and calls
     * publish on a thread of its own). Contract of
     * eddy_transport_publish_async. */
    int (*publish_async)(eddy_transport *t, const eddy_event *ev,
                         const char *topic, eddy_publish_done_fn done,
                         void *user, eddy_error *err);
    /* Waits for the native async publishes (NULL when publish_async is). */
    int (*flush)(eddy_transport *t, int timeout_ms, eddy_error *err);

    /* Creates the group etc., sets sub->state, starts the subscription's
     * thread, which fetches and calls eddyi_transport_dispatch for each
     * message. On failure nothing runs and sub->state is untouched. */
    int (*subscribe)(eddy_transport_subscription *sub, eddy_error *err);
    /* Stops fetching, waits for the handler in progress, joins the thread.
     * Called once. */
    void (*sub_stop)(eddy_transport_subscription *sub);
    /* Frees sub->state (after sub_stop). */
    void (*sub_free)(eddy_transport_subscription *sub);

    /* Fills `info` (allocated by the front, zeroed, engine and url set)
     * with the engine's topics under t->prefix and their groups, through
     * eddyi_info_topic / eddyi_info_group. `groups` (may be empty): only
     * these groups, and these also where the engine cannot list groups.
     * Thread-safe like publish. */
    int (*info)(eddy_transport *t, const char *const *groups, size_t ngroups,
                eddy_transport_info *info, eddy_error *err);

    /* Another scheme this backend answers for ("rediss"): its open sees
     * it in t->url.scheme and may refuse it with the reason. NULL: none. */
    const char *alt_scheme;
} eddyi_transport_ops;

extern const eddyi_transport_ops eddyi_transport_mem_ops;
extern const eddyi_transport_ops eddyi_transport_redis_ops;
extern const eddyi_transport_ops eddyi_transport_kafka_ops;
extern const eddyi_transport_ops eddyi_transport_nats_ops;

/* ---- the URL (url.c) ------------------------------------------------------ */

/* Parses `text` into `u` (every string copied). EDDY_EINVAL with a message
 * showing the URL redacted, or EDDY_ENOMEM; `u` is then empty. */
int eddyi_url_parse(const char *text, eddyi_url *u, eddy_error *err);

/* Frees what `u` holds (secrets wiped first) and zeroes it. */
void eddyi_url_free(eddyi_url *u);

/* Merges the key=value lines of the configuration file `path` (librdkafka
 * properties format: '#' comments, blank lines; kcat -F) into `u`'s
 * parameters: a key the URL's query has is dropped from the file, a key
 * the file repeats counts once (its last value); the file's go first.
 * EDDY_EINVAL naming the file and line (never the line's text), EDDY_EIO,
 * EDDY_ETOOBIG (> 256 KiB), EDDY_ENOMEM; `u` unchanged on failure. */
int eddyi_url_merge_file(eddyi_url *u, const char *path, eddy_error *err);

/*
 * Takes the secret `name` ("password", "token") out of `u`: from the
 * parameter NAME=, NAME_file=PATH (the file's one line, its newline
 * dropped) or NAME_env=VARIABLE, or, with `in_userinfo`, from
 * user:password@; those parameters are removed. More than one source is
 * EDDY_EINVAL. `*out`: a new string (free with eddyi_secret_free) or NULL
 * when none is given. Errors name the key, file or variable, never the
 * value.
 */
int eddyi_url_take_secret(eddyi_url *u, const char *name, bool in_userinfo,
                          char **out, eddy_error *err);

/* Wipes and frees a secret. NULL does nothing. */
void eddyi_secret_free(char *secret);

/* True when the value of parameter `key` is a secret that
 * eddy_url_redact hides (password, token, secret, ...). */
bool eddyi_url_key_secret(const char *key);

/* ---- helpers for backends (transport.c) -------------------------------- */

/* eddy_transport_open without the backend's open: the URL parsed, the
 * configuration file merged, the credentials gathered, the options
 * resolved, t->ops chosen. Undone by eddyi_transport_unprepare. */
eddy_transport *eddyi_transport_prepare(const char *url,
                                       const eddy_transport_options *opts,
                                       eddy_error *err);
void eddyi_transport_unprepare(eddy_transport *t);

/* The value of query parameter `key` in the transport's URL, or NULL. */
const char *eddyi_url_param(const eddy_transport *t, const char *key);

/* The transport's URL as it may be printed (eddy_url_redact). */
const char *eddyi_transport_shown(const eddy_transport *t);

/* For info: adds a topic to `info` (name copied) and returns its index,
 * or -1 when out of memory. `messages` < 0: unknown. */
ssize_t eddyi_info_topic(eddy_transport_info *info, const char *name,
                         int64_t messages, int partitions);

/* For info: adds a group (name copied) to topic `topic_i`. -1 (unknown)
 * for any count the engine does not give. 0 or -1 (out of memory). */
int eddyi_info_group(eddy_transport_info *info, size_t topic_i,
                     const char *name, int64_t consumers, int64_t pending,
                     int64_t lag);

/* True when `group` is one of the `ngroups` asked for, or none was. */
bool eddyi_info_group_wanted(const char *group, const char *const *groups,
                             size_t ngroups);

/* The partition key of `ev`: its subject, or its id if it has none.
 * Borrowed from the event. */
const char *eddyi_transport_key(const eddy_event *ev);

/*
 * Encodes `ev` as CloudEvents JSON (malloc'd, `*len` bytes) for structured
 * mode, or returns NULL with `err`: EDDY_ETOOBIG when larger than
 * max_message_bytes ("event ID is N bytes, the limit is M"), EDDY_ENOMEM.
 */
char *eddyi_transport_encode(const eddy_transport *t, const eddy_event *ev,
                             size_t *len, eddy_error *err);

/*
 * Decodes a structured-mode message. On failure (too large, malformed) the
 * message is dead-lettered through eddyi_transport_dead_letter with the
 * reason, and NULL is returned: the caller acknowledges it.
 */
eddy_event *eddyi_transport_decode(eddy_transport_subscription *sub, const char *raw,
                                   size_t len, const char *topic,
                                   uint32_t attempt);

/* How the backend must settle a delivery. */
typedef enum eddyi_settle {
    EDDYI_SETTLE_ACK = 0,   /* acknowledge (handled, or dead-lettered) */
    EDDYI_SETTLE_NACK = 1   /* deliver again after *delay_ms */
} eddyi_settle;

/*
 * Handles one decoded event: if `attempt` exceeds retry.max_attempts it is
 * dead-lettered without calling the handler; otherwise the handler runs and
 * its decision is returned; a nack on the last allowed attempt
 * dead-letters it ("handler failed N times: ...") and returns ACK.
 * `raw` (may be NULL) is passed on to a dead letter. `*delay_ms` receives
 * the redelivery delay for NACK (>= 0). Counts statistics.
 */
eddyi_settle eddyi_transport_dispatch(eddy_transport_subscription *sub,
                                      const eddy_event *ev, const char *topic,
                                      uint32_t attempt, const char *raw,
                                      size_t raw_len, int *delay_ms);

/* Dead-letters a message (calls the dead_letter callback, or logs). The
 * caller then acknowledges it. `ev` may be NULL. */
void eddyi_transport_dead_letter(eddy_transport_subscription *sub,
                                 const eddy_event *ev, const char *raw,
                                 size_t raw_len, const char *topic,
                                 const char *reason, uint32_t attempt);

/* The subscription a delivery belongs to (for the bridge). */
eddy_transport_subscription *eddyi_delivery_sub(eddy_delivery *d);

/* Counts one re-established connection in the subscription's stats. */
void eddyi_transport_sub_reconnected(eddy_transport_subscription *sub);

/* The subscription's connection to the engine is down: broke, or a
 * (re)connection or fetch failed with `why` (copied). The first call since
 * it was up records the time; later ones only update the reason. Backends
 * call it from the subscription's thread (or a library's callback thread)
 * when they see the failure, and eddyi_transport_sub_alive as soon as the
 * engine answers again. */
void eddyi_transport_sub_lost(eddy_transport_subscription *sub, const char *why);

/* The engine answered the subscription (a fetch or a reconnection
 * succeeded): it is up. Cheap when it already was (one atomic load), so
 * it may be called after every fetch. */
void eddyi_transport_sub_alive(eddy_transport_subscription *sub);

/* Test hook: appends `len` raw bytes (copied) to a mem transport's
 * `topic` as if a producer had sent them (malformed or oversized messages).
 * EDDY_EINVAL if `t` is not a mem transport. */
int eddyi_transport_mem_inject(eddy_transport *t, const char *topic,
                               const char *raw, size_t len, eddy_error *err);

/* Test hook: the value librdkafka's configuration would have for `key`
 * if `url` were opened with `opts` (nothing connects), into `buf`.
 * EDDY_ENOTFOUND when unset or unknown; the errors of open otherwise. */
int eddyi_transport_kafka_conf_get(const char *url,
                                   const eddy_transport_options *opts,
                                   const char *key, char *buf, size_t size,
                                   eddy_error *err);

/* Milliseconds of a monotonic clock. */
int64_t eddyi_transport_now_ms(void);

/*
 * A backend's flush: waits on `cv` (with `mu`, which the caller does NOT
 * hold) until `*inflight` is 0 or `timeout_ms` passes (< 0: 0 ms). The
 * backend broadcasts `cv` when its count reaches 0. Returns EDDY_OK, or
 * EDDY_ETIMEDOUT with "flush: N ENGINE publishes still pending".
 */
int eddyi_transport_wait_drained(pthread_mutex_t *mu, pthread_cond_t *cv,
                                 const size_t *inflight, int timeout_ms,
                                 const char *engine, eddy_error *err);

/* Sleeps `ms` milliseconds (interrupted early is fine). */
void eddyi_transport_sleep_ms(int ms);

#endif /* EDDY_SRC_TRANSPORT_IMPL_H */
