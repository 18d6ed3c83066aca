/*
 * src/reliability/durable_members.c - one durable subscription run by
 * several members at once (processes, or store handles of one process),
 * sharing its work by partitions.
 *
 * PARTITIONS. The partition key of an event (its subject, else its id)
 * hashes (FNV-1a 64) into one of N partitions, N fixed per subscription
 * name and kept in the store as the number of its lease rows
 * (state_leases.h). Events of one key are in one partition, so a partition
 * is the unit that moves between members without breaking per-key order.
 *
 * MEMBERS AND LEASES. A member records itself in eddy_members and holds
 * partitions through their lease rows (state_leases.h). Its member row is
 * its lease on all of them: renewed every lease/3 by its coordinator and by
 * every transaction that commits effects for its partitions (the fence). A
 * member is LIVE while its row is there, its end has not passed, and its
 * owner is not a process of this host that no longer exists
 * (eddyi_owner_gone: a crash, so that a restart on the same machine need
 * not wait for the lease). The share of a member is N / M partitions for M
 * live members (the first N % M of them by member id take one more): every
 * member computes the same targets from the same rows. A member above its
 * target frees partitions (the highest first); one below it takes free ones
 * and those of members that are not live (the lowest first), deleting such
 * a member's row in the same transaction. Every change of a lease row names
 * the member it expects in it, so two members never both take one. A
 * member id is never revived: a member that finds its row deleted (it was
 * taken for gone: paused, or cut off from the store, past its lease)
 * rejoins under a new id, so the lease rows naming its old id can only be
 * taken over, never renewed.
 *
 * THE COORDINATOR. A thread per member looks at the rows every
 * POLL_MS (on a reader: no write while nothing changes) and renews the
 * leases every lease/3 (one write job). When the member must give up or
 * may take partitions, or learns that it lost one, it REBALANCES: stops the
 * pipeline (the workers finish what is runnable, parked events stay in
 * their retry rows, the checkpoint is persisted: handing a partition over
 * loses and repeats nothing), changes the leases in one write job that
 * decides again from the rows as that transaction sees them, and starts a
 * new segment over the partitions it now holds (durable_internal.h). A
 * member joining takes what is free at once; the others notice it within
 * POLL_MS and give up their surplus, which it takes at its next look.
 *
 * THE FENCE. Every write job that commits effects of this member's
 * partitions (a transactional batch, an inbox claim, a retry row, a dead
 * letter, the checkpoint) first renews this member's row in the same
 * transaction: one UPDATE of one row, whatever the number of partitions.
 * If the row is gone, the member was taken for gone and its partitions may
 * belong to others: the job rolls back, so it commits nothing for them, the
 * member drops its queued work, and the coordinator rejoins under a new
 * id. On SQLite the writers of every process are serialised by the file's
 * lock, so the fence and an eviction are ordered; on PostgreSQL the
 * fence's UPDATE locks the member row until the transaction ends, an
 * eviction's DELETE of it waits and re-checks that the lease ended (it was
 * just renewed: no eviction), and a fence after an eviction finds no row.
 * So TRANSACTIONAL handlers stay exactly-once across a rebalance (and the
 * inbox row of each event makes a re-delivery a no-op either way), INBOX
 * and AT_LEAST_ONCE handlers stay at-least-once (a handler that ran outside
 * a transaction cannot be fenced: it may run again at the new owner). The
 * partitions' checkpoints move with the periodic checkpoint, not with each
 * batch (the inbox rows, not the checkpoint, make a redelivery harmless).
 *
 * THE COUNT. A member starting with another partition count than the
 * store's is refused (EDDY_EBUSY, naming a member that runs) while any
 * member runs; when none does, the partitions are re-created with the new
 * count, each at the lowest checkpoint of the old ones: events above it
 * are delivered again where an old partition had passed them
 * (AT_LEAST_ONCE handlers see them twice; INBOX and TRANSACTIONAL skip
 * them by their inbox rows).
 *
 * Clocks: a lease's end is written with the renewing process's clock and
 * compared with the taker's: hosts' clocks must agree to well within a
 * lease (a skew only makes a takeover early or late; the fence keeps an
 * early one safe).
 *
 * Threads: the coordinator thread; eddyi_durable_join and _leave on the
 * starting and stopping threads; the jobs and eddyi_durable_fence on the
 * store's writer thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../store/state_leases.h"
#include "../store/store_internal.h"
#include "durable_internal.h"

/* How often the coordinator looks at the rows (at most; a quarter of the
 * lease when that is shorter). */
