/*
 * tests/test_schema_suite.c - runs the official JSON Schema Test Suite,
 * draft-07, through eddy's validator: every file of tests/draft7, optional/
 * included, from Debian's json-schema-test-suite package (installed by
 * scripts/install-deps.sh --test; EDDY_JSON_SCHEMA_SUITE_DIR). Its remote
 * schemas (http://localhost:1234/...) are served from the package's
 * remotes/ directory through eddy_schema_options.remotes: nothing is
 * fetched over a network. Every group's schema must compile and every
 * test's data must validate exactly as its "valid" says, except the cases
 * listed in out_of_scope[] below (and in the README), each with its reason.
 *
 * When EDDY_TESTDATA_DIR holds a copy of the suite (the project's own
 * machines), it runs as well, as an extra.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "eddy/schema.h"

#define SUITE_TESTS EDDY_JSON_SCHEMA_SUITE_DIR "/tests/draft7"
#define SUITE_REMOTES EDDY_JSON_SCHEMA_SUITE_DIR "/remotes"
#define EXTRA_TESTS EDDY_TESTDATA_DIR "/json-schema-test-suite/draft7"

/*
 * Cases eddy does not implement, by file, group and test description (NULL:
 * every test of the group, or every group of the file), and why. Only
 * optional/ files appear here: the draft-07 specification makes these
 * assertions optional, and each one is a deliberate choice.
 */
static const struct {
    const char *file, *group, *test, *why;
} out_of_scope[] = {
    {"optional/format/hostname.json", NULL, NULL,
     "format hostname is an annotation: eddy asserts email, date-time, date, time, uri, uuid"},
    {"optional/format/idn-email.json", NULL, NULL, "format idn-email is an annotation"},
    {"optional/format/idn-hostname.json", NULL, NULL, "format idn-hostname is an annotation"},
    {"optional/format/ipv4.json", NULL, NULL, "format ipv4 is an annotation"},
    {"optional/format/ipv6.json", NULL, NULL, "format ipv6 is an annotation"},
    {"optional/format/iri.json", NULL, NULL, "format iri is an annotation"},
    {"optional/format/iri-reference.json", NULL, NULL, "format iri-reference is an annotation"},
    {"optional/format/json-pointer.json", NULL, NULL, "format json-pointer is an annotation"},
    {"optional/format/regex.json", NULL, NULL,
     "format regex is an annotation (a pattern keyword's regex is checked when compiling)"},
    {"optional/format/relative-json-pointer.json", NULL, NULL,
     "format relative-json-pointer is an annotation"},
    {"optional/format/uri-reference.json", NULL, NULL, "format uri-reference is an annotation"},
    {"optional/format/uri-template.json", NULL, NULL, "format uri-template is an annotation"},
    {"optional/content.json", NULL, NULL,
     "contentMediaType and contentEncoding are annotations, as draft-07 allows"},
    {"optional/ecmascript-regex.json", NULL, NULL,
     "format regex is an annotation; patterns are compiled by PCRE2, which knows \\Z"},
    {"optional/bignum.json", NULL, NULL,
     "integers beyond 64 bits: jansson refuses to read them (\"too big integer\"), so such a "
     "document never reaches the validator"},
};

static const char *scope_reason(const char *file, const char *group, const char *test)
{
    for (size_t i = 0; i < sizeof out_of_scope / sizeof *out_of_scope; i++) {
        if (strcmp(out_of_scope[i].file, file) != 0)
            continue;
        if (out_of_scope[i].group && (!group || strcmp(out_of_scope[i].group, group) != 0))
            continue;
        if (out_of_scope[i].test && (!test || strcmp(out_of_scope[i].test, test) != 0))
            continue;
        return out_of_scope[i].why;
    }
    return NULL;
}

struct totals {
    size_t files, passed, failed, skipped;
};

