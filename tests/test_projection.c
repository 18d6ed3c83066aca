/*
 * tests/test_projection.c - projections: the read model equals a fold of
 * the store (catch-up and live), a rebuild gives the same read model,
 * INLINE applies within the append, listing (also on a read-only store),
 * the heartbeat, a rebuild refused while another process runs the
 * projection (a real child process) but not after it crashed, a stop from
 * several threads at once, a read model written through the SQLite escape
 * hatch, the definition registry and bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "eddy/sqlite.h"
#include "projection_fixture.h"

static char tmpdir[] = "/tmp/eddy-projection-XXXXXX";
static char db_path[600];
static int db_seq;

static eddy_store *open_fresh(void)
{
    snprintf(db_path, sizeof db_path, "%s/p%d.db", tmpdir, ++db_seq);
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(db_path, &o, &err);
    if (!s)
        fail_msg("open %s: %s", db_path, err.message);
    return s;
}

static const eddy_projection_def def_async = {
    .name = "orders_view",
    .pattern = "order.*",
    .setup = fx_setup,
    .apply = fx_apply,
    .reset = fx_reset,
    .batch = 64,
};

static void append_noise(eddy_store *s, int i)
{
    eddy_error err = {0};
    char id[32];
    snprintf(id, sizeof id, "u-%d", i);
    eddy_event *ev = eddy_event_newf("user.registered", "users", id, &err,
                                     "{s:s}", "user_id", id);
    assert_non_null(ev);
    assert_int_equal(eddy_store_append(s, id, EDDY_EXPECT_ANY, &ev, 1, NULL,
                                       &err), EDDY_OK);
    eddy_event_unref(ev);
}

static void assert_model_is_fold(eddy_store *s)
{
    char *fold = fx_dump_fold(s);
    char *model = fx_dump_db(s);
    assert_non_null(fold);
    assert_true(strlen(fold) > 0);
    assert_string_equal(model, fold);
    free(fold);
    free(model);
}

static void wait_head(eddy_projection *p, eddy_store *s)
{
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_int_equal(eddy_projection_wait_idle(p, head, 10000), EDDY_OK);
    assert_true(eddy_projection_checkpoint(p) >= head);
}

struct list_seen {
    int count;
    eddy_projection_info last;
    char state[32], mode[16], owner[300];
};

static int on_info(const eddy_projection_info *info, void *user)
{
    struct list_seen *l = user;
    l->count++;
    l->last = *info;
    snprintf(l->state, sizeof l->state, "%s", info->state);
    snprintf(l->mode, sizeof l->mode, "%s", info->mode);
    snprintf(l->owner, sizeof l->owner, "%s", info->owner);
    l->last.name = l->last.pattern = l->last.state = l->last.mode = NULL;
    l->last.owner = NULL;
    return 0;
}

static void test_fold_catch_up_and_live(void **state)
{
    (void)state;
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 150; i++) {
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
        if (i % 10 == 0)
            append_noise(s, i);
    }
    eddy_projection *p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    /* The catch-up ran inside start, in batches. */
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_true(eddy_projection_checkpoint(p) >= head);
    assert_model_is_fold(s);
    /* Live events. */
    for (int i = 150; i < 300; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    wait_head(p, s);
    assert_model_is_fold(s);

    /* A second start of the same name on this handle is refused. */
    eddy_projection *dup = eddy_projection_start(s, &def_async, &err);
    assert_null(dup);
    assert_int_equal(err.code, EDDY_EEXIST);
    /* So is a rebuild while it runs. */
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_EBUSY);

    struct list_seen l = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.state, "running");
    assert_string_equal(l.mode, "async");
    assert_true(l.last.head > head);

    assert_int_equal(eddy_projection_stop(p, &err), EDDY_OK);
    memset(&l, 0, sizeof l);
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_string_equal(l.state, "stopped");
    assert_int_equal(l.last.lag, 0);
    assert_int_equal(l.last.checkpoint, l.last.head);
    eddy_projection_free(p);

    /* Restart after more appends: continues from the checkpoint, no event
     * applied twice (the `applied` counts would differ from the fold). */
    for (int i = 300; i < 340; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    memset(&l, 0, sizeof l);
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_true(l.last.lag > 0);
    p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    wait_head(p, s);
    assert_model_is_fold(s);
    eddy_projection_free(p);
    eddy_store_close(s);
}

