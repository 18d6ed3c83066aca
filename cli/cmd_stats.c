/*
 * cli/cmd_stats.c - `eddy stats`: what a system recorded in its store.
 *
 *   eddy stats [--store URL] [--format table|prometheus]
 *
 * Per durable subscription: its checkpoint, the store's head, the lag
 * (head - checkpoint), retries pending, dead letters (and those marked for
 * redrive), when the checkpoint last moved; per outbox destination: rows
 * pending, rows sent (still kept), the age of the oldest pending row.
 *
 * It reads them through eddy/status.h on a store opened read-only: it never
 * writes, works on any backend and on read-only media, and while other
 * processes run. Every figure comes from one snapshot of the store.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"


static void stats_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy stats [--store URL] [--format table|jsonl|json|prometheus]\n\n"
            "What the system recorded in its store: per durable consumer (handler,\n"
            "projection, saga) its checkpoint, the head, the lag, retries pending\n"
            "and dead letters; per outbox destination the rows pending and sent.\n"
            "Every figure comes from one snapshot of the store, opened read-only.\n"
            "jsonl/json rows: {\"kind\": \"consumer\", \"name\", \"type\", \"pattern\",\n"
            "\"checkpoint\", \"head\", \"lag\", \"retries\", \"dead_letters\",\n"
            "\"redrive_pending\", \"checkpoint_written\"} and {\"kind\": \"outbox\",\n"
            "\"destination\", \"pending\", \"sent\", \"oldest_pending\"}.\n"
            "  --store URL      the store (default: $EDDY_STORE, else %s)\n"
            "  --format FORMAT  table (default), jsonl, json, or prometheus (the text\n"
            "                   exposition format 0.0.4)\n\n"
            "exit status: 0 success, 1 store error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
}

/* One durable subscription's figures. */
typedef struct sub_stats {
    char *name;
    char *kind;           /* "handler", "projection", "saga" or "" */
    char *pattern;
    int64_t checkpoint;   /* -1: no checkpoint stored yet */
    int64_t updated_us;   /* when the checkpoint was written; 0: never */
    int64_t retries;      /* events parked for a retry */
    int64_t dead;         /* dead letters, status dead */
    int64_t redrive;      /* dead letters marked for redrive */
} sub_stats;

typedef struct outbox_stats {
    char *destination;
    int64_t pending;
    int64_t sent;
    int64_t oldest_pending_us; /* created_us of the oldest pending row; 0 */
} outbox_stats;

typedef struct report {
    eddy_store_info info;
    sub_stats *subs;
    size_t nsubs;
    outbox_stats *outbox;
    size_t noutbox;
} report;

static void report_clear(report *r)
{
    for (size_t i = 0; i < r->nsubs; i++) {
        free(r->subs[i].name);
        free(r->subs[i].kind);
        free(r->subs[i].pattern);
    }
    for (size_t i = 0; i < r->noutbox; i++)
        free(r->outbox[i].destination);
    free(r->subs);
    free(r->outbox);
}

static int keep_consumer(const eddy_consumer_info *info, void *user)
{
    report *r = user;
    sub_stats *n = realloc(r->subs, (r->nsubs + 1) * sizeof *n);
    if (!n)
        return EDDY_ENOMEM;
    r->subs = n;
    sub_stats *s = &n[r->nsubs];
    *s = (sub_stats){.name = strdup(info->name),
                     .kind = strdup(info->kind),
                     .pattern = strdup(info->pattern),
                     .checkpoint = info->checkpoint,
                     .updated_us = info->checkpoint_updated_us,
                     .retries = info->retries,
                     .dead = info->dead_letters,
                     .redrive = info->redrive_pending};
    r->nsubs++;
    if (!s->name || !s->kind || !s->pattern)
        return EDDY_ENOMEM;
    r->info.head = info->head; /* the head of the consumers' snapshot */
    return EDDY_OK;
}

static int keep_outbox(const eddy_outbox_info *info, void *user)
{
    report *r = user;
    outbox_stats *n = realloc(r->outbox, (r->noutbox + 1) * sizeof *n);
    if (!n)
        return EDDY_ENOMEM;
    r->outbox = n;
    outbox_stats *o = &n[r->noutbox];
    *o = (outbox_stats){.destination = strdup(info->destination),
                        .pending = info->pending,
                        .sent = info->sent,
                        .oldest_pending_us = info->oldest_pending_us};
    if (!o->destination)
        return EDDY_ENOMEM;
    r->noutbox++;
    return EDDY_OK;
}

