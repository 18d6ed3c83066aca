/*
 * eddy/sql.h - read models in the store: a small portable statement API.
 *
 * A projection, a transactional handler or a saga keeps its own tables (a
 * read model, a stock table, a mail log) in the store, written in the SAME
 * transaction as its checkpoint: that is what makes its effects
 * exactly-once. This header is how user code reaches those tables without
 * knowing which engine the store runs on:
 *
 *   eddy_txn_exec / eddy_txn_query      inside the store's write transaction
 *                                       (a handler's `txn`, or
 *                                       eddy_store_transact);
 *   eddy_store_sql_query                a read on a reader connection, never
 *                                       queued behind the writer.
 *
 * STATEMENTS. One SQL statement per call, with numbered parameters $1, $2,
 * ... bound from the arguments after `params`, one letter each (as in
 * jansson's pack):
 *     's'  const char *   text; NULL binds SQL NULL
 *     'i'  int            integer
 *     'I'  int64_t        integer
 *     'f'  double         real
 *     'b'  int            boolean, stored as the integer 0 or 1
 *     'n'  (no argument)  SQL NULL
 * e.g. eddy_txn_exec(txn, &n, err,
 *          "UPDATE stock SET quantity = quantity - $2 WHERE product_id = $1",
 *          "sI", product_id, (int64_t)quantity);
 * Pass the exact C type the letter names: the arguments are read with
 * va_arg.
 *
 * PORTABLE SQL. The same text runs on every backend (SQLite and PostgreSQL)
 * when it keeps to their common ground: types TEXT, BIGINT, DOUBLE
 * PRECISION; CREATE TABLE / INDEX IF NOT EXISTS; INSERT ... ON CONFLICT
 * (cols) DO NOTHING / DO UPDATE SET col = excluded.col; RETURNING;
 * CASE WHEN instead of engine functions such as max(a, b) / GREATEST;
 * COALESCE, count(*), sum(...). Engine-specific access is in eddy/sqlite.h.
 * Parameters are typed by their letter on PostgreSQL (a NULL given to 's' is
 * text, so "$1 IS NULL" works); 'n' takes the type of its place. Results
 * read the same on both engines: sum() of a BIGINT (numeric on PostgreSQL)
 * reads as an integer, a boolean as 1 or 0, the log's payload as its JSON.
 *
 * A FAILED STATEMENT. On SQLite it undoes itself only; on PostgreSQL it
 * aborts the transaction up to the innermost savepoint, and every later
 * statement of the callback fails with EDDY_ESTATE saying so. Portable
 * code returns the error it got (the store rolls the callback back).
 * On PostgreSQL, eddy_txn_exec without `changes` does not wait for the
 * server: the statement travels with the next one that needs an answer,
 * and its error is returned by that later call (a query, an exec with
 * `changes`, an append), or, when none comes, fails the callback once it
 * returns, with the statement's message. Either way the callback's writes
 * are rolled back and no other callback's are. Code that must see a
 * statement's own error at once, to do something else instead, passes
 * `changes`.
 *
 * ROWS. A query calls `fn` once per result row with a read-only view of it,
 * valid for that call only (copy what you keep). Column values convert on
 * access: an integer column read as text gives its decimal digits, a text
 * column read as an integer is parsed (0 when it is not a number).
 *
 * THREADING. A txn is valid only during the callback that received it and
 * only on that thread (the store's writer thread). eddy_store_sql_query is
 * thread-safe.
 */
#ifndef EDDY_SQL_H
#define EDDY_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/error.h"
#include "eddy/event.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The store's open write transaction, as a callback sees it. Borrowed for
 * the callback; never kept. */
typedef struct eddy_txn eddy_txn;

/* One result row: a read-only view, borrowed for the row callback. */
typedef struct eddy_row eddy_row;

/* Called for each result row, in order. Return 0 to go on, non-zero to
 * stop: the query then returns that value. */
typedef int (*eddy_row_fn)(const eddy_row *row, void *user);

/* The number of columns of the row. */
int eddy_row_columns(const eddy_row *row);

/* Column `col` (0-based) of the row as text (borrowed, valid during the
 * callback), or NULL for SQL NULL or a column out of range. */
const char *eddy_row_text(const eddy_row *row, int col);

/* Column `col` as an integer (0 for NULL, out of range or not a number). */
int64_t eddy_row_int(const eddy_row *row, int col);

/* Column `col` as a real number (0 for NULL, out of range or not a
 * number). */
double eddy_row_double(const eddy_row *row, int col);

/* Whether column `col` is SQL NULL (true also when out of range). */
bool eddy_row_is_null(const eddy_row *row, int col);

