/*
 * src/cqrs/projection.c - projections: read models applied exactly once.
 *
 * A running projection is four things:
 *   - a catch-up loop, run by eddy_projection_start and _rebuild on the
 *     calling thread: it reads events after the checkpoint with the store's
 *     cursors (eddy_store_query by type for an exact pattern, else
 *     eddy_store_read_all) and applies them `batch` at a time, each batch
 *     in one write job together with the checkpoint (one commit per batch,
 *     not per event);
 *   - a durable subscription in TRANSACTIONAL mode (eddy/durable.h) for the
 *     live events: apply + inbox row per event, in jobs that also move the
 *     checkpoint of the partitions this process holds;
 *   - INLINE only: an append hook (store_internal.h) that applies the
 *     events of every append through this handle inside the append's own
 *     transaction and marks them done in the inbox, so the subscription
 *     skips them;
 *   - a heartbeat thread: every HEARTBEAT_MS it refreshes the registry
 *     row's updated_us, so that a rebuild in another process can tell a
 *     running projection from the row a crashed one left behind.
 * Every path commits the read-model writes with what marks the event as
 * done (checkpoint or inbox row), so no event is applied twice or lost.
 *
 * The catch-up checks the inbox too: an INLINE run may have applied events
 * above the persisted checkpoint before it stopped.
 *
 * SEVERAL PROCESSES run one projection as members of its durable
 * subscription, each applying the partitions it holds (eddy/durable.h).
 * A start's catch-up runs before its member joins and reads every
 * partition, so it writes the inbox row of each event it applies (first:
 * an event another member applied is skipped, and one it applies is
 * skipped by the member holding its partition) and raises every
 * partition's checkpoint with each batch (see catch_up). Order per key
 * holds: an event is applied only after the earlier ones of its key were,
 * by the catch-up or by a member. Across keys there is no order between
 * members (one worker gives store order only to a projection run alone).
 *
 * INLINE ordering: the hook is installed unarmed before the catch-up; a
 * write job ("arm") then applies, inside the writer, the few events that
 * landed after the catch-up's last batch (eddyi_txn_events_after: the log
 * as the write transaction sees it, so nothing can slip in between) and
 * arms the hook in the same transaction, so from then on every event is
 * applied in store order.
 *
 * WHO RUNS IT. Within a process, a name claim per store handle
 * (core/lifecycle.h) keeps a start and a rebuild of one name apart. Across
 * processes, the registry row names its owner ("pid@host") and carries the
 * heartbeat: a rebuild refuses while the row says running (or rebuilding)
 * unless the heartbeat is older than STALE_US or the owner is a process of
 * this host that no longer exists (a crash: SIGKILL leaves the row as it
 * was). A start does not check: restarting right after a crash must work.
 *
 * Threads: start, stop and rebuild run on the caller's thread; `apply`
 * runs on the store's writer thread; one heartbeat thread per running
 * projection. Listing and the definition registry: projection_registry.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/projection.h"

#include "../core/internal.h"
#include "../core/lifecycle.h"
#include "../store/state_cqrs.h"
#include "../store/state_durable.h"
#include "../store/state_leases.h"
#include "../store/store_internal.h"
#include "cqrs_internal.h"

#define DEFAULT_BATCH 500
/* The heartbeat period of a running projection, and the age after which a
 * row that still says "running" is taken for a crashed process's. */
#define HEARTBEAT_MS 2000
#define STALE_US ((int64_t)10 * 1000 * 1000)
#define OWNER_MAX EDDYI_OWNER_MAX

struct eddy_projection {
    eddy_store *store;
    const eddy_projection_def *def;
    const char *pattern;
    eddy_durable *durable;
    eddyi_claim *claim;
    eddyi_stop stop;
    bool hooked;         /* INLINE: the append hook is installed */
    bool armed;          /* INLINE: writer thread only */
    char owner[OWNER_MAX];

    pthread_mutex_t mu;  /* guards hb_stop */
    pthread_cond_t cond;
    bool hb_stop;
    bool hb_started;
    pthread_t heartbeat;
};

