/*
 * tests/test_store_postgres_crash.c - durability of the PostgreSQL store
 * under SIGKILL, of the appending process and of the server.
 *
 * 1. 20 rounds: a child process appends from several threads (batches of
 *    1-5 events over a few streams) and writes "ID POSITION" to a pipe for
 *    every event after its append returned; the parent SIGKILLs it at a
 *    random moment, then checks through a new store handle that every
 *    acknowledged event is stored at its acknowledged position, that the
 *    log has no gaps and that stream versions are contiguous (once the
 *    child's server backends are gone: one that had received COMMIT still
 *    commits, unacknowledged).
 * 2. 3 rounds: while threads of this process append (retrying each failed
 *    append with the same events until it succeeds: a commit in doubt
 *    included) and another store handle follows the log with a live
 *    subscription, the server is SIGKILLed (postmaster and backends) and
 *    restarted on the same port. At the end every acknowledged event is
 *    stored exactly once at its acknowledged position, and the subscription
 *    received every position once, in order, across the restarts.
 *
 * The program starts its own PostgreSQL (tests/pg_test_server.h); when it
 * cannot, the test FAILS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg_test_server.h"

#include "eddy/eddy.h"

#define ROUNDS 20
#define THREADS 3
#define STREAMS 4

static pgt_server server;
static char url[512];

static int64_t now_ms(void) { return eddy_now_us() / 1000; }

/* ---- acknowledgements ------------------------------------------------------- */

typedef struct ack {
    char id[40];
    long long position;
} ack;

typedef struct acks {
    ack *v;
    size_t n, cap;
    char partial[256];
    size_t plen;
    pthread_mutex_t mu; /* part 2: several threads add */
} acks;

static void acks_add(acks *a, const char *id, long long position)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1024;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
    }
    snprintf(a->v[a->n].id, sizeof a->v[0].id, "%s", id);
    a->v[a->n].position = position;
    a->n++;
}

static void acks_feed(acks *a, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (a->plen < sizeof a->partial - 1)
                a->partial[a->plen++] = data[i];
            continue;
        }
        a->partial[a->plen] = 0;
        a->plen = 0;
        if (a->partial[0] == 'E')
            fail_msg("child failed: %s", a->partial);
        char id[40];
        long long pos;
        if (sscanf(a->partial, "%39s %lld", id, &pos) != 2)
            fail_msg("bad ack line \"%s\"", a->partial);
        acks_add(a, id, pos);
    }
}

static bool read_acks(int fd, acks *a, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return true;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
        return false;
    acks_feed(a, buf, (size_t)n);
    return true;
}

/* Checks the whole log against the acknowledgements: gap-free, contiguous
 * versions, every ack at its position, no id twice. */
static void verify(const acks *a, const char *what, int round)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s)
        fail_msg("%s %d: store does not open: %s", what, round, err.message);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    char (*ids)[40] = calloc((size_t)head + 1, sizeof *ids);
    int64_t versions[STREAMS] = {0};
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_all(s, 1, 0, &c, &err), EDDY_OK);
    eddy_record rec;
    int64_t expect = 1;
    int rc;
    while (eddy_cursor_next(c, &rec, &err)) {
        if (rec.position != expect)
            fail_msg("%s %d: gap: position %lld where %lld was expected", what,
                     round, (long long)rec.position, (long long)expect);
        expect++;
        snprintf(ids[rec.position], sizeof ids[0], "%s", eddy_event_id(rec.event));
        unsigned k = (unsigned)atoi(rec.stream_id + strlen("crash-"));
        assert_true(k < STREAMS);
        if (rec.stream_version != ++versions[k])
            fail_msg("%s %d: stream %s jumps to version %lld", what, round,
                     rec.stream_id, (long long)rec.stream_version);
    }
    rc = -eddy_cursor_error(c);
    if (rc < 0)
        fail_msg("%s %d: read: %s", what, round, err.message);
    eddy_cursor_free(c);
    assert_int_equal(expect - 1, head);
    for (size_t i = 0; i < a->n; i++) {
        const ack *k = &a->v[i];
        if (k->position < 1 || k->position > head)
            fail_msg("%s %d: acknowledged event %s at position %lld lost "
                     "(head %lld)", what, round, k->id, k->position,
                     (long long)head);
        if (strcmp(ids[k->position], k->id) != 0)
            fail_msg("%s %d: position %lld holds %s, acknowledged %s", what,
                     round, k->position, ids[k->position], k->id);
    }
    assert_int_equal(pgt_query_int(&server, "crash",
                                   "SELECT count(*) - count(DISTINCT id) FROM "
                                   "events"), 0);
    free(ids);
    for (int i = 0; i < STREAMS; i++) {
        char sid[32];
        int64_t v = -1;
        snprintf(sid, sizeof sid, "crash-%d", i);
        assert_int_equal(eddy_store_stream_version(s, sid, &v, &err), EDDY_OK);
        assert_int_equal(v, versions[i]);
    }
    eddy_store_close(s);
}

