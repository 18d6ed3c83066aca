/*
 * tests/test_es.c - event sourcing, with the specification's OrderAggregate:
 * commands and their invariants, load = replay, snapshots (tail-only replay,
 * old schema ignored), optimistic concurrency and execute()'s retries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/eddy.h"
#include "store_fixture.h"
#include "eddy/es.h"
#include "eddy/store.h"

/* ---- the OrderAggregate ---------------------------------------------------- */

enum order_status { ORDER_NONE = 0, ORDER_PENDING, ORDER_CONFIRMED };

struct order {
    char *order_id;
    char *customer_id;
    json_t *items; /* array of {sku, price, quantity} */
    double total;
    enum order_status status;
};

/* Every apply call, so that tests can tell a snapshot load from a replay. */
static atomic_uint apply_calls;

static void order_init(void *state)
{
    struct order *o = state;
    o->items = json_array();
}

static void order_fini(void *state)
{
    struct order *o = state;
    free(o->order_id);
    free(o->customer_id);
    json_decref(o->items);
}

static int order_add_item_json(struct order *o, json_t *item, eddy_error *err)
{
    double price;
    json_int_t quantity;
    if (json_unpack(item, "{s:F, s:I}", "price", &price, "quantity", &quantity) != 0) {
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message, "item without price/quantity");
        }
        return EDDY_EINVAL;
    }
    o->total += price * (double)quantity;
    return json_array_append(o->items, item) == 0 ? EDDY_OK : EDDY_ENOMEM;
}

static int order_apply(void *state, const eddy_event *ev, eddy_error *err)
{
    struct order *o = state;
    const char *type = eddy_event_type(ev);
    atomic_fetch_add(&apply_calls, 1);
    if (strcmp(type, "order.placed") == 0) {
        const char *order_id, *customer_id;
        json_t *items;
        int rc = eddy_event_unpack(ev, err, "{s:s, s:s, s:o}", "order_id", &order_id,
                                   "customer_id", &customer_id, "items", &items);
        if (rc != EDDY_OK)
            return rc;
        o->order_id = strdup(order_id);
        o->customer_id = strdup(customer_id);
        o->status = ORDER_PENDING;
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            rc = order_add_item_json(o, item, err);
            if (rc != EDDY_OK)
                return rc;
        }
        return EDDY_OK;
    }
    if (strcmp(type, "order.item_added") == 0)
        return order_add_item_json(o, (json_t *)eddy_event_data(ev), err);
    if (strcmp(type, "order.confirmed") == 0) {
        o->status = ORDER_CONFIRMED;
        return EDDY_OK;
    }
    if (strcmp(type, "order.poison") == 0) {
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message, "poisoned");
        }
        return EDDY_EINVAL;
    }
    return EDDY_OK; /* unknown types are ignored */
}

static json_t *order_snapshot(const void *state)
{
    const struct order *o = state;
    return json_pack("{s:s?, s:s?, s:O, s:f, s:i}", "order_id", o->order_id,
                     "customer_id", o->customer_id, "items", o->items, "total",
                     o->total, "status", (int)o->status);
}

static int order_restore(void *state, const json_t *snap, eddy_error *err)
{
    struct order *o = state;
    const char *order_id = NULL, *customer_id = NULL;
    json_t *items;
    int status;
    if (json_unpack((json_t *)snap, "{s?s, s?s, s:o, s:F, s:i}", "order_id",
                    &order_id, "customer_id", &customer_id, "items", &items,
                    "total", &o->total, "status", &status) != 0) {
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message, "bad order snapshot");
        }
        return EDDY_EINVAL;
    }
    o->order_id = order_id ? strdup(order_id) : NULL;
    o->customer_id = customer_id ? strdup(customer_id) : NULL;
    json_decref(o->items);
    o->items = json_deep_copy(items);
    o->status = (enum order_status)status;
    return EDDY_OK;
}

static const eddy_aggregate_type order_type = {
    .name = "order",
    .source = "order-service",
    .state_size = sizeof(struct order),
    .init = order_init,
    .apply = order_apply,
    .snapshot = order_snapshot,
    .restore = order_restore,
    .fini = order_fini,
    .snapshot_schema_version = 1,
    .snapshot_every = 10,
};

