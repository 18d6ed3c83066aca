#!/bin/bash
# tests/cli/postgres_cli.sh - the eddy command on a PostgreSQL store: the
# order demo passes its checks; dlq, stats, projections (list and
# rebuild), sagas (list and show), trace and graph read its state; every
# service as two processes sharing the store (`--instances 2`), one payment
# instance SIGKILLed mid-run, passes the same checks; a
# service (`eddy service payment`, over a real redis-server) starts on a
# PostgreSQL store and stops cleanly; a URL with a password is shown
# redacted and the password appears in no output.
# Starts its own servers (scripts/test-servers.sh) and fails loudly when it
# cannot.
# usage: bash postgres_cli.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: postgres_cli.sh EDDY_BINARY TESTDATA_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVERS="$HERE/../../scripts/test-servers.sh"
TMP=$(mktemp -d)
chmod 755 "$TMP" # the server runs as an unprivileged user below it
SVC_PID=
cleanup() {
    [ -z "$SVC_PID" ] || kill -9 "$SVC_PID" 2>/dev/null || true
    bash "$SERVERS" stop postgres "$TMP/pg" >/dev/null 2>&1 || true
    bash "$SERVERS" stop redis "$TMP/redis" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

mkdir -p "$TMP/pg" "$TMP/redis"
if ! OUT=$(bash "$SERVERS" start postgres "$TMP/pg"); then
    echo "FAIL: cannot start PostgreSQL (scripts/test-servers.sh)" >&2
    exit 1
fi
PG_PORT=$(echo "$OUT" | head -1)
ADMIN="postgresql:///postgres?host=$TMP/pg&port=$PG_PORT&user=postgres"
if ! REDIS_PORT=$(bash "$SERVERS" start redis "$TMP/redis"); then
    echo "FAIL: cannot start redis-server (scripts/test-servers.sh)" >&2
    exit 1
fi
for db in demo svc inst; do
    psql -X -q -v ON_ERROR_STOP=1 "$ADMIN" -c "CREATE DATABASE $db" >/dev/null
done
# Over TCP with the server's password ("eddy", scram-sha-256): the URL
# printed anywhere must hide it.
STORE="postgres://postgres:eddy@127.0.0.1:$PG_PORT/demo"

# run NAME WANT_STATUS ARGS... : keeps stdout/stderr in $TMP/NAME.out / .err
run() {
    local name=$1 want=$2 status=0
    shift 2
    "$EDDY" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want (eddy $1 ...)"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
}

# holds NAME PATTERN : NAME's stdout has a line matching PATTERN
holds() {
    if ! grep -qE "$2" "$TMP/$1.out"; then
        fail "$1: no line matching '$2' in stdout"
        sed 's/^/  stdout: /' "$TMP/$1.out" >&2
    fi
}

run demo 0 demo --store "$STORE" --orders 300 --users 10
holds demo "^all invariants hold"
holds demo "^store: postgres://postgres:\*\*\*@127\.0\.0\.1"

# Every service as two processes on one PostgreSQL store, sharing each
# subscription's partitions; one payment instance SIGKILLed at 30%. (Write
# transactions of several processes share rows - a subscription's checkpoint
# and leases - and deadlocked before the append lock came first in each.)
run inst 0 demo --store "postgres://postgres:eddy@127.0.0.1:$PG_PORT/inst" \
    --orders 300 --users 10 --instances 2 --kill payment --timeout 120
holds inst "^killed payment instance"
holds inst "^ok +every order ends CONFIRMED or CANCELLED, exactly once \\(300/300\\)"
holds inst "^all invariants hold"

run dlq 0 dlq list --store "$STORE"
holds dlq "^ID +HANDLER +POSITION"
run stats 0 stats --store "$STORE"
holds stats "^order_read_model +[0-9]+ +[0-9]+ +0 "
holds stats "^store postgres://postgres:\*\*\*@"
run projections 0 projections list --store "$STORE"
holds projections "^order_read_model +async"
run rebuild 0 projections rebuild order_read_model --store "$STORE"
holds rebuild "^rebuilt order_read_model: replayed [0-9]+ events"
run sagas 0 sagas list --store "$STORE" --format jsonl
holds sagas '"status": ?"completed"'
ID=$(grep -m1 -oE '"id": ?"o[0-9]+"' "$TMP/sagas.out" | grep -oE 'o[0-9]+' || true)
run saga_show 0 sagas show "$ID" --store "$STORE"
holds saga_show "^status +(completed|failed) "
run trace 0 trace "$ID" --store "$STORE"
holds trace "order\.placed"
run graph 0 graph --store "$STORE" --format mermaid
holds graph "order\.placed"
run info 0 store info --store "$STORE" --format json
holds info '"backend": ?"postgres"'

# A service on a PostgreSQL store: starts, says so, stops on SIGTERM.
SVC_STORE="postgres:///svc?host=$TMP/pg&port=$PG_PORT&user=postgres"
"$EDDY" service payment --transport "redis://127.0.0.1:$REDIS_PORT" \
    --store "$SVC_STORE" </dev/null >"$TMP/svc.out" 2>"$TMP/svc.err" &
SVC_PID=$!
for _ in $(seq 1 300); do
    grep -q "^ready payment" "$TMP/svc.out" 2>/dev/null && break
    kill -0 "$SVC_PID" 2>/dev/null || break
    sleep 0.1
done
if grep -q "^ready payment" "$TMP/svc.out"; then
    kill -TERM "$SVC_PID"
    status=0
    wait "$SVC_PID" || status=$?
    [ "$status" -eq 0 ] || fail "service payment: exit status $status after SIGTERM"
else
    fail "service payment did not get ready on PostgreSQL"
    sed 's/^/  stderr: /' "$TMP/svc.err" >&2
fi
SVC_PID=
run svc_stats 0 stats --store "$SVC_STORE"
holds svc_stats "^payment"

# A wrong password: refused at once, naming the user; no password shown.
run badpw 1 store info --store "postgres://postgres:not-this-one@127.0.0.1:$PG_PORT/demo"
grep -q 'password authentication failed for user "postgres"' "$TMP/badpw.err" ||
    fail "badpw: the error does not say why"
if grep -l -e "not-this-one" -e "postgres:eddy@" "$TMP"/*.out "$TMP"/*.err; then
    fail "a password appears in the output above"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "postgres_cli: all checks passed"