/* ---- checks --------------------------------------------------------------- */

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
    eddyi_pattern parsed;
    eddy_error perr = {0};
    int rc = eddyi_pattern_parse(def->pattern ? def->pattern : "*", &parsed,
                                 &perr);
    if (rc != EDDY_OK)
        eddyi_error(err, rc, "projection \"%.200s\": %.400s", def->name,
                    perr.message);
    return rc;
}

static const char *mode_name(eddy_projection_mode m)
{
    return m == EDDY_PROJECTION_INLINE ? "inline" : "async";
}

static const char *pattern_of(const eddy_projection_def *def)
{
    return def->pattern ? def->pattern : "*";
}

/*
 * Whether registry row `r` says another runner is alive. Fills `why`
 * ("pid 42 on db1, last seen 2 s ago"). A row is not alive when it is not
 * running or rebuilding, when it has no owner (an interrupted rebuild),
 * when its heartbeat is older than STALE_US, or when its owner is a process
 * of this host that does not exist any more. A row of this very process is
 * alive: another store handle here runs it (a failed start records
 * 'stopped', a failed rebuild clears its owner). A 'stopped' row keeps the
 * owner that ran it last, for messages; it is never alive.
 */
static bool owner_alive(const eddyi_proj_row *r, int64_t now_us, char *why,
                        size_t size)
{
    if ((strcmp(r->state, "running") != 0 &&
         strcmp(r->state, "rebuilding") != 0) ||
        !r->owner[0])
        return false; /* stopped, or an interrupted rebuild nobody runs */
    int64_t age_us = now_us - r->updated_us;
    if (age_us < 0)
        age_us = 0; /* another host's clock ahead of ours */
    if (age_us >= STALE_US)
        return false;
    long long age_s = (long long)((age_us + 500000) / 1000000);
    if (eddyi_owner_gone(r->owner))
        return false; /* crashed on this host */
    char *end = NULL;
    long pid = strtol(r->owner, &end, 10);
    if (!end || *end != '@' || pid <= 0) {
        snprintf(why, size, "owner %.200s, last seen %lld s ago", r->owner,
                 age_s);
        return true; /* an owner we cannot parse: the heartbeat decides */
    }
    snprintf(why, size, "pid %ld on %s, last seen %lld s ago", pid, end + 1,
             age_s);
    return true;
}

/* ---- write jobs ----------------------------------------------------------- */

struct busy_check {
    int64_t now_us;
    bool busy;
    char state[32];
    char why[OWNER_MAX + 64];
};

static int busy_row(const eddyi_proj_row *r, void *user)
{
    struct busy_check *b = user;
    b->busy = owner_alive(r, b->now_us, b->why, sizeof b->why);
    snprintf(b->state, sizeof b->state, "%s", r->state);
    return 0;
}

struct setup_job {
    const eddy_projection_def *def;
    const char *state;  /* recorded state */
    const char *owner;  /* recorded owner */
    bool reset;         /* rebuild: refuse if running elsewhere, reset and
                           forget progress */
};

static int setup_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct setup_job *j = arg;
    const eddy_projection_def *def = j->def;
    int rc = EDDY_OK;
    if (j->reset) {
        /* In the write transaction: no other process can record itself
         * between this check and the 'rebuilding' row below. */
        struct busy_check b = {.now_us = eddy_txn_now_us(txn)};
        rc = eddyi_proj_get(txn, def->name, busy_row, &b, err);
        if (rc == EDDY_OK && b.busy)
            return eddyi_error(err, EDDY_EBUSY,
                               "projection \"%s\" is %s (%s); stop it first",
                               def->name, b.state, b.why);
    }
    if (rc == EDDY_OK && def->setup)
        rc = def->setup(txn, def->user, err);
    if (rc == EDDY_OK && j->reset) {
        rc = def->reset(txn, def->user, err);
        if (rc == EDDY_OK)
            rc = eddyi_ckpt_reset(txn, def->name, err);
    }
    if (rc == EDDY_OK)
        rc = eddyi_proj_record(txn, def->name, pattern_of(def),
                               mode_name(def->mode), j->state, j->owner, err);
    if (rc == EDDY_OK)
        rc = eddyi_subs_record(txn, def->name, pattern_of(def), "projection",
                               err);
    return rc;
}

