/*
 * src/store/state_leases.c - members and partition leases (state_leases.h),
 * in the portable SQL subset of eddy/sql.h ($N parameters, ON CONFLICT,
 * CASE instead of engine functions, min()). The tables are created by each
 * backend's migrations (sqlite_schema.c, step 4 -> 5).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/lifecycle.h"
#include "state_leases.h"
#include "store_internal.h"

/* ---- members --------------------------------------------------------------- */

int eddyi_member_put(eddy_txn *txn, const char *subscription,
                     const eddyi_member_row *m, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_members(subscription, member, owner, partitions, "
        "joined_us, expires_us) VALUES($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT(subscription, member) DO UPDATE SET "
        "owner = excluded.owner, expires_us = excluded.expires_us",
        "sssiII", subscription, m->member, m->owner, m->partitions,
        m->joined_us, m->expires_us);
}

int eddyi_member_renew(eddy_txn *txn, const char *subscription,
                       const char *member, int64_t expires_us,
                       int64_t *changes, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, changes, err,
        "UPDATE eddy_members SET "
        "expires_us = CASE WHEN $3 > expires_us THEN $3 ELSE expires_us END "
        "WHERE subscription = $1 AND member = $2",
        "ssI", subscription, member, expires_us);
}

int eddyi_member_delete(eddy_txn *txn, const char *subscription,
                        const char *member, int64_t expired_before,
                        int64_t *changes, eddy_error *err)
{
    if (expired_before > 0)
        return eddyi_sql_exec(txn, changes, err,
                              "DELETE FROM eddy_members WHERE "
                              "subscription = $1 AND member = $2 AND "
                              "expires_us <= $3",
                              "ssI", subscription, member, expired_before);
    return eddyi_sql_exec(txn, changes, err,
                          "DELETE FROM eddy_members WHERE subscription = $1 "
                          "AND member = $2",
                          "ss", subscription, member);
}

struct member_walk {
    eddyi_member_fn fn;
    void *user;
};

static const char *text(const eddy_row *row, int col)
{
    const char *t = eddy_row_text(row, col);
    return t ? t : "";
}

static int member_row(const eddy_row *row, void *user)
{
    struct member_walk *w = user;
    eddyi_member_row m = {.member = text(row, 0),
                          .owner = text(row, 1),
                          .partitions = (int)eddy_row_int(row, 2),
                          .joined_us = eddy_row_int(row, 3),
                          .expires_us = eddy_row_int(row, 4)};
    return w->fn(&m, w->user);
}

#define MEMBERS_SELECT                                                         \
    "SELECT member, owner, partitions, joined_us, expires_us "                 \
    "FROM eddy_members WHERE subscription = $1 ORDER BY member"

int eddyi_members_txn(eddy_txn *txn, const char *subscription,
                      eddyi_member_fn fn, void *user, eddy_error *err)
{
    struct member_walk w = {.fn = fn, .user = user};
    return eddyi_sql_query(txn, member_row, &w, err, MEMBERS_SELECT, "s",
                           subscription);
}

int eddyi_members_read(eddy_store *s, const char *subscription,
                       eddyi_member_fn fn, void *user, eddy_error *err)
{
    struct member_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, member_row, &w, err, MEMBERS_SELECT, "s",
                          subscription);
}

/* ---- leases ------------------------------------------------------------------ */

struct lease_walk {
    eddyi_lease_fn fn;
    void *user;
};

static int lease_row(const eddy_row *row, void *user)
{
    struct lease_walk *w = user;
    eddyi_lease_row l = {.part = (int)eddy_row_int(row, 0),
                         .member = text(row, 1),
                         .owner = text(row, 2),
                         .expires_us = eddy_row_int(row, 3),
                         .position = eddy_row_int(row, 4),
                         .updated_us = eddy_row_int(row, 5)};
    return w->fn(&l, w->user);
}

bool eddyi_lease_takeable(const char *holder, const char *holder_owner,
                          int64_t expires_us, const char *member, int64_t now,
                          bool *anytime)
{
    *anytime = false;
    if (!holder[0]) {
        *anytime = true;
        return true;
    }
    if (strcmp(holder, member) == 0)
        return false;
    if (eddyi_owner_gone(holder_owner)) {
        *anytime = true;
        return true;
    }
    return expires_us <= now;
}

#define LEASES_SELECT                                                          \
    "SELECT part, member, owner, expires_us, position, updated_us "            \
    "FROM eddy_leases WHERE subscription = $1 ORDER BY part"

int eddyi_leases_txn(eddy_txn *txn, const char *subscription,
                     eddyi_lease_fn fn, void *user, eddy_error *err)
{
    struct lease_walk w = {.fn = fn, .user = user};
    return eddyi_sql_query(txn, lease_row, &w, err, LEASES_SELECT, "s",
                           subscription);
}

