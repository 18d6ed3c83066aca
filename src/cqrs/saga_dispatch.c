/*
 * src/cqrs/saga_dispatch.c - the saga command dispatcher: sends the queued
 * commands of one saga type through its command bus, at-least-once, in
 * order per instance.
 *
 * Threads, all created at start and joined at stop:
 *   - the feeder: runs passes. A pass takes a page of pending commands (by
 *     seq), hands each lane the commands of the instances hashed to it,
 *     sends lane 0's itself, waits for the other lanes, then records the
 *     outcomes in one write job ('sent' after the send succeeded: a crash
 *     in between sends again) and, in the same job, reads the next page;
 *   - `dispatchers - 1` lane threads. An instance always hashes to the
 *     same lane, so its commands are sent one after another in seq order,
 *     and its backoff lives in that lane alone (no lock). Lanes run in
 *     parallel because a command handler usually waits for a durable
 *     commit: one at a time would make every instance wait on each fsync.
 *
 * WHERE A PAGE IS READ. A command is queued by the saga's handler inside a
 * write transaction, which kicks the feeder before it commits. A reader
 * connection could then still miss the command and the feeder would sleep
 * for a poll period. So after a kick the page is read in a write job: it
 * runs after the kicking job on the writer, in the same transaction or a
 * later one, and sees the command (what it reads is sent only after that
 * job committed). Without a kick since the last page (polls: commands
 * queued by other processes, backoffs that expired) the page is read on a
 * reader, and an idle saga type takes no writer slot.
 *
 * SEVERAL PROCESSES: only the holder of the saga type's command lease
 * runs passes (saga_lease.c); the outcomes are recorded under its fence.
 *
 * RETRIES. A failed send blocks the instance's later commands, with the
 * shared retry policy (eddy/retry.h) over the attempts stored in the
 * command's row. Past max_attempts (or for an error the policy says is not
 * retryable) the command is NOT dropped: it stays pending, is tried every
 * max_delay_ms, and every failure is logged as an error.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/retry.h"
#include "../store/state_cqrs.h"
#include "../store/store_internal.h"
#include "cqrs_internal.h"
#include "saga_internal.h"

#define DISPATCH_POLL_MS 200
#define DISPATCH_PAGE 256
#define DISPATCH_MAX_LANES 16
#define DEFAULT_DISPATCHERS 4

struct pending_cmd {
    int64_t seq;
    char *id, *saga_id, *name, *data, *correlation_id, *causation_id;
    int attempts;
    int outcome;   /* this pass: 0 not sent, 1 sent, 2 failed */
    char *error;   /* outcome 2: the handler's message */
};

struct page {
    struct pending_cmd *rows;
    size_t count;
    eddy_error *err;
};

struct backoff {
    char *saga_id;
    int64_t next_at_us;
};

struct lane {
    eddy_saga *sg;
    uint64_t seen;            /* the last pass taken (under sg->mu) */
    pthread_t thread;
    bool started;
    /* this pass (set by the feeder before handing it out) */
    struct pending_cmd *rows;
    size_t *idx;              /* indexes into rows, ascending */
    size_t n;
    size_t left;              /* out: commands left pending */
    int64_t next_due_us;      /* out: the earliest backoff (0: none) */
    /* the lane's own */
    struct backoff *backoffs;
    size_t backoff_count;
    uint64_t rng;
};

struct eddyi_saga_dispatcher {
    unsigned nlanes;
    struct lane lanes[DISPATCH_MAX_LANES];
    pthread_cond_t lane_cond; /* lanes: a pass was handed out, or quit */
    pthread_cond_t done_cond; /* feeder: a lane finished its part */
    uint64_t pass;            /* passes handed out (under sg->mu) */
    size_t busy;              /* lanes still on the pass (under sg->mu) */
    bool quit;                /* lanes end (under sg->mu) */
    pthread_t feeder;
    bool feeder_started;
    /* feeder thread only */
    struct page next;         /* read with the last outcomes */
    bool have_next;
    uint64_t next_gen;        /* kick_gen before that read */
    uint64_t covered_gen;     /* kicks the last writer read covered */
};

/* ---- pages --------------------------------------------------------------- */

static void page_clear(struct page *p)
{
    for (size_t i = 0; i < p->count; i++) {
        struct pending_cmd *c = &p->rows[i];
        free(c->id);
        free(c->saga_id);
        free(c->name);
        free(c->data);
        free(c->correlation_id);
        free(c->causation_id);
        free(c->error);
    }
    free(p->rows);
    p->rows = NULL;
    p->count = 0;
}

