/*
 * tests/test_durable_members.c - one durable subscription, projection and
 * saga run by several members at once (src/reliability/durable_members.c,
 * src/cqrs/saga_lease.c).
 *
 * test_processes: real processes. The parent appends rounds of events
 * (one "m.step" per stream per round, data {"v": stream version}) from a
 * thread of its own while member processes (this program exec'd with
 * --member) run on the same store file:
 *   - "effects", TRANSACTIONAL: one row per event in a table whose key is
 *     the event id, inserted ON CONFLICT DO NOTHING: a second delivery
 *     leaves a 'duplicate' row in `violations`; a version that is not the
 *     stream's last + 1 leaves an 'order' row (both in the handler's
 *     transaction, so they are committed exactly as the effect would be);
 *   - "log", AT_LEAST_ONCE: the event id appended to a file;
 *   - projection "proj": the same checks in its own tables;
 *   - saga "msaga", one instance per stream: its state counts the steps
 *     and flags one out of order; each step sends a command whose
 *     transactional handler records its id (at least once).
 * Three members share the partitions; one is SIGKILLed mid-stream and
 * kept as a zombie, so that no member can tell its process is gone: its
 * partitions must stay its own until its leases end, then move (checked
 * against the leases' end as stored). A fourth member joins and gets its
 * share; another is SIGKILLed and reaped (its partitions move once a
 * member sees its process gone). At the end: every event exactly once
 * and in order per stream in the effects and the projection, every saga
 * instance at the stream's last version with no step out of order, every
 * command acknowledged, every event at least once in the log, no dead
 * letter, every partition free with its checkpoint at the head, and the
 * store passes its integrity check.
 *
 * In-process tests (one process, several store handles): two handles
 * share a name's partitions and a stop hands them over at once; a lease
 * taken by another member (written into the store, as a member that took
 * the partition after this one's lease expired would) fences the holder:
 * it applies nothing of that partition until the lease ends, and nothing
 * twice; a different partition count is refused while a member runs and
 * re-created when none does.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "test_util.h"

#define PARTS 12
#define LEASE_MS 2000
#define STREAMS 24
#define ROUNDS 30
#define TOTAL (STREAMS * ROUNDS)
#define WAIT_MS 180000

static char self[4096];
static char dir[64], store_path[128], log_path[128];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static eddy_store *open_store(void)
{
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_NORMAL};
    eddy_store *s = eddy_store_open(store_path, &so, &err);
    if (!s)
        fail_msg("open %s: %s", store_path, err.message);
    return s;
}

/* ---- the checks every applier makes in its transaction ------------------ */

/* Records `ev` in table effects (proj_effects for the projection; key: the
 * event id) and moves its stream's version in effects_order (proj_order)
 * from v - 1 to v; a second delivery, or a version out of order, leaves a
 * row in `violations` instead (in the same transaction). */
static int check_apply(eddy_txn *txn, const eddy_event *ev, const char *who,
                       bool proj, eddy_error *err)
{
    json_int_t v = 0;
    if (eddy_event_unpack(ev, err, "{s:I}", "v", &v) != EDDY_OK)
        return err->code ? err->code : EDDY_EINVAL;
    const char *stream = eddy_event_subject(ev);
    int64_t changes = 0;
    int rc = eddy_txn_exec(
        txn, &changes, err,
        proj ? "INSERT INTO proj_effects(event_id, stream, v, member) "
               "VALUES($1, $2, $3, $4) ON CONFLICT(event_id) DO NOTHING"
             : "INSERT INTO effects(event_id, stream, v, member) "
               "VALUES($1, $2, $3, $4) ON CONFLICT(event_id) DO NOTHING",
        "ssIs", eddy_event_id(ev), stream, (int64_t)v, who);
    if (rc == EDDY_OK && changes == 0)
        rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO violations(kind, event_id, detail) "
                           "VALUES('duplicate', $1, $2)",
                           "ss", eddy_event_id(ev), who);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, &changes, err,
                           proj ? "UPDATE proj_order SET v = $2 WHERE "
                                  "stream = $1 AND v = $3"
                                : "UPDATE effects_order SET v = $2 WHERE "
                                  "stream = $1 AND v = $3",
                           "sII", stream, (int64_t)v, (int64_t)v - 1);
    if (rc == EDDY_OK && changes == 0 && v == 1)
        rc = eddy_txn_exec(txn, &changes, err,
                           proj ? "INSERT INTO proj_order(stream, v) "
                                  "VALUES($1, 1) ON CONFLICT(stream) "
                                  "DO NOTHING"
                                : "INSERT INTO effects_order(stream, v) "
                                  "VALUES($1, 1) ON CONFLICT(stream) "
                                  "DO NOTHING",
                           "s", stream);
    if (rc == EDDY_OK && changes == 0) {
        char detail[128];
        snprintf(detail, sizeof detail, "%s %s v%lld", who, stream,
                 (long long)v);
        rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO violations(kind, event_id, detail) "
                           "VALUES('order', $1, $2)",
                           "ss", eddy_event_id(ev), detail);
    }
    return rc;
}

