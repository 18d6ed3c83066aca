#!/bin/bash
# tests/cli/schema_check.sh - `eddy schema check FILE --type T --version V`
# end to end: events (one, batch, JSON lines) and bare data validated against
# the order system's built-in schemas or a --schemas DIR; exit status 0 (all
# valid), 1 (some invalid: every error on stdout, prefixed by the event id),
# 2 (usage, unreadable/malformed input, bad schemas dir, unknown type/version).
# usage: bash schema_check.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: schema_check.sh EDDY_BINARY TESTDATA_DIR}
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

# event ID TYPE VERSION DATA : one CloudEvents JSON event on one line
event() {
    printf '{"specversion": "1.0", "id": "%s", "type": "%s", "source": "test",' "$1" "$2"
    printf ' "dataversion": "%s", "data": %s}\n' "$3" "$4"
}

GOOD_DATA='{"user_id": "u-1", "email": "ann@example.com", "full_name": "Ann Lee", "registration_source": "web"}'
BAD_DATA='{"user_id": "u-2", "email": "x@", "registration_source": "web"}'
event ev-good user.registered 2.0 "$GOOD_DATA" >"$TMP/good.json"
event ev-bad user.registered 2.0 "$BAD_DATA" >"$TMP/bad.json"
CHECK=(schema check --type user.registered --version 2.0)

# a valid user.registered 2.0 event against the built-in registry: 0, "ok ID"
run valid 0 "${CHECK[@]}" "$TMP/good.json"
expect valid out "ok ev-good"
lines valid out 1
# the same from standard input, explicitly and by default; "2" equals "2.0"
STDIN="$TMP/good.json" run stdin_dash 0 schema check - --type user.registered --version 2
expect stdin_dash out "ok ev-good"
STDIN="$TMP/good.json" run stdin_default 0 schema check --type=user.registered --version=2.0
expect stdin_default out "ok ev-good"

# invalid (bad email, missing full_name): 1, every error on its own line,
# prefixed by the event id, with the JSON pointer and the keyword
run invalid 1 "${CHECK[@]}" "$TMP/bad.json"
expect invalid out 'invalid ev-bad: /email: format email expected, got "x@"'
expect invalid out 'invalid ev-bad: (root): required property "full_name" missing'
lines invalid out 2
[ -s "$TMP/invalid.err" ] && fail "invalid: unexpected stderr"

# a batch (array): one line per event, the invalid one's errors by its id
{ echo '['; cat "$TMP/good.json"; echo ','; cat "$TMP/bad.json"; echo ']'; } >"$TMP/batch.json"
run batch 1 "${CHECK[@]}" "$TMP/batch.json"
expect batch out "ok ev-good"
expect batch out 'invalid ev-bad: /email: format email expected'
lines batch out 3
echo '[]' >"$TMP/empty_batch.json"
run empty_batch 0 "${CHECK[@]}" "$TMP/empty_batch.json"
lines empty_batch out 0

# JSON lines, with a line that is not a CloudEvent and one that is not JSON
{ cat "$TMP/good.json"; echo; echo '{"specversion": "1.0", "id": "x", "type": "user.registered"}';
  echo '{"broken": '; cat "$TMP/bad.json"; } >"$TMP/lines.jsonl"
run jsonl 1 "${CHECK[@]}" "$TMP/lines.jsonl"
expect jsonl out "ok ev-good"
expect jsonl out "invalid line 3: source"
expect jsonl out "invalid line 4: JSON parse error"
expect jsonl out 'invalid ev-bad: /email: format email expected'
lines jsonl out 5

# all valid JSON lines: 0
{ cat "$TMP/good.json"; event ev-good2 user.registered 2.0 "$GOOD_DATA"; } >"$TMP/good.jsonl"
run jsonl_good 0 "${CHECK[@]}" "$TMP/good.jsonl"
expect jsonl_good out "ok ev-good2"
lines jsonl_good out 2

