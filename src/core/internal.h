/*
 * src/core/internal.h - helpers shared by eddy's source files; not public.
 * Internal names use the `eddyi_` prefix.
 */
#ifndef EDDY_SRC_CORE_INTERNAL_H
#define EDDY_SRC_CORE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "eddy/error.h"

#define EDDYI_UNUSED(x) ((void)(x))
#define EDDYI_LIKELY(x) __builtin_expect(!!(x), 1)
#define EDDYI_UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * Fills `err` (may be NULL) with `code` and a printf-style message and
 * returns `code`, so that `return eddyi_error(err, EDDY_EINVAL, "...");`
 * reads naturally.
 */
int eddyi_error(eddy_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int eddyi_verror(eddy_error *err, int code, const char *fmt, va_list ap);

/* Logging through the installed callback; cheap when nothing is installed or
 * the level is below the threshold (one relaxed atomic load). */
int eddyi_log_enabled(eddy_log_level level);
void eddyi_log(eddy_log_level level, const char *component, const char *fmt,
               ...) __attribute__((format(printf, 3, 4)));

#define EDDYI_LOG(level, component, ...)                                       \
    do {                                                                       \
        if (eddyi_log_enabled(level))                                          \
            eddyi_log(level, component, __VA_ARGS__);                          \
    } while (0)

/* A monotonic clock in nanoseconds, for measuring durations. */
uint64_t eddyi_clock_ns(void);

/* Names the calling thread (printf-style; cut to the 15 bytes the kernel
 * keeps), so that top -H, perf and gdb tell eddy's threads apart: every
 * thread eddy starts calls it first, with an "eddy-" prefix. */
void eddyi_thread_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* strdup that accepts NULL (returns NULL). Returns NULL when out of memory
 * too: callers check `src && !copy`. */
char *eddyi_strdup(const char *src);

/* True when `s` (of `len` bytes) is valid UTF-8 with no NUL bytes. */
int eddyi_utf8_valid(const char *s, size_t len);

/*
 * A growing byte buffer; the zero value is empty. Once out of memory,
 * `failed` is set and every later put is ignored: check it once at the
 * end. There is always room for a NUL after the `n` bytes (not written).
 * `p` is the caller's to free (eddyi_buf_free). One thread at a time.
 */
typedef struct eddyi_buf {
    char *p;
    size_t n, cap;
    bool failed;
} eddyi_buf;

/* Makes room for `more` bytes (and a NUL) after `n`; false when out of
 * memory (then `failed` is set). */
bool eddyi_buf_reserve(eddyi_buf *b, size_t more);
void eddyi_buf_free(eddyi_buf *b);

/* Appends `len` bytes (inline: the encoders put many small pieces). */
static inline void eddyi_buf_put(eddyi_buf *b, const void *data, size_t len)
{
    if (b->failed || (b->cap - b->n <= len && !eddyi_buf_reserve(b, len)))
        return;
    if (len)
        memcpy(b->p + b->n, data, len);
    b->n += len;
}

#endif
