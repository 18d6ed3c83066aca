/*
 * src/core/lifecycle.c - name claims, owner names and stop-once
 * (lifecycle.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "lifecycle.h"

struct eddyi_claim {
    eddyi_claim *next;
    const void *owner;
    const char *kind;
    char *name;
};

static pthread_mutex_t claims_mu = PTHREAD_MUTEX_INITIALIZER;
static eddyi_claim *claims;

static eddyi_claim *find(const void *owner, const char *kind,
                         const char *name)
{
    for (eddyi_claim *c = claims; c; c = c->next)
        if (c->owner == owner && strcmp(c->kind, kind) == 0 &&
            strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

int eddyi_claim_take(const void *owner, const char *kind, const char *name,
                     eddyi_claim **out, eddy_error *err)
{
    eddyi_claim *c = calloc(1, sizeof *c);
    if (!c || !(c->name = eddyi_strdup(name))) {
        free(c);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    c->owner = owner;
    c->kind = kind;
    pthread_mutex_lock(&claims_mu);
    bool taken = find(owner, kind, name) != NULL;
    if (!taken) {
        c->next = claims;
        claims = c;
    }
    pthread_mutex_unlock(&claims_mu);
    if (taken) {
        free(c->name);
        free(c);
        return eddyi_error(err, EDDY_EEXIST,
                           "%s \"%s\" already runs on this store handle",
                           kind, name);
    }
    *out = c;
    return EDDY_OK;
}

void eddyi_claim_release(eddyi_claim *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&claims_mu);
    for (eddyi_claim **p = &claims; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&claims_mu);
    free(c->name);
    free(c);
}

bool eddyi_claim_held(const void *owner, const char *kind, const char *name)
{
    pthread_mutex_lock(&claims_mu);
    bool held = find(owner, kind, name) != NULL;
    pthread_mutex_unlock(&claims_mu);
    return held;
}

/* ---- owners ----------------------------------------------------------------- */

static void host_name(char *out, size_t size)
{
    if (gethostname(out, size) != 0)
        snprintf(out, size, "unknown");
    out[size - 1] = '\0';
}

void eddyi_owner_self(char *out, size_t size)
{
    char host[256];
    host_name(host, sizeof host);
    snprintf(out, size, "%ld@%s", (long)getpid(), host);
}

bool eddyi_owner_gone(const char *owner)
{
    if (!owner)
        return false;
    char *end = NULL;
    long pid = strtol(owner, &end, 10);
    if (!end || end == owner || *end != '@' || pid <= 0)
        return false;
    char host[256];
    host_name(host, sizeof host);
    if (strcmp(end + 1, host) != 0 || (pid_t)pid == getpid())
        return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

void eddyi_stop_init(eddyi_stop *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
}

void eddyi_stop_destroy(eddyi_stop *s)
{
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
}

bool eddyi_stop_begin(eddyi_stop *s)
{
    pthread_mutex_lock(&s->mu);
    bool mine = s->state == 0;
    if (mine)
        s->state = 1;
    pthread_mutex_unlock(&s->mu);
    return mine;
}

void eddyi_stop_end(eddyi_stop *s, int status, const eddy_error *err)
{
    pthread_mutex_lock(&s->mu);
    s->state = 2;
    s->status = status;
    if (err)
        s->err = *err;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

int eddyi_stop_wait(eddyi_stop *s, eddy_error *err)
{
    pthread_mutex_lock(&s->mu);
    while (s->state != 2)
        pthread_cond_wait(&s->cond, &s->mu);
    int status = s->status;
    if (err && status != EDDY_OK)
        *err = s->err;
    pthread_mutex_unlock(&s->mu);
    return status;
}

bool eddyi_stop_requested(eddyi_stop *s)
{
    pthread_mutex_lock(&s->mu);
    bool r = s->state != 0;
    pthread_mutex_unlock(&s->mu);
    return r;
}

void eddyi_thread_name(const char *fmt, ...)
{
    char name[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    pthread_setname_np(pthread_self(), name);
}
