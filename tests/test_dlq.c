/*
 * tests/test_dlq.c - the dead-letter store API (what `eddy dlq` calls):
 * list (all / per handler / stopping early), get, retry, retry_all, delete,
 * purge, argument errors, and redrive by a running subscription: success
 * deletes, failure puts the letter back to "dead" with one more attempt,
 * and a transactional handler's redrive commits its effect and the removal
 * together; list and get on a store opened read-only. Also runs under
 * ThreadSanitizer.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "eddy/sqlite.h"

#include "eddy/eddy.h"
#include "store_fixture.h"

struct fx {
    char dir[64];
    char path[128];
    eddy_store *store;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/eddy-dlq-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    eddy_error err = {0};
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    f->store = eddyt_store_open(f->path, &o, &err);
    if (!f->store)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    eddy_store_close(f->store);
    char p[192];
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int64_t append_one(eddy_store *s, const char *type, const char *key,
                          int n)
{
    eddy_error err = {0};
    eddy_event *ev = eddy_event_newf(type, "test", key, &err, "{s:i}", "n", n);
    assert_non_null(ev);
    eddy_append_result r;
    int rc = eddy_store_append(s, key, EDDY_EXPECT_ANY, &ev, 1, &r, &err);
    eddy_event_unref(ev);
    if (rc != EDDY_OK)
        fail_msg("append: %s", err.message);
    return r.last_position;
}

/* A handler that fails with EDDY_EIO until `fixed` is set. */
struct flaky {
    atomic_int fixed;
    atomic_int calls;
    atomic_int ok;
};

static int flaky_handler(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    struct flaky *fl = user;
    atomic_fetch_add(&fl->calls, 1);
    if (!atomic_load(&fl->fixed))
        return eddy_ctx_fail(ctx, EDDY_EIO, "downstream for %s is down",
                             eddy_event_subject(ev));
    atomic_fetch_add(&fl->ok, 1);
    return EDDY_OK;
}

static eddy_durable *start_flaky(eddy_store *s, const char *name,
                                 const char *pattern, struct flaky *fl)
{
    eddy_durable_options o = {.name = name,
                              .patterns = (const char *const[]){pattern},
                              .pattern_count = 1,
                              .handler = flaky_handler,
                              .user = fl,
                              .retry = {.max_attempts = 1}};
    eddy_error err = {0};
    eddy_durable *d = eddy_durable_start(s, &o, &err);
    if (!d)
        fail_msg("start %s: %s", name, err.message);
    return d;
}

struct seen {
    int count;
    int64_t ids[16];
    char status[16][16];
    int attempts[16];
    char handler[16][16];
    int stop_after; /* 0: never */
};

static int collect(const eddy_dead_letter *dl, void *user)
{
    struct seen *s = user;
    if (s->count < 16) {
        s->ids[s->count] = dl->id;
        snprintf(s->status[s->count], sizeof s->status[0], "%s", dl->status);
        snprintf(s->handler[s->count], sizeof s->handler[0], "%s",
                 dl->handler);
        s->attempts[s->count] = dl->attempts;
    }
    s->count++;
    return s->stop_after && s->count >= s->stop_after ? 7 : 0;
}

static struct seen list(eddy_store *s, const char *handler)
{
    struct seen r = {0};
    eddy_error err = {0};
    int rc = eddy_dlq_list(s, handler, collect, &r, &err);
    if (rc != EDDY_OK)
        fail_msg("dlq list: %s", err.message);
    return r;
}

/* Makes 3 dead letters for "h1" (type a.*) and 2 for "h2" (type b.*). */
static void make_dead_letters(struct fx *f, struct flaky *f1, struct flaky *f2)
{
    eddy_durable *d1 = start_flaky(f->store, "h1", "a.*", f1);
    eddy_durable *d2 = start_flaky(f->store, "h2", "b.*", f2);
    for (int i = 0; i < 3; i++)
        append_one(f->store, "a.x", "ka", i);
    int64_t last = 0;
    for (int i = 0; i < 2; i++)
        last = append_one(f->store, "b.x", "kb", i);
    assert_int_equal(eddy_durable_wait_idle(d1, last, 20000), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(d2, last, 20000), EDDY_OK);
    eddy_durable_free(d1);
    eddy_durable_free(d2);
}

