/*
 * tests/test_saga.c - a saga mirroring the specification's
 * OrderProcessingSaga, with fake services as command handlers that append
 * the events the real ones would: every path (success, payment failure,
 * inventory failure with a refund, inventory failure before any payment:
 * no refund, payment timeout), a timeout that survives a stop/start, a
 * command retried after a transient failure, the queries, the trace and
 * graph of a flow (eddy/trace.h), and bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "store/state_durable.h"

static char tmpdir[] = "/tmp/eddy-saga-XXXXXX";
static char db_path[600];
static int db_seq;

/* ---- the saga under test --------------------------------------------------- */

#define PAYMENT_TIMEOUT_MS 200

static int order_correlate(const eddy_event *ev, char *id, size_t size,
                           void *user)
{
    (void)user;
    const char *oid = NULL;
    if (eddy_event_unpack(ev, NULL, "{s:s}", "order_id", &oid) != EDDY_OK)
        return EDDY_ENOTFOUND;
    snprintf(id, size, "%s", oid);
    return EDDY_OK;
}

static int order_on_event(eddy_saga_ctx *sc, json_t *state,
                          const eddy_event *ev, void *user)
{
    (void)user;
    const char *type = eddy_event_type(ev);
    const char *oid = eddy_saga_id(sc);
    const char *tmo = eddy_saga_timeout_name(sc);
    if (tmo) {
        if (strcmp(tmo, "payment") != 0)
            return EDDY_OK;
        eddy_saga_send(sc, "CancelOrder", "{s:s, s:s}", "order_id", oid,
                       "reason", "payment timed out");
        return eddy_saga_fail(sc, "CANCELLED");
    }
    if (strcmp(type, "order.placed") == 0) {
        double total = 0;
        if (eddy_event_unpack(ev, NULL, "{s:F}", "total", &total) != EDDY_OK)
            return eddy_saga_ctx_fail(sc, EDDY_EINVAL, "no total");
        json_object_set_new(state, "total", json_real(total));
        json_object_set_new(state, "paid", json_false());
        eddy_saga_set_timeout(sc, "payment", PAYMENT_TIMEOUT_MS);
        return eddy_saga_send(sc, "ProcessPayment", "{s:s, s:f}", "order_id",
                              oid, "amount", total);
    }
    if (strcmp(type, "payment.processed") == 0) {
        json_object_set_new(state, "paid", json_true());
        eddy_saga_cancel_timeout(sc, "payment");
        return eddy_saga_send(sc, "ReserveInventory", "{s:s}", "order_id",
                              oid);
    }
    if (strcmp(type, "inventory.reserved") == 0) {
        eddy_saga_send(sc, "ConfirmOrder", "{s:s}", "order_id", oid);
        return eddy_saga_complete(sc, "CONFIRMED");
    }
    if (strcmp(type, "payment.failed") == 0) {
        eddy_saga_cancel_timeout(sc, "payment");
        eddy_saga_send(sc, "CancelOrder", "{s:s, s:s}", "order_id", oid,
                       "reason", "payment failed");
        return eddy_saga_fail(sc, "CANCELLED");
    }
    if (strcmp(type, "inventory.reservation.failed") == 0) {
        if (json_is_true(json_object_get(state, "paid")))
            eddy_saga_send(sc, "RefundPayment", "{s:s}", "order_id", oid);
        eddy_saga_send(sc, "CancelOrder", "{s:s, s:s}", "order_id", oid,
                       "reason", "out of stock");
        return eddy_saga_fail(sc, "CANCELLED");
    }
    return EDDY_OK;
}

static const char *const start_types[] = {"order.placed"};
static const char *const handled_types[] = {
    "payment.processed", "payment.failed", "inventory.reserved",
    "inventory.reservation.failed"};

static const eddy_saga_def order_saga = {
    .name = "OrderProcessingSaga",
    .start_types = start_types,
    .start_count = 1,
    .handled_types = handled_types,
    .handled_count = 4,
    .correlate = order_correlate,
    .on_event = order_on_event,
};

/* ---- fake services ---------------------------------------------------------- */

