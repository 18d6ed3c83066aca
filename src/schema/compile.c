/*
 * src/schema/compile.c - compiles a draft-07 JSON Schema into eddyi_snode
 * trees: checks every keyword's value, compiles patterns once, resolves
 * $refs, checks the schema against the draft-07 metaschema, and rejects
 * keywords it does not implement.
 *
 * $ref resolution (draft-07, RFC 3986): every schema object's "$id" (unless
 * it sits beside a "$ref", which draft-07 says to ignore) changes the base
 * URI of that object and everything below it. Before compiling, each
 * document is walked once to index its $ids (absolute URIs, and "#name"
 * anchors). A $ref is resolved against the base in effect where it is
 * written; the part before "#" names a resource: an indexed $id, a loaded
 * document, the draft-07 metaschema (built in), or a file under one of the
 * caller's remote directories (eddy_schema_options.remotes), loaded once;
 * the fragment is empty, a JSON pointer into that resource, or an anchor.
 * Targets are compiled on demand, so a $ref may point anywhere, even into a
 * keyword eddy does not know ("#/tilda~0field"): such a keyword is an error
 * only when nothing refers into it (a misspelt keyword is still reported).
 *
 * A cycle of subschemas applied to the same value (allOf/anyOf/oneOf/not/
 * if/then/else/dependencies/$ref without descending into the value) would
 * never end: it is a schema error, found at compile time.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/internal.h"
#include "schema_internal.h"

/* Schemas nested deeper than this are refused (their recursion is bounded). */
#define MAX_SCHEMA_DEPTH 512
/* A remote schema file larger than this is refused. */
#define MAX_REMOTE_BYTES ((size_t)16 << 20)
/* The draft-07 metaschema's URI, without its empty fragment. */
#define METASCHEMA_URI "http://json-schema.org/draft-07/schema"

/* A pointer -> pointer map (open addressing), for json_t -> node lookups
 * and as a set. */
typedef struct ptrmap {
    const void **keys;
    void **values;
    size_t cap, count;
} ptrmap;

/* One loaded document: the root schema, a remote file, the metaschema. */
typedef struct sdoc {
    json_t *root; /* own reference */
    char *uri;    /* its retrieval URI, "" when it has none */
} sdoc;

/* An indexed "$id": the URI it defines (absolute when the base was), the
 * schema object, and the base in effect above it (before its own $id). */
typedef struct sid {
    char *uri;
    const json_t *node;
    char *parent_base;
} sid;

/* A node with a $ref, where it was written, and the base it resolves
 * against. */
typedef struct sref {
    eddyi_snode *node;
    char *where;
    char *base;
} sref;

/* A keyword eddy does not implement, fine only if a $ref points into it. */
typedef struct sunknown {
    const json_t *value;
    char *where;
    char *name;
} sunknown;

typedef struct cctx {
    eddy_schema *s;
    eddy_error *err;
    int rc;
    const eddy_schema_options *opts;
    bool metaschema; /* compiling the metaschema itself: no check against it */
    char *ptr; /* JSON pointer of the value being compiled, in the schema */
    size_t len, cap;
    const char *base; /* base URI of the value being compiled */
    int depth;
    sdoc *docs;
    size_t ndocs, doccap;
    sid *ids;
    size_t nids, idcap;
    sref *refs;
    size_t nrefs, refcap;
    sunknown *unknowns;
    size_t nunknowns, unknowncap;
    ptrmap compiled; /* json_t -> eddyi_snode */
    ptrmap reached;  /* json_t values a $ref resolution walked through */
} cctx;

static eddyi_snode *compile_node(cctx *c, const json_t *v);

/* ---- small containers ---------------------------------------------------- */

/* Grows array `*p` of `*cap` elements of `size` to hold `count + 1`. */
static int grow(void **p, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *np = realloc(*p, ncap * size);
    if (!np)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

static size_t ptr_hash(const void *p, size_t cap)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 7) & (cap - 1);
}

static void *ptrmap_get(const ptrmap *m, const void *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = ptr_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (m->keys[i] == key)
            return m->values[i];
    }
}

static bool ptrmap_has(const ptrmap *m, const void *key)
{
    if (!m->cap)
        return false;
    for (size_t i = ptr_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return false;
        if (m->keys[i] == key)
            return true;
    }
}

/* Sets key -> value (value may be NULL for a set). 0, or -1 out of memory. */
static int ptrmap_put(ptrmap *m, const void *key, void *value)
{
    if (2 * (m->count + 1) > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        const void **keys = calloc(ncap, sizeof *keys);
        void **values = calloc(ncap, sizeof *values);
        if (!keys || !values) {
            free(keys);
            free(values);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i])
                continue;
            size_t j = ptr_hash(m->keys[i], ncap);
            while (keys[j])
                j = (j + 1) & (ncap - 1);
            keys[j] = m->keys[i];
            values[j] = m->values[i];
        }
        free(m->keys);
        free(m->values);
        m->keys = keys;
        m->values = values;
        m->cap = ncap;
    }
    size_t i = ptr_hash(key, m->cap);
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i])
        m->count++;
    m->keys[i] = key;
    m->values[i] = value;
    return 0;
}

static void ptrmap_free(ptrmap *m)
{
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

/* ---- errors and the schema pointer ---------------------------------------- */

static const char *where(const cctx *c)
{
    return c->len ? c->ptr : "(root)";
}

/* Records the first failure; returns NULL so callers can `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static void *fail(cctx *c, int code,
                                                        const char *fmt, ...)
{
    if (c->rc != EDDY_OK)
        return NULL;
    char msg[EDDY_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rc = code;
    eddyi_error(c->err, code, "%s: %s", where(c), msg);
    return NULL;
}

static void *oom(cctx *c)
{
    if (c->rc == EDDY_OK) {
        c->rc = EDDY_ENOMEM;
        eddyi_error(c->err, EDDY_ENOMEM, "out of memory compiling a schema");
    }
    return NULL;
}

static int reserve(cctx *c, size_t more)
{
    if (c->len + more + 1 <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : 128;
    while (cap < c->len + more + 1)
        cap *= 2;
    char *p = realloc(c->ptr, cap);
    if (!p) {
        oom(c);
        return -1;
    }
    c->ptr = p;
    c->cap = cap;
    return 0;
}

/* Appends "/<segment>" (escaped as RFC 6901 wants) to the pointer and
 * returns the previous length for pop(). */
static size_t push(cctx *c, const char *seg)
{
    size_t saved = c->len;
    size_t n = strlen(seg);
    if (reserve(c, 2 * n + 1) != 0)
        return saved;
    c->ptr[c->len++] = '/';
    for (size_t i = 0; i < n; i++) {
        if (seg[i] == '~' || seg[i] == '/') {
            c->ptr[c->len++] = '~';
            c->ptr[c->len++] = seg[i] == '~' ? '0' : '1';
        } else {
            c->ptr[c->len++] = seg[i];
        }
    }
    c->ptr[c->len] = '\0';
    return saved;
}

static size_t push_index(cctx *c, size_t i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", i);
    return push(c, buf);
}

/* Replaces the whole pointer with `ptr` (already escaped). */
static int set_ptr(cctx *c, const char *ptr)
{
    size_t n = strlen(ptr);
    c->len = 0;
    if (reserve(c, n) != 0)
        return -1;
    memcpy(c->ptr, ptr, n + 1);
    c->len = n;
    return 0;
}

static void pop(cctx *c, size_t saved)
{
    c->len = saved;
    if (c->ptr)
        c->ptr[saved] = '\0';
}

/* ---- value checks ---------------------------------------------------------- */

static int is_schema(const json_t *v)
{
    return json_is_object(v) || json_is_boolean(v);
}

/* A non-negative integer; 2.0 counts, as the test suite requires. */
static int get_count(cctx *c, const json_t *v, long long *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (long long)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d <= 9007199254740992.0 && floor(d) == d) {
            *out = (long long)d;
            return 0;
        }
    }
    fail(c, EDDY_EINVAL, "must be a non-negative integer");
    return -1;
}

