#!/bin/bash
# tests/cli/flow_cli.sh - `eddy projections`, `eddy sagas`, `eddy trace` and
# `eddy graph` on a store filled by a small `eddy demo` run.
# usage: bash flow_cli.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: flow_cli.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STORE="sqlite:$TMP/flow.db"
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

# has NAME FILE-SUFFIX REGEX: the output matches
has() {
    grep -Eq -- "$3" "$TMP/$1.$2" || {
        fail "$1: $2 does not match /$3/"
        sed 's/^/  | /' "$TMP/$1.$2" >&2
    }
}

run demo 0 demo --store "$STORE" --orders 30 --users 5 --payment-failure-rate 0.2
has demo out "all invariants hold"

# projections
run plist 0 projections list --store "$STORE"
has plist out '^order_read_model +async +stopped +[0-9]+ +0 +[0-9]+@[^ ]+ +order\.\*'
run prebuild 0 projections rebuild order_read_model --store "$STORE"
has prebuild out '^rebuilt order_read_model: replayed [0-9]+ events'
has prebuild err '^rebuild: 100% \([0-9]+/[0-9]+ events\)'
has prebuild err '^rebuild: 0% '
run plist2 0 projections list --store "$STORE"
has plist2 out '^order_read_model +async +stopped +[0-9]+ +0 '
run punknown 1 projections rebuild no_such_view --store "$STORE"
has punknown err 'unknown projection "no_such_view".*order_read_model'
run pusage 2 projections frobnicate --store "$STORE"

# sagas
run slist 0 sagas list --store "$STORE"
[ "$(grep -c '^order_processing ' "$TMP/slist.out")" -eq 30 ] ||
    fail "sagas list: want 30 instances"
run srunning 0 sagas list --state running --store "$STORE"
has srunning out '^no sagas with state running'
run sconfirmed 0 sagas list --state CONFIRMED --store "$STORE"
has sconfirmed out 'completed +CONFIRMED'
ORDER=$(awk 'NR == 2 { print $2 }' "$TMP/slist.out")
run sshow 0 sagas show "$ORDER" --store "$STORE"
has sshow out "^saga +order_processing $ORDER"
has sshow out '^  sent +ProcessPayment +attempts 1'
run smissing 1 sagas show nope --store "$STORE"
has smissing err 'no saga with id nope'

# trace: by subject (order id), by correlation, by event id
run trace 0 trace "$ORDER" --store "$STORE"
has trace out '^correlation [0-9a-f-]+: [0-9]+ nodes'
has trace out '^\+ +0\.000 ms  order\.placed  \(order-service\)'
has trace out '^\+ +[0-9.]+ ms    -> ProcessPayment  \[order_processing\]'
CORR=$(awk 'NR == 1 { sub(":", "", $2); print $2 }' "$TMP/trace.out")
run trace2 0 trace "$CORR" --store "$STORE"
cmp -s "$TMP/trace.out" "$TMP/trace2.out" || fail "trace by correlation differs"
EVENT=$(awk 'NR > 2 && !/->/ { print $NF; exit }' "$TMP/trace.out")
run trace3 0 trace "$EVENT" --store "$STORE"
cmp -s "$TMP/trace.out" "$TMP/trace3.out" || fail "trace by event id differs"
run tmissing 1 trace no-such-thing --store "$STORE"
has tmissing err 'no event, correlation, stream or subject "no-such-thing"'

# graph
run gdot 0 graph --store "$STORE"
has gdot out '^digraph eddy \{'
has gdot out 'label="order_processing", shape=box'
has gdot out 'label="sends [0-9]+"'
run gmer 0 graph --store "$STORE" --format mermaid
has gmer out '^flowchart LR'
has gmer out '\{\{"ProcessPayment"\}\}'
has gmer out '-->\|leads to [0-9]+\|'
run gbad 2 graph --store "$STORE" --format xml
has gbad err 'unknown format "xml"'
# An empty store has an empty graph (it used to hand qsort a NULL array,
# which the sanitizer build aborts on). An append of no lines creates it.
run gcreate 0 append --store "sqlite:$TMP/empty.db" --stream s --type t
run gempty 0 graph --store "sqlite:$TMP/empty.db"
has gempty out '^digraph eddy \{'
run gempty_mer 0 graph --store "sqlite:$TMP/empty.db" --format mermaid

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "flow_cli: all checks passed"
