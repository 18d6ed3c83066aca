/*
 * tests/test_upcast.c - the schema registry and upcasters, on the
 * specification's example: user.registered 1.0 (user_id, email, name) and
 * 2.0 (user_id, email, full_name, registration_source); the 1.0->2.0
 * upcaster renames name to full_name and fills registration_source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"

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
static const char *const V3 =
    "{\"type\": \"object\", \"required\": [\"user_id\", \"contact\", \"full_name\"]}";

/* 1.0 -> 2.0: name becomes full_name; registration_source defaults. */
static json_t *user_v1_to_v2(const json_t *data, void *user, eddy_error *err)
{
    (void)user;
    json_t *out = json_deep_copy(data);
    if (!out) {
        eddy_error_clear(err);
        return NULL;
    }
    json_t *name = json_object_get(out, "name");
    if (name) {
        json_object_set(out, "full_name", name);
        json_object_del(out, "name");
    }
    if (!json_object_get(out, "registration_source"))
        json_object_set_new(out, "registration_source", json_string("unknown"));
    return out;
}

/* 2.0 -> 3.0: email moves into a contact object. */
static json_t *user_v2_to_v3(const json_t *data, void *user, eddy_error *err)
{
    int *calls = user;
    if (calls)
        (*calls)++;
    json_t *out = json_deep_copy(data);
    json_t *email = json_object_get(out, "email");
    if (!email) {
        json_decref(out);
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message, "no email to move");
        }
        return NULL;
    }
    json_object_set_new(out, "contact", json_pack("{s:O}", "email", email));
    json_object_del(out, "email");
    return out;
}

/* 3.0 -> 4.0: adds a marker, so a 3-step chain can be seen end to end. */
static json_t *user_v3_to_v4(const json_t *data, void *user, eddy_error *err)
{
    json_t *out = json_deep_copy(data);
    json_object_set_new(out, "schema_generation", json_integer(4));
    return out;
}

static eddy_event *user_event(const char *version, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t jerr;
    json_t *data = json_vpack_ex(&jerr, 0, fmt, ap);
    va_end(ap);
    assert_non_null(data);
    eddy_event_init init = {0};
    init.type = "user.registered";
    init.source = "user-service";
    init.subject = "user-42";
    init.dataversion = version;
    init.data = data;
    init.correlation_id = "corr-1";
    init.causation_id = "cause-1";
    json_t *ext = json_pack("{s:s}", "tenant", "acme");
    init.extensions = ext;
    eddy_error err = {0};
    eddy_event *ev = eddy_event_new(&init, &err);
    if (!ev)
        fail_msg("eddy_event_new: %s", err.message);
    json_decref(data);
    json_decref(ext);
    return ev;
}

static eddy_schema_registry *registry_v1_v2(void)
{
    eddy_schema_registry *reg = eddy_schema_registry_new();
    assert_non_null(reg);
    eddy_error err = {0};
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "1.0", V1,
                                                   strlen(V1), &err),
                     EDDY_OK);
    json_error_t jerr;
    json_t *v2 = json_loads(V2, 0, &jerr);
    assert_int_equal(eddy_schema_registry_add(reg, "user.registered", "2.0", v2, &err), EDDY_OK);
    json_decref(v2);
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "1.0", "2.0",
                                                       user_v1_to_v2, NULL, &err),
                     EDDY_OK);
    return reg;
}

