/*
 * tests/test_http.c - eddy_http_server (src/http/) on a real store, over
 * real sockets on loopback:
 *   authorisation: 401/403 per role on both listeners, loopback reads, no
 *     tokens (read-only, loopback only), tokens-file errors, and no token
 *     ever in a log line or a reply;
 *   limits: 413 (Content-Length, chunked, the 64 KiB floor), slow-loris
 *     headers and bodies and idle connections closed in bounded time, 429
 *     when the writer is saturated;
 *   appends: idempotent re-post (200 with the original positions), the
 *     same id with other content, schema failures naming the path (server
 *     registry and store check hook);
 *   reads: streams, the log with filters and paging, one event, 404/405/400;
 *   Server-Sent Events: live, resume with Last-Event-ID, type filter, limit,
 *     heartbeats, a slow client dropped with its reason;
 *   /metrics parsed as Prometheus text 0.0.4 with the families the issue
 *     names; /healthz; /readyz with a stalled subscription;
 *   the dashboard's JSON API and its actions (dead letters, rebuild);
 *   start errors, and stopping with a stream open and an append in flight.
 */
#include "http_fixture.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "projection_fixture.h"

static hfx F;

/* ---- the log: captured, to prove tokens never reach it ------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 20];
static size_t log_len;

static void capture_log(eddy_log_level level, const char *component,
                        const char *message, void *user)
{
    (void)level;
    (void)user;
    pthread_mutex_lock(&log_mu);
    int n = snprintf(log_text + log_len, sizeof log_text - log_len, "%s: %s\n",
                     component, message);
    if (n > 0 && log_len + (size_t)n < sizeof log_text)
        log_len += (size_t)n;
    pthread_mutex_unlock(&log_mu);
}

static void assert_log_has_no_token(void)
{
    pthread_mutex_lock(&log_mu);
    /* the fixture's tokens file has mode 644: the server says so */
    if (!strstr(log_text, "can be read by other users (mode 644): chmod 600"))
        fail_msg("no warning about the tokens file's mode in the log");
    const char *secrets[] = {TOK_READ, TOK_WRITE, TOK_ADMIN,
                             "wrong-token-0123456789", "read-token-0123"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (strstr(log_text, secrets[i]))
            fail_msg("a token reached the log: %s", secrets[i]);
    pthread_mutex_unlock(&log_mu);
}

static int setup(void **state)
{
    (void)state;
    hfx_store(&F, NULL);
    hfx_serve(&F, NULL, false);
    return 0;
}

static int setup_store_only(void **state)
{
    (void)state;
    hfx_store(&F, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hfx_stop(&F);
    return 0;
}

#define CE(id)                                                                 \
    "ce-specversion: 1.0\r\nce-id: " id "\r\nce-source: /test\r\n"             \
    "ce-type: test.happened\r\n"

static htc_resp post_event(const char *stream, const char *id, const char *type,
                           const char *data)
{
    char path[256], h[1024];
    snprintf(path, sizeof path, "/streams/%s", stream);
    snprintf(h, sizeof h,
             AUTH_WRITE "ce-specversion: 1.0\r\nce-id: %s\r\nce-source: /test\r\n"
                        "ce-type: %s\r\nce-time: 2024-05-01T12:00:00Z\r\n"
                        "Content-Type: application/json\r\n",
             id, type);
    return hfx_req(F.port, "POST", path, h, data);
}

static void post_ok(const char *stream, const char *id, const char *type,
                    const char *data)
{
    htc_resp r = post_event(stream, id, type, data);
    if (r.status != 201)
        fail_msg("POST %s %s: %d %s", stream, id, r.status, r.body);
    htc_resp_free(&r);
}

/* ---- authorisation ---------------------------------------------------------------- */

static void test_auth_events_api(void **state)
{
    (void)state;
    htc_resp r = hfx_req(F.port, "GET", "/events", NULL, NULL);
    HFX_STATUS(r, 401);
    char v[128];
    assert_true(htc_header(&r, "WWW-Authenticate", v, sizeof v));
    HFX_HAS(r.body, "no Authorization header");
    htc_resp_free(&r);

    r = hfx_req(F.port, "GET", "/events",
                "Authorization: Bearer wrong-token-0123456789\r\n", NULL);
    HFX_STATUS(r, 401);
    HFX_HAS(r.body, "unknown bearer token");
    assert_null(strstr(r.body, "wrong-token")); /* never echoed */
    htc_resp_free(&r);

    r = hfx_req(F.port, "GET", "/events", "Authorization: Basic dXNlcjpwYXNz\r\n",
                NULL);
    HFX_STATUS(r, 401);
    htc_resp_free(&r);

    /* a prefix of a token, or a token with one more byte, is unknown */
    r = hfx_req(F.port, "GET", "/events", "Authorization: Bearer read-token-0123\r\n",
                NULL);
    HFX_STATUS(r, 401);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events",
                "Authorization: Bearer " TOK_READ "x\r\n", NULL);
    HFX_STATUS(r, 401);
    htc_resp_free(&r);

    /* read: reads, not writes */
    r = hfx_req(F.port, "GET", "/events", AUTH_READ, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    r = hfx_req(F.port, "POST", "/streams/s", AUTH_READ CE("r1"), NULL);
    HFX_STATUS(r, 403);
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "role"), "read");
    assert_string_equal(hfx_str(j, "needs"), "write");
    json_decref(j);
    htc_resp_free(&r);
    /* write and admin: both */
    r = hfx_req(F.port, "POST", "/streams/s", AUTH_WRITE CE("w1"), NULL);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = hfx_req(F.port, "POST", "/streams/s", AUTH_ADMIN CE("a1"), NULL);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events/w1", AUTH_WRITE, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    /* the admin routes are not on the events API */
    r = hfx_req(F.port, "GET", "/metrics", AUTH_ADMIN, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);
    assert_log_has_no_token();
}

static void test_auth_admin_listener(void **state)
{
    (void)state;
    /* bound to loopback: reads need no token */
    const char *reads[] = {"/", "/metrics", "/healthz", "/readyz",
                           "/api/overview", "/api/deadletters"};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        htc_resp r = hfx_req(F.admin_port, "GET", reads[i], NULL, NULL);
        if (r.status != 200)
            fail_msg("GET %s: %d %s", reads[i], r.status, r.body);
        htc_resp_free(&r);
    }
    /* actions need the admin token */
    htc_resp r = hfx_req(F.admin_port, "POST", "/api/deadletters/purge", NULL, NULL);
    HFX_STATUS(r, 401);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "POST", "/api/deadletters/purge", AUTH_READ, NULL);
    HFX_STATUS(r, 403);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "POST", "/api/deadletters/purge", AUTH_WRITE, NULL);
    HFX_STATUS(r, 403);
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "needs"), "admin");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "POST", "/api/deadletters/purge", AUTH_ADMIN, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "DELETE", "/api/deadletters/1", AUTH_READ, NULL);
    HFX_STATUS(r, 403);
    htc_resp_free(&r);
    /* the session tells the dashboard what the token it holds may do */
    r = hfx_req(F.admin_port, "GET", "/api/session", AUTH_ADMIN, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "role"), "admin");
    assert_true(json_is_true(json_object_get(j, "tokens")));
    json_decref(j);
    htc_resp_free(&r);
    assert_log_has_no_token();
}

