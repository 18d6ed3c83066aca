/*
 * src/core/cloudevents.c - the CloudEvents 1.0 JSON event format: encoding,
 * strict decoding of single events and batches.
 *
 * The decoder only maps JSON onto an eddy_event_init (type checks, specversion,
 * time parsing, splitting extensions off); every attribute rule is checked by
 * eddyi_event_build(), the same code eddy_event_new() runs.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/event.h"
#include "event_internal.h"
#include "internal.h"

/* Top-level members that are not extension attributes. */
static const char *const known_members[] = {
    "specversion", "id", "type", "source", "subject", "time",
    "datacontenttype", "dataschema", "data", "data_base64",
    "dataversion", "correlationid", "causationid", NULL,
};

static bool is_known(const char *name)
{
    for (size_t i = 0; known_members[i]; i++)
        if (strcmp(known_members[i], name) == 0)
            return true;
    return false;
}

static const char *kind(const json_t *v)
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
 * Reads the string member `name` of `obj` into *out (borrowed from obj; NULL
 * when absent or null). Fails when it is another JSON type or holds a NUL.
 */
static int get_string(const json_t *obj, const char *name, const char **out,
                      eddy_error *err)
{
    const json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return EDDY_OK;
    if (!json_is_string(v))
        return eddyi_error(err, EDDY_EINVAL, "%s: must be a string, got %s", name,
                           kind(v));
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return eddyi_error(err, EDDY_EINVAL, "%s: contains a NUL character", name);
    *out = s;
    return EDDY_OK;
}

/*
 * Builds an event from a CloudEvents JSON object. With `copy_data` the data
 * is deep-copied (the object is the caller's and may change later); without,
 * the event takes a reference to the subtree (the decoder owns the tree).
 */
