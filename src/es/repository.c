/*
 * src/es/repository.c - loading (snapshot + replay), saving (append with the
 * loaded version as expected version, then maybe a snapshot) and executing
 * decisions with bounded retries on conflict.
 */
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "es_internal.h"

#define COMPONENT "es"

eddy_repository *eddy_repository_new(eddy_store *store,
                                     const eddy_aggregate_type *type,
                                     eddy_error *err)
{
    if (!store) {
        eddyi_error(err, EDDY_EINVAL, "repository: NULL store");
        return NULL;
    }
    if (!type) {
        eddyi_error(err, EDDY_EINVAL, "repository: NULL aggregate type");
        return NULL;
    }
    if (!type->name || !*type->name) {
        eddyi_error(err, EDDY_EINVAL, "aggregate type: name is missing or empty");
        return NULL;
    }
    if (!eddyi_utf8_valid(type->name, strlen(type->name))) {
        eddyi_error(err, EDDY_EINVAL, "aggregate type: name is not valid UTF-8");
        return NULL;
    }
    if (type->state_size == 0) {
        eddyi_error(err, EDDY_EINVAL, "aggregate type %s: state_size is 0",
                    type->name);
        return NULL;
    }
    if (!type->apply) {
        eddyi_error(err, EDDY_EINVAL, "aggregate type %s: apply is missing",
                    type->name);
        return NULL;
    }
    if (type->snapshot_every && (!type->snapshot != !type->restore)) {
        eddyi_error(err, EDDY_EINVAL,
                    "aggregate type %s: snapshot_every needs both snapshot and "
                    "restore",
                    type->name);
        return NULL;
    }
    eddy_repository *repo = calloc(1, sizeof *repo);
    if (!repo) {
        eddyi_error(err, EDDY_ENOMEM, "repository: out of memory");
        return NULL;
    }
    repo->store = store;
    repo->type = type;
    repo->source = type->source && *type->source ? type->source : type->name;
    repo->snapshots = type->snapshot && type->restore && type->snapshot_every;
    return repo;
}

void eddy_repository_free(eddy_repository *repo)
{
    free(repo);
}

int eddy_repository_stream_id(const eddy_repository *repo, const char *id,
                              char *buf, size_t size)
{
    if (!repo || !id || !buf)
        return EDDY_EINVAL;
    int n = snprintf(buf, size, "%s-%s", repo->type->name, id);
    if (n < 0)
        return EDDY_EINVAL;
    return (size_t)n < size ? EDDY_OK : EDDY_ETOOBIG;
}

void eddy_repository_stats_get(const eddy_repository *repo,
                               eddy_repository_stats *out)
{
    /* The counters are only ever incremented; reading them needs no order. */
    eddy_repository *r = (eddy_repository *)repo;
    out->loads = atomic_load_explicit(&r->loads, memory_order_relaxed);
    out->snapshot_hits = atomic_load_explicit(&r->snapshot_hits, memory_order_relaxed);
    out->snapshot_misses =
        atomic_load_explicit(&r->snapshot_misses, memory_order_relaxed);
    out->events_replayed =
        atomic_load_explicit(&r->events_replayed, memory_order_relaxed);
    out->saves = atomic_load_explicit(&r->saves, memory_order_relaxed);
    out->conflicts = atomic_load_explicit(&r->conflicts, memory_order_relaxed);
    out->snapshots_written =
        atomic_load_explicit(&r->snapshots_written, memory_order_relaxed);
}

static void count(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/*
 * Starts `agg` from the stream's latest snapshot when there is a usable one.
 * A snapshot is a cache, so every way it can be unusable (none, another
 * schema version, restore refusing it, a read error) just leaves the state
 * fresh at version 0 for a full replay; only the reason is logged.
 */
static void load_snapshot(eddy_repository *repo, eddy_aggregate *agg)
{
    const eddy_aggregate_type *t = repo->type;
    int64_t version = 0;
    int schema = 0;
    json_t *snap = NULL;
    eddy_error serr = {0};
    int rc = eddy_store_snapshot_load(repo->store, agg->stream_id, &version,
                                      &schema, &snap, &serr);
    if (rc == EDDY_ENOTFOUND)
        return;
    if (rc != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, COMPONENT,
                  "%s: cannot read snapshot (%s), replaying all events",
                  agg->stream_id, serr.message);
        count(&repo->snapshot_misses, 1);
        return;
    }
    if (schema != t->snapshot_schema_version) {
        EDDYI_LOG(EDDY_LOG_INFO, COMPONENT,
                  "%s: snapshot at version %" PRId64 " has schema version %d, "
                  "not %d: ignored, replaying all events",
                  agg->stream_id, version, schema, t->snapshot_schema_version);
        count(&repo->snapshot_misses, 1);
        json_decref(snap);
        return;
    }
    rc = t->restore(agg->state, snap, &serr);
    json_decref(snap);
    if (rc != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, COMPONENT,
                  "%s: snapshot at version %" PRId64 " refused (%s): replaying "
                  "all events",
                  agg->stream_id, version, serr.message);
        count(&repo->snapshot_misses, 1);
        eddyi_aggregate_reset(agg);
        return;
    }
    agg->version = version;
    count(&repo->snapshot_hits, 1);
}

