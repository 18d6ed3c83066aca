#!/bin/bash
# tests/cli/output_formats.sh - one output grammar for every listing command:
# --format table|jsonl|json (table by default), json being exactly the array
# of the jsonl rows, rows with the fields their --help promises; unknown
# formats, saga states and types and dead-letter handlers are errors naming
# the valid values. On a store filled by a small `eddy demo` run.
# usage: bash output_formats.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: output_formats.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STORE="sqlite:$TMP/formats.db"
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS...: stdout/stderr kept in $TMP/NAME.out / .err
run() {
    local name=$1 want=$2 status=0
    shift 2
    "$EDDY" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want (eddy $*)"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
}

# has NAME SUFFIX REGEX: the output matches
has() {
    grep -Eq -- "$3" "$TMP/$1.$2" || {
        fail "$1: $2 does not match /$3/"
        sed 's/^/  | /' "$TMP/$1.$2" >&2
    }
}

# rows NAME REQUIRED_KEYS... : $TMP/NAME.jsonl is non-empty, every line an
# object with those keys; $TMP/NAME.json is exactly the array of those lines.
rows() {
    local name=$1
    shift
    [ -s "$TMP/$name.jsonl.out" ] || fail "$name: no jsonl rows"
    { echo '['; sed '$!s/$/,/' "$TMP/$name.jsonl.out"; echo ']'; } >"$TMP/$name.want"
    cmp -s "$TMP/$name.want" "$TMP/$name.json.out" || {
        fail "$name: --format json is not the array of the jsonl rows"
        diff "$TMP/$name.want" "$TMP/$name.json.out" | head -5 >&2
    }
    local required
    required=$(printf '"%s",' "$@")
    cat >"$TMP/$name.schema" <<SCHEMA
{"type": "array", "minItems": 1,
 "items": {"type": "object", "required": [${required%,}]}}
SCHEMA
    "$EDDY" schema validate "$TMP/$name.schema" "$TMP/$name.json.out" >"$TMP/$name.valid" 2>&1 ||
        { fail "$name: rows lack fields"; sed 's/^/  | /' "$TMP/$name.valid" >&2; }
    [ "$(wc -l <"$TMP/$name.jsonl.out")" -eq "$(grep -c . "$TMP/$name.jsonl.out")" ] ||
        fail "$name: blank jsonl lines"
}

# formats NAME ARGS...: runs ARGS as table (the default, and explicitly),
# jsonl and json, all successfully
formats() {
    local name=$1
    shift
    run "$name.default" 0 "$@"
    run "$name.table" 0 "$@" --format table
    cmp -s "$TMP/$name.default.out" "$TMP/$name.table.out" ||
        fail "$name: the default format is not table"
    [ -s "$TMP/$name.table.out" ] || fail "$name: empty table"
    run "$name.jsonl" 0 "$@" --format jsonl
    run "$name.json" 0 "$@" --format json
    run "$name.xml" 2 "$@" --format xml
    has "$name.xml" err 'unknown format "xml" \(valid: table, jsonl, json\)'
}

run demo 0 demo --store "$STORE" --orders 30 --users 5 --payment-failure-rate 0.2
has demo out "all invariants hold"

# ---- every listing command -----------------------------------------------------
formats events events list --store "$STORE" --limit 5
rows events position stream stream_version recorded event
has events.jsonl out '^\{"position":1,"stream":"[^"]+","stream_version":1,'
[ "$(wc -l <"$TMP/events.jsonl.out")" -eq 5 ] || fail "events: --limit 5 gave other than 5 rows"

formats streams streams list --store "$STORE"
rows streams stream version
ORDER=$(grep -o '"stream":"order-[^"]*"' "$TMP/streams.jsonl.out" | head -1 | cut -d'"' -f4)
[ -n "$ORDER" ] || fail "streams: no order stream listed"

formats stream streams show "$ORDER" --store "$STORE"
rows stream position stream stream_version recorded event
has stream.jsonl out "^\\{\"position\":[0-9]+,\"stream\":\"$ORDER\",\"stream_version\":1,"

formats info store info --store "$STORE"
has info.jsonl out '^\{"store":"sqlite:[^"]+","backend":"sqlite","schema_version":[0-9]+,"events":[0-9]+,'
[ "$(wc -l <"$TMP/info.jsonl.out")" -eq 1 ] || fail "info: jsonl is not one line"
has info.json out '^  "head": [0-9]+,$'

formats projections projections list --store "$STORE"
rows projections name mode state checkpoint head lag pattern updated
has projections.jsonl out '"name":"order_read_model","mode":"async"'

