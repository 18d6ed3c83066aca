/*
 * src/store/state_leases.h - the store's state operations for work shared
 * by several processes: who runs a durable subscription (its members) and
 * which member holds which of its partitions (its leases).
 *
 * TABLES (every backend; on SQLite since schema 5, sqlite_schema.c):
 *   eddy_members(subscription, member, owner, partitions, joined_us,
 *                expires_us)            PRIMARY KEY(subscription, member)
 *     one row per running member: `member` a UUIDv7 made when it started,
 *     `owner` its "pid@host", `partitions` the count it runs with,
 *     `expires_us` when it counts as gone unless renewed.
 *   eddy_leases(subscription, part, member, owner, expires_us, position,
 *               updated_us)             PRIMARY KEY(subscription, part)
 *     one row per partition 0..N-1 (the count is the number of rows): the
 *     member holding it ('' when free) and its owner, until when the lease
 *     holds (0 when free), and `position`, the partition's checkpoint (its
 *     events at or below were handled). Another key than a subscription
 *     name may hold a single lease (part 0) for a role, e.g. a saga's
 *     command dispatcher ("<saga>#commands").
 *
 * A partition belongs to the member named in its lease row for as long as
 * that member lives: a member's lease on all its partitions is its member
 * row, renewed by eddyi_member_renew (by its coordinator, and by every
 * transaction that commits effects for its partitions: the fence of
 * src/reliability/durable_members.c). The lease rows' expires_us repeats
 * the end as of the coordinator's last renewal, for readers of the table.
 * A partition may be taken when its row is free or when its holder's
 * member row is gone; the taker first deletes the member row of a holder
 * whose lease ended (eddyi_member_delete with `expired_before`, which a
 * renewal that committed first defeats) or whose process no longer exists
 * (eddyi_owner_gone), in the same transaction. A member id is never
 * revived: a member whose row was deleted rejoins under a new id, so a
 * lease row naming a deleted member can only be taken, never renewed.
 * Every statement that changes a lease row names the member it expects in
 * it, so two takers cannot both win. On PostgreSQL the member row's UPDATE
 * (renewal, fence) and DELETE (eviction) lock it until the transaction
 * ends, which orders a fenced transaction and an eviction of its member.
 *
 * A lease of one row for a role (a saga's command dispatcher) uses the
 * row's own expires_us as its end instead (eddyi_lease_takeable), renewed
 * with eddyi_leases_renew.
 *
 * Conventions as state_durable.h: `eddy_txn` operations run inside the
 * writer's transaction; `eddy_store` ones read committed rows on a reader
 * and are thread-safe; strings are borrowed; each returns EDDY_OK or a
 * store error with `err` filled.
 */
#ifndef EDDY_SRC_STORE_STATE_LEASES_H
#define EDDY_SRC_STORE_STATE_LEASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/sql.h"
#include "eddy/store.h"

/* ---- members --------------------------------------------------------------- */

typedef struct eddyi_member_row {
    const char *member;
    const char *owner;
    int partitions;
    int64_t joined_us;
    int64_t expires_us;
} eddyi_member_row;

typedef int (*eddyi_member_fn)(const eddyi_member_row *row, void *user);

/* Inserts member `m->member` of `subscription`, or renews it (expires_us and
 * owner; joined_us is kept). */
int eddyi_member_put(eddy_txn *txn, const char *subscription,
                     const eddyi_member_row *m, eddy_error *err);

/* Renews member `member` until `expires_us` (never shortening it), if its
 * row is still there: `*changes` receives 1, or 0 when it was deleted
 * (the member was taken for gone). Never inserts. */
int eddyi_member_renew(eddy_txn *txn, const char *subscription,
                       const char *member, int64_t expires_us,
                       int64_t *changes, eddy_error *err);

/* Deletes member `member`; with `expired_before` > 0, only if its row
 * expired at or before then (a renewal that committed first keeps it).
 * `*changes` (may be NULL) receives 0 or 1. */
int eddyi_member_delete(eddy_txn *txn, const char *subscription,
                        const char *member, int64_t expired_before,
                        int64_t *changes, eddy_error *err);

/* Calls `fn` for each member of `subscription`, by member id: in the
 * transaction (_txn) or on a reader. */
