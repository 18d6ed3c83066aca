/*
 * src/store/sqlite_schema.h - the SQLite store's file format and its
 * migrations. Internal; tests use it to build older files by hand.
 */
#ifndef EDDY_SRC_STORE_SQLITE_SCHEMA_H
#define EDDY_SRC_STORE_SQLITE_SCHEMA_H

/* PRAGMA application_id of every eddy store file: 'eddy' in ASCII. */
#define EDDYI_SQLITE_APP_ID 0x65646479

/* The schema version this eddy writes. */
#define EDDYI_SQLITE_SCHEMA_VERSION 5

/*
 * eddyi_sqlite_migrations[v] turns a version-v file into version v+1
 * (index 0 creates a new store). Each step runs inside the opening
 * transaction, followed by the update of meta.eddy_schema_version; a failure
 * rolls the whole upgrade back. Steps are never edited once released: a
 * change is a new step at the end.
 */
extern const char *const eddyi_sqlite_migrations[EDDYI_SQLITE_SCHEMA_VERSION];

#endif
