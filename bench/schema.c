/*
 * bench/schema.c - the schema layer's costs, in one run:
 *
 *   validate  JSON Schema validation throughput: one compiled schema (the
 *             order.placed data: an order with a $ref'd items array,
 *             formats, a pattern) validating one valid document over and
 *             over, then one invalid document collecting every error, on 1
 *             and THREADS threads sharing the schema;
 *   upcast    an upcaster chain of 3 steps (order.placed 1.0 -> 2.0 -> 3.0
 *             -> 4.0: rename a field, add a default, nest two fields):
 *             eddy_schema_registry_upcast on a 1.0 event against the same
 *             loop on a 4.0 event (a no-op that returns the event ref'd);
 *             then eddy_store_read_all over READ_EVENTS 1.0 events with the
 *             upcast hook as the store's transform against without it;
 *   append    the valid order.placed event appended to a fresh SQLite store
 *             (in a temporary directory under $TMPDIR or /tmp), batches of
 *             100, one thread, with the registry's check hook (policy
 *             ON_APPEND) against without any hook, sync FULL (the durable
 *             default) and NORMAL.
 * Upcast, read and append figures are medians of RUNS runs, the two cases
 * of each alternating run by run. The last line is
 * `schema/append validation overhead: X%` (1 - with/without, sync FULL).
 *
 * usage: schema [ITERATIONS] [THREADS]   (default 200000, 2)
 * ITERATIONS is the number of validations per validation case.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eddy/eddy.h"

#define RUNS 5
#define UPCAST_ITERATIONS 50000 /* per upcast run */
#define READ_EVENTS 20000       /* events in the store read back */
#define APPEND_EVENTS 10000     /* per append run */
#define APPEND_BATCH 100

static const char *const SCHEMA =
    "{\"type\": \"object\", \"required\": [\"order_id\", \"email\", \"items\"],"
    " \"properties\": {"
    "  \"order_id\": {\"type\": \"string\", \"format\": \"uuid\"},"
    "  \"email\": {\"type\": \"string\", \"format\": \"email\"},"
    "  \"placed_at\": {\"type\": \"string\", \"format\": \"date-time\"},"
    "  \"amount\": {\"type\": \"number\", \"minimum\": 0, \"multipleOf\": 0.01},"
    "  \"items\": {\"type\": \"array\", \"minItems\": 1, \"maxItems\": 100,"
    "             \"items\": {\"$ref\": \"#/definitions/item\"}}},"
    " \"definitions\": {\"item\": {\"type\": \"object\", \"required\": [\"sku\", \"qty\"],"
    "  \"properties\": {\"sku\": {\"type\": \"string\", \"pattern\": \"^[A-Z]{3}-[0-9]+$\"},"
    "                  \"qty\": {\"type\": \"integer\", \"minimum\": 1}},"
    "  \"additionalProperties\": false}}}";

static const char *const GOOD =
    "{\"order_id\": \"0190a3c2-7b1e-7cc1-8f00-5a1b2c3d4e5f\", \"email\": \"ann@example.com\","
    " \"placed_at\": \"2024-06-01T12:00:00.123456Z\", \"amount\": 129.99,"
    " \"items\": [{\"sku\": \"ABC-1\", \"qty\": 2}, {\"sku\": \"XYZ-42\", \"qty\": 1},"
    "            {\"sku\": \"DEF-7\", \"qty\": 3}]}";

static const char *const BAD =
    "{\"order_id\": \"nope\", \"email\": \"x@\", \"amount\": -1,"
    " \"items\": [{\"sku\": \"abc\", \"qty\": 0}, {\"sku\": \"XYZ-42\", \"qty\": \"a\"}]}";

static const char *const TYPE = "order.placed";

static char bench_dir[512];
static int file_seq;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench/schema: %s: %s\n", what, msg);
    exit(1);
}

/* ---- machine ------------------------------------------------------------ */

static void print_machine(void)
{
    char model[256] = "unknown", load[128] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                const char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(model, sizeof model, "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        fclose(f);
    }
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(load, sizeof load, f))
            snprintf(load, sizeof load, "?");
        fclose(f);
        load[strcspn(load, "\n")] = '\0';
    }
    printf("machine: nproc %ld, CPU %s, load average %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           model, load);
    printf("eddy %s, stores in %s\n\n", eddy_version(), bench_dir);
}

