/*
 * src/core/event.c - the event envelope: the one validating constructor,
 * accessors, reference counting, equality and unpacking of data.
 *
 * Every rule CloudEvents puts on an attribute is checked here, once:
 * eddy_event_new() and the JSON decoder (cloudevents.c) both build through
 * eddyi_event_build(), so an event that exists is always a valid event.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eddy/event.h"
#include "event_internal.h"
#include "internal.h"

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: what RFC 3339's
 * four-digit year can say. */
#define TIME_MIN_US (-62167219200LL * 1000000)
#define TIME_MAX_US (253402300799LL * 1000000 + 999999)

/* Attributes that an extension may not be called: the core attributes and
 * the extensions that have dedicated fields. */
static const char *const reserved_names[] = {
    "specversion", "id", "type", "source", "subject", "time",
    "datacontenttype", "dataschema", "data", "data_base64",
    "dataversion", "correlationid", "causationid", NULL,
};

/* ---- validation --------------------------------------------------------- */

/*
 * The first code point of valid UTF-8 `s` (`len` bytes) that a CloudEvents
 * String may not hold: the control characters U+0000-U+001F and
 * U+007F-U+009F, and the noncharacters U+FDD0-U+FDEF and U+xFFFE/U+xFFFF of
 * every plane (surrogates cannot occur in valid UTF-8). -1 when there is
 * none.
 */
static long forbidden_char(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned long cp = *p;
        size_t n = cp < 0x80 ? 1 : cp < 0xE0 ? 2 : cp < 0xF0 ? 3 : 4;
        if (n > (size_t)(end - p))
            return -1; /* not reached for valid UTF-8 */
        if (n > 1) {
            cp &= 0xFFu >> (n + 1);
            for (size_t i = 1; i < n; i++)
                cp = (cp << 6) | (p[i] & 0x3F);
        }
        p += n;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || (cp >= 0xFDD0 && cp <= 0xFDEF) ||
            (cp & 0xFFFE) == 0xFFFE)
            return (long)cp;
    }
    return -1;
}

/* Checks the characters of a String value `s` of attribute `name`. */
static int check_chars(const char *name, const char *s, size_t len, eddy_error *err)
{
    if (!eddyi_utf8_valid(s, len))
        return eddyi_error(err, EDDY_EINVAL, "%s: not valid UTF-8", name);
    long cp = forbidden_char(s, len);
    if (cp >= 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s: contains %s U+%04lX, which a CloudEvents String may not hold",
                           name, cp < 0xA0 ? "the control character" : "the noncharacter",
                           (unsigned long)cp);
    return EDDY_OK;
}

/* A string attribute: present (if required), non-empty, valid UTF-8 without
 * the characters CloudEvents Strings exclude. */
static int check_string(const char *name, const char *s, bool required,
                        eddy_error *err)
{
    if (!s) {
        if (required)
            return eddyi_error(err, EDDY_EINVAL, "%s: required attribute missing",
                               name);
        return EDDY_OK;
    }
    if (s[0] == '\0')
        return eddyi_error(err, EDDY_EINVAL, "%s: must not be empty", name);
    return check_chars(name, s, strlen(s), err);
}

/* No spaces or control characters: they can never appear in a URI. */
static bool uri_chars_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7F)
            return false;
    return true;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* RFC 3986 absolute URI, checked as far as "scheme:" plus legal characters. */
static bool absolute_uri(const char *s)
{
    if (!is_alpha(s[0]))
        return false;
    const char *p = s + 1;
    while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':' && uri_chars_ok(s);
}

/* RFC 2045 token character: printable ASCII except space and tspecials. */
static bool token_char(char c)
{
    unsigned char u = (unsigned char)c;
    if (u <= 0x20 || u >= 0x7F)
        return false;
    return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static const char *skip_token(const char *p)
{
    while (*p && token_char(*p))
        p++;
    return p;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* RFC 2046 media type: type "/" subtype *( ";" attribute "=" value ), value
 * a token or a quoted string; optional whitespace around ";" and at the end. */
static bool media_type(const char *s)
{
    const char *p = skip_token(s);
    if (p == s || *p != '/')
        return false;
    const char *sub = ++p;
    p = skip_token(p);
    if (p == sub)
        return false;
    for (;;) {
        p = skip_ows(p);
        if (*p == '\0')
            return true;
        if (*p != ';')
            return false;
        p = skip_ows(p + 1);
        const char *attr = p;
        p = skip_token(p);
        if (p == attr || *p != '=')
            return false;
        p++;
        if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\0' || (unsigned char)*p < 0x20)
                    return false;
                if (*p == '\\' && *++p == '\0')
                    return false;
            }
            p++;
        } else {
            const char *val = p;
            p = skip_token(p);
            if (p == val)
                return false;
        }
    }
}

