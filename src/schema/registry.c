/*
 * src/schema/registry.c - schemas per (event type, version), a validation
 * policy per type, and one contiguous chain of upcasters per type.
 *
 * The registry is filled at start-up and then only read; nothing in it
 * changes while events are validated or upcast, so those paths take no
 * lock. Types are found through a jansson object used as a hash table
 * (type name -> index into `types`).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "schema_internal.h"

typedef struct version_schema {
    char *version;
    eddy_schema *schema;
} version_schema;

typedef struct upcast_step {
    char *from, *to;
    eddy_upcast_fn fn;
    void *user;
} upcast_step;

typedef struct type_entry {
    char *type;
    unsigned policy;
    int policy_set;
    version_schema *versions;
    size_t nversions;
    upcast_step *steps;
    size_t nsteps;
} type_entry;

struct eddy_schema_registry {
    type_entry *types;
    size_t ntypes, cap;
    json_t *index; /* type name -> json integer index into types */
};

/* ---- versions ------------------------------------------------------------------ */

/* True for "1", "1.0", "10.2.3": digits separated by single dots. */
static int version_valid(const char *v)
{
    if (!v || !*v)
        return 0;
    int need_digit = 1;
    for (const char *p = v; *p; p++) {
        if (*p >= '0' && *p <= '9')
            need_digit = 0;
        else if (*p == '.' && !need_digit)
            need_digit = 1;
        else
            return 0;
    }
    return !need_digit;
}

int eddy_schema_version_cmp(const char *a, const char *b)
{
    int va = version_valid(a), vb = version_valid(b);
    if (!va || !vb) {
        if (va != vb)
            return va ? -1 : 1;
        return strcmp(a ? a : "", b ? b : "");
    }
    while (*a || *b) {
        /* compare one component numerically, without overflow: skip
         * leading zeros, then longer is larger, then lexical */
        while (*a == '0' && a[1] >= '0' && a[1] <= '9')
            a++;
        while (*b == '0' && b[1] >= '0' && b[1] <= '9')
            b++;
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        /* a missing component counts as 0 */
        int za = la == 0 || (la == 1 && *a == '0'), zb = lb == 0 || (lb == 1 && *b == '0');
        if (!(za && zb)) {
            if (la != lb)
                return la < lb ? -1 : 1;
            int c = strncmp(a, b, la);
            if (c != 0)
                return c < 0 ? -1 : 1;
        }
        a += la;
        b += lb;
        if (*a == '.')
            a++;
        if (*b == '.')
            b++;
    }
    return 0;
}

/* ---- lookup ------------------------------------------------------------------- */

static type_entry *find_type(const eddy_schema_registry *reg, const char *type)
{
    if (!reg || !type)
        return NULL;
    json_t *i = json_object_get(reg->index, type);
    return i ? &reg->types[json_integer_value(i)] : NULL;
}

static type_entry *get_or_add_type(eddy_schema_registry *reg, const char *type, eddy_error *err)
{
    type_entry *t = find_type(reg, type);
    if (t)
        return t;
    if (reg->ntypes == reg->cap) {
        size_t cap = reg->cap ? 2 * reg->cap : 8;
        type_entry *p = realloc(reg->types, cap * sizeof *p);
        if (!p)
            goto oom;
        reg->types = p;
        reg->cap = cap;
    }
    t = &reg->types[reg->ntypes];
    memset(t, 0, sizeof *t);
    t->type = eddyi_strdup(type);
    if (!t->type)
        goto oom;
    if (json_object_set_new(reg->index, type, json_integer((json_int_t)reg->ntypes)) != 0) {
        free(t->type);
        goto oom;
    }
    reg->ntypes++;
    return t;
oom:
    eddyi_error(err, EDDY_ENOMEM, "out of memory registering type %s", type);
    return NULL;
}

static const version_schema *find_version(const type_entry *t, const char *version)
{
    for (size_t i = 0; t && version && i < t->nversions; i++)
        if (eddy_schema_version_cmp(t->versions[i].version, version) == 0)
            return &t->versions[i];
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------ */

eddy_schema_registry *eddy_schema_registry_new(void)
{
    eddy_schema_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    reg->index = json_object();
    if (!reg->index) {
        free(reg);
        return NULL;
    }
    return reg;
}

void eddy_schema_registry_free(eddy_schema_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->ntypes; i++) {
        type_entry *t = &reg->types[i];
        for (size_t j = 0; j < t->nversions; j++) {
            free(t->versions[j].version);
            eddy_schema_free(t->versions[j].schema);
        }
        free(t->versions);
        for (size_t j = 0; j < t->nsteps; j++) {
            free(t->steps[j].from);
            free(t->steps[j].to);
        }
        free(t->steps);
        free(t->type);
    }
    free(reg->types);
    json_decref(reg->index);
    free(reg);
}

