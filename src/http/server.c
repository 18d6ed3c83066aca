/*
 * src/http/server.c - the HTTP server: listeners, routing, authorisation,
 * and the bound on how long a request may take to arrive.
 *
 * LISTENERS. Each listener is one libmicrohttpd daemon with a pool of
 * epoll threads on a socket this file binds itself (so that a bind error
 * names its errno and port 0 gives the real port). Connections are
 * suspended, never blocked on: an append waits for the store's commit
 * suspended (ingest.c), an idle Server-Sent Events client waits suspended
 * (sse.c).
 *
 * SLOW CLIENTS. libmicrohttpd's connection timeout is an idle timeout: a
 * client sending one byte every few seconds ("slow loris") would hold its
 * connection forever. Every connection is therefore tracked (NOTIFY_
 * CONNECTION) with a deadline: the request must arrive whole within
 * request_timeout of the connection opening (or of the previous response,
 * on a kept-alive connection). The ticker thread shuts down (shutdown(2),
 * never close: libmicrohttpd owns the descriptor) every connection past
 * its deadline; libmicrohttpd then sees the end of the stream and closes
 * it. The tracking list's mutex is held across shutdown() and across the
 * CLOSED notification, and libmicrohttpd closes a descriptor only after
 * that notification, so the reaper never touches a descriptor number that
 * was closed and reused. A request that arrived whole has no deadline
 * while it is answered (an append waiting for its commit, a stream).
 *
 * STOPPING. New connections are refused (quiesce), streams are ended,
 * appends in flight are waited for (their connections are suspended: a
 * suspended connection must be resumed before libmicrohttpd's daemon may
 * stop), a dashboard rebuild is joined, then the daemons stop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "http/http_internal.h"

#define DEFAULT_THREADS 2
#define DEFAULT_MAX_CONNECTIONS 4096
#define DEFAULT_MAX_PENDING 1024
#define DEFAULT_REQUEST_TIMEOUT_MS 30000
#define TICK_MS 100
/* libmicrohttpd's memory per connection: the request line and headers must
 * fit (16 KiB of headers is more than any client here sends), and it holds
 * the read and write buffers. Its default is 32 KiB; a Server-Sent Events
 * client costs about this much, so it is kept small. */
#define CONNECTION_MEMORY (16 * 1024)
/* Bytes of a body over the limit read (and dropped) before the connection
 * is closed without an answer. */
#define DISCARD_CAP(srv) ((srv)->max_body * 4 + ((size_t)1 << 20))

int64_t eddyi_http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- addresses ------------------------------------------------------------ */

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/*
 * Parses "HOST:PORT" ("127.0.0.1:8080", "[::1]:0", "localhost:8081") into
 * a numeric address. `what` names the option in messages.
 */
static int parse_addr(const char *what, const char *text,
                      struct sockaddr_storage *ss, socklen_t *sslen,
                      eddy_error *err)
{
    char host[256];
    const char *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof host)
            goto bad;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || colon == text || (size_t)(colon - text) >= sizeof host ||
            memchr(text, ':', (size_t)(colon - text)))
            goto bad;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    char *end = NULL;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || errno || *end || p < 0 || p > 65535)
        goto bad;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0 || !res)
        return eddyi_error(err, EDDY_EINVAL, "%s %s: cannot resolve \"%s\": %s",
                           what, text, host, gai_strerror(gai));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return EDDY_OK;
bad:
    return eddyi_error(err, EDDY_EINVAL,
                       "%s \"%s\": expected HOST:PORT (127.0.0.1:8080, "
                       "[::1]:8080; port 0: any free port)",
                       what, text);
}

