/*
 * src/store/state_cqrs.c - the projection registry, saga instances,
 * commands and timeouts, and the events of the open transaction
 * (state_cqrs.h), in SQL that every SQL backend runs (eddy/sql.h's portable
 * subset: $N parameters, ON CONFLICT, no engine functions, no "$n IS NULL":
 * one statement per combination of optional filters instead). The tables
 * are created by each backend's migrations (sqlite_schema.c).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "state_cqrs.h"
#include "store_impl.h"

static const char *text_or_empty(const eddy_row *row, int col)
{
    const char *t = eddy_row_text(row, col);
    return t ? t : "";
}

/* ---- the projection registry ------------------------------------------------ */

int eddyi_proj_record(eddy_txn *txn, const char *name, const char *pattern,
                      const char *mode, const char *state, const char *owner,
                      eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_projections(name, pattern, mode, state, owner, "
        "updated_us) VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT(name) DO "
        "UPDATE SET pattern = excluded.pattern, mode = excluded.mode, "
        "state = excluded.state, owner = excluded.owner, "
        "updated_us = excluded.updated_us",
        "sssssI", name, pattern, mode, state, owner ? owner : "",
        eddy_txn_now_us(txn));
}

int eddyi_proj_heartbeat(eddy_txn *txn, const char *name, const char *owner,
                         eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "UPDATE eddy_projections SET updated_us = $3 "
                          "WHERE name = $1 AND owner = $2",
                          "ssI", name, owner, eddy_txn_now_us(txn));
}

struct proj_walk {
    eddyi_proj_fn fn;
    void *user;
};

static int proj_row(const eddy_row *row, void *user)
{
    struct proj_walk *w = user;
    eddyi_proj_row r = {
        .name = text_or_empty(row, 0),
        .pattern = text_or_empty(row, 1),
        .mode = text_or_empty(row, 2),
        .state = text_or_empty(row, 3),
        .owner = text_or_empty(row, 4),
        .updated_us = eddy_row_int(row, 5),
        .checkpoint = eddy_row_int(row, 6),
    };
    return w->fn(&r, w->user);
}

int eddyi_proj_get(eddy_txn *txn, const char *name, eddyi_proj_fn fn,
                   void *user, eddy_error *err)
{
    struct proj_walk w = {.fn = fn, .user = user};
    return eddyi_sql_query(txn, proj_row, &w, err,
                           "SELECT name, pattern, mode, state, owner, "
                           "updated_us, 0 FROM eddy_projections "
                           "WHERE name = $1",
                           "s", name);
}

int eddyi_proj_list(eddy_store *s, eddyi_proj_fn fn, void *user,
                    eddy_error *err)
{
    struct proj_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, proj_row, &w, err,
                          "SELECT p.name, p.pattern, p.mode, p.state, "
                          "p.owner, p.updated_us, "
                          "COALESCE(c.position, 0) FROM eddy_projections p "
                          "LEFT JOIN eddy_checkpoints c ON c.name = p.name "
                          "ORDER BY p.name",
                          NULL);
}

/* ---- the events of the open transaction ------------------------------------- */

struct loaded_events {
    int64_t *positions;
    eddy_event **events;
    size_t n, cap;
    int rc;
    eddy_error *err;
};

static int event_row(const eddy_row *row, void *user)
{
    struct loaded_events *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        int64_t *p = realloc(l->positions, cap * sizeof *p);
        if (p)
            l->positions = p;
        eddy_event **e = p ? realloc(l->events, cap * sizeof *e) : NULL;
        if (!e)
            return eddyi_error(l->err, EDDY_ENOMEM, "out of memory");
        l->events = e;
        l->cap = cap;
    }
    int64_t position = eddy_row_int(row, 0);
    const char *payload = text_or_empty(row, 1);
    eddy_event *ev = eddy_event_decode(payload, strlen(payload), l->err);
    if (!ev)
        return eddyi_error(l->err, EDDY_EPARSE,
                           "the stored event at position %lld cannot be "
                           "decoded", (long long)position);
    l->positions[l->n] = position;
    l->events[l->n++] = ev;
    return 0;
}