/* The same aggregate after its snapshot format changed (schema 2). */
static const eddy_aggregate_type order_type_v2 = {
    .name = "order",
    .source = "order-service",
    .state_size = sizeof(struct order),
    .init = order_init,
    .apply = order_apply,
    .snapshot = order_snapshot,
    .restore = order_restore,
    .fini = order_fini,
    .snapshot_schema_version = 2,
    .snapshot_every = 10,
};

/* ---- commands ------------------------------------------------------------ */

struct place_args {
    const char *order_id;
    const char *customer_id;
    json_t *items;
};

/* place_order: "Order already exists" when the aggregate has an order. */
static int place_order(eddy_aggregate *agg, void *state, void *arg, eddy_error *err)
{
    struct order *o = state;
    struct place_args *a = arg;
    if (o->order_id) {
        if (err) {
            err->code = EDDY_EEXIST;
            snprintf(err->message, sizeof err->message, "order %s already exists",
                     o->order_id);
        }
        return EDDY_EEXIST;
    }
    double amount = 0;
    size_t i;
    json_t *item;
    json_array_foreach(a->items, i, item)
    {
        amount += json_number_value(json_object_get(item, "price")) *
                  (double)json_integer_value(json_object_get(item, "quantity"));
    }
    return eddy_aggregate_raise(agg, err, "order.placed", "{s:s, s:s, s:f, s:O}",
                                "order_id", a->order_id, "customer_id",
                                a->customer_id, "amount", amount, "items", a->items);
}

/* confirm_order: "Order cannot be confirmed" unless it is PENDING. */
static int confirm_order(eddy_aggregate *agg, void *state, void *arg, eddy_error *err)
{
    struct order *o = state;
    (void)arg;
    if (o->status != ORDER_PENDING) {
        if (err) {
            err->code = EDDY_ESTATE;
            snprintf(err->message, sizeof err->message,
                     "order %s cannot be confirmed",
                     eddy_aggregate_id(agg));
        }
        return EDDY_ESTATE;
    }
    return eddy_aggregate_raise(agg, err, "order.confirmed", "{s:s, s:I}",
                                "order_id", o->order_id, "confirmed_at",
                                (json_int_t)eddy_now_us());
}

struct item_args {
    const char *sku;
    double price;
    int quantity;
};

/* add_item: only while PENDING. Two clerks adding items at once conflict,
 * and a retry on the fresh state succeeds: the command is a pure function
 * of the state it is given. */
static int add_item(eddy_aggregate *agg, void *state, void *arg, eddy_error *err)
{
    struct order *o = state;
    struct item_args *a = arg;
    if (o->status != ORDER_PENDING) {
        if (err) {
            err->code = EDDY_ESTATE;
            snprintf(err->message, sizeof err->message,
                     "order %s is not pending", eddy_aggregate_id(agg));
        }
        return EDDY_ESTATE;
    }
    return eddy_aggregate_raise(agg, err, "order.item_added", "{s:s, s:f, s:i}",
                                "sku", a->sku, "price", a->price, "quantity",
                                a->quantity);
}

/* ---- fixtures -------------------------------------------------------------- */

