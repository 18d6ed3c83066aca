/*
 * src/schema/validate.c - validates JSON values against a compiled schema.
 *
 * A validation keeps all of its state in a vctx on the caller's stack (the
 * instance pointer, the error count) and allocates PCRE2 match data per
 * match, so a compiled schema is only ever read: any number of threads may
 * validate with it at once.
 *
 * Validation that cannot finish (a regular expression past its limits,
 * $refs nested past MAX_REF_DEPTH, more steps than the budget) is not
 * "invalid": it halts everything at once (even inside "not", whose verdict
 * it would otherwise turn around) and returns EDDY_ELIMIT naming the limit.
 *
 * No keyword does more than O(n log n) work on an instance of size n:
 * uniqueItems sorts canonical encodings of the items instead of comparing
 * every pair (80,000 items took 19 s), and messages quote at most VALUE_MAX
 * bytes of a value without encoding the rest of it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "schema_internal.h"

/* $refs nested deeper than this on one path stop the validation (EDDY_ELIMIT)
 * rather than overflow the stack. (A schema that recurses on the same value
 * is refused at compile time; this bounds recursion that follows a deep
 * value.) */
#define MAX_REF_DEPTH 1000
/* Values quoted in messages are cut to this many bytes. */
#define VALUE_MAX 60
/* The step budget of one validation: MIN_STEPS + STEPS_PER_NODE_VALUE x
 * schema nodes x instance values. */
#define MIN_STEPS ((size_t)10000000)
#define STEPS_PER_NODE_VALUE ((size_t)16)

typedef struct vctx {
    const eddy_schema *schema;
    eddy_schema_error_fn fn;
    void *user;
    int silent;     /* > 0: inside anyOf/oneOf/not/if/contains: no reports */
    int first_only; /* stop at the first reported error */
    int stop;       /* the callback or first_only asked to stop */
    int oom;
    size_t count;
    eddy_error *err;
    char *path; /* JSON pointer of the current instance value */
    size_t len, cap;
    int ref_depth;
    int halt;               /* EDDY_ELIMIT (or EINVAL): stop, say why */
    char halt_msg[EDDY_ERROR_MESSAGE_MAX];
    size_t steps, max_steps; /* validate() calls, and their budget */
} vctx;

/* Validation cannot go on: anything else it would say is moot. */
#define HALTED(c) ((c)->oom || (c)->halt)

static int validate(vctx *c, const eddyi_snode *n, const json_t *v);

/* ---- deep equality ---------------------------------------------------------- */

static int num_equal(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_real(a) && json_is_real(b))
        return json_real_value(a) == json_real_value(b);
    const json_t *i = json_is_integer(a) ? a : b;
    double r = json_real_value(json_is_real(a) ? a : b);
    /* Exact: a real equals an integer only if it is that very integer. */
    if (!(r == floor(r)) || r < -9223372036854775808.0 || r >= 9223372036854775808.0)
        return 0;
    return (json_int_t)r == json_integer_value(i);
}

int eddyi_json_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return num_equal(a, b);
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!eddyi_json_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *key;
        size_t klen;
        json_t *va;
        json_object_keylen_foreach((json_t *)a, key, klen, va) {
            const json_t *vb = json_object_getn(b, key, klen);
            if (!vb || !eddyi_json_equal(va, vb))
                return 0;
        }
        return 1;
    }
    default: /* true, false, null: same type is same value */
        return 1;
    }
}

/* ---- messages ---------------------------------------------------------------- */

/* Collects the first bytes of an encoding; stops the encoder once it has
 * more than it will show. */
struct shown {
    char text[VALUE_MAX + 8];
    size_t len;
    int cut;
};

static int show_part(const char *buffer, size_t size, void *data)
{
    struct shown *sh = data;
    size_t room = sizeof sh->text - 1 - sh->len;
    size_t n = size < room ? size : room;
    memcpy(sh->text + sh->len, buffer, n);
    sh->len += n;
    if (n < size) {
        sh->cut = 1;
        return -1; /* enough: do not encode the rest */
    }
    return 0;
}

/* Writes `v` as compact JSON into buf, cut to VALUE_MAX bytes (never in the
 * middle of a UTF-8 sequence) with "..." appended when cut. Encodes no more
 * of `v` than it shows, whatever its size. */