#define POLL_MS 500

unsigned eddyi_durable_part(const eddy_durable *d, uint64_t key_hash)
{
    return (unsigned)(key_hash % d->partitions);
}

unsigned eddy_partition_of(const char *key, unsigned partitions)
{
    if (!key || partitions == 0)
        return 0;
    return (unsigned)(eddyi_durable_hash(key) % partitions);
}

/* ---- what the store says ------------------------------------------------- */

struct mview {
    char id[EDDY_UUID_STRLEN];
    char owner[EDDYI_OWNER_MAX];
    int partitions;
    int64_t expires_us;
};

struct lview {
    char member[EDDY_UUID_STRLEN];
    char owner[EDDYI_OWNER_MAX];
    int64_t expires_us;
    int64_t position;
    bool present;
};

struct view {
    struct mview *m;
    size_t nm, capm;
    struct lview *l; /* by part: parts 0..capl-1 */
    size_t nl, capl; /* rows read; slots */
    bool bad;        /* a part out of range */
    bool oom;
};

static void view_free(struct view *v)
{
    free(v->m);
    free(v->l);
    *v = (struct view){0};
}

static int view_member(const eddyi_member_row *r, void *user)
{
    struct view *v = user;
    if (v->nm == v->capm) {
        size_t cap = v->capm ? v->capm * 2 : 8;
        struct mview *n = realloc(v->m, cap * sizeof *n);
        if (!n) {
            v->oom = true;
            return EDDY_ENOMEM;
        }
        v->m = n;
        v->capm = cap;
    }
    struct mview *m = &v->m[v->nm++];
    snprintf(m->id, sizeof m->id, "%s", r->member);
    snprintf(m->owner, sizeof m->owner, "%s", r->owner);
    m->partitions = r->partitions;
    m->expires_us = r->expires_us;
    return 0;
}

static int view_lease(const eddyi_lease_row *r, void *user)
{
    struct view *v = user;
    if (r->part < 0 || r->part >= MAX_PARTITIONS * 4) {
        v->bad = true;
        return 0;
    }
    size_t part = (size_t)r->part;
    if (part >= v->capl) {
        size_t cap = v->capl ? v->capl : 16;
        while (cap <= part)
            cap *= 2;
        struct lview *n = realloc(v->l, cap * sizeof *n);
        if (!n) {
            v->oom = true;
            return EDDY_ENOMEM;
        }
        memset(n + v->capl, 0, (cap - v->capl) * sizeof *n);
        v->l = n;
        v->capl = cap;
    }
    struct lview *l = &v->l[part];
    snprintf(l->member, sizeof l->member, "%s", r->member);
    snprintf(l->owner, sizeof l->owner, "%s", r->owner);
    l->expires_us = r->expires_us;
    l->position = r->position;
    l->present = true;
    v->nl++;
    return 0;
}

/* Whether the rows are exactly partitions 0..n-1. */
static bool view_complete(const struct view *v, size_t n)
{
    if (v->bad || v->nl != n || (n && v->capl < n))
        return false;
    for (size_t p = 0; p < n; p++)
        if (!v->l[p].present)
            return false;
    return true;
}

static int mview_cmp(const void *a, const void *b)
{
    return strcmp(((const struct mview *)a)->id, ((const struct mview *)b)->id);
}