static void test_validate_event(void **state)
{
    eddy_schema_registry *reg = registry_v1_v2();
    eddy_error err = {0};
    eddy_event *ok = user_event("1.0", "{s:s, s:s, s:s}", "user_id", "u-1", "email",
                                "ann@example.com", "name", "Ann");
    assert_int_equal(eddy_schema_registry_validate_event(reg, ok, &err), EDDY_OK);

    eddy_event *bad = user_event("1.0", "{s:s, s:s, s:s}", "user_id", "u-1", "email", "x@",
                                 "name", "Ann");
    assert_int_equal(eddy_schema_registry_validate_event(reg, bad, &err), EDDY_ESCHEMA);
    assert_string_equal(err.message,
                        "user.registered 1.0: /email: format email expected, got \"x@\"");

    /* v1 data is not valid v2 data */
    eddy_event *mislabelled = user_event("2.0", "{s:s, s:s, s:s}", "user_id", "u-1", "email",
                                         "ann@example.com", "name", "Ann");
    assert_int_equal(eddy_schema_registry_validate_event(reg, mislabelled, &err), EDDY_ESCHEMA);
    assert_string_equal(err.message,
                        "user.registered 2.0: (root): required property \"full_name\" missing");

    /* a version without a schema is an error naming type and version */
    eddy_event *v9 = user_event("9.0", "{s:s}", "user_id", "u-1");
    assert_int_equal(eddy_schema_registry_validate_event(reg, v9, &err), EDDY_ESCHEMA);
    assert_string_equal(err.message, "user.registered 9.0: no schema registered for this "
                                     "version (schemas exist for 1.0, 2.0)");
    /* "1" is the same version as "1.0" */
    eddy_event *v1short = user_event("1", "{s:s, s:s, s:s}", "user_id", "u-1", "email",
                                     "ann@example.com", "name", "Ann");
    assert_int_equal(eddy_schema_registry_validate_event(reg, v1short, &err), EDDY_OK);

    /* a type without schemas passes */
    eddy_event *other = eddy_event_newf("order.placed", "orders", "o-1", &err, "{s:i}", "n", 1);
    assert_non_null(other);
    assert_int_equal(eddy_schema_registry_validate_event(reg, other, &err), EDDY_OK);

    assert_non_null(eddy_schema_registry_get(reg, "user.registered", "2.0"));
    assert_null(eddy_schema_registry_get(reg, "user.registered", "3.0"));
    assert_string_equal(eddy_schema_registry_latest(reg, "user.registered"), "2.0");
    assert_null(eddy_schema_registry_latest(reg, "order.placed"));

    eddy_event_unref(ok);
    eddy_event_unref(bad);
    eddy_event_unref(mislabelled);
    eddy_event_unref(v9);
    eddy_event_unref(v1short);
    eddy_event_unref(other);
    eddy_schema_registry_free(reg);
}