/* Binds and listens; returns the socket or -1 with `err` filled. */
static int bind_socket(const char *what, const char *text,
                       const struct sockaddr_storage *ss, socklen_t sslen,
                       eddy_error *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    if (fd < 0) {
        eddyi_error(err, EDDY_ECONNECT, "%s %s: socket: %s", what, text,
                    strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, sslen) != 0 ||
        listen(fd, 1024) != 0) {
        eddyi_error(err, EDDY_ECONNECT, "%s %s: cannot listen: %s", what,
                    text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- connections and their deadlines ------------------------------------- */

eddyi_conn *eddyi_conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    eddyi_listener *l = cls;
    eddy_http_server *srv = l->srv;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        eddyi_conn *c = calloc(1, sizeof *c);
        if (!c)
            return; /* untracked: only libmicrohttpd's idle timeout */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        atomic_store(&c->deadline_us,
                     eddyi_http_now_us() + srv->request_timeout_us);
        pthread_mutex_lock(&srv->conn_mu);
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->conn_count++;
        pthread_mutex_unlock(&srv->conn_mu);
        *socket_context = c;
        return;
    }
    eddyi_conn *c = *socket_context;
    if (!c)
        return;
    pthread_mutex_lock(&srv->conn_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->conn_count--;
    pthread_mutex_unlock(&srv->conn_mu);
    free(c);
    *socket_context = NULL;
}

static void set_deadline(struct MHD_Connection *conn, int64_t deadline_us)
{
    eddyi_conn *c = eddyi_conn_of(conn);
    if (c)
        atomic_store(&c->deadline_us, deadline_us);
}

static void reap(eddy_http_server *srv, int64_t now)
{
    pthread_mutex_lock(&srv->conn_mu);
    for (eddyi_conn *c = srv->conns; c; c = c->next) {
        int64_t d = atomic_load(&c->deadline_us);
        if (d && now > d && c->fd >= 0) {
            atomic_store(&c->deadline_us, 0);
            shutdown(c->fd, SHUT_RDWR);
            atomic_fetch_add(&srv->timeouts, 1);
        }
    }
    pthread_mutex_unlock(&srv->conn_mu);
}

static void *ticker_main(void *arg)
{
    eddyi_thread_name("eddy-http-tick");
    eddy_http_server *srv = arg;
    int64_t next_sample = 0;
    pthread_mutex_lock(&srv->tick_mu);
    while (!srv->tick_stop) {
        pthread_mutex_unlock(&srv->tick_mu);
        int64_t now = eddyi_http_now_us();
        reap(srv, now);
        eddyi_sse_tick(srv, now);
        if (now >= next_sample) {
            eddyi_sampler_tick(srv, now);
            next_sample = now + 1000000;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&srv->tick_mu);
        if (!srv->tick_stop)
            pthread_cond_timedwait(&srv->tick_cv, &srv->tick_mu, &ts);
    }
    pthread_mutex_unlock(&srv->tick_mu);
    return NULL;
}

/* ---- authorisation ---------------------------------------------------------- */

/* The role of the request's bearer token; `*why` says what was wrong when
 * it is EDDYI_ROLE_NONE ("no Authorization header", ...). */
static eddyi_role request_role(eddyi_req *r, const char **why)
{
    eddy_http_server *srv = r->l->srv;
    const char *h = eddyi_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        *why = "no Authorization header (send \"Authorization: Bearer TOKEN\")";
        return EDDYI_ROLE_NONE;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "the Authorization header is not \"Bearer TOKEN\"";
        return EDDYI_ROLE_NONE;
    }
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t len = strlen(t);
    while (len > 0 && t[len - 1] == ' ')
        len--;
    eddyi_role role = eddyi_tokens_role(srv->tokens, srv->token_count, t, len);
    if (role == EDDYI_ROLE_NONE)
        *why = "unknown bearer token";
    return role;
}

/*
 * Decides whether the request may go on; queues 401/403 and returns false
 * when not. `need`: the role the request needs on a listener that requires
 * tokens; `action`: it changes something.
 */
static bool authorize(eddyi_req *r, eddyi_role need, bool action,
                      const char *what)
{
    eddy_http_server *srv = r->l->srv;
    bool admin = r->l->which == EDDY_HTTP_ADMIN;
    if (!srv->tokens) {
        if (!action)
            return true; /* loopback only: start refuses anything else */
        eddyi_reply_error(r, 403, "forbidden", NULL,
                          "%s: the server runs without a tokens file, so "
                          "nothing can be written (start it with --tokens "
                          "FILE)",
                          what);
        return false;
    }
    if (admin && !action && r->l->loopback)
        return true; /* reads on a loopback admin listener: no token */
    const char *why = NULL;
    r->role = request_role(r, &why);
    if (r->role == EDDYI_ROLE_NONE) {
        eddyi_reply_error(r, 401, "unauthorized", NULL, "%s: %s", what, why);
        return false;
    }
    if (r->role < need) {
        eddyi_reply_error(r, 403, "forbidden",
                          json_pack("{s:s, s:s}", "role",
                                    eddyi_role_name(r->role), "needs",
                                    eddyi_role_name(need)),
                          "%s needs a %s token; this token has the role %s",
                          what, eddyi_role_name(need),
                          eddyi_role_name(r->role));
        return false;
    }
    return true;
}

/* ---- routing ----------------------------------------------------------------- */

static bool is_get(const char *m)
{
    return strcmp(m, MHD_HTTP_METHOD_GET) == 0 ||
           strcmp(m, MHD_HTTP_METHOD_HEAD) == 0;
}

static enum MHD_Result not_allowed(eddyi_req *r, const char *allow)
{
    const char *h[] = {"Allow", allow};
    json_t *o = json_pack("{s:i, s:s, s:s, s:s}", "status", 405, "error",
                          "method_not_allowed", "message", "", "allow", allow);
    char msg[256];
    snprintf(msg, sizeof msg, "%s is not allowed on %s (allowed: %s)",
             r->method, r->url, allow);
    if (o)
        json_object_set_new(o, "message", json_string(msg));
    return eddyi_reply_json(r, 405, o, h, 1);
}

static enum MHD_Result not_found(eddyi_req *r)
{
    return eddyi_reply_error(r, 404, "not_found", NULL,
                             "no such resource: %s %s (see eddy/http.h for "
                             "the routes)",
                             r->method, r->url);
}

/* Sets r->route and r->param from the method and URL; queues a 404 or 405
 * and returns false when there is no such route. */
static bool route(eddyi_req *r)
{
    const char *u = r->url, *m = r->method;
    bool admin = r->l->which == EDDY_HTTP_ADMIN;
    if (!admin && strncmp(u, "/streams/", 9) == 0 && u[9]) {
        if (strcmp(m, MHD_HTTP_METHOD_POST) == 0)
            r->route = EDDYI_R_APPEND;
        else if (strcmp(m, MHD_HTTP_METHOD_OPTIONS) == 0)
            r->route = EDDYI_R_WEBHOOK;
        else if (is_get(m))
            r->route = EDDYI_R_STREAM;
        else
            return not_allowed(r, "GET, HEAD, POST, OPTIONS"), false;
        if (!(r->param = strdup(u + 9)))
            return eddyi_reply_error(r, 500, "internal", NULL,
                                     "out of memory"), false;
        return true;
    }
    bool api = admin && strncmp(u, "/api/", 5) == 0;
    const char *rest = api ? u + 4 : u; /* "/events..." on both */
    if (!admin || api) {
        if (strcmp(rest, "/events") == 0 || strcmp(rest, "/events/stream") == 0) {
            if (!is_get(m))
                return not_allowed(r, "GET, HEAD"), false;
            r->route = rest[7] ? EDDYI_R_SSE : EDDYI_R_EVENTS;
            return true;
        }
        if (!api && strncmp(rest, "/events/", 8) == 0 && rest[8]) {
            if (!is_get(m))
                return not_allowed(r, "GET, HEAD"), false;
            r->route = EDDYI_R_EVENT;
            if (!(r->param = strdup(rest + 8)))
                return eddyi_reply_error(r, 500, "internal", NULL,
                                         "out of memory"), false;
            return true;
        }
    }
    if (api) {
        r->route = EDDYI_R_API;
        if (!(r->param = strdup(u + 5)))
            return eddyi_reply_error(r, 500, "internal", NULL,
                                     "out of memory"), false;
        return true;
    }
    if (admin) {
        eddyi_route rt = strcmp(u, "/metrics") == 0   ? EDDYI_R_METRICS
                         : strcmp(u, "/healthz") == 0 ? EDDYI_R_HEALTHZ
                         : strcmp(u, "/readyz") == 0  ? EDDYI_R_READYZ
                                                      : EDDYI_R_ASSET;
        if (!is_get(m))
            return not_allowed(r, "GET, HEAD"), false;
        r->route = rt;
        return true;
    }
    return not_found(r), false;
}

/* What a route needs, for authorize(). */
static void route_needs(eddyi_req *r, eddyi_role *need, bool *action,
                        const char **what)
{
    *need = EDDYI_ROLE_READ;
    *action = false;
    switch (r->route) {
    case EDDYI_R_APPEND:
        *need = EDDYI_ROLE_WRITE;
        *action = true;
        *what = "appending";
        break;
    case EDDYI_R_WEBHOOK:
        *need = EDDYI_ROLE_WRITE;
        *action = true;
        *what = "the web-hook handshake (permission to deliver events)";
        break;
    case EDDYI_R_API:
        *action = eddyi_api_is_action(r->method, r->param);
        *need = *action ? EDDYI_ROLE_ADMIN : EDDYI_ROLE_READ;
        *what = *action ? "this action" : "reading";
        break;
    default:
        *what = "reading";
        break;
    }
}

/* ---- the request handler ---------------------------------------------------- */

static enum MHD_Result dispatch(eddyi_req *r)
{
    switch (r->route) {
    case EDDYI_R_APPEND: return eddyi_ingest_finish(r);
    case EDDYI_R_WEBHOOK: return eddyi_webhook_options(r);
    case EDDYI_R_STREAM: return eddyi_read_stream(r);
    case EDDYI_R_EVENTS: return eddyi_read_events(r);
    case EDDYI_R_EVENT: return eddyi_read_event(r);
    case EDDYI_R_SSE: return eddyi_sse_start(r);
    case EDDYI_R_METRICS: return eddyi_metrics(r);
    case EDDYI_R_HEALTHZ: return eddyi_healthz(r);
    case EDDYI_R_READYZ: return eddyi_readyz(r);
    case EDDYI_R_API: return eddyi_api(r);
    case EDDYI_R_ASSET: return eddyi_asset(r);
    default: return not_found(r);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    eddyi_listener *l = cls;
    eddy_http_server *srv = l->srv;
    eddyi_req *r = *con_cls;
    if (!r) { /* the headers have arrived; the body (if any) has not */
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        r->l = l;
        r->conn = conn;
        r->url = url;
        r->method = method;
        *con_cls = r;
        if (!route(r))
            return MHD_YES;
        eddyi_role need;
        bool action;
        const char *what = "this request";
        route_needs(r, &need, &action, &what);
        if (!authorize(r, need, action, what))
            return MHD_YES;
        if (r->route == EDDYI_R_APPEND)
            return eddyi_ingest_begin(r);
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* libmicrohttpd takes a response only before the body or once it
         * has all arrived: a body over the limit is counted and dropped,
         * and answered 413 at the end; past DISCARD_CAP bytes the
         * connection is closed without an answer */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->answered)
            return MHD_YES; /* answered early: libmicrohttpd closes */
        if (r->too_big || r->len + n > srv->max_body ||
            r->route != EDDYI_R_APPEND) {
            r->too_big = r->too_big || r->len + n > srv->max_body;
            r->len += n;
            return r->len > DISCARD_CAP(srv) ? MHD_NO : MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            if (cap > srv->max_body + 1)
                cap = srv->max_body + 1;
            char *bigger = realloc(r->body, cap);
            if (!bigger)
                return MHD_NO;
            r->body = bigger;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (!r->answered && r->too_big)
        return eddyi_reply_error(
            r, 413, "too_large",
            json_pack("{s:I}", "limit", (json_int_t)srv->max_body),
            "the request body exceeds the limit of %zu bytes (--max-body)",
            srv->max_body);
    if (r->answered)
        return MHD_YES;
    /* the whole request has arrived: no deadline while it is answered */
    set_deadline(conn, 0);
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    eddyi_listener *l = cls;
    eddyi_req *r = *con_cls;
    /* a kept-alive connection gets a new deadline for its next request */
    set_deadline(conn, eddyi_http_now_us() + l->srv->request_timeout_us);
    if (!r)
        return;
    if (r->unanswered) /* answered, or its client went away */
        atomic_fetch_sub(&l->srv->unanswered_appends, 1);
    eddyi_ingest_clear(r);
    eddyi_sse_client_free(r->sse);
    free(r->param);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* libmicrohttpd's messages are about clients going away or misbehaving
 * (debug), except while a daemon starts: then the last one explains why it
 * could not. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    eddyi_listener *l = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == '\n')
        msg[--len] = '\0';
    pthread_mutex_lock(&l->log_mu);
    bool running = l->running;
    if (!running)
        snprintf(l->start_log, sizeof l->start_log, "%s", msg);
    pthread_mutex_unlock(&l->log_mu);
    EDDYI_LOG(running ? EDDY_LOG_DEBUG : EDDY_LOG_WARN, "http",
              "%s listener: %s", l->name, msg);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int start_listener(eddy_http_server *srv, eddyi_listener *l,
                          const char *option, eddy_error *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int rc = parse_addr(option, l->addr, &ss, &sslen, err);
    if (rc != EDDY_OK)
        return rc;
    l->loopback = addr_is_loopback((struct sockaddr *)&ss);
    if (!srv->tokens && !l->loopback)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s %s is not a loopback address: without a tokens "
                           "file (--tokens FILE) the server only listens on "
                           "loopback (127.0.0.1, ::1)",
                           option, l->addr);
    int fd = bind_socket(option, l->addr, &ss, sslen, err);
    if (fd < 0)
        return err ? err->code : EDDY_ECONNECT;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &blen);
    char host[INET6_ADDRSTRLEN] = "?";
    if (bound.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&bound;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        l->port = ntohs(in->sin_port);
        snprintf(l->url, sizeof l->url, "http://%s:%d", host, l->port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&bound;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        l->port = ntohs(in6->sin6_port);
        snprintf(l->url, sizeof l->url, "http://[%s]:%d", host, l->port);
    }
    unsigned timeout_s =
        (unsigned)((srv->request_timeout_us + 999999) / 1000000);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    l->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, l,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, l, /* first, as MHD asks */
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_THREAD_POOL_SIZE, srv->threads,
        MHD_OPTION_CONNECTION_LIMIT, srv->max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, l, MHD_OPTION_END);
    pthread_mutex_lock(&l->log_mu);
    l->running = l->daemon != NULL;
    pthread_mutex_unlock(&l->log_mu);
    if (!l->daemon) {
        close(fd);
        return eddyi_error(err, EDDY_ECONNECT,
                           "%s %s: libmicrohttpd could not start: %s", option,
                           l->addr,
                           l->start_log[0] ? l->start_log : "(no reason given)");
    }
    return EDDY_OK;
}

eddy_http_server *eddy_http_server_start(const eddy_http_options *opts,
                                         eddy_error *err)
{
    if (!opts || !opts->store) {
        eddyi_error(err, EDDY_EINVAL, "http server: no store given");
        return NULL;
    }
    if (!opts->listen && !opts->admin) {
        eddyi_error(err, EDDY_EINVAL, "http server: neither the events API "
                    "(listen) nor the admin listener (admin) is set");
        return NULL;
    }
    eddy_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&srv->conn_mu, NULL);
    pthread_mutex_init(&srv->tick_mu, NULL);
    pthread_mutex_init(&srv->stop_mu, NULL);
    pthread_cond_init(&srv->tick_cv, NULL);
    srv->store = opts->store;
    srv->schemas = opts->schemas;
    srv->max_body = opts->max_body ? opts->max_body : EDDY_HTTP_DEFAULT_MAX_BODY;
    if (srv->max_body < EDDY_HTTP_MIN_MAX_BODY)
        srv->max_body = EDDY_HTTP_MIN_MAX_BODY;
    srv->max_pending = opts->max_pending_appends ? opts->max_pending_appends
                                                 : DEFAULT_MAX_PENDING;
    srv->request_timeout_us =
        (int64_t)(opts->request_timeout_ms ? opts->request_timeout_ms
                                           : DEFAULT_REQUEST_TIMEOUT_MS) * 1000;
    srv->threads = opts->threads ? opts->threads : DEFAULT_THREADS;
    srv->max_connections = opts->max_connections ? opts->max_connections
                                                 : DEFAULT_MAX_CONNECTIONS;
    srv->webhook_rate = opts->webhook_rate;
    srv->sse_buffer_events = opts->sse_buffer_events;
    srv->sse_heartbeat_ms = opts->sse_heartbeat_ms;
    srv->stall_after_ms = opts->stall_after_ms;
    srv->listeners[0] = (eddyi_listener){.srv = srv, .which = EDDY_HTTP_EVENTS,
                                         .name = "events"};
    srv->listeners[1] = (eddyi_listener){.srv = srv, .which = EDDY_HTTP_ADMIN,
                                         .name = "admin"};
    pthread_mutex_init(&srv->listeners[0].log_mu, NULL);
    pthread_mutex_init(&srv->listeners[1].log_mu, NULL);
    if ((opts->listen && !(srv->listeners[0].addr = strdup(opts->listen))) ||
        (opts->admin && !(srv->listeners[1].addr = strdup(opts->admin)))) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto fail;
    }
    if (opts->webhook_origin_count) {
        if (!opts->webhook_origins) {
            eddyi_error(err, EDDY_EINVAL, "http server: %zu web-hook origins "
                        "but no array", opts->webhook_origin_count);
            goto fail;
        }
        srv->webhook_origins = calloc(opts->webhook_origin_count,
                                      sizeof *srv->webhook_origins);
        if (!srv->webhook_origins) {
            eddyi_error(err, EDDY_ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < opts->webhook_origin_count; i++) {
            const char *o = opts->webhook_origins[i];
            if (!o || !*o) {
                eddyi_error(err, EDDY_EINVAL, "http server: web-hook origin "
                            "%zu is empty", i);
                goto fail;
            }
            if (!(srv->webhook_origins[i] = strdup(o))) {
                eddyi_error(err, EDDY_ENOMEM, "out of memory");
                goto fail;
            }
            srv->webhook_origin_count = i + 1;
        }
    }
    if (opts->tokens_file &&
        eddyi_tokens_load(opts->tokens_file, &srv->tokens, &srv->token_count,
                          err) != EDDY_OK)
        goto fail;
    if (opts->metrics) {
        srv->metrics = opts->metrics;
    } else {
        if (!(srv->metrics = eddy_metrics_new())) {
            eddyi_error(err, EDDY_ENOMEM, "out of memory");
            goto fail;
        }
        srv->own_metrics = true;
    }
    if (eddyi_sse_hub_new(srv, err) != EDDY_OK ||
        eddyi_sampler_new(srv, err) != EDDY_OK ||
        eddyi_rebuild_new(srv, err) != EDDY_OK)
        goto fail;
    static const char *const option[2] = {"listen", "admin"};
    for (int i = 0; i < 2; i++)
        if (srv->listeners[i].addr &&
            start_listener(srv, &srv->listeners[i], option[i], err) != EDDY_OK)
            goto fail;
    if (pthread_create(&srv->ticker, NULL, ticker_main, srv) != 0) {
        eddyi_error(err, EDDY_ENOMEM, "http server: cannot start a thread");
        goto fail;
    }
    srv->ticker_started = true;
    for (int i = 0; i < 2; i++)
        if (srv->listeners[i].daemon)
            EDDYI_LOG(EDDY_LOG_INFO, "http", "%s listener on %s%s",
                      srv->listeners[i].name, srv->listeners[i].url,
                      srv->tokens ? "" : " (no tokens: read-only)");
    return srv;
fail:
    eddy_http_server_free(srv);
    return NULL;
}