/* ---- registration ---------------------------------------------------------------- */

static int check_names(const eddy_schema_registry *reg, const char *type, const char *version,
                       eddy_error *err)
{
    if (!reg)
        return eddyi_error(err, EDDY_EINVAL, "schema registry is NULL");
    if (!type || !*type)
        return eddyi_error(err, EDDY_EINVAL, "event type must be a non-empty string");
    if (!version_valid(version))
        return eddyi_error(err, EDDY_EINVAL,
                           "%s: version \"%s\" is not a dotted number such as \"1.0\"", type,
                           version ? version : "(null)");
    return EDDY_OK;
}

/* Takes `schema` on success; frees it on failure. */
static int add_compiled(eddy_schema_registry *reg, const char *type, const char *version,
                        eddy_schema *schema, eddy_error *err)
{
    int rc = check_names(reg, type, version, err);
    if (rc != EDDY_OK)
        goto fail;
    type_entry *t = find_type(reg, type);
    if (find_version(t, version)) {
        rc = eddyi_error(err, EDDY_EEXIST, "%s %s: a schema is already registered", type,
                         version);
        goto fail;
    }
    if (!(t = get_or_add_type(reg, type, err))) {
        rc = EDDY_ENOMEM;
        goto fail;
    }
    version_schema *p = realloc(t->versions, (t->nversions + 1) * sizeof *p);
    if (!p)
        goto oom;
    t->versions = p;
    char *v = eddyi_strdup(version);
    if (!v)
        goto oom;
    t->versions[t->nversions].version = v;
    t->versions[t->nversions].schema = schema;
    t->nversions++;
    if (!t->policy_set)
        t->policy = EDDY_VALIDATE_ALWAYS;
    return EDDY_OK;
oom:
    rc = eddyi_error(err, EDDY_ENOMEM, "out of memory registering %s %s", type, version);
fail:
    eddy_schema_free(schema);
    return rc;
}

/* Prefixes err's message with "type version: " after a compile error. */
static int prefixed(eddy_error *err, const char *type, const char *version)
{
    if (!err)
        return EDDY_EINVAL;
    char msg[EDDY_ERROR_MESSAGE_MAX];
    memcpy(msg, err->message, sizeof msg);
    return eddyi_error(err, err->code, "%s %s schema: %s", type, version, msg);
}

int eddy_schema_registry_add(eddy_schema_registry *reg, const char *type, const char *version,
                             const json_t *schema, eddy_error *err)
{
    int rc = check_names(reg, type, version, err);
    if (rc != EDDY_OK)
        return rc;
    eddy_error local = {0};
    eddy_schema *s = eddy_schema_compile(schema, err ? err : &local);
    if (!s)
        return prefixed(err ? err : &local, type, version);
    return add_compiled(reg, type, version, s, err);
}

int eddy_schema_registry_add_text(eddy_schema_registry *reg, const char *type,
                                  const char *version, const char *text, size_t len,
                                  eddy_error *err)
{
    int rc = check_names(reg, type, version, err);
    if (rc != EDDY_OK)
        return rc;
    eddy_error local = {0};
    eddy_schema *s = eddy_schema_compile_text(text, len, err ? err : &local);
    if (!s)
        return prefixed(err ? err : &local, type, version);
    return add_compiled(reg, type, version, s, err);
}

int eddy_schema_registry_add_file(eddy_schema_registry *reg, const char *type,
                                  const char *version, const char *path, eddy_error *err)
{
    int rc = check_names(reg, type, version, err);
    if (rc != EDDY_OK)
        return rc;
    eddy_error local = {0};
    eddy_schema *s = eddy_schema_compile_file(path, err ? err : &local);
    if (!s)
        return prefixed(err ? err : &local, type, version);
    return add_compiled(reg, type, version, s, err);
}

int eddy_schema_registry_set_policy(eddy_schema_registry *reg, const char *type,
                                    unsigned policy, eddy_error *err)
{
    if (!reg || !type || !*type)
        return eddyi_error(err, EDDY_EINVAL, "set_policy: registry and a non-empty type needed");
    if (policy & ~(unsigned)EDDY_VALIDATE_ALWAYS)
        return eddyi_error(err, EDDY_EINVAL, "%s: unknown policy bits 0x%x", type, policy);
    type_entry *t = get_or_add_type(reg, type, err);
    if (!t)
        return EDDY_ENOMEM;
    t->policy = policy;
    t->policy_set = 1;
    return EDDY_OK;
}