/* ---- validation --------------------------------------------------------- */

struct job {
    const eddy_schema *schema;
    const json_t *doc;
    long iterations;
    int want;
    long wrong;
};

static void *run(void *p)
{
    struct job *j = p;
    for (long i = 0; i < j->iterations; i++) {
        size_t count = 0;
        if (eddy_schema_validate_all(j->schema, j->doc, NULL, NULL, &count, NULL) != j->want)
            j->wrong++;
    }
    return NULL;
}

/* Prints one validation case; `*per_us` (if not NULL) receives the
 * microseconds one validation takes on one thread. */
static int measure(const char *label, const eddy_schema *s, const json_t *doc, int want,
                   long iterations, int threads, double *per_us)
{
    pthread_t tids[64];
    struct job jobs[64];
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){s, doc, iterations / threads, want, 0};
        if (pthread_create(&tids[t], NULL, run, &jobs[t]) != 0) {
            fprintf(stderr, "schema bench: pthread_create failed\n");
            return 1;
        }
    }
    long wrong = 0, done = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        wrong += jobs[t].wrong;
        done += jobs[t].iterations;
    }
    double secs = now_s() - t0;
    double per = secs * 1e6 / (double)done * threads;
    printf("%-28s threads=%d validations=%ld time=%.3fs rate=%.0f/s per=%.2fus\n", label,
           threads, done, secs, (double)done / secs, per);
    if (per_us)
        *per_us = per;
    if (wrong) {
        fprintf(stderr, "schema bench: %ld validations gave the wrong result\n", wrong);
        return 1;
    }
    return 0;
}

/* ---- the upcaster chain --------------------------------------------------
 * Each step copies the (read-only, possibly shared) data deeply, as an
 * upcaster that may run on several threads at once must, and edits the
 * copy. */

static json_t *no_memory(json_t *partial, eddy_error *err)
{
    json_decref(partial);
    if (err) {
        err->code = EDDY_ENOMEM;
        snprintf(err->message, sizeof err->message, "upcaster: out of memory");
    }
    return NULL;
}

/* 1.0 -> 2.0: "email" is renamed "customer_email". */
static json_t *up_rename(const json_t *data, void *user, eddy_error *err)
{
    (void)user;
    json_t *out = json_deep_copy(data);
    json_t *email = out ? json_object_get(out, "email") : NULL;
    if (!email) {
        json_decref(out);
        if (err) {
            err->code = EDDY_EINVAL;
            snprintf(err->message, sizeof err->message, "order.placed 1.0 without email");
        }
        return NULL;
    }
    if (json_object_set(out, "customer_email", email) != 0 || json_object_del(out, "email") != 0)
        return no_memory(out, err);
    return out;
}

/* 2.0 -> 3.0: "currency" appears, "EUR" by default. */
static json_t *up_default(const json_t *data, void *user, eddy_error *err)
{
    (void)user;
    json_t *out = json_deep_copy(data);
    if (!out || (!json_object_get(out, "currency") &&
                 json_object_set_new(out, "currency", json_string("EUR")) != 0))
        return no_memory(out, err);
    return out;
}

/* 3.0 -> 4.0: "amount" and "currency" move into "total": {amount, currency}. */
static json_t *up_nest(const json_t *data, void *user, eddy_error *err)
{
    (void)user;
    json_t *out = json_deep_copy(data);
    json_t *total = json_object();
    if (!out || !total)
        goto fail;
    const char *moved[] = {"amount", "currency"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(out, moved[i]);
        if (v && (json_object_set(total, moved[i], v) != 0 || json_object_del(out, moved[i]) != 0))
            goto fail;
    }
    if (json_object_set_new(out, "total", total) != 0) {
        total = NULL; /* taken even on failure */
        goto fail;
    }
    return out;
fail:
    json_decref(total);
    return no_memory(out, err);
}

/* An order.placed event with its own deep copy of `data` (jansson's
 * reference counts are not atomic; the store's threads must not share it). */
static eddy_event *order_event(const json_t *data, const char *version)
{
    eddy_error err = {0};
    json_t *copy = json_deep_copy(data);
    if (!copy)
        die("json_deep_copy", "out of memory");
    eddy_event_init init = {.type = TYPE, .source = "bench", .dataversion = version,
                            .data = copy};
    eddy_event *ev = eddy_event_new(&init, &err);
    json_decref(copy);
    if (!ev)
        die("eddy_event_new", err.message);
    return ev;
}

