/*
 * tests/test_transport_mem.c - the transport conformance suite on the
 * in-process engine (mem:), plus what is specific to it: named engines are
 * separate, and the URL forms it accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "eddy/transport.h"
#include "transport/transport_impl.h"
#include "transport_conformance.h"

static int mem_inject(eddy_transport *t, const char *topic, const char *raw,
                      size_t len)
{
    return eddyi_transport_mem_inject(t, topic, raw, len, NULL);
}

static int count_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    __atomic_add_fetch((int *)user, 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* Two named engines do not see each other's messages; two transports on
 * the same name do. */
static void test_named_engines(void **state)
{
    eddy_error err = {0};
    eddy_transport *a = eddy_transport_open("mem:alpha", NULL, &err);
    eddy_transport *a2 = eddy_transport_open("mem:alpha", NULL, &err);
    eddy_transport *b = eddy_transport_open("mem:beta", NULL, &err);
    assert_non_null(a);
    assert_non_null(a2);
    assert_non_null(b);
    assert_string_equal(eddy_transport_engine(a), "mem");
    int got_a = 0, got_b = 0;
    const char *types[] = {"named.test"};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .handler = count_handler, .user = &got_a};
    eddy_transport_subscription *sa = NULL, *sb = NULL;
    assert_int_equal(eddy_transport_subscribe(a2, &o, &sa, &err), EDDY_OK);
    o.user = &got_b;
    assert_int_equal(eddy_transport_subscribe(b, &o, &sb, &err), EDDY_OK);
    eddy_event *ev = eddy_event_newf("named.test", "t", "k", &err, NULL);
    assert_int_equal(eddy_transport_publish(a, ev, &err), EDDY_OK);
    for (int i = 0; i < 1000 && __atomic_load_n(&got_a, __ATOMIC_SEQ_CST) < 1;
         i++)
        usleep(2000);
    usleep(50000);
    eddy_transport_subscription_free(sa);
    eddy_transport_subscription_free(sb);
    assert_int_equal(got_a, 1);
    assert_int_equal(got_b, 0);
    eddy_event_unref(ev);
    eddy_transport_close(a);
    eddy_transport_close(a2);
    eddy_transport_close(b);
}

static void test_urls(void **state)
{
    eddy_error err = {0};
    assert_null(eddy_transport_open("mem://host", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_transport_open("mem:?broken", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_transport_open("mem:?a=%zz", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    eddy_transport_options o = {.topic_prefix = "custom/"};
    eddy_transport *t = eddy_transport_open("MEM:x?a=1&b=%41+c", &o, &err);
    assert_non_null(t);
    assert_string_equal(eddyi_url_param(t, "a"), "1");
    assert_string_equal(eddyi_url_param(t, "b"), "A c");
    assert_null(eddyi_url_param(t, "c"));
    char topic[64];
    assert_int_equal(eddy_transport_topic(t, "order.placed", topic,
                                          sizeof topic), EDDY_OK);
    assert_string_equal(topic, "custom/order.placed");
    eddy_transport_close(t);
}

/* eddy_transport_info_get: topics under the prefix, each group's lag and
 * pending, and the group filter. */
static void test_info(void **state)
{
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open("mem:info", NULL, &err);
    assert_non_null(t);
    for (int i = 0; i < 5; i++) {
        eddy_event *ev = eddy_event_newf(i < 3 ? "a.one" : "b.two", "t", "k",
                                         &err, NULL);
        assert_int_equal(eddy_transport_publish(t, ev, &err), EDDY_OK);
        eddy_event_unref(ev);
    }
    int got = 0;
    const char *types[] = {"a.one"};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .group = "reader", .handler = count_handler,
                                    .user = &got};
    eddy_transport_subscription *sub = NULL;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_OK);
    for (int i = 0; i < 400 && __atomic_load_n(&got, __ATOMIC_SEQ_CST) < 3; i++)
        usleep(5000);
    eddy_transport_subscription_free(sub);
    o.group = "idle";
    o.start_from = EDDY_START_END;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_OK);
    eddy_transport_subscription_free(sub);
    eddy_transport_info *info = NULL;
    assert_int_equal(eddy_transport_info_get(t, NULL, 0, &info, &err), EDDY_OK);
    assert_string_equal(info->engine, "mem");
    assert_string_equal(info->url, "mem:info");
    assert_int_equal(info->topic_count, 2);
    assert_string_equal(info->topics[0].name, "events.a.one");
    assert_int_equal(info->topics[0].messages, 3);
    assert_int_equal(info->topics[0].group_count, 2);
    assert_string_equal(info->topics[0].groups[0].name, "idle");
    /* EDDY_START_END: the new group starts after the 3 stored messages. */
    assert_int_equal(info->topics[0].groups[0].lag, 0);
    assert_string_equal(info->topics[0].groups[1].name, "reader");
    assert_int_equal(info->topics[0].groups[1].lag, 0);
    assert_int_equal(info->topics[0].groups[1].pending, 0);
    assert_string_equal(info->topics[1].name, "events.b.two");
    assert_int_equal(info->topics[1].messages, 2);
    assert_int_equal(info->topics[1].group_count, 0);
    eddy_transport_info_free(info);
    const char *only[] = {"reader"};
    assert_int_equal(eddy_transport_info_get(t, only, 1, &info, &err), EDDY_OK);
    assert_int_equal(info->topics[0].group_count, 1);
    eddy_transport_info_free(info);
    assert_int_equal(eddy_transport_info_get(t, NULL, 1, &info, &err),
                     EDDY_EINVAL);
    eddy_transport_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_engines),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_info),
    };
    int failed = cmocka_run_group_tests_name("transport_mem", tests, NULL, NULL);
    transport_conformance_env env = {
        .name = "conformance_mem",
        .url = "mem:conformance",
        .inject_raw = mem_inject,
        .ack_wait_ms = 300,
    };
    failed += transport_conformance_run(&env);
    return failed ? 1 : 0;
}
