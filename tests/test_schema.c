/*
 * tests/test_schema.c - the JSON Schema validator: each keyword's error
 * message (instance pointer, keyword, value), compile-time rejection of
 * unsupported keywords and ill-typed keyword values, the asserted formats,
 * lengths in code points, collecting all errors, and several threads
 * validating with one compiled schema.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/schema.h"

static eddy_schema *compile_ok(const char *text)
{
    eddy_error err = {0};
    eddy_schema *s = eddy_schema_compile_text(text, strlen(text), &err);
    if (!s)
        fail_msg("schema %s does not compile: %s", text, err.message);
    return s;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return v;
}

/* Validates `data` against `schema`: NULL `message` means valid, otherwise
 * the first error must be exactly `message`. */
static void check(const char *schema, const char *data, const char *message)
{
    eddy_schema *s = compile_ok(schema);
    json_t *v = parse(data);
    eddy_error err = {0};
    int rc = eddy_schema_validate(s, v, &err);
    if (!message) {
        if (rc != EDDY_OK)
            fail_msg("%s against %s: expected valid, got %s", data, schema, err.message);
    } else {
        assert_int_equal(rc, EDDY_ESCHEMA);
        assert_int_equal(err.code, EDDY_ESCHEMA);
        assert_string_equal(err.message, message);
    }
    json_decref(v);
    eddy_schema_free(s);
}

static void check_compile_error(const char *schema, int code, const char *message)
{
    eddy_error err = {0};
    eddy_schema *s = eddy_schema_compile_text(schema, strlen(schema), &err);
    if (s)
        fail_msg("schema %s compiled, expected error %s", schema, message);
    assert_int_equal(err.code, code);
    assert_string_equal(err.message, message);
}

static void test_type(void **state)
{
    check("{\"properties\": {\"items\": {\"items\": {\"properties\": {\"qty\": "
          "{\"type\": \"integer\"}}}}}}",
          "{\"items\": [{\"qty\": 1}, {\"qty\": 2.0}, {\"qty\": \"a\"}]}",
          "/items/2/qty: type integer expected, got \"a\"");
    check("{\"type\": \"integer\"}", "1.0", NULL);
    check("{\"type\": \"integer\"}", "1.5", "(root): type integer expected, got 1.5");
    check("{\"type\": [\"string\", \"null\"]}", "3",
          "(root): type null or string expected, got 3");
    check("{\"type\": \"number\"}", "true", "(root): type number expected, got true");
    check("{\"type\": \"object\"}", "[]", "(root): type object expected, got []");
    check("{\"type\": \"boolean\"}", "false", NULL);
}

static void test_enum_const(void **state)
{
    check("{\"enum\": [1, \"a\", null]}", "\"b\"",
          "(root): enum [1,\"a\",null] expected, got \"b\"");
    check("{\"enum\": [1, \"a\", null]}", "1.0", NULL);
    check("{\"properties\": {\"v\": {\"const\": {\"k\": [1, 2]}}}}", "{\"v\": {\"k\": [1]}}",
          "/v: const {\"k\":[1,2]} expected, got {\"k\":[1]}");
    check("{\"const\": {\"k\": [1, 2]}}", "{\"k\": [1.0, 2]}", NULL);
    check("{\"const\": false}", "0", "(root): const false expected, got 0");
}

static void test_object_keywords(void **state)
{
    check("{\"required\": [\"user_id\", \"email\"]}", "{\"email\": \"a@b.c\"}",
          "(root): required property \"user_id\" missing");
    check("{\"properties\": {\"a\": {}}, \"additionalProperties\": false}",
          "{\"a\": 1, \"b\": 2}",
          "/b: additionalProperties false: property \"b\" not allowed, got 2");
    check("{\"additionalProperties\": {\"type\": \"string\"}}", "{\"x/y\": 1}",
          "/x~1y: type string expected, got 1");
    check("{\"patternProperties\": {\"^n_\": {\"type\": \"number\"}}}", "{\"n_a\": \"s\"}",
          "/n_a: type number expected, got \"s\"");
    check("{\"minProperties\": 2}", "{\"a\": 1}",
          "(root): minProperties 2 expected, got 1 properties");
    check("{\"maxProperties\": 1}", "{\"a\": 1, \"b\": 2}",
          "(root): maxProperties 1 expected, got 2 properties");
    check("{\"propertyNames\": {\"maxLength\": 3}}", "{\"abcd\": 1}",
          "/abcd: propertyNames (a name matching) expected, got \"abcd\"");
    check("{\"dependencies\": {\"card\": [\"billing\"]}}", "{\"card\": 1}",
          "(root): dependencies property \"billing\" expected with \"card\", missing");
    check("{\"dependencies\": {\"card\": {\"required\": [\"cvv\"]}}}", "{\"card\": 1}",
          "(root): required property \"cvv\" missing");
}