/* Beyond loopback, the admin listener's reads need a read token. */
static void test_auth_admin_not_loopback(void **state)
{
    (void)state;
    eddy_http_options ho = {.admin = "0.0.0.0:0"};
    hfx_serve(&F, &ho, false);
    htc_resp r = hfx_req(F.admin_port, "GET", "/api/overview", NULL, NULL);
    HFX_STATUS(r, 401);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/metrics", AUTH_READ, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
}

static void test_no_tokens(void **state)
{
    (void)state;
    /* nothing beyond loopback without tokens */
    eddy_error err = {0};
    eddy_http_options bad = {.store = F.store, .listen = "0.0.0.0:0"};
    assert_null(eddy_http_server_start(&bad, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    HFX_HAS(err.message, "0.0.0.0:0 is not a loopback address");
    bad = (eddy_http_options){.store = F.store, .listen = "127.0.0.1:0",
                              .admin = "[::]:0"};
    assert_null(eddy_http_server_start(&bad, &err));
    HFX_HAS(err.message, "loopback");

    hfx_serve(&F, NULL, true);
    htc_resp r = hfx_req(F.port, "POST", "/streams/s", CE("n1"), NULL);
    HFX_STATUS(r, 403);
    HFX_HAS(r.body, "--tokens");
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events", NULL, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "POST", "/api/deadletters/purge", AUTH_ADMIN, NULL);
    HFX_STATUS(r, 403);
    htc_resp_free(&r);
}

static void expect_tokens_error(const char *content, int code,
                                const char *text, const char *secret)
{
    char path[256];
    snprintf(path, sizeof path, "%s/bad-tokens", F.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    eddy_http_options o = {.store = F.store, .listen = "127.0.0.1:0",
                           .tokens_file = path};
    eddy_error err = {0};
    assert_null(eddy_http_server_start(&o, &err));
    if (err.code != code || !strstr(err.message, text))
        fail_msg("tokens file \"%s\": got %s \"%s\", want %s with \"%s\"",
                 content, eddy_errname(err.code), err.message,
                 eddy_errname(code), text);
    if (secret && strstr(err.message, secret))
        fail_msg("the message shows the token: %s", err.message);
}

static void test_tokens_file_errors(void **state)
{
    (void)state;
    expect_tokens_error("read good-token-0123456789\nwriter zzsecret-0123456789\n",
                        EDDY_EINVAL, "line 2: unknown role \"writer\"",
                        "zzsecret");
    expect_tokens_error("admin short\n", EDDY_EINVAL,
                        "line 1: the token has 5 characters", "short");
    expect_tokens_error("read same-token-0123456789\nadmin same-token-0123456789\n",
                        EDDY_EINVAL, "line 2: this token is already listed",
                        "same-token");
    expect_tokens_error("read\n", EDDY_EINVAL, "line 1: role read without a token",
                        NULL);
    expect_tokens_error("read a-token-0123456789abc extra\n", EDDY_EINVAL,
                        "line 1: more than", "a-token");
    expect_tokens_error("# nothing\n\n", EDDY_EINVAL, "holds no token", NULL);
    eddy_http_options o = {.store = F.store, .listen = "127.0.0.1:0",
                           .tokens_file = "/nonexistent/tokens"};
    eddy_error err = {0};
    assert_null(eddy_http_server_start(&o, &err));
    assert_int_equal(err.code, EDDY_EIO);
    HFX_HAS(err.message, "/nonexistent/tokens");
    assert_log_has_no_token();
}

/* ---- limits -------------------------------------------------------------------- */

/* A structured event whose data is a string of `n` bytes. */
static char *big_event(const char *id, size_t n)
{
    char *s = malloc(n + 256);
    int k = snprintf(s, 256,
                     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/t\","
                     "\"type\":\"big\",\"data\":\"",
                     id);
    memset(s + k, 'x', n);
    snprintf(s + k + n, 8, "\"}");
    return s;
}

static void test_body_limits(void **state)
{
    (void)state;
    /* default 1 MiB: refused from Content-Length alone, before the body */
    htc_conn c;
    assert_true(htc_open(&c, F.port));
    const char *h = "POST /streams/s HTTP/1.1\r\nHost: x\r\n" AUTH_WRITE
                    "Content-Type: application/cloudevents+json\r\n"
                    "Content-Length: 2097152\r\n\r\n";
    assert_true(htc_send(&c, h, strlen(h)));
    htc_resp r;
    assert_true(htc_read(&c, &r, 5000));
    HFX_STATUS(r, 413);
    json_t *j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 1 << 20);
    HFX_HAS(hfx_str(j, "message"), "--max-body");
    json_decref(j);
    htc_resp_free(&r);
    htc_close(&c);

    /* a smaller --max-body is raised to the 64 KiB floor */
    eddy_http_server_free(F.srv);
    eddy_http_options ho = {.max_body = 1000};
    hfx_serve(&F, &ho, false);
    char *ok = big_event("ok", 60000), *big = big_event("big", 70000);
    r = hfx_req(F.port, "POST", "/streams/s",
                AUTH_WRITE "Content-Type: application/cloudevents+json\r\n", ok);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = hfx_req(F.port, "POST", "/streams/s",
                AUTH_WRITE "Content-Type: application/cloudevents+json\r\n", big);
    HFX_STATUS(r, 413);
    j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 65536);
    json_decref(j);
    htc_resp_free(&r);

    /* chunked: no Content-Length, counted as it arrives */
    assert_true(htc_open(&c, F.port));
    const char *hc = "POST /streams/s HTTP/1.1\r\nHost: x\r\n" AUTH_WRITE
                     "Content-Type: application/cloudevents+json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n";
    assert_true(htc_send(&c, hc, strlen(hc)));
    char chunk[64];
    size_t blen = strlen(big), sent = 0;
    bool got = false;
    while (sent < blen) {
        size_t n = blen - sent < 8192 ? blen - sent : 8192;
        int k = snprintf(chunk, sizeof chunk, "%zx\r\n", n);
        if (!htc_send(&c, chunk, (size_t)k) || !htc_send(&c, big + sent, n) ||
            !htc_send(&c, "\r\n", 2))
            break; /* the server answered and closed */
        sent += n;
    }
    htc_send(&c, "0\r\n\r\n", 5);
    got = htc_read(&c, &r, 5000);
    assert_true(got);
    HFX_STATUS(r, 413);
    htc_resp_free(&r);
    htc_close(&c);
    free(ok);
    free(big);
}

/* Seconds until the server ends the connection while `drip` bytes go out
 * one every `every_ms`; -1 if it never does within `max_s`. */
static double time_to_close(htc_conn *c, const char *drip, int every_ms,
                            double max_s)
{
    long long t0 = htc_now_ms();
    for (size_t i = 0;; i++) {
        double el = (double)(htc_now_ms() - t0) / 1000.0;
        if (el > max_s)
            return -1;
        char b = drip[i % strlen(drip)];
        if (send(c->fd, &b, 1, MSG_NOSIGNAL) != 1)
            return el;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, every_ms) > 0) {
            char buf[4096];
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n <= 0)
                return (double)(htc_now_ms() - t0) / 1000.0;
            /* a 408/400 answer: the server closes right after */
        }
    }
}

