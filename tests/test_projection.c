/*
 * tests/test_projection.c - projections: the read model equals a fold of
 * the store (catch-up and live), a rebuild gives the same read model,
 * INLINE applies within the append, listing, the definition registry and
 * bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/eddy.h"
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
    eddy_store *s = eddy_store_open(db_path, &o, &err);
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
    char *model = fx_dump_db(db_path);
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
    assert_int_equal(eddy_projection_wait(p, head, 10000), EDDY_OK);
    assert_true(eddy_projection_checkpoint(p) >= head);
}

struct list_seen {
    int count;
    eddy_projection_info last;
    char state[32], mode[16];
};

static int on_info(const eddy_projection_info *info, void *user)
{
    struct list_seen *l = user;
    l->count++;
    l->last = *info;
    snprintf(l->state, sizeof l->state, "%s", info->state);
    snprintf(l->mode, sizeof l->mode, "%s", info->mode);
    l->last.name = l->last.pattern = l->last.state = l->last.mode = NULL;
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
    char *before = fx_dump_db(db_path);

    /* Corrupt the read model behind the projection's back: a rebuild must
     * throw it away and replay. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE rm_orders SET status = 'X'; "
                                      "INSERT INTO rm_orders VALUES('zz', "
                                      "'PENDING', 1, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char *corrupt = fx_dump_db(db_path);
    assert_string_not_equal(corrupt, before);
    free(corrupt);

    struct progress_log pl = {0};
    assert_int_equal(eddy_projection_rebuild(s, &def_async, on_progress, &pl,
                                             &err), EDDY_OK);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, NULL), EDDY_OK);
    assert_true(pl.calls >= 2); /* the start, then per batch */
    assert_int_equal(pl.last_done, head);
    char *after = fx_dump_db(db_path);
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
        char *model = fx_dump_db(db_path);
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
    char *model = fx_dump_db(db_path);
    assert_null(strstr(model, "o-00500 "));
    free(model);
    p = eddy_projection_start(s, &def, &err);
    assert_non_null(p);
    assert_model_is_fold(s);
    eddy_projection_free(p);
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
        cmocka_unit_test(test_registry_and_bad_input),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
