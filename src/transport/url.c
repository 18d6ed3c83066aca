/*
 * src/transport/url.c - the transport URL: parsing, the configuration file
 * merged into its query, credentials from the URL, a file or the
 * environment, and the redacted form that is the only one ever printed.
 *
 * Secrets: the password of the URL's user information, and the value of
 * every query or file key that names a secret (eddyi_url_key_secret), are
 * never copied into an error message or a log line. Errors about them name
 * the key, the file and the line, never the value; the URL in a message is
 * always eddy_url_redact's.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "transport/transport_impl.h"

/* The largest configuration or secret file read (a librdkafka properties
 * file is a few kilobytes; a certificate chain is not read here). */
#define URL_FILE_MAX (256 * 1024)

/* ---- redaction ------------------------------------------------------------ */

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

static bool contains(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, word, n) == 0)
            return true;
    return false;
}

/* A key whose value is a secret: password, token, secret, inline private
 * key (librdkafka's ssl.key.pem), OAUTHBEARER config. Keys naming where a
 * secret is (a *_file path, a *_env variable name, a *.location path) are
 * not secrets themselves: showing them helps find a wrong path. */
static bool key_secret(const char *key, size_t len)
{
    if (ends_with(key, len, "_file") || ends_with(key, len, "_env") ||
        ends_with(key, len, ".location"))
        return false;
    return contains(key, len, "pass") || contains(key, len, "secret") ||
           contains(key, len, "token") || contains(key, len, "pwd") ||
           contains(key, len, "credential") ||
           ends_with(key, len, ".pem") ||
           contains(key, len, "oauthbearer.config");
}

bool eddyi_url_key_secret(const char *key)
{
    return key && key_secret(key, strlen(key));
}

/* Appends `len` bytes of `s` to buf[*o], keeping room for the NUL. */
static void put(char *buf, size_t size, size_t *o, const char *s, size_t len)
{
    while (len-- && *o + 1 < size)
        buf[(*o)++] = *s++;
}

#define REDACTED "***"

