/*
 * src/observe/metrics_text.c - metrics as text: the Prometheus exposition
 * format 0.0.4 and a human-readable table. Both work from a snapshot, so
 * they never hold a lock while formatting.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/metrics.h"
#include "../core/internal.h"
#include "metrics_internal.h"

/* ---- Prometheus --------------------------------------------------------- */

/* A label value: \ " and newline escaped, everything else as is (UTF-8). */
static void put_label_value(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': fputs("\\\\", out); break;
        case '"': fputs("\\\"", out); break;
        case '\n': fputs("\\n", out); break;
        default: fputc(*s, out);
        }
    }
}

/* Help text: \ and newline escaped. */
static void put_help(FILE *out, const char *name, const char *help)
{
    fprintf(out, "# HELP %s ", name);
    for (const char *s = help; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
    }
    fputc('\n', out);
}

static void put_family(FILE *out, const char *name, const char *type,
                       const char *help)
{
    if (help && *help)
        put_help(out, name, help);
    fprintf(out, "# TYPE %s %s\n", name, type);
}

/* Nanoseconds as exact decimal seconds, without trailing zeros. */
static void put_seconds(FILE *out, uint64_t ns)
{
    uint64_t sec = ns / 1000000000ull, frac = ns % 1000000000ull;
    if (frac == 0) {
        fprintf(out, "%" PRIu64, sec);
        return;
    }
    int digits = 9;
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    fprintf(out, "%" PRIu64 ".%0*" PRIu64, sec, digits, frac);
}

/* A float the shortest way that reads back exactly; Prometheus spellings
 * of the special values. */
static void put_double(FILE *out, double v)
{
    if (isnan(v)) {
        fputs("NaN", out);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", out);
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof buf, "%.17g", v);
    fputs(buf, out);
}

/* `name{handler="..",type=".."` without the closing brace, so that a
 * histogram can append its le label. */
static void put_series_open(FILE *out, const char *name,
                            const eddy_metrics_series_stats *st)
{
    fprintf(out, "%s{handler=\"", name);
    put_label_value(out, st->handler);
    fputs("\",type=\"", out);
    put_label_value(out, st->event_type);
    fputc('"', out);
}

enum counter_field { F_HANDLED, F_FAILED, F_RETRIED, F_DEAD, F_IN_FLIGHT };

static const struct {
    const char *name;
    const char *type;
    const char *help;
    enum counter_field field;
} series_families[] = {
    {"eddy_handler_events_handled_total", "counter",
     "Events whose handling ended (succeeded or failed), per handler and event "
     "type.", F_HANDLED},
    {"eddy_handler_events_failed_total", "counter",
     "Handler invocations that failed.", F_FAILED},
    {"eddy_handler_events_retried_total", "counter",
     "Retries scheduled after a failed invocation.", F_RETRIED},
    {"eddy_handler_events_dead_lettered_total", "counter",
     "Events moved to the dead-letter store.", F_DEAD},
    {"eddy_handler_events_in_flight", "gauge",
     "Handler invocations running now.", F_IN_FLIGHT},
};

static void put_series_families(FILE *out, const eddy_metrics_snapshot *snap)
{
    if (snap->nseries == 0)
        return;
    for (size_t f = 0; f < sizeof series_families / sizeof series_families[0];
         f++) {
        put_family(out, series_families[f].name, series_families[f].type,
                   series_families[f].help);
        for (size_t i = 0; i < snap->nseries; i++) {
            const eddy_metrics_series_stats *st = &snap->series[i].st;
            put_series_open(out, series_families[f].name, st);
            fputs("} ", out);
            switch (series_families[f].field) {
            case F_HANDLED: fprintf(out, "%" PRIu64, st->handled); break;
            case F_FAILED: fprintf(out, "%" PRIu64, st->failed); break;
            case F_RETRIED: fprintf(out, "%" PRIu64, st->retried); break;
            case F_DEAD: fprintf(out, "%" PRIu64, st->dead_lettered); break;
            case F_IN_FLIGHT: fprintf(out, "%" PRId64, st->in_flight); break;
            }
            fputc('\n', out);
        }
    }

    const char *h = "eddy_handler_duration_seconds";
    put_family(out, h, "histogram",
               "Time a handler took to handle one event, in seconds.");
    for (size_t i = 0; i < snap->nseries; i++) {
        const struct eddyi_snap_series *ss = &snap->series[i];
        uint64_t cumulative = 0;
        for (unsigned b = 0; b <= EDDYI_PROM_BOUNDS; b++) {
            cumulative += ss->prom[b];
            put_series_open(out, "eddy_handler_duration_seconds_bucket", &ss->st);
            fputs(",le=\"", out);
            if (b < EDDYI_PROM_BOUNDS)
                put_seconds(out, eddyi_prom_bounds_ns[b]);
            else
                fputs("+Inf", out);
            fprintf(out, "\"} %" PRIu64 "\n", cumulative);
        }
        put_series_open(out, "eddy_handler_duration_seconds_sum", &ss->st);
        fputs("} ", out);
        put_seconds(out, ss->st.sum_ns);
        fputc('\n', out);
        put_series_open(out, "eddy_handler_duration_seconds_count", &ss->st);
        fprintf(out, "} %" PRIu64 "\n", cumulative);
    }
}

