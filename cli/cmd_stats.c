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
 * The store's API has no query over these tables (they belong to the
 * reliability layer, which reads them through the store's writer), so this
 * command reads them through its own READ-ONLY SQLite connection to the
 * store file, after eddy_store_open(read_only) checked that the file is an
 * eddy store. It never writes, and works while other processes run.
 */
#include <getopt.h>
#include <inttypes.h>
#include <sqlite3.h>

#include "eddy/sqlite.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"


static void stats_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy stats [--store URL] [--format table|prometheus]\n\n"
            "What the system recorded in its store: per durable subscription its\n"
            "checkpoint, the head, the lag, retries pending and dead letters; per\n"
            "outbox destination the rows pending and sent.\n"
            "  --store URL      the store (default: $EDDY_STORE, else %s)\n"
            "  --format FORMAT  table (default) or prometheus (text exposition 0.0.4)\n\n"
            "exit status: 0 success, 1 store error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
}

/* One durable subscription's figures. */
typedef struct sub_stats {
    char *name;
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
    for (size_t i = 0; i < r->nsubs; i++)
        free(r->subs[i].name);
    for (size_t i = 0; i < r->noutbox; i++)
        free(r->outbox[i].destination);
    free(r->subs);
    free(r->outbox);
}

/* The file behind a store URL, as eddy_store_open reads it; NULL for
 * another backend. */
static const char *sqlite_path(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0) {
        url += 7;
        return strncmp(url, "//", 2) == 0 ? url + 2 : url;
    }
    return strstr(url, "://") ? NULL : url;
}

static bool table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                           "AND name = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

/* Appends the SELECT over `table` to the union of subscription names. */
static void add_union(char *sql, size_t size, bool *first, const char *select)
{
    size_t len = strlen(sql);
    snprintf(sql + len, size - len, "%s%s", *first ? "" : " UNION ", select);
    *first = false;
}

/* Reads one integer from `sql` with ?1 bound to `name` (NULL: no
 * parameter); `*out` stays when there is no row or it is NULL. */
static int query_int(sqlite3 *db, const char *sql, const char *name,
                     int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cli_fail(1, "stats: %s: %s", sql, sqlite3_errmsg(db));
    if (name)
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return cli_fail(1, "stats: %s: %s", sql, sqlite3_errmsg(db));
    return 0;
}

static int read_subscriptions(sqlite3 *db, report *r)
{
    bool has_cp = table_exists(db, "eddy_checkpoints");
    bool has_rt = table_exists(db, "eddy_retries");
    bool has_dl = table_exists(db, "eddy_dead_letters");
    if (!has_cp && !has_rt && !has_dl)
        return 0;
    char sql[512] = "";
    bool first = true;
    if (has_cp)
        add_union(sql, sizeof sql, &first, "SELECT name FROM eddy_checkpoints");
    if (has_rt)
        add_union(sql, sizeof sql, &first,
                  "SELECT subscription FROM eddy_retries");
    if (has_dl)
        add_union(sql, sizeof sql, &first,
                  "SELECT subscription FROM eddy_dead_letters");
    size_t len = strlen(sql);
    snprintf(sql + len, sizeof sql - len, " ORDER BY 1");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return cli_fail(1, "stats: %s: %s", sql, sqlite3_errmsg(db));
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (r->nsubs == cap) {
            cap = cap ? cap * 2 : 16;
            sub_stats *n = realloc(r->subs, cap * sizeof *n);
            if (!n) {
                sqlite3_finalize(st);
                return cli_fail(1, "out of memory");
            }
            r->subs = n;
        }
        sub_stats *s = &r->subs[r->nsubs];
        memset(s, 0, sizeof *s);
        s->checkpoint = -1;
        s->name = strdup((const char *)sqlite3_column_text(st, 0));
        if (!s->name) {
            sqlite3_finalize(st);
            return cli_fail(1, "out of memory");
        }
        r->nsubs++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cli_fail(1, "stats: reading subscriptions: %s", sqlite3_errmsg(db));
    for (size_t i = 0; i < r->nsubs; i++) {
        sub_stats *s = &r->subs[i];
        int status = 0;
        if (has_cp && !status)
            status = query_int(db, "SELECT position FROM eddy_checkpoints "
                                   "WHERE name = ?1", s->name, &s->checkpoint);
        if (has_cp && !status)
            status = query_int(db, "SELECT updated_us FROM eddy_checkpoints "
                                   "WHERE name = ?1", s->name, &s->updated_us);
        if (has_rt && !status)
            status = query_int(db, "SELECT count(*) FROM eddy_retries "
                                   "WHERE subscription = ?1", s->name, &s->retries);
        if (has_dl && !status)
            status = query_int(db, "SELECT count(*) FROM eddy_dead_letters WHERE "
                                   "subscription = ?1 AND status = 'dead'",
                               s->name, &s->dead);
        if (has_dl && !status)
            status = query_int(db, "SELECT count(*) FROM eddy_dead_letters WHERE "
                                   "subscription = ?1 AND status = 'redrive'",
                               s->name, &s->redrive);
        if (status)
            return status;
    }
    return 0;
}

