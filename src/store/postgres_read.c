/*
 * src/store/postgres_read.c - the reads of the PostgreSQL backend, on a pool
 * of reader connections shared by every thread: a read takes a connection,
 * runs one prepared statement in autocommit (binary results: the payload's
 * bytes as stored) and gives it back; a read that finds its connection dead
 * runs once more on a new one (opened with backoff). Readers never take the
 * append lock and never wait for writers (postgres.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/event_internal.h"
#include "../core/internal.h"
#include "postgres.h"

/* Idle reader connections kept. A connection given back to a full pool is
 * closed, and the next read that finds the pool empty opens one: a fork on
 * the server, authentication, a cold catalog cache and every statement
 * prepared again (milliseconds of server CPU). So the pool keeps as many as
 * the process's readers use at once: the order demo has about 12 reads in
 * flight at its peak (its subscriptions' feeders, workers, sagas), and with
 * 8 kept it opened 1,287 connections for 2,000 orders, which took over half
 * of the server's CPU. The pool never opens a connection no read needs: it
 * holds at most the peak of concurrent reads, up to this many. */
#define POOL_IDLE_MAX 32

static const char SQL_SNAPSHOT_LOAD[] =
    "SELECT version, schema_version, state FROM eddy_snapshots "
    "WHERE stream_id = $1 ORDER BY version DESC LIMIT 1";
static const char SQL_STREAM_VERSION[] =
    "SELECT version FROM eddy_streams WHERE stream_id = $1";
static const char SQL_STREAMS_PAGE[] =
    "SELECT stream_id, version FROM eddy_streams WHERE stream_id > $1 "
    "ORDER BY stream_id LIMIT $2";
static const char SQL_INFO[] =
    "SELECT (SELECT COALESCE(max(position), 0) FROM events),"
    " (SELECT count(*) FROM eddy_streams),"
    " (SELECT count(*) FROM eddy_snapshots),"
    " (SELECT value::bigint FROM eddy_meta"
    "  WHERE key = 'eddy_schema_version'),"
    " (SELECT sum(pg_total_relation_size(t))::bigint FROM unnest(ARRAY["
    "  'events', 'eddy_streams', 'eddy_snapshots', 'eddy_meta',"
    "  'eddy_checkpoints', 'eddy_retries', 'eddy_dead_letters', 'eddy_inbox',"
    "  'eddy_outbox', 'eddy_projections', 'eddy_sagas', 'eddy_saga_commands',"
    "  'eddy_saga_timeouts', 'eddy_subscriptions']::regclass[]) AS t)";

/* ---- the pool -------------------------------------------------------------- */

static int reader_get(eddyi_pg *pg, eddyi_pg_conn **out, eddy_error *err)
{
    unsigned gen = atomic_load(&pg->generation);
    for (;;) {
        pthread_mutex_lock(&pg->pool_mu);
        eddyi_pg_conn *c = pg->idle;
        if (c) {
            pg->idle = c->next_idle;
            pg->idle_count--;
        }
        pthread_mutex_unlock(&pg->pool_mu);
        if (!c)
            break;
        if (c->generation == gen && eddyi_pg_conn_alive(c)) {
            *out = c;
            return EDDY_OK;
        }
        eddyi_pg_conn_free(c); /* opened before a connection was lost */
    }
    return eddyi_pg_connect(pg, "reader", true, out, err);
}

void eddyi_pg_pool_put(eddyi_pg *pg, eddyi_pg_conn *c)
{
    if (PQstatus(c->pg) == CONNECTION_OK &&
        PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
        pthread_mutex_lock(&pg->pool_mu);
        if (pg->idle_count < POOL_IDLE_MAX) {
            c->next_idle = pg->idle;
            pg->idle = c;
            pg->idle_count++;
            c = NULL;
        }
        pthread_mutex_unlock(&pg->pool_mu);
    }
    eddyi_pg_conn_free(c);
}

/* Runs one read statement on a pooled connection; once more on a new
 * connection when the first one turns out dead. */
