/*
 * eddy/transport.h - publishing and consuming events across processes and
 * machines, on real engines: Redis (Streams or Pub/Sub, through hiredis),
 * Kafka (librdkafka), NATS JetStream (nats.c), and an in-process engine for
 * tests.
 *
 * ONE INTERFACE, CHOSEN BY URL
 *
 *   mem:                 in-process (a named engine: mem:NAME; "mem:" is the
 *                        default one). Nothing survives the process.
 *   redis://[USER:PASSWORD@]HOST:PORT[/DB]
 *                        Redis Streams with consumer groups (the default);
 *   redis://HOST:PORT?mode=pubsub
 *                        Redis Pub/Sub (at-most-once, see below).
 *   kafka://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]
 *                        Kafka; other query parameters (?acks=all&...) are
 *                        passed to librdkafka as configuration properties.
 *   nats://[USER:PASSWORD@ | TOKEN@]HOST:PORT[,HOST:PORT...]
 *                        NATS JetStream.
 * A build of libeddy may lack engines (built without hiredis, librdkafka
 * or libnats): eddy_transport_engines() lists what it has, and opening a
 * URL of a missing one fails with "this eddy was built without Redis
 * support (hiredis)".
 *
 * SECURED ENGINES: CREDENTIALS AND TLS
 *
 *   Any engine: a password (percent-encode '@', ':', '/' in it: %40, %3A,
 *   %2F) may come from the URL (user:password@), or, to keep it out of
 *   URLs, command lines and shell history, from
 *     ?password_file=PATH   the file's one line (trailing newline dropped);
 *     ?password_env=NAME    the environment variable NAME;
 *   the user from user@ or ?user=NAME. Giving the password in two places
 *   is an error. Every key may also come from a configuration file
 *   (eddy_transport_options.config_file, `eddy --transport-config FILE`):
 *   key=value lines, '#' comments: librdkafka's properties format, as
 *   kcat -F reads it. A key in the URL's query wins over the file's.
 *
 *   redis   USER:PASSWORD@ is "AUTH USER PASSWORD" (a Redis 6+ ACL user);
 *           :PASSWORD@ (no user) is "AUTH PASSWORD" (requirepass, the
 *           default user). TLS: NOT AVAILABLE. Debian 12's hiredis 0.14
 *           has no TLS support, so rediss:// URLs are refused (EDDY_EINVAL,
 *           "rediss://: TLS needs hiredis >= 1.0 ...") rather than sent in
 *           the clear; reach a TLS-only Redis through a local TLS tunnel
 *           (stunnel, spiped) or a trusted network.
 *   kafka   every librdkafka property: security.protocol=sasl_ssl,
 *           sasl.mechanism=PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512,
 *           sasl.username, sasl.password, ssl.ca.location,
 *           ssl.certificate.location, ssl.key.location, ... USER:PASSWORD@
 *           (or user= / password*) sets sasl.username and sasl.password,
 *           and, unless given, sasl.mechanism=PLAIN and
 *           security.protocol=sasl_ssl (a password never goes in the
 *           clear unless security.protocol=sasl_plaintext says so).
 *   nats    USER:PASSWORD@ (or user= / password*): user and password;
 *           TOKEN@ or ?token= / token_file= / token_env=: a token;
 *           ?nkey=PUBLIC_KEY&nkey_seed=SEED_FILE: an NKey user (the public
 *           key "U..." and the file holding its seed "SU...");
 *           ?creds=FILE: a JWT user's .creds file (JWT and seed);
 *           ?tls_ca=FILE: TLS, trusting the CAs of FILE (PEM);
 *           ?tls_cert=FILE&tls_key=FILE: a client certificate (mutual TLS);
 *           ?tls=on: TLS with the system's CAs; ?tls_hostname=NAME: the
 *           name the server's certificate must carry (when connecting by
 *           address).
 *
 *   A wrong credential or an untrusted certificate fails eddy_transport_open
 *   at once, EDDY_ECONNECT with the reason: "redis 127.0.0.1:6379:
 *   authentication failed for user alice: WRONGPASS ...", "nats
 *   127.0.0.1:4222: authentication failed for user alice", "nats ...:
 *   certificate not trusted (tls_ca=...): ...", "kafka ...: certificate not
 *   trusted: ...". Secrets are never in an error message or a log line:
 *   URLs are shown through eddy_url_redact.
 *
 * WIRE FORMAT: CloudEvents 1.0. Binary mode (attributes as headers, data as
 * the payload) where the engine has headers: Kafka (ce_id, ce_type, ...,
 * key = subject) and NATS (Ce-Id, Ce-Type, ... per the CloudEvents NATS
 * binding). Structured JSON elsewhere: Redis stream entries carry the fields
 * "event" (the CloudEvents JSON) and "key" (the subject); Pub/Sub messages
 * are the CloudEvents JSON.
 *
 * TOPICS: one topic per event type, "<prefix><type>". The default prefix is
 * the engine's convention: "events." for Redis stream keys and channels,
 * "events-" for Kafka topics, "events." for NATS subjects (all in one
 * JetStream stream named EDDY_EVENTS covering "events.>"), "events." for mem.
 * eddy_transport_options.topic_prefix overrides it.
 *
 * PARTITION KEY: the event's subject (the aggregate id); an event without a
 * subject uses its id.
 *
 * WHAT EACH ENGINE GUARANTEES
 *
 *   mem            at-least-once within the process: an unacknowledged
 *                  delivery is redelivered (to any member of the group) after
 *                  ack_wait_ms, or after a nack's delay. Order: one log per
 *                  topic; with ONE member per group every event of a topic
 *                  (so of a key) arrives in publish order, until a nack or a
 *                  timeout makes a redelivery. With several members, per-key
 *                  order is NOT guaranteed.
 *   redis streams  at-least-once. publish returns once XADD answered
 *                  (durable as the server's persistence settings make it:
 *                  appendfsync always for no loss on a server crash). Each
 *                  topic is one stream (XADD MAXLEN ~ stream_maxlen trims the
 *                  oldest entries: an entry trimmed before a group read it is
 *                  lost to that group). Groups read with XREADGROUP, ack with
 *                  XACK; a member's entries left pending longer than
 *                  ack_wait_ms (it crashed, or nacked) are taken over with
 *                  XAUTOCLAIM by a live member. Order: with ONE member per
 *                  group, publish order per topic (so per key) until a
 *                  redelivery; with several members entries are spread over
 *                  them and per-key order is NOT guaranteed.
 *   redis pubsub   at-most-once: a message published while no subscriber is
 *                  connected, or while one is reconnecting, is lost for it.
 *                  Every subscriber receives every message (groups do not
 *                  share load); ack and nack do nothing; no redelivery.
 *                  Publish order per channel holds.
 *   kafka          at-least-once. Idempotent producer (no duplicates or
 *                  reordering from producer retries); publish returns once
 *                  the broker acknowledged (acks=all). Key = subject, so one
 *                  key is one partition and per-key order holds for every
 *                  group, whatever the number of members (a partition has
 *                  one member at a time); a redelivery after a nack or a
 *                  crash replays from the last committed offset. Offsets are
 *                  committed only after the handler succeeded.
 *   nats           at-least-once. JetStream publish returns once the stream
 *                  stored the message. Durable pull consumer per group;
 *                  ack / nak with delay; unacknowledged messages are
 *                  redelivered after ack_wait_ms. Order: one subject per
 *                  type; with ONE member per group publish order per subject
 *                  until a redelivery; with several members per-key order is
 *                  NOT guaranteed.
 *
 * Every engine: a delivery the handler fails is redelivered after the
 * subscription's retry policy's delay (eddy/retry.h: the same policy type
 * durable handlers, the outbox relay and sagas use); after
 * retry.max_attempts deliveries, or at once for an error the policy says
 * is not retryable, the event is dead-lettered (the dead_letter callback
 * runs) and acknowledged so that it does not loop. A message that cannot be decoded, or that is larger than
 * max_message_bytes, is dead-lettered at once with the reason, never handed
 * to the handler, never a crash. Consumers must be idempotent (or
 * deduplicate by event id, as the bridge below does): at-least-once means a
 * crash between the handler and the ack redelivers.
 *
 * THREADING: eddy_transport_publish / publish_async / subscribe are
 * thread-safe. Each subscription runs one thread of its own that calls the
 * handler, one delivery at a time. eddy_transport_close must be called once
 * no other call is in progress and after every subscription is freed.
 */
