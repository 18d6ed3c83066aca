/*
 * src/store/postgres.c - the PostgreSQL backend of the event store: the
 * writer's group-commit transaction, append, snapshots, reads and info. The
 * design (positions under a lock held until the commit is visible; why no
 * late commit is ever skipped) is written in postgres.h.
 *
 * THE WRITER runs libpq's pipeline mode: statements whose result nobody
 * waits for (BEGIN, SAVEPOINT, RELEASE, the append lock, the NOTIFY) are
 * queued and travel with the next statement that needs an answer (an
 * append, a snapshot, COMMIT), so a group commit of J appends costs J + 1
 * round trips plus the WAL flush. BEGIN and a job's SAVEPOINT are sent only
 * once a statement needs them: a batch that writes nothing sends nothing.
 * A queued statement of the writer's own that fails (only a lost
 * connection or a lock timeout can make them fail) marks the transaction
 * broken: every later job of the batch and its commit fail with that
 * error, and the transaction is rolled back, so no job is ever
 * acknowledged for writes a failed statement undid.
 *
 * DEFERRED STATEMENTS. A caller's statement whose result nobody reads (the
 * `sql` entry without rows or a count of changes: a checkpoint, a saga
 * row, an inbox row, a handler's eddy_txn_exec) is queued the same way
 * (write_defer) instead of costing a round trip of its own. Its error must
 * still fail its job alone, with its own message, so:
 *   - PostgreSQL runs nothing after a failed statement of a pipeline until
 *     the next sync, and aborts the transaction to the innermost
 *     savepoint: the results are read (a sync) before any savepoint
 *     begins, is released or is rolled back while deferred statements are
 *     queued. So they all belong to the innermost savepoint, and a failure
 *     is that savepoint's.
 *   - The sync of a release carries the RELEASE itself (no extra round
 *     trip). A failed deferred statement made the server skip it: the
 *     savepoint is rolled back instead, and the release returns the
 *     statement's error (backend.h: a failed release has rolled back),
 *     which fails the job (depth 0) or the item of a batch (deeper).
 *   - A statement that needs an answer syncs too: a deferred statement's
 *     error is then returned by that call, the first error of the sync;
 *     the statements after it were skipped by the server (the caller
 *     returns the error and the savepoint is rolled back).
 *   - The transaction's first statement is never deferred, so a
 *     connection found dead at the first exchange can still be replayed
 *     (write_stmt_ex).
 *   - COMMIT never follows a deferred statement whose result is unread
 *     (each job's release read them); if one did, the server would skip
 *     the COMMIT and the commit would fail: never a job acknowledged for
 *     a write that failed.
 * Blocking mode is safe in the pipeline: between two syncs the queries are
 * few and their results small, so neither side's buffers fill.
 *
 * AN APPEND is one statement (APPEND_SQL): it reads the stream's version and
 * max(position) under the append lock, checks the expected version, inserts
 * every event from binary arrays (unnest) at max+1.. and sets the stream's
 * version. A known id (a retry, a duplicate) makes the statement fail with a
 * unique violation; an expected version that does not match inserts
 * nothing. Either way the careful path then looks the ids up, as the SQLite
 * backend does (postgres.h; sqlite.c). The statement has no ON CONFLICT
 * clause on purpose: a speculative insertion probes the three unique
 * indexes once more and writes one more WAL record per row, a quarter of
 * the server's time per event (bench/README.md). So that its failure undoes
 * nothing else, the statement runs at the start of a savepoint: the
 * innermost one when nothing ran in it yet (a job that appends first: the
 * common case, no extra statement), else one of its own.
 *
 * READS are in postgres_read.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "postgres.h"

#define PIPE_MAX 32 /* statements queued before a sync is forced */

typedef enum entry_kind { ENTRY_PREPARE, ENTRY_STMT } entry_kind;

typedef struct pipe_entry {
    entry_kind kind;
    bool wanted;       /* its result goes to the caller of pipe_sync */
    bool caller;       /* a statement of the caller (or its PREPARE): its
                          failure is the statement's, which a rollback to
                          the savepoint undoes; any other failure (BEGIN,
                          SAVEPOINT, the lock, ...) loses the transaction */
    bool commit;       /* the COMMIT */
    char name[32];     /* the prepared statement */
    char what[160];    /* for messages (a copy: a deferred statement's
                          caller has returned when its result is read) */
} pipe_entry;

typedef struct pg_impl {
    eddyi_pg pg; /* first: shared with postgres_conn.c, _read.c, _watch.c */

    /* Writer thread only (and open/close). */
    eddyi_pg_conn *writer; /* NULL: read-only, or to be reconnected */
    bool pipeline;         /* the writer is in pipeline mode */
    pipe_entry queue[PIPE_MAX];
    int nq;
    bool txn_sent;   /* BEGIN was sent for the current transaction */
    bool txn_synced; /* ... and some of it reached the server and answered */
    /* Savepoints: depth 0 is a job's, 1.. nest inside it. `sp_want` levels
     * are open for the front, the first `sp_sent` of them on the server
     * (sent only once a statement needs them, innermost last). */
    int sp_want, sp_sent;
    /* Statements of the caller sent inside the innermost savepoint sent
     * since it began; 1 (not empty, to be safe) after a savepoint nested in
     * it ended. An append at its start needs no savepoint of its own. */
    int sp_stmts;
    bool appended;   /* the transaction ran an append statement (it ends
                        with the NOTIFY) */
    /* A statement of the caller failed: PostgreSQL then ignores every
     * statement until a rollback to the innermost savepoint sent. */
    bool aborted;
    eddy_error abort_err; /* ... with this error */
    /* Statements of the caller queued without waiting for their result
     * (write_defer), all inside the innermost savepoint sent: their
     * errors are read at the next sync, which every savepoint change
     * forces. */
    int deferred;
    int broken;      /* a queued statement failed: the transaction is lost */
    eddy_error broken_err;

    eddyi_pg_watch *watch;
} pg_impl;

/* ---- SQL ------------------------------------------------------------------ */

static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
/* Savepoint statements by depth: static strings, prepared once and found
 * in the statement cache by address. */
#define SP_DEPTHS 16
#define SP_NAME(d) "eddy_sp" #d
#define SP_ROW(d)                                                              \
    {"SAVEPOINT " SP_NAME(d), "RELEASE " SP_NAME(d),                          \
     "ROLLBACK TO " SP_NAME(d)}
static const char *const SQL_SP[SP_DEPTHS][3] = {
    SP_ROW(0),  SP_ROW(1),  SP_ROW(2),  SP_ROW(3),  SP_ROW(4),  SP_ROW(5),
    SP_ROW(6),  SP_ROW(7),  SP_ROW(8),  SP_ROW(9),  SP_ROW(10), SP_ROW(11),
    SP_ROW(12), SP_ROW(13), SP_ROW(14), SP_ROW(15)};
enum { SP_BEGIN, SP_RELEASE, SP_ROLLBACK };
static const char SQL_LOCK[] = "SELECT pg_advisory_xact_lock($1, $2)";
static const char SQL_NOTIFY[] =
    "SELECT pg_notify($1, (SELECT COALESCE(max(position), 0) "
    "FROM events)::text)";

