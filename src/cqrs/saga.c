/*
 * src/cqrs/saga.c - durable sagas: state, commands and deadlines committed
 * with the checkpoint.
 *
 * Threads of one running saga type:
 *   - its durable subscription (TRANSACTIONAL, one worker: store order):
 *     handle_event runs on the store's writer thread and, in one
 *     transaction, loads the instance, calls on_event, saves the instance,
 *     inserts the queued commands and sets / deletes timeouts;
 *   - the dispatcher: reads a page of 'pending' commands and sends them
 *     through the command bus in parallel lanes (instances hashed to lanes,
 *     so each instance's commands go one after another, in seq order); a
 *     failure blocks that instance with exponential backoff, others go on;
 *     the page's outcomes are recorded in one commit, successes as 'sent'
 *     (after the send: at-least-once);
 *   - the timer: in one write job, appends a saga.timeout event for every
 *     due deadline and flags the row fired; the event reaches the saga like
 *     any other, which deletes the row when it handles it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy/durable.h"
#include "eddy/saga.h"
#include "eddy/sqlite.h"

#include "../core/internal.h"
#include "../observe/observe_internal.h"
#include "../reliability/reliability_internal.h"
#include "cqrs_internal.h"

#define DEFAULT_TIMER_POLL_MS 1000
#define DEFAULT_RETRY_INITIAL_MS 100
#define DEFAULT_RETRY_MAX_MS 30000
#define DISPATCH_POLL_MS 200
#define DISPATCH_PAGE 256
#define DISPATCH_MAX_LANES 16
#define MESSAGE_MAX 400

/* A timeout change queued by on_event. */
struct tmo_op {
    char *name;
    int64_t deadline_us; /* < 0: cancel */
};

struct eddy_saga_ctx {
    const eddy_saga_def *def;
    const char *id;
    bool is_new;
    const char *timeout_name;
    json_t *commands;     /* array of {name, data} */
    struct tmo_op *tmo;
    size_t tmo_count;
    const char *status;   /* "running", "completed", "failed" */
    char *result;
    char message[MESSAGE_MAX];
    int64_t now_us;
};

struct backoff {
    char *saga_id;
    int64_t next_at_us;
    unsigned attempts;
};

struct eddy_saga {
    eddy_store *store;
    const eddy_saga_def *def;
    eddy_command_bus *commands;
    eddy_saga_options opts;
    char *pattern; /* recorded for the graph: the types, comma-separated */
    eddy_durable *durable;