static void test_slow_clients(void **state)
{
    (void)state;
    eddy_http_options ho = {.request_timeout_ms = 1000};
    hfx_serve(&F, &ho, false);

    /* headers, one byte every 100 ms, never finished: idle timeouts never
     * fire, the deadline does */
    htc_conn c;
    assert_true(htc_open(&c, F.port));
    const char *start = "GET /events HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    assert_true(htc_send(&c, start, strlen(start)));
    double t = time_to_close(&c, "abcdefgh", 100, 10);
    htc_close(&c);
    if (t < 0 || t > 3.0)
        fail_msg("a slow-loris header client held its connection %.2f s "
                 "(deadline 1 s)", t);

    /* a body, one byte every 100 ms */
    assert_true(htc_open(&c, F.port));
    const char *post = "POST /streams/s HTTP/1.1\r\nHost: x\r\n" AUTH_WRITE
                       "Content-Type: application/cloudevents+json\r\n"
                       "Content-Length: 100000\r\n\r\n";
    assert_true(htc_send(&c, post, strlen(post)));
    t = time_to_close(&c, "{", 100, 10);
    htc_close(&c);
    if (t < 0 || t > 3.0)
        fail_msg("a slow body held its connection %.2f s (deadline 1 s)", t);

    /* an idle kept-alive connection is closed too, after its response */
    assert_true(htc_open(&c, F.port));
    const char *get = "GET /events HTTP/1.1\r\nHost: x\r\n" AUTH_READ "\r\n";
    assert_true(htc_send(&c, get, strlen(get)));
    htc_resp r;
    assert_true(htc_read(&c, &r, 5000));
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    long long t0 = htc_now_ms();
    ssize_t n = htc_fill(&c, 10000);
    assert_true(n <= 0);
    assert_true(htc_now_ms() - t0 < 3000);
    htc_close(&c);

    /* and a normal client is not bothered */
    post_ok("s", "fine", "test.happened", "{}");
    r = hfx_req(F.admin_port, "GET", "/metrics", NULL, NULL);
    HFX_STATUS(r, 200);
    static const char key[] = "\neddy_http_request_timeouts_total ";
    char *line = strstr(r.body, key);
    assert_non_null(line);
    assert_true(atoi(line + strlen(key)) >= 2);
    htc_resp_free(&r);
}

/* An INLINE projection whose apply waits for the test: it runs on the
 * store's writer thread, so while it waits every append waits. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open = true, gate_entered;

static int gate_apply(eddy_txn *txn, const eddy_event *ev, void *user,
                      eddy_error *err)
{
    (void)txn;
    (void)user;
    (void)err;
    if (strcmp(eddy_event_type(ev), "gated") != 0)
        return EDDY_OK;
    pthread_mutex_lock(&gate_mu);
    gate_entered = true;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    return EDDY_OK;
}

static int gate_reset(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)txn;
    (void)user;
    (void)err;
    return EDDY_OK;
}

static const eddy_projection_def gate_def = {
    .name = "gate", .apply = gate_apply, .reset = gate_reset,
    .mode = EDDY_PROJECTION_INLINE};

static void gate_close(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = false;
    gate_entered = false;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_wait_entered(void)
{
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

struct bg_post {
    pthread_t th;
    const char *id;
    htc_resp r;
    bool ok;
};

static void *bg_post_main(void *arg)
{
    struct bg_post *b = arg;
    char h[512];
    snprintf(h, sizeof h,
             AUTH_WRITE "ce-specversion: 1.0\r\nce-id: %s\r\nce-source: /t\r\n"
                        "ce-type: gated\r\n",
             b->id);
    b->ok = htc_request(F.port, "POST", "/streams/gated", h, NULL, 0, &b->r);
    return NULL;
}

static void test_saturated_writer(void **state)
{
    (void)state;
    eddy_error err = {0};
    eddy_projection *p = eddy_projection_start(F.store, &gate_def, &err);
    assert_non_null(p);
    eddy_http_options ho = {.max_pending_appends = 1};
    hfx_serve(&F, &ho, false);
    gate_close();
    struct bg_post b = {.id = "g1"};
    assert_int_equal(pthread_create(&b.th, NULL, bg_post_main, &b), 0);
    gate_wait_entered(); /* the writer is held inside g1's append */
    htc_resp r = hfx_req(F.port, "POST", "/streams/other", AUTH_WRITE CE("o1"), NULL);
    HFX_STATUS(r, 429);
    char v[32];
    assert_true(htc_header(&r, "Retry-After", v, sizeof v));
    assert_string_equal(v, "1");
    json_t *j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 1);
    json_decref(j);
    htc_resp_free(&r);
    gate_release();
    pthread_join(b.th, NULL);
    assert_true(b.ok);
    HFX_STATUS(b.r, 201);
    htc_resp_free(&b.r);
    post_ok("other", "o1", "test.happened", NULL); /* room again */
    r = hfx_req(F.admin_port, "GET", "/metrics", NULL, NULL);
    HFX_HAS(r.body, "\neddy_http_appends_rejected_total 1\n");
    htc_resp_free(&r);
    eddy_http_server_free(F.srv);
    F.srv = NULL;
    eddy_projection_free(p);
}

/* ---- appends ------------------------------------------------------------------- */