int eddyi_txn_events_after(eddy_txn *txn, int64_t after,
                           eddyi_txn_event_fn fn, void *user, eddy_error *err)
{
    struct loaded_events l = {.err = err};
    /* Loaded first, so `fn` may run statements of its own. */
    int rc = eddyi_sql_query(txn, event_row, &l, err,
                             "SELECT position, payload FROM events "
                             "WHERE position > $1 ORDER BY position",
                             "I", after);
    const eddy_store_options *o = &txn->store->opts;
    size_t i = 0;
    for (; rc == EDDY_OK && i < l.n; i++) {
        eddy_event *ev = l.events[i];
        l.events[i] = NULL;
        if (o->transform) {
            /* As a cursor does: the hook returns a new reference. */
            eddy_error terr = {0};
            eddy_event *t = o->transform(ev, o->transform_user, &terr);
            eddy_event_unref(ev);
            if (!t) {
                rc = terr.code != EDDY_OK ? terr.code : EDDY_EINVAL;
                if (err) {
                    *err = terr;
                    if (terr.code == EDDY_OK)
                        eddyi_error(err, rc, "transform hook failed on the "
                                    "event at position %lld",
                                    (long long)l.positions[i]);
                }
                break;
            }
            ev = t;
        }
        rc = fn(l.positions[i], ev, user);
    }
    for (; i < l.n; i++)
        eddy_event_unref(l.events[i]);
    free(l.positions);
    free(l.events);
    return rc;
}

/* ---- saga instances ---------------------------------------------------------- */

#define SAGA_COLUMNS                                                           \
    "type, id, status, result, state, version, "                               \
    "COALESCE(correlation_id, ''), created_us, updated_us"

struct saga_walk {
    eddyi_saga_fn fn;
    void *user;
};

static int saga_row(const eddy_row *row, void *user)
{
    struct saga_walk *w = user;
    eddyi_saga_row r = {
        .type = text_or_empty(row, 0),
        .id = text_or_empty(row, 1),
        .status = text_or_empty(row, 2),
        .result = text_or_empty(row, 3),
        .state = text_or_empty(row, 4),
        .version = eddy_row_int(row, 5),
        .correlation_id = text_or_empty(row, 6),
        .created_us = eddy_row_int(row, 7),
        .updated_us = eddy_row_int(row, 8),
        .commands_pending = eddy_row_columns(row) > 9 &&
                            eddy_row_int(row, 9) != 0,
    };
    return w->fn(&r, w->user);
}

int eddyi_saga_load(eddy_txn *txn, const char *type, const char *id,
                    eddyi_saga_fn fn, void *user, eddy_error *err)
{
    struct saga_walk w = {.fn = fn, .user = user};
    /* The pending check rides along: one round trip instead of two on a
     * server engine, for every event a saga handles. */
    return eddyi_sql_query(txn, saga_row, &w, err,
                           "SELECT " SAGA_COLUMNS ", EXISTS (SELECT 1 FROM "
                           "eddy_saga_commands c WHERE c.saga_id = $2 AND "
                           "c.saga_type = $1 AND c.state = 'pending') "
                           "FROM eddy_sagas WHERE type = $1 AND id = $2",
                           "ss", type, id);
}

int eddyi_saga_save(eddy_txn *txn, const eddyi_saga_row *r, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_sagas(type, id, status, result, state, version, "
        "correlation_id, created_us, updated_us) "
        "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT(type, id) DO UPDATE SET status = excluded.status, "
        "result = excluded.result, state = excluded.state, "
        "version = excluded.version, updated_us = excluded.updated_us",
        "sssssIsII", r->type, r->id, r->status, r->result ? r->result : "",
        r->state, r->version, r->correlation_id, r->created_us,
        r->updated_us);
}

