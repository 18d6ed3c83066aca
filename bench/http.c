/*
 * bench/http.c - eddy serve's cost, against baselines measured in the same
 * run.
 *
 *   http [DIR] [CONNECTIONS] [CLIENTS]
 *     DIR          where the temporary stores go (default: $TMPDIR or /tmp)
 *     CONNECTIONS  appender connections / threads (default 8)
 *     CLIENTS      Server-Sent Events clients (default 1000)
 *
 * 1. APPENDS. N keep-alive HTTP connections, each a thread posting one
 *    binary-mode CloudEvent per request to its own stream and waiting for
 *    the answer (closed loop), against N threads calling eddy_store_append
 *    with the same events on another store in the same folder. Both
 *    durable (EDDY_SYNC_FULL). Runs alternate (direct, http, direct, ...),
 *    RUNS of each, RUN_SECONDS each; the figures are medians, plus the
 *    latency percentiles of every request of every run. Last line of the
 *    part: `http/direct append ratio: R`.
 * 2. FAN-OUT. The server runs in a child process (so that its memory is
 *    its own); CLIENTS connections follow /events/stream, all read by one
 *    epoll thread here. Memory per client is the server's resident set
 *    with the clients connected and idle, minus before, divided by the
 *    clients. Then FANOUT_EVENTS events are appended (batches of 100) and
 *    timed until every client has received every one: events delivered per
 *    second (events x clients / time) and the latency from sending the
 *    batch to each client's receipt (p50, p99, max). The same with one
 *    client is the baseline. FANOUT_RUNS runs each; medians.
 * 3. TOKENS. The bearer-token lookup (src/http/auth.c) is meant to take
 *    the same time whatever is presented: nanoseconds per lookup against
 *    three 28-character tokens for the right token, one wrong in its first
 *    or in its last byte, a short and a long guess; medians of 31 runs of
 *    100,000 lookups (cases interleaved), and the largest median over the
 *    smallest.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "eddy/eddy.h"
#include "eddy/http.h"

#include "../tests/http_client.h"
#include "http/http_internal.h" /* eddyi_tokens_role, for part 3 */

#define RUNS 5
#define RUN_SECONDS 2.0
#define FANOUT_EVENTS 1000
#define FANOUT_RUNS 3
#define TOKEN "bench-token-0123456789abcdef"

static char bench_dir[512];
static int seq;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The q-quantile of `n` sorted values. */
static double pct(const double *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench/http: %s: %s\n", what, msg);
    exit(1);
}

static eddy_store *open_store(const char *tag, eddy_sync_mode sync,
                              char *path, size_t size)
{
    snprintf(path, size, "%s/bench-http-%s-%d-%d.db", bench_dir, tag,
             (int)getpid(), seq++);
    eddy_store_options o = {.sync = sync};
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, &o, &err);
    if (!s)
        die(path, err.message);
    return s;
}