formats sagas sagas list --store "$STORE"
rows sagas type id status result version correlation_id created updated state
SAGA=$(grep -o '"id":"[^"]*"' "$TMP/sagas.jsonl.out" | head -1 | cut -d'"' -f4)
formats saga sagas show "$SAGA" --store "$STORE"
rows saga type id status state commands timeouts
has saga.jsonl out '"commands":\[\{"id":"[^"]+","name":"ProcessPayment"'

formats trace trace "$SAGA" --store "$STORE"
rows trace correlation_id depth kind id name by time offset_us position
has trace.jsonl out '^\{"correlation_id":"[^"]+","depth":0,"kind":"event","id":"[^"]+","name":"order.placed"'
has trace.jsonl out '"kind":"command","id":"[^"]+","name":"ProcessPayment"'

# The demo leaves no dead letters: an empty listing is an empty array.
formats dlq dlq list --store "$STORE"
[ -s "$TMP/dlq.jsonl.out" ] && fail "dlq: jsonl of no dead letters is not empty"
[ "$(cat "$TMP/dlq.json.out")" = "[]" ] || fail "dlq: json of no dead letters is not []"

# ---- saga states: any case; an unknown state or type names the valid ones -----------
run confirmed_upper 0 sagas list --state CONFIRMED --store "$STORE" --format jsonl
run confirmed_lower 0 sagas list --state confirmed --store "$STORE" --format jsonl
[ -s "$TMP/confirmed_upper.out" ] || fail "no CONFIRMED sagas in the demo"
cmp -s "$TMP/confirmed_upper.out" "$TMP/confirmed_lower.out" ||
    fail "--state confirmed and CONFIRMED differ"
grep -v '"result":"CONFIRMED"' "$TMP/confirmed_upper.out" && fail "--state CONFIRMED let other results through"
run completed_mixed 0 sagas list --state Completed --store "$STORE" --format jsonl
[ "$(wc -l <"$TMP/completed_mixed.out")" -ge "$(wc -l <"$TMP/confirmed_upper.out")" ] ||
    fail "--state Completed lists fewer than CONFIRMED"
run running 0 sagas list --state running --store "$STORE"
has running out '^no sagas with state running'
run running_json 0 sagas list --state RUNNING --store "$STORE" --format json
[ "$(cat "$TMP/running_json.out")" = "[]" ] || fail "no running sagas is not []"
run bogus_state 2 sagas list --state bogus --store "$STORE"
has bogus_state err 'sagas list: unknown state "bogus" \(valid: running, completed, failed, .*CONFIRMED'
[ -s "$TMP/bogus_state.out" ] && fail "bogus_state: printed rows"
run bogus_type 2 sagas list --type bogus --store "$STORE" --format json
has bogus_type err 'unknown saga type "bogus" \(valid: order_processing\)'
[ -s "$TMP/bogus_type.out" ] && fail "bogus_type: printed output"
run show_state 2 sagas show "$SAGA" --state running --store "$STORE"

# ---- dead-letter handlers: an unknown one is an error, a known one is fine ------------
run purge_unknown 2 dlq purge --handler nosuch --store "$STORE"
has purge_unknown err 'dlq purge: unknown handler "nosuch" \(valid: .*payment-service'
run redrive_unknown 2 dlq redrive --all --handler nosuch --store "$STORE"
run list_unknown 2 dlq list --handler nosuch --store "$STORE"
run purge_known 0 dlq purge --handler payment-service --store "$STORE"
has purge_known out '^0 dead letters deleted'
run show_format_redrive 2 dlq redrive 1 --format json --store "$STORE"

# ---- a mistyped --store is an error, never a new empty store --------------------------
for cmd in "projections list" "projections rebuild order_read_model" "sagas list" \
           "sagas show x" "trace x" "graph" "dlq list" "events list" "streams list" \
           "store info"; do
    # shellcheck disable=SC2086
    run missing 1 $cmd --store "sqlite:$TMP/typo.db"
    has missing err "cannot open store sqlite:$TMP/typo.db"
    [ -e "$TMP/typo.db" ] && { fail "$cmd created a missing store"; rm -f "$TMP"/typo.db*; }
done

# ---- --help of every listing command describes the one grammar -----------------------
for cmd in "events list" "streams" "store" "dlq" "projections" "sagas" "trace"; do
    # shellcheck disable=SC2086
    run help 0 $cmd --help
    has help out 'table\|jsonl\|json'
    has help out '^  --format FORMAT +table \(default\), jsonl'
done

if [ "$failures" -ne 0 ]; then
    echo "output_formats: $failures failure(s)" >&2
    exit 1
fi
echo "output_formats: all checks passed"
