#!/bin/bash
# tests/cli/demo_resume.sh - `eddy demo` on a store that holds an
# interrupted run: a run is SIGKILLed mid-way (orders placed, most of them
# unfinished), a second run on the same store is SIGKILLed too, right after
# it started; a third run resumes: the subscriptions, the projection and
# the saga finish the earlier runs' orders from their checkpoints, it places
# its own, and its invariant checks cover every order in the store.
# usage: bash demo_resume.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: demo_resume.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
pid=
# KEEP=1 keeps the store and the runs' output for a look after a failure
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    if [ -n "${KEEP:-}" ]; then echo "kept: $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
STORE="sqlite:$TMP/orders.db"
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# kill_when NAME PATTERN ARGS... : starts `eddy ARGS` in the background and
# SIGKILLs it once its stdout or stderr matches PATTERN (at most 120 s).
kill_when() {
    local name=$1 pattern=$2
    shift 2
    "$EDDY" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" &
    pid=$!
    for _ in $(seq 1 1200); do
        if grep -qsE "$pattern" "$TMP/$name.out" "$TMP/$name.err"; then break; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if ! kill -9 "$pid" 2>/dev/null; then
        fail "$name: the run ended before it could be killed"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
    wait "$pid" 2>/dev/null || true
    pid=
}

# resumed NAME : the number of orders the run found in the store
resumed() {
    sed -nE 's/^resuming: the store holds [0-9]+ events and ([0-9]+) orders.*/\1/p' \
        "$TMP/$1.out" | head -n 1
}

# 1. killed once 10% of its orders finished (producers place faster than
#    the orders finish: most placed orders are still in flight)
kill_when first 'eddy demo: [1-9][0-9]?% ' demo --orders 600 --users 10 \
    --seed 11 --payment-failure-rate 0.1 --store "$STORE"

# 2. resumed and killed again as soon as it said so: while its handlers
#    catch up with the first run's orders
kill_when second '^resuming: ' demo --orders 300 --users 10 \
    --seed 12 --store "$STORE"
before=$(resumed second)
if ! [[ "$before" =~ ^[0-9]+$ ]] || [ "$before" -le 0 ]; then
    fail "second: did not resume a store with orders (got '${before}')"
    sed 's/^/  stdout: /' "$TMP/second.out" >&2
fi

# 3. resumed to the end
status=0
"$EDDY" demo --orders 40 --users 12 --seed 13 --store "$STORE" </dev/null \
    >"$TMP/third.out" 2>"$TMP/third.err" || status=$?
held=$(resumed third)
placed=$(sed -nE 's/^orders placed +([0-9]+)$/\1/p' "$TMP/third.out")
unfinished=$(sed -nE 's/^resuming: .* orders, ([0-9]+) of them unfinished.*/\1/p' "$TMP/third.out")
if [ "$status" -ne 0 ] || ! grep -q '^all invariants hold$' "$TMP/third.out" ||
    grep -q '^FAIL' "$TMP/third.out"; then
    fail "third: exit status $status, or an invariant failed"
    sed 's/^/  stdout: /' "$TMP/third.out" >&2
    sed 's/^/  stderr: /' "$TMP/third.err" >&2
fi
if ! [[ "$held" =~ ^[0-9]+$ ]] || [ "$held" -lt "${before:-1}" ]; then
    fail "third: resumed $held orders, fewer than the $before the second run found"
elif [ "$placed" != "$((held + 40))" ]; then
    fail "third: $placed orders checked, want $held earlier + 40"
fi
grep -q "exactly once ($placed/$placed)" "$TMP/third.out" ||
    fail "third: the end check does not cover all $placed orders"
grep -q "read model equals a fold of the store ($placed/$placed rows match)" "$TMP/third.out" ||
    fail "third: the read model check does not cover all $placed orders"
echo "demo_resume: killed twice; the last run found $held orders ($unfinished unfinished) and checked $placed"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "demo_resume: all checks passed"