/* ---- in the write transaction ------------------------------------------ */

/*
 * Runs one statement without a result (INSERT, UPDATE, DELETE, CREATE ...)
 * in the transaction. `changes` (may be NULL) receives the rows it
 * inserted, updated or deleted. Returns EDDY_OK, or with `err` naming the
 * failing statement: EDDY_EINVAL (bad `params` letter, NULL sql, a NOT
 * NULL / CHECK / foreign-key constraint), EDDY_EEXIST (a UNIQUE or PRIMARY
 * KEY constraint), EDDY_EBUSY, EDDY_EIO (the engine's message, e.g. a
 * syntax error). After an error the
 * caller normally returns it: the store rolls back what the callback wrote.
 * On PostgreSQL with `changes` NULL, the statement's error may be returned
 * by a later call instead (A FAILED STATEMENT, above).
 */
int eddy_txn_exec(eddy_txn *txn, int64_t *changes, eddy_error *err,
                  const char *sql, const char *params, ...);

/*
 * Runs one query in the transaction (it sees the transaction's own
 * uncommitted writes) and calls `fn` for each row. Returns EDDY_OK, fn's
 * non-zero value, or an error as eddy_txn_exec.
 */
int eddy_txn_query(eddy_txn *txn, eddy_row_fn fn, void *user,
                   eddy_error *err, const char *sql, const char *params, ...);

/*
 * Appends `count` events to `stream_id` inside the transaction, with the
 * checks and results of eddy_store_append; they commit or roll back with
 * it. `events` borrowed. Returns as eddy_store_append.
 */
int eddy_txn_append(eddy_txn *txn, const char *stream_id,
                    int64_t expected_version, eddy_event *const *events,
                    size_t count, eddy_append_result *result,
                    eddy_error *err);

/*
 * Opens a cursor over one stream's events as the transaction sees them (its
 * own appends included), with the arguments and results of
 * eddy_store_read_stream. The cursor must be freed (eddy_cursor_free)
 * before the callback that received `txn` returns, and used on its thread
 * only. For a command that decides inside the transaction
 * (eddy_repository_execute_txn). Returns as eddy_store_read_stream.
 */
int eddy_txn_read_stream(eddy_txn *txn, const char *stream_id,
                         int64_t from_version, eddy_direction dir,
                         size_t limit, eddy_cursor **out, eddy_error *err);

/*
 * Saves a snapshot inside the transaction, as eddy_store_snapshot_save
 * (it commits or rolls back with the transaction). Returns as
 * eddy_store_snapshot_save.
 */
int eddy_txn_snapshot_save(eddy_txn *txn, const char *stream_id,
                           int64_t version, int schema_version, json_t *state,
                           eddy_error *err);

/* The commit time shared by every write of the transaction, microseconds
 * since the epoch. */
int64_t eddy_txn_now_us(const eddy_txn *txn);

/* The store the transaction belongs to (borrowed). */
eddy_store *eddy_txn_store(const eddy_txn *txn);

/* A function run inside the store's write transaction. */
typedef int (*eddy_txn_fn)(eddy_txn *txn, void *user, eddy_error *err);

/*
 * Runs `fn(txn, user, err)` in the store's next write transaction (group
 * commit, in its own savepoint) and returns once that transaction committed
 * durably: for setting up read-model tables, seeding rows, or any write that
 * must commit with others atomically. `fn` returning an error rolls back
 * what it wrote and that error is returned. `fn` runs on the store's writer
 * thread: it must be quick and must not call blocking store functions
 * (eddy_store_append, eddy_store_transact, ...). Returns fn's result, the
 * commit's error, or EDDY_ESTATE (read-only or closing store). Thread-safe;
 * not from a store callback.
 */
int eddy_store_transact(eddy_store *s, eddy_txn_fn fn, void *user,
                        eddy_error *err);

/* ---- reads --------------------------------------------------------------- */

/*
 * Runs one query on a reader connection (a consistent snapshot of the
 * committed data; never queued behind the writer, works on a read-only
 * store) and calls `fn` for each row, on the calling thread. Returns as
 * eddy_txn_query. Thread-safe.
 */
int eddy_store_sql_query(eddy_store *s, eddy_row_fn fn, void *user,
                         eddy_error *err, const char *sql,
                         const char *params, ...);

/*
 * The first column of the first row of a query on a reader, as an integer
 * (`*out` = 0 when there is no row). A shorthand for counts and sums.
 * Returns as eddy_store_sql_query. Thread-safe.
 */
int eddy_store_sql_int(eddy_store *s, int64_t *out, eddy_error *err,
                       const char *sql, const char *params, ...);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_SQL_H */