/*
 * $1 stream, $2 expected version, $3 recorded_us, $4 ids, $5 types, $6 times
 * (NULL: none), $7 payloads, $8..$11 correlation ids, causation ids,
 * sources, subjects (NULL: none). Returns the stream's version and
 * max(position) before, and whether the expected version matched: then
 * every event went in at max+1.. and the stream row holds the new version;
 * else nothing was written. Fails with a unique violation when an id is
 * stored already. Nothing is RETURNed from the inserts (no tuplestore of the
 * rows): the version check alone tells what they did.
 */
static const char SQL_APPEND[] =
    "WITH cur AS MATERIALIZED ("
    "  SELECT COALESCE((SELECT version FROM eddy_streams"
    "                   WHERE stream_id = $1), 0) AS v,"
    "         (SELECT COALESCE(max(position), 0) FROM events) AS p),"
    " ins AS ("
    "  INSERT INTO events(position, id, stream_id, stream_version, type,"
    "                     time_us, recorded_us, payload, correlation_id,"
    "                     causation_id, source, subject)"
    "  SELECT cur.p + e.n, e.id, $1, cur.v + e.n, e.type, e.t, $3, e.payload,"
    "         e.co, e.ca, e.so, e.su"
    "  FROM cur, unnest($4::text[], $5::text[], $6::int8[], $7::bytea[],"
    "                   $8::text[], $9::text[], $10::text[], $11::text[])"
    "       WITH ORDINALITY AS e(id, type, t, payload, co, ca, so, su, n)"
    "  WHERE $2 = -1 OR ($2 = -2 AND cur.v > 0) OR cur.v = $2),"
    " up AS ("
    "  INSERT INTO eddy_streams(stream_id, version)"
    "  SELECT $1, cur.v + cardinality($4::text[]) FROM cur"
    "  WHERE $2 = -1 OR ($2 = -2 AND cur.v > 0) OR cur.v = $2"
    "  ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version)"
    " SELECT v, p, ($2 = -1 OR ($2 = -2 AND v > 0) OR v = $2)::int FROM cur";
static const char SQL_EVENTS_BY_ID[] =
    "SELECT id, position, stream_id, stream_version, payload FROM events "
    "WHERE id = ANY($1::text[])";
static const char SQL_SNAPSHOT_SAVE[] =
    "WITH cur AS MATERIALIZED ("
    "  SELECT COALESCE((SELECT version FROM eddy_streams"
    "                   WHERE stream_id = $1), 0) AS v),"
    " ins AS ("
    "  INSERT INTO eddy_snapshots(stream_id, version, schema_version, state,"
    "                             taken_us)"
    "  SELECT $1, $2, $3, $4, $5 FROM cur WHERE $2 <= cur.v"
    "  ON CONFLICT (stream_id, version) DO UPDATE SET"
    "    schema_version = excluded.schema_version, state = excluded.state,"
    "    taken_us = excluded.taken_us"
    "  RETURNING 1)"
    " SELECT cur.v, (SELECT count(*) FROM ins) FROM cur";

/* ---- the writer's pipeline ----------------------------------------------- */

static int broken_error(pg_impl *im, eddy_error *err)
{
    if (err)
        *err = im->broken_err;
    return im->broken;
}

static void mark_broken(pg_impl *im, int rc, const eddy_error *e)
{
    if (im->broken)
        return;
    im->broken = rc;
    im->broken_err = *e;
}

/* The writer's connection is gone: forget it (the next transaction opens a
 * new one). */
static void writer_lost(pg_impl *im, const char *detail)
{
    eddyi_pg_conn_dead(&im->pg, im->writer, detail);
    eddyi_pg_conn_free(im->writer);
    im->writer = NULL;
    im->pipeline = false;
    im->nq = 0;
    im->deferred = 0;
}

static int pipe_sync(pg_impl *im, PGresult **wanted, bool *lost,
                     eddy_error *err);

/* Queues one prepared statement (`dynamic`: cached by content, not by
 * address); `wanted`: its result is returned by the next pipe_sync;
 * `caller`: a statement of the caller (wanted, or deferred), whose failure
 * does not lose the transaction. */
static int pipe_send_ex(pg_impl *im, const char *sql, bool dynamic,
                        const eddyi_pg_params *p, bool wanted, bool caller,
                        const char *what, eddy_error *err)
{
    static const eddyi_pg_params none = {0};
    if (!p)
        p = &none;
    if (im->broken)
        return broken_error(im, err);
    if (!im->writer) {
        eddy_error e;
        eddyi_error(&e, EDDY_ECONNECT, "PostgreSQL %s: the connection was "
                    "lost; the transaction was rolled back, nothing of it was "
                    "stored", im->pg.where);
        mark_broken(im, EDDY_ECONNECT, &e);
        return broken_error(im, err);
    }
    PGconn *c = im->writer->pg;
    if (im->nq + 3 > PIPE_MAX) {
        int rc = pipe_sync(im, NULL, NULL, err);
        if (rc != EDDY_OK)
            return rc;
    }
    if (!im->pipeline) {
        if (!PQenterPipelineMode(c))
            return eddyi_pg_error(&im->pg, c, NULL, "entering pipeline mode",
                                  err);
        im->pipeline = true;
    }
    char name[32];
    bool fresh = false;
    int rc = eddyi_pg_stmt_name(im->writer, sql, dynamic, name, &fresh, err);
    if (rc != EDDY_OK)
        return rc;
    bool sent = true;
    if (im->writer->evicted) {
        /* The statement whose cache slot was just taken: deallocated in
         * the pipeline (it cannot fail in a sound transaction, and an
         * aborted one sends nothing: pg_sql). */
        char dealloc[48];
        snprintf(dealloc, sizeof dealloc, "DEALLOCATE eddy_%u",
                 im->writer->evicted);
        im->writer->evicted = 0;
        sent = PQsendQueryParams(c, dealloc, 0, NULL, NULL, NULL, NULL, 1) ==
               1;
        if (sent) {
            pipe_entry *q = &im->queue[im->nq++];
            *q = (pipe_entry){.kind = ENTRY_STMT};
            snprintf(q->what, sizeof q->what, "DEALLOCATE");
        }
    }
    if (sent && fresh) {
        sent = PQsendPrepare(c, name, sql, p->n, p->types) == 1;
        if (sent) {
            pipe_entry *q = &im->queue[im->nq++];
            *q = (pipe_entry){.kind = ENTRY_PREPARE, .caller = caller};
            snprintf(q->name, sizeof q->name, "%s", name);
            snprintf(q->what, sizeof q->what, "%s", what);
        } else {
            eddyi_pg_stmt_forget(im->writer, name);
        }
    }
    if (sent)
        sent = PQsendQueryPrepared(c, name, p->n, p->values, p->lengths,
                                   p->formats, p->text_results ? 0 : 1) == 1;
    if (!sent) {
        eddy_error e;
        rc = eddyi_pg_error(&im->pg, c, NULL, what, &e);
        mark_broken(im, rc, &e);
        return broken_error(im, err);
    }
    pipe_entry *q = &im->queue[im->nq++];
    *q = (pipe_entry){.kind = ENTRY_STMT, .wanted = wanted, .caller = caller,
                      .commit = sql == SQL_COMMIT};
    if (caller)
        im->sp_stmts++;
    snprintf(q->name, sizeof q->name, "%s", name);
    snprintf(q->what, sizeof q->what, "%s", what);
    return EDDY_OK;
}

