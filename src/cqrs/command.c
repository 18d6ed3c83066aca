/* src/cqrs/command.c - the command bus: one handler per command name. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "eddy/command.h"
#include "eddy/event.h"

struct route {
    char *name;
    eddy_command_handler_fn fn;     /* plain, or */
    eddy_command_txn_fn txn_fn;     /* transactional */
    void *user;
};

struct eddy_command_bus {
    pthread_rwlock_t lock; /* writers: register; readers: send */
    struct route *routes;  /* unsorted; command buses have a handful */
    size_t count, cap;
    eddy_store *store;     /* where send() runs transactional handlers */
};

eddy_command_bus *eddy_command_bus_new(void)
{
    eddy_command_bus *cb = calloc(1, sizeof *cb);
    if (!cb)
        return NULL;
    if (pthread_rwlock_init(&cb->lock, NULL) != 0) {
        free(cb);
        return NULL;
    }
    return cb;
}

void eddy_command_bus_free(eddy_command_bus *cb)
{
    if (!cb)
        return;
    for (size_t i = 0; i < cb->count; i++)
        free(cb->routes[i].name);
    free(cb->routes);
    pthread_rwlock_destroy(&cb->lock);
    free(cb);
}

/* Caller holds the lock (either way). */
static struct route *find(eddy_command_bus *cb, const char *name)
{
    for (size_t i = 0; i < cb->count; i++)
        if (strcmp(cb->routes[i].name, name) == 0)
            return &cb->routes[i];
    return NULL;
}

static int add_route(eddy_command_bus *cb, const char *name,
                     eddy_command_handler_fn fn, eddy_command_txn_fn txn_fn,
                     void *user, eddy_error *err)
{
    if (!cb || !name || !*name || (!fn && !txn_fn))
        return eddyi_error(err, EDDY_EINVAL,
                           "command registration needs a bus, a non-empty name and a handler");
    int rc = EDDY_OK;
    pthread_rwlock_wrlock(&cb->lock);
    if (find(cb, name)) {
        rc = eddyi_error(err, EDDY_EEXIST, "command %s already has a handler", name);
        goto out;
    }
    if (cb->count == cb->cap) {
        size_t cap = cb->cap ? cb->cap * 2 : 8;
        struct route *grown = realloc(cb->routes, cap * sizeof *grown);
        if (!grown) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory registering %s", name);
            goto out;
        }
        cb->routes = grown;
        cb->cap = cap;
    }
    char *copy = eddyi_strdup(name);
    if (!copy) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory registering %s", name);
        goto out;
    }
    cb->routes[cb->count++] = (struct route){copy, fn, txn_fn, user};
out:
    pthread_rwlock_unlock(&cb->lock);
    return rc;
}

int eddy_command_bus_register(eddy_command_bus *cb, const char *name,
                              eddy_command_handler_fn fn, void *user,
                              eddy_error *err)
{
    return add_route(cb, name, fn, NULL, user, err);
}

int eddy_command_bus_register_txn(eddy_command_bus *cb, const char *name,
                                  eddy_command_txn_fn fn, void *user,
                                  eddy_error *err)
{
    return add_route(cb, name, NULL, fn, user, err);
}

void eddy_command_bus_set_store(eddy_command_bus *cb, eddy_store *store)
{
    if (!cb)
        return;
    pthread_rwlock_wrlock(&cb->lock);
    cb->store = store;
    pthread_rwlock_unlock(&cb->lock);
}

bool eddy_command_bus_is_txn(eddy_command_bus *cb, const char *name)
{
    if (!cb || !name)
        return false;
    pthread_rwlock_rdlock(&cb->lock);
    struct route *r = find(cb, name);
    bool txn = r && r->txn_fn;
    pthread_rwlock_unlock(&cb->lock);
    return txn;
}

/* Looks `cmd` up; a copy of its route (routes are never removed). */
static int route_of(eddy_command_bus *cb, const eddy_command *cmd,
                    struct route *out, eddy_store **store, eddy_error *err)
{
    if (!cb || !cmd || !cmd->name || !*cmd->name)
        return eddyi_error(err, EDDY_EINVAL, "a command needs a name");
    pthread_rwlock_rdlock(&cb->lock);
    struct route *r = find(cb, cmd->name);
    *out = r ? *r : (struct route){0};
    if (store)
        *store = cb->store;
    pthread_rwlock_unlock(&cb->lock);
    if (!out->fn && !out->txn_fn)
        return eddyi_error(err, EDDY_ENOTFOUND, "no handler for command %s",
                           cmd->name);
    return EDDY_OK;
}

struct txn_send {
    const struct route *route;
    const eddy_command *cmd;
};

static int txn_send_job(eddy_txn *txn, void *user, eddy_error *err)
{
    struct txn_send *t = user;
    return t->route->txn_fn(txn, t->cmd, t->route->user, err);
}

int eddy_command_send_txn(eddy_command_bus *cb, eddy_txn *txn,
                          const eddy_command *cmd, eddy_error *err)
{
    struct route route;
    int rc = route_of(cb, cmd, &route, NULL, err);
    if (rc != EDDY_OK)
        return rc;
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "command %s: no transaction",
                           cmd->name);
    if (!route.txn_fn)
        return eddyi_error(err, EDDY_ESTATE,
                           "command %s has a plain handler: send it with "
                           "eddy_command_send, outside a transaction",
                           cmd->name);
    if (cmd->id)
        return route.txn_fn(txn, cmd, route.user, err);
    char id[EDDY_UUID_STRLEN];
    eddy_uuid7(id);
    eddy_command with_id = *cmd;
    with_id.id = id;
    return route.txn_fn(txn, &with_id, route.user, err);
}

int eddy_command_send(eddy_command_bus *cb, const eddy_command *cmd, eddy_error *err)
{
    struct route route;
    eddy_store *store = NULL;
    int rc = route_of(cb, cmd, &route, &store, err);
    if (rc != EDDY_OK)
        return rc;
    /* The handler runs outside the lock: it may send further commands, and
     * a route is never removed, so the copy stays valid. */
    char id[EDDY_UUID_STRLEN];
    eddy_command with_id = *cmd;
    if (!cmd->id) {
        eddy_uuid7(id);
        with_id.id = id;
    }
    if (route.fn)
        return route.fn(&with_id, route.user, err);
    if (!store)
        return eddyi_error(err, EDDY_ESTATE,
                           "command %s has a transactional handler and the "
                           "bus has no store to run it in "
                           "(eddy_command_bus_set_store)", cmd->name);
    struct txn_send t = {.route = &route, .cmd = &with_id};
    return eddy_store_transact(store, txn_send_job, &t, err);
}

int eddy_command_sendf(eddy_command_bus *cb, const char *name,
                       const char *correlation_id, const char *causation_id,
                       eddy_error *err, const char *fmt, ...)
{
    json_t *data = NULL;
    if (fmt) {
        json_error_t jerr;
        va_list ap;
        va_start(ap, fmt);
        data = json_vpack_ex(&jerr, 0, fmt, ap);
        va_end(ap);
        if (!data)
            return eddyi_error(err, EDDY_EINVAL, "command %s: cannot build data: %s",
                               name ? name : "(null)", jerr.text);
    }
    eddy_command cmd = {.name = name, .data = data, .correlation_id = correlation_id,
                        .causation_id = causation_id};
    int rc = eddy_command_send(cb, &cmd, err);
    json_decref(data);
    return rc;
}
