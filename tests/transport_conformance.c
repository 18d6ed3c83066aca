/*
 * tests/transport_conformance.c - the transport conformance suite (see the
 * header). Written against the public API only, plus the env's
 * inject_raw for foreign messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport_conformance.h"

static const transport_conformance_env *env;

#define MAX_RECORDS 4096

/* What a handler saw, shared between the subscription threads and the
 * test. */
typedef struct record {
    char id[64];
    char subject[64];
    int seq;
    unsigned attempt;
    int member;
} record;

typedef struct recorder {
    pthread_mutex_t mu;
    record recs[MAX_RECORDS];
    size_t n;
    int fail_until_attempt;   /* handler fails while attempt < this */
    int fail_always;          /* handler always fails */
    int fail_code;            /* handler returns this (no explicit nack) */
    int hang_member;          /* member whose handler hangs; -1: none */
    atomic_int hang_release;
    int hung;                 /* the hanging handler has started */
    char dead_reasons[8][256];
    char dead_ids[8][64];
    size_t ndead;
    int async_ok, async_err;
} recorder;

typedef struct member {
    recorder *r;
    int id;
} member;

static void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->hang_member = -1;
}

static void rec_destroy(recorder *r)
{
    pthread_mutex_destroy(&r->mu);
}

static size_t rec_count(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static size_t rec_dead(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->ndead;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls `count(r) >= want` for up to `timeout_ms`; returns the count. */
static size_t wait_for(recorder *r, size_t (*count)(recorder *), size_t want,
                       int timeout_ms)
{
    size_t n = 0;
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        if ((n = count(r)) >= want)
            return n;
        sleep_ms(5);
    }
    return n;
}

static int handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    member *m = user;
    recorder *r = m->r;
    int seq = -1;
    json_int_t s;
    if (eddy_event_unpack(ev, NULL, "{s:I}", "seq", &s) == 0)
        seq = (int)s;
    if (m->id == r->hang_member) {
        pthread_mutex_lock(&r->mu);
        int first = !r->hung;
        r->hung = 1;
        pthread_mutex_unlock(&r->mu);
        if (first) {
            /* A crashed member: it holds the message and settles nothing
             * until the test releases it. */
            while (!atomic_load(&r->hang_release))
                sleep_ms(5);
            return 0;
        }
    }
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_RECORDS) {
        record *rc = &r->recs[r->n++];
        snprintf(rc->id, sizeof rc->id, "%s", eddy_event_id(ev));
        snprintf(rc->subject, sizeof rc->subject, "%s",
                 eddy_event_subject(ev) ? eddy_event_subject(ev) : "");
        rc->seq = seq;
        rc->attempt = eddy_delivery_attempt(d);
        rc->member = m->id;
    }
    int fail = r->fail_always ||
               (int)eddy_delivery_attempt(d) < r->fail_until_attempt;
    int code = r->fail_code;
    pthread_mutex_unlock(&r->mu);
    if (code)
        return code;
    if (fail) {
        eddy_delivery_nack(d, 10);
        return EDDY_EHANDLER;
    }
    return 0;
}

static void on_dead(const eddy_transport_dead_letter *dl, void *user)
{
    member *m = user;
    recorder *r = m->r;
    pthread_mutex_lock(&r->mu);
    if (r->ndead < 8) {
        snprintf(r->dead_reasons[r->ndead], sizeof r->dead_reasons[0], "%s",
                 dl->reason);
        snprintf(r->dead_ids[r->ndead], sizeof r->dead_ids[0], "%s",
                 dl->event ? eddy_event_id(dl->event) : "");
    }
    r->ndead++;
    pthread_mutex_unlock(&r->mu);
}

/* A fresh event type "conf.<what>.<random>" into `buf`. */
static void fresh_type(char *buf, size_t size, const char *what)
{
    char id[EDDY_UUID_STRLEN];
    eddy_uuid7(id);
    snprintf(buf, size, "conf.%s.%s", what, id + 24);
}