static int get_num(cctx *c, const json_t *v, eddyi_num *out)
{
    if (!json_is_number(v)) {
        fail(c, EDDY_EINVAL, "must be a number");
        return -1;
    }
    out->set = 1;
    out->is_int = json_is_integer(v);
    out->i = out->is_int ? json_integer_value(v) : 0;
    out->d = json_number_value(v);
    return 0;
}

/* Compiles a child schema found at keyword / [index or name]. */
static eddyi_snode *child(cctx *c, const json_t *v)
{
    if (!is_schema(v))
        return fail(c, EDDY_EINVAL, "must be a schema (an object or a boolean)");
    return compile_node(c, v);
}

static int compile_regex(cctx *c, const char *src, size_t len, eddyi_regex *re)
{
    int code;
    PCRE2_SIZE off;
    /* DOLLAR_ENDONLY: ECMA-262's "$" (without the m flag) matches only at
     * the very end, not before a final newline as PCRE's does. */
    re->code = pcre2_compile((PCRE2_SPTR)src, len, PCRE2_UTF | PCRE2_DOLLAR_ENDONLY,
                             &code, &off, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        fail(c, EDDY_EINVAL, "invalid regular expression \"%.100s\" at offset %zu: %s",
             src, (size_t)off, (const char *)msg);
        return -1;
    }
    /* JIT is an optimisation only; the interpreter is used if it fails. */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    re->source = eddyi_strdup(src);
    if (!re->source) {
        pcre2_code_free(re->code);
        re->code = NULL;
        oom(c);
        return -1;
    }
    return 0;
}

static int schema_array(cctx *c, const json_t *v, eddyi_snode ***out, size_t *n)
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        fail(c, EDDY_EINVAL, "must be a non-empty array of schemas");
        return -1;
    }
    size_t count = json_array_size(v);
    eddyi_snode **arr = calloc(count, sizeof *arr);
    if (!arr) {
        oom(c);
        return -1;
    }
    *out = arr;
    *n = count;
    for (size_t i = 0; i < count; i++) {
        size_t saved = push_index(c, i);
        arr[i] = child(c, json_array_get(v, i));
        pop(c, saved);
        if (!arr[i])
            return -1;
    }
    return 0;
}

static int string_array(cctx *c, const json_t *v, char ***out, size_t *n)
{
    if (!json_is_array(v)) {
        fail(c, EDDY_EINVAL, "must be an array of strings");
        return -1;
    }
    size_t count = json_array_size(v);
    for (size_t i = 0; i < count; i++)
        if (!json_is_string(json_array_get(v, i))) {
            size_t saved = push_index(c, i);
            fail(c, EDDY_EINVAL, "must be a string");
            pop(c, saved);
            return -1;
        }
    char **arr = calloc(count ? count : 1, sizeof *arr);
    if (!arr) {
        oom(c);
        return -1;
    }
    *out = arr;
    *n = count;
    for (size_t i = 0; i < count; i++) {
        arr[i] = eddyi_strdup(json_string_value(json_array_get(v, i)));
        if (!arr[i]) {
            oom(c);
            return -1;
        }
    }
    return 0;
}

/* ---- keywords -------------------------------------------------------------- */

typedef int (*keyword_fn)(cctx *c, eddyi_snode *n, const json_t *v);

static unsigned type_bit(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } types[] = {
        {"null", EDDYI_T_NULL},     {"boolean", EDDYI_T_BOOLEAN},
        {"object", EDDYI_T_OBJECT}, {"array", EDDYI_T_ARRAY},
        {"number", EDDYI_T_NUMBER}, {"string", EDDYI_T_STRING},
        {"integer", EDDYI_T_INTEGER},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(types[i].name, name) == 0)
            return types[i].bit;
    return 0;
}

static int kw_type(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (json_is_string(v)) {
        n->types = type_bit(json_string_value(v));
        if (!n->types) {
            fail(c, EDDY_EINVAL, "unknown type \"%s\"", json_string_value(v));
            return -1;
        }
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        fail(c, EDDY_EINVAL, "must be a type name or a non-empty array of type names");
        return -1;
    }
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t) {
        unsigned bit = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
        if (!bit) {
            size_t saved = push_index(c, i);
            fail(c, EDDY_EINVAL, "must be a type name");
            pop(c, saved);
            return -1;
        }
        n->types |= bit;
    }
    return 0;
}

static int kw_enum(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_array(v)) {
        fail(c, EDDY_EINVAL, "must be an array");
        return -1;
    }
    n->enum_values = json_deep_copy(v);
    if (!n->enum_values) {
        oom(c);
        return -1;
    }
    return 0;
}

static int kw_const(cctx *c, eddyi_snode *n, const json_t *v)
{
    n->const_value = json_deep_copy(v);
    if (!n->const_value) {
        oom(c);
        return -1;
    }
    n->has_const = 1;
    return 0;
}

static int kw_properties(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_object(v)) {
        fail(c, EDDY_EINVAL, "must be an object of schemas");
        return -1;
    }
    size_t count = json_object_size(v);
    n->props = calloc(count ? count : 1, sizeof *n->props);
    n->prop_index = json_object();
    if (!n->props || !n->prop_index) {
        oom(c);
        return -1;
    }
    const char *key;
    json_t *sub;
    json_object_foreach((json_t *)v, key, sub) {
        eddyi_sprop *p = &n->props[n->nprops];
        p->name = eddyi_strdup(key);
        if (!p->name || json_object_set_new(n->prop_index, key, json_true()) != 0) {
            free(p->name);
            oom(c);
            return -1;
        }
        n->nprops++;
        size_t saved = push(c, key);
        p->node = child(c, sub);
        pop(c, saved);
        if (!p->node)
            return -1;
    }
    return 0;
}