#ifndef EDDY_TRANSPORT_H
#define EDDY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/outbox.h"
#include "eddy/retry.h"
#include "eddy/start.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_transport eddy_transport;
typedef struct eddy_transport_subscription eddy_transport_subscription;
typedef struct eddy_delivery eddy_delivery;

#define EDDY_TRANSPORT_DEFAULT_MAX_MESSAGE_BYTES ((size_t)1 << 20) /* 1 MiB */
#define EDDY_TRANSPORT_DEFAULT_RECONNECT_INITIAL_MS 100
#define EDDY_TRANSPORT_DEFAULT_RECONNECT_MAX_MS 5000
#define EDDY_TRANSPORT_DEFAULT_TIMEOUT_MS 5000
#define EDDY_TRANSPORT_DEFAULT_STREAM_MAXLEN 1000000
#define EDDY_TRANSPORT_DEFAULT_ACK_WAIT_MS 30000
#define EDDY_TRANSPORT_DEFAULT_GROUP "eddy"

/* What publish does while the connection to the engine is down. */
typedef enum eddy_disconnected_policy {
    /* Fail at once with EDDY_ECONNECT ("redis 127.0.0.1:6379: not
     * connected: ..."). The default. */
    EDDY_DISCONNECTED_FAIL = 0,
    /* Wait for the connection instead of failing: a synchronous publish
     * reconnects (with backoff) and sends again for up to timeout_ms
     * (then EDDY_ETIMEDOUT; a message whose answer was lost may be sent
     * twice: at-least-once); asynchronous publishes queue, in order, up to
     * buffer_max messages (then EDDY_EFULL) while the transport waits.
     * Queued messages are lost if the process exits before they are sent;
     * their callbacks report every outcome, so nothing is dropped
     * silently. */
    EDDY_DISCONNECTED_BUFFER = 1
} eddy_disconnected_policy;