static eddy_transport *open_t(const eddy_transport_options *o)
{
    eddy_error err = {0};
    eddy_transport_options with_file = {0};
    if (o)
        with_file = *o;
    with_file.config_file = env->config_file;
    eddy_transport *t = eddy_transport_open(env->url, &with_file, &err);
    char shown[1024];
    if (!t)
        fail_msg("open %s: %s", eddy_url_redact(env->url, shown, sizeof shown),
                 err.message);
    return t;
}

static eddy_transport_subscription *subscribe(eddy_transport *t, const char *type,
                                     const char *group, const char *consumer,
                                     member *m, int ack_wait_ms,
                                     int max_deliveries)
{
    const char *types[] = {type};
    eddy_transport_subscription_options o = {
        .types = types, .type_count = 1, .group = group,
        .consumer = consumer, .handler = handler, .user = m,
        .ack_wait_ms = ack_wait_ms,
        .retry = {.max_attempts = (unsigned)max_deliveries,
                  .initial_delay_ms = 10, .multiplier = 1},
        .dead_letter = on_dead,
    };
    eddy_transport_subscription *sub = NULL;
    eddy_error err = {0};
    int rc = eddy_transport_subscribe(t, &o, &sub, &err);
    if (rc != EDDY_OK)
        fail_msg("subscribe %s: %s", type, err.message);
    if (env->settle_ms)
        sleep_ms(env->settle_ms);
    return sub;
}

static eddy_event *make_event(const char *type, const char *subject, int seq)
{
    eddy_error err = {0};
    eddy_event *ev = eddy_event_newf(type, "conformance", subject, &err,
                                     "{s:i, s:s}", "seq", seq, "pad", "x");
    if (!ev)
        fail_msg("event: %s", err.message);
    return ev;
}

static void publish(eddy_transport *t, eddy_event *ev)
{
    eddy_error err = {0};
    int rc = eddy_transport_publish(t, ev, &err);
    if (rc != EDDY_OK)
        fail_msg("publish %s: %s", eddy_event_type(ev), err.message);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    char type[64];
    fresh_type(type, sizeof type, "rt");
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r);
    rec_init(r);
    member m = {r, 0};
    eddy_event *sent[3];
    for (int i = 0; i < 3; i++) {
        sent[i] = make_event(type, "agg-1", i);
        publish(t, sent[i]);
    }
    eddy_transport_subscription *sub = subscribe(t, type, "g", "c1", &m, 0, 0);
    assert_int_equal(wait_for(r, rec_count, 3, 10000), 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(r->recs[i].id, eddy_event_id(sent[i]));
    eddy_transport_subscription_free(sub);
    for (int i = 0; i < 3; i++)
        eddy_event_unref(sent[i]);
    rec_destroy(r);
    free(r);
    char topic[128];
    assert_int_equal(eddy_transport_topic(t, type, topic, sizeof topic),
                     EDDY_OK);
    assert_non_null(strstr(topic, type));
    assert_int_equal(eddy_transport_topic(t, type, topic, 4), EDDY_ETOOBIG);
    eddy_transport_close(t);
}

/* A handler that keeps whole events, for the equality check. */
typedef struct keeper {
    pthread_mutex_t mu;
    eddy_event *evs[8];
    size_t n;
} keeper;

static int keep_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    keeper *k = user;
    pthread_mutex_lock(&k->mu);
    if (k->n < 8)
        k->evs[k->n++] = eddy_event_ref((eddy_event *)ev);
    pthread_mutex_unlock(&k->mu);
    eddy_delivery_ack(d);
    return 0;
}

