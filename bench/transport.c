/*
 * bench/transport.c - publish and end-to-end throughput of the distributed
 * transports, each against its engine's own client doing the same work in
 * the same run.
 *
 *   transport [N [ENGINE]]
 *                    N: messages per publish run (default 20000; the
 *                    end-to-end runs use N / 2); ENGINE: only this one
 *                    (kafka, nats or redis)
 *
 * Engines (all on this machine, on loopback):
 *   kafka   librdkafka's mock cluster (3 brokers) hosted in this process
 *   nats    nats-server -js started with scripts/test-servers.sh
 *   redis   redis-server (appendonly, appendfsync always) started the same
 *           way; its runs use N / 10 messages (about one fsync each)
 * A server that cannot be started is reported and its engine skipped; the
 * program then exits non-zero.
 *
 * For each engine and payload (16, 256, 1024 bytes of event data):
 *   publish  N events through eddy_transport_publish_async, then
 *            eddy_transport_flush (every delivery acknowledged by the
 *            engine); events are built before the clock starts
 *   raw      the same messages (same bytes: for Kafka and NATS the same
 *            CloudEvents headers, built before the clock starts, and the
 *            same data, serialized with json_dumps in the timed loop as any
 *            producer of JSON data must; for Redis the same CloudEvents
 *            JSON, given to redis-benchmark once) sent by the engine's own
 *            client with the same settings: librdkafka producev + flush with
 *            eddy's producer configuration (idempotent, acks=all, same queue
 *            bound) against the same mock cluster; libnats
 *            js_PublishMsgAsync + js_PublishAsyncComplete with the same
 *            pending bound; redis-benchmark running XADD with the same key,
 *            MAXLEN and fields, one connection, no pipelining (eddy's Redis
 *            publish is one XADD answered at a time)
 *   e2e      N / 2 events published asynchronously and handled by one
 *            subscriber (a group of one): from the first publish until the
 *            handler saw the last event
 * Each publish and raw figure is the median of RUNS alternating runs; e2e is
 * the median of RUNS runs on one subscription. The last lines are one per
 * engine: `transport/raw <engine> ratio: R`, R = eddy publish / raw, the
 * geometric mean over the three payload sizes.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nats/nats.h>

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "transport/ce_binary.h"

#define RUNS 3
#define NSIZES 3
static const int sizes[NSIZES] = {16, 256, 1024};

static int n_publish = 20000;
static char servers_script[1024];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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

/* ---- events -------------------------------------------------------------- */

/* `n` events of `type` whose data is {"p":"xxx..."} of `size` bytes, keyed
 * over 16 subjects. */
static eddy_event **make_events(const char *type, int size, int n)
{
    eddy_event **evs = calloc((size_t)n, sizeof *evs);
    char *pad = malloc((size_t)size + 1);
    if (!evs || !pad)
        abort();
    int plen = size > 8 ? size - 8 : 1; /* {"p":""} is 8 bytes */
    memset(pad, 'x', (size_t)plen);
    pad[plen] = '\0';
    for (int i = 0; i < n; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "agg-%d", i % 16);
        eddy_error err = {0};
        evs[i] = eddy_event_newf(type, "bench", subject, &err, "{s:s}", "p",
                                 pad);
        if (!evs[i]) {
            fprintf(stderr, "event: %s\n", err.message);
            exit(1);
        }
    }
    free(pad);
    return evs;
}

static void free_events(eddy_event **evs, int n)
{
    for (int i = 0; i < n; i++)
        eddy_event_unref(evs[i]);
    free(evs);
}

/* ---- eddy: publish and end to end ------------------------------------------ */

static void done_cb(int rc, const eddy_event *ev, const eddy_error *err,
                    void *user)
{
    if (rc != EDDY_OK)
        atomic_fetch_add((atomic_int *)user, 1);
}

/* Publishes every event asynchronously (retrying while the engine's queue
 * is full) and flushes. Messages per second, or -1 on an error. */
