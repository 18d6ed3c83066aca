#!/bin/bash
# tests/cli/graph.sh - `eddy graph` on a demo store in every format: dot and
# mermaid (a style per node kind, a count on every edge, a legend), svg and
# png drawn by Graphviz (valid files, to standard output and --output FILE),
# a clear error without Graphviz's dot, and usage errors.
# usage: bash graph.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: graph.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STORE="sqlite:$TMP/graph.db"
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

command -v dot >/dev/null ||
    { echo "graph: Graphviz's dot is missing (scripts/install-deps.sh full installs graphviz)" >&2; exit 1; }

# run NAME WANT_STATUS ARGS...: stdout/stderr kept in $TMP/NAME.out / .err
run() {
    local name=$1 want=$2 status=0
    shift 2
    "$EDDY" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want (eddy $*)"
        sed 's/^/  stdout: /' "$TMP/$name.out" | head -20 >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
}

# has NAME FILE-SUFFIX REGEX: the output matches
has() {
    grep -Eq -- "$3" "$TMP/$1.$2" || {
        fail "$1: $2 does not match /$3/"
        sed 's/^/  | /' "$TMP/$1.$2" | head -20 >&2
    }
}

run demo 0 demo --store "$STORE" --orders 12 --users 3 --payment-failure-rate 0.3
has demo out "all invariants hold"

# ---- dot: shapes per kind, counted edges, the legend ---------------------------
run dot 0 graph --store "$STORE"
has dot out '^digraph eddy \{'
has dot out 'label="order-service", shape=parallelogram'        # a service
has dot out 'label="order\.placed", shape=ellipse'              # an event type
has dot out 'label="payment-service", shape=box, style="filled,rounded"'  # a handler
has dot out 'label="order_read_model", shape=cylinder'          # a projection
has dot out 'label="order_processing", shape=box, .*peripheries=2'  # a saga
has dot out 'label="ProcessPayment", shape=hexagon'              # a command
has dot out 'subgraph cluster_legend'
for kind in "event type" "service (a source)" handler "projection (read model)" saga command; do
    grep -qF "label=\"$kind\"" "$TMP/dot.out" || fail "dot: the legend lacks \"$kind\""
done
edges=$(grep -c -- ' -> ' "$TMP/dot.out")
[ "$edges" -gt 10 ] || fail "dot: only $edges edges"
counted=$(grep -- ' -> ' "$TMP/dot.out" |
    grep -cE 'label="(handles|publishes|sends|leads to) [1-9][0-9]*"')
[ "$counted" -eq "$edges" ] || fail "dot: $((edges - counted)) of $edges edges have no count"
has dot out 'label="handles 12"'   # order.placed, once per order, to the saga and the view

# ---- mermaid -------------------------------------------------------------------
run mermaid 0 graph --store "$STORE" --format mermaid
has mermaid out '^flowchart LR'
has mermaid out '\{\{"ProcessPayment"\}\}:::command'
has mermaid out '\[\("order_read_model"\)\]:::projection'
has mermaid out '-->\|handles [0-9]+\|'
has mermaid out '^  subgraph legend \[legend\]'
has mermaid out '^  classDef saga fill:'
[ "$(grep -c -- '-->|' "$TMP/mermaid.out")" -eq "$edges" ] ||
    fail "mermaid: not the $edges edges of dot"

# ---- svg and png, drawn by dot ---------------------------------------------------
run svg 0 graph --store "$STORE" --format svg
head -c 200 "$TMP/svg.out" | grep -q '^<?xml' || fail "svg: no XML declaration"
has svg out '<svg width="[0-9.]+pt" height="[0-9.]+pt"'
has svg out '>order_processing</text>'
has svg out '>handles 12</text>'
tail -n 1 "$TMP/svg.out" | grep -qx '</svg>' || fail "svg: does not end with </svg>"
[ -s "$TMP/svg.err" ] && fail "svg: unexpected stderr: $(cat "$TMP/svg.err")"

