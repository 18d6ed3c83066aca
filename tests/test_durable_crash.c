/*
 * tests/test_durable_crash.c - durable subscriptions under real crashes.
 *
 * A child process opens the store and runs two durable subscriptions over
 * the events in it:
 *   - "effects", TRANSACTIONAL: inserts one row per event into its own
 *     table effects(event_id TEXT, n INTEGER) - deliberately without a
 *     unique key, so a double effect would show as a second row;
 *   - "log", AT_LEAST_ONCE: appends the event id to a text file.
 * The parent appends more events, forks the child, SIGKILLs it at a random
 * moment (5-150 ms), and repeats 20 times; then a last child runs to the
 * end. Afterwards: every event has exactly one row in effects (exactly
 * once), appears at least once in the file (at least once), both
 * checkpoints reached the head, and the store passes integrity_check.
 * The seed is printed so a failing run can be repeated (EDDY_CRASH_SEED).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "store_fixture.h"

#define ROUNDS 20
#define INITIAL_EVENTS 300
#define EVENTS_PER_ROUND 100

static char dir[64], store_path[128], log_path[128];
static int log_fd = -1;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the child ------------------------------------------------------------ */

static int effects_handler(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                           void *user)
{
    eddy_error e = {0};
    if (eddy_txn_exec(txn, NULL, &e, "CREATE TABLE IF NOT EXISTS "
                      "effects(event_id TEXT, n BIGINT)", NULL) != EDDY_OK ||
        eddy_txn_exec(txn, NULL, &e, "INSERT INTO effects VALUES($1, 1)", "s",
                      eddy_event_id(ev)) != EDDY_OK)
        return eddy_ctx_fail(ctx, e.code, "%s", e.message);
    /* Some work inside the transaction, so that kills land between a
     * handler's write and its commit too. */
    usleep(1000);
    return EDDY_OK;
}

static int log_handler(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    char line[128];
    int n = snprintf(line, sizeof line, "%s\n", eddy_event_id(ev));
    /* One O_APPEND write per line: lines never interleave. */
    if (write(log_fd, line, (size_t)n) != n)
        return eddy_ctx_fail(ctx, EDDY_EIO, "log write: %s", strerror(errno));
    usleep(4000); /* some work: a round takes longer than the kill delay */
    return EDDY_OK;
}

/* Runs both subscriptions until they reached the head; exits 0 on success.
 * Never returns. */
static void child_main(void)
{
    alarm(60);
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddyt_store_open(store_path, &so, &err);
    if (log_fd < 0 || !s) {
        fprintf(stderr, "child: open: %s\n", err.message);
        _exit(2);
    }
    eddy_durable_options eo = {.name = "effects",
                               .mode = EDDY_DELIVERY_TRANSACTIONAL,
                               .txn_handler = effects_handler,
                               .checkpoint_every = 20};
    eddy_durable_options lo = {.name = "log",
                               .handler = log_handler,
                               .checkpoint_every = 20,
                               .checkpoint_interval_ms = 20};
    eddy_durable *de = eddy_durable_start(s, &eo, &err);
    eddy_durable *dl = de ? eddy_durable_start(s, &lo, &err) : NULL;
    if (!de || !dl) {
        fprintf(stderr, "child: start: %s\n", err.message);
        _exit(3);
    }
    int64_t head = 0;
    int rc = eddy_store_head(s, &head, &err);
    if (rc == EDDY_OK)
        rc = eddy_durable_wait_idle(de, head, 50000);
    if (rc == EDDY_OK)
        rc = eddy_durable_wait_idle(dl, head, 50000);
    if (rc == EDDY_OK)
        rc = eddy_durable_stop(de, &err);
    if (rc == EDDY_OK)
        rc = eddy_durable_stop(dl, &err);
    eddy_durable_free(de);
    eddy_durable_free(dl);
    eddy_store_close(s);
    close(log_fd);
    if (rc != EDDY_OK)
        fprintf(stderr, "child: %s %s\n", eddy_errname(rc), err.message);
    _exit(rc == EDDY_OK ? 0 : 4);
}

/* ---- the parent ----------------------------------------------------------- */