    pthread_mutex_t mu;
    pthread_cond_t cond;       /* dispatcher / timer wake-ups, idle waits */
    bool stop;
    bool dispatch_kick;        /* commands were queued */
    bool timer_kick;           /* a deadline was set */
    uint64_t pass_gen;         /* dispatcher passes started */
    uint64_t idle_gen;         /* last pass that found nothing pending */
    pthread_t dispatcher, timer;
    bool dispatcher_started, timer_started;
    bool stopped;
    struct backoff *backoffs;  /* dispatcher thread only */
    size_t backoff_count;
    struct eddy_saga *next;    /* the running list */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct eddy_saga *g_running;

/* ---- inside on_event -------------------------------------------------- */

const char *eddy_saga_id(const eddy_saga_ctx *sc) { return sc ? sc->id : NULL; }

bool eddy_saga_is_new(const eddy_saga_ctx *sc) { return sc && sc->is_new; }

const char *eddy_saga_timeout_name(const eddy_saga_ctx *sc)
{
    return sc ? sc->timeout_name : NULL;
}

int eddy_saga_send_json(eddy_saga_ctx *sc, const char *name,
                        const json_t *data)
{
    if (!sc || !name || !*name)
        return eddyi_error(NULL, EDDY_EINVAL, "saga send: no name");
    json_t *copy = data ? json_deep_copy(data) : json_null();
    json_t *o = json_pack("{s:s, s:o}", "name", name, "data", copy);
    if (!o || json_array_append_new(sc->commands, o) != 0)
        return EDDY_ENOMEM;
    return EDDY_OK;
}

int eddy_saga_send(eddy_saga_ctx *sc, const char *name, const char *fmt, ...)
{
    if (!sc || !name || !*name)
        return EDDY_EINVAL;
    json_t *data = NULL;
    if (fmt) {
        json_error_t je;
        va_list ap;
        va_start(ap, fmt);
        data = json_vpack_ex(&je, 0, fmt, ap);
        va_end(ap);
        if (!data) {
            snprintf(sc->message, sizeof sc->message,
                     "command %s: bad data: %s", name, je.text);
            return EDDY_EINVAL;
        }
    }
    int rc = eddy_saga_send_json(sc, name, data);
    json_decref(data);
    return rc;
}

static int tmo_push(eddy_saga_ctx *sc, const char *name, int64_t deadline)
{
    if (!sc || !name || !*name)
        return EDDY_EINVAL;
    struct tmo_op *n = realloc(sc->tmo, (sc->tmo_count + 1) * sizeof *n);
    if (!n)
        return EDDY_ENOMEM;
    sc->tmo = n;
    n[sc->tmo_count].name = eddyi_strdup(name);
    if (!n[sc->tmo_count].name)
        return EDDY_ENOMEM;
    n[sc->tmo_count++].deadline_us = deadline;
    return EDDY_OK;
}

int eddy_saga_set_timeout(eddy_saga_ctx *sc, const char *name,
                          int64_t delay_ms)
{
    if (!sc || delay_ms < 0)
        return EDDY_EINVAL;
    return tmo_push(sc, name, sc->now_us + delay_ms * 1000);
}

int eddy_saga_cancel_timeout(eddy_saga_ctx *sc, const char *name)
{
    return tmo_push(sc, name, -1);
}

static int finish(eddy_saga_ctx *sc, const char *status, const char *result)
{
    if (!sc)
        return EDDY_EINVAL;
    char *r = eddyi_strdup(result ? result : "");
    if (!r)
        return EDDY_ENOMEM;
    free(sc->result);
    sc->result = r;
    sc->status = status;
    return EDDY_OK;
}

int eddy_saga_complete(eddy_saga_ctx *sc, const char *result)
{
    return finish(sc, "completed", result);
}

int eddy_saga_fail(eddy_saga_ctx *sc, const char *result)
{
    return finish(sc, "failed", result);
}

int eddy_saga_ctx_fail(eddy_saga_ctx *sc, int code, const char *fmt, ...)
{
    if (sc && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sc->message, sizeof sc->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- handling one event (writer thread) ------------------------------- */

static bool in_list(const char *const *list, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(list[i], type) == 0)
            return true;
    return false;
}

/* A saga.timeout event of this saga type: is it still current? Fills
 * `id`, `name`. */
static int timeout_current(sqlite3 *db, const eddy_saga_def *def,
                           const eddy_event *ev, char *id, size_t idsz,
                           const char **name, bool *current, eddy_error *err)
{
    const char *saga = NULL, *sid = NULL;
    json_int_t deadline = 0;
    *current = false;
    if (eddy_event_unpack(ev, NULL, "{s:s, s:s, s:s, s:I}", "saga", &saga,
                          "id", &sid, "timeout", name, "deadline_us",
                          &deadline) != EDDY_OK ||
        strcmp(saga, def->name) != 0)
        return EDDY_OK; /* another saga type's, or not ours */
    snprintf(id, idsz, "%s", sid);
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT 1 FROM eddy_saga_timeouts WHERE "
                               "saga_type = ?1 AND saga_id = ?2 AND name = ?3 "
                               "AND deadline_us = ?4",
                               "ttti", def->name, sid, *name,
                               (int64_t)deadline);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    *current = s == SQLITE_ROW;
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading a saga timeout", err);
    sqlite3_finalize(st);
    if (rc == EDDY_OK && *current)
        rc = eddyi_rel_exec(db, NULL, err,
                            "DELETE FROM eddy_saga_timeouts WHERE saga_type = "
                            "?1 AND saga_id = ?2 AND name = ?3",
                            "ttt", def->name, sid, *name);
    return rc;
}

struct instance {
    bool found;
    char *status;
    json_t *state;
    int64_t version;
    char *correlation_id;
    int64_t created_us;
};

static void instance_clear(struct instance *in)
{
    free(in->status);
    free(in->correlation_id);
    json_decref(in->state);
    memset(in, 0, sizeof *in);
}

static int instance_load(sqlite3 *db, const char *type, const char *id,
                         struct instance *in, eddy_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT status, state, version, correlation_id,"
                               " created_us FROM eddy_sagas WHERE type = ?1 "
                               "AND id = ?2",
                               "tt", type, id);
    if (rc != EDDY_OK)
        return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        in->found = true;
        in->status = eddyi_rel_column_text(st, 0);
        json_error_t je;
        const char *text = (const char *)sqlite3_column_text(st, 1);
        in->state = json_loads(text ? text : "{}", 0, &je);
        in->version = sqlite3_column_int64(st, 2);
        in->correlation_id = eddyi_rel_column_text(st, 3);
        in->created_us = sqlite3_column_int64(st, 4);
        if (!in->state || !json_is_object(in->state))
            rc = eddyi_error(err, EDDY_ECORRUPT,
                             "saga %s %s: stored state is not a JSON object",
                             type, id);
        else if (!in->status || !in->correlation_id)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    } else if (s != SQLITE_DONE) {
        rc = eddyi_rel_sqlerr(db, "loading a saga", err);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Writes what on_event decided. */
static int instance_save(sqlite3 *db, eddy_saga *sg, eddy_saga_ctx *sc,
                         struct instance *in, const eddy_event *ev,
                         int64_t now, eddy_error *err)
{
    const char *type = sg->def->name;
    char *text = json_dumps(in->state, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga %s %s: state cannot be encoded", type,
                           sc->id);
    int rc = eddyi_rel_exec(
        db, NULL, err,
        "INSERT INTO eddy_sagas(type, id, status, result, state, version, "
        "correlation_id, created_us, updated_us) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) "
        "ON CONFLICT(type, id) DO UPDATE SET status = excluded.status, "
        "result = excluded.result, state = excluded.state, "
        "version = excluded.version, updated_us = excluded.updated_us",
        "tttttiti", type, sc->id, sc->status, sc->result ? sc->result : "",
        text, in->version + 1, in->correlation_id, now);
    free(text);
    size_t i;
    json_t *cmd;
    json_array_foreach(sc->commands, i, cmd)
    {
        if (rc != EDDY_OK)
            break;
        char salt[300], cid[37];
        snprintf(salt, sizeof salt, "%s/%zu", type, i);
        eddy_id_derive(eddy_event_id(ev), salt, cid);
        json_t *data = json_object_get(cmd, "data");
        char *dtext = json_is_null(data)
                          ? NULL
                          : json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        rc = eddyi_rel_exec(
            db, NULL, err,
            "INSERT INTO eddy_saga_commands(id, saga_type, saga_id, name, "
            "data, correlation_id, causation_id, state, created_us) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8) "
            "ON CONFLICT(id) DO NOTHING",
            "ttttttti", cid, type, sc->id,
            json_string_value(json_object_get(cmd, "name")), dtext,
            in->correlation_id, eddy_event_id(ev), now);
        free(dtext);
    }
    for (i = 0; rc == EDDY_OK && i < sc->tmo_count; i++) {
        if (sc->tmo[i].deadline_us < 0)
            rc = eddyi_rel_exec(db, NULL, err,
                                "DELETE FROM eddy_saga_timeouts WHERE "
                                "saga_type = ?1 AND saga_id = ?2 AND name = ?3",
                                "ttt", type, sc->id, sc->tmo[i].name);
        else
            rc = eddyi_rel_exec(
                db, NULL, err,
                "INSERT INTO eddy_saga_timeouts(saga_type, saga_id, name, "
                "deadline_us, fired, correlation_id, causation_id) "
                "VALUES(?1, ?2, ?3, ?4, 0, ?5, ?6) "
                "ON CONFLICT(saga_type, saga_id, name) DO UPDATE SET "
                "deadline_us = excluded.deadline_us, fired = 0, "
                "causation_id = excluded.causation_id",
                "tttitt", type, sc->id, sc->tmo[i].name, sc->tmo[i].deadline_us,
                in->correlation_id, eddy_event_id(ev));
    }
    if (rc == EDDY_OK && strcmp(sc->status, "running") != 0)
        rc = eddyi_rel_exec(db, NULL, err,
                            "DELETE FROM eddy_saga_timeouts WHERE saga_type = "
                            "?1 AND saga_id = ?2",
                            "tt", type, sc->id);
    return rc;
}

static void kick(eddy_saga *sg, bool dispatch, bool timer)
{
    pthread_mutex_lock(&sg->mu);
    sg->dispatch_kick |= dispatch;
    sg->timer_kick |= timer;
    pthread_cond_broadcast(&sg->cond);
    pthread_mutex_unlock(&sg->mu);
}

static int handle_event(eddy_ctx *ctx, const eddy_event *ev, eddy_txn *txn,
                        void *user)
{
    eddy_saga *sg = user;
    const eddy_saga_def *def = sg->def;
    const char *type = eddy_event_type(ev);
    sqlite3 *db = eddy_txn_sqlite(txn);
    char id[EDDY_SAGA_ID_MAX];
    const char *tname = NULL;
    bool is_start = false;
    eddy_error e = {0};
    int rc;

    if (strcmp(type, EDDY_SAGA_TIMEOUT_TYPE) == 0) {
        bool current = false;
        rc = timeout_current(db, def, ev, id, sizeof id, &tname, &current, &e);
        if (rc != EDDY_OK)
            return eddy_ctx_fail(ctx, rc, "%s", e.message);
        if (!current)
            return EDDY_OK; /* cancelled, moved, or another saga's */
    } else {
        is_start = in_list(def->start_types, def->start_count, type);
        if (!is_start &&
            !in_list(def->handled_types, def->handled_count, type))
            return EDDY_OK;
        id[0] = '\0';
        rc = def->correlate(ev, id, sizeof id, def->user);
        if (rc == EDDY_ENOTFOUND)
            return EDDY_OK;
        if (rc != EDDY_OK)
            return eddy_ctx_fail(ctx, rc, "%s: cannot correlate %s %s",
                                 def->name, type, eddy_event_id(ev));
        if (!id[0] || !eddyi_utf8_valid(id, strlen(id)))
            return eddy_ctx_fail(ctx, EDDY_EINVAL,
                                 "%s: correlate gave an empty or invalid id "
                                 "for %s", def->name, eddy_event_id(ev));
    }

    struct instance in = {0};
    eddy_saga_ctx sc = {.def = def, .id = id, .timeout_name = tname,
                        .status = "running",
                        .now_us = eddy_now_us()};
    rc = instance_load(db, def->name, id, &in, &e);
    if (rc != EDDY_OK)
        goto done;
    if (in.found && strcmp(in.status, "running") != 0)
        goto done; /* finished: later events skip it */
    if (!in.found) {
        if (!is_start)
            goto done;
        const char *corr = eddy_event_correlation_id(ev);
        in.correlation_id = eddyi_strdup(corr ? corr : eddy_event_id(ev));
        in.state = json_object();
        in.created_us = sc.now_us;
        sc.is_new = true;
        if (!in.correlation_id || !in.state) {
            rc = eddyi_error(&e, EDDY_ENOMEM, "out of memory");
            goto done;
        }
    }
    sc.commands = json_array();
    if (!sc.commands) {
        rc = eddyi_error(&e, EDDY_ENOMEM, "out of memory");
        goto done;
    }
    rc = def->on_event(&sc, in.state, ev, def->user);
    if (rc != EDDY_OK) {
        eddyi_error(&e, rc, "%s %s: on_event(%s): %s", def->name, id, type,
                    sc.message[0] ? sc.message : eddy_strerror(rc));
        goto done;
    }
    rc = instance_save(db, sg, &sc, &in, ev, sc.now_us, &e);
    if (rc == EDDY_OK)
        kick(sg, json_array_size(sc.commands) > 0, sc.tmo_count > 0);
done:
    instance_clear(&in);
    json_decref(sc.commands);
    for (size_t i = 0; i < sc.tmo_count; i++)
        free(sc.tmo[i].name);
    free(sc.tmo);
    free(sc.result);
    if (rc != EDDY_OK)
        return eddy_ctx_fail(ctx, rc, "%s", e.message);
    return EDDY_OK;
}

/* ---- the dispatcher ---------------------------------------------------- */

struct pending_cmd {
    int64_t seq;
    char *id, *saga_id, *name, *data, *correlation_id, *causation_id;
    int attempts;
    int outcome;   /* this pass: 0 not sent, 1 sent, 2 failed */
    char *error;   /* outcome 2: the handler's message */
};

struct fetch_job {
    const char *type;
    struct pending_cmd *rows;
    size_t count;
};

static void pending_clear(struct pending_cmd *p)
{
    free(p->id);
    free(p->saga_id);
    free(p->name);
    free(p->data);
    free(p->correlation_id);
    free(p->causation_id);
    free(p->error);
}

static int fetch_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct fetch_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT seq, id, saga_id, name, data, "
                               "correlation_id, causation_id, attempts FROM "
                               "eddy_saga_commands WHERE saga_type = ?1 AND "
                               "state = 'pending' ORDER BY seq LIMIT ?2",
                               "tn", j->type, DISPATCH_PAGE);
    if (rc != EDDY_OK)
        return rc;
    j->rows = calloc(DISPATCH_PAGE, sizeof *j->rows);
    if (!j->rows) {
        sqlite3_finalize(st);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && j->count < DISPATCH_PAGE) {
        struct pending_cmd *p = &j->rows[j->count++];
        p->seq = sqlite3_column_int64(st, 0);
        p->id = eddyi_rel_column_text(st, 1);
        p->saga_id = eddyi_rel_column_text(st, 2);
        p->name = eddyi_rel_column_text(st, 3);
        p->data = sqlite3_column_type(st, 4) == SQLITE_NULL
                      ? NULL
                      : eddyi_rel_column_text(st, 4);
        p->correlation_id = eddyi_rel_column_text(st, 5);
        p->causation_id = eddyi_rel_column_text(st, 6);
        p->attempts = sqlite3_column_int(st, 7);
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "reading saga commands", err);
    sqlite3_finalize(st);
    return rc;
}