static void test_idempotent_repost(void **state)
{
    (void)state;
    post_ok("pre", "p0", "test.happened", "{}"); /* position 1 */
    htc_resp r = post_event("acct", "x1", "money.in", "{\"n\":1}");
    HFX_STATUS(r, 201);
    json_t *a = hfx_json(&r);
    htc_resp_free(&r);
    assert_false(json_is_true(json_object_get(a, "duplicate")));
    r = post_event("acct", "x1", "money.in", "{\"n\":1}");
    HFX_STATUS(r, 200);
    json_t *b = hfx_json(&r);
    htc_resp_free(&r);
    assert_true(json_is_true(json_object_get(b, "duplicate")));
    assert_true(json_equal(json_object_get(a, "events"),
                           json_object_get(b, "events")));
    assert_int_equal(json_integer_value(json_object_get(b, "first_position")), 2);
    json_decref(a);
    json_decref(b);
    /* the same id with other content is refused, naming the id */
    r = post_event("acct", "x1", "money.in", "{\"n\":2}");
    HFX_STATUS(r, 409);
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "error"), "duplicate");
    HFX_HAS(hfx_str(j, "message"), "x1");
    json_decref(j);
    htc_resp_free(&r);

    /* a batch re-posted: the original positions; a batch mixing old and
     * new events: the old keep theirs, the new get new ones */
    static const char *ct = AUTH_WRITE "Content-Type: application/cloudevents-batch+json\r\n";
    const char *b1 = "[{\"specversion\":\"1.0\",\"id\":\"y1\",\"source\":\"/s\",\"type\":\"a\"},"
                     "{\"specversion\":\"1.0\",\"id\":\"y2\",\"source\":\"/s\",\"type\":\"a\"}]";
    r = hfx_req(F.port, "POST", "/streams/acct", ct, b1);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = hfx_req(F.port, "POST", "/streams/acct", ct, b1);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "first_position")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "last_position")), 4);
    json_decref(j);
    htc_resp_free(&r);
    const char *b2 = "[{\"specversion\":\"1.0\",\"id\":\"y1\",\"source\":\"/s\",\"type\":\"a\"},"
                     "{\"specversion\":\"1.0\",\"id\":\"y3\",\"source\":\"/s\",\"type\":\"a\"}]";
    r = hfx_req(F.port, "POST", "/streams/acct", ct, b2);
    HFX_STATUS(r, 201);
    j = hfx_json(&r);
    json_t *evs = json_object_get(j, "events");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0),
                                                        "position")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 1),
                                                        "position")), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 1),
                                                        "version")), 4);
    json_decref(j);
    htc_resp_free(&r);
}

static const char *const USER_V1 =
    "{\"type\": \"object\", \"required\": [\"user_id\", \"email\"],"
    " \"properties\": {\"user_id\": {\"type\": \"string\"},"
    " \"email\": {\"type\": \"string\", \"format\": \"email\"}}}";

#define USER_HEADERS(id)                                                       \
    AUTH_WRITE "ce-specversion: 1.0\r\nce-id: " id "\r\nce-source: /users\r\n" \
               "ce-type: user.registered\r\nce-dataversion: 1.0\r\n"           \
               "Content-Type: application/json\r\n"

static void test_schema_failures(void **state)
{
    (void)state;
    eddy_schema_registry *reg = eddy_schema_registry_new();
    eddy_error err = {0};
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "1.0",
                                                   USER_V1, strlen(USER_V1), &err),
                     EDDY_OK);
    /* validated by the server: the failing schema path and keyword */
    eddy_http_options ho = {.schemas = reg};
    hfx_serve(&F, &ho, false);
    htc_resp r = hfx_req(F.port, "POST", "/streams/u-1", USER_HEADERS("u1"),
                         "{\"user_id\":\"u-1\",\"email\":\"x@\"}");
    HFX_STATUS(r, 400);
    json_t *j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "error"), "schema");
    assert_string_equal(hfx_str(j, "path"), "/email");
    assert_string_equal(hfx_str(j, "keyword"), "format");
    assert_string_equal(hfx_str(j, "id"), "u1");
    HFX_HAS(hfx_str(j, "message"), "/email: format email expected");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "POST", "/streams/u-1", USER_HEADERS("u2"),
                "{\"user_id\":\"u-1\"}");
    HFX_STATUS(r, 400);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "path"), "(root)");
    assert_string_equal(hfx_str(j, "keyword"), "required");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "POST", "/streams/u-1", USER_HEADERS("u3"),
                "{\"user_id\":\"u-1\",\"email\":\"ada@example.org\"}");
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    eddy_http_server_free(F.srv);
    F.srv = NULL;

    /* validated by the store's check hook instead: still a 400 with the
     * path */
    eddy_store_close(F.store);
    char url[128];
    snprintf(url, sizeof url, "sqlite:%s/store.db", F.dir);
    eddy_store_options so = {.sync = EDDY_SYNC_OFF,
                             .check = eddy_schema_registry_check_hook,
                             .check_user = reg};
    F.store = eddy_store_open(url, &so, &err);
    assert_non_null(F.store);
    hfx_serve(&F, NULL, false);
    r = hfx_req(F.port, "POST", "/streams/u-2", USER_HEADERS("u4"),
                "{\"user_id\":\"u-2\",\"email\":\"nope\"}");
    HFX_STATUS(r, 400);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "error"), "schema");
    assert_string_equal(hfx_str(j, "path"), "/email");
    json_decref(j);
    htc_resp_free(&r);
    hfx_stop(&F);
    eddy_schema_registry_free(reg);
    hfx_store(&F, NULL); /* for teardown */
}

/* ---- reads ------------------------------------------------------------------------ */

static void test_reads(void **state)
{
    (void)state;
    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        post_ok(i % 2 ? "odd" : "even", id, i % 2 ? "n.odd" : "n.even", "{}");
    }
    htc_resp r = hfx_req(F.port, "GET", "/streams/odd?from=2&limit=1", AUTH_READ, NULL);
    HFX_STATUS(r, 200);
    json_t *j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 3);
    json_t *e = json_array_get(json_object_get(j, "events"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "version")), 2);
    assert_int_equal(json_integer_value(json_object_get(e, "position")), 3);
    assert_string_equal(hfx_str(e, "stream"), "odd");
    assert_string_equal(hfx_str(json_object_get(e, "event"), "id"), "r3");
    assert_int_equal(json_integer_value(json_object_get(j, "next")), 3);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/streams/odd?direction=backward&limit=2", AUTH_READ,
                NULL);
    j = hfx_json(&r);
    e = json_array_get(json_object_get(j, "events"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "version")), 3);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/streams/nope", AUTH_READ, NULL);
    HFX_STATUS(r, 404);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "stream"), "nope");
    json_decref(j);
    htc_resp_free(&r);

    r = hfx_req(F.port, "GET", "/events?type=n.even&from=3", AUTH_READ, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "head")), 5);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events?limit=2&from=1", AUTH_READ, NULL);
    j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "next")), 3);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events?since=2000-01-01T00:00:00Z&type=n.odd,n.even",
                AUTH_READ, NULL);
    j = hfx_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 5);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events?order=newest&limit=1", AUTH_READ, NULL);
    j = hfx_json(&r);
    e = json_array_get(json_object_get(j, "events"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "position")), 5);
    json_decref(j);
    htc_resp_free(&r);

    /* bad parameters name the parameter */
    const char *bad[] = {"/events?limit=0", "/events?from=x", "/events?since=soon",
                         "/events?order=random", "/streams/odd?direction=up"};
    const char *param[] = {"limit", "from", "since", "order", "direction"};
    for (size_t i = 0; i < 5; i++) {
        r = hfx_req(F.port, "GET", bad[i], AUTH_READ, NULL);
        HFX_STATUS(r, 400);
        j = hfx_json(&r);
        assert_string_equal(hfx_str(j, "parameter"), param[i]);
        json_decref(j);
        htc_resp_free(&r);
    }

    r = hfx_req(F.port, "GET", "/events/r4", AUTH_READ, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "stream"), "even");
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/events/none", AUTH_READ, NULL);
    HFX_STATUS(r, 404);
    HFX_HAS(r.body, "no event with id none");
    htc_resp_free(&r);

    r = hfx_req(F.port, "DELETE", "/events", AUTH_ADMIN, NULL);
    HFX_STATUS(r, 405);
    char v[64];
    assert_true(htc_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "GET, HEAD");
    htc_resp_free(&r);
    r = hfx_req(F.port, "GET", "/nowhere", AUTH_READ, NULL);
    HFX_STATUS(r, 404);
    HFX_HAS(r.body, "/nowhere");
    htc_resp_free(&r);
}

