/*
 * src/cqrs/projection.c - projections: read models applied exactly once.
 *
 * A running projection is three things:
 *   - a catch-up loop, run by eddy_projection_start and _rebuild on the
 *     calling thread: it reads events from the checkpoint with a cursor and
 *     applies them `batch` at a time, each batch in one write job together
 *     with the checkpoint (fast: one commit per batch, not per event);
 *   - a durable subscription in TRANSACTIONAL mode (eddy/durable.h) for the
 *     live events: per event, apply + inbox row + checkpoint in one job;
 *   - INLINE only: an append hook (store_internal.h) that applies the
 *     events of every append through this handle inside the append's own
 *     transaction and marks them done in the inbox, so the subscription
 *     skips them.
 * Every path commits the read-model writes with what marks the event as
 * done (checkpoint or inbox row), so no event is applied twice or lost.
 *
 * The catch-up checks the inbox too: an INLINE run may have applied events
 * above the persisted checkpoint before it stopped.
 *
 * INLINE ordering: the hook is installed unarmed before the catch-up; a
 * write job ("arm") then applies, inside the writer, the few events that
 * landed after the catch-up's last batch (read from the events table on
 * the write connection) and arms the hook in the same transaction, so from
 * then on every event is applied in store order.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/projection.h"

#include "../core/internal.h"
#include "../observe/observe_internal.h"
#include "../reliability/reliability_internal.h"
#include "cqrs_internal.h"

#define DEFAULT_BATCH 500

static const char UPSERT_CHECKPOINT[] =
    "INSERT INTO eddy_checkpoints(name, position, updated_us) "
    "VALUES(?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET "
    "position = max(position, excluded.position), "
    "updated_us = excluded.updated_us";

struct eddy_projection {
    eddy_store *store;
    const eddy_projection_def *def;
    const char *pattern;
    eddy_durable *durable;
    bool hooked;         /* INLINE: the append hook is installed */
    bool armed;          /* INLINE: writer thread only */
    bool stopped;
    struct eddy_projection *next; /* the running list */
};

/* ---- the running list and the registry ------------------------------------ */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct eddy_projection *g_running; /* under g_mu */
struct def_entry {
    struct def_entry *next;
    const eddy_projection_def *def;
};
static struct def_entry *g_defs; /* under g_mu; lives until exit */

/* Also used as the "rebuilding" marker: a rebuild claims the name. */
static int claim_name(eddy_projection *p, eddy_error *err)
{
    pthread_mutex_lock(&g_mu);
    for (eddy_projection *q = g_running; q; q = q->next) {
        if (q->store == p->store && strcmp(q->def->name, p->def->name) == 0) {
            pthread_mutex_unlock(&g_mu);
            return eddyi_error(err, EDDY_EEXIST,
                               "projection \"%s\" already runs or rebuilds "
                               "on this store handle", p->def->name);
        }
    }
    p->next = g_running;
    g_running = p;
    pthread_mutex_unlock(&g_mu);
    return EDDY_OK;
}