struct world {
    eddy_store *store;
    pthread_mutex_t mu;
    char log[16384]; /* "order:Command " entries, in send order */
    int confirm_failures_left;
    int confirm_fail_code; /* 0: EDDY_EIO */
};

static void log_cmd(struct world *w, const eddy_command *cmd)
{
    const char *oid = json_string_value(json_object_get(cmd->data,
                                                        "order_id"));
    pthread_mutex_lock(&w->mu);
    size_t n = strlen(w->log);
    snprintf(w->log + n, sizeof w->log - n, "%s:%s ", oid ? oid : "?",
             cmd->name);
    pthread_mutex_unlock(&w->mu);
}

/* Appends the service's answer, with an id derived from the command's. */
static int answer(struct world *w, const eddy_command *cmd, const char *type,
                  eddy_error *err)
{
    const char *oid = json_string_value(json_object_get(cmd->data,
                                                        "order_id"));
    char id[37];
    eddy_id_derive(cmd->id, type, id);
    json_t *data = json_pack("{s:s}", "order_id", oid);
    eddy_event_init init = {.type = type,
                            .source = "services",
                            .id = id,
                            .subject = oid,
                            .data = data,
                            .correlation_id = cmd->correlation_id,
                            .causation_id = cmd->id};
    eddy_event *ev = eddy_event_new(&init, err);
    json_decref(data);
    if (!ev)
        return EDDY_EINVAL;
    int rc = eddy_store_append(w->store, oid, EDDY_EXPECT_ANY, &ev, 1, NULL,
                               err);
    eddy_event_unref(ev);
    return rc;
}

static bool starts(const eddy_command *cmd, const char *prefix)
{
    const char *oid = json_string_value(json_object_get(cmd->data,
                                                        "order_id"));
    return oid && strncmp(oid, prefix, strlen(prefix)) == 0;
}

static int process_payment(const eddy_command *cmd, void *user,
                           eddy_error *err)
{
    struct world *w = user;
    log_cmd(w, cmd);
    if (starts(cmd, "silent") || starts(cmd, "nopay"))
        return EDDY_OK; /* never answers */
    return answer(w, cmd, starts(cmd, "payfail") ? "payment.failed"
                                                 : "payment.processed",
                  err);
}

static int reserve_inventory(const eddy_command *cmd, void *user,
                             eddy_error *err)
{
    struct world *w = user;
    log_cmd(w, cmd);
    return answer(w, cmd, starts(cmd, "invfail")
                              ? "inventory.reservation.failed"
                              : "inventory.reserved",
                  err);
}

static int confirm_order(const eddy_command *cmd, void *user, eddy_error *err)
{
    struct world *w = user;
    pthread_mutex_lock(&w->mu);
    bool fail_now = starts(cmd, "retry") && w->confirm_failures_left > 0;
    if (fail_now)
        w->confirm_failures_left--;
    pthread_mutex_unlock(&w->mu);
    if (fail_now) {
        int code = w->confirm_fail_code ? w->confirm_fail_code : EDDY_EIO;
        snprintf(err->message, sizeof err->message, "mail server down");
        err->code = code;
        return code;
    }
    log_cmd(w, cmd);
    return answer(w, cmd, "order.confirmed", err);
}

static int record_only(const eddy_command *cmd, void *user, eddy_error *err)
{
    struct world *w = user;
    (void)err;
    log_cmd(w, cmd);
    return EDDY_OK;
}

/* ---- fixture ---------------------------------------------------------------- */

struct fixture {
    struct world w;
    eddy_command_bus *bus;
    eddy_saga *saga;
};

