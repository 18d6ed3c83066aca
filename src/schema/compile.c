/*
 * src/schema/compile.c - compiles a draft-07 JSON Schema into eddyi_snode
 * trees: checks every keyword's value, compiles patterns once, resolves
 * local $refs, and rejects keywords it does not implement.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "schema_internal.h"

/* A chain of $refs that only point at other $refs longer than this is a
 * cycle (it can never reach a real schema). */
typedef struct cctx {
    eddy_schema *s;
    const json_t *root;
    eddy_error *err;
    int rc;
    char *ptr; /* JSON pointer of the value being compiled, in the schema */
    size_t len, cap;
    eddyi_snode **refs; /* nodes with an unresolved $ref */
    char **refwhere;    /* the schema pointer of each of them */
    size_t nrefs, refcap;
} cctx;

static eddyi_snode *compile_node(cctx *c, const json_t *v);

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
    const char *ref = json_string_value(v);
    if (ref[0] != '#') {
        fail(c, EDDY_EUNSUPPORTED,
             "remote reference \"%.200s\" not supported (only \"#...\" in the same schema)",
             ref);
        return -1;
    }
    n->ref = eddyi_strdup(ref);
    if (!n->ref) {
        oom(c);
        return -1;
    }
    if (c->nrefs == c->refcap) {
        size_t cap = c->refcap ? 2 * c->refcap : 16;
        eddyi_snode **p = realloc(c->refs, cap * sizeof *p);
        if (p)
            c->refs = p;
        char **w = p ? realloc(c->refwhere, cap * sizeof *w) : NULL;
        if (w)
            c->refwhere = w;
        if (!p || !w) {
            oom(c);
            return -1;
        }
        c->refcap = cap;
    }
    c->refwhere[c->nrefs] = eddyi_strdup(c->ptr);
    if (!c->refwhere[c->nrefs]) {
        oom(c);
        return -1;
    }
    c->refs[c->nrefs++] = n;
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
    return n;
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
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        keyword_fn fn = find_keyword(key);
        size_t saved = push(c, key);
        if (c->rc != EDDY_OK)
            return NULL;
        if (!fn) {
            fail(c, EDDY_EUNSUPPORTED, "unsupported keyword \"%s\"", key);
            return NULL;
        }
        int rc = fn(c, n, value);
        pop(c, saved);
        if (rc != 0 || c->rc != EDDY_OK)
            return NULL;
    }
    return n;
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

/*
 * Finds the value a local reference ("#", "#/a/b~1c/0", %-escaped) points
 * at in the root document. Sets c->rc and returns NULL when it cannot.
 */