static const char *show(const json_t *v, char *buf, size_t size)
{
    struct shown sh = {.len = 0};
    int rc = json_dump_callback(v, show_part, &sh,
                                JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (rc != 0 && !sh.cut) {
        snprintf(buf, size, "(value)");
        return buf;
    }
    size_t n = sh.len;
    size_t limit = size - 4 < VALUE_MAX ? size - 4 : VALUE_MAX;
    if (n > limit || sh.cut) {
        if (n > limit)
            n = limit;
        while (n > 0 && ((unsigned char)sh.text[n] & 0xC0) == 0x80)
            n--;
        snprintf(buf, size, "%.*s...", (int)n, sh.text);
    } else {
        snprintf(buf, size, "%.*s", (int)n, sh.text);
    }
    return buf;
}

static const char *show_num(const eddyi_num *num, char *buf, size_t size)
{
    if (num->is_int)
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, num->i);
    else
        snprintf(buf, size, "%.15g", num->d);
    return buf;
}

/* Reports one error at the current instance pointer; returns 1 (invalid). */
__attribute__((format(printf, 3, 4))) static int report(vctx *c, const char *keyword,
                                                        const char *fmt, ...)
{
    if (c->silent)
        return 1;
    char msg[EDDY_ERROR_MESSAGE_MAX];
    int n = snprintf(msg, sizeof msg, "%s: ", c->len ? c->path : "(root)");
    if (n < 0 || (size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (c->count++ == 0)
        eddyi_error(c->err, EDDY_ESCHEMA, "%s", msg);
    if (c->fn && c->fn(c->len ? c->path : "", keyword, msg, c->user) != 0)
        c->stop = 1;
    if (c->first_only)
        c->stop = 1;
    return 1;
}

/* Stops the validation with `code` (the first reason wins); returns 1. */
__attribute__((format(printf, 3, 4))) static int halt(vctx *c, int code, const char *fmt, ...)
{
    if (c->halt)
        return 1;
    c->halt = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->halt_msg, sizeof c->halt_msg, fmt, ap);
    va_end(ap);
    return 1;
}

/* The instance pointer for a message that must also say more: cut to its
 * first 100 bytes (into `buf`) so that the rest of the message survives. */
static const char *here_cut(const vctx *c, char *buf, size_t size)
{
    if (!c->len)
        return "(root)";
    if (c->len <= 100)
        return c->path;
    snprintf(buf, size, "%.100s...", c->path);
    return buf;
}

#define here(c) here_cut((c), (char[112]){0}, 112)

/* ---- the instance pointer ------------------------------------------------------- */

static size_t push(vctx *c, const char *seg)
{
    size_t saved = c->len;
    size_t n = strlen(seg);
    if (c->len + 2 * n + 2 > c->cap) {
        size_t cap = c->cap ? c->cap : 128;
        while (cap < c->len + 2 * n + 2)
            cap *= 2;
        char *p = realloc(c->path, cap);
        if (!p) {
            c->oom = 1;
            return saved;
        }
        c->path = p;
        c->cap = cap;
    }
    c->path[c->len++] = '/';
    for (size_t i = 0; i < n; i++) {
        if (seg[i] == '~' || seg[i] == '/') {
            c->path[c->len++] = '~';
            c->path[c->len++] = seg[i] == '~' ? '0' : '1';
        } else {
            c->path[c->len++] = seg[i];
        }
    }
    c->path[c->len] = '\0';
    return saved;
}

static size_t push_index(vctx *c, size_t i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", i);
    return push(c, buf);
}

static void pop(vctx *c, size_t saved)
{
    c->len = saved;
    if (c->path)
        c->path[saved] = '\0';
}

/* ---- keyword helpers ----------------------------------------------------------- */

/* 1 match, 0 no match, -1 the match could not run: the validation is
 * halted (a limit: EDDY_ELIMIT naming it; no memory; another PCRE2 error). */
static int regex_match(vctx *c, const eddyi_regex *re, const char *s, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) {
        c->oom = 1;
        return -1;
    }
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, md, c->schema->match);
    pcre2_match_data_free(md);
    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    const char *limit = NULL;
    unsigned value = 0;
    switch (rc) {
    case PCRE2_ERROR_MATCHLIMIT:
        limit = "match limit";
        value = EDDYI_REGEX_MATCH_LIMIT;
        break;
    case PCRE2_ERROR_DEPTHLIMIT:
        limit = "backtracking depth limit";
        value = EDDYI_REGEX_DEPTH_LIMIT;
        break;
    case PCRE2_ERROR_HEAPLIMIT:
        limit = "heap limit (KiB)";
        value = EDDYI_REGEX_HEAP_LIMIT_KIB;
        break;
    case PCRE2_ERROR_JIT_STACKLIMIT:
        limit = "JIT stack limit";
        break;
    case PCRE2_ERROR_NOMEMORY:
        c->oom = 1;
        return -1;
    default:
        break;
    }
    if (limit) {
        char figure[32] = "";
        if (value)
            snprintf(figure, sizeof figure, " (%u)", value);
        halt(c, EDDY_ELIMIT,
             "%s: pattern \"%.100s\" hit the regular expression %s%s; validation stopped "
             "(the value is neither valid nor invalid)",
             here(c), re->source, limit, figure);
        return -1;
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    halt(c, EDDY_EINVAL, "%s: pattern \"%.100s\" could not be matched: %s", here(c),
         re->source, (const char *)msg);
    return -1;
}

