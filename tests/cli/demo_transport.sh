#!/bin/bash
# tests/cli/demo_transport.sh - the order flow across processes: `eddy demo
# --transport redis://...` runs the five services (`eddy service NAME`) as
# child processes, each with its own store, over a real redis-server; the
# runs SIGKILL one service mid-run (payment, saga, orders over Redis;
# inventory over NATS JetStream, also started here) and
# restart it, and every run must pass the same invariant checks as the
# in-process demo (no order lost or doubled, one mail per confirmed order,
# refunds, stock). Plus the usage errors of `eddy service` and --kill.
# Starts its own servers (scripts/test-servers.sh) and fails loudly
# when it cannot.
# usage: bash demo_transport.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: demo_transport.sh EDDY_BINARY TESTDATA_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVERS="$HERE/../../scripts/test-servers.sh"
TMP=$(mktemp -d)
cleanup() {
    bash "$SERVERS" stop redis "$TMP/redis" >/dev/null 2>&1 || true
    bash "$SERVERS" stop nats "$TMP/nats" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

mkdir -p "$TMP/redis"
if ! PORT=$(bash "$SERVERS" start redis "$TMP/redis"); then
    echo "FAIL: cannot start redis-server (scripts/test-servers.sh)" >&2
    exit 1
fi
URL="redis://127.0.0.1:$PORT"
mkdir -p "$TMP/nats"
if ! NATS_PORT=$(bash "$SERVERS" start nats "$TMP/nats"); then
    echo "FAIL: cannot start nats-server (scripts/test-servers.sh)" >&2
    exit 1
fi

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

# holds NAME PATTERN : NAME's stdout has a line matching PATTERN
holds() {
    if ! grep -qE "$2" "$TMP/$1.out"; then
        fail "$1: no line matching '$2' in stdout"
        sed 's/^/  stdout: /' "$TMP/$1.out" >&2
        sed 's/^/  stderr: /' "$TMP/$1.err" >&2
    fi
}

# A kill-and-restart run per service: orders are placed at 40/s so that
# the kill (once 30% finished) lands while the rest are still in flight.
# The last run is over NATS JetStream.
for victim in payment saga orders inventory; do
    url=$URL
    [ "$victim" = inventory ] && url="nats://127.0.0.1:$NATS_PORT"
    run "kill_$victim" 0 demo --transport "$url" --orders 40 --users 5 \
        --rate 40 --payment-failure-rate 0.1 --kill "$victim" --timeout 60
    holds "kill_$victim" "^killed $victim \\(SIGKILL\\) after [0-9]+/40 orders finished"
    holds "kill_$victim" "^orders placed +40$"
    holds "kill_$victim" "^ok +every order ends CONFIRMED or CANCELLED, exactly once \\(40/40\\)"
    holds "kill_$victim" "^ok +every confirmed order had exactly one confirmation mail"
    holds "kill_$victim" "^ok +no dead letters \\(0\\)"
    holds "kill_$victim" "^all invariants hold$"
    if grep -q "FAIL" "$TMP/kill_$victim.out"; then
        fail "kill_$victim: a check failed"
        sed 's/^/  stdout: /' "$TMP/kill_$victim.out" >&2
    fi
done

# Usage errors.
run service_noname 2 service --transport "$URL" --store "sqlite:$TMP/x.db"
run service_unknown 2 service billing --transport "$URL" --store "sqlite:$TMP/x.db"
run service_nostore 2 service payment --transport "$URL"
run kill_notransport 2 demo --kill payment --orders 1
run kill_unknown 2 demo --transport "$URL" --kill billing --orders 1
grep -q "unknown service 'billing'" "$TMP/kill_unknown.err" ||
    fail "kill_unknown: the error does not name the service"
# an engine that is not there fails before any service starts
run no_server 1 demo --transport "redis://127.0.0.1:1" --orders 1

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "demo_transport: all passed"
