/*
 * src/es/aggregate.c - one aggregate: its state, version and the events its
 * commands raised but nobody saved yet.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "es_internal.h"

eddy_aggregate *eddyi_aggregate_new(eddy_repository *repo, const char *id,
                                    eddy_error *err)
{
    const eddy_aggregate_type *t = repo->type;
    eddy_aggregate *agg = calloc(1, sizeof *agg);
    if (!agg)
        goto fail;
    agg->repo = repo;
    agg->id = eddyi_strdup(id);
    size_t nlen = strlen(t->name), ilen = strlen(id);
    agg->stream_id = malloc(nlen + 1 + ilen + 1);
    agg->state = calloc(1, t->state_size);
    if (!agg->id || !agg->stream_id || !agg->state)
        goto fail;
    memcpy(agg->stream_id, t->name, nlen);
    agg->stream_id[nlen] = '-';
    memcpy(agg->stream_id + nlen + 1, id, ilen + 1);
    if (t->init)
        t->init(agg->state);
    return agg;
fail:
    if (agg) {
        free(agg->state); /* init never ran: nothing for fini to release */
        free(agg->stream_id);
        free(agg->id);
        free(agg);
    }
    eddyi_error(err, EDDY_ENOMEM, "out of memory loading %s %s", t->name, id);
    return NULL;
}

void eddyi_aggregate_reset(eddy_aggregate *agg)
{
    const eddy_aggregate_type *t = agg->repo->type;
    if (t->fini)
        t->fini(agg->state);
    memset(agg->state, 0, t->state_size);
    if (t->init)
        t->init(agg->state);
}

void eddyi_aggregate_clear_pending(eddy_aggregate *agg)
{
    for (size_t i = 0; i < agg->npending; i++)
        eddy_event_unref(agg->pending[i]);
    agg->npending = 0;
}

void eddy_aggregate_free(eddy_aggregate *agg)
{
    if (!agg)
        return;
    eddyi_aggregate_clear_pending(agg);
    free(agg->pending);
    if (agg->repo->type->fini)
        agg->repo->type->fini(agg->state);
    free(agg->state);
    free(agg->stream_id);
    free(agg->id);
    free(agg);
}

const char *eddy_aggregate_id(const eddy_aggregate *agg)
{
    return agg->id;
}

void *eddy_aggregate_state(eddy_aggregate *agg)
{
    return agg->state;
}

int64_t eddy_aggregate_version(const eddy_aggregate *agg)
{
    return agg->version;
}

size_t eddy_aggregate_uncommitted_count(const eddy_aggregate *agg)
{
    return agg->npending;
}

const eddy_event *eddy_aggregate_uncommitted(const eddy_aggregate *agg, size_t i)
{
    return i < agg->npending ? agg->pending[i] : NULL;
}

int eddy_aggregate_raise_event(eddy_aggregate *agg, eddy_event *ev,
                               eddy_error *err)
{
    if (!agg || !ev)
        return eddyi_error(err, EDDY_EINVAL, "raise: NULL %s",
                           agg ? "event" : "aggregate");
    const char *subject = eddy_event_subject(ev);
    if (!subject || strcmp(subject, agg->id) != 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "raise %s on %s %s: the event's subject is %s%s%s, "
                           "not the aggregate id",
                           eddy_event_type(ev), agg->repo->type->name, agg->id,
                           subject ? "\"" : "", subject ? subject : "absent",
                           subject ? "\"" : "");
    /* Make room first, so that an event the state accepted is never lost
     * for want of memory. */
    if (agg->npending == agg->cap) {
        size_t cap = agg->cap ? agg->cap * 2 : 4;
        eddy_event **bigger = realloc(agg->pending, cap * sizeof *bigger);
        if (!bigger)
            return eddyi_error(err, EDDY_ENOMEM, "raise: out of memory");
        agg->pending = bigger;
        agg->cap = cap;
    }
    eddy_error aerr = {0};
    int rc = agg->repo->type->apply(agg->state, ev, &aerr);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "%s %s refused %s: %s", agg->repo->type->name,
                           agg->id, eddy_event_type(ev),
                           aerr.message[0] ? aerr.message : eddy_strerror(rc));
    agg->pending[agg->npending++] = eddy_event_ref(ev);
    return EDDY_OK;
}

int eddy_aggregate_raise(eddy_aggregate *agg, eddy_error *err, const char *type,
                         const char *fmt, ...)
{
    if (!agg || !type || !*type)
        return eddyi_error(err, EDDY_EINVAL, "raise: %s",
                           agg ? "empty event type" : "NULL aggregate");
    json_t *data = NULL;
    if (fmt) {
        json_error_t jerr;
        va_list ap;
        va_start(ap, fmt);
        data = json_vpack_ex(&jerr, 0, fmt, ap);
        va_end(ap);
        if (!data)
            return eddyi_error(err, EDDY_EINVAL, "raise %s: data: %s", type,
                               jerr.text);
    }
    const eddy_aggregate_type *t = agg->repo->type;
    eddy_event_init init = {
        .type = type,
        .source = agg->repo->source,
        .subject = agg->id,
        .dataversion = t->dataversion ? t->dataversion(type) : NULL,
        .data = data,
    };
    eddy_error eerr = {0};
    eddy_event *ev = eddy_event_new(&init, &eerr);
    json_decref(data); /* the event holds its own reference */
    if (!ev)
        return eddyi_error(err, eerr.code ? eerr.code : EDDY_EINVAL, "raise %s: %s",
                           type, eerr.message);
    int rc = eddy_aggregate_raise_event(agg, ev, err);
    eddy_event_unref(ev);
    return rc;
}
