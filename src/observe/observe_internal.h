/*
 * src/observe/observe_internal.h - what the observe layer offers other
 * layers internally: recording who subscribes to what, for `eddy graph`.
 */
#ifndef EDDY_SRC_OBSERVE_INTERNAL_H
#define EDDY_SRC_OBSERVE_INTERNAL_H

#include <sqlite3.h>

#include "eddy/sqlite.h"

#include "eddy/error.h"
#include "eddy/store.h"

/*
 * Records (or refreshes) subscription `name` with its `pattern` ("x.y",
 * "x.*", "*"; NULL: "*") and `kind` ("handler", "projection" or "saga") in
 * the store's eddy_subscriptions table, created if missing, through a write
 * job. A "handler" record never replaces a "projection" or "saga" record
 * of the same name (projections and sagas run on a durable subscription of
 * their name and record themselves first, with their real patterns).
 * Returns EDDY_OK, EDDY_EINVAL, EDDY_EUNSUPPORTED (not SQLite) or a
 * store error. Thread-safe; not from the writer thread. Called by
 * projections and sagas when they start; durable handlers should call it
 * from eddy_durable_start with kind "handler".
 */
int eddyi_subscription_record(eddy_store *store, const char *name,
                              const char *pattern, const char *kind,
                              eddy_error *err);

/* The same, on the writer's connection inside a job. */
int eddyi_subscription_record_db(sqlite3 *db, const char *name,
                                 const char *pattern, const char *kind,
                                 int64_t now_us, eddy_error *err);

#endif