static void fixture_open(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(db_path, sizeof db_path, "%s/s%d.db", tmpdir, ++db_seq);
    eddy_store_options o = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    f->w.store = eddyt_store_open(db_path, &o, &err);
    assert_non_null(f->w.store);
    pthread_mutex_init(&f->w.mu, NULL);
    f->bus = eddy_command_bus_new();
    assert_non_null(f->bus);
    assert_int_equal(eddy_command_bus_register(f->bus, "ProcessPayment",
                                               process_payment, &f->w, &err),
                     EDDY_OK);
    assert_int_equal(eddy_command_bus_register(f->bus, "ReserveInventory",
                                               reserve_inventory, &f->w,
                                               &err), EDDY_OK);
    assert_int_equal(eddy_command_bus_register(f->bus, "ConfirmOrder",
                                               confirm_order, &f->w, &err),
                     EDDY_OK);
    assert_int_equal(eddy_command_bus_register(f->bus, "CancelOrder",
                                               record_only, &f->w, &err),
                     EDDY_OK);
    assert_int_equal(eddy_command_bus_register(f->bus, "RefundPayment",
                                               record_only, &f->w, &err),
                     EDDY_OK);
}

static void saga_start_with(struct fixture *f, const eddy_saga_options *o)
{
    eddy_error err = {0};
    f->saga = eddy_saga_start(f->w.store, &order_saga, f->bus, o, &err);
    if (!f->saga)
        fail_msg("saga start: %s", err.message);
}

static void saga_start(struct fixture *f)
{
    eddy_saga_options o = {.command_retry = {.initial_delay_ms = 20},
                           .timer_poll_ms = 100};
    saga_start_with(f, &o);
}

static void fixture_close(struct fixture *f)
{
    eddy_saga_free(f->saga);
    eddy_command_bus_free(f->bus);
    eddy_store_close(f->w.store);
    pthread_mutex_destroy(&f->w.mu);
}

static void place(struct fixture *f, const char *oid, double total)
{
    eddy_error err = {0};
    eddy_event *ev = eddy_event_newf("order.placed", "orders", oid, &err,
                                     "{s:s, s:f}", "order_id", oid, "total",
                                     total);
    assert_non_null(ev);
    assert_int_equal(eddy_store_append(f->w.store, oid, EDDY_EXPECT_ANY, &ev,
                                       1, NULL, &err), EDDY_OK);
    eddy_event_unref(ev);
}

struct seen {
    char status[32], result[32], corr[64];
    int64_t version;
    int count;
    int refund_attempts, confirm_attempts;
    json_t *commands;
};

static int on_saga(const eddy_saga_info *info, void *user)
{
    struct seen *s = user;
    s->count++;
    snprintf(s->status, sizeof s->status, "%s", info->status);
    snprintf(s->result, sizeof s->result, "%s", info->result);
    snprintf(s->corr, sizeof s->corr, "%s", info->correlation_id);
    s->version = info->version;
    if (info->commands) {
        json_decref(s->commands);
        s->commands = json_deep_copy(info->commands);
    }
    return 0;
}

/* Waits until saga `oid` is finished (or 10 s); returns what was seen. */
static struct seen wait_finished(struct fixture *f, const char *oid)
{
    struct seen s = {0};
    for (int i = 0; i < 1000; i++) {
        memset(&s, 0, sizeof s);
        eddy_error err = {0};
        int rc = eddy_saga_get(f->w.store, oid, on_saga, &s, &err);
        json_decref(s.commands);
        s.commands = NULL;
        if (rc == EDDY_OK && strcmp(s.status, "running") != 0)
            break;
        usleep(10000);
    }
    int64_t head = 0;
    assert_int_equal(eddy_store_head(f->w.store, &head, NULL), EDDY_OK);
    assert_int_equal(eddy_saga_wait_idle(f->saga, head, 10000), EDDY_OK);
    return s;
}

static void assert_log(struct fixture *f, const char *oid,
                       const char *expected)
{
    /* Only this order's entries, in order. */
    char got[2048] = "";
    size_t n = 0;
    pthread_mutex_lock(&f->w.mu);
    char *copy = strdup(f->w.log);
    pthread_mutex_unlock(&f->w.mu);
    char *save = NULL;
    for (char *tok = strtok_r(copy, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        size_t l = strlen(oid);
        if (strncmp(tok, oid, l) == 0 && tok[l] == ':')
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%s",
                                  n ? " " : "", tok + l + 1);
    }
    free(copy);
    assert_string_equal(got, expected);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_success_path(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "ok-1", 42.5);
    struct seen s = wait_finished(&f, "ok-1");
    assert_string_equal(s.status, "completed");
    assert_string_equal(s.result, "CONFIRMED");
    assert_int_equal(s.version, 3); /* placed, paid, reserved */
    assert_log(&f, "ok-1", "ProcessPayment ReserveInventory ConfirmOrder");

    /* The payment timeout was cancelled: nothing fires later. */
    usleep((PAYMENT_TIMEOUT_MS + 150) * 1000);
    assert_log(&f, "ok-1", "ProcessPayment ReserveInventory ConfirmOrder");
    fixture_close(&f);
}