static int is_integer(const json_t *v)
{
    if (json_is_integer(v))
        return 1;
    if (!json_is_real(v))
        return 0;
    double d = json_real_value(v);
    return isfinite(d) && floor(d) == d;
}

static int type_matches(unsigned types, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return (types & EDDYI_T_NULL) != 0;
    case JSON_TRUE:
    case JSON_FALSE:
        return (types & EDDYI_T_BOOLEAN) != 0;
    case JSON_OBJECT:
        return (types & EDDYI_T_OBJECT) != 0;
    case JSON_ARRAY:
        return (types & EDDYI_T_ARRAY) != 0;
    case JSON_STRING:
        return (types & EDDYI_T_STRING) != 0;
    case JSON_INTEGER:
    case JSON_REAL:
        return (types & EDDYI_T_NUMBER) || ((types & EDDYI_T_INTEGER) && is_integer(v));
    }
    return 0;
}

static const char *type_names(unsigned types, char *buf, size_t size)
{
    static const char *const names[] = {"null",   "boolean", "object", "array",
                                        "number", "string",  "integer"};
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < 7; i++)
        if (types & (1u << i)) {
            int n = snprintf(buf + used, size - used, "%s%s", used ? " or " : "", names[i]);
            if (n < 0 || (size_t)n >= size - used)
                break;
            used += (size_t)n;
        }
    return buf;
}

/* <0, 0, >0 comparing a JSON number with a limit, exactly when both are
 * integers. */
static int num_cmp(const json_t *v, const eddyi_num *lim)
{
    if (json_is_integer(v) && lim->is_int) {
        json_int_t x = json_integer_value(v);
        return x < lim->i ? -1 : x > lim->i;
    }
    double x = json_number_value(v);
    return x < lim->d ? -1 : x > lim->d;
}

static int is_multiple(const json_t *v, const eddyi_num *m)
{
    if (json_is_integer(v) && m->is_int)
        return json_integer_value(v) % m->i == 0;
    double q = json_number_value(v) / m->d;
    if (!isfinite(q))
        return 0;
    /* Tolerate the rounding of binary fractions (0.3 / 0.1). */
    return fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q));
}

static size_t utf8_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* Runs `n` on `v` without reporting; 0 valid, 1 invalid. */
static int check_silent(vctx *c, const eddyi_snode *n, const json_t *v)
{
    size_t saved = c->len; /* an early return may leave segments pushed */
    c->silent++;
    int bad = validate(c, n, v);
    c->silent--;
    pop(c, saved);
    return bad;
}

/* Marks the node invalid, and returns at once unless every error is wanted. */
#define CHECK(expr)                                                            \
    do {                                                                       \
        if (expr) {                                                            \
            bad = 1;                                                           \
            if (c->silent || c->stop || HALTED(c))                             \
                return 1;                                                      \
        }                                                                      \
    } while (0)

/* ---- uniqueItems ------------------------------------------------------------------ */

/* A growable byte buffer. */
typedef struct bytes {
    char *p;
    size_t len, cap;
    int oom;
} bytes;

static void put(bytes *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_fmt(bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(bytes *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, n > 0 ? (size_t)n : 0);
}

struct member {
    const char *key;
    size_t klen;
    const json_t *value;
};

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int r = memcmp(x->key, y->key, n);
    return r ? r : (x->klen > y->klen) - (x->klen < y->klen);
}