static int setup_tables(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    static const char *const ddl[] = {
        "CREATE TABLE IF NOT EXISTS effects(event_id TEXT PRIMARY KEY, "
        "stream TEXT NOT NULL, v BIGINT NOT NULL, member TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS effects_order(stream TEXT PRIMARY KEY, "
        "v BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS proj_effects(event_id TEXT PRIMARY KEY, "
        "stream TEXT NOT NULL, v BIGINT NOT NULL, member TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS proj_order(stream TEXT PRIMARY KEY, "
        "v BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS violations(kind TEXT NOT NULL, "
        "event_id TEXT NOT NULL, detail TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS acks(cmd_id TEXT PRIMARY KEY, "
        "stream TEXT NOT NULL, v BIGINT NOT NULL)",
    };
    for (size_t i = 0; i < sizeof ddl / sizeof ddl[0]; i++) {
        int rc = eddy_txn_exec(txn, NULL, err, ddl[i], NULL);
        if (rc != EDDY_OK)
            return rc;
    }
    return EDDY_OK;
}

/* ---- a member process --------------------------------------------------- */

static char member_tag[64];
static int log_fd = -1;

static int effects_fn(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                      void *user)
{
    (void)user;
    eddy_error e = {0};
    int rc = check_apply(txn, ev, member_tag, false, &e);
    return rc == EDDY_OK ? EDDY_OK : eddy_ctx_fail(ctx, rc, "%s", e.message);
}

static int log_fn(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)user;
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", eddy_event_id(ev));
    if (write(log_fd, line, (size_t)n) != n) /* one O_APPEND write a line */
        return eddy_ctx_fail(ctx, EDDY_EIO, "log: %s", strerror(errno));
    return EDDY_OK;
}

static int proj_apply(eddy_txn *txn, const eddy_event *ev, void *user,
                      eddy_error *err)
{
    (void)user;
    return check_apply(txn, ev, member_tag, true, err);
}

static int saga_correlate(const eddy_event *ev, char *id, size_t size,
                          void *user)
{
    (void)user;
    snprintf(id, size, "%s", eddy_event_subject(ev));
    return EDDY_OK;
}

static int saga_on_event(eddy_saga_ctx *sc, json_t *state,
                         const eddy_event *ev, void *user)
{
    (void)user;
    json_int_t v = 0;
    if (eddy_event_unpack(ev, NULL, "{s:I}", "v", &v) != EDDY_OK)
        return eddy_saga_ctx_fail(sc, EDDY_EINVAL, "no v");
    json_int_t n = json_integer_value(json_object_get(state, "n"));
    if (v != n + 1)
        json_object_set_new(state, "bad", json_true());
    json_object_set_new(state, "n", json_integer(v));
    return eddy_saga_send(sc, "ack", "{s:s, s:I}", "stream",
                          eddy_event_subject(ev), "v", v);
}

static int ack_fn(eddy_txn *txn, const eddy_command *cmd, void *user,
                  eddy_error *err)
{
    (void)user;
    const char *stream = NULL;
    json_int_t v = 0;
    if (json_unpack(cmd->data, "{s:s, s:I}", "stream", &stream, "v", &v) != 0)
        return eddy_error_set(err, EDDY_EINVAL, "ack without stream, v");
    return eddy_txn_exec(txn, NULL, err,
                         "INSERT INTO acks(cmd_id, stream, v) VALUES($1, $2, "
                         "$3) ON CONFLICT(cmd_id) DO NOTHING",
                         "ssI", cmd->id, stream, (int64_t)v);
}

static const char *const STEP[] = {"m.step"};

static const eddy_projection_def proj_def = {
    .name = "proj",
    .pattern = "m.step",
    .apply = proj_apply,
    .workers = 2,
    .partitions = PARTS,
    .lease_ms = LEASE_MS,
};

static const eddy_saga_def saga_def = {
    .name = "msaga",
    .start_types = STEP,
    .start_count = 1,
    .correlate = saga_correlate,
    .on_event = saga_on_event,
};