/* Runs one file (`rel` is its path under the draft7 folder). */
static void run_file(const char *top, const char *rel, struct totals *t)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", top, rel);
    json_error_t jerr;
    json_t *groups = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    t->files++;
    const char *why_file = scope_reason(rel, NULL, NULL);
    if (!groups && why_file) {
        /* Out of scope because jansson cannot read it: count its cases. */
        json_t *all = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
        size_t n = 0, gi;
        json_t *g;
        json_array_foreach(all, gi, g) {
            n += json_array_size(json_object_get(g, "tests"));
        }
        json_decref(all);
        print_message("json-schema %s: %zu out of scope (%s)\n", rel, n, why_file);
        t->skipped += n;
        return;
    }
    if (!groups || !json_is_array(groups)) {
        print_error("json-schema %s: cannot load: %s\n", rel, jerr.text);
        json_decref(groups);
        t->failed++;
        return;
    }
    eddy_schema_remote remote = {.prefix = "http://localhost:1234/", .dir = SUITE_REMOTES};
    eddy_schema_options opts = {.remotes = &remote, .nremotes = 1};
    size_t passed = 0, failed = 0, skipped = 0, gi;
    json_t *group;
    json_array_foreach(groups, gi, group) {
        const char *gdesc = json_string_value(json_object_get(group, "description"));
        json_t *tests = json_object_get(group, "tests");
        eddy_error err = {0};
        eddy_schema *s = eddy_schema_compile_with(json_object_get(group, "schema"), &opts, &err);
        size_t ti;
        json_t *test;
        json_array_foreach(tests, ti, test) {
            const char *tdesc = json_string_value(json_object_get(test, "description"));
            const char *why = scope_reason(rel, gdesc, tdesc);
            int want = json_is_true(json_object_get(test, "valid"));
            int got = -1;
            eddy_error verr = {0};
            if (s) {
                int rc = eddy_schema_validate(s, json_object_get(test, "data"), &verr);
                got = rc == EDDY_OK ? 1 : rc == EDDY_ESCHEMA ? 0 : -1;
            }
            if (got == want) {
                passed++;
            } else if (why) {
                skipped++;
            } else {
                failed++;
                print_error("json-schema %s: FAILED \"%s\" / \"%s\": expected %s, got %s (%s)\n",
                            rel, gdesc, tdesc, want ? "valid" : "invalid",
                            got < 0 ? "an error" : got ? "valid" : "invalid",
                            s ? verr.message : err.message);
            }
        }
        eddy_schema_free(s);
    }
    json_decref(groups);
    print_message("json-schema %s: %zu passed, %zu failed, %zu out of scope\n", rel, passed,
                  failed, skipped);
    t->passed += passed;
    t->failed += failed;
    t->skipped += skipped;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every .json file under `top`/`sub`, sorted, with paths relative to top. */
static void collect(const char *top, const char *sub, char ***names, size_t *count)
{
    char dirpath[4096];
    snprintf(dirpath, sizeof dirpath, "%s%s%s", top, *sub ? "/" : "", sub);
    DIR *dir = opendir(dirpath);
    if (!dir)
        return;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char rel[2048], full[4096];
        snprintf(rel, sizeof rel, "%s%s%s", sub, *sub ? "/" : "", de->d_name);
        snprintf(full, sizeof full, "%s/%s", top, rel);
        struct stat st;
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            collect(top, rel, names, count);
            continue;
        }
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        char **bigger = realloc(*names, (*count + 1) * sizeof **names);
        assert_non_null(bigger);
        *names = bigger;
        (*names)[*count] = strdup(rel);
        assert_non_null((*names)[*count]);
        (*count)++;
    }
    closedir(dir);
}

static struct totals run_suite(const char *top)
{
    char **names = NULL;
    size_t count = 0;
    collect(top, "", &names, &count);
    qsort(names, count, sizeof *names, by_name);
    struct totals t = {0};
    for (size_t i = 0; i < count; i++) {
        run_file(top, names[i], &t);
        free(names[i]);
    }
    free(names);
    return t;
}

static void test_suite(void **state)
{
    (void)state;
    struct stat st;
    if (stat(SUITE_TESTS, &st) != 0)
        fail_msg("json-schema: the test suite is not installed in %s (install it with "
                 "scripts/install-deps.sh --test: Debian package json-schema-test-suite)",
                 SUITE_TESTS);
    struct totals t = run_suite(SUITE_TESTS);
    print_message("json-schema: %zu files, %zu cases passed, %zu failed, %zu out of scope\n",
                  t.files, t.passed, t.failed, t.skipped);
    assert_int_equal(t.failed, 0);
    /* draft7 of the package holds 35 required files (423 cases) and 21 in
     * optional/: they must not silently go missing. */
    assert_true(t.files >= 56);
    assert_true(t.passed >= 423);
}

static void test_extra(void **state)
{
    (void)state;
    struct stat st;
    if (stat(EXTRA_TESTS, &st) != 0) {
        print_message("json-schema: %s not present, skipped (an extra, not required)\n",
                      EXTRA_TESTS);
        return;
    }
    struct totals t = run_suite(EXTRA_TESTS);
    print_message("json-schema (extra copy): %zu files, %zu cases passed, %zu failed\n",
                  t.files, t.passed, t.failed);
    assert_int_equal(t.failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite),
        cmocka_unit_test(test_extra),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