struct fixture {
    char dir[64];
    char url[128];
    eddy_store *store;
    eddy_repository *orders;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/eddy-test-es-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof f->url, "sqlite:%s/es.db", f->dir);
    eddy_error err = {0};
    f->store = eddyt_store_open(f->url, NULL, &err);
    if (!f->store)
        fail_msg("eddy_store_open(%s): %s", f->url, err.message);
    f->orders = eddy_repository_new(f->store, &order_type, &err);
    if (!f->orders)
        fail_msg("eddy_repository_new: %s", err.message);
    atomic_store(&apply_calls, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char path[160];
    eddy_repository_free(f->orders);
    eddy_store_close(f->store);
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(path, sizeof path, "%s/es.db%s", f->dir, suffixes[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static json_t *two_items(void)
{
    return json_pack("[{s:s, s:f, s:i}, {s:s, s:f, s:i}]", "sku", "book", "price", 12.5,
                     "quantity", 2, "sku", "pen", "price", 1.25, "quantity", 4);
}

static void place(struct fixture *f, const char *id)
{
    eddy_error err = {0};
    json_t *items = two_items();
    struct place_args a = {id, "c-42", items};
    int rc = eddy_repository_execute(f->orders, id, place_order, &a, 1, NULL, &err);
    json_decref(items);
    if (rc != EDDY_OK)
        fail_msg("place %s: %s", id, err.message);
}

static void add(struct fixture *f, const char *id, const char *sku)
{
    eddy_error err = {0};
    struct item_args a = {sku, 1.0, 1};
    int rc = eddy_repository_execute(f->orders, id, add_item, &a, 1, NULL, &err);
    if (rc != EDDY_OK)
        fail_msg("add_item %s: %s", id, err.message);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_place_and_load_replays(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    place(f, "o-1");

    atomic_store(&apply_calls, 0);
    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-1", &err);
    assert_non_null(agg);
    assert_int_equal(atomic_load(&apply_calls), 1);
    assert_int_equal(eddy_aggregate_version(agg), 1);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 0);
    assert_string_equal(eddy_aggregate_id(agg), "o-1");
    struct order *o = eddy_aggregate_state(agg);
    assert_string_equal(o->order_id, "o-1");
    assert_string_equal(o->customer_id, "c-42");
    assert_int_equal(o->status, ORDER_PENDING);
    assert_int_equal(json_array_size(o->items), 2);
    assert_true(o->total > 29.99 && o->total < 30.01);
    eddy_aggregate_free(agg);

    /* The events landed in the stream "order-o-1" with subject = the id. */
    char stream[64];
    assert_int_equal(eddy_repository_stream_id(f->orders, "o-1", stream, sizeof stream),
                     EDDY_OK);
    assert_string_equal(stream, "order-o-1");
    assert_int_equal(eddy_repository_stream_id(f->orders, "o-1", stream, 5),
                     EDDY_ETOOBIG);

    /* confirm, then load again: two events replayed, CONFIRMED. */
    int64_t version = 0;
    assert_int_equal(eddy_repository_execute(f->orders, "o-1", confirm_order, NULL, 1,
                                             &version, &err),
                     EDDY_OK);
    assert_int_equal(version, 2);
    atomic_store(&apply_calls, 0);
    agg = eddy_repository_load(f->orders, "o-1", &err);
    assert_non_null(agg);
    assert_int_equal(atomic_load(&apply_calls), 2);
    assert_int_equal(eddy_aggregate_version(agg), 2);
    o = eddy_aggregate_state(agg);
    assert_int_equal(o->status, ORDER_CONFIRMED);
    eddy_aggregate_free(agg);
}

static void test_raise_queues_and_applies(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-2", &err);
    assert_non_null(agg);
    assert_int_equal(eddy_aggregate_version(agg), 0);
    struct order *o = eddy_aggregate_state(agg);
    assert_null(o->order_id);
    assert_int_equal(o->status, ORDER_NONE);

    json_t *items = two_items();
    struct place_args a = {"o-2", "c-7", items};
    assert_int_equal(place_order(agg, o, &a, &err), EDDY_OK);
    json_decref(items);
    /* applied at once, queued, not yet stored */
    assert_int_equal(o->status, ORDER_PENDING);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 1);
    const eddy_event *ev = eddy_aggregate_uncommitted(agg, 0);
    assert_non_null(ev);
    assert_string_equal(eddy_event_type(ev), "order.placed");
    assert_string_equal(eddy_event_subject(ev), "o-2");
    assert_string_equal(eddy_event_source(ev), "order-service");
    assert_null(eddy_aggregate_uncommitted(agg, 1));

    /* a raise whose data cannot be packed queues nothing */
    eddy_error perr = {0};
    assert_int_equal(eddy_aggregate_raise(agg, &perr, "order.bad", "{s:s}", "k", NULL),
                     EDDY_EINVAL);
    assert_int_equal(perr.code, EDDY_EINVAL);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 1);

    /* an event for another subject is refused */
    eddy_event *other = eddy_event_newf("order.confirmed", "x", "o-999", &err, NULL);
    assert_non_null(other);
    assert_int_equal(eddy_aggregate_raise_event(agg, other, &perr), EDDY_EINVAL);
    eddy_event_unref(other);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 1);

    assert_int_equal(eddy_repository_save(f->orders, agg, &err), EDDY_OK);
    assert_int_equal(eddy_aggregate_version(agg), 1);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 0);
    /* saving nothing is a no-op */
    assert_int_equal(eddy_repository_save(f->orders, agg, &err), EDDY_OK);
    assert_int_equal(eddy_aggregate_version(agg), 1);
    eddy_aggregate_free(agg);

    /* an aggregate dropped with uncommitted events stores nothing (and leaks
     * nothing) */
    agg = eddy_repository_load(f->orders, "o-2", &err);
    assert_non_null(agg);
    assert_int_equal(confirm_order(agg, eddy_aggregate_state(agg), NULL, &err), EDDY_OK);
    eddy_aggregate_free(agg);
    agg = eddy_repository_load(f->orders, "o-2", &err);
    assert_non_null(agg);
    assert_int_equal(eddy_aggregate_version(agg), 1);
    eddy_aggregate_free(agg);
}