/* Loads through the store, or inside `txn` when it is not NULL (the
 * writer's view, the transaction's own appends included). */
static eddy_aggregate *load(eddy_repository *repo, eddy_txn *txn,
                            const char *id, eddy_error *err)
{
    eddy_aggregate *agg = NULL;
    eddy_cursor *cur = NULL;
    if (!repo) {
        eddyi_error(err, EDDY_EINVAL, "load: NULL repository");
        return NULL;
    }
    if (!id || !*id) {
        eddyi_error(err, EDDY_EINVAL, "load %s: the aggregate id is %s",
                    repo->type->name, id ? "empty" : "NULL");
        return NULL;
    }
    agg = eddyi_aggregate_new(repo, id, err);
    if (!agg)
        return NULL;
    if (repo->snapshots)
        load_snapshot(repo, agg);

    int rc = txn ? eddy_txn_read_stream(txn, agg->stream_id, agg->version + 1,
                                        EDDY_FORWARD, 0, &cur, err)
                 : eddy_store_read_stream(repo->store, agg->stream_id,
                                          agg->version + 1, EDDY_FORWARD, 0,
                                          &cur, err);
    if (rc != EDDY_OK)
        goto fail;
    eddy_record rec;
    uint64_t replayed = 0;
    while (eddy_cursor_next(cur, &rec, err)) {
        if (rec.stream_version != agg->version + 1) {
            eddyi_error(err, EDDY_ECORRUPT,
                        "load %s: expected version %" PRId64 ", read %" PRId64,
                        agg->stream_id, agg->version + 1, rec.stream_version);
            goto fail;
        }
        eddy_error aerr = {0};
        rc = repo->type->apply(agg->state, rec.event, &aerr);
        if (rc != EDDY_OK) {
            eddyi_error(err, rc, "load %s: version %" PRId64 " (%s %s): %s",
                        agg->stream_id, rec.stream_version,
                        eddy_event_type(rec.event), eddy_event_id(rec.event),
                        aerr.message[0] ? aerr.message : eddy_strerror(rc));
            goto fail;
        }
        agg->version = rec.stream_version;
        replayed++;
    }
    if ((rc = eddy_cursor_error(cur)) != EDDY_OK)
        goto fail;
    eddy_cursor_free(cur);
    count(&repo->events_replayed, replayed);
    count(&repo->loads, 1);
    return agg;
fail:
    eddy_cursor_free(cur);
    eddy_aggregate_free(agg);
    return NULL;
}

eddy_aggregate *eddy_repository_load(eddy_repository *repo, const char *id,
                                     eddy_error *err)
{
    return load(repo, NULL, id, err);
}

eddy_aggregate *eddy_repository_load_txn(eddy_repository *repo, eddy_txn *txn,
                                         const char *id, eddy_error *err)
{
    if (!txn) {
        eddyi_error(err, EDDY_EINVAL, "load: no transaction");
        return NULL;
    }
    return load(repo, txn, id, err);
}

/* Stores a snapshot of the just-saved state (in `txn` when not NULL).
 * Failure is only logged: the events are durable, the snapshot would only
 * have made loads faster. */
static void save_snapshot(eddy_repository *repo, eddy_txn *txn,
                          eddy_aggregate *agg)
{
    json_t *snap = repo->type->snapshot(agg->state);
    if (!snap)
        return;
    eddy_error serr = {0};
    int rc = txn ? eddy_txn_snapshot_save(txn, agg->stream_id, agg->version,
                                          repo->type->snapshot_schema_version,
                                          snap, &serr)
                 : eddy_store_snapshot_save(repo->store, agg->stream_id,
                                            agg->version,
                                            repo->type->snapshot_schema_version,
                                            snap, &serr);
    if (rc == EDDY_OK)
        count(&repo->snapshots_written, 1);
    else
        EDDYI_LOG(EDDY_LOG_WARN, COMPONENT,
                  "%s: snapshot at version %" PRId64 " not stored: %s",
                  agg->stream_id, agg->version, serr.message);
    json_decref(snap);
}

