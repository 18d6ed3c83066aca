/*
 * src/store/postgres_schema.c - the PostgreSQL store's tables, as versioned
 * migrations, and the checks made when a store is opened.
 *
 * The tables are created in the first schema of the search_path. Their
 * version is the row 'eddy_schema_version' of eddy_meta. Migration steps are
 * never edited once released: a change is a new step at the end.
 *
 * Text keys use the "C" collation: byte order, as SQLite's, for stream
 * listings and keyset paging, whatever the database's locale. Payloads are
 * bytea: the bytes eddy wrote (its CloudEvents JSON), never parsed by the
 * server; everything reads filter on columns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "postgres.h"

/* eddyi_pg_migrations[v] turns version v into v+1 (0: a new store). */
static const char *const migrations[EDDYI_PG_SCHEMA_VERSION] = {
    /* 0 -> 1: the event log, stream versions, snapshots. */
    "CREATE TABLE eddy_meta(key text COLLATE \"C\" PRIMARY KEY,"
    "  value text NOT NULL);"
    "CREATE TABLE eddy_events("
    "  position bigint PRIMARY KEY," /* gap-free, commit order: postgres.h */
    "  id text COLLATE \"C\" NOT NULL UNIQUE,"
    "  stream_id text COLLATE \"C\" NOT NULL,"
    "  stream_version bigint NOT NULL,"
    "  type text COLLATE \"C\" NOT NULL,"
    "  time_us bigint,"
    "  recorded_us bigint NOT NULL,"
    "  payload bytea NOT NULL," /* CloudEvents JSON, as eddy encoded it */
    "  UNIQUE(stream_id, stream_version));"
    "CREATE INDEX eddy_events_by_type ON eddy_events(type, position);"
    "CREATE INDEX eddy_events_by_time ON eddy_events(time_us);"
    "CREATE TABLE eddy_streams(stream_id text COLLATE \"C\" PRIMARY KEY,"
    "  version bigint NOT NULL);"
    "CREATE TABLE eddy_snapshots(stream_id text COLLATE \"C\" NOT NULL,"
    "  version bigint NOT NULL,"
    "  schema_version integer NOT NULL,"
    "  state text NOT NULL,"
    "  taken_us bigint NOT NULL,"
    "  PRIMARY KEY(stream_id, version));",
};

static const char SQL_TABLES[] =
    "SELECT to_regclass('eddy_meta') IS NOT NULL,"
    "  to_regclass('eddy_events') IS NOT NULL";
static const char SQL_VERSION[] =
    "SELECT value::bigint FROM eddy_meta WHERE key = 'eddy_schema_version'";
static const char SQL_SET_VERSION[] =
    "INSERT INTO eddy_meta(key, value) VALUES('eddy_schema_version', $1) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
static const char SQL_IDS[] = "SELECT 'eddy_events'::regclass::oid::bigint";

/* The stored version: 0 when there is no store yet. */
static int read_version(eddyi_pg *pg, eddyi_pg_conn *c, int *version,
                        eddy_error *err)
{
    PGresult *r = eddyi_pg_exec(pg, c, SQL_TABLES, false, NULL, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    bool meta = eddyi_pg_int(r, 0, 0) != 0;
    bool events = eddyi_pg_int(r, 0, 1) != 0;
    PQclear(r);
    if (!meta) {
        if (events)
            return eddyi_error(err, EDDY_ECORRUPT,
                               "PostgreSQL %s: a table eddy_events exists "
                               "but no eddy_meta: not an eddy store",
                               pg->where);
        *version = 0;
        return EDDY_OK;
    }
    r = eddyi_pg_exec(pg, c, SQL_VERSION, false, NULL, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    int64_t v = PQntuples(r) == 1 ? eddyi_pg_int(r, 0, 0) : 0;
    PQclear(r);
    if (v < 1)
        return eddyi_error(err, EDDY_ECORRUPT,
                           "PostgreSQL %s: eddy_meta holds no store schema "
                           "version: not an eddy store", pg->where);
    if (v > EDDYI_PG_SCHEMA_VERSION)
        return eddyi_error(err, EDDY_EVERSION,
                           "PostgreSQL %s has store schema version %lld, this "
                           "eddy supports up to %d",
                           pg->where, (long long)v, EDDYI_PG_SCHEMA_VERSION);
    *version = (int)v;
    return EDDY_OK;
}

int eddyi_pg_migrate(eddyi_pg *pg, eddyi_pg_conn *c, eddy_error *err)
{
    char lock[96];
    snprintf(lock, sizeof lock, "BEGIN; SELECT pg_advisory_xact_lock(%d, 0)",
             EDDYI_PG_LOCK_CLASS);
    int rc = eddyi_pg_exec_simple(pg, c, lock, err);
    if (rc != EDDY_OK)
        return rc;
    int version = 0;
    rc = read_version(pg, c, &version, err);
    for (int v = version; rc == EDDY_OK && v < EDDYI_PG_SCHEMA_VERSION; v++) {
        rc = eddyi_pg_exec_simple(pg, c, migrations[v], err);
        if (rc == EDDY_OK) {
            char value[16];
            snprintf(value, sizeof value, "%d", v + 1);
            eddyi_pg_params p = {0};
            eddyi_pg_param_text(&p, value);
            PGresult *r = eddyi_pg_exec(pg, c, SQL_SET_VERSION, false, &p, err);
            if (!r)
                rc = err ? err->code : EDDY_EIO;
            PQclear(r);
        }
        if (rc == EDDY_OK)
            EDDYI_LOG(EDDY_LOG_INFO, "store", "PostgreSQL %s: store schema "
                      "%d -> %d", pg->where, v, v + 1);
    }
    if (rc == EDDY_OK)
        return eddyi_pg_exec_simple(pg, c, "COMMIT", err);
    eddyi_pg_exec_simple(pg, c, "ROLLBACK", NULL);
    return rc;
}

int eddyi_pg_schema_check(eddyi_pg *pg, eddyi_pg_conn *c, eddy_error *err)
{
    int version = 0;
    int rc = read_version(pg, c, &version, err);
    if (rc != EDDY_OK)
        return rc;
    if (version == 0)
        return eddyi_error(err, EDDY_ENOTFOUND,
                           "PostgreSQL %s: no eddy store there (no table "
                           "eddy_meta in the search_path)", pg->where);
    if (version < EDDYI_PG_SCHEMA_VERSION)
        return eddyi_error(err, EDDY_EVERSION,
                           "PostgreSQL %s has store schema version %d; open "
                           "it writable once to upgrade it to %d",
                           pg->where, version, EDDYI_PG_SCHEMA_VERSION);
    return EDDY_OK;
}

int eddyi_pg_store_ids(eddyi_pg *pg, eddyi_pg_conn *c, eddy_error *err)
{
    PGresult *r = eddyi_pg_exec(pg, c, SQL_IDS, false, NULL, err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    int64_t oid = eddyi_pg_int(r, 0, 0);
    PQclear(r);
    /* An OID is unsigned 32-bit; the lock's second key is int4. */
    pg->lock_key = (int32_t)(uint32_t)oid;
    snprintf(pg->channel, sizeof pg->channel, "eddy_%lld", (long long)oid);
    return EDDY_OK;
}
