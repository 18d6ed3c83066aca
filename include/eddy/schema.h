/*
 * eddy/schema.h - JSON Schema (draft-07) validation, a schema registry per
 * event type and version, and upcasters (data migrations between versions).
 *
 * VALIDATOR
 *
 * A schema is compiled once (eddy_schema_compile) into an immutable
 * eddy_schema, then used to validate any number of JSON values, from any
 * number of threads at once.
 *
 * Supported keywords (draft-07): type ("integer" is a number with a zero
 * fraction, so 1.0 is an integer), enum, const (deep equality where 1 == 1.0),
 * properties, required, additionalProperties, patternProperties,
 * propertyNames, minProperties, maxProperties, dependencies, items (schema or
 * array form), additionalItems, contains, minItems, maxItems, uniqueItems,
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
 * minLength, maxLength (both in Unicode code points), pattern, allOf, anyOf,
 * oneOf, not, if/then/else, format, $ref, and boolean schemas (true/false).
 *
 * $ref and $id (RFC 3986 URIs): every "$id" sets the base URI of its schema
 * and the schemas below it; a $ref is resolved against the base where it is
 * written. The part before "#" names a schema by its $id, the document
 * itself, the draft-07 metaschema ("http://json-schema.org/draft-07/schema#",
 * built in: no network), or a file served by a local directory
 * (eddy_schema_options.remotes; eddy_schema_compile_file serves the schema
 * file's own directory, so "$ref": "address.json" next to it works). The
 * fragment is empty, a JSON pointer ("#/definitions/x", with ~0 ~1 and
 * %-escapes, even into a keyword eddy does not implement) or an anchor
 * ("#name", an "$id": "#name"). Nothing is fetched over a network: a URI
 * that nothing here serves is EDDY_EUNSUPPORTED at compile time. As in
 * draft-07, the other keywords beside a $ref (its $id included) are ignored
 * when validating (they are still checked when compiling). A schema that
 * applies itself to the same value again without end ({"allOf": [{"$ref":
 * "#"}]}) is refused at compile time (EDDY_EINVAL, "recurses without
 * consuming input").
 *
 * Every compiled schema is also validated against the draft-07 metaschema,
 * so what the keyword checks below let through ("type": ["string",
 * "string"], a "required" name listed twice) is refused too.
 *
 * Limits: validation that cannot finish is never reported as "invalid". It
 * returns EDDY_ELIMIT naming the limit when a regular expression match
 * backtracks past its limits (a pattern like "(a+)+b"), when $refs nest
 * deeper than 1000 levels on one path, or when validation takes more steps
 * than a budget proportional to the schema's size times the instance's
 * (a schema whose subschemas multiply, {"allOf": [{"$ref": "#/d/a"}, {"$ref":
 * "#/d/a"}]} repeated, would otherwise run for years).
 *
 * format: asserted for "email" (RFC 5321 addr-spec, ASCII: dot-atom or
 * quoted local part, host name or [IPv4] domain), "date-time" (RFC 3339,
 * with real month lengths and leap years; second 60 only at 23:59 UTC),
 * "date" and "time" (the RFC 3339 parts), "uri" (RFC 3986 absolute URI:
 * scheme, legal characters, valid %-escapes) and "uuid" (8-4-4-4-12 hex).
 * Every other format is an annotation and accepted, as draft-07 allows.
 *
 * pattern / patternProperties: compiled once with PCRE2 in UTF mode. This is
 * the subset of ECMA-262 syntax that PCRE2 shares (nearly all of it; \d and
 * \w are ASCII as in ECMA-262), matched as an unanchored search as ECMA-262
 * requires ("a+" matches "xaay").
 *
 * Annotation-only keywords are accepted and ignored: $schema, $id, title,
 * description, default, examples, $comment, definitions (compiled, for
 * $ref), readOnly, writeOnly, contentMediaType, contentEncoding. Any other
 * keyword makes compilation fail with EDDY_EUNSUPPORTED naming the keyword
 * and its JSON pointer in the schema, so a misspelt or unimplemented keyword
 * is never silently ignored, unless a $ref points into it (then it is a
 * container of schemas, like definitions).
 *
 * Error messages have the form "<instance JSON pointer>: <keyword> <what was
 * expected>, got <value>", e.g.
 *   /email: format email expected, got "x@"
 *   /age: minimum 0 expected, got -3
 *   (root): required property "user_id" missing
 *   /items/2/qty: type integer expected, got "a"
 * The root pointer is written "(root)"; values longer than about 60
 * characters are cut and end with "...".
 */
#ifndef EDDY_SCHEMA_H
#define EDDY_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