/* Nanoseconds per eddy_schema_registry_upcast (+ unref) of `ev`. */
static double upcast_ns(const eddy_schema_registry *reg, eddy_event *ev)
{
    eddy_error err = {0};
    double t0 = now_s();
    for (long i = 0; i < UPCAST_ITERATIONS; i++) {
        eddy_event *up = eddy_schema_registry_upcast(reg, ev, &err);
        if (!up)
            die("eddy_schema_registry_upcast", err.message);
        eddy_event_unref(up);
    }
    return (now_s() - t0) * 1e9 / UPCAST_ITERATIONS;
}

/* Checks that the chain does what it says, once, outside any timing. */
static void check_upcast(const eddy_schema_registry *reg, eddy_event *v1)
{
    eddy_error err = {0};
    eddy_event *up = eddy_schema_registry_upcast(reg, v1, &err);
    if (!up)
        die("eddy_schema_registry_upcast", err.message);
    const json_t *d = eddy_event_data(up);
    const char *ver = eddy_event_dataversion(up);
    const char *cur = json_string_value(json_object_get(json_object_get(d, "total"), "currency"));
    if (!ver || strcmp(ver, "4.0") != 0 || !cur || strcmp(cur, "EUR") != 0 ||
        !json_object_get(d, "customer_email") || json_object_get(d, "email") ||
        json_object_get(d, "amount") || !json_object_get(json_object_get(d, "total"), "amount"))
        die("upcast", "the 1.0 -> 4.0 chain gave the wrong data");
    eddy_event_unref(up);
}

/* ---- stores ------------------------------------------------------------- */

static void fresh_path(char *buf, size_t size, const char *tag)
{
    snprintf(buf, size, "%s/%s-%d.db", bench_dir, tag, file_seq++);
}

static void remove_db(const char *path)
{
    char p[600];
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static eddy_store *open_store(const char *path, const eddy_store_options *o)
{
    char url[620];
    snprintf(url, sizeof url, "sqlite:%s", path);
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, o, &err);
    if (!s)
        die(url, err.message);
    return s;
}

/* Events per second reading the whole store at `path`; every record must
 * come back at dataversion `want`. */
static double read_rate(const char *path, eddy_schema_registry *reg, const char *want)
{
    eddy_store_options o = {0};
    if (reg) {
        o.transform = eddy_schema_registry_upcast_hook;
        o.transform_user = reg;
    }
    eddy_store *s = open_store(path, &o);
    eddy_error err = {0};
    eddy_cursor *c = NULL;
    eddy_record rec;
    long n = 0;
    int rc;
    double t0 = now_s();
    if (eddy_store_read_all(s, 0, 0, &c, &err) != EDDY_OK)
        die("eddy_store_read_all", err.message);
    while (eddy_cursor_next(c, &rec, &err)) {
        const char *v = eddy_event_dataversion(rec.event);
        if (!v || strcmp(v, want) != 0)
            die("read", "an event came back at the wrong version");
        n++;
    }
    rc = -eddy_cursor_error(c);
    double secs = now_s() - t0;
    if (rc < 0)
        die("eddy_cursor_next", err.message);
    eddy_cursor_free(c);
    eddy_store_close(s);
    if (n != READ_EVENTS)
        die("read", "wrong number of events");
    return (double)n / secs;
}

/* Events per second appending APPEND_EVENTS order.placed 1.0 events to a
 * fresh store in batches of APPEND_BATCH, with the check hook of `reg` (or
 * none when NULL). The events are built before the clock starts. */