# strict CloudEvents decoding first: a bad time is an error, not checked data
printf '{"specversion": "1.0", "id": "t-1", "type": "user.registered", "source": "s", "time": "yesterday", "dataversion": "2.0", "data": %s}\n' "$GOOD_DATA" >"$TMP/badtime.json"
run badtime 1 "${CHECK[@]}" "$TMP/badtime.json"
expect badtime out "invalid event: time"

# type / version mismatch: reported, and the data is still checked against
# the schema the user named
event ev-order order.placed 1.0 "$GOOD_DATA" >"$TMP/order.json"
run mismatch 1 "${CHECK[@]}" "$TMP/order.json"
expect mismatch out "invalid ev-order: type mismatch: event is order.placed, checked against user.registered 2.0"
expect mismatch out "invalid ev-order: dataversion mismatch: event is 1.0, checked against user.registered 2.0"
lines mismatch out 2
event ev-v1 user.registered 1.0 "$GOOD_DATA" >"$TMP/v1.json"
run version_mismatch 1 "${CHECK[@]}" "$TMP/v1.json"
expect version_mismatch out "invalid ev-v1: dataversion mismatch: event is 1.0"
lines version_mismatch out 1
echo '{"specversion": "1.0", "id": "nv", "type": "user.registered", "source": "s", "data": {}}' >"$TMP/nover.json"
run no_version 1 "${CHECK[@]}" "$TMP/nover.json"
expect no_version out "invalid nv: dataversion mismatch: event has none"
expect no_version out 'invalid nv: (root): required property "user_id" missing'

# bare data (an object without specversion) is validated directly
echo "$GOOD_DATA" >"$TMP/data_good.json"
run data_good 0 "${CHECK[@]}" "$TMP/data_good.json"
expect data_good out "ok data"
echo "$BAD_DATA" >"$TMP/data_bad.json"
run data_bad 1 "${CHECK[@]}" "$TMP/data_bad.json"
expect data_bad out 'invalid data: /email: format email expected, got "x@"'
expect data_bad out 'invalid data: (root): required property "full_name" missing'
lines data_bad out 2
# another type and version of the built-in registry
echo '{"order_id": "o-1", "customer_id": "c-1", "amount": 9.5, "items": [{"product_id": "p", "quantity": 0, "price": 1}]}' >"$TMP/placed.json"
run placed 1 schema check "$TMP/placed.json" --type order.placed --version 1.0
expect placed out 'invalid data: /items/0/quantity: minimum 1 expected, got 0'

# --schemas DIR: every TYPE@VERSION.json is registered
mkdir "$TMP/schemas"
cat >"$TMP/schemas/sensor.reading@1.0.json" <<'JSON'
{"type": "object", "required": ["celsius"],
 "properties": {"celsius": {"type": "number", "minimum": -273.15}}}
JSON
cat >"$TMP/schemas/sensor.reading@2.0.json" <<'JSON'
{"type": "object", "required": ["kelvin"], "properties": {"kelvin": {"type": "number", "minimum": 0}}}
JSON
echo 'not a schema, not .json: skipped' >"$TMP/schemas/README"
event r-1 sensor.reading 1.0 '{"celsius": 21.5}' >"$TMP/r1.json"
event r-2 sensor.reading 1.0 '{"celsius": -300}' >>"$TMP/r1.json"
run custom 1 schema check "$TMP/r1.json" --schemas "$TMP/schemas" --type sensor.reading --version 1.0
expect custom out "ok r-1"
expect custom out "invalid r-2: /celsius: minimum -273.15 expected, got -300"
lines custom out 2
run custom_v2 1 schema check "$TMP/r1.json" --schemas "$TMP/schemas" --type sensor.reading --version 2.0
expect custom_v2 out 'invalid r-1: (root): required property "kelvin" missing'
# the custom dir replaces the built-in registry
run custom_no_builtin 2 schema check "$TMP/good.json" --schemas "$TMP/schemas" --type user.registered --version 2.0
expect custom_no_builtin err "type user.registered has no schema"