/* Runs until SIGTERM; exits 0 after a clean stop. Never returns. */
static void member_main(const char *tag)
{
    alarm(WAIT_MS / 1000 + 120); /* never outlive a broken test */
    snprintf(member_tag, sizeof member_tag, "%s", tag);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    eddy_log_set(eddy_log_stderr, EDDY_LOG_WARN, NULL);
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    eddy_store *s = open_store();
    eddy_error err = {0};
    eddy_command_bus *cb = eddy_command_bus_new();
    if (log_fd < 0 || !cb ||
        eddy_command_bus_register_txn(cb, "ack", ack_fn, NULL, &err) !=
            EDDY_OK) {
        fprintf(stderr, "member %s: setup: %s\n", tag, err.message);
        _exit(2);
    }
    eddy_durable_options eo = {.name = "effects",
                               .patterns = (const char *const[]){"m.step"},
                               .pattern_count = 1,
                               .mode = EDDY_DELIVERY_TRANSACTIONAL,
                               .txn_handler = effects_fn,
                               .workers = 2,
                               .partitions = PARTS,
                               .lease_ms = LEASE_MS};
    eddy_durable_options lo = {.name = "log",
                               .patterns = (const char *const[]){"m.step"},
                               .pattern_count = 1,
                               .handler = log_fn,
                               .workers = 2,
                               .partitions = PARTS,
                               .lease_ms = LEASE_MS};
    eddy_saga_options sop = {.workers = 2, .dispatchers = 2,
                             .partitions = PARTS, .lease_ms = LEASE_MS};
    eddy_durable *de = eddy_durable_start(s, &eo, &err);
    eddy_durable *dl = de ? eddy_durable_start(s, &lo, &err) : NULL;
    eddy_projection *p = dl ? eddy_projection_start(s, &proj_def, &err)
                            : NULL;
    eddy_saga *sg = p ? eddy_saga_start(s, &saga_def, cb, &sop, &err) : NULL;
    if (!sg) {
        fprintf(stderr, "member %s: start: %s\n", tag, err.message);
        _exit(3);
    }
    printf("ready\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&term, &sig);
    int rc = eddy_saga_stop(sg, &err);
    if (rc == EDDY_OK)
        rc = eddy_projection_stop(p, &err);
    if (rc == EDDY_OK)
        rc = eddy_durable_stop(dl, &err);
    if (rc == EDDY_OK)
        rc = eddy_durable_stop(de, &err);
    if (rc != EDDY_OK)
        fprintf(stderr, "member %s: stop: %s %s\n", tag, eddy_errname(rc),
                err.message);
    eddy_saga_free(sg);
    eddy_projection_free(p);
    eddy_durable_free(dl);
    eddy_durable_free(de);
    eddy_command_bus_free(cb);
    eddy_store_close(s);
    close(log_fd);
    _exit(rc == EDDY_OK ? 0 : 4);
}

/* ---- the parent ----------------------------------------------------------- */

struct member {
    pid_t pid;
    char owner[320]; /* "pid@host", as its lease rows name it */
};

static void owner_of(pid_t pid, char *out, size_t size)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    snprintf(out, size, "%ld@%s", (long)pid, host);
}

/* Starts a member (fork, then exec of this program at once) and waits for
 * its "ready". */
static void spawn(struct member *m, const char *tag)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, "--member", dir, tag, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[16] = "";
    size_t n = 0;
    while (n < 6) {
        ssize_t r = read(fds[0], buf + n, 6 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fds[0]);
    if (strncmp(buf, "ready\n", 6) != 0)
        fail_msg("member %s did not start", tag);
    m->pid = pid;
    owner_of(pid, m->owner, sizeof m->owner);
}

static int64_t scalar(eddy_store *s, const char *sql, const char *params, ...)
{
    /* eddy_store_sql_int takes its parameters directly: one text at most
     * here. */
    const char *a = NULL;
    va_list ap;
    va_start(ap, params);
    if (params && *params)
        a = va_arg(ap, const char *);
    va_end(ap);
    int64_t v = 0;
    eddy_error err = {0};
    int rc = a ? eddy_store_sql_int(s, &v, &err, sql, "s", a)
               : eddy_store_sql_int(s, &v, &err, sql, NULL);
    if (rc != EDDY_OK)
        fail_msg("%s: %s", sql, err.message);
    return v;
}

/* Partitions of "effects" held by the process named `owner`. */
static int64_t held_by(eddy_store *s, const char *owner)
{
    return scalar(s, "SELECT count(*) FROM eddy_leases WHERE subscription = "
                     "'effects' AND owner = $1", "s", owner);
}

/* Waits (at most `ms`) until `fn` says yes. */
static bool wait_for(bool (*fn)(eddy_store *, void *), eddy_store *s,
                     void *user, int ms)
{
    for (int waited = 0; waited < ms; waited += 20) {
        if (fn(s, user))
            return true;
        sleep_ms(20);
    }
    return fn(s, user);
}

struct share {
    struct member *m;
    size_t n;
};

/* Every member in `sh` holds its share of "effects" (PARTS / n). */
static bool shared_evenly(eddy_store *s, void *user)
{
    struct share *sh = user;
    int64_t sum = 0;
    for (size_t i = 0; i < sh->n; i++) {
        int64_t h = held_by(s, sh->m[i].owner);
        if (h != PARTS / (int64_t)sh->n)
            return false;
        sum += h;
    }
    return sum == PARTS;
}