/* Queues one of the writer's own statements (BEGIN, SAVEPOINT, ...):
 * `wanted` only for COMMIT and ROLLBACK. */
static int pipe_send(pg_impl *im, const char *sql, const eddyi_pg_params *p,
                     bool wanted, const char *what, eddy_error *err)
{
    return pipe_send_ex(im, sql, false, p, wanted, false, what, err);
}

/*
 * Sends the queue and reads every result. Returns EDDY_OK and, when a
 * statement was `wanted`, its result in `*wanted` (PQclear it); or the
 * first error. `*lost` (may be NULL) tells that the connection died: the
 * writer is then dropped and the transaction marked broken.
 */
static int pipe_sync(pg_impl *im, PGresult **wanted, bool *lost,
                     eddy_error *err)
{
    if (wanted)
        *wanted = NULL;
    if (lost)
        *lost = false;
    if (im->nq == 0)
        return im->broken ? broken_error(im, err) : EDDY_OK;
    PGconn *c = im->writer->pg;
    int rc = EDDY_OK;
    eddy_error first = {0};
    bool dead = PQpipelineSync(c) != 1;
    int i = 0;
    for (; i < im->nq && !dead; i++) {
        pipe_entry *q = &im->queue[i];
        PGresult *r = PQgetResult(c);
        if (!r) {
            dead = true; /* no result where one is due: unusable */
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (q->commit && strcmp(PQcmdStatus(r), "COMMIT") != 0 &&
                rc == EDDY_OK) {
                rc = eddyi_error(&first, EDDY_EIO,
                                 "PostgreSQL %s: the transaction was rolled "
                                 "back (%s)", im->pg.where, PQcmdStatus(r));
            }
            if (q->wanted && wanted && rc == EDDY_OK) {
                *wanted = r;
                r = NULL;
            }
        } else {
            if (q->kind == ENTRY_PREPARE)
                eddyi_pg_stmt_forget(im->writer, q->name);
            if (st != PGRES_PIPELINE_ABORTED && rc == EDDY_OK) {
                rc = eddyi_pg_error(&im->pg, c, r, q->what, &first);
                if (!q->wanted && !q->caller)
                    mark_broken(im, rc, &first);
            }
            if (PQstatus(c) == CONNECTION_BAD)
                dead = true;
        }
        PQclear(r);
        if (dead)
            break;
        /* Each statement's results end with a NULL. */
        while ((r = PQgetResult(c)) != NULL)
            PQclear(r);
    }
    if (!dead) {
        PGresult *r = PQgetResult(c);
        dead = !r || PQresultStatus(r) != PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    im->nq = 0;
    im->deferred = 0;
    if (dead) {
        eddy_error why = first, e;
        if (!why.code)
            eddyi_pg_error(&im->pg, c, NULL, "connection", &why);
        eddyi_error(&e, EDDY_ECONNECT, "%s; the transaction was rolled back, "
                    "nothing of it was stored", why.message);
        writer_lost(im, why.message);
        im->broken = EDDY_ECONNECT; /* this explanation wins */
        im->broken_err = e;
        if (lost)
            *lost = true;
        if (wanted && *wanted) {
            PQclear(*wanted);
            *wanted = NULL;
        }
        return broken_error(im, err);
    }
    if (im->txn_sent)
        im->txn_synced = true; /* the transaction reached the server */
    if (rc != EDDY_OK) {
        if (wanted && *wanted) {
            PQclear(*wanted);
            *wanted = NULL;
        }
        if (!im->broken && !im->aborted) {
            /* A statement of the caller failed: PostgreSQL ignores the
             * rest until its savepoint is rolled back. */
            im->aborted = true;
            im->abort_err = first;
        }
        if (err)
            *err = first;
    }
    return rc;
}

/* BEGIN and the savepoints asked for, when a statement is about to need
 * them. */
static int prelude(pg_impl *im, eddy_error *err)
{
    int rc = EDDY_OK;
    if (!im->txn_sent) {
        rc = pipe_send(im, SQL_BEGIN, NULL, false, "BEGIN", err);
        im->txn_sent = rc == EDDY_OK;
        if (rc == EDDY_OK) {
            /* The append lock first, in a statement of its own, before any
             * row lock, in every write transaction (postgres.h, LOCK
             * ORDER); the next statement's snapshot is taken after it was
             * granted. */
            eddyi_pg_params lp = {0};
            eddyi_pg_param_int4(&lp, EDDYI_PG_LOCK_CLASS);
            eddyi_pg_param_int4(&lp, im->pg.lock_key);
            rc = pipe_send(im, SQL_LOCK, &lp, false, "taking the append lock",
                           err);
        }
    }
    while (rc == EDDY_OK && im->sp_sent < im->sp_want) {
        rc = pipe_send(im, SQL_SP[im->sp_sent][SP_BEGIN], NULL, false,
                       "SAVEPOINT", err);
        if (rc == EDDY_OK) {
            im->sp_sent++;
            im->sp_stmts = 0;
        }
    }
    return rc;
}

static int writer_connect(pg_impl *im, eddy_error *err);

/*
 * Runs `sql` in the transaction (`lock`: it appends, which the commit's
 * NOTIFY announces) and returns its result (PQclear it), or NULL with `err`. When the connection
 * turns out dead at the transaction's first exchange (say the server
 * restarted while the writer was idle), nothing of the transaction ever
 * reached the server: it is replayed once on a new connection.
 */
/* After a failed statement: PostgreSQL would answer "current transaction
 * is aborted"; say which statement failed, and what to do. */
static int aborted_error(pg_impl *im, const char *what, eddy_error *err)
{
    return eddyi_error(err, EDDY_ESTATE,
                       "PostgreSQL %s: %s: an earlier statement of this "
                       "transaction failed (%.300s), and PostgreSQL runs "
                       "nothing more until its savepoint is rolled back: "
                       "return that error (the store rolls the job back), or "
                       "run the statement that may fail in a savepoint of its "
                       "own",
                       im->pg.where, what, im->abort_err.message);
}

static PGresult *write_stmt_ex(pg_impl *im, const char *sql, bool dynamic,
                               const eddyi_pg_params *p, bool lock,
                               const char *what, eddy_error *err)
{
    eddy_error local;
    if (!err)
        err = &local;
    if (im->aborted && !im->broken) {
        aborted_error(im, what, err);
        return NULL;
    }
    for (int attempt = 0;; attempt++) {
        bool first = !im->txn_synced, lost = false;
        int rc = prelude(im, err);
        if (rc == EDDY_OK && lock)
            im->appended = true;
        PGresult *r = NULL;
        if (rc == EDDY_OK)
            rc = pipe_send_ex(im, sql, dynamic, p, true, true, what, err);
        if (rc == EDDY_OK)
            rc = pipe_sync(im, &r, &lost, err);
        if (rc == EDDY_OK)
            return r;
        if (!lost && !im->broken && !im->aborted) {
            im->aborted = true; /* the statement itself failed */
            im->abort_err = *err;
        }
        if (!(lost && first && attempt == 0))
            return NULL;
        /* Start the transaction again on a new connection. */
        im->txn_sent = im->appended = false;
        im->sp_sent = 0;
        im->broken = EDDY_OK;
        if (writer_connect(im, err) != EDDY_OK) {
            mark_broken(im, err ? err->code : EDDY_ECONNECT, err);
            return NULL;
        }
    }
}

static PGresult *write_stmt(pg_impl *im, const char *sql,
                            const eddyi_pg_params *p, bool lock,
                            const char *what, eddy_error *err)
{
    return write_stmt_ex(im, sql, false, p, lock, what, err);
}

/*
 * Queues `sql`, whose result nobody reads, in the transaction without
 * waiting for it: it travels with the next statement that needs an answer,
 * or with the sync that the next savepoint change forces (postgres.h,
 * "DEFERRED STATEMENTS"). Its error, if any, is returned by that later
 * call. The transaction's first statement still runs at once, so that a
 * connection found dead there can be replayed (write_stmt_ex).
 */
static int write_defer(pg_impl *im, const char *sql, bool dynamic,
                       const eddyi_pg_params *p, const char *what,
                       eddy_error *err)
{
    if (!im->txn_synced) {
        PGresult *r = write_stmt_ex(im, sql, dynamic, p, false, what, err);
        if (!r)
            return err && err->code ? err->code : EDDY_EIO;
        PQclear(r);
        return EDDY_OK;
    }
    if (im->aborted && !im->broken)
        return aborted_error(im, what, err);
    int rc = prelude(im, err);
    if (rc == EDDY_OK)
        rc = pipe_send_ex(im, sql, dynamic, p, false, true, what, err);
    if (rc == EDDY_OK)
        im->deferred++;
    return rc;
}

/*
 * Reads the results of the deferred statements, if any: before a savepoint
 * changes, so that an error belongs to the savepoint they ran in. Returns
 * EDDY_OK, or the first failed statement's error (im->aborted is then
 * set), or the broken transaction's.
 */
static int deferred_sync(pg_impl *im, eddy_error *err)
{
    if (!im->deferred)
        return EDDY_OK;
    return pipe_sync(im, NULL, NULL, err);
}

/* ---- the writer connection -------------------------------------------------- */

/* Session settings of the writer: lock_timeout = busy_timeout_ms, and the
 * sync mode as synchronous_commit (FULL keeps a stronger server setting). */
static int writer_setup(pg_impl *im, eddyi_pg_conn *c, eddy_error *err)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SET lock_timeout = %d",
             im->pg.opts.busy_timeout_ms);
    int rc = eddyi_pg_exec_simple(&im->pg, c, sql, err);
    if (rc != EDDY_OK)
        return rc;
    if (im->pg.opts.sync != EDDY_SYNC_FULL)
        return eddyi_pg_exec_simple(&im->pg, c, "SET synchronous_commit = off",
                                    err);
    PGresult *r = PQexec(c->pg, "SHOW synchronous_commit");
    bool off = PQresultStatus(r) == PGRES_TUPLES_OK &&
               strcmp(PQgetvalue(r, 0, 0), "off") == 0;
    PQclear(r);
    return off ? eddyi_pg_exec_simple(&im->pg, c, "SET synchronous_commit = on",
                                      err)
               : EDDY_OK;
}

