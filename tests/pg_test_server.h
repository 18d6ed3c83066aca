/*
 * tests/pg_test_server.h - a throwaway PostgreSQL for the tests (header only:
 * every test is its own program). Started through scripts/test-servers.sh
 * (path compiled in as EDDY_TEST_SERVERS) in a temporary folder, on a free
 * port; a test that cannot start it fails.
 */
#ifndef EDDY_TESTS_PG_TEST_SERVER_H
#define EDDY_TESTS_PG_TEST_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "test_util.h"

typedef struct pgt_server {
    char dir[64];
    const char *engine; /* "postgres" (NULL) or "postgres-tls" */
    int port;
    int next_db;
} pgt_server;

/* Runs test-servers.sh ACTION postgres DIR [PORT]; returns 0 or -1. */
static inline int pgt_script(pgt_server *s, const char *action, bool with_port)
{
    char cmd[512];
    const char *engine = s->engine ? s->engine : "postgres";
    if (with_port)
        snprintf(cmd, sizeof cmd, "bash '%s' %s %s '%s' %d",
                 EDDY_TEST_SERVERS, action, engine, s->dir, s->port);
    else
        snprintf(cmd, sizeof cmd, "bash '%s' %s %s '%s'",
                 EDDY_TEST_SERVERS, action, engine, s->dir);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    int port = 0;
    char line[512];
    if (fgets(line, sizeof line, f))
        port = atoi(line);
    while (fgets(line, sizeof line, f))
        ;
    int st = pclose(f);
    if (st != 0)
        return -1;
    if (!strcmp(action, "start")) {
        if (port <= 0)
            return -1;
        s->port = port;
    }
    return 0;
}

/* Starts a new server in a new temporary folder. 0 or -1 (reason on
 * stderr, from the script). */
static inline int pgt_start_engine(pgt_server *s, const char *engine)
{
    memset(s, 0, sizeof *s);
    s->engine = engine;
    snprintf(s->dir, sizeof s->dir, "/tmp/eddy-pg-test-XXXXXX");
    if (!mkdtemp(s->dir)) {
        perror("mkdtemp");
        return -1;
    }
    return pgt_script(s, "start", false);
}

static inline int pgt_start(pgt_server *s) { return pgt_start_engine(s, NULL); }

/* As pgt_start, with TLS and a password user (test-servers.sh
 * postgres-tls: DIR/user, DIR/password, DIR/tls/ca.pem, rogue-ca.pem). */
static inline int pgt_start_tls(pgt_server *s)
{
    return pgt_start_engine(s, "postgres-tls");
}

/* Restarts the same cluster on the same port (after pgt_kill). */
static inline int pgt_restart(pgt_server *s) { return pgt_script(s, "start", true); }

/* SIGKILLs the postmaster and its backends. */
static inline int pgt_kill(pgt_server *s) { return pgt_script(s, "kill", false); }

/* Stops the server and removes its folder. */
static inline void pgt_stop(pgt_server *s)
{
    if (!s->dir[0])
        return;
    pgt_script(s, "stop", false);
    eddyt_rmtree(s->dir);
    s->dir[0] = 0;
}

/* The URL of database `db` over the unix socket, with `extra` options
 * ("" or "&key=value..."). */
static inline void pgt_url(const pgt_server *s, const char *db, const char *extra,
                           char *out, size_t cap)
{
    snprintf(out, cap, "postgresql:///%s?host=%s&port=%d&user=postgres%s", db,
             s->dir, s->port, extra ? extra : "");
}

/* Runs SQL (several statements allowed) on database `db`; 0 or -1 with the
 * server's message on stderr. */
static inline int pgt_exec(const pgt_server *s, const char *db, const char *sql)
{
    char url[512];
    pgt_url(s, db, "", url, sizeof url);
    PGconn *c = PQconnectdb(url);
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
        if (rc)
            fprintf(stderr, "pgt_exec %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pgt_exec: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

/* The first column of the first row of a query on `db`, as an integer
 * (-1 on error or no row). */
static inline long long pgt_query_int(const pgt_server *s, const char *db,
                                      const char *sql)
{
    char url[512];
    pgt_url(s, db, "", url, sizeof url);
    PGconn *c = PQconnectdb(url);
    long long v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
            !PQgetisnull(r, 0, 0))
            v = atoll(PQgetvalue(r, 0, 0));
        else if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fprintf(stderr, "pgt_query_int %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

/* Creates a new empty database and writes its name to `name`. 0 or -1. */
static inline int pgt_new_db(pgt_server *s, const char *prefix, char *name,
                             size_t cap)
{
    snprintf(name, cap, "%s_%d", prefix, s->next_db++);
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    return pgt_exec(s, "postgres", sql);
}

static inline int pgt_drop_db(pgt_server *s, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    return pgt_exec(s, "postgres", sql);
}

#endif