static void test_array_keywords(void **state)
{
    check("{\"minItems\": 2}", "[1]", "(root): minItems 2 expected, got 1 items");
    check("{\"maxItems\": 1}", "[1, 2]", "(root): maxItems 1 expected, got 2 items");
    check("{\"uniqueItems\": true}", "[1, {\"a\": 1}, 1.0]",
          "(root): uniqueItems expected, got equal items 0 and 2: 1");
    check("{\"uniqueItems\": true}", "[{\"a\": 1}, {\"a\": 2}]", NULL);
    check("{\"items\": [{\"type\": \"string\"}], \"additionalItems\": false}", "[\"a\", 2]",
          "/1: additionalItems false: no item allowed here, got 2");
    check("{\"items\": [{\"type\": \"string\"}], \"additionalItems\": {\"type\": \"null\"}}",
          "[\"a\", null, 3]", "/2: type null expected, got 3");
    check("{\"contains\": {\"const\": 5}}", "[1, 2]",
          "(root): contains (an item matching) expected, got [1,2]");
    check("{\"contains\": {\"const\": 5}}", "[1, 5]", NULL);
}

static void test_number_keywords(void **state)
{
    check("{\"properties\": {\"age\": {\"minimum\": 0}}}", "{\"age\": -3}",
          "/age: minimum 0 expected, got -3");
    check("{\"maximum\": 2.5}", "3", "(root): maximum 2.5 expected, got 3");
    check("{\"exclusiveMinimum\": 0}", "0",
          "(root): exclusiveMinimum 0 (greater than) expected, got 0");
    check("{\"exclusiveMaximum\": 10}", "10.0",
          "(root): exclusiveMaximum 10 (less than) expected, got 10.0");
    check("{\"multipleOf\": 2}", "7", "(root): multipleOf 2 expected, got 7");
    check("{\"multipleOf\": 0.1}", "0.3", NULL);
    check("{\"multipleOf\": 0.0001}", "0.00751",
          "(root): multipleOf 0.0001 expected, got 0.00751");
    check("{\"minimum\": 1}", "\"not a number\"", NULL); /* only numbers */
}

static void test_string_keywords(void **state)
{
    check("{\"minLength\": 3}", "\"ab\"", "(root): minLength 3 expected, got \"ab\" (2 characters)");
    /* three code points, seven bytes: "é", "日", "a" */
    check("{\"maxLength\": 3}", "\"\\u00e9\\u65e5a\"", NULL);
    check("{\"maxLength\": 2}", "\"\\u00e9\\u65e5a\"",
          "(root): maxLength 2 expected, got \"\xc3\xa9\xe6\x97\xa5" "a\" (3 characters)");
    check("{\"minLength\": 2}", "\"\\ud83d\\ude00\"",
          "(root): minLength 2 expected, got \"\xf0\x9f\x98\x80\" (1 characters)");
    check("{\"pattern\": \"^[a-z]+$\"}", "\"abC\"",
          "(root): pattern \"^[a-z]+$\" expected, got \"abC\"");
    check("{\"pattern\": \"b+\"}", "\"abbc\"", NULL); /* unanchored search */
    check("{\"pattern\": \"^a$\"}", "\"a\\n\"", "(root): pattern \"^a$\" expected, got \"a\\n\"");
    check("{\"pattern\": \"^.$\"}", "\"\\u65e5\"", NULL); /* UTF mode */
}

static void test_combinators(void **state)
{
    check("{\"allOf\": [{\"type\": \"string\"}, {\"minLength\": 2}]}", "\"a\"",
          "(root): minLength 2 expected, got \"a\" (1 characters)");
    check("{\"anyOf\": [{\"type\": \"string\"}, {\"minimum\": 2}]}", "1",
          "(root): anyOf (at least one of 2 subschemas) expected, got 1");
    check("{\"oneOf\": [{\"type\": \"integer\"}, {\"minimum\": 2}]}", "3",
          "(root): oneOf (exactly one of 2 subschemas) expected, got 3 matching two or more");
    check("{\"oneOf\": [{\"type\": \"integer\"}, {\"minimum\": 2}]}", "1", NULL);
    check("{\"not\": {\"type\": \"null\"}}", "null",
          "(root): not (a value the subschema rejects) expected, got null");
    const char *cond = "{\"if\": {\"properties\": {\"kind\": {\"const\": \"card\"}}}, "
                       "\"then\": {\"required\": [\"number\"]}, "
                       "\"else\": {\"required\": [\"iban\"]}}";
    check(cond, "{\"kind\": \"card\"}", "(root): required property \"number\" missing");
    check(cond, "{\"kind\": \"bank\"}", "(root): required property \"iban\" missing");
    check(cond, "{\"kind\": \"card\", \"number\": \"4111\"}", NULL);
    check("false", "1", "(root): schema false allows no value, got 1");
    check("true", "{\"anything\": [1]}", NULL);
}