/* ---- Server-Sent Events -------------------------------------------------------------- */

/* Opens a stream (HTTP/1.0: the body is the raw event stream) with extra
 * header lines; waits for the greeting. */
static void sse_open(htc_conn *c, int port, const char *path,
                     const char *headers)
{
    assert_true(htc_open(c, port));
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n%s\r\n",
                     path, headers ? headers : "");
    assert_true(htc_send(c, req, (size_t)n));
    if (!htc_read_until(c, ": eddy events from position", 5000))
        fail_msg("no stream greeting: %s", c->buf ? c->buf : "(nothing)");
}

/* Counts "id: " lines in what was read. */
static int sse_count(const htc_conn *c)
{
    int n = 0;
    for (const char *p = c->buf; p && (p = strstr(p, "\nid: ")); p++)
        n++;
    return n;
}

static void test_sse_live_and_resume(void **state)
{
    (void)state;
    htc_conn c;
    sse_open(&c, F.port, "/events/stream", AUTH_READ);
    post_ok("s", "e1", "a.x", "{\"n\":1}");
    post_ok("s", "e2", "b.x", "{\"n\":2}");
    post_ok("s", "e3", "a.x", "{\"n\":3}");
    assert_true(htc_read_until(&c, "\nid: 3\n", 5000));
    HFX_HAS(c.buf, "\"id\":\"e1\"");
    HFX_HAS(c.buf, "\"position\":2");
    htc_close(&c);

    /* the client reconnects with the last id it saw */
    post_ok("s", "e4", "b.x", "{\"n\":4}");
    post_ok("s", "e5", "a.x", "{\"n\":5}");
    sse_open(&c, F.port, "/events/stream", AUTH_READ "Last-Event-ID: 3\r\n");
    assert_true(htc_read_until(&c, "\nid: 5\n", 5000));
    assert_null(strstr(c.buf, "\nid: 3\n"));
    assert_int_equal(sse_count(&c), 2);
    /* then live again */
    post_ok("s", "e6", "a.x", "{\"n\":6}");
    assert_true(htc_read_until(&c, "\nid: 6\n", 5000));
    htc_close(&c);

    /* from, a type pattern and a limit */
    sse_open(&c, F.port, "/events/stream?from=1&type=b.*&limit=2", AUTH_READ);
    assert_true(htc_read_until(&c, "event: eddy.end", 5000));
    assert_int_equal(sse_count(&c), 2);
    HFX_HAS(c.buf, "\nid: 2\n");
    HFX_HAS(c.buf, "\nid: 4\n");
    htc_close(&c);

    /* bad Last-Event-ID */
    htc_resp r = hfx_req(F.port, "GET", "/events/stream",
                         AUTH_READ "Last-Event-ID: abc\r\n", NULL);
    HFX_STATUS(r, 400);
    htc_resp_free(&r);
    /* the dashboard's live tail is the same stream on the admin listener */
    sse_open(&c, F.admin_port, "/api/events/stream?from=6", NULL);
    assert_true(htc_read_until(&c, "\nid: 6\n", 5000));
    htc_close(&c);
}

static void test_sse_heartbeat(void **state)
{
    (void)state;
    eddy_http_options ho = {.sse_heartbeat_ms = 200};
    hfx_serve(&F, &ho, false);
    htc_conn c;
    sse_open(&c, F.port, "/events/stream", AUTH_READ);
    assert_true(htc_read_until(&c, ": keepalive\n\n", 3000));
    htc_close(&c);
}

static void test_sse_slow_client_dropped(void **state)
{
    (void)state;
    eddy_http_options ho = {.sse_buffer_events = 16};
    hfx_serve(&F, &ho, false);
    /* a client that reads nothing, with a small receive window */
    htc_conn c;
    memset(&c, 0, sizeof c);
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)F.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *req = "GET /events/stream HTTP/1.0\r\nHost: x\r\n" AUTH_READ "\r\n";
    assert_true(htc_send(&c, req, strlen(req)));
    assert_true(htc_read_until(&c, ": eddy events", 5000));
    /* 3000 events of 4 KiB: far more than the socket buffers and the 16
     * events the server keeps */
    size_t per = 50, cap = per * 4300 + 16;
    char *batch = malloc(cap);
    for (int b = 0; b < 60; b++) {
        size_t o = 0;
        batch[o++] = '[';
        for (size_t i = 0; i < per; i++) {
            o += (size_t)snprintf(batch + o, cap - o,
                                  "%s{\"specversion\":\"1.0\",\"id\":\"big-%d-%zu\","
                                  "\"source\":\"/t\",\"type\":\"big\",\"data\":\"",
                                  i ? "," : "", b, i);
            memset(batch + o, 'x', 4096);
            o += 4096;
            o += (size_t)snprintf(batch + o, cap - o, "\"}");
        }
        batch[o++] = ']';
        batch[o] = '\0';
        htc_resp r = hfx_req(F.port, "POST", "/streams/big",
                             AUTH_WRITE "Content-Type: application/cloudevents-batch+json\r\n",
                             batch);
        HFX_STATUS(r, 201);
        htc_resp_free(&r);
    }
    free(batch);
    /* now it reads: the stream ends with the reason */
    long long t0 = htc_now_ms();
    bool ended = false;
    while (htc_now_ms() - t0 < 20000) {
        ssize_t n = htc_fill(&c, 2000);
        if (n == -2) /* nothing for 2 s: a loaded machine; wait on */
            continue;
        if (n <= 0) {
            ended = n == 0;
            break;
        }
        if (c.len > (1 << 20)) { /* keep the tail only */
            htc_consume(&c, c.len - 65536);
        }
    }
    assert_true(ended);
    HFX_HAS(c.buf, "event: eddy.dropped");
    HFX_HAS(c.buf, "client too slow");
    HFX_HAS(c.buf, "Last-Event-ID");
    htc_close(&c);
    htc_resp r = hfx_req(F.admin_port, "GET", "/metrics", NULL, NULL);
    HFX_HAS(r.body, "\neddy_http_sse_dropped_total 1\n");
    htc_resp_free(&r);
}

/* ---- metrics ------------------------------------------------------------------------ */

/* Checks `text` against the Prometheus text format 0.0.4 and returns its
 * samples as {"name{labels}": value}. */