void eddy_http_server_stop(eddy_http_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->stop_mu);
    if (srv->stopped) {
        pthread_mutex_unlock(&srv->stop_mu);
        return;
    }
    srv->stopped = true;
    atomic_store(&srv->stopping, true);
    int quiesced[2] = {-1, -1};
    for (int i = 0; i < 2; i++)
        if (srv->listeners[i].daemon)
            quiesced[i] = MHD_quiesce_daemon(srv->listeners[i].daemon);
    eddyi_sse_hub_stop(srv);
    /* Appends in flight hold suspended connections: their completions
     * resume them. New ones are refused (stopping). Then their answers
     * must leave before the daemons close every connection; a client that
     * does not read its answer is not waited for beyond 5 s. */
    while (atomic_load(&srv->pending_appends) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int64_t answers_by = eddyi_http_now_us() + 5000000;
    while (atomic_load(&srv->unanswered_appends) > 0 &&
           eddyi_http_now_us() < answers_by) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    eddyi_rebuild_free(srv);
    if (srv->ticker_started) {
        pthread_mutex_lock(&srv->tick_mu);
        srv->tick_stop = true;
        pthread_cond_broadcast(&srv->tick_cv);
        pthread_mutex_unlock(&srv->tick_mu);
        pthread_join(srv->ticker, NULL);
        srv->ticker_started = false;
    }
    for (int i = 0; i < 2; i++) {
        if (srv->listeners[i].daemon) {
            MHD_stop_daemon(srv->listeners[i].daemon);
            srv->listeners[i].daemon = NULL;
        }
        if (quiesced[i] >= 0)
            close(quiesced[i]);
    }
    pthread_mutex_unlock(&srv->stop_mu);
}