# unknown (type, version): 2, with what the type has
run unknown_version 2 schema check "$TMP/good.json" --type user.registered --version 3.0
expect unknown_version err "user.registered 3.0: no schema registered"
expect unknown_version err "1.0, 2.0"
lines unknown_version out 0
run unknown_type 2 schema check "$TMP/good.json" --type no.such.type --version 1.0
expect unknown_type err "type no.such.type has no schema"
run unknown_custom 2 schema check "$TMP/r1.json" --schemas "$TMP/schemas" --type sensor.reading --version 9.0
expect unknown_custom err "schemas exist for 1.0, 2.0"

# bad schemas dirs: 2
run no_dir 2 schema check "$TMP/good.json" --schemas "$TMP/nonexistent" --type t --version 1.0
expect no_dir err "nonexistent"
mkdir "$TMP/empty"
run empty_dir 2 schema check "$TMP/good.json" --schemas "$TMP/empty" --type t --version 1.0
expect empty_dir err "no TYPE@VERSION.json"
mkdir "$TMP/badname"
echo '{}' >"$TMP/badname/sensor.json"
run bad_name 2 schema check "$TMP/good.json" --schemas "$TMP/badname" --type t --version 1.0
expect bad_name err "sensor.json: not named TYPE@VERSION.json"
mkdir "$TMP/badschema"
echo '{"type": "object", "containz": {}}' >"$TMP/badschema/t@1.0.json"
run bad_schema 2 schema check "$TMP/good.json" --schemas "$TMP/badschema" --type t --version 1.0
expect bad_schema err 'unsupported keyword "containz"'
mkdir "$TMP/badversion"
echo '{}' >"$TMP/badversion/t@latest.json"
run bad_version 2 schema check "$TMP/good.json" --schemas "$TMP/badversion" --type t --version latest
expect bad_version err "t@latest.json"

# A FIFO in --schemas is refused at once (it used to block forever).
mkdir "$TMP/fifodir"
cp "$TMP/schemas/sensor.reading@1.0.json" "$TMP/fifodir/"
mkfifo "$TMP/fifodir/stuck@1.0.json"
status=0
timeout 20 "$EDDY" schema check "$TMP/r1.json" --schemas "$TMP/fifodir" --type sensor.reading \
    --version 1.0 >"$TMP/fifodir.out" 2>"$TMP/fifodir.err" || status=$?
[ "$status" -eq 2 ] || fail "fifodir: exit status $status, want 2 (124: it blocked)"
expect fifodir err "stuck@1.0.json: not a regular file"

# unreadable, malformed or empty input: 2
run missing 2 "${CHECK[@]}" "$TMP/nonexistent.json"
expect missing err "nonexistent.json"
printf '{\n  "specversion": "1.0",\n  "id": \n' >"$TMP/malformed.json"
run malformed 2 "${CHECK[@]}" "$TMP/malformed.json"
expect malformed err "malformed.json: JSON parse error at line 4"
printf '\n  \n' >"$TMP/blank.json"
run blank 2 "${CHECK[@]}" "$TMP/blank.json"
expect blank err "no events"

# usage and help
run help 0 schema --help
expect help out "check"
run check_help 0 schema check --help
expect check_help out "usage: eddy schema check"
expect check_help out "--schemas DIR"
expect check_help out "TYPE@VERSION.json"
expect check_help out "mismatch"
expect check_help out "exit status"
run no_type 2 schema check "$TMP/good.json" --version 2.0
expect no_type err "--type and --version are required"
run no_value 2 schema check "$TMP/good.json" --type user.registered --version
expect no_value err "--version needs a value"
run bad_option 2 "${CHECK[@]}" --frobnicate "$TMP/good.json"
expect bad_option err "unknown option"
run two_files 2 "${CHECK[@]}" "$TMP/good.json" "$TMP/bad.json"

if [ "$failures" -ne 0 ]; then
    echo "schema_check: $failures failure(s)" >&2
    exit 1
fi
echo "schema_check: all checks passed"
