/*
 * tests/test_outbox_crash.c - the outbox survives SIGKILL.
 *
 * The parent queues events through the outbox, then 20 times starts a child
 * process that runs a relay (and a producer appending more events through
 * the outbox) and SIGKILLs it: in even rounds after a random 5-150 ms, in
 * odd rounds a random 0-100 ms after the relay published its first row (so
 * that half the kills hit a relay at work whatever the start-up time); a
 * last child runs until the queue is empty. The relay's publisher appends each event id to
 * a file BEFORE it returns, so the file is what an external consumer
 * received. At the end:
 *   - every queued event was published at least once, and the consumer's
 *     dedup-by-id count is exactly the number of queued events;
 *   - every line of the file is a queued event (duplicates from a crash
 *     between publish and mark are counted and reported, nothing else);
 *   - first deliveries came in queue order;
 *   - every event in the store has exactly one queue row (append + queue
 *     were atomic through the crashes), the queue is empty, and SQLite's
 *     integrity check passes (read through the store's reader API).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "eddy/outbox.h"

#define ROUNDS 20
#define INITIAL_EVENTS 1500
#define PUBLISH_DELAY_US 1000 /* a slow broker: kills land mid-stream */

static char tmpdir[] = "/tmp/eddy-outbox-crash-XXXXXX";
static char db_path[600];
static char out_path[600];

/* ---- the child ------------------------------------------------------------ */

static int file_publish(void *self, const eddy_event *ev,
                        const char *destination, eddy_error *err)
{
    (void)destination;
    int fd = *(int *)self;
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", eddy_event_id(ev));
    usleep(PUBLISH_DELAY_US);
    /* One write(2) per line on an O_APPEND file: a SIGKILL leaves whole
     * lines only. */
    if (write(fd, line, (size_t)n) != n) {
        if (err) {
            err->code = EDDY_EIO;
            snprintf(err->message, sizeof err->message, "write failed");
        }
        return EDDY_EIO;
    }
    return EDDY_OK;
}

typedef struct producer {
    eddy_store *s;
    atomic_bool stop;
    unsigned seed;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    char stream[64];
    snprintf(stream, sizeof stream, "live-%d", (int)getpid());
    while (!atomic_load(&p->stop)) {
        eddy_event *evs[3];
        eddy_error err = {0};
        for (int i = 0; i < 3; i++)
            evs[i] = eddy_event_newf("order.placed", "crash-test", stream, &err,
                                     "{s:i}", "n", i);
        if (eddy_outbox_append(p->s, stream, EDDY_EXPECT_ANY, evs, 3, "crash",
                               NULL, &err) != EDDY_OK)
            fprintf(stderr, "child producer: %s\n", err.message);
        for (int i = 0; i < 3; i++)
            eddy_event_unref(evs[i]);
        usleep(2000 + rand_r(&p->seed) % 2000);
    }
    return NULL;
}

/* Runs a relay (and a producer) until killed; `final`: until the queue is
 * empty, then exits 0. */
static void child_main(bool final)
{
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddyt_store_open(db_path, &so, &err);
    if (!s) {
        fprintf(stderr, "child: open: %s\n", err.message);
        _exit(3);
    }
    int fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0)
        _exit(4);
    eddy_publisher pub = {.publish = file_publish, .self = &fd};
    eddy_outbox_relay_options o = {.page_rows = 64, .mark_batch = 16};
    eddy_outbox_relay *relay = eddy_outbox_relay_start(s, &pub, &o, &err);
    if (!relay) {
        fprintf(stderr, "child: relay: %s\n", err.message);
        _exit(5);
    }
    producer p = {.s = s, .seed = (unsigned)getpid()};
    pthread_t th;
    if (pthread_create(&th, NULL, produce, &p) != 0)
        _exit(6);
    if (final)
        usleep(50 * 1000); /* produce a little, then drain */
    else
        for (;;)
            pause(); /* until SIGKILL */
    atomic_store(&p.stop, true);
    pthread_join(th, NULL);
    int64_t left = 1;
    for (int i = 0; i < 60000 && left > 0; i++) {
        if (eddy_outbox_pending(s, NULL, &left, &err) != EDDY_OK) {
            fprintf(stderr, "child: pending: %s\n", err.message);
            _exit(7);
        }
        if (left > 0)
            usleep(5000);
    }
    int rc = eddy_outbox_relay_stop(relay, &err);
    eddy_outbox_relay_free(relay);
    eddy_store_close(s);
    close(fd);
    _exit(left == 0 && rc == EDDY_OK ? 0 : 8);
}