static bool none_held(eddy_store *s, void *user)
{
    return held_by(s, user) == 0;
}

/* The appender: one event per stream per round, up to `limit` rounds (the
 * test raises it phase by phase, so that events keep coming while members
 * die and join). */
struct appender {
    pthread_t thread;
    eddy_store *s;
    atomic_int rounds;
    atomic_int limit;
    int rc;
    eddy_error err;
};

static void *appender_main(void *arg)
{
    struct appender *a = arg;
    for (int r = 1; r <= ROUNDS && a->rc == EDDY_OK; r++) {
        while (atomic_load(&a->limit) < r)
            sleep_ms(10);
        for (int k = 0; k < STREAMS && a->rc == EDDY_OK; k++) {
            char stream[16];
            snprintf(stream, sizeof stream, "s%03d", k);
            eddy_event *ev = eddy_event_newf("m.step", "test", stream,
                                             &a->err, "{s:i}", "v", r);
            if (!ev) {
                a->rc = a->err.code ? a->err.code : EDDY_ENOMEM;
                break;
            }
            a->rc = eddy_store_append(a->s, stream, r - 1, &ev, 1, NULL,
                                      &a->err);
            eddy_event_unref(ev);
        }
        atomic_store(&a->rounds, r);
        sleep_ms(60);
    }
    return NULL;
}

/* Every handler is done with every event. The at-least-once log leaves no
 * rows of its own: its checkpoint at the head says it (a member stopped
 * before that would leave the rest to the next start, and check_log would
 * count them missing). */
static bool all_done(eddy_store *s, void *user)
{
    (void)user;
    int64_t head = 0;
    eddy_error e = {0};
    if (eddy_store_head(s, &head, &e) != EDDY_OK)
        return false;
    return scalar(s, "SELECT count(*) FROM effects", NULL) == TOTAL &&
           scalar(s, "SELECT coalesce(max(position), 0) FROM "
                     "eddy_checkpoints WHERE name = 'log'", NULL) >= head &&
           scalar(s, "SELECT count(*) FROM proj_effects", NULL) == TOTAL &&
           scalar(s, "SELECT count(*) FROM acks", NULL) == TOTAL &&
           scalar(s, "SELECT count(*) FROM eddy_saga_commands WHERE state "
                     "= 'pending'", NULL) == 0;
}

static void wait_rounds(struct appender *a, int r)
{
    for (int i = 0; i < WAIT_MS / 10 && atomic_load(&a->rounds) < r; i++)
        sleep_ms(10);
    assert_true(atomic_load(&a->rounds) >= r);
}

/* Member `tag` applied an effect: it is working when it is killed (the
 * members notice the parent's appends only by polling the file). */
static bool applied_some(eddy_store *s, void *tag)
{
    return scalar(s, "SELECT count(*) FROM effects WHERE member = $1", "s",
                  (const char *)tag) > 0;
}

struct saga_seen {
    int instances, bad;
};

static int saga_row(const eddy_saga_info *info, void *user)
{
    struct saga_seen *w = user;
    w->instances++;
    if (json_integer_value(json_object_get(info->state, "n")) != ROUNDS ||
        json_object_get(info->state, "bad") || info->version != ROUNDS) {
        w->bad++;
        char *dump = json_dumps(info->state, JSON_COMPACT);
        fprintf(stderr, "saga instance %s: version %lld, state %s\n",
                info->id, (long long)info->version, dump ? dump : "?");
        free(dump);
    }
    return 0;
}

static int integrity_row(const eddy_row *row, void *user)
{
    const char *t = eddy_row_text(row, 0);
    snprintf(user, 64, "%s", t ? t : "(null)");
    return 1;
}

static int violation_row(const eddy_row *row, void *user)
{
    (void)user;
    fprintf(stderr, "violation: %s %s %s\n", eddy_row_text(row, 0),
            eddy_row_text(row, 1), eddy_row_text(row, 2));
    return 0;
}

/* Every event id of the store appears in the at-least-once log. */
static void check_log(eddy_store *s)
{
    FILE *fp = fopen(log_path, "r");
    assert_non_null(fp);
    char **ids = calloc(TOTAL * 4 + 1024, sizeof *ids);
    size_t n = 0;
    char line[128];
    while (n < TOTAL * 4 + 1024 && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        ids[n++] = strdup(line);
    }
    fclose(fp);
    eddy_cursor *c = NULL;
    eddy_error err = {0};
    assert_int_equal(eddy_store_read_all(s, 1, 0, &c, &err), EDDY_OK);
    eddy_record rec;
    int missing = 0;
    while (eddy_cursor_next(c, &rec, &err)) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(ids[i], eddy_event_id(rec.event)) == 0;
        missing += !found;
    }
    assert_int_equal(eddy_cursor_error(c), EDDY_OK);
    eddy_cursor_free(c);
    printf("log: %zu lines for %d events (at least once), %d missing\n", n,
           TOTAL, missing);
    assert_int_equal(missing, 0);
    assert_true(n >= TOTAL);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static void stop_member(struct member *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGTERM);
    int st = 0;
    assert_int_equal(waitpid(m->pid, &st, 0), m->pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("member %s ended with status %d", m->owner, st);
    m->pid = 0;
}