static void test_payment_failure(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "payfail-1", 10);
    struct seen s = wait_finished(&f, "payfail-1");
    assert_string_equal(s.status, "failed");
    assert_string_equal(s.result, "CANCELLED");
    assert_log(&f, "payfail-1", "ProcessPayment CancelOrder");
    fixture_close(&f);
}

static void test_inventory_failure_refunds(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "invfail-1", 99);
    struct seen s = wait_finished(&f, "invfail-1");
    assert_string_equal(s.status, "failed");
    assert_string_equal(s.result, "CANCELLED");
    assert_log(&f, "invfail-1",
               "ProcessPayment ReserveInventory RefundPayment CancelOrder");
    fixture_close(&f);
}

static void test_inventory_failure_before_payment_no_refund(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "nopay-1", 5);
    /* The inventory service reports a failure although the payment never
     * answered. */
    eddy_error err = {0};
    eddy_event *ev = eddy_event_newf("inventory.reservation.failed",
                                     "inventory", "nopay-1", &err, "{s:s}",
                                     "order_id", "nopay-1");
    assert_non_null(ev);
    assert_int_equal(eddy_store_append(f.w.store, "nopay-1", EDDY_EXPECT_ANY,
                                       &ev, 1, NULL, &err), EDDY_OK);
    eddy_event_unref(ev);
    struct seen s = wait_finished(&f, "nopay-1");
    assert_string_equal(s.result, "CANCELLED");
    assert_log(&f, "nopay-1", "ProcessPayment CancelOrder");
    fixture_close(&f);
}

static void test_payment_timeout(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    int64_t t0 = eddy_now_us();
    place(&f, "silent-1", 7);
    struct seen s = wait_finished(&f, "silent-1");
    int64_t elapsed_ms = (eddy_now_us() - t0) / 1000;
    assert_string_equal(s.status, "failed");
    assert_string_equal(s.result, "CANCELLED");
    assert_true(elapsed_ms >= PAYMENT_TIMEOUT_MS);
    assert_log(&f, "silent-1", "ProcessPayment CancelOrder");

    /* The timeout is an event in the store, caused by order.placed. */
    const char *types[] = {EDDY_SAGA_TIMEOUT_TYPE};
    eddy_query q = {.types = types, .type_count = 1};
    eddy_cursor *c = NULL;
    eddy_record rec;
    assert_int_equal(eddy_store_query(f.w.store, &q, &c, NULL), EDDY_OK);
    assert_true(eddy_cursor_next(c, &rec, NULL));
    assert_string_equal(eddy_event_subject(rec.event), "silent-1");
    assert_string_equal(eddy_event_source(rec.event), "OrderProcessingSaga");
    assert_non_null(eddy_event_causation_id(rec.event));
    assert_false(eddy_cursor_next(c, &rec, NULL));
    eddy_cursor_free(c);
    fixture_close(&f);
}