int eddyi_leases_read(eddy_store *s, const char *subscription,
                      eddyi_lease_fn fn, void *user, eddy_error *err)
{
    struct lease_walk w = {.fn = fn, .user = user};
    return eddyi_sql_read(s, lease_row, &w, err, LEASES_SELECT, "s",
                          subscription);
}

int eddyi_lease_create(eddy_txn *txn, const char *subscription, int part,
                       int64_t position, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "INSERT INTO eddy_leases(subscription, part, member, owner, "
        "expires_us, position, updated_us) VALUES($1, $2, '', '', 0, $3, $4) "
        "ON CONFLICT(subscription, part) DO NOTHING",
        "siII", subscription, part, position, eddy_txn_now_us(txn));
}

int eddyi_leases_drop(eddy_txn *txn, const char *subscription,
                      eddy_error *err)
{
    return eddyi_sql_exec(txn, NULL, err,
                          "DELETE FROM eddy_leases WHERE subscription = $1",
                          "s", subscription);
}

int eddyi_lease_take(eddy_txn *txn, const char *subscription, int part,
                     const char *member, const char *owner, int64_t expires_us,
                     const char *from, int64_t ended_by, bool *taken,
                     eddy_error *err)
{
    int64_t changes = 0;
    int rc = eddyi_sql_exec(
        txn, &changes, err,
        "UPDATE eddy_leases SET member = $3, owner = $4, expires_us = $5, "
        "updated_us = $6 WHERE subscription = $1 AND part = $2 AND "
        "member = $7 AND expires_us <= $8",
        "sissIIsI", subscription, part, member, owner, expires_us,
        eddy_txn_now_us(txn), from, ended_by);
    *taken = rc == EDDY_OK && changes == 1;
    return rc;
}

int eddyi_lease_release(eddy_txn *txn, const char *subscription, int part,
                        const char *member, int64_t position,
                        eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "UPDATE eddy_leases SET member = '', owner = '', expires_us = 0, "
        "position = CASE WHEN $4 > position THEN $4 ELSE position END, "
        "updated_us = $5 WHERE subscription = $1 AND part = $2 AND "
        "member = $3",
        "sisII", subscription, part, member, position, eddy_txn_now_us(txn));
}

int eddyi_leases_release_all(eddy_txn *txn, const char *subscription,
                             const char *member, int64_t position,
                             eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "UPDATE eddy_leases SET member = '', owner = '', expires_us = 0, "
        "position = CASE WHEN $3 > position THEN $3 ELSE position END, "
        "updated_us = $4 WHERE subscription = $1 AND member = $2",
        "ssII", subscription, member, position, eddy_txn_now_us(txn));
}

int eddyi_leases_renew(eddy_txn *txn, const char *subscription,
                       const char *member, int64_t expires_us,
                       int64_t position, int64_t *changes, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, changes, err,
        "UPDATE eddy_leases SET "
        "expires_us = CASE WHEN $3 > expires_us THEN $3 ELSE expires_us END, "
        "position = CASE WHEN $4 > position THEN $4 ELSE position END, "
        "updated_us = $5 WHERE subscription = $1 AND member = $2",
        "ssIII", subscription, member, expires_us, position,
        eddy_txn_now_us(txn));
}

int eddyi_leases_raise(eddy_txn *txn, const char *subscription,
                       int64_t position, eddy_error *err)
{
    return eddyi_sql_exec(
        txn, NULL, err,
        "UPDATE eddy_leases SET "
        "position = CASE WHEN $2 > position THEN $2 ELSE position END "
        "WHERE subscription = $1",
        "sI", subscription, position);
}

struct low {
    int64_t value;
    bool found;
};

static int low_row(const eddy_row *row, void *user)
{
    struct low *l = user;
    if (!eddy_row_is_null(row, 0)) {
        l->value = eddy_row_int(row, 0);
        l->found = true;
    }
    return 0;
}

int eddyi_leases_low(eddy_txn *txn, const char *subscription, int64_t *low,
                     bool *found, eddy_error *err)
{
    struct low l = {0};
    int rc = eddyi_sql_query(txn, low_row, &l, err,
                             "SELECT min(position) FROM eddy_leases "
                             "WHERE subscription = $1",
                             "s", subscription);
    *low = l.value;
    *found = l.found;
    return rc;
}

int eddyi_leases_forget(eddy_txn *txn, const char *subscription,
                        eddy_error *err)
{
    int rc = eddyi_leases_drop(txn, subscription, err);
    if (rc == EDDY_OK)
        rc = eddyi_sql_exec(txn, NULL, err,
                            "DELETE FROM eddy_members WHERE subscription = $1",
                            "s", subscription);
    return rc;
}
