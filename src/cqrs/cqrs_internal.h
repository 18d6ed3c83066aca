/*
 * src/cqrs/cqrs_internal.h - what projection.c and saga.c share. Not
 * public.
 */
#ifndef EDDY_SRC_CQRS_INTERNAL_H
#define EDDY_SRC_CQRS_INTERNAL_H

#include <stdbool.h>

#include "eddy/error.h"

/* Checks an event-type pattern: "x.y", "x.*" or "*" (`what` names the
 * owner in the message). */
int eddyi_pattern_check(const char *pattern, const char *what,
                        eddy_error *err);

/* True when event type `type` matches pattern (as eddy_bus_subscribe). */
bool eddyi_pattern_match(const char *pattern, const char *type);

#endif
