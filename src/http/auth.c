/*
 * src/http/auth.c - bearer tokens: the tokens file and the constant-time
 * lookup.
 *
 * A token is secret: it never appears in a message, a log line or a
 * reply. Errors about the file name the file and the line only.
 *
 * The lookup compares the presented token with EVERY token held, each over
 * the full length of the token held (past the end of the presented bytes
 * it compares with 0), folding every difference into an accumulator without
 * a data-dependent branch. Its running time therefore depends on the number
 * and lengths of the tokens held, which an attacker already bounds, and not
 * on which token matched, how many leading bytes were right, or the length
 * of the guess.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/internal.h"
#include "http/http_internal.h"

#define MIN_TOKEN_LEN 16
#define MAX_TOKEN_LEN 4096
#define MAX_TOKENS 1024

const char *eddyi_role_name(eddyi_role role)
{
    switch (role) {
    case EDDYI_ROLE_READ: return "read";
    case EDDYI_ROLE_WRITE: return "write";
    case EDDYI_ROLE_ADMIN: return "admin";
    default: return "none";
    }
}

void eddyi_tokens_free(eddyi_token *tokens, size_t count)
{
    if (!tokens)
        return;
    for (size_t i = 0; i < count; i++) {
        if (tokens[i].token) {
            /* volatile: the wipe is not optimised away before free */
            volatile unsigned char *p = tokens[i].token;
            for (size_t k = 0; k < tokens[i].len; k++)
                p[k] = 0;
        }
        free(tokens[i].token);
    }
    free(tokens);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Token characters: printable ASCII without spaces (RFC 6750's b64token
 * is narrower; any visible character is accepted). */
static bool token_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static eddyi_role role_of(const char *s, size_t len)
{
    if (len == 4 && memcmp(s, "read", 4) == 0)
        return EDDYI_ROLE_READ;
    if (len == 5 && memcmp(s, "write", 5) == 0)
        return EDDYI_ROLE_WRITE;
    if (len == 5 && memcmp(s, "admin", 5) == 0)
        return EDDYI_ROLE_ADMIN;
    return EDDYI_ROLE_NONE;
}

/* Parses one line into `t` (token copied). EDDY_OK with t->token NULL for a
 * blank or comment line. */
static int parse_line(const char *path, size_t lineno, const char *line,
                      size_t len, eddyi_token *t, eddy_error *err)
{
    size_t i = 0;
    while (i < len && is_space(line[i]))
        i++;
    if (i == len || line[i] == '#')
        return EDDY_OK;
    size_t rs = i;
    while (i < len && !is_space(line[i]))
        i++;
    size_t rlen = i - rs;
    eddyi_role role = role_of(line + rs, rlen);
    if (role == EDDYI_ROLE_NONE)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s line %zu: unknown role \"%.*s\" (read, write "
                           "or admin)",
                           path, lineno, (int)(rlen > 32 ? 32 : rlen),
                           line + rs);
    while (i < len && is_space(line[i]))
        i++;
    size_t ts = i;
    while (i < len && !is_space(line[i]))
        i++;
    size_t tlen = i - ts;
    while (i < len && is_space(line[i]))
        i++;
    if (tlen == 0)
        return eddyi_error(err, EDDY_EINVAL, "%s line %zu: role %s without a "
                           "token (one \"ROLE TOKEN\" per line)",
                           path, lineno, eddyi_role_name(role));
    if (i != len)
        return eddyi_error(err, EDDY_EINVAL, "%s line %zu: more than \"ROLE "
                           "TOKEN\" on the line", path, lineno);
    if (tlen < MIN_TOKEN_LEN || tlen > MAX_TOKEN_LEN)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s line %zu: the token has %zu characters; tokens "
                           "must have %d to %d",
                           path, lineno, tlen, MIN_TOKEN_LEN, MAX_TOKEN_LEN);
    for (size_t k = 0; k < tlen; k++)
        if (!token_char_ok((unsigned char)line[ts + k]))
            return eddyi_error(err, EDDY_EINVAL,
                               "%s line %zu: the token holds a character that "
                               "is not printable ASCII",
                               path, lineno);
    t->token = malloc(tlen);
    if (!t->token)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    memcpy(t->token, line + ts, tlen);
    t->len = tlen;
    t->role = role;
    return EDDY_OK;
}

