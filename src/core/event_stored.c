/*
 * src/core/event_stored.c - decoding the events the store holds, fast.
 *
 * Every event in a store was validated when it was appended and written by
 * eddy_event_encode, so reading it back need not build a JSON tree of the
 * whole object, copy each attribute into its own allocation and check every
 * CloudEvents rule again. This decoder scans the top-level object once:
 *   - the event and all its strings are ONE allocation (an arena holding a
 *     copy of the bytes; unescaped strings are written over their own
 *     quoted text, which is never shorter);
 *   - `data` is kept as its span of bytes and parsed only if someone asks
 *     for it (eddyi_event_data): routing, filtering and dispatch read only
 *     the envelope;
 *   - the bytes are kept, so re-encoding the event (a bridge, an outbox, a
 *     dead letter) is a copy.
 * What it does not expect (an extension attribute, a \u escape, a nested
 * value where a string belongs, a duplicate member, anything malformed)
 * sends the text to the strict decoder, eddy_event_decode, which either
 * builds the same event the long way or says precisely what is wrong.
 * It trusts what the append checked and does not check it again: the rules
 * of each attribute's form (a String's characters, a URI's syntax) and the
 * JSON grammar inside `data` (parsed on first access; damaged bytes then
 * read as no data, and eddy_event_unpack says so). It does guarantee valid
 * UTF-8 attributes, and that re-encoding gives back the stored bytes.
 * fuzz/fuzz_event_stored.c holds it to this against the strict decoder.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "event_internal.h"
#include "internal.h"

/* The attributes this decoder takes, by index. */
enum {
    A_SPECVERSION, A_ID, A_TYPE, A_SOURCE, A_SUBJECT, A_TIME,
    A_DATACONTENTTYPE, A_DATASCHEMA, A_DATAVERSION, A_CORRELATIONID,
    A_CAUSATIONID, A_DATA_BASE64, A_DATA, A_COUNT
};

static const struct {
    const char *name;
    size_t len;
} attrs[A_COUNT] = {
#define A(s) {s, sizeof s - 1}
    A("specversion"), A("id"), A("type"), A("source"), A("subject"),
    A("time"), A("datacontenttype"), A("dataschema"), A("dataversion"),
    A("correlationid"), A("causationid"), A("data_base64"), A("data"),
#undef A
};

static int attr_of(const char *key, size_t len)
{
    for (int i = 0; i < A_COUNT; i++)
        if (attrs[i].len == len && attrs[i].name[0] == key[0] &&
            memcmp(attrs[i].name, key, len) == 0)
            return i;
    return -1;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/*
 * Reads the string starting at `p` (at its opening quote) and unescapes it
 * in place (the arena copy is writable). Returns the position after the
 * closing quote with `*out` NUL-terminated (and `*outlen` its length), or
 * NULL for anything this decoder does not take (a \u escape, a control
 * byte, an unterminated string): the strict decoder then handles it.
 */
static char *read_string(char *p, const char *end, char **out,
                         size_t *outlen)
{
    if (p >= end || *p != '"')
        return NULL;
    char *w = ++p;
    *out = w;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *w = '\0'; /* over the quote or an earlier escape's room */
            *outlen = (size_t)(w - *out);
            return p + 1;
        }
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (p + 1 >= end)
                return NULL;
            switch (p[1]) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case '/': *w++ = '/'; break;
            case 'b': *w++ = '\b'; break;
            case 'f': *w++ = '\f'; break;
            case 'n': *w++ = '\n'; break;
            case 'r': *w++ = '\r'; break;
            case 't': *w++ = '\t'; break;
            default: return NULL; /* \uXXXX: the strict decoder's job */
            }
            p += 2;
            continue;
        }
        *w++ = (char)c;
        p++;
    }
    return NULL;
}

/* Skips one JSON value starting at `p`; the position after it, or NULL. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    do {
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        char c = *p;
        if (c == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\' && ++p >= end)
                    return NULL;
            if (p >= end)
                return NULL;
            p++;
        } else if (c == '{' || c == '[') {
            if (++depth > 256)
                return NULL;
            p++;
            continue; /* the first member or element, or the close */
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return NULL;
            p++;
        } else if (c == ',' || c == ':') {
            p++;
            continue;
        } else { /* a number, true, false, null */
            const char *q = p;
            while (q < end && *q != ',' && *q != '}' && *q != ']' &&
                   *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
                q++;
            if (q == p)
                return NULL;
            p = q;
        }
        /* after a complete value: inside a container, go on */
        p = skip_ws(p, end);
        if (depth > 0 && p < end && (*p == ',' || *p == ':'))
            p++;
    } while (depth > 0);
    return p;
}

