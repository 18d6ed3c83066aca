/*
 * tests/test_store_postgres_live.c - many processes, one PostgreSQL store:
 * no subscriber ever skips an event whose transaction commits late.
 *
 * 8 appender processes (2 threads each: one appends to the process's private
 * stream with exact expected versions, one to 4 shared streams) run for
 * 10 s, while 2 subscriber processes follow the log live from position 0.
 * In the middle, two transactions are held open for seconds:
 *   - a raw libpq transaction takes the append lock, appends one event to a
 *     shared stream the way eddy does, sleeps 3 s, commits;
 *   - one appender's write job appends and then sleeps 2 s before its group
 *     commit.
 * Every appender writes what it had acknowledged (id, stream, version,
 * position) to a pipe; every subscriber writes what it received. At the end:
 * each subscriber received positions 1..head once each, in order (nothing
 * skipped, nothing twice), every acknowledged event at its acknowledged
 * position, and each stream's versions in order, 1, 2, 3, ...
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
#include "store/postgres.h"
#include "store/store_internal.h"

#define APPENDERS 8
#define SUBSCRIBERS 2
#define SHARED 4
#define RUN_MS 10000

static pgt_server server;
static char url[512];

static int64_t now_ms(void) { return eddy_now_us() / 1000; }

/* ---- appender processes --------------------------------------------------- */

typedef struct app_thread {
    eddy_store *store;
    int fd;
    int proc, idx;
    unsigned seed;
    int64_t end_ms;
} app_thread;

/* One write per append (< PIPE_BUF): lines of threads never interleave. */
static void report(int fd, const char *sid, eddy_event **evs, size_t n,
                   const eddy_append_result *res)
{
    char buf[2048];
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "A %s %s %lld %lld\n",
                                eddy_event_id(evs[i]), sid,
                                (long long)(res->stream_version - (int64_t)(n - 1 - i)),
                                (long long)(res->first_position + (int64_t)i));
    if (write(fd, buf, len) != (ssize_t)len)
        _exit(5);
}

static void *app_main(void *arg)
{
    app_thread *t = arg;
    int64_t version = 0; /* the private stream's */
    char sid[32];
    while (now_ms() < t->end_ms) {
        size_t n = 1 + (size_t)(rand_r(&t->seed) % 5);
        eddy_event *evs[5];
        eddy_error err = {0};
        for (size_t i = 0; i < n; i++)
            if (!(evs[i] = eddy_event_newf("live.appended", "live-test", NULL, &err,
                                           "{s:i, s:i}", "p", t->proc, "i",
                                           (int)i)))
                _exit(4);
        int64_t expected = EDDY_EXPECT_ANY;
        if (t->idx == 0) {
            snprintf(sid, sizeof sid, "private-%d", t->proc);
            expected = version;
        } else {
            snprintf(sid, sizeof sid, "shared-%u", rand_r(&t->seed) % SHARED);
        }
        eddy_append_result res;
        if (eddy_store_append(t->store, sid, expected, evs, n, &res, &err) !=
            EDDY_OK) {
            dprintf(t->fd, "E %s\n", err.message);
            _exit(3);
        }
        if (t->idx == 0)
            version = res.stream_version;
        report(t->fd, sid, evs, n, &res);
        for (size_t i = 0; i < n; i++)
            eddy_event_unref(evs[i]);
    }
    return NULL;
}

typedef struct slow_job {
    eddy_event *ev;
    eddy_append_result res;
} slow_job;

/* Appends, then keeps the group commit open for 2 s. */
static int slow_job_fn(eddy_txn *txn, void *arg, eddy_error *err)
{
    slow_job *j = arg;
    int rc = eddy_txn_append(txn, "shared-1", EDDY_EXPECT_ANY, &j->ev, 1,
                              &j->res, err);
    usleep(2000000);
    return rc;
}