static void test_processes(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/eddy-members-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(store_path, sizeof store_path, "%s/store.db", dir);
    snprintf(log_path, sizeof log_path, "%s/log.txt", dir);
    eddy_store *s = open_store();
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_tables, NULL, &err),
                     EDDY_OK);

    struct member m[4] = {{0}};
    spawn(&m[0], "m0");
    spawn(&m[1], "m1");
    spawn(&m[2], "m2");
    struct share sh = {.m = m, .n = 3};
    if (!wait_for(shared_evenly, s, &sh, 30000))
        fail_msg("three members never held %d partitions each", PARTS / 3);

    struct appender a = {.s = s};
    atomic_init(&a.rounds, 0);
    atomic_init(&a.limit, 10);
    assert_int_equal(pthread_create(&a.thread, NULL, appender_main, &a), 0);

    /* m0 dies mid-stream, and stays a zombie: nobody can tell its process
     * is gone, so its partitions must wait for the end of its leases. */
    wait_rounds(&a, 6);
    if (!wait_for(applied_some, s, "m0", WAIT_MS))
        fail_msg("m0 never applied an event");
    assert_int_equal(kill(m[0].pid, SIGKILL), 0);
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)m[0].pid, &si, WEXITED | WNOWAIT),
                     0);
    int64_t held = held_by(s, m[0].owner);
    /* Its lease: its member row's end (renewed with each of its
     * transactions, and every lease/3 by its coordinator). */
    int64_t ends = scalar(s, "SELECT max(expires_us) FROM eddy_members "
                             "WHERE subscription = 'effects' AND owner = $1",
                          "s", m[0].owner);
    assert_true(held > 0);
    if (!wait_for(none_held, s, m[0].owner, WAIT_MS))
        fail_msg("the partitions of the killed member never moved");
    int64_t moved = eddy_now_us();
    printf("killed member's %lld partitions moved %lld ms after its lease "
           "ended\n", (long long)held, (long long)(moved - ends) / 1000);
    assert_true(moved >= ends);
    assert_int_equal(waitpid(m[0].pid, NULL, 0), m[0].pid);
    m[0].pid = 0;

    /* A new member joins and gets its share. */
    spawn(&m[3], "m3");
    struct share sh2 = {.m = m + 1, .n = 3};
    if (!wait_for(shared_evenly, s, &sh2, 30000))
        fail_msg("the new member never got its share");

    /* m1 dies mid-stream and is reaped: a member on this host sees its
     * process gone. */
    atomic_store(&a.limit, 20);
    wait_rounds(&a, 16);
    if (!wait_for(applied_some, s, "m1", WAIT_MS))
        fail_msg("m1 never applied an event");
    assert_int_equal(kill(m[1].pid, SIGKILL), 0);
    assert_int_equal(waitpid(m[1].pid, NULL, 0), m[1].pid);
    if (!wait_for(none_held, s, m[1].owner, WAIT_MS))
        fail_msg("the partitions of the reaped member never moved");
    m[1].pid = 0;
    atomic_store(&a.limit, ROUNDS);

    assert_int_equal(pthread_join(a.thread, NULL), 0);
    if (a.rc != EDDY_OK)
        fail_msg("append: %s", a.err.message);
    if (!wait_for(all_done, s, NULL, WAIT_MS))
        fail_msg("not every event was handled: effects %lld, projection "
                 "%lld, acks %lld of %d",
                 (long long)scalar(s, "SELECT count(*) FROM effects", NULL),
                 (long long)scalar(s, "SELECT count(*) FROM proj_effects",
                                   NULL),
                 (long long)scalar(s, "SELECT count(*) FROM acks", NULL),
                 TOTAL);
    stop_member(&m[2]);
    stop_member(&m[3]);

    /* Exactly once and in order, per stream. */
    assert_int_equal(eddy_store_sql_query(s, violation_row, NULL, &err,
                                          "SELECT kind, event_id, detail "
                                          "FROM violations", NULL),
                     EDDY_OK);
    assert_int_equal(scalar(s, "SELECT count(*) FROM violations", NULL), 0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM effects", NULL), TOTAL);
    assert_int_equal(scalar(s, "SELECT count(*) FROM proj_effects", NULL),
                     TOTAL);
    assert_int_equal(scalar(s, "SELECT count(*) FROM effects_order WHERE v "
                               "= 30", NULL), STREAMS);
    assert_int_equal(scalar(s, "SELECT count(*) FROM proj_order WHERE v = "
                               "30", NULL), STREAMS);
    /* The work was shared: every member applied some (the last two,
     * after the last join, rounds 11 to 30 of their partitions). */
    assert_int_equal(scalar(s, "SELECT count(DISTINCT member) FROM effects",
                            NULL), 4);
    struct saga_seen sw = {0};
    assert_int_equal(eddy_saga_list(s, "msaga", NULL, saga_row, &sw, &err),
                     EDDY_OK);
    assert_int_equal(sw.instances, STREAMS);
    assert_int_equal(sw.bad, 0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM acks", NULL), TOTAL);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_dead_letters",
                            NULL), 0);
    /* Every member left: the partitions are free, each at the head. */
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_members", NULL), 0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_leases WHERE "
                               "member <> ''", NULL), 0);
    assert_int_equal(scalar(s, "SELECT count(*) FROM eddy_leases WHERE "
                               "subscription = 'effects'", NULL), PARTS);
    assert_int_equal(scalar(s, "SELECT min(position) FROM eddy_leases WHERE "
                               "subscription = 'effects'", NULL), head);
    assert_int_equal(scalar(s, "SELECT position FROM eddy_checkpoints WHERE "
                               "name = 'effects'", NULL), head);
    check_log(s);
    char check[64] = "";
    assert_int_equal(eddy_store_sql_query(s, integrity_row, check, &err,
                                          "PRAGMA integrity_check", NULL),
                     1);
    assert_string_equal(check, "ok");
    eddy_store_close(s);
    eddyt_rmtree(dir);
}