static eddy_event *event_from_object(const json_t *obj, bool copy_data,
                                     eddy_error *err)
{
    eddy_event *ev = NULL;
    json_t *ext = NULL;
    json_t *data = NULL;
    eddy_event_init init;
    memset(&init, 0, sizeof init);

    if (!obj || !json_is_object(obj)) {
        eddyi_error(err, EDDY_EINVAL, "event: expected a JSON object, got %s",
                    obj ? kind(obj) : "nothing");
        return NULL;
    }

    const json_t *sv = json_object_get(obj, "specversion");
    if (!sv || json_is_null(sv)) {
        eddyi_error(err, EDDY_EINVAL, "specversion: required attribute missing");
        return NULL;
    }
    if (!json_is_string(sv)) {
        eddyi_error(err, EDDY_EINVAL, "specversion: must be a string, got %s",
                    kind(sv));
        return NULL;
    }
    if (strcmp(json_string_value(sv), "1.0") != 0) {
        eddyi_error(err, EDDY_EINVAL, "specversion: must be \"1.0\", got \"%s\"",
                    json_string_value(sv));
        return NULL;
    }

    const char *time_text = NULL;
    if (get_string(obj, "id", &init.id, err) ||
        get_string(obj, "type", &init.type, err) ||
        get_string(obj, "source", &init.source, err) ||
        get_string(obj, "datacontenttype", &init.datacontenttype, err) ||
        get_string(obj, "dataschema", &init.dataschema, err) ||
        get_string(obj, "subject", &init.subject, err) ||
        get_string(obj, "time", &time_text, err) ||
        get_string(obj, "data_base64", &init.data_base64, err) ||
        get_string(obj, "dataversion", &init.dataversion, err) ||
        get_string(obj, "correlationid", &init.correlation_id, err) ||
        get_string(obj, "causationid", &init.causation_id, err))
        return NULL;

    bool has_time = time_text != NULL;
    if (has_time && eddy_time_parse(time_text, &init.time_us) != EDDY_OK) {
        eddyi_error(err, EDDY_EINVAL, "time: not an RFC 3339 timestamp: \"%s\"",
                    time_text);
        return NULL;
    }

    const json_t *d = json_object_get(obj, "data");
    if (d && !json_is_null(d)) {
        data = copy_data ? json_deep_copy(d) : json_incref((json_t *)d);
        if (!data) {
            eddyi_error(err, EDDY_ENOMEM, "data: out of memory");
            goto fail;
        }
        init.data = data;
    }

    /* Everything else is an extension; eddyi_event_build checks the names
     * and values and copies them. */
    ext = json_object();
    if (!ext) {
        eddyi_error(err, EDDY_ENOMEM, "event: out of memory");
        goto fail;
    }
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)obj, name, v) {
        if (is_known(name) || json_is_null(v))
            continue;
        if (json_object_set_nocheck(ext, name, v) != 0) {
            eddyi_error(err, EDDY_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
    }
    init.extensions = ext;

    ev = eddyi_event_build(&init, EDDYI_EVENT_DECODED, has_time, err);
fail:
    json_decref(ext);
    json_decref(data);
    return ev;
}

eddy_event *eddy_event_from_json(const json_t *obj, eddy_error *err)
{
    return event_from_object(obj, true, err);
}

eddy_event *eddy_event_decode(const char *text, size_t len, eddy_error *err)
{
    json_t *root = eddy_json_decode(text, len, err);
    if (!root)
        return NULL;
    /* The tree is ours: the event may keep a reference to its data subtree. */
    eddy_event *ev = event_from_object(root, false, err);
    json_decref(root);
    return ev;
}

int eddy_event_decode_batch(const char *text, size_t len, eddy_event ***events,
                            size_t *count, eddy_error *err)
{
    if (!events || !count)
        return eddyi_error(err, EDDY_EINVAL, "batch: no output given");
    *events = NULL;
    *count = 0;
    eddy_event **out = NULL;
    size_t n = 0, i = 0;
    int rc;
    eddy_error perr = {0};
    json_t *root = eddyi_json_decode(text, len, EDDY_BATCH_MAX_BYTES, "batch", &perr);
    if (!root) {
        if (err)
            *err = perr;
        return perr.code;
    }
    if (!json_is_array(root)) {
        rc = eddyi_error(err, EDDY_EINVAL,
                         "batch: expected a JSON array of events, got %s",
                         kind(root));
        goto fail;
    }
    n = json_array_size(root);
    /* calloc(0) may return NULL; always allocate at least one slot so that
     * an empty batch is a success with a freeable array. */
    out = calloc(n ? n : 1, sizeof *out);
    if (!out) {
        rc = eddyi_error(err, EDDY_ENOMEM, "batch: out of memory");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        eddy_error e;
        eddy_error_clear(&e);
        out[i] = event_from_object(json_array_get(root, i), false, &e);
        if (!out[i]) {
            rc = eddyi_error(err, e.code, "[%zu] %s", i, e.message);
            goto fail;
        }
    }
    json_decref(root);
    *events = out;
    *count = n;
    return EDDY_OK;
fail:
    eddy_event_array_free(out, i);
    json_decref(root);
    return rc;
}

void eddy_event_array_free(eddy_event **events, size_t count)
{
    if (!events)
        return;
    for (size_t i = 0; i < count; i++)
        eddy_event_unref(events[i]);
    free(events);
}

/* ---- encoding ------------------------------------------------------------ */

static int set_str(json_t *obj, const char *name, const char *value)
{
    if (!value)
        return 0;
    return json_object_set_new_nocheck(obj, name, json_string_nocheck(value));
}

/*
 * The CloudEvents object for `ev`, with the data (deep-copied) when
 * `with_data`. Nothing in it is shared with the event: the event may be read
 * by other threads, and even jansson's json_incref reads the reference count
 * non-atomically before its atomic increment.
 */
static json_t *to_object(const eddy_event *ev, bool with_data)
{
    char tbuf[EDDY_TIME_STRLEN];
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    if (set_str(obj, "specversion", "1.0") || set_str(obj, "id", ev->id) ||
        set_str(obj, "source", ev->source) || set_str(obj, "type", ev->type) ||
        set_str(obj, "subject", ev->subject) ||
        (ev->has_time &&
         set_str(obj, "time", eddy_time_format(ev->time_us, tbuf, sizeof tbuf))) ||
        set_str(obj, "datacontenttype", ev->datacontenttype) ||
        set_str(obj, "dataschema", ev->dataschema) ||
        set_str(obj, "dataversion", ev->dataversion) ||
        set_str(obj, "correlationid", ev->correlation_id) ||
        set_str(obj, "causationid", ev->causation_id))
        goto fail;
    const char *name;
    json_t *v;
    json_object_foreach(eddyi_event_extensions(ev), name, v) {
        if (json_object_set_new_nocheck(obj, name, json_deep_copy(v)) != 0)
            goto fail;
    }
    json_t *data = with_data ? eddyi_event_data(ev) : NULL;
    if (data && json_object_set_new_nocheck(obj, "data",
                                            json_deep_copy(data)) != 0)
        goto fail;
    if (set_str(obj, "data_base64", ev->data_base64))
        goto fail;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

json_t *eddy_event_to_json(const eddy_event *ev)
{
    return ev ? to_object(ev, true) : NULL;
}

/*
 * The encoder writes the envelope straight into one growing buffer and has
 * jansson dump the data and the extension values into it (json_dump_callback:
 * they are only read, never copied). The bytes are those json_dumps writes
 * for eddy_event_to_json's object with JSON_COMPACT (test_cloudevents checks
 * it on awkward events), at about a third of the cost: no JSON tree is built
 * for the envelope and nothing is copied twice.
 */
#define ENC_LIT(b, lit) eddyi_buf_put((b), (lit), sizeof(lit) - 1)

/* A JSON string, escaped as jansson escapes without flags: '"', '\' and
 * control characters; UTF-8 as it is (attributes are valid UTF-8: checked
 * when the event was made). */
static void enc_str(eddyi_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    eddyi_buf_put(b, "\"", 1);
    /* One pass: plain bytes are copied while looking for the end and for
     * what needs escaping (the text is read once, often from cold memory). */
    for (;;) {
        if (!eddyi_buf_reserve(b, 64))
            return;
        char *out = b->p + b->n, *end = out + 64;
        while (out < end) {
            unsigned char c = (unsigned char)*s;
            if (c < 0x20 || c == '"' || c == '\\')
                break;
            *out++ = (char)c;
            s++;
        }
        b->n = (size_t)(out - b->p);
        if (out == end)
            continue; /* more room */
        unsigned char c = (unsigned char)*s++;
        if (c == 0)
            break;
        char esc[6] = {'\\', 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        eddyi_buf_put(b, esc, elen);
    }
    eddyi_buf_put(b, "\"", 1);
}

/* ,"name":"value" when value is set; `key` is the literal ,"name": */
static void enc_attr(eddyi_buf *b, const char *key, size_t klen, const char *value)
{
    if (!value)
        return;
    eddyi_buf_put(b, key, klen);
    enc_str(b, value);
}

#define ENC_ATTR(b, name, value)                                              \
    enc_attr((b), ",\"" name "\":", sizeof(",\"" name "\":") - 1, (value))

static int enc_dump(const char *buf, size_t size, void *data)
{
    eddyi_buf *b = data;
    eddyi_buf_put(b, buf, size);
    return b->failed ? -1 : 0;
}

static void enc_json(eddyi_buf *b, const json_t *v)
{
    if (!b->failed &&
        json_dump_callback(v, enc_dump, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        b->failed = true;
}

char *eddy_event_encode(const eddy_event *ev, size_t *len)
{
    if (!ev)
        return NULL;
    if (ev->raw) { /* a stored event: the bytes it was read from */
        char *copy = malloc(ev->raw_len + 1);
        if (!copy)
            return NULL;
        memcpy(copy, ev->raw, ev->raw_len);
        copy[ev->raw_len] = '\0';
        if (len)
            *len = ev->raw_len;
        return copy;
    }
    eddyi_buf b = {0};
    ENC_LIT(&b, "{\"specversion\":\"1.0\"");
    ENC_ATTR(&b, "id", ev->id);
    ENC_ATTR(&b, "source", ev->source);
    ENC_ATTR(&b, "type", ev->type);
    ENC_ATTR(&b, "subject", ev->subject);
    if (ev->has_time) {
        char tbuf[EDDY_TIME_STRLEN];
        ENC_ATTR(&b, "time", eddy_time_format(ev->time_us, tbuf, sizeof tbuf));
    }
    ENC_ATTR(&b, "datacontenttype", ev->datacontenttype);
    ENC_ATTR(&b, "dataschema", ev->dataschema);
    ENC_ATTR(&b, "dataversion", ev->dataversion);
    ENC_ATTR(&b, "correlationid", ev->correlation_id);
    ENC_ATTR(&b, "causationid", ev->causation_id);
    const json_t *ext = eddyi_event_extensions(ev);
    if (!ext)
        b.failed = true;
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)ext, name, v) {
        eddyi_buf_put(&b, ",", 1);
        enc_str(&b, name);
        eddyi_buf_put(&b, ":", 1);
        enc_json(&b, v);
    }
    ENC_ATTR(&b, "data_base64", ev->data_base64);
    const json_t *data = eddyi_event_data(ev);
    if (data) {
        ENC_LIT(&b, ",\"data\":");
        enc_json(&b, data);
    }
    eddyi_buf_put(&b, "}", 1);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    b.p[b.n] = '\0';
    if (len)
        *len = b.n;
    return b.p;
}

char *eddy_event_encode_batch(eddy_event *const *events, size_t count, size_t *len)
{
    char **parts = NULL, *out = NULL;
    size_t *lens = NULL, total = 2, i = 0;
    if (count > 0) {
        parts = calloc(count, sizeof *parts);
        lens = calloc(count, sizeof *lens);
        if (!parts || !lens)
            goto done;
    }
    for (i = 0; i < count; i++) {
        parts[i] = events && events[i] ? eddy_event_encode(events[i], &lens[i]) : NULL;
        if (!parts[i])
            goto done;
        total += lens[i] + (i > 0);
    }
    out = malloc(total + 1);
    if (!out)
        goto done;
    size_t pos = 0;
    out[pos++] = '[';
    for (size_t j = 0; j < count; j++) {
        if (j > 0)
            out[pos++] = ',';
        memcpy(out + pos, parts[j], lens[j]);
        pos += lens[j];
    }
    out[pos++] = ']';
    out[pos] = '\0';
    if (len)
        *len = pos;
done:
    for (size_t j = 0; j < i; j++)
        free(parts[j]);
    free(parts);
    free(lens);
    return out;
}