struct state_job {
    const eddy_projection_def *def;
    const char *state;
    const char *owner;
};

static int state_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct state_job *j = arg;
    return eddyi_proj_record(txn, j->def->name, pattern_of(j->def),
                             mode_name(j->def->mode), j->state, j->owner,
                             err);
}

/*
 * Applies `ev` unless the inbox says it is done. With `mark`, the inbox
 * row is written first, in one statement that also says whether it was
 * done (eddyi_inbox_take: on PostgreSQL the row's lock orders this with
 * another process applying the same event), and rolls back with the
 * apply. Without it (a rebuild, which runs alone), it is only looked up.
 */
static int apply_once(eddy_txn *txn, const eddy_projection_def *def,
                      const eddy_event *ev, bool mark, eddy_error *err)
{
    bool done = false;
    int rc;
    if (mark) {
        bool fresh = false;
        rc = eddyi_inbox_take(txn, def->name, eddy_event_id(ev), &fresh, err);
        done = !fresh;
    } else {
        rc = eddyi_inbox_is_done(txn, def->name, eddy_event_id(ev), &done,
                                 err);
    }
    if (rc != EDDY_OK || done)
        return rc;
    eddy_error e = {0};
    rc = def->apply(txn, ev, def->user, &e);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "projection \"%s\": event %s (%s): %s",
                           def->name, eddy_event_id(ev), eddy_event_type(ev),
                           e.message[0] ? e.message : eddy_strerror(rc));
    return rc;
}

/* One batch of the catch-up: events (NULL where the pattern does not
 * match) and the last position they cover. */
struct batch_job {
    const eddy_projection_def *def;
    const char *owner; /* rebuild: refresh the heartbeat too */
    bool shared;       /* a start: other members may run (see catch_up) */
    eddy_event **events;
    size_t count;
    int64_t last;
};

static int batch_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct batch_job *j = arg;
    int rc = EDDY_OK;
    /* First (on PostgreSQL, the partition rows' locks are then always
     * taken before inbox rows, as a member's fence does): every event up
     * to `last` is applied once this commits, whoever holds its partition,
     * so every partition's checkpoint may pass it. */
    if (j->shared)
        rc = eddyi_leases_raise(txn, j->def->name, j->last, err);
    for (size_t i = 0; rc == EDDY_OK && i < j->count; i++)
        if (j->events[i])
            rc = apply_once(txn, j->def, j->events[i], j->shared, err);
    if (rc == EDDY_OK)
        rc = eddyi_ckpt_save(txn, j->def->name, j->last, err);
    if (rc == EDDY_OK && j->owner)
        rc = eddyi_proj_heartbeat(txn, j->def->name, j->owner, err);
    return rc;
}

/* Opens a cursor on the events after `after`: by type for an exact
 * pattern (the store's type index skips the others), else the whole log. */
static int open_cursor(eddy_store *store, const char *pattern, bool exact,
                       int64_t after, size_t batch, eddy_cursor **c,
                       eddy_error *err)
{
    if (!exact)
        return eddy_store_read_all(store, after + 1, batch, c, err);
    eddy_query q = {.types = &pattern, .type_count = 1,
                    .min_position = after + 1, .limit = batch};
    return eddy_store_query(store, &q, c, err);
}

struct positions {
    int64_t *at;
    size_t n, cap;
};

static int position_row(int64_t position, void *user)
{
    struct positions *p = user;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        int64_t *n = realloc(p->at, cap * sizeof *n);
        if (!n)
            return EDDY_ENOMEM;
        p->at = n;
        p->cap = cap;
    }
    p->at[p->n++] = position;
    return 0;
}

static bool positions_has(const struct positions *p, int64_t position)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->at[mid] < position)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n && p->at[lo] == position;
}

