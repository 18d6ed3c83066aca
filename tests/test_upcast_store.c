/*
 * tests/test_upcast_store.c - a version 1.0 user.registered stored in a
 * store is read back as version 2.0 by every reader (cursors over a stream,
 * the log and a query; a live subscription; a durable handler; a projection;
 * an aggregate), and the stored bytes never change.
 */
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>


#include "test_util.h"

#include "eddy/eddy.h"
#include "store_fixture.h"

static char tmpdir[] = "/tmp/eddy-upcast-store-XXXXXX";
static char db_path[512];

static const char *const V1 =
    "{\"type\": \"object\", \"required\": [\"user_id\", \"email\", \"name\"],"
    " \"properties\": {\"user_id\": {\"type\": \"string\"},"
    " \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    " \"name\": {\"type\": \"string\"}}}";
static const char *const V2 =
    "{\"type\": \"object\", \"required\": [\"user_id\", \"email\", \"full_name\"],"
    " \"properties\": {\"user_id\": {\"type\": \"string\"},"
    " \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    " \"full_name\": {\"type\": \"string\"},"
    " \"registration_source\": {\"type\": \"string\"}},"
    " \"additionalProperties\": false}";

/* The specification's migration: name becomes full_name. */
static json_t *user_v1_to_v2(const json_t *data, void *user, eddy_error *err)
{
    (void)user;
    (void)err;
    json_t *out = json_deep_copy(data);
    if (!out)
        return NULL;
    json_t *name = json_object_get(out, "name");
    if (name) {
        json_object_set(out, "full_name", name);
        json_object_del(out, "name");
    }
    if (!json_object_get(out, "registration_source"))
        json_object_set_new(out, "registration_source", json_string("unknown"));
    return out;
}

/* True when `ev` is the v1 event seen as v2. Handlers on other threads call
 * it (cmocka's assertions belong on the test's thread). */
static bool is_v2(const eddy_event *ev, const char *id)
{
    const char *full_name = NULL, *source = NULL;
    return ev && strcmp(eddy_event_id(ev), id) == 0 && eddy_event_dataversion(ev) &&
           strcmp(eddy_event_dataversion(ev), "2.0") == 0 &&
           eddy_event_unpack(ev, NULL, "{s:s, s:s}", "full_name", &full_name,
                             "registration_source", &source) == EDDY_OK &&
           strcmp(full_name, "Ada Lovelace") == 0 && strcmp(source, "unknown") == 0 &&
           !json_object_get(eddy_event_data(ev), "name");
}

static void assert_v2(const eddy_event *ev, const char *id)
{
    if (!is_v2(ev, id)) {
        char *text = ev ? eddy_event_encode(ev, NULL) : NULL;
        fail_msg("not the v2 event: %s", text ? text : "(null)");
    }
}

static int payload_row(const eddy_row *row, void *user)
{
    const char *t = eddy_row_text(row, 0);
    *(char **)user = t ? strdup(t) : NULL;
    return 1;
}

/* The stored payload of event `id`, as stored: read with SQL, under the
 * store's transform hook (malloc'd). */
static char *stored_payload(eddy_store *s, const char *id)
{
    char *out = NULL;
    eddy_error err = {0};
    if (eddy_store_sql_query(s, payload_row, &out, &err,
                             "SELECT payload FROM events WHERE id = $1", "s",
                             id) != 1)
        fail_msg("reading the payload of %s: %s", id, err.message);
    assert_non_null(out);
    return out;
}

/* ---- the readers that run handlers ---------------------------------------- */

struct seen {
    const char *id;
    atomic_int count; /* events seen */
    atomic_int good;  /* of them, seen as v2 */
};

static void saw(struct seen *s, const eddy_event *ev)
{
    if (is_v2(ev, s->id))
        atomic_fetch_add(&s->good, 1);
    atomic_fetch_add(&s->count, 1);
}

static int on_record(const eddy_record *rec, void *user)
{
    saw(user, rec->event);
    return 0;
}

static int on_durable(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    saw(user, ev);
    return EDDY_OK;
}

static int on_projection(eddy_txn *txn, const eddy_event *ev, void *user, eddy_error *err)
{
    (void)txn;
    (void)err;
    saw(user, ev);
    return EDDY_OK;
}

struct user_state {
    char full_name[64];
    int applied;
};

static int user_apply(void *state, const eddy_event *ev, eddy_error *err)
{
    (void)err;
    struct user_state *u = state;
    const char *full_name = NULL;
    if (strcmp(eddy_event_dataversion(ev), "2.0") != 0 ||
        eddy_event_unpack(ev, NULL, "{s:s}", "full_name", &full_name) != EDDY_OK)
        return EDDY_EINVAL; /* an old version reached the aggregate */
    snprintf(u->full_name, sizeof u->full_name, "%s", full_name);
    u->applied++;
    return EDDY_OK;
}

static const eddy_aggregate_type user_type = {
    .name = "user",
    .state_size = sizeof(struct user_state),
    .apply = user_apply,
};