/*
 * Transport options; the zero value gives the defaults. Copied by
 * eddy_transport_open. Engine-specific settings go in the URL's query.
 */
typedef struct eddy_transport_options {
    const char *topic_prefix;    /* NULL: the engine's ("events." /
                                    "events-") */
    size_t max_message_bytes;    /* largest encoded event published or
                                    accepted; 0: ..._MAX_MESSAGE_BYTES; at
                                    most EDDY_EVENT_MAX_BYTES (what every
                                    decoder reads back), else EDDY_EINVAL */
    int connect_timeout_ms;      /* 0: ..._TIMEOUT_MS */
    int timeout_ms;              /* longest wait for an engine's answer to
                                    one publish; 0: ..._TIMEOUT_MS */
    int reconnect_initial_ms;    /* first delay before reconnecting, then
                                    doubled; 0: ..._RECONNECT_INITIAL_MS */
    int reconnect_max_ms;        /* 0: ..._RECONNECT_MAX_MS */
    eddy_disconnected_policy disconnected; /* default: FAIL */
    size_t buffer_max;           /* messages kept while disconnected with
                                    EDDY_DISCONNECTED_BUFFER; 0: 10000 */
    long long stream_maxlen;     /* Redis: XADD MAXLEN ~ N; 0:
                                    ..._STREAM_MAXLEN; < 0: no cap */
    const char *config_file;     /* NULL, or a file of key=value lines
                                    merged into the URL's query (see
                                    SECURED ENGINES); read by open */
} eddy_transport_options;

/*
 * Opens a transport to the engine named by `url` (borrowed; see the table
 * above). Connects (or checks the connection) and authenticates before
 * returning, so a server that is not there, a wrong credential or an
 * untrusted certificate fails here, at once.
 * Returns a new transport (destructor: eddy_transport_close), or NULL with
 * `err`: EDDY_EINVAL (malformed URL, unknown scheme or mode, bad options,
 * an unreadable configuration or password file, an engine this build
 * lacks: the message names it), EDDY_ECONNECT (the engine could not be
 * reached, refused the credentials or the certificate: the message names
 * host, port, user and the engine's reason), EDDY_ENOMEM. The URL in a
 * message is redacted.
 * Thread-safe.
 */