/* Records the outcomes of one pass in one transaction (a commit per pass,
 * not per command). */
struct mark_job {
    struct pending_cmd *rows;
    size_t count;
};

static int mark_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct mark_job *j = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    for (size_t i = 0; rc == EDDY_OK && i < j->count; i++) {
        const struct pending_cmd *p = &j->rows[i];
        if (p->outcome == 1)
            rc = eddyi_rel_exec(db, NULL, err,
                                "UPDATE eddy_saga_commands SET state = "
                                "'sent', attempts = attempts + 1, sent_us = "
                                "?2 WHERE seq = ?1",
                                "ii", p->seq, eddy_txn_now_us(txn));
        else if (p->outcome == 2)
            rc = eddyi_rel_exec(db, NULL, err,
                                "UPDATE eddy_saga_commands SET attempts = "
                                "attempts + 1, last_error = ?2 WHERE seq = ?1",
                                "it", p->seq, p->error ? p->error : "");
    }
    return rc;
}

static struct backoff *backoff_find(eddy_saga *sg, const char *saga_id)
{
    for (size_t i = 0; i < sg->backoff_count; i++)
        if (strcmp(sg->backoffs[i].saga_id, saga_id) == 0)
            return &sg->backoffs[i];
    return NULL;
}

static void backoff_clear(eddy_saga *sg, const char *saga_id)
{
    struct backoff *b = backoff_find(sg, saga_id);
    if (!b)
        return;
    free(b->saga_id);
    *b = sg->backoffs[--sg->backoff_count];
}