static void test_place_twice_already_exists(void **state)
{
    struct fixture *f = *state;
    place(f, "o-3");
    eddy_error err = {0};
    json_t *items = two_items();
    struct place_args a = {"o-3", "c-1", items};
    int rc = eddy_repository_execute(f->orders, "o-3", place_order, &a, 3, NULL, &err);
    json_decref(items);
    assert_int_equal(rc, EDDY_EEXIST);
    assert_int_equal(err.code, EDDY_EEXIST);
    assert_non_null(strstr(err.message, "already exists"));
    /* nothing was stored */
    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-3", &err);
    assert_non_null(agg);
    assert_int_equal(eddy_aggregate_version(agg), 1);
    eddy_aggregate_free(agg);
}

static void test_confirm_not_pending(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    /* no such order */
    assert_int_equal(eddy_repository_execute(f->orders, "o-none", confirm_order, NULL, 1,
                                             NULL, &err),
                     EDDY_ESTATE);
    assert_non_null(strstr(err.message, "cannot be confirmed"));
    /* already confirmed */
    place(f, "o-4");
    assert_int_equal(eddy_repository_execute(f->orders, "o-4", confirm_order, NULL, 1,
                                             NULL, &err),
                     EDDY_OK);
    eddy_error_clear(&err);
    assert_int_equal(eddy_repository_execute(f->orders, "o-4", confirm_order, NULL, 1,
                                             NULL, &err),
                     EDDY_ESTATE);
    assert_int_equal(err.code, EDDY_ESTATE);
    assert_non_null(strstr(err.message, "o-4 cannot be confirmed"));
}