static void remove_store(const char *path)
{
    char p[600];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static void write_tokens(char *path, size_t size)
{
    snprintf(path, size, "%s/bench-http-tokens-%d", bench_dir, (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, strerror(errno));
    fprintf(f, "admin %s\n", TOKEN);
    fclose(f);
}

/* Latencies of one kind, all runs. */
typedef struct lat {
    double *v;
    size_t n, cap;
    pthread_mutex_t mu;
} lat;

static void lat_add(lat *l, const double *v, size_t n)
{
    pthread_mutex_lock(&l->mu);
    if (l->n + n > l->cap) {
        l->cap = (l->n + n) * 2;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            die("latencies", "out of memory");
    }
    memcpy(l->v + l->n, v, n * sizeof *v);
    l->n += n;
    pthread_mutex_unlock(&l->mu);
}

/* ---- 1. appends ------------------------------------------------------------------ */

struct worker {
    pthread_t th;
    int index;
    bool http;
    eddy_store *store; /* direct */
    int port;          /* http */
    double until;
    long done;
    double *lats;
    size_t nlat, caplat;
    int run;
};

static void note_lat(struct worker *w, double dt)
{
    if (w->nlat == w->caplat) {
        w->caplat = w->caplat ? w->caplat * 2 : 1024;
        w->lats = realloc(w->lats, w->caplat * sizeof *w->lats);
        if (!w->lats)
            die("latencies", "out of memory");
    }
    w->lats[w->nlat++] = dt;
}

static void *direct_main(void *arg)
{
    struct worker *w = arg;
    char stream[64], id[64];
    snprintf(stream, sizeof stream, "bench-%d-%d", w->run, w->index);
    eddy_error err = {0};
    while (now_s() < w->until) {
        snprintf(id, sizeof id, "d-%d-%d-%ld", w->run, w->index, w->done);
        eddy_event *ev = eddy_event_newf("bench.appended", "/bench", stream, &err,
                                         "{s:s, s:i}", "order_id", stream, "n",
                                         (int)w->done);
        if (!ev)
            die("event", err.message);
        double t0 = now_s();
        if (eddy_store_append(w->store, stream, EDDY_EXPECT_ANY, &ev, 1, NULL,
                              &err) != EDDY_OK)
            die("append", err.message);
        note_lat(w, now_s() - t0);
        eddy_event_unref(ev);
        w->done++;
    }
    return NULL;
}

static void *http_main(void *arg)
{
    struct worker *w = arg;
    htc_conn c;
    if (!htc_open(&c, w->port))
        die("connect", strerror(errno));
    char stream[64], req[1024], body[128];
    snprintf(stream, sizeof stream, "bench-%d-%d", w->run, w->index);
    while (now_s() < w->until) {
        int blen = snprintf(body, sizeof body, "{\"order_id\":\"%s\",\"n\":%ld}",
                            stream, w->done);
        int n = snprintf(req, sizeof req,
                         "POST /streams/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Authorization: Bearer " TOKEN "\r\n"
                         "ce-specversion: 1.0\r\nce-id: h-%d-%d-%ld\r\n"
                         "ce-source: /bench\r\nce-type: bench.appended\r\n"
                         "ce-subject: %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %d\r\n\r\n%s",
                         stream, w->run, w->index, w->done, stream, blen, body);
        double t0 = now_s();
        htc_resp r;
        if (!htc_send(&c, req, (size_t)n) || !htc_read(&c, &r, 30000))
            die("http append", "no response");
        if (r.status != 201)
            die("http append", r.body);
        htc_resp_free(&r);
        note_lat(w, now_s() - t0);
        w->done++;
    }
    htc_close(&c);
    return NULL;
}

/* One run: `n` workers for RUN_SECONDS; returns events per second. */
static double run_appends(bool http, int n, eddy_store *store, int port,
                          int run, lat *l)
{
    struct worker *w = calloc((size_t)n, sizeof *w);
    double until = now_s() + RUN_SECONDS, t0 = now_s();
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){.index = i, .http = http, .store = store,
                               .port = port, .until = until, .run = run};
        pthread_create(&w[i].th, NULL, http ? http_main : direct_main, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].done;
        lat_add(l, w[i].lats, w[i].nlat);
        free(w[i].lats);
    }
    double el = now_s() - t0;
    free(w);
    return (double)total / el;
}

