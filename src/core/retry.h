/*
 * src/core/retry.h - the shared retry maths (eddy/retry.h) for the layers
 * that retry: reliability (durable handlers, outbox relay), cqrs (saga
 * dispatcher) and transport (redelivery). Not public.
 */
#ifndef EDDY_SRC_CORE_RETRY_H
#define EDDY_SRC_CORE_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "eddy/retry.h"

/*
 * Copies `in` (NULL: the defaults) to `out` with every zero field replaced
 * by its default, after eddy_retry_policy_check. `who` prefixes the error
 * message ("durable \"payment\""). Returns EDDY_OK or EDDY_EINVAL.
 */
int eddyi_retry_resolve(const eddy_retry_policy *in, eddy_retry_policy *out,
                        const char *who, eddy_error *err);

/* The jittered delay before retry `n` (n >= 1) of a resolved policy, in
 * microseconds. `rng` is the caller's xorshift state (one per thread; any
 * non-zero seed). */
int64_t eddyi_retry_delay_us(const eddy_retry_policy *p, unsigned n,
                             uint64_t *rng);

/* Whether a resolved policy retries error `code` after `attempts` failed
 * attempts. */
bool eddyi_retry_again(const eddy_retry_policy *p, int code,
                       unsigned attempts);

/* A xorshift64 step (a cheap per-thread generator for jitter). */
uint64_t eddyi_xorshift(uint64_t *state);

#endif
