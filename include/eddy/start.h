/*
 * eddy/start.h - where a new subscription starts.
 *
 * A durable subscription (eddy/durable.h) without a stored checkpoint and
 * a transport subscription (eddy/transport.h) of a consumer group the
 * engine does not know yet both start either at the oldest message there
 * is or after the newest one; this is the one option for both. Zero is
 * EDDY_START_BEGINNING everywhere, so a zero-initialised options struct
 * misses nothing. A subscription that has a position (a checkpoint, an
 * existing group) always resumes from it: this option is not read then.
 */
#ifndef EDDY_START_H
#define EDDY_START_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum eddy_start_from {
    EDDY_START_BEGINNING = 0, /* from the oldest event (durable: every
                                 event in the store; transport: the oldest
                                 message the engine keeps). The default */
    EDDY_START_END = 1        /* only what is appended or published after
                                 the subscription starts */
} eddy_start_from;

#ifdef __cplusplus
}
#endif
#endif /* EDDY_START_H */