#include "eddy/error.h"
#include "eddy/event.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the validator ------------------------------------------------------ */

typedef struct eddy_schema eddy_schema;

/*
 * Compiles a draft-07 schema (an object or a boolean). `schema` is borrowed:
 * the compiled form copies what it needs, so the caller may free or change
 * `schema` afterwards. Returns a new schema (free it with eddy_schema_free),
 * or NULL with `err` filled:
 *   EDDY_EINVAL       a keyword's value has the wrong type or range, a
 *                     pattern does not compile, a $ref points nowhere
 *                     ("/properties/age/minimum: must be a number");
 *   EDDY_EUNSUPPORTED an unknown or unimplemented keyword, or a remote $ref
 *                     ("/properties/tags/foo: unsupported keyword \"foo\"");
 *   EDDY_ENOMEM.
 * Thread-safe (nothing shared between calls).
 */
eddy_schema *eddy_schema_compile(const json_t *schema, eddy_error *err);

/* A directory that serves the remote schemas whose URIs start with a prefix:
 * "$ref": PREFIX "folder/x.json#/y" reads DIR/folder/x.json (a relative path
 * of letters, digits and "-._~/" only, never outside DIR). Both borrowed. */
typedef struct eddy_schema_remote {
    const char *prefix; /* e.g. "http://localhost:1234/" */
    const char *dir;    /* e.g. "/usr/share/json-schema-test-suite/remotes" */
} eddy_schema_remote;

/* How a schema is compiled; the zero value is eddy_schema_compile's. */
typedef struct eddy_schema_options {
    const char *base_uri;              /* the schema's own URI, the base of
                                          its relative $refs; NULL: none */
    const eddy_schema_remote *remotes; /* borrowed for the call */
    size_t nremotes;
} eddy_schema_options;

/*
 * As eddy_schema_compile, with options (`opts` may be NULL). Remote files
 * are read during the call, never after; a remote directory's file that
 * cannot be read or parsed is EDDY_EIO / EDDY_EPARSE naming the file.
 * Thread-safe.
 */
eddy_schema *eddy_schema_compile_with(const json_t *schema,
                                      const eddy_schema_options *opts,
                                      eddy_error *err);

/*
 * As eddy_schema_compile, from JSON text of `len` bytes (borrowed; "\u0000"
 * is allowed in strings). Malformed JSON is EDDY_EPARSE with jansson's line
 * and column. Thread-safe.
 */
eddy_schema *eddy_schema_compile_text(const char *text, size_t len,
                                      eddy_error *err);

/*
 * As eddy_schema_compile, from a file holding JSON. Its base URI is its own
 * file: URI and its directory serves remote $refs below it. EDDY_EIO when it
 * cannot be read or is not a regular file (a FIFO or a device is refused at
 * once, never waited on), EDDY_EPARSE when it is not JSON (both naming the
 * file). Thread-safe.
 */
eddy_schema *eddy_schema_compile_file(const char *path, eddy_error *err);

/* As eddy_schema_compile_file, with options: their remotes are served too;
 * a base_uri replaces the file's own. */
eddy_schema *eddy_schema_compile_file_with(const char *path,
                                           const eddy_schema_options *opts,
                                           eddy_error *err);

/* Frees a compiled schema. NULL does nothing. Not while another thread is
 * still validating with it. */
void eddy_schema_free(eddy_schema *schema);

/*
 * Validates `instance` (borrowed; any JSON value). Returns EDDY_OK when it
 * is valid, EDDY_ESCHEMA with the FIRST error's message in `err` when it is
 * not, EDDY_ELIMIT when validation had to stop before it could tell (the
 * message names the limit: "/name: pattern \"(a+)+b\" hit the regular
 * expression match limit"), EDDY_EINVAL for NULL arguments, EDDY_ENOMEM.
 * Validation stops at the first error. Thread-safe: a compiled schema is never modified, so any
 * number of threads may validate with the same schema at once.
 */
int eddy_schema_validate(const eddy_schema *schema, const json_t *instance,
                         eddy_error *err);

/*
 * Called once per validation error by eddy_schema_validate_all, on the
 * calling thread, in document order of the schema's keywords.
 * `instance_path` is the raw JSON pointer of the offending value ("" for the
 * root, "/items/2/qty"); `keyword` is the failing keyword ("minimum");
 * `message` is the full message as described at the top of this file. All
 * three are borrowed for the call. Return 0 to go on, non-zero to stop.
 */
typedef int (*eddy_schema_error_fn)(const char *instance_path,
                                    const char *keyword, const char *message,
                                    void *user);

