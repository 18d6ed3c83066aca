/*
 * src/store/cursor.c - cursors over the store: stream reads, the global log
 * and queries, paged by key (keyset pagination: each page is one short read
 * transaction starting after the last key seen), never the whole result in
 * memory.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../core/pattern.h"
#include "store_impl.h"

struct eddy_cursor {
    eddy_store *store;
    eddyi_read_spec spec;
    int64_t next_key;
    size_t limit; /* 0: none */
    size_t delivered;
    bool exhausted;
    int error;                /* the last call's error code; EDDY_OK */
    size_t n, i;              /* rows in the page, next row */
    eddy_event *current;      /* the event handed out last (transformed) */
    eddyi_row rows[EDDYI_PAGE_ROWS];
};

void eddyi_read_spec_clear(eddyi_read_spec *spec)
{
    free(spec->stream_id);
    for (size_t i = 0; i < spec->type_count; i++)
        free(spec->types[i]);
    free(spec->types);
    for (size_t i = 0; i < spec->prefix_count; i++) {
        free(spec->prefixes[i]);
        free(spec->prefix_ends[i]);
    }
    free(spec->prefixes);
    free(spec->prefix_ends);
    free(spec->event_id);
    memset(spec, 0, sizeof *spec);
}

int eddyi_read_spec_set_types(eddyi_read_spec *spec, const char *const *types,
                              size_t count, eddy_error *err)
{
    if (count == 0)
        return EDDY_OK;
    if (!types)
        return eddyi_error(err, EDDY_EINVAL, "%zu types given but no array",
                           count);
    if (count > 500)
        return eddyi_error(err, EDDY_EINVAL,
                           "%zu types in one query, the limit is 500", count);
    spec->types = calloc(count, sizeof *spec->types);
    if (!spec->types)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        if (!types[i] || !*types[i])
            return eddyi_error(err, EDDY_EINVAL, "query type %zu is %s", i,
                               types[i] ? "empty" : "NULL");
        if (!(spec->types[i] = eddyi_strdup(types[i])))
            return eddyi_error(err, EDDY_ENOMEM, "out of memory");
        spec->type_count = i + 1;
    }
    return EDDY_OK;
}

static int add_string(char ***v, size_t *n, const char *text, size_t len,
                      eddy_error *err)
{
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    *v = nv;
    if (!(nv[*n] = malloc(len + 1)))
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    memcpy(nv[*n], text, len);
    nv[*n][len] = '\0';
    (*n)++;
    return EDDY_OK;
}

/* Adds prefix `p` (`len` bytes, ending with '.') and its range's end. */
static int add_prefix(eddyi_read_spec *spec, const char *p, size_t len,
                      eddy_error *err)
{
    char **ends = realloc(spec->prefix_ends,
                          (spec->prefix_count + 1) * sizeof *ends);
    if (!ends)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    spec->prefix_ends = ends;
    size_t n = spec->prefix_count;
    int rc = add_string(&spec->prefixes, &n, p, len, err);
    if (rc != EDDY_OK)
        return rc;
    if (!(ends[spec->prefix_count] = malloc(len + 1))) {
        free(spec->prefixes[spec->prefix_count]);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    }
    memcpy(ends[spec->prefix_count], p, len + 1);
    ends[spec->prefix_count][len - 1]++; /* "order." -> "order/" */
    spec->prefix_count = n;
    return EDDY_OK;
}

int eddyi_read_spec_add_patterns(eddyi_read_spec *spec,
                                 const char *const *patterns, size_t count,
                                 bool *all, eddy_error *err)
{
    *all = false;
    if (count && !patterns)
        return eddyi_error(err, EDDY_EINVAL,
                           "%zu patterns given but no array", count);
    if (count > 500)
        return eddyi_error(err, EDDY_EINVAL,
                           "%zu patterns, the limit is 500", count);
    for (size_t i = 0; i < count; i++) {
        const char *p = patterns[i];
        if (!p)
            return eddyi_error(err, EDDY_EINVAL, "pattern %zu is NULL", i);
        /* The same rules as every other subscription's (core/pattern.h). */
        eddyi_pattern pat;
        int rc = eddyi_pattern_parse(p, &pat, err);
        if (rc != EDDY_OK)
            return rc;
        if (pat.kind == EDDYI_PATTERN_ALL)
            *all = true;
        else if (pat.kind == EDDYI_PATTERN_PREFIX)
            rc = add_prefix(spec, p, pat.prefix_len, err);
        else
            rc = add_string(&spec->types, &spec->type_count, p, strlen(p),
                            err);
        if (rc != EDDY_OK)
            return rc;
    }
    return EDDY_OK;
}

