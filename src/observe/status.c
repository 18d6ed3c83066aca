/*
 * src/observe/status.c - eddy/status.h: the consumers' and the outbox's
 * figures, read through the store's observe operations. Rows are copied
 * out of the reader's callback first, so the user's callback runs with no
 * reader connection held (it may call other store functions).
 */
#include <stdlib.h>
#include <string.h>

#include "eddy/status.h"

#include "../core/internal.h"
#include "../store/state_observe.h"

struct consumer_copy {
    eddy_consumer_info view;
    char *name, *kind, *pattern;
};

struct consumers {
    struct consumer_copy *rows;
    size_t n, cap;
};

static int keep_consumer(const eddyi_consumer_row *row, void *user)
{
    struct consumers *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct consumer_copy *n = realloc(c->rows, cap * sizeof *n);
        if (!n)
            return EDDY_ENOMEM;
        c->rows = n;
        c->cap = cap;
    }
    struct consumer_copy *r = &c->rows[c->n];
    memset(r, 0, sizeof *r);
    r->name = eddyi_strdup(row->name);
    r->kind = eddyi_strdup(row->kind);
    r->pattern = eddyi_strdup(row->pattern);
    c->n++;
    if (!r->name || !r->kind || !r->pattern)
        return EDDY_ENOMEM;
    int64_t base = row->checkpoint < 0 ? 0 : row->checkpoint;
    r->view = (eddy_consumer_info){
        .checkpoint = row->checkpoint,
        .checkpoint_updated_us = row->checkpoint_updated_us,
        .head = row->head,
        .lag = row->head > base ? row->head - base : 0,
        .retries = row->retries,
        .dead_letters = row->dead_letters,
        .redrive_pending = row->redrive_pending,
    };
    return EDDY_OK;
}

int eddy_status_consumers(eddy_store *store, eddy_consumer_info_fn fn,
                          void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "status consumers: store and callback required");
    struct consumers c = {0};
    int rc = eddyi_consumers(store, keep_consumer, &c, err);
    if (rc == EDDY_ENOMEM)
        rc = eddyi_error(err, rc, "out of memory");
    for (size_t i = 0; i < c.n && rc == EDDY_OK; i++) {
        struct consumer_copy *r = &c.rows[i];
        r->view.name = r->name;
        r->view.kind = r->kind;
        r->view.pattern = r->pattern;
        rc = fn(&r->view, user);
    }
    for (size_t i = 0; i < c.n; i++) {
        free(c.rows[i].name);
        free(c.rows[i].kind);
        free(c.rows[i].pattern);
    }
    free(c.rows);
    return rc;
}

struct outbox_copy {
    eddy_outbox_info view;
    char *destination;
};

struct outboxes {
    struct outbox_copy *rows;
    size_t n, cap;
};

static int keep_outbox(const eddyi_outbox_row *row, void *user)
{
    struct outboxes *o = user;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        struct outbox_copy *n = realloc(o->rows, cap * sizeof *n);
        if (!n)
            return EDDY_ENOMEM;
        o->rows = n;
        o->cap = cap;
    }
    struct outbox_copy *r = &o->rows[o->n++];
    r->destination = eddyi_strdup(row->destination);
    r->view = (eddy_outbox_info){.pending = row->pending,
                                 .sent = row->sent,
                                 .oldest_pending_us = row->oldest_pending_us};
    return r->destination ? EDDY_OK : EDDY_ENOMEM;
}

int eddy_status_outbox(eddy_store *store, eddy_outbox_info_fn fn, void *user,
                       eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL,
                           "status outbox: store and callback required");
    struct outboxes o = {0};
    int rc = eddyi_outbox_destinations(store, keep_outbox, &o, err);
    if (rc == EDDY_ENOMEM)
        rc = eddyi_error(err, rc, "out of memory");
    for (size_t i = 0; i < o.n && rc == EDDY_OK; i++) {
        o.rows[i].view.destination = o.rows[i].destination;
        rc = fn(&o.rows[i].view, user);
    }
    for (size_t i = 0; i < o.n; i++)
        free(o.rows[i].destination);
    free(o.rows);
    return rc;
}
