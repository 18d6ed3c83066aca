/*
 * bench/schema.c - JSON Schema validation throughput: one compiled schema
 * (an order with a $ref'd item list, formats, a pattern) validating one
 * valid document over and over, then one invalid document collecting every
 * error, on 1..N threads sharing the schema.
 *
 * usage: schema [ITERATIONS] [THREADS]   (default 200000, 2)
 * Prints validations per second and microseconds per validation.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy/eddy.h"

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

struct job {
    const eddy_schema *schema;
    const json_t *doc;
    long iterations;
    int want;
    long wrong;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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

static int measure(const char *label, const eddy_schema *s, const json_t *doc, int want,
                   long iterations, int threads)
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
    printf("%-28s threads=%d validations=%ld time=%.3fs rate=%.0f/s per=%.2fus\n", label,
           threads, done, secs, (double)done / secs, secs * 1e6 / (double)done * threads);
    if (wrong) {
        fprintf(stderr, "schema bench: %ld validations gave the wrong result\n", wrong);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (iterations <= 0 || threads <= 0 || threads > 64) {
        fprintf(stderr, "usage: schema [ITERATIONS] [THREADS (1-64)]\n");
        return 2;
    }
    eddy_error err = {0};
    eddy_schema *s = eddy_schema_compile_text(SCHEMA, strlen(SCHEMA), &err);
    if (!s) {
        fprintf(stderr, "schema bench: %s\n", err.message);
        return 1;
    }
    json_error_t jerr;
    json_t *good = json_loads(GOOD, 0, &jerr);
    json_t *bad = json_loads(BAD, 0, &jerr);
    int rc = 0;
    if (!good || !bad) {
        fprintf(stderr, "schema bench: bad document: %s\n", jerr.text);
        rc = 1;
        goto done;
    }
    size_t nerrors = 0;
    eddy_schema_validate_all(s, bad, NULL, NULL, &nerrors, NULL);
    char label[64];
    snprintf(label, sizeof label, "invalid (all %zu errors)", nerrors);
    rc |= measure("valid document", s, good, EDDY_OK, iterations, 1);
    rc |= measure(label, s, bad, EDDY_ESCHEMA, iterations, 1);
    if (threads > 1) {
        rc |= measure("valid document", s, good, EDDY_OK, iterations, threads);
        rc |= measure(label, s, bad, EDDY_ESCHEMA, iterations, threads);
    }
done:
    json_decref(good);
    json_decref(bad);
    eddy_schema_free(s);
    return rc;
}