static void txn_reset(pg_impl *im)
{
    im->txn_sent = im->txn_synced = im->appended = im->aborted = false;
    im->sp_want = im->sp_sent = im->sp_stmts = 0;
    im->broken = EDDY_OK;
    im->nq = 0;
    im->deferred = 0;
}

/* Opens the writer connection again (with backoff). */
static int writer_connect(pg_impl *im, eddy_error *err)
{
    if (im->writer)
        writer_lost(im, NULL);
    eddyi_pg_conn *c = NULL;
    int rc = eddyi_pg_connect(&im->pg, "writer", true, &c, err);
    if (rc == EDDY_OK && (rc = writer_setup(im, c, err)) != EDDY_OK) {
        eddyi_pg_conn_free(c);
        c = NULL;
    }
    im->writer = c;
    return rc;
}

static int pg_write_begin(void *impl, eddy_error *err)
{
    pg_impl *im = impl;
    txn_reset(im);
    /* A connection left inside a transaction (a native statement's doing)
     * is not reused. */
    if (eddyi_pg_conn_alive(im->writer) &&
        PQtransactionStatus(im->writer->pg) == PQTRANS_IDLE)
        return EDDY_OK;
    return writer_connect(im, err);
}

/* The NOTIFY that announces a transaction's appends, queued before its
 * COMMIT (unless eddy_notify=off). */
static int queue_notify(pg_impl *im, eddy_error *err)
{
    if (!im->appended || !im->pg.notify)
        return EDDY_OK;
    eddyi_pg_params p = {0};
    eddyi_pg_param_text(&p, im->pg.channel);
    return pipe_send(im, SQL_NOTIFY, &p, false, "NOTIFY", err);
}

static int pg_write_commit(void *impl, eddy_error *err)
{
    pg_impl *im = impl;
    if (im->broken)
        return broken_error(im, err);
    if (!im->txn_sent) { /* nothing was written */
        txn_reset(im);
        return EDDY_OK;
    }
    int rc = queue_notify(im, err);
    if (rc != EDDY_OK)
        return rc;
    rc = pipe_send(im, SQL_COMMIT, NULL, true, "COMMIT", err);
    if (rc != EDDY_OK)
        return rc;
    PGresult *r = NULL;
    bool lost = false;
    rc = pipe_sync(im, &r, &lost, err);
    PQclear(r);
    if (lost)
        rc = eddyi_error(err, EDDY_EINDOUBT,
                         "PostgreSQL %s: the connection was lost during "
                         "COMMIT: the transaction may or may not have been "
                         "stored; appending the same events again is safe "
                         "(idempotent by event id)", im->pg.where);
    if (rc == EDDY_OK || lost) {
        txn_reset(im); /* the transaction is over */
    } else {
        /* Still open when a statement before COMMIT failed: the front's
         * write_rollback ends it (after a failed COMMIT, its ROLLBACK only
         * draws a warning). */
        im->broken = EDDY_OK;
    }
    return rc;
}

static void pg_write_rollback(void *impl)
{
    pg_impl *im = impl;
    if (im->txn_sent && im->writer) {
        im->broken = EDDY_OK; /* ROLLBACK itself must go out */
        /* A failed deferred statement would make the server skip the
         * ROLLBACK queued behind it: read their results first. */
        deferred_sync(im, NULL);
        PGresult *r = NULL;
        if (pipe_send(im, SQL_ROLLBACK, NULL, true, "ROLLBACK", NULL) ==
            EDDY_OK)
            pipe_sync(im, &r, NULL, NULL);
        PQclear(r);
    }
    txn_reset(im);
}