static int read_outbox(sqlite3 *db, report *r)
{
    if (!table_exists(db, "eddy_outbox"))
        return 0;
    static const char sql[] =
        "SELECT destination, sum(sent_us IS NULL), sum(sent_us IS NOT NULL), "
        "min(CASE WHEN sent_us IS NULL THEN created_us END) "
        "FROM eddy_outbox GROUP BY destination ORDER BY destination";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return cli_fail(1, "stats: %s: %s", sql, sqlite3_errmsg(db));
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (r->noutbox == cap) {
            cap = cap ? cap * 2 : 8;
            outbox_stats *n = realloc(r->outbox, cap * sizeof *n);
            if (!n) {
                sqlite3_finalize(st);
                return cli_fail(1, "out of memory");
            }
            r->outbox = n;
        }
        outbox_stats *o = &r->outbox[r->noutbox];
        o->destination = strdup((const char *)sqlite3_column_text(st, 0));
        if (!o->destination) {
            sqlite3_finalize(st);
            return cli_fail(1, "out of memory");
        }
        o->pending = sqlite3_column_int64(st, 1);
        o->sent = sqlite3_column_int64(st, 2);
        o->oldest_pending_us = sqlite3_column_int64(st, 3); /* NULL -> 0 */
        r->noutbox++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cli_fail(1, "stats: reading the outbox: %s", sqlite3_errmsg(db));
    return 0;
}

/* ---- output ------------------------------------------------------------------ */

static void print_table(const char *url, const report *r)
{
    printf("store %s: head %" PRId64 ", %" PRId64 " streams\n\n", url,
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
    const char *url = NULL, *format = "table";
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'F':
            if (strcmp(optarg, "table") && strcmp(optarg, "prometheus"))
                return cli_fail(2, "stats: --format must be table or prometheus, "
                                "not \"%s\"", optarg);
            format = optarg;
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
        return cli_fail(1, "cannot open store %s: %s", url, err.message);
    int status = 0;
    if (eddy_store_info_get(s, &r.info, &err) != EDDY_OK)
        status = cli_fail(1, "stats: %s", err.message);
    eddy_store_close(s);
    if (status)
        return status;

    const char *path = sqlite_path(url);
    if (!path || strcmp(r.info.backend, "sqlite") != 0)
        return cli_fail(1, "stats: %s is not a SQLite store; stats reads "
                        "SQLite stores only", url);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        status = cli_fail(1, "stats: cannot open %s: %s", path,
                          db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return status;
    }
    sqlite3_busy_timeout(db, 5000);
    /* One read transaction: every figure, the head included, from the same
     * snapshot, so that a lag is never negative. */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    status = query_int(db, "SELECT COALESCE(MAX(position), 0) FROM events",
                       NULL, &r.info.head);
    if (!status)
        status = read_subscriptions(db, &r);
    if (!status)
        status = read_outbox(db, &r);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    if (!status) {
        if (strcmp(format, "prometheus") == 0)
            status = print_prometheus(&r);
        else
            print_table(url, &r);
    }
    report_clear(&r);
    return status;
}