static double append_rate(eddy_sync_mode sync, eddy_schema_registry *reg, const json_t *data)
{
    char path[560];
    fresh_path(path, sizeof path, reg ? "check" : "plain");
    eddy_store_options o = {0};
    o.sync = sync;
    if (reg) {
        o.check = eddy_schema_registry_check_hook;
        o.check_user = reg;
    }
    eddy_event **evs = malloc(APPEND_EVENTS * sizeof *evs);
    if (!evs)
        die("append", "out of memory");
    for (size_t i = 0; i < APPEND_EVENTS; i++)
        evs[i] = order_event(data, "1.0");
    eddy_store *s = open_store(path, &o);
    eddy_error err = {0};
    int64_t expected = EDDY_EXPECT_NO_STREAM;
    double t0 = now_s();
    for (size_t i = 0; i < APPEND_EVENTS; i += APPEND_BATCH) {
        eddy_append_result res;
        if (eddy_store_append(s, "order-bench", expected, evs + i, APPEND_BATCH, &res, &err) !=
            EDDY_OK)
            die("eddy_store_append", err.message);
        expected = res.stream_version;
    }
    double secs = now_s() - t0;
    eddy_store_close(s);
    remove_db(path);
    for (size_t i = 0; i < APPEND_EVENTS; i++)
        eddy_event_unref(evs[i]);
    free(evs);
    if (expected != APPEND_EVENTS)
        die("append", "wrong stream version at the end");
    return APPEND_EVENTS / secs;
}

/* The hook really rejects an invalid order.placed: otherwise the "with"
 * case would measure nothing. */
