/*
 * tests/transport_conformance.h - the transport conformance suite, written
 * once and run against every engine by its test program
 * (test_transport_mem, test_transport_redis, test_transport_kafka,
 * test_transport_nats).
 *
 * What it checks, on the engine named by `url`:
 *   roundtrip        events arrive equal (eddy_event_equal) to what was sent;
 *   per_key_order    one member per group: each key's events in order;
 *   load_shared      two members of one group share the load, each event
 *                    handled once; another group gets every event too;
 *   crash_redelivery a member that took a message and never settles it (its
 *                    handler hangs, as a crashed process would) loses it to
 *                    another member after ack_wait: at-least-once;
 *   nack_dead_letter nack -> redelivery with attempt + 1 -> dead letter
 *                    after retry.max_attempts, with the reason;
 *   malformed        undecodable and oversized messages are dead-lettered
 *                    with a clear reason, the next good event still flows;
 *                    publishing an oversized event is EDDY_ETOOBIG;
 *   async            publish_async + flush: every callback EDDY_OK, every
 *                    event received;
 *   outbox_bridge    the outbox relay publishes through the transport, a
 *                    bridge appends what arrives to another store, once
 *                    each even when delivered twice;
 *   bad_arguments    EDDY_EINVAL for a bad URL and bad subscribe options.
 * Each test uses event types with a fresh random suffix, so runs against a
 * long-lived server do not see each other's messages.
 */
#ifndef EDDY_TESTS_TRANSPORT_CONFORMANCE_H
#define EDDY_TESTS_TRANSPORT_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "eddy/transport.h"

typedef struct transport_conformance_env {
    const char *name;    /* group name printed by cmocka ("redis") */
    const char *url;     /* the engine */
    /* Makes `raw` (`len` bytes) appear on `topic` as a message from a
     * foreign producer: the engine's own client, not eddy's publish.
     * `t` is a transport opened on `url`. Returns 0 on success. Required. */
    int (*inject_raw)(eddy_transport *t, const char *topic, const char *raw,
                      size_t len);
    /* ack_wait_ms for the crash test (short: 300..1000 ms). 0: 500. */
    int ack_wait_ms;
    /* Milliseconds a new subscription may need before it receives
     * (consumer-group join/rebalance); 0 for engines where subscribe
     * returns ready. */
    int settle_ms;
    /* A configuration file every open reads (options.config_file); NULL:
     * none. */
    const char *config_file;
} transport_conformance_env;

/* Runs every test of the suite as one cmocka group. Returns the number of
 * failed tests (0: all passed). */
int transport_conformance_run(const transport_conformance_env *env);

/* Runs the round trip tests only (roundtrip, roundtrip_equal, async): for
 * the same engine again behind credentials or TLS. inject_raw may be
 * NULL. */
int transport_conformance_run_roundtrip(const transport_conformance_env *env);

#endif