eddy_transport *eddy_transport_open(const char *url,
                                    const eddy_transport_options *opts,
                                    eddy_error *err);

/*
 * Closes the connection(s), waits for asynchronous publishes in flight (up
 * to timeout_ms; those that did not complete get EDDY_ESTOPPED in their
 * callback) and frees the transport. Every subscription must have been
 * freed before. NULL does nothing.
 */
void eddy_transport_close(eddy_transport *t);

/* The engine's name: "mem", "redis", "kafka" or "nats". Never NULL. */
const char *eddy_transport_engine(const eddy_transport *t);

/*
 * The URL `t` was opened with, as it may be shown: redacted as by
 * eddy_url_redact. Borrowed from the transport (valid until close). Never
 * NULL. Thread-safe.
 */
const char *eddy_transport_url(const eddy_transport *t);

/*
 * Writes `url` into `buf` (`size` bytes, always NUL-terminated, truncated
 * if too small) with every secret replaced by "***": the password of
 * user:password@ ("redis://alice:***@host:6379"), a user information
 * without a password, which may be a token (hidden whole), and
 * the value of every query key that names a secret (password, token,
 * secret, sasl.password, ssl.key.password, ...; keys ending in _file, _env
 * or .location name where a secret is and stay visible). Any text is
 * accepted, URL or not; a store URL ("postgres://u:p@h/db") is redacted
 * the same way. Returns `buf` ("" when `size` is 0 or `buf` NULL; "(null)"
 * for a NULL url). Thread-safe; cannot fail.
 * Every URL eddy prints goes through this function: use it wherever a URL
 * reaches a log, a page, a metric label or an error message.
 */
const char *eddy_url_redact(const char *url, char *buf, size_t size);

/* An engine eddy knows, and whether this build has it. Plain data. */
typedef struct eddy_transport_engine_info {
    const char *name;      /* URL scheme: "mem", "redis", "kafka", "nats" */
    const char *title;     /* "Redis" */
    const char *library;   /* what it needs: "hiredis"; "" for mem */
    bool built_in;         /* false: this build lacks the library */
} eddy_transport_engine_info;

/*
 * The engines eddy knows, built in or not, in a static array of
 * `*count` entries (never freed). Thread-safe; cannot fail.
 */
const eddy_transport_engine_info *eddy_transport_engines(size_t *count);

/*
 * Writes the topic (stream key, channel, Kafka topic, NATS subject) used
 * for events of `type` into `buf` (`size` bytes, NUL-terminated).
 * Returns EDDY_OK, EDDY_EINVAL (NULL/empty type) or EDDY_ETOOBIG (buffer
 * too small). Thread-safe.
 */
int eddy_transport_topic(const eddy_transport *t, const char *type,
                         char *buf, size_t size);

/*
 * Publishes `ev` (borrowed) to its type's topic, keyed by its subject, and
 * returns once the engine acknowledged it (Redis: XADD / PUBLISH answered;
 * Kafka: delivery report; NATS: JetStream ack; mem: appended).
 * Errors: EDDY_EINVAL (NULL argument), EDDY_ETOOBIG (the encoded event is
 * larger than max_message_bytes: "event ID is N bytes, the limit is M"),
 * EDDY_ECONNECT (not connected, with the FAIL policy), EDDY_EFULL (the
 * disconnected buffer is full), EDDY_ETIMEDOUT, EDDY_EIO (the engine
 * refused it; its message), EDDY_ESTOPPED (closing). An error means the
 * event may or may not have been stored (a lost answer): publishing again
 * is at-least-once. Thread-safe.
 */
int eddy_transport_publish(eddy_transport *t, const eddy_event *ev,
                           eddy_error *err);

/*
 * Called once an asynchronous publish is acknowledged (rc = EDDY_OK) or
 * failed (rc = the error, `err` says why). `ev` and `err` are borrowed for
 * the call. Runs on a thread of the transport (never inside the
 * publish_async call itself); it must be quick and must not call
 * eddy_transport_close or eddy_transport_flush.
 */