static int kw_pattern_properties(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_object(v)) {
        fail(c, EDDY_EINVAL, "must be an object of schemas");
        return -1;
    }
    size_t count = json_object_size(v);
    n->patterns = calloc(count ? count : 1, sizeof *n->patterns);
    if (!n->patterns) {
        oom(c);
        return -1;
    }
    const char *key;
    json_t *sub;
    json_object_foreach((json_t *)v, key, sub) {
        eddyi_spattern *p = &n->patterns[n->npatterns];
        size_t saved = push(c, key);
        if (compile_regex(c, key, strlen(key), &p->re) != 0) {
            pop(c, saved);
            return -1;
        }
        n->npatterns++;
        p->node = child(c, sub);
        pop(c, saved);
        if (!p->node)
            return -1;
    }
    return 0;
}

static int kw_required(cctx *c, eddyi_snode *n, const json_t *v)
{
    return string_array(c, v, &n->required, &n->nrequired);
}

static int kw_dependencies(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_object(v)) {
        fail(c, EDDY_EINVAL, "must be an object");
        return -1;
    }
    size_t count = json_object_size(v);
    n->deps = calloc(count ? count : 1, sizeof *n->deps);
    if (!n->deps) {
        oom(c);
        return -1;
    }
    const char *key;
    json_t *sub;
    json_object_foreach((json_t *)v, key, sub) {
        eddyi_sdep *d = &n->deps[n->ndeps];
        d->name = eddyi_strdup(key);
        if (!d->name) {
            oom(c);
            return -1;
        }
        n->ndeps++;
        size_t saved = push(c, key);
        int rc = 0;
        if (json_is_array(sub))
            rc = string_array(c, sub, &d->required, &d->nrequired);
        else if (!(d->schema = child(c, sub)))
            rc = -1;
        pop(c, saved);
        if (rc != 0)
            return -1;
    }
    return 0;
}

#define SCHEMA_KEYWORD(fname, field)                                           \
    static int fname(cctx *c, eddyi_snode *n, const json_t *v)                 \
    {                                                                          \
        n->field = child(c, v);                                                \
        return n->field ? 0 : -1;                                              \
    }
SCHEMA_KEYWORD(kw_additional_properties, additional_props)
SCHEMA_KEYWORD(kw_property_names, property_names)
SCHEMA_KEYWORD(kw_additional_items, additional_items)
SCHEMA_KEYWORD(kw_contains, contains)
SCHEMA_KEYWORD(kw_not, not_)
SCHEMA_KEYWORD(kw_if, if_)
SCHEMA_KEYWORD(kw_then, then_)
SCHEMA_KEYWORD(kw_else, else_)

#define COUNT_KEYWORD(fname, field)                                            \
    static int fname(cctx *c, eddyi_snode *n, const json_t *v)                 \
    {                                                                          \
        return get_count(c, v, &n->field);                                     \
    }
COUNT_KEYWORD(kw_min_properties, min_props)
COUNT_KEYWORD(kw_max_properties, max_props)
COUNT_KEYWORD(kw_min_items, min_items)
COUNT_KEYWORD(kw_max_items, max_items)
COUNT_KEYWORD(kw_min_length, min_length)
COUNT_KEYWORD(kw_max_length, max_length)

#define NUMBER_KEYWORD(fname, field)                                           \
    static int fname(cctx *c, eddyi_snode *n, const json_t *v)                 \
    {                                                                          \
        return get_num(c, v, &n->field);                                       \
    }
NUMBER_KEYWORD(kw_minimum, minimum)
NUMBER_KEYWORD(kw_maximum, maximum)
NUMBER_KEYWORD(kw_exclusive_minimum, excl_minimum)
NUMBER_KEYWORD(kw_exclusive_maximum, excl_maximum)

static int kw_multiple_of(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_number(v) || json_number_value(v) <= 0) {
        fail(c, EDDY_EINVAL, "must be a number greater than 0");
        return -1;
    }
    return get_num(c, v, &n->multiple_of);
}

#define SCHEMA_ARRAY_KEYWORD(fname, field)                                     \
    static int fname(cctx *c, eddyi_snode *n, const json_t *v)                 \
    {                                                                          \
        return schema_array(c, v, &n->field, &n->n##field);                    \
    }
SCHEMA_ARRAY_KEYWORD(kw_all_of, all_of)
SCHEMA_ARRAY_KEYWORD(kw_any_of, any_of)
SCHEMA_ARRAY_KEYWORD(kw_one_of, one_of)

static int kw_items(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (json_is_array(v)) {
        n->items_is_array = 1;
        size_t count = json_array_size(v);
        n->items_array = calloc(count ? count : 1, sizeof *n->items_array);
        if (!n->items_array) {
            oom(c);
            return -1;
        }
        n->nitems = count;
        for (size_t i = 0; i < count; i++) {
            size_t saved = push_index(c, i);
            n->items_array[i] = child(c, json_array_get(v, i));
            pop(c, saved);
            if (!n->items_array[i])
                return -1;
        }
        return 0;
    }
    if (!is_schema(v)) {
        fail(c, EDDY_EINVAL, "must be a schema or an array of schemas");
        return -1;
    }
    n->items = compile_node(c, v);
    return n->items ? 0 : -1;
}

static int kw_unique_items(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_boolean(v)) {
        fail(c, EDDY_EINVAL, "must be a boolean");
        return -1;
    }
    n->unique_items = json_is_true(v);
    return 0;
}

static int kw_pattern(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_string(v)) {
        fail(c, EDDY_EINVAL, "must be a string");
        return -1;
    }
    return compile_regex(c, json_string_value(v), json_string_length(v), &n->pattern);
}

static int kw_format(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_string(v)) {
        fail(c, EDDY_EINVAL, "must be a string");
        return -1;
    }
    n->format = eddyi_format_lookup(json_string_value(v));
    n->format_name = eddyi_strdup(json_string_value(v));
    if (!n->format_name) {
        oom(c);
        return -1;
    }
    return 0;
}

static int kw_ref(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_string(v)) {
        fail(c, EDDY_EINVAL, "must be a string");
        return -1;
    }
    n->ref = eddyi_strdup(json_string_value(v));
    if (!n->ref || grow((void **)&c->refs, &c->refcap, c->nrefs, sizeof *c->refs) != 0) {
        oom(c);
        return -1;
    }
    sref *r = &c->refs[c->nrefs];
    r->node = n;
    r->where = eddyi_strdup(c->ptr);
    r->base = eddyi_strdup(c->base);
    if (!r->where || !r->base) {
        free(r->where);
        free(r->base);
        oom(c);
        return -1;
    }
    c->nrefs++;
    return 0;
}

/* ---- annotations ---------------------------------------------------------- */

static int kw_string_annotation(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_string(v)) {
        fail(c, EDDY_EINVAL, "must be a string");
        return -1;
    }
    return 0;
}

static int kw_bool_annotation(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_boolean(v)) {
        fail(c, EDDY_EINVAL, "must be a boolean");
        return -1;
    }
    return 0;
}

static int kw_any_annotation(cctx *c, eddyi_snode *n, const json_t *v)
{
    return 0;
}

static int kw_examples(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_array(v)) {
        fail(c, EDDY_EINVAL, "must be an array");
        return -1;
    }
    return 0;
}

/* definitions: compiled so that $refs into them resolve to shared nodes,
 * and so that their errors show at compile time even if unused. */
