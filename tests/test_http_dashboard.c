/*
 * tests/test_http_dashboard.c - the dashboard in a real browser: headless
 * Chromium (Debian's `chromium`, installed by scripts/install-deps.sh)
 * against `eddy serve` on a store the order demo filled (`eddy demo
 * --store`), plus one dead letter made through the library.
 *
 * Each view is loaded with --dump-dom after its scripts ran
 * (--virtual-time-budget) and must be marked ready (data-state="ready")
 * and show that store's data: ids, types, names and numbers read from the
 * JSON API or known from the demo. A screenshot of each view is written to
 * the build folder (tests/dashboard/NAME.png). One test appends an event over
 * the events API while the live tail is open and sees it arrive in the
 * page.
 *
 * Everything runs on loopback, in a temporary folder; nothing but the
 * eddy binary (EDDY_CLI_PATH) and chromium is needed.
 */
#include "http_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

static char dir[] = "/tmp/eddy-dashboard-XXXXXX";
static char store_url[128], tokens[128];
static pid_t serve_pid = -1;
static int events_port, admin_port;
static char shots[1024];

/* ---- processes ---------------------------------------------------------------- */

/* Waits up to `timeout_s` for `pid`; kills it when it overstays. Returns
 * its exit status, or -1 when it was killed or died of a signal. */
static int wait_for(pid_t pid, int timeout_s)
{
    long long deadline = htc_now_ms() + (long long)timeout_s * 1000;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (htc_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(20000);
    }
}

/* Runs argv with stdout to `out` (NULL: /dev/null), stderr to /dev/null
 * unless `keep_stderr`; returns the child's pid or fails the test. */
static pid_t spawn(char *const argv[], const char *out, bool keep_stderr)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out ? out : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!keep_stderr)
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail_msg("cannot run %s: %s (scripts/install-deps.sh installs it)",
                 argv[0], strerror(rc));
    return pid;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = '\0';
    fclose(f);
    return b;
}

/* Copies a DOM dump next to the screenshots, for a failure message (which
 * cmocka cuts short); returns where. */
