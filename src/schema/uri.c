/*
 * src/schema/uri.c - RFC 3986 reference resolution, for $id base URIs and
 * $ref. Only what JSON Schema needs: split into components, resolve a
 * reference against a base (section 5.2), recompose. No normalisation beyond
 * removing dot segments; no percent-decoding.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "schema_internal.h"

/* The components of a URI reference, pointing into the parsed text. */
typedef struct uri_parts {
    const char *scheme, *authority, *path, *query, *fragment;
    size_t scheme_len, authority_len, path_len, query_len, fragment_len;
    bool has_scheme, has_authority, has_query, has_fragment;
} uri_parts;

static bool scheme_char(char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

/* RFC 3986 appendix B, by hand. */
static void parse(const char *s, uri_parts *u)
{
    memset(u, 0, sizeof *u);
    const char *p = s;
    if (scheme_char(*p, true)) {
        const char *q = p + 1;
        while (scheme_char(*q, false))
            q++;
        if (*q == ':') {
            u->has_scheme = true;
            u->scheme = p;
            u->scheme_len = (size_t)(q - p);
            p = q + 1;
        }
    }
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        u->has_authority = true;
        u->authority = p;
        while (*p && *p != '/' && *p != '?' && *p != '#')
            p++;
        u->authority_len = (size_t)(p - u->authority);
    }
    u->path = p;
    while (*p && *p != '?' && *p != '#')
        p++;
    u->path_len = (size_t)(p - u->path);
    if (*p == '?') {
        u->has_query = true;
        u->query = ++p;
        while (*p && *p != '#')
            p++;
        u->query_len = (size_t)(p - u->query);
    }
    if (*p == '#') {
        u->has_fragment = true;
        u->fragment = p + 1;
        u->fragment_len = strlen(p + 1);
    }
}

/* A growable output string. */
typedef struct buf {
    char *s;
    size_t len, cap;
    bool oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* RFC 3986 5.2.4: removes "." and ".." segments from `in` into `out`. */
static void remove_dots(buf *out, const char *in, size_t n)
{
    /* Work on a copy, consuming it from the front. */
    char *s = malloc(n + 1);
    if (!s) {
        out->oom = true;
        return;
    }
    memcpy(s, in, n);
    s[n] = '\0';
    const char *p = s;
    size_t start = out->len; /* "..": truncate back to the previous "/" */
    while (*p) {
        if (strncmp(p, "../", 3) == 0) {
            p += 3;
        } else if (strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if (strncmp(p, "/./", 3) == 0) {
            p += 2;
        } else if (strcmp(p, "/.") == 0) {
            p = "/";
        } else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0) {
            p = p[3] ? p + 3 : "/";
            while (out->len > start && out->s[out->len - 1] != '/')
                out->len--;
            if (out->len > start)
                out->len--; /* the "/" before the removed segment */
            if (out->s)
                out->s[out->len] = '\0';
        } else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
            break;
        } else {
            const char *q = p + (*p == '/');
            while (*q && *q != '/')
                q++;
            put(out, p, (size_t)(q - p));
            p = q;
        }
    }
    free(s);
}

char *eddyi_uri_resolve(const char *base, const char *ref)
{
    uri_parts b, r;
    parse(base ? base : "", &b);
    parse(ref, &r);
    buf out = {0};
    put(&out, "", 0);
    /* 5.2.2, with the reference's scheme, authority, path, query in turn */
    const uri_parts *auth_from;
    if (r.has_scheme) {
        put(&out, r.scheme, r.scheme_len);
        put(&out, ":", 1);
        auth_from = &r;
    } else {
        if (b.has_scheme) {
            put(&out, b.scheme, b.scheme_len);
            put(&out, ":", 1);
        }
        auth_from = r.has_authority ? &r : &b;
    }
    if (auth_from->has_authority) {
        put(&out, "//", 2);
        put(&out, auth_from->authority, auth_from->authority_len);
    }
    const uri_parts *query_from = &r;
    if (r.has_scheme || r.has_authority) {
        remove_dots(&out, r.path, r.path_len);
    } else if (r.path_len == 0) {
        put(&out, b.path, b.path_len);
        if (!r.has_query)
            query_from = &b;
    } else if (r.path[0] == '/') {
        remove_dots(&out, r.path, r.path_len);
    } else {
        /* 5.2.3 merge: the base path up to its last "/", then the reference */
        buf merged = {0};
        put(&merged, "", 0);
        if (b.has_authority && b.path_len == 0) {
            put(&merged, "/", 1);
        } else {
            size_t keep = b.path_len;
            while (keep > 0 && b.path[keep - 1] != '/')
                keep--;
            put(&merged, b.path, keep);
        }
        put(&merged, r.path, r.path_len);
        if (merged.oom)
            out.oom = true;
        else
            remove_dots(&out, merged.s, merged.len);
        free(merged.s);
    }
    if (query_from->has_query) {
        put(&out, "?", 1);
        put(&out, query_from->query, query_from->query_len);
    }
    if (r.has_fragment) {
        put(&out, "#", 1);
        put(&out, r.fragment, r.fragment_len);
    }
    if (out.oom) {
        free(out.s);
        return NULL;
    }
    return out.s;
}
