/*
 * src/cqrs/projection_registry.c - what is known about projections: the
 * definitions this process registered (eddy_projection_register_def, for
 * tools such as `eddy projections rebuild NAME`), and the projections
 * recorded in a store (eddy_projection_list).
 *
 * Threads: the caller's. The definition list is process-wide, under one
 * mutex, and lives until exit. A listing reads the store's projection
 * registry on a reader connection (it works on a store opened read-only),
 * copies the rows, then calls back with no connection held.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/projection.h"

#include "../core/internal.h"
#include "../store/state_cqrs.h"

/* ---- the definition registry ------------------------------------------------ */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
struct def_entry {
    struct def_entry *next;
    const eddy_projection_def *def;
};
static struct def_entry *g_defs; /* under g_mu; lives until exit */

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

/* ---- listing -------------------------------------------------------------- */

struct proj_copy {
    char *name, *pattern, *mode, *state, *owner;
    int64_t checkpoint, updated_us;
};

struct proj_list {
    struct proj_copy *rows;
    size_t count;
    eddy_error *err;
};

static int copy_row(const eddyi_proj_row *r, void *user)
{
    struct proj_list *l = user;
    struct proj_copy *n = realloc(l->rows, (l->count + 1) * sizeof *n);
    if (!n)
        return eddyi_error(l->err, EDDY_ENOMEM, "out of memory");
    l->rows = n;
    struct proj_copy *c = &n[l->count++];
    c->name = eddyi_strdup(r->name);
    c->pattern = eddyi_strdup(r->pattern);
    c->mode = eddyi_strdup(r->mode);
    c->state = eddyi_strdup(r->state);
    c->owner = eddyi_strdup(r->owner);
    c->checkpoint = r->checkpoint;
    c->updated_us = r->updated_us;
    if (!c->name || !c->pattern || !c->mode || !c->state || !c->owner)
        return eddyi_error(l->err, EDDY_ENOMEM, "out of memory");
    return 0;
}

int eddy_projection_list(eddy_store *store, eddy_projection_info_fn fn,
                         void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "projection list: store and callback required");
    struct proj_list l = {.err = err};
    int64_t head = 0;
    int rc = eddyi_proj_list(store, copy_row, &l, err);
    if (rc == EDDY_OK)
        rc = eddy_store_head(store, &head, err);
    for (size_t i = 0; i < l.count; i++) {
        struct proj_copy *r = &l.rows[i];
        if (rc == EDDY_OK) {
            eddy_projection_info info = {
                .name = r->name,
                .pattern = r->pattern,
                .mode = r->mode,
                .state = r->state,
                .checkpoint = r->checkpoint,
                .head = head,
                .lag = head > r->checkpoint ? head - r->checkpoint : 0,
                .updated_us = r->updated_us,
                .owner = r->owner,
            };
            rc = fn(&info, user);
        }
        free(r->name);
        free(r->pattern);
        free(r->mode);
        free(r->state);
        free(r->owner);
    }
    free(l.rows);
    return rc;
}
