#!/bin/bash
# tests/cli/schema_validate.sh - `eddy schema validate` end to end: exit
# status 0 (valid), 1 (invalid, every error on stdout), 2 (bad schema,
# unreadable or malformed input, usage).
# usage: bash schema_validate.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: schema_validate.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS... : runs eddy, keeps stdout/stderr in $TMP/NAME.*
run() {
    local name=$1 want=$2 status=0
    shift 2
    "$EDDY" "$@" <"${STDIN:-/dev/null}" >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want (eddy $*)"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
}

# expect NAME STREAM PATTERN : fixed-string match in $TMP/NAME.STREAM
expect() {
    if ! grep -qF -- "$3" "$TMP/$1.$2"; then
        fail "$1: $2 lacks \"$3\""
        sed 's/^/  got: /' "$TMP/$1.$2" >&2
    fi
}

# lines NAME STREAM N : the stream has exactly N lines
lines() {
    local n
    n=$(wc -l <"$TMP/$1.$2")
    [ "$n" -eq "$3" ] || fail "$1: $2 has $n lines, want $3"
}

cat >"$TMP/order.schema.json" <<'JSON'
{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "required": ["order_id", "email", "items"],
  "properties": {
    "order_id": {"type": "string", "format": "uuid"},
    "email": {"type": "string", "format": "email"},
    "placed_at": {"type": "string", "format": "date-time"},
    "items": {
      "type": "array",
      "minItems": 1,
      "items": {"$ref": "#/definitions/item"}
    }
  },
  "definitions": {
    "item": {
      "type": "object",
      "required": ["sku", "qty"],
      "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
        "qty": {"type": "integer", "minimum": 1}
      },
      "additionalProperties": false
    }
  }
}
JSON

cat >"$TMP/good.json" <<'JSON'
{"order_id": "0190a3c2-7b1e-7cc1-8f00-5a1b2c3d4e5f", "email": "ann@example.com",
 "placed_at": "2024-06-01T12:00:00Z",
 "items": [{"sku": "ABC-1", "qty": 2}, {"sku": "XYZ-42", "qty": 1.0}]}
JSON

cat >"$TMP/bad.json" <<'JSON'
{"order_id": "nope", "email": "x@",
 "items": [{"sku": "ABC-1", "qty": 2}, {"sku": "abc", "qty": 0}, {"sku": "DEF-3", "qty": "a", "gift": true}]}
JSON

# valid: 0, "valid"
run valid 0 schema validate "$TMP/order.schema.json" "$TMP/good.json"
expect valid out "valid"
lines valid out 1

# the same from standard input, explicitly and by default
STDIN="$TMP/good.json" run stdin_dash 0 schema validate "$TMP/order.schema.json" -
expect stdin_dash out "valid"
STDIN="$TMP/good.json" run stdin_default 0 schema validate "$TMP/order.schema.json"
expect stdin_default out "valid"

# invalid: 1, every error on its own line, with path and keyword
run invalid 1 schema validate "$TMP/order.schema.json" "$TMP/bad.json"
expect invalid out '/order_id: format uuid expected, got "nope"'
expect invalid out '/email: format email expected, got "x@"'
expect invalid out '/items/1/sku: pattern "^[A-Z]{3}-[0-9]+$" expected, got "abc"'
expect invalid out '/items/1/qty: minimum 1 expected, got 0'
expect invalid out '/items/2/qty: type integer expected, got "a"'
expect invalid out '/items/2/gift: additionalProperties false: property "gift" not allowed'
lines invalid out 6
[ -s "$TMP/invalid.err" ] && fail "invalid: unexpected stderr"

# a missing required property at the root
echo '{"email": "ann@example.com", "items": [{"sku": "ABC-1", "qty": 1}]}' >"$TMP/noid.json"
run required 1 schema validate "$TMP/order.schema.json" "$TMP/noid.json"
expect required out '(root): required property "order_id" missing'

# bad schema: unsupported keyword, wrong keyword type, not JSON -> 2
echo '{"type": "object", "properties": {"tags": {"containz": {}}}}' >"$TMP/unsupported.json"
run unsupported 2 schema validate "$TMP/unsupported.json" "$TMP/good.json"
expect unsupported err '/properties/tags/containz: unsupported keyword "containz"'
echo '{"properties": {"age": {"minimum": "0"}}}' >"$TMP/badtype.json"
run badtype 2 schema validate "$TMP/badtype.json" "$TMP/good.json"
expect badtype err '/properties/age/minimum: must be a number'
echo '{"type": ' >"$TMP/broken.json"
run broken_schema 2 schema validate "$TMP/broken.json" "$TMP/good.json"
expect broken_schema err "broken.json"

# unreadable or malformed data -> 2
run missing_schema 2 schema validate "$TMP/nonexistent.json" "$TMP/good.json"
expect missing_schema err "nonexistent.json"
run missing_data 2 schema validate "$TMP/order.schema.json" "$TMP/nonexistent.json"
expect missing_data err "nonexistent.json"
echo '{"order_id": ' >"$TMP/malformed.json"
run malformed 2 schema validate "$TMP/order.schema.json" "$TMP/malformed.json"
expect malformed err "malformed.json: line"

