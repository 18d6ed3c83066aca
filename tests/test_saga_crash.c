/*
 * tests/test_saga_crash.c - a durable saga under real crashes, on the store
 * under test (store_fixture.h: SQLite, or PostgreSQL as
 * test_saga_crash_postgres).
 *
 * Each trip is one saga instance fed four events: trip.started, two
 * trip.step and a last trip.step. For each event the saga adds one to its
 * state's count, sends the command Book, and on the last one completes (a
 * timeout set at the start is cancelled then). Book has a transactional
 * handler: it inserts a row into bookings(trip, n, cmd) - deliberately
 * without a unique key, so a repeated effect would show - inside the
 * saga's own transaction.
 *
 * The parent appends trips, forks a child that runs the saga, SIGKILLs it
 * at a random moment within 100 ms of its first commit, 20 times; then a
 * last child runs to the end. Afterwards, exactly once: every trip completed with count 4 and
 * version 4, four bookings per trip with four distinct command ids, four
 * commands per trip all sent, no timeout left, no dead letter, the
 * checkpoint at the head; and the store passes its integrity check.
 * EDDY_CRASH_SEED repeats a run.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "test_util.h"

#define ROUNDS 20
#define INITIAL_TRIPS 60
#define TRIPS_PER_ROUND 25
#define STEPS 4

static char tmpdir[] = "/tmp/eddy-saga-crash-XXXXXX";
static char store_path[128];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the saga -------------------------------------------------------------- */

static int correlate(const eddy_event *ev, char *id, size_t size, void *user)
{
    (void)user;
    const char *trip = NULL;
    if (eddy_event_unpack(ev, NULL, "{s:s}", "trip", &trip) != 0)
        return EDDY_ENOTFOUND;
    snprintf(id, size, "%s", trip);
    return EDDY_OK;
}

static int on_event(eddy_saga_ctx *sc, json_t *state, const eddy_event *ev,
                    void *user)
{
    (void)user;
    int last = 0;
    const json_t *data = eddy_event_data(ev);
    const json_t *l = data ? json_object_get(data, "last") : NULL;
    last = l && json_is_true(l);
    json_int_t n = json_integer_value(json_object_get(state, "n")) + 1;
    json_object_set_new(state, "n", json_integer(n));
    int rc = EDDY_OK;
    if (eddy_saga_is_new(sc))
        rc = eddy_saga_set_timeout(sc, "stall", 3600 * 1000);
    if (rc == EDDY_OK)
        rc = eddy_saga_send(sc, "Book", "{s:s, s:I}", "trip", eddy_saga_id(sc),
                            "n", (json_int_t)n);
    if (rc == EDDY_OK && last)
        rc = eddy_saga_complete(sc, "DONE");
    return rc;
}

static int book(eddy_txn *txn, const eddy_command *cmd, void *user,
                eddy_error *err)
{
    (void)user;
    const char *trip = NULL;
    json_int_t n = 0;
    if (json_unpack(cmd->data, "{s:s, s:I}", "trip", &trip, "n", &n) != 0)
        return eddy_error_set(err, EDDY_EINVAL, "Book without trip/n");
    /* Some work inside the transaction, so that kills land between the
     * effect's write and its commit too (and a round outlasts the kill
     * delay). */
    usleep(1000);
    return eddy_txn_exec(txn, NULL, err,
                         "INSERT INTO bookings(trip, n, cmd) VALUES($1, $2, $3)",
                         "sIs", trip, (int64_t)n, cmd->id);
}

static const char *const start_types[] = {"trip.started"};
static const char *const handled_types[] = {"trip.step"};
static const eddy_saga_def trips = {
    .name = "trips",
    .start_types = start_types,
    .start_count = 1,
    .handled_types = handled_types,
    .handled_count = 1,
    .correlate = correlate,
    .on_event = on_event,
};

/* ---- the child ------------------------------------------------------------ */

static void child_main(void)
{
    alarm(120);
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddyt_store_open(store_path, &so, &err);
    eddy_command_bus *cb = eddy_command_bus_new();
    if (!s || !cb ||
        eddy_command_bus_register_txn(cb, "Book", book, NULL, &err) != EDDY_OK) {
        fprintf(stderr, "child: open: %s\n", err.message);
        _exit(2);
    }
    eddy_command_bus_set_store(cb, s);
    eddy_saga_options opts = {.workers = 2};
    eddy_saga *sg = eddy_saga_start(s, &trips, cb, &opts, &err);
    if (!sg) {
        fprintf(stderr, "child: start: %s\n", err.message);
        _exit(3);
    }
    int64_t head = 0;
    int rc = eddy_store_head(s, &head, &err);
    if (rc == EDDY_OK)
        rc = eddy_saga_wait_idle(sg, head, 100000);
    if (rc == EDDY_OK)
        rc = eddy_saga_stop(sg, &err);
    eddy_saga_free(sg);
    eddy_store_close(s);
    eddy_command_bus_free(cb);
    if (rc != EDDY_OK)
        fprintf(stderr, "child: %s %s\n", eddy_errname(rc), err.message);
    _exit(rc == EDDY_OK ? 0 : 4);
}

/* ---- the parent ----------------------------------------------------------- */

static int make_bookings(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err,
                         "CREATE TABLE IF NOT EXISTS bookings(trip TEXT, "
                         "n BIGINT, cmd TEXT)",
                         NULL);
}

/* Appends trips first..first+count-1: every trip's four events, the trips
 * interleaved so that instances progress side by side. */