/* Sets or extends the backoff of `saga_id`; returns its due time. */
static int64_t backoff_fail(eddy_saga *sg, const char *saga_id, int64_t now)
{
    struct backoff *b = backoff_find(sg, saga_id);
    if (!b) {
        struct backoff *n = realloc(sg->backoffs,
                                    (sg->backoff_count + 1) * sizeof *n);
        char *copy = eddyi_strdup(saga_id);
        if (!n || !copy) {
            free(copy);
            if (n)
                sg->backoffs = n;
            return now + (int64_t)sg->opts.retry_max_ms * 1000;
        }
        sg->backoffs = n;
        b = &n[sg->backoff_count++];
        b->saga_id = copy;
        b->attempts = 0;
    }
    b->attempts++;
    double d = sg->opts.retry_initial_ms;
    for (unsigned i = 1; i < b->attempts && d < sg->opts.retry_max_ms; i++)
        d *= 2;
    if (d > sg->opts.retry_max_ms)
        d = sg->opts.retry_max_ms;
    b->next_at_us = now + (int64_t)(d * 1000);
    return b->next_at_us;
}

/* One pass: sends what is due. Returns the number still pending and sets
 * `*next_due_us` to the earliest backoff due time (0: none). */
/*
 * One lane of a dispatch pass: the commands of the instances that hash to
 * it, in `seq` order. Lanes run in parallel (a command handler typically
 * waits for a durable commit, so sending one command at a time would make
 * the whole saga type wait on one fsync after another); an instance's
 * commands all fall in one lane, so they are still sent in order.
 */
struct lane {
    eddy_saga *sg;
    struct pending_cmd *rows;
    size_t *idx;     /* indexes into rows, ascending */
    size_t n;
    size_t left;     /* out: commands left pending */
    int64_t next_due_us; /* out: the earliest backoff to wait for (0: none) */
};

static void lane_send(struct lane *l)
{
    eddy_saga *sg = l->sg;
    /* Instances blocked in this pass (a failure or a backoff): their later
     * commands wait, in order. */
    char **blocked = calloc(l->n + 1, sizeof *blocked);
    size_t nblocked = 0;
    for (size_t x = 0; x < l->n; x++) {
        struct pending_cmd *p = &l->rows[l->idx[x]];
        bool skip = false;
        for (size_t k = 0; k < nblocked && !skip; k++)
            skip = strcmp(blocked[k], p->saga_id) == 0;
        int64_t now = eddy_now_us();
        pthread_mutex_lock(&sg->mu); /* backoffs are shared by the lanes */
        struct backoff *b = backoff_find(sg, p->saga_id);
        int64_t next_at = b ? b->next_at_us : 0;
        bool stop = sg->stop;
        pthread_mutex_unlock(&sg->mu);
        if (!skip && next_at > now) {
            skip = true;
            if (!l->next_due_us || next_at < l->next_due_us)
                l->next_due_us = next_at;
        }
        if (skip || stop || !blocked) {
            l->left++;
            bool listed = false;
            for (size_t k = 0; k < nblocked && !listed; k++)
                listed = strcmp(blocked[k], p->saga_id) == 0;
            if (blocked && !listed)
                blocked[nblocked++] = p->saga_id;
            continue;
        }
        json_error_t je;
        json_t *data = p->data ? json_loads(p->data, JSON_DECODE_ANY, &je)
                               : NULL;
        eddy_command cmd = {.name = p->name,
                            .id = p->id,
                            .data = data,
                            .correlation_id = p->correlation_id,
                            .causation_id = p->causation_id};
        eddy_error ce = {0};
        int rc = eddy_command_send(sg->commands, &cmd, &ce);
        json_decref(data);
        if (rc != EDDY_OK) {
            pthread_mutex_lock(&sg->mu);
            int64_t due = backoff_fail(sg, p->saga_id, eddy_now_us());
            pthread_mutex_unlock(&sg->mu);
            if (!l->next_due_us || due < l->next_due_us)
                l->next_due_us = due;
            EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s %s: command %s (%s) "
                      "failed, attempt %d: %s", sg->def->name, p->saga_id,
                      p->name, p->id, p->attempts + 1,
                      ce.message[0] ? ce.message : eddy_strerror(rc));
            p->outcome = 2;
            p->error = eddyi_strdup(ce.message[0] ? ce.message
                                                  : eddy_strerror(rc));
            blocked[nblocked++] = p->saga_id;
            l->left++;
        } else {
            p->outcome = 1;
            pthread_mutex_lock(&sg->mu);
            backoff_clear(sg, p->saga_id);
            pthread_mutex_unlock(&sg->mu);
        }
    }
    free(blocked);
}

