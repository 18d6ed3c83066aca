/*
 * src/store/state_durable.c - checkpoints, inbox, retry state, dead letters
 * and the subscription registry (state_durable.h), in SQL that every SQL
 * backend runs (eddy/sql.h's portable subset: $N parameters, ON CONFLICT,
 * RETURNING, CASE instead of engine functions). The tables are created by
 * each backend's migrations (sqlite_schema.c).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "state_durable.h"
#include "state_leases.h"
#include "store_internal.h"

/* ---- checkpoints ---------------------------------------------------------- */

int eddyi_ckpt_save(eddy_txn *txn, const char *name, int64_t position,
                    eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_checkpoints(name, position, updated_us) "
        "VALUES($1, $2, $3) ON CONFLICT(name) DO UPDATE SET "
        "position = CASE WHEN excluded.position > eddy_checkpoints.position "
        "THEN excluded.position ELSE eddy_checkpoints.position END, "
        "updated_us = excluded.updated_us",
        "sII", name, position, eddy_txn_now_us(txn));
}

struct first_int {
    int64_t value;
    bool found;
};

static int first_int_row(const eddy_row *row, void *user)
{
    struct first_int *f = user;
    f->value = eddy_row_int(row, 0);
    f->found = true;
    return 0;
}

int eddyi_ckpt_load(eddy_store *s, const char *name, int64_t *position,
                    bool *found, eddy_error *err)
{
    struct first_int f = {0};
    int rc = eddyi_sql_read(s, first_int_row, &f, err,
                            "SELECT position FROM eddy_checkpoints "
                            "WHERE name = $1",
                            "s", name);
    *position = f.value;
    *found = f.found;
    return rc;
}

int eddyi_ckpt_reset(eddy_txn *txn, const char *name, eddy_error *err)
{
    int rc = eddyi_sql_exec(txn, NULL, err,
                            "DELETE FROM eddy_checkpoints WHERE name = $1",
                            "s", name);
    if (rc == EDDY_OK)
        rc = eddyi_sql_exec(txn, NULL, err,
                            "DELETE FROM eddy_inbox WHERE handler = $1", "s",
                            name);
    if (rc == EDDY_OK)
        rc = eddyi_sql_exec(txn, NULL, err,
                            "DELETE FROM eddy_retries WHERE subscription = $1",
                            "s", name);
    if (rc == EDDY_OK)
        rc = eddyi_sql_exec(txn, NULL, err,
                            "DELETE FROM eddy_dead_letters "
                            "WHERE subscription = $1",
                            "s", name);
    if (rc == EDDY_OK)
        rc = eddyi_leases_forget(txn, name, err);
    return rc;
}

/* ---- inbox ---------------------------------------------------------------- */

static int state_is_done(const eddy_row *row, void *user)
{
    const char *state = eddy_row_text(row, 0);
    *(bool *)user = state && strcmp(state, "done") == 0;
    return 0;
}

int eddyi_inbox_claim(eddy_txn *txn, const char *handler, const char *event_id,
                      bool *done, eddy_error *err)
{
    *done = false;
    /* The no-op update makes RETURNING report an existing row too. */
    return eddyi_sql_query(
        txn, state_is_done, done, err,
        "INSERT INTO eddy_inbox(handler, event_id, state, updated_us) "
        "VALUES($1, $2, 'claimed', $3) ON CONFLICT(handler, event_id) "
        "DO UPDATE SET updated_us = eddy_inbox.updated_us RETURNING state",
        "ssI", handler, event_id, eddy_txn_now_us(txn));
}

int eddyi_inbox_is_done(eddy_txn *txn, const char *handler,
                        const char *event_id, bool *done, eddy_error *err)
{
    *done = false;
    return eddyi_sql_query(txn, state_is_done, done, err,
                           "SELECT state FROM eddy_inbox WHERE handler = $1 "
                           "AND event_id = $2",
                           "ss", handler, event_id);
}