static void test_timeout_survives_restart(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    int64_t t0 = eddy_now_us();
    place(&f, "silent-2", 8);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(f.w.store, &head, NULL), EDDY_OK);
    assert_int_equal(eddy_saga_wait_idle(f.saga, head, 5000), EDDY_OK);
    /* Stop well before the deadline. */
    assert_int_equal(eddy_saga_stop(f.saga, NULL), EDDY_OK);
    assert_true((eddy_now_us() - t0) / 1000 < PAYMENT_TIMEOUT_MS);
    struct seen s = {0};
    assert_int_equal(eddy_saga_get(f.w.store, "silent-2", on_saga, &s, NULL),
                     EDDY_OK);
    json_decref(s.commands);
    s.commands = NULL;
    assert_string_equal(s.status, "running");
    eddy_saga_free(f.saga);
    f.saga = NULL;
    usleep((PAYMENT_TIMEOUT_MS + 100) * 1000); /* the deadline passes */
    assert_int_equal(eddy_saga_get(f.w.store, "silent-2", on_saga, &s, NULL),
                     EDDY_OK);
    json_decref(s.commands);
    s.commands = NULL;
    assert_string_equal(s.status, "running"); /* nobody ran it */

    saga_start(&f);
    s = wait_finished(&f, "silent-2");
    assert_string_equal(s.result, "CANCELLED");
    assert_log(&f, "silent-2", "ProcessPayment CancelOrder");
    fixture_close(&f);
}

static void test_command_retry_and_queries(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    f.w.confirm_failures_left = 2;
    saga_start(&f);
    place(&f, "retry-1", 3);
    place(&f, "ok-2", 4);
    struct seen s = wait_finished(&f, "retry-1");
    assert_string_equal(s.result, "CONFIRMED");
    struct seen s2 = wait_finished(&f, "ok-2");
    assert_string_equal(s2.result, "CONFIRMED");
    assert_log(&f, "retry-1", "ProcessPayment ReserveInventory ConfirmOrder");

    /* eddy_saga_get: the commands with their attempts and ids. */
    struct seen d = {0};
    assert_int_equal(eddy_saga_get(f.w.store, "retry-1", on_saga, &d, NULL),
                     EDDY_OK);
    assert_int_equal(json_array_size(d.commands), 3);
    json_t *confirm = json_array_get(d.commands, 2);
    assert_string_equal(json_string_value(json_object_get(confirm, "name")),
                        "ConfirmOrder");
    assert_string_equal(json_string_value(json_object_get(confirm, "state")),
                        "sent");
    assert_int_equal(json_integer_value(json_object_get(confirm, "attempts")),
                     3);
    json_decref(d.commands);

    /* Lists by status and by result. */
    struct seen l = {0};
    assert_int_equal(eddy_saga_list(f.w.store, NULL, "completed", on_saga, &l,
                                    NULL), EDDY_OK);
    assert_int_equal(l.count, 2);
    memset(&l, 0, sizeof l);
    assert_int_equal(eddy_saga_list(f.w.store, "OrderProcessingSaga",
                                    "CANCELLED", on_saga, &l, NULL), EDDY_OK);
    assert_int_equal(l.count, 0);
    memset(&l, 0, sizeof l);
    assert_int_equal(eddy_saga_list(f.w.store, "NoSuchSaga", NULL, on_saga,
                                    &l, NULL), EDDY_OK);
    assert_int_equal(l.count, 0);
    eddy_error err = {0};
    assert_int_equal(eddy_saga_get(f.w.store, "nope", on_saga, &l, &err),
                     EDDY_ENOTFOUND);
    assert_non_null(strstr(err.message, "nope"));
    fixture_close(&f);
}

/* A command that keeps failing past max_attempts is never dropped: it
 * stays pending (retried at the policy's longest delay) until it goes
 * through, also for an error the policy calls not retryable. */