static int kw_definitions(cctx *c, eddyi_snode *n, const json_t *v)
{
    if (!json_is_object(v)) {
        fail(c, EDDY_EINVAL, "must be an object of schemas");
        return -1;
    }
    const char *key;
    json_t *sub;
    json_object_foreach((json_t *)v, key, sub) {
        size_t saved = push(c, key);
        eddyi_snode *d = child(c, sub);
        pop(c, saved);
        if (!d)
            return -1;
    }
    return 0;
}

static const struct keyword {
    const char *name;
    keyword_fn fn;
} keywords[] = {
    {"type", kw_type},
    {"enum", kw_enum},
    {"const", kw_const},
    {"properties", kw_properties},
    {"patternProperties", kw_pattern_properties},
    {"additionalProperties", kw_additional_properties},
    {"propertyNames", kw_property_names},
    {"required", kw_required},
    {"minProperties", kw_min_properties},
    {"maxProperties", kw_max_properties},
    {"dependencies", kw_dependencies},
    {"items", kw_items},
    {"additionalItems", kw_additional_items},
    {"contains", kw_contains},
    {"minItems", kw_min_items},
    {"maxItems", kw_max_items},
    {"uniqueItems", kw_unique_items},
    {"minimum", kw_minimum},
    {"maximum", kw_maximum},
    {"exclusiveMinimum", kw_exclusive_minimum},
    {"exclusiveMaximum", kw_exclusive_maximum},
    {"multipleOf", kw_multiple_of},
    {"minLength", kw_min_length},
    {"maxLength", kw_max_length},
    {"pattern", kw_pattern},
    {"format", kw_format},
    {"allOf", kw_all_of},
    {"anyOf", kw_any_of},
    {"oneOf", kw_one_of},
    {"not", kw_not},
    {"if", kw_if},
    {"then", kw_then},
    {"else", kw_else},
    {"$ref", kw_ref},
    {"definitions", kw_definitions},
    {"$schema", kw_string_annotation},
    {"$id", kw_string_annotation},
    {"$comment", kw_string_annotation},
    {"title", kw_string_annotation},
    {"description", kw_string_annotation},
    {"contentMediaType", kw_string_annotation},
    {"contentEncoding", kw_string_annotation},
    {"default", kw_any_annotation},
    {"examples", kw_examples},
    {"readOnly", kw_bool_annotation},
    {"writeOnly", kw_bool_annotation},
};

static keyword_fn find_keyword(const char *name)
{
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strcmp(keywords[i].name, name) == 0)
            return keywords[i].fn;
    return NULL;
}

/* ---- nodes ----------------------------------------------------------------- */

static eddyi_snode *new_node(cctx *c, const json_t *src)
{
    eddy_schema *s = c->s;
    if (s->nnodes == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        eddyi_snode **p = realloc(s->nodes, cap * sizeof *p);
        if (!p)
            return oom(c);
        s->nodes = p;
        s->cap = cap;
    }
    eddyi_snode *n = calloc(1, sizeof *n);
    if (!n)
        return oom(c);
    n->src = src;
    n->min_props = n->max_props = -1;
    n->min_items = n->max_items = -1;
    n->min_length = n->max_length = -1;
    s->nodes[s->nnodes++] = n;
    if (ptrmap_put(&c->compiled, src, n) != 0)
        return oom(c);
    return n;
}

/* The base URI below schema object `v` whose parent's base is `base`: its
 * "$id" resolved against `base`, without the fragment; `base` itself when it
 * has no $id, or a $ref beside it (draft-07 ignores the $id then). Returns a
 * new string, or NULL when out of memory. */
static char *base_below(const char *base, const json_t *v)
{
    const json_t *id = json_is_object(v) ? json_object_get(v, "$id") : NULL;
    if (!json_is_string(id) || json_object_get(v, "$ref"))
        return eddyi_strdup(base);
    char *abs = eddyi_uri_resolve(base, json_string_value(id));
    if (abs) {
        char *hash = strchr(abs, '#');
        if (hash)
            *hash = '\0';
    }
    return abs;
}

static eddyi_snode *compile_node(cctx *c, const json_t *v)
{
    if (c->rc != EDDY_OK)
        return NULL;
    if (!is_schema(v))
        return fail(c, EDDY_EINVAL, "schema must be an object or a boolean");
    eddyi_snode *n = new_node(c, v);
    if (!n)
        return NULL;
    if (json_is_boolean(v)) {
        n->is_bool = 1;
        n->bool_value = json_is_true(v);
        return n;
    }
    if (c->depth >= MAX_SCHEMA_DEPTH)
        return fail(c, EDDY_EINVAL, "schema nested deeper than %d levels", MAX_SCHEMA_DEPTH);
    const char *outer = c->base;
    char *base = base_below(outer, v);
    if (!base)
        return oom(c);
    c->base = base;
    c->depth++;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        keyword_fn fn = find_keyword(key);
        size_t saved = push(c, key);
        if (c->rc != EDDY_OK)
            break;
        int rc = 0;
        if (fn) {
            rc = fn(c, n, value);
        } else if (grow((void **)&c->unknowns, &c->unknowncap, c->nunknowns,
                        sizeof *c->unknowns) != 0) {
            oom(c);
        } else {
            /* Unknown: an error unless a $ref points into it (checked once
             * every $ref is resolved). */
            sunknown *u = &c->unknowns[c->nunknowns];
            u->value = value;
            u->where = eddyi_strdup(c->ptr);
            u->name = eddyi_strdup(key);
            if (!u->where || !u->name) {
                free(u->where);
                free(u->name);
                oom(c);
            } else {
                c->nunknowns++;
            }
        }
        pop(c, saved);
        if (rc != 0 || c->rc != EDDY_OK)
            break;
    }
    c->depth--;
    c->base = outer;
    free(base);
    return c->rc == EDDY_OK ? n : NULL;
}

void eddyi_snode_free(eddyi_snode *n)
{
    if (!n)
        return;
    free(n->ref);
    json_decref(n->enum_values);
    json_decref(n->const_value);
    for (size_t i = 0; i < n->nprops; i++)
        free(n->props[i].name);
    free(n->props);
    json_decref(n->prop_index);
    for (size_t i = 0; i < n->npatterns; i++) {
        pcre2_code_free(n->patterns[i].re.code);
        free(n->patterns[i].re.source);
    }
    free(n->patterns);
    for (size_t i = 0; i < n->nrequired; i++)
        free(n->required[i]);
    free(n->required);
    for (size_t i = 0; i < n->ndeps; i++) {
        free(n->deps[i].name);
        for (size_t j = 0; j < n->deps[i].nrequired; j++)
            free(n->deps[i].required[j]);
        free(n->deps[i].required);
    }
    free(n->deps);
    free(n->items_array);
    pcre2_code_free(n->pattern.code);
    free(n->pattern.source);
    free(n->format_name);
    free(n->all_of);
    free(n->any_of);
    free(n->one_of);
    free(n);
}

/* ---- documents and their $ids -------------------------------------------------- */

/* Keywords whose value is a schema, an array of schemas, or an object of
 * schemas: the places where a "$id" is an identifier (not data). */