run png_file 0 graph --store "$STORE" --format png --output "$TMP/flow.png"
[ -s "$TMP/png_file.out" ] && fail "png --output: wrote to standard output too"
# a PNG: the signature, then the IHDR chunk with a width and height > 0
sig=$(head -c 16 "$TMP/flow.png" | od -An -tx1 | tr -d ' \n')
[ "$sig" = "89504e470d0a1a0a0000000d49484452" ] || fail "png: not a PNG file (starts $sig)"
width=$(od -An -tu1 -j16 -N4 "$TMP/flow.png" | awk '{print ($1*16777216)+($2*65536)+($3*256)+$4}')
height=$(od -An -tu1 -j20 -N4 "$TMP/flow.png" | awk '{print ($1*16777216)+($2*65536)+($3*256)+$4}')
[ "$width" -gt 100 ] && [ "$height" -gt 100 ] || fail "png: ${width}x$height pixels"
run png_stdout 0 graph --store "$STORE" --format png
cmp -s "$TMP/png_stdout.out" "$TMP/flow.png" || fail "png to standard output differs from --output"

run svg_file 0 graph --store "$STORE" --format svg --output "$TMP/flow.svg"
cmp -s "$TMP/flow.svg" "$TMP/svg.out" || fail "svg --output differs from standard output"
run dot_file 0 graph --store "$STORE" --output "$TMP/flow.dot"
cmp -s "$TMP/flow.dot" "$TMP/dot.out" || fail "dot --output differs from standard output"

# ---- without Graphviz: a clear error, nothing written -----------------------------
mkdir "$TMP/nodot"
status=0
PATH="$TMP/nodot" "$EDDY" graph --store "$STORE" --format svg --output "$TMP/none.svg" \
    >"$TMP/nodot.out" 2>"$TMP/nodot.err" || status=$?
[ "$status" -eq 1 ] || fail "no dot: exit status $status, want 1"
grep -qF "needs Graphviz's dot program, which is not in PATH (on Debian: apt-get install graphviz)" \
    "$TMP/nodot.err" || fail "no dot: message: $(cat "$TMP/nodot.err")"
[ -e "$TMP/none.svg" ] && fail "no dot: created the output file"
# dot that fails: its status is reported and no half-written file stays
printf '#!/bin/sh\necho "dot: broken" >&2\nexit 3\n' >"$TMP/nodot/dot"
chmod +x "$TMP/nodot/dot"
status=0
PATH="$TMP/nodot" "$EDDY" graph --store "$STORE" --format png --output "$TMP/bad.png" \
    >"$TMP/baddot.out" 2>"$TMP/baddot.err" || status=$?
[ "$status" -eq 1 ] || fail "failing dot: exit status $status, want 1"
grep -q "dot -Tpng failed (exit status 3)" "$TMP/baddot.err" ||
    fail "failing dot: message: $(cat "$TMP/baddot.err")"
grep -q "^dot: broken" "$TMP/baddot.err" || fail "failing dot: its own message is lost"
[ -e "$TMP/bad.png" ] && fail "failing dot: left $TMP/bad.png behind"

# ---- usage errors ---------------------------------------------------------------------
# png on a terminal (script(1), from bsdutils, gives it one): refused, not sprayed
status=0
script -qec "'$EDDY' graph --store '$STORE' --format png" /dev/null >"$TMP/tty.out" 2>&1 ||
    status=$?
[ "$status" -eq 2 ] || fail "png on a terminal: exit status $status, want 2"
grep -q "png is binary: use --output FILE or redirect standard output" "$TMP/tty.out" ||
    fail "png on a terminal: $(head -c 300 "$TMP/tty.out")"
run badformat 2 graph --store "$STORE" --format xml
has badformat err 'unknown format "xml" \(valid: dot, mermaid, svg, png\)'
run badout 1 graph --store "$STORE" --output "$TMP/no/such/dir/flow.dot"
has badout err "cannot write $TMP/no/such/dir/flow.dot: No such file or directory"
run nostore 1 graph --store "sqlite:$TMP/missing.db" --format svg
has nostore err 'cannot open store'
run help 0 graph --help
has help out '--format dot\|mermaid\|svg\|png'
has help out '--output FILE'

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "graph: all checks passed"