static void test_roundtrip_equal(void **state)
{
    char type[64];
    fresh_type(type, sizeof type, "eq");
    eddy_transport *t = open_t(NULL);
    keeper k = {.n = 0};
    pthread_mutex_init(&k.mu, NULL);
    const char *types[] = {type};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .handler = keep_handler, .user = &k};
    eddy_transport_subscription *sub = NULL;
    eddy_error err = {0};
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_OK);
    if (env->settle_ms)
        sleep_ms(env->settle_ms);
    json_t *ext = json_pack("{s:s, s:b, s:i}", "tenant", "acme", "flag", 1,
                            "count", 42);
    eddy_event_init in = {
        .type = type, .source = "conformance/src", .subject = "order-7",
        .dataversion = "2.0", .correlation_id = "corr-1",
        .causation_id = "cause-1", .extensions = ext,
        .dataschema = "https://example.com/s.json",
        .data = json_pack("{s:s, s:f, s:[i,i], s:n}", "order", "o-7",
                          "amount", 12.5, "items", 1, 2, "none"),
    };
    eddy_event *a = eddy_event_new(&in, &err);
    json_decref(in.data);
    json_decref(ext);
    assert_non_null(a);
    eddy_event_init bin = {.type = type, .source = "conformance/src",
                           .subject = "order-8",
                           .datacontenttype = "application/octet-stream",
                           .data_base64 = "AAECAwQ="};
    eddy_event *b = eddy_event_new(&bin, &err);
    assert_non_null(b);
    eddy_event_init nodata = {.type = type, .source = "s"};
    eddy_event *c = eddy_event_new(&nodata, &err);
    assert_non_null(c);
    publish(t, a);
    publish(t, b);
    publish(t, c);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&k.mu);
        size_t n = k.n;
        pthread_mutex_unlock(&k.mu);
        if (n >= 3)
            break;
        sleep_ms(5);
    }
    eddy_transport_subscription_free(sub);
    assert_int_equal(k.n, 3);
    /* Matched by id: the three have different keys, and engines order
     * per key only (Kafka spreads keys over partitions). */
    eddy_event *sent[] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        size_t j = 0;
        while (j < k.n && strcmp(eddy_event_id(k.evs[j]),
                                 eddy_event_id(sent[i])) != 0)
            j++;
        if (j == k.n)
            fail_msg("event %zu (%s) not received", i, eddy_event_id(sent[i]));
        assert_true(eddy_event_equal(k.evs[j], sent[i]));
    }
    for (size_t i = 0; i < k.n; i++)
        eddy_event_unref(k.evs[i]);
    eddy_event_unref(a);
    eddy_event_unref(b);
    eddy_event_unref(c);
    pthread_mutex_destroy(&k.mu);
    eddy_transport_close(t);
}

static void test_per_key_order(void **state)
{
    enum { KEYS = 4, PER_KEY = 25 };
    char type[64];
    fresh_type(type, sizeof type, "order");
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r);
    rec_init(r);
    member m = {r, 0};
    eddy_transport_subscription *sub = subscribe(t, type, "ordered", "only", &m, 0, 0);
    for (int i = 0; i < PER_KEY; i++)
        for (int k = 0; k < KEYS; k++) {
            char subject[16];
            snprintf(subject, sizeof subject, "agg-%d", k);
            eddy_event *ev = make_event(type, subject, i);
            publish(t, ev);
            eddy_event_unref(ev);
        }
    assert_int_equal(wait_for(r, rec_count, KEYS * PER_KEY, 20000),
                     KEYS * PER_KEY);
    eddy_transport_subscription_free(sub);
    int next[KEYS] = {0};
    for (size_t i = 0; i < r->n; i++) {
        int k = atoi(r->recs[i].subject + 4);
        assert_true(k >= 0 && k < KEYS);
        if (r->recs[i].seq != next[k])
            fail_msg("key %s: got seq %d, expected %d", r->recs[i].subject,
                     r->recs[i].seq, next[k]);
        next[k]++;
    }
    rec_destroy(r);
    free(r);
    eddy_transport_close(t);
}

static int id_seen(recorder *r, const char *id)
{
    int n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += strcmp(r->recs[i].id, id) == 0;
    return n;
}