static void test_snapshot_tail_replay(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    eddy_repository_stats st;
    place(f, "o-5");
    char sku[16];
    for (int i = 0; i < 24; i++) { /* versions 2..25; snapshots at 10 and 20 */
        snprintf(sku, sizeof sku, "sku-%d", i);
        add(f, "o-5", sku);
    }
    eddy_repository_stats_get(f->orders, &st);
    assert_int_equal(st.snapshots_written, 2);

    atomic_store(&apply_calls, 0);
    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-5", &err);
    assert_non_null(agg);
    /* snapshot at 20, then only 21..25 replayed */
    assert_int_equal(atomic_load(&apply_calls), 5);
    assert_int_equal(eddy_aggregate_version(agg), 25);
    struct order *o = eddy_aggregate_state(agg);
    assert_string_equal(o->order_id, "o-5");
    assert_int_equal(o->status, ORDER_PENDING);
    assert_int_equal(json_array_size(o->items), 26);
    assert_true(o->total > 53.99 && o->total < 54.01);
    eddy_aggregate_free(agg);
    eddy_repository_stats_get(f->orders, &st);
    assert_true(st.snapshot_hits >= 1);

    /* a multi-event save crossing a multiple of N snapshots too */
    agg = eddy_repository_load(f->orders, "o-5", &err);
    assert_non_null(agg);
    struct item_args a = {"bulk", 2.0, 1};
    for (int i = 0; i < 7; i++) /* 26..32 crosses 30 */
        assert_int_equal(add_item(agg, eddy_aggregate_state(agg), &a, &err), EDDY_OK);
    assert_int_equal(eddy_repository_save(f->orders, agg, &err), EDDY_OK);
    assert_int_equal(eddy_aggregate_version(agg), 32);
    eddy_aggregate_free(agg);
    eddy_repository_stats_get(f->orders, &st);
    assert_int_equal(st.snapshots_written, 3);
    atomic_store(&apply_calls, 0);
    agg = eddy_repository_load(f->orders, "o-5", &err);
    assert_non_null(agg);
    assert_int_equal(atomic_load(&apply_calls), 0); /* snapshot at 32 */
    assert_int_equal(json_array_size(((struct order *)eddy_aggregate_state(agg))->items),
                     33);
    eddy_aggregate_free(agg);
}

static void test_snapshot_old_schema_ignored(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    place(f, "o-6");
    for (int i = 0; i < 11; i++) /* versions 2..12; snapshot (schema 1) at 10 */
        add(f, "o-6", "x");

    eddy_repository *v2 = eddy_repository_new(f->store, &order_type_v2, &err);
    assert_non_null(v2);
    atomic_store(&apply_calls, 0);
    eddy_aggregate *agg = eddy_repository_load(v2, "o-6", &err);
    assert_non_null(agg);
    assert_int_equal(atomic_load(&apply_calls), 12); /* full replay */
    assert_int_equal(eddy_aggregate_version(agg), 12);
    assert_int_equal(json_array_size(((struct order *)eddy_aggregate_state(agg))->items),
                     13);
    eddy_repository_stats st;
    eddy_repository_stats_get(v2, &st);
    assert_int_equal(st.snapshot_hits, 0);
    assert_int_equal(st.snapshot_misses, 1);
    assert_int_equal(st.events_replayed, 12);

    /* the new schema writes its own snapshot at 20; then v2 uses it */
    struct item_args a = {"y", 1.0, 1};
    for (int i = 0; i < 8; i++)
        assert_int_equal(add_item(agg, eddy_aggregate_state(agg), &a, &err), EDDY_OK);
    assert_int_equal(eddy_repository_save(v2, agg, &err), EDDY_OK);
    eddy_aggregate_free(agg);
    atomic_store(&apply_calls, 0);
    agg = eddy_repository_load(v2, "o-6", &err);
    assert_non_null(agg);
    assert_int_equal(atomic_load(&apply_calls), 0);
    assert_int_equal(eddy_aggregate_version(agg), 20);
    eddy_aggregate_free(agg);
    /* and the old reader (schema 1) now ignores the newer snapshot */
    atomic_store(&apply_calls, 0);
    agg = eddy_repository_load(f->orders, "o-6", &err);
    assert_non_null(agg);
    assert_int_equal(atomic_load(&apply_calls), 20);
    assert_int_equal(json_array_size(((struct order *)eddy_aggregate_state(agg))->items),
                     21);
    eddy_aggregate_free(agg);
    eddy_repository_free(v2);
}

