/*
 * src/store/subscription.c - live subscriptions to the global log: catch up
 * in pages, then sleep on the store's commit notification and continue.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/internal.h"
#include "store_impl.h"

/* How often a waiting subscription looks at the file for appends made by
 * other processes (commits through this handle wake it at once). */
#define FOREIGN_POLL_MS 1000

struct eddy_store_subscription {
    eddy_store *store;
    eddy_record_fn fn;
    eddy_progress_fn progress;
    void *user;
    eddyi_read_spec filter; /* types and prefixes only; copied per pass */
    pthread_t thread;
    bool joined;
    atomic_bool stop;     /* set by stop(); read by the thread */
    atomic_bool running;
    _Atomic int64_t position; /* last record delivered */
    int status;           /* written by the thread before it ends */
    eddy_error err;
};

/* Waits until the head passes `after`, or stop / close. Returns false when
 * the subscription must end. */
static bool wait_head(eddy_store_subscription *sub, int64_t after)
{
    eddy_store *s = sub->store;
    bool go = true;
    eddyi_store_watch(s);
    pthread_mutex_lock(&s->mu);
    while (s->head <= after) {
        if (atomic_load(&sub->stop) || s->stopping) {
            go = false;
            break;
        }
        struct timespec end;
        clock_gettime(CLOCK_REALTIME, &end);
        end.tv_sec += FOREIGN_POLL_MS / 1000;
        if (pthread_cond_timedwait(&s->head_cond, &s->mu, &end) == ETIMEDOUT &&
            s->head <= after) {
            pthread_mutex_unlock(&s->mu);
            int64_t h = 0;
            int rc = s->backend->head(s->impl, &h, NULL);
            pthread_mutex_lock(&s->mu);
            if (rc == EDDY_OK && h > s->head)
                s->head = h;
        }
    }
    if (atomic_load(&sub->stop) || s->stopping)
        go = false;
    pthread_mutex_unlock(&s->mu);
    return go;
}

/*
 * After a read error that can pass (EDDY_ECONNECT: the server is unreachable
 * or restarting; EDDY_EBUSY): waits `*backoff_ms` (doubling, up to 1 s),
 * woken early only by stop or close. Returns false when the subscription
 * must end instead. The backend has logged the loss.
 */
static bool wait_retry(eddy_store_subscription *sub, int code, int *backoff_ms)
{
    if (code != EDDY_ECONNECT && code != EDDY_EBUSY)
        return false;
    eddy_store *s = sub->store;
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += *backoff_ms / 1000;
    end.tv_nsec += (long)(*backoff_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    *backoff_ms = *backoff_ms * 2 > 1000 ? 1000 : *backoff_ms * 2;
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&sub->stop) && !s->stopping &&
           pthread_cond_timedwait(&s->head_cond, &s->mu, &end) != ETIMEDOUT)
        ;
    bool go = !atomic_load(&sub->stop) && !s->stopping;
    pthread_mutex_unlock(&s->mu);
    return go;
}