static int corrupt_model(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err,
                           "UPDATE rm_orders SET status = 'X'", NULL);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO rm_orders(order_id, status, total, "
                           "applied) VALUES('zz', 'PENDING', 1, 1)",
                           NULL);
    return rc;
}

struct progress_log {
    int calls;
    int64_t last_done, last_total;
};

static void on_progress(int64_t done, int64_t total, void *user)
{
    struct progress_log *pl = user;
    assert_true(done >= pl->last_done);
    assert_true(done <= total);
    pl->calls++;
    pl->last_done = done;
    pl->last_total = total;
}

static void test_rebuild_gives_same_model(void **state)
{
    (void)state;
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 400; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_projection *p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    wait_head(p, s);
    eddy_projection_free(p);
    char *before = fx_dump_db(s);

    /* Corrupt the read model behind the projection's back: a rebuild must
     * throw it away and replay. */
    assert_int_equal(eddy_store_transact(s, corrupt_model, NULL, &err),
                     EDDY_OK);
    char *corrupt = fx_dump_db(s);
    assert_string_not_equal(corrupt, before);
    free(corrupt);

    struct progress_log pl = {0};
    assert_int_equal(eddy_projection_rebuild(s, &def_async, on_progress, &pl,
                                             &err), EDDY_OK);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_true(pl.calls >= 2); /* the start, then per batch */
    assert_int_equal(pl.last_done, head);
    char *after = fx_dump_db(s);
    assert_string_equal(after, before);
    assert_model_is_fold(s);
    free(before);
    free(after);

    struct list_seen l = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_string_equal(l.state, "stopped");
    assert_int_equal(l.last.checkpoint, head);

    /* Starting after the rebuild applies nothing again. */
    p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    wait_head(p, s);
    assert_model_is_fold(s);
    eddy_projection_free(p);

    /* A definition without reset cannot be rebuilt. */
    eddy_projection_def no_reset = def_async;
    no_reset.reset = NULL;
    assert_int_equal(eddy_projection_rebuild(s, &no_reset, NULL, NULL, &err),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "reset"));
    eddy_store_close(s);
}

static void test_inline_applies_within_append(void **state)
{
    (void)state;
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 50; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_projection_def def = def_async;
    def.mode = EDDY_PROJECTION_INLINE;
    eddy_projection *p = eddy_projection_start(s, &def, &err);
    assert_non_null(p);
    assert_model_is_fold(s);
    /* No waiting: when each append returns, the row is there. */
    for (int i = 50; i < 120; i++) {
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
        char *model = fx_dump_db(s);
        char key[32];
        snprintf(key, sizeof key, "o-%05d ", i);
        assert_non_null(strstr(model, key));
        free(model);
    }
    assert_model_is_fold(s);
    /* The subscription skips what the hook applied: still exactly once. */
    wait_head(p, s);
    assert_model_is_fold(s);

    /* An apply failure fails the append itself: nothing stored. */
    eddy_event *bad = eddy_event_newf("order.placed", "orders", "o-bad", &err,
                                      "{s:s}", "order_id", "o-bad");
    int64_t head_before = 0, head_after = 0;
    assert_int_equal(eddy_store_head(s, &head_before, NULL), EDDY_OK);
    assert_int_not_equal(eddy_store_append(s, "o-bad", EDDY_EXPECT_ANY, &bad,
                                           1, NULL, &err), EDDY_OK);
    assert_non_null(strstr(err.message, "orders_view"));
    eddy_event_unref(bad);
    assert_int_equal(eddy_store_head(s, &head_after, NULL), EDDY_OK);
    assert_int_equal(head_after, head_before);

    struct list_seen l = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_string_equal(l.mode, "inline");
    eddy_projection_free(p);

    /* After stop, appends are not applied until the next start. */
    assert_int_equal(fx_append_order(s, 500, &err), EDDY_OK);
    char *model = fx_dump_db(s);
    assert_null(strstr(model, "o-00500 "));
    free(model);
    p = eddy_projection_start(s, &def, &err);
    assert_non_null(p);
    assert_model_is_fold(s);
    eddy_projection_free(p);
    eddy_store_close(s);
}

