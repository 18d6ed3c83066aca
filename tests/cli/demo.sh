#!/bin/bash
# tests/cli/demo.sh - `eddy demo` end to end: the order system on a durable
# store with both failure paths (declined payments and out-of-stock with
# refunds), a second run resuming the same store, a run without stock, then
# saga timeouts with late answers compensated, each run passing its own
# invariant checks; plus the usage errors.
# usage: bash demo.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: demo.sh EDDY_BINARY TESTDATA_DIR}
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

# figure NAME REGEX : the first number captured by REGEX in NAME's stdout
figure() {
    sed -nE "s/$2/\\1/p" "$TMP/$1.out" | head -n 1
}

# positive NAME WHAT VALUE
positive() {
    if ! [[ "$3" =~ ^[0-9]+$ ]] || [ "$3" -le 0 ]; then
        fail "$1: expected some $2, got '${3}'"
        sed 's/^/  stdout: /' "$TMP/$1.out" >&2
    fi
}

# 1. the issue's run: both cancellation reasons must happen.
run small 0 demo --orders 60 --users 5 --stock 20 --payment-failure-rate 0.2 \
    --seed 7 --store "sqlite:$TMP/small.db"
confirmed=$(figure small '^  confirmed +([0-9]+)$')
cancelled=$(figure small '^  cancelled +([0-9]+) .*$')
declined=$(figure small '^  cancelled .*payment_failed ([0-9]+),.*$')
no_stock=$(figure small '^  cancelled .*out_of_stock ([0-9]+),.*$')
refunds=$(figure small '^refunds +([0-9]+)$')
positive small "confirmed orders" "$confirmed"
positive small "cancelled orders" "$cancelled"
positive small "payment_failed cancellations" "$declined"
positive small "out_of_stock cancellations" "$no_stock"
# every out-of-stock order had been paid: one refund each, no more
[ "$refunds" = "$no_stock" ] || fail "small: $refunds refunds for $no_stock out-of-stock orders"
[ "$((confirmed + cancelled))" -eq 60 ] || fail "small: $confirmed + $cancelled != 60 orders"
grep -q '^all invariants hold$' "$TMP/small.out" || fail "small: no 'all invariants hold'"
if grep -q '^FAIL' "$TMP/small.out"; then fail "small: a FAIL line"; fi
[ "$(grep -c '^ok ' "$TMP/small.out")" -ge 8 ] || fail "small: fewer than 8 invariant checks"
# the read model is registered for `eddy projections rebuild`: the store
# stays consistent after a rebuild (when that command is built in)
if "$EDDY" help 2>/dev/null | grep -q '^  projections'; then
    dump='SELECT * FROM order_read_model ORDER BY order_id'
    sqlite3 "$TMP/small.db" "$dump" >"$TMP/before.txt"
    [ "$(wc -l <"$TMP/before.txt")" -eq 60 ] || fail "small: read model has not 60 rows"
    run rebuild 0 projections rebuild order_read_model --store "sqlite:$TMP/small.db"
    sqlite3 "$TMP/small.db" "$dump" >"$TMP/after.txt"
    cmp -s "$TMP/before.txt" "$TMP/after.txt" || fail "rebuild: the read model changed"
fi

# 2. the same store again: the demo resumes it, places 60 more orders
#    (numbered after the first 60), does not seed the stock again, and checks
#    every order of the store: 120.
run again 0 demo --orders 60 --users 5 --stock 20 --seed 8 --store "sqlite:$TMP/small.db"
grep -q '^resuming: the store holds [0-9]* events and 60 orders' "$TMP/again.out" ||
    fail "again: no 'resuming' line for 60 orders"
grep -q 'new orders from o0000061$' "$TMP/again.out" || fail "again: new orders not after o0000060"
[ "$(figure again '^orders placed +([0-9]+)$')" = 120 ] || fail "again: not 120 orders checked"
grep -q 'ends CONFIRMED or CANCELLED, exactly once (120/120)' "$TMP/again.out" ||
    fail "again: the end check does not cover 120 orders"
grep -q 'read model equals a fold of the store (120/120 rows match)' "$TMP/again.out" ||
    fail "again: the read model check does not cover 120 orders"
grep -q '^all invariants hold$' "$TMP/again.out" || fail "again: no 'all invariants hold'"
# the stock was seeded once, by the first run: 8 products x 20
grep -q 'its stock (160 units) was seeded by the first run' "$TMP/again.out" ||
    fail "again: the stock of the first run is not 160 units"
grep -q '= initial (160 units) - confirmed quantities for 8/8 products' "$TMP/again.out" ||
    fail "again: the stock was seeded again (initial is not 160 units)"

# 2b. no stock at all: every order runs out of stock, and that is no FAIL
#     (no product row is ever made; a missing row is none in stock)
run nostock 0 demo --orders 12 --users 3 --stock 0 --seed 5 --payment-failure-rate 0
[ "$(figure nostock '^  confirmed +([0-9]+)$')" = 0 ] || fail "nostock: confirmed orders without stock"
[ "$(figure nostock '^  cancelled .*out_of_stock ([0-9]+),.*$')" = 12 ] ||
    fail "nostock: not every order out of stock"
grep -q '^all invariants hold$' "$TMP/nostock.out" || fail "nostock: no 'all invariants hold'"
if grep -q '^FAIL' "$TMP/nostock.out"; then fail "nostock: a FAIL line"; fi

# 3. timeouts: the payment provider answers after the saga's deadline, so
#    orders are cancelled with reason timeout and late payments refunded.
run late 0 demo --orders 12 --users 3 --payment-latency-us 150000 \
    --saga-timeout-ms 20 --payment-failure-rate 0.3 --seed 3 --workers 2
timeouts=$(figure late '^  cancelled .*timeout ([0-9]+)\)$')
refunds=$(figure late '^refunds +([0-9]+)$')
positive late "timeout cancellations" "$timeouts"
positive late "refunds of late payments" "$refunds"
grep -q '^all invariants hold$' "$TMP/late.out" || fail "late: no 'all invariants hold'"

# 4. usage errors: exit status 2 and a message naming the problem
run badopt 2 demo --frobnicate 1
grep -q "unknown option '--frobnicate'" "$TMP/badopt.err" || fail "badopt: message"
run badnum 2 demo --orders many
grep -q "orders: expected a number" "$TMP/badnum.err" || fail "badnum: message"
run badrate 2 demo --payment-failure-rate 1.5
# NaN compares false with both bounds; it used to be accepted
run nanrate 2 demo --payment-failure-rate nan
grep -q "expected a number from 0 to 1, got 'nan'" "$TMP/nanrate.err" || fail "nanrate: message"
run infrate 2 demo --rate inf
run noval 2 demo --seed
run maxdisc 2 demo --max-disconnected 5
grep -q -- "--max-disconnected needs --transport" "$TMP/maxdisc.err" || fail "maxdisc: message"
run maxdisc_bad 2 demo --transport redis://127.0.0.1:1 --max-disconnected 0
grep -q "max-disconnected: expected a number from 1 to 86400, got '0'" "$TMP/maxdisc_bad.err" ||
    fail "maxdisc_bad: message"
run help 0 demo --help
grep -q -- '--payment-failure-rate' "$TMP/help.out" || fail "help: options missing"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "demo: all checks passed"