/* The lane of a saga instance: FNV-1a of its id. */
static unsigned lane_of(const char *saga_id, unsigned nlanes)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)saga_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % nlanes;
}

static void *lane_main(void *arg)
{
    lane_send(arg);
    return NULL;
}

static size_t dispatch_pass(eddy_saga *sg, int64_t *next_due_us)
{
    struct fetch_job j = {.type = sg->def->name};
    eddy_error e = {0};
    size_t left = 0;
    *next_due_us = 0;
    if (eddyi_store_write(sg->store, fetch_job_run, &j, &e) != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: reading commands: %s",
                  sg->def->name, e.message);
        left = 1;
        goto done;
    }
    unsigned nlanes = sg->opts.dispatchers ? sg->opts.dispatchers : 4;
    if (nlanes > DISPATCH_MAX_LANES)
        nlanes = DISPATCH_MAX_LANES;
    size_t *idx = calloc(j.count + 1, sizeof *idx);
    if (!idx) {
        /* Nothing was sent: the whole page is tried again next pass. */
        left = j.count + 1;
        goto done;
    }
    /* A counting sort of the page's rows into lanes, keeping seq order. */
    size_t start[DISPATCH_MAX_LANES + 1] = {0}, fill[DISPATCH_MAX_LANES];
    for (size_t i = 0; i < j.count; i++)
        start[lane_of(j.rows[i].saga_id, nlanes) + 1]++;
    for (unsigned l = 0; l < nlanes; l++)
        start[l + 1] += start[l];
    memcpy(fill, start, sizeof fill);
    for (size_t i = 0; i < j.count; i++)
        idx[fill[lane_of(j.rows[i].saga_id, nlanes)]++] = i;
    struct lane lanes[DISPATCH_MAX_LANES];
    pthread_t threads[DISPATCH_MAX_LANES];
    bool started[DISPATCH_MAX_LANES] = {false};
    for (unsigned l = 0; l < nlanes; l++) {
        lanes[l] = (struct lane){.sg = sg, .rows = j.rows, .idx = idx + start[l],
                                 .n = start[l + 1] - start[l]};
        if (l > 0 && lanes[l].n)
            started[l] = pthread_create(&threads[l], NULL, lane_main, &lanes[l]) == 0;
    }
    /* Lane 0 runs on this thread, and so does any lane whose thread could
     * not be started. */
    for (unsigned l = 0; l < nlanes; l++)
        if (lanes[l].n && !started[l])
            lane_send(&lanes[l]);
    for (unsigned l = 0; l < nlanes; l++) {
        if (started[l])
            pthread_join(threads[l], NULL);
        left += lanes[l].left;
        if (lanes[l].next_due_us &&
            (!*next_due_us || lanes[l].next_due_us < *next_due_us))
            *next_due_us = lanes[l].next_due_us;
    }
    free(idx);
    struct mark_job mj = {.rows = j.rows, .count = j.count};
    if (j.count && eddyi_store_write(sg->store, mark_job_run, &mj, &e) !=
                       EDDY_OK) {
        /* The sent ones will be sent again: at-least-once. */
        EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: recording sent commands: %s",
                  sg->def->name, e.message);
        left++;
    }
    if (j.count == DISPATCH_PAGE)
        left++; /* maybe more */
done:
    for (size_t i = 0; i < j.count; i++)
        pending_clear(&j.rows[i]);
    free(j.rows);
    return left;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *dispatcher_main(void *arg)
{
    eddy_saga *sg = arg;
    for (;;) {
        pthread_mutex_lock(&sg->mu);
        if (sg->stop) {
            pthread_mutex_unlock(&sg->mu);
            break;
        }
        sg->dispatch_kick = false;
        uint64_t gen = ++sg->pass_gen;
        pthread_mutex_unlock(&sg->mu);

        int64_t next_due = 0;
        size_t left = dispatch_pass(sg, &next_due);

        pthread_mutex_lock(&sg->mu);
        if (left == 0) {
            sg->idle_gen = gen;
            pthread_cond_broadcast(&sg->cond);
        }
        int64_t wait_ms = DISPATCH_POLL_MS;
        if (next_due) {
            int64_t d = (next_due - eddy_now_us()) / 1000 + 1;
            if (d < wait_ms)
                wait_ms = d < 1 ? 1 : d;
        }
        if (!sg->dispatch_kick && !sg->stop) {
            struct timespec ts;
            deadline_in(&ts, wait_ms);
            pthread_cond_timedwait(&sg->cond, &sg->mu, &ts);
        }
        pthread_mutex_unlock(&sg->mu);
    }
    return NULL;
}

/* ---- the timer --------------------------------------------------------- */

struct fire_job {
    eddy_saga *sg;
    int64_t now_us;
    int64_t next_us; /* out: the earliest unfired deadline after now */
    size_t fired;
};