static void put_gauges(FILE *out, const eddy_metrics_snapshot *snap)
{
    /* Gauges are sorted by name, so a family's gauges are adjacent. */
    for (size_t i = 0; i < snap->ngauges; i++) {
        const eddy_metrics_gauge_stats *g = &snap->gauges[i];
        if (i == 0 || strcmp(snap->gauges[i - 1].name, g->name) != 0)
            put_family(out, g->name, "gauge", g->help);
        fputs(g->name, out);
        if (g->label_name) {
            fprintf(out, "{%s=\"", g->label_name);
            put_label_value(out, g->label_value);
            fputs("\"}", out);
        }
        fputc(' ', out);
        put_double(out, g->value);
        fputc('\n', out);
    }
}

char *eddy_metrics_prometheus(eddy_metrics *m)
{
    if (!m)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    if (!snap)
        return NULL;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        goto fail;
    put_series_families(out, snap);
    put_gauges(out, snap);
    /* open_memstream reports running out of memory as a write error. */
    bool failed = ferror(out) != 0;
    if (fclose(out) != 0 || failed)
        goto fail;
    eddy_metrics_snapshot_free(snap);
    return text;

fail:
    free(text);
    eddy_metrics_snapshot_free(snap);
    return NULL;
}

/* ---- table -------------------------------------------------------------- */

/* A duration for people: 850ns, 12.3us, 4.1ms, 2.50s. */
static const char *human_ns(char *buf, size_t size, uint64_t ns)
{
    if (ns < 1000)
        snprintf(buf, size, "%" PRIu64 "ns", ns);
    else if (ns < 1000000)
        snprintf(buf, size, "%.1fus", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, size, "%.1fms", (double)ns / 1e6);
    else
        snprintf(buf, size, "%.2fs", (double)ns / 1e9);
    return buf;
}

int eddy_metrics_format_table(eddy_metrics *m, FILE *out)
{
    if (!m || !out)
        return EDDY_EINVAL;
    eddy_metrics_snapshot *snap = eddy_metrics_snapshot_take(m, NULL);
    if (!snap)
        return EDDY_ENOMEM;

    int wh = (int)strlen("HANDLER"), wt = (int)strlen("TYPE");
    for (size_t i = 0; i < snap->nseries; i++) {
        int lh = (int)strlen(snap->series[i].st.handler);
        int lt = (int)strlen(snap->series[i].st.event_type);
        wh = lh > wh ? lh : wh;
        wt = lt > wt ? lt : wt;
    }
    fprintf(out, "%-*s  %-*s  %10s %8s %8s %6s %6s %9s %9s %9s\n", wh,
            "HANDLER", wt, "TYPE", "HANDLED", "FAILED", "RETRIED", "DEAD",
            "FLIGHT", "P50", "P99", "MAX");
    for (size_t i = 0; i < snap->nseries; i++) {
        const eddy_metrics_series_stats *st = &snap->series[i].st;
        char p50[32], p99[32], max[32];
        if (st->handled) {
            human_ns(p50, sizeof p50, st->p50_ns);
            human_ns(p99, sizeof p99, st->p99_ns);
            human_ns(max, sizeof max, st->max_ns);
        } else {
            snprintf(p50, sizeof p50, "-");
            snprintf(p99, sizeof p99, "-");
            snprintf(max, sizeof max, "-");
        }
        fprintf(out,
                "%-*s  %-*s  %10" PRIu64 " %8" PRIu64 " %8" PRIu64
                " %6" PRIu64 " %6" PRId64 " %9s %9s %9s\n",
                wh, st->handler, wt, st->event_type, st->handled, st->failed,
                st->retried, st->dead_lettered, st->in_flight, p50, p99, max);
    }
    if (snap->ngauges) {
        fputs("\nGAUGE\n", out);
        for (size_t i = 0; i < snap->ngauges; i++) {
            const eddy_metrics_gauge_stats *g = &snap->gauges[i];
            fputs(g->name, out);
            if (g->label_name)
                fprintf(out, "{%s=\"%s\"}", g->label_name, g->label_value);
            fputs("  ", out);
            put_double(out, g->value);
            fputc('\n', out);
        }
    }
    eddy_metrics_snapshot_free(snap);
    return ferror(out) ? EDDY_EIO : EDDY_OK;
}