static void test_load_shared(void **state)
{
    enum { N = 60 };
    char type[64];
    fresh_type(type, sizeof type, "load");
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r), *other = malloc(sizeof *other);
    rec_init(r);
    rec_init(other);
    member m1 = {r, 1}, m2 = {r, 2}, mo = {other, 3};
    eddy_transport_subscription *s1 = subscribe(t, type, "shared", "m1", &m1, 0, 0);
    eddy_transport_subscription *s2 = subscribe(t, type, "shared", "m2", &m2, 0, 0);
    eddy_transport_subscription *so = subscribe(t, type, "other", "o1", &mo, 0, 0);
    char ids[N][EDDY_UUID_STRLEN + 8];
    for (int i = 0; i < N; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "agg-%d", i);
        eddy_event *ev = make_event(type, subject, i);
        snprintf(ids[i], sizeof ids[i], "%s", eddy_event_id(ev));
        publish(t, ev);
        eddy_event_unref(ev);
        /* Paced, so that both members are fetching while events arrive. */
        if (i % 4 == 3)
            sleep_ms(5);
    }
    assert_int_equal(wait_for(r, rec_count, N, 20000), N);
    assert_int_equal(wait_for(other, rec_count, N, 20000), N);
    sleep_ms(100); /* nothing more may arrive */
    eddy_transport_subscription_free(s1);
    eddy_transport_subscription_free(s2);
    eddy_transport_subscription_free(so);
    assert_int_equal(r->n, N);
    assert_int_equal(other->n, N);
    int per[3] = {0};
    for (size_t i = 0; i < r->n; i++)
        per[r->recs[i].member]++;
    for (int i = 0; i < N; i++) {
        assert_int_equal(id_seen(r, ids[i]), 1);
        assert_int_equal(id_seen(other, ids[i]), 1);
    }
    if (per[1] == 0 || per[2] == 0)
        fail_msg("load not shared: member 1 got %d, member 2 got %d", per[1],
                 per[2]);
    rec_destroy(r);
    rec_destroy(other);
    free(r);
    free(other);
    eddy_transport_close(t);
}

static void test_crash_redelivery(void **state)
{
    enum { N = 10 };
    char type[64];
    fresh_type(type, sizeof type, "crash");
    int ack_wait = env->ack_wait_ms ? env->ack_wait_ms : 500;
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r);
    rec_init(r);
    r->hang_member = 1;
    member ma = {r, 1}, mb = {r, 2};
    char ids[N][EDDY_UUID_STRLEN + 8];
    for (int i = 0; i < N; i++) {
        eddy_event *ev = make_event(type, "agg-c", i);
        snprintf(ids[i], sizeof ids[i], "%s", eddy_event_id(ev));
        publish(t, ev);
        eddy_event_unref(ev);
    }
    eddy_transport_subscription *sa = subscribe(t, type, "crashy", "a", &ma, ack_wait, 0);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&r->mu);
        int hung = r->hung;
        pthread_mutex_unlock(&r->mu);
        if (hung)
            break;
        sleep_ms(5);
    }
    assert_true(r->hung);
    /* Member a holds a message (and whatever it prefetched) without ever
     * settling it; member b must get every event, the held one after
     * ack_wait. */
    eddy_transport_subscription *sb = subscribe(t, type, "crashy", "b", &mb, ack_wait, 0);
    size_t got = wait_for(r, rec_count, N, ack_wait * 4 + 15000);
    /* The hung member comes back and stops; what it had prefetched is no
     * longer its to handle. */
    atomic_store(&r->hang_release, 1);
    eddy_transport_subscription_free(sa);
    eddy_transport_subscription_free(sb);
    assert_int_equal(got, N);
    for (int i = 0; i < N; i++) {
        if (id_seen(r, ids[i]) < 1)
            fail_msg("event %d (%s) never redelivered", i, ids[i]);
    }
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(r->recs[i].member, 2);
    int redelivered = 0;
    for (size_t i = 0; i < r->n; i++)
        redelivered += r->recs[i].attempt >= 2;
    assert_true(redelivered >= 1);
    rec_destroy(r);
    free(r);
    eddy_transport_close(t);
}