static int fire_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct fire_job *j = arg;
    const eddy_saga_def *def = j->sg->def;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(db, &st, err,
                               "SELECT saga_id, name, deadline_us, "
                               "correlation_id, causation_id FROM "
                               "eddy_saga_timeouts WHERE saga_type = ?1 AND "
                               "fired = 0 ORDER BY deadline_us",
                               "t", def->name);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t deadline = sqlite3_column_int64(st, 2);
        if (deadline > j->now_us) {
            j->next_us = deadline;
            break;
        }
        const char *sid = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *corr = (const char *)sqlite3_column_text(st, 3);
        const char *cause = (const char *)sqlite3_column_text(st, 4);
        char base[EDDY_SAGA_ID_MAX + 300], salt[300], evid[37];
        snprintf(base, sizeof base, "%s/%s", def->name, sid);
        snprintf(salt, sizeof salt, "%s/%" PRId64, name, deadline);
        eddy_id_derive(base, salt, evid);
        json_t *data = json_pack("{s:s, s:s, s:s, s:I}", "saga", def->name,
                                 "id", sid, "timeout", name, "deadline_us",
                                 (json_int_t)deadline);
        eddy_event_init init = {.type = EDDY_SAGA_TIMEOUT_TYPE,
                                .source = def->name,
                                .id = evid,
                                .subject = sid,
                                .data = data,
                                .correlation_id = corr,
                                .causation_id = cause};
        eddy_event *ev = data ? eddy_event_new(&init, err) : NULL;
        json_decref(data);
        if (!ev) {
            rc = err && err->code ? err->code : EDDY_ENOMEM;
            break;
        }
        rc = eddy_txn_append(txn, sid, EDDY_EXPECT_ANY, &ev, 1, NULL, err);
        eddy_event_unref(ev);
        if (rc == EDDY_OK)
            rc = eddyi_rel_exec(db, NULL, err,
                                "UPDATE eddy_saga_timeouts SET fired = 1 "
                                "WHERE saga_type = ?1 AND saga_id = ?2 AND "
                                "name = ?3 AND deadline_us = ?4",
                                "ttti", def->name, sid, name, deadline);
        j->fired++;
    }
    sqlite3_finalize(st);
    return rc;
}

static void *timer_main(void *arg)
{
    eddy_saga *sg = arg;
    for (;;) {
        pthread_mutex_lock(&sg->mu);
        bool stop = sg->stop;
        sg->timer_kick = false;
        pthread_mutex_unlock(&sg->mu);
        if (stop)
            break;
        struct fire_job j = {.sg = sg, .now_us = eddy_now_us()};
        eddy_error e = {0};
        if (eddyi_store_write(sg->store, fire_job_run, &j, &e) != EDDY_OK)
            EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: firing timeouts: %s",
                      sg->def->name, e.message);
        int64_t wait_ms = sg->opts.timer_poll_ms;
        if (j.next_us) {
            int64_t d = (j.next_us - eddy_now_us()) / 1000 + 1;
            if (d < wait_ms)
                wait_ms = d < 1 ? 1 : d;
        }
        pthread_mutex_lock(&sg->mu);
        if (!sg->timer_kick && !sg->stop) {
            struct timespec ts;
            deadline_in(&ts, wait_ms);
            pthread_cond_timedwait(&sg->cond, &sg->mu, &ts);
        }
        pthread_mutex_unlock(&sg->mu);
    }
    return NULL;
}

/* ---- start / stop ------------------------------------------------------- */

static int schema_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    eddy_saga *sg = arg;
    sqlite3 *db;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_subscription_record_db(db, sg->def->name, sg->pattern,
                                          "saga", eddy_txn_now_us(txn), err);
    return rc;
}