int eddyi_members_txn(eddy_txn *txn, const char *subscription,
                      eddyi_member_fn fn, void *user, eddy_error *err);
int eddyi_members_read(eddy_store *s, const char *subscription,
                       eddyi_member_fn fn, void *user, eddy_error *err);

/* ---- leases ------------------------------------------------------------------ */

typedef struct eddyi_lease_row {
    int part;
    const char *member; /* "" when free */
    const char *owner;
    int64_t expires_us;
    int64_t position;
    int64_t updated_us;
} eddyi_lease_row;

typedef int (*eddyi_lease_fn)(const eddyi_lease_row *row, void *user);

/*
 * Whether a lease held by `holder` ("" when free; its owner `holder_owner`,
 * until `expires_us`) may be taken by `member` at `now`: it is free, its
 * lease ended, or its owner is a process of this host that no longer
 * exists (eddyi_owner_gone). Never one `member` holds already.
 * `*anytime` tells whether its end does not matter (free, owner gone):
 * take it with ended_by INT64_MAX, else with `now`. Thread-safe.
 */
bool eddyi_lease_takeable(const char *holder, const char *holder_owner,
                          int64_t expires_us, const char *member, int64_t now,
                          bool *anytime);

/* Calls `fn` for each lease of `subscription`, by part: in the transaction
 * (_txn) or on a reader. */
int eddyi_leases_txn(eddy_txn *txn, const char *subscription,
                     eddyi_lease_fn fn, void *user, eddy_error *err);
int eddyi_leases_read(eddy_store *s, const char *subscription,
                      eddyi_lease_fn fn, void *user, eddy_error *err);

/* Creates lease `part` of `subscription`, free, with checkpoint
 * `position`; an existing row is kept as it is. */
int eddyi_lease_create(eddy_txn *txn, const char *subscription, int part,
                       int64_t position, eddy_error *err);

/* Deletes every lease of `subscription` (a change of the partition count,
 * a projection rebuild). */
int eddyi_leases_drop(eddy_txn *txn, const char *subscription,
                      eddy_error *err);

/*
 * Gives lease `part` to `member` (`owner`, until `expires_us`) if its row
 * still names `from` ("" for a free one) and its lease ended at or before
 * `ended_by` (INT64_MAX: whenever; an owner known to be gone). `*taken`
 * says whether it did: false when another member changed the row first.
 */
int eddyi_lease_take(eddy_txn *txn, const char *subscription, int part,
                     const char *member, const char *owner, int64_t expires_us,
                     const char *from, int64_t ended_by, bool *taken,
                     eddy_error *err);

/* Frees lease `part` if `member` holds it, raising its checkpoint to
 * `position` (never lowering it). */
int eddyi_lease_release(eddy_txn *txn, const char *subscription, int part,
                        const char *member, int64_t position,
                        eddy_error *err);

/* Frees every lease `member` holds (it stops), raising their checkpoints
 * to `position`. */
int eddyi_leases_release_all(eddy_txn *txn, const char *subscription,
                             const char *member, int64_t position,
                             eddy_error *err);

/*
 * Sets the end of every lease `member` holds to `expires_us` (never
 * shortening one; 0 leaves them) and raises their checkpoints to
 * `position` (never lowering one; 0 leaves them). `*changes` receives how
 * many rows it holds.
 */
int eddyi_leases_renew(eddy_txn *txn, const char *subscription,
                       const char *member, int64_t expires_us,
                       int64_t position, int64_t *changes, eddy_error *err);

/* Raises the checkpoint of every partition of `subscription` to
 * `position`: every event at or below it was handled, whoever holds the
 * partition (a projection's catch-up). */
int eddyi_leases_raise(eddy_txn *txn, const char *subscription,
                       int64_t position, eddy_error *err);

/* The lowest checkpoint of `subscription`'s partitions; `*found` false
 * when it has none. */
int eddyi_leases_low(eddy_txn *txn, const char *subscription, int64_t *low,
                     bool *found, eddy_error *err);

/* Deletes the members and the leases of `subscription`. */
int eddyi_leases_forget(eddy_txn *txn, const char *subscription,
                        eddy_error *err);

#endif
