/* src/core/log.c - the pluggable, process-wide log callback. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "eddy/error.h"
#include "internal.h"

/* The callback and its user pointer change together under a mutex; the hot
 * path only reads `min_level`, and takes the mutex only to log for real. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static eddy_log_fn log_fn;
static void *log_user;
static atomic_int min_level = EDDY_LOG_OFF;

void eddy_log_set(eddy_log_fn fn, eddy_log_level level, void *user)
{
    pthread_mutex_lock(&lock);
    log_fn = fn;
    log_user = user;
    atomic_store(&min_level, fn ? (int)level : EDDY_LOG_OFF);
    pthread_mutex_unlock(&lock);
}

int eddyi_log_enabled(eddy_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

void eddyi_log(eddy_log_level level, const char *component, const char *fmt, ...)
{
    if (!eddyi_log_enabled(level))
        return;
    pthread_mutex_lock(&lock);
    eddy_log_fn fn = log_fn;
    void *user = log_user;
    pthread_mutex_unlock(&lock);
    if (!fn)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(level, component, msg, user);
}

const char *eddy_log_level_name(eddy_log_level level)
{
    switch (level) {
    case EDDY_LOG_DEBUG: return "debug";
    case EDDY_LOG_INFO: return "info";
    case EDDY_LOG_WARN: return "warn";
    case EDDY_LOG_ERROR: return "error";
    case EDDY_LOG_OFF: return "off";
    }
    return "?";
}

void eddy_log_stderr(eddy_log_level level, const char *component,
                     const char *message, void *user)
{
    (void)user;
    /* One fprintf per line: stdio locks the stream, so lines never mix. */
    fprintf(stderr, "eddy %s %s: %s\n", eddy_log_level_name(level),
            component ? component : "-", message);
}