/* Members sorted by id in C, whatever order (collation) the engine uses:
 * every member must rank them alike. */
static void view_sort(struct view *v)
{
    if (v->nm > 1)
        qsort(v->m, v->nm, sizeof *v->m, mview_cmp);
}

static bool is_me(const eddy_durable *d, const char *member)
{
    return strcmp(member, d->member) == 0;
}

static bool member_live(const eddy_durable *d, const struct mview *m,
                        int64_t now)
{
    if (is_me(d, m->id))
        return true;
    return m->expires_us > now && !eddyi_owner_gone(m->owner);
}

/* Whether member `id` is live among the members of `v`. */
static bool holder_live(const eddy_durable *d, const struct view *v,
                        const char *id, int64_t now)
{
    for (size_t i = 0; i < v->nm; i++)
        if (strcmp(v->m[i].id, id) == 0)
            return member_live(d, &v->m[i], now);
    return false; /* its row is gone */
}

/* Whether a lease held by someone else (or no one) may be taken now: free,
 * or its holder is not live. */
static bool lease_takeable(const eddy_durable *d, const struct view *v,
                           const struct lview *l, int64_t now)
{
    if (!l->member[0])
        return true;
    return !is_me(d, l->member) && !holder_live(d, v, l->member, now);
}

struct plan {
    unsigned live;     /* live members, this one included */
    unsigned target;   /* this member's share */
    unsigned mine;     /* partitions the rows give this member */
    unsigned takeable; /* partitions it could take */
    bool mismatch;     /* the rows and the running segment disagree */
    bool evicted;      /* this member's row is gone */
};

static void plan_make(const eddy_durable *d, const struct view *v,
                      int64_t now, bool check_segment, struct plan *p)
{
    *p = (struct plan){0};
    unsigned rank = 0;
    bool seen = false;
    for (size_t i = 0; i < v->nm; i++) {
        const struct mview *m = &v->m[i];
        if (!member_live(d, m, now))
            continue;
        if (is_me(d, m->id)) {
            seen = true;
            rank = p->live;
        }
        p->live++;
    }
    p->evicted = !seen;
    if (!seen) { /* its row was deleted: it rejoins, live all the same */
        rank = 0;
        for (size_t i = 0; i < v->nm; i++)
            if (member_live(d, &v->m[i], now) &&
                strcmp(v->m[i].id, d->member) < 0)
                rank++;
        p->live++;
    }
    unsigned n = d->partitions;
    p->target = n / p->live + (rank < n % p->live ? 1 : 0);
    for (unsigned i = 0; i < n && i < v->capl; i++) {
        const struct lview *l = &v->l[i];
        bool mine = l->present && is_me(d, l->member);
        if (mine)
            p->mine++;
        else if (l->present && lease_takeable(d, v, l, now))
            p->takeable++;
        if (check_segment && mine != d->owned[i])
            p->mismatch = true;
    }
}

static bool plan_wants_change(const struct plan *p)
{
    return p->mismatch || p->evicted || p->mine > p->target ||
           (p->mine < p->target && p->takeable > 0);
}

/* "0-7, 9" for messages. */
static void parts_text(const bool *owned, unsigned n, char *out, size_t size)
{
    size_t off = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n && off + 24 < size;) {
        if (!owned[i]) {
            i++;
            continue;
        }
        unsigned j = i;
        while (j + 1 < n && owned[j + 1])
            j++;
        int w = j > i ? snprintf(out + off, size - off, "%s%u-%u",
                                 off ? ", " : "", i, j)
                      : snprintf(out + off, size - off, "%s%u",
                                 off ? ", " : "", i);
        off += (size_t)w;
        i = j + 1;
    }
    if (!out[0])
        snprintf(out, size, "none");
}

/* ---- the fence ----------------------------------------------------------- */