static void test_ref(void **state)
{
    const char *tree = "{\"definitions\": {\"node\": {\"type\": \"object\", \"properties\": "
                       "{\"v\": {\"type\": \"integer\"}, \"kids\": {\"type\": \"array\", "
                       "\"items\": {\"$ref\": \"#/definitions/node\"}}}}}, "
                       "\"$ref\": \"#/definitions/node\"}";
    check(tree, "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": 3}]}]}", NULL);
    check(tree, "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": \"x\"}]}]}",
          "/kids/0/kids/0/v: type integer expected, got \"x\"");
    check("{\"properties\": {\"self\": {\"$ref\": \"#\"}, \"n\": {\"type\": \"null\"}}}",
          "{\"self\": {\"self\": {\"n\": 1}}}", "/self/self/n: type null expected, got 1");
    /* ~0 ~1 and %-escapes in the pointer */
    check("{\"definitions\": {\"a/b\": {\"type\": \"string\"}, \"t~x\": {\"type\": \"null\"}, "
          "\"sp ace\": {\"minimum\": 5}}, \"properties\": {"
          "\"p\": {\"$ref\": \"#/definitions/a~1b\"}, \"q\": {\"$ref\": \"#/definitions/t~0x\"}, "
          "\"r\": {\"$ref\": \"#/definitions/sp%20ace\"}}}",
          "{\"p\": \"s\", \"q\": null, \"r\": 4}", "/r: minimum 5 expected, got 4");
    /* a reference into an array of schemas */
    check("{\"items\": [{\"type\": \"string\"}, {\"$ref\": \"#/items/0\"}]}", "[\"a\", 2]",
          "/1: type string expected, got 2");
    check_compile_error("{\"$ref\": \"#/definitions/missing\"}", EDDY_EINVAL,
                        "/$ref: reference \"#/definitions/missing\" points at nothing in the "
                        "schema");
    check_compile_error("{\"$ref\": \"other.json#/x\"}", EDDY_EUNSUPPORTED,
                        "/$ref: cannot resolve \"other.json#/x\": no schema here has the $id "
                        "\"other.json\" and no remote directory serves it");
    /* A schema that applies itself to the same value forever is a schema
     * error, found at compile time: a pure $ref cycle, and one through a
     * combinator (which used to run until a depth limit and say "invalid"). */
    check_compile_error("{\"definitions\": {\"a\": {\"$ref\": \"#/definitions/b\"}, "
                        "\"b\": {\"$ref\": \"#/definitions/a\"}}}",
                        EDDY_EINVAL,
                        "/definitions/a/$ref: $ref \"#/definitions/b\" recurses without "
                        "consuming input: it applies the schema to the same value again, "
                        "forever");
    check_compile_error("{\"allOf\": [{\"$ref\": \"#\"}]}", EDDY_EINVAL,
                        "/allOf/0/$ref: $ref \"#\" recurses without consuming input: it "
                        "applies the schema to the same value again, forever");
    check_compile_error("{\"definitions\": {\"x\": {\"not\": {\"anyOf\": [{\"type\": \"null\"}, "
                        "{\"$ref\": \"#/definitions/x\"}]}}}}",
                        EDDY_EINVAL,
                        "/definitions/x/not/anyOf/1/$ref: $ref \"#/definitions/x\" recurses "
                        "without consuming input: it applies the schema to the same value "
                        "again, forever");
    /* Recursion that descends into the value is fine, however deep. */
    eddy_schema *s = compile_ok("{\"anyOf\": [{\"type\": \"integer\"}, "
                                "{\"items\": {\"$ref\": \"#\"}}]}");
    json_t *v = parse("[1, [2, [3, [4]]]]");
    eddy_error err = {0};
    assert_int_equal(eddy_schema_validate(s, v, &err), EDDY_OK);
    json_decref(v);
    eddy_schema_free(s);
}

/* `n` nested arrays around 1 (malloc'd text). */
static char *nested(size_t n)
{
    char *t = malloc(2 * n + 2);
    assert_non_null(t);
    memset(t, '[', n);
    t[n] = '1';
    memset(t + n + 1, ']', n);
    t[2 * n + 1] = '\0';
    return t;
}

/* Validation that cannot finish is EDDY_ELIMIT naming the limit, never
 * "invalid" (EDDY_ESCHEMA), even under "not" whose verdict it would flip. */