/*
 * Appends a canonical encoding of `v`: two values get the same encoding
 * exactly when eddyi_json_equal says they are equal (numbers by value, 1 ==
 * 1.0; members in sorted order; strings by length and bytes).
 */
static void canonical(bytes *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL: put(b, "n", 1); break;
    case JSON_TRUE: put(b, "t", 1); break;
    case JSON_FALSE: put(b, "f", 1); break;
    case JSON_INTEGER: put_fmt(b, "i%" JSON_INTEGER_FORMAT ";", json_integer_value(v)); break;
    case JSON_REAL: {
        double r = json_real_value(v);
        if (r == floor(r) && r >= -9223372036854775808.0 && r < 9223372036854775808.0)
            put_fmt(b, "i%" JSON_INTEGER_FORMAT ";", (json_int_t)r); /* as num_equal */
        else
            put_fmt(b, "r%.17g;", r);
        break;
    }
    case JSON_STRING:
        put_fmt(b, "s%zu:", json_string_length(v));
        put(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_ARRAY:
        put_fmt(b, "a%zu[", json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            canonical(b, json_array_get(v, i));
        put(b, "]", 1);
        break;
    case JSON_OBJECT: {
        size_t n = json_object_size(v), k = 0;
        struct member *m = malloc((n ? n : 1) * sizeof *m);
        if (!m) {
            b->oom = 1;
            return;
        }
        const char *key;
        size_t klen;
        json_t *value;
        json_object_keylen_foreach((json_t *)v, key, klen, value) {
            m[k++] = (struct member){key, klen, value};
        }
        qsort(m, k, sizeof *m, member_cmp);
        put_fmt(b, "o%zu{", k);
        for (size_t i = 0; i < k; i++) {
            put_fmt(b, "%zu:", m[i].klen);
            put(b, m[i].key, m[i].klen);
            canonical(b, m[i].value);
        }
        put(b, "}", 1);
        free(m);
        break;
    }
    }
}

struct item {
    size_t index, off, len;
    const char *base; /* the encodings' buffer, for the comparison */
};

static int item_cmp(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->base + x->off, y->base + y->off, n);
    if (r)
        return r;
    if (x->len != y->len)
        return (x->len > y->len) - (x->len < y->len);
    return (x->index > y->index) - (x->index < y->index);
}

/*
 * Whether array `v` holds two equal items, in O(n log n): sorts the items'
 * canonical encodings (ties by index) and looks at neighbours. Reports the
 * same pair the pairwise loop did: the smallest index that has an equal
 * item, and the smallest index after it equal to it. Returns 1 with the pair,
 * 0 when all differ, -1 out of memory.
 */
static int find_duplicate(vctx *c, const json_t *v, size_t *first, size_t *second)
{
    size_t n = json_array_size(v);
    struct item *items = malloc(n * sizeof *items);
    bytes enc = {0};
    if (!items) {
        c->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        items[i].index = i;
        items[i].off = enc.len;
        canonical(&enc, json_array_get(v, i));
        items[i].len = enc.len - items[i].off;
    }
    if (enc.oom) {
        free(items);
        free(enc.p);
        c->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        items[i].base = enc.p;
    qsort(items, n, sizeof *items, item_cmp);
    int found = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        /* A run of equal encodings starts at i, sorted by index: its first
         * two are the run's smallest pair. */
        if (items[i].len == items[i + 1].len &&
            memcmp(enc.p + items[i].off, enc.p + items[i + 1].off, items[i].len) == 0 &&
            (i == 0 || items[i - 1].len != items[i].len ||
             memcmp(enc.p + items[i - 1].off, enc.p + items[i].off, items[i].len) != 0)) {
            if (!found || items[i].index < *first) {
                *first = items[i].index;
                *second = items[i + 1].index;
            }
            found = 1;
        }
    }
    free(items);
    free(enc.p);
    return found;
}

/* ---- by instance type ------------------------------------------------------------ */