/*
 * Savepoints: depth 0 is a job's own, 1, 2, ... nest inside it
 * (eddyi_txn_savepoint). None is sent before a statement needs it (prelude),
 * so a job or an item that writes nothing costs nothing; releasing or
 * rolling back one that was never sent sends nothing either.
 */
static int pg_savepoint(void *impl, int depth, eddy_error *err)
{
    pg_impl *im = impl;
    if (depth < 0 || depth >= SP_DEPTHS || depth != im->sp_want)
        return eddyi_error(err, EDDY_EINVAL, "savepoint depth %d (%d open, "
                           "at most %d)", depth, im->sp_want, SP_DEPTHS);
    if (im->broken)
        return broken_error(im, err);
    if (im->aborted)
        return eddyi_error(err, EDDY_ESTATE, "PostgreSQL %s: a savepoint "
                           "cannot begin after a failed statement (roll back "
                           "first)", im->pg.where);
    /* The deferred statements belong to the enclosing savepoint: their
     * errors are its own, not the new one's. */
    int rc = deferred_sync(im, err);
    if (rc != EDDY_OK)
        return rc;
    im->sp_want = depth + 1;
    return EDDY_OK;
}

/* Forgets savepoint `depth` and those inside it, after a release or a
 * rollback. */
static void sp_forget(pg_impl *im, int depth)
{
    if (im->sp_sent > depth)
        im->sp_sent = depth;
    im->sp_want = depth;
    im->sp_stmts = 1; /* the enclosing one may have statements */
}

static void pg_savepoint_rollback(void *impl, int depth)
{
    pg_impl *im = impl;
    if (depth < 0 || depth >= im->sp_want)
        return;
    /* The deferred statements are inside (an outer one's would have been
     * read when this savepoint began): their results are read, and
     * ignored, first, as a failed one makes the server skip what follows
     * it until a sync. */
    deferred_sync(im, NULL);
    if (im->sp_sent > depth && !im->broken) {
        pipe_send(im, SQL_SP[depth][SP_ROLLBACK], NULL, false, "ROLLBACK TO",
                  NULL);
        pipe_send(im, SQL_SP[depth][SP_RELEASE], NULL, false, "RELEASE",
                  NULL);
        im->aborted = false; /* the failed statement was inside */
    }
    sp_forget(im, depth);
}

static int pg_savepoint_release(void *impl, int depth, eddy_error *err)
{
    pg_impl *im = impl;
    if (depth < 0 || depth >= im->sp_want)
        return eddyi_error(err, EDDY_ESTATE, "no savepoint %d to release",
                           depth);
    if (im->broken) {
        sp_forget(im, depth);
        return broken_error(im, err);
    }
    if (im->aborted && im->sp_sent > depth) {
        /* The caller went on after a failed statement: what it wrote in
         * the savepoint cannot be kept. */
        eddy_error why = im->abort_err;
        pg_savepoint_rollback(im, depth);
        return eddyi_error(err, EDDY_ESTATE, "PostgreSQL %s: a statement "
                           "failed inside this savepoint and the error was "
                           "not returned (%.300s); its writes were rolled "
                           "back", im->pg.where, why.message);
    }
    int rc = EDDY_OK;
    if (im->sp_sent > depth)
        rc = pipe_send(im, SQL_SP[depth][SP_RELEASE], NULL, false, "RELEASE",
                       err);
    if (rc == EDDY_OK && im->deferred) {
        /* The deferred statements ran in this savepoint: their errors are
         * known now, with the RELEASE, in one round trip. A failed one
         * made the server skip the RELEASE: the savepoint is rolled back
         * and the statement's error returned, as if the statement had
         * returned it. */
        eddy_error e = {0};
        rc = pipe_sync(im, NULL, NULL, &e);
        if (rc != EDDY_OK && !im->broken) {
            pg_savepoint_rollback(im, depth);
            if (err)
                *err = e;
            return rc;
        }
        if (rc != EDDY_OK && err)
            *err = e;
    }
    sp_forget(im, depth);
    return rc;
}

static void *pg_write_native(void *impl)
{
    pg_impl *im = impl;
    /* The caller's statements run inside the job's savepoint, outside
     * pipeline mode (re-entered at our next statement). */
    if (im->writer && prelude(im, NULL) == EDDY_OK &&
        pipe_sync(im, NULL, NULL, NULL) == EDDY_OK && im->writer) {
        im->txn_synced = true;
        if (im->pipeline && PQexitPipelineMode(im->writer->pg) == 1)
            im->pipeline = false;
    }
    im->sp_stmts = 1; /* whatever the caller runs on it */
    return im->writer ? im->writer->pg : NULL;
}

/* ---- append -------------------------------------------------------------- */

/* The arrays of one append statement. */
typedef struct arrays {
    eddyi_buf ids, types, times, payloads;
    eddyi_buf attrs[4]; /* correlation, causation, source, subject */
} arrays;

static void arrays_free(arrays *a)
{
    eddyi_buf_free(&a->ids);
    eddyi_buf_free(&a->types);
    eddyi_buf_free(&a->times);
    eddyi_buf_free(&a->payloads);
    for (int k = 0; k < 4; k++)
        eddyi_buf_free(&a->attrs[k]);
}

/* The envelope attributes written as columns (store schema 2). */
static const char *event_attr(const eddy_event *ev, int k)
{
    switch (k) {
    case 0: return eddy_event_correlation_id(ev);
    case 1: return eddy_event_causation_id(ev);
    case 2: return eddy_event_source(ev);
    default: return eddy_event_subject(ev);
    }
}

