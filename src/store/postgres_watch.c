/*
 * src/store/postgres_watch.c - the wake-up thread of a PostgreSQL store: one
 * connection that LISTENs on the store's channel (unless eddy_notify=off)
 * and polls the head every eddy_poll_ms, and calls the front's wake with
 * the head it learns. Why a notified head is safe to trust: postgres.h.
 *
 * The thread sleeps in poll() on the connection's socket and on a pipe that
 * eddyi_pg_watch_stop writes to, so stopping never waits for a timeout. A
 * lost connection is reopened with backoff; after a reconnection the head is
 * read at once (notifications sent meanwhile are lost).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"
#include "postgres.h"

struct eddyi_pg_watch {
    eddyi_pg *pg;
    void (*wake)(void *ctx, int64_t head);
    void *ctx;
    int stop_pipe[2];
    pthread_t thread;
};

const char eddyi_pg_sql_head[] =
    "SELECT COALESCE(max(position), 0) FROM events";

/* Reads the head on the watcher's connection and wakes with it. */
static bool poll_head(eddyi_pg_watch *w, eddyi_pg_conn *c)
{
    eddy_error err = {0};
    PGresult *r = eddyi_pg_exec(w->pg, c, eddyi_pg_sql_head, false, NULL, &err);
    if (!r)
        return false;
    int64_t head = eddyi_pg_int(r, 0, 0);
    PQclear(r);
    w->wake(w->ctx, head);
    return true;
}

/* Drains the notifications libpq has read; wakes with the highest head. */
static void drain_notifies(eddyi_pg_watch *w, eddyi_pg_conn *c)
{
    int64_t head = 0;
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        long long v = 0;
        if (n->extra && sscanf(n->extra, "%lld", &v) == 1 && v > head)
            head = v;
        PQfreemem(n);
    }
    if (head > 0)
        w->wake(w->ctx, head);
}

/* Waits up to `ms` on the pipe alone; true when asked to stop. */
static bool wait_stop(eddyi_pg_watch *w, int ms)
{
    struct pollfd p = {.fd = w->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

static void *watch_main(void *arg)
{
    eddyi_thread_name("eddy-pg-watch");
    eddyi_pg_watch *w = arg;
    eddyi_pg *pg = w->pg;
    eddyi_pg_conn *c = NULL;
    int backoff = 50;
    for (;;) {
        if (!c) {
            eddy_error err = {0};
            /* One attempt per turn: the turn's wait is the backoff, and
             * stopping interrupts it. */
            if (eddyi_pg_connect(pg, "listener", false, &c, &err) != EDDY_OK) {
                if (!atomic_exchange(&pg->lost, true))
                    EDDYI_LOG(EDDY_LOG_ERROR, "store",
                              "%s; retrying with backoff", err.message);
                if (wait_stop(w, backoff))
                    break;
                backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
                continue;
            }
            backoff = 50;
            if (pg->notify) {
                char sql[96];
                snprintf(sql, sizeof sql, "LISTEN %s", pg->channel);
                if (eddyi_pg_exec_simple(pg, c, sql, &err) != EDDY_OK) {
                    EDDYI_LOG(EDDY_LOG_ERROR, "store", "%s", err.message);
                    eddyi_pg_conn_dead(pg, c, err.message);
                    eddyi_pg_conn_free(c);
                    c = NULL;
                    if (wait_stop(w, 1000))
                        break;
                    continue;
                }
            }
            if (!poll_head(w, c)) { /* what was missed while down */
                eddyi_pg_conn_dead(pg, c, NULL);
                eddyi_pg_conn_free(c);
                c = NULL;
                continue;
            }
        }
        struct pollfd p[2] = {{.fd = w->stop_pipe[0], .events = POLLIN},
                              {.fd = PQsocket(c->pg), .events = POLLIN}};
        int n = poll(p, 2, pg->poll_ms);
        if (n < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        bool ok = true;
        if (n > 0 && p[1].revents) {
            ok = PQconsumeInput(c->pg) == 1;
            if (ok)
                drain_notifies(w, c);
        } else if (n == 0) {
            ok = poll_head(w, c);
            if (ok)
                drain_notifies(w, c);
        }
        if (!ok || PQstatus(c->pg) == CONNECTION_BAD) {
            eddyi_pg_conn_dead(pg, c, NULL);
            eddyi_pg_conn_free(c);
            c = NULL;
        }
    }
    eddyi_pg_conn_free(c);
    return NULL;
}

int eddyi_pg_watch_start(eddyi_pg *pg, void (*wake)(void *ctx, int64_t head),
                         void *ctx, eddyi_pg_watch **out, eddy_error *err)
{
    eddyi_pg_watch *w = calloc(1, sizeof *w);
    if (!w)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    w->pg = pg;
    w->wake = wake;
    w->ctx = ctx;
    if (pipe2(w->stop_pipe, O_CLOEXEC) != 0) {
        free(w);
        return eddyi_error(err, EDDY_EIO, "cannot create a pipe (errno %d)",
                           errno);
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        close(w->stop_pipe[0]);
        close(w->stop_pipe[1]);
        free(w);
        return eddyi_error(err, EDDY_ENOMEM,
                           "cannot start the PostgreSQL wake-up thread");
    }
    *out = w;
    return EDDY_OK;
}

void eddyi_pg_watch_stop(eddyi_pg_watch *w)
{
    if (!w)
        return;
    ssize_t wr;
    do
        wr = write(w->stop_pipe[1], "x", 1);
    while (wr < 0 && errno == EINTR);
    pthread_join(w->thread, NULL);
    close(w->stop_pipe[0]);
    close(w->stop_pipe[1]);
    free(w);
}