static int validate_number(vctx *c, const eddyi_snode *n, const json_t *v)
{
    int bad = 0;
    char a[96], b[96];
    if (n->minimum.set)
        CHECK(num_cmp(v, &n->minimum) < 0 &&
              report(c, "minimum", "minimum %s expected, got %s",
                     show_num(&n->minimum, a, sizeof a), show(v, b, sizeof b)));
    if (n->maximum.set)
        CHECK(num_cmp(v, &n->maximum) > 0 &&
              report(c, "maximum", "maximum %s expected, got %s",
                     show_num(&n->maximum, a, sizeof a), show(v, b, sizeof b)));
    if (n->excl_minimum.set)
        CHECK(num_cmp(v, &n->excl_minimum) <= 0 &&
              report(c, "exclusiveMinimum", "exclusiveMinimum %s (greater than) expected, got %s",
                     show_num(&n->excl_minimum, a, sizeof a), show(v, b, sizeof b)));
    if (n->excl_maximum.set)
        CHECK(num_cmp(v, &n->excl_maximum) >= 0 &&
              report(c, "exclusiveMaximum", "exclusiveMaximum %s (less than) expected, got %s",
                     show_num(&n->excl_maximum, a, sizeof a), show(v, b, sizeof b)));
    if (n->multiple_of.set)
        CHECK(!is_multiple(v, &n->multiple_of) &&
              report(c, "multipleOf", "multipleOf %s expected, got %s",
                     show_num(&n->multiple_of, a, sizeof a), show(v, b, sizeof b)));
    return bad;
}

static int validate_string(vctx *c, const eddyi_snode *n, const json_t *v)
{
    int bad = 0;
    char b[96];
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (n->min_length >= 0 || n->max_length >= 0) {
        size_t chars = utf8_length(s, len);
        if (n->min_length >= 0)
            CHECK(chars < (size_t)n->min_length &&
                  report(c, "minLength", "minLength %lld expected, got %s (%zu characters)",
                         n->min_length, show(v, b, sizeof b), chars));
        if (n->max_length >= 0)
            CHECK(chars > (size_t)n->max_length &&
                  report(c, "maxLength", "maxLength %lld expected, got %s (%zu characters)",
                         n->max_length, show(v, b, sizeof b), chars));
    }
    if (n->pattern.code) {
        int m = regex_match(c, &n->pattern, s, len);
        if (m < 0)
            return 1; /* halted */
        CHECK(m == 0 && report(c, "pattern", "pattern \"%.100s\" expected, got %s",
                               n->pattern.source, show(v, b, sizeof b)));
    }
    if (n->format != EDDYI_FORMAT_NONE)
        CHECK(!eddyi_format_check(n->format, s, len) &&
              report(c, "format", "format %s expected, got %s", n->format_name,
                     show(v, b, sizeof b)));
    return bad;
}

static int validate_array(vctx *c, const eddyi_snode *n, const json_t *v)
{
    int bad = 0;
    char b[96];
    size_t size = json_array_size(v);
    if (n->min_items >= 0)
        CHECK(size < (size_t)n->min_items &&
              report(c, "minItems", "minItems %lld expected, got %zu items", n->min_items, size));
    if (n->max_items >= 0)
        CHECK(size > (size_t)n->max_items &&
              report(c, "maxItems", "maxItems %lld expected, got %zu items", n->max_items, size));
    if (n->unique_items && size > 1) {
        size_t first = 0, second = 0; /* set when dup is 1 */
        int dup = find_duplicate(c, v, &first, &second);
        if (dup < 0)
            return 1; /* out of memory */
        if (dup)
            CHECK(report(c, "uniqueItems", "uniqueItems expected, got equal items %zu and %zu: %s",
                         first, second, show(json_array_get(v, first), b, sizeof b)));
    }
    for (size_t i = 0; i < size; i++) {
        const eddyi_snode *item = NULL;
        const char *keyword = "items";
        if (!n->items_is_array)
            item = n->items;
        else if (i < n->nitems)
            item = n->items_array[i];
        else {
            item = n->additional_items;
            keyword = "additionalItems";
        }
        if (!item)
            continue;
        size_t saved = push_index(c, i);
        if (item->is_bool && !item->bool_value)
            CHECK(report(c, keyword, "%s false: no item allowed here, got %s", keyword,
                         show(json_array_get(v, i), b, sizeof b)));
        else
            CHECK(validate(c, item, json_array_get(v, i)));
        pop(c, saved);
    }
    if (n->contains) {
        int found = 0;
        for (size_t i = 0; i < size && !found && !HALTED(c); i++)
            found = !check_silent(c, n->contains, json_array_get(v, i));
        CHECK(!found && report(c, "contains", "contains (an item matching) expected, got %s",
                               show(v, b, sizeof b)));
    }
    return bad;
}