static int save(eddy_repository *repo, eddy_txn *txn, eddy_aggregate *agg,
                eddy_error *err)
{
    if (!repo || !agg)
        return eddyi_error(err, EDDY_EINVAL, "save: NULL %s",
                           repo ? "aggregate" : "repository");
    if (agg->repo->type != repo->type)
        return eddyi_error(err, EDDY_EINVAL,
                           "save: aggregate %s is a %s, not a %s", agg->id,
                           agg->repo->type->name, repo->type->name);
    if (agg->npending == 0)
        return EDDY_OK;
    /* Version 0 means "no stream yet", which is EDDY_EXPECT_NO_STREAM. */
    int64_t expected = agg->version;
    eddy_append_result res;
    int rc = txn ? eddy_txn_append(txn, agg->stream_id, expected, agg->pending,
                                   agg->npending, &res, err)
                 : eddy_store_append(repo->store, agg->stream_id, expected,
                                     agg->pending, agg->npending, &res, err);
    if (rc != EDDY_OK) {
        if (rc == EDDY_ECONFLICT)
            count(&repo->conflicts, 1);
        return rc;
    }
    int64_t before = agg->version;
    agg->version = res.stream_version;
    eddyi_aggregate_clear_pending(agg);
    count(&repo->saves, 1);
    unsigned every = repo->type->snapshot_every;
    if (repo->snapshots && before / every != agg->version / every)
        save_snapshot(repo, txn, agg);
    return EDDY_OK;
}

int eddy_repository_save(eddy_repository *repo, eddy_aggregate *agg,
                         eddy_error *err)
{
    return save(repo, NULL, agg, err);
}

int eddy_repository_save_txn(eddy_repository *repo, eddy_txn *txn,
                             eddy_aggregate *agg, eddy_error *err)
{
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "save: no transaction");
    return save(repo, txn, agg, err);
}

int eddy_repository_execute(eddy_repository *repo, const char *id,
                            eddy_decide_fn decide, void *user,
                            unsigned max_attempts, int64_t *version,
                            eddy_error *err)
{
    if (!repo || !decide)
        return eddyi_error(err, EDDY_EINVAL, "execute: NULL %s",
                           repo ? "decision" : "repository");
    if (max_attempts == 0)
        max_attempts = 1;
    /* Each attempt reports into its own error so that a caller's `err` is
     * only written on failure, with the last attempt's reason. */
    eddy_error aerr;
    int rc = EDDY_OK;
    for (unsigned attempt = 1; attempt <= max_attempts; attempt++) {
        eddy_error_clear(&aerr);
        eddy_aggregate *agg = eddy_repository_load(repo, id, &aerr);
        if (!agg)
            goto fail;
        rc = decide(agg, agg->state, user, &aerr);
        if (rc != EDDY_OK) {
            if (aerr.code != rc)
                eddyi_error(&aerr, rc, "decision on %s failed: %s", agg->stream_id,
                            eddy_strerror(rc));
            eddy_aggregate_free(agg);
            goto fail;
        }
        rc = eddy_repository_save(repo, agg, &aerr);
        if (rc == EDDY_OK && version)
            *version = agg->version;
        eddy_aggregate_free(agg);
        if (rc == EDDY_OK)
            return EDDY_OK;
        if (rc != EDDY_ECONFLICT)
            goto fail;
        EDDYI_LOG(EDDY_LOG_DEBUG, COMPONENT, "%s-%s: attempt %u of %u: %s",
                  repo->type->name, id, attempt, max_attempts, aerr.message);
        /* Let the writer that won run on; the next load sees its events. */
        sched_yield();
    }
    return eddyi_error(err, EDDY_ECONFLICT, "%s (after %u attempts)", aerr.message,
                       max_attempts);
fail:
    if (err)
        *err = aerr;
    return aerr.code ? aerr.code : EDDY_EINVAL;
}

int eddy_repository_execute_txn(eddy_repository *repo, eddy_txn *txn,
                                const char *id, eddy_decide_fn decide,
                                void *user, int64_t *version, eddy_error *err)
{
    if (!repo || !decide || !txn)
        return eddyi_error(err, EDDY_EINVAL, "execute: NULL %s",
                           !repo ? "repository" : !decide ? "decision"
                                                           : "transaction");
    /* One attempt: inside the transaction nobody else can append to the
     * stream between the load and the append (the transaction holds the
     * store's write lock), so a conflict can only mean another process
     * wrote before this transaction began; the caller's transaction fails
     * with it and is run again. */
    eddy_error aerr;
    eddy_error_clear(&aerr);
    eddy_aggregate *agg = load(repo, txn, id, &aerr);
    int rc;
    if (!agg)
        goto fail;
    rc = decide(agg, agg->state, user, &aerr);
    if (rc != EDDY_OK) {
        if (aerr.code != rc)
            eddyi_error(&aerr, rc, "decision on %s failed: %s", agg->stream_id,
                        eddy_strerror(rc));
        eddy_aggregate_free(agg);
        goto fail;
    }
    rc = save(repo, txn, agg, &aerr);
    if (rc == EDDY_OK && version)
        *version = agg->version;
    eddy_aggregate_free(agg);
    if (rc == EDDY_OK)
        return EDDY_OK;
fail:
    if (err)
        *err = aerr;
    return aerr.code ? aerr.code : EDDY_EINVAL;
}