/* ---- 1. the appending process killed ---------------------------------------- */

/* Waits until the killed child's server backends are gone. A backend that
 * had received its client's COMMIT finishes it after the client died (the
 * events are stored, unacknowledged): the check must not race that commit. */
static void wait_child_backends_gone(int round)
{
    int64_t deadline = now_ms() + 20000;
    while (pgt_query_int(&server, "postgres",
                         "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                         "'crash' AND application_name LIKE 'eddy %'") != 0) {
        if (now_ms() > deadline)
            fail_msg("round %d: the killed child's backends are still there",
                     round);
        usleep(10000);
    }
}

typedef struct child_ctx {
    eddy_store *store;
    int fd;
    unsigned seed;
} child_ctx;

static void *child_appender(void *arg)
{
    child_ctx *c = arg;
    for (;;) {
        size_t n = 1 + (size_t)(rand_r(&c->seed) % 5);
        eddy_event *evs[5];
        eddy_error err = {0};
        for (size_t i = 0; i < n; i++)
            if (!(evs[i] = eddy_event_newf("crash.appended", "crash-test", NULL,
                                           &err, "{s:i}", "i", (int)i)))
                _exit(4);
        char sid[32];
        snprintf(sid, sizeof sid, "crash-%u", rand_r(&c->seed) % STREAMS);
        eddy_append_result res;
        if (eddy_store_append(c->store, sid, EDDY_EXPECT_ANY, evs, n, &res, &err) !=
            EDDY_OK) {
            dprintf(c->fd, "E %s\n", err.message);
            _exit(3);
        }
        char buf[1024];
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %lld\n",
                                    eddy_event_id(evs[i]),
                                    (long long)(res.first_position + (int64_t)i));
        if (write(c->fd, buf, len) != (ssize_t)len)
            _exit(5);
        for (size_t i = 0; i < n; i++)
            eddy_event_unref(evs[i]);
    }
    return NULL;
}

static void child_main(int fd, unsigned seed)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s) {
        dprintf(fd, "E open: %s\n", err.message);
        _exit(2);
    }
    child_ctx ctx[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ctx[i] = (child_ctx){s, fd, seed * 31u + (unsigned)i};
        pthread_create(&th[i], NULL, child_appender, &ctx[i]);
    }
    for (;;)
        pause();
}

static void test_sigkill_appender(void **state)
{
    (void)state;
    acks all = {.mu = PTHREAD_MUTEX_INITIALIZER};
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    srand(seed);
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(fds[1], seed + (unsigned)round);
        }
        close(fds[1]);
        size_t before = all.n;
        int64_t deadline = now_ms() + 20000;
        while (all.n == before && now_ms() < deadline)
            if (!read_acks(fds[0], &all, 100))
                break;
        if (all.n == before)
            fail_msg("round %d: the child acknowledged nothing", round);
        int64_t kill_at = now_ms() + 20 + rand() % 181;
        while (now_ms() < kill_at)
            read_acks(fds[0], &all, (int)(kill_at - now_ms()));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read_acks(fds[0], &all, 1000))
            ;
        close(fds[0]);
        wait_child_backends_gone(round);
        verify(&all, "appender kill", round);
    }
    print_message("%zu acknowledged events over %d kills of the appender\n",
                  all.n, ROUNDS);
    free(all.v);
}

/* ---- 2. the server killed ----------------------------------------------------- */

typedef struct server_appender {
    eddy_store *store;
    acks *acks;
    atomic_bool *stop;
    unsigned seed;
    int in_doubt, failed; /* errors seen (each retried) */
} server_appender;

static void *server_appender_main(void *arg)
{
    server_appender *a = arg;
    while (!atomic_load(a->stop)) {
        size_t n = 1 + (size_t)(rand_r(&a->seed) % 5);
        eddy_event *evs[5];
        eddy_error err = {0};
        for (size_t i = 0; i < n; i++)
            evs[i] = eddy_event_newf("crash.appended", "crash-test", NULL, &err,
                                     "{s:i}", "i", (int)i);
        char sid[32];
        snprintf(sid, sizeof sid, "crash-%u", rand_r(&a->seed) % STREAMS);
        eddy_append_result res;
        int rc;
        /* Retry the same events until they are in: safe, by event id. */
        while ((rc = eddy_store_append(a->store, sid, EDDY_EXPECT_ANY, evs, n,
                                       &res, &err)) != EDDY_OK) {
            if (rc == EDDY_EINDOUBT)
                a->in_doubt++;
            else
                a->failed++;
            usleep(50000);
        }
        pthread_mutex_lock(&a->acks->mu);
        for (size_t i = 0; i < n; i++)
            acks_add(a->acks, eddy_event_id(evs[i]),
                     res.first_position + (long long)i);
        pthread_mutex_unlock(&a->acks->mu);
        for (size_t i = 0; i < n; i++)
            eddy_event_unref(evs[i]);
    }
    return NULL;
}