static void test_list_get_delete_purge(void **state)
{
    struct fx *f = *state;
    /* Empty store: the tables are created on demand, nothing listed. */
    assert_int_equal(list(f->store, NULL).count, 0);

    struct flaky f1 = {0}, f2 = {0};
    make_dead_letters(f, &f1, &f2);
    struct seen all = list(f->store, NULL);
    assert_int_equal(all.count, 5);
    for (int i = 1; i < 5; i++)
        assert_true(all.ids[i] > all.ids[i - 1]); /* oldest first */
    /* h1 and h2 run concurrently: their letters interleave by id. */
    int nh1 = 0, h2_index = -1;
    for (int i = 0; i < 5; i++) {
        if (strcmp(all.handler[i], "h1") == 0)
            nh1++;
        else if (strcmp(all.handler[i], "h2") == 0)
            h2_index = i;
    }
    assert_int_equal(nh1, 3);
    assert_true(h2_index >= 0);
    int64_t h2_id = all.ids[h2_index];
    assert_string_equal(all.status[0], EDDY_DLQ_DEAD);
    assert_int_equal(all.attempts[0], 1);
    assert_int_equal(list(f->store, "h1").count, 3);
    assert_int_equal(list(f->store, "h2").count, 2);
    assert_int_equal(list(f->store, "nobody").count, 0);

    struct seen early = {.stop_after = 2};
    assert_int_equal(eddy_dlq_list(f->store, NULL, collect, &early, NULL), 7);
    assert_int_equal(early.count, 2);

    eddy_dead_letter *dl = NULL;
    assert_int_equal(eddy_dlq_get(f->store, h2_id, &dl, NULL), EDDY_OK);
    assert_string_equal(dl->handler, "h2");
    assert_string_equal(eddy_event_type(dl->event), "b.x");
    assert_string_equal(eddy_event_subject(dl->event), "kb");
    assert_int_equal(dl->error_code, EDDY_EIO);
    assert_non_null(strstr(dl->error, "downstream for kb is down"));
    assert_true(dl->position > 0);
    eddy_dead_letter_free(dl);
    eddy_dead_letter_free(NULL);

    eddy_error err = {0};
    dl = NULL;
    assert_int_equal(eddy_dlq_get(f->store, 9999, &dl, &err), EDDY_ENOTFOUND);
    assert_null(dl);
    assert_non_null(strstr(err.message, "9999"));
    assert_int_equal(eddy_dlq_redrive(f->store, 9999, NULL), EDDY_ENOTFOUND);
    assert_int_equal(eddy_dlq_delete(f->store, 9999, NULL), EDDY_ENOTFOUND);
    assert_int_equal(eddy_dlq_list(NULL, NULL, collect, NULL, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_dlq_get(f->store, 1, NULL, NULL), EDDY_EINVAL);

    assert_int_equal(eddy_dlq_delete(f->store, h2_id, NULL), EDDY_OK);
    assert_int_equal(eddy_dlq_delete(f->store, h2_id, NULL),
                     EDDY_ENOTFOUND);
    size_t n = 0;
    assert_int_equal(eddy_dlq_purge(f->store, "h1", &n, NULL), EDDY_OK);
    assert_int_equal(n, 3);
    assert_int_equal(eddy_dlq_purge(f->store, NULL, &n, NULL), EDDY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list(f->store, NULL).count, 0);
}

static void test_retry_all_and_redrive(void **state)
{
    struct fx *f = *state;
    struct flaky f1 = {0}, f2 = {0};
    make_dead_letters(f, &f1, &f2);

    size_t n = 0;
    assert_int_equal(eddy_dlq_redrive_all(f->store, "h1", &n, NULL), EDDY_OK);
    assert_int_equal(n, 3);
    struct seen s = list(f->store, "h1");
    for (int i = 0; i < 3; i++)
        assert_string_equal(s.status[i], EDDY_DLQ_REDRIVE);
    /* Only "dead" ones are marked: nothing more. */
    assert_int_equal(eddy_dlq_redrive_all(f->store, "h1", &n, NULL), EDDY_OK);
    assert_int_equal(n, 0);
    /* Nobody runs h1: the marks wait, nothing is lost. */
    sleep_ms(300);
    assert_int_equal(list(f->store, "h1").count, 3);

    /* h2 still failing: its redrive puts the letter back to dead, + 1. */
    struct seen s2 = list(f->store, "h2");
    assert_int_equal(eddy_dlq_redrive(f->store, s2.ids[0], NULL), EDDY_OK);
    eddy_durable *d2 = start_flaky(f->store, "h2", "b.*", &f2);
    bool back = false;
    for (int i = 0; i < 500 && !back; i++) {
        sleep_ms(10);
        struct seen x = list(f->store, "h2");
        back = x.count == 2 && strcmp(x.status[0], EDDY_DLQ_DEAD) == 0 &&
               x.attempts[0] == 2;
    }
    assert_true(back);
    eddy_durable_free(d2);

    /* h1 fixed and started: its three marked letters are redriven and
     * removed; its checkpoint is at the end, so nothing else runs. */
    atomic_store(&f1.fixed, 1);
    int calls_before = atomic_load(&f1.calls);
    eddy_durable *d1 = start_flaky(f->store, "h1", "a.*", &f1);
    int left = 3;
    for (int i = 0; i < 500 && left; i++) {
        sleep_ms(10);
        left = list(f->store, "h1").count;
    }
    assert_int_equal(left, 0);
    eddy_durable_free(d1);
    assert_int_equal(atomic_load(&f1.ok), 3);
    assert_int_equal(atomic_load(&f1.calls) - calls_before, 3);
    assert_int_equal(list(f->store, "h2").count, 2);
}

/* A transactional handler's redrive: its effect and the removal of the
 * dead letter commit together. This handler writes through the SQLite
 * escape hatch (eddy/sqlite.h) on purpose: the other tests of the area
 * write through eddy_txn_exec. */
static atomic_int txn_fixed;

static int txn_effect(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                      void *user)
{
    if (eddyt_pg()) { /* no escape hatch there: the portable API */
        eddy_error e = {0};
        if (eddy_txn_exec(txn, NULL, &e, "CREATE TABLE IF NOT EXISTS "
                          "fx(id TEXT)", NULL) != EDDY_OK ||
            eddy_txn_exec(txn, NULL, &e, "INSERT INTO fx VALUES('x')",
                          NULL) != EDDY_OK)
            return eddy_ctx_fail(ctx, e.code, "%s", e.message);
    } else {
        sqlite3 *db = eddy_txn_sqlite(txn);
        if (sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS fx(id TEXT);"
                             "INSERT INTO fx VALUES('x')",
                         NULL, NULL, NULL) != SQLITE_OK)
            return eddy_ctx_fail(ctx, EDDY_EIO, "%s", sqlite3_errmsg(db));
    }
    if (!atomic_load(&txn_fixed))
        return eddy_ctx_fail(ctx, EDDY_EIO, "not yet"); /* rolls back */
    return EDDY_OK;
}