/* ---- listing on a read-only store, the heartbeat --------------------------- */

static void test_list_read_only_and_heartbeat(void **state)
{
    (void)state;
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 30; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_projection *p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    wait_head(p, s);
    struct list_seen first = {0}, later = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &first, &err), EDDY_OK);
    assert_string_equal(first.state, "running");
    /* The owner: this process, "pid@host". */
    char host[256], me[300];
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    snprintf(me, sizeof me, "%ld@%s", (long)getpid(), host);
    assert_string_equal(first.owner, me);
    /* A running projection refreshes its row every 2 s. */
    usleep(2600 * 1000);
    assert_int_equal(eddy_projection_list(s, on_info, &later, &err), EDDY_OK);
    assert_string_equal(later.state, "running");
    assert_true(later.last.updated_us > first.last.updated_us);
    eddy_projection_free(p);
    for (int i = 30; i < 40; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_store_close(s);

    /* Listing reads on a reader: a store opened read-only lists too. */
    eddy_store_options ro = {.read_only = true};
    s = eddyt_store_open(db_path, &ro, &err);
    if (!s)
        fail_msg("open read-only: %s", err.message);
    struct list_seen l = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.state, "stopped");
    /* Stopped, it still names who ran it last (for `eddy projections
     * rebuild`, which has no code for it). */
    assert_string_equal(l.owner, me);
    assert_true(l.last.lag > 0);
    assert_int_equal(l.last.head - l.last.checkpoint, l.last.lag);
    /* Starting or rebuilding needs the writer. */
    assert_null(eddy_projection_start(s, &def_async, &err));
    assert_int_not_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL,
                                                 &err), EDDY_OK);
    eddy_store_close(s);
}

/* ---- a rebuild while another process runs the projection ------------------- */

/* The child: runs the projection until the parent closes `go` (then stops
 * cleanly) or kills it. */
static void runner_main(int ready_fd, int go_fd)
{
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(db_path, &o, &err);
    if (!s)
        _exit(3);
    eddy_projection *p = eddy_projection_start(s, &def_async, &err);
    if (!p)
        _exit(4);
    if (write(ready_fd, "r", 1) != 1)
        _exit(5);
    char c;
    while (read(go_fd, &c, 1) > 0)
        ;
    int rc = eddy_projection_stop(p, &err);
    eddy_projection_free(p);
    eddy_store_close(s);
    _exit(rc == EDDY_OK ? 0 : 6);
}

/* Forks a runner and waits until its projection runs. */
static pid_t fork_runner(int *go_fd)
{
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        runner_main(ready[1], go[0]);
    }
    close(ready[1]);
    close(go[0]);
    struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
    char c;
    assert_int_equal(poll(&pfd, 1, 30000), 1);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    *go_fd = go[1];
    return pid;
}

static eddy_store *reopen(void)
{
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    eddy_store *s = eddyt_store_open(db_path, &o, &err);
    if (!s)
        fail_msg("open %s: %s", db_path, err.message);
    return s;
}

