/*
 * tests/test_io_faults.c - I/O faults the way SQLite tests itself: a VFS
 * (faultvfs.h) fails the Nth write, sync or truncate with an I/O error or
 * "disk full", once or from then on, swept over N until an operation runs
 * without reaching the fault. For each fault, on the append, transactional
 * durable handler, projection and outbox paths:
 *   - every call either succeeds or returns an error with a message;
 *   - once the fault clears, the same process goes on (a new operation
 *     succeeds, a subscription catches up);
 *   - after reopening: everything acknowledged is there, handler effects
 *     exactly once, positions gap-free, PRAGMA integrity_check is "ok".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "faultvfs.h"
#include "test_util.h"

/* In memory when the machine has /dev/shm: the faults come from the VFS,
 * not the disk, and a sweep opens hundreds of stores. */
static char tmpdir[64];
static int counter;

#define MAX_SWEEP 400
#define ACK_MAX 64

/* The ids acknowledged during one run. */
struct acks {
    char ids[ACK_MAX][EDDY_UUID_STRLEN];
    int n;
};

static eddy_store *open_store(const char *path)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, NULL, &err);
    if (!s)
        fail_msg("open %s: %s", path, err.message);
    return s;
}

static eddy_event *new_event(int i)
{
    eddy_error err = {0};
    char subject[32];
    snprintf(subject, sizeof subject, "s-%d", i % 3);
    eddy_event *ev = eddy_event_newf("fault.tested", "io-fault-test", subject,
                                     &err, "{s:i}", "i", i);
    if (!ev)
        fail_msg("event: %s", err.message);
    return ev;
}

/* Appends one event to its subject's stream; records the id when
 * acknowledged; checks that a failure has a message. */
static int append_one(eddy_store *s, int i, struct acks *acks,
                      bool outbox)
{
    eddy_event *ev = new_event(i);
    eddy_error err = {0};
    const char *stream = eddy_event_subject(ev);
    int rc = outbox ? eddy_outbox_append(s, stream, EDDY_EXPECT_ANY, &ev, 1,
                                         "faults", NULL, &err)
                    : eddy_store_append(s, stream, EDDY_EXPECT_ANY, &ev, 1,
                                        NULL, &err);
    if (rc == EDDY_OK && acks && acks->n < ACK_MAX)
        snprintf(acks->ids[acks->n++], EDDY_UUID_STRLEN, "%s",
                 eddy_event_id(ev));
    if (rc != EDDY_OK && !err.message[0])
        fail_msg("append %d failed with %s and no message", i,
                 eddy_errname(rc));
    eddy_event_unref(ev);
    return rc;
}

/* Once the fault is cleared the process goes on: an append succeeds
 * (the writer may need a moment to recover). */
static void append_after_clear(eddy_store *s, int i, struct acks *acks,
                               bool outbox)
{
    int rc = EDDY_EIO;
    for (int tries = 0; tries < 50 && rc != EDDY_OK; tries++) {
        rc = append_one(s, i, acks, outbox);
        if (rc != EDDY_OK)
            usleep(20000);
    }
    assert_int_equal(rc, EDDY_OK);
}

static int64_t sql_int(eddy_store *s, const char *sql, const char *arg)
{
    int64_t v = -1;
    eddy_error err = {0};
    int rc = arg ? eddy_store_sql_int(s, &v, &err, sql, "s", arg)
                 : eddy_store_sql_int(s, &v, &err, sql, NULL);
    if (rc != EDDY_OK)
        fail_msg("%s: %s", sql, err.message);
    return v;
}

/* After reopening: acknowledged events present, positions gap-free, the
 * file intact. */
static void verify(const char *path, const struct acks *acks, bool outbox)
{
    eddy_store_options ro = {.read_only = true};
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, &ro, &err);
    if (!s)
        fail_msg("reopen %s: %s", path, err.message);
    assert_int_equal(sql_int(s, "SELECT count(*) FROM pragma_integrity_check "
                                "WHERE integrity_check = 'ok'",
                             NULL),
                     1);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(sql_int(s, "SELECT count(*) FROM events", NULL), head);
    for (int i = 0; i < acks->n; i++) {
        if (sql_int(s, "SELECT count(*) FROM events WHERE id = $1",
                    acks->ids[i]) != 1)
            fail_msg("acknowledged event %s is lost", acks->ids[i]);
        if (outbox &&
            sql_int(s, "SELECT count(*) FROM eddy_outbox WHERE event_id = $1",
                    acks->ids[i]) != 1)
            fail_msg("acknowledged outbox row of %s is lost", acks->ids[i]);
    }
    eddy_store_close(s);
}

