/*
 * src/transport/ce_binary.c - CloudEvents binary content mode (headers +
 * payload), shared by the Kafka and NATS transports.
 *
 * Both directions go through the CloudEvents JSON object of the event
 * (eddy_event_to_json / eddy_event_from_json), so every attribute rule is
 * the one the structured decoder checks, and a bad header gives the same
 * message as a bad JSON attribute ("time: not an RFC 3339 timestamp").
 */
#include "transport/ce_binary.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"

#define CT_HEADER "content-type"

/* ---- base64 (RFC 4648, padded) ------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *in, size_t len)
{
    size_t olen = 4 * ((len + 2) / 3);
    char *out = malloc(olen + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes a string the event already validated (eddyi_base64_valid). */
static unsigned char *b64_decode(const char *in, size_t *out_len)
{
    size_t len = strlen(in);
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i + 3 < len; i += 4) {
        int a = b64_value(in[i]), b = b64_value(in[i + 1]);
        int c = in[i + 2] == '=' ? 0 : b64_value(in[i + 2]);
        int d = in[i + 3] == '=' ? 0 : b64_value(in[i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0) {
            free(out);
            return NULL;
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 |
                     (uint32_t)d;
        out[o++] = (unsigned char)(v >> 16);
        if (in[i + 2] != '=')
            out[o++] = (unsigned char)(v >> 8);
        if (in[i + 3] != '=')
            out[o++] = (unsigned char)v;
    }
    *out_len = o;
    return out;
}

/* ---- percent-encoding of header values ---------------------------------- */

static bool needs_percent(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '"' || c == '%';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies `len` bytes of `s`, percent-decoding when asked. NULL when out of
 * memory or when the text holds a NUL byte or a bad escape (`*bad` set). */
static char *header_text(const char *s, size_t len, bool percent, bool *bad)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (percent && c == '%') {
            int h = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int l = i + 2 < len ? hex_value(s[i + 2]) : -1;
            if (h < 0 || l < 0)
                goto bad;
            c = (char)(h << 4 | l);
            i += 2;
        }
        if (c == '\0')
            goto bad;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    *bad = true;
    return NULL;
}

/* ---- content types ------------------------------------------------------ */

/* Appends "item" to the comma-separated list `*list` (may be NULL).
 * False when out of memory. */
static bool list_append(char **list, const char *name, const char *kind)
{
    size_t old = *list ? strlen(*list) : 0;
    size_t add = strlen(name) + strlen(kind) + 3;
    char *grown = realloc(*list, old + add);
    if (!grown)
        return false;
    snprintf(grown + old, add, "%s%s=%s", old ? "," : "", name, kind);
    *list = grown;
    return true;
}

/* The kind `types` (may be NULL) gives `name` ("b", "i", "s"), or NULL. */
static const char *list_kind(const char *types, const char *name, char *buf,
                             size_t size)
{
    size_t nlen = strlen(name);
    for (const char *p = types; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nlen + 1 && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            snprintf(buf, size, "%.*s", (int)(len - nlen - 1), p + nlen + 1);
            return buf;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* text/... (parameters ignored). */
static bool is_text_type(const char *ct)
{
    return strncasecmp(ct, "text/", 5) == 0;
}

/* application/json, text/json, anything/...+json (parameters ignored). */
static bool is_json_type(const char *ct)
{
    size_t len = strcspn(ct, ";");
    while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    if ((len == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
        (len == 9 && strncasecmp(ct, "text/json", 9) == 0))
        return true;
    return len > 5 && strncasecmp(ct + len - 5, "+json", 5) == 0;
}

bool eddyi_ce_binary_is_structured(const char *content_type)
{
    return content_type &&
           strncasecmp(content_type, "application/cloudevents", 23) == 0;
}

/* ---- encoding ----------------------------------------------------------- */

void eddyi_ce_binary_clear(eddyi_ce_binary *b)
{
    if (!b)
        return;
    free(b->arena);
    free(b->payload);
    memset(b, 0, sizeof *b);
}

size_t eddyi_ce_binary_size(const eddyi_ce_binary *b)
{
    size_t n = b->payload_len;
    for (size_t i = 0; i < b->count; i++)
        n += strlen(b->names[i]) + strlen(b->values[i]);
    return n;
}

/* One header before it is written into the arena: the name is `prefix`
 * (may be "") followed by `name`; the value is `len` bytes of `value`,
 * percent-encoded when `pct`. */
typedef struct header_src {
    const char *prefix, *name;
    const char *value;
    size_t len;
    bool pct;
} header_src;

/* Bytes `v` takes once percent-encoded (or not). */
static size_t value_size(const char *v, size_t len, bool percent)
{
    if (!percent)
        return len;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += needs_percent((unsigned char)v[i]) ? 3 : 1;
    return n;
}

/* Writes `v` (percent-encoded or not) at `out`; returns the end. */
static char *value_write(char *out, const char *v, size_t len, bool percent)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!percent) {
        memcpy(out, v, len);
        return out + len;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (needs_percent(c)) {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    return out;
}

#define STACK_HEADERS 24

/*
 * The headers come straight from the event's accessors (not through its
 * JSON object) and go into one allocation: every publish runs this, so it
 * avoids an allocation per header.
 */
int eddyi_ce_binary_encode(const eddy_event *ev, const char *prefix,
                           const char *types_header, bool percent,
                           eddyi_ce_binary *out, eddy_error *err)
{
    memset(out, 0, sizeof *out);
    const json_t *exts = eddy_event_extensions(ev);
    size_t next = json_object_size(exts);
    size_t cap = 12 + next;
    header_src stack_src[STACK_HEADERS];
    char stack_numbers[STACK_HEADERS][24];
    header_src *src = cap <= STACK_HEADERS ? stack_src
                                           : malloc(cap * sizeof *src);
    char(*numbers)[24] = next <= STACK_HEADERS
                             ? stack_numbers
                             : malloc(next * sizeof *numbers);
    char *types = NULL;
    int rc = EDDY_ENOMEM;
    if (!src || !numbers)
        goto nomem;
    size_t n = 0;
    char tbuf[EDDY_TIME_STRLEN];
    const char *attrs[][2] = {
        {"specversion", "1.0"},
        {"id", eddy_event_id(ev)},
        {"source", eddy_event_source(ev)},
        {"type", eddy_event_type(ev)},
        {"time", eddy_event_time(ev) != 0
                     ? eddy_time_format(eddy_event_time(ev), tbuf, sizeof tbuf)
                     : NULL},
        {"subject", eddy_event_subject(ev)},
        {"dataschema", eddy_event_dataschema(ev)},
        {"dataversion", eddy_event_dataversion(ev)},
        {"correlationid", eddy_event_correlation_id(ev)},
        {"causationid", eddy_event_causation_id(ev)},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if (attrs[i][1])
            src[n++] = (header_src){prefix, attrs[i][0], attrs[i][1],
                                    strlen(attrs[i][1]), percent};
    /* content-type and the types header are ASCII tokens, never
     * percent-encoded. */
    const char *ct = eddy_event_datacontenttype(ev);
    if (ct)
        src[n++] = (header_src){"", CT_HEADER, ct, strlen(ct), false};
    const char *key;
    json_t *value;
    size_t k = 0;
    json_object_foreach((json_t *)exts, key, value) {
        const char *text;
        if (json_is_string(value)) {
            text = json_string_value(value);
        } else if (json_is_boolean(value)) {
            text = json_is_true(value) ? "true" : "false";
            if (!list_append(&types, key, "b"))
                goto nomem;
        } else if (json_is_integer(value)) {
            snprintf(numbers[k], sizeof numbers[k], "%" JSON_INTEGER_FORMAT,
                     json_integer_value(value));
            text = numbers[k++];
            if (!list_append(&types, key, "i"))
                goto nomem;
        } else {
            rc = eddyi_error(err, EDDY_EINVAL,
                             "%s: extension of an unsupported JSON type", key);
            goto fail;
        }
        src[n++] = (header_src){prefix, key, text, strlen(text), percent};
    }

    const json_t *data = eddy_event_data(ev);
    const char *b64 = eddy_event_data_base64(ev);
    if (data) {
        if (json_is_string(data) && ct && !is_json_type(ct)) {
            size_t len = json_string_length(data);
            out->payload = malloc(len ? len : 1);
            if (!out->payload)
                goto nomem;
            memcpy(out->payload, json_string_value(data), len);
            out->payload_len = len;
            if (!list_append(&types, "data", "s"))
                goto nomem;
        } else {
            out->payload = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!out->payload)
                goto nomem;
            out->payload_len = strlen(out->payload);
        }
    } else if (b64) {
        out->payload = (char *)b64_decode(b64, &out->payload_len);
        if (!out->payload || !list_append(&types, "data", "b"))
            goto nomem;
    }
    if (types)
        src[n++] = (header_src){"", types_header, types, strlen(types), false};

    /* One block: names[n], values[n], then the strings. */
    size_t bytes = 2 * n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(src[i].prefix) + strlen(src[i].name) + 1 +
                 value_size(src[i].value, src[i].len, src[i].pct) + 1;
    out->arena = malloc(bytes ? bytes : 1);
    if (!out->arena)
        goto nomem;
    out->names = (char **)(void *)out->arena;
    out->values = out->names + n;
    char *w = (char *)(out->values + n);
    for (size_t i = 0; i < n; i++) {
        size_t plen = strlen(src[i].prefix), nlen = strlen(src[i].name);
        out->names[i] = w;
        memcpy(w, src[i].prefix, plen);
        memcpy(w + plen, src[i].name, nlen + 1);
        w += plen + nlen + 1;
        out->values[i] = w;
        w = value_write(w, src[i].value, src[i].len, src[i].pct);
        *w++ = '\0';
    }
    out->count = n;
    rc = EDDY_OK;
    goto out;

nomem:
    rc = eddyi_error(err, EDDY_ENOMEM, "out of memory encoding event %s",
                     eddy_event_id(ev));
fail:
    eddyi_ce_binary_clear(out);
out:
    free(types);
    if (numbers && numbers != stack_numbers)
        free(numbers);
    if (src && src != stack_src)
        free(src);
    return rc;
}

/* ---- decoding ----------------------------------------------------------- */

eddy_event *eddyi_ce_binary_decode(const char *const *names,
                                   const char *const *values,
                                   const size_t *value_lens, size_t n,
                                   const char *prefix,
                                   const char *types_header, bool percent,
                                   const void *payload, size_t payload_len,
                                   char *reason, size_t reason_size)
{
    eddy_event *ev = NULL;
    char *ct = NULL, *types = NULL;
    char kind[8];
    json_t *obj = json_object();
    if (!obj) {
        snprintf(reason, reason_size, "out of memory decoding a message");
        return NULL;
    }
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        bool is_ct = strcasecmp(names[i], CT_HEADER) == 0;
        bool is_types = strcasecmp(names[i], types_header) == 0;
        if (!is_ct && !is_types && strncasecmp(names[i], prefix, plen) != 0)
            continue;
        bool bad = false;
        /* As the encoder writes them: content-type and the types header
         * are never percent-encoded (a '%' in a media type parameter made
         * every such event undecodable; found by fuzz_ce_binary). */
        char *text = header_text(values[i], value_lens[i],
                                 percent && !is_ct && !is_types, &bad);
        if (!text) {
            snprintf(reason, reason_size, bad
                         ? "malformed: header %s: NUL byte or bad %%-escape"
                         : "out of memory decoding header %s", names[i]);
            goto fail;
        }
        if (is_ct || is_types) {
            char **slot = is_ct ? &ct : &types;
            free(*slot);
            *slot = text;
            continue;
        }
        /* Attribute names are lower-case; header names may not be. */
        char attr[64];
        size_t alen = strlen(names[i] + plen);
        if (alen == 0 || alen >= sizeof attr) {
            free(text);
            snprintf(reason, reason_size,
                     "malformed: header %s: not a CloudEvents attribute name",
                     names[i]);
            goto fail;
        }
        for (size_t k = 0; k <= alen; k++) {
            char c = names[i][plen + k];
            attr[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        if (!eddyi_utf8_valid(text, strlen(text))) {
            free(text);
            snprintf(reason, reason_size, "malformed: %s: not valid UTF-8",
                     attr);
            goto fail;
        }
        json_t *s = json_string(text);
        free(text);
        if (!s || json_object_set_new(obj, attr, s) != 0) {
            snprintf(reason, reason_size, "out of memory decoding a message");
            goto fail;
        }
    }
    if (ct && json_object_set_new(obj, "datacontenttype", json_string(ct)) != 0) {
        snprintf(reason, reason_size, "out of memory decoding a message");
        goto fail;
    }
    /* "data" and "data_base64" are never attributes in binary mode. */
    json_object_del(obj, "data");
    json_object_del(obj, "data_base64");

    /* Booleans and integers the sender marked as such. */
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        const char *k = list_kind(types, key, kind, sizeof kind);
        if (!k)
            continue;
        const char *v = json_string_value(value);
        json_t *typed = NULL;
        if (strcmp(k, "b") == 0 && strcmp(v, "true") == 0)
            typed = json_true();
        else if (strcmp(k, "b") == 0 && strcmp(v, "false") == 0)
            typed = json_false();
        else if (strcmp(k, "i") == 0 && *v) {
            char *end = NULL;
            long long num = strtoll(v, &end, 10);
            if (*end == '\0')
                typed = json_integer(num);
        }
        if (!typed) {
            snprintf(reason, reason_size, "malformed: %s: \"%s\" is not the "
                     "%s that header %s announces", key, v,
                     strcmp(k, "b") == 0 ? "boolean" : "integer", types_header);
            goto fail;
        }
        json_object_set_new(obj, key, typed);
    }

    /* An empty payload may come as NULL (librdkafka's for an empty
     * message): announced as a string it is "", not a failure (found by
     * fuzz_ce_binary: json_stringn(NULL, 0) said "out of memory"). */
    if (!payload)
        payload = "";
    const char *data_kind = list_kind(types, "data", kind, sizeof kind);
    if (payload_len > 0 || data_kind) {
        json_t *data = NULL;
        if (data_kind) {
            if (strcmp(data_kind, "s") == 0) {
                if (!eddyi_utf8_valid(payload, payload_len)) {
                    snprintf(reason, reason_size, "malformed: data announced "
                             "as a string is not valid UTF-8");
                    goto fail;
                }
                data = json_stringn(payload, payload_len);
                if (!data)
                    goto nomem;
            }
            /* "b": data_base64 below */
        } else if (!ct || is_json_type(ct)) {
            json_error_t jerr;
            data = json_loadb(payload, payload_len,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
            if (!data && ct) {
                snprintf(reason, reason_size,
                         "malformed: data is not valid JSON (content type %s): "
                         "%s at line %d column %d",
                         ct, jerr.text, jerr.line, jerr.column);
                goto fail;
            }
        } else if (is_text_type(ct) && eddyi_utf8_valid(payload, payload_len)) {
            data = json_stringn(payload, payload_len);
        }
        if (data) {
            if (json_object_set_new(obj, "data", data) != 0)
                goto nomem;
        } else {
            char *b64 = b64_encode(payload, payload_len);
            if (!b64)
                goto nomem;
            int rc = json_object_set_new(obj, "data_base64", json_string(b64));
            free(b64);
            if (rc != 0)
                goto nomem;
        }
    }

    eddy_error e = {0};
    ev = eddy_event_from_json(obj, &e);
    if (!ev)
        snprintf(reason, reason_size, "malformed: %s", e.message);
    free(ct);
    free(types);
    json_decref(obj);
    return ev;

nomem:
    snprintf(reason, reason_size, "out of memory decoding a message");
fail:
    free(ct);
    free(types);
    json_decref(obj);
    return NULL;
}
