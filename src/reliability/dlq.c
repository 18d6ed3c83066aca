/*
 * src/reliability/dlq.c - the dead-letter store (eddy_dlq_*, eddy/durable.h)
 * over the store's state operations (src/store/state_durable.h).
 *
 * Reads (list, get) run on reader connections: they never queue behind the
 * writer and work on a read-only store. Listing copies a page of DLQ_PAGE
 * rows out of the reader, then decodes and hands them to the user's
 * callback with no connection held, so the callback may call other
 * eddy_dlq_* functions. Changes (mark for redrive, delete, purge) are write
 * jobs. Runs on the calling thread; no thread of its own.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/state_durable.h"
#include "../store/store_internal.h"
#include "reliability_internal.h"

#define DLQ_PAGE 256

/* ---- dead letters as views ----------------------------------------------- */

/* A dead letter read from the store: the public view plus its storage. */
struct dl_row {
    eddy_dead_letter view; /* first: eddy_dead_letter_free casts back */
    char *handler;
    char *error;
    char *status;
    char *event_id;
    char *event_type;
    char *payload; /* until decoded */
    char *event_error;
};

static void dl_row_clear(struct dl_row *r)
{
    free(r->handler);
    free(r->error);
    free(r->status);
    free(r->event_id);
    free(r->event_type);
    free(r->payload);
    free(r->event_error);
    eddy_event_unref(r->view.event);
    memset(r, 0, sizeof *r);
}

void eddy_dead_letter_free(eddy_dead_letter *dl)
{
    if (!dl)
        return;
    dl_row_clear((struct dl_row *)dl);
    free(dl);
}

/* Copies a row of the store into `r` (payload not yet decoded). Returns
 * EDDY_OK, or EDDY_ENOMEM with `r` cleared. */
static int dl_row_copy(const eddyi_dl_row *in, struct dl_row *r)
{
    memset(r, 0, sizeof *r);
    r->view.id = in->id;
    r->view.position = in->position;
    r->view.error_code = in->error_code;
    r->view.attempts = in->attempts;
    r->view.first_failure_us = in->first_failure_us;
    r->view.last_failure_us = in->last_failure_us;
    r->handler = eddyi_strdup(in->subscription);
    r->error = eddyi_strdup(in->error);
    r->status = eddyi_strdup(in->status);
    r->payload = eddyi_strdup(in->payload);
    r->event_id = eddyi_strdup(in->event_id ? in->event_id : "");
    r->event_type = eddyi_strdup(in->event_type ? in->event_type : "");
    if (!r->handler || !r->error || !r->status || !r->payload || !r->event_id ||
        !r->event_type) {
        dl_row_clear(r);
        return EDDY_ENOMEM;
    }
    r->view.handler = r->handler;
    r->view.event_id = r->event_id;
    r->view.event_type = r->event_type;
    r->view.error = r->error;
    r->view.status = r->status;
    return EDDY_OK;
}

/* Decodes the payload into the view's event (no connection held). Stored
 * bytes that do not decode are damaged: the dead letter is still shown,
 * with `event` NULL and the decoder's reason in `event_error`. EDDY_ENOMEM
 * only when out of memory. */
static int dl_row_decode(struct dl_row *r, eddy_error *err)
{
    eddy_error e = {0};
    r->view.event = eddy_event_decode(r->payload, strlen(r->payload), &e);
    if (!r->view.event) {
        if (e.code == EDDY_ENOMEM)
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
        char why[EDDY_ERROR_MESSAGE_MAX + 40];
        snprintf(why, sizeof why, "stored event does not decode: %s", e.message);
        r->event_error = eddyi_strdup(why);
        if (!r->event_error)
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
        r->view.event_error = r->event_error;
    }
    free(r->payload);
    r->payload = NULL;
    return EDDY_OK;
}

/* ---- list ---------------------------------------------------------------- */

struct page {
    struct dl_row rows[DLQ_PAGE];
    size_t n;
};

static int page_row(const eddyi_dl_row *row, void *user)
{
    struct page *p = user;
    if (p->n == DLQ_PAGE)
        return EDDY_OK;
    if (dl_row_copy(row, &p->rows[p->n]) != EDDY_OK)
        return EDDY_ENOMEM;
    p->n++;
    return EDDY_OK;
}