PGresult *eddyi_pg_read_exec(eddyi_pg *pg, const char *sql, bool dynamic,
                             const eddyi_pg_params *p, eddy_error *err)
{
    for (int attempt = 0;; attempt++) {
        eddy_error e = {0};
        eddyi_pg_conn *c = NULL;
        if (reader_get(pg, &c, &e) != EDDY_OK) {
            if (err)
                *err = e;
            return NULL;
        }
        PGresult *r = eddyi_pg_exec(pg, c, sql, dynamic, p, &e);
        if (r) {
            eddyi_pg_pool_put(pg, c);
            return r;
        }
        bool dead = eddyi_pg_conn_dead(pg, c, e.message);
        eddyi_pg_pool_put(pg, c);
        if (!dead || attempt > 0) {
            if (err)
                *err = e;
            return NULL;
        }
    }
}

static int read_int(eddyi_pg *pg, const char *sql, const char *text_param,
                    int64_t *out, eddy_error *err)
{
    eddyi_pg_params p = {0};
    if (text_param)
        eddyi_pg_param_text(&p, text_param);
    PGresult *r = eddyi_pg_read_exec(pg, sql, false, &p, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    *out = PQntuples(r) > 0 ? eddyi_pg_int(r, 0, 0) : 0;
    PQclear(r);
    return EDDY_OK;
}

/*
 * The page query for `spec`: the rows of one page in key order, cut where
 * the payloads before a row reach the byte budget (a window sum, so a page
 * of large events never comes back whole). Type prefixes are text ranges
 * (type > prefix AND type < its end, as on SQLite), compared in the "C"
 * collation, byte order, as the type column is: given as two arrays, so
 * any number of them is one statement shape.
 */
static char *page_sql(const eddyi_read_spec *spec)
{
    size_t cap = 1536;
    char *sql = malloc(cap);
    if (!sql)
        return NULL;
    const char *key = spec->stream_id ? "stream_version" : "position";
    const char *dir = spec->descending ? "DESC" : "ASC";
    int k = 1;
    size_t n = (size_t)snprintf(
        sql, cap,
        "SELECT position, stream_id, stream_version, recorded_us, payload "
        "FROM (SELECT *, sum(octet_length(payload)) OVER (ORDER BY %s %s) - "
        "octet_length(payload) AS before FROM (SELECT position, stream_id, "
        "stream_version, recorded_us, payload FROM events WHERE ",
        key, dir);
    if (spec->stream_id)
        n += (size_t)snprintf(sql + n, cap - n, "stream_id = $%d AND ", k++);
    n += (size_t)snprintf(sql + n, cap - n, "%s %s $%d", key,
                          spec->descending ? "<=" : ">=", k++);
    if (spec->type_count || spec->prefix_count) {
        n += (size_t)snprintf(sql + n, cap - n, " AND (");
        if (spec->type_count)
            n += (size_t)snprintf(sql + n, cap - n, "type = ANY($%d)", k++);
        if (spec->prefix_count) {
            n += (size_t)snprintf(
                sql + n, cap - n,
                "%sEXISTS (SELECT 1 FROM unnest($%d::text[], $%d::text[]) "
                "AS r(lo, hi) WHERE type > r.lo COLLATE \"C\" AND "
                "type < r.hi COLLATE \"C\")",
                spec->type_count ? " OR " : "", k, k + 1);
            k += 2;
        }
        n += (size_t)snprintf(sql + n, cap - n, ")");
    }
    if (spec->from_time_us)
        n += (size_t)snprintf(sql + n, cap - n, " AND time_us >= $%d", k++);
    if (spec->to_time_us)
        n += (size_t)snprintf(sql + n, cap - n, " AND time_us < $%d", k++);
    if (spec->min_position)
        n += (size_t)snprintf(sql + n, cap - n, " AND position >= $%d", k++);
    if (spec->max_position)
        n += (size_t)snprintf(sql + n, cap - n, " AND position <= $%d", k++);
    if (spec->event_id)
        n += (size_t)snprintf(sql + n, cap - n, " AND id = $%d", k++);
    n += (size_t)snprintf(sql + n, cap - n,
                          " ORDER BY %s %s LIMIT $%d) page) w WHERE before < "
                          "$%d ORDER BY %s %s",
                          key, dir, k, k + 1, key, dir);
    if (n >= cap) {
        free(sql);
        return NULL;
    }
    return sql;
}

static void text_array(eddyi_buf *b, char *const *items, size_t count)
{
    eddyi_pg_array_begin(b, EDDYI_PG_TEXT, (int32_t)count, false);
    for (size_t i = 0; i < count; i++)
        eddyi_pg_array_elem(b, items[i], strlen(items[i]));
}

int eddyi_pg_page_query(const eddyi_read_spec *spec, int64_t start_key,
                        size_t max_rows, size_t max_bytes, char **sql,
                        eddyi_pg_params *p, eddyi_buf bufs[3],
                        eddy_error *err)
{
    memset(p, 0, sizeof *p);
    memset(bufs, 0, 3 * sizeof *bufs);
    if (!(*sql = page_sql(spec)))
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    if (spec->stream_id)
        eddyi_pg_param_text(p, spec->stream_id);
    eddyi_pg_param_int8(p, start_key);
    if (spec->type_count) {
        text_array(&bufs[0], spec->types, spec->type_count);
        eddyi_pg_param_bin(p, bufs[0].p, bufs[0].n, EDDYI_PG_TEXT_ARRAY);
    }
    if (spec->prefix_count) {
        text_array(&bufs[1], spec->prefixes, spec->prefix_count);
        text_array(&bufs[2], spec->prefix_ends, spec->prefix_count);
        eddyi_pg_param_bin(p, bufs[1].p, bufs[1].n, EDDYI_PG_TEXT_ARRAY);
        eddyi_pg_param_bin(p, bufs[2].p, bufs[2].n, EDDYI_PG_TEXT_ARRAY);
    }
    if (spec->from_time_us)
        eddyi_pg_param_int8(p, spec->from_time_us);
    if (spec->to_time_us)
        eddyi_pg_param_int8(p, spec->to_time_us);
    if (spec->min_position)
        eddyi_pg_param_int8(p, spec->min_position);
    if (spec->max_position)
        eddyi_pg_param_int8(p, spec->max_position);
    if (spec->event_id)
        eddyi_pg_param_text(p, spec->event_id);
    eddyi_pg_param_int8(p, (int64_t)max_rows);
    eddyi_pg_param_int8(p, (int64_t)max_bytes);
    if (bufs[0].failed || bufs[1].failed || bufs[2].failed) {
        for (int i = 0; i < 3; i++)
            eddyi_buf_free(&bufs[i]);
        free(*sql);
        *sql = NULL;
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    return EDDY_OK;
}

int eddyi_pg_page_rows(const PGresult *r, size_t max_rows, eddyi_row *rows,
                       size_t *n, eddy_error *err)
{
    int rc = EDDY_OK;
    *n = 0;
    int nrows = PQntuples(r);
    for (int i = 0; i < nrows && *n < max_rows; i++) {
        eddyi_row *row = &rows[*n];
        row->position = eddyi_pg_int(r, i, 0);
        row->stream_version = eddyi_pg_int(r, i, 2);
        row->recorded_us = eddyi_pg_int(r, i, 3);
        eddy_error derr = {0};
        row->event = eddyi_event_decode_stored(PQgetvalue(r, i, 4),
                                               (size_t)PQgetlength(r, i, 4),
                                               &derr);
        if (!row->event) {
            rc = eddyi_error(err, EDDY_EPARSE,
                             "stored event at position %lld cannot be "
                             "decoded: %s",
                             (long long)row->position, derr.message);
            break;
        }
        if (!(row->stream_id = eddyi_strdup(PQgetvalue(r, i, 1)))) {
            eddy_event_unref(row->event);
            row->event = NULL;
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        (*n)++;
    }
    if (rc != EDDY_OK) {
        eddyi_rows_clear(rows, *n);
        *n = 0;
    }
    return rc;
}

int eddyi_pg_read_page(void *impl, const eddyi_read_spec *spec,
                       int64_t start_key, size_t max_rows, size_t max_bytes,
                       eddyi_row *rows, size_t *n, eddy_error *err)
{
    eddyi_pg *pg = impl;
    *n = 0;
    char *sql = NULL;
    eddyi_pg_params p;
    eddyi_buf bufs[3];
    int rc = eddyi_pg_page_query(spec, start_key, max_rows, max_bytes, &sql,
                                 &p, bufs, err);
    if (rc != EDDY_OK)
        return rc;
    PGresult *r = eddyi_pg_read_exec(pg, sql, true, &p, err);
    free(sql);
    for (int i = 0; i < 3; i++)
        eddyi_buf_free(&bufs[i]);
    if (!r)
        return err ? err->code : EDDY_EIO;
    rc = eddyi_pg_page_rows(r, max_rows, rows, n, err);
    PQclear(r);
    return rc;
}

int eddyi_pg_head(void *impl, int64_t *head, eddy_error *err)
{
    return read_int(impl, eddyi_pg_sql_head, NULL, head, err);
}

int eddyi_pg_stream_version(void *impl, const char *stream_id,
                             int64_t *version, eddy_error *err)
{
    return read_int(impl, SQL_STREAM_VERSION, stream_id, version, err);
}

int eddyi_pg_streams_page(void *impl, const char *after, size_t max,
                           char **ids, int64_t *versions, size_t *n,
                           eddy_error *err)
{
    eddyi_pg *pg = impl;
    *n = 0;
    eddyi_pg_params p = {0};
    eddyi_pg_param_text(&p, after ? after : "");
    eddyi_pg_param_int8(&p, (int64_t)max);
    PGresult *r = eddyi_pg_read_exec(pg, SQL_STREAMS_PAGE, false, &p, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    int rc = EDDY_OK;
    for (int i = 0; i < PQntuples(r) && *n < max; i++) {
        if (!(ids[*n] = eddyi_strdup(PQgetvalue(r, i, 0)))) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        versions[*n] = eddyi_pg_int(r, i, 1);
        (*n)++;
    }
    PQclear(r);
    if (rc != EDDY_OK) {
        for (size_t i = 0; i < *n; i++)
            free(ids[i]);
        *n = 0;
    }
    return rc;
}

int eddyi_pg_snapshot_load(void *impl, const char *stream_id,
                            int64_t *version, int *schema_version, char **state,
                            eddy_error *err)
{
    eddyi_pg_params p = {0};
    eddyi_pg_param_text(&p, stream_id);
    PGresult *r = eddyi_pg_read_exec(impl, SQL_SNAPSHOT_LOAD, false, &p, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    int rc = EDDY_OK;
    if (PQntuples(r) == 0) {
        rc = eddyi_error(err, EDDY_ENOTFOUND, "stream %s has no snapshot",
                         stream_id);
    } else {
        *version = eddyi_pg_int(r, 0, 0);
        *schema_version = (int)eddyi_pg_int(r, 0, 1);
        if (!(*state = eddyi_strdup(PQgetvalue(r, 0, 2))))
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

int eddyi_pg_info(void *impl, eddy_store_info *info, eddy_error *err)
{
    PGresult *r = eddyi_pg_read_exec(impl, SQL_INFO, false, NULL, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    info->head = eddyi_pg_int(r, 0, 0);
    info->event_count = info->head; /* positions are gap-free */
    info->stream_count = eddyi_pg_int(r, 0, 1);
    info->snapshot_count = eddyi_pg_int(r, 0, 2);
    info->schema_version = (int)eddyi_pg_int(r, 0, 3);
    info->file_bytes = eddyi_pg_int(r, 0, 4);
    PQclear(r);
    return EDDY_OK;
}

void eddyi_pg_pool_clear(eddyi_pg *pg)
{
    while (pg->idle) {
        eddyi_pg_conn *c = pg->idle;
        pg->idle = c->next_idle;
        eddyi_pg_conn_free(c);
    }
    pg->idle_count = 0;
}