static void new_path(char *path, size_t cap)
{
    snprintf(path, cap, "%s/f%d.db", tmpdir, counter++);
}

struct variant {
    int code;
    bool persistent;
    const char *name;
};

static const struct variant variants[] = {
    {SQLITE_IOERR, false, "one I/O error"},
    {SQLITE_IOERR, true, "I/O errors until cleared"},
    {SQLITE_FULL, false, "disk full once"},
    {SQLITE_FULL, true, "disk full until cleared"},
};

#define FAULT_OPS (FAULT_WRITE | FAULT_SYNC | FAULT_TRUNCATE)

/* ---- appends and the outbox ----------------------------------------------- */

static void sweep_appends(bool outbox)
{
    int total_faults = 0;
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        long n = 1;
        for (; n <= MAX_SWEEP; n++) {
            char path[256];
            new_path(path, sizeof path);
            struct acks acks = {0};
            eddy_store *s = open_store(path);
            for (int i = 0; i < 3; i++)
                assert_int_equal(append_one(s, i, &acks, outbox), EDDY_OK);
            faultvfs_arm(FAULT_OPS, n, variants[v].code,
                         variants[v].persistent);
            for (int i = 3; i < 8; i++)
                append_one(s, i, &acks, outbox);
            bool fired = atomic_load(&faultvfs.failures) > 0;
            faultvfs_clear();
            append_after_clear(s, 99, &acks, outbox);
            eddy_store_close(s);
            verify(path, &acks, outbox);
            if (!fired)
                break;
            total_faults++;
        }
        assert_true(n > 1);          /* some fault was injected */
        assert_true(n <= MAX_SWEEP); /* and the sweep got past them all */
        print_message("  %s: %s: %ld fault points\n",
                      outbox ? "outbox" : "append", variants[v].name, n - 1);
    }
    assert_true(total_faults > 0);
}

static void test_append_faults(void **state)
{
    (void)state;
    sweep_appends(false);
}

static void test_outbox_faults(void **state)
{
    (void)state;
    sweep_appends(true);
}

/* ---- consumers: a transactional handler and a projection ------------------ */

#define EVENTS 8

static int create_table(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err,
                         "CREATE TABLE IF NOT EXISTS effects("
                         "event_id TEXT PRIMARY KEY, i BIGINT)",
                         NULL);
}

/* One row per event: a second application violates the key. */
static int record_effect(eddy_txn *txn, const eddy_event *ev, eddy_error *err)
{
    int i = 0;
    if (eddy_event_unpack(ev, err, "{s:i}", "i", &i) != EDDY_OK)
        return EDDY_EINVAL;
    return eddy_txn_exec(txn, NULL, err,
                         "INSERT INTO effects(event_id, i) VALUES($1, $2)",
                         "si", eddy_event_id(ev), i);
}

static int on_event(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                    void *user)
{
    (void)ctx;
    (void)user;
    eddy_error err = {0};
    return record_effect(txn, ev, &err);
}

static int apply_event(eddy_txn *txn, const eddy_event *ev, void *user,
                       eddy_error *err)
{
    (void)user;
    return record_effect(txn, ev, err);
}

static int setup_effects(eddy_txn *txn, void *user, eddy_error *err)
{
    return create_table(txn, user, err);
}

static const eddy_projection_def effects_projection = {
    .name = "effects_view",
    .pattern = "fault.*",
    .setup = setup_effects,
    .apply = apply_event,
};

/* Starts the consumer; NULL-safe stop through the returned handles. */
struct consumer {
    eddy_durable *d;
    eddy_projection *p;
};

static int consumer_start(eddy_store *s, bool projection, struct consumer *c,
                          eddy_error *err)
{
    memset(c, 0, sizeof *c);
    if (projection) {
        c->p = eddy_projection_start(s, &effects_projection, err);
        return c->p ? EDDY_OK : err->code;
    }
    eddy_durable_options o = {
        .name = "effects",
        .mode = EDDY_DELIVERY_TRANSACTIONAL,
        .txn_handler = on_event,
        .workers = 2,
        /* Never give up during the test: effects must be exactly once. */
        .retry = {.max_attempts = 100000, .initial_delay_ms = 5,
                  .max_delay_ms = 50},
    };
    c->d = eddy_durable_start(s, &o, err);
    return c->d ? EDDY_OK : err->code;
}

