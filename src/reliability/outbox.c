/*
 * src/reliability/outbox.c - the transactional outbox and its relay.
 *
 * The queue is the SQLite table eddy_outbox, written only through the
 * store's writer (eddyi_store_write): an outbox append is one write job that
 * appends the events (eddy_txn_append) and then copies each stored event
 * into the queue with INSERT ... SELECT from the events table, so the queued
 * payload is exactly the stored one and both commit or roll back together.
 *
 * The relay reads the queue inside write jobs too. That costs the writer a
 * few hundred microseconds per page, but it is the only connection the
 * store lends to other layers, and it is safe: eddyi_store_write reports
 * the job's result only once its transaction has committed, so a page is
 * never published from a group commit that later failed.
 *
 * seq is AUTOINCREMENT: a deleted (cleaned-up) seq is never reused, so every
 * row queued after a page was read has a larger seq than the whole page.
 * That is what lets the relay mark a published range sent with one UPDATE
 * over [first, last] without missing or wrongly marking a row.
 *
 * The table is part of the store file's schema (store migration 3,
 * src/store/sqlite_schema.c).
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>

#include "eddy/sqlite.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy/outbox.h"

#include "../core/internal.h"
#include "../store/store_internal.h"

/* Queues one stored event; a row already queued for the destination (a
 * retried append) is left alone. */
static const char SQL_QUEUE[] =
    "INSERT INTO eddy_outbox(position, event_id, destination, payload, "
    "created_us) SELECT position, id, ?1, payload, ?2 FROM events "
    "WHERE id = ?3 ON CONFLICT(event_id, destination) DO NOTHING";
static const char SQL_PENDING[] =
    "SELECT count(*) FROM eddy_outbox WHERE sent_us IS NULL "
    "AND (?1 IS NULL OR destination = ?1)";
static const char SQL_CLEANUP[] =
    "DELETE FROM eddy_outbox WHERE sent_us IS NOT NULL AND sent_us < ?1";
static const char SQL_PAGE[] =
    "SELECT seq, destination, payload FROM eddy_outbox "
    "WHERE sent_us IS NULL AND seq > ?1 "
    "AND (?2 IS NULL OR destination = ?2) ORDER BY seq LIMIT ?3";
static const char SQL_MARK[] =
    "UPDATE eddy_outbox SET sent_us = ?1, attempts = attempts + 1 "
    "WHERE seq BETWEEN ?2 AND ?3 AND sent_us IS NULL "
    "AND (?4 IS NULL OR destination = ?4)";
static const char SQL_ATTEMPT[] =
    "UPDATE eddy_outbox SET attempts = attempts + 1 WHERE seq = ?1";

/* ---- SQL helpers --------------------------------------------------------- */

static int code_for(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EDDY_EBUSY;
    case SQLITE_NOMEM:
        return EDDY_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return EDDY_ECORRUPT;
    default:
        return EDDY_EIO;
    }
}

static int sql_error(sqlite3 *db, int rc, eddy_error *err, const char *what)
{
    return eddyi_error(err, code_for(rc), "outbox: %s: %s", what,
                       sqlite3_errmsg(db));
}

/* The SQLite connection of the job's transaction, or EDDY_EUNSUPPORTED. */
static sqlite3 *txn_db(eddy_txn *txn, eddy_error *err)
{
    sqlite3 *db = eddyi_txn_native(txn);
    if (!db)
        eddyi_error(err, EDDY_EUNSUPPORTED,
                    "the outbox needs a SQLite store");
    return db;
}

/* Prepares `sql` on the writer's connection. Returns EDDY_OK with `*st`
 * (finalize it), or an error with `*st` NULL. */
static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st,
                   eddy_error *err)
{
    *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        int code = sql_error(db, rc, err, "prepare");
        sqlite3_finalize(*st);
        *st = NULL;
        return code;
    }
    return EDDY_OK;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int check_destination(const char *destination, eddy_error *err)
{
    if (!destination || !*destination)
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox: destination is NULL or empty");
    if (!eddyi_utf8_valid(destination, strlen(destination)))
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox: destination is not valid UTF-8");
    return EDDY_OK;
}

/* ---- appending ----------------------------------------------------------- */