static void test_command_never_dropped(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    f.w.confirm_failures_left = 5;
    f.w.confirm_fail_code = EDDY_EINVAL; /* not retryable by default */
    eddy_saga_options o = {.command_retry = {.max_attempts = 2,
                                             .initial_delay_ms = 10,
                                             .max_delay_ms = 40},
                           .timer_poll_ms = 100};
    saga_start_with(&f, &o);
    place(&f, "retry-7", 3);
    /* Past max_attempts and still pending. */
    bool seen_pending = false;
    for (int i = 0; i < 500 && !seen_pending; i++) {
        struct seen d = {0};
        if (eddy_saga_get(f.w.store, "retry-7", on_saga, &d, NULL) ==
                EDDY_OK &&
            json_array_size(d.commands) == 3) {
            json_t *c = json_array_get(d.commands, 2);
            seen_pending =
                json_integer_value(json_object_get(c, "attempts")) > 2 &&
                strcmp(json_string_value(json_object_get(c, "state")),
                       "pending") == 0 &&
                strstr(json_string_value(json_object_get(c, "last_error")),
                       "mail server down");
        }
        json_decref(d.commands);
        usleep(10000);
    }
    assert_true(seen_pending);
    struct seen s = wait_finished(&f, "retry-7");
    assert_string_equal(s.result, "CONFIRMED");
    struct seen d = {0};
    assert_int_equal(eddy_saga_get(f.w.store, "retry-7", on_saga, &d, NULL),
                     EDDY_OK);
    json_t *confirm = json_array_get(d.commands, 2);
    assert_string_equal(json_string_value(json_object_get(confirm, "state")),
                        "sent");
    assert_int_equal(json_integer_value(json_object_get(confirm, "attempts")),
                     6);
    json_decref(d.commands);
    assert_log(&f, "retry-7", "ProcessPayment ReserveInventory ConfirmOrder");
    fixture_close(&f);

    /* A bad policy is refused, naming the field. */
    fixture_open(&f);
    eddy_saga_options bad = {.command_retry = {.multiplier = 0.5}};
    eddy_error err = {0};
    assert_null(eddy_saga_start(f.w.store, &order_saga, f.bus, &bad, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "multiplier"));
    fixture_close(&f);
}

/* Many instances through three dispatcher lanes: each instance's commands
 * in order. */
static void test_many_instances_in_order(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    eddy_saga_options o = {.dispatchers = 3, .timer_poll_ms = 100};
    saga_start_with(&f, &o);
    enum { N = 40 };
    char oid[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(oid[i], sizeof oid[i], "%s-%d", i % 4 ? "ok" : "invfail", i);
        place(&f, oid[i], i + 1);
    }
    for (int i = 0; i < N; i++) {
        struct seen s = wait_finished(&f, oid[i]);
        assert_string_equal(s.result, i % 4 ? "CONFIRMED" : "CANCELLED");
        assert_log(&f, oid[i],
                   i % 4 ? "ProcessPayment ReserveInventory ConfirmOrder"
                         : "ProcessPayment ReserveInventory RefundPayment "
                           "CancelOrder");
    }
    fixture_close(&f);
}

struct saga_stopper {
    eddy_saga *sg;
    pthread_barrier_t *go;
    int rc;
};

static void *saga_stop_thread(void *arg)
{
    struct saga_stopper *st = arg;
    pthread_barrier_wait(st->go);
    st->rc = eddy_saga_stop(st->sg, NULL);
    return NULL;
}

