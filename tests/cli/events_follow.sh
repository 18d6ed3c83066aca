#!/bin/bash
# tests/cli/events_follow.sh - `eddy events list --follow`: a live tail that
# prints what is appended after it started (or from --from POS), with the
# positions to resume from, and ends cleanly (exit 0) on SIGINT, SIGTERM or
# --limit. On a store filled by a small `eddy demo` run; the events are
# appended by other processes, as a user would.
# usage: bash events_follow.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: events_follow.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
STORE="sqlite:$TMP/follow.db"
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# wait_for FILE PATTERN: until FILE has a line matching PATTERN (20 s at most)
wait_for() {
    for _ in $(seq 200); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "timed out waiting for /$2/ in $(basename "$1")"
    sed 's/^/  | /' "$1" >&2
    return 1
}

# wait_lines FILE N: until FILE has N lines (20 s at most)
wait_lines() {
    for _ in $(seq 200); do
        [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "timed out waiting for $2 lines in $(basename "$1"), got $(wc -l <"$1")"
    sed 's/^/  | /' "$1" >&2
    return 1
}

# stop PID SIGNAL NAME: sends SIGNAL, then wants exit status 0 within 10 s
stop() {
    kill -"$2" "$1"
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        fail "$3: still running 10 s after SIG$2"
        kill -KILL "$1"
    fi
    local status=0
    wait "$1" || status=$?
    [ "$status" -eq 0 ] || fail "$3: exit status $status after SIG$2, want 0"
}

append() {
    "$EDDY" append --store "$STORE" --stream "$1" --type "$2" --data "$3" >/dev/null ||
        fail "append to $1 failed"
}

"$EDDY" demo --store "$STORE" --orders 30 --users 5 >"$TMP/demo.out" 2>&1 ||
    { cat "$TMP/demo.out" >&2; fail "demo failed"; exit 1; }
HEAD=$("$EDDY" store info --store "$STORE" --format jsonl | grep -o '"head":[0-9]*' | cut -d: -f2)
[ "$HEAD" -gt 0 ] || fail "the demo store has no events"

# ---- a tail from now on, as JSON lines; SIGINT ends it with status 0 ------------------
"$EDDY" events list --follow --format jsonl --store "$STORE" \
    >"$TMP/tail.out" 2>"$TMP/tail.err" &
tail_pid=$!
pids+=("$tail_pid")
wait_for "$TMP/tail.err" "following .* after position $HEAD "
append tail-1 t.one '{"n":1}'
append tail-2 t.two '{"n":2}'
append tail-1 t.one '{"n":3}'
wait_lines "$TMP/tail.out" 3
stop "$tail_pid" INT tail
[ "$(wc -l <"$TMP/tail.out")" -eq 3 ] || fail "tail: $(wc -l <"$TMP/tail.out") lines, want the 3 appended"
# nothing from before it started, and every row says where it is
grep -q '"stream":"order-' "$TMP/tail.out" && fail "tail: printed events from before it started"
sed -n 1p "$TMP/tail.out" | grep -q "^{\"position\":$((HEAD + 1)),\"stream\":\"tail-1\",\"stream_version\":1," ||
    fail "tail: row 1 is not position $((HEAD + 1)) of tail-1 v1: $(sed -n 1p "$TMP/tail.out")"
sed -n 3p "$TMP/tail.out" | grep -q "^{\"position\":$((HEAD + 3)),\"stream\":\"tail-1\",\"stream_version\":2,.*\"data\":{\"n\":3}" ||
    fail "tail: row 3 is not position $((HEAD + 3)) of tail-1 v2: $(sed -n 3p "$TMP/tail.out")"
grep -q "interrupted after position $((HEAD + 3)); resume with --from $((HEAD + 4))" "$TMP/tail.err" ||
    { fail "tail: no resume position on stderr"; sed 's/^/  | /' "$TMP/tail.err" >&2; }

# ---- resume from a position: the backlog, then live; filters; SIGTERM ---------------
"$EDDY" events list --follow --from $((HEAD + 2)) --type t.two --type t.three \
    --store "$STORE" >"$TMP/resume.out" 2>"$TMP/resume.err" &
resume_pid=$!
pids+=("$resume_pid")
wait_for "$TMP/resume.out" " tail-2 "
append tail-3 t.three '{"n":4}'
append tail-1 t.one '{"n":5}'
wait_for "$TMP/resume.out" " tail-3 "
stop "$resume_pid" TERM resume
# a table: the header, tail-2 (backlog) and tail-3 (live); t.one filtered out
[ "$(wc -l <"$TMP/resume.out")" -eq 3 ] ||
    { fail "resume: want a header and 2 rows"; sed 's/^/  | /' "$TMP/resume.out" >&2; }
grep -q "^POSITION " "$TMP/resume.out" || fail "resume: no table header"
grep -q "^$((HEAD + 2)) \+tail-2 \+1 .* t.two " "$TMP/resume.out" || fail "resume: no backlog row"
grep -q "^$((HEAD + 4)) \+tail-3 \+1 .* t.three " "$TMP/resume.out" || fail "resume: no live row"
grep -q "t.one" "$TMP/resume.out" && fail "resume: --type let t.one through"
# the last event it was given is tail-3's (t.one is filtered out by type)
grep -q "terminated after position $((HEAD + 4)); resume with --from $((HEAD + 5))" "$TMP/resume.err" ||
    { fail "resume: no resume position on stderr"; sed 's/^/  | /' "$TMP/resume.err" >&2; }

# ---- --limit ends a tail by itself; --stream filters it -----------------------------
"$EDDY" events list --follow --stream tail-9 --limit 2 --format jsonl --store "$STORE" \
    >"$TMP/limit.out" 2>"$TMP/limit.err" &
limit_pid=$!
pids+=("$limit_pid")
wait_for "$TMP/limit.err" "following "
append tail-8 t.one '{"n":6}'
append tail-9 t.one '{"n":7}'
append tail-9 t.one '{"n":8}'
append tail-9 t.one '{"n":9}'
status=0
for _ in $(seq 200); do kill -0 "$limit_pid" 2>/dev/null || break; sleep 0.1; done
wait "$limit_pid" || status=$?
[ "$status" -eq 0 ] || fail "limit: exit status $status, want 0"
[ "$(wc -l <"$TMP/limit.out")" -eq 2 ] || fail "limit: $(wc -l <"$TMP/limit.out") rows, want 2"
grep -q '"stream":"tail-8"' "$TMP/limit.out" && fail "limit: --stream let tail-8 through"

# ---- usage errors -------------------------------------------------------------------
status=0
"$EDDY" events list --follow --format json --store "$STORE" >/dev/null 2>"$TMP/json.err" || status=$?
[ "$status" -eq 2 ] || fail "--follow --format json: exit status $status, want 2"
grep -q "use --format jsonl" "$TMP/json.err" || fail "--follow --format json: no reason given"
status=0
"$EDDY" events list --follow --store "sqlite:$TMP/missing.db" >/dev/null 2>&1 || status=$?
[ "$status" -eq 1 ] || fail "--follow on a missing store: exit status $status, want 1"
[ -e "$TMP/missing.db" ] && fail "--follow created a missing store"
"$EDDY" events list --help | grep -q -- "--follow" || fail "events list --help lacks --follow"

if [ "$failures" -ne 0 ]; then
    echo "events_follow: $failures failure(s)" >&2
    exit 1
fi
echo "events_follow: all checks passed"
