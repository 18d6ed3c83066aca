/*
 * tests/transport_secure.h - helpers for the tests of secured engines
 * (test_transport_secure_redis, test_transport_secure_nats,
 * test_transport_kafka): start a TLS- or auth-enabled server through
 * scripts/test-servers.sh, read the secrets it made, capture everything
 * eddy logs, time a refused open, and check that no secret was printed.
 */
#ifndef EDDY_TESTS_TRANSPORT_SECURE_H
#define EDDY_TESTS_TRANSPORT_SECURE_H

#include <stdbool.h>
#include <stdint.h>

#include "eddy/transport.h"

/* Runs scripts/test-servers.sh ACTION ENGINE DIR [PORT]; returns the port
 * it printed (start), 0 (stop), -1 on failure. */
int secure_servers(const char *action, const char *engine, const char *dir,
                   int port);

/* The first line of DIR/NAME (malloc'd), or NULL with a message. */
char *secure_read(const char *dir, const char *name);

/* Starts capturing every eddy log line (debug and up) in memory. */
void secure_log_start(void);
/* Stops capturing and returns what was logged (malloc'd). */
char *secure_log_stop(void);

/* Milliseconds of a monotonic clock. */
int64_t secure_now_ms(void);

/* Opens `url` expecting it to fail: returns the milliseconds it took, with
 * `err` filled; fails the test if the open succeeded. */
int64_t secure_open_refused(const char *url, const eddy_transport_options *o,
                            eddy_error *err);

/* Fails the test (naming `where`) if `text` contains any of the secrets
 * (NULL-terminated list). */
void secure_assert_no_secret(const char *text, const char *const *secrets,
                             const char *where);

/* Appends `text` to a growing record of everything printed (error
 * messages, help, outputs), checked for secrets at the end. */
void secure_record(const char *text);
/* What secure_record kept (borrowed; freed by secure_record_free). */
const char *secure_recorded(void);
void secure_record_free(void);

/* Writes `text` into the file DIR/NAME with mode 600; the path (malloc'd)
 * or NULL. */
char *secure_write(const char *dir, const char *name, const char *text);

#endif
