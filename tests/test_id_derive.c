/*
 * tests/test_id_derive.c - eddy_id_derive: a UUIDv7 base gives a UUIDv7
 * that keeps the base's 48-bit time (so derived ids sort beside their
 * base), any other base a name-based UUID (version 5); both stable, both
 * the SHA-1 of "base/salt" in eddy's namespace (RFC 9562), pinned here by
 * vectors computed independently (Python's uuid.uuid5).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/eddy.h"

/* The RFC 9562 example UUIDv7 (appendix A.6), lower case. */
#define V7_BASE "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"

/* Checks the textual shape: 8-4-4-4-12 lower-case hex digits. */
static void assert_uuid_text(const char *id)
{
    assert_int_equal(strlen(id), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(id[i], '-');
            continue;
        }
        if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
            fail_msg("%s: character %d is not a lower-case hex digit", id, i);
    }
}

/* The version nibble (the first digit of the third group). */
static int version_of(const char *id)
{
    return id[14] - '0';
}

/* The RFC 9562 variant: the top two bits of byte 8 are 10, i.e. the first
 * digit of the fourth group is 8, 9, a or b. */
static bool rfc_variant(const char *id)
{
    return strchr("89ab", id[19]) != NULL;
}

static void test_v7_base_gives_v7_with_its_time(void **state)
{
    (void)state;
    char base[EDDY_UUID_STRLEN], a[EDDY_UUID_STRLEN], b[EDDY_UUID_STRLEN],
        c[EDDY_UUID_STRLEN];
    for (int round = 0; round < 100; round++) {
        eddy_uuid7(base);
        assert_int_equal(version_of(base), 7);
        eddy_id_derive(base, "payment.processed", a);
        eddy_id_derive(base, "payment.processed", b);
        eddy_id_derive(base, "payment.failed", c);
        assert_uuid_text(a);
        assert_int_equal(version_of(a), 7);
        assert_true(rfc_variant(a));
        /* The base's 48-bit time: "xxxxxxxx-xxxx". */
        assert_memory_equal(a, base, 13);
        assert_memory_equal(c, base, 13);
        /* Stable; another salt, another id; never the base itself. */
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
        assert_string_not_equal(a, base);
        assert_int_equal(version_of(c), 7);
        assert_true(rfc_variant(c));
    }
}

/* Fixed vectors: the algorithm is the documented one (SHA-1 name-based
 * UUID of "base/salt" in eddy's namespace; for a v7 base the first six
 * bytes replaced by the base's and the version set to 7), so an id derived
 * by another release or another process is the same. */
static void test_known_vectors(void **state)
{
    (void)state;
    char out[EDDY_UUID_STRLEN];
    eddy_id_derive(V7_BASE, "payment.processed", out);
    assert_string_equal(out, "017f22e2-79b0-7dad-99f7-1a8284687ca1");
    eddy_id_derive(V7_BASE, "payment.failed", out);
    assert_string_equal(out, "017f22e2-79b0-78c7-a8c0-04324dea1e9c");
    eddy_id_derive("order-1", "payment.processed", out);
    assert_string_equal(out, "0e56cafe-3a57-5fef-b09f-bb1083ccb06a");
    eddy_id_derive("f47ac10b-58cc-4372-a567-0e02b2c3d479", "x", out);
    assert_string_equal(out, "40df4f2e-617d-56f1-93a5-850fa2718941");
}

static void test_other_bases_give_v5(void **state)
{
    (void)state;
    static const char *const bases[] = {
        "order-1",
        "f47ac10b-58cc-4372-a567-0e02b2c3d479", /* a v4 UUID */
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8", /* a v1 UUID */
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398",  /* a v7 cut short */
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398fz", /* one character more */
        "",
    };
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        char a[EDDY_UUID_STRLEN], b[EDDY_UUID_STRLEN], c[EDDY_UUID_STRLEN];
        eddy_id_derive(bases[i], "s", a);
        eddy_id_derive(bases[i], "s", b);
        eddy_id_derive(bases[i], "t", c);
        assert_uuid_text(a);
        if (version_of(a) != 5)
            fail_msg("base \"%s\": derived %s is not version 5", bases[i], a);
        assert_true(rfc_variant(a));
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
    }
    /* NULL reads as "" (it can't fail). */
    char n[EDDY_UUID_STRLEN], e[EDDY_UUID_STRLEN];
    eddy_id_derive(NULL, NULL, n);
    eddy_id_derive("", "", e);
    assert_string_equal(n, e);
    assert_int_equal(version_of(n), 5);
}

/* Ids derived from increasing UUIDv7 bases sort in the bases' order at
 * millisecond granularity (the bits after the time are hash bits, so two
 * bases of the same millisecond may swap): a store's id index grows at its
 * end. */
static void test_derived_ids_sort_by_base_time(void **state)
{
    (void)state;
    enum { N = 400 };
    char(*base)[EDDY_UUID_STRLEN] = calloc(N, sizeof *base);
    char(*der)[EDDY_UUID_STRLEN] = calloc(N, sizeof *der);
    assert_non_null(base);
    assert_non_null(der);
    for (int i = 0; i < N; i++) {
        eddy_uuid7(base[i]);
        eddy_id_derive(base[i], "order.confirmed", der[i]);
        if (i % 8 == 7)
            usleep(1200); /* a few bases per millisecond, many ms */
    }
    int ms_steps = 0;
    for (int i = 1; i < N; i++) {
        assert_true(strcmp(base[i - 1], base[i]) < 0); /* uuid7 is monotonic */
        int t = memcmp(base[i - 1], base[i], 13);
        if (t == 0) {
            assert_memory_equal(der[i - 1], der[i], 13);
            continue;
        }
        ms_steps++;
        if (strcmp(der[i - 1], der[i]) >= 0)
            fail_msg("derived ids out of base order: %s (from %s) before %s "
                     "(from %s)", der[i - 1], base[i - 1], der[i], base[i]);
    }
    /* ... and every pair across milliseconds, not only neighbours. */
    for (int i = 0; i < N; i += 7)
        for (int j = i + 1; j < N; j++)
            if (memcmp(base[i], base[j], 13) < 0)
                assert_true(strcmp(der[i], der[j]) < 0);
    assert_true(ms_steps >= N / 16);
    free(base);
    free(der);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v7_base_gives_v7_with_its_time),
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_other_bases_give_v5),
        cmocka_unit_test(test_derived_ids_sort_by_base_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
