/*
 * src/store/state_outbox.c - the outbox queue (state_outbox.h), in SQL that
 * every SQL backend runs (eddy/sql.h's portable subset). The table is
 * created by each backend's migrations (sqlite_schema.c); `seq` is an
 * AUTOINCREMENT key there, so a pruned seq is never handed out again.
 */
#include <string.h>

#include "../core/internal.h"
#include "state_outbox.h"
#include "store_internal.h"

int eddyi_outbox_enqueue(eddy_txn *txn, const char *destination,
                         const char *event_id, eddy_error *err)
{
    /* INSERT ... SELECT: the queued payload is exactly the stored one. The
     * WHERE clause also keeps SQLite from reading ON CONFLICT as part of
     * the SELECT. */
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_outbox(position, event_id, destination, payload, "
        "created_us) SELECT position, id, $1, payload, $2 FROM events "
        "WHERE id = $3 ON CONFLICT(event_id, destination) DO NOTHING",
        "sIs", destination, eddy_txn_now_us(txn), event_id);
}

struct page_walk {
    eddyi_outbox_fn fn;
    void *user;
};

static int page_row(const eddy_row *row, void *user)
{
    struct page_walk *w = user;
    const char *dest = eddy_row_text(row, 1);
    const char *payload = eddy_row_text(row, 2);
    eddyi_outbox_row r = {
        .seq = eddy_row_int(row, 0),
        .destination = dest ? dest : "",
        .payload = payload ? payload : "",
    };
    r.payload_len = strlen(r.payload);
    return w->fn(&r, w->user);
}

int eddyi_outbox_page(eddy_store *s, int64_t after_seq,
                      const char *destination, size_t max,
                      eddyi_outbox_fn fn, void *user, eddy_error *err)
{
    struct page_walk w = {.fn = fn, .user = user};
    /* Two statements: a NULL test on a parameter cannot be typed by every
     * engine. */
    if (!destination)
        return eddyi_sql_read(s, page_row, &w, err,
                              "SELECT seq, destination, payload "
                              "FROM eddy_outbox WHERE sent_us IS NULL "
                              "AND seq > $1 ORDER BY seq LIMIT $2",
                              "II", after_seq, (int64_t)max);
    return eddyi_sql_read(s, page_row, &w, err,
                          "SELECT seq, destination, payload FROM eddy_outbox "
                          "WHERE sent_us IS NULL AND seq > $1 "
                          "AND destination = $2 ORDER BY seq LIMIT $3",
                          "IsI", after_seq, destination, (int64_t)max);
}

int eddyi_outbox_mark_sent(eddy_txn *txn, int64_t first, int64_t last,
                           const char *destination, int64_t *changes,
                           eddy_error *err)
{
    if (!destination)
        return eddyi_sql_exec(txn, changes, err,
                              "UPDATE eddy_outbox SET sent_us = $1, "
                              "attempts = attempts + 1 WHERE seq >= $2 "
                              "AND seq <= $3 AND sent_us IS NULL",
                              "III", eddy_txn_now_us(txn), first, last);
    return eddyi_sql_exec(txn, changes, err,
                          "UPDATE eddy_outbox SET sent_us = $1, "
                          "attempts = attempts + 1 WHERE seq >= $2 "
                          "AND seq <= $3 AND sent_us IS NULL "
                          "AND destination = $4",
                          "IIIs", eddy_txn_now_us(txn), first, last,
                          destination);
}

int eddyi_outbox_attempt(eddy_txn *txn, int64_t seq, eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "UPDATE eddy_outbox SET attempts = attempts + 1 "
                          "WHERE seq = $1",
                          "I", seq);
}

int eddyi_outbox_pending(eddy_store *s, const char *destination,
                         int64_t *count, eddy_error *err)
{
    if (!destination)
        return eddyi_sql_read_int(s, count, err,
                                  "SELECT count(*) FROM eddy_outbox "
                                  "WHERE sent_us IS NULL",
                                  NULL);
    return eddyi_sql_read_int(s, count, err,
                              "SELECT count(*) FROM eddy_outbox "
                              "WHERE sent_us IS NULL AND destination = $1",
                              "s", destination);
}

int eddyi_outbox_prune(eddy_txn *txn, int64_t sent_before_us,
                       int64_t *deleted, eddy_error *err)
{
    return eddyi_sql_exec(txn, deleted, err,
                          "DELETE FROM eddy_outbox WHERE sent_us IS NOT NULL "
                          "AND sent_us < $1",
                          "I", sent_before_us);
}