static double eddy_publish_run(eddy_transport *t, eddy_event **evs, int n)
{
    atomic_int failed = 0;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        eddy_error err = {0};
        int rc;
        while ((rc = eddy_transport_publish_async(t, evs[i], done_cb, &failed,
                                                  &err)) == EDDY_EFULL)
            sleep_ms(1);
        if (rc != EDDY_OK) {
            fprintf(stderr, "publish_async: %s\n", err.message);
            return -1;
        }
    }
    eddy_error err = {0};
    if (eddy_transport_flush(t, 60000, &err) != EDDY_OK) {
        fprintf(stderr, "flush: %s\n", err.message);
        return -1;
    }
    double dt = now_s() - t0;
    if (atomic_load(&failed)) {
        fprintf(stderr, "%d publishes failed\n", atomic_load(&failed));
        return -1;
    }
    return n / dt;
}

static int count_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    return 0;
}

/* ---- raw clients ------------------------------------------------------------- */

typedef struct raw_msg {
    eddyi_ce_binary b;    /* Kafka / NATS: headers (the payload is
                             serialized in the timed loop) */
    const char *key;
    const json_t *data;   /* the event's data, borrowed */
} raw_msg;

static raw_msg *raw_encode(eddy_event **evs, int n, const char *prefix,
                           const char *types_header, bool percent)
{
    raw_msg *m = calloc((size_t)n, sizeof *m);
    for (int i = 0; i < n; i++) {
        if (eddyi_ce_binary_encode(evs[i], prefix, types_header, percent,
                                   &m[i].b, NULL) != EDDY_OK)
            abort();
        m[i].key = eddy_event_subject(evs[i]);
        m[i].data = eddy_event_data(evs[i]);
    }
    return m;
}

static void raw_free(raw_msg *m, int n)
{
    for (int i = 0; i < n; i++)
        eddyi_ce_binary_clear(&m[i].b);
    free(m);
}

/* Kafka: librdkafka with eddy's producer settings. */
static atomic_int kafka_raw_failed;

static void kafka_raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *o)
{
    if (m->err)
        atomic_fetch_add(&kafka_raw_failed, 1);
}

static double kafka_raw_run(const char *bootstraps, const char *topic,
                            raw_msg *m, int n)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "message.timeout.ms", "5000", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "queue.buffering.max.messages", "10000", errstr,
                      sizeof errstr);
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_raw_dr);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p)
        return -1;
    /* Connected and the topic known before the clock starts, as for eddy. */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(p, 1, NULL, &md, 5000) == 0)
        rd_kafka_metadata_destroy(md);
    atomic_store(&kafka_raw_failed, 0);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(m[i].b.count);
        for (size_t k = 0; k < m[i].b.count; k++)
            rd_kafka_header_add(h, m[i].b.names[k], -1, m[i].b.values[k], -1);
        char *value = json_dumps(m[i].data, JSON_COMPACT | JSON_ENCODE_ANY);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(
                    p, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_KEY(m[i].key, strlen(m[i].key)),
                    RD_KAFKA_V_VALUE(value, strlen(value)),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                    RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 1);
        if (e) {
            free(value);
            rd_kafka_headers_destroy(h);
            rd_kafka_destroy(p);
            return -1;
        }
        rd_kafka_poll(p, 0);
    }
    rd_kafka_flush(p, 60000);
    double dt = now_s() - t0;
    rd_kafka_destroy(p);
    return atomic_load(&kafka_raw_failed) ? -1 : n / dt;
}

/* NATS: libnats JetStream asynchronous publish, with a per-message
 * acknowledgement handler as eddy's per-message callback needs. */
static atomic_int nats_raw_failed;

static void nats_raw_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa,
                         jsPubAckErr *pae, void *closure)
{
    if (!pa)
        atomic_fetch_add(&nats_raw_failed, 1);
    natsMsg_Destroy(msg);
}