static double bench_appends(int n)
{
    char dpath[600], hpath[600], tokens[600];
    eddy_store *direct = open_store("direct", EDDY_SYNC_FULL, dpath, sizeof dpath);
    eddy_store *served = open_store("served", EDDY_SYNC_FULL, hpath, sizeof hpath);
    write_tokens(tokens, sizeof tokens);
    eddy_http_options ho = {.store = served, .listen = "127.0.0.1:0",
                            .tokens_file = tokens};
    eddy_error err = {0};
    eddy_http_server *srv = eddy_http_server_start(&ho, &err);
    if (!srv)
        die("server", err.message);
    int port = eddy_http_server_port(srv, EDDY_HTTP_EVENTS);
    lat ld = {.mu = PTHREAD_MUTEX_INITIALIZER}, lh = {.mu = PTHREAD_MUTEX_INITIALIZER};
    double d[RUNS], h[RUNS], ratios[RUNS];
    printf("\n== appends: %d connections / threads, one event per request, durable "
           "(sync full) ==\n", n);
    printf("%-4s %14s %14s %8s\n", "run", "direct ev/s", "http ev/s", "ratio");
    for (int r = 0; r < RUNS; r++) {
        d[r] = run_appends(false, n, direct, 0, r, &ld);
        h[r] = run_appends(true, n, served, port, r, &lh);
        ratios[r] = h[r] / d[r];
        printf("%-4d %14.0f %14.0f %8.2f\n", r + 1, d[r], h[r], ratios[r]);
    }
    qsort(ld.v, ld.n, sizeof *ld.v, cmp_double);
    qsort(lh.v, lh.n, sizeof *lh.v, cmp_double);
    printf("latency per append, ms   p50      p90      p99      max\n");
    printf("  direct            %8.2f %8.2f %8.2f %8.2f  (%zu appends)\n",
           pct(ld.v, ld.n, .5) * 1e3, pct(ld.v, ld.n, .9) * 1e3,
           pct(ld.v, ld.n, .99) * 1e3, pct(ld.v, ld.n, 1) * 1e3, ld.n);
    printf("  http              %8.2f %8.2f %8.2f %8.2f  (%zu requests)\n",
           pct(lh.v, lh.n, .5) * 1e3, pct(lh.v, lh.n, .9) * 1e3,
           pct(lh.v, lh.n, .99) * 1e3, pct(lh.v, lh.n, 1) * 1e3, lh.n);
    double md = median(d, RUNS), mh = median(h, RUNS);
    double mr = median(ratios, RUNS);
    printf("median: direct %.0f ev/s, http %.0f ev/s; median of the run ratios %.2f\n",
           md, mh, mr);
    printf("http/direct append ratio: %.2f\n", mh / md);
    eddy_http_server_free(srv);
    eddy_store_close(direct);
    eddy_store_close(served);
    remove_store(dpath);
    remove_store(hpath);
    unlink(tokens);
    free(ld.v);
    free(lh.v);
    return mh / md;
}

/* ---- 2. fan-out --------------------------------------------------------------------- */

static long rss_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0)
            v = atol(line + fl);
    if (f)
        fclose(f);
    return v;
}

/* The server for the fan-out, in a child process: writes its port to
 * `fd`, serves until SIGTERM. */
static void fanout_server(int fd, int clients)
{
    char path[600], tokens[600];
    eddy_store *s = open_store("fanout", EDDY_SYNC_NORMAL, path, sizeof path);
    write_tokens(tokens, sizeof tokens);
    eddy_http_options ho = {.store = s, .listen = "127.0.0.1:0",
                            .tokens_file = tokens,
                            .max_connections = (unsigned)clients + 64,
                            .sse_heartbeat_ms = 600000,
                            .request_timeout_ms = 600000};
    eddy_error err = {0};
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    eddy_http_server *srv = eddy_http_server_start(&ho, &err);
    if (!srv)
        die("fan-out server", err.message);
    int port = eddy_http_server_port(srv, EDDY_HTTP_EVENTS);
    if (write(fd, &port, sizeof port) != sizeof port)
        die("pipe", strerror(errno));
    close(fd);
    int sig;
    sigwait(&sigs, &sig);
    eddy_http_server_free(srv);
    eddy_store_close(s);
    remove_store(path);
    unlink(tokens);
    _exit(0);
}

typedef struct sse_client {
    int fd;
    long frames;     /* frames received (the greeting is the first) */
    int64_t got;     /* events received in this run */
    char line[24];   /* the start of the current line */
    int linelen;     /* its length so far (may exceed what is kept) */
} sse_client;

struct fanout_run {
    double seconds;      /* first send to last receipt */
    double *lat;         /* per (client, event) */
    size_t nlat;
};

/* Reads whatever is readable; records receipts of positions in
 * [first, first + n) against `sent_at` (indexed by position - first). */
