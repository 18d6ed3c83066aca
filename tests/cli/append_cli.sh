#!/bin/bash
# tests/cli/append_cli.sh - `eddy append` from standard input: a refused line
# stops the input with nothing after it stored, --expected-version guards the
# whole input against other writers, every acknowledgement names its input
# line, write errors on stdout are errors, and input limits are named.
# usage: bash append_cli.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: append_cli.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS... : stdin from $TMP/NAME.in (else /dev/null),
# stdout/stderr in $TMP/NAME.out / .err
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

expect() {
    if ! grep -qF -- "$3" "$TMP/$1.$2"; then
        fail "$1: $2 lacks \"$3\""
        sed 's/^/  got: /' "$TMP/$1.$2" >&2
    fi
}

lines() {
    local got
    got=$(wc -l <"$TMP/$1.out")
    [ "$got" -eq "$2" ] || fail "$1: $got lines of output, want $2"
}

# version STORE STREAM : the stream's current version (0 when missing)
version() {
    "$EDDY" streams list --store "$1" | awk -v s="$2" '$1 == s { v = $2 } END { print v + 0 }'
}

# n_lines N [FROM]: N bare-data lines {"n":FROM..}
n_lines() {
    local i from=${2:-1}
    for ((i = from; i < from + $1; i++)); do printf '{"n":%d}\n' "$i"; done
}

S="sqlite:$TMP/a.db"

# ---- a refused line stops the input -------------------------------------------------
# The issue's case: --expected-version 3 on a stream at 5 stores nothing at all
# (lines 3-4 used to land as versions 6-7).
n_lines 5 >"$TMP/five.in"
run five 0 append --store "$S" --stream s1 --type t
lines five 5
n_lines 4 >"$TMP/stale.in"
run stale 1 append --store "$S" --stream s1 --type t --expected-version 3
lines stale 0
expect stale err "line 1: stream s1: expected version 3, actual 5"
[ "$(version "$S" s1)" -eq 5 ] || fail "stale: stream s1 at $(version "$S" s1), want 5"

# A bad line 300 of 577: lines 1-299 stored and acknowledged, nothing after.
{ n_lines 299; echo '{"n": oops}'; n_lines 277 301; } >"$TMP/bad300.in"
run bad300 1 append --store "$S" --stream s2 --type t
lines bad300 299
expect bad300 err "line 300: JSON parse error"
[ "$(version "$S" s2)" -eq 299 ] || fail "bad300: stream s2 at $(version "$S" s2), want 299"
[ "$(tail -1 "$TMP/bad300.out" | cut -d' ' -f4)" = 299 ] || fail "bad300: last ack is not line 299"

# A line the STORE refuses in the middle of a group (an id already stored with
# other content): the lines before it are stored, the error names its line.
echo '{"specversion":"1.0","id":"taken","type":"t","source":"x","data":1}' >"$TMP/taken.in"
run taken 0 append --store "$S" --stream s3
{ n_lines 299; echo '{"specversion":"1.0","id":"taken","type":"t","source":"x","data":2}'
  n_lines 277 301; } >"$TMP/dup300.in"
run dup300 1 append --store "$S" --stream s3 --type t
expect dup300 err "line 300: event id taken is already stored"
lines dup300 299
[ "$(version "$S" s3)" -eq 300 ] || fail "dup300: stream s3 at $(version "$S" s3), want 1 + 299"
# The same id in ANOTHER stream says so, not "different content".
echo '{"specversion":"1.0","id":"taken","type":"t","source":"x","data":1}' >"$TMP/otherstream.in"
run otherstream 1 append --store "$S" --stream s4
expect otherstream err "event id taken is already stored in stream s3"
grep -q "different content" "$TMP/otherstream.err" &&
    fail "otherstream: says 'different content' when only the stream differs"