static double nats_raw_run(const char *url, const char *topic, raw_msg *m,
                           int n)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    double rate = -1;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
        return -1;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 10000; /* eddy's buffer_max default */
    jo.PublishAsync.AckHandler = nats_raw_ack;
    atomic_store(&nats_raw_failed, 0);
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
        goto out;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        natsMsg *msg = NULL;
        char *value = json_dumps(m[i].data, JSON_COMPACT | JSON_ENCODE_ANY);
        natsMsg_Create(&msg, topic, NULL, value, (int)strlen(value));
        free(value);
        for (size_t k = 0; k < m[i].b.count; k++)
            natsMsgHeader_Set(msg, m[i].b.names[k], m[i].b.values[k]);
        natsStatus s;
        while ((s = js_PublishMsgAsync(js, &msg, &po)) == NATS_TIMEOUT)
            ;
        natsMsg_Destroy(msg);
        if (s != NATS_OK)
            goto out;
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (js_PublishAsyncComplete(js, &po) != NATS_OK)
        goto out;
    if (!atomic_load(&nats_raw_failed))
        rate = n / (now_s() - t0);
out:
    if (js)
        jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rate;
}

/* Redis: redis-benchmark, XADD with the same key, cap and fields as eddy's
 * Redis transport, one connection, no pipelining. Requests per second, or
 * -1. */
static double redis_raw_run(const char *port, const char *key,
                            const char *event_json, const char *subject, int n)
{
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execlp("redis-benchmark", "redis-benchmark", "-h", "127.0.0.1", "-p",
               port, "-c", "1", "-P", "1", "-n", count, "-q", "XADD", key,
               "MAXLEN", "~", "1000000", "*", "event", event_json, "key",
               subject, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char out[8192];
    size_t len = 0;
    ssize_t r;
    /* Keep the tail: -q rewrites its progress line many times a second. */
    while ((r = read(fd[0], out + len, sizeof out - 1 - len)) > 0) {
        len += (size_t)r;
        if (len > sizeof out - 512) {
            memmove(out, out + len - 2048, 2048);
            len = 2048;
        }
    }
    out[len] = '\0';
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    /* "...: 12345.67 requests per second, p50=..." (the last figure; -q
     * rewrites the line with \r while running) */
    char *rps = NULL;
    for (char *p = strstr(out, " requests per second"); p;
         p = strstr(p + 1, " requests per second"))
        rps = p;
    if (!rps)
        return -1;
    char *start = rps;
    while (start > out && start[-1] != ' ')
        start--;
    return atof(start);
}

/* ---- servers ------------------------------------------------------------------ */

static int server(const char *action, const char *engine, const char *dir,
                  char *port, size_t size)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s' %s %s '%s'", servers_script, action,
             engine, dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[64] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    int rc = pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    if (port)
        snprintf(port, size, "%s", line);
    return rc == 0 ? 0 : -1;
}

/* ---- one engine ------------------------------------------------------------------ */

typedef struct figures {
    double pub[NSIZES], raw[NSIZES], e2e[NSIZES];
} figures;

typedef enum raw_kind { RAW_KAFKA, RAW_NATS, RAW_REDIS } raw_kind;

