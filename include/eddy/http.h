/*
 * eddy/http.h - eddy over HTTP: CloudEvents in and out, Server-Sent Events,
 * Prometheus scraping and a web dashboard, embedded in any program that has
 * an eddy_store (`eddy serve` is one such program).
 *
 * A server runs up to two listeners on one store:
 *
 *   the EVENTS API (options.listen, e.g. "127.0.0.1:8080")
 *     POST    /streams/{stream}   append, CloudEvents HTTP protocol binding:
 *                                 binary (ce-* headers, body = data),
 *                                 structured (application/cloudevents+json)
 *                                 or batched (application/cloudevents-batch
 *                                 +json, appended atomically); optional
 *                                 header Eddy-Expected-Version (a version,
 *                                 "any", "no-stream" or "exists")
 *     OPTIONS /streams/{stream}   the CloudEvents web-hook abuse-protection
 *                                 handshake (WebHook-Request-Origin)
 *     GET     /streams/{stream}?from=V&limit=N&direction=backward
 *     GET     /events?from=POS&type=T&since=TIME&until=TIME&stream=S
 *                    &order=newest&limit=N   (type: repeated or comma-
 *                    separated; since/until: RFC 3339 or microseconds,
 *                    on the events' time attribute: events without one
 *                    do not match)
 *     GET     /events/{id}
 *     GET     /events/stream?from=POS&type=T&limit=N   Server-Sent Events:
 *                    "id:" is the position, the data the record; resume
 *                    with Last-Event-ID; type may be a pattern ("order.*");
 *                    without from, only new events
 *
 *   the ADMIN listener (options.admin, e.g. "127.0.0.1:8081")
 *     /metrics (Prometheus text 0.0.4), /healthz, /readyz, the dashboard
 *     (HTML/CSS/JS compiled into the library) and its JSON API under /api/.
 *
 * Every error is a JSON object {"status", "error", "message", ...} whose
 * message names the offending thing: the attribute ("time: not an RFC 3339
 * timestamp"), the schema path ("/email: format email expected ..."), the
 * stream and both versions (409), the limit (413).
 *
 * AUTHORISATION. With a tokens file (one "ROLE TOKEN" per line, roles read,
 * write and admin; write allows read, admin allows everything), clients
 * send "Authorization: Bearer TOKEN". On the events API every request needs
 * a token: none or an unknown one is 401, a role that does not allow the
 * request 403. On the admin listener, reads need no token while it is bound
 * to a loopback address and a read token otherwise; actions (redrive,
 * purge, rebuild) always need an admin token. Tokens are compared in
 * constant time and never logged. Without a tokens file nothing can be
 * written (appends and actions are 403) and eddy_http_server_start refuses
 * to bind either listener beyond loopback.
 *
 * THREADING. The server runs libmicrohttpd with a small pool of threads per
 * listener (epoll); a request never holds a thread while it waits for the
 * store's durable commit (the connection is suspended and resumed by the
 * append's completion), and Server-Sent Events clients wait without a
 * thread each: one thread follows the store and wakes them. Every function
 * here is thread-safe, except that eddy_http_server_free must not run
 * concurrently with another call on the same server.
 */
#ifndef EDDY_HTTP_H
#define EDDY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "eddy/error.h"
#include "eddy/metrics.h"
#include "eddy/schema.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_http_server eddy_http_server;

/* The two listeners of a server. */
typedef enum eddy_http_listener {
    EDDY_HTTP_EVENTS = 0, /* the events API (options.listen) */
    EDDY_HTTP_ADMIN = 1   /* metrics, health, dashboard (options.admin) */
} eddy_http_listener;

#define EDDY_HTTP_DEFAULT_MAX_BODY ((size_t)1 << 20)  /* 1 MiB */
#define EDDY_HTTP_MIN_MAX_BODY ((size_t)64 << 10)     /* 64 KiB */

/*
 * Server options; zero values give the defaults. Strings are copied by
 * eddy_http_server_start; `store`, `schemas` and `metrics` are borrowed and
 * must outlive the server.
 */
