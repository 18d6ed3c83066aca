/* tests/test_error.c - error codes, names and eddy_error_set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "eddy/eddy.h"

/* The way es.h's example uses it: a callback fails in one line. */
static int confirm(const char *status, eddy_error *err)
{
    if (strcmp(status, "PENDING") != 0)
        return eddy_error_set(err, EDDY_ESTATE, "order %s is %s, not pending", "o-1",
                              status);
    return EDDY_OK;
}

static void test_error_set_fills_and_returns(void **state)
{
    (void)state;
    eddy_error err = {0};
    assert_int_equal(confirm("PENDING", &err), EDDY_OK);
    assert_int_equal(err.code, EDDY_OK);
    assert_string_equal(err.message, "");
    assert_int_equal(confirm("CANCELLED", &err), EDDY_ESTATE);
    assert_int_equal(err.code, EDDY_ESTATE);
    assert_string_equal(err.message, "order o-1 is CANCELLED, not pending");
    /* A second call replaces the first. */
    assert_int_equal(eddy_error_set(&err, EDDY_ENOTFOUND, "no %s %d", "thing", 7),
                     EDDY_ENOTFOUND);
    assert_int_equal(err.code, EDDY_ENOTFOUND);
    assert_string_equal(err.message, "no thing 7");
}

static void test_error_set_null_err_and_fmt(void **state)
{
    (void)state;
    /* No error struct: nothing is stored, the code still comes back. */
    assert_int_equal(confirm("SHIPPED", NULL), EDDY_ESTATE);
    assert_int_equal(eddy_error_set(NULL, EDDY_EIO, "%s", "disk"), EDDY_EIO);
    /* No format: the code's description. */
    eddy_error err = {0};
    assert_int_equal(eddy_error_set(&err, EDDY_ECONFLICT, NULL), EDDY_ECONFLICT);
    assert_string_equal(err.message, eddy_strerror(EDDY_ECONFLICT));
}

static void test_error_set_cuts_long_messages(void **state)
{
    (void)state;
    char big[2 * EDDY_ERROR_MESSAGE_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    eddy_error err = {0};
    assert_int_equal(eddy_error_set(&err, EDDY_ETOOBIG, "%s", big), EDDY_ETOOBIG);
    assert_int_equal(strlen(err.message), EDDY_ERROR_MESSAGE_MAX - 1);
    eddy_error_clear(&err);
    assert_int_equal(err.code, EDDY_OK);
    assert_string_equal(err.message, "");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(eddy_errname(EDDY_ECONFLICT), "ECONFLICT");
    assert_string_equal(eddy_strerror(EDDY_OK), "success");
    assert_string_equal(eddy_strerror(-1), "unknown error");
    assert_string_equal(eddy_errname(EDDY_ERRNO_COUNT_), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_set_fills_and_returns),
        cmocka_unit_test(test_error_set_null_err_and_fmt),
        cmocka_unit_test(test_error_set_cuts_long_messages),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
