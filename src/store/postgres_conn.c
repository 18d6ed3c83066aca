/*
 * src/store/postgres_conn.c - connections of the PostgreSQL backend: eddy's
 * URL options, connecting and reconnecting with backoff (a loss logged
 * once), prepared statements, binary parameters and errors. See postgres.h.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/internal.h"
#include "postgres.h"

/* ---- parameters and binary values ---------------------------------------- */

static void put_be32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static void put_be64(char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

void eddyi_pg_param_text(eddyi_pg_params *p, const char *s)
{
    int i = p->n++;
    p->values[i] = s;
    p->lengths[i] = 0;
    p->formats[i] = 0;
    p->types[i] = EDDYI_PG_TEXT;
}

void eddyi_pg_param_int8(eddyi_pg_params *p, int64_t v)
{
    int i = p->n++;
    put_be64(p->ints[i], (uint64_t)v);
    p->values[i] = p->ints[i];
    p->lengths[i] = 8;
    p->formats[i] = 1;
    p->types[i] = EDDYI_PG_INT8;
}

void eddyi_pg_param_int4(eddyi_pg_params *p, int32_t v)
{
    int i = p->n++;
    put_be32(p->ints[i], (uint32_t)v);
    p->values[i] = p->ints[i];
    p->lengths[i] = 4;
    p->formats[i] = 1;
    p->types[i] = EDDYI_PG_INT4;
}

void eddyi_pg_param_bin(eddyi_pg_params *p, const void *data, size_t len,
                        Oid type)
{
    int i = p->n++;
    p->values[i] = data;
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
    p->types[i] = type;
}

void eddyi_pg_buf_i32(eddyi_buf *b, int32_t v)
{
    char x[4];
    put_be32(x, (uint32_t)v);
    eddyi_buf_put(b, x, 4);
}

void eddyi_pg_buf_i64(eddyi_buf *b, int64_t v)
{
    char x[8];
    put_be64(x, (uint64_t)v);
    eddyi_buf_put(b, x, 8);
}

/* The binary array format of array_recv(): ndim, has-nulls flag, element
 * type, then per dimension its size and lower bound, then the elements. */
void eddyi_pg_array_begin(eddyi_buf *b, Oid elem, int32_t count,
                          bool has_nulls)
{
    eddyi_pg_buf_i32(b, 1);
    eddyi_pg_buf_i32(b, has_nulls ? 1 : 0);
    eddyi_pg_buf_i32(b, (int32_t)elem);
    eddyi_pg_buf_i32(b, count);
    eddyi_pg_buf_i32(b, 1);
}

void eddyi_pg_array_elem(eddyi_buf *b, const void *data, size_t len)
{
    eddyi_pg_buf_i32(b, (int32_t)len);
    eddyi_buf_put(b, data, len);
}

void eddyi_pg_array_null(eddyi_buf *b) { eddyi_pg_buf_i32(b, -1); }

int64_t eddyi_pg_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t x = 0;
    for (int i = 0; i < len && i < 8; i++)
        x = (x << 8) | v[i];
    if (len == 4)
        return (int32_t)(uint32_t)x;
    if (len == 2)
        return (int16_t)(uint16_t)x;
    return (int64_t)x;
}

/* ---- the URL ----------------------------------------------------------- */

static bool parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "1") ||
        !strcmp(v, "yes")) {
        *out = true;
        return true;
    }
    if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "0") ||
        !strcmp(v, "no")) {
        *out = false;
        return true;
    }
    return false;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes `v` in place (a bad escape is kept as it is). */
static void pct_decode(char *v)
{
    char *o = v;
    for (char *p = v; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval((unsigned char)p[1])) >= 0 &&
            (lo = hexval((unsigned char)p[2])) >= 0 && (hi || lo)) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

static void wipe_free(char *s)
{
    if (s) {
        volatile char *v = s;
        while (*v)
            *v++ = 0;
        free(s);
    }
}

/* The password of password_file=PATH (`is_file`) or password_env=NAME:
 * malloc'd in *out, or an error naming the file or variable. */