int eddyi_saga_list(eddy_store *s, const char *type, const char *status,
                    eddyi_saga_fn fn, void *user, eddy_error *err)
{
    struct saga_walk w = {.fn = fn, .user = user};
    if (type && status)
        return eddyi_sql_read(s, saga_row, &w, err,
                              "SELECT " SAGA_COLUMNS " FROM eddy_sagas "
                              "WHERE type = $1 AND (status = $2 OR "
                              "result = $2) ORDER BY created_us, type, id",
                              "ss", type, status);
    if (type)
        return eddyi_sql_read(s, saga_row, &w, err,
                              "SELECT " SAGA_COLUMNS " FROM eddy_sagas "
                              "WHERE type = $1 ORDER BY created_us, type, id",
                              "s", type);
    if (status)
        return eddyi_sql_read(s, saga_row, &w, err,
                              "SELECT " SAGA_COLUMNS " FROM eddy_sagas "
                              "WHERE status = $1 OR result = $1 "
                              "ORDER BY created_us, type, id",
                              "s", status);
    return eddyi_sql_read(s, saga_row, &w, err,
                          "SELECT " SAGA_COLUMNS " FROM eddy_sagas "
                          "ORDER BY created_us, type, id",
                          NULL);
}

int eddyi_saga_find(eddy_store *s, const char *id, eddyi_saga_fn fn,
                    void *user, eddy_error *err)
{
    struct saga_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, saga_row, &w, err,
                          "SELECT " SAGA_COLUMNS " FROM eddy_sagas "
                          "WHERE id = $1 ORDER BY created_us, type, id",
                          "s", id);
}

/* ---- queued saga commands ---------------------------------------------------- */

#define CMD_COLUMNS                                                            \
    "seq, id, saga_type, saga_id, name, data, COALESCE(correlation_id, ''), " \
    "COALESCE(causation_id, ''), state, attempts, last_error, created_us, "   \
    "sent_us"

struct cmd_walk {
    eddyi_saga_cmd_fn fn;
    void *user;
};

static int cmd_row(const eddy_row *row, void *user)
{
    struct cmd_walk *w = user;
    eddyi_saga_cmd_row r = {
        .seq = eddy_row_int(row, 0),
        .id = text_or_empty(row, 1),
        .saga_type = text_or_empty(row, 2),
        .saga_id = text_or_empty(row, 3),
        .name = text_or_empty(row, 4),
        .data = eddy_row_text(row, 5), /* NULL stays NULL: no data */
        .correlation_id = text_or_empty(row, 6),
        .causation_id = text_or_empty(row, 7),
        .state = text_or_empty(row, 8),
        .attempts = (int)eddy_row_int(row, 9),
        .last_error = text_or_empty(row, 10),
        .created_us = eddy_row_int(row, 11),
        .sent_us = eddy_row_int(row, 12),
    };
    return w->fn(&r, w->user);
}

int eddyi_saga_cmd_queue(eddy_txn *txn, const eddyi_saga_cmd_row *r,
                         eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_saga_commands(id, saga_type, saga_id, name, data, "
        "correlation_id, causation_id, state, attempts, last_error, "
        "created_us) "
        "VALUES($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10) "
        "ON CONFLICT(id) DO NOTHING",
        "sssssssisI", r->id, r->saga_type, r->saga_id, r->name, r->data,
        r->correlation_id, r->causation_id, r->attempts,
        r->last_error ? r->last_error : "", r->created_us);
}

int eddyi_saga_cmd_record_sent(eddy_txn *txn, const eddyi_saga_cmd_row *r,
                               eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_saga_commands(id, saga_type, saga_id, name, data, "
        "correlation_id, causation_id, state, attempts, created_us, sent_us) "
        "VALUES($1, $2, $3, $4, $5, $6, $7, 'sent', 1, $8, $8) "
        "ON CONFLICT(id) DO NOTHING",
        "sssssssI", r->id, r->saga_type, r->saga_id, r->name, r->data,
        r->correlation_id, r->causation_id, r->created_us);
}

