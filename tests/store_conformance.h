/*
 * tests/store_conformance.h - the behaviour every store backend must have,
 * written once. A per-backend test program (tests/test_store.c for SQLite)
 * supplies a way to make fresh, empty stores and runs the suite.
 */
#ifndef EDDY_TESTS_STORE_CONFORMANCE_H
#define EDDY_TESTS_STORE_CONFORMANCE_H

#include "eddy/eddy.h"

typedef struct store_backend_fixture {
    const char *name; /* "sqlite" */
    /* A malloc'd URL of a new, empty store (not opened yet). */
    char *(*new_url)(void *ctx);
    /* Removes what new_url created (the store must be closed). */
    void (*drop_url)(const char *url, void *ctx);
    void *ctx;
} store_backend_fixture;

/* Runs the conformance suite against the backend; returns the number of
 * failed tests (cmocka's group result). */
int store_conformance_run(const store_backend_fixture *fx);

/* Helpers shared with the per-backend programs. */
eddy_event *conf_event(const char *type, const char *id, int64_t time_us,
                       int n);

#endif