static void test_limits(void **state)
{
    (void)state;
    /* Catastrophic backtracking: the PCRE2 match limit. */
    const char *schemas[] = {"{\"pattern\": \"(a+)+b|c\"}",
                             "{\"not\": {\"pattern\": \"(a+)+b|c\"}}",
                             "{\"patternProperties\": {\"(a+)+b|c\": {}}}",
                             "{\"anyOf\": [{\"pattern\": \"(a+)+b|c\"}, true]}"};
    char data[128];
    for (size_t i = 0; i < sizeof schemas / sizeof *schemas; i++) {
        eddy_schema *s = compile_ok(schemas[i]);
        snprintf(data, sizeof data, i == 2 ? "{\"%s\": 1}" : "\"%s\"",
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        json_t *v = parse(data);
        eddy_error err = {0};
        size_t count = 99;
        assert_int_equal(eddy_schema_validate(s, v, &err), EDDY_ELIMIT);
        assert_int_equal(err.code, EDDY_ELIMIT);
        if (!strstr(err.message, "pattern \"(a+)+b|c\" hit the regular expression match "
                                 "limit (1000000); validation stopped"))
            fail_msg("%s: %s", schemas[i], err.message);
        assert_int_equal(eddy_schema_validate_all(s, v, NULL, NULL, &count, &err), EDDY_ELIMIT);
        json_decref(v);
        eddy_schema_free(s);
    }
    /* The same pattern on a value it settles quickly is fine. */
    check("{\"pattern\": \"(a+)+b|c\"}", "\"aaab\"", NULL);

    /* $refs nested past the depth limit, following a deep value. */
    eddy_schema *s = compile_ok("{\"items\": {\"$ref\": \"#\"}}");
    char *deep = nested(1500);
    json_t *v = parse(deep);
    eddy_error err = {0};
    assert_int_equal(eddy_schema_validate(s, v, &err), EDDY_ELIMIT);
    if (!strstr(err.message, "$ref \"#\" nested deeper"))
        fail_msg("%s", err.message);
    assert_non_null(strstr(err.message, "$ref \"#\" nested deeper than 1000 levels (the $ref "
                                        "depth limit); validation stopped"));
    json_decref(v);
    free(deep);
    eddy_schema_free(s);

    /* A schema whose subschemas multiply: 2^40 evaluations of one value. */
    char big[4096];
    size_t used = (size_t)snprintf(big, sizeof big, "{\"definitions\": {");
    for (int i = 0; i < 40; i++)
        used += (size_t)snprintf(big + used, sizeof big - used,
                                 "\"d%d\": {\"allOf\": [{\"$ref\": \"#/definitions/d%d\"}, "
                                 "{\"$ref\": \"#/definitions/d%d\"}]},",
                                 i, i + 1, i + 1);
    snprintf(big + used, sizeof big - used,
             "\"d40\": {\"type\": \"integer\"}}, \"$ref\": \"#/definitions/d0\"}");
    s = compile_ok(big);
    v = json_integer(1);
    assert_int_equal(eddy_schema_validate(s, v, &err), EDDY_ELIMIT);
    assert_non_null(strstr(err.message, "(root): validation stopped after"));
    assert_non_null(strstr(err.message, "the step limit"));
    json_decref(v);
    eddy_schema_free(s);
}

/* uniqueItems sorts instead of comparing every pair: 80,000 items in well
 * under a second, and the same pair reported as before. */
static void test_unique_items(void **state)
{
    (void)state;
    const char *u = "{\"uniqueItems\": true}";
    check(u, "[1, 2, 3]", NULL);
    check(u, "[1, 2, 1.0, 2]", "(root): uniqueItems expected, got equal items 0 and 2: 1");
    check(u, "[3, 2, 2, 3]", "(root): uniqueItems expected, got equal items 0 and 3: 3");
    check(u, "[{\"a\": 1, \"b\": [1, {}]}, {\"b\": [1.0, {}], \"a\": 1}]",
          "(root): uniqueItems expected, got equal items 0 and 1: {\"a\":1,\"b\":[1,{}]}");
    check(u, "[{\"a\": 1}, {\"a\": 1, \"b\": 2}, [1], [1, 2], \"1\", 1, true, false, null, "
             "1.5, 1e300, 1e300, 0]",
          "(root): uniqueItems expected, got equal items 10 and 11: 1e300");
    check(u, "[\"a\\u0000b\", \"a\\u0000c\", \"a\"]", NULL);
    check(u, "[-0.0, 0]", "(root): uniqueItems expected, got equal items 0 and 1: -0.0");
    check(u, "[[], {}, \"\", 0, false, null]", NULL);

    json_t *arr = json_array();
    for (int i = 0; i < 80000; i++)
        json_array_append_new(arr, json_pack("{s:i, s:s, s:[s, s]}", "id", i, "name", "item",
                                             "tags", "a", "b"));
    eddy_schema *s = compile_ok(u);
    eddy_error err = {0};
    clock_t t0 = clock();
    assert_int_equal(eddy_schema_validate(s, arr, &err), EDDY_OK);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    print_message("uniqueItems: 80,000 objects in %.3f s of CPU\n", secs);
    /* generous: the sanitizer build is slow; the pairwise loop took minutes */
    assert_true(secs < 10.0);
    json_array_append_new(arr, json_pack("{s:i, s:s, s:[s, s]}", "id", 4711, "name", "item",
                                         "tags", "a", "b"));
    assert_int_equal(eddy_schema_validate(s, arr, &err), EDDY_ESCHEMA);
    assert_non_null(strstr(err.message, "equal items 4711 and 80000"));
    json_decref(arr);
    eddy_schema_free(s);
}

/* $id sets the base URI of $ref; anchors; the built-in metaschema; remote
 * files from a directory; the metaschema check at compile time. */
static void test_ids_and_remotes(void **state)
{
    (void)state;
    /* $id changes the base: "node" resolves to the definition whose $id is
     * http://x.test/node, not to anything relative to the document. */
    const char *tree =
        "{\"$id\": \"http://x.test/tree\", \"properties\": {\"nodes\": {\"items\": "
        "{\"$ref\": \"node\"}}}, \"definitions\": {\"node\": {\"$id\": \"http://x.test/node\", "
        "\"properties\": {\"value\": {\"type\": \"number\"}, \"sub\": {\"$ref\": \"tree\"}}}}}";
    check(tree, "{\"nodes\": [{\"value\": 1, \"sub\": {\"nodes\": [{\"value\": 2}]}}]}", NULL);
    check(tree, "{\"nodes\": [{\"value\": 1, \"sub\": {\"nodes\": [{\"value\": \"x\"}]}}]}",
          "/nodes/0/sub/nodes/0/value: type number expected, got \"x\"");
    /* A location-independent identifier. */
    check("{\"definitions\": {\"a\": {\"$id\": \"#pos\", \"minimum\": 0}}, "
          "\"$ref\": \"#pos\"}",
          "-1", "(root): minimum 0 expected, got -1");
    check_compile_error("{\"$ref\": \"#nowhere\"}", EDDY_EINVAL,
                        "/$ref: reference \"#nowhere\" names no \"$id\" anchor in the schema");
    /* The metaschema is built in. */
    const char *meta = "{\"$ref\": \"http://json-schema.org/draft-07/schema#\"}";
    check(meta, "{\"type\": \"string\", \"minLength\": 2}", NULL);
    check(meta, "{\"definitions\": {\"foo\": {\"type\": 1}}}",
          "/definitions/foo/type: anyOf (at least one of 2 subschemas) expected, got 1");
    /* Every schema is checked against it. */
    check_compile_error("{\"type\": [\"string\", \"string\"]}", EDDY_EINVAL,
                        "(root): not a valid draft-07 schema (by its metaschema): /type: anyOf (at "
                        "least one of 2 subschemas) expected, got [\"string\",\"string\"]");
    check_compile_error("{\"required\": [\"a\", \"a\"]}", EDDY_EINVAL,
                        "(root): not a valid draft-07 schema (by its metaschema): /required: "
                        "uniqueItems expected, got equal items 0 and 1: \"a\"");
    /* An unknown keyword is fine when a $ref points into it, an error
     * otherwise (a misspelling). */
    check("{\"my~defs\": {\"n\": {\"type\": \"null\"}}, \"$ref\": \"#/my~0defs/n\"}", "1",
          "(root): type null expected, got 1");
    check_compile_error("{\"my~defs\": {\"n\": {}}, \"propertiez\": {}, "
                        "\"$ref\": \"#/my~0defs/n\"}",
                        EDDY_EUNSUPPORTED, "/propertiez: unsupported keyword \"propertiez\"");

    /* Remote schemas from a directory, relative refs inside them, and $id
     * base changes ("folder/"). */
    char dir[] = "/tmp/eddy-schema-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/folder", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    struct {
        const char *name, *text;
    } files[] = {
        {"integer.json", "{\"type\": \"integer\"}"},
        {"folder/item.json", "{\"items\": {\"$ref\": \"../integer.json\"}}"},
        {"defs.json", "{\"things\": {\"pos\": {\"minimum\": 0}}}"},
        {"bad.json", "{\"type\": "},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(files[i].text, f);
        fclose(f);
    }
    eddy_schema_remote remote = {.prefix = "http://remote.test/", .dir = dir};
    eddy_schema_options opts = {.remotes = &remote, .nremotes = 1};
    struct {
        const char *schema, *data;
        int want;
    } cases[] = {
        {"{\"$ref\": \"http://remote.test/integer.json\"}", "1", EDDY_OK},
        {"{\"$ref\": \"http://remote.test/integer.json\"}", "\"a\"", EDDY_ESCHEMA},
        {"{\"$ref\": \"http://remote.test/folder/item.json\"}", "[1, 2]", EDDY_OK},
        {"{\"$ref\": \"http://remote.test/folder/item.json\"}", "[1, 2.5]", EDDY_ESCHEMA},
        {"{\"$id\": \"http://remote.test/\", \"items\": {\"$id\": \"folder/\", "
         "\"$ref\": \"item.json\"}}", "[[1]]", EDDY_ESCHEMA /* the $id beside $ref is ignored */},
        {"{\"$id\": \"http://remote.test/\", \"items\": {\"$id\": \"folder/\", \"items\": "
         "{\"$ref\": \"item.json\"}}}", "[[[1]]]", EDDY_OK},
        {"{\"$ref\": \"http://remote.test/defs.json#/things/pos\"}", "-1", EDDY_ESCHEMA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *schema = parse(cases[i].schema), *data = parse(cases[i].data);
        eddy_error err = {0};
        eddy_schema *s = eddy_schema_compile_with(schema, &opts, &err);
        if (!s && cases[i].want == EDDY_ESCHEMA && i == 4) {
            /* "item.json" against http://remote.test/ does not exist */
            assert_int_equal(err.code, EDDY_EIO);
        } else {
            if (!s)
                fail_msg("%s: %s", cases[i].schema, err.message);
            int rc = eddy_schema_validate(s, data, &err);
            if (rc != cases[i].want)
                fail_msg("%s on %s: %s", cases[i].schema, cases[i].data, err.message);
        }
        eddy_schema_free(s);
        json_decref(schema);
        json_decref(data);
    }
    /* Never outside the directory: ".." is resolved away inside the URI,
     * and an escaped one is not a plain path; a broken file is named. */
    json_t *escape = parse("{\"$ref\": \"http://remote.test/../etc/passwd\"}");
    eddy_error err = {0};
    assert_null(eddy_schema_compile_with(escape, &opts, &err));
    assert_int_equal(err.code, EDDY_EIO);
    snprintf(path, sizeof path, "%s/etc/passwd: cannot open", dir);
    assert_non_null(strstr(err.message, path));
    json_decref(escape);
    escape = parse("{\"$ref\": \"http://remote.test/%2e%2e/etc/passwd\"}");
    assert_null(eddy_schema_compile_with(escape, &opts, &err));
    assert_int_equal(err.code, EDDY_EUNSUPPORTED);
    json_decref(escape);
    json_t *broken = parse("{\"$ref\": \"http://remote.test/bad.json\"}");
    assert_null(eddy_schema_compile_with(broken, &opts, &err));
    assert_int_equal(err.code, EDDY_EPARSE);
    assert_non_null(strstr(err.message, "bad.json: line 1"));
    json_decref(broken);

    /* A schema file's own directory serves its relative refs. */
    snprintf(path, sizeof path, "%s/main.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"properties\": {\"n\": {\"$ref\": \"integer.json\"}}}", f);
    fclose(f);
    eddy_schema *s = eddy_schema_compile_file(path, &err);
    if (!s)
        fail_msg("%s: %s", path, err.message);
    json_t *data = parse("{\"n\": \"x\"}");
    assert_int_equal(eddy_schema_validate(s, data, &err), EDDY_ESCHEMA);
    assert_string_equal(err.message, "/n: type integer expected, got \"x\"");
    json_decref(data);
    eddy_schema_free(s);

    /* A FIFO is refused at once, never waited on. */
    snprintf(path, sizeof path, "%s/fifo.json", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(eddy_schema_compile_file(path, &err));
    assert_int_equal(err.code, EDDY_EIO);
    assert_non_null(strstr(err.message, "not a regular file"));

    const char *names[] = {"fifo.json", "main.json", "bad.json", "defs.json", "folder/item.json",
                           "integer.json", "folder", ""};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
}

static void test_formats(void **state)
{
    const char *email = "{\"properties\": {\"email\": {\"format\": \"email\"}}}";
    check(email, "{\"email\": \"x@\"}", "/email: format email expected, got \"x@\"");
    check(email, "{\"email\": \"joe.bloggs@example.com\"}", NULL);
    check(email, "{\"email\": \"\\\"joe bloggs\\\"@example.com\"}", NULL);
    check(email, "{\"email\": \"joe@[127.0.0.1]\"}", NULL);
    const char *bad_emails[] = {"@example.com", "joe..b@example.com", ".joe@example.com",
                                "joe@-example.com", "joe@exa mple.com", "joe", "a@b@c.com"};
    for (size_t i = 0; i < sizeof bad_emails / sizeof *bad_emails; i++) {
        char data[128], msg[160];
        snprintf(data, sizeof data, "{\"email\": \"%s\"}", bad_emails[i]);
        snprintf(msg, sizeof msg, "/email: format email expected, got \"%s\"", bad_emails[i]);
        check(email, data, msg);
    }

    const char *dt = "{\"format\": \"date-time\"}";
    check(dt, "\"2018-11-13T20:20:39+00:00\"", NULL);
    check(dt, "\"2018-11-13t20:20:39.123456z\"", NULL);
    check(dt, "\"2020-02-29T00:00:00Z\"", NULL);
    check(dt, "\"1998-12-31T23:59:60Z\"", NULL);
    check(dt, "\"1998-12-31T15:59:60-08:00\"", NULL);
    const char *bad_dts[] = {"2019-02-29T00:00:00Z", "2018-11-13T20:20:39",
                             "2018-11-13 20:20:39Z", "2018-13-01T00:00:00Z",
                             "1998-12-31T22:59:60Z", "2018-11-13T24:00:00Z",
                             "2018-11-13T20:20:39.Z", "2018-11-13T20:20:39+0100"};
    for (size_t i = 0; i < sizeof bad_dts / sizeof *bad_dts; i++) {
        char data[128], msg[160];
        snprintf(data, sizeof data, "\"%s\"", bad_dts[i]);
        snprintf(msg, sizeof msg, "(root): format date-time expected, got \"%s\"", bad_dts[i]);
        check(dt, data, msg);
    }

    const char *uri = "{\"format\": \"uri\"}";
    check(uri, "\"https://example.com:8080/a/b?q=1#frag\"", NULL);
    check(uri, "\"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66\"", NULL);
    check(uri, "\"http://[2001:db8::1]/x%20y\"", NULL);
    check(uri, "\"/relative/path\"", "(root): format uri expected, got \"/relative/path\"");
    check(uri, "\"http://exa mple.com\"", "(root): format uri expected, got \"http://exa mple.com\"");
    check(uri, "\"http://example.com/%zz\"", "(root): format uri expected, got \"http://example.com/%zz\"");
    check(uri, "\"http://example.com:80a/\"", "(root): format uri expected, got \"http://example.com:80a/\"");

    const char *uuid = "{\"format\": \"uuid\"}";
    check(uuid, "\"2EB8AA08-AA98-11EA-B4AA-73B441D16380\"", NULL);
    check(uuid, "\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\"", NULL);
    check(uuid, "\"2eb8aa08aa98-11ea-b4aa-73b441d16380\"",
          "(root): format uuid expected, got \"2eb8aa08aa98-11ea-b4aa-73b441d16380\"");
    check(uuid, "\"2eb8aa08-aa98-11ea-b4aa-73b441d1638g\"",
          "(root): format uuid expected, got \"2eb8aa08-aa98-11ea-b4aa-73b441d1638g\"");
    /* unknown and unchecked formats are annotations */
    check("{\"format\": \"ipv6\"}", "\"not an address\"", NULL);
    check("{\"format\": \"x-custom\"}", "\"anything\"", NULL);
    /* formats apply to strings only */
    check("{\"format\": \"email\"}", "12", NULL);
}

static void test_compile_errors(void **state)
{
    check_compile_error("{\"properties\": {\"tags\": {\"foo\": 1}}}", EDDY_EUNSUPPORTED,
                        "/properties/tags/foo: unsupported keyword \"foo\"");
    check_compile_error("{\"unevaluatedProperties\": false}", EDDY_EUNSUPPORTED,
                        "/unevaluatedProperties: unsupported keyword \"unevaluatedProperties\"");
    check_compile_error("{\"properties\": {\"age\": {\"minimum\": \"0\"}}}", EDDY_EINVAL,
                        "/properties/age/minimum: must be a number");
    check_compile_error("{\"type\": \"int\"}", EDDY_EINVAL, "/type: unknown type \"int\"");
    check_compile_error("{\"type\": [\"string\", 3]}", EDDY_EINVAL, "/type/1: must be a type name");
    check_compile_error("{\"required\": [\"a\", 1]}", EDDY_EINVAL, "/required/1: must be a string");
    check_compile_error("{\"maxLength\": -1}", EDDY_EINVAL,
                        "/maxLength: must be a non-negative integer");
    check_compile_error("{\"minItems\": 1.5}", EDDY_EINVAL,
                        "/minItems: must be a non-negative integer");
    check_compile_error("{\"multipleOf\": 0}", EDDY_EINVAL,
                        "/multipleOf: must be a number greater than 0");
    check_compile_error("{\"items\": 3}", EDDY_EINVAL,
                        "/items: must be a schema or an array of schemas");
    check_compile_error("{\"anyOf\": []}", EDDY_EINVAL,
                        "/anyOf: must be a non-empty array of schemas");
    check_compile_error("{\"allOf\": [{}, 7]}", EDDY_EINVAL,
                        "/allOf/1: must be a schema (an object or a boolean)");
    check_compile_error("{\"enum\": 3}", EDDY_EINVAL, "/enum: must be an array");
    check_compile_error("{\"uniqueItems\": 1}", EDDY_EINVAL, "/uniqueItems: must be a boolean");
    check_compile_error("{\"definitions\": {\"a~b/c\": {\"not\": 3}}}", EDDY_EINVAL,
                        "/definitions/a~0b~1c/not: must be a schema (an object or a boolean)");
    check_compile_error("3", EDDY_EINVAL, "(root): schema must be an object or a boolean");
    check_compile_error("{\"type\": \"string\"", EDDY_EPARSE,
                        "schema: line 1, column 17: '}' expected near end of file");

    eddy_error err = {0};
    const char *bad_pattern = "{\"pattern\": \"a(\"}";
    assert_null(eddy_schema_compile_text(bad_pattern, strlen(bad_pattern), &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "/pattern: invalid regular expression \"a(\""));
    assert_null(eddy_schema_compile_file("/nonexistent/schema.json", &err));
    assert_int_equal(err.code, EDDY_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/schema.json"));
    assert_null(eddy_schema_compile(NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    /* annotations are accepted */
    eddy_schema *s = compile_ok(
        "{\"$schema\": \"http://json-schema.org/draft-07/schema#\", \"$id\": \"x\", "
        "\"title\": \"t\", \"description\": \"d\", \"default\": 1, \"examples\": [1], "
        "\"$comment\": \"c\", \"readOnly\": true, \"writeOnly\": false, "
        "\"contentMediaType\": \"text/plain\", \"contentEncoding\": \"base64\"}");
    eddy_schema_free(s);
    eddy_schema_free(NULL);
}

/* ---- collecting every error ---------------------------------------------- */

struct collected {
    size_t n;
    char paths[8][64];
    char keywords[8][32];
};

static int collect(const char *path, const char *keyword, const char *message, void *user)
{
    struct collected *c = user;
    if (c->n < 8) {
        snprintf(c->paths[c->n], sizeof c->paths[0], "%s", path);
        snprintf(c->keywords[c->n], sizeof c->keywords[0], "%s", keyword);
    }
    c->n++;
    return 0;
}

static int stop_after_one(const char *path, const char *keyword, const char *message,
                          void *user)
{
    (*(int *)user)++;
    return 1;
}

static void test_validate_all(void **state)
{
    eddy_schema *s = compile_ok(
        "{\"type\": \"object\", \"required\": [\"user_id\"], \"properties\": {"
        "\"email\": {\"format\": \"email\"}, \"age\": {\"type\": \"integer\", \"minimum\": 0},"
        "\"tags\": {\"items\": {\"type\": \"string\"}}}}");
    json_t *v = parse("{\"email\": \"x@\", \"age\": -3.5, \"tags\": [\"a\", 1]}");
    struct collected c = {0};
    size_t count = 0;
    eddy_error err = {0};
    assert_int_equal(eddy_schema_validate_all(s, v, collect, &c, &count, &err), EDDY_ESCHEMA);
    assert_int_equal(count, 5);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.paths[0], "");
    assert_string_equal(c.keywords[0], "required");
    assert_string_equal(c.paths[1], "/email");
    assert_string_equal(c.keywords[1], "format");
    assert_string_equal(c.paths[2], "/age");
    assert_string_equal(c.keywords[2], "type");
    assert_string_equal(c.paths[3], "/age");
    assert_string_equal(c.keywords[3], "minimum");
    assert_string_equal(c.paths[4], "/tags/1");
    assert_string_equal(c.keywords[4], "type");
    assert_string_equal(err.message, "(root): required property \"user_id\" missing");

    int calls = 0;
    assert_int_equal(eddy_schema_validate_all(s, v, stop_after_one, &calls, &count, NULL),
                     EDDY_ESCHEMA);
    assert_int_equal(calls, 1);
    assert_int_equal(count, 1);

    /* a valid value: no call, OK, err untouched */
    json_t *ok = parse("{\"user_id\": \"u1\", \"age\": 3}");
    eddy_error untouched = {0};
    assert_int_equal(eddy_schema_validate_all(s, ok, collect, &c, &count, &untouched), EDDY_OK);
    assert_int_equal(count, 0);
    assert_int_equal(untouched.code, EDDY_OK);
    assert_int_equal(eddy_schema_validate(s, NULL, &err), EDDY_EINVAL);
    json_decref(ok);
    json_decref(v);
    eddy_schema_free(s);
}

static void test_long_value_truncated(void **state)
{
    char data[400];
    memset(data, 0, sizeof data);
    data[0] = '"';
    memset(data + 1, 'x', 300);
    data[301] = '"';
    eddy_schema *s = compile_ok("{\"maxLength\": 10}");
    json_t *v = parse(data);
    eddy_error err = {0};
    assert_int_equal(eddy_schema_validate(s, v, &err), EDDY_ESCHEMA);
    assert_true(strlen(err.message) < 120);
    assert_non_null(strstr(err.message, "xxx... (300 characters)"));
    json_decref(v);
    eddy_schema_free(s);
}

/* ---- threads ------------------------------------------------------------------ */

struct thread_arg {
    const eddy_schema *schema;
    int failures;
};

static void *validate_many(void *p)
{
    struct thread_arg *a = p;
    json_error_t jerr;
    json_t *good = json_loads("{\"id\": \"2eb8aa08-aa98-11ea-b4aa-73b441d16380\", "
                              "\"name\": \"abc\", \"n\": [1, 2, 3]}", 0, &jerr);
    json_t *bad = json_loads("{\"id\": \"nope\", \"name\": \"ABC\", \"n\": [1, 1]}", 0, &jerr);
    for (int i = 0; i < 500; i++) {
        eddy_error err = {0};
        if (eddy_schema_validate(a->schema, good, &err) != EDDY_OK)
            a->failures++;
        size_t count = 0;
        if (eddy_schema_validate_all(a->schema, bad, NULL, NULL, &count, &err) != EDDY_ESCHEMA ||
            count != 3)
            a->failures++;
    }
    json_decref(good);
    json_decref(bad);
    return NULL;
}

static void test_threads(void **state)
{
    eddy_schema *s = compile_ok(
        "{\"properties\": {\"id\": {\"format\": \"uuid\"}, "
        "\"name\": {\"pattern\": \"^[a-z]+$\"}, \"n\": {\"uniqueItems\": true, "
        "\"items\": {\"$ref\": \"#/definitions/pos\"}}}, "
        "\"definitions\": {\"pos\": {\"type\": \"integer\", \"minimum\": 1}}}");
    pthread_t threads[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].schema = s;
        args[i].failures = 0;
        assert_int_equal(pthread_create(&threads[i], NULL, validate_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    eddy_schema_free(s);
}

static void test_version_cmp(void **state)
{
    assert_true(eddy_schema_version_cmp("1.0", "2.0") < 0);
    assert_true(eddy_schema_version_cmp("2.0", "10.0") < 0);
    assert_true(eddy_schema_version_cmp("10.0", "9.9") > 0);
    assert_int_equal(eddy_schema_version_cmp("1", "1.0"), 0);
    assert_true(eddy_schema_version_cmp("1.0.1", "1.0") > 0);
    assert_true(eddy_schema_version_cmp("abc", "99") > 0);
    assert_int_equal(eddy_schema_version_cmp("abc", "abc"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_enum_const),
        cmocka_unit_test(test_object_keywords),
        cmocka_unit_test(test_array_keywords),
        cmocka_unit_test(test_number_keywords),
        cmocka_unit_test(test_string_keywords),
        cmocka_unit_test(test_combinators),
        cmocka_unit_test(test_ref),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_unique_items),
        cmocka_unit_test(test_ids_and_remotes),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_validate_all),
        cmocka_unit_test(test_long_value_truncated),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_version_cmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