/* ---- in one process ------------------------------------------------------- */

struct fx_applied {
    atomic_int calls;
};

static int ip_fn(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                 void *user)
{
    struct fx_applied *f = user;
    eddy_error e = {0};
    int rc = check_apply(txn, ev, "in-process", false, &e);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, &e,
                           "INSERT INTO applied_at(event_id, at_us) "
                           "VALUES($1, $2)",
                           "sI", eddy_event_id(ev), eddy_now_us());
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "%s", e.message);
    atomic_fetch_add(&f->calls, 1);
    return EDDY_OK;
}

static int ip_tables(eddy_txn *txn, void *user, eddy_error *err)
{
    int rc = setup_tables(txn, user, err);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err,
                           "CREATE TABLE IF NOT EXISTS applied_at(event_id "
                           "TEXT PRIMARY KEY, at_us BIGINT NOT NULL)",
                           NULL);
    return rc;
}

static void ip_setup(const char *name)
{
    snprintf(dir, sizeof dir, "/tmp/eddy-members-%s-XXXXXX", name);
    assert_non_null(mkdtemp(dir));
    snprintf(store_path, sizeof store_path, "%s/store.db", dir);
}

/* Appends version `v` of streams k<from>..k<to-1>. */
static void append_round(eddy_store *s, int from, int to, int v)
{
    eddy_error err = {0};
    for (int k = from; k < to; k++) {
        char stream[16];
        snprintf(stream, sizeof stream, "k%03d", k);
        eddy_event *ev = eddy_event_newf("m.step", "test", stream, &err,
                                         "{s:i}", "v", v);
        assert_non_null(ev);
        if (eddy_store_append(s, stream, v - 1, &ev, 1, NULL, &err) !=
            EDDY_OK)
            fail_msg("append: %s", err.message);
        eddy_event_unref(ev);
    }
}

static eddy_durable *ip_start(eddy_store *s, struct fx_applied *f,
                              unsigned partitions, eddy_error *err)
{
    eddy_durable_options o = {.name = "shared",
                              .patterns = (const char *const[]){"m.step"},
                              .pattern_count = 1,
                              .mode = EDDY_DELIVERY_TRANSACTIONAL,
                              .txn_handler = ip_fn,
                              .user = f,
                              .workers = 2,
                              .partitions = partitions,
                              .lease_ms = 1000};
    return eddy_durable_start(s, &o, err);
}

/* Partitions of "shared" held, and by how many members. */
static int64_t shared_held(eddy_store *s)
{
    return scalar(s, "SELECT count(*) FROM eddy_leases WHERE subscription = "
                     "'shared' AND member <> ''", NULL);
}

static int64_t shared_members(eddy_store *s)
{
    return scalar(s, "SELECT count(DISTINCT member) FROM eddy_leases WHERE "
                     "subscription = 'shared' AND member <> ''", NULL);
}

static bool split_in_two(eddy_store *s, void *user)
{
    (void)user;
    return shared_members(s) == 2 && shared_held(s) == 8 &&
           scalar(s, "SELECT max(c) FROM (SELECT count(*) AS c FROM "
                     "eddy_leases WHERE subscription = 'shared' AND member "
                     "<> '' GROUP BY member)", NULL) == 4;
}

static bool one_holds(eddy_store *s, void *user)
{
    return shared_members(s) == 1 && shared_held(s) == *(int64_t *)user;
}