static void fence_trip(eddy_durable *d)
{
    if (!atomic_exchange(&d->fenced, true))
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: member %s (%s) was taken "
                  "for gone (its lease had ended): it drops its work and "
                  "rejoins", d->name, d->member, d->owner);
    pthread_mutex_lock(&d->mu);
    pthread_cond_signal(&d->coord_cond);
    pthread_mutex_unlock(&d->mu);
}

int eddyi_durable_fence(eddy_txn *txn, eddy_durable *d, eddy_error *err)
{
    pthread_mutex_lock(&d->mu);
    unsigned n = d->nowned;
    pthread_mutex_unlock(&d->mu);
    if (n == 0)
        return EDDY_OK;
    if (!eddyi_durable_fenced(d)) {
        int64_t renewed = 0;
        int rc = eddyi_member_renew(txn, d->name, d->member,
                                    eddy_txn_now_us(txn) + d->lease_us,
                                    &renewed, err);
        if (rc != EDDY_OK || renewed == 1)
            return rc;
        fence_trip(d);
    }
    return eddyi_error(err, EDDY_ESTATE,
                       "durable \"%s\": member %s (%s) was taken for gone "
                       "(its lease had ended) and its %u partitions may "
                       "belong to other members now: its work on them is "
                       "rolled back", d->name, d->member, d->owner, n);
}

/* ---- the jobs ---------------------------------------------------------- */

/* The renewal: this member's row (never re-created: a member whose row is
 * gone was taken for gone and rejoins under a new id), and the end its
 * lease rows show. */
struct renew_job {
    eddy_durable *d;
    unsigned expect; /* partitions of the running segment */
    bool lost;       /* out: its row is gone, or the rows give it another
                        count */
};

static int renew_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct renew_job *j = arg;
    eddy_durable *d = j->d;
    int64_t exp = eddy_txn_now_us(txn) + d->lease_us;
    int64_t renewed = 0, held = 0;
    int rc = eddyi_member_renew(txn, d->name, d->member, exp, &renewed, err);
    if (rc == EDDY_OK && renewed == 1)
        rc = eddyi_leases_renew(txn, d->name, d->member, exp, 0, &held, err);
    j->lost = rc == EDDY_OK && (renewed != 1 || held != (int64_t)j->expect);
    return rc;
}

/* Re-creates the partitions with this member's count (no member runs). */
static int repartition(eddy_txn *txn, eddy_durable *d, const struct view *v,
                       eddy_error *err)
{
    int64_t low = INT64_MAX;
    for (size_t p = 0; p < v->capl; p++)
        if (v->l[p].present && v->l[p].position < low)
            low = v->l[p].position;
    if (low == INT64_MAX)
        low = d->first_checkpoint;
    int rc = eddyi_leases_drop(txn, d->name, err);
    for (unsigned p = 0; rc == EDDY_OK && p < d->partitions; p++)
        rc = eddyi_lease_create(txn, d->name, (int)p, low, err);
    if (rc == EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: %zu partitions re-created as "
                  "%u, each at checkpoint %" PRId64 " (the lowest of the old "
                  "ones): events above it are delivered again where an old "
                  "partition had passed them", d->name, v->nl, d->partitions,
                  low);
    return rc;
}

/*
 * At a join: the partitions exist with this member's count afterwards.
 * None yet: created at the first checkpoint. Another count: refused while
 * another member runs (its row is live, or it holds a lease), else
 * re-created. `v` holds the leases; the members are read here.
 */