/* Builds the arrays of the events whose `pick` is set (all when NULL). */
static int arrays_build(arrays *a, const eddyi_pending *ev, size_t count,
                        const unsigned char *pick, size_t picked,
                        eddy_error *err)
{
    bool nulls = false;
    for (size_t i = 0; i < count && !nulls; i++)
        nulls = (!pick || pick[i]) && eddy_event_time(ev[i].event) == 0;
    eddyi_pg_array_begin(&a->ids, EDDYI_PG_TEXT, (int32_t)picked, false);
    eddyi_pg_array_begin(&a->types, EDDYI_PG_TEXT, (int32_t)picked, false);
    eddyi_pg_array_begin(&a->times, EDDYI_PG_INT8, (int32_t)picked, nulls);
    eddyi_pg_array_begin(&a->payloads, EDDYI_PG_BYTEA, (int32_t)picked, false);
    for (int k = 0; k < 4; k++)
        eddyi_pg_array_begin(&a->attrs[k], EDDYI_PG_TEXT, (int32_t)picked,
                             true);
    for (size_t i = 0; i < count; i++) {
        if (pick && !pick[i])
            continue;
        const char *id = eddy_event_id(ev[i].event);
        const char *type = eddy_event_type(ev[i].event);
        int64_t t = eddy_event_time(ev[i].event);
        eddyi_pg_array_elem(&a->ids, id, strlen(id));
        eddyi_pg_array_elem(&a->types, type, strlen(type));
        if (t) {
            eddyi_pg_buf_i32(&a->times, 8);
            eddyi_pg_buf_i64(&a->times, t);
        } else {
            eddyi_pg_array_null(&a->times);
        }
        eddyi_pg_array_elem(&a->payloads, ev[i].payload, ev[i].len);
        for (int k = 0; k < 4; k++) {
            const char *v = event_attr(ev[i].event, k);
            if (v)
                eddyi_pg_array_elem(&a->attrs[k], v, strlen(v));
            else
                eddyi_pg_array_null(&a->attrs[k]);
        }
    }
    bool failed = false;
    for (int k = 0; k < 4; k++)
        failed |= a->attrs[k].failed;
    if (failed || a->ids.failed || a->types.failed || a->times.failed ||
        a->payloads.failed) {
        arrays_free(a);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    return EDDY_OK;
}

typedef struct append_out {
    int64_t version;  /* the stream's version before */
    int64_t max_pos;  /* max(position) before */
    bool complete;    /* the version matched: every row went in and the
                         stream row was set (else nothing was written) */
} append_out;

/* The parameters of APPEND_SQL; they point into `a`. */
static void append_params(eddyi_pg_params *p, const char *stream_id,
                          int64_t expected, int64_t recorded_us,
                          const arrays *a)
{
    *p = (eddyi_pg_params){0};
    eddyi_pg_param_text(p, stream_id);
    eddyi_pg_param_int8(p, expected);
    eddyi_pg_param_int8(p, recorded_us);
    eddyi_pg_param_bin(p, a->ids.p, a->ids.n, EDDYI_PG_TEXT_ARRAY);
    eddyi_pg_param_bin(p, a->types.p, a->types.n, EDDYI_PG_TEXT_ARRAY);
    eddyi_pg_param_bin(p, a->times.p, a->times.n, EDDYI_PG_INT8_ARRAY);
    eddyi_pg_param_bin(p, a->payloads.p, a->payloads.n, EDDYI_PG_BYTEA_ARRAY);
    for (int k = 0; k < 4; k++)
        eddyi_pg_param_bin(p, a->attrs[k].p, a->attrs[k].n,
                           EDDYI_PG_TEXT_ARRAY);
}

static void append_result(PGresult *r, append_out *out)
{
    out->version = eddyi_pg_int(r, 0, 0);
    out->max_pos = eddyi_pg_int(r, 0, 1);
    out->complete = eddyi_pg_int(r, 0, 2) == 1;
}

/* Runs APPEND_SQL (after the append lock). */
static int append_stmt(pg_impl *im, const char *stream_id, int64_t expected,
                       int64_t recorded_us, const arrays *a, append_out *out,
                       eddy_error *err)
{
    eddyi_pg_params p;
    append_params(&p, stream_id, expected, recorded_us, a);
    PGresult *r = write_stmt(im, SQL_APPEND, &p, true, "appending events",
                             err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    append_result(r, out);
    PQclear(r);
    return EDDY_OK;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(eddy_event_id((*(const eddyi_pending *const *)a)->event),
                  eddy_event_id((*(const eddyi_pending *const *)b)->event));
}

/* EDDY_EINVAL when one id appears twice in the call. */
static int check_twice(const char *stream_id, const eddyi_pending *ev,
                       size_t count, eddy_error *err)
{
    const eddyi_pending **sorted = malloc(count * sizeof *sorted);
    if (!sorted)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        sorted[i] = &ev[i];
    qsort(sorted, count, sizeof *sorted, cmp_ids);
    int rc = EDDY_OK;
    for (size_t i = 1; i < count && rc == EDDY_OK; i++)
        if (cmp_ids(&sorted[i - 1], &sorted[i]) == 0)
            rc = eddyi_error(err, EDDY_EINVAL,
                             "stream %s: event id %s appears twice in one "
                             "append", stream_id,
                             eddy_event_id(sorted[i]->event));
    free(sorted);
    return rc;
}

/* The index of the event with id `id` (count if none). */
static size_t find_event(const eddyi_pending *ev, size_t count, const char *id)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(eddy_event_id(ev[i].event), id) == 0)
            return i;
    return count;
}

/*
 * The careful path (a known id, or an expected version that does not
 * match): classify each event as new, stored identically, or stored
 * differently; succeed without a version check when all are stored
 * identically (a retry); else append the new ones. As sqlite.c's.
 */
static int append_slow(pg_impl *im, const char *stream_id, int64_t expected,
                       const eddyi_pending *ev, size_t count,
                       int64_t recorded_us, eddy_append_result *res,
                       eddy_error *err)
{
    int rc = check_twice(stream_id, ev, count, err);
    if (rc != EDDY_OK)
        return rc;
    unsigned char *pick = malloc(count);
    if (!pick)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    memset(pick, 1, count);
    eddyi_buf ids = {0};
    eddyi_pg_array_begin(&ids, EDDYI_PG_TEXT, (int32_t)count, false);
    for (size_t i = 0; i < count; i++) {
        const char *id = eddy_event_id(ev[i].event);
        eddyi_pg_array_elem(&ids, id, strlen(id));
    }
    PGresult *r = NULL;
    if (ids.failed) {
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    } else {
        eddyi_pg_params p = {0};
        eddyi_pg_param_bin(&p, ids.p, ids.n, EDDYI_PG_TEXT_ARRAY);
        r = write_stmt(im, SQL_EVENTS_BY_ID, &p, false, "looking up event ids",
                       err);
        if (!r)
            rc = err ? err->code : EDDY_EIO;
    }
    eddyi_buf_free(&ids);
    size_t stored = 0;
    int64_t min_pos = 0, max_pos = 0, max_ver = 0;
    for (int row = 0; rc == EDDY_OK && row < PQntuples(r); row++) {
        const char *id = PQgetvalue(r, row, 0);
        size_t i = find_event(ev, count, id);
        if (i == count)
            continue;
        int64_t pos = eddyi_pg_int(r, row, 1);
        const char *sid = PQgetvalue(r, row, 2);
        int64_t ver = eddyi_pg_int(r, row, 3);
        const char *payload = PQgetvalue(r, row, 4);
        size_t plen = (size_t)PQgetlength(r, row, 4);
        bool same = strcmp(sid, stream_id) == 0;
        if (same && !(plen == ev[i].len &&
                      memcmp(payload, ev[i].payload, plen) == 0)) {
            eddy_event *old = eddy_event_decode(payload, plen, NULL);
            same = old && eddy_event_equal(old, ev[i].event);
            eddy_event_unref(old);
        }
        if (!same) {
            rc = eddyi_error(err, EDDY_EDUPLICATE,
                             "event id %s is already stored (stream %s, "
                             "version %lld) with different content",
                             id, sid, (long long)ver);
            break;
        }
        pick[i] = 0;
        stored++;
        if (!min_pos || pos < min_pos)
            min_pos = pos;
        if (pos > max_pos)
            max_pos = pos;
        if (ver > max_ver)
            max_ver = ver;
    }
    PQclear(r);
    if (rc != EDDY_OK)
        goto done;
    if (stored == count) { /* a retried append: report what is stored */
        res->first_position = min_pos;
        res->last_position = max_pos;
        res->stream_version = max_ver;
        goto done;
    }
    arrays a = {0};
    if ((rc = arrays_build(&a, ev, count, pick, count - stored, err)) !=
        EDDY_OK)
        goto done;
    append_out out = {0};
    rc = append_stmt(im, stream_id, expected, recorded_us, &a, &out, err);
    arrays_free(&a);
    if (rc != EDDY_OK)
        goto done;
    if ((rc = eddyi_expected_check(stream_id, expected, out.version, err)) !=
        EDDY_OK)
        goto done; /* the job's savepoint undoes anything */
    if (!out.complete) { /* the check above and the statement's disagree */
        rc = eddyi_error(err, EDDY_EIO,
                         "PostgreSQL %s: stream %s: the append's version "
                         "check failed at version %lld; did a writer bypass "
                         "eddy's append lock?",
                         im->pg.where, stream_id, (long long)out.version);
        goto done;
    }
    res->first_position = out.max_pos + 1;
    res->last_position = out.max_pos + (int64_t)(count - stored);
    res->stream_version = out.version + (int64_t)(count - stored);
done:
    free(pick);
    return rc;
}

