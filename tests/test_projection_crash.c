/*
 * tests/test_projection_crash.c - a projection is exactly-once through
 * SIGKILL.
 *
 * 20 rounds: a child process opens the store, starts the projection
 * (ASYNC or INLINE, alternating every two rounds; every fifth round a
 * rebuild first, which the registry row the killed child of the round
 * before left as 'running' must not refuse: that process is gone) and
 * appends orders as fast as it can; the parent kills it
 * with SIGKILL at a random point: 5-150 ms after the fork (odd rounds) or
 * 10-150 ms after the child said it follows the store (even rounds). Then
 * the parent starts the projection once more, waits until it reached the
 * head and checks that the read model equals a fold of the
 * store - including each row's count of applied events, so an event applied
 * twice or lost is caught - that nothing was dead-lettered, and that
 * SQLite's integrity check passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "eddy/sqlite.h"
#include "projection_fixture.h"

#define ROUNDS 20
/* Order ids: the history before the first round uses 0..HISTORY-1, round r
 * uses (r + 1) * ROUND_IDS + i: disjoint ranges, so no order is placed
 * twice (a second order.placed of one id would break the read model's
 * primary key). */
#define HISTORY 300
#define ROUND_IDS 100000

static char tmpdir[] = "/tmp/eddy-projection-crash-XXXXXX";
static char db_path[600];

static const eddy_projection_def def_async = {
    .name = "orders_view",
    .pattern = "order.*",
    .setup = fx_setup,
    .apply = fx_apply,
    .reset = fx_reset,
    .batch = 50,
};

static eddy_store *open_store(void)
{
    eddy_store_options o = {.sync = EDDY_SYNC_NORMAL};
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(db_path, &o, &err);
    if (!s)
        fprintf(stderr, "open: %s\n", err.message);
    return s;
}

static void child_main(int round, int ready_fd)
{
    eddy_store *s = open_store();
    if (!s)
        _exit(3);
    eddy_error err = {0};
    eddy_projection_def def = def_async;
    def.mode = (round / 2) % 2 ? EDDY_PROJECTION_INLINE : EDDY_PROJECTION_ASYNC;
    if (round % 5 == 4) {
        if (eddy_projection_rebuild(s, &def, NULL, NULL, &err) != EDDY_OK) {
            fprintf(stderr, "rebuild: %s\n", err.message);
            _exit(4);
        }
    }
    eddy_projection *p = eddy_projection_start(s, &def, &err);
    if (!p) {
        fprintf(stderr, "start: %s\n", err.message);
        _exit(5);
    }
    /* Caught up and following: tell the parent. */
    if (write(ready_fd, "r", 1) != 1)
        _exit(7);
    for (int i = 0;; i++) {
        if (i == ROUND_IDS) { /* this round's ids are used up: wait */
            pause();
            continue;
        }
        if (fx_append_order(s, (round + 1) * ROUND_IDS + i, &err) !=
            EDDY_OK) {
            fprintf(stderr, "append: %s\n", err.message);
            _exit(6);
        }
    }
}

static int count_dead(const eddy_dead_letter *dl, void *user)
{
    (void)dl;
    (*(int *)user)++;
    return 0;
}

static void test_sigkill_exactly_once(void **state)
{
    (void)state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    /* Some history before the first round. */
    eddy_store *s = open_store();
    assert_non_null(s);
    eddy_error err = {0};
    for (int i = 0; i < HISTORY; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_store_close(s);

    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(round, fds[1]);
        }
        close(fds[1]);
        /* Half the rounds kill at a random point from the fork (start-up,
         * catch-up, rebuild); the others once the child follows the store
         * and appends, so that a loaded machine still kills mid-stream. */
        if (round % 2 == 0) {
            char c;
            struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
            if (poll(&pfd, 1, 60000) == 1 && read(fds[0], &c, 1) == 1)
                usleep((useconds_t)(10000 + rand() % 140000));
        } else {
            usleep((useconds_t)(5000 + rand() % 145000));
        }
        close(fds[0]);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: child exited with %d before the kill",
                     round, WEXITSTATUS(status));
    }

    s = open_store();
    assert_non_null(s);
    eddy_projection *p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_int_equal(eddy_projection_wait_idle(p, head, 30000), EDDY_OK);
    assert_int_equal(eddy_projection_stop(p, &err), EDDY_OK);
    eddy_projection_free(p);

    char *fold = fx_dump_fold(s);
    char *model = fx_dump_db(s);
    assert_non_null(fold);
    assert_string_equal(model, fold);
    size_t rows = 0;
    for (const char *c = fold; *c; c++)
        rows += *c == '\n';
    print_message("head %lld, %zu orders in the read model\n",
                  (long long)head, rows);
    assert_true(rows > HISTORY);
    free(fold);
    free(model);

    int dead = 0;
    assert_int_equal(eddy_dlq_list(s, "orders_view", count_dead, &dead, &err),
                     EDDY_OK);
    assert_int_equal(dead, 0);
    /* The store's integrity, as its engine checks it. */
    char check[128] = "";
    eddyt_store_integrity(s, check);
    assert_string_equal(check, "ok");
    eddy_store_close(s);
}

static int setup_dir(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/crash.db", tmpdir);
    return 0;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_exactly_once),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