static int partitions_ensure(eddy_txn *txn, eddy_durable *d, struct view *v,
                             int64_t now, eddy_error *err)
{
    if (v->nl == 0 && !v->bad) {
        int rc = EDDY_OK;
        for (unsigned p = 0; rc == EDDY_OK && p < d->partitions; p++)
            rc = eddyi_lease_create(txn, d->name, (int)p, d->first_checkpoint,
                                    err);
        return rc;
    }
    if (view_complete(v, d->partitions))
        return EDDY_OK;
    int rc = eddyi_members_txn(txn, d->name, view_member, v, err);
    if (rc != EDDY_OK)
        return v->oom ? eddyi_error(err, EDDY_ENOMEM, "out of memory") : rc;
    for (size_t i = 0; i < v->nm; i++) {
        const struct mview *m = &v->m[i];
        if (!is_me(d, m->id) && member_live(d, m, now))
            return eddyi_error(err, EDDY_EBUSY,
                               "durable \"%s\" runs with %d partitions in "
                               "member %s (%s); this one asks for %u: start "
                               "it with %d, or stop every member first to "
                               "change the count", d->name, m->partitions,
                               m->id, m->owner, d->partitions, m->partitions);
    }
    for (size_t p = 0; p < v->capl; p++) {
        const struct lview *l = &v->l[p];
        if (l->present && l->member[0] && !is_me(d, l->member) &&
            !lease_takeable(d, v, l, now))
            return eddyi_error(err, EDDY_EBUSY,
                               "durable \"%s\" runs with %zu partitions "
                               "(member %s, %s, holds partition %zu); this "
                               "one asks for %u: start it with %zu, or stop "
                               "every member first to change the count",
                               d->name, v->nl, l->member, l->owner, p,
                               d->partitions, v->nl);
    }
    return repartition(txn, d, v, err);
}

/* The rebalance: decides from the rows as the transaction sees them. */
struct rebalance_job {
    eddy_durable *d;
    bool joining;
    int64_t joined_us;
    bool count_changed; /* out: the store has another partition count */
    bool rejoined;      /* out: under a new id */
    unsigned released, taken, taken_gone, live, target;
};