int eddyi_saga_cmd_pending(eddy_txn *txn, const char *type, size_t max,
                           eddyi_saga_cmd_fn fn, void *user, eddy_error *err)
{
    struct cmd_walk w = {.fn = fn, .user = user};
    return eddyi_sql_query(txn, cmd_row, &w, err,
                           "SELECT " CMD_COLUMNS " FROM eddy_saga_commands "
                           "WHERE saga_type = $1 AND state = 'pending' "
                           "ORDER BY seq LIMIT $2",
                           "sI", type, (int64_t)max);
}

int eddyi_saga_cmd_pending_read(eddy_store *s, const char *type, size_t max,
                                eddyi_saga_cmd_fn fn, void *user,
                                eddy_error *err)
{
    struct cmd_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, cmd_row, &w, err,
                          "SELECT " CMD_COLUMNS " FROM eddy_saga_commands "
                          "WHERE saga_type = $1 AND state = 'pending' "
                          "ORDER BY seq LIMIT $2",
                          "sI", type, (int64_t)max);
}

int eddyi_saga_cmd_sent(eddy_txn *txn, int64_t seq, eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "UPDATE eddy_saga_commands SET state = 'sent', "
                          "attempts = attempts + 1, sent_us = $2 "
                          "WHERE seq = $1",
                          "II", seq, eddy_txn_now_us(txn));
}

int eddyi_saga_cmd_failed(eddy_txn *txn, int64_t seq, const char *error,
                          eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "UPDATE eddy_saga_commands SET attempts = "
                          "attempts + 1, last_error = $2 WHERE seq = $1",
                          "Is", seq, error ? error : "");
}

int eddyi_saga_cmd_list(eddy_store *s, const char *type, const char *id,
                        eddyi_saga_cmd_fn fn, void *user, eddy_error *err)
{
    struct cmd_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, cmd_row, &w, err,
                          "SELECT " CMD_COLUMNS " FROM eddy_saga_commands "
                          "WHERE saga_type = $1 AND saga_id = $2 "
                          "ORDER BY seq",
                          "ss", type, id);
}

/* ---- saga timeouts ------------------------------------------------------------ */

#define TMO_COLUMNS                                                            \
    "saga_type, saga_id, name, deadline_us, fired, "                           \
    "COALESCE(correlation_id, ''), COALESCE(causation_id, '')"

struct tmo_walk {
    eddyi_saga_tmo_fn fn;
    void *user;
};

static int tmo_row(const eddy_row *row, void *user)
{
    struct tmo_walk *w = user;
    eddyi_saga_tmo_row r = {
        .saga_type = text_or_empty(row, 0),
        .saga_id = text_or_empty(row, 1),
        .name = text_or_empty(row, 2),
        .deadline_us = eddy_row_int(row, 3),
        .fired = eddy_row_int(row, 4) != 0,
        .correlation_id = text_or_empty(row, 5),
        .causation_id = text_or_empty(row, 6),
    };
    return w->fn(&r, w->user);
}

int eddyi_saga_tmo_set(eddy_txn *txn, const eddyi_saga_tmo_row *r,
                       eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_saga_timeouts(saga_type, saga_id, name, "
        "deadline_us, fired, correlation_id, causation_id) "
        "VALUES($1, $2, $3, $4, 0, $5, $6) "
        "ON CONFLICT(saga_type, saga_id, name) DO UPDATE SET "
        "deadline_us = excluded.deadline_us, fired = 0, "
        "causation_id = excluded.causation_id",
        "sssIss", r->saga_type, r->saga_id, r->name, r->deadline_us,
        r->correlation_id, r->causation_id);
}