/*
 * After a statement at the start of savepoint `depth` (the innermost, sent)
 * failed: rolls back to it and keeps it open, empty again.
 */
static int sp_restart(pg_impl *im, int depth, eddy_error *err)
{
    int rc = pipe_send(im, SQL_SP[depth][SP_ROLLBACK], NULL, false,
                       "ROLLBACK TO", err);
    if (rc == EDDY_OK) {
        im->aborted = false;
        im->sp_stmts = 0;
    }
    return rc;
}

static int pg_append(void *impl, const char *stream_id, int64_t expected,
                     const eddyi_pending *ev, size_t count, int64_t recorded_us,
                     eddy_append_result *res, eddy_error *err)
{
    pg_impl *im = impl;
    /* The statement fails on a known id: it runs at the start of a
     * savepoint, its own unless the innermost is still empty (see the
     * top of this file). */
    bool own = im->sp_want == 0 ||
               (im->sp_sent == im->sp_want && im->sp_stmts > 0);
    int rc = own ? pg_savepoint(im, im->sp_want, err) : EDDY_OK;
    if (rc != EDDY_OK)
        return rc;
    int depth = im->sp_want - 1;
    arrays a = {0};
    rc = arrays_build(&a, ev, count, NULL, count, err);
    append_out out = {0};
    eddy_error e = {0};
    if (rc == EDDY_OK) {
        rc = append_stmt(im, stream_id, expected, recorded_us, &a, &out, &e);
        arrays_free(&a);
        bool slow = false;
        if (rc == EDDY_OK) {
            slow = !out.complete; /* the version did not match: no row */
        } else if (rc == EDDY_EEXIST && !im->broken) {
            rc = sp_restart(im, depth, err); /* a known id */
            slow = rc == EDDY_OK;
        } else if (err) {
            *err = e;
        }
        if (slow) { /* look the ids up */
            memset(res, 0, sizeof *res);
            rc = append_slow(im, stream_id, expected, ev, count, recorded_us,
                             res, err);
        } else if (rc == EDDY_OK) {
            res->first_position = out.max_pos + 1;
            res->last_position = out.max_pos + (int64_t)count;
            res->stream_version = out.version + (int64_t)count;
        }
    }
    if (own) {
        if (rc == EDDY_OK)
            rc = pg_savepoint_release(im, depth, err);
        else
            pg_savepoint_rollback(im, depth);
    }
    return rc;
}

/*
 * A lone append (backend.h): BEGIN, the append lock, the append, the NOTIFY
 * and COMMIT in one pipeline, one exchange, the append's result read with
 * the commit's. No savepoint is needed: when the append fails (a known id)
 * the server skips the COMMIT and the transaction is rolled back whole;
 * when the expected version does not match, the statement inserts nothing
 * and the COMMIT commits nothing. Both leave nothing stored, and the
 * careful path runs in a transaction of its own. A connection lost during
 * the exchange may have lost it before or after the COMMIT: EDDY_EINDOUBT
 * (the writer checked the idle connection before sending: eddyi_pg_conn_alive).
 */
static int pg_append_alone(void *impl, const char *stream_id, int64_t expected,
                           const eddyi_pending *ev, size_t count,
                           int64_t recorded_us, eddy_append_result *res,
                           bool *careful, eddy_error *err)
{
    pg_impl *im = impl;
    *careful = false;
    arrays a = {0};
    int rc = pg_write_begin(im, err);
    if (rc == EDDY_OK)
        rc = arrays_build(&a, ev, count, NULL, count, err);
    if (rc != EDDY_OK) {
        txn_reset(im);
        return rc;
    }
    eddyi_pg_params p;
    append_params(&p, stream_id, expected, recorded_us, &a);
    rc = prelude(im, err); /* BEGIN and the append lock */
    im->appended = true;
    if (rc == EDDY_OK)
        rc = pipe_send_ex(im, SQL_APPEND, false, &p, true, true,
                          "appending events", err);
    if (rc == EDDY_OK)
        rc = queue_notify(im, err);
    if (rc == EDDY_OK)
        rc = pipe_send(im, SQL_COMMIT, NULL, false, "COMMIT", err);
    arrays_free(&a); /* libpq copied the parameters */
    PGresult *r = NULL;
    bool lost = false;
    eddy_error e = {0};
    if (rc == EDDY_OK)
        rc = pipe_sync(im, &r, &lost, &e);
    else
        e = err ? *err : e;
    if (lost) {
        txn_reset(im);
        return eddyi_error(err, EDDY_EINDOUBT,
                           "PostgreSQL %s: the connection was lost during "
                           "COMMIT: the transaction may or may not have been "
                           "stored; appending the same events again is safe "
                           "(idempotent by event id)", im->pg.where);
    }
    append_out out = {0};
    if (r) {
        append_result(r, &out);
        PQclear(r);
    }
    /* After a failed statement the server skipped the COMMIT: the
     * transaction is still open (aborted), and is rolled back; so is one
     * whose statements could not all be queued. */
    if (im->writer && im->txn_sent &&
        (im->nq > 0 || PQtransactionStatus(im->writer->pg) != PQTRANS_IDLE))
        pg_write_rollback(im);
    txn_reset(im);
    if (rc == EDDY_EEXIST || (rc == EDDY_OK && !out.complete)) {
        *careful = true; /* a known id; or no row went in */
        return EDDY_OK;
    }
    if (rc != EDDY_OK) {
        if (err)
            *err = e;
        return rc;
    }
    res->first_position = out.max_pos + 1;
    res->last_position = out.max_pos + (int64_t)count;
    res->stream_version = out.version + (int64_t)count;
    return EDDY_OK;
}

/* ---- snapshots ----------------------------------------------------------- */