static void release_name(eddy_projection *p)
{
    pthread_mutex_lock(&g_mu);
    for (eddy_projection **pp = &g_running; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

int eddy_projection_register_def(const eddy_projection_def *def,
                                 eddy_error *err)
{
    if (!def || !def->name || !*def->name || !def->apply)
        return eddyi_error(err, EDDY_EINVAL,
                           "projection definition needs a name and apply");
    pthread_mutex_lock(&g_mu);
    for (struct def_entry *e = g_defs; e; e = e->next) {
        if (strcmp(e->def->name, def->name) == 0) {
            int same = e->def == def;
            pthread_mutex_unlock(&g_mu);
            return same ? EDDY_OK
                        : eddyi_error(err, EDDY_EEXIST,
                                      "projection \"%s\" is already "
                                      "registered", def->name);
        }
    }
    struct def_entry *e = malloc(sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&g_mu);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    e->def = def;
    e->next = g_defs;
    g_defs = e;
    pthread_mutex_unlock(&g_mu);
    return EDDY_OK;
}

const eddy_projection_def *eddy_projection_find_def(const char *name)
{
    const eddy_projection_def *found = NULL;
    if (!name)
        return NULL;
    pthread_mutex_lock(&g_mu);
    for (struct def_entry *e = g_defs; e && !found; e = e->next)
        if (strcmp(e->def->name, name) == 0)
            found = e->def;
    pthread_mutex_unlock(&g_mu);
    return found;
}

/* ---- write jobs ----------------------------------------------------------- */

static int check_def(const eddy_projection_def *def, bool need_reset,
                     eddy_error *err)
{
    if (!def || !def->name || !*def->name)
        return eddyi_error(err, EDDY_EINVAL, "projection: name is required");
    if (!def->apply)
        return eddyi_error(err, EDDY_EINVAL,
                           "projection \"%s\": apply is required", def->name);
    if (need_reset && !def->reset)
        return eddyi_error(err, EDDY_EINVAL,
                           "projection \"%s\": reset is required to rebuild",
                           def->name);
    if (def->mode != EDDY_PROJECTION_ASYNC &&
        def->mode != EDDY_PROJECTION_INLINE)
        return eddyi_error(err, EDDY_EINVAL, "projection \"%s\": bad mode %d",
                           def->name, (int)def->mode);
    char what[300];
    snprintf(what, sizeof what, "projection \"%s\"", def->name);
    eddyi_pattern parsed;
    eddy_error perr = {0};
    int rc = eddyi_pattern_parse(def->pattern ? def->pattern : "*", &parsed, &perr);
    if (rc != EDDY_OK)
        eddyi_error(err, rc, "%s: %.400s", what, perr.message);
    return rc;
}

static const char *mode_name(eddy_projection_mode m)
{
    return m == EDDY_PROJECTION_INLINE ? "inline" : "async";
}

static int set_state(sqlite3 *db, const eddy_projection_def *def,
                     const char *state, int64_t now, eddy_error *err)
{
    return eddyi_rel_exec(
        db, NULL, err,
        "INSERT INTO eddy_projections(name, pattern, mode, state, updated_us) "
        "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO UPDATE SET "
        "pattern = excluded.pattern, mode = excluded.mode, "
        "state = excluded.state, updated_us = excluded.updated_us",
        "tttti", def->name,
        def->pattern ? def->pattern : "*", mode_name(def->mode), state, now);
}

struct setup_job {
    const eddy_projection_def *def;
    const char *state;  /* recorded state */
    bool reset;         /* rebuild: reset and forget progress */
    int64_t checkpoint; /* out */
};

static int setup_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct setup_job *j = arg;
    const eddy_projection_def *def = j->def;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int64_t now = eddy_txn_now_us(txn);
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK && def->setup)
        rc = def->setup((eddy_txn *)txn, def->user, err);
    if (rc == EDDY_OK && j->reset) {
        rc = def->reset((eddy_txn *)txn, def->user, err);
        static const char *const wipe[] = {
            "DELETE FROM eddy_checkpoints WHERE name = ?1",
            "DELETE FROM eddy_inbox WHERE handler = ?1",
            "DELETE FROM eddy_retries WHERE subscription = ?1",
            "DELETE FROM eddy_dead_letters WHERE subscription = ?1",
        };
        for (size_t i = 0; rc == EDDY_OK && i < sizeof wipe / sizeof *wipe;
             i++)
            rc = eddyi_rel_exec(db, NULL, err, wipe[i], "t", def->name);
    }
    if (rc == EDDY_OK)
        rc = set_state(db, def, j->state, now, err);
    if (rc == EDDY_OK)
        rc = eddyi_subscription_record_db(
            db, def->name, def->pattern ? def->pattern : "*", "projection",
            now, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT position FROM eddy_checkpoints "
                               "WHERE name = ?1",
                               "t", def->name);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    j->checkpoint = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading the checkpoint", err);
    sqlite3_finalize(st);
    return rc;
}

struct state_job {
    const eddy_projection_def *def;
    const char *state;
};

static int state_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct state_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    return rc == EDDY_OK
               ? set_state(db, j->def, j->state, eddy_txn_now_us(txn), err)
               : rc;
}

/* Is (name, event id) marked done in the inbox? */
static int inbox_done(sqlite3 *db, const char *name, const char *event_id,
                      bool *done, eddy_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT 1 FROM eddy_inbox WHERE handler = ?1 "
                               "AND event_id = ?2 AND state = 'done'",
                               "tt", name, event_id);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    *done = s == SQLITE_ROW;
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading the inbox", err);
    sqlite3_finalize(st);
    return rc;
}