static pid_t spawn(bool final)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_main(final);
    return pid;
}

/* ---- the parent ----------------------------------------------------------- */

/* The store opened read-only, to look at what the children left. Closed
 * before the next fork (no threads inherited). */
static eddy_store *raw_open(void)
{
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddyt_store_open(db_path, &ro, &err);
    if (!s)
        fail_msg("read-only open: %s", err.message);
    return s;
}

static int64_t raw_int(eddy_store *s, const char *sql)
{
    int64_t v = 0;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &v, &err, sql, NULL) != EDDY_OK)
        fail_msg("%s: %s", sql, err.message);
    return v;
}

typedef struct queued queued;
struct queue_walk {
    queued *q;
    size_t total, k;
};

static size_t count_lines(void)
{
    FILE *f = fopen(out_path, "r");
    if (!f)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

struct queued {
    char id[EDDY_UUID_STRLEN];
    size_t seq_index; /* rank in queue order */
};

static int by_id(const void *a, const void *b)
{
    return strcmp(((const queued *)a)->id, ((const queued *)b)->id);
}

static int queue_row(const eddy_row *row, void *user)
{
    struct queue_walk *w = user;
    const char *id = eddy_row_text(row, 0);
    if (w->k < w->total) {
        snprintf(w->q[w->k].id, sizeof w->q[w->k].id, "%s", id ? id : "");
        w->q[w->k].seq_index = w->k;
        w->k++;
    }
    return 0;
}

static void test_relay_survives_sigkill(void **state)
{
    (void)state;
    eddy_error err = {0};
    /* Queue the first events from the parent, then close: no threads are
     * left in the parent when it forks. */
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddyt_store_open(db_path, &so, &err);
    assert_non_null(s);
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    size_t queued_n = 0;
    while (queued_n < INITIAL_EVENTS) {
        size_t n = 1 + (size_t)(rand_r(&seed) % 20);
        if (n > INITIAL_EVENTS - queued_n)
            n = INITIAL_EVENTS - queued_n;
        char stream[32];
        snprintf(stream, sizeof stream, "order-%zu", queued_n % 10);
        eddy_event *evs[20];
        for (size_t i = 0; i < n; i++) {
            evs[i] = eddy_event_newf("order.placed", "crash-test", stream, &err,
                                     "{s:i}", "n", (int)(queued_n + i));
            assert_non_null(evs[i]);
        }
        assert_int_equal(eddy_outbox_append(s, stream, EDDY_EXPECT_ANY, evs, n,
                                            "crash", NULL, &err), EDDY_OK);
        for (size_t i = 0; i < n; i++)
            eddy_event_unref(evs[i]);
        queued_n += n;
    }
    eddy_store_close(s);

    int mid_stream = 0;
    size_t lines_before = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pid = spawn(false);
        if (round % 2) {
            /* Odd rounds: the relay is at work (it published a row) before
             * the random kill, however long the child took to start (a
             * sanitizer build on a loaded machine takes tens of ms). */
            int64_t t0 = eddy_now_us();
            while (count_lines() == lines_before &&
                   eddy_now_us() - t0 < 20 * 1000000LL)
                usleep(1000);
            usleep((useconds_t)(rand_r(&seed) % 100) * 1000);
        } else {
            /* Even rounds: any moment, start-up included. */
            usleep((useconds_t)(5 + rand_r(&seed) % 146) * 1000);
        }
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        /* Killed, not failed on its own. */
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);
        size_t lines = count_lines();
        eddy_store *rs = raw_open();
        int64_t left = raw_int(rs, "SELECT count(*) FROM eddy_outbox "
                                   "WHERE sent_us IS NULL");
        eddy_store_close(rs);
        if (lines > lines_before && left > 0)
            mid_stream++;
        lines_before = lines;
    }
    /* The last relay drains the queue and exits. */
    pid_t pid = spawn(true);
    int status = 0;
    int64_t t0 = eddy_now_us();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (eddy_now_us() - t0 > 120 * 1000000LL) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the final relay did not drain the queue in 120 s");
        }
        usleep(10 * 1000);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* What was queued, in queue order. */
    eddy_store *rs = raw_open();
    /* The store's integrity, as its engine checks it. */
    char check[128] = "";
    eddyt_store_integrity(rs, check);
    assert_string_equal(check, "ok");
    assert_int_equal(raw_int(rs, "SELECT count(*) FROM eddy_outbox WHERE "
                                 "sent_us IS NULL"), 0);
    /* Append and queue were atomic through every crash. */
    assert_int_equal(raw_int(rs, "SELECT count(*) FROM events e LEFT JOIN "
                                 "eddy_outbox o ON o.event_id = e.id "
                                 "WHERE o.seq IS NULL"), 0);
    size_t total = (size_t)raw_int(rs, "SELECT count(*) FROM eddy_outbox");
    assert_int_equal(total, (size_t)raw_int(rs, "SELECT count(*) FROM events"));
    assert_true(total >= INITIAL_EVENTS);
    queued *q = calloc(total, sizeof *q);
    assert_non_null(q);
    struct queue_walk w = {.q = q, .total = total};
    assert_int_equal(eddy_store_sql_query(rs, queue_row, &w, &err,
                                          "SELECT event_id FROM eddy_outbox "
                                          "ORDER BY seq", NULL),
                     EDDY_OK);
    eddy_store_close(rs);
    size_t k = w.k;
    assert_int_equal(k, total);
    qsort(q, total, sizeof *q, by_id);

    /* What the consumer received, deduplicated by id. */
    unsigned *seen = calloc(total, sizeof *seen);
    assert_non_null(seen);
    FILE *f = fopen(out_path, "r");
    assert_non_null(f);
    char line[128];
    size_t lines = 0, distinct = 0, dups = 0;
    long last_first = -1;
    bool in_order = true;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        queued key = {.seq_index = 0};
        size_t len = strlen(line);
        queued *hit = NULL;
        if (len < sizeof key.id) {
            memcpy(key.id, line, len + 1);
            hit = bsearch(&key, q, total, sizeof *q, by_id);
        }
        if (!hit)
            fail_msg("line %zu: \"%s\" is not a queued event", lines + 1, line);
        lines++;
        if (seen[hit->seq_index]++ == 0) {
            distinct++;
            if ((long)hit->seq_index <= last_first)
                in_order = false;
            last_first = (long)hit->seq_index;
        } else {
            dups++;
        }
    }
    fclose(f);
    print_message("%zu events queued (%d initial), %zu deliveries, %zu distinct,"
                  " %zu duplicates (republished after a kill); %d of %d kills "
                  "mid-stream\n", total, INITIAL_EVENTS, lines, distinct, dups,
                  mid_stream, ROUNDS);
    assert_int_equal(distinct, total); /* exact after dedup */
    for (size_t i = 0; i < total; i++)
        assert_true(seen[i] >= 1);      /* at least once */
    assert_true(in_order);
    assert_int_equal(lines, distinct + dups);
    /* The kills must have hit a relay at work for the test to mean
     * anything, and a kill between publish and mark shows as duplicates. */
    assert_true(mid_stream >= ROUNDS / 2);
    assert_true(dups > 0);
    free(seen);
    free(q);
}

static int setup_dir(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/crash.db", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/published.txt", tmpdir);
    return 0;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_survives_sigkill),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
