/*
 * src/core/retry.c - the one retry policy (eddy/retry.h): defaults,
 * validation, backoff with jitter.
 */
#include <string.h>

#include "internal.h"
#include "retry.h"

#define MAX_ATTEMPTS_LIMIT 1000000u

static int check(const eddy_retry_policy *r, const char *who, eddy_error *err)
{
    const char *sep = who && *who ? ": " : "";
    who = who ? who : "";
    if (r->multiplier != 0 && !(r->multiplier >= 1.0 && r->multiplier <= 1e6))
        return eddyi_error(err, EDDY_EINVAL,
                           "%s%sretry multiplier %g must be between 1 and "
                           "1e6", who, sep, r->multiplier);
    if (r->jitter > 1.0 || r->jitter != r->jitter)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s%sretry jitter %g must be at most 1", who, sep,
                           r->jitter);
    if (r->max_attempts > MAX_ATTEMPTS_LIMIT)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s%sretry max_attempts %u is above %u", who, sep,
                           r->max_attempts, MAX_ATTEMPTS_LIMIT);
    if (r->max_delay_ms && r->initial_delay_ms > r->max_delay_ms)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s%sretry initial_delay_ms %u is above "
                           "max_delay_ms %u", who, sep, r->initial_delay_ms,
                           r->max_delay_ms);
    return EDDY_OK;
}

int eddy_retry_policy_check(const eddy_retry_policy *policy, eddy_error *err)
{
    static const eddy_retry_policy zero;
    return check(policy ? policy : &zero, NULL, err);
}

int eddyi_retry_resolve(const eddy_retry_policy *in, eddy_retry_policy *out,
                        const char *who, eddy_error *err)
{
    static const eddy_retry_policy zero;
    if (!in)
        in = &zero;
    int rc = check(in, who, err);
    if (rc != EDDY_OK)
        return rc;
    *out = *in;
    if (!out->max_attempts)
        out->max_attempts = EDDY_RETRY_DEFAULT_MAX_ATTEMPTS;
    if (!out->initial_delay_ms)
        out->initial_delay_ms = EDDY_RETRY_DEFAULT_INITIAL_DELAY_MS;
    if (out->multiplier == 0)
        out->multiplier = EDDY_RETRY_DEFAULT_MULTIPLIER;
    if (!out->max_delay_ms)
        out->max_delay_ms = EDDY_RETRY_DEFAULT_MAX_DELAY_MS;
    if (out->max_delay_ms < out->initial_delay_ms)
        out->max_delay_ms = out->initial_delay_ms;
    if (out->jitter == 0)
        out->jitter = EDDY_RETRY_DEFAULT_JITTER;
    return EDDY_OK;
}

static double delay_ms(const eddy_retry_policy *p, unsigned n)
{
    double ms = p->initial_delay_ms;
    for (unsigned i = 1; i < n && ms < p->max_delay_ms; i++)
        ms *= p->multiplier;
    return ms > p->max_delay_ms ? p->max_delay_ms : ms;
}

uint64_t eddy_retry_delay_ms(const eddy_retry_policy *policy, unsigned n)
{
    eddy_retry_policy p;
    if (eddyi_retry_resolve(policy, &p, NULL, NULL) != EDDY_OK)
        return 0;
    return (uint64_t)delay_ms(&p, n ? n : 1);
}

uint64_t eddyi_xorshift(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

int64_t eddyi_retry_delay_us(const eddy_retry_policy *p, unsigned n,
                             uint64_t *rng)
{
    double ms = delay_ms(p, n ? n : 1);
    if (p->jitter > 0) {
        double r = (double)(eddyi_xorshift(rng) >> 11) / (double)(1ULL << 53);
        ms *= 1.0 - p->jitter * r;
    }
    return (int64_t)(ms * 1000.0);
}

static bool default_retryable(int code)
{
    return code != EDDY_EINVAL && code != EDDY_EPARSE && code != EDDY_ESCHEMA;
}

bool eddyi_retry_again(const eddy_retry_policy *p, int code,
                       unsigned attempts)
{
    if (attempts >= p->max_attempts)
        return false;
    return p->retryable ? p->retryable(code, p->retryable_user)
                        : default_retryable(code);
}