/*
 * Validates `instance` and reports EVERY error to `fn` (may be NULL to just
 * count them). `*count`, if not NULL, receives the number of errors
 * reported. Returns EDDY_OK when valid; EDDY_ESCHEMA when not, with the
 * first message in `err`; EDDY_ELIMIT when it had to stop (as
 * eddy_schema_validate; errors reported before it stand); EDDY_EINVAL for
 * NULL arguments; EDDY_ENOMEM.
 * Where a keyword combines subschemas (anyOf, oneOf, not), one error is
 * reported for the keyword, not the errors of each branch.
 * Thread-safe, as eddy_schema_validate.
 */
int eddy_schema_validate_all(const eddy_schema *schema, const json_t *instance,
                             eddy_schema_error_fn fn, void *user,
                             size_t *count, eddy_error *err);

/* ---- versions ----------------------------------------------------------- */

/*
 * Compares two dotted-number versions ("1.0" < "2.0" < "10.0"; "1" equals
 * "1.0"). Returns <0, 0 or >0; a string that is not a dotted number sorts
 * after every valid one and equal only to itself. Thread-safe.
 */
int eddy_schema_version_cmp(const char *a, const char *b);

/* ---- the registry ------------------------------------------------------- */

/*
 * A registry of schemas per (event type, version), a validation policy per
 * type, and chains of upcasters per type.
 *
 * Thread safety: the registry is built at start-up and then only read.
 * Registration calls (eddy_schema_registry_add*, _set_policy,
 * _add_upcaster) are one thread at a time and must not overlap with any
 * other call on the same registry; once registration is done, every other
 * function below is thread-safe.
 */
typedef struct eddy_schema_registry eddy_schema_registry;

/* When a type's events are validated: a bit mask. */
typedef enum eddy_validate_policy {
    EDDY_VALIDATE_OFF = 0,
    EDDY_VALIDATE_ON_PUBLISH = 1u << 0, /* before the bus delivers it */
    EDDY_VALIDATE_ON_APPEND = 1u << 1,  /* before the store accepts it */
    EDDY_VALIDATE_ALWAYS = (1u << 0) | (1u << 1)
} eddy_validate_policy;

/* A new, empty registry (free with eddy_schema_registry_free), or NULL when
 * out of memory. */
eddy_schema_registry *eddy_schema_registry_new(void);

/* Frees the registry, its schemas and upcasters (their `user` pointers are
 * not freed). NULL does nothing. */
void eddy_schema_registry_free(eddy_schema_registry *reg);

/*
 * Compiles `schema` (borrowed) and registers it for events of `type` with
 * dataversion `version` (a dotted number, "1.0"; both strings copied). The
 * first schema of a type sets its policy to EDDY_VALIDATE_ALWAYS unless
 * eddy_schema_registry_set_policy chose one before. Returns EDDY_OK;
 * EDDY_EINVAL for an empty type or a version that is not a dotted number;
 * EDDY_EEXIST when (type, version) already has a schema; or the compile
 * error (EDDY_EINVAL, EDDY_EUNSUPPORTED), with `err` filled. Nothing is
 * registered on failure. Registration thread only.
 */
int eddy_schema_registry_add(eddy_schema_registry *reg, const char *type,
                             const char *version, const json_t *schema,
                             eddy_error *err);

/* As eddy_schema_registry_add, from JSON text (EDDY_EPARSE if malformed). */
int eddy_schema_registry_add_text(eddy_schema_registry *reg, const char *type,
                                  const char *version, const char *text,
                                  size_t len, eddy_error *err);

/* As eddy_schema_registry_add, from a JSON file (EDDY_EIO, EDDY_EPARSE). */
int eddy_schema_registry_add_file(eddy_schema_registry *reg, const char *type,
                                  const char *version, const char *path,
                                  eddy_error *err);

/*
 * Registers every file DIR/TYPE@VERSION.json of directory `dir` (in name
 * order; other files and dot files are ignored), as
 * eddy_schema_registry_add_file. `*count` (may be NULL) receives how many.
 * Stops at the first failure, with `err` naming the file: EDDY_EIO (the
 * directory cannot be read), EDDY_EINVAL (a .json file not named
 * TYPE@VERSION.json, a bad schema), EDDY_EPARSE, EDDY_EEXIST; EDDY_ENOTFOUND
 * when it holds no schema file. Schemas registered before a failure stay.
 * Registration thread only.
 */
int eddy_schema_registry_add_dir(eddy_schema_registry *reg, const char *dir,
                                 size_t *count, eddy_error *err);