static void test_upcast_v1_to_v2(void **state)
{
    eddy_schema_registry *reg = registry_v1_v2();
    eddy_error err = {0};
    eddy_event *v1 = user_event("1.0", "{s:s, s:s, s:s}", "user_id", "u-1", "email",
                                "ann@example.com", "name", "Ann");
    char *before = eddy_event_encode(v1, NULL);
    assert_non_null(before);

    eddy_event *v2 = eddy_schema_registry_upcast(reg, v1, &err);
    if (!v2)
        fail_msg("upcast: %s", err.message);
    assert_ptr_not_equal(v2, v1);
    assert_string_equal(eddy_event_dataversion(v2), "2.0");
    assert_string_equal(eddy_event_id(v2), eddy_event_id(v1));
    assert_string_equal(eddy_event_type(v2), "user.registered");
    assert_string_equal(eddy_event_source(v2), "user-service");
    assert_string_equal(eddy_event_subject(v2), "user-42");
    assert_string_equal(eddy_event_correlation_id(v2), "corr-1");
    assert_string_equal(eddy_event_causation_id(v2), "cause-1");
    assert_true(eddy_event_time(v2) == eddy_event_time(v1));
    assert_string_equal(json_string_value(eddy_event_extension(v2, "tenant")), "acme");
    const json_t *d = eddy_event_data(v2);
    assert_string_equal(json_string_value(json_object_get(d, "full_name")), "Ann");
    assert_string_equal(json_string_value(json_object_get(d, "registration_source")), "unknown");
    assert_null(json_object_get(d, "name"));
    /* the upcast event is valid v2 */
    assert_int_equal(eddy_schema_registry_validate_event(reg, v2, &err), EDDY_OK);

    /* the original is unchanged */
    char *after = eddy_event_encode(v1, NULL);
    assert_string_equal(before, after);
    assert_string_equal(eddy_event_dataversion(v1), "1.0");
    assert_string_equal(json_string_value(json_object_get(eddy_event_data(v1), "name")), "Ann");

    /* already latest: the same event, one more reference */
    eddy_event *same = eddy_schema_registry_upcast(reg, v2, &err);
    assert_ptr_equal(same, v2);
    eddy_event_unref(same);

    /* an existing registration_source is kept */
    eddy_event *sourced = user_event("1.0", "{s:s, s:s, s:s, s:s}", "user_id", "u-2", "email",
                                     "bo@example.com", "name", "Bo", "registration_source",
                                     "mobile");
    eddy_event *sourced2 = eddy_schema_registry_upcast_hook(sourced, reg, &err);
    assert_non_null(sourced2);
    assert_string_equal(
        json_string_value(json_object_get(eddy_event_data(sourced2), "registration_source")),
        "mobile");

    /* events of types without upcasters come back as they are */
    eddy_event *other = eddy_event_newf("order.placed", "orders", "o-1", &err, "{s:i}", "n", 1);
    eddy_event *other2 = eddy_schema_registry_upcast(reg, other, &err);
    assert_ptr_equal(other2, other);
    eddy_event_unref(other2);

    free(before);
    free(after);
    eddy_event_unref(v1);
    eddy_event_unref(v2);
    eddy_event_unref(sourced);
    eddy_event_unref(sourced2);
    eddy_event_unref(other);
    eddy_schema_registry_free(reg);
}

