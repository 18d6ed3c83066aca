/*
 * src/cqrs/saga_ctx.c - one event of a saga type, and the context API its
 * on_event uses.
 *
 * Thread: the store's writer thread. eddyi_saga_handle_event is the saga's
 * durable subscription handler (TRANSACTIONAL): in the subscription's write
 * transaction it loads the instance, calls on_event with a context that
 * collects what on_event decides (commands, timeouts, the end), then saves
 * the instance, queues the commands and sets or deletes the timeouts
 * through the store's state operations (state_cqrs.h). The checkpoint and
 * inbox row commit with them: a crash neither loses nor repeats a step.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/state_cqrs.h"
#include "../store/store_internal.h"
#include "saga_internal.h"

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

/* ---- the context API (inside on_event) ------------------------------------ */

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

/* ---- handling one event (writer thread) ------------------------------------ */

static bool in_list(const char *const *list, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(list[i], type) == 0)
            return true;
    return false;
}

/* A saga.timeout event: is it this saga type's and still current (not
 * cancelled or moved since)? Fills `id` and `*name` (borrowed from ev). A
 * current timeout is deleted: it fires once. */
static int timeout_current(eddy_txn *txn, const eddy_saga_def *def,
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
    return eddyi_saga_tmo_take(txn, def->name, sid, *name, (int64_t)deadline,
                               current, err);
}

struct instance {
    bool found;
    bool pending; /* a command of the instance is pending */
    char *status;
    json_t *state;
    int64_t version;
    char *correlation_id;
    int64_t created_us;
    eddy_error *err;
};

static void instance_clear(struct instance *in)
{
    free(in->status);
    free(in->correlation_id);
    json_decref(in->state);
    memset(in, 0, sizeof *in);
}

static int instance_row(const eddyi_saga_row *r, void *user)
{
    struct instance *in = user;
    json_error_t je;
    in->found = true;
    in->pending = r->commands_pending;
    in->status = eddyi_strdup(r->status);
    in->correlation_id = eddyi_strdup(r->correlation_id);
    in->version = r->version;
    in->created_us = r->created_us;
    in->state = json_loads(r->state, 0, &je);
    if (!in->state || !json_is_object(in->state))
        return eddyi_error(in->err, EDDY_ECORRUPT,
                           "saga %s %s: stored state is not a JSON object",
                           r->type, r->id);
    if (!in->status || !in->correlation_id)
        return eddyi_error(in->err, EDDY_ENOMEM, "out of memory");
    return 0;
}

/*
 * Runs a command whose handler is transactional at once, in the saga's own
 * transaction (its own savepoint): the saga's state, the command and its
 * effects commit together, with no dispatch and no commit of their own.
 * `*ran` is set when it succeeded (the command is recorded as sent); on
 * failure its writes are rolled back and it is queued for the dispatcher,
 * which retries it with the policy. Returns a store error only.
 */
static int run_now(eddy_txn *txn, eddy_saga *sg, eddyi_saga_cmd_row *c,
                   json_t *data, bool *ran, char *why, size_t whysize,
                   eddy_error *err)
{
    *ran = false;
    eddy_command cmd = {.name = c->name,
                        .id = c->id,
                        .data = data && !json_is_null(data) ? data : NULL,
                        .correlation_id = c->correlation_id,
                        .causation_id = c->causation_id};
    int rc = eddyi_txn_savepoint(txn, err);
    if (rc != EDDY_OK)
        return rc;
    eddy_error cerr = {0};
    rc = eddy_command_send_txn(sg->commands, txn, &cmd, &cerr);
    if (rc == EDDY_OK) {
        /* A failed release rolled the command back: one of its
         * statements failed late (store_internal.h). */
        rc = eddyi_txn_release(txn, &cerr);
        if (rc == EDDY_OK) {
            *ran = true;
            return EDDY_OK;
        }
    } else {
        eddyi_txn_rollback(txn);
    }
    /* It counts as the command's first attempt, with its error. */
    snprintf(why, whysize, "%s: %s", eddy_errname(rc),
             cerr.message[0] ? cerr.message : eddy_strerror(rc));
    c->attempts = 1;
    c->last_error = why;
    EDDYI_LOG(EDDY_LOG_INFO, "saga", "%s %s: command %s %s failed in the "
              "saga's transaction, queued for retry: %s", c->saga_type,
              c->saga_id, c->name, c->id, why);
    return EDDY_OK;
}

