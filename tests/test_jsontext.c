/*
 * tests/test_jsontext.c - the strict JSON decoder every event input path
 * shares (eddy_json_decode) and the bounded line reader of JSON-lines input
 * (src/core/jsontext.c).
 */
#include <errno.h>
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

/* ---- eddy_json_decode ------------------------------------------------------- */

/* Decodes `text` (of `len` bytes) and expects a refusal with `code` and a
 * message containing `part`. */
static void expect_refused(const char *text, size_t len, int code, const char *part)
{
    eddy_error err;
    eddy_error_clear(&err);
    json_t *v = eddy_json_decode(text, len, &err);
    if (v) {
        json_decref(v);
        fail_msg("accepted: %.80s", text);
    }
    if (err.code != code || !strstr(err.message, part))
        fail_msg("refused with %s \"%s\", want %s with \"%s\"", eddy_errname(err.code),
                 err.message, eddy_errname(code), part);
}

/* `n` nested arrays around 1: "[[...[1]...]]" (malloc'd). */
static char *nested(size_t n, size_t *len)
{
    char *s = malloc(2 * n + 2);
    assert_non_null(s);
    memset(s, '[', n);
    s[n] = '1';
    memset(s + n + 1, ']', n);
    s[2 * n + 1] = '\0';
    *len = 2 * n + 1;
    return s;
}