/* True when media type `s` (already checked by media_type) says the data is
 * JSON: application/json or a structured "+json" suffix (RFC 6839), in any
 * case, whatever its parameters. That is when the CloudEvents JSON format
 * keeps data as a JSON value rather than a string. */
static bool json_media_type(const char *s)
{
    const char *end = s;
    while (*end && *end != ';' && *end != ' ' && *end != '\t')
        end++;
    size_t n = (size_t)(end - s);
    return (n == 16 && strncasecmp(s, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(end - 5, "+json", 5) == 0);
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (is_digit(c))
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

bool eddyi_base64_valid(const char *s)
{
    size_t n = strlen(s);
    if (n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            /* padding: only in the last two places, and only to the end */
            if (i < n - 2)
                return false;
            for (size_t j = i; j < n; j++)
                if (s[j] != '=')
                    return false;
            return true;
        }
        if (b64_value(s[i]) < 0)
            return false;
    }
    return true;
}

static bool extension_name_ok(const char *name)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || is_digit(*p)))
            return false;
    return true;
}

static bool reserved_name(const char *name)
{
    for (size_t i = 0; reserved_names[i]; i++)
        if (strcmp(reserved_names[i], name) == 0)
            return true;
    return false;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/*
 * Checks one extension value and returns a new reference to its normalised
 * form (an integral real becomes an integer), or NULL with `err` filled.
 * Values are copied so the event never shares a mutable scalar with the
 * caller.
 */
static json_t *extension_value(const char *name, const json_t *v, eddy_error *err)
{
    json_t *out = NULL;
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (check_chars(name, s, len, err) != EDDY_OK)
            return NULL;
        out = json_stringn_nocheck(s, len);
        break;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        out = json_boolean(json_is_true(v));
        break;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i < INT32_MIN || i > INT32_MAX) {
            eddyi_error(err, EDDY_EINVAL,
                        "%s: integer %" JSON_INTEGER_FORMAT " outside the "
                        "CloudEvents Integer range -2147483648..2147483647",
                        name, i);
            return NULL;
        }
        out = json_integer(i);
        break;
    }
    case JSON_REAL: {
        double d = json_real_value(v);
        /* The range first: converting a double outside int64 is undefined
         * (found by fuzz_event_decode with 2.3e36). */
        if (!(d >= INT32_MIN && d <= INT32_MAX) || d != (double)(int64_t)d) {
            eddyi_error(err, EDDY_EINVAL,
                        "%s: extension value must be an integer, got non-integral "
                        "or out-of-range number %g", name, d);
            return NULL;
        }
        out = json_integer((json_int_t)d);
        break;
    }
    default:
        eddyi_error(err, EDDY_EINVAL,
                    "%s: extension value must be a string, boolean or integer, "
                    "got %s", name, json_kind(v));
        return NULL;
    }
    if (!out)
        eddyi_error(err, EDDY_ENOMEM, "%s: out of memory", name);
    return out;
}

/* Validates the extensions object and returns a new, normalised copy
 * without null members, or NULL with `err` filled. */