int eddyi_read_spec_copy_filter(eddyi_read_spec *dst,
                                const eddyi_read_spec *src, eddy_error *err)
{
    int rc = EDDY_OK;
    for (size_t i = 0; i < src->type_count && rc == EDDY_OK; i++)
        rc = add_string(&dst->types, &dst->type_count, src->types[i],
                        strlen(src->types[i]), err);
    for (size_t i = 0; i < src->prefix_count && rc == EDDY_OK; i++)
        rc = add_prefix(dst, src->prefixes[i], strlen(src->prefixes[i]), err);
    return rc;
}

int eddyi_cursor_open(eddy_store *s, eddyi_read_spec *spec, int64_t start_key,
                      size_t limit, eddy_cursor **out, eddy_error *err)
{
    eddy_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    c->store = s;
    c->spec = *spec;
    memset(spec, 0, sizeof *spec);
    c->next_key = start_key;
    c->limit = limit;
    *out = c;
    return EDDY_OK;
}

/* The next record into `*out`: 1, 0 at the end, or an error code negated
 * (with `err` filled). */
static int cursor_step(eddy_cursor *c, eddy_record *out, eddy_error *err)
{
    eddy_event_unref(c->current);
    c->current = NULL;
    if (c->limit && c->delivered >= c->limit)
        return 0;
    if (c->i == c->n) {
        eddyi_rows_clear(c->rows, c->n);
        c->n = c->i = 0;
        if (c->exhausted)
            return 0;
        size_t want = EDDYI_PAGE_ROWS;
        if (c->limit && c->limit - c->delivered < want)
            want = c->limit - c->delivered;
        eddy_store *s = c->store;
        int rc = s->backend->read_page(s->impl, &c->spec, c->next_key, want,
                                       EDDYI_PAGE_BYTES, c->rows, &c->n, err);
        if (rc != EDDY_OK)
            return -rc;
        if (c->n == 0) {
            c->exhausted = true;
            return 0;
        }
        const eddyi_row *last = &c->rows[c->n - 1];
        int64_t key = c->spec.stream_id ? last->stream_version : last->position;
        c->next_key = c->spec.descending ? key - 1 : key + 1;
        if (c->spec.descending && c->next_key < 1)
            c->exhausted = true;
    }
    eddyi_row *r = &c->rows[c->i];
    const eddy_store_options *o = &c->store->opts;
    eddy_event *ev;
    if (o->transform) {
        eddy_error terr = {0};
        ev = o->transform(r->event, o->transform_user, &terr);
        if (!ev) {
            int code = terr.code != EDDY_OK ? terr.code : EDDY_EINVAL;
            if (err) {
                *err = terr;
                if (terr.code == EDDY_OK)
                    eddyi_error(err, code,
                                "transform hook failed on the event at "
                                "position %lld",
                                (long long)r->position);
            }
            return -code;
        }
    } else {
        ev = eddy_event_ref(r->event);
    }
    c->current = ev;
    out->event = ev;
    out->stream_id = r->stream_id;
    out->stream_version = r->stream_version;
    out->position = r->position;
    out->recorded_us = r->recorded_us;
    c->i++;
    c->delivered++;
    return 1;
}

bool eddy_cursor_next(eddy_cursor *c, eddy_record *out, eddy_error *err)
{
    if (!c || !out) {
        eddyi_error(err, EDDY_EINVAL, "cursor_next: NULL argument");
        if (c)
            c->error = EDDY_EINVAL;
        return false;
    }
    int rc = cursor_step(c, out, err);
    c->error = rc < 0 ? -rc : EDDY_OK;
    if (rc == 0 && err)
        eddy_error_clear(err);
    return rc > 0;
}

int eddy_cursor_error(const eddy_cursor *c)
{
    return c ? c->error : EDDY_EINVAL;
}

void eddy_cursor_free(eddy_cursor *c)
{
    if (!c)
        return;
    eddy_event_unref(c->current);
    eddyi_rows_clear(c->rows, c->n);
    eddyi_read_spec_clear(&c->spec);
    free(c);
}