static int page_row(const eddyi_saga_cmd_row *r, void *user)
{
    struct page *p = user;
    if (!p->rows && !(p->rows = calloc(DISPATCH_PAGE, sizeof *p->rows)))
        return eddyi_error(p->err, EDDY_ENOMEM, "out of memory");
    if (p->count == DISPATCH_PAGE)
        return 0;
    struct pending_cmd *c = &p->rows[p->count++];
    c->seq = r->seq;
    c->attempts = r->attempts;
    c->id = eddyi_strdup(r->id);
    c->saga_id = eddyi_strdup(r->saga_id);
    c->name = eddyi_strdup(r->name);
    c->data = eddyi_strdup(r->data);
    c->correlation_id = eddyi_strdup(r->correlation_id);
    c->causation_id = eddyi_strdup(r->causation_id);
    if (!c->id || !c->saga_id || !c->name || (r->data && !c->data) ||
        !c->correlation_id || !c->causation_id)
        return eddyi_error(p->err, EDDY_ENOMEM, "out of memory");
    return 0;
}

/* Outcomes of the pass that ends, and (unless stopping) the next page. */
struct mark_job {
    eddy_saga *sg;
    struct page *done;
    struct page *next; /* NULL: read none */
    bool lost;         /* out: the command lease is another's now */
};

static int mark_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct mark_job *j = arg;
    /* Only the lease's holder records outcomes (saga_lease.c). */
    int rc = eddyi_saga_lease_fence(txn, j->sg, err);
    j->lost = rc == EDDY_ESTATE;
    for (size_t i = 0; rc == EDDY_OK && i < j->done->count; i++) {
        const struct pending_cmd *p = &j->done->rows[i];
        if (p->outcome == 1)
            rc = eddyi_saga_cmd_sent(txn, p->seq, err);
        else if (p->outcome == 2)
            rc = eddyi_saga_cmd_failed(txn, p->seq, p->error, err);
    }
    if (rc == EDDY_OK && j->next) {
        eddy_error fe = {0};
        j->next->err = &fe;
        if (eddyi_saga_cmd_pending(txn, j->sg->def->name, DISPATCH_PAGE,
                                   page_row, j->next, &fe) != EDDY_OK) {
            /* Keep the outcomes; the feeder reads the page again. */
            page_clear(j->next);
            j->next = NULL;
        }
        if (j->next)
            j->next->err = NULL;
    }
    return rc;
}

struct fetch_job {
    const char *type;
    struct page *out;
};

static int fetch_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct fetch_job *j = arg;
    return eddyi_saga_cmd_pending(txn, j->type, DISPATCH_PAGE, page_row,
                                  j->out, err);
}

/* ---- a lane ---------------------------------------------------------------- */

static struct backoff *backoff_find(struct lane *l, const char *saga_id)
{
    for (size_t i = 0; i < l->backoff_count; i++)
        if (strcmp(l->backoffs[i].saga_id, saga_id) == 0)
            return &l->backoffs[i];
    return NULL;
}

static void backoff_clear(struct lane *l, const char *saga_id)
{
    struct backoff *b = backoff_find(l, saga_id);
    if (!b)
        return;
    free(b->saga_id);
    *b = l->backoffs[--l->backoff_count];
}

/* Holds `saga_id` back until `due` (kept as is when out of memory: the
 * instance is then tried again at the next pass). */
static void backoff_set(struct lane *l, const char *saga_id, int64_t due)
{
    struct backoff *b = backoff_find(l, saga_id);
    if (!b) {
        struct backoff *n = realloc(l->backoffs,
                                    (l->backoff_count + 1) * sizeof *n);
        if (!n)
            return;
        l->backoffs = n;
        char *copy = eddyi_strdup(saga_id);
        if (!copy)
            return;
        b = &n[l->backoff_count++];
        b->saga_id = copy;
    }
    b->next_at_us = due;
}

/* The delay after the `attempts`-th failed send of `p` with error `rc`,
 * and the report of the failure. */
