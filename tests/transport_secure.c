/* tests/transport_secure.c - see transport_secure.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <pthread.h>

#include "transport_secure.h"

int secure_servers(const char *action, const char *engine, const char *dir,
                   int port)
{
    char cmd[1024];
    if (port > 0)
        snprintf(cmd, sizeof cmd, "bash '%s' %s %s '%s' %d", EDDY_TEST_SERVERS,
                 action, engine, dir, port);
    else
        snprintf(cmd, sizeof cmd, "bash '%s' %s %s '%s'", EDDY_TEST_SERVERS,
                 action, engine, dir);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    int p = 0;
    if (fscanf(f, "%d", &p) != 1)
        p = 0;
    int st = pclose(f);
    return st == 0 ? p : -1;
}

char *secure_read(const char *dir, const char *name)
{
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) {
        fprintf(stderr, "cannot read %s\n", path);
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return strdup(line);
}

char *secure_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
    return strdup(path);
}

/* ---- log capture -------------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *log_buf;
static size_t log_len, log_cap;

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 2 > *cap) {
        size_t c = (*cap ? *cap * 2 : 4096) + n;
        char *b = realloc(*buf, c);
        if (!b)
            return;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[(*len)++] = '\n';
    (*buf)[*len] = '\0';
}

static void log_capture(eddy_log_level level, const char *component,
                        const char *message, void *user)
{
    char line[2048];
    snprintf(line, sizeof line, "%s %s: %s", eddy_log_level_name(level),
             component, message);
    pthread_mutex_lock(&log_mu);
    append(&log_buf, &log_len, &log_cap, line);
    pthread_mutex_unlock(&log_mu);
}

void secure_log_start(void)
{
    eddy_log_set(log_capture, EDDY_LOG_DEBUG, NULL);
}

char *secure_log_stop(void)
{
    eddy_log_set(NULL, EDDY_LOG_DEBUG, NULL);
    pthread_mutex_lock(&log_mu);
    char *out = log_buf ? log_buf : strdup("");
    log_buf = NULL;
    log_len = log_cap = 0;
    pthread_mutex_unlock(&log_mu);
    return out;
}

/* ---- what was printed ----------------------------------------------------- */

static char *rec_buf;
static size_t rec_len, rec_cap;

void secure_record(const char *text)
{
    append(&rec_buf, &rec_len, &rec_cap, text);
}

const char *secure_recorded(void)
{
    return rec_buf ? rec_buf : "";
}

void secure_record_free(void)
{
    free(rec_buf);
    rec_buf = NULL;
    rec_len = rec_cap = 0;
}

/* ---- timing ---------------------------------------------------------------- */

int64_t secure_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t secure_open_refused(const char *url, const eddy_transport_options *o,
                            eddy_error *err)
{
    memset(err, 0, sizeof *err);
    int64_t t0 = secure_now_ms();
    eddy_transport *t = eddy_transport_open(url, o, err);
    int64_t ms = secure_now_ms() - t0;
    if (t) {
        eddy_transport_close(t);
        char shown[1024];
        fail_msg("open %s succeeded; it should have been refused",
                 eddy_url_redact(url, shown, sizeof shown));
    }
    secure_record(err->message);
    return ms;
}

void secure_assert_no_secret(const char *text, const char *const *secrets,
                             const char *where)
{
    for (size_t i = 0; secrets[i]; i++)
        if (*secrets[i] && strstr(text, secrets[i]))
            fail_msg("secret %zu found in %s", i, where);
}
