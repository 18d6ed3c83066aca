/*
 * src/http/http_internal.h - what the files of the HTTP layer share. Not
 * public. The layer is built on eddy's public API (eddy/eddy.h) and
 * libmicrohttpd, nothing else of eddy but src/core/internal.h.
 *
 *   server.c     lifecycle, listeners, connection deadlines (the reaper),
 *                routing, authorisation
 *   auth.c       the tokens file, constant-time token lookup
 *   reply.c      JSON replies and errors, query parameters, counters
 *   ingest.c     POST /streams/{s}: the CloudEvents HTTP binding and the
 *                asynchronous append; OPTIONS: the web-hook handshake
 *   read.c       GET /streams/{s}, /events, /events/{id}
 *   sse.c        GET /events/stream: the hub and its clients
 *   admin.c      /metrics, /healthz, /readyz, the sampler
 *   api.c        the dashboard's JSON API (/api/...) and its actions
 *   assets.h     the embedded dashboard files
 *
 * THREADS. libmicrohttpd runs `threads` epoll threads per listener; they
 * run every handler below except: the append completions (the store's
 * writer thread: append_done in ingest.c), the SSE hub's store
 * subscription (sse.c), the ticker thread (the reaper and heartbeats in
 * server.c, the sampler in admin.c) and a projection rebuild started from
 * the dashboard (api.c).
 */
#ifndef EDDY_SRC_HTTP_INTERNAL_H
#define EDDY_SRC_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "eddy/eddy.h"
#include "eddy/http.h"

/* ---- authorisation (auth.c) ------------------------------------------- */

typedef enum eddyi_role {
    EDDYI_ROLE_NONE = 0,  /* no token, or an unknown one */
    EDDYI_ROLE_READ = 1,
    EDDYI_ROLE_WRITE = 2, /* allows read */
    EDDYI_ROLE_ADMIN = 3  /* allows everything */
} eddyi_role;

typedef struct eddyi_token {
    eddyi_role role;
    unsigned char *token; /* owned; never logged */
    size_t len;
} eddyi_token;

/*
 * Loads "ROLE TOKEN" lines from `path` into a new array (`*out`, `*count`;
 * free with eddyi_tokens_free). Errors name the file and the line, never
 * the token: EDDY_EIO (unreadable), EDDY_EINVAL (unknown role, missing or
 * short token, a token listed twice, no token at all).
 */
int eddyi_tokens_load(const char *path, eddyi_token **out, size_t *count,
                      eddy_error *err);
void eddyi_tokens_free(eddyi_token *tokens, size_t count);

/*
 * The role of `presented` (`len` bytes, borrowed): compares it with every
 * token, in time that depends only on the lengths of the tokens held, not
 * on where or whether it matches. EDDYI_ROLE_NONE when none matches.
 */
eddyi_role eddyi_tokens_role(const eddyi_token *tokens, size_t count,
                             const char *presented, size_t len);

/* "read", "write", "admin" ("none" for EDDYI_ROLE_NONE). */
const char *eddyi_role_name(eddyi_role role);

/* ---- the server -------------------------------------------------------- */

struct eddyi_sse_hub;
struct eddyi_sampler;
struct eddyi_rebuild;

/* HTTP status codes counted for /metrics, and "other". */
#define EDDYI_HTTP_CODES(X)                                                    \
    X(200) X(201) X(204) X(304) X(400) X(401) X(403) X(404) X(405) X(408)      \
    X(409) X(413) X(415) X(429) X(500) X(503)
enum {
#define EDDYI_CODE_INDEX_(c) EDDYI_CODE_##c,
    EDDYI_HTTP_CODES(EDDYI_CODE_INDEX_)
#undef EDDYI_CODE_INDEX_
    EDDYI_CODE_OTHER,
    EDDYI_CODE_COUNT
};

typedef struct eddyi_listener {
    struct eddy_http_server *srv;
    eddy_http_listener which;
    const char *name;          /* "events" or "admin" */
    char *addr;                /* the HOST:PORT asked for (copied) */
    struct MHD_Daemon *daemon; /* NULL: not served */
    bool loopback;
    int port;
    char url[96];
    atomic_uint_fast64_t responses[EDDYI_CODE_COUNT];
    /* libmicrohttpd's last message while the daemon starts (for the
     * error when it cannot); afterwards its messages go to the debug log */
    pthread_mutex_t log_mu;
    bool running;
    char start_log[256];
} eddyi_listener;

/* One TCP connection, tracked so that the reaper can bound how long a
 * request may take to arrive (slow-loris clients). */
typedef struct eddyi_conn {
    struct eddyi_conn *prev, *next;
    int fd;
    /* Monotonic µs by which the request must have arrived whole; 0: none
     * (the request is being answered, or the connection streams). */
    _Atomic int64_t deadline_us;
} eddyi_conn;