static void test_chain_of_three(void **state)
{
    eddy_schema_registry *reg = registry_v1_v2();
    eddy_error err = {0};
    int calls = 0;
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "3.0", V3,
                                                   strlen(V3), &err),
                     EDDY_OK);
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "2.0", "3.0",
                                                       user_v2_to_v3, &calls, &err),
                     EDDY_OK);
    /* "10.0" sorts after "3.0" as a number, not as text */
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "3.0", "10.0",
                                                       user_v3_to_v4, NULL, &err),
                     EDDY_OK);
    assert_string_equal(eddy_schema_registry_latest(reg, "user.registered"), "10.0");

    eddy_event *v1 = user_event("1.0", "{s:s, s:s, s:s}", "user_id", "u-1", "email",
                                "ann@example.com", "name", "Ann");
    eddy_event *up = eddy_schema_registry_upcast(reg, v1, &err);
    if (!up)
        fail_msg("upcast: %s", err.message);
    assert_string_equal(eddy_event_dataversion(up), "10.0");
    const json_t *d = eddy_event_data(up);
    assert_string_equal(json_string_value(json_object_get(d, "full_name")), "Ann");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(d, "contact"), "email")),
        "ann@example.com");
    assert_int_equal(json_integer_value(json_object_get(d, "schema_generation")), 4);
    assert_int_equal(calls, 1);

    /* starting in the middle of the chain runs only the rest of it */
    eddy_event *v3 = user_event("3.0", "{s:s, s:s, s:{s:s}}", "user_id", "u-1", "full_name",
                                "Ann", "contact", "email", "a@b.c");
    eddy_event *up3 = eddy_schema_registry_upcast(reg, v3, &err);
    assert_non_null(up3);
    assert_int_equal(calls, 1);
    assert_string_equal(eddy_event_dataversion(up3), "10.0");

    /* a failing step: its error, prefixed with type and versions */
    eddy_event *noemail = user_event("2.0", "{s:s, s:s}", "user_id", "u-1", "full_name", "Ann");
    assert_null(eddy_schema_registry_upcast(reg, noemail, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_string_equal(err.message, "user.registered 2.0->3.0: no email to move");

    /* a version not on the chain */
    eddy_event *odd = user_event("1.5", "{s:s}", "user_id", "u-1");
    assert_null(eddy_schema_registry_upcast(reg, odd, &err));
    assert_int_equal(err.code, EDDY_EVERSION);
    assert_string_equal(err.message, "user.registered 1.5: no upcaster starts at this version "
                                     "(the chain goes from 1.0 to 10.0)");

    eddy_event_unref(v1);
    eddy_event_unref(up);
    eddy_event_unref(v3);
    eddy_event_unref(up3);
    eddy_event_unref(noemail);
    eddy_event_unref(odd);
    eddy_schema_registry_free(reg);
}

static void test_chain_rules(void **state)
{
    eddy_schema_registry *reg = registry_v1_v2();
    eddy_error err = {0};
    /* a gap: the chain ends at 2.0 */
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "3.0", "4.0",
                                                       user_v3_to_v4, NULL, &err),
                     EDDY_EINVAL);
    assert_string_equal(err.message, "user.registered 3.0->4.0: the upcaster chain ends at 2.0, "
                                     "so the next upcaster must start from 2.0 (no gaps or "
                                     "branches)");
    /* a branch from an earlier version */
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "1.0", "3.0",
                                                       user_v3_to_v4, NULL, &err),
                     EDDY_EINVAL);
    /* backwards, and invalid versions */
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "2.0", "1.0",
                                                       user_v3_to_v4, NULL, &err),
                     EDDY_EINVAL);
    assert_string_equal(err.message,
                        "user.registered 2.0->1.0: an upcaster must go to a greater version");
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "2.0", "v3",
                                                       user_v3_to_v4, NULL, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_schema_registry_add_upcaster(reg, "user.registered", "2.0", "3.0",
                                                       NULL, NULL, &err),
                     EDDY_EINVAL);
    /* none of the failures changed the chain */
    assert_string_equal(eddy_schema_registry_latest(reg, "user.registered"), "2.0");

    /* duplicate schema, bad schema, bad version */
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "1.0", V1,
                                                   strlen(V1), &err),
                     EDDY_EEXIST);
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "5.0",
                                                   "{\"minimum\": \"x\"}", 16, &err), /* 16 bytes */
                     EDDY_EINVAL);
    assert_string_equal(err.message, "user.registered 5.0 schema: /minimum: must be a number");
    assert_int_equal(eddy_schema_registry_add_text(reg, "user.registered", "1.x", V1,
                                                   strlen(V1), &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_schema_registry_add_file(reg, "user.registered", "6.0",
                                                   "/nonexistent.json", &err),
                     EDDY_EIO);
    assert_null(eddy_schema_registry_get(reg, "user.registered", "5.0"));
    eddy_schema_registry_free(reg);
    eddy_schema_registry_free(NULL);
}