static int rebalance_decide(eddy_txn *txn, struct rebalance_job *j,
                            struct view *v, bool *owned, int64_t *passed,
                            eddy_error *err)
{
    eddy_durable *d = j->d;
    int64_t now = eddy_txn_now_us(txn), exp = now + d->lease_us;
    int rc = eddyi_leases_txn(txn, d->name, view_lease, v, err);
    if (rc == EDDY_OK && j->joining)
        rc = partitions_ensure(txn, d, v, now, err);
    if (rc == EDDY_OK && j->joining) { /* as they are now */
        view_free(v);
        rc = eddyi_leases_txn(txn, d->name, view_lease, v, err);
    }
    if (rc != EDDY_OK)
        return v->oom ? eddyi_error(err, EDDY_ENOMEM, "out of memory") : rc;
    if (!view_complete(v, d->partitions)) {
        j->count_changed = true;
        return eddyi_error(err, EDDY_ESTATE,
                           "durable \"%s\": the store has %zu partitions of "
                           "it, this member runs with %u (another member "
                           "changed the count while this one was taken for "
                           "gone): restart it", d->name, v->nl,
                           d->partitions);
    }
    /* This member's row: gone when it was taken for gone; it then rejoins
     * under a new id (the old one's lease rows can only be taken over). */
    v->nm = 0;
    rc = eddyi_members_txn(txn, d->name, view_member, v, err);
    if (rc != EDDY_OK)
        return v->oom ? eddyi_error(err, EDDY_ENOMEM, "out of memory") : rc;
    bool present = false;
    for (size_t i = 0; i < v->nm && !present; i++)
        present = is_me(d, v->m[i].id);
    if (!present && !j->joining) {
        char old[EDDY_UUID_STRLEN];
        memcpy(old, d->member, sizeof old);
        eddy_uuid7(d->member); /* writer thread; the pipeline is stopped */
        j->joined_us = now;
        j->rejoined = true;
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: member %s (%s) was taken "
                  "for gone; it rejoins as %s", d->name, old, d->owner,
                  d->member);
    }
    eddyi_member_row me = {.member = d->member, .owner = d->owner,
                           .partitions = (int)d->partitions,
                           .joined_us = j->joined_us, .expires_us = exp};
    rc = eddyi_member_put(txn, d->name, &me, err);
    /* Members that are not live lose their rows (and then their leases,
     * below); a renewal that committed first keeps an expired one. */
    for (size_t i = 0; rc == EDDY_OK && i < v->nm; i++) {
        const struct mview *m = &v->m[i];
        if (!member_live(d, m, now))
            rc = eddyi_member_delete(txn, d->name, m->id,
                                     eddyi_owner_gone(m->owner) ? 0 : now,
                                     NULL, err);
    }
    if (rc == EDDY_OK) { /* as they are now */
        v->nm = 0;
        rc = eddyi_members_txn(txn, d->name, view_member, v, err);
    }
    if (rc != EDDY_OK)
        return v->oom ? eddyi_error(err, EDDY_ENOMEM, "out of memory") : rc;
    view_sort(v);
    struct plan pl;
    plan_make(d, v, now, false, &pl);
    j->live = pl.live;
    j->target = pl.target;
    unsigned n = d->partitions, count = 0;
    for (unsigned p = 0; p < n; p++) {
        owned[p] = is_me(d, v->l[p].member);
        passed[p] = v->l[p].position;
        count += owned[p];
    }
    /* The surplus goes, the highest partitions first. */
    for (unsigned p = n; rc == EDDY_OK && count > pl.target && p-- > 0;) {
        if (!owned[p])
            continue;
        rc = eddyi_lease_release(txn, d->name, (int)p, d->member, 0, err);
        owned[p] = false;
        count--;
        j->released++;
    }
    /* A shortfall is taken from what may be taken, the lowest first: free
     * partitions, and those of members whose rows are gone. */
    for (unsigned p = 0; rc == EDDY_OK && count < pl.target && p < n; p++) {
        const struct lview *l = &v->l[p];
        if (owned[p] || !lease_takeable(d, v, l, now))
            continue;
        bool taken = false;
        rc = eddyi_lease_take(txn, d->name, (int)p, d->member, d->owner, exp,
                              l->member, INT64_MAX, &taken, err);
        if (rc == EDDY_OK && taken) {
            owned[p] = true;
            count++;
            j->taken++;
            j->taken_gone += l->member[0] != '\0';
        }
    }
    int64_t held = 0;
    if (rc == EDDY_OK)
        rc = eddyi_leases_renew(txn, d->name, d->member, exp, 0, &held, err);
    if (rc == EDDY_OK && held != (int64_t)count)
        rc = eddyi_error(err, EDDY_ESTATE, "durable \"%s\": member %s holds "
                         "%lld partitions, expected %u", d->name, d->member,
                         (long long)held, count);
    return rc;
}

/*
 * Applies the decision to the segment at the end of the job, on the writer
 * thread, so that the jobs queued after it (an explicit redrive's fence)
 * already count the new partitions. If the commit then fails, the rows
 * keep the old leases and the next fence trips: a resync.
 */
static int rebalance_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct rebalance_job *j = arg;
    eddy_durable *d = j->d;
    unsigned n = d->partitions;
    bool *owned = calloc(n, sizeof *owned);
    int64_t *passed = calloc(n, sizeof *passed);
    struct view v = {0};
    int rc = owned && passed
                 ? rebalance_decide(txn, j, &v, owned, passed, err)
                 : eddyi_error(err, EDDY_ENOMEM, "out of memory");
    if (rc == EDDY_OK) {
        unsigned count = 0;
        pthread_mutex_lock(&d->mu);
        for (unsigned p = 0; p < n; p++) {
            d->owned[p] = owned[p];
            d->passed[p] = owned[p] ? passed[p] : 0;
            count += owned[p];
        }
        d->nowned = count;
        pthread_mutex_unlock(&d->mu);
        atomic_store(&d->fenced, false);
    }
    view_free(&v);
    free(owned);
    free(passed);
    return rc;
}

