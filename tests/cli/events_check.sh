#!/bin/bash
# tests/cli/events_check.sh - `eddy events check` end to end.
# usage: bash events_check.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

# (TESTDATA_DIR is not used: everything this test needs is here.)
EDDY=${1:?usage: events_check.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME WANT_STATUS ARGS... : runs eddy, keeps stdout/stderr in $TMP/NAME.*
run() {
    local name=$1 want=$2 status=0
    shift 2
    "$EDDY" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want (eddy $*)"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
}

# expect NAME STREAM PATTERN : fixed-string match in $TMP/NAME.STREAM
expect() {
    if ! grep -qF -- "$3" "$TMP/$1.$2"; then
        fail "$1: $2 lacks \"$3\""
        sed 's/^/  got: /' "$TMP/$1.$2" >&2
    fi
}

# A valid single event -> exit 0, "ok <id>".
cat >"$TMP/single.json" <<'JSON'
{
  "specversion": "1.0",
  "id": "allCore",
  "type": "io.cloudevents.test",
  "source": "https://cloudevents.io",
  "datacontenttype": "text/plain",
  "dataschema": "https://cloudevents.io/dataschema",
  "subject": "tests",
  "time": "2018-04-05T17:31:00Z",
  "data": "Simple text"
}
JSON
run single 0 events check "$TMP/single.json"
expect single out "ok allCore"

# The same from standard input, with "-" and without a file.
status=0
"$EDDY" events check - <"$TMP/single.json" >"$TMP/stdin.out" 2>&1 || status=$?
[ "$status" -eq 0 ] || fail "stdin with '-': exit status $status"
expect stdin out "ok allCore"
status=0
"$EDDY" events check <"$TMP/single.json" >"$TMP/stdin2.out" 2>&1 || status=$?
[ "$status" -eq 0 ] || fail "stdin without FILE: exit status $status"
expect stdin2 out "ok allCore"

# An invalid event -> exit 1, the message names the attribute.
cat >"$TMP/invalid.json" <<'JSON'
{"specversion": "0.9", "id": "invalid", "type": "io.cloudevents.test",
 "source": "https://cloudevents.io"}
JSON
run invalid 1 events check "$TMP/invalid.json"
expect invalid out 'error event: specversion: must be "1.0", got "0.9"'

cat >"$TMP/badtime.json" <<'JSON'
{"specversion": "1.0", "id": "invalid", "type": "io.cloudevents.test",
 "source": "https://cloudevents.io", "time": "lunchtime"}
JSON
run badtime 1 events check "$TMP/badtime.json"
expect badtime out 'time: not an RFC 3339 timestamp: "lunchtime"'

# A valid batch -> one "ok" per event.
cat >"$TMP/batch.json" <<'JSON'
[
  {"specversion": "1.0", "id": "minimal", "type": "io.cloudevents.test",
   "source": "https://cloudevents.io"},
  {"specversion": "1.0", "id": "allExtensionTypes", "type": "io.cloudevents.test",
   "source": "https://cloudevents.io", "extinteger": 10, "extboolean": true,
   "extstring": "text", "exturi": "https://cloudevents.io",
   "exturiref": "//authority/path", "exttimestamp": "2023-03-31T15:12:00Z",
   "extbinary": "TWE="}
]
JSON
run batch 0 events check "$TMP/batch.json"
expect batch out "ok minimal"
expect batch out "ok allExtensionTypes"
[ "$(wc -l <"$TMP/batch.out")" -eq 2 ] || fail "batch: want 2 lines of output"

# A batch with a bad element -> exit 1, the index is named.
cat >"$TMP/badbatch.json" <<'JSON'
[
  {"specversion": "1.0", "id": "minimal1", "type": "io.cloudevents.test",
   "source": "https://cloudevents.io"},
  {"specversion": "1.0", "type": "io.cloudevents.test", "source": "https://cloudevents.io"},
  "not an object"
]
JSON
run badbatch 1 events check "$TMP/badbatch.json"
expect badbatch out "ok minimal1"
expect badbatch out "error [1]: id: required attribute missing"
expect badbatch out "error [2]: event: expected a JSON object, got string"

# An empty batch is a valid batch.
echo '[]' >"$TMP/empty-batch.json"
run emptybatch 0 events check "$TMP/empty-batch.json"

# JSON lines with one bad line (line 3; line 2 is blank) -> exit 1 and the
# line number; the good lines are still reported.
cat >"$TMP/lines.jsonl" <<'JSON'
{"specversion": "1.0", "id": "one", "type": "t", "source": "s"}

{"specversion": "1.0", "id": "three", "type": "t", "source": "s", "MyExtension": "bad"}
{"specversion": "1.0", "id": "four", "type": "t", "source": "s"}
JSON
run lines 1 events check "$TMP/lines.jsonl"
expect lines out "ok one"
expect lines out "error line 3: MyExtension: extension attribute names must be lower-case letters and digits"
expect lines out "ok four"

# JSON lines, all good -> exit 0.
cat >"$TMP/goodlines.jsonl" <<'JSON'
{"specversion": "1.0", "id": "a", "type": "t", "source": "s"}
{"specversion": "1.0", "id": "b", "type": "t", "source": "s", "data": {"n": 1}}
JSON
run goodlines 0 events check "$TMP/goodlines.jsonl"
expect goodlines out "ok a"
expect goodlines out "ok b"

# A malformed line is an invalid event, reported with its line number.
printf '{"specversion": "1.0", "id": "a", "type": "t", "source": "s"}\n{not json\n' \
    >"$TMP/malformed.jsonl"
run malformed 1 events check "$TMP/malformed.jsonl"
expect malformed out "error line 2: JSON parse error"

# ---- the strict decoder and its limits, as `eddy append` applies them ------------
# A duplicated member: which one would count? Refused, named.
printf '%s\n' '{"specversion":"1.0","id":"a","type":"t","source":"s","id":"b"}' >"$TMP/dup.jsonl"
run dup 1 events check "$TMP/dup.jsonl"
expect dup out "duplicate object key near '\"id\"'"
# Bytes after a NUL are not ignored.
printf '{"specversion":"1.0","id":"a","type":"t","source":"s"}\0{"x":1}\n' >"$TMP/nul.jsonl"
run nul 1 events check "$TMP/nul.jsonl"
expect nul out "error line 1: event: NUL byte at offset 54"
# "\u0000" is refused in eddy's words, not jansson's.
printf '%s\n' '{"specversion":"1.0","id":"a","type":"t","source":"s","data":"x\u0000"}' >"$TMP/esc.json"
run esc 1 events check "$TMP/esc.json"
expect esc out 'a string holds \u0000 (NUL), which eddy does not accept'
grep -q JSON_ALLOW_NUL "$TMP/esc.out" && fail "esc: the message names a jansson flag"
# Nesting: the data of an event may nest 255 levels, not 256.
deep() { local n=$1; printf '{"specversion":"1.0","id":"d%s","type":"t","source":"s","data":' "$n"
         head -c "$n" /dev/zero | tr '\0' '['; printf 1; head -c "$n" /dev/zero | tr '\0' ']'; printf '}\n'; }
deep 255 >"$TMP/deep255.json"
run deep255 0 events check "$TMP/deep255.json"
deep 256 >"$TMP/deep256.json"
run deep256 1 events check "$TMP/deep256.json"
expect deep256 out "error line 1: event: nested deeper than 256 levels (EDDY_EVENT_MAX_DEPTH)"
# A line longer than 1 MiB is refused without being read into memory, and
# the lines after it are still checked.
{ printf '{"specversion":"1.0","id":"big","type":"t","source":"s","data":"'
  head -c 300000000 /dev/zero | tr '\0' a
  printf '"}\n{"specversion":"1.0","id":"after","type":"t","source":"s"}\n'; } >"$TMP/big.jsonl"
status=0
/usr/bin/time -f '%M' -o "$TMP/big.rss" "$EDDY" events check "$TMP/big.jsonl" \
    >"$TMP/big.out" 2>"$TMP/big.err" || status=$?
[ "$status" -eq 1 ] || fail "big: exit status $status, want 1"
expect big out "error line 1: longer than the 1048576-byte limit (EDDY_EVENT_MAX_BYTES)"
expect big out "ok after"
rss=$(tail -1 "$TMP/big.rss")
[ "$rss" -lt 150000 ] || fail "big: a 300 MB line took $rss KiB of memory"
echo "events_check: a 300 MB line checked in $rss KiB of memory"
rm -f "$TMP/big.jsonl"
# A batch may hold 16 MiB; more is refused whole, named.
{ printf '['; head -c 17000000 /dev/zero | tr '\0' ' '; printf ']'; } >"$TMP/hugebatch.json"
run hugebatch 1 events check "$TMP/hugebatch.json"
expect hugebatch out "error batch: batch: larger than the 16777216-byte limit (EDDY_BATCH_MAX_BYTES)"
rm -f "$TMP/hugebatch.json"
# A control character in a String attribute (CloudEvents type system).
printf '%s\n' '{"specversion":"1.0","id":"a","type":"t","source":"s","subject":"a\nb"}' >"$TMP/ctl.json"
run ctl 1 events check "$TMP/ctl.json"
expect ctl out "subject: contains the control character U+000A"
# The same rules in `eddy append`: what check refuses is never stored.
for f in dup nul deep256 ctl; do
    status=0
    "$EDDY" append --store "sqlite:$TMP/strict.db" --stream s <"$TMP/$f.json"* \
        >"$TMP/append_$f.out" 2>"$TMP/append_$f.err" || status=$?
    [ "$status" -eq 1 ] || fail "append $f: exit status $status, want 1"
    [ -s "$TMP/append_$f.out" ] && fail "append $f: acknowledged something"
done
expect append_dup err "line 1: JSON parse error at line 1, column 58: duplicate object key"

# Unreadable input -> exit 2 with a message on stderr.
run missing 2 events check "$TMP/does-not-exist.json"
expect missing err "does-not-exist.json"
run directory 2 events check "$TMP"
: >"$TMP/empty.json"
run emptyfile 2 events check "$TMP/empty.json"
expect emptyfile err "no events"

# Usage errors -> exit 2.
run twofiles 2 events check "$TMP/single.json" "$TMP/batch.json"
run badoption 2 events check --frobnicate
run nosub 2 events
run unknownsub 2 events frobnicate
expect unknownsub err "frobnicate"

# Help -> exit 0, usage on stdout.
run help 0 events --help
expect help out "check"
run checkhelp 0 events check --help
expect checkhelp out "usage: eddy events check"
run helpcmd 0 help events
expect helpcmd out "usage: eddy events"

if [ "$failures" -ne 0 ]; then
    echo "events_check: $failures check(s) failed" >&2
    exit 1
fi
echo "events_check: all checks passed"