static int password_from(bool is_file, const char *where, char **out,
                         eddy_error *err)
{
    if (!is_file) {
        const char *v = getenv(where);
        if (!v || !*v)
            return eddyi_error(err, EDDY_EINVAL, "store URL: password_env=%s: "
                               "the environment variable %s is %s", where,
                               where, v ? "empty" : "not set");
        return (*out = eddyi_strdup(v)) ? EDDY_OK
                                        : eddyi_error(err, EDDY_ENOMEM,
                                                      "out of memory");
    }
    FILE *f = fopen(where, "r");
    if (!f) {
        char why[128];
        strerror_r(errno, why, sizeof why);
        return eddyi_error(err, EDDY_EINVAL, "store URL: password_file %s: "
                           "cannot open: %s", where, why);
    }
    char line[1024];
    bool got = fgets(line, sizeof line, f) != NULL;
    int c = got ? fgetc(f) : EOF;
    fclose(f);
    size_t len = got ? strlen(line) : 0;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                   line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = 0;
    bool more = c != EOF && c != '\n';
    int rc = EDDY_OK;
    if (len == 0 || more)
        rc = eddyi_error(err, EDDY_EINVAL, "store URL: password_file %s: "
                         "expected the password alone on one line, found %s",
                         where, len ? "more" : "an empty file");
    else if (!(*out = eddyi_strdup(line)))
        rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    volatile char *v = line;
    for (size_t i = 0; i < sizeof line; i++)
        v[i] = 0;
    return rc;
}

/* Applies one eddy_ option ("key=value", NUL-terminated). */
static int eddy_option(eddyi_pg *pg, const char *kv, bool *poll_set,
                       eddy_error *err)
{
    const char *eq = strchr(kv, '=');
    size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
    const char *v = eq ? eq + 1 : "";
    if (klen == 11 && !strncmp(kv, "eddy_notify", klen)) {
        if (!parse_bool(v, &pg->notify))
            return eddyi_error(err, EDDY_EINVAL,
                               "store URL: eddy_notify=%.32s: expected on or "
                               "off", v);
        return EDDY_OK;
    }
    if (klen == 12 && !strncmp(kv, "eddy_poll_ms", klen)) {
        char *end = NULL;
        long ms = strtol(v, &end, 10);
        if (!*v || *end || ms < 1 || ms > 600000)
            return eddyi_error(err, EDDY_EINVAL,
                               "store URL: eddy_poll_ms=%.32s: expected "
                               "milliseconds from 1 to 600000", v);
        pg->poll_ms = (int)ms;
        *poll_set = true;
        return EDDY_OK;
    }
    return eddyi_error(err, EDDY_EINVAL,
                       "store URL: unknown option %.*s (eddy's own options "
                       "are eddy_notify, eddy_poll_ms, password_file and "
                       "password_env)",
                       (int)(klen > 64 ? 64 : klen), kv);
}

/* Whether the URL itself holds a password: user:password@ in its
 * authority, or a password= key. */
static bool password_given(const char *url)
{
    const char *auth = strstr(url, "://");
    const char *q = strchr(url, '?');
    if (auth && (!q || auth < q)) {
        auth += 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *c = auth; c < end; c++)
            if (*c == '@')
                at = c;
        if (at && memchr(auth, ':', (size_t)(at - auth)))
            return true;
    }
    for (const char *k = q; k; k = strchr(k + 1, '&'))
        if (!strncmp(k + 1, "password=", 9))
            return true;
    return false;
}