static void appender_process(int proc, int fd)
{
    eddy_error err = {0};
    /* Room for the transactions held open on purpose. */
    eddy_store_options o = {.busy_timeout_ms = 30000};
    eddy_store *s = eddy_store_open(url, &o, &err);
    if (!s) {
        dprintf(fd, "E open: %s\n", err.message);
        _exit(2);
    }
    int64_t start = now_ms();
    app_thread t[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        t[i] = (app_thread){s, fd, proc, i, (unsigned)(proc * 7919 + i),
                            start + RUN_MS};
        pthread_create(&th[i], NULL, app_main, &t[i]);
    }
    if (proc == 0) { /* the delayed commit, at 6 s */
        usleep(6000000);
        slow_job j = {.ev = eddy_event_newf("live.slow", "live-test", NULL, &err,
                                            "{s:b}", "slow", 1)};
        if (!j.ev || eddyi_store_write(s, slow_job_fn, &j, &err) != EDDY_OK) {
            dprintf(fd, "E slow job: %s\n", err.message);
            _exit(6);
        }
        report(fd, "shared-1", &j.ev, 1, &j.res);
        eddy_event_unref(j.ev);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    eddy_store_close(s);
    _exit(0);
}

/* ---- subscriber processes ---------------------------------------------------- */

typedef struct sub_ctx {
    int fd;
    atomic_llong last;
} sub_ctx;

static int on_record(const eddy_record *rec, void *user)
{
    sub_ctx *c = user;
    char buf[256];
    int len = snprintf(buf, sizeof buf, "R %lld %s %s %lld\n",
                       (long long)rec->position, eddy_event_id(rec->event),
                       rec->stream_id, (long long)rec->stream_version);
    if (write(c->fd, buf, (size_t)len) != len)
        _exit(5);
    atomic_store(&c->last, rec->position);
    return 0;
}

/* Follows the log until told the final head (on `ctl`), and reached it. */
static void subscriber_process(int fd, int ctl)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s) {
        dprintf(fd, "E open: %s\n", err.message);
        _exit(2);
    }
    sub_ctx c = {.fd = fd};
    atomic_init(&c.last, 0);
    eddy_store_subscription *sub = NULL;
    if (eddy_store_subscribe(s, 0, on_record, &c, NULL, &sub, &err) != EDDY_OK) {
        dprintf(fd, "E subscribe: %s\n", err.message);
        _exit(2);
    }
    long long head = 0;
    FILE *f = fdopen(ctl, "r");
    if (!f || fscanf(f, "%lld", &head) != 1)
        _exit(7);
    int64_t deadline = now_ms() + 60000;
    while (atomic_load(&c.last) < head && now_ms() < deadline)
        usleep(10000);
    int rc = eddy_store_subscription_stop(sub, &err);
    if (rc != EDDY_OK)
        dprintf(fd, "E subscription: %s\n", err.message);
    eddy_store_subscription_free(sub);
    eddy_store_close(s);
    _exit(rc == EDDY_OK && atomic_load(&c.last) >= head ? 0 : 8);
}

/* ---- the held-open raw transaction --------------------------------------------- */

typedef struct rec {
    char id[40];
    char stream[24];
    long long version;
    long long position;
} rec;

typedef struct recs {
    rec *v;
    size_t n, cap;
} recs;

static void recs_add(recs *r, const rec *x)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4096;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = *x;
}

typedef struct held {
    rec ack;
    int ok;
    char error[512];
    int64_t held_ms;
} held;

static PGresult *held_exec(PGconn *c, const char *sql, int n,
                           const char *const *values, const int *lengths,
                           const int *formats)
{
    return PQexecParams(c, sql, n, NULL, values, lengths, formats, 0);
}

/* At 3 s: takes the append lock, appends one event to shared-0 as eddy
 * does, holds the transaction open for 3 s, commits. */