static void log_segment(eddy_durable *d, const struct rebalance_job *j)
{
    char parts[256];
    parts_text(d->owned, d->partitions, parts, sizeof parts);
    EDDYI_LOG(EDDY_LOG_INFO, "durable", "%s: member %s (%s) holds partitions "
              "%s of %u (%u live members, its share %u; took %u, %u of them "
              "from gone members; gave up %u)", d->name, d->member, d->owner,
              parts, d->partitions, j->live, j->target, j->taken,
              j->taken_gone, j->released);
}

int eddyi_durable_join(eddy_durable *d, eddy_error *err)
{
    struct rebalance_job j = {.d = d, .joining = true,
                              .joined_us = eddy_now_us()};
    d->joined_us = j.joined_us;
    int rc = eddyi_store_write(d->store, rebalance_job_run, &j, err);
    if (rc == EDDY_OK)
        log_segment(d, &j);
    return rc;
}

struct leave_job {
    eddy_durable *d;
};

static int leave_job_run(eddy_txn *txn, void *arg, eddy_error *err)
{
    struct leave_job *j = arg;
    int rc = eddyi_leases_release_all(txn, j->d->name, j->d->member, 0, err);
    if (rc == EDDY_OK)
        rc = eddyi_member_delete(txn, j->d->name, j->d->member, 0, NULL, err);
    return rc;
}

void eddyi_durable_leave(eddy_durable *d)
{
    struct leave_job j = {.d = d};
    eddy_error e = {0};
    if (eddyi_store_write(d->store, leave_job_run, &j, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: member %s could not free its "
                  "partitions (%s): others take them when its lease ends",
                  d->name, d->member, e.message);
    pthread_mutex_lock(&d->mu);
    for (unsigned p = 0; p < d->partitions; p++)
        d->owned[p] = false;
    d->nowned = 0;
    pthread_mutex_unlock(&d->mu);
}

/* ---- the coordinator ----------------------------------------------------- */

/* Nothing delivers any more: records why, stops the pipeline and frees the
 * partitions for the other members. wait_idle reports EDDY_ESTOPPED; the
 * final stop returns `status`. */
static void member_fail(eddy_durable *d, int status, const eddy_error *e)
{
    pthread_mutex_lock(&d->mu);
    if (!d->failed) {
        d->failed = true;
        d->fail_status = status;
        if (e)
            d->fail_err = *e;
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    if (status != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_ERROR, "durable", "%s: stopped delivering: %s",
                  d->name, e && e->message[0] ? e->message
                                              : eddy_strerror(status));
    eddyi_durable_pipeline_stop(d, NULL);
    eddyi_durable_leave(d);
}

/* Stops the segment, changes the leases, starts the next segment. Returns
 * false when the lease change failed (the old segment runs again: when it
 * was fenced, its work is dropped until a later rebalance succeeds). */
static bool rebalance(eddy_durable *d)
{
    eddy_error e = {0};
    /* A read error that ended the reader just now is not lost: the next
     * segment's reader meets it again, and the next tick ends the member. */
    if (eddyi_durable_pipeline_stop(d, &e) != EDDY_OK)
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: stopping for a rebalance: "
                  "%s", d->name, e.message);
    struct rebalance_job j = {.d = d, .joined_us = d->joined_us};
    e = (eddy_error){0};
    int rc = eddyi_store_write(d->store, rebalance_job_run, &j, &e);
    if (rc == EDDY_OK) {
        if (j.rejoined)
            d->joined_us = j.joined_us;
        log_segment(d, &j);
    } else if (j.count_changed) {
        member_fail(d, rc, &e);
        return false;
    } else {
        EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: rebalancing: %s", d->name,
                  e.message);
    }
    eddy_error se = {0};
    int src = eddyi_durable_pipeline_start(d, &se);
    if (src != EDDY_OK)
        member_fail(d, src, &se);
    return rc == EDDY_OK;
}