/*
 * Applies every event after `*position` up to the head, in batches; moves
 * `*position` (to the head when the last events did not match). `owner`
 * (rebuild; may be NULL) is refreshed with each batch.
 *
 * `shared` (a start): other processes may run this projection meanwhile,
 * each delivering the partitions it holds (eddy/durable.h). The catch-up
 * reads every partition, so each event is applied under its inbox row
 * (written first: whoever applies an event first, the others skip it),
 * every partition's checkpoint is raised with each batch, and the events
 * dead-lettered above `*position` stay so (as for the subscription). Per
 * key, an event is applied only after the ones before it were, by this
 * catch-up or by a member: order holds. A rebuild runs alone (it refuses
 * while the projection runs) and writes no inbox rows.
 *
 * Returns EDDY_OK, an apply error (the failing batch is rolled back;
 * `*position` stays before it) or a store error.
 */
static int catch_up(eddy_store *store, const eddy_projection_def *def,
                    const char *owner, bool shared, size_t batch,
                    int64_t *position, eddy_projection_progress_fn progress,
                    void *user, eddy_error *err)
{
    const char *pattern = pattern_of(def);
    eddyi_pattern parsed;
    if (eddyi_pattern_parse(pattern, &parsed, err) != EDDY_OK)
        return EDDY_EINVAL;
    bool exact = parsed.kind == EDDYI_PATTERN_EXACT;
    struct positions dead = {0};
    if (shared) {
        int drc = eddyi_dl_positions(store, def->name, *position,
                                     position_row, &dead, err);
        if (drc != EDDY_OK) {
            free(dead.at);
            return drc == EDDY_ENOMEM
                       ? eddyi_error(err, drc, "out of memory")
                       : drc;
        }
    }
    eddy_event **evs = calloc(batch, sizeof *evs);
    if (!evs) {
        free(dead.at);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    int64_t total = 0;
    int rc = eddy_store_head(store, &total, err);
    while (rc == EDDY_OK) {
        /* Read before the cursor: a short page then covers every event up
         * to this head, matching or not. */
        int64_t head = 0;
        eddy_cursor *c = NULL;
        rc = eddy_store_head(store, &head, err);
        if (rc == EDDY_OK)
            rc = open_cursor(store, pattern, exact, *position, batch, &c,
                             err);
        if (rc != EDDY_OK)
            break;
        struct batch_job j = {.def = def, .owner = owner, .shared = shared,
                              .events = evs, .last = *position};
        eddy_record rec;
        while (eddy_cursor_next(c, &rec, err)) {
            evs[j.count++] =
                eddyi_pattern_match(&parsed, pattern,
                                    eddy_event_type(rec.event)) &&
                        !positions_has(&dead, rec.position)
                    ? eddy_event_ref(rec.event)
                    : NULL;
            j.last = rec.position;
        }
        rc = eddy_cursor_error(c);
        eddy_cursor_free(c);
        if (rc == EDDY_OK && j.count < batch && head > j.last)
            j.last = head;
        if (rc == EDDY_OK && j.last > *position)
            rc = eddyi_store_write(store, batch_job_run, &j, err);
        for (size_t i = 0; i < j.count; i++) {
            eddy_event_unref(evs[i]);
            evs[i] = NULL;
        }
        if (rc != EDDY_OK || j.last == *position)
            break; /* an error, or at the head */
        *position = j.last;
        if (*position > total)
            total = *position;
        if (progress)
            progress(*position, total, user);
    }
    free(evs);
    free(dead.at);
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
    int rc = EDDY_OK;
    for (size_t i = 0; rc == EDDY_OK && i < count; i++)
        if (eddyi_pattern_match_text(p->pattern, eddy_event_type(events[i])))
            rc = apply_once(txn, p->def, events[i], true, err);
    return rc;
}

struct arm_job {
    eddy_projection *p;
    eddy_txn *txn;
    eddy_error *err;
    int64_t checkpoint;
    int64_t last;
};

static int arm_event(int64_t position, eddy_event *ev, void *user)
{
    struct arm_job *j = user;
    int rc = EDDY_OK;
    j->last = position;
    if (eddyi_pattern_match_text(j->p->pattern, eddy_event_type(ev)))
        rc = apply_once(j->txn, j->p->def, ev, true, j->err);
    eddy_event_unref(ev);
    return rc;
}

/* Applies the events committed after the catch-up and arms the hook, in
 * one transaction (marking them in the inbox and raising the partitions'
 * checkpoints past them, as a shared catch-up batch does). */
static int arm_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct arm_job *j = arg;
    j->txn = txn;
    j->err = err;
    j->last = j->checkpoint;
    int rc = eddyi_txn_events_after(txn, j->checkpoint, arm_event, j, err);
    if (rc == EDDY_OK && j->last > j->checkpoint)
        rc = eddyi_leases_raise(txn, j->p->def->name, j->last, err);
    if (rc == EDDY_OK && j->last > j->checkpoint)
        rc = eddyi_ckpt_save(txn, j->p->def->name, j->last, err);
    if (rc == EDDY_OK)
        j->p->armed = true; /* writer thread: the hook reads it there */
    return rc;
}