static bool effects_reach(eddy_store *s, void *user)
{
    return scalar(s, "SELECT count(*) FROM effects", NULL) ==
           *(int64_t *)user;
}

/* Two store handles share a name; a stop hands its partitions over. */
static void test_two_handles(void **state)
{
    (void)state;
    ip_setup("two");
    eddy_store *s1 = open_store(), *s2 = open_store();
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s1, ip_tables, NULL, &err), EDDY_OK);
    struct fx_applied f1 = {0}, f2 = {0};
    atomic_init(&f1.calls, 0);
    atomic_init(&f2.calls, 0);
    int64_t eight = 8;
    eddy_durable *d1 = ip_start(s1, &f1, 8, &err);
    assert_non_null(d1);
    /* Alone, it holds every partition. */
    assert_true(wait_for(one_holds, s1, &eight, 5000));
    eddy_durable *d2 = ip_start(s2, &f2, 8, &err);
    assert_non_null(d2);
    if (!wait_for(split_in_two, s1, NULL, 10000))
        fail_msg("two members never held 4 partitions each");
    for (int v = 1; v <= 5; v++)
        append_round(s1, 0, 40, v);
    int64_t want = 200;
    if (!wait_for(effects_reach, s1, &want, 30000))
        fail_msg("events not handled");
    assert_true(atomic_load(&f1.calls) > 0);
    assert_true(atomic_load(&f2.calls) > 0);
    /* A stop frees its partitions at once: the other takes them at its
     * next look (500 ms), without waiting for the lease (1 s) to end. */
    int64_t t0 = eddy_now_us();
    assert_int_equal(eddy_durable_stop(d2, &err), EDDY_OK);
    if (!wait_for(one_holds, s1, &eight, 5000))
        fail_msg("the stopped member's partitions did not move");
    printf("a stopped member's partitions moved in %lld ms\n",
           (long long)(eddy_now_us() - t0) / 1000);
    for (int v = 6; v <= 7; v++)
        append_round(s1, 0, 40, v);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s1, &head, &err), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d1, head, 30000), EDDY_OK);
    assert_int_equal(scalar(s1, "SELECT count(*) FROM effects", NULL), 280);
    assert_int_equal(scalar(s1, "SELECT count(*) FROM violations", NULL), 0);
    eddy_durable_free(d1);
    eddy_durable_free(d2);
    eddy_store_close(s2);
    eddy_store_close(s1);
    eddyt_rmtree(dir);
}

/* What another member does when it takes over a partition of a member
 * whose lease ended: it deletes that member's row and names itself in the
 * partition's lease row. The taker here is "intruder", live until
 * `*(int64_t *)user`, on another host. */
static int steal_fn(eddy_txn *txn, void *user, eddy_error *err)
{
    int64_t until = *(int64_t *)user, changes = 0;
    int rc = eddy_txn_exec(txn, &changes, err,
                           "DELETE FROM eddy_members WHERE subscription = "
                           "'shared'", NULL);
    if (rc == EDDY_OK && changes != 1)
        return eddy_error_set(err, EDDY_ENOTFOUND, "%lld members",
                              (long long)changes);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO eddy_members(subscription, member, "
                           "owner, partitions, joined_us, expires_us) "
                           "VALUES('shared', 'intruder', "
                           "'1@elsewhere.invalid', 4, 0, $1)",
                           "I", until);
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, &changes, err,
                           "UPDATE eddy_leases SET member = 'intruder', "
                           "owner = '1@elsewhere.invalid', expires_us = $1 "
                           "WHERE subscription = 'shared' AND part = 1",
                           "I", until);
    if (rc == EDDY_OK && changes != 1)
        rc = eddy_error_set(err, EDDY_ENOTFOUND, "no partition 1");
    return rc;
}

static bool all_back(eddy_store *s, void *user)
{
    (void)user;
    return shared_members(s) == 1 && shared_held(s) == 4 &&
           scalar(s, "SELECT count(*) FROM eddy_leases WHERE subscription = "
                     "'shared' AND member = 'intruder'", NULL) == 0;
}

/* The member id holding partition 0 of "shared" into `out`. */
static int first_member(const eddy_row *row, void *user)
{
    snprintf(user, 64, "%s", eddy_row_text(row, 0));
    return 0;
}

/*
 * A member that was taken for gone commits nothing more for its old
 * partitions: its member row is deleted and partition 1 given to another
 * member (as one that took it over after this one's lease ended would),
 * then events arrive in every partition. The member's next transaction
 * fails its fence, it drops its work and rejoins under a new id, sharing
 * with the other member; the events of partition 1 are applied only once
 * the other member's lease ended and the partition came back, and nothing
 * is applied twice.
 */