static json_t *parse_prometheus(const char *text)
{
    json_t *samples = json_object(), *types = json_object(),
           *helps = json_object(), *done = json_object();
    char family[256] = "";
    size_t lineno = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            fail_msg("line %zu does not end with a newline", lineno + 1);
        lineno++;
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
        p = nl + 1;
        if (line[0] == '\0')
            continue;
        if (line[0] == '#') {
            char kw[16], name[256], rest[2048] = "";
            if (sscanf(line, "# %15s %255s %2047[^\n]", kw, name, rest) < 2)
                continue; /* a plain comment */
            if (strcmp(kw, "TYPE") == 0) {
                if (json_object_get(types, name))
                    fail_msg("line %zu: second TYPE for %s", lineno, name);
                if (json_object_get(done, name))
                    fail_msg("line %zu: TYPE after samples of %s", lineno, name);
                const char *ok[] = {"counter", "gauge", "histogram", "summary",
                                    "untyped"};
                bool known = false;
                for (size_t i = 0; i < 5; i++)
                    known |= strcmp(rest, ok[i]) == 0;
                if (!known)
                    fail_msg("line %zu: unknown type %s", lineno, rest);
                json_object_set_new(types, name, json_string(rest));
                snprintf(family, sizeof family, "%s", name);
            } else if (strcmp(kw, "HELP") == 0) {
                if (json_object_get(helps, name))
                    fail_msg("line %zu: second HELP for %s", lineno, name);
                json_object_set_new(helps, name, json_true());
            }
            continue;
        }
        /* name{labels} value */
        size_t i = 0;
        if (!((line[0] >= 'a' && line[0] <= 'z') || (line[0] >= 'A' && line[0] <= 'Z') ||
              line[0] == '_' || line[0] == ':'))
            fail_msg("line %zu: bad metric name: %s", lineno, line);
        while (line[i] && line[i] != '{' && line[i] != ' ')
            i++;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)i, line);
        if (line[i] == '{') {
            i++;
            while (line[i] != '}') {
                size_t ls = i;
                while (line[i] && line[i] != '=')
                    i++;
                if (line[i] != '=' || line[i + 1] != '"' || i == ls)
                    fail_msg("line %zu: bad label: %s", lineno, line);
                i += 2;
                while (line[i] && line[i] != '"') {
                    if (line[i] == '\\') {
                        if (line[i + 1] != '\\' && line[i + 1] != '"' &&
                            line[i + 1] != 'n')
                            fail_msg("line %zu: bad escape: %s", lineno, line);
                        i++;
                    }
                    i++;
                }
                if (line[i] != '"')
                    fail_msg("line %zu: unterminated label: %s", lineno, line);
                i++;
                if (line[i] == ',')
                    i++;
                else if (line[i] != '}')
                    fail_msg("line %zu: bad label list: %s", lineno, line);
            }
            i++;
        }
        if (line[i] != ' ')
            fail_msg("line %zu: no space before the value: %s", lineno, line);
        char *end = NULL;
        double v = strtod(line + i + 1, &end);
        if (end == line + i + 1 || (*end && *end != ' '))
            fail_msg("line %zu: bad value: %s", lineno, line);
        /* the sample belongs to the current family */
        size_t fl = strlen(family);
        const char *type = json_string_value(json_object_get(types, family));
        bool belongs = strcmp(name, family) == 0;
        if (type && strcmp(type, "histogram") == 0 && strncmp(name, family, fl) == 0)
            belongs |= !strcmp(name + fl, "_bucket") || !strcmp(name + fl, "_sum") ||
                       !strcmp(name + fl, "_count");
        if (!belongs)
            fail_msg("line %zu: sample %s outside its family (current %s)", lineno,
                     name, family);
        json_object_set_new(done, family, json_true());
        char key[4096];
        snprintf(key, sizeof key, "%.*s", (int)i, line);
        json_object_set_new(samples, key, json_real(v));
    }
    json_decref(types);
    json_decref(helps);
    json_decref(done);
    return samples;
}

static double sample(const json_t *samples, const char *key)
{
    json_t *v = json_object_get(samples, key);
    if (!v)
        fail_msg("no sample %s", key);
    return json_real_value(v);
}

static int count_handler(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    (void)ev;
    atomic_fetch_add((atomic_int *)user, 1);
    return EDDY_OK;
}

static int fail_handler(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ev;
    (void)user;
    return eddy_ctx_fail(ctx, EDDY_EIO, "always fails");
}

static void test_metrics_prometheus(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    eddy_http_options ho = {.metrics = m};
    hfx_serve(&F, &ho, false);
    atomic_int counted = 0;
    eddy_error err = {0};
    eddy_durable_options d1 = {.name = "counter",
                               .handler = count_handler, .user = &counted,
                               .metrics = m};
    eddy_durable_options d2 = {.name = "failer",
                               .patterns = (const char *const[]){"bad.*"},
                               .pattern_count = 1,
                               .handler = fail_handler, .metrics = m,
                               .retry = {.max_attempts = 1}};
    eddy_durable *s1 = eddy_durable_start(F.store, &d1, &err);
    eddy_durable *s2 = eddy_durable_start(F.store, &d2, &err);
    assert_non_null(s1);
    assert_non_null(s2);
    post_ok("m", "m1", "good.one", "{}");
    post_ok("m", "m2", "good.one", "{}");
    post_ok("m", "m3", "bad.one", "{}");
    assert_int_equal(eddy_durable_wait_idle(s1, 3, 10000), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(s2, 3, 10000), EDDY_OK);

    htc_resp r = hfx_req(F.admin_port, "GET", "/metrics", NULL, NULL);
    HFX_STATUS(r, 200);
    char v[128];
    assert_true(htc_header(&r, "Content-Type", v, sizeof v));
    HFX_HAS(v, "text/plain; version=0.0.4");
    json_t *s = parse_prometheus(r.body);
    /* per-handler and per-type counters */
    assert_true(sample(s, "eddy_handler_events_handled_total{handler=\"counter\","
                          "type=\"good.one\"}") == 2);
    assert_true(sample(s, "eddy_handler_events_failed_total{handler=\"failer\","
                          "type=\"bad.one\"}") == 1);
    assert_true(sample(s, "eddy_handler_events_dead_lettered_total{handler=\"failer\","
                          "type=\"bad.one\"}") == 1);
    assert_true(sample(s, "eddy_handler_events_in_flight{handler=\"counter\","
                          "type=\"good.one\"}") == 0);
    /* latency histograms: +Inf equals _count */
    double inf = sample(s, "eddy_handler_duration_seconds_bucket{handler=\"counter\","
                           "type=\"good.one\",le=\"+Inf\"}");
    assert_true(inf == sample(s, "eddy_handler_duration_seconds_count{handler="
                                 "\"counter\",type=\"good.one\"}"));
    /* appends over HTTP, per event type */
    assert_true(sample(s, "eddy_handler_events_handled_total{handler=\"http\","
                          "type=\"good.one\"}") == 2);
    /* subscription lag, store gauges, dead letters */
    assert_true(sample(s, "eddy_subscription_lag_events{subscription=\"counter\"}") == 0);
    assert_true(sample(s, "eddy_store_head_position") == 3);
    assert_true(sample(s, "eddy_store_size_bytes") > 0);
    assert_true(sample(s, "eddy_dead_letters{handler=\"failer\"}") == 1);
    /* the server's own */
    assert_true(sample(s, "eddy_http_responses_total{listener=\"events\","
                          "code=\"201\"}") == 3);
    assert_true(sample(s, "eddy_http_sse_clients") == 0);
    json_decref(s);
    htc_resp_free(&r);

    /* redrive and purge from the dashboard API; the gauge follows */
    r = hfx_req(F.admin_port, "GET", "/api/deadletters?handler=failer&type=bad.*",
                NULL, NULL);
    HFX_STATUS(r, 200);
    json_t *j = hfx_json(&r);
    json_t *dl = json_array_get(json_object_get(j, "dead_letters"), 0);
    assert_non_null(dl);
    int64_t id = json_integer_value(json_object_get(dl, "id"));
    assert_string_equal(hfx_str(dl, "event_id"), "m3");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/deadletters?type=good.one", NULL, NULL);
    j = hfx_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "dead_letters")), 0);
    json_decref(j);
    htc_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/api/deadletters/%lld", (long long)id);
    r = hfx_req(F.admin_port, "GET", path, NULL, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(json_object_get(j, "event"), "id"), "m3");
    HFX_HAS(hfx_str(j, "error"), "always fails");
    json_decref(j);
    htc_resp_free(&r);
    snprintf(path, sizeof path, "/api/deadletters/%lld/redrive", (long long)id);
    r = hfx_req(F.admin_port, "POST", path, AUTH_ADMIN, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "POST", "/api/deadletters/purge?handler=failer",
                AUTH_ADMIN, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/metrics", NULL, NULL);
    s = parse_prometheus(r.body);
    assert_true(sample(s, "eddy_dead_letters{handler=\"failer\"}") == 0);
    json_decref(s);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/deadletters/999", NULL, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);

    eddy_http_server_free(F.srv);
    F.srv = NULL;
    eddy_durable_free(s1);
    eddy_durable_free(s2);
    eddy_metrics_free(m);
}