int eddyi_tokens_load(const char *path, eddyi_token **out, size_t *count,
                      eddy_error *err)
{
    *out = NULL;
    *count = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return eddyi_error(err, EDDY_EIO, "tokens file %s: %s", path,
                           strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        EDDYI_LOG(EDDY_LOG_WARN, "http",
                  "tokens file %s can be read by other users (mode %03o): "
                  "chmod 600 it",
                  path, (unsigned)(st.st_mode & 0777));
    eddyi_token *tokens = NULL;
    size_t n = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t got;
    int rc = EDDY_OK;
    while ((got = getline(&line, &linecap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (memchr(line, '\0', len)) {
            rc = eddyi_error(err, EDDY_EINVAL, "%s line %zu: NUL byte", path,
                             lineno);
            goto fail;
        }
        eddyi_token t = {0};
        if ((rc = parse_line(path, lineno, line, len, &t, err)) != EDDY_OK)
            goto fail;
        if (!t.token)
            continue;
        for (size_t k = 0; k < n; k++)
            if (tokens[k].len == t.len &&
                memcmp(tokens[k].token, t.token, t.len) == 0) {
                free(t.token);
                rc = eddyi_error(err, EDDY_EINVAL,
                                 "%s line %zu: this token is already listed "
                                 "(each token has one role)",
                                 path, lineno);
                goto fail;
            }
        if (n == MAX_TOKENS) {
            free(t.token);
            rc = eddyi_error(err, EDDY_EINVAL, "%s: more than %d tokens", path,
                             MAX_TOKENS);
            goto fail;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            eddyi_token *bigger = realloc(tokens, ncap * sizeof *bigger);
            if (!bigger) {
                free(t.token);
                rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
                goto fail;
            }
            tokens = bigger;
            cap = ncap;
        }
        tokens[n++] = t;
    }
    if (ferror(f)) {
        rc = eddyi_error(err, EDDY_EIO, "tokens file %s: read error", path);
        goto fail;
    }
    if (n == 0) {
        rc = eddyi_error(err, EDDY_EINVAL, "tokens file %s holds no token "
                         "(one \"ROLE TOKEN\" per line)", path);
        goto fail;
    }
    if (line) {
        memset(line, 0, linecap);
        free(line);
    }
    fclose(f);
    *out = tokens;
    *count = n;
    return EDDY_OK;
fail:
    if (line) {
        memset(line, 0, linecap);
        free(line);
    }
    fclose(f);
    eddyi_tokens_free(tokens, n);
    return rc;
}

eddyi_role eddyi_tokens_role(const eddyi_token *tokens, size_t count,
                             const char *presented, size_t len)
{
    const unsigned char *p = (const unsigned char *)presented;
    unsigned found = 0; /* the matching role, or 0 */
    for (size_t i = 0; i < count; i++) {
        const eddyi_token *t = &tokens[i];
        /* differences: the lengths, then every byte of the token held
         * against the presented byte at the same index (0 past its end:
         * the loop runs over the token held, so a short guess costs as
         * much as a long one; k < len depends on public lengths only) */
        size_t diff = t->len ^ len;
        for (size_t k = 0; k < t->len; k++) {
            unsigned char c = k < len ? p[k] : 0;
            diff |= (size_t)(t->token[k] ^ c);
        }
        /* mask = all ones when diff == 0, else 0, without a branch */
        size_t nz = (diff | (0 - diff)) >> (sizeof diff * 8 - 1);
        unsigned mask = (unsigned)(nz - 1);
        found |= mask & (unsigned)t->role;
    }
    return (eddyi_role)found;
}