/* ---- the heartbeat ---------------------------------------------------------- */

struct heartbeat_job {
    const char *name, *owner;
};

static int heartbeat_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct heartbeat_job *j = arg;
    return eddyi_proj_heartbeat(txn, j->name, j->owner, err);
}

static void *heartbeat_main(void *arg)
{
    eddyi_thread_name("eddy-proj-beat");
    eddy_projection *p = arg;
    struct heartbeat_job j = {.name = p->def->name, .owner = p->owner};
    pthread_mutex_lock(&p->mu);
    while (!p->hb_stop) {
        eddyi_cqrs_wait_ms(&p->cond, &p->mu, HEARTBEAT_MS);
        if (p->hb_stop)
            break;
        pthread_mutex_unlock(&p->mu);
        eddy_error e = {0};
        if (eddyi_store_write(p->store, heartbeat_job_run, &j, &e) !=
            EDDY_OK)
            EDDYI_LOG(EDDY_LOG_WARN, "projection", "%s: heartbeat: %s",
                      p->def->name, e.message);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void heartbeat_stop(eddy_projection *p)
{
    if (!p->hb_started)
        return;
    pthread_mutex_lock(&p->mu);
    p->hb_stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->heartbeat, NULL);
    p->hb_started = false;
}

/* ---- start and stop ----------------------------------------------------------- */

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

/* 'stopped', keeping this process as the owner: who last ran it, for a
 * tool that cannot rebuild it (`eddy projections rebuild` names it). */
static void record_stopped(eddy_projection *p)
{
    struct state_job sj = {.def = p->def, .state = "stopped",
                           .owner = p->owner};
    eddy_error e = {0};
    if (eddyi_store_write(p->store, state_job_run, &sj, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "projection", "%s: recording the stop: %s",
                  p->def->name, e.message);
}

static void projection_destroy(eddy_projection *p)
{
    eddyi_stop_destroy(&p->stop);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

eddy_projection *eddy_projection_start(eddy_store *store,
                                       const eddy_projection_def *def,
                                       eddy_error *err)
{
    bool recorded = false;
    if (!store) {
        eddyi_error(err, EDDY_EINVAL, "projection: store is NULL");
        return NULL;
    }
    if (check_def(def, false, err) != EDDY_OK)
        return NULL;
    eddy_projection *p = calloc(1, sizeof *p);
    if (!p) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        eddyi_error(err, EDDY_ENOMEM, "projection: cannot create a mutex");
        return NULL;
    }
    if (eddyi_cqrs_cond_init(&p->cond) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        eddyi_error(err, EDDY_ENOMEM, "projection: cannot create a condition");
        return NULL;
    }
    eddyi_stop_init(&p->stop);
    p->store = store;
    p->def = def;
    p->pattern = pattern_of(def);
    eddyi_owner_self(p->owner, sizeof p->owner);
    if (eddyi_claim_take(store, "projection", def->name, &p->claim, err) !=
        EDDY_OK)
        goto fail;

    struct setup_job sj = {.def = def, .state = "running", .owner = p->owner};
    if (eddyi_store_write(store, setup_job_run, &sj, err) != EDDY_OK)
        goto fail;
    recorded = true;
    int64_t position = 0;
    bool found = false;
    if (eddyi_ckpt_load(store, def->name, &position, &found, err) != EDDY_OK)
        goto fail;
    if (pthread_create(&p->heartbeat, NULL, heartbeat_main, p) != 0) {
        eddyi_error(err, EDDY_ENOMEM, "projection \"%s\": cannot start its "
                    "heartbeat thread", def->name);
        goto fail;
    }
    p->hb_started = true;
    if (def->mode == EDDY_PROJECTION_INLINE) {
        if (eddyi_store_add_append_hook(store, inline_hook, p, err) != EDDY_OK)
            goto fail;
        p->hooked = true;
    }
    eddy_error e = {0};
    if (catch_up(store, def, NULL, true,
                 def->batch ? def->batch : DEFAULT_BATCH, &position, NULL,
                 NULL, &e) != EDDY_OK) {
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
        .patterns = (const char *const[]){p->pattern}, .pattern_count = 1,
        .mode = EDDY_DELIVERY_TRANSACTIONAL,
        .txn_handler = durable_apply,
        .user = p,
        .workers = def->workers ? def->workers : 1,
        .partitions = def->partitions,
        .lease_ms = def->lease_ms,
    };
    p->durable = eddy_durable_start(store, &o, err);
    if (!p->durable)
        goto fail;
    return p;
fail:
    heartbeat_stop(p);
    if (p->hooked)
        eddyi_store_remove_append_hook(store, inline_hook, p);
    if (recorded)
        record_stopped(p);
    eddyi_claim_release(p->claim);
    projection_destroy(p);
    return NULL;
}

int eddy_projection_stop(eddy_projection *p, eddy_error *err)
{
    if (!p)
        return EDDY_OK;
    if (eddyi_stop_begin(&p->stop)) {
        if (p->hooked) {
            eddyi_store_remove_append_hook(p->store, inline_hook, p);
            p->hooked = false;
        }
        eddy_error e = {0};
        int rc = eddy_durable_stop(p->durable, &e);
        heartbeat_stop(p);
        record_stopped(p);
        eddyi_claim_release(p->claim);
        p->claim = NULL;
        eddyi_stop_end(&p->stop, rc, &e);
    }
    return eddyi_stop_wait(&p->stop, err);
}

void eddy_projection_free(eddy_projection *p)
{
    if (!p)
        return;
    eddy_projection_stop(p, NULL);
    eddy_durable_free(p->durable);
    projection_destroy(p);
}

int eddy_projection_wait_idle(eddy_projection *p, int64_t position,
                              int timeout_ms)
{
    if (!p || !p->durable || eddyi_stop_requested(&p->stop))
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
    /* The claim keeps a start of this name on this handle out meanwhile. */
    eddyi_claim *claim = NULL;
    rc = eddyi_claim_take(store, "projection", def->name, &claim, err);
    if (rc == EDDY_EEXIST)
        return eddyi_error(err, EDDY_EBUSY,
                           "projection \"%s\" is running on this store "
                           "handle; stop it first", def->name);
    if (rc != EDDY_OK)
        return rc;
    char owner[OWNER_MAX];
    eddyi_owner_self(owner, sizeof owner);
    struct setup_job sj = {.def = def, .state = "rebuilding", .owner = owner,
                           .reset = true};
    rc = eddyi_store_write(store, setup_job_run, &sj, err);
    bool sj_done = rc == EDDY_OK;
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
        rc = catch_up(store, def, owner, false, batch, &position, progress,
                      user, err);
    }
    if (sj_done) {
        /* Done: 'stopped', by this process. Failed: still 'rebuilding'
         * (the read model is incomplete until a start or a rebuild finishes
         * it), but owned by nobody, so that the next rebuild is not
         * refused. */
        struct state_job st = {.def = def,
                               .state = rc == EDDY_OK ? "stopped"
                                                      : "rebuilding",
                               .owner = rc == EDDY_OK ? owner : NULL};
        eddy_error e = {0};
        int r2 = eddyi_store_write(store, state_job_run, &st, &e);
        if (r2 != EDDY_OK && rc == EDDY_OK) {
            rc = r2;
            if (err)
                *err = e;
        }
    }
    eddyi_claim_release(claim);
    return rc;
}