typedef struct eddy_http_options {
    eddy_store *store;      /* required */
    /* "HOST:PORT" to serve on ("127.0.0.1:8080", "[::1]:8080",
     * "0.0.0.0:8080"; port 0: any free port, see eddy_http_server_port).
     * NULL: that listener is not served; at least one must be set. */
    const char *listen;
    const char *admin;
    /* One "ROLE TOKEN" per line (blank lines and lines starting with '#'
     * ignored); tokens at least 16 characters. NULL: no tokens (read-only,
     * loopback only; see AUTHORISATION above). Read once, at start. */
    const char *tokens_file;
    /* Largest request body accepted (413 above it); 0:
     * EDDY_HTTP_DEFAULT_MAX_BODY; smaller values are raised to
     * EDDY_HTTP_MIN_MAX_BODY. */
    size_t max_body;
    /* Events appended over HTTP are validated against it (when their type's
     * policy has EDDY_VALIDATE_ON_APPEND) before they reach the store, so a
     * 400 names the failing schema path. NULL: only the store's own check
     * hook, if any, validates. */
    const eddy_schema_registry *schemas;
    /* The registry /metrics exposes, with the handlers, subscriptions and
     * gauges of everything running in the process that records into it;
     * the server adds its store gauges (head, size, dead letters) and
     * records appends per event type (handler "http"). NULL: the server
     * makes a registry of its own. */
    eddy_metrics *metrics;
    /* Origins the web-hook handshake grants (exact host names, compared
     * case-insensitively); none: every origin. */
    const char *const *webhook_origins;
    size_t webhook_origin_count;
    /* Requests per minute granted in WebHook-Allowed-Rate; 0: "*". */
    unsigned webhook_rate;
    /* Threads per listener; 0: 2. */
    unsigned threads;
    /* Open connections per listener (Server-Sent Events clients
     * included); 0: 4096. The process needs that many file descriptors. */
    unsigned max_connections;
    /* Appends waiting for the store's writer; one more is answered 429
     * with Retry-After. 0: 1024. */
    size_t max_pending_appends;
    /* A request (headers and body) must arrive whole within this time
     * after the connection opened or its previous response was sent, and a
     * connection idle that long is closed: a slow or stalled client holds a
     * connection for a bounded time. 0: 30000 ms. */
    unsigned request_timeout_ms;
    /* Live events the server keeps for Server-Sent Events clients (and at
     * most 64 MiB of them); a client that falls further behind than this
     * is dropped with a final "eddy.dropped" event saying why, and catches
     * up from the store when it reconnects with Last-Event-ID. 0: 4096. */
    size_t sse_buffer_events;
    /* Comment lines sent to idle SSE clients; 0: 15000 ms. */
    unsigned sse_heartbeat_ms;
    /* /readyz reports a running subscription as stalled when it has lag
     * and its checkpoint has not moved for this long. 0: 60000 ms. */
    unsigned stall_after_ms;
} eddy_http_options;

/*
 * Starts the listeners. Returns a running server (destructor:
 * eddy_http_server_free) or NULL with `err` filled:
 *   EDDY_EINVAL   no store, no listener, a malformed "HOST:PORT" (named),
 *                 a listener beyond loopback without a tokens file
 *                 ("--admin 0.0.0.0:8081 is not a loopback address: give a
 *                 tokens file"), a malformed tokens file (file and line
 *                 named, never the token);
 *   EDDY_EIO      the tokens file cannot be read;
 *   EDDY_ECONNECT an address cannot be bound (in use, not local), named;
 *   EDDY_ENOMEM.
 * Nothing keeps running on failure. Thread-safe.
 */
eddy_http_server *eddy_http_server_start(const eddy_http_options *opts,
                                         eddy_error *err);

/*
 * Stops accepting, ends every Server-Sent Events stream, lets requests in
 * progress finish (appends waiting for the store's commit are answered),
 * waits for a projection rebuild started from the dashboard to end, then
 * closes the listeners. Idempotent. Thread-safe; not from a store callback.
 */
void eddy_http_server_stop(eddy_http_server *srv);

/* Stops (as eddy_http_server_stop) and frees. NULL does nothing. */
void eddy_http_server_free(eddy_http_server *srv);

/*
 * The TCP port `which` listens on (the real one when 0 was asked for), or
 * 0 when that listener is not served. Thread-safe.
 */
int eddy_http_server_port(const eddy_http_server *srv,
                          eddy_http_listener which);

/*
 * The base URL of listener `which` ("http://127.0.0.1:8081"), borrowed from
 * the server (valid until eddy_http_server_free), or NULL when it is not
 * served. Thread-safe.
 */
const char *eddy_http_server_url(const eddy_http_server *srv,
                                 eddy_http_listener which);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_HTTP_H */
