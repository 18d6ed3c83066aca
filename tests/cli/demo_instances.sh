#!/bin/bash
# tests/cli/demo_instances.sh - one service on several processes: `eddy demo
# --instances N` runs every service (`eddy service NAME --store URL`) as N
# processes sharing ONE store, without a transport; the instances of a
# service share its subscriptions, projection and saga by partitions. A run
# SIGKILLs one payment instance mid-run and restarts it (its partitions move
# to the other instance), and must pass the same invariant checks as the
# in-process demo (no order lost or doubled, one mail per confirmed order,
# refunds, stock, the read model). Then a run on a named store with three
# instances, its resumption with two, and the usage errors.
# usage: bash demo_instances.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: demo_instances.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS... : keeps stdout/stderr in $TMP/NAME.out / .err
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

# holds NAME PATTERN [out|err] : NAME's stdout (stderr) has a line matching
holds() {
    local f="$TMP/$1.${3:-out}"
    if ! grep -qE -e "$2" "$f"; then
        fail "$1: no line matching '$2' in std${3:-out}"
        sed 's/^/  stdout: /' "$TMP/$1.out" >&2
        sed 's/^/  stderr: /' "$TMP/$1.err" >&2
    fi
}

invariants() {
    holds "$1" "^orders placed +$2$"
    holds "$1" "^ok +every order ends CONFIRMED or CANCELLED, exactly once \\($3/$3\\)"
    holds "$1" "^ok +every confirmed order had exactly one confirmation mail"
    holds "$1" "^ok +read model equals a fold of the store"
    holds "$1" "^ok +no dead letters \\(0\\)"
    holds "$1" "^ok +no saga instance left running \\(0\\)"
    holds "$1" "^all invariants hold$"
    if grep -q "FAIL" "$TMP/$1.out"; then
        fail "$1: a check failed"
        sed 's/^/  stdout: /' "$TMP/$1.out" >&2
    fi
}

# Two instances of each service; one payment instance SIGKILLed once 30% of
# the orders finished (orders placed at 40/s, so the kill lands while the
# rest are in flight) and restarted; the partitions are shared again.
run kill_payment 0 demo --instances 2 --kill payment --orders 60 --users 5 \
    --rate 40 --payment-failure-rate 0.1 --timeout 120
holds kill_payment "^partitions per instance once started: .*payment-service 8\\+8"
holds kill_payment "^killed payment instance 1 of 2 \\(pid [0-9]+, SIGKILL\\) after [0-9]+/60 orders finished"
holds kill_payment "^partitions per instance at the end: .*payment-service 8\\+8"
invariants kill_payment 60 60

# A named store, three instances each; then resumed with two.
store="sqlite:$TMP/shared.db"
run three 0 demo --store "$store" --instances 3 --orders 30 --users 5 \
    --timeout 120
holds three "every service as 3 processes sharing the store sqlite:$TMP/shared.db"
holds three "^partitions per instance once started: order-service-requests (6\\+5\\+5|5\\+5\\+6|5\\+6\\+5)"
invariants three 30 30
run resumed 0 demo --store "$store" --instances 2 --orders 20 --users 5 \
    --timeout 120
holds resumed "^resuming: the store holds 30 orders, 0 of them unfinished"
invariants resumed 50 50

# Usage errors.
run both 2 demo --instances 2 --transport redis://127.0.0.1:1
holds both "--instances and --transport exclude each other" err
run zero 2 demo --instances 0
holds zero "--instances: expected a number from 1 to 16" err
run kill_alone 2 demo --kill payment
holds kill_alone "--kill needs --transport or --instances" err
run serve_too 2 demo --instances 2 --serve 127.0.0.1:0
holds serve_too "--serve and --instances exclude each other" err
run no_store 2 service payment
holds no_store "service payment needs --store URL" err
run prefix_alone 2 service payment --store "sqlite:$TMP/x.db" --group-prefix p
holds prefix_alone "--group-prefix needs --transport" err

if [ "$failures" -ne 0 ]; then
    echo "demo_instances: $failures failure(s)" >&2
    exit 1
fi
echo "demo_instances: ok"