static void test_nack_dead_letter(void **state)
{
    char type[64];
    fresh_type(type, sizeof type, "nack");
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r);
    rec_init(r);
    r->fail_until_attempt = 2; /* first delivery fails, second succeeds */
    member m = {r, 0};
    eddy_transport_subscription *sub = subscribe(t, type, "nacky", "n1", &m, 0, 3);
    eddy_event *ev = make_event(type, "agg-n", 1);
    publish(t, ev);
    assert_int_equal(wait_for(r, rec_count, 2, 20000), 2);
    sleep_ms(100);
    assert_int_equal(rec_count(r), 2);
    assert_int_equal(r->recs[0].attempt, 1);
    assert_int_equal(r->recs[1].attempt, 2);
    assert_string_equal(r->recs[1].id, eddy_event_id(ev));
    assert_int_equal(rec_dead(r), 0);
    eddy_event_unref(ev);

    /* Always failing: delivered retry.max_attempts (3) times, then dead. */
    pthread_mutex_lock(&r->mu);
    r->fail_always = 1;
    r->n = 0;
    pthread_mutex_unlock(&r->mu);
    ev = make_event(type, "agg-n", 2);
    publish(t, ev);
    assert_int_equal(wait_for(r, rec_dead, 1, 20000), 1);
    sleep_ms(200);
    eddy_transport_subscription_stats st;
    eddy_transport_subscription_stats_get(sub, &st);
    eddy_transport_subscription_free(sub);
    assert_int_equal(r->n, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(r->recs[i].attempt, i + 1);
    assert_int_equal(r->ndead, 1);
    assert_string_equal(r->dead_ids[0], eddy_event_id(ev));
    if (!strstr(r->dead_reasons[0], "3 times"))
        fail_msg("dead-letter reason: %s", r->dead_reasons[0]);
    assert_int_equal(st.dead_lettered, 1);
    assert_int_equal(st.acked, 1);
    assert_int_equal(st.nacked, 4);
    eddy_event_unref(ev);
    rec_destroy(r);
    free(r);
    eddy_transport_close(t);
}

/* The subscription's retry policy decides: an error it says is not worth
 * retrying (EDDY_EINVAL, by default) is dead-lettered at its first
 * delivery, naming the error; a retryable one is redelivered. */
static void test_not_retryable(void **state)
{
    char type[64];
    fresh_type(type, sizeof type, "noretry");
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r);
    rec_init(r);
    r->fail_code = EDDY_EINVAL;
    member m = {r, 0};
    eddy_transport_subscription *sub = subscribe(t, type, "noretry", "n1", &m, 0, 5);
    eddy_event *ev = make_event(type, "agg-r", 1);
    publish(t, ev);
    assert_int_equal(wait_for(r, rec_dead, 1, 20000), 1);
    sleep_ms(200);
    eddy_transport_subscription_free(sub);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].attempt, 1);
    if (!strstr(r->dead_reasons[0], "not retryable"))
        fail_msg("dead-letter reason: %s", r->dead_reasons[0]);
    eddy_event_unref(ev);
    rec_destroy(r);
    free(r);
    eddy_transport_close(t);
}