static int pg_snapshot_save(void *impl, const char *stream_id, int64_t version,
                            int schema_version, const char *state,
                            int64_t taken_us, eddy_error *err)
{
    pg_impl *im = impl;
    eddyi_pg_params p = {0};
    eddyi_pg_param_text(&p, stream_id);
    eddyi_pg_param_int8(&p, version);
    eddyi_pg_param_int4(&p, schema_version);
    eddyi_pg_param_text(&p, state);
    eddyi_pg_param_int8(&p, taken_us);
    PGresult *r = write_stmt(im, SQL_SNAPSHOT_SAVE, &p, false,
                             "saving a snapshot", err);
    if (!r)
        return err ? err->code : EDDY_EIO;
    int64_t current = eddyi_pg_int(r, 0, 0);
    bool saved = eddyi_pg_int(r, 0, 1) == 1;
    PQclear(r);
    if (!saved)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: snapshot version %lld is beyond the "
                           "stream's version %lld",
                           stream_id, (long long)version, (long long)current);
    return EDDY_OK;
}

/* ---- portable statements and reads inside the transaction ---------------- */

/*
 * The `sql` entry (backend.h): on the writer, inside the open group-commit
 * transaction, after its BEGIN and savepoints (sent now if they were only
 * asked for), in the pipeline with them: one round trip; none when the
 * caller reads neither rows nor a count of changes (write_defer: its error
 * comes later). On a reader: the pool (postgres_read.c). Parameters, rows
 * and errors: postgres_sql.c.
 */
static int pg_sql(void *impl, eddyi_conn where, const char *sql,
                  bool static_sql, const eddyi_value *params, size_t nparams,
                  eddyi_row_fn fn, void *user, int64_t *changes,
                  eddy_error *err)
{
    pg_impl *im = impl;
    eddyi_pg_params p;
    int rc = eddyi_pg_sql_params(sql, params, nparams, &p, err);
    if (rc != EDDY_OK)
        return rc;
    char what[160];
    eddyi_pg_sql_what(sql, what, sizeof what);
    p.what = what;
    PGresult *r = NULL;
    if (where == EDDYI_ON_WRITER) {
        if (im->pg.opts.read_only)
            return eddyi_error(err, EDDY_ESTATE, "the store is open "
                               "read-only");
        if (!fn && !changes)
            return write_defer(im, sql, !static_sql, &p, what, err);
        r = write_stmt_ex(im, sql, !static_sql, &p, false, what, err);
    } else {
        r = eddyi_pg_read_exec(&im->pg, sql, !static_sql, &p, err);
    }
    if (!r)
        return err && err->code ? err->code : EDDY_EIO;
    rc = eddyi_pg_sql_rows(r, fn, user, changes, err);
    PQclear(r);
    return rc;
}

/* Reads on the writer (spec->on_writer: eddy_txn_read_stream) see the
 * transaction's own appends; the others go to a reader. */
static int pg_read_page(void *impl, const eddyi_read_spec *spec,
                        int64_t start_key, size_t max_rows, size_t max_bytes,
                        eddyi_row *rows, size_t *n, eddy_error *err)
{
    pg_impl *im = impl;
    if (!spec->on_writer)
        return eddyi_pg_read_page(impl, spec, start_key, max_rows, max_bytes,
                                  rows, n, err);
    *n = 0;
    if (im->pg.opts.read_only)
        return eddyi_error(err, EDDY_ESTATE, "the store is open read-only");
    char *sql = NULL;
    eddyi_pg_params p;
    eddyi_buf bufs[3];
    int rc = eddyi_pg_page_query(spec, start_key, max_rows, max_bytes, &sql,
                                 &p, bufs, err);
    if (rc != EDDY_OK)
        return rc;
    PGresult *r = write_stmt_ex(im, sql, true, &p, false,
                                "reading events in the transaction", err);
    free(sql);
    for (int i = 0; i < 3; i++)
        eddyi_buf_free(&bufs[i]);
    if (!r)
        return err && err->code ? err->code : EDDY_EIO;
    rc = eddyi_pg_page_rows(r, max_rows, rows, n, err);
    PQclear(r);
    return rc;
}

/* ---- open / close / watch ------------------------------------------------ */

static void pg_close(void *impl)
{
    pg_impl *im = impl;
    if (!im)
        return;
    eddyi_pg_watch_stop(im->watch);
    eddyi_pg_conn_free(im->writer);
    eddyi_pg_pool_clear(&im->pg);
    pthread_mutex_destroy(&im->pg.pool_mu);
    free(im->pg.conninfo);
    eddyi_pg_password_free(&im->pg);
    free(im);
}

static int pg_open(const char *location, const eddy_store_options *opts,
                   void **impl, eddy_error *err)
{
    pg_impl *im = calloc(1, sizeof *im);
    if (!im)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    pthread_mutex_init(&im->pg.pool_mu, NULL);
    im->pg.opts = *opts;
    atomic_init(&im->pg.generation, 0);
    atomic_init(&im->pg.lost, false);
    eddyi_pg_conn *c = NULL;
    int rc = eddyi_pg_parse_url(&im->pg, location, err);
    if (rc == EDDY_OK)
        rc = eddyi_pg_connect(&im->pg, opts->read_only ? "reader" : "writer",
                              false, &c, err);
    if (rc != EDDY_OK)
        goto fail;
    if (opts->read_only) {
        rc = eddyi_pg_schema_check(&im->pg, c, err);
        if (rc == EDDY_OK)
            rc = eddyi_pg_store_ids(&im->pg, c, err);
        if (rc != EDDY_OK)
            goto fail;
        eddyi_pg_pool_put(&im->pg, c);
    } else {
        if ((rc = writer_setup(im, c, err)) != EDDY_OK ||
            (rc = eddyi_pg_migrate(&im->pg, c, err)) != EDDY_OK ||
            (rc = eddyi_pg_store_ids(&im->pg, c, err)) != EDDY_OK)
            goto fail;
        im->writer = c;
    }
    *impl = im;
    return EDDY_OK;
fail:
    eddyi_pg_conn_free(c);
    pg_close(im);
    return rc;
}

static int pg_watch(void *impl, void (*wake)(void *ctx, int64_t head),
                    void *ctx, eddy_error *err)
{
    pg_impl *im = impl;
    return eddyi_pg_watch_start(&im->pg, wake, ctx, &im->watch, err);
}

const eddyi_backend eddyi_postgres_backend = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .write_begin = pg_write_begin,
    .write_commit = pg_write_commit,
    .write_rollback = pg_write_rollback,
    .savepoint = pg_savepoint,
    .savepoint_release = pg_savepoint_release,
    .savepoint_rollback = pg_savepoint_rollback,
    .append = pg_append,
    .append_alone = pg_append_alone,
    .snapshot_save = pg_snapshot_save,
    .write_native = pg_write_native,
    .sql = pg_sql,
    .read_page = pg_read_page,
    .head = eddyi_pg_head,
    .stream_version = eddyi_pg_stream_version,
    .streams_page = eddyi_pg_streams_page,
    .snapshot_load = eddyi_pg_snapshot_load,
    .info = eddyi_pg_info,
    .watch = pg_watch,
};
