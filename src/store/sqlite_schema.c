/*
 * src/store/sqlite_schema.c - the SQLite store's schema, as migration steps.
 */
#include "sqlite_schema.h"

#define STR_(x) #x
#define STR(x) STR_(x)

const char *const eddyi_sqlite_migrations[EDDYI_SQLITE_SCHEMA_VERSION] = {
    /* 0 -> 1: the event log and the stream versions. */
    "PRAGMA application_id = " STR(EDDYI_SQLITE_APP_ID) ";"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE events("
    "  position INTEGER PRIMARY KEY," /* gap-free: max+1, never deleted */
    "  id TEXT NOT NULL UNIQUE,"
    "  stream_id TEXT NOT NULL,"
    "  stream_version INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  time_us INTEGER,"
    "  recorded_us INTEGER NOT NULL,"
    "  payload TEXT NOT NULL," /* CloudEvents JSON */
    "  UNIQUE(stream_id, stream_version));"
    "CREATE TABLE streams(stream_id TEXT PRIMARY KEY,"
    "  version INTEGER NOT NULL) WITHOUT ROWID;",

    /* 1 -> 2: snapshots, and the indexes behind queries by type and time. */
    "CREATE TABLE snapshots(stream_id TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  schema_version INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  taken_us INTEGER NOT NULL,"
    "  PRIMARY KEY(stream_id, version)) WITHOUT ROWID;"
    "CREATE INDEX events_by_type ON events(type, position);"
    "CREATE INDEX events_by_time ON events(time_us);",
};
