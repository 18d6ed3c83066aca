#!/bin/bash
# tests/cli/store_cli.sh - `eddy append`, `eddy events list`, `eddy streams`
# and `eddy store info` end to end on a temporary store.
# usage: bash store_cli.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: store_cli.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STORE="sqlite:$TMP/cli.db"
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS... : runs eddy with stdin from $TMP/NAME.in if it
# exists (else /dev/null); keeps stdout/stderr in $TMP/NAME.out / .err
run() {
    local name=$1 want=$2 status=0 input=/dev/null
    shift 2
    [ -f "$TMP/$name.in" ] && input="$TMP/$name.in"
    "$EDDY" "$@" <"$input" >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
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

# lines NAME N : $TMP/NAME.out has exactly N lines
lines() {
    local got
    got=$(wc -l <"$TMP/$1.out")
    [ "$got" -eq "$2" ] || fail "$1: $got lines of output, want $2"
}

# ---- help --------------------------------------------------------------------
for cmd in "append" "events list" "streams" "store"; do
    # shellcheck disable=SC2086
    run help 0 $cmd --help
    expect help out "usage: eddy $cmd"
done

# ---- append --data -------------------------------------------------------------
run data1 0 append --store "$STORE" --stream order-1 --type order.placed \
    --source shop --data '{"order_id":"1","amount":10}'
expect data1 out "1 1 "
lines data1 1
ID1=$(cut -d' ' -f3 "$TMP/data1.out")
[ ${#ID1} -eq 36 ] || fail "data1: event id '$ID1' is not a UUID"

# the store URL from $EDDY_STORE, and the expected version checked
EDDY_STORE="$STORE" run data2 0 append --stream order-1 --type order.confirmed \
    --expected-version 1 --data '{"order_id":"1"}'
expect data2 out "2 2 "

# ---- append from standard input: bare data and CloudEvents lines ----------------
cat >"$TMP/stdin1.in" <<'EOF'
{"order_id":"2","amount":5}

{"specversion":"1.0","id":"ev-fixed-1","type":"order.shipped","source":"warehouse","time":"2024-01-02T03:04:05Z","data":{"order_id":"2"}}
{"order_id":"2","amount":7}
EOF
run stdin1 0 append --store "$STORE" --stream order-2 --type order.placed \
    --expected-version 0
lines stdin1 3
# STREAM_VERSION GLOBAL_POSITION EVENT_ID LINE: the input line comes last
expect stdin1 out "1 3 "
expect stdin1 out "2 4 ev-fixed-1 3"
expect stdin1 out "3 5 "
[ "$(cut -d' ' -f4 "$TMP/stdin1.out" | tr '\n' ' ')" = "1 3 4 " ] ||
    fail "stdin1: acknowledged lines $(cut -d' ' -f4 "$TMP/stdin1.out" | tr '\n' ' '), want 1 3 4"
expect data1 out " -"

# ---- a conflict: the message names both versions -----------------------------------
run conflict 1 append --store "$STORE" --stream order-1 --type order.placed \
    --expected-version 1 --data '{}'
expect conflict err "expected version 1"
expect conflict err "actual 2"
lines conflict 0
echo '{"a":1}' >"$TMP/conflict_stdin.in"
run conflict_stdin 1 append --store "$STORE" --stream order-2 --type x \
    --expected-version 7
expect conflict_stdin err "line 1:"
expect conflict_stdin err "expected version 7"
expect conflict_stdin err "actual 3"

# ---- a bad line: named, everything before it stays stored --------------------------
printf '%s\n' '{"n":1}' '{"n":2}' '{"n": oops}' '{"n":4}' >"$TMP/badline.in"
run badline 1 append --store "$STORE" --stream bad-1 --type t.bad
expect badline err "line 3:"
lines badline 2
printf '%s\n' '{"n":1}' '{"specversion":"1.0","id":"x"}' >"$TMP/badce.in"
run badce 1 append --store "$STORE" --stream bad-2 --type t.bad
expect badce err "line 2:"
expect badce err "type"
printf '%s\n' '{"n":1}' >"$TMP/notype.in"
run notype 1 append --store "$STORE" --stream bad-3
expect notype err "line 1: bare data needs --type"

run usage_nostream 2 append --store "$STORE" --type t --data '{}'
expect usage_nostream err "--stream"
run usage_badver 2 append --store "$STORE" --stream s --type t --expected-version -3 --data 1
expect usage_badver err "expected-version"

# ---- events list ---------------------------------------------------------------
# 2 (order-1) + 3 (order-2) + 2 (bad-1) + 1 (bad-2) = 8 events; a table by default
run list_all 0 events list --store "$STORE"
lines list_all 9
expect list_all out "POSITION"
expect list_all out "order-2"
expect list_all out "ev-fixed-1"
run list_table 0 events list --store "$STORE" --format table
cmp -s "$TMP/list_all.out" "$TMP/list_table.out" || fail "list_table: differs from the default"
run list_jsonl 0 events list --store "$STORE" --format jsonl
lines list_jsonl 8
expect list_jsonl out '"position":1,"stream":"order-1","stream_version":1,'
expect list_jsonl out '"position":4,"stream":"order-2","stream_version":2,'
expect list_jsonl out '"specversion":"1.0"'
expect list_jsonl out "\"id\":\"$ID1\""
# every row's "event" (its last member) is a valid CloudEvents event
sed 's/^.*"event":\(.*\)}$/\1/' "$TMP/list_jsonl.out" >"$TMP/check.in"
run check 0 events check -
lines check 8
run list_type 0 events list --store "$STORE" --type order.placed --type order.shipped \
    --format jsonl
lines list_type 4
run list_stream 0 events list --store "$STORE" --stream order-2 --format table
lines list_stream 4
run list_from 0 events list --store "$STORE" --from 7 --limit 1 --format table
lines list_from 2
expect list_from out "bad-1"
run list_since 0 events list --store "$STORE" --since 2024-01-01T00:00:00Z \
    --until 2024-01-03T00:00:00Z --format jsonl
lines list_since 1
expect list_since out "ev-fixed-1"
run list_until 0 events list --store "$STORE" --until 2024-01-02T03:04:05Z --format jsonl
lines list_until 0
run list_badrange 2 events list --store "$STORE" --since 2024-01-03T00:00:00Z \
    --until 2024-01-02T00:00:00Z
expect list_badrange err "--since 2024-01-03T00:00:00Z is not before --until 2024-01-02T00:00:00Z"
grep -q "from_time_us" "$TMP/list_badrange.err" && fail "list_badrange: names the store's fields"
run list_badtime 2 events list --store "$STORE" --since yesterday
expect list_badtime err "RFC 3339"
run list_badfmt 2 events list --store "$STORE" --format xml
expect list_badfmt err 'unknown format "xml" (valid: table, jsonl, json)'
run list_nostore 1 events list --store "sqlite:$TMP/missing.db"
[ ! -e "$TMP/missing.db" ] || fail "list_nostore: a store file was created"

# ---- streams show / list ----------------------------------------------------------
run show 0 streams show order-2 --store "$STORE"
expect show out "stream order-2: version 3"
lines show 5
expect show out "order.shipped"
run show_jsonl 0 streams show order-2 --store "$STORE" --format jsonl
lines show_jsonl 3
expect show_jsonl out '"position":5,"stream":"order-2","stream_version":3,'
run show_missing 1 streams show nope --store "$STORE"
expect show_missing err "nope"
run show_noid 2 streams show --store "$STORE"
run slist 0 streams list --store "$STORE"
lines slist 5
expect slist out "STREAM"
expect slist out "order-1"
run slist_jsonl 0 streams list --store "$STORE" --format jsonl
lines slist_jsonl 4
expect slist_jsonl out '{"stream":"order-2","version":3}'

# ---- store info --------------------------------------------------------------------
run info 0 store info --store "$STORE"
expect info out "events:          8"
expect info out "streams:         4"
expect info out "head position:   8"
expect info out "schema version:"
expect info out "backend:         sqlite"
expect info out "size:"
run info_jsonl 0 store info --store "$STORE" --format jsonl
lines info_jsonl 1
expect info_jsonl out '"backend":"sqlite",'
expect info_jsonl out '"events":8,"streams":4,"snapshots":0,"head":8,'

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "store_cli: all passed"
