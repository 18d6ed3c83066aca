/*
 * src/cqrs/cqrs_internal.h - what projection.c and saga.c share. Not
 * public.
 */
#ifndef EDDY_SRC_CQRS_INTERNAL_H
#define EDDY_SRC_CQRS_INTERNAL_H

#include <stdbool.h>

#include "eddy/error.h"

/* Event-type patterns: see src/core/pattern.h. */
#include "../core/pattern.h"

#endif