static int64_t failure_delay_us(struct lane *l, const struct pending_cmd *p,
                                int rc, const char *message)
{
    eddy_saga *sg = l->sg;
    unsigned attempts = (unsigned)p->attempts + 1;
    if (eddyi_retry_again(&sg->retry, rc, attempts)) {
        EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s %s: command %s (%s) failed, "
                  "attempt %u: %s", sg->def->name, p->saga_id, p->name,
                  p->id, attempts, message);
        return eddyi_retry_delay_us(&sg->retry, attempts, &l->rng);
    }
    EDDYI_LOG(EDDY_LOG_ERROR, "saga", "%s %s: command %s (%s) failed %u "
              "times, last: %s; it stays pending and is tried every %u ms "
              "(see eddy sagas get %s)", sg->def->name, p->saga_id, p->name,
              p->id, attempts, message, sg->retry.max_delay_ms, p->saga_id);
    return (int64_t)sg->retry.max_delay_ms * 1000;
}

static bool listed(char **ids, size_t n, const char *id)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(ids[k], id) == 0)
            return true;
    return false;
}

/* Sends this pass's commands of the lane, in seq order, skipping the
 * instances that are backing off or failed in this pass. */
static void lane_send(struct lane *l)
{
    eddy_saga *sg = l->sg;
    char **blocked = calloc(l->n + 1, sizeof *blocked);
    size_t nblocked = 0;
    l->left = 0;
    l->next_due_us = 0;
    for (size_t x = 0; x < l->n; x++) {
        struct pending_cmd *p = &l->rows[l->idx[x]];
        int64_t now = eddy_now_us();
        struct backoff *b = backoff_find(l, p->saga_id);
        pthread_mutex_lock(&sg->mu);
        bool stop = sg->stop;
        pthread_mutex_unlock(&sg->mu);
        bool skip = stop || !blocked || listed(blocked, nblocked, p->saga_id);
        if (!skip && b && b->next_at_us > now) {
            skip = true;
            if (!l->next_due_us || b->next_at_us < l->next_due_us)
                l->next_due_us = b->next_at_us;
        }
        if (skip) {
            l->left++;
            if (blocked && !listed(blocked, nblocked, p->saga_id))
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
        if (rc == EDDY_OK) {
            p->outcome = 1;
            backoff_clear(l, p->saga_id);
            continue;
        }
        const char *message = ce.message[0] ? ce.message : eddy_strerror(rc);
        int64_t due = eddy_now_us() + failure_delay_us(l, p, rc, message);
        backoff_set(l, p->saga_id, due);
        if (!l->next_due_us || due < l->next_due_us)
            l->next_due_us = due;
        p->outcome = 2;
        p->error = eddyi_strdup(message);
        blocked[nblocked++] = p->saga_id;
        l->left++;
    }
    free(blocked);
}

static void *lane_main(void *arg)
{
    eddyi_thread_name("eddy-saga-lane");
    struct lane *l = arg;
    eddy_saga *sg = l->sg;
    eddyi_saga_dispatcher *d = sg->dispatcher;
    pthread_mutex_lock(&sg->mu);
    for (;;) {
        while (l->seen == d->pass && !d->quit)
            pthread_cond_wait(&d->lane_cond, &sg->mu);
        if (l->seen == d->pass)
            break; /* quit, and no pass left to finish */
        l->seen = d->pass;
        bool work = l->n > 0;
        pthread_mutex_unlock(&sg->mu);
        if (work)
            lane_send(l);
        pthread_mutex_lock(&sg->mu);
        if (work && --d->busy == 0)
            pthread_cond_signal(&d->done_cond);
    }
    pthread_mutex_unlock(&sg->mu);
    return NULL;
}

/* The lane of a saga instance: FNV-1a of its id. */
static unsigned lane_of(const char *saga_id, unsigned nlanes)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)saga_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % nlanes;
}

/* ---- the feeder ------------------------------------------------------------- */

/* This pass's page: the one read with the last outcomes if no kick came
 * since, else a fresh one (in a write job after a kick, else on a
 * reader). Returns EDDY_OK or a store error (logged by the caller). */
static int take_page(eddy_saga *sg, struct page *out, eddy_error *err)
{
    eddyi_saga_dispatcher *d = sg->dispatcher;
    pthread_mutex_lock(&sg->mu);
    uint64_t gen = sg->kick_gen;
    pthread_mutex_unlock(&sg->mu);
    if (d->have_next && d->next_gen == gen) {
        *out = d->next;
        d->have_next = false;
        d->next = (struct page){0};
        return EDDY_OK;
    }
    if (d->have_next) {
        page_clear(&d->next);
        d->have_next = false;
    }
    out->err = err;
    if (gen == d->covered_gen)
        return eddyi_saga_cmd_pending_read(sg->store, sg->def->name,
                                           DISPATCH_PAGE, page_row, out, err);
    struct fetch_job j = {.type = sg->def->name, .out = out};
    int rc = eddyi_store_write(sg->store, fetch_job_run, &j, err);
    if (rc == EDDY_OK)
        d->covered_gen = gen;
    return rc;
}