static const char *dom_keep(const char *dom)
{
    static char kept[1600];
    const char *base = strrchr(dom, '/');
    snprintf(kept, sizeof kept, "%.1000s/%.500s", shots, base ? base + 1 : dom);
    char *text = slurp(dom);
    FILE *f = fopen(kept, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    free(text);
    return kept;
}

/* Starts headless Chromium on the admin listener's `fragment`, writing the
 * DOM to `dom` and a screenshot to `png` (may be NULL). Returns its pid. */
static pid_t chromium_start(const char *fragment, const char *dom,
                            const char *png, int budget_ms)
{
    static int n;
    char profile[256], url[512], budget[64], shot[1200], udd[300];
    snprintf(profile, sizeof profile, "%s/chromium-%d", dir, n++);
    if (mkdir(profile, 0700) != 0)
        fail_msg("mkdir %s: %s", profile, strerror(errno));
    snprintf(udd, sizeof udd, "--user-data-dir=%s", profile);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/#%s", admin_port, fragment);
    snprintf(budget, sizeof budget, "--virtual-time-budget=%d", budget_ms);
    snprintf(shot, sizeof shot, "--screenshot=%s", png ? png : "");
    char *argv[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-quic", "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", udd,
                    budget, "--window-size=1280,900", "--hide-scrollbars",
                    "--dump-dom", png ? shot : url, png ? url : NULL, NULL};
    return spawn(argv, dom, false);
}

/* Loads a view and returns its DOM after the scripts ran; checks that it
 * is the view `name`, ready, and holds every string of `want`. */
static char *load_view(const char *fragment, const char *name,
                       const char *const *want, size_t nwant)
{
    char dom[512], png[1300];
    snprintf(dom, sizeof dom, "%s/%s.html", dir, name);
    snprintf(png, sizeof png, "%s/%s.png", shots, name);
    pid_t pid = chromium_start(fragment, dom, png, 6000);
    int st = wait_for(pid, 90);
    if (st != 0)
        fail_msg("chromium on %s exited with %d", fragment, st);
    char *html = slurp(dom);
    char marker[128];
    snprintf(marker, sizeof marker, "data-view=\"%s\"", name);
    if (!strstr(html, marker) || !strstr(html, "data-state=\"ready\""))
        fail_msg("view %s (#%s) not ready; its DOM: %s", name, fragment,
                 dom_keep(dom));
    for (size_t i = 0; i < nwant; i++)
        if (!strstr(html, want[i]))
            fail_msg("view %s lacks \"%s\"; its DOM: %s", name, want[i],
                     dom_keep(dom));
    struct stat sb;
    if (stat(png, &sb) != 0 || sb.st_size < 1000)
        fail_msg("no screenshot of %s at %s", name, png);
    return html;
}

/* ---- the fixture: demo store, a dead letter, eddy serve ------------------------- */

static int fail_always(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ev;
    (void)user;
    return eddy_ctx_fail(ctx, EDDY_EIO, "always fails (dashboard test)");
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(shots, sizeof shots, "%s/dashboard", EDDY_TEST_BUILD_DIR);
    mkdir(shots, 0755);
    snprintf(store_url, sizeof store_url, "sqlite:%s/demo.db", dir);
    char log[256];
    snprintf(log, sizeof log, "%s/demo.log", dir);
    char *demo[] = {EDDY_CLI_PATH, "demo", "--orders", "40", "--users", "5",
                    "--stock", "10", "--payment-failure-rate", "0.2",
                    "--seed", "3", "--store", store_url, NULL};
    int st = wait_for(spawn(demo, log, false), 300);
    if (st != 0) {
        char *text = slurp(log);
        fprintf(stderr, "eddy demo exited with %d:\n%s\n", st, text);
        free(text);
        return -1;
    }
    /* one dead letter, through the library */
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(store_url, NULL, &err);
    if (!s)
        return fprintf(stderr, "%s\n", err.message), -1;
    static const char *const only[] = {"user.registered"};
    eddy_durable_options o = {.name = "dashboard-check",
                              .patterns = only, .pattern_count = 1,
                              .handler = fail_always,
                              .retry = {.max_attempts = 1}};
    eddy_durable *d = eddy_durable_start(s, &o, &err);
    int64_t head = 0;
    eddy_store_head(s, &head, NULL);
    if (!d || eddy_durable_wait_idle(d, head, 30000) != EDDY_OK)
        return fprintf(stderr, "dead letter: %s\n", err.message), -1;
    eddy_durable_free(d);
    eddy_store_close(s);

    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *t = fopen(tokens, "w");
    fprintf(t, "write %s\nadmin %s\n", TOK_WRITE, TOK_ADMIN);
    fclose(t);
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *serve[] = {EDDY_CLI_PATH, "serve", "--store", store_url, "--listen",
                     "127.0.0.1:0", "--admin", "127.0.0.1:0", "--tokens",
                     tokens, "--quiet", NULL};
    if (posix_spawn(&serve_pid, EDDY_CLI_PATH, &fa, NULL, serve, environ) != 0)
        return -1;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    FILE *out = fdopen(fds[0], "r");
    char line[512];
    while ((!events_port || !admin_port) && fgets(line, sizeof line, out)) {
        char *p;
        if ((p = strstr(line, "events API on http://127.0.0.1:")))
            events_port = atoi(p + strlen("events API on http://127.0.0.1:"));
        if ((p = strstr(line, "dashboard on http://127.0.0.1:")))
            admin_port = atoi(p + strlen("dashboard on http://127.0.0.1:"));
    }
    fclose(out);
    return events_port && admin_port ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int st = 0;
    if (serve_pid > 0) {
        kill(serve_pid, SIGTERM);
        st = wait_for(serve_pid, 30);
    }
    eddyt_rmtree(dir);
    if (st != 0)
        fprintf(stderr, "eddy serve exited with %d after SIGTERM\n", st);
    return st == 0 ? 0 : -1;
}

/* GET on the admin listener's API, as JSON. */
static json_t *api(const char *path)
{
    htc_resp r = hfx_req(admin_port, "GET", path, NULL, NULL);
    HFX_STATUS(r, 200);
    json_t *j = hfx_json(&r);
    htc_resp_free(&r);
    return j;
}

/* ---- the views -------------------------------------------------------------------- */

static void test_overview(void **state)
{
    (void)state;
    json_t *o = api("/api/overview");
    json_int_t head = json_integer_value(json_object_get(json_object_get(o, "store"),
                                                         "head"));
    json_decref(o);
    char headtext[64];
    snprintf(headtext, sizeof headtext, "head position %lld", (long long)head);
    const char *want[] = {"Events per second", headtext, "Dead letters", "ready"};
    free(load_view("/overview", "overview", want, 4));
}

static void test_streams_and_events(void **state)
{
    (void)state;
    json_t *s = api("/api/streams?limit=1");
    const char *first = hfx_str(json_array_get(json_object_get(s, "streams"), 0), "id");
    char stream[128];
    snprintf(stream, sizeof stream, "%s", first);
    json_decref(s);
    const char *want[] = {stream};
    free(load_view("/streams", "streams", want, 1));

    /* one stream: its events */
    char path[256], frag[256];
    snprintf(path, sizeof path, "/api/streams/%s", stream);
    json_t *st = api(path);
    json_t *ev = json_object_get(json_array_get(json_object_get(st, "events"), 0),
                                 "event");
    char id[128], type[128];
    snprintf(id, sizeof id, "%s", hfx_str(ev, "id"));
    snprintf(type, sizeof type, "%s", hfx_str(ev, "type"));
    json_decref(st);
    snprintf(frag, sizeof frag, "/streams/%s", stream);
    const char *want2[] = {id, type};
    free(load_view(frag, "stream", want2, 2));

    /* one event: attributes, data, what it caused */
    snprintf(frag, sizeof frag, "/events/%s", id);
    const char *want3[] = {id, type, "Caused", "the whole flow as a tree"};
    free(load_view(frag, "event", want3, 4));
}

static void test_subscriptions(void **state)
{
    (void)state;
    const char *want[] = {"order_read_model", "payment-service",
                          "inventory-service", "order_processing",
                          "dashboard-check", "Rebuild"};
    free(load_view("/subscriptions", "subscriptions", want, 6));
}

static void test_dead_letters(void **state)
{
    (void)state;
    const char *want[] = {"dashboard-check", "always fails (dashboard test)",
                          "user.registered", "Redrive", "Purge"};
    free(load_view("/deadletters?handler=dashboard-check", "deadletters", want, 5));
    json_t *d = api("/api/deadletters");
    json_int_t id = json_integer_value(
        json_object_get(json_array_get(json_object_get(d, "dead_letters"), 0), "id"));
    json_decref(d);
    char frag[64], title[64];
    snprintf(frag, sizeof frag, "/deadletters/%lld", (long long)id);
    snprintf(title, sizeof title, "Dead letter #%lld", (long long)id);
    const char *want2[] = {title, "dashboard-check", "\"type\": \"user.registered\""};
    free(load_view(frag, "deadletter", want2, 3));
}

static void test_sagas(void **state)
{
    (void)state;
    const char *want[] = {"order_processing", "o0000001", "CONFIRMED"};
    free(load_view("/sagas", "sagas", want, 3));
    /* filtered by state: failed instances only */
    json_t *f = api("/api/sagas?state=failed&limit=1");
    char failed_id[64];
    snprintf(failed_id, sizeof failed_id, "%s",
             hfx_str(json_array_get(json_object_get(f, "sagas"), 0), "id"));
    json_decref(f);
    assert_true(failed_id[0]);
    const char *want2[] = {failed_id, "<td>CANCELLED</td>"};
    char *html = load_view("/sagas?state=failed", "sagas", want2, 2);
    assert_null(strstr(html, "<td>CONFIRMED</td>")); /* only failed rows */
    assert_non_null(strstr(html, "<td>CANCELLED</td>"));
    free(html);
    /* one instance: its commands, timeouts and history */
    const char *want3[] = {"ProcessPayment", "Commands", "Timeouts", "History",
                           "order.placed"};
    free(load_view("/sagas/o0000001", "saga", want3, 5));
}

static void test_trace_and_graph(void **state)
{
    (void)state;
    const char *want[] = {"order.placed", "ProcessPayment", "payment.requested",
                          "(order-service)"};
    free(load_view("/trace/o0000001", "trace", want, 4));
    const char *want2[] = {"order.placed", "order_processing", "payment-service",
                           "ProcessPayment", "data-kind=\"saga\""};
    free(load_view("/graph", "graph", want2, 5));
}

/* The live tail shows an event appended while the page is open. */
static void test_live_tail(void **state)
{
    (void)state;
    json_t *o = api("/api/overview");
    json_int_t head = json_integer_value(json_object_get(json_object_get(o, "store"),
                                                         "head"));
    json_decref(o);
    char frag[128], dom[512], png[1300], id[64];
    snprintf(frag, sizeof frag, "/tail?from=%lld&max=1", (long long)head + 1);
    snprintf(dom, sizeof dom, "%s/tail.html", dir);
    snprintf(png, sizeof png, "%s/tail.png", shots);
    snprintf(id, sizeof id, "tail-check-%d", (int)getpid());
    pid_t pid = chromium_start(frag, dom, png, 6000);
    /* wait until the page follows the stream */
    long long t0 = htc_now_ms();
    for (;;) {
        htc_resp r = hfx_req(admin_port, "GET", "/metrics", NULL, NULL);
        bool following = strstr(r.body, "\neddy_http_sse_clients 1\n") != NULL;
        htc_resp_free(&r);
        if (following)
            break;
        if (htc_now_ms() - t0 > 60000) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("the live tail never opened its stream");
        }
        usleep(100000);
    }
    char h[512];
    snprintf(h, sizeof h,
             AUTH_WRITE "ce-specversion: 1.0\r\nce-id: %s\r\nce-source: /dashboard-test\r\n"
                        "ce-type: dashboard.checked\r\nContent-Type: application/json\r\n",
             id);
    htc_resp r = hfx_req(events_port, "POST", "/streams/dashboard-test", h,
                         "{\"seen\": true}");
    HFX_STATUS(r, 201);
    htc_resp_free(&r);
    int st = wait_for(pid, 90);
    assert_int_equal(st, 0);
    char *html = slurp(dom);
    if (!strstr(html, "data-view=\"tail\"") || !strstr(html, "data-state=\"ready\"") ||
        !strstr(html, id) || !strstr(html, "dashboard.checked") ||
        !strstr(html, "1 event received"))
        fail_msg("the live tail did not show %s; its DOM: %s", id, dom_keep(dom));
    free(html);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overview),
        cmocka_unit_test(test_streams_and_events),
        cmocka_unit_test(test_subscriptions),
        cmocka_unit_test(test_dead_letters),
        cmocka_unit_test(test_sagas),
        cmocka_unit_test(test_trace_and_graph),
        cmocka_unit_test(test_live_tail),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