/* ---- output ------------------------------------------------------------------ */

static void print_table(const char *url, const report *r)
{
    printf("store %s: head %" PRId64 ", %" PRId64 " streams\n\n", cli_url_shown(url),
           r->info.head, r->info.stream_count);
    if (!r->nsubs) {
        printf("no durable subscriptions recorded\n");
    } else {
        printf("%-24s %12s %12s %10s %8s %6s %8s  %s\n", "SUBSCRIPTION",
               "CHECKPOINT", "HEAD", "LAG", "RETRIES", "DEAD", "REDRIVE",
               "CHECKPOINT WRITTEN");
        for (size_t i = 0; i < r->nsubs; i++) {
            const sub_stats *s = &r->subs[i];
            int64_t cp = s->checkpoint < 0 ? 0 : s->checkpoint;
            char when[EDDY_TIME_STRLEN + 8] = "-";
            if (s->updated_us > 0)
                eddy_time_format(s->updated_us, when, sizeof when);
            char cptext[24];
            if (s->checkpoint < 0)
                snprintf(cptext, sizeof cptext, "-");
            else
                snprintf(cptext, sizeof cptext, "%" PRId64, s->checkpoint);
            printf("%-24s %12s %12" PRId64 " %10" PRId64 " %8" PRId64
                   " %6" PRId64 " %8" PRId64 "  %s\n", s->name, cptext,
                   r->info.head, r->info.head - cp, s->retries, s->dead,
                   s->redrive, when);
        }
    }
    printf("\n");
    if (!r->noutbox) {
        printf("no outbox rows\n");
        return;
    }
    int64_t now = eddy_now_us();
    printf("%-24s %10s %10s  %s\n", "OUTBOX DESTINATION", "PENDING", "SENT",
           "OLDEST PENDING");
    for (size_t i = 0; i < r->noutbox; i++) {
        const outbox_stats *o = &r->outbox[i];
        char age[32] = "-";
        if (o->pending > 0 && o->oldest_pending_us > 0)
            snprintf(age, sizeof age, "%.3f s ago",
                     (double)(now - o->oldest_pending_us) / 1e6);
        printf("%-24s %10" PRId64 " %10" PRId64 "  %s\n", o->destination,
               o->pending, o->sent, age);
    }
}

/* jsonl / json: one row per consumer, then one per outbox destination. */
static int print_rows(const report *r, cli_format format)
{
    cli_writer w;
    cli_writer_init(&w, "stats", format, stdout);
    for (size_t i = 0; i < r->nsubs; i++) {
        const sub_stats *s = &r->subs[i];
        int64_t cp = s->checkpoint < 0 ? 0 : s->checkpoint;
        json_t *row = json_pack(
            "{s:s, s:s, s:s?, s:s?, s:o, s:I, s:I, s:I, s:I, s:I, s:o}",
            "kind", "consumer", "name", s->name, "type",
            *s->kind ? s->kind : NULL, "pattern",
            *s->pattern ? s->pattern : NULL, "checkpoint",
            s->checkpoint < 0 ? json_null() : json_integer(s->checkpoint),
            "head", (json_int_t)r->info.head, "lag",
            (json_int_t)(r->info.head > cp ? r->info.head - cp : 0), "retries",
            (json_int_t)s->retries, "dead_letters", (json_int_t)s->dead,
            "redrive_pending", (json_int_t)s->redrive, "checkpoint_written",
            cli_json_time(s->updated_us));
        if (cli_writer_put(&w, row) != 0)
            return 1;
    }
    for (size_t i = 0; i < r->noutbox; i++) {
        const outbox_stats *o = &r->outbox[i];
        json_t *row = json_pack("{s:s, s:s, s:I, s:I, s:o}", "kind", "outbox",
                                "destination", o->destination, "pending",
                                (json_int_t)o->pending, "sent",
                                (json_int_t)o->sent, "oldest_pending",
                                cli_json_time(o->pending > 0
                                                  ? o->oldest_pending_us
                                                  : 0));
        if (cli_writer_put(&w, row) != 0)
            return 1;
    }
    return cli_writer_end(&w);
}