static void pump(int ep, sse_client *cl, int64_t first, int64_t n,
                 const double *sent_at, struct fanout_run *run, int timeout_ms,
                 int64_t *done_clients)
{
    struct epoll_event evs[256];
    int k = epoll_wait(ep, evs, 256, timeout_ms);
    char buf[65536];
    for (int i = 0; i < k; i++) {
        sse_client *c = evs[i].data.ptr;
        ssize_t got;
        while ((got = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
            double t = now_s();
            for (ssize_t b = 0; b < got; b++) {
                char ch = buf[b];
                if (ch != '\n') {
                    if (c->linelen < (int)sizeof c->line - 1)
                        c->line[c->linelen] = ch;
                    c->linelen++;
                    continue;
                }
                /* a line ends: empty = the end of a frame; "id: N" */
                if (c->linelen == 0) {
                    c->frames++;
                } else if (c->linelen > 4 && strncmp(c->line, "id: ", 4) == 0 &&
                           sent_at) {
                    c->line[c->linelen < (int)sizeof c->line
                                ? c->linelen
                                : (int)sizeof c->line - 1] = '\0';
                    int64_t pos = atoll(c->line + 4);
                    if (pos >= first && pos < first + n) {
                        if (run->lat)
                            run->lat[run->nlat++] = t - sent_at[pos - first];
                        if (++c->got == n)
                            (*done_clients)++;
                    }
                }
                c->linelen = 0;
            }
        }
        if (got == 0)
            die("stream", "the server closed a stream");
    }
}

static void post_batch(htc_conn *pub, int64_t from, int count)
{
    size_t cap = (size_t)count * 200 + 64;
    char *body = malloc(cap);
    size_t o = 0;
    body[o++] = '[';
    for (int i = 0; i < count; i++)
        o += (size_t)snprintf(body + o, cap - o,
                              "%s{\"specversion\":\"1.0\",\"id\":\"f-%d-%" PRId64 "\","
                              "\"source\":\"/bench\",\"type\":\"bench.fanout\","
                              "\"data\":{\"n\":%" PRId64 "}}",
                              i ? "," : "", (int)getpid(), from + i, from + i);
    body[o++] = ']';
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /streams/fanout HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer " TOKEN "\r\n"
                     "Content-Type: application/cloudevents-batch+json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     o);
    htc_resp r;
    if (!htc_send(pub, head, (size_t)n) || !htc_send(pub, body, o) ||
        !htc_read(pub, &r, 30000) || r.status != 201)
        die("fan-out append", "failed");
    htc_resp_free(&r);
    free(body);
}

/* Connects `n` clients; returns them with the greeting read. */
static sse_client *connect_clients(int port, int n, int ep)
{
    sse_client *cl = calloc((size_t)n, sizeof *cl);
    const char *req = "GET /events/stream HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer " TOKEN "\r\n\r\n";
    for (int i = 0; i < n; i++) {
        htc_conn c;
        if (!htc_open(&c, port))
            die("connect", strerror(errno));
        if (!htc_send(&c, req, strlen(req)))
            die("send", strerror(errno));
        cl[i].fd = c.fd;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cl[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &e);
    }
    /* wait for every greeting (the first frame) */
    double deadline = now_s() + 60;
    for (;;) {
        int greeted = 0;
        for (int i = 0; i < n; i++)
            greeted += cl[i].frames >= 1;
        if (greeted == n)
            break;
        if (now_s() > deadline)
            die("fan-out", "clients not all connected within 60 s");
        int64_t dummy = 0;
        struct fanout_run none = {0};
        pump(ep, cl, 0, 0, NULL, &none, 100, &dummy);
    }
    return cl;
}

/* Appends FANOUT_EVENTS and waits until every client has them all. */
static struct fanout_run fanout_once(htc_conn *pub, int ep, sse_client *cl,
                                     int n, int64_t first)
{
    struct fanout_run run = {0};
    run.lat = malloc(sizeof *run.lat * (size_t)n * FANOUT_EVENTS);
    double *sent = malloc(sizeof *sent * FANOUT_EVENTS);
    for (int i = 0; i < n; i++)
        cl[i].got = 0;
    int64_t done = 0;
    double t0 = now_s();
    for (int b = 0; b < FANOUT_EVENTS; b += 100) {
        double t = now_s();
        for (int i = 0; i < 100; i++)
            sent[b + i] = t;
        post_batch(pub, first + b, 100);
        pump(ep, cl, first, FANOUT_EVENTS, sent, &run, 0, &done);
    }
    double deadline = now_s() + 120;
    while (done < n) {
        if (now_s() > deadline)
            die("fan-out", "events not delivered to every client within 120 s");
        pump(ep, cl, first, FANOUT_EVENTS, sent, &run, 100, &done);
    }
    run.seconds = now_s() - t0;
    free(sent);
    qsort(run.lat, run.nlat, sizeof *run.lat, cmp_double);
    return run;
}

static void bench_fanout(int clients)
{
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe", strerror(errno));
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        die("fork", strerror(errno));
    if (child == 0) {
        close(fds[0]);
        fanout_server(fds[1], clients);
    }
    close(fds[1]);
    int port = 0;
    if (read(fds[0], &port, sizeof port) != sizeof port)
        die("fan-out server", "did not start");
    close(fds[0]);
    usleep(200000);
    long rss0 = rss_kib(child, "VmRSS:");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    htc_conn pub;
    if (!htc_open(&pub, port))
        die("connect", strerror(errno));
    printf("\n== Server-Sent Events fan-out: %d events (batches of 100) ==\n",
           FANOUT_EVENTS);
    int sizes[2] = {1, clients};
    double rate[2] = {0}, per_client[2] = {0}, p50[2] = {0}, p99[2] = {0},
           pmax[2] = {0};
    long mem_per_client = 0, rss_idle = 0;
    int64_t first = 1;
    for (int k = 0; k < 2; k++) {
        int n = sizes[k];
        long before = rss_kib(child, "VmRSS:");
        sse_client *cl = connect_clients(port, n, ep);
        usleep(300000);
        long rss1 = rss_kib(child, "VmRSS:");
        if (k == 1) {
            rss0 = before;
            rss_idle = rss1;
            mem_per_client = (rss1 - before) * 1024 / n;
        }
        double rates[FANOUT_RUNS], a50[FANOUT_RUNS], a99[FANOUT_RUNS],
            amax[FANOUT_RUNS];
        for (int r = 0; r < FANOUT_RUNS; r++) {
            struct fanout_run run = fanout_once(&pub, ep, cl, n, first);
            first += FANOUT_EVENTS;
            rates[r] = (double)FANOUT_EVENTS * n / run.seconds;
            a50[r] = pct(run.lat, run.nlat, .5);
            a99[r] = pct(run.lat, run.nlat, .99);
            amax[r] = pct(run.lat, run.nlat, 1);
            printf("%5d client%s run %d: %9.0f events/s delivered (%.3f s), latency "
                   "p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
                   n, n == 1 ? " " : "s", r + 1, rates[r], run.seconds,
                   a50[r] * 1e3, a99[r] * 1e3, amax[r] * 1e3);
            free(run.lat);
        }
        rate[k] = median(rates, FANOUT_RUNS);
        per_client[k] = rate[k] / n;
        p50[k] = median(a50, FANOUT_RUNS);
        p99[k] = median(a99, FANOUT_RUNS);
        pmax[k] = median(amax, FANOUT_RUNS);
        for (int i = 0; i < n; i++) {
            epoll_ctl(ep, EPOLL_CTL_DEL, cl[i].fd, NULL);
            close(cl[i].fd);
        }
        free(cl);
        usleep(300000);
    }
    long hwm = rss_kib(child, "VmHWM:");
    htc_close(&pub);
    close(ep);
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    printf("server memory: %ld KiB resident before the clients, %ld KiB with %d "
           "idle clients (peak %ld KiB)\n",
           rss0, rss_idle, clients, hwm);
    printf("medians: 1 client %.0f events/s (p50 %.1f ms, p99 %.1f ms); %d "
           "clients %.0f events/s delivered, %.0f per client (p50 %.1f ms, p99 "
           "%.1f ms, max %.1f ms)\n",
           rate[0], p50[0] * 1e3, p99[0] * 1e3, clients, rate[1], per_client[1],
           p50[1] * 1e3, p99[1] * 1e3, pmax[1] * 1e3);
    printf("fan-out/1-client delivery ratio: %.1f (aggregate), %.2f (per "
           "client)\n",
           rate[1] / rate[0], per_client[1] / rate[0]);
    printf("sse fan-out to %d clients: %.0f events/s delivered, %.1f KiB per "
           "client\n",
           clients, rate[1], (double)mem_per_client / 1024);
}

/* ---- 3. tokens -------------------------------------------------------------------- */

static void bench_tokens(void)
{
    static const char *const held[] = {"read-token-0123456789abcdefg",
                                       "write-token-0123456789abcdef",
                                       "admin-token-0123456789abcdef"};
    eddyi_token t[3];
    for (int i = 0; i < 3; i++) {
        t[i].role = (eddyi_role)(i + 1);
        t[i].len = strlen(held[i]);
        t[i].token = (unsigned char *)strdup(held[i]);
    }
    char longg[201];
    memset(longg, 'a', 200);
    longg[200] = '\0';
    struct {
        const char *name, *text;
    } cases[] = {
        {"the admin token", "admin-token-0123456789abcdef"},
        {"first byte wrong", "Xdmin-token-0123456789abcdef"},
        {"last byte wrong", "admin-token-0123456789abcdeX"},
        {"4-byte guess", "abcd"},
        {"200-byte guess", longg},
    };
    enum { NCASES = 5, TRUNS = 31, LOOKUPS = 100000 };
    double med[NCASES], runs[NCASES][TRUNS];
    volatile unsigned sink = 0;
    printf("\n== bearer-token lookup: 3 tokens of 28 characters, ns per lookup "
           "(median of %d runs of %d, the cases interleaved) ==\n", TRUNS, LOOKUPS);
    /* case after case within each run, so that the machine's noise falls
     * on every case alike */
    for (int r = 0; r < TRUNS; r++)
        for (int c = 0; c < NCASES; c++) {
            size_t len = strlen(cases[c].text);
            double t0 = now_s();
            for (int i = 0; i < LOOKUPS; i++)
                sink += (unsigned)eddyi_tokens_role(t, 3, cases[c].text, len);
            runs[c][r] = (now_s() - t0) * 1e9 / LOOKUPS;
        }
    for (int c = 0; c < NCASES; c++) {
        size_t len = strlen(cases[c].text);
        med[c] = median(runs[c], TRUNS);
        printf("  %-18s %6.1f ns  (role %s)\n", cases[c].name, med[c],
               eddyi_role_name(eddyi_tokens_role(t, 3, cases[c].text, len)));
    }
    double lo = med[0], hi = med[0];
    for (int c = 1; c < NCASES; c++) {
        lo = med[c] < lo ? med[c] : lo;
        hi = med[c] > hi ? med[c] : hi;
    }
    printf("token lookup time, slowest/fastest case: %.2f\n", hi / lo);
    for (int i = 0; i < 3; i++)
        free(t[i].token);
    (void)sink;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR");
    snprintf(bench_dir, sizeof bench_dir, "%s", dir && *dir ? dir : "/tmp");
    int conns = argc > 2 ? atoi(argv[2]) : 8;
    int clients = argc > 3 ? atoi(argv[3]) : 1000;
    if (conns < 1 || clients < 1)
        die("usage", "http [DIR] [CONNECTIONS] [CLIENTS]");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char model[512] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            snprintf(model, sizeof model, "%.500s", p ? p + 2 : line);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    printf("machine: nproc %ld, CPU \"%s\", eddy %s, libmicrohttpd %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, eddy_version(),
           MHD_get_version());
    printf("stores in %s\n", bench_dir);
    bench_fanout(clients); /* first: it forks, before this process has threads */
    bench_appends(conns);
    bench_tokens();
    return 0;
}