static void test_decode_strict(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    json_t *v = eddy_json_decode("{\"a\":[1,2,{\"b\":null}]}", 22, &err);
    assert_non_null(v);
    assert_int_equal(json_array_size(json_object_get(v, "a")), 3);
    json_decref(v);
    /* Any JSON value, not only objects. */
    v = eddy_json_decode("\"s\"", 3, &err);
    assert_true(json_is_string(v));
    json_decref(v);

    /* A duplicated member, at any depth, is refused (which one would count?). */
    expect_refused("{\"a\":1,\"a\":2}", 13, EDDY_EPARSE, "duplicate object key near '\"a\"'");
    expect_refused("[{\"x\":{\"a\":1,\"a\":1}}]", 21, EDDY_EPARSE, "duplicate object key");
    /* A NUL byte ends nothing: what follows it is not ignored. */
    expect_refused("{\"a\":1}\0{\"b\":2}", 15, EDDY_EPARSE, "NUL byte at offset 7");
    expect_refused("{\"a\":\"x\0y\"}", 11, EDDY_EPARSE, "NUL byte at offset 7");
    /* "\u0000" is refused in eddy's words, not jansson's flag names. */
    const char *esc = "{\"a\":\"x\\u0000y\"}";
    eddy_error_clear(&err);
    assert_null(eddy_json_decode(esc, strlen(esc), &err));
    assert_int_equal(err.code, EDDY_EPARSE);
    assert_string_equal(err.message, "JSON parse error at line 1, column 15: a string holds "
                                     "\\u0000 (NUL), which eddy does not accept");
    assert_null(strstr(err.message, "JSON_ALLOW_NUL"));
    expect_refused("{} {}", 5, EDDY_EPARSE, "end of file expected");
    expect_refused("", 0, EDDY_EPARSE, "JSON parse error at line 1");
    expect_refused("\"\xff\"", 3, EDDY_EPARSE, "unable to decode byte 0xff");
    eddy_error_clear(&err);
    assert_null(eddy_json_decode(NULL, 0, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
}

static void test_decode_limits(void **state)
{
    (void)state;
    eddy_error err;
    eddy_error_clear(&err);
    size_t len;
    /* EDDY_EVENT_MAX_DEPTH levels pass; one more is refused, named. */
    char *deep = nested(EDDY_EVENT_MAX_DEPTH, &len);
    json_t *v = eddy_json_decode(deep, len, &err);
    assert_non_null(v);
    json_decref(v);
    free(deep);
    deep = nested(EDDY_EVENT_MAX_DEPTH + 1, &len);
    expect_refused(deep, len, EDDY_ETOOBIG,
                   "event: nested deeper than 256 levels (EDDY_EVENT_MAX_DEPTH)");
    free(deep);
    /* Brackets inside strings are not nesting. */
    char *strbrackets = malloc(1000 + 3);
    assert_non_null(strbrackets);
    strbrackets[0] = '"';
    memset(strbrackets + 1, '[', 1000);
    strbrackets[1001] = '"';
    strbrackets[1002] = '\0';
    v = eddy_json_decode(strbrackets, 1002, &err);
    assert_true(json_is_string(v));
    json_decref(v);
    /* An escaped quote does not end the string: the brackets after it are
     * still inside. */
    const char *q = "\"\\\"[[[[\"";
    v = eddy_json_decode(q, strlen(q), &err);
    assert_true(json_is_string(v));
    json_decref(v);
    free(strbrackets);

    /* Exactly EDDY_EVENT_MAX_BYTES pass; one byte more is refused before
     * anything is parsed. */
    size_t n = EDDY_EVENT_MAX_BYTES;
    char *big = malloc(n + 2);
    assert_non_null(big);
    big[0] = '"';
    memset(big + 1, 'a', n - 2);
    big[n - 1] = '"';
    big[n] = '\0';
    v = eddy_json_decode(big, n, &err);
    assert_non_null(v);
    json_decref(v);
    big[n - 1] = 'a';
    big[n] = '"';
    big[n + 1] = '\0';
    expect_refused(big, n + 1, EDDY_ETOOBIG,
                   "event: 1048577 bytes, larger than the 1048576-byte limit "
                   "(EDDY_EVENT_MAX_BYTES)");
    free(big);
}

/* ---- the line reader ----------------------------------------------------------- */

/* Input served from memory, `chunk` bytes at most per read (0: all), with
 * an optional failure once `fail_at` bytes were served. */
struct source {
    const char *data;
    size_t len, pos, chunk;
    size_t fail_at; /* 0: never */
    size_t served;
    int endless;    /* serve 'x' forever after the data */
};

static long source_read(void *user, void *buf, size_t size)
{
    struct source *s = user;
    if (s->fail_at && s->served >= s->fail_at) {
        errno = EIO;
        return -1;
    }
    size_t left = s->len - s->pos;
    size_t n = size;
    if (s->chunk && n > s->chunk)
        n = s->chunk;
    if (s->endless && left == 0) {
        memset(buf, 'x', n);
        s->served += n;
        return (long)n;
    }
    if (n > left)
        n = left;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    s->served += n;
    return (long)n;
}

static void expect_line(eddy_line_reader *r, const char *want, size_t want_len, long lineno)
{
    const char *line;
    size_t len;
    eddy_error err;
    eddy_error_clear(&err);
    int rc = eddy_line_reader_next(r, &line, &len, &err);
    if (rc != 1)
        fail_msg("line %ld: got %d (%s)", lineno, rc, err.message);
    assert_int_equal(len, want_len);
    assert_memory_equal(line, want, want_len);
    assert_int_equal(line[len], '\0');
    assert_int_equal(eddy_line_reader_line(r), lineno);
}

static void test_lines(void **state)
{
    (void)state;
    static const char text[] = "one\r\n\ntwo\nthr\0ee\n\r\nlast";
    /* The same lines whatever the size of the reads. */
    size_t chunks[] = {0, 1, 2, 3, 7};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        struct source src = {.data = text, .len = sizeof text - 1, .chunk = chunks[c]};
        eddy_line_reader *r = eddy_line_reader_new(source_read, &src, 0);
        assert_non_null(r);
        expect_line(r, "one", 3, 1);
        expect_line(r, "", 0, 2);
        expect_line(r, "two", 3, 3);
        expect_line(r, "thr\0ee", 6, 4); /* a NUL byte is kept, not an end */
        expect_line(r, "", 0, 5);
        expect_line(r, "last", 4, 6); /* no final newline */
        const char *line;
        size_t len;
        assert_int_equal(eddy_line_reader_next(r, &line, &len, NULL), 0);
        assert_int_equal(eddy_line_reader_next(r, &line, &len, NULL), 0);
        eddy_line_reader_free(r);
    }
    eddy_line_reader_free(NULL);
    assert_null(eddy_line_reader_new(NULL, NULL, 0));
}

static void test_line_limit(void **state)
{
    (void)state;
    /* A line of exactly the limit passes, with or without "\r"; one byte
     * more is refused, and reading goes on with the next line. */
    static const char text[] = "12345\n12345\r\n123456\nok\n1234567";
    struct source src = {.data = text, .len = sizeof text - 1, .chunk = 2};
    eddy_line_reader *r = eddy_line_reader_new(source_read, &src, 5);
    expect_line(r, "12345", 5, 1);
    expect_line(r, "12345", 5, 2);
    const char *line;
    size_t len;
    eddy_error err;
    eddy_error_clear(&err);
    assert_int_equal(eddy_line_reader_next(r, &line, &len, &err), -1);
    assert_int_equal(err.code, EDDY_ETOOBIG);
    assert_string_equal(err.message, "line 3: longer than the 5-byte limit");
    expect_line(r, "ok", 2, 4);
    assert_int_equal(eddy_line_reader_next(r, &line, &len, &err), -1);
    assert_string_equal(err.message, "line 5: longer than the 5-byte limit");
    assert_int_equal(eddy_line_reader_next(r, &line, &len, &err), 0);
    eddy_line_reader_free(r);

    /* An endless line is refused after reading about the limit, never all
     * of it: memory and reads stay bounded. */
    struct source endless = {.data = "", .len = 0, .endless = 1};
    r = eddy_line_reader_new(source_read, &endless, 1000);
    eddy_error_clear(&err);
    assert_int_equal(eddy_line_reader_next(r, &line, &len, &err), -1);
    assert_int_equal(err.code, EDDY_ETOOBIG);
    assert_true(endless.served <= 1000 + 3);
    eddy_line_reader_free(r);

    /* The same with the default limit, EDDY_EVENT_MAX_BYTES. */
    struct source endless2 = {.data = "", .len = 0, .endless = 1};
    r = eddy_line_reader_new(source_read, &endless2, 0);
    eddy_error_clear(&err);
    assert_int_equal(eddy_line_reader_next(r, &line, &len, &err), -1);
    assert_string_equal(err.message, "line 1: longer than the 1048576-byte limit");
    assert_true(endless2.served <= EDDY_EVENT_MAX_BYTES + 3);
    eddy_line_reader_free(r);
}

static void test_line_read_error(void **state)
{
    (void)state;
    /* Lines read before a failure come first; then the error, named. */
    static const char text[] = "a\nb\nc";
    struct source src = {.data = text, .len = sizeof text - 1, .chunk = 4, .fail_at = 4};
    eddy_line_reader *r = eddy_line_reader_new(source_read, &src, 0);
    expect_line(r, "a", 1, 1);
    expect_line(r, "b", 1, 2);
    const char *line;
    size_t len;
    eddy_error err;
    eddy_error_clear(&err);
    assert_int_equal(eddy_line_reader_next(r, &line, &len, &err), -1);
    assert_int_equal(err.code, EDDY_EIO);
    assert_non_null(strstr(err.message, "line 3: cannot read input"));
    eddy_line_reader_free(r);
}

static void test_line_reader_fd(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "x\ny\n", 4), 4);
    close(fds[1]);
    eddy_line_reader *r = eddy_line_reader_fd(fds[0], 0);
    expect_line(r, "x", 1, 1);
    expect_line(r, "y", 1, 2);
    const char *line;
    size_t len;
    assert_int_equal(eddy_line_reader_next(r, &line, &len, NULL), 0);
    eddy_line_reader_free(r);
    close(fds[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_strict),   cmocka_unit_test(test_decode_limits),
        cmocka_unit_test(test_lines),           cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_line_read_error), cmocka_unit_test(test_line_reader_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
