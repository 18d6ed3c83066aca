/*
 * src/store/state_observe.c - trace, graph and figures queries
 * (state_observe.h), in the portable SQL subset, on reader connections.
 * They read the envelope columns of `events` (correlation_id,
 * causation_id, source, subject: store schema 4), never the payload's JSON.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "state_observe.h"
#include "store_internal.h"

static const char *text(const eddy_row *row, int col)
{
    const char *t = eddy_row_text(row, col);
    return t ? t : "";
}

/* ---- a flow ------------------------------------------------------------------ */

static int first_text(const eddy_row *row, void *user)
{
    char **out = user;
    const char *t = eddy_row_text(row, 0);
    if (!t)
        return 0; /* NULL: keep looking */
    *out = eddyi_strdup(t);
    return *out ? 1 : EDDY_ENOMEM;
}

int eddyi_trace_correlation(eddy_store *s, const char *id, char **out,
                            eddy_error *err)
{
    /* Tried in order; the first that names a flow wins. */
    static const char *const lookups[] = {
        "SELECT COALESCE(correlation_id, id) FROM events WHERE id = $1",
        "SELECT correlation_id FROM events WHERE correlation_id = $1 "
        "LIMIT 1",
        "SELECT COALESCE(correlation_id, id) FROM events "
        "WHERE stream_id = $1 ORDER BY stream_version LIMIT 1",
        "SELECT COALESCE(correlation_id, id) FROM events "
        "WHERE subject = $1 ORDER BY position LIMIT 1",
    };
    *out = NULL;
    for (size_t i = 0; i < sizeof lookups / sizeof lookups[0]; i++) {
        int rc = eddyi_sql_read(s, first_text, out, err, lookups[i], "s", id);
        if (rc == 1)
            return EDDY_OK;
        if (rc == EDDY_ENOMEM)
            return eddyi_error(err, rc, "out of memory");
        if (rc != EDDY_OK)
            return rc;
    }
    return EDDY_OK;
}

struct event_walk {
    int (*fn)(const eddyi_trace_event *ev, void *user);
    void *user;
};

static int event_row(const eddy_row *row, void *user)
{
    struct event_walk *w = user;
    eddyi_trace_event ev = {.position = eddy_row_int(row, 0),
                            .recorded_us = eddy_row_int(row, 1),
                            .payload = text(row, 2)};
    ev.payload_len = strlen(ev.payload);
    return w->fn(&ev, w->user);
}

int eddyi_trace_events(eddy_store *s, const char *correlation,
                       int (*fn)(const eddyi_trace_event *ev, void *user),
                       void *user, eddy_error *err)
{
    struct event_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, event_row, &w, err,
                          "SELECT position, recorded_us, payload FROM events "
                          "WHERE id = $1 UNION "
                          "SELECT position, recorded_us, payload FROM events "
                          "WHERE correlation_id = $1 ORDER BY 1",
                          "s", correlation);
}

struct command_walk {
    int (*fn)(const eddyi_trace_command *c, void *user);
    void *user;
};

static int command_row(const eddy_row *row, void *user)
{
    struct command_walk *w = user;
    eddyi_trace_command c = {.id = text(row, 0),
                             .name = text(row, 1),
                             .saga_type = text(row, 2),
                             .causation_id = text(row, 3),
                             .created_us = eddy_row_int(row, 4)};
    return w->fn(&c, w->user);
}

int eddyi_trace_commands(eddy_store *s, const char *correlation,
                         int (*fn)(const eddyi_trace_command *c, void *user),
                         void *user, eddy_error *err)
{
    struct command_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, command_row, &w, err,
                          "SELECT id, name, saga_type, causation_id, "
                          "created_us FROM eddy_saga_commands "
                          "WHERE correlation_id = $1 ORDER BY seq",
                          "s", correlation);
}

/* ---- the graph ----------------------------------------------------------------- */

struct edge_walk {
    int (*fn)(const char *from, const char *to, int64_t count, void *user);
    void *user;
};

static int edge_row(const eddy_row *row, void *user)
{
    struct edge_walk *w = user;
    return w->fn(text(row, 0), text(row, 1), eddy_row_int(row, 2), w->user);
}