int eddy_store_read_stream(eddy_store *s, const char *stream_id,
                           int64_t from_version, eddy_direction dir,
                           size_t limit, eddy_cursor **out, eddy_error *err)
{
    if (!s || !out)
        return eddyi_error(err, EDDY_EINVAL, "read_stream: NULL argument");
    int rc = eddyi_stream_id_check(stream_id, err);
    if (rc != EDDY_OK)
        return rc;
    if (from_version < 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "stream %s: from_version %lld is negative",
                           stream_id, (long long)from_version);
    if (dir != EDDY_FORWARD && dir != EDDY_BACKWARD)
        return eddyi_error(err, EDDY_EINVAL, "unknown read direction %d",
                           (int)dir);
    eddyi_read_spec spec = {.descending = dir == EDDY_BACKWARD};
    if (!(spec.stream_id = eddyi_strdup(stream_id)))
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    rc = eddyi_cursor_open(s, &spec, from_version, limit, out, err);
    eddyi_read_spec_clear(&spec);
    return rc;
}

int eddy_txn_read_stream(eddy_txn *txn, const char *stream_id,
                         int64_t from_version, eddy_direction dir,
                         size_t limit, eddy_cursor **out, eddy_error *err)
{
    if (!txn)
        return eddyi_error(err, EDDY_EINVAL, "txn_read_stream: no transaction");
    int rc = eddy_store_read_stream(txn->store, stream_id, from_version, dir,
                                    limit, out, err);
    if (rc == EDDY_OK)
        (*out)->spec.on_writer = true;
    return rc;
}

int eddy_store_read_all(eddy_store *s, int64_t from_position, size_t limit,
                        eddy_cursor **out, eddy_error *err)
{
    if (!s || !out)
        return eddyi_error(err, EDDY_EINVAL, "read_all: NULL argument");
    if (from_position < 0)
        return eddyi_error(err, EDDY_EINVAL, "from_position %lld is negative",
                           (long long)from_position);
    eddyi_read_spec spec = {0};
    return eddyi_cursor_open(s, &spec, from_position, limit, out, err);
}

int eddy_store_read_event(eddy_store *s, const char *event_id,
                          eddy_cursor **out, eddy_error *err)
{
    if (!s || !out)
        return eddyi_error(err, EDDY_EINVAL, "read_event: NULL argument");
    if (!event_id || !*event_id)
        return eddyi_error(err, EDDY_EINVAL, "read_event: %s event id",
                           event_id ? "empty" : "NULL");
    eddyi_read_spec spec = {0};
    if (!(spec.event_id = eddyi_strdup(event_id)))
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    int rc = eddyi_cursor_open(s, &spec, 0, 1, out, err);
    eddyi_read_spec_clear(&spec);
    return rc;
}

int eddy_store_query(eddy_store *s, const eddy_query *q, eddy_cursor **out,
                     eddy_error *err)
{
    if (!s || !q || !out)
        return eddyi_error(err, EDDY_EINVAL, "query: NULL argument");
    if (q->min_position < 0 || q->max_position < 0)
        return eddyi_error(err, EDDY_EINVAL, "query: negative position bound");
    if (q->max_position && q->min_position > q->max_position)
        return eddyi_error(err, EDDY_EINVAL,
                           "query: min_position %lld > max_position %lld",
                           (long long)q->min_position,
                           (long long)q->max_position);
    if (q->from_time_us && q->to_time_us && q->from_time_us >= q->to_time_us)
        return eddyi_error(err, EDDY_EINVAL,
                           "query: from_time_us %lld is not before "
                           "to_time_us %lld",
                           (long long)q->from_time_us,
                           (long long)q->to_time_us);
    eddyi_read_spec spec = {
        .from_time_us = q->from_time_us,
        .to_time_us = q->to_time_us,
        .min_position = q->min_position,
        .max_position = q->max_position,
        .descending = q->newest_first,
    };
    int rc = EDDY_OK;
    if (q->stream_id) {
        if ((rc = eddyi_stream_id_check(q->stream_id, err)) != EDDY_OK)
            goto fail;
        if (!(spec.stream_id = eddyi_strdup(q->stream_id))) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            goto fail;
        }
    }
    rc = eddyi_read_spec_set_types(&spec, q->types, q->type_count, err);
    if (rc != EDDY_OK)
        goto fail;
    /* With a stream the key is the stream version, whose order is the
     * position order within the stream; the position bounds filter. */
    int64_t start;
    if (spec.stream_id)
        start = spec.descending ? INT64_MAX : 1;
    else if (spec.descending)
        start = spec.max_position ? spec.max_position : INT64_MAX;
    else
        start = spec.min_position;
    rc = eddyi_cursor_open(s, &spec, start, q->limit, out, err);
fail:
    eddyi_read_spec_clear(&spec);
    return rc;
}