# ---- acknowledgements ---------------------------------------------------------------
# VERSION POSITION ID LINE, blank and CRLF lines counted
printf '{"n":1}\r\n\n  \n{"specversion":"1.0","id":"ce-1","type":"t","source":"x"}\r\n' >"$TMP/acks.in"
run acks 0 append --store "$S" --stream s5 --type t
lines acks 2
[ "$(cut -d' ' -f1,4 "$TMP/acks.out" | tr '\n' ' ')" = "1 1 2 4 " ] ||
    fail "acks: got $(cut -d' ' -f1,4 "$TMP/acks.out" | tr '\n' ' '), want versions 1 2 on lines 1 4"
expect acks out " ce-1 4"
# Re-running a stored input (ids given) is idempotent and acknowledges each
# event with its stored version and position, even in another order.
printf '%s\n' '{"specversion":"1.0","id":"r1","type":"t","source":"x"}' \
    '{"specversion":"1.0","id":"r2","type":"t","source":"x"}' \
    '{"specversion":"1.0","id":"r3","type":"t","source":"x"}' >"$TMP/retry.in"
run retry 0 append --store "$S" --stream s6 --expected-version 0
cp "$TMP/retry.in" "$TMP/retry_again.in"
run retry_again 0 append --store "$S" --stream s6 --expected-version 0
diff "$TMP/retry.out" "$TMP/retry_again.out" >/dev/null ||
    fail "retry: a re-run acknowledged other versions or positions"
tac "$TMP/retry.in" >"$TMP/retry_rev.in"
run retry_rev 0 append --store "$S" --stream s6
for id in r1 r2 r3; do
    a=$(grep " $id " "$TMP/retry.out" | cut -d' ' -f1-3)
    b=$(grep " $id " "$TMP/retry_rev.out" | cut -d' ' -f1-3)
    [ "$a" = "$b" ] || fail "retry_rev: $id acknowledged as '$b', stored as '$a'"
done
[ "$(version "$S" s6)" -eq 3 ] || fail "retry: stream s6 at $(version "$S" s6), want 3"

# An acknowledgement that cannot be written is an error (the event is stored).
status=0
n_lines 2 | "$EDDY" append --store "$S" --stream s7 --type t >/dev/full 2>"$TMP/full.err" ||
    status=$?
[ "$status" -eq 1 ] || fail "full: exit status $status, want 1"
# (one line, or the lines of the group that committed together)
grep -qE "line 1: stored, but its acknowledgement|lines 1-2: stored, but their acknowledgements" \
    "$TMP/full.err" || fail "full: $(cat "$TMP/full.err")"
expect full err "could not be written: No space left on device"
status=0
"$EDDY" append --store "$S" --stream s7 --type t --data 1 >/dev/full 2>"$TMP/full2.err" ||
    status=$?
[ "$status" -eq 1 ] || fail "full2: exit status $status, want 1"
expect full2 err "could not be written"
status=0
"$EDDY" streams list --store "$S" >/dev/full 2>"$TMP/full3.err" || status=$?
[ "$status" -eq 1 ] || fail "full3: streams list to /dev/full: exit status $status, want 1"

# ---- --expected-version guards the whole input ---------------------------------------
# The largest version is a conflict, not an overflow (UBSan builds abort on one).
n_lines 3 >"$TMP/maxver.in"
run maxver 1 append --store "$S" --stream s1 --type t --expected-version 9223372036854775807
expect maxver err "expected version 9223372036854775807, actual 5"
cp "$TMP/maxver.in" "$TMP/maxver_new.in"
run maxver_new 1 append --store "$S" --stream new-1 --type t --expected-version 9223372036854775807
expect maxver_new err "actual 0"

# Two writers with --expected-version 0 on one stream: one of them stores all
# of its events, the other nothing (they used to interleave).
n_lines 400 >"$TMP/w.in"
C="sqlite:$TMP/c.db"
"$EDDY" append --store "$C" --stream race --type writer.a --expected-version 0 <"$TMP/w.in" \
    >"$TMP/wa.out" 2>"$TMP/wa.err" &
pa=$!
"$EDDY" append --store "$C" --stream race --type writer.b --expected-version 0 <"$TMP/w.in" \
    >"$TMP/wb.out" 2>"$TMP/wb.err" &