static int bench_engine_n(const char *engine, const char *url, raw_kind kind,
                          const char *raw_target, figures *f)
{
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, NULL, &err);
    if (!t) {
        fprintf(stderr, "%s: %s\n", engine, err.message);
        return -1;
    }
    for (int s = 0; s < NSIZES; s++) {
        char type[64], topic[128], e2e_type[64];
        char id[EDDY_UUID_STRLEN];
        eddy_uuid7(id);
        snprintf(type, sizeof type, "bench.pub%d.%s", sizes[s], id + 24);
        snprintf(e2e_type, sizeof e2e_type, "bench.e2e%d.%s", sizes[s], id + 24);
        eddy_transport_topic(t, type, topic, sizeof topic);
        eddy_event **evs = make_events(type, sizes[s], n_publish);
        raw_msg *raw = NULL;
        char *json = NULL;
        if (kind == RAW_KAFKA)
            raw = raw_encode(evs, n_publish, "ce_", "eddy_types", false);
        else if (kind == RAW_NATS)
            raw = raw_encode(evs, n_publish, "ce-", "eddy-types", true);
        else
            json = eddy_event_encode(evs[0], NULL);
        /* Warm-up: the topic exists and the connections are up. */
        eddy_transport_publish(t, evs[0], NULL);
        double pub[RUNS], rw[RUNS], e2e[RUNS];
        for (int r = 0; r < RUNS; r++) {
            pub[r] = eddy_publish_run(t, evs, n_publish);
            switch (kind) {
            case RAW_KAFKA:
                rw[r] = kafka_raw_run(raw_target, topic, raw, n_publish);
                break;
            case RAW_NATS:
                rw[r] = nats_raw_run(raw_target, topic, raw, n_publish);
                break;
            case RAW_REDIS:
                rw[r] = redis_raw_run(raw_target, topic, json,
                                      eddy_event_subject(evs[0]), n_publish);
                break;
            }
            if (pub[r] < 0 || rw[r] < 0) {
                fprintf(stderr, "%s: run failed (payload %d)\n", engine,
                        sizes[s]);
                eddy_transport_close(t);
                return -1;
            }
        }
        f->pub[s] = median(pub, RUNS);
        f->raw[s] = median(rw, RUNS);
        free_events(evs, n_publish);
        if (raw)
            raw_free(raw, n_publish);
        free(json);

        /* End to end on one subscription (a group of one). */
        int n_e2e = n_publish / 2;
        atomic_int handled = 0;
        const char *types[] = {e2e_type};
        eddy_transport_subscription_options so = {.types = types, .type_count = 1,
                                         .group = "bench", .handler =
                                             count_handler,
                                         .user = &handled, .batch = 256};
        eddy_transport_subscription *sub = NULL;
        if (eddy_transport_subscribe(t, &so, &sub, &err) != EDDY_OK) {
            fprintf(stderr, "%s: subscribe: %s\n", engine, err.message);
            eddy_transport_close(t);
            return -1;
        }
        eddy_event **e2e_evs = make_events(e2e_type, sizes[s], n_e2e);
        for (int r = 0; r < RUNS; r++) {
            int before = atomic_load(&handled);
            double t0 = now_s();
            if (eddy_publish_run(t, e2e_evs, n_e2e) < 0) {
                e2e[r] = -1;
                continue;
            }
            while (atomic_load(&handled) - before < n_e2e && now_s() - t0 < 120)
                sleep_ms(1);
            double dt = now_s() - t0;
            e2e[r] = atomic_load(&handled) - before >= n_e2e ? n_e2e / dt : -1;
        }
        eddy_transport_subscription_free(sub);
        free_events(e2e_evs, n_e2e);
        f->e2e[s] = median(e2e, RUNS);
        printf("%-6s %5d B  publish %9.0f/s  raw %9.0f/s  publish/raw %.2f  "
               "e2e %9.0f/s\n", engine, sizes[s], f->pub[s], f->raw[s],
               f->pub[s] / f->raw[s], f->e2e[s]);
        fflush(stdout);
    }
    eddy_transport_close(t);
    return 0;
}

static int bench_engine(const char *engine, const char *url, raw_kind kind,
                        const char *raw_target, figures *f)
{
    /* Redis appends with appendfsync always: about one fsync per message,
     * so a tenth of the messages keeps a run near a second. */
    int saved_n = n_publish;
    if (kind == RAW_REDIS)
        n_publish = n_publish / 10 > 100 ? n_publish / 10 : 100;
    int rc = bench_engine_n(engine, url, kind, raw_target, f);
    n_publish = saved_n;
    return rc;
}