static void test_malformed(void **state)
{
    char type[64], topic[128];
    fresh_type(type, sizeof type, "bad");
    eddy_transport_options to = {.max_message_bytes = 4096};
    eddy_transport *t = open_t(&to);
    assert_int_equal(eddy_transport_topic(t, type, topic, sizeof topic),
                     EDDY_OK);
    recorder *r = malloc(sizeof *r);
    rec_init(r);
    member m = {r, 0};
    eddy_transport_subscription *sub = subscribe(t, type, "bad", "b1", &m, 0, 0);
    const char *garbage = "{\"this is\": not json";
    assert_int_equal(env->inject_raw(t, topic, garbage, strlen(garbage)), 0);
    const char *no_type = "{\"specversion\":\"1.0\",\"id\":\"x1\","
                          "\"source\":\"s\"}";
    assert_int_equal(env->inject_raw(t, topic, no_type, strlen(no_type)), 0);
    size_t big_len = 10000;
    char *big = malloc(big_len + 1);
    int n = snprintf(big, big_len + 1,
                     "{\"specversion\":\"1.0\",\"id\":\"big-1\",\"source\":"
                     "\"s\",\"type\":\"%s\",\"data\":\"", type);
    memset(big + n, 'x', big_len - (size_t)n - 2);
    memcpy(big + big_len - 2, "\"}", 3);
    assert_int_equal(env->inject_raw(t, topic, big, big_len), 0);
    free(big);
    eddy_event *good = make_event(type, "agg-ok", 1);
    publish(t, good);
    assert_int_equal(wait_for(r, rec_count, 1, 20000), 1);
    assert_int_equal(wait_for(r, rec_dead, 3, 20000), 3);
    sleep_ms(100);
    eddy_transport_subscription_free(sub);
    assert_int_equal(r->n, 1);
    assert_string_equal(r->recs[0].id, eddy_event_id(good));
    assert_int_equal(r->ndead, 3);
    int malformed = 0, oversized = 0;
    for (int i = 0; i < 3; i++) {
        malformed += strstr(r->dead_reasons[i], "malformed") != NULL;
        oversized += strstr(r->dead_reasons[i], "oversized") != NULL;
    }
    assert_int_equal(malformed, 2);
    assert_int_equal(oversized, 1);

    /* Publishing an oversized event fails before it leaves. */
    char pad[8000];
    memset(pad, 'y', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    eddy_error err = {0};
    eddy_event *huge = eddy_event_newf(type, "conformance", "agg", &err,
                                       "{s:s}", "pad", pad);
    assert_non_null(huge);
    assert_int_equal(eddy_transport_publish(t, huge, &err), EDDY_ETOOBIG);
    assert_non_null(strstr(err.message, "limit"));
    eddy_event_unref(huge);
    eddy_event_unref(good);
    rec_destroy(r);
    free(r);
    eddy_transport_close(t);
}

static void async_done(int rc, const eddy_event *ev, const eddy_error *err,
                       void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    if (rc == EDDY_OK)
        r->async_ok++;
    else
        r->async_err++;
    pthread_mutex_unlock(&r->mu);
}

static void test_async(void **state)
{
    enum { N = 200 };
    char type[64];
    fresh_type(type, sizeof type, "async");
    eddy_transport *t = open_t(NULL);
    recorder *r = malloc(sizeof *r), *done = malloc(sizeof *done);
    rec_init(r);
    rec_init(done);
    member m = {r, 0};
    eddy_transport_subscription *sub = subscribe(t, type, "async", "a1", &m, 0, 0);
    for (int i = 0; i < N; i++) {
        eddy_event *ev = make_event(type, "agg-a", i);
        eddy_error err = {0};
        assert_int_equal(
            eddy_transport_publish_async(t, ev, async_done, done, &err),
            EDDY_OK);
        eddy_event_unref(ev); /* the transport holds its own reference */
    }
    eddy_error err = {0};
    assert_int_equal(eddy_transport_flush(t, 20000, &err), EDDY_OK);
    assert_int_equal(done->async_ok, N);
    assert_int_equal(done->async_err, 0);
    assert_int_equal(wait_for(r, rec_count, N, 20000), N);
    eddy_transport_subscription_free(sub);
    for (int i = 0; i < N; i++)
        assert_int_equal(r->recs[i].seq, i);
    rec_destroy(r);
    rec_destroy(done);
    free(r);
    free(done);
    eddy_transport_close(t);
}

static int nop_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    return 0;
}

static void test_bad_arguments(void **state)
{
    eddy_error err = {0};
    assert_null(eddy_transport_open("nonsense", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_null(eddy_transport_open("carrier-pigeon://x", NULL, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "carrier-pigeon"));
    /* A message limit above what the decoders read back is refused. */
    eddy_transport_options huge = {.max_message_bytes = EDDY_EVENT_MAX_BYTES + 1};
    assert_null(eddy_transport_open("mem:huge", &huge, &err));
    assert_int_equal(err.code, EDDY_EINVAL);
    assert_non_null(strstr(err.message, "max_message_bytes"));
    eddy_transport *t = open_t(NULL);
    eddy_transport_subscription *sub = NULL;
    eddy_transport_subscription_options o = {0};
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_EINVAL);
    const char *types[] = {"x.y"};
    o.types = types;
    o.type_count = 1;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "handler"));
    const char *empty[] = {""};
    o.types = empty;
    o.handler = nop_handler;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_EINVAL);
    assert_null(sub);
    o.types = types;
    o.start_from = (eddy_start_from)7;
    assert_int_equal(eddy_transport_subscribe(t, &o, &sub, &err), EDDY_EINVAL);
    assert_non_null(strstr(err.message, "start_from"));
    assert_null(sub);
    assert_int_equal(eddy_transport_publish(t, NULL, &err), EDDY_EINVAL);
    eddy_transport_close(t);
    eddy_transport_close(NULL);
    eddy_transport_subscription_free(NULL);
}