static void check_hook_rejects(eddy_schema_registry *reg, const json_t *bad)
{
    char path[560];
    fresh_path(path, sizeof path, "reject");
    eddy_store_options o = {.sync = EDDY_SYNC_OFF, .check = eddy_schema_registry_check_hook,
                            .check_user = reg};
    eddy_store *s = open_store(path, &o);
    eddy_event *ev = order_event(bad, "1.0");
    eddy_error err = {0};
    int rc = eddy_store_append(s, "order-reject", EDDY_EXPECT_ANY, &ev, 1, NULL, &err);
    eddy_event_unref(ev);
    eddy_store_close(s);
    remove_db(path);
    if (rc != EDDY_ESCHEMA)
        die("check hook", "an invalid order.placed was not rejected");
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (iterations <= 0 || threads <= 0 || threads > 64) {
        fprintf(stderr, "usage: schema [ITERATIONS] [THREADS (1-64)]\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(bench_dir, sizeof bench_dir, "%s/eddy-bench-schema-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(bench_dir))
        die(bench_dir, "cannot create the temporary directory");
    print_machine();

    eddy_error err = {0};
    eddy_schema *s = eddy_schema_compile_text(SCHEMA, strlen(SCHEMA), &err);
    if (!s)
        die("schema", err.message);
    json_error_t jerr;
    json_t *good = json_loads(GOOD, 0, &jerr);
    json_t *bad = json_loads(BAD, 0, &jerr);
    if (!good || !bad)
        die("bad document", jerr.text);

    /* -- validation -- */
    int rc = 0;
    double valid_us = 0;
    size_t nerrors = 0;
    eddy_schema_validate_all(s, bad, NULL, NULL, &nerrors, NULL);
    char label[64];
    snprintf(label, sizeof label, "invalid (all %zu errors)", nerrors);
    rc |= measure("valid document", s, good, EDDY_OK, iterations, 1, &valid_us);
    rc |= measure(label, s, bad, EDDY_ESCHEMA, iterations, 1, NULL);
    if (threads > 1) {
        rc |= measure("valid document", s, good, EDDY_OK, iterations, threads, NULL);
        rc |= measure(label, s, bad, EDDY_ESCHEMA, iterations, threads, NULL);
    }
    if (rc)
        die("validate", "a validation gave the wrong result");

    /* -- the registry: order.placed 1.0 validated on append, 3 upcasters -- */
    eddy_schema_registry *reg = eddy_schema_registry_new();
    if (!reg)
        die("registry", "out of memory");
    if (eddy_schema_registry_set_policy(reg, TYPE, EDDY_VALIDATE_ON_APPEND, &err) != EDDY_OK ||
        eddy_schema_registry_add_text(reg, TYPE, "1.0", SCHEMA, strlen(SCHEMA), &err) != EDDY_OK ||
        eddy_schema_registry_add_upcaster(reg, TYPE, "1.0", "2.0", up_rename, NULL, &err) != 0 ||
        eddy_schema_registry_add_upcaster(reg, TYPE, "2.0", "3.0", up_default, NULL, &err) != 0 ||
        eddy_schema_registry_add_upcaster(reg, TYPE, "3.0", "4.0", up_nest, NULL, &err) != 0)
        die("registry", err.message);

    /* -- upcast, per event -- */
    eddy_event *v1 = order_event(good, "1.0");
    eddy_event *v4 = eddy_schema_registry_upcast(reg, v1, &err);
    if (!v4)
        die("eddy_schema_registry_upcast", err.message);
    check_upcast(reg, v1);
    double up1[RUNS], up4[RUNS];
    for (int r = 0; r < RUNS; r++) {
        up1[r] = upcast_ns(reg, v1);
        up4[r] = upcast_ns(reg, v4);
    }
    double u1 = median(up1, RUNS), u4 = median(up4, RUNS);
    printf("\nupcast 1.0 -> 4.0 (3 steps)    %8.0f ns/event  (median of %d x %d)\n", u1, RUNS,
           UPCAST_ITERATIONS);
    printf("upcast 4.0 (no-op, ref'd)      %8.0f ns/event\n", u4);
    printf("cost of the 3-step chain       %8.0f ns/event\n", u1 - u4);
    eddy_event_unref(v4);
    eddy_event_unref(v1);

    /* -- upcast, reading a store -- */
    char rpath[560];
    fresh_path(rpath, sizeof rpath, "read");
    {
        eddy_store_options o = {.sync = EDDY_SYNC_OFF};
        eddy_store *st = open_store(rpath, &o);
        eddy_event *batch[APPEND_BATCH];
        for (int i = 0; i < READ_EVENTS; i += APPEND_BATCH) {
            for (int k = 0; k < APPEND_BATCH; k++)
                batch[k] = order_event(good, "1.0");
            char stream[32];
            snprintf(stream, sizeof stream, "order-%d", i / APPEND_BATCH);
            int arc = eddy_store_append(st, stream, EDDY_EXPECT_NO_STREAM, batch, APPEND_BATCH,
                                        NULL, &err);
            for (int k = 0; k < APPEND_BATCH; k++)
                eddy_event_unref(batch[k]);
            if (arc != EDDY_OK)
                die("eddy_store_append", err.message);
        }
        eddy_store_close(st);
    }
    double rd_with[RUNS], rd_without[RUNS];
    for (int r = 0; r < RUNS; r++) {
        rd_without[r] = read_rate(rpath, NULL, "1.0");
        rd_with[r] = read_rate(rpath, reg, "4.0");
    }
    remove_db(rpath);
    double rw = median(rd_with, RUNS), rwo = median(rd_without, RUNS);
    printf("read_all %d events, no hook    %10.0f events/s  (%.2f us/event)\n", READ_EVENTS, rwo,
           1e6 / rwo);
    printf("read_all %d events, upcast hook%10.0f events/s  (%.2f us/event)\n", READ_EVENTS, rw,
           1e6 / rw);
    printf("read with upcast / without     %10.2f\n", rw / rwo);

    /* -- validation on append -- */
    check_hook_rejects(reg, bad);
    const struct {
        eddy_sync_mode sync;
        const char *name;
    } modes[] = {{EDDY_SYNC_FULL, "full (durable)"}, {EDDY_SYNC_NORMAL, "normal"}};
    double overhead_full = 0;
    printf("\nappend order.placed 1.0, batches of %d, 1 thread, %d events per run, median of %d\n",
           APPEND_BATCH, APPEND_EVENTS, RUNS);
    for (size_t m = 0; m < 2; m++) {
        double with[RUNS], without[RUNS];
        for (int r = 0; r < RUNS; r++) {
            without[r] = append_rate(modes[m].sync, NULL, good);
            with[r] = append_rate(modes[m].sync, reg, good);
        }
        double w = median(with, RUNS), wo = median(without, RUNS);
        double overhead = 100.0 * (1.0 - w / wo);
        printf("sync %-15s no hook %8.0f events/s, check hook %8.0f events/s, overhead %5.1f%%"
               " (validation alone would be %.1f%%)\n",
               modes[m].name, wo, w, overhead, 100.0 * valid_us * 1e-6 * wo);
        if (m == 0)
            overhead_full = overhead;
    }

    eddy_schema_registry_free(reg);
    json_decref(good);
    json_decref(bad);
    eddy_schema_free(s);
    rmdir(bench_dir);
    printf("schema/append validation overhead: %.1f%%\n", overhead_full);
    return 0;
}