static double ratio(const figures *f)
{
    double logsum = 0;
    for (int s = 0; s < NSIZES; s++)
        logsum += log(f->pub[s] / f->raw[s]);
    return exp(logsum / NSIZES);
}

int main(int argc, char **argv)
{
    const char *only = argc > 2 ? argv[2] : NULL;
    if (argc > 1)
        n_publish = atoi(argv[1]);
    if (n_publish < 100) {
        fprintf(stderr, "usage: %s [messages per run >= 100]\n", argv[0]);
        return 2;
    }
    const char *env = getenv("EDDY_TEST_SERVERS");
    if (env) {
        snprintf(servers_script, sizeof servers_script, "%s", env);
    } else {
        /* bench/transport.c -> scripts/test-servers.sh */
        snprintf(servers_script, sizeof servers_script, "%s", __FILE__);
        char *slash = strrchr(servers_script, '/');
        if (slash)
            *slash = '\0';
        size_t used = strlen(servers_script);
        snprintf(servers_script + used, sizeof servers_script - used,
                 "/../scripts/test-servers.sh");
    }
    printf("transport benchmark: %d messages per publish run, %d per e2e run, "
           "median of %d\n", n_publish, n_publish / 2, RUNS);
    int failures = 0;
    bool run_k = !only || strcmp(only, "kafka") == 0;
    bool run_n = !only || strcmp(only, "nats") == 0;
    bool run_r = !only || strcmp(only, "redis") == 0;
    figures fk, fn, fr;
    memset(&fk, 0, sizeof fk);
    memset(&fn, 0, sizeof fn);
    memset(&fr, 0, sizeof fr);
    bool have_k = false, have_n = false, have_r = false;

    /* Kafka: the mock cluster lives in this process. */
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    rd_kafka_t *owner = run_k ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                             sizeof errstr)
                              : NULL;
    if (!owner)
        rd_kafka_conf_destroy(conf);
    rd_kafka_mock_cluster_t *mock = owner ? rd_kafka_mock_cluster_new(owner, 3)
                                          : NULL;
    if (mock) {
        char url[512];
        const char *bs = rd_kafka_mock_cluster_bootstraps(mock);
        snprintf(url, sizeof url, "kafka://%s", bs);
        have_k = bench_engine("kafka", url, RAW_KAFKA, bs, &fk) == 0;
        rd_kafka_mock_cluster_destroy(mock);
    }
    if (owner)
        rd_kafka_destroy(owner);
    failures += run_k && !have_k;

    char dir[] = "/tmp/eddy-bench-transport-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char port[16], sub[600];
    snprintf(sub, sizeof sub, "%s/nats", dir);
    if (!run_n) {
    } else if (server("start", "nats", sub, port, sizeof port) == 0) {
        char url[64];
        snprintf(url, sizeof url, "nats://127.0.0.1:%s", port);
        have_n = bench_engine("nats", url, RAW_NATS, url, &fn) == 0;
        server("stop", "nats", sub, NULL, 0);
    } else {
        fprintf(stderr, "nats: cannot start nats-server\n");
    }
    failures += run_n && !have_n;
    snprintf(sub, sizeof sub, "%s/redis", dir);
    if (!run_r) {
    } else if (server("start", "redis", sub, port, sizeof port) == 0) {
        char url[64];
        snprintf(url, sizeof url, "redis://127.0.0.1:%s", port);
        have_r = bench_engine("redis", url, RAW_REDIS, port, &fr) == 0;
        server("stop", "redis", sub, NULL, 0);
    } else {
        fprintf(stderr, "redis: cannot start redis-server\n");
    }
    failures += run_r && !have_r;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    nats_Close();

    if (have_k)
        printf("transport/raw kafka ratio: %.2f\n", ratio(&fk));
    if (have_n)
        printf("transport/raw nats ratio: %.2f\n", ratio(&fn));
    if (have_r)
        printf("transport/raw redis ratio: %.2f\n", ratio(&fr));
    return failures ? 1 : 0;
}
