/*
 * src/core/jsontext.c - the strict JSON decoder that every path reading
 * events shares (eddy_json_decode and, through it, the CloudEvents decoder),
 * and the bounded line reader of JSON-lines input.
 *
 * The limits are checked on the text before jansson sees it: the size
 * first, then one linear scan for NUL bytes and for the nesting depth, so a
 * document that is too big or too deep costs one pass over its bytes and no
 * allocation. jansson then parses with JSON_REJECT_DUPLICATES, and its
 * messages are reworded where they would name jansson's own flags.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eddy/event.h"
#include "event_internal.h"
#include "internal.h"

/* ---- the decoder ------------------------------------------------------------ */

/*
 * Checks the text-level limits of `len` bytes: no NUL byte, nesting at most
 * `max_depth`, and, when `max_element` is not 0, no element of a top-level
 * array longer than that (its bytes, without the white space around it). `what` names the input in messages ("event",
 * "batch"). One linear pass; stops at the first problem.
 */
static int scan_text(const char *text, size_t len, size_t max_depth, size_t max_element,
                     const char *what, eddy_error *err)
{
    const char *nul = memchr(text, '\0', len);
    if (nul)
        return eddyi_error(err, EDDY_EPARSE,
                           "%s: NUL byte at offset %zu (JSON text cannot hold one)", what,
                           (size_t)(nul - text));
    size_t depth = 0, elem_start = 0, elem_index = 0;
    bool in_string = false, in_array = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped character cannot end the string */
            else if (c == '"')
                in_string = false;
            continue;
        }
        bool element_ends = false;
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return eddyi_error(err, EDDY_ETOOBIG,
                                   "%s: nested deeper than %zu levels (EDDY_EVENT_MAX_DEPTH)",
                                   what, max_depth - (max_element != 0));
            if (depth == 1 && c == '[' && max_element) {
                in_array = true;
                elem_start = i + 1;
            }
        } else if (c == '}' || c == ']') {
            element_ends = in_array && depth == 1 && c == ']';
            if (depth > 0)
                depth--; /* unbalanced brackets are jansson's to report */
        } else if (c == ',' && in_array && depth == 1) {
            element_ends = true;
        }
        if (element_ends) {
            size_t elem_end = i;
            while (elem_start < elem_end && strchr(" \t\r\n", text[elem_start]))
                elem_start++;
            while (elem_end > elem_start && strchr(" \t\r\n", text[elem_end - 1]))
                elem_end--;
            if (elem_end - elem_start > max_element)
                return eddyi_error(err, EDDY_ETOOBIG,
                                   "%s: [%zu] %zu bytes, larger than the %zu-byte limit "
                                   "(EDDY_EVENT_MAX_BYTES)",
                                   what, elem_index, elem_end - elem_start, max_element);
            elem_index++;
            elem_start = i + 1;
            if (c == ']')
                in_array = false;
        }
    }
    return EDDY_OK;
}

json_t *eddyi_json_decode(const char *text, size_t len, size_t max_bytes, const char *what,
                          eddy_error *err)
{
    if (!text) {
        eddyi_error(err, EDDY_EINVAL, "%s: no JSON text given", what);
        return NULL;
    }
    if (len > max_bytes) {
        eddyi_error(err, EDDY_ETOOBIG, "%s: %zu bytes, larger than the %zu-byte limit (%s)",
                    what, len, max_bytes,
                    max_bytes == EDDY_BATCH_MAX_BYTES ? "EDDY_BATCH_MAX_BYTES"
                                                      : "EDDY_EVENT_MAX_BYTES");
        return NULL;
    }
    /* A batch is one level deeper than the events in it, and each of them
     * is held to the limit of one event. */
    bool batch = max_bytes == EDDY_BATCH_MAX_BYTES;
    if (scan_text(text, len, EDDY_EVENT_MAX_DEPTH + batch, batch ? EDDY_EVENT_MAX_BYTES : 0,
                  what, err) != EDDY_OK)
        return NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (root)
        return root;
    switch (json_error_code(&jerr)) {
    case json_error_null_character:
        eddyi_error(err, EDDY_EPARSE,
                    "JSON parse error at line %d, column %d: a string holds \\u0000 (NUL), "
                    "which eddy does not accept",
                    jerr.line, jerr.column);
        break;
    case json_error_out_of_memory:
        eddyi_error(err, EDDY_ENOMEM, "%s: out of memory parsing JSON", what);
        break;
    default:
        eddyi_error(err, EDDY_EPARSE, "JSON parse error at line %d, column %d: %s", jerr.line,
                    jerr.column, jerr.text);
        break;
    }
    return NULL;
}

json_t *eddy_json_decode(const char *text, size_t len, eddy_error *err)
{
    return eddyi_json_decode(text, len, EDDY_EVENT_MAX_BYTES, "event", err);
}

json_t *eddy_json_decode_batch(const char *text, size_t len, eddy_error *err)
{
    return eddyi_json_decode(text, len, EDDY_BATCH_MAX_BYTES, "batch", err);
}

/*
 * The nesting depth of `v` (a scalar is 0, [] is 1), but never more than
 * limit + 1: the walk stops descending once the limit is passed, so it is
 * bounded by the limit whatever the value, and linear in its size.
 */
size_t eddyi_json_depth(const json_t *v, size_t limit)
{
    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    if (limit == 0)
        return 1;
    size_t deepest = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && deepest < limit; i++) {
            size_t d = eddyi_json_depth(json_array_get(v, i), limit - 1);
            if (d > deepest)
                deepest = d;
        }
    } else {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member) {
            size_t d = eddyi_json_depth(member, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest >= limit)
                break;
        }
    }
    return deepest + 1;
}

