/*
 * tests/test_store_crash.c - durability under SIGKILL.
 *
 * 20 rounds on one store file: a child process appends in a loop from
 * several threads (batches of 1-5 events over a few streams) and writes
 * "ID POSITION\n" to a pipe for every event AFTER its append returned; the
 * parent kills it with SIGKILL at a random moment, then checks that every
 * acknowledged event is in the store at its acknowledged position, that the
 * log has no gaps, that stream versions are contiguous, that SQLite's
 * integrity check passes and that the store opens cleanly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"
#include <sqlite3.h>

#include "eddy/sqlite.h"

#include "eddy/eddy.h"

#define ROUNDS 20
#define THREADS 3
#define STREAMS 4

static char tmpdir[] = "/tmp/eddy-crash-test-XXXXXX";
static char dbpath[600];

/* ---- the child ---------------------------------------------------------- */

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
        for (size_t i = 0; i < n; i++) {
            evs[i] = eddy_event_newf("crash.appended", "crash-test", NULL, &err,
                                     "{s:i}", "i", (int)i);
            if (!evs[i])
                _exit(4);
        }
        char sid[32];
        snprintf(sid, sizeof sid, "crash-%u", rand_r(&c->seed) % STREAMS);
        eddy_append_result res;
        if (eddy_store_append(c->store, sid, EDDY_EXPECT_ANY, evs, n, &res, &err) !=
            EDDY_OK) {
            dprintf(c->fd, "E %s\n", err.message);
            _exit(3);
        }
        /* One write per append (< PIPE_BUF): lines never interleave. */
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
    eddy_store *s = eddy_store_open(dbpath, NULL, &err);
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
        pause(); /* until SIGKILL */
}

/* ---- the parent ------------------------------------------------------------ */

typedef struct ack {
    char id[40];
    long long position;
} ack;

typedef struct acks {
    ack *v;
    size_t n, cap;
    char partial[256];
    size_t plen;
} acks;

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
        if (a->n == a->cap) {
            a->cap = a->cap ? a->cap * 2 : 1024;
            a->v = realloc(a->v, a->cap * sizeof *a->v);
        }
        ack *k = &a->v[a->n];
        if (sscanf(a->partial, "%39s %lld", k->id, &k->position) != 2)
            fail_msg("bad ack line \"%s\"", a->partial);
        a->n++;
    }
}

/* Reads what is available within `ms`; returns false at end of file. */
static bool read_acks(int fd, acks *a, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r <= 0)
        return true;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
        return false;
    acks_feed(a, buf, (size_t)n);
    return true;
}

static int64_t now_ms(void) { return eddy_now_us() / 1000; }

static void verify(const acks *a, int round)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(dbpath, NULL, &err);
    if (!s)
        fail_msg("round %d: store does not open: %s", round, err.message);
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
            fail_msg("round %d: gap: position %lld where %lld was expected", round,
                     (long long)rec.position, (long long)expect);
        expect++;
        snprintf(ids[rec.position], sizeof ids[0], "%s", eddy_event_id(rec.event));
        unsigned k = (unsigned)atoi(rec.stream_id + strlen("crash-"));
        assert_true(k < STREAMS);
        if (rec.stream_version != ++versions[k])
            fail_msg("round %d: stream %s jumps to version %lld", round,
                     rec.stream_id, (long long)rec.stream_version);
    }
    rc = -eddy_cursor_error(c);
    assert_int_equal(rc, 0);
    eddy_cursor_free(c);
    assert_int_equal(expect - 1, head);
    for (size_t i = 0; i < a->n; i++) {
        const ack *k = &a->v[i];
        if (k->position < 1 || k->position > head)
            fail_msg("round %d: acknowledged event %s at position %lld lost "
                     "(head %lld)", round, k->id, k->position, (long long)head);
        if (strcmp(ids[k->position], k->id) != 0)
            fail_msg("round %d: position %lld holds %s, acknowledged %s", round,
                     k->position, ids[k->position], k->id);
    }
    free(ids);
    for (int i = 0; i < STREAMS; i++) {
        char sid[32];
        int64_t v = -1;
        snprintf(sid, sizeof sid, "crash-%d", i);
        assert_int_equal(eddy_store_stream_version(s, sid, &v, &err), EDDY_OK);
        assert_int_equal(v, versions[i]);
    }
    eddy_store_close(s);

    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_sigkill_rounds(void **state)
{
    (void)state;
    acks all = {0};
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
        /* Wait for the first acknowledgement, then a random 20-200 ms. */
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
        /* Everything written before the kill is still in the pipe. */
        while (read_acks(fds[0], &all, 1000))
            ;
        close(fds[0]);
        verify(&all, round);
    }
    print_message("%zu acknowledged events over %d kills\n", all.n, ROUNDS);
    free(all.v);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dbpath, sizeof dbpath, "%s/crash.db", tmpdir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_rounds),
    };
    int failed = cmocka_run_group_tests_name("store crash", tests, NULL, NULL);
    eddyt_rmtree(tmpdir); /* reports its own failure */
    return failed ? 1 : 0;
}
