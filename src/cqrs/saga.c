/*
 * src/cqrs/saga.c - durable sagas: a saga type's definition, start, stop
 * and idle wait.
 *
 * Threads of one running saga type (each part in its own file):
 *   - its durable subscription (TRANSACTIONAL; one worker by default, so
 *     store order): eddyi_saga_handle_event (saga_ctx.c) runs on the
 *     store's writer thread and commits the instance, its queued commands
 *     and its deadlines with the checkpoint;
 *   - the command dispatcher (saga_dispatch.c): a feeder thread and a
 *     fixed pool of lanes, created here, that send the queued commands;
 *   - the timer (saga_timer.c): turns due deadlines into events.
 * The caller's thread runs start, stop and the queries (saga_query.c).
 *
 * A name runs once per store handle (a claim, core/lifecycle.h); stop runs
 * once however many threads call it (eddyi_stop).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/retry.h"
#include "../store/state_durable.h"
#include "../store/store_internal.h"
#include "cqrs_internal.h"
#include "saga_internal.h"

#define DEFAULT_TIMER_POLL_MS 1000
/* As a durable subscription's (eddy/durable.h). */
#define DEFAULT_LEASE_MS 10000

void eddyi_saga_kick(eddy_saga *sg, bool dispatch, bool timer)
{
    pthread_mutex_lock(&sg->mu);
    if (dispatch) {
        sg->dispatch_kick = true;
        sg->kick_gen++;
    }
    sg->timer_kick |= timer;
    pthread_cond_broadcast(&sg->cond);
    pthread_mutex_unlock(&sg->mu);
}

/* ---- the definition ------------------------------------------------------- */

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

static int record_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    eddy_saga *sg = arg;
    return eddyi_subs_record(txn, sg->def->name, sg->pattern, "saga", err);
}

/* Starts the durable subscription: only the saga's own types reach it;
 * every other event is skipped without a write job or an inbox row. */
static int start_subscription(eddy_saga *sg, eddy_error *err)
{
    const eddy_saga_def *def = sg->def;
    size_t ntypes = def->start_count + def->handled_count + 1;
    const char **types = calloc(ntypes, sizeof *types);
    if (!types)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory starting saga %s",
                           def->name);
    for (size_t i = 0; i < def->start_count; i++)
        types[i] = def->start_types[i];
    for (size_t i = 0; i < def->handled_count; i++)
        types[def->start_count + i] = def->handled_types[i];
    types[ntypes - 1] = EDDY_SAGA_TIMEOUT_TYPE;
    eddy_durable_options o = {
        .name = def->name,
        .patterns = types, /* exact types: each is an exact pattern */
        .pattern_count = ntypes,
        .mode = EDDY_DELIVERY_TRANSACTIONAL,
        .txn_handler = eddyi_saga_handle_event,
        .user = sg,
        .workers = sg->opts.workers ? sg->opts.workers : 1,
        .retry = {.max_attempts = sg->opts.event_max_attempts},
        .partitions = sg->opts.partitions,
        .lease_ms = sg->opts.lease_ms,
    };
    sg->durable = eddy_durable_start(sg->store, &o, err);
    free(types); /* copied by the subscription */
    return sg->durable ? EDDY_OK : (err && err->code ? err->code : EDDY_EIO);
}

/* ---- start / stop ------------------------------------------------------------ */

/* Ends the threads that run (sg->stop first), in the order they feed each
 * other: the subscription, then the dispatcher and the timer. */
static int stop_parts(eddy_saga *sg, eddy_error *err)
{
    int rc = sg->durable ? eddy_durable_stop(sg->durable, err) : EDDY_OK;
    pthread_mutex_lock(&sg->mu);
    sg->stop = true;
    pthread_cond_broadcast(&sg->cond);
    pthread_mutex_unlock(&sg->mu);
    eddyi_saga_dispatch_stop(sg);
    eddyi_saga_timer_join(sg);
    return rc;
}

static void saga_destroy(eddy_saga *sg)
{
    eddy_durable_free(sg->durable);
    eddyi_claim_release(sg->claim);
    eddyi_stop_destroy(&sg->stopper);
    pthread_cond_destroy(&sg->cond);
    pthread_mutex_destroy(&sg->mu);
    free(sg->pattern);
    free(sg->lease_key);
    free(sg);
}