static void test_fence(void **state)
{
    (void)state;
    ip_setup("fence");
    eddy_store *s = open_store();
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, ip_tables, NULL, &err), EDDY_OK);
    struct fx_applied f = {0};
    atomic_init(&f.calls, 0);
    eddy_durable *d = ip_start(s, &f, 4, &err);
    assert_non_null(d);
    append_round(s, 0, 40, 1);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d, head, 30000), EDDY_OK);
    char before[64] = "";
    assert_int_equal(eddy_store_sql_query(s, first_member, before, &err,
                                          "SELECT member FROM eddy_leases "
                                          "WHERE subscription = 'shared' AND "
                                          "part = 0", NULL),
                     EDDY_OK);

    int64_t until = eddy_now_us() + 1500 * 1000;
    assert_int_equal(eddy_store_transact(s, steal_fn, &until, &err), EDDY_OK);
    append_round(s, 0, 40, 2);
    int64_t want = 80;
    if (!wait_for(effects_reach, s, &want, 30000))
        fail_msg("not every event was handled");
    if (!wait_for(all_back, s, NULL, 10000))
        fail_msg("the partitions never came back to the member");
    /* It rejoined under a new id. */
    char after[64] = "";
    assert_int_equal(eddy_store_sql_query(s, first_member, after, &err,
                                          "SELECT member FROM eddy_leases "
                                          "WHERE subscription = 'shared' AND "
                                          "part = 0", NULL),
                     EDDY_OK);
    assert_string_not_equal(before, after);
    /* Partition 1's events were applied only once the other member's
     * lease had ended. */
    int in_one = 0;
    for (int k = 0; k < 40; k++) {
        char stream[16];
        snprintf(stream, sizeof stream, "k%03d", k);
        if (eddy_partition_of(stream, 4) != 1)
            continue;
        in_one++;
        int64_t at = 0;
        assert_int_equal(eddy_store_sql_int(s, &at, &err,
                                            "SELECT a.at_us FROM applied_at "
                                            "a JOIN effects e ON e.event_id "
                                            "= a.event_id WHERE e.v = 2 AND "
                                            "e.stream = $1", "s", stream),
                         EDDY_OK);
        if (at < until)
            fail_msg("%s v2 applied %lld ms before the other member's lease "
                     "ended", stream, (long long)(until - at) / 1000);
    }
    assert_true(in_one > 0 && in_one < 40);
    assert_int_equal(scalar(s, "SELECT count(*) FROM effects", NULL), 80);
    assert_int_equal(scalar(s, "SELECT count(*) FROM violations", NULL), 0);
    eddy_durable_free(d);
    eddy_store_close(s);
    eddyt_rmtree(dir);
}

/* A different partition count: refused while a member runs, re-created
 * when none does (each new partition at the lowest old checkpoint). */
static void test_partition_count(void **state)
{
    (void)state;
    ip_setup("count");
    eddy_store *s1 = open_store(), *s2 = open_store();
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s1, ip_tables, NULL, &err), EDDY_OK);
    struct fx_applied f = {0};
    atomic_init(&f.calls, 0);
    eddy_durable *d1 = ip_start(s1, &f, 8, &err);
    assert_non_null(d1);
    append_round(s1, 0, 40, 1);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s1, &head, &err), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d1, head, 30000), EDDY_OK);

    eddy_error e2 = {0};
    assert_null(ip_start(s2, &f, 4, &e2));
    assert_int_equal(e2.code, EDDY_EBUSY);
    assert_non_null(strstr(e2.message, "runs with 8 partitions"));
    assert_non_null(strstr(e2.message, "asks for 4"));
    printf("refused: %s\n", e2.message);

    eddy_durable_free(d1);
    eddy_durable *d2 = ip_start(s2, &f, 4, &err);
    assert_non_null(d2);
    assert_int_equal(scalar(s2, "SELECT count(*) FROM eddy_leases WHERE "
                                "subscription = 'shared'", NULL), 4);
    assert_int_equal(scalar(s2, "SELECT min(position) FROM eddy_leases WHERE "
                                "subscription = 'shared'", NULL), head);
    append_round(s2, 0, 40, 2);
    assert_int_equal(eddy_store_head(s2, &head, &err), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d2, head, 30000), EDDY_OK);
    assert_int_equal(scalar(s2, "SELECT count(*) FROM effects", NULL), 80);
    assert_int_equal(scalar(s2, "SELECT count(*) FROM violations", NULL), 0);
    eddy_durable_free(d2);
    eddy_store_close(s2);
    eddy_store_close(s1);
    eddyt_rmtree(dir);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--member") == 0) {
        snprintf(dir, sizeof dir, "%s", argv[2]);
        snprintf(store_path, sizeof store_path, "%s/store.db", dir);
        snprintf(log_path, sizeof log_path, "%s/log.txt", dir);
        member_main(argv[3]);
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self[n] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_handles),
        cmocka_unit_test(test_fence),
        cmocka_unit_test(test_partition_count),
        cmocka_unit_test(test_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