static int check_def(const eddy_saga_def *def, eddy_error *err)
{
    if (!def || !def->name || !*def->name)
        return eddyi_error(err, EDDY_EINVAL, "saga: name is required");
    if (!def->start_types || def->start_count == 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga %s: start_types is required", def->name);
    if (def->handled_count && !def->handled_types)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga %s: handled_types is NULL", def->name);
    if (!def->correlate)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga %s: correlate is required", def->name);
    if (!def->on_event)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga %s: on_event is required", def->name);
    for (size_t i = 0; i < def->start_count + def->handled_count; i++) {
        const char *t = i < def->start_count
                            ? def->start_types[i]
                            : def->handled_types[i - def->start_count];
        if (!t || !*t || strchr(t, ','))
            return eddyi_error(err, EDDY_EINVAL,
                               "saga %s: event type %zu is empty or has a "
                               "comma", def->name, i);
    }
    return EDDY_OK;
}

/* The types joined with commas (the pattern recorded for `eddy graph`). */
static char *join_types(const eddy_saga_def *def)
{
    size_t len = strlen(EDDY_SAGA_TIMEOUT_TYPE) + 1;
    for (size_t i = 0; i < def->start_count; i++)
        len += strlen(def->start_types[i]) + 1;
    for (size_t i = 0; i < def->handled_count; i++)
        len += strlen(def->handled_types[i]) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    size_t off = 0;
    for (size_t i = 0; i < def->start_count + def->handled_count; i++) {
        const char *t = i < def->start_count
                            ? def->start_types[i]
                            : def->handled_types[i - def->start_count];
        off += (size_t)snprintf(out + off, len - off, "%s,", t);
    }
    snprintf(out + off, len - off, "%s", EDDY_SAGA_TIMEOUT_TYPE);
    return out;
}

static void unlist(eddy_saga *sg)
{
    pthread_mutex_lock(&g_mu);
    for (eddy_saga **pp = &g_running; *pp; pp = &(*pp)->next) {
        if (*pp == sg) {
            *pp = sg->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

eddy_saga *eddy_saga_start(eddy_store *store, const eddy_saga_def *def,
                           eddy_command_bus *commands,
                           const eddy_saga_options *opts, eddy_error *err)
{
    if (!store || !commands) {
        eddyi_error(err, EDDY_EINVAL, "saga: store and command bus required");
        return NULL;
    }
    if (check_def(def, err) != EDDY_OK)
        return NULL;
    eddy_saga *sg = calloc(1, sizeof *sg);
    if (!sg) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    bool sync_ok = false, listed = false;
    sg->store = store;
    sg->def = def;
    sg->commands = commands;
    if (opts)
        sg->opts = *opts;
    if (!sg->opts.timer_poll_ms)
        sg->opts.timer_poll_ms = DEFAULT_TIMER_POLL_MS;
    if (!sg->opts.retry_initial_ms)
        sg->opts.retry_initial_ms = DEFAULT_RETRY_INITIAL_MS;
    if (!sg->opts.retry_max_ms)
        sg->opts.retry_max_ms = DEFAULT_RETRY_MAX_MS;
    sg->pattern = join_types(def);
    if (!sg->pattern) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto fail;
    }
    if (pthread_mutex_init(&sg->mu, NULL) != 0) {
        eddyi_error(err, EDDY_ENOMEM, "cannot create a mutex");
        goto fail;
    }
    if (pthread_cond_init(&sg->cond, NULL) != 0) {
        pthread_mutex_destroy(&sg->mu);
        eddyi_error(err, EDDY_ENOMEM, "cannot create a condition");
        goto fail;
    }
    sync_ok = true;
    pthread_mutex_lock(&g_mu);
    for (eddy_saga *q = g_running; q; q = q->next) {
        if (q->store == store && strcmp(q->def->name, def->name) == 0) {
            pthread_mutex_unlock(&g_mu);
            eddyi_error(err, EDDY_EEXIST,
                        "saga %s already runs on this store handle",
                        def->name);
            goto fail;
        }
    }
    sg->next = g_running;
    g_running = sg;
    listed = true;
    pthread_mutex_unlock(&g_mu);

    if (eddyi_store_write(store, schema_job_run, sg, err) != EDDY_OK)
        goto fail;
    /* Only the saga's own types reach it: every other event is skipped by
     * the subscription without a write job or an inbox row. */
    size_t ntypes = def->start_count + def->handled_count + 1;
    const char **types = calloc(ntypes, sizeof *types);
    if (!types) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory starting saga %s", def->name);
        goto fail;
    }
    for (size_t i = 0; i < def->start_count; i++)
        types[i] = def->start_types[i];
    for (size_t i = 0; i < def->handled_count; i++)
        types[def->start_count + i] = def->handled_types[i];
    types[ntypes - 1] = EDDY_SAGA_TIMEOUT_TYPE;
    eddy_durable_options o = {
        .name = def->name,
        .pattern = "*",
        .types = types,
        .type_count = ntypes,
        .mode = EDDY_DELIVERY_TRANSACTIONAL,
        .txn_handler = handle_event,
        .user = sg,
        .workers = sg->opts.workers ? sg->opts.workers : 1,
        .retry = {.max_attempts = sg->opts.event_max_attempts},
    };
    sg->durable = eddy_durable_start(store, &o, err);
    free(types); /* copied by the subscription */
    if (!sg->durable)
        goto fail;
    if (pthread_create(&sg->dispatcher, NULL, dispatcher_main, sg) != 0) {
        eddyi_error(err, EDDY_ENOMEM, "cannot start the saga dispatcher");
        goto fail;
    }
    sg->dispatcher_started = true;
    if (pthread_create(&sg->timer, NULL, timer_main, sg) != 0) {
        eddyi_error(err, EDDY_ENOMEM, "cannot start the saga timer");
        goto fail;
    }
    sg->timer_started = true;
    return sg;
fail:
    if (sync_ok) {
        pthread_mutex_lock(&sg->mu);
        sg->stop = true;
        pthread_cond_broadcast(&sg->cond);
        pthread_mutex_unlock(&sg->mu);
    }
    if (sg->dispatcher_started)
        pthread_join(sg->dispatcher, NULL);
    eddy_durable_free(sg->durable);
    if (listed)
        unlist(sg);
    if (sync_ok) {
        pthread_cond_destroy(&sg->cond);
        pthread_mutex_destroy(&sg->mu);
    }
    free(sg->pattern);
    free(sg);
    return NULL;
}

int eddy_saga_stop(eddy_saga *sg, eddy_error *err)
{
    if (!sg || sg->stopped)
        return EDDY_OK;
    sg->stopped = true;
    int rc = eddy_durable_stop(sg->durable, err);
    pthread_mutex_lock(&sg->mu);
    sg->stop = true;
    pthread_cond_broadcast(&sg->cond);
    pthread_mutex_unlock(&sg->mu);
    if (sg->dispatcher_started)
        pthread_join(sg->dispatcher, NULL);
    if (sg->timer_started)
        pthread_join(sg->timer, NULL);
    sg->dispatcher_started = sg->timer_started = false;
    unlist(sg);
    return rc;
}

void eddy_saga_free(eddy_saga *sg)
{
    if (!sg)
        return;
    eddy_saga_stop(sg, NULL);
    eddy_durable_free(sg->durable);
    for (size_t i = 0; i < sg->backoff_count; i++)
        free(sg->backoffs[i].saga_id);
    free(sg->backoffs);
    pthread_cond_destroy(&sg->cond);
    pthread_mutex_destroy(&sg->mu);
    free(sg->pattern);
    free(sg);
}

int eddy_saga_wait_idle(eddy_saga *sg, int64_t position, int timeout_ms)
{
    if (!sg || sg->stopped)
        return EDDY_ESTOPPED;
    int64_t t0 = eddy_now_us();
    int rc = eddy_durable_wait_idle(sg->durable, position, timeout_ms);
    if (rc != EDDY_OK)
        return rc;
    pthread_mutex_lock(&sg->mu);
    uint64_t gen = sg->pass_gen; /* a pass starting after now must be idle */
    sg->dispatch_kick = true;
    pthread_cond_broadcast(&sg->cond);
    while (sg->idle_gen <= gen && !sg->stop) {
        struct timespec ts;
        int64_t left_ms = timeout_ms < 0
                              ? 100
                              : timeout_ms - (eddy_now_us() - t0) / 1000;
        if (left_ms <= 0) {
            rc = EDDY_ETIMEDOUT;
            break;
        }
        deadline_in(&ts, left_ms < 100 ? left_ms : 100);
        pthread_cond_timedwait(&sg->cond, &sg->mu, &ts);
    }
    if (rc == EDDY_OK && sg->stop)
        rc = EDDY_ESTOPPED;
    pthread_mutex_unlock(&sg->mu);
    return rc;
}

/* ---- queries ------------------------------------------------------------ */

struct info_row {
    char *type, *id, *status, *result, *corr;
    json_t *state, *commands, *timeouts;
    int64_t version, created_us, updated_us;
};

struct query_job {
    const char *type, *status, *id; /* filters */
    bool details;
    struct info_row *rows;
    size_t count;
};

static json_t *rows_as_json(sqlite3 *db, const char *sql, const char *type,
                            const char *id, eddy_error *err, int *rc)
{
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    *rc = eddyi_rel_prepare(db, &st, err, sql, "tt", type, id);
    if (*rc != EDDY_OK || !arr) {
        json_decref(arr);
        return NULL;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = json_object();
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *name = sqlite3_column_name(st, c);
            json_t *v;
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                v = json_integer(sqlite3_column_int64(st, c));
                break;
            case SQLITE_NULL:
                v = json_null();
                break;
            default: {
                const char *t = (const char *)sqlite3_column_text(st, c);
                v = NULL;
                if (strcmp(name, "data") == 0) {
                    json_error_t je;
                    v = json_loads(t, JSON_DECODE_ANY, &je);
                }
                if (!v)
                    v = json_string(t ? t : "");
            }
            }
            json_object_set_new(o, name, v);
        }
        json_array_append_new(arr, o);
    }
    if (s != SQLITE_DONE)
        *rc = eddyi_rel_sqlerr(db, "reading saga details", err);
    sqlite3_finalize(st);
    return arr;
}