static void test_conflict_between_two_copies(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    place(f, "o-7");
    eddy_aggregate *a = eddy_repository_load(f->orders, "o-7", &err);
    eddy_aggregate *b = eddy_repository_load(f->orders, "o-7", &err);
    assert_non_null(a);
    assert_non_null(b);
    struct item_args ia = {"a", 1.0, 1}, ib = {"b", 1.0, 1};
    assert_int_equal(add_item(a, eddy_aggregate_state(a), &ia, &err), EDDY_OK);
    assert_int_equal(add_item(b, eddy_aggregate_state(b), &ib, &err), EDDY_OK);
    assert_int_equal(eddy_repository_save(f->orders, a, &err), EDDY_OK);
    eddy_error_clear(&err);
    assert_int_equal(eddy_repository_save(f->orders, b, &err), EDDY_ECONFLICT);
    assert_int_equal(err.code, EDDY_ECONFLICT);
    assert_non_null(strstr(err.message, "order-o-7"));
    /* b is unchanged: still at version 1 with its event queued */
    assert_int_equal(eddy_aggregate_version(b), 1);
    assert_int_equal(eddy_aggregate_uncommitted_count(b), 1);
    eddy_repository_stats st;
    eddy_repository_stats_get(f->orders, &st);
    assert_int_equal(st.conflicts, 1);
    eddy_aggregate_free(a);
    eddy_aggregate_free(b);

    /* two copies placing the same new order: the second gets a conflict,
     * and a retry then sees "already exists" */
    json_t *items = two_items();
    struct place_args pa = {"o-8", "c-1", items};
    a = eddy_repository_load(f->orders, "o-8", &err);
    b = eddy_repository_load(f->orders, "o-8", &err);
    assert_int_equal(place_order(a, eddy_aggregate_state(a), &pa, &err), EDDY_OK);
    assert_int_equal(place_order(b, eddy_aggregate_state(b), &pa, &err), EDDY_OK);
    assert_int_equal(eddy_repository_save(f->orders, a, &err), EDDY_OK);
    assert_int_equal(eddy_repository_save(f->orders, b, &err), EDDY_ECONFLICT);
    eddy_aggregate_free(a);
    eddy_aggregate_free(b);
    assert_int_equal(eddy_repository_execute(f->orders, "o-8", place_order, &pa, 5, NULL,
                                             &err),
                     EDDY_EEXIST);
    json_decref(items);
}

/* A command that, on its first run(s), lets a "rival" writer slip an item
 * in between its load and its save: a transient conflict. */
struct meddling {
    struct fixture *f;
    unsigned runs;
    unsigned rival_writes; /* how many runs meddle */
};

static int add_item_with_rival(eddy_aggregate *agg, void *state, void *arg,
                               eddy_error *err)
{
    struct meddling *m = arg;
    if (m->runs++ < m->rival_writes)
        add(m->f, eddy_aggregate_id(agg), "rival");
    struct item_args a = {"mine", 5.0, 1};
    return add_item(agg, state, &a, err);
}

static void test_execute_retries_transient_conflict(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    place(f, "o-9");
    struct meddling m = {f, 0, 2};
    int64_t version = 0;
    assert_int_equal(eddy_repository_execute(f->orders, "o-9", add_item_with_rival, &m, 3,
                                             &version, &err),
                     EDDY_OK);
    assert_int_equal(m.runs, 3);      /* two conflicts, then success */
    assert_int_equal(version, 4);     /* placed, rival, rival, mine */

    /* with fewer attempts than conflicts the conflict is returned */
    struct meddling m2 = {f, 0, 2};
    eddy_error_clear(&err);
    assert_int_equal(eddy_repository_execute(f->orders, "o-9", add_item_with_rival, &m2, 2,
                                             NULL, &err),
                     EDDY_ECONFLICT);
    assert_int_equal(m2.runs, 2);
    assert_int_equal(err.code, EDDY_ECONFLICT);
    assert_non_null(strstr(err.message, "order-o-9"));

    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-9", &err);
    assert_non_null(agg);
    assert_int_equal(eddy_aggregate_version(agg), 6); /* + two more rivals */
    eddy_aggregate_free(agg);
}

struct clerk {
    struct fixture *f;
    int n;
    int failures;
};

static void *clerk_main(void *arg)
{
    struct clerk *c = arg;
    for (int i = 0; i < c->n; i++) {
        eddy_error err = {0};
        struct item_args a = {"c", 1.0, 1};
        if (eddy_repository_execute(c->f->orders, "o-10", add_item, &a, 1000, NULL,
                                    &err) != EDDY_OK)
            c->failures++;
    }
    return NULL;
}