/* ---- health --------------------------------------------------------------------------- */

static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static bool hold;

static int holding_handler(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    (void)ev;
    (void)user;
    pthread_mutex_lock(&hold_mu);
    while (hold)
        pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
    return EDDY_OK;
}

static bool ready_is(int want, int within_ms, json_t **body)
{
    long long t0 = htc_now_ms();
    for (;;) {
        htc_resp r = hfx_req(F.admin_port, "GET", "/readyz", NULL, NULL);
        int st = r.status;
        if (st == want || htc_now_ms() - t0 > within_ms) {
            if (body)
                *body = hfx_json(&r);
            htc_resp_free(&r);
            return st == want;
        }
        htc_resp_free(&r);
        usleep(100000);
    }
}

static void test_health_and_readiness(void **state)
{
    (void)state;
    eddy_metrics *m = eddy_metrics_new();
    eddy_http_options ho = {.metrics = m, .stall_after_ms = 500};
    hfx_serve(&F, &ho, false);
    htc_resp r = hfx_req(F.admin_port, "GET", "/healthz", NULL, NULL);
    HFX_STATUS(r, 200);
    HFX_HAS(r.body, "alive");
    htc_resp_free(&r);
    assert_true(ready_is(200, 3000, NULL));

    hold = true;
    eddy_error err = {0};
    eddy_durable_options d = {.name = "stuck", .handler = holding_handler,
                              .metrics = m, .workers = 1};
    eddy_durable *sub = eddy_durable_start(F.store, &d, &err);
    assert_non_null(sub);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "h%d", i);
        post_ok("k", id, "t.x", NULL);
    }
    json_t *body = NULL;
    assert_true(ready_is(503, 10000, &body));
    json_t *problems = json_object_get(body, "problems");
    assert_true(json_array_size(problems) >= 1);
    HFX_HAS(json_string_value(json_array_get(problems, 0)),
            "subscription stuck is stalled");
    json_decref(body);
    /* the overview says so too */
    r = hfx_req(F.admin_port, "GET", "/api/overview", NULL, NULL);
    json_t *j = hfx_json(&r);
    assert_false(json_is_true(json_object_get(j, "ready")));
    json_decref(j);
    htc_resp_free(&r);

    pthread_mutex_lock(&hold_mu);
    hold = false;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
    assert_int_equal(eddy_durable_wait_idle(sub, 5, 10000), EDDY_OK);
    assert_true(ready_is(200, 10000, NULL));
    eddy_http_server_free(F.srv);
    F.srv = NULL;
    eddy_durable_free(sub);
    eddy_metrics_free(m);
}

/* ---- the dashboard's API ----------------------------------------------------------------- */

static void test_dashboard_api(void **state)
{
    (void)state;
    /* a flow: a causes b */
    post_ok("flow", "f1", "flow.started", "{}");
    htc_resp r = hfx_req(F.port, "POST", "/streams/flow",
                         AUTH_WRITE "ce-specversion: 1.0\r\nce-id: f2\r\n"
                                    "ce-source: /svc\r\nce-type: flow.next\r\n"
                                    "ce-correlationid: f1\r\nce-causationid: f1\r\n",
                         NULL);
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/events/f1", NULL, NULL);
    HFX_STATUS(r, 200);
    json_t *j = hfx_json(&r);
    json_t *caused = json_object_get(j, "caused");
    assert_int_equal(json_array_size(caused), 1);
    assert_string_equal(hfx_str(json_array_get(caused, 0), "id"), "f2");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/trace/f2", NULL, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(j, "correlation"), "f1");
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), 2);
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/trace/unknown-thing", NULL, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);

    r = hfx_req(F.admin_port, "GET", "/api/streams?limit=10", NULL, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_string_equal(hfx_str(json_array_get(json_object_get(j, "streams"), 0),
                                "id"), "flow");
    json_decref(j);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/streams/flow", NULL, NULL);
    HFX_STATUS(r, 200);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/overview", NULL, NULL);
    HFX_STATUS(r, 200);
    j = hfx_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "store"),
                                                        "head")), 2);
    assert_true(json_is_array(json_object_get(j, "history")));
    json_decref(j);
    htc_resp_free(&r);
    const char *gets[] = {"/api/graph", "/api/sagas", "/api/sagas?state=failed",
                          "/api/subscriptions", "/api/session", "/api/events?limit=1"};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        r = hfx_req(F.admin_port, "GET", gets[i], NULL, NULL);
        if (r.status != 200)
            fail_msg("GET %s: %d %s", gets[i], r.status, r.body);
        json_decref(hfx_json(&r));
        htc_resp_free(&r);
    }
    r = hfx_req(F.admin_port, "GET", "/api/sagas/none", NULL, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "GET", "/api/nothing", NULL, NULL);
    HFX_STATUS(r, 404);
    htc_resp_free(&r);
    /* the dashboard's files */
    r = hfx_req(F.admin_port, "GET", "/", NULL, NULL);
    HFX_STATUS(r, 200);
    char v[256];
    assert_true(htc_header(&r, "Content-Security-Policy", v, sizeof v));
    assert_true(htc_header(&r, "ETag", v, sizeof v));
    htc_resp_free(&r);
    char inm[300];
    snprintf(inm, sizeof inm, "If-None-Match: %s\r\n", v);
    r = hfx_req(F.admin_port, "GET", "/index.html", inm, NULL);
    HFX_STATUS(r, 304);
    htc_resp_free(&r);
}

