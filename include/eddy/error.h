/*
 * eddy/error.h - error codes, error details and logging.
 *
 * Every eddy function that can fail returns an int: EDDY_OK (0) on success,
 * or one of the EDDY_E* codes below. Calls that can fail in interesting ways
 * (parsing, validation, opening a store) also take an optional
 * `eddy_error *err`; when it is not NULL and the call fails, it is filled
 * with the code and a message that names the offending thing (an attribute,
 * a JSON pointer, a stream and its versions).
 *
 * The codes are append-only: a code is never renumbered or removed.
 */
#ifndef EDDY_ERROR_H
#define EDDY_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The one list of error codes. Each entry: name, message. The enum and the
 * strings returned by eddy_strerror() are generated from it, so they cannot
 * drift apart. New codes go at the end.
 */
#define EDDY_ERRNO_MAP(X)                                                      \
    X(OK, "success")                                                           \
    X(EINVAL, "invalid argument")                                              \
    X(ENOMEM, "out of memory")                                                 \
    X(EPARSE, "malformed input")                                               \
    X(ENOTFOUND, "not found")                                                  \
    X(ECONFLICT, "version conflict")                                           \
    X(EFULL, "queue full")                                                     \
    X(ESTOPPED, "stopped")                                                     \
    X(EIO, "input/output error")                                               \
    X(EEXIST, "already exists")                                                \
    X(ESTATE, "operation not allowed in this state")                           \
    X(ETOOBIG, "too large")                                                    \
    X(EUNSUPPORTED, "not supported")                                           \
    X(ESCHEMA, "schema validation failed")                                     \
    X(EHANDLER, "handler failed")                                              \
    X(ETIMEDOUT, "timed out")                                                  \
    X(ECORRUPT, "not a valid eddy store")                                      \
    X(EVERSION, "incompatible version")                                        \
    X(ECONNECT, "connection failed")                                           \
    X(EBUSY, "resource busy")                                                  \
    X(EDUPLICATE, "duplicate id with different content")                       \
    X(EINDOUBT, "outcome unknown: the commit may or may not have happened")     \
    X(ELIMIT, "limit reached before the work could finish")

/* Error codes. EDDY_OK is 0; every failure is a distinct positive value. */
typedef enum eddy_errno {
#define EDDY_ERRNO_ENUM_(name, msg) EDDY_##name,
    EDDY_ERRNO_MAP(EDDY_ERRNO_ENUM_)
#undef EDDY_ERRNO_ENUM_
    EDDY_ERRNO_COUNT_ /* not a code; the number of codes */
} eddy_errno;

/*
 * A static, human-readable description of `code` ("version conflict").
 * Unknown codes give "unknown error". Never NULL; thread-safe.
 */
const char *eddy_strerror(int code);

/*
 * The symbolic name of `code` without the prefix ("ECONFLICT"), or "UNKNOWN".
 * Never NULL; thread-safe.
 */
const char *eddy_errname(int code);

#define EDDY_ERROR_MESSAGE_MAX 512

/*
 * Details of a failure, filled by calls that take an `eddy_error *err`.
 * Plain data owned by the caller, usually on the stack; zero-initialise it
 * or call eddy_error_clear(). On success a call leaves it untouched.
 */
typedef struct eddy_error {
    int code;                              /* EDDY_OK when nothing failed */
    char message[EDDY_ERROR_MESSAGE_MAX];  /* NUL-terminated, may be "" */
} eddy_error;

/* Resets `err` to EDDY_OK with an empty message. NULL does nothing. */
void eddy_error_clear(eddy_error *err);

/*
 * Fills `err` with `code` and a printf-style message, and returns `code`, so
 * that a callback that takes an `eddy_error *err` (an aggregate command, an
 * `apply`, a schema hook) can fail in one line:
 *
 *     if (o->status != ORDER_PENDING)
 *         return eddy_error_set(err, EDDY_ESTATE, "order %s is %s, not pending",
 *                               o->id, status_name(o->status));
 *
 * `err` may be NULL (nothing is stored; `code` is still returned). A NULL
 * `fmt` stores eddy_strerror(code). A message longer than
 * EDDY_ERROR_MESSAGE_MAX - 1 bytes is cut (possibly inside a UTF-8
 * character). Never fails; thread-safe for different `err`.
 */
int eddy_error_set(eddy_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- logging ---------------------------------------------------------- */

typedef enum eddy_log_level {
    EDDY_LOG_DEBUG = 10,
    EDDY_LOG_INFO = 20,
    EDDY_LOG_WARN = 30,
    EDDY_LOG_ERROR = 40,
    EDDY_LOG_OFF = 100
} eddy_log_level;

/*
 * A log callback. `component` names the part that logs ("bus", "store");
 * `message` is borrowed for the call. It runs on whichever thread logs,
 * possibly several at once, so it must be thread-safe and quick: do no slow
 * I/O under a lock in it, and never call back into eddy from it.
 */
typedef void (*eddy_log_fn)(eddy_log_level level, const char *component,
                            const char *message, void *user);

/*
 * Installs the process-wide log callback and the minimum level it receives.
 * eddy is quiet by default (no callback). Pass fn = NULL to silence it again.
 * Call it before starting eddy's threads; changing it while they run is
 * allowed (the switch is atomic) but a message in flight may still reach the
 * previous callback.
 */
void eddy_log_set(eddy_log_fn fn, eddy_log_level min_level, void *user);

/* A ready-made callback that writes "LEVEL component: message" to stderr. */
void eddy_log_stderr(eddy_log_level level, const char *component,
                     const char *message, void *user);

/* The name of a level ("warn"), or "?" for an unknown value. */
const char *eddy_log_level_name(eddy_log_level level);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_ERROR_H */