static int kind_of_keyword(const char *k)
{
    static const char *const single[] = {"additionalItems", "additionalProperties", "contains",
                                         "propertyNames", "not", "if", "then", "else", "items",
                                         NULL};
    static const char *const arrays[] = {"allOf", "anyOf", "oneOf", "items", NULL};
    static const char *const objects[] = {"properties", "patternProperties", "definitions",
                                          "dependencies", NULL};
    int kind = 0;
    for (size_t i = 0; single[i]; i++)
        if (strcmp(single[i], k) == 0)
            kind |= 1;
    for (size_t i = 0; arrays[i]; i++)
        if (strcmp(arrays[i], k) == 0)
            kind |= 2;
    for (size_t i = 0; objects[i]; i++)
        if (strcmp(objects[i], k) == 0)
            kind |= 4;
    return kind;
}

static int add_id(cctx *c, const char *uri, const json_t *node, const char *parent_base)
{
    for (size_t i = 0; i < c->nids; i++)
        if (strcmp(c->ids[i].uri, uri) == 0)
            return 0; /* the first one wins */
    if (grow((void **)&c->ids, &c->idcap, c->nids, sizeof *c->ids) != 0)
        return -1;
    sid *e = &c->ids[c->nids];
    e->uri = eddyi_strdup(uri);
    e->node = node;
    e->parent_base = eddyi_strdup(parent_base);
    if (!e->uri || !e->parent_base) {
        free(e->uri);
        free(e->parent_base);
        return -1;
    }
    c->nids++;
    return 0;
}

/* Indexes the "$id"s of schema `v` and of the schemas below it, `base`
 * being the base above `v`. Walks only schema positions, to a bounded
 * depth. Returns 0, or -1 out of memory. */
static int index_ids(cctx *c, const json_t *v, const char *base, int depth)
{
    if (!json_is_object(v) || depth > MAX_SCHEMA_DEPTH)
        return 0;
    const json_t *id = json_object_get(v, "$id");
    char *below = NULL;
    if (json_is_string(id) && !json_object_get(v, "$ref")) {
        char *abs = eddyi_uri_resolve(base, json_string_value(id));
        if (!abs)
            return -1;
        char *hash = strchr(abs, '#');
        int rc = 0;
        if (hash && hash[1]) /* "#name" (or "uri#name"): an anchor */
            rc = add_id(c, abs, v, base);
        if (hash)
            *hash = '\0';
        if (rc == 0 && (!hash || hash != abs)) /* an $id with a URI part */
            rc = add_id(c, abs, v, base);
        below = abs;
        if (rc != 0) {
            free(below);
            return -1;
        }
    }
    const char *inner = below ? below : base;
    const char *key;
    json_t *sub;
    int rc = 0;
    json_object_foreach((json_t *)v, key, sub) {
        int kind = kind_of_keyword(key);
        if ((kind & 1) && rc == 0)
            rc = index_ids(c, sub, inner, depth + 1);
        if ((kind & 2) && json_is_array(sub))
            for (size_t i = 0; i < json_array_size(sub) && rc == 0; i++)
                rc = index_ids(c, json_array_get(sub, i), inner, depth + 1);
        if ((kind & 4) && json_is_object(sub)) {
            const char *k2;
            json_t *s2;
            json_object_foreach(sub, k2, s2) {
                if (rc == 0)
                    rc = index_ids(c, s2, inner, depth + 1);
            }
        }
        if (rc != 0)
            break;
    }
    free(below);
    return rc;
}

/* Adds a document (taking `root`) with retrieval URI `uri` and indexes it.
 * Returns it, or NULL (out of memory, `root` released). */
static sdoc *add_doc(cctx *c, json_t *root, const char *uri)
{
    if (grow((void **)&c->docs, &c->doccap, c->ndocs, sizeof *c->docs) != 0) {
        json_decref(root);
        return oom(c);
    }
    sdoc *d = &c->docs[c->ndocs];
    d->root = root;
    d->uri = eddyi_strdup(uri);
    if (!d->uri) {
        json_decref(root);
        return oom(c);
    }
    c->ndocs++;
    if (index_ids(c, root, uri, 0) != 0)
        return oom(c);
    return d;
}

/* The built-in draft-07 metaschema as a new document. */
static sdoc *load_metaschema(cctx *c)
{
    json_error_t jerr;
    json_t *root = json_loads(eddyi_draft07_metaschema, 0, &jerr);
    if (!root)
        return fail(c, EDDY_EINVAL, "built-in metaschema: %s", jerr.text);
    return add_doc(c, root, METASCHEMA_URI);
}

/* Reads the regular file `path` (at most MAX_REMOTE_BYTES) as JSON. Never
 * blocks on a FIFO or a device: it opens without waiting and refuses
 * anything but a regular file. Returns a new reference, or NULL with `err`
 * filled (EDDY_EIO, EDDY_EPARSE, EDDY_ETOOBIG). */