static void test_rebuild_refused_while_another_process_runs(void **state)
{
    (void)state;
    /* The parent holds no store open while it forks: the child starts from
     * a process with one thread. */
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 40; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_store_close(s);

    int go = -1;
    pid_t pid = fork_runner(&go);
    s = reopen();
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_EBUSY);
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "pid %ld on ", (long)pid);
    assert_non_null(strstr(err.message, "\"orders_view\" is running"));
    assert_non_null(strstr(err.message, pidtext));
    assert_non_null(strstr(err.message, "last seen"));
    assert_non_null(strstr(err.message, "stop it first"));
    eddy_store_close(s);
    /* Stopped cleanly: the rebuild goes ahead. */
    close(go);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    s = reopen();
    /* The stopped row names the process that ran it. */
    struct list_seen stopped = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &stopped, &err), EDDY_OK);
    assert_string_equal(stopped.state, "stopped");
    snprintf(pidtext, sizeof pidtext, "%ld@", (long)pid);
    assert_true(strncmp(stopped.owner, pidtext, strlen(pidtext)) == 0);
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_OK);
    assert_model_is_fold(s);
    /* ... and after the rebuild, the process that rebuilt it. */
    struct list_seen rebuilt = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &rebuilt, &err), EDDY_OK);
    assert_string_equal(rebuilt.state, "stopped");
    snprintf(pidtext, sizeof pidtext, "%ld@", (long)getpid());
    assert_true(strncmp(rebuilt.owner, pidtext, strlen(pidtext)) == 0);
    eddy_store_close(s);

    /* Killed: its row still says running, with a fresh heartbeat, but its
     * process is gone: the rebuild goes ahead at once. */
    pid = fork_runner(&go);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(go);
    s = reopen();
    struct list_seen l = {0};
    assert_int_equal(eddy_projection_list(s, on_info, &l, &err), EDDY_OK);
    assert_string_equal(l.state, "running");
    assert_true(eddy_now_us() - l.last.updated_us < 5000000);
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_OK);
    assert_model_is_fold(s);
    eddy_store_close(s);
}

/* What another host's runner leaves in the registry: fresh, then stale. */
static int fake_remote_runner(eddy_txn *txn, void *user, eddy_error *err)
{
    int64_t age_us = *(const int64_t *)user;
    return eddy_txn_exec(txn, NULL, err,
                         "UPDATE eddy_projections SET state = 'running', "
                         "owner = '4242@elsewhere.example', updated_us = $1 "
                         "WHERE name = 'orders_view'",
                         "I", eddy_now_us() - age_us);
}

static void test_rebuild_and_remote_heartbeat(void **state)
{
    (void)state;
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 20; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_OK);
    int64_t age_us = 1000000;
    assert_int_equal(eddy_store_transact(s, fake_remote_runner, &age_us,
                                         &err), EDDY_OK);
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_EBUSY);
    assert_non_null(strstr(err.message, "pid 4242 on elsewhere.example"));
    assert_non_null(strstr(err.message, "last seen 1 s ago"));
    /* A heartbeat a minute old: that process is gone. */
    age_us = 60000000;
    assert_int_equal(eddy_store_transact(s, fake_remote_runner, &age_us,
                                         &err), EDDY_OK);
    assert_int_equal(eddy_projection_rebuild(s, &def_async, NULL, NULL, &err),
                     EDDY_OK);
    assert_model_is_fold(s);
    eddy_store_close(s);
}

/* ---- stop from several threads ------------------------------------------------ */

struct stopper {
    eddy_projection *p;
    pthread_barrier_t *go;
    int rc;
};

static void *stop_thread(void *arg)
{
    struct stopper *st = arg;
    pthread_barrier_wait(st->go);
    st->rc = eddy_projection_stop(st->p, NULL);
    return NULL;
}