unsigned eddy_schema_registry_policy(const eddy_schema_registry *reg, const char *type)
{
    const type_entry *t = find_type(reg, type);
    return t ? t->policy : EDDY_VALIDATE_OFF;
}

const eddy_schema *eddy_schema_registry_get(const eddy_schema_registry *reg, const char *type,
                                            const char *version)
{
    const version_schema *vs = find_version(find_type(reg, type), version);
    return vs ? vs->schema : NULL;
}

int eddy_schema_registry_add_upcaster(eddy_schema_registry *reg, const char *type,
                                      const char *from, const char *to, eddy_upcast_fn fn,
                                      void *user, eddy_error *err)
{
    int rc = check_names(reg, type, from, err);
    if (rc == EDDY_OK)
        rc = check_names(reg, type, to, err);
    if (rc != EDDY_OK)
        return rc;
    if (!fn)
        return eddyi_error(err, EDDY_EINVAL, "%s %s->%s: upcaster function is NULL", type, from,
                           to);
    if (eddy_schema_version_cmp(from, to) >= 0)
        return eddyi_error(err, EDDY_EINVAL,
                           "%s %s->%s: an upcaster must go to a greater version", type, from,
                           to);
    type_entry *t = find_type(reg, type);
    if (t && t->nsteps > 0) {
        const char *end = t->steps[t->nsteps - 1].to;
        if (eddy_schema_version_cmp(from, end) != 0)
            return eddyi_error(err, EDDY_EINVAL,
                               "%s %s->%s: the upcaster chain ends at %s, so the next upcaster "
                               "must start from %s (no gaps or branches)",
                               type, from, to, end, end);
    }
    if (!(t = get_or_add_type(reg, type, err)))
        return EDDY_ENOMEM;
    upcast_step *p = realloc(t->steps, (t->nsteps + 1) * sizeof *p);
    if (!p)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory registering an upcaster");
    t->steps = p;
    upcast_step *s = &t->steps[t->nsteps];
    s->from = eddyi_strdup(from);
    s->to = eddyi_strdup(to);
    if (!s->from || !s->to) {
        free(s->from);
        free(s->to);
        return eddyi_error(err, EDDY_ENOMEM, "out of memory registering an upcaster");
    }
    s->fn = fn;
    s->user = user;
    t->nsteps++;
    return EDDY_OK;
}

const char *eddy_schema_registry_latest(const eddy_schema_registry *reg, const char *type)
{
    const type_entry *t = find_type(reg, type);
    if (!t)
        return NULL;
    if (t->nsteps)
        return t->steps[t->nsteps - 1].to;
    const char *best = NULL;
    for (size_t i = 0; i < t->nversions; i++)
        if (!best || eddy_schema_version_cmp(t->versions[i].version, best) > 0)
            best = t->versions[i].version;
    return best;
}

/* ---- validation --------------------------------------------------------------------- */