typedef struct append_job {
    const char *stream_id;
    int64_t expected;
    eddy_event *const *events;
    size_t count;
    const char *destination;
    eddy_append_result *result;
} append_job;

static int run_append(eddy_txn *txn, void *arg, eddy_error *err)
{
    append_job *a = arg;
    sqlite3 *db = txn_db(txn, err);
    if (!db)
        return EDDY_EUNSUPPORTED;
    int rc = eddy_txn_append(txn, a->stream_id, a->expected, a->events,
                              a->count, a->result, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = prepare(db, SQL_QUEUE, &st, err)) != EDDY_OK)
        return rc;
    sqlite3_bind_text(st, 1, a->destination, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, eddy_txn_now_us(txn));
    for (size_t i = 0; i < a->count; i++) {
        const char *id = eddy_event_id(a->events[i]);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src != SQLITE_DONE) {
            rc = sql_error(db, src, err, "queueing an event");
            goto done;
        }
        sqlite3_reset(st);
    }
done:
    sqlite3_finalize(st);
    return rc;
}

int eddy_outbox_append(eddy_store *s, const char *stream_id,
                       int64_t expected_version, eddy_event *const *events,
                       size_t count, const char *destination,
                       eddy_append_result *result, eddy_error *err)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "outbox: store is NULL");
    int rc = check_destination(destination, err);
    if (rc != EDDY_OK)
        return rc;
    /* The event arguments are checked by eddy_txn_append, in the job,
     * before the queue is touched. */
    append_job a = {.stream_id = stream_id,
                    .expected = expected_version,
                    .events = events,
                    .count = count,
                    .destination = destination,
                    .result = result};
    return eddyi_store_write(s, run_append, &a, err);
}

/* ---- counting and cleaning ------------------------------------------------ */

typedef struct count_job {
    const char *sql;
    const char *text;   /* ?1 of SQL_PENDING */
    int64_t value;      /* ?1 of SQL_CLEANUP */
    int64_t out;
} count_job;

static int run_pending(eddy_txn *txn, void *arg, eddy_error *err)
{
    count_job *c = arg;
    sqlite3 *db = txn_db(txn, err);
    if (!db)
        return EDDY_EUNSUPPORTED;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, SQL_PENDING, &st, err);
    if (rc != EDDY_OK)
        return rc;
    bind_text_or_null(st, 1, c->text);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        c->out = sqlite3_column_int64(st, 0);
    else
        rc = sql_error(db, src, err, "counting pending rows");
    sqlite3_finalize(st);
    return rc;
}

static int run_cleanup(eddy_txn *txn, void *arg, eddy_error *err)
{
    count_job *c = arg;
    sqlite3 *db = txn_db(txn, err);
    if (!db)
        return EDDY_EUNSUPPORTED;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, SQL_CLEANUP, &st, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_bind_int64(st, 1, c->value);
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE)
        c->out = sqlite3_changes(db);
    else
        rc = sql_error(db, src, err, "deleting sent rows");
    sqlite3_finalize(st);
    return rc;
}

int eddy_outbox_pending(eddy_store *s, const char *destination,
                        int64_t *count, eddy_error *err)
{
    if (!s || !count)
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox_pending: NULL store or count");
    count_job c = {.text = destination};
    int rc = eddyi_store_write(s, run_pending, &c, err);
    if (rc == EDDY_OK)
        *count = c.out;
    return rc;
}

int eddy_outbox_cleanup(eddy_store *s, int64_t sent_before_us,
                        int64_t *deleted, eddy_error *err)
{
    if (!s)
        return eddyi_error(err, EDDY_EINVAL, "outbox_cleanup: store is NULL");
    if (sent_before_us <= 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "outbox_cleanup: sent_before_us must be > 0, "
                           "got %lld", (long long)sent_before_us);
    count_job c = {.value = sent_before_us};
    int rc = eddyi_store_write(s, run_cleanup, &c, err);
    if (rc == EDDY_OK && deleted)
        *deleted = c.out;
    return rc;
}

/* ---- publishers ------------------------------------------------------------ */

