/*
 * tests/http_client.h - a minimal HTTP/1.1 client over plain sockets for the
 * HTTP tests and bench/http.c (header only: every test is its own program).
 *
 * It sends bytes exactly as given (the conformance scenarios are raw
 * requests) and reads one response: status line, headers, then a body of
 * Content-Length bytes, a chunked body, or (HTTP/1.0, Connection: close)
 * everything until the server closes. Server-Sent Events are read raw with
 * htc_read_until().
 */
#ifndef EDDY_TESTS_HTTP_CLIENT_H
#define EDDY_TESTS_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct htc_resp {
    int status;
    char *head;     /* the status line and headers, NUL-terminated */
    char *body;     /* NUL-terminated (a NUL follows body_len bytes) */
    size_t body_len;
} htc_resp;

/* A connection with its read buffer (bytes read past one response). */
typedef struct htc_conn {
    int fd;
    char *buf;
    size_t len, cap;
} htc_conn;

static inline long long htc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects to 127.0.0.1:`port`; returns false on failure. */
static inline bool htc_open(htc_conn *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return false;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    return true;
}

static inline void htc_close(htc_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static inline bool htc_send(htc_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads more bytes into the buffer, waiting up to `timeout_ms`. Returns
 * the count, 0 at the end of the stream, -1 on error, -2 on timeout. */
static inline ssize_t htc_fill(htc_conn *c, int timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr <= 0)
        return pr == 0 ? -2 : -1;
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        char *b = realloc(c->buf, cap);
        if (!b)
            return -1;
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
    return n < 0 ? -1 : n;
}

/* Drops the first `n` bytes of the buffer. */
static inline void htc_consume(htc_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    if (c->buf)
        c->buf[c->len] = '\0';
}

static inline void htc_resp_free(htc_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The value of header `name` in `r` (case-insensitive) copied into `out`;
 * false when absent. */
static inline bool htc_header(const htc_resp *r, const char *name, char *out,
                              size_t size)
{
    size_t nlen = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2];
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            snprintf(out, size, "%.*s", (int)len, v);
            return true;
        }
    }
    return false;
}

/* Reads one response. Returns false on a timeout, a closed connection or
 * a malformed response. */
static inline bool htc_read(htc_conn *c, htc_resp *r, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    long long deadline = htc_now_ms() + timeout_ms;
    char *end;
    while (!c->buf || !(end = strstr(c->buf, "\r\n\r\n"))) {
        int left = (int)(deadline - htc_now_ms());
        if (left <= 0 || htc_fill(c, left) <= 0)
            return false;
    }
    size_t hlen = (size_t)(end - c->buf) + 2;
    r->head = strndup(c->buf, hlen);
    if (!r->head || sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return false;
    htc_consume(c, hlen + 2);
    char v[64];
    bool head_only = r->status == 204 || r->status == 304;
    if (htc_header(r, "Content-Length", v, sizeof v) || head_only) {
        size_t want = head_only ? 0 : strtoul(v, NULL, 10);
        while (c->len < want) {
            int left = (int)(deadline - htc_now_ms());
            if (left <= 0 || htc_fill(c, left) <= 0)
                return false;
        }
        r->body = malloc(want + 1);
        memcpy(r->body, c->buf ? c->buf : "", want);
        r->body[want] = '\0';
        r->body_len = want;
        htc_consume(c, want);
        return true;
    }
    if (htc_header(r, "Transfer-Encoding", v, sizeof v) &&
        strcasecmp(v, "chunked") == 0) {
        size_t blen = 0;
        r->body = malloc(1);
        for (;;) {
            char *eol;
            while (!c->buf || !(eol = strstr(c->buf, "\r\n"))) {
                int left = (int)(deadline - htc_now_ms());
                if (left <= 0 || htc_fill(c, left) <= 0)
                    return false;
            }
            size_t size = strtoul(c->buf, NULL, 16);
            size_t need = (size_t)(eol - c->buf) + 2 + size + 2;
            while (c->len < need) {
                int left = (int)(deadline - htc_now_ms());
                if (left <= 0 || htc_fill(c, left) <= 0)
                    return false;
            }
            char *b = realloc(r->body, blen + size + 1);
            if (!b)
                return false;
            r->body = b;
            memcpy(r->body + blen, eol + 2, size);
            blen += size;
            r->body[blen] = '\0';
            htc_consume(c, need);
            if (size == 0)
                break;
        }
        r->body_len = blen;
        return true;
    }
    /* until the server closes */
    for (;;) {
        int left = (int)(deadline - htc_now_ms());
        ssize_t n = left > 0 ? htc_fill(c, left) : -1;
        if (n < 0)
            return false;
        if (n == 0)
            break;
    }
    r->body_len = c->len;
    r->body = malloc(c->len + 1);
    memcpy(r->body, c->buf ? c->buf : "", c->len);
    r->body[c->len] = '\0';
    htc_consume(c, c->len);
    return true;
}

/*
 * One request on a new connection: `method` `path` with extra header lines
 * `headers` ("Name: value\r\n..." or NULL) and a body (NULL: none;
 * Content-Length is added). Fills `r`; false when no response came.
 */
static inline bool htc_request(int port, const char *method, const char *path,
                               const char *headers, const char *body,
                               size_t body_len, htc_resp *r)
{
    htc_conn c;
    if (!htc_open(&c, port))
        return false;
    char head[8192];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, headers ? headers : "",
                     body ? body_len : (size_t)0);
    bool ok = n > 0 && (size_t)n < sizeof head && htc_send(&c, head, (size_t)n) &&
              (!body || htc_send(&c, body, body_len)) && htc_read(&c, r, 15000);
    htc_close(&c);
    return ok;
}

/* Reads until `needle` appears in the buffer or `timeout_ms` passes;
 * true when it appeared. The buffer keeps what was read. */
static inline bool htc_read_until(htc_conn *c, const char *needle,
                                  int timeout_ms)
{
    long long deadline = htc_now_ms() + timeout_ms;
    while (!c->buf || !strstr(c->buf, needle)) {
        int left = (int)(deadline - htc_now_ms());
        if (left <= 0 || htc_fill(c, left) <= 0)
            return false;
    }
    return true;
}

#endif
