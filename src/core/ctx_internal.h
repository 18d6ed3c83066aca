/*
 * src/core/ctx_internal.h - handler contexts that are not run by the bus.
 *
 * eddy_ctx is defined in bus.c. Layers that run handlers themselves (durable
 * subscriptions in src/reliability) still give them an eddy_ctx, so that
 * eddy_ctx_fail, eddy_ctx_handler and eddy_ctx_publish work the same; only
 * where a follow-up event goes differs: the host's `publish` receives it
 * (e.g. to append it to the store) instead of a bus.
 */
#ifndef EDDY_SRC_CORE_CTX_INTERNAL_H
#define EDDY_SRC_CORE_CTX_INTERNAL_H

#include <stddef.h>

#include "eddy/bus.h"

typedef struct eddyi_ctx_host {
    /* Takes a follow-up built by eddy_ctx_publish / eddy_ctx_publish_init
     * (correlation, causation, subject and source already filled in);
     * `ev` is borrowed for the call. Returns EDDY_OK or an error code. Runs
     * on the handler's thread. */
    int (*publish)(void *host_user, eddy_event *ev);
    void *host_user;
    const char *name;   /* eddy_ctx_handler() */
    const char *source; /* source of follow-ups whose init leaves it NULL */
} eddyi_ctx_host;

/*
 * Runs `call(ctx, arg)` with a fresh context for handling `ev` on behalf of
 * `host` (borrowed for the call); eddy_ctx_bus() gives NULL in it. On
 * return `message` (of `message_size` bytes, may be 0) holds what the
 * handler passed to eddy_ctx_fail, or "". Returns what `call` returned.
 */
int eddyi_ctx_run(const eddyi_ctx_host *host, const eddy_event *ev,
                  int (*call)(eddy_ctx *ctx, void *arg), void *arg,
                  char *message, size_t message_size);

#endif