static void test_stop_from_several_threads(void **state)
{
    (void)state;
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 20; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_projection *p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    enum { N = 4 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    pthread_t t[N];
    struct stopper st[N];
    for (int i = 0; i < N; i++) {
        st[i] = (struct stopper){.p = p, .go = &go, .rc = -1};
        assert_int_equal(pthread_create(&t[i], NULL, stop_thread, &st[i]),
                         0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(st[i].rc, EDDY_OK);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(eddy_projection_wait_idle(p, 1, 0), EDDY_ESTOPPED);
    eddy_projection_free(p);
    /* The name is free again. */
    p = eddy_projection_start(s, &def_async, &err);
    assert_non_null(p);
    eddy_projection_free(p);
    eddy_store_close(s);
}

/* ---- the SQLite escape hatch ------------------------------------------------- */

/* A read model written with SQLite's own API (eddy/sqlite.h): counts per
 * event type, with a prepared statement of its own. */
static int count_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    sqlite3 *db = eddy_txn_sqlite(txn);
    if (!db)
        return EDDY_EUNSUPPORTED;
    if (sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS rm_counts("
                         "type TEXT PRIMARY KEY, n INTEGER NOT NULL)",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err->message, sizeof err->message, "%s", sqlite3_errmsg(db));
        return EDDY_EIO;
    }
    return EDDY_OK;
}

static int count_apply(eddy_txn *txn, const eddy_event *ev, void *user,
                       eddy_error *err)
{
    (void)user;
    sqlite3 *db = eddy_txn_sqlite(txn);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO rm_counts(type, n) VALUES(?1, 1) "
                           "ON CONFLICT(type) DO UPDATE SET n = n + 1",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err->message, sizeof err->message, "%s", sqlite3_errmsg(db));
        return EDDY_EIO;
    }
    sqlite3_bind_text(st, 1, eddy_event_type(ev), -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? EDDY_OK : EDDY_EIO;
    if (rc != EDDY_OK)
        snprintf(err->message, sizeof err->message, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

static void test_sqlite_escape_hatch(void **state)
{
    (void)state;
    EDDYT_SQLITE_ONLY("a read model written through eddy_txn_sqlite");
    static const eddy_projection_def counts = {
        .name = "counts", .pattern = "order.*", .setup = count_setup,
        .apply = count_apply};
    eddy_store *s = open_fresh();
    eddy_error err = {0};
    for (int i = 0; i < 12; i++) /* 12 placed, 6 confirmed, 2 cancelled */
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    eddy_projection *p = eddy_projection_start(s, &counts, &err);
    assert_non_null(p);
    for (int i = 12; i < 24; i++)
        assert_int_equal(fx_append_order(s, i, &err), EDDY_OK);
    wait_head(p, s);
    eddy_projection_free(p);
    int64_t n = 0;
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT n FROM rm_counts WHERE "
                                        "type = $1",
                                        "s", "order.placed"),
                     EDDY_OK);
    assert_int_equal(n, 24);
    assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                        "SELECT n FROM rm_counts WHERE "
                                        "type = $1",
                                        "s", "order.confirmed"),
                     EDDY_OK);
    assert_int_equal(n, 12);
    eddy_store_close(s);
}

static void test_registry_and_bad_input(void **state)
{
    (void)state;
    eddy_error err = {0};
    assert_int_equal(eddy_projection_register_def(&def_async, &err), EDDY_OK);
    assert_int_equal(eddy_projection_register_def(&def_async, &err), EDDY_OK);
    eddy_projection_def other = def_async;
    assert_int_equal(eddy_projection_register_def(&other, &err), EDDY_EEXIST);
    assert_ptr_equal(eddy_projection_find_def("orders_view"), &def_async);
    assert_null(eddy_projection_find_def("nope"));

    eddy_store *s = open_fresh();
    eddy_projection_def bad = def_async;
    bad.pattern = "order*";
    assert_null(eddy_projection_start(s, &bad, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "order*"));
    bad = def_async;
    bad.apply = NULL;
    assert_null(eddy_projection_start(s, &bad, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_projection_start(s, NULL, &err));
    assert_null(eddy_projection_start(NULL, &def_async, &err));
    eddy_projection_free(NULL);
    eddy_store_close(s);
}

static int setup_dir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_catch_up_and_live),
        cmocka_unit_test(test_rebuild_gives_same_model),
        cmocka_unit_test(test_inline_applies_within_append),
        cmocka_unit_test(test_list_read_only_and_heartbeat),
        cmocka_unit_test(test_rebuild_refused_while_another_process_runs),
        cmocka_unit_test(test_rebuild_and_remote_heartbeat),
        cmocka_unit_test(test_stop_from_several_threads),
        cmocka_unit_test(test_sqlite_escape_hatch),
        cmocka_unit_test(test_registry_and_bad_input),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