static int query_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct query_job *j = arg;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = eddyi_rel_db(txn, &db, err);
    if (rc == EDDY_OK)
        rc = eddyi_rel_prepare(
            db, &st, err,
            "SELECT type, id, status, result, state, version, "
            "coalesce(correlation_id, ''), created_us, updated_us "
            "FROM eddy_sagas WHERE (?1 IS NULL OR type = ?1) AND "
            "(?2 IS NULL OR status = ?2 OR result = ?2) AND "
            "(?3 IS NULL OR id = ?3) ORDER BY created_us, type, id",
            "ttt", j->type, j->status, j->id);
    if (rc != EDDY_OK)
        return rc;
    int s;
    while (rc == EDDY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        struct info_row *n = realloc(j->rows, (j->count + 1) * sizeof *n);
        if (!n) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        j->rows = n;
        struct info_row *r = &n[j->count++];
        memset(r, 0, sizeof *r);
        r->type = eddyi_rel_column_text(st, 0);
        r->id = eddyi_rel_column_text(st, 1);
        r->status = eddyi_rel_column_text(st, 2);
        r->result = eddyi_rel_column_text(st, 3);
        json_error_t je;
        const char *state = (const char *)sqlite3_column_text(st, 4);
        r->state = json_loads(state ? state : "{}", 0, &je);
        r->version = sqlite3_column_int64(st, 5);
        r->corr = eddyi_rel_column_text(st, 6);
        r->created_us = sqlite3_column_int64(st, 7);
        r->updated_us = sqlite3_column_int64(st, 8);
        if (!r->type || !r->id || !r->status || !r->result || !r->corr)
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        if (rc == EDDY_OK && j->details) {
            r->commands = rows_as_json(
                db,
                "SELECT id, name, data, state, attempts, last_error, "
                "causation_id, created_us, sent_us FROM eddy_saga_commands "
                "WHERE saga_type = ?1 AND saga_id = ?2 ORDER BY seq",
                r->type, r->id, err, &rc);
            if (rc == EDDY_OK)
                r->timeouts = rows_as_json(
                    db,
                    "SELECT name, deadline_us, fired FROM eddy_saga_timeouts "
                    "WHERE saga_type = ?1 AND saga_id = ?2 ORDER BY "
                    "deadline_us",
                    r->type, r->id, err, &rc);
        }
    }
    if (rc == EDDY_OK && s != SQLITE_DONE)
        rc = eddyi_rel_sqlerr(db, "listing sagas", err);
    sqlite3_finalize(st);
    return rc;
}

static int run_query(eddy_store *store, struct query_job *j,
                     eddy_saga_info_fn fn, void *user, eddy_error *err)
{
    int rc = eddyi_store_write(store, query_job_run, j, err);
    for (size_t i = 0; i < j->count; i++) {
        struct info_row *r = &j->rows[i];
        if (rc == EDDY_OK) {
            eddy_saga_info info = {.type = r->type,
                                   .id = r->id,
                                   .status = r->status,
                                   .result = r->result,
                                   .correlation_id = r->corr,
                                   .state = r->state,
                                   .version = r->version,
                                   .created_us = r->created_us,
                                   .updated_us = r->updated_us,
                                   .commands = r->commands,
                                   .timeouts = r->timeouts};
            rc = fn(&info, user);
        }
        free(r->type);
        free(r->id);
        free(r->status);
        free(r->result);
        free(r->corr);
        json_decref(r->state);
        json_decref(r->commands);
        json_decref(r->timeouts);
    }
    free(j->rows);
    return rc;
}

int eddy_saga_list(eddy_store *store, const char *type, const char *status,
                   eddy_saga_info_fn fn, void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga list: store and callback required");
    struct query_job j = {.type = type, .status = status};
    return run_query(store, &j, fn, user, err);
}

int eddy_saga_get(eddy_store *store, const char *id, eddy_saga_info_fn fn,
                  void *user, eddy_error *err)
{
    if (!store || !fn || !id || !*id)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga get: store, id and callback required");
    struct query_job j = {.id = id, .details = true};
    int rc = run_query(store, &j, fn, user, err);
    if (rc == EDDY_OK && j.count == 0)
        return eddyi_error(err, EDDY_ENOTFOUND, "no saga with id %s", id);
    return rc;
}