static void append_trips(int first, int count)
{
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddyt_store_open(store_path, &so, &err);
    if (!s)
        fail_msg("open: %s", err.message);
    assert_int_equal(eddy_store_transact(s, make_bookings, NULL, &err),
                     EDDY_OK);
    for (int step = 0; step < STEPS; step++) {
        for (int i = first; i < first + count; i++) {
            char trip[32];
            snprintf(trip, sizeof trip, "trip-%05d", i);
            eddy_event *ev = eddy_event_newf(
                step == 0 ? "trip.started" : "trip.step", "test", trip, &err,
                "{s:s, s:i, s:b}", "trip", trip, "step", step, "last",
                step == STEPS - 1);
            assert_non_null(ev);
            int rc = eddy_store_append(s, trip, EDDY_EXPECT_ANY, &ev, 1, NULL,
                                       &err);
            eddy_event_unref(ev);
            if (rc != EDDY_OK)
                fail_msg("append: %s", err.message);
        }
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

/* Waits until child `pid` committed some work (more bookings than
 * `before`), or exited, or 20 s passed: a kill is timed from the child's
 * first commit, so it lands mid-work whatever the engine's start-up costs
 * (a PostgreSQL child connects several times first, slower under load). */
static void wait_progress(pid_t pid, int64_t before)
{
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddyt_store_open(store_path, &ro, &err);
    if (!s)
        fail_msg("open: %s", err.message);
    for (int i = 0; i < 4000; i++) {
        if (scalar(s, "SELECT count(*) FROM bookings") > before)
            break;
        siginfo_t si = {0}; /* exited? (left for the caller to reap) */
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == pid)
            break;
        sleep_ms(5);
    }
    eddy_store_close(s);
}

struct tally {
    int instances, bad;
    char first_bad[256];
};

static int check_instance(const eddy_saga_info *info, void *user)
{
    struct tally *t = user;
    t->instances++;
    json_int_t n = json_integer_value(json_object_get(info->state, "n"));
    if (strcmp(info->status, "completed") != 0 || n != STEPS ||
        info->version != STEPS) {
        if (!t->bad++)
            snprintf(t->first_bad, sizeof t->first_bad,
                     "%s: status %s, count %lld, version %lld", info->id,
                     info->status, (long long)n, (long long)info->version);
    }
    return 0;
}

static void test_sigkill_exactly_once(void **state)
{
    (void)state;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    const char *env = getenv("EDDY_CRASH_SEED");
    if (env)
        seed = (unsigned)strtoul(env, NULL, 10);
    printf("seed %u, store %s\n", seed, eddyt_backend());
    srand(seed);

    int trips_total = INITIAL_TRIPS;
    append_trips(0, INITIAL_TRIPS);
    int killed = 0, finished = 0;
    for (int round = 0; round < ROUNDS; round++) {
        append_trips(trips_total, TRIPS_PER_ROUND);
        trips_total += TRIPS_PER_ROUND;
        int64_t before = 0;
        {
            eddy_error e = {0};
            eddy_store_options ro = {.read_only = true};
            eddy_store *s = eddyt_store_open(store_path, &ro, &e);
            if (!s)
                fail_msg("open: %s", e.message);
            before = scalar(s, "SELECT count(*) FROM bookings");
            eddy_store_close(s);
        }
        pid_t pid = spawn();
        wait_progress(pid, before);
        sleep_ms(rand() % 100);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            killed++;
        } else {
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
            finished++;
        }
    }
    printf("%d children killed mid-run, %d finished first\n", killed,
           finished);
    assert_true(killed >= ROUNDS / 2);

    /* The killed children got somewhere (wait_progress). */
    {
        eddy_error e = {0};
        eddy_store_options ro = {.read_only = true};
        eddy_store *s = eddyt_store_open(store_path, &ro, &e);
        if (!s)
            fail_msg("open: %s", e.message);
        int64_t done = scalar(s, "SELECT count(*) FROM bookings");
        printf("%lld bookings before the last run\n", (long long)done);
        assert_true(done > 0);
        eddy_store_close(s);
    }
    pid_t pid = spawn(); /* the last run goes to the end */
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddyt_store_open(store_path, &ro, &err);
    if (!s)
        fail_msg("open: %s", err.message);
    char check[128] = "";
    eddyt_store_integrity(s, check);
    assert_string_equal(check, "ok");

    struct tally t = {0};
    assert_int_equal(eddy_saga_list(s, "trips", NULL, check_instance, &t,
                                    &err),
                     EDDY_OK);
    if (t.bad)
        fail_msg("%d of %d instances wrong, first: %s", t.bad, t.instances,
                 t.first_bad);
    assert_int_equal(t.instances, trips_total);
    int64_t total = (int64_t)trips_total * STEPS;
    assert_int_equal(scalar(s, "SELECT count(*) FROM bookings"), total);
    assert_int_equal(scalar(s, "SELECT count(DISTINCT cmd) FROM bookings"),
                     total);
    assert_int_equal(scalar(s, "SELECT count(*) FROM (SELECT trip FROM "
                               "bookings GROUP BY trip HAVING count(*) <> 4 "
                               "OR count(DISTINCT n) <> 4) x"),
                     0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_saga_commands "
                               "WHERE saga_type = 'trips'"),
                     total);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_saga_commands "
                               "WHERE state <> 'sent'"),
                     0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_saga_timeouts"), 0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_dead_letters"), 0);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(scalar(s, "SELECT position FROM eddy_checkpoints WHERE "
                               "name = 'trips'"),
                     head);
    printf("%d trips, %lld bookings, head %lld\n", trips_total,
           (long long)total, (long long)head);
    eddy_store_close(s);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(store_path, sizeof store_path, "%s/store.db", tmpdir);
    return 0;
}

EDDYT_RMTREE_TEARDOWN(teardown, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_exactly_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