struct eddy_http_server {
    eddy_store *store;
    const eddy_schema_registry *schemas;
    eddy_metrics *metrics;
    bool own_metrics;
    size_t max_body;
    size_t max_pending;
    size_t sse_buffer_events;  /* 0: sse.c's default */
    unsigned sse_heartbeat_ms; /* 0: sse.c's default */
    unsigned stall_after_ms;   /* 0: admin.c's default */
    int64_t request_timeout_us;
    unsigned threads;
    unsigned max_connections;
    unsigned webhook_rate;
    char **webhook_origins;
    size_t webhook_origin_count;
    eddyi_token *tokens;       /* NULL: no tokens file */
    size_t token_count;
    eddyi_listener listeners[2];

    atomic_bool stopping;
    bool stopped;
    pthread_mutex_t stop_mu;    /* serialises eddy_http_server_stop */
    atomic_size_t pending_appends;   /* waiting for the writer (the limit) */
    atomic_size_t unanswered_appends; /* ... or for their answer to be sent:
                                         a stop waits for these */
    atomic_uint_fast64_t timeouts;     /* connections the reaper closed */
    atomic_uint_fast64_t rejected_429;

    /* tracked connections (the reaper) */
    pthread_mutex_t conn_mu;
    eddyi_conn *conns;
    size_t conn_count;

    /* the reaper and sampler thread */
    pthread_t ticker;
    bool ticker_started;
    pthread_mutex_t tick_mu;
    pthread_cond_t tick_cv;
    bool tick_stop;

    struct eddyi_sse_hub *hub;
    struct eddyi_sampler *sampler;
    struct eddyi_rebuild *rebuild;
};

/* What a request is, decided from its method and URL. */
typedef enum eddyi_route {
    EDDYI_R_NONE = 0,
    EDDYI_R_APPEND,        /* POST /streams/{s} */
    EDDYI_R_WEBHOOK,       /* OPTIONS /streams/{s} (and /) */
    EDDYI_R_STREAM,        /* GET /streams/{s} */
    EDDYI_R_EVENTS,        /* GET /events */
    EDDYI_R_EVENT,         /* GET /events/{id} */
    EDDYI_R_SSE,           /* GET /events/stream */
    EDDYI_R_METRICS,       /* GET /metrics */
    EDDYI_R_HEALTHZ,
    EDDYI_R_READYZ,
    EDDYI_R_ASSET,         /* GET / and the dashboard's files */
    EDDYI_R_API,           /* GET/POST/DELETE /api/... */
} eddyi_route;

struct eddyi_sse_client;

enum { EDDYI_APPEND_READING = 0, EDDYI_APPEND_WAITING, EDDYI_APPEND_DONE };

/* The state of one request (libmicrohttpd's con_cls). */
typedef struct eddyi_req {
    eddyi_listener *l;
    struct MHD_Connection *conn;
    eddyi_route route;
    const char *method;   /* libmicrohttpd's, valid for the request */
    const char *url;      /* idem (unescaped) */
    char *param;          /* stream id, event id or /api/ rest (owned) */
    eddyi_role role;
    bool answered;        /* a response is queued */

    /* the body */
    char *body;
    size_t len, cap;
    bool too_big;

    /* an append */
    int mode;             /* ingest.c: binary, structured or batched */
    _Atomic int append_state; /* EDDYI_APPEND_* */
    bool unanswered;          /* counted in unanswered_appends until the
                                 request completes (on_completed) */
    eddy_event **events;
    size_t count;
    int64_t expected;
    int64_t head_before;
    uint64_t t0_ns;
    int rc;
    eddy_error err;
    eddy_append_result result;

    struct eddyi_sse_client *sse;
} eddyi_req;

/* The tracked connection of `conn`, or NULL. */
eddyi_conn *eddyi_conn_of(struct MHD_Connection *conn);

/* Monotonic microseconds. */
int64_t eddyi_http_now_us(void);

/* ---- replies (reply.c) ---------------------------------------------------- */

/*
 * Queues `body` (taken: freed by libmicrohttpd with free(), even on
 * failure) of `len` bytes with status `status` and content type `type`,
 * plus `nh` extra header pairs (borrowed). Counts the status for /metrics.
 * Returns libmicrohttpd's result.
 */
enum MHD_Result eddyi_reply(eddyi_req *r, unsigned status, const char *type,
                            char *body, size_t len, const char *const *headers,
                            size_t nh);

/* Queues `obj` (taken) as JSON. */
enum MHD_Result eddyi_reply_json(eddyi_req *r, unsigned status, json_t *obj,
                                 const char *const *headers, size_t nh);

/*
 * Queues an error: {"status": status, "error": `error` (a short token such
 * as "invalid_event"), "message": printf(fmt)} plus the members of `extra`
 * (taken; may be NULL).
 */