static void *held_main(void *arg)
{
    held *h = arg;
    usleep(3000000);
    PGconn *c = PQconnectdb(url);
    PGresult *r = NULL;
    eddy_event *ev = eddy_event_newf("live.held", "live-test", NULL, NULL,
                                     "{s:b}", "held", 1);
    size_t len = 0;
    char *payload = ev ? eddy_event_encode(ev, &len) : NULL;
    char lock[160];
    snprintf(lock, sizeof lock,
             "BEGIN; SELECT pg_advisory_xact_lock(%d, "
             "'events'::regclass::oid::bigint::int4)",
             EDDYI_PG_LOCK_CLASS);
    if (PQstatus(c) != CONNECTION_OK || !payload)
        goto fail;
    r = PQexec(c, lock);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto fail;
    PQclear(r);
    r = PQexec(c, "SELECT COALESCE(max(position), 0) + 1, "
                  "COALESCE((SELECT version FROM eddy_streams WHERE stream_id "
                  "= 'shared-0'), 0) + 1 FROM events");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto fail;
    snprintf(h->ack.id, sizeof h->ack.id, "%s", eddy_event_id(ev));
    snprintf(h->ack.stream, sizeof h->ack.stream, "shared-0");
    h->ack.position = atoll(PQgetvalue(r, 0, 0));
    h->ack.version = atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
    char pos[32], ver[32], now[32];
    snprintf(pos, sizeof pos, "%lld", h->ack.position);
    snprintf(ver, sizeof ver, "%lld", h->ack.version);
    snprintf(now, sizeof now, "%lld", (long long)eddy_now_us());
    const char *values[] = {pos, h->ack.id, ver, now, payload};
    int lengths[] = {0, 0, 0, 0, (int)len};
    int formats[] = {0, 0, 0, 0, 1};
    r = held_exec(c,
                  "INSERT INTO events(position, id, stream_id, "
                  "stream_version, type, recorded_us, payload) VALUES($1, $2, "
                  "'shared-0', $3, 'live.held', $4, $5)",
                  5, values, lengths, formats);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(r);
    r = held_exec(c,
                  "INSERT INTO eddy_streams VALUES('shared-0', $1) ON CONFLICT "
                  "(stream_id) DO UPDATE SET version = excluded.version",
                  1, (const char *const[]){ver}, NULL, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(r);
    int64_t t0 = now_ms();
    usleep(3000000);
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK ||
        strcmp(PQcmdStatus(r), "COMMIT") != 0)
        goto fail;
    h->held_ms = now_ms() - t0;
    h->ok = 1;
fail:
    if (!h->ok)
        snprintf(h->error, sizeof h->error, "%s%s",
                 r ? PQresultErrorMessage(r) : "", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    free(payload);
    eddy_event_unref(ev);
    return NULL;
}

/* ---- the parent ----------------------------------------------------------------- */

typedef struct reader {
    int fd;
    char partial[512];
    size_t plen;
    recs *into;
    bool open;
} reader;

static void feed(reader *r, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (r->plen < sizeof r->partial - 1)
                r->partial[r->plen++] = data[i];
            continue;
        }
        r->partial[r->plen] = 0;
        r->plen = 0;
        if (r->partial[0] == 'E')
            fail_msg("a child failed: %s", r->partial);
        rec x = {0};
        if (r->partial[0] == 'A' &&
            sscanf(r->partial, "A %39s %23s %lld %lld", x.id, x.stream,
                   &x.version, &x.position) == 4)
            recs_add(r->into, &x);
        else if (r->partial[0] == 'R' &&
                 sscanf(r->partial, "R %lld %39s %23s %lld", &x.position, x.id,
                        x.stream, &x.version) == 4)
            recs_add(r->into, &x);
        else
            fail_msg("bad line \"%s\"", r->partial);
    }
}

/* Reads whatever the children wrote, for up to `ms`. */
static void pump(reader *rd, int n, int ms)
{
    struct pollfd p[APPENDERS + SUBSCRIBERS];
    int map[APPENDERS + SUBSCRIBERS], k = 0;
    for (int i = 0; i < n; i++)
        if (rd[i].open) {
            p[k] = (struct pollfd){.fd = rd[i].fd, .events = POLLIN};
            map[k++] = i;
        }
    if (k == 0 || poll(p, (nfds_t)k, ms) <= 0)
        return;
    for (int i = 0; i < k; i++) {
        if (!p[i].revents)
            continue;
        char buf[65536];
        ssize_t got = read(p[i].fd, buf, sizeof buf);
        if (got <= 0)
            rd[map[i]].open = false;
        else
            feed(&rd[map[i]], buf, (size_t)got);
    }
}

static int by_position(const void *a, const void *b)
{
    long long x = ((const rec *)a)->position, y = ((const rec *)b)->position;
    return x < y ? -1 : x > y;
}

static void check_subscriber(int k, const recs *got, recs *acks,
                             long long head)
{
    /* Positions 1..head, each once, in the order delivered. */
    if ((long long)got->n != head)
        fail_msg("subscriber %d received %zu records, the head is %lld", k,
                 got->n, head);
    for (size_t i = 0; i < got->n; i++)
        if (got->v[i].position != (long long)i + 1)
            fail_msg("subscriber %d: record %zu has position %lld (skipped or "
                     "repeated)", k, i, got->v[i].position);
    /* Every stream's versions in order: 1, 2, 3, ... */
    struct { char stream[24]; long long version; } seen[APPENDERS + SHARED];
    int nseen = 0;
    for (size_t i = 0; i < got->n; i++) {
        int s = 0;
        while (s < nseen && strcmp(seen[s].stream, got->v[i].stream) != 0)
            s++;
        if (s == nseen) {
            if (nseen == APPENDERS + SHARED)
                fail_msg("unexpected stream %s", got->v[i].stream);
            snprintf(seen[nseen].stream, sizeof seen[0].stream, "%s",
                     got->v[i].stream);
            seen[nseen++].version = 0;
        }
        if (got->v[i].version != ++seen[s].version)
            fail_msg("subscriber %d: stream %s version %lld after %lld", k,
                     got->v[i].stream, got->v[i].version, seen[s].version - 1);
    }
    /* Every acknowledged event, at its position. */
    for (size_t i = 0; i < acks->n; i++) {
        const rec *a = &acks->v[i];
        if (a->position < 1 || a->position > head)
            fail_msg("acknowledged %s at %lld is beyond the head %lld", a->id,
                     a->position, head);
        const rec *r = &got->v[a->position - 1];
        if (strcmp(r->id, a->id) != 0 || strcmp(r->stream, a->stream) != 0 ||
            r->version != a->version)
            fail_msg("subscriber %d: position %lld is %s %s v%lld, acknowledged "
                     "%s %s v%lld", k, a->position, r->id, r->stream, r->version,
                     a->id, a->stream, a->version);
    }
}