int eddyi_pg_parse_url(eddyi_pg *pg, const char *url, eddy_error *err)
{
    pg->notify = true;
    bool poll_set = false;
    size_t len = strlen(url);
    char *out = malloc(len + 1);
    char *query = eddyi_strdup(url);
    if (!out || !query) {
        free(out);
        free(query);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    char *q = strchr(query, '?');
    size_t n = q ? (size_t)(q - query) : len;
    memcpy(out, url, n);
    int rc = EDDY_OK;
    bool first = true;
    if (q) {
        char *save = NULL;
        for (char *part = q + 1; part && rc == EDDY_OK; part = save) {
            save = strchr(part, '&');
            if (save)
                *save++ = 0;
            if (!*part)
                continue;
            if (!strncmp(part, "eddy_", 5)) {
                rc = eddy_option(pg, part, &poll_set, err);
                continue;
            }
            bool pw_file = !strncmp(part, "password_file=", 14);
            if (pw_file || !strncmp(part, "password_env=", 13)) {
                char *v = strchr(part, '=') + 1;
                pct_decode(v);
                if (pg->password || password_given(url))
                    rc = eddyi_error(err, EDDY_EINVAL,
                                     "store URL: the password is given more "
                                     "than once (user:password@, password=, "
                                     "password_file=, password_env=); give "
                                     "one of them");
                else
                    rc = password_from(pw_file, v, &pg->password, err);
                continue;
            }
            out[n++] = first ? '?' : '&';
            first = false;
            size_t plen = strlen(part);
            memcpy(out + n, part, plen);
            n += plen;
        }
    }
    out[n] = 0;
    free(query);
    if (rc != EDDY_OK) {
        free(out);
        wipe_free(pg->password);
        pg->password = NULL;
        return rc;
    }
    if (!poll_set)
        pg->poll_ms = pg->notify ? 1000 : 100;
    pg->conninfo = out;
    return EDDY_OK;
}

/* ---- connections ------------------------------------------------------- */

/* libpq's message on one line: whitespace runs become one space. */
static void clean_message(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    bool space = false;
    for (const char *p = in ? in : ""; *p && n + 1 < cap; p++) {
        if (isspace((unsigned char)*p)) {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < cap)
            out[n++] = ' ';
        space = false;
        out[n++] = *p;
    }
    out[n] = 0;
}

static void set_where(eddyi_pg *pg, PGconn *c)
{
    if (pg->where[0] || !c)
        return;
    const char *host = PQhost(c), *port = PQport(c), *db = PQdb(c);
    snprintf(pg->where, sizeof pg->where, "%s:%s/%s",
             host && *host ? host : "localhost", port && *port ? port : "5432",
             db ? db : "?");
}

static PGconn *connect_once(eddyi_pg *pg, const char *role)
{
    char app[32];
    snprintf(app, sizeof app, "eddy %s", role);
    /* Before dbname: defaults the URL may override (a silent peer is found
     * dead within about 25 s instead of hours); after: eddy's needs. */
    const char *kw[] = {"connect_timeout", "keepalives_idle",
                        "keepalives_interval", "keepalives_count", "dbname",
                        "fallback_application_name", "client_encoding",
                        pg->password ? "password" : NULL, NULL};
    const char *val[] = {"10", "10", "5", "3", pg->conninfo, app, "UTF8",
                         pg->password, NULL};
    return PQconnectdbParams(kw, val, 1);
}

/* Server notices (say "terminating connection due to administrator
 * command") go to eddy's log, not to stderr. */
static void on_notice(void *arg, const char *message)
{
    eddyi_pg *pg = arg;
    char msg[EDDY_ERROR_MESSAGE_MAX];
    clean_message(message, msg, sizeof msg);
    EDDYI_LOG(EDDY_LOG_DEBUG, "store", "PostgreSQL %s: %s", pg->where, msg);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int eddyi_pg_connect(eddyi_pg *pg, const char *role, bool retry,
                     eddyi_pg_conn **out, eddy_error *err)
{
    int64_t deadline = eddy_now_us() / 1000 + pg->opts.busy_timeout_ms;
    int backoff = 50;
    char msg[EDDY_ERROR_MESSAGE_MAX];
    for (;;) {
        PGconn *c = connect_once(pg, role);
        if (!c)
            return eddyi_error(err, EDDY_ENOMEM, "out of memory connecting "
                                                 "to PostgreSQL");
        set_where(pg, c);
        if (PQstatus(c) == CONNECTION_OK) {
            eddyi_pg_conn *ec = calloc(1, sizeof *ec);
            if (!ec) {
                PQfinish(c);
                return eddyi_error(err, EDDY_ENOMEM, "out of memory");
            }
            PQsetNoticeProcessor(c, on_notice, pg);
            ec->pg = c;
            ec->generation = atomic_load(&pg->generation);
            eddyi_pg_recovered(pg);
            *out = ec;
            return EDDY_OK;
        }
        clean_message(PQerrorMessage(c), msg, sizeof msg);
        PQfinish(c);
        int64_t now = eddy_now_us() / 1000;
        if (!retry || now + backoff > deadline)
            return eddyi_error(err, EDDY_ECONNECT,
                               "cannot connect to PostgreSQL%s%s%s: %s",
                               pg->where[0] ? " (" : "", pg->where,
                               pg->where[0] ? ")" : "", msg);
        if (!atomic_exchange(&pg->lost, true))
            EDDYI_LOG(EDDY_LOG_ERROR, "store",
                      "PostgreSQL %s: cannot connect (%s); retrying with "
                      "backoff", pg->where, msg);
        sleep_ms(backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
}

void eddyi_pg_password_free(eddyi_pg *pg)
{
    wipe_free(pg->password);
    pg->password = NULL;
}

void eddyi_pg_conn_free(eddyi_pg_conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < EDDYI_PG_STMT_CACHE; i++)
        free(c->cache[i].sql);
    PQfinish(c->pg);
    free(c);
}

bool eddyi_pg_conn_dead(eddyi_pg *pg, eddyi_pg_conn *c, const char *detail)
{
    if (!c || PQstatus(c->pg) != CONNECTION_BAD)
        return false;
    atomic_fetch_add(&pg->generation, 1);
    if (!atomic_exchange(&pg->lost, true)) {
        char msg[EDDY_ERROR_MESSAGE_MAX];
        clean_message(detail && *detail ? detail : PQerrorMessage(c->pg), msg,
                      sizeof msg);
        EDDYI_LOG(EDDY_LOG_ERROR, "store",
                  "PostgreSQL %s: connection lost (%s); reconnecting with "
                  "backoff", pg->where, msg);
    }
    return true;
}

bool eddyi_pg_conn_alive(eddyi_pg_conn *c)
{
    if (!c || PQstatus(c->pg) != CONNECTION_OK)
        return false;
    /* An idle connection has nothing to read unless the server closed it
     * (or sent a notice): then read until nothing is left, and libpq sees
     * the end. A terminated backend sends its FATAL message and then
     * closes: one read may take the message, the next finds the end. */
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    for (int i = 0; i < 8 && poll(&p, 1, 0) > 0; i++)
        if (PQconsumeInput(c->pg) != 1 || PQstatus(c->pg) != CONNECTION_OK)
            return false;
    return PQstatus(c->pg) == CONNECTION_OK;
}

void eddyi_pg_recovered(eddyi_pg *pg)
{
    if (atomic_exchange(&pg->lost, false))
        EDDYI_LOG(EDDY_LOG_WARN, "store", "PostgreSQL %s: connected again",
                  pg->where);
}

/* ---- statements --------------------------------------------------------- */

int eddyi_pg_stmt_name(eddyi_pg_conn *c, const char *sql, bool dynamic,
                       char name[32], bool *fresh, eddy_error *err)
{
    for (int i = 0; i < EDDYI_PG_STMT_CACHE; i++) {
        if (!c->cache[i].id)
            continue;
        if ((!dynamic && c->cache[i].key == sql) ||
            (dynamic && c->cache[i].sql && strcmp(c->cache[i].sql, sql) == 0)) {
            snprintf(name, 32, "eddy_%u", c->cache[i].id);
            *fresh = false;
            return EDDY_OK;
        }
    }
    char *copy = NULL;
    if (dynamic && !(copy = eddyi_strdup(sql)))
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int slot = -1;
    for (int i = 0; i < EDDYI_PG_STMT_CACHE && slot < 0; i++)
        if (!c->cache[i].id)
            slot = i;
    if (slot < 0) {
        slot = (int)(c->next_evict++ % EDDYI_PG_STMT_CACHE);
        free(c->cache[slot].sql);
        c->evicted = c->cache[slot].id; /* the caller deallocates it */
    }
    c->cache[slot].key = dynamic ? NULL : sql;
    c->cache[slot].sql = copy;
    c->cache[slot].id = ++c->next_id;
    snprintf(name, 32, "eddy_%u", c->cache[slot].id);
    *fresh = true;
    return EDDY_OK;
}

void eddyi_pg_stmt_forget(eddyi_pg_conn *c, const char *name)
{
    unsigned id = 0;
    if (sscanf(name, "eddy_%u", &id) != 1)
        return;
    for (int i = 0; i < EDDYI_PG_STMT_CACHE; i++) {
        if (c->cache[i].id == id) {
            free(c->cache[i].sql);
            memset(&c->cache[i], 0, sizeof c->cache[i]);
        }
    }
}

int eddyi_pg_error(eddyi_pg *pg, PGconn *c, const PGresult *r,
                   const char *what, eddy_error *err)
{
    char msg[EDDY_ERROR_MESSAGE_MAX];
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *text = r ? PQresultErrorMessage(r) : NULL;
    if (!text || !*text)
        text = c ? PQerrorMessage(c) : "unknown error";
    clean_message(text, msg, sizeof msg);
    int code = EDDY_EIO;
    if (!c || PQstatus(c) == CONNECTION_BAD)
        code = EDDY_ECONNECT;
    else if (state && (!strcmp(state, "55P03") || !strcmp(state, "40P01") ||
                       !strcmp(state, "40001")))
        code = EDDY_EBUSY; /* lock timeout, deadlock, serialization */
    else if (state && (!strncmp(state, "57P", 3) || !strncmp(state, "08", 2)))
        code = EDDY_ECONNECT; /* server shutting down, connection errors */
    else if (state && !strcmp(state, "23505"))
        code = EDDY_EEXIST; /* unique or primary key, as on SQLite */
    else if (state && !strncmp(state, "23", 2))
        code = EDDY_EINVAL; /* not null, check, foreign key */
    if (code == EDDY_EBUSY && !strcmp(state, "55P03"))
        return eddyi_error(err, code,
                           "PostgreSQL %s: %s: waited more than %d ms for a "
                           "lock (busy_timeout_ms): %s",
                           pg->where, what, pg->opts.busy_timeout_ms, msg);
    if (state)
        return eddyi_error(err, code, "PostgreSQL %s: %s: %s (SQLSTATE %s)",
                           pg->where, what, msg, state);
    return eddyi_error(err, code, "PostgreSQL %s: %s: %s", pg->where, what, msg);
}

PGresult *eddyi_pg_exec(eddyi_pg *pg, eddyi_pg_conn *c, const char *sql,
                        bool dynamic, const eddyi_pg_params *p,
                        eddy_error *err)
{
    static const eddyi_pg_params none = {0};
    if (!p)
        p = &none;
    char name[32];
    bool fresh = false;
    if (eddyi_pg_stmt_name(c, sql, dynamic, name, &fresh, err) != EDDY_OK)
        return NULL;
    if (c->evicted) {
        /* An idle connection in autocommit: a failure here (the
         * connection is gone) shows in the statement below. */
        char dealloc[48];
        snprintf(dealloc, sizeof dealloc, "DEALLOCATE eddy_%u", c->evicted);
        c->evicted = 0;
        PQclear(PQexec(c->pg, dealloc));
    }
    if (fresh) {
        PGresult *r = PQprepare(c->pg, name, sql, p->n, p->types);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            eddyi_pg_error(pg, c->pg, r,
                           p->what ? p->what : "preparing a statement", err);
            PQclear(r);
            eddyi_pg_stmt_forget(c, name);
            return NULL;
        }
        PQclear(r);
    }
    PGresult *r = PQexecPrepared(c->pg, name, p->n, p->values, p->lengths,
                                 p->formats, p->text_results ? 0 : 1);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    eddyi_pg_error(pg, c->pg, r, p->what ? p->what : "running a statement",
                   err);
    PQclear(r);
    return NULL;
}

int eddyi_pg_exec_simple(eddyi_pg *pg, eddyi_pg_conn *c, const char *sql,
                         eddy_error *err)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = EDDY_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = eddyi_pg_error(pg, c->pg, r, "running SQL", err);
    PQclear(r);
    return rc;
}