/* Applies `ev` unless the inbox says it is done; with `mark`, marks it. */
static int apply_once(eddy_txn *txn, sqlite3 *db,
                      const eddy_projection_def *def, const eddy_event *ev,
                      bool mark, eddy_error *err)
{
    bool done = false;
    int rc = inbox_done(db, def->name, eddy_event_id(ev), &done, err);
    if (rc != EDDY_OK || done)
        return rc;
    eddy_error e = {0};
    rc = def->apply((eddy_txn *)txn, ev, def->user, &e);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "projection \"%s\": event %s (%s): %s",
                           def->name, eddy_event_id(ev), eddy_event_type(ev),
                           e.message[0] ? e.message : eddy_strerror(rc));
    if (mark)
        rc = eddyi_rel_exec(db, NULL, err,
                            "INSERT INTO eddy_inbox(handler, event_id, state, "
                            "updated_us) VALUES(?1, ?2, 'done', ?3) "
                            "ON CONFLICT(handler, event_id) DO UPDATE SET "
                            "state = 'done', updated_us = excluded.updated_us",
                            "tti", def->name, eddy_event_id(ev),
                            eddy_txn_now_us(txn));
    return rc;
}

/* One batch of the catch-up: events (NULL where the pattern does not
 * match) and the last position they cover. */
struct batch_job {
    const eddy_projection_def *def;
    eddy_event **events;
    size_t count;
    int64_t last;
};

static int batch_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct batch_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    for (size_t i = 0; rc == EDDY_OK && i < j->count; i++)
        if (j->events[i])
            rc = apply_once(txn, db, j->def, j->events[i], false, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_exec(db, NULL, err, UPSERT_CHECKPOINT, "tii",
                            j->def->name, j->last, eddy_txn_now_us(txn));
    return rc;
}

/*
 * Applies every event after `*position` up to the head, in batches; moves
 * `*position`. Returns EDDY_OK, an apply error (the failing batch is rolled
 * back; `*position` stays before it) or a store error.
 */
static int catch_up(eddy_store *store, const eddy_projection_def *def,
                    size_t batch, int64_t *position,
                    eddy_projection_progress_fn progress, void *user,
                    eddy_error *err)
{
    const char *pattern = def->pattern ? def->pattern : "*";
    eddy_event **evs = calloc(batch, sizeof *evs);
    if (!evs)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int64_t total = 0;
    int rc = eddy_store_head(store, &total, err);
    while (rc == EDDY_OK) {
        eddy_cursor *c = NULL;
        rc = eddy_store_read_all(store, *position + 1, batch, &c, err);
        if (rc != EDDY_OK)
            break;
        struct batch_job j = {.def = def, .events = evs, .last = *position};
        eddy_record rec;
        int n;
        while ((n = eddy_cursor_next(c, &rec, err)) > 0) {
            evs[j.count++] = eddyi_pattern_match_text(pattern,
                                                 eddy_event_type(rec.event))
                                 ? eddy_event_ref(rec.event)
                                 : NULL;
            j.last = rec.position;
        }
        eddy_cursor_free(c);
        if (n < 0)
            rc = -n;
        else if (j.count == 0)
            break; /* at the head */
        if (rc == EDDY_OK)
            rc = eddyi_store_write(store, batch_job_run, &j, err);
        for (size_t i = 0; i < j.count; i++) {
            eddy_event_unref(evs[i]);
            evs[i] = NULL;
        }
        if (rc != EDDY_OK)
            break;
        *position = j.last;
        if (*position > total)
            total = *position;
        if (progress)
            progress(*position, total, user);
    }
    free(evs);
    return rc;
}

/* ---- INLINE: the append hook and arming it --------------------------------- */

static int inline_hook(eddy_txn *txn, const char *stream_id,
                       eddy_event *const *events, size_t count, void *user,
                       eddy_error *err)
{
    eddy_projection *p = user;
    EDDYI_UNUSED(stream_id);
    if (!p->armed)
        return EDDY_OK;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    for (size_t i = 0; rc == EDDY_OK && i < count; i++)
        if (eddyi_pattern_match_text(p->pattern, eddy_event_type(events[i])))
            rc = apply_once(txn, db, p->def, events[i], true, err);
    return rc;
}

struct arm_job {
    eddy_projection *p;
    int64_t checkpoint;
};

/*
 * Applies the events committed after the catch-up (read from the events
 * table on the write connection, so nothing can slip in between) and arms
 * the hook, in one transaction. These few events bypass the store's
 * transform hook (they are decoded as stored).
 */