static void *sub_main(void *arg)
{
    eddyi_thread_name("eddy-store-sub");
    eddy_store_subscription *sub = arg;
    eddy_store *s = sub->store;
    int64_t scanned = atomic_load(&sub->position); /* everything <= is seen */
    int backoff_ms = 50;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int64_t head_before = s->head;
        pthread_mutex_unlock(&s->mu);
        int64_t pass_start = scanned;

        eddyi_read_spec spec = {.min_position = scanned + 1};
        eddy_cursor *c = NULL;
        int rc = eddyi_read_spec_copy_filter(&spec, &sub->filter, &sub->err);
        if (rc == EDDY_OK)
            rc = eddyi_cursor_open(s, &spec, scanned + 1, 0, &c, &sub->err);
        eddyi_read_spec_clear(&spec);
        if (rc != EDDY_OK) {
            sub->status = rc;
            break;
        }
        eddy_record rec;
        while (!atomic_load(&sub->stop) && eddy_cursor_next(c, &rec, &sub->err)) {
            int r = sub->fn(&rec, sub->user);
            atomic_store(&sub->position, rec.position);
            scanned = rec.position;
            if (r != 0) {
                sub->status = r;
                eddyi_error(&sub->err, r,
                            "subscription callback returned %d at "
                            "position %lld", r, (long long)rec.position);
                break;
            }
        }
        rc = eddy_cursor_error(c);
        eddy_cursor_free(c);
        if (sub->status != EDDY_OK)
            break;
        if (rc != EDDY_OK && wait_retry(sub, rc, &backoff_ms))
            continue; /* from `scanned` again: nothing twice, nothing lost */
        if (rc != EDDY_OK) {
            sub->status = rc;
            EDDYI_LOG(EDDY_LOG_ERROR, "store", "subscription ended: %s",
                      sub->err.message);
            break;
        }
        if (atomic_load(&sub->stop))
            break;
        backoff_ms = 50;
        /* Everything committed before head_before was visible to the read:
         * the records the filter skipped up to there are behind us. The
         * end of a pass is reported even when its last record was the head
         * (a consumer may batch per pass). */
        if (head_before > scanned)
            scanned = head_before;
        if (scanned > pass_start && sub->progress)
            sub->progress(scanned, sub->user);
        if (!wait_head(sub, scanned))
            break;
    }
    if (sub->status == EDDY_OK && s->stopping && !atomic_load(&sub->stop)) {
        sub->status = EDDY_ESTOPPED;
        eddyi_error(&sub->err, EDDY_ESTOPPED, "the store was closed");
    }
    atomic_store(&sub->running, false);
    return NULL;
}

int eddy_store_subscribe(eddy_store *s, int64_t after_position,
                         eddy_record_fn fn, void *user,
                         const eddy_store_subscribe_options *opts,
                         eddy_store_subscription **out, eddy_error *err)
{
    if (!s || !fn || !out)
        return eddyi_error(err, EDDY_EINVAL, "subscribe: NULL argument");
    if (after_position < 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "subscribe: after_position %lld is negative",
                           (long long)after_position);
    eddy_store_subscription *sub = calloc(1, sizeof *sub);
    if (!sub)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    sub->store = s;
    sub->fn = fn;
    sub->user = user;
    atomic_init(&sub->stop, false);
    atomic_init(&sub->running, true);
    atomic_init(&sub->position, after_position);
    int rc = EDDY_OK;
    bool all = false;
    if (opts) {
        sub->progress = opts->progress;
        rc = eddyi_read_spec_set_types(&sub->filter, opts->types,
                                       opts->type_count, err);
        if (rc == EDDY_OK)
            rc = eddyi_read_spec_add_patterns(&sub->filter, opts->patterns,
                                              opts->pattern_count, &all, err);
        if (rc != EDDY_OK)
            goto fail;
        if (all) /* "*" among the patterns: no filter */
            eddyi_read_spec_clear(&sub->filter);
    }
    if (pthread_create(&sub->thread, NULL, sub_main, sub) != 0) {
        rc = eddyi_error(err, EDDY_ENOMEM, "cannot start a subscription thread");
        goto fail;
    }
    *out = sub;
    return EDDY_OK;
fail:
    eddyi_read_spec_clear(&sub->filter);
    free(sub);
    return rc;
}

int eddy_store_subscription_stop(eddy_store_subscription *sub, eddy_error *err)
{
    if (!sub)
        return eddyi_error(err, EDDY_EINVAL, "subscription is NULL");
    if (!sub->joined) {
        eddy_store *s = sub->store;
        pthread_mutex_lock(&s->mu);
        atomic_store(&sub->stop, true);
        pthread_cond_broadcast(&s->head_cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(sub->thread, NULL);
        sub->joined = true;
    }
    if (sub->status != EDDY_OK && err)
        *err = sub->err;
    return sub->status;
}

int64_t eddy_store_subscription_position(const eddy_store_subscription *sub)
{
    return sub ? atomic_load(&((eddy_store_subscription *)sub)->position) : 0;
}

bool eddy_store_subscription_running(const eddy_store_subscription *sub)
{
    return sub && atomic_load(&((eddy_store_subscription *)sub)->running);
}

void eddy_store_subscription_free(eddy_store_subscription *sub)
{
    if (!sub)
        return;
    eddy_store_subscription_stop(sub, NULL);
    eddyi_read_spec_clear(&sub->filter);
    free(sub);
}
