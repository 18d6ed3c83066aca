/*
 * src/transport/bridge.c - feeds a remote subscription into the local
 * store: every received event is appended (idempotently, by id) to the
 * stream named by its subject, and acknowledged once the append is
 * durable. Local durable subscriptions then handle it with their own
 * retry, dead letters and checkpoints, exactly as for a local event.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"
#include "transport/transport_impl.h"

struct eddy_transport_bridge {
    eddy_store *store;
    eddy_transport_subscription *sub;
    eddy_transport_dead_letter_fn dead_letter;  /* the caller's, or NULL */
    void *user;                       /* the caller's, for dead_letter */
};

static void bridge_dead_letter(const eddy_transport_dead_letter *dl, void *user)
{
    eddy_transport_bridge *b = user;
    if (b->dead_letter)
        b->dead_letter(dl, b->user);
    else
        EDDYI_LOG(EDDY_LOG_WARN, "transport", "bridge: %s: dead letter %s: %s",
                  dl->topic, dl->event ? eddy_event_id(dl->event) : "(undecodable)",
                  dl->reason);
}

static int bridge_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    eddy_transport_bridge *b = user;
    const char *stream = eddyi_transport_key(ev);
    eddy_event *evs[1] = {(eddy_event *)ev};
    eddy_error err = {0};
    int rc = eddy_store_append(b->store, stream, EDDY_EXPECT_ANY, evs, 1, NULL,
                               &err);
    if (rc == EDDY_OK)
        return 0;
    if (rc == EDDY_EDUPLICATE || rc == EDDY_EINVAL || rc == EDDY_ETOOBIG) {
        /* Retrying cannot help: the store refuses this event for good. */
        char reason[EDDY_ERROR_MESSAGE_MAX + 32];
        snprintf(reason, sizeof reason, "store refused it: %s", err.message);
        eddyi_transport_dead_letter(eddyi_delivery_sub(d), ev, NULL, 0,
                                    eddy_delivery_topic(d), reason,
                                    eddy_delivery_attempt(d));
        eddy_delivery_ack(d);
        return 0;
    }
    EDDYI_LOG(EDDY_LOG_WARN, "transport",
              "bridge: appending %s to stream %s failed, will retry: %s",
              eddy_event_id(ev), stream, err.message);
    return rc;
}

int eddy_transport_bridge_start(eddy_transport *t, eddy_store *s,
                                const eddy_transport_subscription_options *o,
                                eddy_transport_bridge **out, eddy_error *err)
{
    if (!t || !s || !o || !out)
        return eddyi_error(err, EDDY_EINVAL, "bridge: NULL argument");
    *out = NULL;
    if (o->handler)
        return eddyi_error(err, EDDY_EINVAL,
                           "bridge: handler must be NULL (the bridge's "
                           "appends to the store)");
    eddy_transport_bridge *b = calloc(1, sizeof *b);
    if (!b)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    b->store = s;
    b->dead_letter = o->dead_letter;
    b->user = o->user;
    eddy_transport_subscription_options so = *o;
    so.handler = bridge_handler;
    so.user = b;
    so.dead_letter = bridge_dead_letter;
    int rc = eddy_transport_subscribe(t, &so, &b->sub, err);
    if (rc != EDDY_OK) {
        free(b);
        return rc;
    }
    *out = b;
    return EDDY_OK;
}

eddy_transport_subscription *eddy_transport_bridge_sub(eddy_transport_bridge *b)
{
    return b ? b->sub : NULL;
}

void eddy_transport_bridge_free(eddy_transport_bridge *b)
{
    if (!b)
        return;
    eddy_transport_subscription_free(b->sub);
    free(b);
}