static eddy_projection_def rebuild_def = {
    .name = "http_orders_view", .pattern = "order.*", .setup = fx_setup,
    .apply = fx_apply, .reset = fx_reset, .batch = 16};

static void test_rebuild_from_dashboard(void **state)
{
    (void)state;
    eddy_error err = {0};
    for (int i = 0; i < 50; i++)
        assert_int_equal(fx_append_order(F.store, i, &err), EDDY_OK);
    htc_resp r = hfx_req(F.admin_port, "POST", "/api/projections/nope/rebuild",
                         AUTH_ADMIN, NULL);
    HFX_STATUS(r, 404);
    HFX_HAS(r.body, "no definition of projection nope");
    htc_resp_free(&r);
    assert_int_equal(eddy_projection_register_def(&rebuild_def, &err), EDDY_OK);
    r = hfx_req(F.admin_port, "POST", "/api/projections/http_orders_view/rebuild",
                AUTH_READ, NULL);
    HFX_STATUS(r, 403);
    htc_resp_free(&r);
    r = hfx_req(F.admin_port, "POST", "/api/projections/http_orders_view/rebuild",
                AUTH_ADMIN, NULL);
    HFX_STATUS(r, 202);
    htc_resp_free(&r);
    json_t *j = NULL;
    long long t0 = htc_now_ms();
    for (;;) {
        r = hfx_req(F.admin_port, "GET", "/api/projections/http_orders_view/rebuild",
                    NULL, NULL);
        HFX_STATUS(r, 200);
        j = hfx_json(&r);
        htc_resp_free(&r);
        if (!json_is_true(json_object_get(j, "running")))
            break;
        json_decref(j);
        assert_true(htc_now_ms() - t0 < 20000);
        usleep(50000);
    }
    if (json_object_get(j, "error"))
        fail_msg("rebuild failed: %s", json_dumps(j, 0));
    int64_t head = 0;
    assert_int_equal(eddy_store_head(F.store, &head, NULL), EDDY_OK);
    assert_int_equal(json_integer_value(json_object_get(j, "done")), head);
    json_decref(j);
    /* the read model is a fold of the store */
    char *fold = fx_dump_fold(F.store), *model = fx_dump_db(F.store);
    assert_string_equal(model, fold);
    free(fold);
    free(model);
    /* and the subscriptions view lists it */
    r = hfx_req(F.admin_port, "GET", "/api/subscriptions", NULL, NULL);
    HFX_HAS(r.body, "\"name\":\"http_orders_view\"");
    htc_resp_free(&r);
}

/* ---- start and stop ------------------------------------------------------------------- */

static void test_start_errors(void **state)
{
    (void)state;
    eddy_error err = {0};
    eddy_http_options o = {.listen = "127.0.0.1:0"};
    assert_null(eddy_http_server_start(&o, &err));
    HFX_HAS(err.message, "no store");
    o = (eddy_http_options){.store = F.store};
    assert_null(eddy_http_server_start(&o, &err));
    HFX_HAS(err.message, "neither");
    const char *bad[] = {"nonsense", "127.0.0.1:99999", "127.0.0.1:", ":80",
                         "[::1:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = (eddy_http_options){.store = F.store, .admin = bad[i]};
        assert_null(eddy_http_server_start(&o, &err));
        if (err.code != EDDY_EINVAL || !strstr(err.message, "admin"))
            fail_msg("%s: %s %s", bad[i], eddy_errname(err.code), err.message);
    }
    /* a port in use */
    hfx_serve(&F, NULL, false);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", F.port);
    o = (eddy_http_options){.store = F.store, .listen = addr,
                            .tokens_file = F.tokens};
    assert_null(eddy_http_server_start(&o, &err));
    assert_int_equal(err.code, EDDY_ECONNECT);
    HFX_HAS(err.message, addr);
    HFX_HAS(err.message, "in use");
    /* port 0 picks one; the URL says which */
    const char *url = eddy_http_server_url(F.srv, EDDY_HTTP_ADMIN);
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d", F.admin_port);
    assert_string_equal(url, want);
}

struct bg_stop {
    pthread_t th;
    eddy_http_server *srv;
};

static void *bg_stop_main(void *arg)
{
    struct bg_stop *b = arg;
    eddy_http_server_stop(b->srv);
    return NULL;
}

/* Stopping ends the streams, answers the append in flight, then returns. */
static void test_stop_with_clients(void **state)
{
    (void)state;
    eddy_error err = {0};
    eddy_projection *p = eddy_projection_start(F.store, &gate_def, &err);
    assert_non_null(p);
    hfx_serve(&F, NULL, false);
    htc_conn c;
    sse_open(&c, F.port, "/events/stream", AUTH_READ);
    gate_close();
    struct bg_post b = {.id = "s1"};
    assert_int_equal(pthread_create(&b.th, NULL, bg_post_main, &b), 0);
    gate_wait_entered();
    struct bg_stop s = {.srv = F.srv};
    assert_int_equal(pthread_create(&s.th, NULL, bg_stop_main, &s), 0);
    /* the stream ends at once, while the append still waits */
    assert_true(htc_read_until(&c, "event: eddy.closing", 5000));
    htc_close(&c);
    usleep(100000);
    gate_release();
    pthread_join(s.th, NULL);
    pthread_join(b.th, NULL);
    assert_true(b.ok);
    HFX_STATUS(b.r, 201);
    htc_resp_free(&b.r);
    eddy_http_server_free(F.srv);
    F.srv = NULL;
    eddy_projection_free(p);
}

int main(void)
{
    eddy_log_set(capture_log, EDDY_LOG_DEBUG, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_events_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_admin_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_admin_not_loopback,
                                        setup_store_only, teardown),
        cmocka_unit_test_setup_teardown(test_no_tokens, setup_store_only, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_file_errors, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_clients, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_saturated_writer, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_repost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_failures, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_live_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_heartbeat, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sse_slow_client_dropped,
                                        setup_store_only, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_prometheus, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_health_and_readiness,
                                        setup_store_only, teardown),
        cmocka_unit_test_setup_teardown(test_dashboard_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_from_dashboard, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup_store_only,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_clients, setup_store_only,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    return failed;
}