# Validation that cannot finish exits 2 naming the limit, never 1.
echo '{"properties": {"name": {"pattern": "(a+)+b|c"}}}' >"$TMP/redos.schema.json"
echo '{"name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}' >"$TMP/redos.json"
run redos 2 schema validate "$TMP/redos.schema.json" "$TMP/redos.json"
expect redos err 'cannot validate (ELIMIT): /name: pattern "(a+)+b|c" hit the regular expression match limit (1000000)'
echo '{"name": "aab"}' >"$TMP/redos_ok.json"
run redos_ok 0 schema validate "$TMP/redos.schema.json" "$TMP/redos_ok.json"
echo '{"items": {"$ref": "#"}}' >"$TMP/nest.schema.json"
{ head -c 1500 /dev/zero | tr '\0' '['; head -c 1500 /dev/zero | tr '\0' ']'; } >"$TMP/nest.json"
run refdepth 2 schema validate "$TMP/nest.schema.json" "$TMP/nest.json"
expect refdepth err 'nested deeper than 1000 levels (the $ref depth limit)'
# A schema that recurses without consuming input is a schema error.
echo '{"allOf": [{"$ref": "#"}]}' >"$TMP/loop.schema.json"
run loop 2 schema validate "$TMP/loop.schema.json" "$TMP/good.json"
expect loop err 'bad schema: /allOf/0/$ref: $ref "#" recurses without consuming input'

# $ref to a file beside the schema, to a --remote directory, to the
# metaschema; $id changing the base.
mkdir -p "$TMP/refs/remote/common"
echo '{"type": "object", "required": ["city"], "properties": {"zip": {"$ref": "common/zip.json"}}}' \
    >"$TMP/refs/remote/address.json"
echo '{"type": "string", "pattern": "^[0-9]{5}$"}' >"$TMP/refs/remote/common/zip.json"
echo '{"type": "integer", "minimum": 1}' >"$TMP/refs/qty.json"
cat >"$TMP/refs/order.json" <<'JSON'
{"properties": {"qty": {"$ref": "qty.json"},
                "to": {"$ref": "https://schemas.example.com/address.json"}}}
JSON
echo '{"qty": 2, "to": {"city": "Paris", "zip": "75001"}}' >"$TMP/refs/ok.json"
echo '{"qty": 0, "to": {"zip": "7500"}}' >"$TMP/refs/bad.json"
run refs_ok 0 schema validate "$TMP/refs/order.json" "$TMP/refs/ok.json" \
    --remote "https://schemas.example.com/=$TMP/refs/remote"
run refs_bad 1 schema validate "$TMP/refs/order.json" "$TMP/refs/bad.json" \
    --remote "https://schemas.example.com/=$TMP/refs/remote"
expect refs_bad out '/qty: minimum 1 expected, got 0'
expect refs_bad out '/to: required property "city" missing'
expect refs_bad out '/to/zip: pattern "^[0-9]{5}$" expected, got "7500"'
run refs_noremote 2 schema validate "$TMP/refs/order.json" "$TMP/refs/ok.json"
expect refs_noremote err 'cannot resolve "https://schemas.example.com/address.json"'
run refs_badopt 2 schema validate "$TMP/refs/order.json" "$TMP/refs/ok.json" --remote nodir
echo '{"$ref": "http://json-schema.org/draft-07/schema#"}' >"$TMP/meta.json"
run meta_ok 0 schema validate "$TMP/meta.json" "$TMP/order.schema.json"
echo '{"type": "object", "minLength": -1, "required": "x"}' >"$TMP/notaschema.json"
run meta_bad 1 schema validate "$TMP/meta.json" "$TMP/notaschema.json"
expect meta_bad out '/minLength'
expect meta_bad out '/required'
# ... and every schema is checked against the metaschema when compiled
echo '{"required": ["a", "a"]}' >"$TMP/dupreq.json"
run dupreq 2 schema validate "$TMP/dupreq.json" "$TMP/good.json"
expect dupreq err 'not a valid draft-07 schema (by its metaschema): /required: uniqueItems expected'
# A FIFO as the schema is refused at once, never waited on.
mkfifo "$TMP/fifo.json"
status=0
timeout 20 "$EDDY" schema validate "$TMP/fifo.json" "$TMP/good.json" >"$TMP/fifo.out" \
    2>"$TMP/fifo.err" || status=$?
[ "$status" -eq 2 ] || fail "fifo: exit status $status, want 2 (124: it blocked)"
expect fifo err "not a regular file"

# usage and help
run help 0 schema --help
expect help out "validate"
run validate_help 0 schema validate --help
expect validate_help out "usage: eddy schema validate"
run no_args 2 schema
run too_many 2 schema validate a b c
run unknown_sub 2 schema frobnicate
expect unknown_sub err "unknown subcommand"

if [ "$failures" -ne 0 ]; then
    echo "schema_validate: $failures failure(s)" >&2
    exit 1
fi
echo "schema_validate: all checks passed"