typedef struct follower {
    pthread_mutex_t mu;
    int64_t last;
    int64_t count;
    int64_t disorder; /* records not at last + 1 */
} follower;

static int follow(const eddy_record *rec, void *user)
{
    follower *f = user;
    pthread_mutex_lock(&f->mu);
    if (rec->position != f->last + 1)
        f->disorder++;
    f->last = rec->position;
    f->count++;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static size_t acks_count(acks *a)
{
    pthread_mutex_lock(&a->mu);
    size_t n = a->n;
    pthread_mutex_unlock(&a->mu);
    return n;
}

static void wait_acks(acks *a, size_t more, const char *when)
{
    size_t target = acks_count(a) + more;
    int64_t deadline = now_ms() + 30000;
    while (acks_count(a) < target && now_ms() < deadline)
        usleep(10000);
    if (acks_count(a) < target)
        fail_msg("no appends acknowledged %s within 30 s", when);
}

static void test_sigkill_server(void **state)
{
    (void)state;
    acks all = {.mu = PTHREAD_MUTEX_INITIALIZER};
    eddy_error err = {0};
    /* Start from what part 1 left: its acknowledgements are checked too. */
    eddy_store *s = eddy_store_open(url, NULL, &err);
    eddy_store *r = eddy_store_open(url, NULL, &err);
    assert_non_null(s);
    assert_non_null(r);
    int64_t start = 0;
    assert_int_equal(eddy_store_head(r, &start, &err), EDDY_OK);
    follower f = {.mu = PTHREAD_MUTEX_INITIALIZER, .last = start};
    eddy_store_subscription *sub = NULL;
    assert_int_equal(eddy_store_subscribe(r, start, follow, &f, NULL, &sub, &err),
                     EDDY_OK);
    atomic_bool stop;
    atomic_init(&stop, false);
    server_appender a[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (server_appender){.store = s, .acks = &all, .stop = &stop,
                                 .seed = (unsigned)time(NULL) + (unsigned)i};
        pthread_create(&th[i], NULL, server_appender_main, &a[i]);
    }
    for (int round = 0; round < 3; round++) {
        wait_acks(&all, 200, "before the kill");
        if (pgt_kill(&server) != 0)
            fail_msg("round %d: cannot kill the server", round);
        usleep(200000);
        if (pgt_restart(&server) != 0)
            fail_msg("round %d: the server does not restart", round);
        wait_acks(&all, 200, "after the restart");
    }
    atomic_store(&stop, true);
    int in_doubt = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        in_doubt += a[i].in_doubt;
        failed += a[i].failed;
    }
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    int64_t deadline = now_ms() + 10000;
    for (;;) {
        pthread_mutex_lock(&f.mu);
        int64_t last = f.last;
        pthread_mutex_unlock(&f.mu);
        if (last >= head || now_ms() > deadline)
            break;
        usleep(10000);
    }
    assert_int_equal(eddy_store_subscription_stop(sub, &err), EDDY_OK);
    eddy_store_subscription_free(sub);
    print_message("%zu acknowledged events over 3 server kills; %d appends "
                  "failed and were retried (%d in doubt); the subscription "
                  "got %lld records\n",
                  all.n, failed, in_doubt, (long long)f.count);
    assert_int_equal(f.disorder, 0);
    assert_int_equal(f.last, head);
    assert_int_equal(f.count, head - start);
    eddy_store_close(r);
    eddy_store_close(s);
    verify(&all, "server kill", 3);
    free(all.v);
}

int main(void)
{
    if (pgt_start(&server) != 0) {
        fprintf(stderr, "cannot start PostgreSQL (scripts/test-servers.sh)\n");
        return 1;
    }
    if (pgt_exec(&server, "postgres", "CREATE DATABASE crash") != 0) {
        pgt_stop(&server);
        return 1;
    }
    pgt_url(&server, "crash", "", url, sizeof url);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_appender),
        cmocka_unit_test(test_sigkill_server),
    };
    int failed = cmocka_run_group_tests_name("store crash on postgres", tests,
                                             NULL, NULL);
    pgt_stop(&server);
    return failed ? 1 : 0;
}