const char *eddy_url_redact(const char *url, char *buf, size_t size)
{
    if (!buf || size == 0)
        return "";
    if (!url) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    size_t o = 0;
    const char *p = url;
    const char *q = strchr(url, '?');
    const char *end = q ? q : url + strlen(url);
    const char *sep = strstr(url, "://");
    if (sep && sep < end) {
        const char *auth = sep + 3;
        const char *aend = auth;
        while (aend < end && *aend != '/' && *aend != '#')
            aend++;
        /* The last '@' of the authority ends the user information (a
         * password may itself hold an unescaped '@'). */
        const char *at = NULL;
        for (const char *c = auth; c < aend; c++)
            if (*c == '@')
                at = c;
        put(buf, size, &o, url, (size_t)(auth - url));
        if (at) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            if (colon) {
                /* user:password -> user:*** */
                put(buf, size, &o, auth, (size_t)(colon + 1 - auth));
                put(buf, size, &o, REDACTED, strlen(REDACTED));
            } else {
                /* A lone user information may be a token
                 * (nats://TOKEN@host): hidden whole. */
                put(buf, size, &o, REDACTED, strlen(REDACTED));
            }
            p = at;
        } else {
            p = auth;
        }
    }
    put(buf, size, &o, p, (size_t)(end - p));
    if (q) {
        put(buf, size, &o, "?", 1);
        const char *k = q + 1;
        while (*k) {
            const char *amp = strchr(k, '&');
            const char *pend = amp ? amp : k + strlen(k);
            const char *eq = memchr(k, '=', (size_t)(pend - k));
            if (eq && key_secret(k, (size_t)(eq - k))) {
                put(buf, size, &o, k, (size_t)(eq + 1 - k));
                put(buf, size, &o, REDACTED, strlen(REDACTED));
            } else {
                put(buf, size, &o, k, (size_t)(pend - k));
            }
            if (!amp)
                break;
            put(buf, size, &o, "&", 1);
            k = amp + 1;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ---- parsing --------------------------------------------------------------- */

static void wipe_free(char *s)
{
    if (s) {
        volatile char *v = s;
        while (*v)
            *v++ = '\0';
        free(s);
    }
}

void eddyi_url_free(eddyi_url *u)
{
    free(u->scheme);
    free(u->authority);
    free(u->path);
    free(u->user);
    wipe_free(u->password);
    for (size_t i = 0; i < u->nparams; i++) {
        free(u->keys[i]);
        wipe_free(u->values[i]);
    }
    free(u->keys);
    free(u->values);
    memset(u, 0, sizeof *u);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes `len` bytes of `s` into a new string; NULL if malformed
 * (EINVAL) or out of memory (ENOMEM), told apart by `*code`. `plus`: '+'
 * means a space (query strings only). */
static char *pct_decode(const char *s, size_t len, bool plus, int *code)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out) {
        *code = EDDY_ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                *code = EDDY_EINVAL;
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static char *strndup_checked(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Adds key=value (both copied) to the query parameters. */
static int param_add(eddyi_url *u, const char *key, size_t klen,
                     const char *value, size_t vlen, bool decode, int *code)
{
    char **keys = realloc(u->keys, (u->nparams + 1) * sizeof *keys);
    if (keys)
        u->keys = keys;
    char **values = realloc(u->values, (u->nparams + 1) * sizeof *values);
    if (values)
        u->values = values;
    if (!keys || !values) {
        *code = EDDY_ENOMEM;
        return -1;
    }
    char *k = decode ? pct_decode(key, klen, true, code)
                     : strndup_checked(key, klen);
    char *v = !k ? NULL
                 : decode ? pct_decode(value, vlen, true, code)
                          : strndup_checked(value, vlen);
    if (!k || !v) {
        if (!decode)
            *code = EDDY_ENOMEM;
        free(k);
        return -1;
    }
    u->keys[u->nparams] = k;
    u->values[u->nparams] = v;
    u->nparams++;
    return 0;
}

int eddyi_url_parse(const char *text, eddyi_url *u, eddy_error *err)
{
    char shown[1024];
    memset(u, 0, sizeof *u);
    const char *colon = strchr(text, ':');
    if (!colon || colon == text)
        return eddyi_error(err, EDDY_EINVAL,
                           "transport URL \"%s\": no scheme (expected "
                           "mem:, redis://, kafka:// or nats://)",
                           eddy_url_redact(text, shown, sizeof shown));
    for (const char *p = text; p < colon; p++)
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return eddyi_error(err, EDDY_EINVAL,
                               "transport URL \"%s\": invalid scheme",
                               eddy_url_redact(text, shown, sizeof shown));
    int code = EDDY_ENOMEM;
    const char *what = "";
    u->scheme = strndup_checked(text, (size_t)(colon - text));
    if (!u->scheme)
        goto fail;
    for (char *p = u->scheme; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *rest = colon + 1;
    const char *q = strchr(rest, '?');
    const char *end = q ? q : rest + strlen(rest);
    if (rest[0] == '/' && rest[1] == '/') {
        rest += 2;
        const char *slash = memchr(rest, '/', (size_t)(end - rest));
        const char *aend = slash ? slash : end;
        const char *at = NULL;
        for (const char *c = rest; c < aend; c++)
            if (*c == '@')
                at = c;
        if (at) {
            /* user[:password]@: percent-decoded (a password with '@', ':'
             * or '/' must be escaped: %40, %3A, %2F). */
            const char *pc = memchr(rest, ':', (size_t)(at - rest));
            const char *uend = pc ? pc : at;
            what = "user name";
            if (uend > rest &&
                !(u->user = pct_decode(rest, (size_t)(uend - rest), false,
                                       &code)))
                goto fail;
            what = "password";
            if (pc && !(u->password = pct_decode(pc + 1,
                                                 (size_t)(at - pc - 1), false,
                                                 &code)))
                goto fail;
            rest = at + 1;
        }
        u->authority = strndup_checked(rest, (size_t)(aend - rest));
        u->path = strndup_checked(aend, (size_t)(end - aend));
    } else {
        u->authority = strndup_checked("", 0);
        u->path = strndup_checked(rest, (size_t)(end - rest));
    }
    if (!u->authority || !u->path)
        goto fail;
    what = "query";
    if (q && q[1]) {
        const char *p = q + 1;
        while (*p) {
            const char *amp = strchr(p, '&');
            const char *pend = amp ? amp : p + strlen(p);
            if (pend > p) {
                const char *eq = memchr(p, '=', (size_t)(pend - p));
                if (!eq || eq == p) {
                    /* Only the key is shown: a lone value may be a
                     * secret pasted in the wrong place. */
                    const char *kend = eq ? eq : pend;
                    code = eddyi_error(err, EDDY_EINVAL,
                                       "transport URL \"%s\": query parameter "
                                       "%zu (\"%.*s\") is not key=value",
                                       eddy_url_redact(text, shown,
                                                       sizeof shown),
                                       u->nparams + 1,
                                       key_secret(p, (size_t)(kend - p))
                                           ? 3
                                           : (int)(kend - p),
                                       key_secret(p, (size_t)(kend - p))
                                           ? REDACTED
                                           : p);
                    goto fail_set;
                }
                if (param_add(u, p, (size_t)(eq - p), eq + 1,
                              (size_t)(pend - eq - 1), true, &code) != 0)
                    goto fail;
            }
            p = amp ? amp + 1 : pend;
        }
    }
    return EDDY_OK;
fail:
    if (code == EDDY_EINVAL)
        eddyi_error(err, code, "transport URL \"%s\": bad percent-escape in "
                    "the %s", eddy_url_redact(text, shown, sizeof shown),
                    what);
    else
        eddyi_error(err, code, "out of memory parsing transport URL");
fail_set:
    eddyi_url_free(u);
    return code;
}

const char *eddyi_url_param(const eddy_transport *t, const char *key)
{
    for (size_t i = 0; i < t->url.nparams; i++)
        if (strcmp(t->url.keys[i], key) == 0)
            return t->url.values[i];
    return NULL;
}

/* Removes parameter i (freeing it). */
static void param_remove(eddyi_url *u, size_t i)
{
    free(u->keys[i]);
    wipe_free(u->values[i]);
    memmove(&u->keys[i], &u->keys[i + 1], (u->nparams - i - 1) * sizeof *u->keys);
    memmove(&u->values[i], &u->values[i + 1],
            (u->nparams - i - 1) * sizeof *u->values);
    u->nparams--;
}

static ssize_t param_index(const eddyi_url *u, const char *key)
{
    for (size_t i = 0; i < u->nparams; i++)
        if (strcmp(u->keys[i], key) == 0)
            return (ssize_t)i;
    return -1;
}

/* ---- files ------------------------------------------------------------------ */

/* Reads a whole small file. NULL with `err` naming the file on failure. */
static char *read_small_file(const char *path, const char *what, size_t *len,
                             eddy_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        char why[128];
        int e = errno;
        strerror_r(e, why, sizeof why);
        eddyi_error(err, e == ENOMEM ? EDDY_ENOMEM : EDDY_EINVAL,
                    "%s %s: cannot open: %s", what, path, why);
        return NULL;
    }
    char *buf = malloc(URL_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        eddyi_error(err, EDDY_ENOMEM, "out of memory reading %s %s", what,
                    path);
        return NULL;
    }
    size_t n = fread(buf, 1, URL_FILE_MAX + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad || n > URL_FILE_MAX) {
        free(buf);
        eddyi_error(err, bad ? EDDY_EIO : EDDY_ETOOBIG, "%s %s: %s", what, path,
                    bad ? "read error" : "larger than 256 KiB");
        return NULL;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        free(buf);
        eddyi_error(err, EDDY_EINVAL, "%s %s: binary content (a NUL byte)",
                    what, path);
        return NULL;
    }
    *len = n;
    return buf;
}

int eddyi_url_merge_file(eddyi_url *u, const char *path, eddy_error *err)
{
    size_t len = 0;
    char *text = read_small_file(path, "transport configuration file", &len,
                                 err);
    if (!text)
        return err ? err->code : EDDY_EINVAL;
    /* The file's settings go first; a key the URL's query also has is
     * dropped from the file (the URL wins, as kcat's -X wins over -F). */
    eddyi_url file = {0};
    int rc = EDDY_OK, code = EDDY_ENOMEM;
    size_t lineno = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
            s[--n] = '\0';
        if (*s && *s != '#') {
            char *eq = strchr(s, '=');
            size_t klen = eq ? (size_t)(eq - s) : 0;
            while (klen && isspace((unsigned char)s[klen - 1]))
                klen--;
            if (!eq || klen == 0) {
                /* The line is not shown: it may hold a secret. */
                rc = eddyi_error(err, EDDY_EINVAL,
                                 "transport configuration file %s, line %zu: "
                                 "expected key=value", path, lineno);
                goto out;
            }
            char *v = eq + 1;
            while (isspace((unsigned char)*v))
                v++;
            if (param_add(&file, s, klen, v, strlen(v), false, &code) != 0) {
                rc = eddyi_error(err, EDDY_ENOMEM, "out of memory reading %s",
                                 path);
                goto out;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    for (size_t i = 0; i < file.nparams;) {
        /* overridden by the URL, or given again later in the file (the
         * last one counts) */
        bool drop = param_index(u, file.keys[i]) >= 0;
        for (size_t k = i + 1; !drop && k < file.nparams; k++)
            drop = strcmp(file.keys[k], file.keys[i]) == 0;
        if (drop)
            param_remove(&file, i);
        else
            i++;
    }
    /* file parameters, then the URL's */
    for (size_t i = 0; i < u->nparams; i++) {
        if (param_add(&file, u->keys[i], strlen(u->keys[i]), u->values[i],
                      strlen(u->values[i]), false, &code) != 0) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory reading %s",
                             path);
            goto out;
        }
    }
    for (size_t i = 0; i < u->nparams; i++) {
        free(u->keys[i]);
        wipe_free(u->values[i]);
    }
    free(u->keys);
    free(u->values);
    u->keys = file.keys;
    u->values = file.values;
    u->nparams = file.nparams;
    memset(&file, 0, sizeof file);
out:
    eddyi_url_free(&file);
    memset(text, 0, len);
    free(text);
    return rc;
}

/* ---- secrets ------------------------------------------------------------------ */

/* Takes parameter `key` out of the URL into `*out` (NULL if absent). */
static int take_param(eddyi_url *u, const char *key, char **out)
{
    *out = NULL;
    ssize_t i = param_index(u, key);
    if (i < 0)
        return EDDY_OK;
    *out = u->values[i];
    u->values[i] = NULL;
    free(u->keys[i]);
    memmove(&u->keys[i], &u->keys[i + 1],
            (u->nparams - (size_t)i - 1) * sizeof *u->keys);
    memmove(&u->values[i], &u->values[i + 1],
            (u->nparams - (size_t)i - 1) * sizeof *u->values);
    u->nparams--;
    return EDDY_OK;
}

int eddyi_url_take_secret(eddyi_url *u, const char *name, bool in_userinfo,
                          char **out, eddy_error *err)
{
    char key_file[64], key_env[64];
    snprintf(key_file, sizeof key_file, "%s_file", name);
    snprintf(key_env, sizeof key_env, "%s_env", name);
    char *direct = NULL, *file = NULL, *env = NULL;
    take_param(u, name, &direct);
    take_param(u, key_file, &file);
    take_param(u, key_env, &env);
    char *from_url = in_userinfo ? u->password : NULL;
    int given = !!direct + !!file + !!env + !!from_url;
    int rc = EDDY_OK;
    *out = NULL;
    if (given > 1) {
        char where[256];
        snprintf(where, sizeof where, "%s%s%s%s%s%s%s",
                 from_url ? " user:password@" : "", direct ? " " : "",
                 direct ? name : "", file ? " " : "", file ? key_file : "",
                 env ? " " : "", env ? key_env : "");
        rc = eddyi_error(err, EDDY_EINVAL, "transport URL: the %s is given "
                         "%d times (%s); give one of them", name, given,
                         where + 1);
        goto out;
    }
    if (from_url) {
        *out = from_url;
        u->password = NULL;
    } else if (direct) {
        *out = direct;
        direct = NULL;
    } else if (env) {
        const char *v = getenv(env);
        if (!v || !*v) {
            rc = eddyi_error(err, EDDY_EINVAL, "%s=%s: the environment variable "
                             "%s is %s", key_env, env, env, v ? "empty" : "not set");
            goto out;
        }
        if (!(*out = eddyi_strdup(v)))
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
    } else if (file) {
        size_t len = 0;
        char what[96];
        snprintf(what, sizeof what, "%s (%s)", key_file, name);
        char *text = read_small_file(file, what, &len, err);
        if (!text) {
            rc = err ? err->code : EDDY_EINVAL;
            goto out;
        }
        /* One line: the trailing newline (and spaces) are not part of
         * it. */
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
                       text[len - 1] == ' ' || text[len - 1] == '\t'))
            text[--len] = '\0';
        if (len == 0 || memchr(text, '\n', len)) {
            memset(text, 0, len);
            free(text);
            rc = eddyi_error(err, EDDY_EINVAL, "%s %s: expected the %s alone "
                             "on one line, found %s", key_file, file, name,
                             len ? "several lines" : "an empty file");
            goto out;
        }
        *out = text;
    }
out:
    wipe_free(direct);
    free(file);
    free(env);
    return rc;
}

void eddyi_secret_free(char *secret)
{
    wipe_free(secret);
}