static int consumer_wait(struct consumer *c, int64_t position, int ms)
{
    return c->p ? eddy_projection_wait_idle(c->p, position, ms)
                : eddy_durable_wait_idle(c->d, position, ms);
}

static void consumer_stop(struct consumer *c)
{
    eddy_projection_free(c->p);
    eddy_durable_free(c->d);
    memset(c, 0, sizeof *c);
}

static void sweep_consumer(bool projection)
{
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        long n = 1;
        for (; n <= MAX_SWEEP; n++) {
            char path[256];
            new_path(path, sizeof path);
            eddy_store *s = open_store(path);
            eddy_error err = {0};
            assert_int_equal(eddy_store_transact(s, create_table, NULL, &err),
                             EDDY_OK);
            for (int i = 0; i < EVENTS / 2; i++)
                assert_int_equal(append_one(s, i, NULL, false), EDDY_OK);
            /* The fault strikes while the consumer catches up and while
             * new events arrive. */
            faultvfs_arm(FAULT_OPS, n, variants[v].code,
                         variants[v].persistent);
            struct consumer c;
            int started = consumer_start(s, projection, &c, &err);
            for (int i = EVENTS / 2; i < EVENTS; i++)
                append_one(s, i, NULL, false);
            if (started == EDDY_OK)
                consumer_wait(&c, EVENTS, 50);
            bool fired = atomic_load(&faultvfs.failures) > 0;
            faultvfs_clear();
            /* Events whose append failed under the fault: append them
             * again now (the test's producer retries). */
            int64_t head = 0;
            assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
            for (int i = (int)head; i < EVENTS; i++)
                append_after_clear(s, i, NULL, false);
            if (started != EDDY_OK) {
                assert_true(err.message[0] != '\0');
                err = (eddy_error){0};
                assert_int_equal(consumer_start(s, projection, &c, &err),
                                 EDDY_OK);
            }
            if (consumer_wait(&c, EVENTS, 20000) != EDDY_OK)
                fail_msg("%s, fault at %ld: the consumer did not catch up "
                         "after the fault cleared",
                         variants[v].name, n);
            consumer_stop(&c);
            int64_t dead = -1;
            assert_int_equal(eddy_store_sql_int(s, &dead, &err,
                                                "SELECT count(*) FROM "
                                                "eddy_dead_letters",
                                                NULL),
                             EDDY_OK);
            eddy_store_close(s);

            /* Exactly once, nothing lost, the file intact. */
            eddy_store_options ro = {.read_only = true};
            s = eddy_store_open(path, &ro, &err);
            assert_non_null(s);
            assert_int_equal(sql_int(s, "SELECT count(*) FROM "
                                        "pragma_integrity_check WHERE "
                                        "integrity_check = 'ok'",
                                     NULL),
                             1);
            int64_t rows = sql_int(s, "SELECT count(*) FROM effects", NULL);
            int64_t events = sql_int(s, "SELECT count(*) FROM events", NULL);
            if (rows + dead != events || dead != 0)
                fail_msg("%s, fault at %ld: %lld effects and %lld dead "
                         "letters for %lld events",
                         variants[v].name, n, (long long)rows,
                         (long long)dead, (long long)events);
            eddy_store_close(s);
            if (!fired)
                break;
        }
        assert_true(n > 1);
        assert_true(n <= MAX_SWEEP);
        print_message("  %s: %s: %ld fault points\n",
                      projection ? "projection" : "durable handler",
                      variants[v].name, n - 1);
    }
}

static void test_durable_faults(void **state)
{
    (void)state;
    sweep_consumer(false);
}

static void test_projection_faults(void **state)
{
    (void)state;
    sweep_consumer(true);
}

static int group_setup(void **state)
{
    (void)state;
    if (faultvfs_install() != SQLITE_OK)
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/eddy-iofault-test-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

EDDYT_RMTREE_TEARDOWN(group_teardown, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_faults),
        cmocka_unit_test(test_outbox_faults),
        cmocka_unit_test(test_durable_faults),
        cmocka_unit_test(test_projection_faults),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
