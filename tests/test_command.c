/* tests/test_command.c - the command bus: exactly one handler per command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "eddy/eddy.h"

struct seen {
    int calls;
    char id[64];
    char correlation[64];
    json_int_t amount;
};

static int on_payment(const eddy_command *cmd, void *user, eddy_error *err)
{
    struct seen *s = user;
    s->calls++;
    snprintf(s->id, sizeof s->id, "%s", cmd->id);
    snprintf(s->correlation, sizeof s->correlation, "%s",
             cmd->correlation_id ? cmd->correlation_id : "");
    if (!cmd->data || json_unpack(cmd->data, "{s:I}", "amount", &s->amount) != 0) {
        err->code = EDDY_EINVAL;
        snprintf(err->message, sizeof err->message, "ProcessPayment needs an amount");
        return EDDY_EINVAL;
    }
    return EDDY_OK;
}

static void test_routes_to_its_one_handler(void **state)
{
    (void)state;
    eddy_command_bus *cb = eddy_command_bus_new();
    assert_non_null(cb);
    struct seen s = {0};
    eddy_error err = {0};
    assert_int_equal(eddy_command_bus_register(cb, "ProcessPayment", on_payment, &s, &err), EDDY_OK);
    assert_int_equal(eddy_command_sendf(cb, "ProcessPayment", "flow-1", "ev-1", &err,
                                        "{s:I}", "amount", (json_int_t)42), EDDY_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.amount, 42);
    assert_string_equal(s.correlation, "flow-1");
    assert_int_equal(strlen(s.id), 36); /* an id was assigned */

    /* the handler's error comes back to the sender */
    assert_int_equal(eddy_command_sendf(cb, "ProcessPayment", NULL, NULL, &err, "{}"), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "amount"));
    eddy_command_bus_free(cb);
}

static void test_second_registration_is_an_error(void **state)
{
    (void)state;
    eddy_command_bus *cb = eddy_command_bus_new();
    struct seen s = {0};
    eddy_error err = {0};
    assert_int_equal(eddy_command_bus_register(cb, "CancelOrder", on_payment, &s, &err), EDDY_OK);
    assert_int_equal(eddy_command_bus_register(cb, "CancelOrder", on_payment, &s, &err), EDDY_EEXIST);
    assert_non_null(strstr(err.message, "CancelOrder"));
    assert_int_equal(eddy_command_bus_register(cb, "", on_payment, &s, &err), EDDY_EINVAL);
    assert_int_equal(eddy_command_bus_register(cb, "X", NULL, &s, &err), EDDY_EINVAL);
    eddy_command_bus_free(cb);
}

static void test_unrouted_command_is_an_error(void **state)
{
    (void)state;
    eddy_command_bus *cb = eddy_command_bus_new();
    eddy_error err = {0};
    eddy_command cmd = {.name = "RefundPayment"};
    assert_int_equal(eddy_command_send(cb, &cmd, &err), EDDY_ENOTFOUND);
    assert_non_null(strstr(err.message, "RefundPayment"));
    eddy_command nameless = {0};
    assert_int_equal(eddy_command_send(cb, &nameless, &err), EDDY_EINVAL);
    eddy_command_bus_free(cb);
    eddy_command_bus_free(NULL);
}

static void test_derived_ids_are_stable(void **state)
{
    (void)state;
    char a[37], b[37], c[37];
    eddy_id_derive("cmd-1", "payment.processed", a);
    eddy_id_derive("cmd-1", "payment.processed", b);
    eddy_id_derive("cmd-1", "payment.failed", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(a[14], '5'); /* version 5 */
    /* the separator matters: ("ab","c") and ("a","bc") differ */
    eddy_id_derive("ab", "c", a);
    eddy_id_derive("a", "bc", b);
    assert_string_not_equal(a, b);
    /* long names are hashed whole, not truncated */
    char long1[2000], long2[2000];
    memset(long1, 'x', sizeof long1 - 1);
    long1[sizeof long1 - 1] = '\0';
    memcpy(long2, long1, sizeof long2);
    long2[1990] = 'y';
    eddy_id_derive(long1, "s", a);
    eddy_id_derive(long2, "s", b);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_to_its_one_handler),
        cmocka_unit_test(test_second_registration_is_an_error),
        cmocka_unit_test(test_unrouted_command_is_an_error),
        cmocka_unit_test(test_derived_ids_are_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
