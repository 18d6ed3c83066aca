#!/bin/bash
# tests/cli/demo_faults.sh - faults that no waiting cures end `eddy demo` at
# once, naming their cause, instead of a wait for --timeout and a page of
# failed invariants:
#   - the redis-server under `eddy demo --transport` is killed mid-run and
#     not restarted: the services report the lost connection at once, and
#     the demo exits with status 1 naming it, within 30 s (the services
#     give up after --max-disconnected, 10 s by default), no service left;
#   - a store on a small tmpfs that fills up mid-run: the demo exits with
#     status 1 naming the full disk, in process (--store on an 8 MiB tmpfs)
#     and across processes (TMPDIR on a 16 MiB tmpfs: a service gives up,
#     the demo relays its cause). The sizes leave room for the start, so
#     that the disk fills while orders flow.
# Mounts tmpfs file systems, so it needs root; as another user it says so
# and fails. Starts its own redis-server (scripts/test-servers.sh).
# usage: bash demo_faults.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: demo_faults.sh EDDY_BINARY TESTDATA_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVERS="$HERE/../../scripts/test-servers.sh"
TMP=$(mktemp -d)
pid=
kids=
mounts=()
cleanup() {
    for p in $pid $kids; do kill -9 "$p" 2>/dev/null || true; done
    bash "$SERVERS" stop redis "$TMP/redis" >/dev/null 2>&1 || true
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

show() {
    sed 's/^/  stdout: /' "$TMP/$1.out" >&2
    sed 's/^/  stderr: /' "$TMP/$1.err" >&2
}

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL: demo_faults mounts small tmpfs file systems and needs root" >&2
    exit 1
fi

# tmpfs DIR SIZE : mounts a tmpfs of SIZE at DIR
tmpfs() {
    mkdir -p "$1"
    if ! mount -t tmpfs -o "size=$2" eddy-test "$1"; then
        echo "FAIL: cannot mount a tmpfs at $1 (needs CAP_SYS_ADMIN)" >&2
        exit 1
    fi
    mounts+=("$1")
}

# alive PID : the process exists and is an eddy service (not a reused pid)
alive() {
    kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'eddy service'
}

# finish NAME LIMIT_S : waits for the demo ($pid) to exit, at most LIMIT_S
# seconds; checks exit status 1, no invariant report, and that it said it
# gave up; prints how long it took after the fault (started at $t0)
finish() {
    local name=$1 limit=$2 status=0
    for _ in $(seq 1 $((limit * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if kill -0 "$pid" 2>/dev/null; then
        fail "$name: still running ${limit} s after the fault"
        kill -9 "$pid"
    fi
    wait "$pid" || status=$?
    pid=
    [ "$status" -eq 1 ] || { fail "$name: exit status $status, want 1"; show "$name"; }
    if grep -q '^FAIL\|^invariants' "$TMP/$name.out"; then
        fail "$name: invariant checks printed instead of the cause"
        show "$name"
    fi
    grep -q '^eddy demo: giving up with [0-9]*/[0-9]* orders finished: ' "$TMP/$name.err" ||
        { fail "$name: no 'giving up' message"; show "$name"; }
    echo "$name: the demo gave up ${ms} ms after the fault:"
    grep '^eddy demo: giving up' "$TMP/$name.err" | sed 's/^/  /'
}

# ---- the transport's server killed for good ------------------------------------
mkdir -p "$TMP/redis"
if ! PORT=$(bash "$SERVERS" start redis "$TMP/redis"); then
    echo "FAIL: cannot start redis-server (scripts/test-servers.sh)" >&2
    exit 1
fi
URL="redis://127.0.0.1:$PORT"
mkdir -p "$TMP/lost.tmp"
: >"$TMP/lost.err"
TMPDIR="$TMP/lost.tmp" "$EDDY" demo --transport "$URL" --orders 100000 --rate 100 \
    --users 5 --timeout 600 </dev/null >"$TMP/lost.out" 2>"$TMP/lost.err" &
pid=$!
for _ in $(seq 1 1200); do
    grep -qE '^eddy demo: [0-9]+% ' "$TMP/lost.err" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
sleep 1
kids=$(pgrep -P "$pid" | tr '\n' ' ' || true)
[ "$(echo $kids | wc -w)" -eq 5 ] || { fail "lost: $(echo $kids | wc -w) services, want 5"; show lost; }
bash "$SERVERS" kill redis "$TMP/redis"
t0=$(date +%s%N)
finish lost 30
# reported at once by the services, then given up with that cause
grep -q "^eddy service [a-z]*: lost the connection to $URL: .*; giving up if it is not back within 10 s$" "$TMP/lost.err" ||
    { fail "lost: no service reported the lost connection"; show lost; }
grep -q "^eddy demo: giving up .*lost the connection to $URL for [0-9]* s: " "$TMP/lost.err" ||
    { fail "lost: the demo does not name the lost connection"; show lost; }
for p in $kids; do
    if alive "$p"; then fail "lost: service $p still running"; fi
done
kids=
[ -z "$(ls -A "$TMP/lost.tmp")" ] || fail "lost: left in TMPDIR: $(ls -A "$TMP/lost.tmp")"

# ---- a full disk, in process ------------------------------------------------------
tmpfs "$TMP/small" 8m
: >"$TMP/full.err"
"$EDDY" demo --store "sqlite:$TMP/small/orders.db" --orders 100000 --users 5 \
    --timeout 600 </dev/null >"$TMP/full.out" 2>"$TMP/full.err" &
pid=$!
t0=$(date +%s%N)
finish full 120
grep -q "^eddy demo: giving up .*: the disk under store sqlite:$TMP/small/orders.db is full: .*database or disk is full ([0-9]* KiB free of 8192 KiB on its file system)$" "$TMP/full.err" ||
    { fail "full: the demo does not name the full disk"; show full; }
grep -q "^eddy demo: resume with: eddy demo --store sqlite:$TMP/small/orders.db$" "$TMP/full.err" ||
    fail "full: no 'resume with' hint"

# ---- a full disk under the services' stores -------------------------------------
bash "$SERVERS" start redis "$TMP/redis" "$PORT" >/dev/null ||
    { echo "FAIL: cannot restart redis-server" >&2; exit 1; }
tmpfs "$TMP/small2" 16m
: >"$TMP/svcfull.err"
TMPDIR="$TMP/small2" "$EDDY" demo --transport "$URL" --orders 100000 --users 5 \
    --timeout 600 </dev/null >"$TMP/svcfull.out" 2>"$TMP/svcfull.err" &
pid=$!
t0=$(date +%s%N)
for _ in $(seq 1 100); do
    kids="$kids $(pgrep -P "$pid" | tr '\n' ' ' || true)"
    [ "$(echo $kids | wc -w)" -ge 5 ] && break
    sleep 0.1
done
finish svcfull 120
grep -qE "^eddy demo: giving up .*: service [a-z]+ gave up: the disk under store sqlite:$TMP/small2/eddy-demo-[A-Za-z0-9]+/[a-z]+\\.db is full: " "$TMP/svcfull.err" ||
    { fail "svcfull: the demo does not relay a service's full disk"; show svcfull; }
grep -qE "^eddy service [a-z]+: fatal: the disk under store .* is full" "$TMP/svcfull.err" ||
    { fail "svcfull: no service said it gave up"; show svcfull; }
for p in $kids; do
    if alive "$p"; then fail "svcfull: service $p still running"; fi
done
kids=
[ -z "$(ls -A "$TMP/small2")" ] || fail "svcfull: left on the tmpfs: $(ls -A "$TMP/small2")"

# a sanitizer report of the demo or of a service (their stderr) is a failure
if grep -l 'Sanitizer\|runtime error:' "$TMP"/*.err >/dev/null 2>&1; then
    fail "a sanitizer report: $(grep -l 'Sanitizer\|runtime error:' "$TMP"/*.err | tr '\n' ' ')"
    grep -h -A5 'Sanitizer\|runtime error:' "$TMP"/*.err >&2
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "demo_faults: all checks passed"