/* The fast path; NULL means "not for me" (the caller uses the strict
 * decoder), never an error of its own. */
static eddy_event *decode_fast(const char *text, size_t len)
{
    /* One block: the working copy (strings unescaped in place) and, after
     * it, the bytes as they are (for re-encoding). */
    eddy_event *ev = calloc(1, sizeof *ev);
    char *arena = malloc(2 * len + 2);
    if (!ev || !arena)
        goto no;
    memcpy(arena, text, len);
    arena[len] = '\0';
    memcpy(arena + len + 1, text, len);
    arena[2 * len + 1] = '\0';
    char *p = arena, *end = arena + len;
    char *val[A_COUNT] = {0};
    const char *data = NULL, *data_end = NULL;

    p = (char *)skip_ws(p, end);
    if (p >= end || *p != '{')
        goto no;
    p = (char *)skip_ws(p + 1, end);
    if (p < end && *p == '}')
        goto no; /* an empty object: the strict decoder names what lacks */
    for (;;) {
        char *key;
        size_t klen = 0, vlen = 0;
        p = read_string(p, end, &key, &klen);
        if (!p)
            goto no;
        p = (char *)skip_ws(p, end);
        if (p >= end || *p != ':')
            goto no;
        p = (char *)skip_ws(p + 1, end);
        int a = attr_of(key, klen);
        if (a < 0 || (a == A_DATA ? data != NULL : val[a] != NULL))
            goto no; /* an extension, or a duplicate member */
        if (a == A_DATA) {
            data = p;
            const char *q = skip_value(p, end);
            if (!q)
                goto no;
            data_end = q;
            p = (char *)q;
        } else {
            if (p < end && *p == 'n') /* null counts as absent: strict */
                goto no;
            p = read_string(p, end, &val[a], &vlen);
            if (!p)
                goto no;
        }
        p = (char *)skip_ws(p, end);
        if (p < end && *p == ',') {
            p = (char *)skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            break;
        goto no;
    }
    if (skip_ws(p + 1, end) != end)
        goto no; /* bytes after the object */

    /* What the store's append guaranteed, checked again cheaply: the
     * attributes become C strings and JSON strings again (valid UTF-8, no
     * NUL), and the required ones are there. */
    for (int a = 0; a < A_COUNT; a++)
        if (val[a] && !eddyi_utf8_valid(val[a], strlen(val[a])))
            goto no;
    if (!val[A_SPECVERSION] || strcmp(val[A_SPECVERSION], "1.0") != 0 ||
        !val[A_ID] || !*val[A_ID] || !val[A_TYPE] || !*val[A_TYPE] ||
        !val[A_SOURCE] || !*val[A_SOURCE])
        goto no;
    if (val[A_TIME]) {
        if (eddy_time_parse(val[A_TIME], &ev->time_us) != EDDY_OK)
            goto no;
        ev->has_time = true;
    }
    if (data) {
        /* trim trailing blanks of the span; JSON null is no data */
        while (data_end > data && (data_end[-1] == ' ' || data_end[-1] == '\n' ||
                                   data_end[-1] == '\t' || data_end[-1] == '\r'))
            data_end--;
        if (data_end - data == 4 && memcmp(data, "null", 4) == 0)
            data = NULL;
        else if (val[A_DATA_BASE64])
            goto no; /* both: the strict decoder says so */
    }

    atomic_init(&ev->refs, 1);
    ev->id = val[A_ID];
    ev->type = val[A_TYPE];
    ev->source = val[A_SOURCE];
    ev->subject = val[A_SUBJECT];
    ev->datacontenttype = val[A_DATACONTENTTYPE];
    ev->dataschema = val[A_DATASCHEMA];
    ev->dataversion = val[A_DATAVERSION];
    ev->correlation_id = val[A_CORRELATIONID];
    ev->causation_id = val[A_CAUSATIONID];
    ev->data_base64 = val[A_DATA_BASE64];
    atomic_init(&ev->data, NULL);
    atomic_init(&ev->extensions, NULL);
    ev->arena = arena;
    ev->raw = arena + len + 1;
    ev->raw_len = len;
    /* Unescaping writes only inside each string's own quotes, so the data
     * span of the working copy is still the bytes as stored. */
    ev->data_raw = data;
    ev->data_raw_len = data ? (size_t)(data_end - data) : 0;
    return ev;
no:
    free(arena);
    free(ev);
    return NULL;
}

eddy_event *eddyi_event_decode_stored(const char *text, size_t len,
                                      eddy_error *err)
{
    if (!text)
        return eddy_event_decode(text, len, err);
    eddy_event *ev = decode_fast(text, len);
    return ev ? ev : eddy_event_decode(text, len, err);
}