typedef void (*eddy_publish_done_fn)(int rc, const eddy_event *ev,
                                     const eddy_error *err, void *user);

/*
 * Starts publishing `ev` (a reference is taken until `done` ran) and
 * returns at once. On EDDY_OK, `done` (may be NULL) runs exactly once
 * later; on an error return it never runs. Errors as for publish for what
 * is known at once (EDDY_EINVAL, EDDY_ETOOBIG, EDDY_ECONNECT, EDDY_EFULL,
 * EDDY_ESTOPPED). Thread-safe.
 */
int eddy_transport_publish_async(eddy_transport *t, const eddy_event *ev,
                                 eddy_publish_done_fn done, void *user,
                                 eddy_error *err);

/*
 * Waits until every asynchronous publish started before the call has
 * completed (its callback ran), or `timeout_ms` passed (EDDY_ETIMEDOUT).
 * Thread-safe; must not be called from a done callback or a handler.
 */
int eddy_transport_flush(eddy_transport *t, int timeout_ms, eddy_error *err);

/* ---- consuming -------------------------------------------------------- */

/*
 * A handler: receives one event (borrowed; eddy_event_ref it to keep it)
 * and its delivery (borrowed for the call). It settles the delivery either
 * explicitly (eddy_delivery_ack / eddy_delivery_nack) or by its return
 * value: 0 = ack, anything else = nack, redelivered after the delay of the
 * subscription's retry policy for that attempt.
 * The decision takes effect when the handler returns (an explicit call wins
 * over the return value). Runs on the subscription's thread; must not stop
 * or free its own subscription, nor close the transport.
 */
typedef int (*eddy_transport_handler_fn)(eddy_delivery *d,
                                         const eddy_event *ev, void *user);

/* Why and what was dead-lettered. Plain data, borrowed for the callback. */
typedef struct eddy_transport_dead_letter {
    const eddy_event *event;  /* the event, or NULL if it could not be
                                 decoded */
    const char *raw;          /* the message as received (payload; for
                                 binary mode the data), may be NULL */
    size_t raw_len;
    const char *topic;        /* where it was read from */
    const char *reason;       /* "handler failed 5 times: <its error>",
                                 "malformed: type: missing",
                                 "oversized: 2000000 bytes, limit 1048576" */
    uint32_t deliveries;      /* delivery attempts so far (>= 1) */
} eddy_transport_dead_letter;

/*
 * Called when a message is dead-lettered, just before it is acknowledged so
 * that it does not loop. Runs on the subscription's thread. NULL in the
 * options: the dead letter is logged at warn level (component "transport")
 * and acknowledged.
 */
typedef void (*eddy_transport_dead_letter_fn)(const eddy_transport_dead_letter *dl, void *user);

/* Subscription options. Zero value + types + handler gives the defaults.
 * Copied by eddy_transport_subscribe (the strings and the array). */
typedef struct eddy_transport_subscription_options {
    const char *const *types;  /* event types to receive (exact names);
                                  at least one */
    size_t type_count;
    const char *group;         /* consumer group (members share the load);
                                  NULL: EDDY_TRANSPORT_DEFAULT_GROUP */
    const char *consumer;      /* this member's name, unique in the group;
                                  NULL: generated (host-pid-random) */
    eddy_transport_handler_fn handler;   /* required */
    void *user;                /* passed to handler and dead_letter */
    int ack_wait_ms;           /* a delivery not settled after this long
                                  (its member died) is redelivered;
                                  0: ..._ACK_WAIT_MS */
    eddy_retry_policy retry;   /* a failed delivery: redelivered after
                                  the policy's delay for its attempt, dead-
                                  lettered after max_attempts deliveries
                                  or when `retryable` refuses the error;
                                  zero: the defaults (5 deliveries, 100 ms
                                  doubling up to 30 s, 20% jitter) */
    eddy_transport_dead_letter_fn dead_letter;     /* NULL: log and drop */
    eddy_start_from start_from; /* where a NEW group starts (eddy/start.h):
                                  EDDY_START_BEGINNING (0, the default):
                                  at the oldest message the engine keeps;
                                  EDDY_START_END: after the messages
                                  already stored. An existing group
                                  resumes where it was. */
    size_t batch;              /* messages fetched per read; 0: 64 */
} eddy_transport_subscription_options;

