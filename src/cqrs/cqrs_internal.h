/*
 * src/cqrs/cqrs_internal.h - what the cqrs files share (projections,
 * sagas): timed waits of their background threads. Not public.
 *
 * The cqrs layer includes only headers of the layers below it: core,
 * store (its public API and the state operations of src/store/state_*.h),
 * reliability and es (their public headers).
 */
#ifndef EDDY_SRC_CQRS_INTERNAL_H
#define EDDY_SRC_CQRS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "eddy/error.h"

/* Event-type patterns: see src/core/pattern.h. */
#include "../core/pattern.h"

/* Initialises `cond` on the monotonic clock (a wall-clock jump neither
 * stalls nor hurries a background thread). Returns 0 or an errno value. */
static inline int eddyi_cqrs_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cond, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

/* Waits on a condition made by eddyi_cqrs_cond_init for at most `ms`
 * milliseconds (`mu` held, as pthread_cond_timedwait). */
static inline void eddyi_cqrs_wait_ms(pthread_cond_t *cond,
                                      pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, mu, &ts);
}

#endif
