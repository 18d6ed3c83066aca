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

    /* 2 -> 3: the tables of the layers built on the store, so that one
     * version number describes the whole file (they used to be created on
     * first use). IF NOT EXISTS: a file written before this migration may
     * have some of them already. */
    /* durable subscriptions: checkpoints, retries, dead letters, inbox */
    "CREATE TABLE IF NOT EXISTS eddy_checkpoints("
    "  name TEXT PRIMARY KEY,"
    "  position INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS eddy_retries("
    "  subscription TEXT NOT NULL,"
    "  position INTEGER NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  first_failure_us INTEGER NOT NULL,"
    "  last_failure_us INTEGER NOT NULL,"
    "  next_at_us INTEGER NOT NULL,"
    "  error_code INTEGER NOT NULL,"
    "  last_error TEXT NOT NULL,"
    "  PRIMARY KEY(subscription, position)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS eddy_dead_letters("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  subscription TEXT NOT NULL,"
    "  position INTEGER NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  event_type TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  error_code INTEGER NOT NULL,"
    "  error TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  first_failure_us INTEGER NOT NULL,"
    "  last_failure_us INTEGER NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'dead',"
    "  UNIQUE(subscription, position));"
    "CREATE INDEX IF NOT EXISTS eddy_dead_letters_by_status"
    "  ON eddy_dead_letters(subscription, status);"
    "CREATE TABLE IF NOT EXISTS eddy_inbox("
    "  handler TEXT NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  PRIMARY KEY(handler, event_id)) WITHOUT ROWID;"
    /* the transactional outbox */
    "CREATE TABLE IF NOT EXISTS eddy_outbox("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  position INTEGER NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  destination TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  sent_us INTEGER,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE(event_id, destination));"
    "CREATE INDEX IF NOT EXISTS eddy_outbox_unsent ON eddy_outbox(seq) "
    "  WHERE sent_us IS NULL;"
    "CREATE INDEX IF NOT EXISTS eddy_outbox_sent ON eddy_outbox(sent_us) "
    "  WHERE sent_us IS NOT NULL;"
    /* projections */
    "CREATE TABLE IF NOT EXISTS eddy_projections("
    "  name TEXT PRIMARY KEY,"
    "  pattern TEXT NOT NULL,"
    "  mode TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL) WITHOUT ROWID;"
    /* sagas: instances, queued commands, timeouts */
    "CREATE TABLE IF NOT EXISTS eddy_sagas("
    "  type TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  result TEXT NOT NULL DEFAULT '',"
    "  state TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  correlation_id TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  PRIMARY KEY(type, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS eddy_sagas_by_id ON eddy_sagas(id);"
    "CREATE TABLE IF NOT EXISTS eddy_saga_commands("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  saga_type TEXT NOT NULL,"
    "  saga_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  data TEXT,"
    "  correlation_id TEXT,"
    "  causation_id TEXT,"
    "  state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  created_us INTEGER NOT NULL,"
    "  sent_us INTEGER);"
    "CREATE INDEX IF NOT EXISTS eddy_saga_commands_pending"
    "  ON eddy_saga_commands(saga_type, state, seq);"
    "CREATE INDEX IF NOT EXISTS eddy_saga_commands_by_saga"
    "  ON eddy_saga_commands(saga_id);"
    "CREATE INDEX IF NOT EXISTS eddy_saga_commands_by_causation"
    "  ON eddy_saga_commands(causation_id);"
    "CREATE INDEX IF NOT EXISTS eddy_saga_commands_by_correlation"
    "  ON eddy_saga_commands(correlation_id);"
    "CREATE TABLE IF NOT EXISTS eddy_saga_timeouts("
    "  saga_type TEXT NOT NULL,"
    "  saga_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  deadline_us INTEGER NOT NULL,"
    "  fired INTEGER NOT NULL DEFAULT 0,"
    "  correlation_id TEXT,"
    "  causation_id TEXT,"
    "  PRIMARY KEY(saga_type, saga_id, name)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS eddy_saga_timeouts_due"
    "  ON eddy_saga_timeouts(saga_type, fired, deadline_us);"
    /* who subscribes to what, for eddy graph */
    "CREATE TABLE IF NOT EXISTS eddy_subscriptions("
    "  name TEXT PRIMARY KEY,"
    "  pattern TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL) WITHOUT ROWID;"
    /* eddy trace looks events up by correlation id */
    "CREATE INDEX IF NOT EXISTS eddy_events_by_correlation"
    "  ON events(json_extract(payload, '$.correlationid'));",

    /* 3 -> 4: the envelope attributes the store's queries filter and group
     * by are columns written with the event (correlation and causation
     * ids, source, subject), so tracing and the flow graph read columns
     * and indexes instead of parsing stored payloads, and the same queries
     * run on every backend. */
    "ALTER TABLE events ADD COLUMN correlation_id TEXT;"
    "ALTER TABLE events ADD COLUMN causation_id TEXT;"
    "ALTER TABLE events ADD COLUMN source TEXT;"
    "ALTER TABLE events ADD COLUMN subject TEXT;"
    "UPDATE events SET"
    "  correlation_id = json_extract(payload, '$.correlationid'),"
    "  causation_id = json_extract(payload, '$.causationid'),"
    "  source = json_extract(payload, '$.source'),"
    "  subject = json_extract(payload, '$.subject');"
    "DROP INDEX IF EXISTS eddy_events_by_correlation;"
    "CREATE INDEX events_by_correlation ON events(correlation_id) "
    "  WHERE correlation_id IS NOT NULL;"
    /* cqrs: who runs or rebuilds a projection ("pid@host"), so that a
     * rebuild in another process can refuse while it runs and tell a
     * crashed owner (a dead pid on this host) from a live one. */
    "ALTER TABLE eddy_projections ADD COLUMN owner TEXT NOT NULL "
    "  DEFAULT '';",

    /* 4 -> 5: one durable subscription (projection, saga) run by several
     * processes (src/store/state_leases.h). eddy_members: who runs it
     * (one row per running member, renewed while it lives, with the
     * partition count it runs with). eddy_leases: its partitions of the
     * partition-key hash, one row each: the member holding it ('' when
     * free), that member's "pid@host", until when the lease holds, and the
     * partition's checkpoint. A subscription's eddy_checkpoints row stays,
     * as the lowest of its partitions' checkpoints. */
    "CREATE TABLE eddy_members("
    "  subscription TEXT NOT NULL,"
    "  member TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  partitions INTEGER NOT NULL,"
    "  joined_us INTEGER NOT NULL,"
    "  expires_us INTEGER NOT NULL,"
    "  PRIMARY KEY(subscription, member)) WITHOUT ROWID;"
    "CREATE TABLE eddy_leases("
    "  subscription TEXT NOT NULL,"
    "  part INTEGER NOT NULL,"
    "  member TEXT NOT NULL DEFAULT '',"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  expires_us INTEGER NOT NULL DEFAULT 0,"
    "  position INTEGER NOT NULL DEFAULT 0,"
    "  updated_us INTEGER NOT NULL,"
    "  PRIMARY KEY(subscription, part)) WITHOUT ROWID;"
    "CREATE INDEX eddy_leases_by_member ON eddy_leases(subscription, member);",
};