static void test_execute_concurrent_clerks(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    place(f, "o-10");
    enum { THREADS = 4, EACH = 10 };
    pthread_t th[THREADS];
    struct clerk clerks[THREADS];
    for (int i = 0; i < THREADS; i++) {
        clerks[i] = (struct clerk){f, EACH, 0};
        assert_int_equal(pthread_create(&th[i], NULL, clerk_main, &clerks[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(clerks[i].failures, 0);
    }
    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-10", &err);
    assert_non_null(agg);
    assert_int_equal(eddy_aggregate_version(agg), 1 + THREADS * EACH);
    assert_int_equal(json_array_size(((struct order *)eddy_aggregate_state(agg))->items),
                     2 + THREADS * EACH);
    eddy_aggregate_free(agg);
    /* and confirming now forbids more items */
    assert_int_equal(eddy_repository_execute(f->orders, "o-10", confirm_order, NULL, 3,
                                             NULL, &err),
                     EDDY_OK);
    struct item_args a = {"late", 1.0, 1};
    assert_int_equal(eddy_repository_execute(f->orders, "o-10", add_item, &a, 3, NULL,
                                             &err),
                     EDDY_ESTATE);
}

static void test_apply_error_fails_load(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    place(f, "o-11");
    eddy_aggregate *agg = eddy_repository_load(f->orders, "o-11", &err);
    assert_non_null(agg);
    /* raising an event that apply refuses queues nothing */
    assert_int_equal(eddy_aggregate_raise(agg, &err, "order.poison", NULL), EDDY_EINVAL);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 0);
    eddy_aggregate_free(agg);

    /* a poison event written to the stream directly makes load fail, naming
     * the stream and the version */
    eddy_event *ev = eddy_event_newf("order.poison", "test", "o-11", &err, NULL);
    assert_non_null(ev);
    eddy_append_result res;
    assert_int_equal(eddy_store_append(f->store, "order-o-11", 1, &ev, 1, &res, &err),
                     EDDY_OK);
    eddy_event_unref(ev);
    eddy_error_clear(&err);
    assert_null(eddy_repository_load(f->orders, "o-11", &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "order-o-11"));
    assert_non_null(strstr(err.message, "poisoned"));
}

/* The versions of the order's events, as a schema registry knows them. */
static const char *order_dataversion(const char *event_type)
{
    if (strcmp(event_type, "order.placed") == 0)
        return "2.0";
    if (strcmp(event_type, "order.confirmed") == 0)
        return "1.0";
    return NULL; /* order.item_added: unversioned */
}

static const char *empty_dataversion(const char *event_type)
{
    (void)event_type;
    return "";
}

/* eddy_aggregate_raise gives each event the dataversion its type's
 * `dataversion` names, so that a schema registry (and `eddy schema check`)
 * accepts what a command raised; it is stored and read back with it. */
static void test_raise_sets_dataversion(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    eddy_aggregate_type t = order_type;
    t.dataversion = order_dataversion;
    eddy_repository *repo = eddy_repository_new(f->store, &t, &err);
    assert_non_null(repo);

    eddy_schema_registry *reg = eddy_schema_registry_new();
    assert_non_null(reg);
    static const char schema[] = "{\"type\": \"object\", \"required\": [\"order_id\"]}";
    assert_int_equal(eddy_schema_registry_add_text(reg, "order.confirmed", "1.0", schema,
                                                   sizeof schema - 1, &err), EDDY_OK);
    assert_int_equal(eddy_schema_registry_add_text(reg, "order.placed", "2.0", schema,
                                                   sizeof schema - 1, &err), EDDY_OK);

    eddy_aggregate *agg = eddy_repository_load(repo, "o-dv", &err);
    assert_non_null(agg);
    json_t *items = two_items();
    struct place_args a = {"o-dv", "c-1", items};
    assert_int_equal(place_order(agg, eddy_aggregate_state(agg), &a, &err), EDDY_OK);
    json_decref(items);
    struct item_args ia = {"ink", 2.0, 1};
    assert_int_equal(add_item(agg, eddy_aggregate_state(agg), &ia, &err), EDDY_OK);
    assert_int_equal(confirm_order(agg, eddy_aggregate_state(agg), NULL, &err), EDDY_OK);
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 3);
    assert_string_equal(eddy_event_dataversion(eddy_aggregate_uncommitted(agg, 0)), "2.0");
    assert_null(eddy_event_dataversion(eddy_aggregate_uncommitted(agg, 1)));
    assert_string_equal(eddy_event_dataversion(eddy_aggregate_uncommitted(agg, 2)), "1.0");
    for (size_t i = 0; i < 3; i += 2)
        if (eddy_schema_registry_validate_event(reg, eddy_aggregate_uncommitted(agg, i),
                                                &err) != EDDY_OK)
            fail_msg("raised event %zu does not validate: %s", i, err.message);
    assert_int_equal(eddy_repository_save(repo, agg, &err), EDDY_OK);
    eddy_aggregate_free(agg);

    /* Stored and read back with their versions. */
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_stream(f->store, "order-o-dv", 0, EDDY_FORWARD, 0,
                                            &c, &err), EDDY_OK);
    static const char *const want[] = {"2.0", NULL, "1.0"};
    eddy_record rec;
    size_t n = 0;
    while (eddy_cursor_next(c, &rec, &err)) {
        assert_true(n < 3);
        const char *got = eddy_event_dataversion(rec.event);
        if (want[n])
            assert_string_equal(got, want[n]);
        else
            assert_null(got);
        n++;
    }
    assert_int_equal(n, 3);
    eddy_cursor_free(c);

    /* Without the callback (the old way) the registry refuses the event:
     * what `eddy schema check` reported before. */
    agg = eddy_repository_load(f->orders, "o-plain", &err);
    assert_non_null(agg);
    items = two_items();
    struct place_args b = {"o-plain", "c-1", items};
    assert_int_equal(place_order(agg, eddy_aggregate_state(agg), &b, &err), EDDY_OK);
    json_decref(items);
    assert_null(eddy_event_dataversion(eddy_aggregate_uncommitted(agg, 0)));
    assert_int_equal(eddy_schema_registry_validate_event(reg, eddy_aggregate_uncommitted(agg, 0),
                                                         &err), EDDY_ESCHEMA);
    eddy_aggregate_free(agg);

    /* A version the event cannot carry fails the raise and queues nothing. */
    eddy_repository_free(repo);
    t.dataversion = empty_dataversion;
    repo = eddy_repository_new(f->store, &t, &err);
    assert_non_null(repo);
    agg = eddy_repository_load(repo, "o-bad", &err);
    assert_non_null(agg);
    eddy_error_clear(&err);
    assert_int_equal(eddy_aggregate_raise(agg, &err, "order.confirmed", NULL), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "dataversion"));
    assert_int_equal(eddy_aggregate_uncommitted_count(agg), 0);
    eddy_aggregate_free(agg);
    eddy_repository_free(repo);
    eddy_schema_registry_free(reg);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    eddy_error err = {0};
    eddy_aggregate_type t = order_type;
    t.apply = NULL;
    assert_null(eddy_repository_new(f->store, &t, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "apply"));
    t = order_type;
    t.name = "";
    assert_null(eddy_repository_new(f->store, &t, &err));
    assert_non_null(strstr(err.message, "name"));
    t = order_type;
    t.state_size = 0;
    assert_null(eddy_repository_new(f->store, &t, &err));
    assert_null(eddy_repository_new(NULL, &order_type, &err));
    eddy_error_clear(&err);
    assert_null(eddy_repository_load(f->orders, "", &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_repository_load(f->orders, NULL, &err));
    assert_int_equal(eddy_repository_execute(f->orders, "o-x", NULL, NULL, 1, NULL, &err),
                     EDDY_EINVAL);
    eddy_repository_free(NULL);
    eddy_aggregate_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_place_and_load_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raise_queues_and_applies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_place_twice_already_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirm_not_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_tail_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_old_schema_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_between_two_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execute_retries_transient_conflict, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_execute_concurrent_clerks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_error_fails_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raise_sets_dataversion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