static const json_t *resolve_pointer(cctx *c, const char *ref, char **frag_out)
{
    /* Undo the URI fragment's %-escapes first, then walk the JSON pointer. */
    size_t rlen = strlen(ref);
    char *frag = malloc(rlen + 1);
    if (!frag)
        return oom(c);
    size_t flen = 0;
    for (size_t i = 1; i < rlen; i++) {
        if (ref[i] == '%') {
            int hi = i + 2 < rlen ? hexval(ref[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(ref[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(frag);
                return fail(c, EDDY_EINVAL, "bad %%-escape in reference \"%.200s\"", ref);
            }
            frag[flen++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            frag[flen++] = ref[i];
        }
    }
    frag[flen] = '\0';
    if (flen > 0 && frag[0] != '/') {
        free(frag);
        return fail(c, EDDY_EUNSUPPORTED,
                    "reference \"%.200s\" by name ($id anchor) not supported", ref);
    }
    *frag_out = eddyi_strdup(frag);
    if (!*frag_out) {
        free(frag);
        return oom(c);
    }
    const json_t *cur = c->root;
    char *p = frag;
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
        char saved_end = end ? '/' : '\0';
        seg[o] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, seg, o);
        } else if (json_is_array(cur)) {
            char *stop;
            errno = 0;
            unsigned long long idx = strtoull(seg, &stop, 10);
            int ok = o > 0 && *stop == '\0' && errno == 0 && (seg[0] != '0' || o == 1) &&
                     seg[0] >= '0' && seg[0] <= '9';
            cur = ok && idx < json_array_size(cur) ? json_array_get(cur, (size_t)idx) : NULL;
        } else {
            cur = NULL;
        }
        if (!end)
            break;
        *end = saved_end;
        p = end;
    }
    free(frag);
    if (!cur)
        return fail(c, EDDY_EINVAL, "reference \"%.200s\" points at nothing in the schema", ref);
    if (!is_schema(cur))
        return fail(c, EDDY_EINVAL, "reference \"%.200s\" points at a value that is not a schema",
                    ref);
    return cur;
}

/* Resolves every $ref, compiling targets that were not compiled yet (a
 * reference may point anywhere in the document). c->refs grows while this
 * runs, so it is walked by index. */
static int resolve_refs(cctx *c)
{
    for (size_t r = 0; r < c->nrefs; r++) {
        eddyi_snode *n = c->refs[r];
        char *frag = NULL;
        if (set_ptr(c, c->refwhere[r]) != 0)
            return -1;
        const json_t *target = resolve_pointer(c, n->ref, &frag);
        if (!target) {
            free(frag);
            return -1;
        }
        eddyi_snode *found = NULL;
        for (size_t i = 0; i < c->s->nnodes && !found; i++)
            if (c->s->nodes[i]->src == target)
                found = c->s->nodes[i];
        if (!found && set_ptr(c, frag) == 0)
            found = compile_node(c, target);
        free(frag);
        if (!found)
            return -1;
        n->ref_target = found;
    }
    /* A chain of references that never reaches a real schema is a cycle. */
    for (size_t r = 0; r < c->nrefs; r++) {
        const eddyi_snode *n = c->refs[r];
        size_t steps = 0;
        while (n->ref_target && steps <= c->nrefs) {
            n = n->ref_target;
            steps++;
        }
        if (steps > c->nrefs) {
            set_ptr(c, c->refwhere[r]);
            fail(c, EDDY_EINVAL, "$ref \"%.200s\" is part of a reference cycle", c->refs[r]->ref);
            return -1;
        }
    }
    return 0;
}

/* ---- public ---------------------------------------------------------------- */

static void free_cctx(cctx *c)
{
    for (size_t i = 0; i < c->nrefs; i++)
        free(c->refwhere[i]);
    free(c->refwhere);
    free(c->refs);
    free(c->ptr);
}

eddy_schema *eddy_schema_compile(const json_t *schema, eddy_error *err)
{
    if (!schema) {
        eddyi_error(err, EDDY_EINVAL, "eddy_schema_compile: schema is NULL");
        return NULL;
    }
    cctx c = {0};
    c.root = schema;
    c.err = err;
    c.s = calloc(1, sizeof *c.s);
    if (!c.s) {
        eddyi_error(err, EDDY_ENOMEM, "out of memory compiling a schema");
        return NULL;
    }
    if (reserve(&c, 64) != 0)
        goto fail;
    c.ptr[0] = '\0';
    c.s->root = compile_node(&c, schema);
    if (!c.s->root || resolve_refs(&c) != 0)
        goto fail;
    for (size_t i = 0; i < c.s->nnodes; i++)
        c.s->nodes[i]->src = NULL; /* borrowed only for the compilation */
    free_cctx(&c);
    return c.s;
fail:
    free_cctx(&c);
    eddy_schema_free(c.s);
    return NULL;
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

eddy_schema *eddy_schema_compile_file(const char *path, eddy_error *err)
{
    if (!path) {
        eddyi_error(err, EDDY_EINVAL, "eddy_schema_compile_file: path is NULL");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        char buf[128];
        const char *why = strerror_r(errno, buf, sizeof buf);
        eddyi_error(err, EDDY_EIO, "%s: cannot open: %s", path, why);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadf(f, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    int read_failed = ferror(f);
    fclose(f);
    if (!doc) {
        if (read_failed)
            eddyi_error(err, EDDY_EIO, "%s: read error", path);
        else
            eddyi_error(err, EDDY_EPARSE, "%s: line %d, column %d: %s", path, jerr.line,
                        jerr.column, jerr.text);
        return NULL;
    }
    eddy_schema *s = eddy_schema_compile(doc, err);
    json_decref(doc);
    return s;
}

void eddy_schema_free(eddy_schema *schema)
{
    if (!schema)
        return;
    for (size_t i = 0; i < schema->nnodes; i++)
        eddyi_snode_free(schema->nodes[i]);
    free(schema->nodes);
    free(schema);
}