static json_t *copy_extensions(const json_t *ext, eddy_error *err)
{
    json_t *out = json_object();
    if (!out) {
        eddyi_error(err, EDDY_ENOMEM, "extensions: out of memory");
        return NULL;
    }
    if (!ext)
        return out;
    if (!json_is_object(ext)) {
        eddyi_error(err, EDDY_EINVAL, "extensions: must be a JSON object, got %s",
                    json_kind(ext));
        goto fail;
    }
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)ext, name, v) {
        if (!extension_name_ok(name)) {
            eddyi_error(err, EDDY_EINVAL,
                        "%s: extension attribute names must be lower-case "
                        "letters and digits", name);
            goto fail;
        }
        if (reserved_name(name)) {
            eddyi_error(err, EDDY_EINVAL,
                        "%s: reserved attribute name, not an extension", name);
            goto fail;
        }
        if (json_is_null(v))
            continue; /* a null attribute counts as absent */
        json_t *copy = extension_value(name, v, err);
        if (!copy)
            goto fail;
        if (json_object_set_new_nocheck(out, name, copy) != 0) {
            eddyi_error(err, EDDY_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* ---- construction ------------------------------------------------------- */

static void event_free(eddy_event *ev)
{
    json_decref(atomic_load_explicit(&ev->data, memory_order_acquire));
    json_decref(atomic_load_explicit(&ev->extensions, memory_order_acquire));
    if (ev->arena) { /* a stored event: its strings live in the arena */
        free(ev->arena);
        free(ev);
        return;
    }
    free(ev->id);
    free(ev->type);
    free(ev->source);
    free(ev->subject);
    free(ev->datacontenttype);
    free(ev->dataschema);
    free(ev->dataversion);
    free(ev->correlation_id);
    free(ev->causation_id);
    free(ev->data_base64);
    free(ev);
}

json_t *eddyi_event_data(const eddy_event *ev)
{
    eddy_event *e = (eddy_event *)ev; /* the lazily parsed cache only */
    json_t *d = atomic_load_explicit(&e->data, memory_order_acquire);
    if (d || !ev->data_raw)
        return d;
    json_t *parsed = json_loadb(ev->data_raw, ev->data_raw_len,
                                JSON_DECODE_ANY, NULL);
    if (!parsed)
        return NULL; /* out of memory, or damaged bytes (the append checked
                        them): eddy_event_unpack tells the two from no data */
    json_t *expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(&e->data, &expected, parsed,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        json_decref(parsed); /* another thread was first */
        return expected;
    }
    return parsed;
}

json_t *eddyi_event_extensions(const eddy_event *ev)
{
    eddy_event *e = (eddy_event *)ev;
    json_t *x = atomic_load_explicit(&e->extensions, memory_order_acquire);
    if (x)
        return x;
    json_t *empty = json_object();
    if (!empty)
        return NULL;
    json_t *expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(&e->extensions, &expected,
                                                 empty, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        json_decref(empty);
        return expected;
    }
    return empty;
}

/* Copies `src` into *dst; false (out of memory) only when src was set. */
static bool dup_into(char **dst, const char *src)
{
    *dst = eddyi_strdup(src);
    return !src || *dst;
}

eddy_event *eddyi_event_build(const eddy_event_init *init, eddyi_event_mode mode,
                              bool has_time, eddy_error *err)
{
    eddy_event *ev = NULL;
    char uuid[EDDY_UUID_STRLEN];
    if (!init) {
        eddyi_error(err, EDDY_EINVAL, "event: no attributes given (init is NULL)");
        return NULL;
    }
    bool decoded = mode == EDDYI_EVENT_DECODED;
    const json_t *data = init->data && !json_is_null(init->data) ? init->data : NULL;

    /* Attributes in the order eddy/event.h lists them (id, type, source,
     * ...), so which problem is reported first is predictable. */
    if (check_string("id", init->id, decoded, err) ||
        check_string("type", init->type, true, err) ||
        check_string("source", init->source, true, err) ||
        check_string("datacontenttype", init->datacontenttype, false, err) ||
        check_string("dataschema", init->dataschema, false, err) ||
        check_string("subject", init->subject, false, err) ||
        check_string("dataversion", init->dataversion, false, err) ||
        check_string("correlationid", init->correlation_id, false, err) ||
        check_string("causationid", init->causation_id, false, err))
        return NULL;
    if (!uri_chars_ok(init->source)) {
        eddyi_error(err, EDDY_EINVAL,
                    "source: not a URI-reference (contains a space or control "
                    "character): \"%s\"", init->source);
        return NULL;
    }
    if (init->datacontenttype && !media_type(init->datacontenttype)) {
        eddyi_error(err, EDDY_EINVAL,
                    "datacontenttype: not an RFC 2046 media type: \"%s\"",
                    init->datacontenttype);
        return NULL;
    }
    if (init->dataschema && !absolute_uri(init->dataschema)) {
        eddyi_error(err, EDDY_EINVAL, "dataschema: not an absolute URI: \"%s\"",
                    init->dataschema);
        return NULL;
    }
    if (data && init->data_base64) {
        eddyi_error(err, EDDY_EINVAL, "data, data_base64: an event cannot have both");
        return NULL;
    }
    /* JSON format 3.1: data of a non-JSON media type travels as a string
     * (binary as data_base64); any other JSON value would be misread. */
    if (data && init->datacontenttype && !json_is_string(data) &&
        !json_media_type(init->datacontenttype)) {
        eddyi_error(err, EDDY_EINVAL,
                    "data: must be a string (or data_base64) when datacontenttype "
                    "\"%s\" is not JSON, got %s",
                    init->datacontenttype, json_kind(data));
        return NULL;
    }
    /* Deeper data could not be read back: see EDDY_EVENT_MAX_DEPTH. */
    if (data && eddyi_json_depth(data, EDDY_EVENT_MAX_DEPTH - 1) > EDDY_EVENT_MAX_DEPTH - 1) {
        eddyi_error(err, EDDY_ETOOBIG,
                    "data: nested deeper than %d levels (EDDY_EVENT_MAX_DEPTH %d counts "
                    "the event itself)",
                    EDDY_EVENT_MAX_DEPTH - 1, EDDY_EVENT_MAX_DEPTH);
        return NULL;
    }
    if (init->data_base64 && !eddyi_base64_valid(init->data_base64)) {
        eddyi_error(err, EDDY_EINVAL, "data_base64: not a valid base64 string");
        return NULL;
    }
    int64_t time_us = init->time_us;
    if (!decoded) {
        has_time = true;
        if (time_us == 0)
            time_us = eddy_now_us();
    }
    if (has_time && (time_us < TIME_MIN_US || time_us > TIME_MAX_US)) {
        eddyi_error(err, EDDY_EINVAL,
                    "time: %lld microseconds is outside years 0000..9999",
                    (long long)time_us);
        return NULL;
    }

    ev = calloc(1, sizeof *ev);
    if (!ev)
        goto nomem;
    atomic_init(&ev->refs, 1);
    ev->time_us = has_time ? time_us : 0;
    ev->has_time = has_time;
    json_t *ext = copy_extensions(init->extensions, err);
    if (!ext)
        goto fail; /* err already says why */
    atomic_init(&ev->extensions, ext);

    const char *id = init->id;
    if (!id) {
        eddy_uuid7(uuid);
        id = uuid;
    }
    const char *ctype = init->datacontenttype;
    if (!ctype && !decoded && data)
        ctype = "application/json";
    if (!dup_into(&ev->id, id) || !dup_into(&ev->type, init->type) ||
        !dup_into(&ev->source, init->source) ||
        !dup_into(&ev->subject, init->subject) ||
        !dup_into(&ev->datacontenttype, ctype) ||
        !dup_into(&ev->dataschema, init->dataschema) ||
        !dup_into(&ev->dataversion, init->dataversion) ||
        !dup_into(&ev->correlation_id, init->correlation_id) ||
        !dup_into(&ev->causation_id, init->causation_id) ||
        !dup_into(&ev->data_base64, init->data_base64))
        goto nomem;
    atomic_init(&ev->data, json_incref((json_t *)data));
    return ev;

nomem:
    eddyi_error(err, EDDY_ENOMEM, "event: out of memory");
fail:
    if (ev)
        event_free(ev);
    return NULL;
}

eddy_event *eddy_event_new(const eddy_event_init *init, eddy_error *err)
{
    return eddyi_event_build(init, EDDYI_EVENT_NEW, true, err);
}

eddy_event *eddy_event_newf(const char *type, const char *source,
                            const char *subject, eddy_error *err,
                            const char *fmt, ...)
{
    json_t *data = NULL;
    if (fmt) {
        json_error_t jerr;
        va_list ap;
        va_start(ap, fmt);
        data = json_vpack_ex(&jerr, 0, fmt, ap);
        va_end(ap);
        if (!data) {
            eddyi_error(err, EDDY_EINVAL, "data: json_pack failed: %s", jerr.text);
            return NULL;
        }
    }
    eddy_event_init init = {
        .type = type, .source = source, .subject = subject, .data = data,
    };
    eddy_event *ev = eddy_event_new(&init, err);
    json_decref(data); /* the event holds its own reference */
    return ev;
}

eddy_event *eddy_event_ref(eddy_event *ev)
{
    if (ev)
        atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
    return ev;
}

void eddy_event_unref(eddy_event *ev)
{
    if (!ev)
        return;
    /* acq_rel: the thread that frees sees every other thread's last reads. */
    if (atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) == 1)
        event_free(ev);
}

/* ---- accessors ---------------------------------------------------------- */

const char *eddy_event_id(const eddy_event *ev) { return ev ? ev->id : NULL; }
const char *eddy_event_type(const eddy_event *ev) { return ev ? ev->type : NULL; }
const char *eddy_event_source(const eddy_event *ev) { return ev ? ev->source : NULL; }
const char *eddy_event_subject(const eddy_event *ev) { return ev ? ev->subject : NULL; }

const char *eddy_event_datacontenttype(const eddy_event *ev)
{
    return ev ? ev->datacontenttype : NULL;
}

const char *eddy_event_dataschema(const eddy_event *ev)
{
    return ev ? ev->dataschema : NULL;
}

const char *eddy_event_dataversion(const eddy_event *ev)
{
    return ev ? ev->dataversion : NULL;
}

const char *eddy_event_correlation_id(const eddy_event *ev)
{
    return ev ? ev->correlation_id : NULL;
}

const char *eddy_event_causation_id(const eddy_event *ev)
{
    return ev ? ev->causation_id : NULL;
}

const char *eddy_event_data_base64(const eddy_event *ev)
{
    return ev ? ev->data_base64 : NULL;
}

int64_t eddy_event_time(const eddy_event *ev) { return ev ? ev->time_us : 0; }

const json_t *eddy_event_data(const eddy_event *ev)
{
    return ev ? eddyi_event_data(ev) : NULL;
}

const json_t *eddy_event_extensions(const eddy_event *ev)
{
    return ev ? eddyi_event_extensions(ev) : NULL;
}

const json_t *eddy_event_extension(const eddy_event *ev, const char *name)
{
    if (!ev || !name)
        return NULL;
    json_t *x = atomic_load_explicit(&((eddy_event *)ev)->extensions,
                                     memory_order_acquire);
    return x ? json_object_get(x, name) : NULL;
}

/* ---- data and comparison ------------------------------------------------ */

int eddy_event_unpack(const eddy_event *ev, eddy_error *err, const char *fmt, ...)
{
    if (!ev || !fmt)
        return eddyi_error(err, EDDY_EINVAL, "data: no event or no format given");
    json_t *data = eddyi_event_data(ev);
    if (!data && ev->data_raw)
        return eddyi_error(err, EDDY_ECORRUPT,
                           "data: event %s: its stored data is not valid JSON "
                           "(or out of memory)", ev->id);
    if (!data)
        return eddyi_error(err, EDDY_EINVAL, "data: event %s has no data", ev->id);
    json_error_t jerr;
    va_list ap;
    va_start(ap, fmt);
    /* json_vunpack_ex does not modify the value (an "O" takes a reference,
     * which is atomic), so the cast is safe on a shared event. */
    int rc = json_vunpack_ex(data, &jerr, 0, fmt, ap);
    va_end(ap);
    if (rc != 0)
        return eddyi_error(err, EDDY_EINVAL, "data: %s", jerr.text);
    return EDDY_OK;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool json_eq(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return a == b;
    return json_equal(a, b) != 0;
}

bool eddy_event_equal(const eddy_event *a, const eddy_event *b)
{
    if (a == b)
        return true;
    if (!a || !b)
        return false;
    return str_eq(a->id, b->id) && str_eq(a->type, b->type) &&
           str_eq(a->source, b->source) && str_eq(a->subject, b->subject) &&
           a->has_time == b->has_time && a->time_us == b->time_us &&
           str_eq(a->datacontenttype, b->datacontenttype) &&
           str_eq(a->dataschema, b->dataschema) &&
           str_eq(a->dataversion, b->dataversion) &&
           str_eq(a->correlation_id, b->correlation_id) &&
           str_eq(a->causation_id, b->causation_id) &&
           str_eq(a->data_base64, b->data_base64) &&
           json_eq(eddyi_event_data(a), eddyi_event_data(b)) &&
           json_eq(eddyi_event_extensions(a), eddyi_event_extensions(b));
}