enum MHD_Result eddyi_reply_error(eddyi_req *r, unsigned status,
                                  const char *error, json_t *extra,
                                  const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The HTTP status an eddy error code maps to (EDDY_EINVAL 400, ...). */
unsigned eddyi_status_of(int code);

/* A short machine-readable name of an eddy error ("conflict"). */
const char *eddyi_error_token(int code);

/* Counts one response of `status` on `l`. */
void eddyi_count_status(eddyi_listener *l, unsigned status);

/* A query parameter (borrowed from libmicrohttpd), or NULL. */
const char *eddyi_arg(eddyi_req *r, const char *name);

/*
 * Parses query parameter `name` as an integer in [min, max] into `*out`
 * (left unchanged when absent). Returns true, or false after queueing a
 * 400 naming the parameter.
 */
bool eddyi_arg_int(eddyi_req *r, const char *name, int64_t min, int64_t max,
                   int64_t *out);

/* Parses `since`-style times: RFC 3339 or microseconds since the epoch. */
bool eddyi_arg_time(eddyi_req *r, const char *name, int64_t *out_us);

/*
 * Collects every value of query parameter `name` (repeated, or
 * comma-separated) into a new NULL-terminated array of copied strings
 * (`*count` of them; free with eddyi_strv_free). Returns true, or false
 * after queueing a 400 (too many, empty) or a 500 (out of memory).
 */
bool eddyi_arg_list(eddyi_req *r, const char *name, char ***out,
                    size_t *count);
void eddyi_strv_free(char **v, size_t n);

/* A request header (case-insensitive), or NULL. */
const char *eddyi_header(eddyi_req *r, const char *name);

/*
 * The record as the API shows it: {"position", "stream", "version",
 * "recorded", "event": CloudEvents JSON}. A new reference, or NULL when
 * out of memory.
 */
json_t *eddyi_record_json(const eddy_record *rec);

/* True when `type` matches one of `patterns` (exact, "x.*" prefix, "*");
 * an empty list matches everything. */
bool eddyi_type_matches(char *const *patterns, size_t n, const char *type);

/* ---- the handlers ------------------------------------------------------- */

/* ingest.c: POST and OPTIONS on /streams/{s}. `first` is the call with the
 * headers only; the body then arrives in upload calls. */
enum MHD_Result eddyi_ingest_begin(eddyi_req *r);
enum MHD_Result eddyi_ingest_finish(eddyi_req *r);
enum MHD_Result eddyi_webhook_options(eddyi_req *r);
/* Frees what an append request holds. */
void eddyi_ingest_clear(eddyi_req *r);

/* read.c */
enum MHD_Result eddyi_read_stream(eddyi_req *r);
enum MHD_Result eddyi_read_events(eddyi_req *r);
enum MHD_Result eddyi_read_event(eddyi_req *r);
/* The event with id `id` and the events it caused (if `caused` is not
 * NULL: a new array of ids), as {record..., "caused": [...]}. NULL with
 * `*status` 404 or 500 and `err` filled. */
json_t *eddyi_event_detail(eddy_http_server *srv, const char *id,
                           bool with_caused, unsigned *status,
                           eddy_error *err);

/* sse.c */
int eddyi_sse_hub_new(eddy_http_server *srv, eddy_error *err);
/* Ends every stream (final event "eddy.closing") and wakes every
 * suspended client; afterwards new streams end at once. */
void eddyi_sse_hub_stop(eddy_http_server *srv);
void eddyi_sse_hub_free(eddy_http_server *srv);
enum MHD_Result eddyi_sse_start(eddyi_req *r);
/* Frees a client once libmicrohttpd is done with its response. */
void eddyi_sse_client_free(struct eddyi_sse_client *c);
/* Clients connected, and clients dropped for being too slow. */
size_t eddyi_sse_clients(eddy_http_server *srv);
uint64_t eddyi_sse_dropped(eddy_http_server *srv);
/* Sends a heartbeat to idle clients when it is due (ticker thread). */
void eddyi_sse_tick(eddy_http_server *srv, int64_t now_us);

/* admin.c */
int eddyi_sampler_new(eddy_http_server *srv, eddy_error *err);
void eddyi_sampler_free(eddy_http_server *srv);
/* Samples head, rate and lag once a second (ticker thread). */
void eddyi_sampler_tick(eddy_http_server *srv, int64_t now_us);
/* The sampled history as a JSON array (new reference). */
json_t *eddyi_sampler_history(eddy_http_server *srv);
/*
 * Readiness: true when the store answers and no running subscription is
 * stalled; `problems` (may be NULL) receives a new array of messages.
 */
bool eddyi_ready(eddy_http_server *srv, json_t **problems);
enum MHD_Result eddyi_metrics(eddyi_req *r);
enum MHD_Result eddyi_healthz(eddyi_req *r);
enum MHD_Result eddyi_readyz(eddyi_req *r);

/* api.c: the dashboard's JSON API; `r->param` is the path after "/api/". */
enum MHD_Result eddyi_api(eddyi_req *r);
/* Whether `method` on /api/`rest` is an action (needs the admin role). */
bool eddyi_api_is_action(const char *method, const char *rest);
int eddyi_rebuild_new(eddy_http_server *srv, eddy_error *err);
/* Waits for a rebuild in progress and frees the state. */
void eddyi_rebuild_free(eddy_http_server *srv);
enum MHD_Result eddyi_asset(eddyi_req *r);

#endif
