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
 * Compact text of the event. The data is dumped in place (json_dumps only
 * reads) and spliced in before the envelope's closing brace, so encoding
 * never copies the data or touches its reference count.
 */
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
    char *text = NULL, *data = NULL, *out = NULL;
    json_t *obj = to_object(ev, false);
    if (!obj)
        goto done;
    text = json_dumps(obj, JSON_COMPACT);
    if (!text)
        goto done;
    size_t tlen = strlen(text);
    const json_t *evdata = eddyi_event_data(ev);
    if (!evdata) {
        out = text;
        text = NULL;
        if (len)
            *len = tlen;
        goto done;
    }
    data = json_dumps(evdata, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!data)
        goto done;
    static const char key[] = ",\"data\":";
    size_t dlen = strlen(data), klen = sizeof key - 1;
    /* text is "{...}" with at least specversion inside */
    size_t total = tlen - 1 + klen + dlen + 1;
    out = malloc(total + 1);
    if (!out)
        goto done;
    memcpy(out, text, tlen - 1);
    memcpy(out + tlen - 1, key, klen);
    memcpy(out + tlen - 1 + klen, data, dlen);
    out[total - 1] = '}';
    out[total] = '\0';
    if (len)
        *len = total;
done:
    free(data);
    free(text);
    json_decref(obj);
    return out;
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