eddy_saga *eddy_saga_start(eddy_store *store, const eddy_saga_def *def,
                           eddy_command_bus *commands,
                           const eddy_saga_options *opts, eddy_error *err)
{
    if (!store || !commands) {
        eddyi_error(err, EDDY_EINVAL, "saga: %s is NULL",
                    !store ? "the store" : "the command bus");
        return NULL;
    }
    if (check_def(def, err) != EDDY_OK)
        return NULL;
    eddy_saga *sg = calloc(1, sizeof *sg);
    if (!sg) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&sg->mu, NULL) != 0) {
        free(sg);
        eddyi_error(err, EDDY_ENOMEM, "saga: cannot create a mutex");
        return NULL;
    }
    if (eddyi_cqrs_cond_init(&sg->cond) != 0) {
        pthread_mutex_destroy(&sg->mu);
        free(sg);
        eddyi_error(err, EDDY_ENOMEM, "saga: cannot create a condition");
        return NULL;
    }
    eddyi_stop_init(&sg->stopper);
    sg->store = store;
    sg->def = def;
    sg->commands = commands;
    /* The dispatcher retries transactional commands through the bus: each
     * in a transaction of its own on this store. */
    eddy_command_bus_set_store(commands, store);
    if (opts)
        sg->opts = *opts;
    if (!sg->opts.timer_poll_ms)
        sg->opts.timer_poll_ms = DEFAULT_TIMER_POLL_MS;
    char who[300];
    snprintf(who, sizeof who, "saga %.200s command_retry", def->name);
    if (eddyi_retry_resolve(&sg->opts.command_retry, &sg->retry, who, err) !=
        EDDY_OK)
        goto fail;
    sg->pattern = join_types(def);
    size_t klen = strlen(def->name) + sizeof "#commands";
    sg->lease_key = malloc(klen);
    if (!sg->pattern || !sg->lease_key) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(sg->lease_key, klen, "%s#commands", def->name);
    eddy_uuid7(sg->member);
    eddyi_owner_self(sg->owner, sizeof sg->owner);
    sg->lease_us = (int64_t)(sg->opts.lease_ms ? sg->opts.lease_ms
                                               : DEFAULT_LEASE_MS) * 1000;
    if (eddyi_claim_take(store, "saga", def->name, &sg->claim, err) !=
        EDDY_OK)
        goto fail;
    if (eddyi_store_write(store, record_job_run, sg, err) != EDDY_OK)
        goto fail;
    if (start_subscription(sg, err) != EDDY_OK ||
        eddyi_saga_dispatch_start(sg, err) != EDDY_OK ||
        eddyi_saga_timer_start(sg, err) != EDDY_OK)
        goto fail;
    return sg;
fail:
    if (sg->durable || sg->dispatcher || sg->timer_started)
        stop_parts(sg, NULL);
    saga_destroy(sg);
    return NULL;
}

int eddy_saga_stop(eddy_saga *sg, eddy_error *err)
{
    if (!sg)
        return EDDY_OK;
    if (eddyi_stop_begin(&sg->stopper)) {
        eddy_error e = {0};
        int rc = stop_parts(sg, &e);
        eddyi_claim_release(sg->claim);
        sg->claim = NULL;
        eddyi_stop_end(&sg->stopper, rc, &e);
    }
    return eddyi_stop_wait(&sg->stopper, err);
}

void eddy_saga_free(eddy_saga *sg)
{
    if (!sg)
        return;
    eddy_saga_stop(sg, NULL);
    saga_destroy(sg);
}

int eddy_saga_wait_idle(eddy_saga *sg, int64_t position, int timeout_ms)
{
    if (!sg || eddyi_stop_requested(&sg->stopper))
        return EDDY_ESTOPPED;
    int64_t t0 = eddy_now_us();
    int rc = eddy_durable_wait_idle(sg->durable, position, timeout_ms);
    if (rc != EDDY_OK)
        return rc;
    pthread_mutex_lock(&sg->mu);
    /* A pass starting after now, reading after this kick, must find
     * nothing pending. */
    uint64_t gen = sg->pass_gen;
    sg->dispatch_kick = true;
    sg->kick_gen++;
    pthread_cond_broadcast(&sg->cond);
    while (sg->idle_gen <= gen && !sg->stop) {
        int64_t left_ms = timeout_ms < 0
                              ? 100
                              : timeout_ms - (eddy_now_us() - t0) / 1000;
        if (left_ms <= 0) {
            rc = EDDY_ETIMEDOUT;
            break;
        }
        eddyi_cqrs_wait_ms(&sg->cond, &sg->mu, left_ms < 100 ? left_ms : 100);
    }
    if (rc == EDDY_OK && sg->stop)
        rc = EDDY_ESTOPPED;
    pthread_mutex_unlock(&sg->mu);
    return rc;
}