int eddyi_graph_edges(eddy_store *s, eddyi_graph_query q,
                      int (*fn)(const char *from, const char *to,
                                int64_t count, void *user),
                      void *user, eddy_error *err)
{
    struct edge_walk w = {.fn = fn, .user = user};
    switch (q) {
    case EDDYI_GRAPH_PUBLISHERS:
        return eddyi_sql_read(s, edge_row, &w, err,
                              "SELECT source, type, count(*) FROM events "
                              "GROUP BY source, type",
                              NULL);
    case EDDYI_GRAPH_CAUSES:
        return eddyi_sql_read(s, edge_row, &w, err,
                              "SELECT c.type, e.source, count(*) FROM events e "
                              "JOIN events c ON c.id = e.causation_id "
                              "GROUP BY c.type, e.source",
                              NULL);
    case EDDYI_GRAPH_SENDS:
        return eddyi_sql_read(s, edge_row, &w, err,
                              "SELECT saga_type, name, count(*) FROM "
                              "eddy_saga_commands GROUP BY saga_type, name",
                              NULL);
    case EDDYI_GRAPH_LEADS_TO:
        return eddyi_sql_read(s, edge_row, &w, err,
                              "SELECT m.name, e.type, count(*) FROM events e "
                              "JOIN eddy_saga_commands m "
                              "ON m.id = e.causation_id "
                              "GROUP BY m.name, e.type",
                              NULL);
    }
    return eddyi_error(err, EDDY_EINVAL, "unknown graph query %d", (int)q);
}

struct type_walk {
    int (*fn)(const char *type, void *user);
    void *user;
};

static int type_row(const eddy_row *row, void *user)
{
    struct type_walk *w = user;
    return w->fn(text(row, 0), w->user);
}

int eddyi_graph_types(eddy_store *s,
                      int (*fn)(const char *type, void *user), void *user,
                      eddy_error *err)
{
    struct type_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, type_row, &w, err,
                          "SELECT DISTINCT type FROM events ORDER BY type",
                          NULL);
}

/* ---- figures ------------------------------------------------------------------ */

struct consumer_walk {
    int (*fn)(const eddyi_consumer_row *row, void *user);
    void *user;
};

static int consumer_row(const eddy_row *row, void *user)
{
    struct consumer_walk *w = user;
    eddyi_consumer_row r = {
        .name = text(row, 0),
        .kind = text(row, 1),
        .pattern = text(row, 2),
        .checkpoint = eddy_row_is_null(row, 3) ? -1 : eddy_row_int(row, 3),
        .checkpoint_updated_us = eddy_row_int(row, 4),
        .retries = eddy_row_int(row, 5),
        .dead_letters = eddy_row_int(row, 6),
        .redrive_pending = eddy_row_int(row, 7),
        .head = eddy_row_int(row, 8),
    };
    return w->fn(&r, w->user);
}

int eddyi_consumers(eddy_store *s,
                    int (*fn)(const eddyi_consumer_row *row, void *user),
                    void *user, eddy_error *err)
{
    struct consumer_walk w = {.fn = fn, .user = user};
    /* One statement: every figure, the head included, from one snapshot,
     * so a lag is never negative. */
    return eddyi_sql_read(
        s, consumer_row, &w, err,
        "WITH names(name) AS ("
        "  SELECT name FROM eddy_checkpoints"
        "  UNION SELECT subscription FROM eddy_retries"
        "  UNION SELECT subscription FROM eddy_dead_letters"
        "  UNION SELECT name FROM eddy_subscriptions) "
        "SELECT n.name, r.kind, r.pattern, c.position, c.updated_us, "
        "  (SELECT count(*) FROM eddy_retries t "
        "   WHERE t.subscription = n.name), "
        "  (SELECT count(*) FROM eddy_dead_letters d "
        "   WHERE d.subscription = n.name AND d.status = 'dead'), "
        "  (SELECT count(*) FROM eddy_dead_letters d "
        "   WHERE d.subscription = n.name AND d.status = 'redrive'), "
        "  (SELECT COALESCE(MAX(position), 0) FROM events) "
        "FROM names n "
        "LEFT JOIN eddy_checkpoints c ON c.name = n.name "
        "LEFT JOIN eddy_subscriptions r ON r.name = n.name "
        "ORDER BY n.name",
        NULL);
}

struct outbox_walk {
    int (*fn)(const eddyi_outbox_row *row, void *user);
    void *user;
};

static int outbox_row(const eddy_row *row, void *user)
{
    struct outbox_walk *w = user;
    eddyi_outbox_row r = {.destination = text(row, 0),
                          .pending = eddy_row_int(row, 1),
                          .sent = eddy_row_int(row, 2),
                          .oldest_pending_us = eddy_row_int(row, 3)};
    return w->fn(&r, w->user);
}

int eddyi_outbox_destinations(eddy_store *s,
                              int (*fn)(const eddyi_outbox_row *row,
                                        void *user),
                              void *user, eddy_error *err)
{
    struct outbox_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(
        s, outbox_row, &w, err,
        "SELECT destination, "
        "  sum(CASE WHEN sent_us IS NULL THEN 1 ELSE 0 END), "
        "  sum(CASE WHEN sent_us IS NOT NULL THEN 1 ELSE 0 END), "
        "  min(CASE WHEN sent_us IS NULL THEN created_us END) "
        "FROM eddy_outbox GROUP BY destination ORDER BY destination",
        NULL);
}
