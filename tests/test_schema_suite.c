/*
 * tests/test_schema_suite.c - runs the official JSON Schema Test Suite
 * (draft-07 files in $EDDY_TESTDATA_DIR/json-schema-test-suite/draft7/)
 * through eddy's validator: every group's schema must compile and every
 * test's data must validate exactly as its "valid" says.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eddy/schema.h"

#define SUITE_DIR EDDY_TESTDATA_DIR "/json-schema-test-suite/draft7"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one file; returns the number of failed cases (a group whose schema
 * does not compile counts all of its cases as failed). */
static size_t run_file(const char *name, size_t *passed_total)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", SUITE_DIR, name);
    json_error_t jerr;
    json_t *groups = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!groups || !json_is_array(groups)) {
        print_error("json-schema %s: cannot load: %s\n", name, jerr.text);
        json_decref(groups);
        return 1;
    }
    size_t passed = 0, failed = 0, gi;
    json_t *group;
    json_array_foreach(groups, gi, group) {
        const char *gdesc = json_string_value(json_object_get(group, "description"));
        json_t *tests = json_object_get(group, "tests");
        eddy_error err = {0};
        eddy_schema *s = eddy_schema_compile(json_object_get(group, "schema"), &err);
        if (!s) {
            print_error("json-schema %s: group \"%s\": schema does not compile: %s\n", name,
                        gdesc, err.message);
            failed += json_array_size(tests);
            continue;
        }
        size_t ti;
        json_t *test;
        json_array_foreach(tests, ti, test) {
            int want = json_is_true(json_object_get(test, "valid"));
            eddy_error verr = {0};
            int rc = eddy_schema_validate(s, json_object_get(test, "data"), &verr);
            int got = rc == EDDY_OK;
            if (rc != EDDY_OK && rc != EDDY_ESCHEMA) {
                got = -1;
            }
            if (got == want) {
                passed++;
            } else {
                failed++;
                print_error("json-schema %s: FAILED \"%s\" / \"%s\": expected %s, got %s (%s)\n",
                            name, gdesc,
                            json_string_value(json_object_get(test, "description")),
                            want ? "valid" : "invalid",
                            got < 0 ? "an error" : got ? "valid" : "invalid", verr.message);
            }
        }
        eddy_schema_free(s);
    }
    json_decref(groups);
    print_message("json-schema %s: %zu passed, %zu failed\n", name, passed, failed);
    *passed_total += passed;
    return failed;
}

static void test_suite(void **state)
{
    (void)state;
    DIR *dir = opendir(SUITE_DIR);
    if (!dir)
        fail_msg("json-schema: test suite directory %s is missing", SUITE_DIR);
    char **names = NULL;
    size_t count = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        char **bigger = realloc(names, (count + 1) * sizeof *names);
        assert_non_null(bigger);
        names = bigger;
        names[count] = strdup(de->d_name);
        assert_non_null(names[count]);
        count++;
    }
    closedir(dir);
    if (count == 0)
        fail_msg("json-schema: no .json files in %s", SUITE_DIR);
    qsort(names, count, sizeof *names, by_name);

    size_t failed = 0, passed = 0;
    for (size_t i = 0; i < count; i++) {
        failed += run_file(names[i], &passed);
        free(names[i]);
    }
    free(names);
    print_message("json-schema: %zu files, %zu cases passed, %zu failed\n", count, passed,
                  failed);
    assert_int_equal(failed, 0);
    assert_true(passed > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