/* eddy_saga_stop from several threads at once: one stops, all return. */
static void test_stop_from_several_threads(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "ok-3", 1);
    enum { N = 4 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    pthread_t t[N];
    struct saga_stopper st[N];
    for (int i = 0; i < N; i++) {
        st[i] = (struct saga_stopper){.sg = f.saga, .go = &go, .rc = -1};
        assert_int_equal(pthread_create(&t[i], NULL, saga_stop_thread,
                                        &st[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(st[i].rc, EDDY_OK);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(eddy_saga_wait_idle(f.saga, 0, 0), EDDY_ESTOPPED);
    eddy_saga_free(f.saga);
    /* The name is free again; what was left is finished by the next run. */
    saga_start(&f);
    struct seen s = wait_finished(&f, "ok-3");
    assert_string_equal(s.result, "CONFIRMED");
    fixture_close(&f);
}

/* The queries read on readers: they work on a store opened read-only. */
static void test_queries_on_read_only_store(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "ok-5", 5);
    place(&f, "silent-5", 6);
    struct seen s = wait_finished(&f, "ok-5");
    assert_string_equal(s.result, "CONFIRMED");
    eddy_saga_free(f.saga);
    f.saga = NULL;
    eddy_store_close(f.w.store);

    eddy_store_options ro = {.read_only = true};
    eddy_error err = {0};
    f.w.store = eddyt_store_open(db_path, &ro, &err);
    if (!f.w.store)
        fail_msg("open read-only: %s", err.message);
    struct seen l = {0};
    assert_int_equal(eddy_saga_list(f.w.store, "OrderProcessingSaga", NULL,
                                    on_saga, &l, &err), EDDY_OK);
    assert_int_equal(l.count, 2);
    memset(&l, 0, sizeof l);
    assert_int_equal(eddy_saga_list(f.w.store, NULL, "CONFIRMED", on_saga, &l,
                                    &err), EDDY_OK);
    assert_int_equal(l.count, 1);
    struct seen d = {0};
    assert_int_equal(eddy_saga_get(f.w.store, "silent-5", on_saga, &d, &err),
                     EDDY_OK);
    /* running, or cancelled if its payment deadline passed already */
    assert_true(json_array_size(d.commands) >= 1);
    json_decref(d.commands);
    d.commands = NULL;
    assert_int_equal(eddy_saga_get(f.w.store, "ok-5", on_saga, &d, &err),
                     EDDY_OK);
    assert_int_equal(json_array_size(d.commands), 3);
    json_t *c0 = json_array_get(d.commands, 0);
    assert_true(json_is_object(json_object_get(c0, "data")));
    assert_true(json_is_integer(json_object_get(c0, "sent_us")));
    json_decref(d.commands);
    /* Starting a saga needs the writer. */
    assert_null(eddy_saga_start(f.w.store, &order_saga, f.bus, NULL, &err));
    eddy_command_bus_free(f.bus);
    eddy_store_close(f.w.store);
    pthread_mutex_destroy(&f.w.mu);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    eddy_error err = {0};
    eddy_saga_def bad = order_saga;
    bad.correlate = NULL;
    assert_null(eddy_saga_start(f.w.store, &bad, f.bus, NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "correlate"));
    bad = order_saga;
    bad.start_count = 0;
    assert_null(eddy_saga_start(f.w.store, &bad, f.bus, NULL, &err));
    assert_non_null(strstr(err.message, "start_types"));
    assert_null(eddy_saga_start(f.w.store, &order_saga, NULL, NULL, &err));
    saga_start(&f);
    assert_null(eddy_saga_start(f.w.store, &order_saga, f.bus, NULL, &err));
    assert_int_equal(err.code, EDDY_EEXIST);
    eddy_saga_free(NULL);
    fixture_close(&f);
}

/* What durable.c records for plain handlers (the store's registry
 * operation, state_durable.h). */
static int record_handlers(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddyi_subs_record(txn, "OrderProcessingSaga", "*", "handler",
                               err);
    if (rc == EDDY_OK)
        rc = eddyi_subs_record(txn, "audit", "order.*", "handler", err);
    return rc;
}

/* The flow of one order as `eddy trace` shows it, and the graph. */
static void test_trace_and_graph(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f);
    saga_start(&f);
    place(&f, "ok-9", 1);
    struct seen s = wait_finished(&f, "ok-9");
    assert_string_equal(s.result, "CONFIRMED");
    eddy_error err = {0};
    eddy_trace *t = NULL;
    assert_int_equal(eddy_trace_collect(f.w.store, "ok-9", &t, &err),
                     EDDY_OK);
    /* order.placed -> ProcessPayment -> payment.processed ->
     * ReserveInventory -> inventory.reserved -> ConfirmOrder ->
     * order.confirmed: one chain, each a child of the one before. */
    static const char *const chain[] = {
        "order.placed", "ProcessPayment", "payment.processed",
        "ReserveInventory", "inventory.reserved", "ConfirmOrder",
        "order.confirmed"};
    assert_int_equal(eddy_trace_count(t), 7);
    int64_t last_offset = -1;
    for (size_t i = 0; i < 7; i++) {
        const eddy_trace_node *n = eddy_trace_node_at(t, i);
        assert_string_equal(n->name, chain[i]);
        assert_int_equal(n->depth, (int)i);
        assert_int_equal(n->kind, i % 2 ? EDDY_TRACE_COMMAND
                                         : EDDY_TRACE_EVENT);
        if (n->kind == EDDY_TRACE_COMMAND)
            assert_string_equal(n->handler, "OrderProcessingSaga");
        assert_true(n->offset_us >= last_offset);
        last_offset = n->offset_us;
    }
    assert_null(eddy_trace_node_at(t, 7));
    /* The same flow from an event id and from the correlation id. */
    char corr[64];
    snprintf(corr, sizeof corr, "%s", eddy_trace_correlation(t));
    char evid[64];
    snprintf(evid, sizeof evid, "%s", eddy_trace_node_at(t, 2)->id);
    eddy_trace_free(t);
    assert_int_equal(eddy_trace_collect(f.w.store, evid, &t, &err), EDDY_OK);
    assert_string_equal(eddy_trace_correlation(t), corr);
    assert_int_equal(eddy_trace_count(t), 7);
    eddy_trace_free(t);
    assert_int_equal(eddy_trace_collect(f.w.store, "missing", &t, &err),
                     EDDY_ENOTFOUND);

    /* durable.c records plain handlers; its "handler" record of the saga's
     * own subscription must not replace the saga's record. */
    assert_int_equal(eddy_store_transact(f.w.store, record_handlers, NULL,
                                         &err), EDDY_OK);
    eddy_graph *g = NULL;
    assert_int_equal(eddy_graph_build(f.w.store, &g, &err), EDDY_OK);
    bool handles = false, sends = false, leads = false, publishes = false;
    bool audit = false;
    for (size_t i = 0; i < eddy_graph_edge_count(g); i++) {
        const eddy_graph_edge *e = eddy_graph_edge_at(g, i);
        if (e->kind == EDDY_GRAPH_HANDLES &&
            strcmp(e->from, "payment.processed") == 0 &&
            strcmp(e->to, "OrderProcessingSaga") == 0)
            handles = true;
        if (e->kind == EDDY_GRAPH_HANDLES &&
            strcmp(e->to, "OrderProcessingSaga") == 0)
            assert_string_not_equal(e->from, "order.confirmed");
        if (e->kind == EDDY_GRAPH_HANDLES && strcmp(e->to, "audit") == 0 &&
            strcmp(e->from, "order.confirmed") == 0)
            audit = true;
        if (e->kind == EDDY_GRAPH_SENDS &&
            strcmp(e->from, "OrderProcessingSaga") == 0 &&
            strcmp(e->to, "ReserveInventory") == 0 && e->count == 1)
            sends = true;
        if (e->kind == EDDY_GRAPH_LEADS_TO &&
            strcmp(e->from, "ProcessPayment") == 0 &&
            strcmp(e->to, "payment.processed") == 0)
            leads = true;
        if (e->kind == EDDY_GRAPH_PUBLISHES &&
            strcmp(e->from, "services") == 0 &&
            strcmp(e->to, "inventory.reserved") == 0)
            publishes = true;
    }
    assert_true(handles && sends && leads && publishes && audit);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(eddy_graph_write(g, EDDY_GRAPH_MERMAID, out), EDDY_OK);
    fclose(out);
    assert_non_null(strstr(buf, "flowchart LR"));
    assert_non_null(strstr(buf, "{{\"ReserveInventory\"}}"));
    free(buf);
    assert_int_equal(eddy_graph_write(g, (eddy_graph_format)7, stdout),
                     EDDY_EINVAL);
    eddy_graph_free(g);
    fixture_close(&f);
}

static int setup_dir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_path),
        cmocka_unit_test(test_payment_failure),
        cmocka_unit_test(test_inventory_failure_refunds),
        cmocka_unit_test(test_inventory_failure_before_payment_no_refund),
        cmocka_unit_test(test_payment_timeout),
        cmocka_unit_test(test_timeout_survives_restart),
        cmocka_unit_test(test_command_retry_and_queries),
        cmocka_unit_test(test_trace_and_graph),
        cmocka_unit_test(test_command_never_dropped),
        cmocka_unit_test(test_many_instances_in_order),
        cmocka_unit_test(test_stop_from_several_threads),
        cmocka_unit_test(test_queries_on_read_only_store),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
