/*
 * eddy/retry.h - one retry policy for everything in eddy that retries.
 *
 * Durable handlers (eddy/durable.h), the outbox relay (eddy/outbox.h), the
 * saga command dispatcher (eddy/saga.h) and the transports' redelivery
 * (eddy/transport.h) all persist or track an attempt count, and wait
 * between attempts with this exponential backoff; the same fields mean the
 * same thing everywhere.
 */
#ifndef EDDY_RETRY_H
#define EDDY_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "eddy/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Says whether error `code` (a handler's or a publisher's return value) is
 * worth retrying. Runs on the retrying thread; must be quick. */
typedef bool (*eddy_retryable_fn)(int code, void *user);

#define EDDY_RETRY_DEFAULT_MAX_ATTEMPTS 5
#define EDDY_RETRY_DEFAULT_INITIAL_DELAY_MS 100
#define EDDY_RETRY_DEFAULT_MULTIPLIER 2.0
#define EDDY_RETRY_DEFAULT_MAX_DELAY_MS 30000
#define EDDY_RETRY_DEFAULT_JITTER 0.2

/*
 * A retry policy: plain data, copied by whoever takes it; the zero value
 * gives the defaults above. The delay before retry n (n = 1 after the first
 * failure) is
 *     min(max_delay_ms, initial_delay_ms * multiplier^(n-1)) * (1 - jitter*r)
 * with r uniform in [0, 1): jitter only shortens a delay, never beyond the
 * cap. After `max_attempts` failed attempts (or an error `retryable` says
 * is not worth retrying) the item is given up: a durable handler's event
 * goes to the dead letters; an outbox row or saga command stays pending
 * and is reported (they never drop what they must deliver, see their
 * headers).
 */
typedef struct eddy_retry_policy {
    unsigned max_attempts;     /* attempts in all, the first included;
                                  0: 5; 1: no retry */
    unsigned initial_delay_ms; /* 0: 100 */
    double multiplier;         /* 0: 2.0; must be >= 1 */
    unsigned max_delay_ms;     /* 0: 30000 */
    double jitter;             /* 0: 0.2; negative: none; at most 1 */
    /* NULL: every error is retryable except EDDY_EINVAL, EDDY_EPARSE and
     * EDDY_ESCHEMA (a malformed event fails the same way every time). */
    eddy_retryable_fn retryable;
    void *retryable_user;
} eddy_retry_policy;

/*
 * Checks `policy` (NULL: the defaults): EDDY_OK, or EDDY_EINVAL with `err`
 * naming the field ("retry multiplier 0.5 must be >= 1"). Thread-safe.
 */
int eddy_retry_policy_check(const eddy_retry_policy *policy, eddy_error *err);

/*
 * The delay before retry `n` (n >= 1) under `policy` (NULL: the defaults),
 * in milliseconds, without jitter: what the policy waits at most.
 * Thread-safe.
 */
uint64_t eddy_retry_delay_ms(const eddy_retry_policy *policy, unsigned n);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_RETRY_H */
