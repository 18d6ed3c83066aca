/* src/core/time.c - microsecond UTC time: the clock, RFC 3339 in and out. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "eddy/event.h"
#include "internal.h"

int64_t eddy_now_us(void)
{
    struct timespec ts;
    /* CLOCK_REALTIME cannot fail with a valid clock id and pointer. */
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes `v` as `n` decimal digits, then `sep`; returns the end. */
static char *put_digits(char *p, int v, int n, char sep)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    p[n] = sep;
    return p + n + 1;
}

char *eddy_time_format(int64_t time_us, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    /* Floor division, so that times before 1970 keep a positive fraction. */
    int64_t secs = time_us / 1000000;
    int64_t frac = time_us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        /* Only for times beyond what struct tm holds; write something that
         * eddy_time_parse rejects rather than garbage. */
        snprintf(buf, size, "out-of-range");
        return buf;
    }
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999 || size < EDDY_TIME_STRLEN) {
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)frac);
        return buf;
    }
    /* The same text digit by digit: every encoded event has a time, and
     * snprintf was a sixth of the encoder's time. */
    char *p = buf;
    p = put_digits(p, year, 4, '-');
    p = put_digits(p, tm.tm_mon + 1, 2, '-');
    p = put_digits(p, tm.tm_mday, 2, 'T');
    p = put_digits(p, tm.tm_hour, 2, ':');
    p = put_digits(p, tm.tm_min, 2, ':');
    p = put_digits(p, tm.tm_sec, 2, '.');
    p = put_digits(p, (int)frac, 6, 'Z');
    *p = '\0';
    return buf;
}

/* Reads exactly `n` decimal digits at *p into *out and advances *p. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/*
 * RFC 3339 section 5.6 date-time, strictly: full date, "T", full time with
 * seconds, optional fraction, then "Z" or a numeric offset. A leap second
 * (:60) is accepted and counts as the first second of the next minute, as
 * timegm() normalises it.
 */
int eddy_time_parse(const char *text, int64_t *time_us)
{
    if (!text || !time_us)
        return EDDY_EINVAL;
    const char *p = text;
    int year, mon, mday, hour, min, sec;
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) ||
        *p++ != '-' || !digits(&p, 2, &mday))
        return EDDY_EINVAL;
    if (*p != 'T' && *p != 't')
        return EDDY_EINVAL;
    p++;
    if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min) ||
        *p++ != ':' || !digits(&p, 2, &sec))
        return EDDY_EINVAL;
    if (mon < 1 || mon > 12 || mday < 1 || mday > days_in_month(year, mon) ||
        hour > 23 || min > 59 || sec > 60)
        return EDDY_EINVAL;

    int64_t usec = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 6)
                usec = usec * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return EDDY_EINVAL;
        for (; n < 6; n++)
            usec *= 10;
    }

    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh, om;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om))
            return EDDY_EINVAL;
        if (oh > 23 || om > 59)
            return EDDY_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else {
        return EDDY_EINVAL;
    }
    if (*p != '\0')
        return EDDY_EINVAL;

    /* Days since 1970-01-01 of the proleptic Gregorian date (Howard
     * Hinnant's days_from_civil): exact for years 0000..9999, and far
     * cheaper than timegm, which goes through the time zone machinery. */
    int y = year - (mon <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + mday - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    int64_t t = days * 86400 + hour * 3600 + min * 60 + sec;
    *time_us = (t - (int64_t)offset_min * 60) * 1000000 + usec;
    return EDDY_OK;
}

uint64_t eddyi_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