void eddy_http_server_free(eddy_http_server *srv)
{
    if (!srv)
        return;
    eddy_http_server_stop(srv);
    eddyi_sse_hub_free(srv);
    eddyi_sampler_free(srv);
    if (srv->own_metrics)
        eddy_metrics_free(srv->metrics);
    eddyi_tokens_free(srv->tokens, srv->token_count);
    eddyi_strv_free(srv->webhook_origins, srv->webhook_origin_count);
    for (int i = 0; i < 2; i++) {
        free(srv->listeners[i].addr);
        pthread_mutex_destroy(&srv->listeners[i].log_mu);
    }
    pthread_cond_destroy(&srv->tick_cv);
    pthread_mutex_destroy(&srv->tick_mu);
    pthread_mutex_destroy(&srv->conn_mu);
    pthread_mutex_destroy(&srv->stop_mu);
    free(srv);
}

int eddy_http_server_port(const eddy_http_server *srv,
                          eddy_http_listener which)
{
    if (!srv || (which != EDDY_HTTP_EVENTS && which != EDDY_HTTP_ADMIN))
        return 0;
    return srv->listeners[which].addr ? srv->listeners[which].port : 0;
}

const char *eddy_http_server_url(const eddy_http_server *srv,
                                 eddy_http_listener which)
{
    if (!srv || (which != EDDY_HTTP_EVENTS && which != EDDY_HTTP_ADMIN) ||
        !srv->listeners[which].addr || !srv->listeners[which].port)
        return NULL;
    return srv->listeners[which].url;
}