static int arm_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct arm_job *j = arg;
    eddy_projection *p = j->p;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT position, type, payload FROM events "
                               "WHERE position > ?1 ORDER BY position",
                               "i", j->checkpoint);
    if (rc != EDDY_OK)
        return rc;
    int64_t last = j->checkpoint;
    int s;
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        last = sqlite3_column_int64(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        if (!eddyi_pattern_match_text(p->pattern, type))
            continue;
        const char *payload = (const char *)sqlite3_column_text(st, 2);
        eddy_event *ev = eddy_event_decode(
            payload, (size_t)sqlite3_column_bytes(st, 2), err);
        if (!ev) {
            rc = EDDY_EPARSE;
            break;
        }
        rc = apply_once(txn, db, p->def, ev, false, err);
        eddy_event_unref(ev);
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading new events", err);
    sqlite3_finalize(st);
    if (rc == EDDY_OK && last > j->checkpoint)
        rc = eddyi_rel_exec(db, NULL, err, UPSERT_CHECKPOINT, "tii",
                            p->def->name, last, eddy_txn_now_us(txn));
    if (rc == EDDY_OK)
        p->armed = true; /* writer thread: the hook reads it there */
    return rc;
}

/* ---- the live subscription ------------------------------------------------ */

static int durable_apply(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                         void *user)
{
    eddy_projection *p = user;
    eddy_error e = {0};
    int rc = p->def->apply(txn, ev, p->def->user, &e);
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "%s",
                             e.message[0] ? e.message : eddy_strerror(rc));
    return EDDY_OK;
}

eddy_projection *eddy_projection_start(eddy_store *store,
                                       const eddy_projection_def *def,
                                       eddy_error *err)
{
    eddy_projection *p = NULL;
    bool claimed = false;
    if (!store) {
        eddyi_error(err, EDDY_EINVAL, "projection: store is NULL");
        return NULL;
    }
    if (check_def(def, false, err) != EDDY_OK)
        return NULL;
    p = calloc(1, sizeof *p);
    if (!p) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    p->store = store;
    p->def = def;
    p->pattern = def->pattern ? def->pattern : "*";
    if (claim_name(p, err) != EDDY_OK)
        goto fail;
    claimed = true;

    struct setup_job sj = {.def = def, .state = "running"};
    if (eddyi_store_write(store, setup_job_run, &sj, err) != EDDY_OK)
        goto fail;
    if (def->mode == EDDY_PROJECTION_INLINE) {
        if (eddyi_store_add_append_hook(store, inline_hook, p, err) != EDDY_OK)
            goto fail;
        p->hooked = true;
    }
    int64_t position = sj.checkpoint;
    eddy_error e = {0};
    if (catch_up(store, def, def->batch ? def->batch : DEFAULT_BATCH,
                 &position, NULL, NULL, &e) != EDDY_OK) {
        /* Not fatal: the subscription takes over from the checkpoint, with
         * its retries and dead letters for the failing event. */
        EDDYI_LOG(EDDY_LOG_WARN, "projection", "%s: catch-up stopped at "
                  "position %" PRId64 ": %s", def->name, position, e.message);
    }
    if (p->hooked) {
        struct arm_job aj = {.p = p, .checkpoint = position};
        eddy_error ae = {0};
        if (eddyi_store_write(store, arm_job_run, &aj, &ae) != EDDY_OK) {
            /* The hook stays unarmed: the subscription applies everything
             * (INLINE degrades to ASYNC, logged). */
            EDDYI_LOG(EDDY_LOG_WARN, "projection", "%s: cannot apply inline "
                      "(%s); following the store asynchronously", def->name,
                      ae.message);
        }
    }
    eddy_durable_options o = {
        .name = def->name,
        .pattern = p->pattern,
        .mode = EDDY_DELIVERY_TRANSACTIONAL,
        .txn_handler = durable_apply,
        .user = p,
        .workers = def->workers ? def->workers : 1,
    };
    p->durable = eddy_durable_start(store, &o, err);
    if (!p->durable)
        goto fail;
    return p;
fail:
    if (p->hooked)
        eddyi_store_remove_append_hook(store, inline_hook, p);
    if (claimed)
        release_name(p);
    free(p);
    return NULL;
}