static int validate_object(vctx *c, const eddyi_snode *n, const json_t *v)
{
    int bad = 0;
    char b[96];
    size_t size = json_object_size(v);
    if (n->min_props >= 0)
        CHECK(size < (size_t)n->min_props &&
              report(c, "minProperties", "minProperties %lld expected, got %zu properties",
                     n->min_props, size));
    if (n->max_props >= 0)
        CHECK(size > (size_t)n->max_props &&
              report(c, "maxProperties", "maxProperties %lld expected, got %zu properties",
                     n->max_props, size));
    for (size_t i = 0; i < n->nrequired; i++)
        CHECK(!json_object_get(v, n->required[i]) &&
              report(c, "required", "required property \"%s\" missing", n->required[i]));
    for (size_t i = 0; i < n->nprops; i++) {
        const json_t *child = json_object_get(v, n->props[i].name);
        if (!child)
            continue;
        size_t saved = push(c, n->props[i].name);
        CHECK(validate(c, n->props[i].node, child));
        pop(c, saved);
    }
    if (n->npatterns || n->additional_props || n->property_names) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)v, key, child) {
            size_t saved = push(c, key);
            int matched = n->prop_index && json_object_get(n->prop_index, key);
            for (size_t i = 0; i < n->npatterns; i++) {
                int m = regex_match(c, &n->patterns[i].re, key, strlen(key));
                if (m < 0)
                    return 1; /* halted */
                if (m == 0)
                    continue;
                matched = 1;
                CHECK(validate(c, n->patterns[i].node, child));
            }
            if (!matched && n->additional_props) {
                const eddyi_snode *ap = n->additional_props;
                if (ap->is_bool && !ap->bool_value)
                    CHECK(report(c, "additionalProperties",
                                 "additionalProperties false: property \"%s\" not allowed, got %s",
                                 key, show(child, b, sizeof b)));
                else
                    CHECK(validate(c, ap, child));
            }
            if (n->property_names) {
                json_t *name = json_string(key);
                if (!name) {
                    c->oom = 1;
                    return 1;
                }
                int name_bad = check_silent(c, n->property_names, name);
                json_decref(name);
                CHECK(name_bad && report(c, "propertyNames",
                                         "propertyNames (a name matching) expected, got \"%s\"",
                                         key));
            }
            pop(c, saved);
        }
    }
    for (size_t i = 0; i < n->ndeps; i++) {
        const eddyi_sdep *d = &n->deps[i];
        if (!json_object_get(v, d->name))
            continue;
        if (d->schema)
            CHECK(validate(c, d->schema, v));
        for (size_t j = 0; j < d->nrequired; j++)
            CHECK(!json_object_get(v, d->required[j]) &&
                  report(c, "dependencies",
                         "dependencies property \"%s\" expected with \"%s\", missing",
                         d->required[j], d->name));
    }
    return bad;
}

/* ---- one node ------------------------------------------------------------------- */