static json_t *load_json_file(const char *path, eddy_error *err)
{
    char why[128];
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        eddyi_error(err, EDDY_EIO, "%s: cannot open: %s", path,
                    strerror_r(errno, why, sizeof why));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        eddyi_error(err, EDDY_EIO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((size_t)st.st_size > MAX_REMOTE_BYTES) {
        eddyi_error(err, EDDY_ETOOBIG, "%s: %lld bytes, larger than the %zu-byte limit of a "
                    "schema file", path, (long long)st.st_size, MAX_REMOTE_BYTES);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        eddyi_error(err, EDDY_EIO, "%s: cannot read: %s", path,
                    strerror_r(errno, why, sizeof why));
        close(fd);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadf(f, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    int read_failed = ferror(f);
    fclose(f);
    if (!doc && read_failed)
        eddyi_error(err, EDDY_EIO, "%s: read error", path);
    else if (!doc)
        eddyi_error(err, EDDY_EPARSE, "%s: line %d, column %d: %s", path, jerr.line,
                    jerr.column, jerr.text);
    return doc;
}

/* The file a remote directory serves for `uri` (no fragment), as a new
 * path; NULL (and nothing else) when no remote prefix matches or the rest
 * of the URI is not a plain relative path inside the directory. */
static char *remote_path(const cctx *c, const char *uri)
{
    if (!c->opts)
        return NULL;
    for (size_t i = 0; i < c->opts->nremotes; i++) {
        const eddy_schema_remote *r = &c->opts->remotes[i];
        if (!r->prefix || !r->dir)
            continue;
        size_t plen = strlen(r->prefix);
        if (strncmp(uri, r->prefix, plen) != 0)
            continue;
        const char *rest = uri + plen;
        /* Letters, digits, "-._~/" only; no empty, "." or ".." segment:
         * the file is always inside the directory. */
        bool ok = *rest && *rest != '/';
        for (const char *p = rest; *p && ok; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
        for (const char *seg = rest; ok && *seg; ) {
            const char *end = strchr(seg, '/');
            size_t n = end ? (size_t)(end - seg) : strlen(seg);
            ok = n > 0 && !(n == 1 && seg[0] == '.') && !(n == 2 && seg[0] == '.' && seg[1] == '.');
            seg = end ? end + 1 : seg + n;
        }
        if (!ok)
            continue;
        size_t dlen = strlen(r->dir), rlen = strlen(rest);
        char *path = malloc(dlen + 1 + rlen + 1);
        if (!path)
            return NULL;
        memcpy(path, r->dir, dlen);
        path[dlen] = '/';
        memcpy(path + dlen + 1, rest, rlen + 1);
        return path;
    }
    return NULL;
}

/* ---- $ref ------------------------------------------------------------------ */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The resource `doc_uri` names, with the base above it, in *node and
 * *parent_base (borrowed from c). Loads the metaschema or a remote file the
 * first time. NULL with c->rc set when nothing serves it. */
static const json_t *find_resource(cctx *c, const char *ref, const char *doc_uri,
                                   const char **parent_base)
{
    for (size_t i = 0; i < c->nids; i++)
        if (strcmp(c->ids[i].uri, doc_uri) == 0) {
            *parent_base = c->ids[i].parent_base;
            return c->ids[i].node;
        }
    for (size_t i = 0; i < c->ndocs; i++)
        if (strcmp(c->docs[i].uri, doc_uri) == 0) {
            *parent_base = c->docs[i].uri;
            return c->docs[i].root;
        }
    sdoc *d = NULL;
    if (strcmp(doc_uri, METASCHEMA_URI) == 0) {
        d = load_metaschema(c);
    } else {
        char *path = remote_path(c, doc_uri);
        if (!path)
            return fail(c, EDDY_EUNSUPPORTED,
                        "cannot resolve \"%.200s\": no schema here has the $id \"%.200s\" and "
                        "no remote directory serves it",
                        ref, doc_uri);
        eddy_error e = {0};
        json_t *root = load_json_file(path, &e);
        free(path);
        if (!root)
            return fail(c, e.code, "$ref \"%.200s\": %s", ref, e.message);
        d = add_doc(c, root, doc_uri);
    }
    if (!d)
        return NULL;
    *parent_base = d->uri;
    return d->root;
}

/*
 * Follows the JSON pointer `frag` (the part after "#", %-escapes undone by
 * the caller) from `cur` (whose base below is `base`, owned by the caller).
 * Marks every value it walks through as reached. Returns the target and its
 * parent's base in *target_base (a new string), or NULL with c->rc set.
 */
static const json_t *walk_pointer(cctx *c, const char *ref, const json_t *cur, char *frag,
                                  const char *base, char **target_base)
{
    char *below = eddyi_strdup(base);
    char *p = frag;
    if (!below)
        return oom(c);
    while (cur && *p == '/') {
        p++;
        char *end = strchr(p, '/');
        size_t seglen = end ? (size_t)(end - p) : strlen(p);
        /* unescape ~1 -> '/', ~0 -> '~' in place */
        char *seg = p;
        size_t o = 0;
        for (size_t i = 0; i < seglen; i++) {
            if (seg[i] == '~' && i + 1 < seglen && (seg[i + 1] == '0' || seg[i + 1] == '1')) {
                seg[o++] = seg[i + 1] == '0' ? '~' : '/';
                i++;
            } else {
                seg[o++] = seg[i];
            }
        }
        seg[o] = '\0'; /* over the next '/' at most, put back below */
        const json_t *next = NULL;
        if (json_is_object(cur)) {
            next = json_object_getn(cur, seg, o);
        } else if (json_is_array(cur)) {
            char *stop;
            errno = 0;
            unsigned long long idx = strtoull(seg, &stop, 10);
            int ok = o > 0 && *stop == '\0' && errno == 0 && (seg[0] != '0' || o == 1) &&
                     seg[0] >= '0' && seg[0] <= '9';
            next = ok && idx < json_array_size(cur) ? json_array_get(cur, (size_t)idx) : NULL;
        }
        if (next && end) { /* an intermediate schema's $id changes the base */
            char *nb = base_below(below, next);
            free(below);
            below = nb;
            if (!below)
                return oom(c);
        }
        if (end)
            *end = '/';
        cur = next;
        if (cur && ptrmap_put(&c->reached, cur, NULL) != 0) {
            free(below);
            return oom(c);
        }
        if (!end)
            break;
        p = end;
    }
    if (!cur) {
        free(below);
        return fail(c, EDDY_EINVAL, "reference \"%.200s\" points at nothing in the schema", ref);
    }
    *target_base = below;
    return cur;
}

/* Resolves one $ref: sets its node's target, compiling it if needed. */
static int resolve_ref(cctx *c, size_t which)
{
    /* c->refs may move while a target compiles: hold what is needed. */
    eddyi_snode *node = c->refs[which].node;
    const char *ref = node->ref;
    char *abs = eddyi_uri_resolve(c->refs[which].base, ref);
    char *frag = NULL, *target_base = NULL;
    int rc = -1;
    if (!abs) {
        oom(c);
        return -1;
    }
    char *hash = strchr(abs, '#');
    if (hash)
        *hash = '\0';
    const char *raw_frag = hash ? hash + 1 : "";
    /* Undo the fragment's %-escapes. */
    size_t flen = 0, rlen = strlen(raw_frag);
    frag = malloc(rlen + 1);
    if (!frag) {
        oom(c);
        goto done;
    }
    for (size_t i = 0; i < rlen; i++) {
        if (raw_frag[i] == '%') {
            int hi = i + 2 < rlen ? hexval(raw_frag[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(raw_frag[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                fail(c, EDDY_EINVAL, "bad %%-escape in reference \"%.200s\"", ref);
                goto done;
            }
            frag[flen++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            frag[flen++] = raw_frag[i];
        }
    }
    frag[flen] = '\0';

    const char *parent_base = NULL;
    const json_t *target = NULL;
    if (flen > 0 && frag[0] != '/') {
        /* "#name": a location-independent identifier, "$id": "#name" */
        size_t alen = strlen(abs);
        char *anchor = malloc(alen + 1 + rlen + 1);
        if (!anchor) {
            oom(c);
            goto done;
        }
        memcpy(anchor, abs, alen);
        anchor[alen] = '#';
        memcpy(anchor + alen + 1, raw_frag, rlen + 1);
        for (size_t i = 0; i < c->nids && !target; i++)
            if (strcmp(c->ids[i].uri, anchor) == 0) {
                target = c->ids[i].node;
                parent_base = c->ids[i].parent_base;
            }
        free(anchor);
        if (!target) {
            fail(c, EDDY_EINVAL, "reference \"%.200s\" names no \"$id\" anchor in the schema",
                 ref);
            goto done;
        }
        target_base = eddyi_strdup(parent_base);
    } else {
        const json_t *resource = find_resource(c, ref, abs, &parent_base);
        if (!resource)
            goto done;
        if (flen == 0) {
            target = resource;
            target_base = eddyi_strdup(parent_base);
        } else {
            char *below = base_below(parent_base, resource);
            if (!below) {
                oom(c);
                goto done;
            }
            char *walk = eddyi_strdup(frag); /* the walk unescapes in place */
            target = walk ? walk_pointer(c, ref, resource, walk, below, &target_base) : oom(c);
            free(walk);
            free(below);
            if (!target)
                goto done;
        }
    }
    if (!target_base || ptrmap_put(&c->reached, target, NULL) != 0) {
        oom(c);
        goto done;
    }
    if (!is_schema(target)) {
        fail(c, EDDY_EINVAL, "reference \"%.200s\" points at a value that is not a schema", ref);
        goto done;
    }
    eddyi_snode *found = ptrmap_get(&c->compiled, target);
    if (!found) {
        /* Compile it where it is, for messages: the pointer of the target
         * in its document when it is the root document's, else the URI. */
        const char *saved_base = c->base;
        c->base = target_base;
        size_t plen = strlen(abs) + 1 + strlen(raw_frag);
        char *where = malloc(plen + 1);
        if (!where) {
            oom(c);
            goto done;
        }
        if (hash && raw_frag[0] == '/' && (!abs[0] || strcmp(abs, c->docs[0].uri) == 0))
            snprintf(where, plen + 1, "%s", frag);
        else
            snprintf(where, plen + 1, "%s#%s", abs, raw_frag);
        c->len = 0;
        size_t wlen = strlen(where);
        if (reserve(c, wlen) == 0) {
            memcpy(c->ptr, where, wlen + 1);
            c->len = wlen;
        }
        free(where);
        found = compile_node(c, target);
        c->base = saved_base;
        if (!found)
            goto done;
    }
    node->ref_target = found;
    rc = 0;
done:
    free(target_base);
    free(frag);
    free(abs);
    return rc;
}

/* Resolves every $ref; c->refs grows while this runs (targets compiled on
 * demand hold refs of their own), so it is walked by index. */
static int resolve_refs(cctx *c)
{
    for (size_t i = 0; i < c->nrefs; i++) {
        if (set_ptr(c, c->refs[i].where) != 0 || resolve_ref(c, i) != 0)
            return -1;
    }
    return 0;
}

/* An unknown keyword is an error unless a $ref resolution went into it. */
static int check_unknowns(cctx *c)
{
    for (size_t i = 0; i < c->nunknowns; i++) {
        const sunknown *u = &c->unknowns[i];
        if (ptrmap_has(&c->reached, u->value))
            continue;
        set_ptr(c, u->where);
        fail(c, EDDY_EUNSUPPORTED, "unsupported keyword \"%s\"", u->name);
        return -1;
    }
    return 0;
}

/* ---- subschemas applied to the same value ------------------------------------- */

/* The subschemas `n` applies to the very value it validates (not to a part
 * of it): an edge of the graph whose cycles would never end. */
static size_t same_value_children(const eddyi_snode *n, const eddyi_snode **out, size_t max)
{
    size_t k = 0;
#define ADD(x)                                                                 \
    do {                                                                       \
        if ((x) && k < max)                                                    \
            out[k++] = (x);                                                    \
    } while (0)
    ADD(n->ref_target);
    if (n->ref_target) /* draft-07: the keywords beside a $ref are ignored */
        return k;
    for (size_t i = 0; i < n->nall_of; i++)
        ADD(n->all_of[i]);
    for (size_t i = 0; i < n->nany_of; i++)
        ADD(n->any_of[i]);
    for (size_t i = 0; i < n->none_of; i++)
        ADD(n->one_of[i]);
    ADD(n->not_);
    ADD(n->if_);
    ADD(n->then_);
    ADD(n->else_);
    for (size_t i = 0; i < n->ndeps; i++)
        ADD(n->deps[i].schema);
#undef ADD
    return k;
}

static size_t same_value_count(const eddyi_snode *n)
{
    if (n->ref_target)
        return 1;
    size_t k = n->nall_of + n->nany_of + n->none_of + n->ndeps + 4;
    return k;
}

/*
 * Finds a cycle of same-value edges (iterative depth-first search, linear in
 * nodes and edges) and fails naming a $ref on it.
 */
static int check_cycles(cctx *c)
{
    size_t n = c->s->nnodes;
    if (n == 0)
        return 0;
    ptrmap index = {0};
    unsigned char *color = calloc(n, 1); /* 0 new, 1 on the stack, 2 done */
    size_t *stack = malloc(n * sizeof *stack), *next_edge = calloc(n, sizeof *next_edge);
    const eddyi_snode **kids = NULL;
    size_t kids_cap = 0;
    int rc = -1;
    if (!color || !stack || !next_edge)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (ptrmap_put(&index, c->s->nodes[i], (void *)(uintptr_t)(i + 1)) != 0)
            goto nomem;
    for (size_t root = 0; root < n; root++) {
        if (color[root])
            continue;
        size_t top = 0;
        stack[top++] = root;
        color[root] = 1;
        while (top > 0) {
            size_t v = stack[top - 1];
            const eddyi_snode *node = c->s->nodes[v];
            size_t want = same_value_count(node);
            if (want > kids_cap) {
                const eddyi_snode **p = realloc(kids, want * sizeof *p);
                if (!p)
                    goto nomem;
                kids = p;
                kids_cap = want;
            }
            size_t nk = same_value_children(node, kids, kids_cap);
            if (next_edge[v] >= nk) {
                color[v] = 2;
                top--;
                continue;
            }
            const eddyi_snode *kid = kids[next_edge[v]++];
            size_t w = (size_t)(uintptr_t)ptrmap_get(&index, kid) - 1;
            if (color[w] == 0) {
                color[w] = 1;
                stack[top++] = w;
            } else if (color[w] == 1) {
                /* A cycle: the stack from w up. Name a $ref on it. */
                size_t from = top;
                while (from > 0 && stack[from - 1] != w)
                    from--;
                const char *where = NULL, *ref = NULL;
                for (size_t k = from - 1; k < top && !where; k++)
                    for (size_t r = 0; r < c->nrefs && !where; r++)
                        if (c->refs[r].node == c->s->nodes[stack[k]]) {
                            where = c->refs[r].where;
                            ref = c->refs[r].node->ref;
                        }
                set_ptr(c, where ? where : "");
                fail(c, EDDY_EINVAL,
                     "$ref \"%.200s\" recurses without consuming input: it applies the schema "
                     "to the same value again, forever",
                     ref ? ref : "?");
                goto out;
            }
        }
    }
    rc = 0;
    goto out;
nomem:
    oom(c);
out:
    ptrmap_free(&index);
    free(kids);
    free(color);
    free(stack);
    free(next_edge);
    return rc;
}

/* ---- the metaschema ------------------------------------------------------------ */

static pthread_once_t meta_once = PTHREAD_ONCE_INIT;
static eddy_schema *meta_schema; /* compiled once, kept for the process */

static eddy_schema *compile_with(const json_t *schema, const eddy_schema_options *opts,
                                 bool metaschema, eddy_error *err);

static void meta_init(void)
{
    json_t *doc = json_loads(eddyi_draft07_metaschema, 0, NULL);
    if (doc)
        meta_schema = compile_with(doc, NULL, true, NULL);
    json_decref(doc);
}

/* Validates the root document against the draft-07 metaschema: what eddy's
 * own keyword checks let through (a type listed twice, a required name
 * repeated...) is still refused. */
static int check_metaschema(cctx *c, const json_t *doc)
{
    pthread_once(&meta_once, meta_init);
    if (!meta_schema) {
        fail(c, EDDY_ENOMEM, "cannot compile the draft-07 metaschema");
        return -1;
    }
    eddy_error e = {0};
    int rc = eddy_schema_validate(meta_schema, doc, &e);
    if (rc == EDDY_OK)
        return 0;
    c->len = 0;
    if (c->ptr)
        c->ptr[0] = '\0';
    if (rc == EDDY_ESCHEMA)
        fail(c, EDDY_EINVAL, "not a valid draft-07 schema (by its metaschema): %s", e.message);
    else
        fail(c, rc, "checking against the draft-07 metaschema: %s", e.message);
    return -1;
}

/* ---- public ---------------------------------------------------------------- */

static void free_cctx(cctx *c)
{
    for (size_t i = 0; i < c->nrefs; i++) {
        free(c->refs[i].where);
        free(c->refs[i].base);
    }
    free(c->refs);
    for (size_t i = 0; i < c->nids; i++) {
        free(c->ids[i].uri);
        free(c->ids[i].parent_base);
    }
    free(c->ids);
    for (size_t i = 0; i < c->nunknowns; i++) {
        free(c->unknowns[i].where);
        free(c->unknowns[i].name);
    }
    free(c->unknowns);
    for (size_t i = 0; i < c->ndocs; i++) {
        json_decref(c->docs[i].root);
        free(c->docs[i].uri);
    }
    free(c->docs);
    ptrmap_free(&c->compiled);
    ptrmap_free(&c->reached);
    free(c->ptr);
}

static eddy_schema *compile_with(const json_t *schema, const eddy_schema_options *opts,
                                 bool metaschema, eddy_error *err)
{
    if (!schema) {
        eddyi_error(err, EDDY_EINVAL, "eddy_schema_compile: schema is NULL");
        return NULL;
    }
    cctx c = {0};
    c.err = err;
    c.opts = opts;
    c.metaschema = metaschema;
    c.s = calloc(1, sizeof *c.s);
    if (!c.s) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory compiling a schema");
        return NULL;
    }
    if (reserve(&c, 64) != 0)
        goto fail;
    c.ptr[0] = '\0';
    const char *base = opts && opts->base_uri ? opts->base_uri : "";
    if (!add_doc(&c, json_incref((json_t *)schema), base))
        goto fail;
    c.base = base;
    c.s->root = compile_node(&c, schema);
    if (!c.s->root || resolve_refs(&c) != 0 || check_unknowns(&c) != 0 ||
        check_cycles(&c) != 0)
        goto fail;
    if (!metaschema && check_metaschema(&c, schema) != 0)
        goto fail;
    /* Regular expressions: limits, so a match that backtracks without end
     * stops (EDDY_ELIMIT) instead of running for minutes. */
    c.s->match = pcre2_match_context_create(NULL);
    if (!c.s->match) {
        oom(&c);
        goto fail;
    }
    pcre2_set_match_limit(c.s->match, EDDYI_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(c.s->match, EDDYI_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(c.s->match, EDDYI_REGEX_HEAP_LIMIT_KIB);
    for (size_t i = 0; i < c.s->nnodes; i++)
        c.s->nodes[i]->src = NULL; /* borrowed only for the compilation */
    free_cctx(&c);
    return c.s;
fail:
    free_cctx(&c);
    eddy_schema_free(c.s);
    return NULL;
}

eddy_schema *eddy_schema_compile_with(const json_t *schema, const eddy_schema_options *opts,
                                      eddy_error *err)
{
    return compile_with(schema, opts, false, err);
}

eddy_schema *eddy_schema_compile(const json_t *schema, eddy_error *err)
{
    return compile_with(schema, NULL, false, err);
}

eddy_schema *eddy_schema_compile_text(const char *text, size_t len, eddy_error *err)
{
    if (!text) {
        eddyi_error(err, EDDY_EINVAL, "eddy_schema_compile_text: text is NULL");
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!doc) {
        eddyi_error(err, EDDY_EPARSE, "schema: line %d, column %d: %s", jerr.line,
                    jerr.column, jerr.text);
        return NULL;
    }
    eddy_schema *s = eddy_schema_compile(doc, err);
    json_decref(doc);
    return s;
}

/* True when `s` may stand in a file: URI as it is (no escaping needed). */
static bool uri_safe_path(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || strchr("-._~/@+", *s)))
            return false;
    return true;
}

eddy_schema *eddy_schema_compile_file_with(const char *path, const eddy_schema_options *opts,
                                           eddy_error *err)
{
    if (!path) {
        eddyi_error(err, EDDY_EINVAL, "eddy_schema_compile_file: path is NULL");
        return NULL;
    }
    json_t *doc = load_json_file(path, err);
    if (!doc)
        return NULL;
    /* The file's own URI is the base, and its directory serves relative
     * $refs ("address.json" next to it), unless the caller chose a base. */
    eddy_schema_options o = opts ? *opts : (eddy_schema_options){0};
    eddy_schema_remote *remotes = NULL;
    char *real = realpath(path, NULL), *base = NULL, *prefix = NULL, *dir = NULL;
    if (!o.base_uri && real && uri_safe_path(real)) {
        size_t n = strlen(real);
        base = malloc(n + 8);
        char *slash = strrchr(real, '/');
        size_t dlen = (size_t)(slash - real);
        prefix = malloc(dlen + 9);
        dir = strndup(real, dlen ? dlen : 1);
        remotes = calloc(o.nremotes + 1, sizeof *remotes);
        if (!base || !prefix || !dir || !remotes) {
            eddyi_error(err, EDDY_ENOMEM, "out of memory compiling %s", path);
            json_decref(doc);
            doc = NULL;
        } else {
            snprintf(base, n + 8, "file://%s", real);
            snprintf(prefix, dlen + 9, "file://%.*s/", (int)dlen, real);
            if (o.nremotes)
                memcpy(remotes, o.remotes, o.nremotes * sizeof *remotes);
            remotes[o.nremotes] = (eddy_schema_remote){.prefix = prefix, .dir = dir};
            o.remotes = remotes;
            o.nremotes++;
            o.base_uri = base;
        }
    }
    eddy_schema *s = doc ? eddy_schema_compile_with(doc, &o, err) : NULL;
    json_decref(doc);
    free(remotes);
    free(dir);
    free(prefix);
    free(base);
    free(real);
    return s;
}

eddy_schema *eddy_schema_compile_file(const char *path, eddy_error *err)
{
    return eddy_schema_compile_file_with(path, NULL, err);
}

void eddy_schema_free(eddy_schema *schema)
{
    if (!schema)
        return;
    for (size_t i = 0; i < schema->nnodes; i++)
        eddyi_snode_free(schema->nodes[i]);
    free(schema->nodes);
    pcre2_match_context_free(schema->match);
    free(schema);
}