/* ---- the line reader ---------------------------------------------------------- */

struct eddy_line_reader {
    eddy_read_fn read;
    void *user;
    size_t max_line;
    char *buf;
    size_t cap;
    size_t start, end;   /* unconsumed bytes are buf[start, end) */
    size_t scanned;      /* buf[start, start + scanned) holds no newline */
    long line;           /* number of the line last returned or refused */
    bool eof;            /* `read` said end of input (or failed) */
    bool skipping;       /* discard bytes up to the next newline first */
    int read_errno;      /* the failed read's errno, 0 if none */
    int fd;              /* for eddy_line_reader_fd */
};

static long fd_read(void *user, void *buf, size_t size)
{
    eddy_line_reader *r = user;
    for (;;) {
        ssize_t n = read(r->fd, buf, size);
        if (n >= 0 || errno != EINTR)
            return (long)n;
    }
}

eddy_line_reader *eddy_line_reader_new(eddy_read_fn fn, void *user, size_t max_line)
{
    if (!fn)
        return NULL;
    eddy_line_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->read = fn;
    r->user = user;
    r->max_line = max_line ? max_line : EDDY_EVENT_MAX_BYTES;
    r->fd = -1;
    return r;
}

eddy_line_reader *eddy_line_reader_fd(int fd, size_t max_line)
{
    eddy_line_reader *r = eddy_line_reader_new(fd_read, NULL, max_line);
    if (r) {
        r->user = r;
        r->fd = fd;
    }
    return r;
}

void eddy_line_reader_free(eddy_line_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

long eddy_line_reader_line(const eddy_line_reader *r)
{
    return r ? r->line : 0;
}

/*
 * Reads more bytes after buf[end], first moving the unconsumed bytes to the
 * front and growing the buffer (never beyond max_line + 2: a line, "\r\n",
 * and one byte to tell that a line is too long). Returns 0, or -1 with
 * `err` filled (EDDY_ENOMEM); end of input and read errors set r->eof.
 */
static int fill(eddy_line_reader *r, eddy_error *err)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    size_t most = r->max_line + 2;
    if (r->end + 1 >= r->cap && r->cap < most + 1) {
        size_t cap = r->cap ? r->cap * 2 : 65536;
        if (cap > most + 1)
            cap = most + 1;
        char *p = realloc(r->buf, cap);
        if (!p) {
            eddyi_error(err, EDDY_ENOMEM, "line %ld: out of memory reading input",
                        r->line + 1);
            return -1;
        }
        r->buf = p;
        r->cap = cap;
    }
    /* One byte stays free for the NUL after a line. */
    size_t room = r->cap - r->end - 1;
    if (room == 0)
        return 0; /* full: the caller sees a line longer than the limit */
    long n = r->read(r->user, r->buf + r->end, room);
    if (n < 0) {
        r->read_errno = errno ? errno : EIO;
        r->eof = true;
    } else if (n == 0) {
        r->eof = true;
    } else {
        r->end += (size_t)n > room ? room : (size_t)n;
    }
    return 0;
}

int eddy_line_reader_next(eddy_line_reader *r, const char **line, size_t *len,
                          eddy_error *err)
{
    if (!r || !line || !len) {
        eddyi_error(err, EDDY_EINVAL, "line reader: NULL argument");
        return -1;
    }
    for (;;) {
        char *base = r->buf ? r->buf + r->start : NULL;
        size_t have = r->end - r->start;
        char *nl = have > r->scanned ? memchr(base + r->scanned, '\n', have - r->scanned)
                                     : NULL;
        if (r->skipping) {
            /* The rest of a refused line: consume it without keeping it. */
            if (nl) {
                r->start += (size_t)(nl - base) + 1;
                r->scanned = 0;
                r->skipping = false;
                continue;
            }
            r->start = r->end = r->scanned = 0;
            if (r->eof) {
                r->skipping = false;
                continue;
            }
            if (fill(r, err) != 0)
                return -1;
            continue;
        }
        if (nl || (r->eof && have > 0)) {
            size_t n = nl ? (size_t)(nl - base) : have;
            size_t consumed = nl ? n + 1 : n;
            if (n > 0 && base[n - 1] == '\r')
                n--;
            r->line++;
            if (n > r->max_line) {
                r->start += consumed;
                r->scanned = 0;
                eddyi_error(err, EDDY_ETOOBIG, "line %ld: longer than the %zu-byte limit",
                            r->line, r->max_line);
                return -1;
            }
            base[n] = '\0'; /* over the "\r" or "\n", or the free byte at the end */
            r->start += consumed;
            r->scanned = 0;
            *line = base;
            *len = n;
            return 1;
        }
        r->scanned = have;
        if (r->eof) {
            if (r->read_errno) {
                int e = r->read_errno;
                r->read_errno = 0;
                char msg[128];
                eddyi_error(err, EDDY_EIO, "line %ld: cannot read input: %s", r->line + 1,
                            strerror_r(e, msg, sizeof msg));
                return -1;
            }
            return 0;
        }
        /* Longer than the limit even without its "\r\n": refuse it now, and
         * let the next call skip what is left of it. */
        if (have > r->max_line + 1) {
            r->line++;
            r->start = r->end = r->scanned = 0;
            r->skipping = true;
            eddyi_error(err, EDDY_ETOOBIG, "line %ld: longer than the %zu-byte limit",
                        r->line, r->max_line);
            return -1;
        }
        if (fill(r, err) != 0)
            return -1;
    }
}