/* Writes "1.0, 2.0" (the registered versions) into buf. */
static const char *version_list(const type_entry *t, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->nversions && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", t->versions[i].version);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

int eddy_schema_registry_validate_event(const eddy_schema_registry *reg, const eddy_event *ev,
                                        eddy_error *err)
{
    if (!reg || !ev)
        return eddyi_error(err, EDDY_EINVAL, "validate_event: registry and event needed");
    const char *type = eddy_event_type(ev);
    const type_entry *t = find_type(reg, type);
    if (!t || t->nversions == 0)
        return EDDY_OK;
    const char *version = eddy_event_dataversion(ev);
    char list[160];
    if (!version)
        return eddyi_error(err, EDDY_ESCHEMA,
                           "%s: event %s has no dataversion (schemas exist for %s)", type,
                           eddy_event_id(ev), version_list(t, list, sizeof list));
    const version_schema *vs = find_version(t, version);
    if (!vs)
        return eddyi_error(err, EDDY_ESCHEMA,
                           "%s %s: no schema registered for this version (schemas exist for "
                           "%s)",
                           type, version, version_list(t, list, sizeof list));
    if (eddy_event_data_base64(ev))
        return eddyi_error(err, EDDY_ESCHEMA,
                           "%s %s: event %s carries binary data, which a JSON schema cannot "
                           "validate",
                           type, version, eddy_event_id(ev));
    const json_t *data = eddy_event_data(ev);
    json_t *null_data = NULL;
    if (!data)
        data = null_data = json_null();
    eddy_error verr = {0};
    int rc = eddy_schema_validate(vs->schema, data, &verr);
    json_decref(null_data);
    if (rc != EDDY_OK)
        return eddyi_error(err, rc, "%s %s: %s", type, version, verr.message);
    return EDDY_OK;
}

/* ---- upcasting ---------------------------------------------------------------------- */

/* A copy of `ev` with new data and dataversion; every other attribute kept. */
static eddy_event *rebuild(const eddy_event *ev, json_t *data, const char *version,
                           eddy_error *err)
{
    eddy_event_init init = {0};
    init.type = eddy_event_type(ev);
    init.source = eddy_event_source(ev);
    init.id = eddy_event_id(ev);
    init.subject = eddy_event_subject(ev);
    init.time_us = eddy_event_time(ev);
    init.datacontenttype = eddy_event_datacontenttype(ev);
    init.dataschema = eddy_event_dataschema(ev);
    init.dataversion = version;
    init.data = data;
    init.correlation_id = eddy_event_correlation_id(ev);
    init.causation_id = eddy_event_causation_id(ev);
    /* eddy_event_new only takes its own reference (json_incref), which is
     * atomic in jansson; the extensions object itself is not modified. */
    const json_t *ext = eddy_event_extensions(ev);
    init.extensions = json_object_size(ext) ? (json_t *)ext : NULL;
    return eddy_event_new(&init, err);
}

eddy_event *eddy_schema_registry_upcast(const eddy_schema_registry *reg, eddy_event *ev,
                                        eddy_error *err)
{
    if (!reg || !ev) {
        eddyi_error(err, EDDY_EINVAL, "upcast: registry and event needed");
        return NULL;
    }
    const char *type = eddy_event_type(ev);
    const type_entry *t = find_type(reg, type);
    if (!t || t->nsteps == 0)
        return eddy_event_ref(ev);
    const char *latest = t->steps[t->nsteps - 1].to;
    const char *version = eddy_event_dataversion(ev);
    if (!version) {
        eddyi_error(err, EDDY_EVERSION, "%s: event %s has no dataversion to upcast from", type,
                    eddy_event_id(ev));
        return NULL;
    }
    if (eddy_schema_version_cmp(version, latest) == 0)
        return eddy_event_ref(ev);
    size_t first = t->nsteps;
    for (size_t i = 0; i < t->nsteps && first == t->nsteps; i++)
        if (eddy_schema_version_cmp(t->steps[i].from, version) == 0)
            first = i;
    if (first == t->nsteps) {
        eddyi_error(err, EDDY_EVERSION,
                    "%s %s: no upcaster starts at this version (the chain goes from %s to %s)",
                    type, version, t->steps[0].from, latest);
        return NULL;
    }
    if (eddy_event_data_base64(ev)) {
        eddyi_error(err, EDDY_EINVAL, "%s %s: binary data cannot be upcast", type, version);
        return NULL;
    }
    json_t *data = NULL;
    const json_t *in = eddy_event_data(ev);
    json_t *null_data = NULL;
    if (!in)
        in = null_data = json_null();
    for (size_t i = first; i < t->nsteps; i++) {
        const upcast_step *s = &t->steps[i];
        eddy_error uerr = {0};
        json_t *out = s->fn(in, s->user, &uerr);
        json_decref(data); /* the previous step's result */
        data = out;
        in = out;
        if (!out) {
            if (uerr.code == EDDY_OK)
                eddyi_error(err, EDDY_EINVAL, "%s %s->%s: upcaster failed", type, s->from,
                            s->to);
            else
                eddyi_error(err, uerr.code, "%s %s->%s: %s", type, s->from, s->to,
                            uerr.message);
            json_decref(null_data);
            return NULL;
        }
    }
    json_decref(null_data);
    eddy_event *up = rebuild(ev, data, latest, err);
    json_decref(data);
    return up;
}

/* ---- hooks -------------------------------------------------------------------------- */

static int check_when(const eddy_event *ev, void *reg, unsigned when, eddy_error *err)
{
    const eddy_schema_registry *r = reg;
    if (!r || !ev)
        return eddyi_error(err, EDDY_EINVAL, "schema hook: registry and event needed");
    if (!(eddy_schema_registry_policy(r, eddy_event_type(ev)) & when))
        return EDDY_OK;
    return eddy_schema_registry_validate_event(r, ev, err);
}

int eddy_schema_registry_check_hook(const eddy_event *ev, void *reg, eddy_error *err)
{
    return check_when(ev, reg, EDDY_VALIDATE_ON_APPEND, err);
}

int eddy_schema_registry_publish_hook(const eddy_event *ev, void *reg, eddy_error *err)
{
    return check_when(ev, reg, EDDY_VALIDATE_ON_PUBLISH, err);
}

eddy_event *eddy_schema_registry_upcast_hook(eddy_event *ev, void *reg, eddy_error *err)
{
    return eddy_schema_registry_upcast(reg, ev, err);
}