static int bus_publish(void *self, const eddy_event *ev,
                       const char *destination, eddy_error *err)
{
    EDDYI_UNUSED(destination);
    /* eddy_bus_publish only takes a reference: events are immutable, and
     * the reference count is the one thing about them that changes. */
    int rc = eddy_bus_publish((eddy_bus *)self, (eddy_event *)ev);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "bus publish of %s: %s",
                           eddy_event_id(ev), eddy_strerror(rc));
    return EDDY_OK;
}

eddy_publisher eddy_publisher_bus(eddy_bus *bus)
{
    eddy_publisher p = {.publish = bus_publish, .close = NULL, .self = bus};
    return p;
}

/* ---- the relay -------------------------------------------------------------- */

typedef struct outbox_row {
    int64_t seq;
    char *destination;
    char *payload;
    size_t len;
} outbox_row;

struct eddy_outbox_relay {
    eddy_store *store;
    eddy_publisher pub;
    eddy_outbox_relay_options opts; /* defaults filled; destination owned */

    pthread_t thread;
    bool started;
    bool joined;
    pthread_mutex_t mu;             /* guards the fields below */
    pthread_cond_t cond;            /* stop requested */
    bool stop;
    int status;
    eddy_error status_err;
    eddy_outbox_relay_stats stats;

    /* Relay thread only. */
    outbox_row *rows;
    int64_t cursor;                 /* seq of the last row published */
    int64_t mark_first, mark_last;  /* published, not yet marked; 0: none */
    size_t unmarked;
    int64_t next_cleanup_us;
};

static bool stopping(eddy_outbox_relay *r)
{
    pthread_mutex_lock(&r->mu);
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

/* Waits up to `ms` for a stop request; true when stopping. */
static bool sleep_unless_stopped(eddy_outbox_relay *r, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (pthread_cond_timedwait(&r->cond, &r->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

static void rows_clear(outbox_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].destination);
        free(rows[i].payload);
        rows[i].destination = rows[i].payload = NULL;
    }
}

typedef struct page_job {
    eddy_outbox_relay *r;
    size_t n;
} page_job;

static int run_page(eddy_txn *txn, void *arg, eddy_error *err)
{
    page_job *p = arg;
    eddy_outbox_relay *r = p->r;
    sqlite3 *db = txn_db(txn, err);
    if (!db)
        return EDDY_EUNSUPPORTED;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, SQL_PAGE, &st, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_bind_int64(st, 1, r->cursor);
    bind_text_or_null(st, 2, r->opts.destination);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->opts.page_rows);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        outbox_row *row = &r->rows[p->n];
        row->seq = sqlite3_column_int64(st, 0);
        row->destination = eddyi_strdup((const char *)sqlite3_column_text(st, 1));
        const char *payload = (const char *)sqlite3_column_text(st, 2);
        row->len = (size_t)sqlite3_column_bytes(st, 2);
        row->payload = payload ? malloc(row->len + 1) : NULL;
        if (!row->destination || !row->payload) {
            free(row->destination);
            free(row->payload);
            row->destination = row->payload = NULL;
            rc = eddyi_error(err, EDDY_ENOMEM, "outbox: out of memory "
                             "reading row %lld", (long long)row->seq);
            goto fail;
        }
        memcpy(row->payload, payload, row->len);
        row->payload[row->len] = '\0';
        p->n++;
    }
    if (src != SQLITE_DONE) {
        rc = sql_error(db, src, err, "reading the queue");
        goto fail;
    }
    sqlite3_finalize(st);
    return EDDY_OK;
fail:
    sqlite3_finalize(st);
    rows_clear(r->rows, p->n);
    p->n = 0;
    return rc;
}

typedef struct mark_job {
    eddy_outbox_relay *r;
    int64_t seq; /* SQL_ATTEMPT only */
} mark_job;

static int run_mark(eddy_txn *txn, void *arg, eddy_error *err)
{
    mark_job *m = arg;
    eddy_outbox_relay *r = m->r;
    sqlite3 *db = txn_db(txn, err);
    if (!db)
        return EDDY_EUNSUPPORTED;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, SQL_MARK, &st, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_bind_int64(st, 1, eddy_txn_now_us(txn));
    sqlite3_bind_int64(st, 2, r->mark_first);
    sqlite3_bind_int64(st, 3, r->mark_last);
    bind_text_or_null(st, 4, r->opts.destination);
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE)
        rc = sql_error(db, src, err, "marking rows sent");
    sqlite3_finalize(st);
    return rc;
}