int eddyi_inbox_take(eddy_txn *txn, const char *handler, const char *event_id,
                     bool *fresh, eddy_error *err)
{
    int64_t changes = 0;
    int rc = eddyi_sql_exec(
        txn, &changes, err,
        "INSERT INTO eddy_inbox(handler, event_id, state, updated_us) "
        "VALUES($1, $2, 'done', $3) ON CONFLICT(handler, event_id) "
        "DO UPDATE SET state = 'done', updated_us = excluded.updated_us "
        "WHERE eddy_inbox.state <> 'done'",
        "ssI", handler, event_id, eddy_txn_now_us(txn));
    *fresh = changes > 0;
    return rc;
}

int eddyi_inbox_done(eddy_txn *txn, const char *handler, const char *event_id,
                     eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_inbox(handler, event_id, state, updated_us) "
        "VALUES($1, $2, 'done', $3) ON CONFLICT(handler, event_id) "
        "DO UPDATE SET state = 'done', updated_us = excluded.updated_us",
        "ssI", handler, event_id, eddy_txn_now_us(txn));
}

/* ---- retries -------------------------------------------------------------- */

int eddyi_retry_save(eddy_txn *txn, const char *subscription,
                     const eddyi_retry_row *r, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_retries(subscription, position, event_id, attempts, "
        "first_failure_us, last_failure_us, next_at_us, error_code, "
        "last_error) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT(subscription, position) DO UPDATE SET "
        "attempts = excluded.attempts, last_failure_us = "
        "excluded.last_failure_us, next_at_us = excluded.next_at_us, "
        "error_code = excluded.error_code, last_error = excluded.last_error",
        "sIsiIIIis", subscription, r->position, r->event_id, r->attempts,
        r->first_failure_us, r->last_failure_us, r->next_at_us, r->error_code,
        r->error ? r->error : "");
}

int eddyi_retry_delete(eddy_txn *txn, const char *subscription,
                       int64_t position, eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "DELETE FROM eddy_retries WHERE subscription = $1 "
                          "AND position = $2",
                          "sI", subscription, position);
}

int eddyi_retry_prune(eddy_txn *txn, const char *subscription, int64_t upto,
                      eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "DELETE FROM eddy_retries WHERE subscription = $1 "
                          "AND position <= $2",
                          "sI", subscription, upto);
}

struct retry_walk {
    eddyi_retry_fn fn;
    void *user;
};

static int retry_row(const eddy_row *row, void *user)
{
    struct retry_walk *w = user;
    eddyi_retry_row r = {
        .position = eddy_row_int(row, 0),
        .event_id = eddy_row_text(row, 1),
        .attempts = (int)eddy_row_int(row, 2),
        .first_failure_us = eddy_row_int(row, 3),
        .last_failure_us = eddy_row_int(row, 4),
        .next_at_us = eddy_row_int(row, 5),
        .error_code = (int)eddy_row_int(row, 6),
        .error = eddy_row_text(row, 7),
    };
    if (!r.event_id)
        r.event_id = "";
    if (!r.error)
        r.error = "";
    return w->fn(&r, w->user);
}

int eddyi_retry_load(eddy_store *s, const char *subscription, int64_t above,
                     eddyi_retry_fn fn, void *user, eddy_error *err)
{
    struct retry_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, retry_row, &w, err,
                          "SELECT position, event_id, attempts, "
                          "first_failure_us, last_failure_us, next_at_us, "
                          "error_code, last_error FROM eddy_retries "
                          "WHERE subscription = $1 AND position > $2 "
                          "ORDER BY position",
                          "sI", subscription, above);
}

/* ---- dead letters --------------------------------------------------------- */

int eddyi_dl_put(eddy_txn *txn, const eddyi_dl_row *r, eddy_error *err)
{
    int rc = eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_dead_letters(subscription, position, event_id, "
        "event_type, payload, error_code, error, attempts, first_failure_us, "
        "last_failure_us, status) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10, 'dead') ON CONFLICT(subscription, position) DO UPDATE SET "
        "error_code = excluded.error_code, error = excluded.error, "
        "attempts = excluded.attempts, last_failure_us = "
        "excluded.last_failure_us, status = 'dead'",
        "sIsssisiII", r->subscription, r->position, r->event_id,
        r->event_type, r->payload, r->error_code, r->error ? r->error : "",
        r->attempts, r->first_failure_us, r->last_failure_us);
    if (rc == EDDY_OK)
        rc = eddyi_retry_delete(txn, r->subscription, r->position, err);
    return rc;
}