static void test_many_processes_late_commits(void **state)
{
    (void)state;
    reader rd[APPENDERS + SUBSCRIBERS];
    recs acks = {0}, got[SUBSCRIBERS] = {{0}};
    pid_t pids[APPENDERS + SUBSCRIBERS];
    int ctl[SUBSCRIBERS];
    for (int i = 0; i < SUBSCRIBERS; i++) {
        int out[2], in[2];
        assert_int_equal(pipe(out), 0);
        assert_int_equal(pipe(in), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(out[0]);
            close(in[1]);
            subscriber_process(out[1], in[0]);
        }
        close(out[1]);
        close(in[0]);
        ctl[i] = in[1];
        pids[APPENDERS + i] = pid;
        rd[APPENDERS + i] = (reader){.fd = out[0], .into = &got[i], .open = true};
    }
    usleep(300000); /* the subscribers are live before the first append */
    int64_t start = now_ms();
    for (int i = 0; i < APPENDERS; i++) {
        int out[2];
        assert_int_equal(pipe(out), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(out[0]);
            appender_process(i, out[1]);
        }
        close(out[1]);
        pids[i] = pid;
        rd[i] = (reader){.fd = out[0], .into = &acks, .open = true};
    }
    held h = {0};
    pthread_t hth;
    pthread_create(&hth, NULL, held_main, &h);
    /* Until every appender is done. */
    for (;;) {
        bool any = false;
        for (int i = 0; i < APPENDERS; i++)
            any |= rd[i].open;
        if (!any)
            break;
        pump(rd, APPENDERS + SUBSCRIBERS, 100);
        if (now_ms() - start > RUN_MS + 60000)
            fail_msg("the appenders did not finish");
    }
    int64_t elapsed = now_ms() - start;
    for (int i = 0; i < APPENDERS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("appender %d ended with status %d", i, st);
    }
    pthread_join(hth, NULL);
    if (!h.ok)
        fail_msg("the held transaction failed: %s", h.error);
    recs_add(&acks, &h.ack);
    long long head = pgt_query_int(&server, "live",
                                   "SELECT max(position) FROM events");
    assert_true(head > 0);
    for (int i = 0; i < SUBSCRIBERS; i++) {
        dprintf(ctl[i], "%lld\n", head);
        close(ctl[i]);
    }
    for (;;) {
        bool any = false;
        for (int i = APPENDERS; i < APPENDERS + SUBSCRIBERS; i++)
            any |= rd[i].open;
        if (!any)
            break;
        pump(rd, APPENDERS + SUBSCRIBERS, 100);
    }
    for (int i = 0; i < SUBSCRIBERS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[APPENDERS + i], &st, 0), pids[APPENDERS + i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("subscriber %d ended with status %d", i, st);
    }
    print_message("%zu events acknowledged by %d processes in %lld ms (%.0f "
                  "events/s); held transaction open %lld ms at position %lld; "
                  "head %lld\n",
                  acks.n, APPENDERS, (long long)elapsed,
                  (double)acks.n * 1000.0 / (double)elapsed,
                  (long long)h.held_ms, h.ack.position, head);
    /* Acknowledged positions are unique: no two acks share one. */
    qsort(acks.v, acks.n, sizeof *acks.v, by_position);
    for (size_t i = 1; i < acks.n; i++)
        if (acks.v[i].position == acks.v[i - 1].position)
            fail_msg("two events acknowledged at position %lld",
                     acks.v[i].position);
    for (int i = 0; i < SUBSCRIBERS; i++)
        check_subscriber(i, &got[i], &acks, head);
    free(acks.v);
    for (int i = 0; i < SUBSCRIBERS; i++)
        free(got[i].v);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (pgt_start(&server) != 0) {
        fprintf(stderr, "cannot start PostgreSQL (scripts/test-servers.sh)\n");
        return 1;
    }
    if (pgt_exec(&server, "postgres", "CREATE DATABASE live") != 0) {
        pgt_stop(&server);
        return 1;
    }
    pgt_url(&server, "live", "", url, sizeof url);
    /* Create the schema once, before the processes race to open it. */
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    if (!s) {
        fprintf(stderr, "open %s: %s\n", url, err.message);
        pgt_stop(&server);
        return 1;
    }
    eddy_store_close(s);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_processes_late_commits),
    };
    int failed = cmocka_run_group_tests_name("store on postgres, many processes",
                                             tests, NULL, NULL);
    pgt_stop(&server);
    return failed ? 1 : 0;
}
