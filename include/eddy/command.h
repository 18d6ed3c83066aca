/*
 * eddy/command.h - the command bus: one command, exactly one handler.
 *
 * A command is a request to do something ("ProcessPayment"), addressed by
 * name and carrying JSON data. Unlike an event, it has exactly one handler:
 * registering a second handler for a name is an error, and sending a
 * command nobody handles is an error (never a silent drop).
 *
 * A command handler typically loads an aggregate, runs a command function
 * on it and saves it (eddy_repository_execute). Commands carry an id, and
 * the correlation and causation ids of the flow that issued them; a handler
 * can derive the ids of the events it raises from the command id
 * (eddy_id_derive), so that running the same command twice appends nothing
 * new (the store's appends are idempotent by event id).
 *
 * THREADING. Register handlers first (one thread at a time), then send from
 * any number of threads: eddy_command_send is thread-safe and runs the
 * handler synchronously on the calling thread.
 */
#ifndef EDDY_COMMAND_H
#define EDDY_COMMAND_H

#include <stdbool.h>

#include <jansson.h>

#include "eddy/error.h"
#include "eddy/sql.h"
#include "eddy/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eddy_command_bus eddy_command_bus;

/* A command, as plain data. Every pointer is borrowed for the send. */
typedef struct eddy_command {
    const char *name;           /* required: "ProcessPayment" */
    const char *id;             /* NULL: a new UUIDv7 is assigned */
    json_t *data;               /* the arguments; NULL: none */
    const char *correlation_id; /* the flow it belongs to; may be NULL */
    const char *causation_id;   /* the event or command that caused it */
} eddy_command;

/*
 * A command handler. `cmd` is borrowed for the call (its id is always set).
 * Returns EDDY_OK or an error with `err` filled (the send returns it).
 * Runs on the thread that sends the command.
 */
typedef int (*eddy_command_handler_fn)(const eddy_command *cmd, void *user,
                               eddy_error *err);

/*
 * A transactional command handler: runs inside a store write transaction
 * (`txn`, borrowed for the call) and makes its changes through it
 * (eddy_repository_execute_txn, eddy_txn_append, eddy_txn_exec), so they
 * commit together with whatever sent the command. A saga's commands with
 * such handlers run in the saga's own transaction: the saga's state, the
 * command and its events commit at once (exactly once), with no commit of
 * their own. It runs ON THE STORE'S WRITER THREAD: it must be quick, must
 * not block (no external calls, no eddy_store_append) and must write only
 * through `txn`. Returning an error rolls back what it wrote.
 */
typedef int (*eddy_command_txn_fn)(eddy_txn *txn, const eddy_command *cmd,
                                   void *user, eddy_error *err);

/* Creates an empty command bus. Destructor: eddy_command_bus_free.
 * Returns NULL only when out of memory. */
eddy_command_bus *eddy_command_bus_new(void);

/* Frees the bus. NULL does nothing. No send may be running. */
void eddy_command_bus_free(eddy_command_bus *cb);

/*
 * Routes commands named `name` (copied) to `fn`. Returns EDDY_OK, EDDY_EEXIST
 * when `name` already has a handler ("command ProcessPayment already has a
 * handler"), or EDDY_EINVAL (NULL/empty name, NULL fn). Thread-safe.
 */
int eddy_command_bus_register(eddy_command_bus *cb, const char *name,
                              eddy_command_handler_fn fn, void *user,
                              eddy_error *err);

/* As eddy_command_bus_register, for a transactional handler. Thread-safe. */
int eddy_command_bus_register_txn(eddy_command_bus *cb, const char *name,
                                  eddy_command_txn_fn fn, void *user,
                                  eddy_error *err);

/* The store eddy_command_send runs transactional handlers in (each in a
 * transaction of its own, eddy_store_transact). Borrowed: it must outlive
 * the bus's use. Thread-safe. */
void eddy_command_bus_set_store(eddy_command_bus *cb, eddy_store *store);

/* Whether `name`'s handler is transactional. Thread-safe. */
bool eddy_command_bus_is_txn(eddy_command_bus *cb, const char *name);

/*
 * Runs the handler of `cmd->name` on the calling thread and returns its
 * result; a transactional handler runs in a transaction of its own on the
 * bus's store (EDDY_ESTATE when the bus has none). EDDY_ENOTFOUND ("no
 * handler for command X") when none is registered; EDDY_EINVAL for a NULL
 * or nameless command. Thread-safe; not from the store's writer thread.
 */
int eddy_command_send(eddy_command_bus *cb, const eddy_command *cmd,
                      eddy_error *err);

/*
 * Runs the TRANSACTIONAL handler of `cmd->name` inside `txn` (on the
 * writer thread, in the caller's transaction). Returns its result,
 * EDDY_ESTATE when the handler is a plain one ("send it with
 * eddy_command_send"), or as eddy_command_send.
 */
int eddy_command_send_txn(eddy_command_bus *cb, eddy_txn *txn,
                          const eddy_command *cmd, eddy_error *err);

/*
 * Shorthand: sends command `name` with data built by json_pack format `fmt`
 * (NULL: no data) and the given correlation / causation ids (may be NULL).
 */
int eddy_command_sendf(eddy_command_bus *cb, const char *name,
                       const char *correlation_id, const char *causation_id,
                       eddy_error *err, const char *fmt, ...);

/* eddy_id_derive (eddy/event.h) makes such stable ids. */

#ifdef __cplusplus
}
#endif
#endif /* EDDY_COMMAND_H */