/* One pass: sends what is due. Returns the number of commands still
 * pending (and more when the page was full) and sets `*next_due_us` to the
 * earliest backoff (0: none). */
static size_t dispatch_pass(eddy_saga *sg, int64_t *next_due_us)
{
    eddyi_saga_dispatcher *d = sg->dispatcher;
    struct page pg = {0};
    eddy_error e = {0};
    size_t left = 0;
    *next_due_us = 0;
    if (take_page(sg, &pg, &e) != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: reading commands: %s",
                  sg->def->name, e.message);
        page_clear(&pg);
        return 1;
    }
    if (pg.count == 0)
        return 0; /* nothing pending */
    size_t *idx = calloc(pg.count, sizeof *idx);
    if (!idx) {
        page_clear(&pg); /* nothing sent: the page is read again */
        return 1;
    }
    /* A counting sort of the page into lanes, keeping seq order. */
    unsigned nl = d->nlanes;
    size_t start[DISPATCH_MAX_LANES + 1] = {0}, fill[DISPATCH_MAX_LANES];
    for (size_t i = 0; i < pg.count; i++)
        start[lane_of(pg.rows[i].saga_id, nl) + 1]++;
    for (unsigned l = 0; l < nl; l++)
        start[l + 1] += start[l];
    memcpy(fill, start, sizeof fill);
    for (size_t i = 0; i < pg.count; i++)
        idx[fill[lane_of(pg.rows[i].saga_id, nl)]++] = i;

    pthread_mutex_lock(&sg->mu);
    d->busy = 0;
    for (unsigned l = 0; l < nl; l++) {
        struct lane *ln = &d->lanes[l];
        ln->rows = pg.rows;
        ln->idx = idx + start[l];
        ln->n = start[l + 1] - start[l];
        ln->left = 0;
        ln->next_due_us = 0;
        if (l > 0 && ln->n)
            d->busy++;
    }
    d->pass++;
    d->lanes[0].seen = d->pass; /* lane 0 is this thread */
    pthread_cond_broadcast(&d->lane_cond);
    pthread_mutex_unlock(&sg->mu);
    if (d->lanes[0].n)
        lane_send(&d->lanes[0]);
    pthread_mutex_lock(&sg->mu);
    while (d->busy > 0)
        pthread_cond_wait(&d->done_cond, &sg->mu);
    bool stopping = sg->stop;
    uint64_t gen = sg->kick_gen;
    /* Under the lock: a lane without work in this pass may wake only now
     * and read its `n`. */
    for (unsigned l = 0; l < nl; l++) {
        struct lane *ln = &d->lanes[l];
        left += ln->left;
        if (ln->next_due_us &&
            (!*next_due_us || ln->next_due_us < *next_due_us))
            *next_due_us = ln->next_due_us;
        ln->rows = NULL;
        ln->idx = NULL;
        ln->n = 0;
    }
    pthread_mutex_unlock(&sg->mu);
    free(idx);

    bool tried = false;
    for (size_t i = 0; i < pg.count && !tried; i++)
        tried = pg.rows[i].outcome != 0;
    if (tried) {
        struct page next = {0};
        struct mark_job mj = {.sg = sg, .done = &pg,
                              .next = stopping ? NULL : &next};
        if (eddyi_store_write(sg->store, mark_job_run, &mj, &e) != EDDY_OK) {
            /* The sent ones will be sent again: at-least-once. */
            EDDYI_LOG(EDDY_LOG_WARN, "saga", "%s: recording sent commands: "
                      "%s", sg->def->name, e.message);
            page_clear(&next);
            if (mj.lost)
                eddyi_saga_lease_lost(sg);
            else
                left++;
        } else if (mj.next) {
            d->next = next;
            d->have_next = true;
            d->next_gen = gen;
            d->covered_gen = gen;
        }
    }
    if (pg.count == DISPATCH_PAGE)
        left++; /* maybe more */
    page_clear(&pg);
    return left;
}

