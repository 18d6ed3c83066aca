#!/bin/bash
# tests/cli/append_dataversion.sh - `eddy append --data-version V` gives the
# events it builds from bare data a dataversion, so that `eddy schema check`
# accepts them (it refuses events without one); CloudEvents lines keep their
# own; an empty version is a usage error.
# usage: bash append_dataversion.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: append_dataversion.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STORE="sqlite:$TMP/dv.db"
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS... : stdout/stderr kept in $TMP/NAME.out / .err
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

# expect NAME STREAM TEXT : fixed-string match in $TMP/NAME.STREAM
expect() {
    if ! grep -qF -- "$3" "$TMP/$1.$2"; then
        fail "$1: $2 lacks \"$3\""
        sed 's/^/  got: /' "$TMP/$1.$2" >&2
    fi
}

# events STREAM FILE : the stream's events as CloudEvents JSON lines (the
# "event" member of each `streams show --format jsonl` row, which is last)
events() {
    "$EDDY" streams show "$1" --store "$STORE" --format jsonl |
        sed -E 's/^\{.*"event":(\{.*\})\}$/\1/' >"$2"
    [ -s "$2" ] || fail "no events in stream $1"
}

USER='{"user_id": "u-1", "email": "ann@example.com", "full_name": "Ann Lee", "registration_source": "web"}'
CHECK=(schema check --type user.registered --version 2.0)

# --data with --data-version: the event carries it and passes the check
run versioned 0 append --store "$STORE" --stream user-1 --type user.registered \
    --data-version 2.0 --data "$USER"
id=$(awk '{ print $3 }' "$TMP/versioned.out")
events user-1 "$TMP/versioned.json"
grep -qF '"dataversion":"2.0"' "$TMP/versioned.json" ||
    fail "the appended event has no dataversion 2.0: $(cat "$TMP/versioned.json")"
run check_versioned 0 "${CHECK[@]}" "$TMP/versioned.json"
expect check_versioned out "ok $id"

# without it (as before): no dataversion, and schema check says so
run plain 0 append --store "$STORE" --stream user-2 --type user.registered --data "$USER"
events user-2 "$TMP/plain.json"
grep -qF '"dataversion"' "$TMP/plain.json" && fail "an event appended without --data-version has one"
run check_plain 1 "${CHECK[@]}" "$TMP/plain.json"
expect check_plain out "dataversion mismatch: event has none"

# standard input: every bare-data line gets it; a CloudEvents line keeps its own
{
    echo "$USER"
    printf '{"specversion": "1.0", "id": "ce-1", "type": "user.registered", "source": "import", "dataversion": "1.0", "data": %s}\n' "$USER"
    echo "$USER"
} >"$TMP/lines.jsonl"
STDIN="$TMP/lines.jsonl" run lines 0 append --store "$STORE" --stream user-3 \
    --type user.registered --data-version 2.0
[ "$(wc -l <"$TMP/lines.out")" -eq 3 ] || fail "lines: want 3 acknowledgements"
events user-3 "$TMP/lines.json"
[ "$(grep -cF '"dataversion":"2.0"' "$TMP/lines.json")" -eq 2 ] ||
    fail "lines: want 2 events with dataversion 2.0: $(cat "$TMP/lines.json")"
grep -F '"id":"ce-1"' "$TMP/lines.json" | grep -qF '"dataversion":"1.0"' ||
    fail "lines: the CloudEvents line lost its own dataversion"
run check_lines 1 "${CHECK[@]}" "$TMP/lines.json"
expect check_lines out "invalid ce-1: dataversion mismatch: event is 1.0"
[ "$(grep -c '^ok ' "$TMP/check_lines.out")" -eq 2 ] || fail "check_lines: want 2 ok lines"

# an empty version is a usage error, and nothing is appended
run empty 2 append --store "$STORE" --stream user-4 --type user.registered \
    --data-version "" --data "$USER"
expect empty err "--data-version must not be empty"
run after_empty 1 streams show user-4 --store "$STORE"

# --help documents it
run help 0 append --help
expect help out "--data-version V"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "append_dataversion: all checks passed"