int eddyi_dl_delete(eddy_txn *txn, int64_t id, int64_t *changes,
                    eddy_error *err)
{
    return eddyi_sql_exec(txn, changes, err,
                          "DELETE FROM eddy_dead_letters WHERE id = $1", "I",
                          id);
}

int eddyi_dl_purge(eddy_txn *txn, const char *subscription, int64_t *changes,
                   eddy_error *err)
{
    if (!subscription)
        return eddyi_sql_exec(txn, changes, err,
                              "DELETE FROM eddy_dead_letters", NULL);
    return eddyi_sql_exec(txn, changes, err,
                          "DELETE FROM eddy_dead_letters "
                          "WHERE subscription = $1",
                          "s", subscription);
}

int eddyi_dl_mark(eddy_txn *txn, int64_t id, const char *subscription,
                  int64_t *changes, eddy_error *err)
{
    if (id > 0)
        return eddyi_sql_exec(txn, changes, err,
                              "UPDATE eddy_dead_letters SET status = "
                              "'redrive' WHERE id = $1",
                              "I", id);
    if (!subscription)
        return eddyi_sql_exec(txn, changes, err,
                              "UPDATE eddy_dead_letters SET status = "
                              "'redrive' WHERE status = 'dead'",
                              NULL);
    return eddyi_sql_exec(txn, changes, err,
                          "UPDATE eddy_dead_letters SET status = 'redrive' "
                          "WHERE status = 'dead' AND subscription = $1",
                          "s", subscription);
}

int eddyi_dl_failed_again(eddy_txn *txn, int64_t id, int error_code,
                          const char *error, eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "UPDATE eddy_dead_letters SET status = 'dead', "
                          "attempts = attempts + 1, error_code = $2, "
                          "error = $3, last_failure_us = $4 WHERE id = $1",
                          "IisI", id, error_code, error ? error : "",
                          eddy_txn_now_us(txn));
}

#define DL_COLUMNS                                                             \
    "id, subscription, position, event_id, event_type, payload, error_code, "  \
    "error, attempts, first_failure_us, last_failure_us, status"

struct dl_walk {
    eddyi_dl_fn fn;
    void *user;
    bool found;
};

static const char *text_or_empty(const eddy_row *row, int col)
{
    const char *t = eddy_row_text(row, col);
    return t ? t : "";
}

static int dl_row(const eddy_row *row, void *user)
{
    struct dl_walk *w = user;
    eddyi_dl_row r = {
        .id = eddy_row_int(row, 0),
        .subscription = text_or_empty(row, 1),
        .position = eddy_row_int(row, 2),
        .event_id = text_or_empty(row, 3),
        .event_type = text_or_empty(row, 4),
        .payload = text_or_empty(row, 5),
        .error_code = (int)eddy_row_int(row, 6),
        .error = text_or_empty(row, 7),
        .attempts = (int)eddy_row_int(row, 8),
        .first_failure_us = eddy_row_int(row, 9),
        .last_failure_us = eddy_row_int(row, 10),
        .status = text_or_empty(row, 11),
    };
    r.payload_len = strlen(r.payload);
    w->found = true;
    return w->fn(&r, w->user);
}

int eddyi_dl_page(eddy_store *s, const char *subscription, int64_t after_id,
                  size_t max, eddyi_dl_fn fn, void *user, eddy_error *err)
{
    struct dl_walk w = {.fn = fn, .user = user};
    if (!subscription)
        return eddyi_sql_read(s, dl_row, &w, err,
                              "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                              "WHERE id > $1 ORDER BY id LIMIT $2",
                              "II", after_id, (int64_t)max);
    return eddyi_sql_read(s, dl_row, &w, err,
                          "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                          "WHERE id > $1 AND subscription = $2 "
                          "ORDER BY id LIMIT $3",
                          "IsI", after_id, subscription, (int64_t)max);
}

