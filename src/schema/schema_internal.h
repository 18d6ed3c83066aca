/*
 * src/schema/schema_internal.h - the compiled form of a JSON Schema, shared
 * by the compiler (compile.c), the validator (validate.c) and the format
 * checks (format.c). Not public.
 */
#ifndef EDDY_SRC_SCHEMA_INTERNAL_H
#define EDDY_SRC_SCHEMA_INTERNAL_H

#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "eddy/schema.h"

/* Bits of the "type" keyword; 0 means the schema has no "type". */
enum {
    EDDYI_T_NULL = 1u << 0,
    EDDYI_T_BOOLEAN = 1u << 1,
    EDDYI_T_OBJECT = 1u << 2,
    EDDYI_T_ARRAY = 1u << 3,
    EDDYI_T_NUMBER = 1u << 4,
    EDDYI_T_STRING = 1u << 5,
    EDDYI_T_INTEGER = 1u << 6
};

/* Formats that are asserted; EDDYI_FORMAT_NONE: annotation only. */
enum {
    EDDYI_FORMAT_NONE = 0,
    EDDYI_FORMAT_EMAIL,
    EDDYI_FORMAT_DATE_TIME,
    EDDYI_FORMAT_DATE,
    EDDYI_FORMAT_TIME,
    EDDYI_FORMAT_URI,
    EDDYI_FORMAT_UUID
};

/* A numeric limit, kept as an integer when the schema wrote one. */
typedef struct eddyi_num {
    int set;
    int is_int;
    json_int_t i;
    double d;
} eddyi_num;

/* A compiled regular expression and its source (for messages). */
typedef struct eddyi_regex {
    pcre2_code *code; /* NULL: none */
    char *source;
} eddyi_regex;

typedef struct eddyi_snode eddyi_snode;

typedef struct eddyi_sprop {
    char *name;
    eddyi_snode *node;
} eddyi_sprop;

typedef struct eddyi_spattern {
    eddyi_regex re;
    eddyi_snode *node;
} eddyi_spattern;

/* One entry of "dependencies": a schema, or a list of required names. */
typedef struct eddyi_sdep {
    char *name;
    eddyi_snode *schema; /* NULL: the `required` form */
    char **required;
    size_t nrequired;
} eddyi_sdep;

/*
 * One compiled schema. Nodes point at each other freely ($ref may form
 * cycles); they all belong to the eddy_schema's node list, which frees them.
 */
struct eddyi_snode {
    int is_bool;    /* a boolean schema: only bool_value matters */
    int bool_value;
    const json_t *src; /* the source value; only valid while compiling */

    char *ref;               /* $ref as written, or NULL */
    eddyi_snode *ref_target; /* resolved $ref: the only thing validated */

    unsigned types;
    json_t *enum_values; /* deep copies, or NULL */
    json_t *const_value;
    int has_const;

    eddyi_sprop *props;
    size_t nprops;
    json_t *prop_index; /* object: property name -> true, for lookups */
    eddyi_spattern *patterns;
    size_t npatterns;
    eddyi_snode *additional_props;
    eddyi_snode *property_names;
    char **required;
    size_t nrequired;
    long long min_props, max_props; /* -1: none */
    eddyi_sdep *deps;
    size_t ndeps;

    eddyi_snode *items;        /* single-schema form */
    eddyi_snode **items_array; /* array form */
    size_t nitems;
    int items_is_array;
    eddyi_snode *additional_items;
    eddyi_snode *contains;
    long long min_items, max_items; /* -1: none */
    int unique_items;

    eddyi_num minimum, maximum, excl_minimum, excl_maximum, multiple_of;

    long long min_length, max_length; /* -1: none */
    eddyi_regex pattern;
    int format;
    char *format_name;

    eddyi_snode **all_of, **any_of, **one_of;
    size_t nall_of, nany_of, none_of;
    eddyi_snode *not_, *if_, *then_, *else_;
};

struct eddy_schema {
    eddyi_snode *root;
    eddyi_snode **nodes; /* every node, for freeing */
    size_t nnodes, cap;
    pcre2_match_context *match; /* the limits of every regex match; read only */
};

/*
 * Limits of one regular expression match (pcre2_set_match_limit, _depth_limit,
 * _heap_limit): far above what a sane pattern needs on a 1 MiB string, low
 * enough that catastrophic backtracking ("(a+)+b" on "aaaa...c") stops in
 * milliseconds. Hitting one makes validation fail with EDDY_ELIMIT.
 */
#define EDDYI_REGEX_MATCH_LIMIT 1000000u
#define EDDYI_REGEX_DEPTH_LIMIT 100000u
#define EDDYI_REGEX_HEAP_LIMIT_KIB 65536u

/* The draft-07 metaschema, as JSON text (metaschema.c). */
extern const char eddyi_draft07_metaschema[];

/* RFC 3986 section 5.2: `ref` resolved against `base` ("" for none), as a
 * new string (free it), or NULL when out of memory (uri.c). */
char *eddyi_uri_resolve(const char *base, const char *ref);

/* Deep JSON equality where numbers compare by value (1 == 1.0) and strings
 * by their full length (NUL bytes included). */
int eddyi_json_equal(const json_t *a, const json_t *b);

/* The EDDYI_FORMAT_* id of a format name, EDDYI_FORMAT_NONE if unchecked. */
int eddyi_format_lookup(const char *name);

/* True when `s` (of `len` bytes) is valid for format `id`. Thread-safe. */
int eddyi_format_check(int id, const char *s, size_t len);

/* Frees a node's contents and the node. */
void eddyi_snode_free(eddyi_snode *n);

#endif