int eddyi_saga_tmo_cancel(eddy_txn *txn, const char *type, const char *id,
                          const char *name, eddy_error *err)
{
    if (!name)
        return eddyi_sql_exec(txn, NULL, err,
                              "DELETE FROM eddy_saga_timeouts WHERE "
                              "saga_type = $1 AND saga_id = $2",
                              "ss", type, id);
    return eddyi_sql_exec(txn, NULL, err,
                          "DELETE FROM eddy_saga_timeouts WHERE "
                          "saga_type = $1 AND saga_id = $2 AND name = $3",
                          "sss", type, id, name);
}

int eddyi_saga_tmo_take(eddy_txn *txn, const char *type, const char *id,
                        const char *name, int64_t deadline_us, bool *current,
                        eddy_error *err)
{
    /* One statement: the row is current exactly when this deletes it. */
    int64_t changes = 0;
    int rc = eddyi_sql_exec(txn, &changes, err,
                            "DELETE FROM eddy_saga_timeouts WHERE "
                            "saga_type = $1 AND saga_id = $2 AND name = $3 "
                            "AND deadline_us = $4",
                            "sssI", type, id, name, deadline_us);
    *current = rc == EDDY_OK && changes > 0;
    return rc;
}

int eddyi_saga_tmo_due(eddy_txn *txn, const char *type, int64_t now_us,
                       size_t max, eddyi_saga_tmo_fn fn, void *user,
                       eddy_error *err)
{
    struct tmo_walk w = {.fn = fn, .user = user};
    return eddyi_sql_query(txn, tmo_row, &w, err,
                           "SELECT " TMO_COLUMNS " FROM eddy_saga_timeouts "
                           "WHERE saga_type = $1 AND fired = 0 AND "
                           "deadline_us <= $2 ORDER BY deadline_us LIMIT $3",
                           "sII", type, now_us, (int64_t)max);
}

int eddyi_saga_tmo_fired(eddy_txn *txn, const char *type, const char *id,
                         const char *name, int64_t deadline_us,
                         eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "UPDATE eddy_saga_timeouts SET fired = 1 WHERE "
                          "saga_type = $1 AND saga_id = $2 AND name = $3 "
                          "AND deadline_us = $4",
                          "sssI", type, id, name, deadline_us);
}

struct next_deadline {
    int64_t deadline;
    bool found;
};

static int next_row(const eddy_row *row, void *user)
{
    struct next_deadline *n = user;
    n->deadline = eddy_row_int(row, 0);
    n->found = true;
    return 0;
}

int eddyi_saga_tmo_next(eddy_txn *txn, const char *type, int64_t *deadline_us,
                        bool *found, eddy_error *err)
{
    struct next_deadline n = {0};
    int rc = eddyi_sql_query(txn, next_row, &n, err,
                             "SELECT deadline_us FROM eddy_saga_timeouts "
                             "WHERE saga_type = $1 AND fired = 0 "
                             "ORDER BY deadline_us LIMIT 1",
                             "s", type);
    *deadline_us = n.deadline;
    *found = n.found;
    return rc;
}

int eddyi_saga_tmo_next_read(eddy_store *s, const char *type,
                             int64_t *deadline_us, bool *found,
                             eddy_error *err)
{
    struct next_deadline n = {0};
    int rc = eddyi_sql_read(s, next_row, &n, err,
                            "SELECT deadline_us FROM eddy_saga_timeouts "
                            "WHERE saga_type = $1 AND fired = 0 "
                            "ORDER BY deadline_us LIMIT 1",
                            "s", type);
    *deadline_us = n.deadline;
    *found = n.found;
    return rc;
}

int eddyi_saga_tmo_list(eddy_store *s, const char *type, const char *id,
                        eddyi_saga_tmo_fn fn, void *user, eddy_error *err)
{
    struct tmo_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, tmo_row, &w, err,
                          "SELECT " TMO_COLUMNS " FROM eddy_saga_timeouts "
                          "WHERE saga_type = $1 AND saga_id = $2 "
                          "ORDER BY deadline_us",
                          "ss", type, id);
}