/* Writes what on_event decided. */
static int instance_save(eddy_txn *txn, eddy_saga *sg, eddy_saga_ctx *sc,
                         struct instance *in, const eddy_event *ev,
                         bool *queued, eddy_error *err)
{
    const eddy_saga_def *def = sg->def;
    const char *type = def->name;
    char *text = json_dumps(in->state, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga %s %s: state cannot be encoded", type,
                           sc->id);
    eddyi_saga_row row = {.type = type,
                          .id = sc->id,
                          .status = sc->status,
                          .result = sc->result ? sc->result : "",
                          .state = text,
                          .version = in->version + 1,
                          .correlation_id = in->correlation_id,
                          .created_us = in->created_us,
                          .updated_us = sc->now_us};
    int rc = eddyi_saga_save(txn, &row, err);
    free(text);
    /* Transactional commands run now unless an earlier command of this
     * instance is pending (order per instance), then every later one
     * queues behind it. */
    bool behind = in->pending; /* read with the instance (eddyi_saga_load) */
    *queued = false;
    size_t i;
    json_t *cmd;
    json_array_foreach(sc->commands, i, cmd)
    {
        if (rc != EDDY_OK)
            break;
        /* A stable id: the same event queues the same command ids, so a
         * replay queues nothing twice and handlers can deduplicate. */
        char salt[300], cid[37];
        snprintf(salt, sizeof salt, "%s/%zu", type, i);
        eddy_id_derive(eddy_event_id(ev), salt, cid);
        json_t *data = json_object_get(cmd, "data");
        char *dtext = json_is_null(data)
                          ? NULL
                          : json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        eddyi_saga_cmd_row c = {
            .id = cid,
            .saga_type = type,
            .saga_id = sc->id,
            .name = json_string_value(json_object_get(cmd, "name")),
            .data = dtext,
            .correlation_id = in->correlation_id,
            .causation_id = eddy_event_id(ev),
            .created_us = sc->now_us,
        };
        bool ran = false;
        char why[sizeof err->message + 32];
        if (!behind && eddy_command_bus_is_txn(sg->commands, c.name))
            rc = run_now(txn, sg, &c, data, &ran, why, sizeof why, err);
        if (rc == EDDY_OK && ran) {
            rc = eddyi_saga_cmd_record_sent(txn, &c, err);
        } else if (rc == EDDY_OK) {
            behind = true;
            *queued = true;
            rc = eddyi_saga_cmd_queue(txn, &c, err);
        }
        free(dtext);
    }
    for (i = 0; rc == EDDY_OK && i < sc->tmo_count; i++) {
        if (sc->tmo[i].deadline_us < 0) {
            rc = eddyi_saga_tmo_cancel(txn, type, sc->id, sc->tmo[i].name,
                                       err);
        } else {
            eddyi_saga_tmo_row t = {.saga_type = type,
                                    .saga_id = sc->id,
                                    .name = sc->tmo[i].name,
                                    .deadline_us = sc->tmo[i].deadline_us,
                                    .correlation_id = in->correlation_id,
                                    .causation_id = eddy_event_id(ev)};
            rc = eddyi_saga_tmo_set(txn, &t, err);
        }
    }
    if (rc == EDDY_OK && strcmp(sc->status, "running") != 0)
        rc = eddyi_saga_tmo_cancel(txn, type, sc->id, NULL, err);
    return rc;
}

int eddyi_saga_handle_event(eddy_ctx *ctx, const eddy_event *ev,
                            eddy_txn *txn, void *user)
{
    eddy_saga *sg = user;
    const eddy_saga_def *def = sg->def;
    const char *type = eddy_event_type(ev);
    char id[EDDY_SAGA_ID_MAX];
    const char *tname = NULL;
    bool is_start = false;
    eddy_error e = {0};
    int rc;

    if (strcmp(type, EDDY_SAGA_TIMEOUT_TYPE) == 0) {
        bool current = false;
        rc = timeout_current(txn, def, ev, id, sizeof id, &tname, &current,
                             &e);
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

    struct instance in = {.err = &e};
    eddy_saga_ctx sc = {.def = def, .id = id, .timeout_name = tname,
                        .status = "running",
                        .now_us = eddy_now_us()};
    rc = eddyi_saga_load(txn, def->name, id, instance_row, &in, &e);
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
    bool queued = false;
    rc = instance_save(txn, sg, &sc, &in, ev, &queued, &e);
    if (rc == EDDY_OK)
        eddyi_saga_kick(sg, queued, sc.tmo_count > 0);
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