static int validate(vctx *c, const eddyi_snode *n, const json_t *v)
{
    char a[160], b[96];
    if (HALTED(c))
        return 1;
    if (++c->steps > c->max_steps)
        return halt(c, EDDY_ELIMIT,
                    "%s: validation stopped after %zu steps (the step limit for this "
                    "schema and value); the schema applies its subschemas to the same "
                    "values too many times",
                    here(c), c->max_steps);
    if (n->is_bool)
        return n->bool_value ? 0
                             : report(c, "false", "schema false allows no value, got %s",
                                      show(v, b, sizeof b));
    if (n->ref_target) {
        /* draft-07: the keywords beside a $ref are ignored */
        if (c->ref_depth >= MAX_REF_DEPTH)
            return halt(c, EDDY_ELIMIT,
                        "%s: $ref \"%.200s\" nested deeper than %d levels (the $ref depth "
                        "limit); validation stopped (the value is neither valid nor invalid)",
                        here(c), n->ref, MAX_REF_DEPTH);
        c->ref_depth++;
        int r = validate(c, n->ref_target, v);
        c->ref_depth--;
        return r;
    }
    int bad = 0;
    if (n->types)
        CHECK(!type_matches(n->types, v) &&
              report(c, "type", "type %s expected, got %s", type_names(n->types, a, sizeof a),
                     show(v, b, sizeof b)));
    if (n->enum_values) {
        int found = 0;
        for (size_t i = 0; i < json_array_size(n->enum_values) && !found; i++)
            found = eddyi_json_equal(json_array_get(n->enum_values, i), v);
        CHECK(!found && report(c, "enum", "enum %s expected, got %s",
                               show(n->enum_values, a, sizeof a), show(v, b, sizeof b)));
    }
    if (n->has_const)
        CHECK(!eddyi_json_equal(n->const_value, v) &&
              report(c, "const", "const %s expected, got %s", show(n->const_value, a, sizeof a),
                     show(v, b, sizeof b)));
    if (json_is_number(v))
        CHECK(validate_number(c, n, v));
    else if (json_is_string(v))
        CHECK(validate_string(c, n, v));
    else if (json_is_array(v))
        CHECK(validate_array(c, n, v));
    else if (json_is_object(v))
        CHECK(validate_object(c, n, v));

    for (size_t i = 0; i < n->nall_of; i++)
        CHECK(validate(c, n->all_of[i], v));
    if (n->nany_of) {
        int any = 0;
        for (size_t i = 0; i < n->nany_of && !any && !HALTED(c); i++)
            any = !check_silent(c, n->any_of[i], v);
        CHECK(!any && report(c, "anyOf", "anyOf (at least one of %zu subschemas) expected, got %s",
                             n->nany_of, show(v, b, sizeof b)));
    }
    if (n->none_of) {
        size_t matches = 0;
        for (size_t i = 0; i < n->none_of && matches < 2 && !HALTED(c); i++)
            matches += !check_silent(c, n->one_of[i], v);
        CHECK(matches != 1 &&
              report(c, "oneOf", "oneOf (exactly one of %zu subschemas) expected, got %s matching %s",
                     n->none_of, show(v, b, sizeof b), matches ? "two or more" : "none"));
    }
    if (n->not_)
        CHECK(!check_silent(c, n->not_, v) &&
              report(c, "not", "not (a value the subschema rejects) expected, got %s",
                     show(v, b, sizeof b)));
    if (n->if_) {
        int cond_ok = !check_silent(c, n->if_, v);
        if (cond_ok && n->then_)
            CHECK(validate(c, n->then_, v));
        else if (!cond_ok && n->else_)
            CHECK(validate(c, n->else_, v));
    }
    return bad || HALTED(c);
}

/* ---- public ---------------------------------------------------------------------- */

/* The number of values in `v` (itself included), counted no deeper than
 * MAX_REF_DEPTH levels (it only sizes the step budget). */
static size_t count_values(const json_t *v, int depth)
{
    size_t n = 1;
    if (depth >= MAX_REF_DEPTH)
        return n;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            n += count_values(json_array_get(v, i), depth + 1);
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member) {
            n += count_values(member, depth + 1);
        }
    }
    return n;
}

static int run(const eddy_schema *schema, const json_t *instance, eddy_schema_error_fn fn,
               void *user, int first_only, size_t *count, eddy_error *err)
{
    if (count)
        *count = 0;
    if (!schema || !instance)
        return eddyi_error(err, EDDY_EINVAL, "eddy_schema_validate: %s is NULL",
                           schema ? "instance" : "schema");
    vctx c = {0};
    c.schema = schema;
    c.fn = fn;
    c.user = user;
    c.first_only = first_only;
    c.err = err;
    /* The step budget: what validating every node of the schema on every
     * value of the instance a few times over would take, and at least
     * MIN_STEPS; only a schema whose subschemas multiply reaches it. */
    size_t values = count_values(instance, 0);
    c.max_steps = MIN_STEPS;
    if (values && schema->nnodes <= (SIZE_MAX - MIN_STEPS) / STEPS_PER_NODE_VALUE / values)
        c.max_steps += STEPS_PER_NODE_VALUE * schema->nnodes * values;
    else if (values)
        c.max_steps = SIZE_MAX;
    int bad = validate(&c, schema->root, instance);
    free(c.path);
    if (c.oom)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory validating");
    if (c.halt) {
        if (count)
            *count = c.count;
        return eddyi_error(err, c.halt, "%s", c.halt_msg);
    }
    if (count)
        *count = c.count;
    if (!bad)
        return EDDY_OK;
    return EDDY_ESCHEMA; /* err already holds the first message */
}

int eddy_schema_validate(const eddy_schema *schema, const json_t *instance, eddy_error *err)
{
    return run(schema, instance, NULL, NULL, 1, NULL, err);
}

int eddy_schema_validate_all(const eddy_schema *schema, const json_t *instance,
                             eddy_schema_error_fn fn, void *user, size_t *count,
                             eddy_error *err)
{
    return run(schema, instance, fn, user, 0, count, err);
}