static int64_t fx_rows(eddy_store *s)
{
    int64_t n = 0;
    eddy_error err = {0};
    if (eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM fx", NULL) !=
        EDDY_OK) {
        if (!strstr(err.message, "no such table") &&
            !strstr(err.message, "does not exist"))
            fail_msg("counting fx: %s", err.message);
        n = 0; /* table never committed */
    }
    return n;
}

static void test_transactional_redrive(void **state)
{
    struct fx *f = *state;
    atomic_store(&txn_fixed, 0);
    eddy_durable_options o = {.name = "tx",
                              .mode = EDDY_DELIVERY_TRANSACTIONAL,
                              .txn_handler = txn_effect,
                              .retry = {.max_attempts = 2,
                                        .initial_delay_ms = 5}};
    eddy_error err = {0};
    eddy_durable *d = eddy_durable_start(f->store, &o, &err);
    assert_non_null(d);
    int64_t p = append_one(f->store, "t.x", "k", 0);
    assert_int_equal(eddy_durable_wait_idle(d, p, 20000), EDDY_OK);
    struct seen s = list(f->store, "tx");
    assert_int_equal(s.count, 1);
    assert_int_equal(s.attempts[0], 2);
    assert_int_equal(fx_rows(f->store), 0); /* both attempts rolled back */

    atomic_store(&txn_fixed, 1);
    assert_int_equal(eddy_durable_redrive(d, s.ids[0], &err), EDDY_OK);
    assert_int_equal(list(f->store, "tx").count, 0);
    assert_int_equal(fx_rows(f->store), 1);
    /* Gone: a second redrive finds nothing, and no second effect. */
    assert_int_equal(eddy_durable_redrive(d, s.ids[0], NULL), EDDY_ENOTFOUND);
    eddy_durable_free(d);
    assert_int_equal(fx_rows(f->store), 1);
}

/* Listing and showing dead letters only read: they work on a store opened
 * read-only (reader connections), where marking for redrive cannot. */
static void test_read_only_store(void **state)
{
    struct fx *f = *state;
    struct flaky f1 = {0}, f2 = {0};
    make_dead_letters(f, &f1, &f2);
    eddy_store_close(f->store);
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    f->store = eddyt_store_open(f->path, &ro, &err);
    if (!f->store)
        fail_msg("read-only open: %s", err.message);

    struct seen all = list(f->store, NULL);
    assert_int_equal(all.count, 5);
    assert_int_equal(list(f->store, "h2").count, 2);
    eddy_dead_letter *dl = NULL;
    assert_int_equal(eddy_dlq_get(f->store, all.ids[0], &dl, &err), EDDY_OK);
    assert_int_equal(dl->id, all.ids[0]);
    assert_string_equal(dl->status, EDDY_DLQ_DEAD);
    assert_non_null(dl->event);
    assert_non_null(strstr(dl->error, "is down"));
    eddy_dead_letter_free(dl);
    assert_int_equal(eddy_dlq_get(f->store, 9999, &dl, &err), EDDY_ENOTFOUND);

    assert_int_equal(eddy_dlq_redrive(f->store, all.ids[0], &err), EDDY_ESTATE);
    assert_int_equal(list(f->store, NULL).count, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_get_delete_purge, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_all_and_redrive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transactional_redrive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_only_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