/*
 * Subscribes to the topics of `o->types` as a member of `o->group`, and
 * starts the subscription's thread. The group (Redis XGROUP, NATS durable
 * consumer, Kafka group) and, where the engine needs it, the topic or
 * stream are created if missing. The handler runs on the subscription's
 * thread, which may start delivering before this call returns (never on
 * the calling thread, and never if the call fails).
 * On success `*out` is a new subscription (stop: eddy_transport_subscription_stop;
 * destructor: eddy_transport_subscription_free). Errors: EDDY_EINVAL (no types, an
 * empty type, no handler, bad numbers), EDDY_ECONNECT, EDDY_EIO (the engine
 * refused to create the group; its message), EDDY_ENOMEM.
 * Thread-safe.
 */
int eddy_transport_subscribe(eddy_transport *t,
                             const eddy_transport_subscription_options *o,
                             eddy_transport_subscription **out, eddy_error *err);

/*
 * Stops the subscription: a handler in progress finishes and its delivery
 * is settled, nothing more is fetched, the thread is joined. Deliveries
 * fetched but not yet handled stay unacknowledged (the engine redelivers
 * them to another member after ack_wait_ms). Returns EDDY_OK. Idempotent;
 * must not be called from the subscription's own handler.
 */
int eddy_transport_subscription_stop(eddy_transport_subscription *sub, eddy_error *err);

/* Stops (as eddy_transport_subscription_stop) and frees. NULL does nothing. */
void eddy_transport_subscription_free(eddy_transport_subscription *sub);

/* What a subscription has done since it started. Plain data. */
typedef struct eddy_transport_subscription_stats {
    uint64_t delivered;      /* handler calls */
    uint64_t acked;
    uint64_t nacked;
    uint64_t dead_lettered;
    uint64_t reconnects;     /* connections re-established */
} eddy_transport_subscription_stats;

/* Copies the subscription's counters into `*out`. Thread-safe. */
void eddy_transport_subscription_stats_get(const eddy_transport_subscription *sub,
                                  eddy_transport_subscription_stats *out);

/*
 * Whether the subscription's connection to the engine is down. Returns 0
 * while it is up, else when it was lost (microseconds since the epoch, as
 * eddy_now_us), with the engine's latest reason in `why` ("Connection
 * refused"; may be NULL; `why_size` bytes, always NUL-terminated, "" while
 * up). The engines reconnect by themselves, with backoff and without a
 * limit, so a lost connection is not an error of any call: how long an
 * outage may last is the caller's decision (`eddy service` gives up after
 * --max-disconnected seconds). Down means, for redis: the subscription's
 * connection broke, or reconnecting or reading failed, until a read
 * succeeds again; nats: the connection is not connected (libnats is
 * reconnecting) or fetching fails, until a fetch is answered; mem: never.
 * kafka: not reported, always 0 (librdkafka reconnects to the brokers on
 * its own and tells when they are all down, but not when one is back).
 * Thread-safe; cannot fail (a NULL `sub` gives 0).
 */
int64_t eddy_transport_subscription_down_since(const eddy_transport_subscription *sub,
                                      char *why, size_t why_size);

/* ---- settling a delivery (from inside its handler) --------------------- */

/* Acknowledges the delivery: it will not be delivered again to the group. */
void eddy_delivery_ack(eddy_delivery *d);

/*
 * Refuses the delivery: it is delivered again (to any member of the group)
 * after `delay_ms` (0: as soon as possible), unless this was its last
 * allowed delivery, in which case it is dead-lettered.
 */
void eddy_delivery_nack(eddy_delivery *d, int delay_ms);

/* The delivery attempt, 1 for the first delivery. */
uint32_t eddy_delivery_attempt(const eddy_delivery *d);

/* The topic the event was read from (borrowed for the handler call). */
const char *eddy_delivery_topic(const eddy_delivery *d);

/* ---- what the engine holds -------------------------------------------- */