/* The outbox relay publishes through the transport; a bridge feeds the
 * received events into another store, once each even when delivered
 * twice. */
static void test_outbox_bridge(void **state)
{
    enum { N = 5 };
    char type[64], dir[] = "/tmp/eddy-transport-bridge-XXXXXX";
    char pa[128], pb[128];
    fresh_type(type, sizeof type, "bridge");
    assert_non_null(mkdtemp(dir));
    snprintf(pa, sizeof pa, "%s/a.db", dir);
    snprintf(pb, sizeof pb, "%s/b.db", dir);
    eddy_store_options so = {.sync = EDDY_SYNC_OFF};
    eddy_error err = {0};
    eddy_store *a = eddy_store_open(pa, &so, &err);
    eddy_store *b = eddy_store_open(pb, &so, &err);
    assert_non_null(a);
    assert_non_null(b);
    eddy_transport *t = open_t(NULL);
    const char *types[] = {type};
    eddy_transport_subscription_options o = {.types = types, .type_count = 1,
                                    .group = "bridge"};
    eddy_transport_bridge *br = NULL;
    assert_int_equal(eddy_transport_bridge_start(t, b, &o, &br, &err), EDDY_OK);
    if (env->settle_ms)
        sleep_ms(env->settle_ms);
    eddy_event *evs[N];
    for (int i = 0; i < N; i++)
        evs[i] = make_event(type, "order-b1", i);
    assert_int_equal(eddy_outbox_append(a, "order-b1", EDDY_EXPECT_ANY, evs, N,
                                        "remote", NULL, &err), EDDY_OK);
    eddy_publisher pub = eddy_transport_publisher(t);
    eddy_outbox_relay *relay = eddy_outbox_relay_start(a, &pub, NULL, &err);
    assert_non_null(relay);
    /* A redelivery: the same event published again. */
    publish(t, evs[0]);
    eddy_transport_subscription_stats st = {0};
    for (int i = 0; i < 4000 && st.acked < N + 1; i++) {
        sleep_ms(5);
        eddy_transport_subscription_stats_get(eddy_transport_bridge_sub(br), &st);
    }
    assert_int_equal(st.acked, N + 1);
    eddy_outbox_relay_free(relay);
    eddy_transport_bridge_free(br);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(b, &head, &err), EDDY_OK);
    assert_int_equal(head, N);
    eddy_cursor *c = NULL;
    assert_int_equal(eddy_store_read_stream(b, "order-b1", 1, EDDY_FORWARD, 0,
                                            &c, &err), EDDY_OK);
    eddy_record rec;
    int i = 0, rc;
    while (eddy_cursor_next(c, &rec, &err)) {
        assert_true(i < N);
        assert_true(eddy_event_equal(rec.event, evs[i]));
        i++;
    }
    rc = -eddy_cursor_error(c);
    assert_int_equal(rc, 0);
    assert_int_equal(i, N);
    eddy_cursor_free(c);
    for (i = 0; i < N; i++)
        eddy_event_unref(evs[i]);
    eddy_transport_close(t);
    eddy_store_close(a);
    eddy_store_close(b);
    char path[160];
    const char *files[] = {"a.db", "a.db-wal", "a.db-shm", "b.db", "b.db-wal",
                           "b.db-shm"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        unlink(path);
    }
    rmdir(dir);
}

int transport_conformance_run(const transport_conformance_env *e)
{
    env = e;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_equal),
        cmocka_unit_test(test_per_key_order),
        cmocka_unit_test(test_load_shared),
        cmocka_unit_test(test_crash_redelivery),
        cmocka_unit_test(test_nack_dead_letter),
        cmocka_unit_test(test_not_retryable),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_async),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_outbox_bridge),
    };
    return _cmocka_run_group_tests(e->name, tests,
                                   sizeof tests / sizeof tests[0], NULL, NULL);
}

int transport_conformance_run_roundtrip(const transport_conformance_env *e)
{
    env = e;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_equal),
        cmocka_unit_test(test_async),
    };
    return _cmocka_run_group_tests(e->name, tests,
                                   sizeof tests / sizeof tests[0], NULL, NULL);
}