/*
 * Sets when events of `type` are validated (a mask of eddy_validate_policy
 * bits). Returns EDDY_OK, or EDDY_EINVAL for an empty type or unknown bits.
 * Registration thread only.
 */
int eddy_schema_registry_set_policy(eddy_schema_registry *reg,
                                    const char *type, unsigned policy,
                                    eddy_error *err);

/* The policy of `type`: EDDY_VALIDATE_OFF for a type the registry does not
 * know. Thread-safe. */
unsigned eddy_schema_registry_policy(const eddy_schema_registry *reg,
                                     const char *type);

/* The schema registered for (type, version), borrowed from the registry, or
 * NULL. Thread-safe. */
const eddy_schema *eddy_schema_registry_get(const eddy_schema_registry *reg,
                                            const char *type,
                                            const char *version);

/*
 * Validates the data of `ev` (borrowed) against the schema registered for
 * (its type, its dataversion), whatever the type's policy. An event of a
 * type without any schema passes. Returns EDDY_OK, or EDDY_ESCHEMA with
 * `err` filled: "user.registered 1.0: /email: format email expected, got
 * \"x@\"", or when the type has schemas but none for the event's version (or
 * the event has no dataversion, or carries binary data): the message names
 * the type and the version. Events without data are validated as JSON null.
 * Thread-safe.
 */
int eddy_schema_registry_validate_event(const eddy_schema_registry *reg,
                                        const eddy_event *ev, eddy_error *err);

/*
 * An upcaster: builds the data of the next version from `data` (borrowed,
 * read-only). Returns a NEW JSON reference (the registry releases it), or
 * NULL with `err` filled to fail the upcast. It runs on the thread that
 * calls eddy_schema_registry_upcast, possibly on several threads at once,
 * so it must be thread-safe; it must not register anything.
 */
typedef json_t *(*eddy_upcast_fn)(const json_t *data, void *user,
                                  eddy_error *err);

/*
 * Registers an upcaster of `type` from version `from` to version `to`
 * (strings copied; `user` borrowed, passed to `fn`). A type's upcasters form
 * one contiguous chain: the first may start anywhere, each next one must
 * start at the version the chain currently ends at, and `to` must be
 * greater than `from`. Returns EDDY_OK, or EDDY_EINVAL naming the versions
 * (a gap, a step backwards, an invalid version, NULL fn), EDDY_ENOMEM.
 * Registration thread only.
 */
int eddy_schema_registry_add_upcaster(eddy_schema_registry *reg,
                                      const char *type, const char *from,
                                      const char *to, eddy_upcast_fn fn,
                                      void *user, eddy_error *err);

/*
 * The latest version of `type`: where its upcaster chain ends, or its
 * highest schema version when it has no upcasters; NULL for an unknown
 * type. Borrowed from the registry. Thread-safe.
 */
const char *eddy_schema_registry_latest(const eddy_schema_registry *reg,
                                        const char *type);

/*
 * Brings `ev` (borrowed) to the latest version of its type by running the
 * upcasters from its dataversion to the end of the chain. Returns a NEW
 * reference (release with eddy_event_unref): `ev` itself, ref'd, when its
 * type has no upcasters or it is already at the latest version; otherwise a
 * new event with the same id and attributes (dataschema included, unchanged),
 * the upcast data and dataversion = the latest version. `ev` is never
 * changed. The result is not validated (call
 * eddy_schema_registry_validate_event for that). Returns NULL with `err`
 * filled: EDDY_EVERSION when the event's version is not on the chain (or it
 * has none), EDDY_EINVAL for binary data, or the failing upcaster's error
 * prefixed with "type from->to: ". Thread-safe.
 */
eddy_event *eddy_schema_registry_upcast(const eddy_schema_registry *reg,
                                        eddy_event *ev, eddy_error *err);

/*
 * Hook adapters with the eddy_event_check_fn / eddy_event_transform_fn
 * signatures of eddy/event.h; `reg` is the eddy_schema_registry.
 *   check_hook:   validates `ev` when its type's policy has ON_APPEND (for a
 *                 store), else returns EDDY_OK;
 *   publish_hook: the same for ON_PUBLISH (for a bus);
 *   upcast_hook:  eddy_schema_registry_upcast.
 * Thread-safe.
 */
int eddy_schema_registry_check_hook(const eddy_event *ev, void *reg,
                                    eddy_error *err);
int eddy_schema_registry_publish_hook(const eddy_event *ev, void *reg,
                                      eddy_error *err);
eddy_event *eddy_schema_registry_upcast_hook(eddy_event *ev, void *reg,
                                             eddy_error *err);

#ifdef __cplusplus
}
#endif
#endif /* EDDY_SCHEMA_H */