int eddy_dlq_list(eddy_store *store, const char *handler,
                  eddy_dead_letter_fn fn, void *user, eddy_error *err)
{
    if (!store || !fn)
        return eddyi_error(err, EDDY_EINVAL, "dlq list: store and callback "
                                             "are required");
    struct page *p = calloc(1, sizeof *p);
    if (!p)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int64_t after_id = 0;
    int rc;
    for (;;) {
        p->n = 0;
        rc = eddyi_dl_page(store, handler, after_id, DLQ_PAGE, page_row, p,
                           err);
        if (rc == EDDY_ENOMEM)
            eddyi_error(err, rc, "dlq list: out of memory");
        size_t i = 0;
        for (; i < p->n && rc == EDDY_OK; i++) {
            rc = dl_row_decode(&p->rows[i], err);
            if (rc == EDDY_OK)
                rc = fn(&p->rows[i].view, user);
            after_id = p->rows[i].view.id;
        }
        size_t got = p->n;
        for (size_t k = 0; k < p->n; k++)
            dl_row_clear(&p->rows[k]);
        if (rc != EDDY_OK || got < DLQ_PAGE)
            break;
    }
    free(p);
    return rc;
}

/* ---- get ----------------------------------------------------------------- */

static int get_row(const eddyi_dl_row *row, void *user)
{
    return dl_row_copy(row, user);
}

int eddyi_dlq_load(eddy_store *store, int64_t id, const char *subscription,
                   eddy_dead_letter **out, eddy_error *err)
{
    struct dl_row *row = calloc(1, sizeof *row);
    if (!row)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = eddyi_dl_get(store, id, subscription, get_row, row, err);
    if (rc == EDDY_ENOMEM)
        eddyi_error(err, rc, "dead letter %lld: out of memory", (long long)id);
    if (rc == EDDY_OK)
        rc = dl_row_decode(row, err);
    if (rc != EDDY_OK) {
        eddy_dead_letter_free(&row->view);
        return rc;
    }
    *out = &row->view;
    return EDDY_OK;
}

int eddy_dlq_get(eddy_store *store, int64_t id, eddy_dead_letter **out,
                 eddy_error *err)
{
    if (!store || !out)
        return eddyi_error(err, EDDY_EINVAL, "dlq get: store and out are "
                                             "required");
    return eddyi_dlq_load(store, id, NULL, out, err);
}

/* ---- redrive / delete / purge ---------------------------------------------- */

enum change { MARK, DELETE, PURGE };

struct change_job {
    enum change what;
    int64_t id;          /* MARK, DELETE: one dead letter (MARK: 0 = all) */
    const char *handler; /* MARK all, PURGE: NULL = every handler */
    int64_t changes;
};

static int change_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct change_job *j = arg;
    switch (j->what) {
    case MARK:
        return eddyi_dl_mark(txn, j->id, j->handler, &j->changes, err);
    case DELETE:
        return eddyi_dl_delete(txn, j->id, &j->changes, err);
    case PURGE:
    default:
        return eddyi_dl_purge(txn, j->handler, &j->changes, err);
    }
}

/* Runs `j` as a write job; `what` names the call in messages. */
static int change(eddy_store *store, const char *what, struct change_job *j,
                  eddy_error *err)
{
    if (!store)
        return eddyi_error(err, EDDY_EINVAL, "%s: no store", what);
    return eddyi_store_write(store, change_job_run, j, err);
}

/* As change() for one dead letter: EDDY_ENOTFOUND when it changed none. */
static int change_one(eddy_store *store, const char *what,
                      struct change_job *j, eddy_error *err)
{
    if (j->id <= 0)
        return eddyi_error(err, EDDY_ENOTFOUND, "no dead letter %lld",
                           (long long)j->id);
    int rc = change(store, what, j, err);
    if (rc == EDDY_OK && j->changes == 0)
        return eddyi_error(err, EDDY_ENOTFOUND, "no dead letter %lld",
                           (long long)j->id);
    return rc;
}

int eddy_dlq_redrive(eddy_store *store, int64_t id, eddy_error *err)
{
    struct change_job j = {.what = MARK, .id = id};
    return change_one(store, "dlq redrive", &j, err);
}

int eddy_dlq_redrive_all(eddy_store *store, const char *handler,
                         size_t *count, eddy_error *err)
{
    struct change_job j = {.what = MARK, .handler = handler};
    int rc = change(store, "dlq redrive", &j, err);
    if (rc == EDDY_OK && count)
        *count = (size_t)j.changes;
    return rc;
}

int eddy_dlq_delete(eddy_store *store, int64_t id, eddy_error *err)
{
    struct change_job j = {.what = DELETE, .id = id};
    return change_one(store, "dlq delete", &j, err);
}

int eddy_dlq_purge(eddy_store *store, const char *handler, size_t *count,
                   eddy_error *err)
{
    struct change_job j = {.what = PURGE, .handler = handler};
    int rc = change(store, "dlq purge", &j, err);
    if (rc == EDDY_OK && count)
        *count = (size_t)j.changes;
    return rc;
}