int eddyi_dl_get(eddy_store *s, int64_t id, const char *subscription,
                 eddyi_dl_fn fn, void *user, eddy_error *err)
{
    struct dl_walk w = {.fn = fn, .user = user};
    int rc;
    if (!subscription)
        rc = eddyi_sql_read(s, dl_row, &w, err,
                            "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                            "WHERE id = $1",
                            "I", id);
    else
        rc = eddyi_sql_read(s, dl_row, &w, err,
                            "SELECT " DL_COLUMNS " FROM eddy_dead_letters "
                            "WHERE id = $1 AND subscription = $2",
                            "Is", id, subscription);
    if (rc == EDDY_OK && !w.found) {
        if (subscription)
            return eddyi_error(err, EDDY_ENOTFOUND,
                               "no dead letter %lld for handler \"%s\"",
                               (long long)id, subscription);
        return eddyi_error(err, EDDY_ENOTFOUND, "no dead letter %lld",
                           (long long)id);
    }
    return rc;
}

struct id_list {
    int64_t *ids;
    size_t max, n;
};

static int id_row(const eddy_row *row, void *user)
{
    struct id_list *l = user;
    if (l->n < l->max)
        l->ids[l->n++] = eddy_row_int(row, 0);
    return 0;
}

int eddyi_dl_marked(eddy_store *s, const char *subscription, int64_t *ids,
                    size_t max, size_t *n, eddy_error *err)
{
    struct id_list l = {.ids = ids, .max = max};
    int rc = eddyi_sql_read(s, id_row, &l, err,
                            "SELECT id FROM eddy_dead_letters WHERE "
                            "subscription = $1 AND status = 'redrive' "
                            "ORDER BY id LIMIT $2",
                            "sI", subscription, (int64_t)max);
    *n = l.n;
    return rc;
}

struct pos_walk {
    eddyi_position_fn fn;
    void *user;
};

static int pos_row(const eddy_row *row, void *user)
{
    struct pos_walk *w = user;
    return w->fn(eddy_row_int(row, 0), w->user);
}

int eddyi_dl_positions(eddy_store *s, const char *subscription, int64_t above,
                       eddyi_position_fn fn, void *user, eddy_error *err)
{
    struct pos_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, pos_row, &w, err,
                          "SELECT position FROM eddy_dead_letters WHERE "
                          "subscription = $1 AND position > $2 "
                          "ORDER BY position",
                          "sI", subscription, above);
}

/* ---- the subscription registry ---------------------------------------------- */

int eddyi_subs_record(eddy_txn *txn, const char *name, const char *pattern,
                      const char *kind, eddy_error *err)
{
    if (!name || !*name || !kind || !*kind)
        return eddyi_error(err, EDDY_EINVAL,
                           "subscription record: name and kind required");
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_subscriptions(name, pattern, kind, updated_us) "
        "VALUES($1, $2, $3, $4) ON CONFLICT(name) DO UPDATE SET "
        "pattern = excluded.pattern, kind = excluded.kind, "
        "updated_us = excluded.updated_us "
        /* A projection or saga runs on a durable subscription of the same
         * name: its "handler" record must not replace theirs. */
        "WHERE excluded.kind <> 'handler' OR "
        "eddy_subscriptions.kind = 'handler'",
        "sssI", name, pattern ? pattern : "*", kind, eddy_txn_now_us(txn));
}

struct subs_walk {
    int (*fn)(const eddyi_subs_row *row, void *user);
    void *user;
};

static int subs_row(const eddy_row *row, void *user)
{
    struct subs_walk *w = user;
    eddyi_subs_row r = {
        .name = text_or_empty(row, 0),
        .pattern = text_or_empty(row, 1),
        .kind = text_or_empty(row, 2),
        .updated_us = eddy_row_int(row, 3),
    };
    return w->fn(&r, w->user);
}

int eddyi_subs_list(eddy_store *s, int (*fn)(const eddyi_subs_row *row,
                                             void *user),
                    void *user, eddy_error *err)
{
    struct subs_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, subs_row, &w, err,
                          "SELECT name, pattern, kind, updated_us "
                          "FROM eddy_subscriptions ORDER BY name",
                          NULL);
}
