#!/bin/bash
# tests/cli/demo_signals.sh - signals to `eddy demo`, with real processes:
#   - in process: SIGTERM and SIGINT mid-run stop it with status 143 / 130
#     and a message, and remove its temporary store; with --keep the store
#     stays, and a later run resumes it and passes every invariant check;
#   - with --transport (a real redis-server): SIGTERM and SIGINT stop the
#     five `eddy service` children (none left, checked in /proc) and remove
#     their stores; SIGKILL to the demo: every service exits by itself
#     within a few seconds (they die with their parent).
# The demo's temporary folders go to $TMPDIR, a folder of this test, which
# must be empty after each clean stop.
# usage: bash demo_signals.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: demo_signals.sh EDDY_BINARY TESTDATA_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVERS="$HERE/../../scripts/test-servers.sh"
TMP=$(mktemp -d)
pid=
kids=
cleanup() {
    # never leave a process behind, even when a check failed
    for p in $pid $kids; do kill -9 "$p" 2>/dev/null || true; done
    bash "$SERVERS" stop redis "$TMP/redis" >/dev/null 2>&1 || true
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

# start NAME ARGS... : starts `eddy ARGS` in the background with TMPDIR set
# to a fresh $TMP/NAME.tmp, and waits (at most 120 s) until its progress
# says the orders are being placed ("eddy demo: 0% ..."), then 1 s more
start() {
    local name=$1
    shift
    mkdir -p "$TMP/$name.tmp"
    : >"$TMP/$name.err"
    TMPDIR="$TMP/$name.tmp" "$EDDY" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" &
    pid=$!
    for _ in $(seq 1 1200); do
        if grep -qE '^eddy demo: [0-9]+% ' "$TMP/$name.err"; then
            sleep 1
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    fail "$name: the demo did not start placing orders"
    show "$name"
    return 1
}

# children : the pids of $pid's children (the services), space-separated
children() {
    pgrep -P "$pid" | tr '\n' ' ' || true
}

# alive PID : the process exists and is an eddy service (not a reused pid)
alive() {
    kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'eddy service'
}

# stop NAME SIGNAL WANT_STATUS : sends SIGNAL to the demo and checks that
# it exits with WANT_STATUS within 60 s
stop() {
    local name=$1 sig=$2 want=$3 status=0
    kill "-$sig" "$pid"
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$name: still running 60 s after SIG$sig"
        kill -9 "$pid"
    fi
    wait "$pid" || status=$?
    pid=
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status after SIG$sig, want $want"
        show "$name"
    fi
    grep -q "^eddy demo: interrupted by SIG$sig with [0-9]*/[0-9]* orders finished" "$TMP/$name.err" ||
        { fail "$name: no 'interrupted by SIG$sig' message"; show "$name"; }
    if grep -q '^FAIL\|invariants' "$TMP/$name.out"; then
        fail "$name: invariant checks printed after an interruption"
        show "$name"
    fi
}

# no_temp NAME : the demo left nothing in its TMPDIR
no_temp() {
    if [ -n "$(ls -A "$TMP/$1.tmp")" ]; then
        fail "$1: left in TMPDIR: $(ls -A "$TMP/$1.tmp")"
    fi
}

# none_alive NAME PIDS... : none of the services is still running
none_alive() {
    local name=$1 p
    shift
    for p in "$@"; do
        if alive "$p"; then fail "$name: service $p still running"; fi
    done
}

# ---- in process ---------------------------------------------------------
for sig in TERM INT; do
    want=$((128 + $(kill -l "$sig")))
    name="inproc_$sig"
    if start "$name" demo --orders 100000 --rate 300 --users 5; then
        stop "$name" "$sig" "$want"
        grep -q "^eddy demo: removed the temporary store $TMP/$name.tmp/eddy-demo-" "$TMP/$name.err" ||
            fail "$name: does not say it removed the temporary store"
        no_temp "$name"
    fi
done

# --keep: the interrupted store stays, and resumes to a run whose checks
# cover every order in it
if start keep demo --orders 100000 --rate 300 --users 5 --keep; then
    stop keep INT 130
    kept=$(sed -nE 's/^store kept: (.*)$/\1/p' "$TMP/keep.out")
    if [ -z "$kept" ] || [ ! -f "$kept" ]; then
        fail "keep: no kept store ('${kept}')"
        show keep
    else
        grep -q "^eddy demo: resume with: eddy demo --store sqlite:$kept$" "$TMP/keep.err" ||
            fail "keep: no 'resume with' hint"
        status=0
        "$EDDY" demo --store "sqlite:$kept" --orders 10 --users 5 </dev/null \
            >"$TMP/resume.out" 2>"$TMP/resume.err" || status=$?
        if [ "$status" -ne 0 ] || ! grep -q '^all invariants hold$' "$TMP/resume.out" ||
            ! grep -q '^resuming: ' "$TMP/resume.out"; then
            fail "resume: exit status $status, or no resume, or an invariant failed"
            show resume
        fi
    fi
fi

# ---- across processes -------------------------------------------------------
mkdir -p "$TMP/redis"
if ! PORT=$(bash "$SERVERS" start redis "$TMP/redis"); then
    echo "FAIL: cannot start redis-server (scripts/test-servers.sh)" >&2
    exit 1
fi
URL="redis://127.0.0.1:$PORT"

for sig in TERM INT; do
    want=$((128 + $(kill -l "$sig")))
    name="transport_$sig"
    if start "$name" demo --transport "$URL" --orders 100000 --rate 100 --users 5; then
        kids=$(children)
        [ "$(echo $kids | wc -w)" -eq 5 ] || fail "$name: $(echo $kids | wc -w) services, want 5"
        stop "$name" "$sig" "$want"
        # the demo waited for them: none may be left, not even for a moment
        none_alive "$name" $kids
        kids=
        no_temp "$name"
    fi
done

# SIGKILL: nobody stops the services; they must stop by themselves
if start sigkill demo --transport "$URL" --orders 100000 --rate 100 --users 5; then
    kids=$(children)
    [ "$(echo $kids | wc -w)" -eq 5 ] || fail "sigkill: $(echo $kids | wc -w) services, want 5"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    t0=$(date +%s%N)
    for _ in $(seq 1 100); do
        left=0
        for p in $kids; do if alive "$p"; then left=$((left + 1)); fi; done
        [ "$left" -eq 0 ] && break
        sleep 0.1
    done
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ "$left" -ne 0 ]; then
        fail "sigkill: $left service(s) still running 10 s after the demo was killed"
        ps -o pid,ppid,args -p "$(echo $kids | tr ' ' ',')" >&2 || true
    else
        echo "sigkill: every service exited ${ms} ms after the demo was SIGKILLed"
    fi
    kids=
fi

# a sanitizer report of the demo or of a service (their stderr) is a failure
if grep -l 'Sanitizer\|runtime error:' "$TMP"/*.err >/dev/null 2>&1; then
    fail "a sanitizer report: $(grep -l 'Sanitizer\|runtime error:' "$TMP"/*.err | tr '\n' ' ')"
    grep -h -A5 'Sanitizer\|runtime error:' "$TMP"/*.err >&2
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "demo_signals: all checks passed"
