/*
 * src/observe/subscriptions.c - the eddy_subscriptions table: who
 * subscribes to which event types, recorded by running systems so that
 * `eddy graph` can draw the flow.
 */
#include <string.h>

#include "../core/internal.h"
#include "../reliability/reliability_internal.h"
#include "observe_internal.h"

int eddyi_subscription_record_db(sqlite3 *db, const char *name,
                                 const char *pattern, const char *kind,
                                 int64_t now_us, eddy_error *err)
{
    if (!name || !*name || !kind || !*kind)
        return eddyi_error(err, EDDY_EINVAL,
                           "subscription record: name and kind required");
    return eddyi_rel_exec(db, NULL, err,
                          "INSERT INTO eddy_subscriptions(name, pattern, kind,"
                          " updated_us) VALUES(?1, ?2, ?3, ?4) "
                          "ON CONFLICT(name) DO UPDATE SET "
                          "pattern = excluded.pattern, kind = excluded.kind, "
                          "updated_us = excluded.updated_us "
                          /* A projection or saga runs on a durable
                           * subscription of the same name: its "handler"
                           * record must not replace theirs. */
                          "WHERE excluded.kind <> 'handler' OR "
                          "eddy_subscriptions.kind = 'handler'",
                          "ttti", name, pattern ? pattern : "*", kind, now_us);
}

struct record_job {
    const char *name, *pattern, *kind;
};

static int record_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct record_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    return rc == EDDY_OK
               ? eddyi_subscription_record_db(db, j->name, j->pattern,
                                              j->kind, eddy_txn_now_us(txn),
                                              err)
               : rc;
}

int eddyi_subscription_record(eddy_store *store, const char *name,
                              const char *pattern, const char *kind,
                              eddy_error *err)
{
    if (!store)
        return eddyi_error(err, EDDY_EINVAL, "subscription record: no store");
    struct record_job j = {.name = name, .pattern = pattern, .kind = kind};
    return eddyi_store_write(store, record_job_run, &j, err);
}