static void test_policy_hooks(void **state)
{
    eddy_schema_registry *reg = registry_v1_v2();
    eddy_error err = {0};
    eddy_event *bad = user_event("1.0", "{s:s}", "user_id", "u-1");
    /* default once a schema exists: both */
    assert_int_equal(eddy_schema_registry_policy(reg, "user.registered"), EDDY_VALIDATE_ALWAYS);
    assert_int_equal(eddy_schema_registry_check_hook(bad, reg, &err), EDDY_ESCHEMA);
    assert_int_equal(eddy_schema_registry_publish_hook(bad, reg, &err), EDDY_ESCHEMA);

    assert_int_equal(eddy_schema_registry_set_policy(reg, "user.registered",
                                                     EDDY_VALIDATE_ON_PUBLISH, &err),
                     EDDY_OK);
    assert_int_equal(eddy_schema_registry_check_hook(bad, reg, &err), EDDY_OK);
    assert_int_equal(eddy_schema_registry_publish_hook(bad, reg, &err), EDDY_ESCHEMA);

    assert_int_equal(eddy_schema_registry_set_policy(reg, "user.registered",
                                                     EDDY_VALIDATE_ON_APPEND, &err),
                     EDDY_OK);
    assert_int_equal(eddy_schema_registry_check_hook(bad, reg, &err), EDDY_ESCHEMA);
    assert_int_equal(eddy_schema_registry_publish_hook(bad, reg, &err), EDDY_OK);

    assert_int_equal(eddy_schema_registry_set_policy(reg, "user.registered", EDDY_VALIDATE_OFF,
                                                     &err),
                     EDDY_OK);
    assert_int_equal(eddy_schema_registry_check_hook(bad, reg, &err), EDDY_OK);
    /* validate_event ignores the policy */
    assert_int_equal(eddy_schema_registry_validate_event(reg, bad, &err), EDDY_ESCHEMA);
    assert_int_equal(eddy_schema_registry_set_policy(reg, "user.registered", 8, &err),
                     EDDY_EINVAL);
    assert_int_equal(eddy_schema_registry_policy(reg, "nobody"), EDDY_VALIDATE_OFF);

    /* the hooks have the signatures eddy/event.h declares */
    eddy_event_check_fn check = eddy_schema_registry_check_hook;
    eddy_event_transform_fn transform = eddy_schema_registry_upcast_hook;
    assert_non_null(check);
    assert_non_null(transform);
    eddy_event_unref(bad);
    eddy_schema_registry_free(reg);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A directory of TYPE@VERSION.json files fills a registry; other files are
 * ignored; a badly named one, an empty or a missing directory fail naming
 * the file or the directory. */
static void test_registry_dir(void **state)
{
    (void)state;
    char dir[] = "/tmp/eddy-schema-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    eddy_error err = {0};
    size_t count = 99;
    eddy_schema_registry *reg = eddy_schema_registry_new();
    assert_int_equal(eddy_schema_registry_add_dir(reg, dir, &count, &err),
                     EDDY_ENOTFOUND);
    assert_non_null(strstr(err.message, dir));
    assert_int_equal(count, 0);
    write_text(dir, "user.registered@1.0.json", V1);
    write_text(dir, "user.registered@2.0.json", V2);
    write_text(dir, "README.txt", "not a schema");
    assert_int_equal(eddy_schema_registry_add_dir(reg, dir, &count, &err),
                     EDDY_OK);
    assert_int_equal(count, 2);
    assert_non_null(eddy_schema_registry_get(reg, "user.registered", "1.0"));
    assert_non_null(eddy_schema_registry_get(reg, "user.registered", "2.0"));
    eddy_schema_registry_free(reg);

    write_text(dir, "nameless.json", "{}");
    reg = eddy_schema_registry_new();
    assert_int_equal(eddy_schema_registry_add_dir(reg, dir, NULL, &err),
                     EDDY_EINVAL);
    assert_non_null(strstr(err.message, "nameless.json"));
    assert_non_null(strstr(err.message, "TYPE@VERSION.json"));
    eddy_schema_registry_free(reg);

    char path[512];
    const char *names[] = {"user.registered@1.0.json",
                           "user.registered@2.0.json", "README.txt",
                           "nameless.json"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        assert_int_equal(unlink(path), 0);
    }
    assert_int_equal(rmdir(dir), 0);
    reg = eddy_schema_registry_new();
    assert_int_equal(eddy_schema_registry_add_dir(reg, dir, NULL, &err),
                     EDDY_EIO);
    assert_non_null(strstr(err.message, dir));
    eddy_schema_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_event),
        cmocka_unit_test(test_upcast_v1_to_v2),
        cmocka_unit_test(test_chain_of_three),
        cmocka_unit_test(test_chain_rules),
        cmocka_unit_test(test_policy_hooks),
        cmocka_unit_test(test_registry_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