static int run_attempt(eddy_txn *txn, void *arg, eddy_error *err)
{
    mark_job *m = arg;
    sqlite3 *db = txn_db(txn, err);
    if (!db)
        return EDDY_EUNSUPPORTED;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, SQL_ATTEMPT, &st, err);
    if (rc != EDDY_OK)
        return rc;
    sqlite3_bind_int64(st, 1, m->seq);
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE)
        rc = sql_error(db, src, err, "counting an attempt");
    sqlite3_finalize(st);
    return rc;
}

/* Marks the published range sent. On failure the range stays pending (a
 * later mark covers it, or the next relay republishes it). */
static int flush_marks(eddy_outbox_relay *r, eddy_error *err)
{
    if (!r->unmarked)
        return EDDY_OK;
    mark_job m = {.r = r};
    int rc = eddyi_store_write(r->store, run_mark, &m, err);
    if (rc != EDDY_OK) {
        EDDYI_LOG(EDDY_LOG_WARN, "outbox", "marking rows %lld..%lld sent "
                  "failed: %s", (long long)r->mark_first,
                  (long long)r->mark_last, err ? err->message : "");
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    r->stats.marked += r->unmarked;
    pthread_mutex_unlock(&r->mu);
    r->unmarked = 0;
    r->mark_first = r->mark_last = 0;
    return EDDY_OK;
}

/* The delay before retry number `failures` (1, 2, ...). */
static int backoff_ms(const eddy_outbox_relay *r, unsigned failures)
{
    int64_t d = r->opts.retry_initial_ms;
    for (unsigned i = 1; i < failures && d < r->opts.retry_max_ms; i++)
        d *= 2;
    return (int)(d < r->opts.retry_max_ms ? d : r->opts.retry_max_ms);
}

/*
 * Publishes one row, retrying until it succeeds. Returns EDDY_OK, or
 * EDDY_ESTOPPED when a stop was requested while waiting to retry.
 */
static int publish_row(eddy_outbox_relay *r, const outbox_row *row)
{
    unsigned failures = 0;
    for (;;) {
        eddy_error perr = {0};
        eddy_event *ev = eddy_event_decode(row->payload, row->len, &perr);
        int rc;
        if (ev) {
            rc = r->pub.publish(r->pub.self, ev, row->destination, &perr);
            if (rc != EDDY_OK && perr.code == EDDY_OK)
                eddyi_error(&perr, rc, "%s", eddy_strerror(rc));
            eddy_event_unref(ev);
        } else {
            /* The payload was written by the store's own encoder, so this is
             * damage; the row is retried (never skipped) and logged loudly. */
            rc = perr.code ? perr.code : EDDY_EPARSE;
        }
        if (rc == EDDY_OK) {
            pthread_mutex_lock(&r->mu);
            r->stats.published++;
            r->stats.last_seq = row->seq;
            pthread_mutex_unlock(&r->mu);
            return EDDY_OK;
        }
        failures++;
        pthread_mutex_lock(&r->mu);
        r->stats.failures++;
        pthread_mutex_unlock(&r->mu);
        int delay = backoff_ms(r, failures);
        EDDYI_LOG(ev ? EDDY_LOG_WARN : EDDY_LOG_ERROR, "outbox",
                  "publishing row %lld to %s failed (attempt %u): %s; "
                  "retrying in %d ms", (long long)row->seq, row->destination,
                  failures, perr.message, delay);
        /* Keep the progress made so far, and count the attempt. Failures
         * here are logged by flush_marks; the retry goes on regardless. */
        flush_marks(r, NULL);
        mark_job m = {.r = r, .seq = row->seq};
        eddyi_store_write(r->store, run_attempt, &m, NULL);
        if (sleep_unless_stopped(r, delay))
            return EDDY_ESTOPPED;
    }
}

/* Sets the relay's final status (the first error wins). */
static void set_status(eddy_outbox_relay *r, int rc, const eddy_error *err)
{
    pthread_mutex_lock(&r->mu);
    if (r->status == EDDY_OK && rc != EDDY_OK) {
        r->status = rc;
        if (err)
            r->status_err = *err;
    }
    pthread_mutex_unlock(&r->mu);
}

static void maybe_cleanup(eddy_outbox_relay *r)
{
    if (r->opts.cleanup_after_ms <= 0)
        return;
    int64_t now = eddy_now_us();
    if (now < r->next_cleanup_us)
        return;
    int64_t every_ms = r->opts.cleanup_after_ms / 2;
    if (every_ms < 1000)
        every_ms = 1000;
    r->next_cleanup_us = now + every_ms * 1000;
    int64_t deleted = 0;
    eddy_error err = {0};
    int rc = eddy_outbox_cleanup(r->store,
                                 now - r->opts.cleanup_after_ms * 1000,
                                 &deleted, &err);
    if (rc != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "outbox", "cleanup failed: %s", err.message);
    else if (deleted)
        EDDYI_LOG(EDDY_LOG_DEBUG, "outbox", "cleanup deleted %lld sent rows",
                  (long long)deleted);
}

/* Idle: wait for a commit past `head`, checking for a stop request every
 * STOP_CHECK_MS; after IDLE_REREAD_MS read the queue anyway (rows queued
 * without a new event: a retried append of events stored earlier). */
#define STOP_CHECK_MS 50
#define IDLE_REREAD_MS 1000

static int wait_for_commit(eddy_outbox_relay *r, int64_t head)
{
    for (int waited = 0; waited < IDLE_REREAD_MS; waited += STOP_CHECK_MS) {
        if (stopping(r))
            return EDDY_ESTOPPED;
        int rc = eddy_store_wait(r->store, head, STOP_CHECK_MS, NULL);
        if (rc == EDDY_OK)
            return EDDY_OK;
        if (rc == EDDY_ESTOPPED)
            return rc;
    }
    return EDDY_OK;
}

static void *relay_main(void *arg)
{
    eddy_outbox_relay *r = arg;
    eddy_error err = {0};
    int rc = EDDY_OK;
    unsigned read_failures = 0;
    while (!stopping(r)) {
        maybe_cleanup(r);
        /* The head before the read: a commit after it wakes the wait. */
        int64_t head = 0;
        eddy_store_wait(r->store, -1, 0, &head);
        page_job p = {.r = r};
        eddy_error_clear(&err);
        rc = eddyi_store_write(r->store, run_page, &p, &err);
        if (rc == EDDY_ESTATE) /* the store is closing */
            break;
        if (rc != EDDY_OK) {
            read_failures++;
            int delay = backoff_ms(r, read_failures);
            EDDYI_LOG(EDDY_LOG_WARN, "outbox", "reading the queue failed: "
                      "%s; retrying in %d ms", err.message, delay);
            rc = EDDY_OK;
            if (sleep_unless_stopped(r, delay))
                break;
            continue;
        }
        read_failures = 0;
        size_t i = 0;
        for (; i < p.n; i++) {
            if (publish_row(r, &r->rows[i]) != EDDY_OK)
                break; /* stopping */
            r->cursor = r->rows[i].seq;
            if (!r->unmarked)
                r->mark_first = r->rows[i].seq;
            r->mark_last = r->rows[i].seq;
            r->unmarked++;
            if (r->unmarked >= r->opts.mark_batch)
                flush_marks(r, NULL);
        }
        rows_clear(r->rows, p.n);
        if (i < p.n)
            break; /* stopped in the middle of the page */
        if (p.n == r->opts.page_rows)
            continue; /* more to read at once */
        flush_marks(r, NULL);
        if (wait_for_commit(r, head) == EDDY_ESTOPPED)
            break;
    }
    /* Whatever was published is marked before the thread ends. */
    if (rc == EDDY_OK || rc == EDDY_ESTATE) {
        eddy_error_clear(&err);
        int mrc = flush_marks(r, &err);
        if (mrc != EDDY_OK)
            set_status(r, mrc, &err);
    }
    if (rc == EDDY_ESTATE && !stopping(r))
        set_status(r, EDDY_ESTOPPED, &err);
    return NULL;
}

static int start_check(eddy_txn *txn, void *arg, eddy_error *err)
{
    EDDYI_UNUSED(arg);
    return txn_db(txn, err) ? EDDY_OK : EDDY_EUNSUPPORTED;
}

eddy_outbox_relay *eddy_outbox_relay_start(eddy_store *s,
                                           const eddy_publisher *pub,
                                           const eddy_outbox_relay_options *opts,
                                           eddy_error *err)
{
    eddy_outbox_relay *r = NULL;
    if (!s || !pub || !pub->publish) {
        eddyi_error(err, EDDY_EINVAL,
                    "outbox relay: a store and a publish function are required");
        return NULL;
    }
    eddy_outbox_relay_options o = {0};
    if (opts)
        o = *opts;
    if (o.retry_initial_ms < 0 || o.retry_max_ms < 0 ||
        o.cleanup_after_ms < 0) {
        eddyi_error(err, EDDY_EINVAL, "outbox relay: negative delay in options");
        return NULL;
    }
    if (o.destination && check_destination(o.destination, err) != EDDY_OK)
        return NULL;
    if (!o.page_rows)
        o.page_rows = EDDY_OUTBOX_DEFAULT_PAGE_ROWS;
    if (!o.mark_batch)
        o.mark_batch = EDDY_OUTBOX_DEFAULT_MARK_BATCH;
    if (!o.retry_initial_ms)
        o.retry_initial_ms = EDDY_OUTBOX_DEFAULT_RETRY_INITIAL_MS;
    if (!o.retry_max_ms)
        o.retry_max_ms = EDDY_OUTBOX_DEFAULT_RETRY_MAX_MS;
    if (o.retry_max_ms < o.retry_initial_ms)
        o.retry_max_ms = o.retry_initial_ms;
    if (o.page_rows > 100000) {
        eddyi_error(err, EDDY_EINVAL, "outbox relay: page_rows %zu is above "
                    "the limit of 100000", o.page_rows);
        return NULL;
    }
    /* Surfaces a read-only or non-SQLite store as an error of this call
     * rather than of the thread. */
    if (eddyi_store_write(s, start_check, NULL, err) != EDDY_OK)
        return NULL;

    r = calloc(1, sizeof *r);
    if (!r)
        goto nomem;
    r->store = s;
    r->pub = *pub;
    r->opts = o;
    r->opts.destination = NULL;
    if (o.destination && !(r->opts.destination = eddyi_strdup(o.destination)))
        goto nomem;
    if (!(r->rows = calloc(o.page_rows, sizeof *r->rows)))
        goto nomem;
    if (pthread_mutex_init(&r->mu, NULL) != 0)
        goto nomem;
    if (pthread_cond_init(&r->cond, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        goto nomem;
    }
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->mu);
        eddyi_error(err, EDDY_ENOMEM, "outbox relay: cannot start its thread");
        goto fail;
    }
    r->started = true;
    return r;
nomem:
    eddyi_error(err, EDDY_ENOMEM, "outbox relay: out of memory");
fail:
    if (r) {
        free((char *)r->opts.destination);
        free(r->rows);
        free(r);
    }
    return NULL;
}

int eddy_outbox_relay_stop(eddy_outbox_relay *r, eddy_error *err)
{
    if (!r)
        return EDDY_OK;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    /* Stop may be called from several threads; one joins. */
    pthread_mutex_lock(&r->mu);
    bool join = r->started && !r->joined;
    r->joined = true;
    pthread_mutex_unlock(&r->mu);
    if (join)
        pthread_join(r->thread, NULL);
    pthread_mutex_lock(&r->mu);
    int rc = r->status;
    if (rc != EDDY_OK && err)
        *err = r->status_err;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void eddy_outbox_relay_stats_get(const eddy_outbox_relay *r,
                                 eddy_outbox_relay_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!r)
        return;
    eddy_outbox_relay *m = (eddy_outbox_relay *)r; /* the mutex only */
    pthread_mutex_lock(&m->mu);
    *out = m->stats;
    pthread_mutex_unlock(&m->mu);
}

void eddy_outbox_relay_free(eddy_outbox_relay *r)
{
    if (!r)
        return;
    eddy_outbox_relay_stop(r, NULL);
    if (r->pub.close)
        r->pub.close(r->pub.self);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    free((char *)r->opts.destination);
    free(r->rows);
    free(r);
}