static void test_v1_read_as_v2_everywhere(void **state)
{
    (void)state;
    eddy_error err = {0};
    eddy_schema_registry *reg = eddy_schema_registry_new();
    assert_non_null(reg);
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "1.0", V1, strlen(V1), &err), EDDY_OK);
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "2.0", V2, strlen(V2), &err), EDDY_OK);
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "1.0", "2.0",
                                                       user_v1_to_v2, NULL, &err), EDDY_OK);

    eddy_store_options o = {.sync = EDDY_SYNC_NORMAL,
                            .transform = eddy_schema_registry_upcast_hook,
                            .transform_user = reg};
    eddy_store *s = eddyt_store_open(db_path, &o, &err);
    if (!s)
        fail_msg("open: %s", err.message);

    /* An old producer's event, as it was written: version 1.0. */
    json_t *data = json_pack("{s:s, s:s, s:s}", "user_id", "u-1", "email",
                             "ada@example.org", "name", "Ada Lovelace");
    eddy_event_init init = {.type = "user.registered", .source = "user-service",
                            .subject = "u-1", .dataversion = "1.0", .data = data};
    eddy_event *v1 = eddy_event_new(&init, &err);
    json_decref(data);
    assert_non_null(v1);
    assert_int_equal(eddy_schema_registry_validate_event(reg, v1, &err), EDDY_OK);
    const char *id = eddy_event_id(v1);
    assert_int_equal(eddy_store_append(s, "user-u-1", EDDY_EXPECT_NO_STREAM, &v1, 1, NULL, &err),
                     EDDY_OK);
    char *before = stored_payload(s, id);
    assert_non_null(strstr(before, "\"dataversion\":\"1.0\""));
    assert_non_null(strstr(before, "\"name\":\"Ada Lovelace\""));

    /* Cursors: one stream, the whole log, a query. */
    eddy_cursor *c = NULL;
    eddy_record rec;
    assert_int_equal(eddy_store_read_stream(s, "user-u-1", 1, EDDY_FORWARD, 0, &c, &err), EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_v2(rec.event, id);
    eddy_cursor_free(c);
    assert_int_equal(eddy_store_read_stream(s, "user-u-1", EDDY_STREAM_END, EDDY_BACKWARD, 0, &c,
                                            &err), EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_v2(rec.event, id);
    eddy_cursor_free(c);
    assert_int_equal(eddy_store_read_all(s, 0, 0, &c, &err), EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_v2(rec.event, id);
    eddy_cursor_free(c);
    const char *types[] = {"user.registered"};
    eddy_query q = {.types = types, .type_count = 1, .newest_first = true};
    assert_int_equal(eddy_store_query(s, &q, &c, &err), EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, &err));
    assert_v2(rec.event, id);
    eddy_cursor_free(c);

    /* A live subscription. */
    struct seen sub_seen = {.id = id};
    eddy_store_subscription *sub = NULL;
    assert_int_equal(eddy_store_subscribe(s, 0, on_record, &sub_seen, NULL, &sub, &err), EDDY_OK);

    /* A durable handler. */
    struct seen durable_seen = {.id = id};
    eddy_durable_options d = {.name = "welcome-mail",
                              .patterns = (const char *const[]){"user.*"},
                              .pattern_count = 1,
                              .handler = on_durable, .user = &durable_seen};
    eddy_durable *dur = eddy_durable_start(s, &d, &err);
    if (!dur)
        fail_msg("durable: %s", err.message);

    /* A projection. */
    struct seen proj_seen = {.id = id};
    static eddy_projection_def def = {.name = "users", .pattern = "user.registered",
                                      .apply = on_projection};
    def.user = &proj_seen;
    eddy_projection *p = eddy_projection_start(s, &def, &err);
    if (!p)
        fail_msg("projection: %s", err.message);

    assert_int_equal(eddy_durable_wait_idle(dur, 1, 10000), EDDY_OK);
    assert_int_equal(eddy_projection_wait_idle(p, 1, 10000), EDDY_OK);
    for (int i = 0; i < 1000 && atomic_load(&sub_seen.count) < 1; i++)
        usleep(10000);
    assert_int_equal(eddy_store_subscription_stop(sub, &err), EDDY_OK);
    eddy_store_subscription_free(sub);
    eddy_projection_free(p);
    eddy_durable_free(dur);
    assert_int_equal(atomic_load(&sub_seen.count), 1);
    assert_int_equal(atomic_load(&sub_seen.good), 1);
    assert_int_equal(atomic_load(&durable_seen.count), 1);
    assert_int_equal(atomic_load(&durable_seen.good), 1);
    assert_int_equal(atomic_load(&proj_seen.count), 1);
    assert_int_equal(atomic_load(&proj_seen.good), 1);

    /* An aggregate: its apply refuses anything but 2.0. */
    eddy_repository *repo = eddy_repository_new(s, &user_type, &err);
    assert_non_null(repo);
    eddy_aggregate *agg = eddy_repository_load(repo, "u-1", &err);
    if (!agg)
        fail_msg("load: %s", err.message);
    struct user_state *u = eddy_aggregate_state(agg);
    assert_int_equal(u->applied, 1);
    assert_string_equal(u->full_name, "Ada Lovelace");
    eddy_aggregate_free(agg);
    eddy_repository_free(repo);

    /* The stored bytes never changed. */
    char *after = stored_payload(s, id);
    eddy_store_close(s);
    assert_string_equal(before, after);
    char *original = eddy_event_encode(v1, NULL);
    assert_string_equal(after, original);
    free(original);
    free(before);
    free(after);
    eddy_event_unref(v1);
    eddy_schema_registry_free(reg);
}

static int setup_dir(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/users.db", tmpdir);
    return 0;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_read_as_v2_everywhere),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