/* Prometheus text through the metrics layer's gauges (names, escaping). */
static int print_prometheus(const report *r)
{
    eddy_metrics *m = eddy_metrics_new();
    if (!m)
        return cli_fail(1, "out of memory");
    eddy_error err = {0};
    int rc = eddy_metrics_gauge_set(m, "eddy_store_head_position",
                                    "Last global position of the store.", NULL,
                                    NULL, (double)r->info.head, &err);
    for (size_t i = 0; i < r->nsubs && rc == EDDY_OK; i++) {
        const sub_stats *s = &r->subs[i];
        int64_t cp = s->checkpoint < 0 ? 0 : s->checkpoint;
        struct {
            const char *name, *help;
            int64_t value;
        } g[] = {
            {"eddy_subscription_checkpoint_position",
             "Stored checkpoint of a durable subscription.", cp},
            {EDDY_METRIC_SUBSCRIPTION_LAG,
             "Events in the store after the subscription's checkpoint.",
             r->info.head - cp},
            {"eddy_subscription_retries_pending",
             "Events parked for a retry.", s->retries},
            {"eddy_subscription_dead_letters",
             "Dead letters waiting for inspection.", s->dead},
            {"eddy_subscription_redrive_pending",
             "Dead letters marked for redrive.", s->redrive},
        };
        for (size_t k = 0; k < sizeof g / sizeof g[0] && rc == EDDY_OK; k++)
            rc = eddy_metrics_gauge_set(m, g[k].name, g[k].help, "subscription",
                                        s->name, (double)g[k].value, &err);
    }
    for (size_t i = 0; i < r->noutbox && rc == EDDY_OK; i++) {
        const outbox_stats *o = &r->outbox[i];
        rc = eddy_metrics_gauge_set(m, "eddy_outbox_pending_rows",
                                    "Outbox rows not yet published.",
                                    "destination", o->destination,
                                    (double)o->pending, &err);
        if (rc == EDDY_OK)
            rc = eddy_metrics_gauge_set(m, "eddy_outbox_sent_rows",
                                        "Outbox rows published and kept.",
                                        "destination", o->destination,
                                        (double)o->sent, &err);
    }
    if (rc != EDDY_OK) {
        eddy_metrics_free(m);
        return cli_fail(1, "stats: %s", err.message);
    }
    char *text = eddy_metrics_prometheus(m);
    eddy_metrics_free(m);
    if (!text)
        return cli_fail(1, "out of memory");
    fputs(text, stdout);
    free(text);
    return 0;
}

int cmd_stats(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const formats[] = {"table", "jsonl", "json",
                                          "prometheus"};
    const char *url = NULL;
    int format = 0;
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'F':
            format = cli_find_name(optarg, formats, 4, false);
            if (format < 0)
                return cli_fail_unknown(2, "stats", "format", optarg, formats, 4);
            break;
        case 'h': stats_usage(stdout); return 0;
        default:
            cli_fail(2, "stats: unknown or incomplete option \"%s\"",
                     argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc)
        return cli_fail(2, "stats: unexpected argument \"%s\"", argv[optind]);
    url = cli_store_url(url);

    report r = {0};
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddy_store_open(url, &ro, &err);
    if (!s)
        return cli_fail(1, "cannot open store %s: %s", cli_url_shown(url), err.message);
    int status = 0, rc = eddy_store_info_get(s, &r.info, &err);
    if (rc == EDDY_OK)
        rc = eddy_status_consumers(s, keep_consumer, &r, &err);
    if (rc == EDDY_OK)
        rc = eddy_status_outbox(s, keep_outbox, &r, &err);
    eddy_store_close(s);
    if (rc == EDDY_ENOMEM)
        status = cli_fail(1, "stats: out of memory");
    else if (rc != EDDY_OK)
        status = cli_fail(1, "stats: %s", err.message);
    if (!status) {
        if (format == 3)
            status = print_prometheus(&r);
        else if (format == 0)
            print_table(url, &r);
        else
            status = print_rows(&r, format == 1 ? CLI_FORMAT_JSONL
                                                : CLI_FORMAT_JSON);
    }
    report_clear(&r);
    return status;
}