pb=$!
sa=0; sb=0
wait $pa || sa=$?
wait $pb || sb=$?
"$EDDY" streams show race --store "$C" >"$TMP/race.show"
types=$(awk 'NR > 2 { print $4 }' "$TMP/race.show" | sort -u | tr '\n' ' ')
[ "$(version "$C" race)" -eq 400 ] || fail "race: stream at $(version "$C" race), want 400"
case "$types" in
"writer.a " | "writer.b ") ;;
*) fail "race: the stream holds events of both writers: $types" ;;
esac
[ $((sa + sb)) -eq 1 ] || fail "race: exit statuses $sa and $sb, want one 0 and one 1"

# A guarded input against a writer that appends with no guard at all: the
# guarded input's events are one contiguous run, whatever else lands.
n_lines 1 >"$TMP/seed.in"
run seed 0 append --store "$C" --stream mix --type seed
n_lines 2000 >"$TMP/g.in"
"$EDDY" append --store "$C" --stream mix --type guarded --expected-version 1 <"$TMP/g.in" \
    >"$TMP/g.out" 2>"$TMP/g.err" &
pg=$!
for i in $(seq 1 30); do
    "$EDDY" append --store "$C" --stream mix --type other --data "$i" >/dev/null
done
wait $pg || true
"$EDDY" streams show mix --store "$C" | awk 'NR > 2 { print $4 }' | uniq -c >"$TMP/mix.runs"
[ "$(grep -c ' guarded$' "$TMP/mix.runs")" -le 1 ] ||
    fail "mix: the guarded input was interleaved: $(tr '\n' ' ' <"$TMP/mix.runs")"
g_acked=$(wc -l <"$TMP/g.out")
g_stored=$(awk '$2 == "guarded" { print $1 }' "$TMP/mix.runs")
[ "${g_stored:-0}" -eq "$g_acked" ] || fail "mix: $g_acked acknowledged, ${g_stored:-0} stored"

# ---- input limits -------------------------------------------------------------------
# Data nested 255 levels is stored (and readable by SQLite's JSON functions,
# which the store's index runs on every append); 256 is refused, named.
deep() { head -c "$1" /dev/zero | tr '\0' '['; printf 1; head -c "$1" /dev/zero | tr '\0' ']'; echo; }
deep 255 >"$TMP/deep255.in"
run deep255 0 append --store "$S" --stream deep --type t
run deep255_list 0 events list --store "$S" --stream deep --format jsonl
lines deep255_list 1
deep 2000 >"$TMP/deep2000.in"
run deep2000 1 append --store "$S" --stream deep --type t
expect deep2000 err "line 1: event: nested deeper than 256 levels (EDDY_EVENT_MAX_DEPTH)"
# A 1.1 GB line is refused at once, without reading it into memory.
status=0
{ printf '{"a":"'; head -c 1100000000 /dev/zero | tr '\0' a; } 2>/dev/null |
    /usr/bin/time -f '%e %M' -o "$TMP/huge.time" "$EDDY" append --store "$S" --stream huge \
        --type t >"$TMP/huge.out" 2>"$TMP/huge.err" || status=$?
[ "$status" -eq 1 ] || fail "huge: exit status $status, want 1"
expect huge err "line 1: longer than the 1048576-byte limit (EDDY_EVENT_MAX_BYTES)"
read -r secs kib < <(tail -1 "$TMP/huge.time")
[ "$kib" -lt 80000 ] || fail "huge: took $kib KiB of memory"
echo "append_cli: a 1.1 GB line refused in ${secs}s and $kib KiB"
# Control characters in a stream id are refused, named: by the CLI for
# --stream (a usage error), by the store for any other caller.
run ctlstream 2 append --store "$S" --stream $'a\nb' --type t --data 1
expect ctlstream err "append: --stream: contains the control character U+000A"
echo '{"specversion":"1.0","id":"c1","type":"t","source":"x"}' >"$TMP/ctlstream2.in"
run ctlstream2 1 append --store "$S" --stream $'a\302\205b'
expect ctlstream2 err "line 1: stream id contains the control character U+0085 at byte 1"

if [ "$failures" -ne 0 ]; then
    echo "append_cli: $failures failure(s)" >&2
    exit 1
fi
echo "append_cli: all passed"