static void append_events(int first, int count)
{
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddyt_store_open(store_path, &so, &err);
    if (!s)
        fail_msg("open: %s", err.message);
    for (int i = first; i < first + count; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 10);
        eddy_event *ev = eddy_event_newf("work.item", "test", key, &err,
                                         "{s:i}", "n", i);
        assert_non_null(ev);
        int rc = eddy_store_append(s, key, EDDY_EXPECT_ANY, &ev, 1, NULL, &err);
        eddy_event_unref(ev);
        if (rc != EDDY_OK)
            fail_msg("append: %s", err.message);
    }
    /* Closed before forking: the child starts with no threads inherited. */
    eddy_store_close(s);
}

static pid_t spawn(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_main();
    return pid;
}

static int64_t scalar(eddy_store *s, const char *sql)
{
    int64_t v = 0;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &v, &err, sql, NULL) != EDDY_OK)
        fail_msg("%s: %s", sql, err.message);
    return v;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_sigkill_rounds(void **state)
{
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    const char *env = getenv("EDDY_CRASH_SEED");
    if (env)
        seed = (unsigned)strtoul(env, NULL, 10);
    printf("seed %u\n", seed);
    srand(seed);

    snprintf(dir, sizeof dir, "/tmp/eddy-durable-crash-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(store_path, sizeof store_path, "%s/store.db", dir);
    snprintf(log_path, sizeof log_path, "%s/handled.log", dir);

    int total = INITIAL_EVENTS;
    append_events(0, INITIAL_EVENTS);
    int killed = 0, finished = 0;
    for (int round = 0; round < ROUNDS; round++) {
        append_events(total, EVENTS_PER_ROUND);
        total += EVENTS_PER_ROUND;
        pid_t pid = spawn();
        sleep_ms(5 + rand() % 146);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            killed++;
        } else {
            /* It finished before the kill: it must have succeeded. */
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
            finished++;
        }
    }
    printf("%d children killed mid-run, %d finished first\n", killed,
           finished);
    assert_true(killed >= ROUNDS / 2);

    /* The last run goes to the end. */
    pid_t pid = spawn();
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddyt_store_open(store_path, &ro, &err);
    if (!s)
        fail_msg("open: %s", err.message);
    /* The store's integrity, as its engine checks it. */
    char check[128] = "";
    eddyt_store_integrity(s, check);
    assert_string_equal(check, "ok");
    /* Exactly once: one row per event, no more, no less. */
    assert_int_equal(scalar(s, "SELECT count(*) FROM effects"), total);
    assert_int_equal(scalar(s, "SELECT count(DISTINCT event_id) FROM effects"),
                     total);
    assert_int_equal(scalar(s, "SELECT position FROM eddy_checkpoints WHERE "
                               "name = 'effects'"), total);
    assert_int_equal(scalar(s, "SELECT position FROM eddy_checkpoints WHERE "
                               "name = 'log'"), total);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_dead_letters"), 0);

    /* At least once: every stored event id is in the log. */
    FILE *fp = fopen(log_path, "r");
    assert_non_null(fp);
    size_t cap = 2048, n = 0;
    char **lines = calloc(cap, sizeof *lines);
    char buf[128];
    while (fgets(buf, sizeof buf, fp)) {
        buf[strcspn(buf, "\n")] = '\0';
        if (n == cap) {
            cap *= 2;
            lines = realloc(lines, cap * sizeof *lines);
        }
        lines[n++] = strdup(buf);
    }
    fclose(fp);
    qsort(lines, n, sizeof *lines, cmp_str);
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_all(s, 0, 0, &c, &err), EDDY_OK);
    eddy_record rec;
    int seen = 0, missing = 0;
    while (eddy_cursor_next(c, &rec, &err)) {
        const char *id = eddy_event_id(rec.event);
        if (!bsearch(&id, lines, n, sizeof *lines, cmp_str))
            missing++;
        seen++;
    }
    eddy_cursor_free(c);
    eddy_store_close(s);
    printf("%d events, %zu log lines (%zu re-deliveries after crashes)\n",
           seen, n, n - (size_t)seen);
    assert_int_equal(seen, total);
    assert_int_equal(missing, 0);
    assert_true(n >= (size_t)total);

    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    char p[192];
    const char *suffix[] = {"/store.db", "/store.db-wal", "/store.db-shm",
                            "/handled.log"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", dir, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