struct tick {
    int64_t next_renew;
    int64_t renew_every;
    bool backoff; /* the last rebalance failed: wait a poll period */
};

static void coord_tick(eddy_durable *d, struct tick *t)
{
    pthread_mutex_lock(&d->mu);
    bool failed = d->failed;
    pthread_mutex_unlock(&d->mu);
    if (failed)
        return;
    if (d->pipeline_running && !eddy_store_subscription_running(d->sub)) {
        /* The reader ended by itself: a read error (or the store closes). */
        eddy_error e = {0};
        int rc = eddyi_durable_pipeline_stop(d, &e);
        member_fail(d, rc, &e);
        return;
    }
    int64_t now = eddy_now_us();
    bool change = eddyi_durable_fenced(d);
    if (!change) {
        struct view v = {0};
        eddy_error e = {0};
        int rc = eddyi_leases_read(d->store, d->name, view_lease, &v, &e);
        if (rc == EDDY_OK)
            rc = eddyi_members_read(d->store, d->name, view_member, &v, &e);
        if (rc == EDDY_OK && view_complete(&v, d->partitions)) {
            view_sort(&v);
            struct plan pl;
            plan_make(d, &v, now, true, &pl);
            change = plan_wants_change(&pl);
        } else if (rc == EDDY_OK) {
            change = true; /* the count changed: the rebalance says so */
        }
        view_free(&v);
    }
    if (!change && now >= t->next_renew) {
        pthread_mutex_lock(&d->mu);
        unsigned expect = d->nowned;
        pthread_mutex_unlock(&d->mu);
        struct renew_job j = {.d = d, .expect = expect};
        eddy_error e = {0};
        if (eddyi_store_write(d->store, renew_job_run, &j, &e) != EDDY_OK) {
            EDDYI_LOG(EDDY_LOG_WARN, "durable", "%s: renewing the leases of "
                      "member %s: %s", d->name, d->member, e.message);
            t->next_renew = now + t->renew_every / 4;
            return;
        }
        if (j.lost)
            fence_trip(d);
        change = j.lost;
        t->next_renew = now + t->renew_every;
    }
    if (change) {
        t->backoff = !rebalance(d);
        t->next_renew = eddy_now_us() + t->renew_every;
    }
}

static void *coord_main(void *arg)
{
    eddy_durable *d = arg;
    int64_t poll_us = (int64_t)POLL_MS * 1000;
    if (d->lease_us / 4 < poll_us)
        poll_us = d->lease_us / 4;
    struct tick t = {.renew_every = d->lease_us / 3};
    t.next_renew = eddy_now_us() + t.renew_every;
    pthread_mutex_lock(&d->mu);
    while (!d->coord_stop) {
        /* A fence that tripped is handled at once (fence_trip signals
         * under mu after setting the flag: no wake-up is lost). */
        if (!eddyi_durable_fenced(d) || t.backoff) {
            struct timespec ts;
            eddyi_abs_deadline(&ts, eddy_now_us() + poll_us);
            pthread_cond_timedwait(&d->coord_cond, &d->mu, &ts);
            if (d->coord_stop)
                break;
        }
        pthread_mutex_unlock(&d->mu);
        coord_tick(d, &t);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int eddyi_durable_coord_start(eddy_durable *d, eddy_error *err)
{
    if (pthread_create(&d->coord, NULL, coord_main, d) != 0)
        return eddyi_error(err, EDDY_ENOMEM, "durable \"%s\": cannot start "
                           "its coordinator thread", d->name);
    d->coord_started = true;
    return EDDY_OK;
}

void eddyi_durable_coord_stop(eddy_durable *d)
{
    if (!d->coord_started)
        return;
    pthread_mutex_lock(&d->mu);
    d->coord_stop = true;
    pthread_cond_broadcast(&d->coord_cond);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->coord, NULL);
    d->coord_started = false;
}