/* A consumer group on a topic. Counts are -1 where the engine does not
 * tell them. Plain data, owned by the eddy_transport_info. */
typedef struct eddy_transport_group_info {
    const char *name;      /* the group (Redis: its XGROUP; Kafka: group.id;
                              NATS: the durable consumer, "<group>_<type>_
                              <hash>") */
    int64_t consumers;     /* members known to the engine */
    int64_t pending;       /* delivered, not yet acknowledged */
    int64_t lag;           /* stored, not yet delivered to the group */
} eddy_transport_group_info;

/* A topic under the transport's prefix. Plain data. */
typedef struct eddy_transport_topic_info {
    const char *name;      /* "events.order.placed" */
    int64_t messages;      /* stored (Kafka: high - low watermark, summed
                              over partitions); -1 unknown (Pub/Sub) */
    int partitions;        /* Kafka partitions; 1 elsewhere */
    size_t group_count;
    eddy_transport_group_info *groups;
} eddy_transport_topic_info;

typedef struct eddy_transport_info {
    const char *engine;    /* "redis" */
    const char *url;       /* redacted */
    const char *note;      /* what the engine could not tell, or NULL
                              ("this broker cannot list consumer groups:
                              name them") */
    size_t topic_count;
    eddy_transport_topic_info *topics;
} eddy_transport_info;

/*
 * What the engine holds under the transport's topic prefix: its topics
 * (Redis streams, or Pub/Sub channels with subscribers; Kafka topics; the
 * subjects of the NATS stream; mem topics), sorted by name, each with its
 * consumer groups and their lag: like `kcat -L` and `nats consumer info`.
 * `groups` (`ngroups` names, may be NULL/0): report only these groups;
 * Kafka brokers that cannot list groups (librdkafka's mock cluster) are
 * asked for these by name.
 * Returns EDDY_OK with `*out` a new info (destructor:
 * eddy_transport_info_free), or EDDY_EINVAL, EDDY_ECONNECT, EDDY_EIO (the
 * engine's message), EDDY_ENOMEM. Thread-safe; it reads, never creates.
 */
int eddy_transport_info_get(eddy_transport *t, const char *const *groups,
                            size_t ngroups, eddy_transport_info **out,
                            eddy_error *err);

/* Frees an info. NULL does nothing. */
void eddy_transport_info_free(eddy_transport_info *info);

/* ---- bridging --------------------------------------------------------- */

/*
 * An outbox publisher (eddy/outbox.h) over `t` (borrowed: it must outlive
 * every relay using the publisher; close is NULL). publish() is
 * eddy_transport_publish(t, ev); the row's destination is ignored (the
 * topic follows the event type). Cannot fail.
 */
eddy_publisher eddy_transport_publisher(eddy_transport *t);

typedef struct eddy_transport_bridge eddy_transport_bridge;

/*
 * Feeds events received from `t` into the local store `s` (both borrowed;
 * they must outlive the bridge): a subscription (options `o`; its handler
 * must be NULL, the bridge sets it; `user` goes to `dead_letter` only)
 * whose handler appends each
 * received event to the store, to the stream named by its subject (its id
 * when it has none) with EDDY_EXPECT_ANY, and acknowledges it once the
 * append is durable. The store skips an event already stored with the same
 * id and content, so a redelivery is stored once; local durable
 * subscriptions on the store then give the same retry, dead-letter and
 * idempotency behaviour as for local events. A failed append nacks (the
 * engine redelivers); a duplicate id with different content is
 * dead-lettered.
 * Returns EDDY_OK with `*out` a new bridge (destructor:
 * eddy_transport_bridge_free), or the errors of eddy_transport_subscribe.
 * Thread-safe.
 */
int eddy_transport_bridge_start(eddy_transport *t, eddy_store *s,
                                const eddy_transport_subscription_options *o,
                                eddy_transport_bridge **out, eddy_error *err);

/* The bridge's subscription (borrowed), for its statistics. */
eddy_transport_subscription *eddy_transport_bridge_sub(eddy_transport_bridge *b);

/* Stops the bridge's subscription and frees the bridge. NULL does
 * nothing. */
void eddy_transport_bridge_free(eddy_transport_bridge *b);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_TRANSPORT_H */