static void *feeder_main(void *arg)
{
    eddyi_thread_name("eddy-saga-feed");
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

        /* Only the holder of the command lease sends (saga_lease.c); for
         * the others a pass finds nothing to do. */
        int64_t next_due = 0;
        size_t left = eddyi_saga_lease_hold(sg) ? dispatch_pass(sg, &next_due)
                                                : 0;

        pthread_mutex_lock(&sg->mu);
        if (left == 0) {
            sg->idle_gen = gen;
            pthread_cond_broadcast(&sg->cond);
        }
        int64_t wait_ms = DISPATCH_POLL_MS;
        if (next_due) {
            int64_t ms = (next_due - eddy_now_us()) / 1000 + 1;
            if (ms < wait_ms)
                wait_ms = ms < 1 ? 1 : ms;
        }
        if (!sg->dispatch_kick && !sg->stop)
            eddyi_cqrs_wait_ms(&sg->cond, &sg->mu, wait_ms);
        pthread_mutex_unlock(&sg->mu);
    }
    page_clear(&sg->dispatcher->next);
    sg->dispatcher->have_next = false;
    eddyi_saga_lease_release(sg);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------ */

static void lanes_quit(eddy_saga *sg)
{
    eddyi_saga_dispatcher *d = sg->dispatcher;
    pthread_mutex_lock(&sg->mu);
    d->quit = true;
    pthread_cond_broadcast(&d->lane_cond);
    pthread_mutex_unlock(&sg->mu);
    for (unsigned l = 0; l < d->nlanes; l++) {
        struct lane *ln = &d->lanes[l];
        if (ln->started)
            pthread_join(ln->thread, NULL);
        ln->started = false;
        for (size_t i = 0; i < ln->backoff_count; i++)
            free(ln->backoffs[i].saga_id);
        free(ln->backoffs);
        ln->backoffs = NULL;
        ln->backoff_count = 0;
    }
}

static void dispatcher_free(eddy_saga *sg)
{
    eddyi_saga_dispatcher *d = sg->dispatcher;
    pthread_cond_destroy(&d->lane_cond);
    pthread_cond_destroy(&d->done_cond);
    free(d);
    sg->dispatcher = NULL;
}

int eddyi_saga_dispatch_start(eddy_saga *sg, eddy_error *err)
{
    eddyi_saga_dispatcher *d = calloc(1, sizeof *d);
    if (!d)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    if (pthread_cond_init(&d->lane_cond, NULL) != 0) {
        free(d);
        return eddyi_error(err, EDDY_ENOMEM, "saga: cannot create a "
                           "condition");
    }
    if (pthread_cond_init(&d->done_cond, NULL) != 0) {
        pthread_cond_destroy(&d->lane_cond);
        free(d);
        return eddyi_error(err, EDDY_ENOMEM, "saga: cannot create a "
                           "condition");
    }
    unsigned n = sg->opts.dispatchers ? sg->opts.dispatchers
                                      : DEFAULT_DISPATCHERS;
    d->nlanes = n > DISPATCH_MAX_LANES ? DISPATCH_MAX_LANES : n;
    sg->dispatcher = d;
    uint64_t seed = (uint64_t)eddy_now_us() ^ (uint64_t)(uintptr_t)sg;
    for (unsigned l = 0; l < d->nlanes; l++) {
        struct lane *ln = &d->lanes[l];
        ln->sg = sg;
        ln->rng = seed + 0x9E3779B97F4A7C15ULL * (l + 1);
        if (l == 0)
            continue; /* the feeder's own */
        if (pthread_create(&ln->thread, NULL, lane_main, ln) != 0)
            goto fail;
        ln->started = true;
    }
    if (pthread_create(&d->feeder, NULL, feeder_main, sg) != 0)
        goto fail;
    d->feeder_started = true;
    return EDDY_OK;
fail:
    lanes_quit(sg);
    dispatcher_free(sg);
    return eddyi_error(err, EDDY_ENOMEM, "saga %s: cannot start its command "
                       "dispatcher threads", sg->def->name);
}

void eddyi_saga_dispatch_stop(eddy_saga *sg)
{
    eddyi_saga_dispatcher *d = sg->dispatcher;
    if (!d)
        return;
    if (d->feeder_started)
        pthread_join(d->feeder, NULL);
    d->feeder_started = false;
    lanes_quit(sg);
    dispatcher_free(sg);
}