int eddy_projection_stop(eddy_projection *p, eddy_error *err)
{
    if (!p)
        return EDDY_OK;
    if (p->stopped)
        return EDDY_OK;
    p->stopped = true;
    if (p->hooked) {
        eddyi_store_remove_append_hook(p->store, inline_hook, p);
        p->hooked = false;
    }
    int rc = eddy_durable_stop(p->durable, err);
    struct state_job sj = {.def = p->def, .state = "stopped"};
    eddy_error e = {0};
    if (eddyi_store_write(p->store, state_job_run, &sj, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "projection", "%s: recording the stop: %s",
                  p->def->name, e.message);
    release_name(p);
    return rc;
}

void eddy_projection_free(eddy_projection *p)
{
    if (!p)
        return;
    eddy_projection_stop(p, NULL);
    eddy_durable_free(p->durable);
    free(p);
}

int eddy_projection_wait(eddy_projection *p, int64_t position, int timeout_ms)
{
    if (!p || !p->durable || p->stopped)
        return EDDY_ESTOPPED;
    return eddy_durable_wait_idle(p->durable, position, timeout_ms);
}

int64_t eddy_projection_checkpoint(const eddy_projection *p)
{
    return p && p->durable ? eddy_durable_checkpoint(p->durable) : 0;
}

/* ---- rebuild -------------------------------------------------------------- */

int eddy_projection_rebuild(eddy_store *store, const eddy_projection_def *def,
                            eddy_projection_progress_fn progress, void *user,
                            eddy_error *err)
{
    if (!store)
        return eddyi_error(err, EDDY_EINVAL, "projection: store is NULL");
    int rc = check_def(def, true, err);
    if (rc != EDDY_OK)
        return rc;
    /* A marker in the running list: no start of this name meanwhile. */
    eddy_projection marker = {.store = store, .def = def};
    rc = claim_name(&marker, err);
    if (rc != EDDY_OK)
        return eddyi_error(err, EDDY_EBUSY,
                           "projection \"%s\" is running on this store "
                           "handle: stop it before rebuilding", def->name);
    struct setup_job sj = {.def = def, .state = "rebuilding", .reset = true};
    rc = eddyi_store_write(store, setup_job_run, &sj, err);
    int64_t position = 0;
    if (rc == EDDY_OK) {
        /* Smaller batches when they would report progress too rarely: about
         * 20 reports, at least 50 events each. */
        size_t batch = def->batch ? def->batch : DEFAULT_BATCH;
        int64_t head = 0;
        if (eddy_store_head(store, &head, NULL) == EDDY_OK && progress) {
            int64_t step = head / 20 < 50 ? 50 : head / 20;
            if ((int64_t)batch > step)
                batch = (size_t)step;
            progress(0, head, user);
        }
        rc = catch_up(store, def, batch, &position, progress, user, err);
    }
    if (rc == EDDY_OK) {
        struct state_job st = {.def = def, .state = "stopped"};
        rc = eddyi_store_write(store, state_job_run, &st, err);
    }
    release_name(&marker);
    return rc;
}

/* ---- listing -------------------------------------------------------------- */

struct proj_row {
    char *name, *pattern, *mode, *state;
    int64_t checkpoint, updated_us;
};

struct list_job {
    struct proj_row *rows;
    size_t count;
    int64_t head;
};

static int list_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct list_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT coalesce(max(position), 0) FROM events",
                               NULL);
    if (rc != EDDY_OK)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        j->head = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    rc = eddyi_rel_prepare(
        db, &st, err,
        "SELECT p.name, p.pattern, p.mode, p.state, "
        "coalesce(c.position, 0), p.updated_us FROM eddy_projections p "
        "LEFT JOIN eddy_checkpoints c ON c.name = p.name ORDER BY p.name",
        NULL);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct proj_row *n = realloc(j->rows, (j->count + 1) * sizeof *n);
        if (!n) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        j->rows = n;
        struct proj_row *r = &j->rows[j->count++];
        r->name = eddyi_rel_column_text(st, 0);
        r->pattern = eddyi_rel_column_text(st, 1);
        r->mode = eddyi_rel_column_text(st, 2);
        r->state = eddyi_rel_column_text(st, 3);
        r->checkpoint = sqlite3_column_int64(st, 4);
        r->updated_us = sqlite3_column_int64(st, 5);
        if (!r->name || !r->pattern || !r->mode || !r->state) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "listing projections", err);
    sqlite3_finalize(st);
    return rc;
}

int eddy_projection_list(eddy_store *store, eddy_projection_info_fn fn,
                         void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "projection list: store and callback required");
    struct list_job j = {0};
    int rc = eddyi_store_write(store, list_job_run, &j, err);
    for (size_t i = 0; i < j.count; i++) {
        struct proj_row *r = &j.rows[i];
        if (rc == EDDY_OK) {
            eddy_projection_info info = {
                .name = r->name,
                .pattern = r->pattern,
                .mode = r->mode,
                .state = r->state,
                .checkpoint = r->checkpoint,
                .head = j.head,
                .lag = j.head > r->checkpoint ? j.head - r->checkpoint : 0,
                .updated_us = r->updated_us,
            };
            rc = fn(&info, user);
        }
        free(r->name);
        free(r->pattern);
        free(r->mode);
        free(r->state);
    }
    free(j.rows);
    return rc;
}
