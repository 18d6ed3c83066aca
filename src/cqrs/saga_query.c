/*
 * src/cqrs/saga_query.c - eddy_saga_list and eddy_saga_get (`eddy sagas`).
 *
 * Thread: the caller's. The rows are read on reader connections (never
 * through the writer: this works on a store opened read-only) and copied,
 * then the caller's callback runs with no connection held.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/state_cqrs.h"
#include "saga_internal.h"

struct info_row {
    char *type, *id, *status, *result, *corr;
    json_t *state, *commands, *timeouts;
    int64_t version, created_us, updated_us;
};

struct info_list {
    struct info_row *rows;
    size_t count;
    eddy_error *err;
};

static int copy_saga(const eddyi_saga_row *r, void *user)
{
    struct info_list *l = user;
    struct info_row *n = realloc(l->rows, (l->count + 1) * sizeof *n);
    if (!n)
        return eddyi_error(l->err, EDDY_ENOMEM, "out of memory");
    l->rows = n;
    struct info_row *c = &n[l->count++];
    memset(c, 0, sizeof *c);
    json_error_t je;
    c->type = eddyi_strdup(r->type);
    c->id = eddyi_strdup(r->id);
    c->status = eddyi_strdup(r->status);
    c->result = eddyi_strdup(r->result);
    c->corr = eddyi_strdup(r->correlation_id);
    c->state = json_loads(r->state, 0, &je);
    c->version = r->version;
    c->created_us = r->created_us;
    c->updated_us = r->updated_us;
    if (!c->type || !c->id || !c->status || !c->result || !c->corr)
        return eddyi_error(l->err, EDDY_ENOMEM, "out of memory");
    return 0;
}

static void info_clear(struct info_row *r)
{
    free(r->type);
    free(r->id);
    free(r->status);
    free(r->result);
    free(r->corr);
    json_decref(r->state);
    json_decref(r->commands);
    json_decref(r->timeouts);
}

/* ---- details: commands and timeouts as JSON ------------------------------ */

struct json_rows {
    json_t *arr;
    eddy_error *err;
};

static int add_object(struct json_rows *j, json_t *o)
{
    if (!o || json_array_append_new(j->arr, o) != 0)
        return eddyi_error(j->err, EDDY_ENOMEM, "out of memory");
    return 0;
}

static int command_json(const eddyi_saga_cmd_row *r, void *user)
{
    json_t *data = NULL;
    if (r->data) {
        json_error_t je;
        data = json_loads(r->data, JSON_DECODE_ANY, &je);
        if (!data)
            data = json_string(r->data); /* shown as stored */
    } else {
        data = json_null();
    }
    return add_object(
        user,
        json_pack("{s:s, s:s, s:o, s:s, s:i, s:s, s:s, s:I, s:o}", "id",
                  r->id, "name", r->name, "data", data, "state", r->state,
                  "attempts", r->attempts, "last_error", r->last_error,
                  "causation_id", r->causation_id, "created_us",
                  (json_int_t)r->created_us, "sent_us",
                  r->sent_us ? json_integer(r->sent_us) : json_null()));
}

static int timeout_json(const eddyi_saga_tmo_row *r, void *user)
{
    return add_object(user, json_pack("{s:s, s:I, s:i}", "name", r->name,
                                      "deadline_us",
                                      (json_int_t)r->deadline_us, "fired",
                                      r->fired ? 1 : 0));
}

static int load_details(eddy_store *store, struct info_row *r,
                        eddy_error *err)
{
    struct json_rows c = {.arr = json_array(), .err = err};
    struct json_rows t = {.arr = json_array(), .err = err};
    r->commands = c.arr;
    r->timeouts = t.arr;
    if (!c.arr || !t.arr)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = eddyi_saga_cmd_list(store, r->type, r->id, command_json, &c,
                                 err);
    if (rc == EDDY_OK)
        rc = eddyi_saga_tmo_list(store, r->type, r->id, timeout_json, &t,
                                 err);
    return rc;
}

/* Calls `fn` for each copied row, then frees them all. */
static int deliver(struct info_list *l, int rc, eddy_saga_info_fn fn,
                   void *user)
{
    for (size_t i = 0; i < l->count; i++) {
        struct info_row *r = &l->rows[i];
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
        info_clear(r);
    }
    free(l->rows);
    return rc;
}

int eddy_saga_list(eddy_store *store, const char *type, const char *status,
                   eddy_saga_info_fn fn, void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga list: %s is NULL",
                           !store ? "the store" : "the callback");
    struct info_list l = {.err = err};
    int rc = eddyi_saga_list(store, type, status, copy_saga, &l, err);
    return deliver(&l, rc, fn, user);
}

int eddy_saga_get(eddy_store *store, const char *id, eddy_saga_info_fn fn,
                  void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL, "saga get: %s is NULL",
                           !store ? "the store" : "the callback");
    if (!id || !*id)
        return eddyi_error(err, EDDY_EINVAL,
                           "saga get: an instance id is required");
    struct info_list l = {.err = err};
    int rc = eddyi_saga_find(store, id, copy_saga, &l, err);
    for (size_t i = 0; rc == EDDY_OK && i < l.count; i++)
        rc = load_details(store, &l.rows[i], err);
    if (rc == EDDY_OK && l.count == 0)
        rc = eddyi_error(err, EDDY_ENOTFOUND, "no saga with id %s", id);
    return deliver(&l, rc, fn, user);
}
