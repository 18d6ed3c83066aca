#!/usr/bin/env bash
# scripts/soak.sh - a soak of crash recovery: `eddy demo` on ONE store,
# SIGKILLed at random moments KILLS times and resumed each time, then a
# final run to the end whose invariant checks cover every order the store
# holds (the orders of every killed run included).
#
# usage: scripts/soak.sh [KILLS] [STORE]
#   KILLS   how many times to SIGKILL a run (default 100)
#   STORE   the store URL (default: sqlite: in a new temporary folder,
#           removed at the end unless a check failed); an existing store
#           is resumed, and kept
# environment:
#   EDDY        the eddy binary (default: build/eddy of this repository)
#   SOAK_SEED   seeds the kill moments and the runs ($RANDOM); default: the
#               time; printed, so a failing soak can be run again
#   SOAK_MAX_MS a kill comes 0..SOAK_MAX_MS ms (default 2500) after the
#               run printed its first line (the store is open and surveyed),
#               so during its resume of the earlier runs' orders, its
#               seeding or its own orders; one kill in five counts from the
#               process's start instead, to hit the opening too (which
#               grows with the store: the survey folds every event)
#   SOAK_ORDERS orders per run (default 300); SOAK_USERS (default 10)
#
# Each run is `eddy demo --store STORE --orders N` with a seed of its own.
# The first run to seed the store gives each product stock that runs out
# around the middle of the soak, so that kills cross both the confirmed
# path and the out-of-stock one (refund, cancel).
# A run that ends before its kill (it finished) must pass its checks like
# the final one. After every 10th kill and at the end the SQLite file
# passes `PRAGMA integrity_check` (when the store is a sqlite: file and the
# sqlite3 command exists). Prints a line per kill (when, and what the run
# was doing: its last line), then the figures: kills, runs that finished,
# orders and events in the store, time, failures. Exit status 0 when
# nothing failed, 1 otherwise.
set -uo pipefail

KILLS=${1:-100}
STORE_ARG=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
EDDY=${EDDY:-$HERE/../build/eddy}
SEED=${SOAK_SEED:-$(date +%s)}
MAX_MS=${SOAK_MAX_MS:-2500}
ORDERS=${SOAK_ORDERS:-300}
USERS=${SOAK_USERS:-10}

die() { echo "soak: $*" >&2; exit 2; }
[[ "$KILLS" =~ ^[0-9]+$ ]] || die "KILLS must be a number, got '$KILLS' (usage: soak.sh [KILLS] [STORE])"
[[ "$MAX_MS" =~ ^[1-9][0-9]*$ ]] || die "SOAK_MAX_MS must be a positive number of ms"
[ -x "$EDDY" ] || die "no eddy binary at $EDDY (build it: make build, or set EDDY)"

TMP=$(mktemp -d)
pid=
failures=0
integrity_ok=0
keep=0
if [ -n "$STORE_ARG" ]; then
    STORE=$STORE_ARG
    keep=1
else
    STORE="sqlite:$TMP/soak.db"
fi
DB=
case "$STORE" in sqlite:*) DB=${STORE#sqlite:} ;; esac
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    if [ "$keep" -eq 0 ] && [ "$failures" -eq 0 ]; then
        rm -rf "$TMP"
    else
        echo "soak: kept $TMP (runs' output) and the store $STORE" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "soak: FAIL: $*" >&2
    failures=$((failures + 1))
    keep=1
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

integrity() {
    [ -n "$DB" ] && command -v sqlite3 >/dev/null || return 0
    local got
    got=$(sqlite3 "$DB" 'PRAGMA integrity_check' 2>&1)
    if [ "$got" = ok ]; then
        integrity_ok=$((integrity_ok + 1))
    else
        fail "$1: integrity_check of $DB: $got"
    fi
}

# check_run LOG : a run that ended by itself passed its checks
check_run() {
    local name=$1 status=$2
    if [ "$status" -ne 0 ] || ! grep -q '^all invariants hold$' "$TMP/$name.out"; then
        fail "$name: exit status $status, or an invariant failed"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
        return 1
    fi
}

# units per product: an order takes about half a unit of each of the 8
# products (2 lines of 2 units on average), and about half of a killed
# run's orders get placed: stock for ORDERS * KILLS / 8 runs out midway
STOCK=$(( ORDERS * KILLS / 8 ))
[ "$STOCK" -ge "$ORDERS" ] || STOCK=$ORDERS
RANDOM=$SEED
echo "soak: $KILLS kills of eddy demo --store $STORE --orders $ORDERS --stock $STOCK, each 0..$MAX_MS ms after a run's first line (one in five: after its start); seed $SEED"
echo "soak: $("$EDDY" --version 2>&1 | head -1)"
start=$(now_ms)
kills=0 finished_runs=0 run=0 resumed_unfinished=0
ph_open=0 ph_start=0 ph_orders=0 ph_end=0
while [ "$kills" -lt "$KILLS" ]; do
    run=$((run + 1))
    name="run$run"
    delay=$(( (RANDOM * 32768 + RANDOM) % (MAX_MS + 1) ))
    early=$(( RANDOM % 5 == 0 ))
    t0=$(now_ms)
    "$EDDY" demo --store "$STORE" --orders "$ORDERS" --users "$USERS" \
        --stock "$STOCK" --seed "$((SEED + run))" </dev/null \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    pid=$!
    from=$t0
    if [ "$early" -eq 0 ]; then # count from its first line
        while [ ! -s "$TMP/$name.out" ] && kill -0 "$pid" 2>/dev/null; do
            sleep 0.01
        done
        from=$(now_ms)
    fi
    while [ $(( $(now_ms) - from )) -lt "$delay" ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.01
    done
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        pid=
        kills=$((kills + 1))
        last=$(cat "$TMP/$name.out" "$TMP/$name.err" | tail -n 1 | cut -c1-100)
        case $last in # what the run was doing when it was killed
            '') ph_open=$((ph_open + 1)) ;;
            'eddy demo: 100% '*) ph_end=$((ph_end + 1)) ;;
            'eddy demo: '[0-9]*'% '*) ph_orders=$((ph_orders + 1)) ;;
            *) ph_start=$((ph_start + 1)) ;;
        esac
        printf 'kill %3d/%d after %5d ms (%s)\n' "$kills" "$KILLS" \
            "$(( $(now_ms) - t0 ))" "${last:-nothing printed yet: opening the store}"
        [ $((kills % 10)) -eq 0 ] && integrity "after kill $kills"
    else
        status=0
        wait "$pid" || status=$?
        pid=
        finished_runs=$((finished_runs + 1))
        printf 'run %d finished before its kill (%d ms)\n' "$run" "$(( $(now_ms) - t0 ))"
        check_run "$name" "$status"
    fi
    # the orders an earlier killed run left unfinished, which this one found
    n=$(sed -nE 's/^resuming: .* orders, ([0-9]+) of them unfinished.*/\1/p' "$TMP/$name.out")
    resumed_unfinished=$((resumed_unfinished + ${n:-0}))
    [ "$failures" -eq 0 ] || break
done

# the final run: to the end, checking every order of the store
status=0
t0=$(now_ms)
"$EDDY" demo --store "$STORE" --orders "$ORDERS" --users "$USERS" \
    --stock "$STOCK" --seed "$((SEED + run + 1))" </dev/null >"$TMP/final.out" \
    2>"$TMP/final.err" || status=$?
check_run final "$status"
integrity "at the end"
end=$(now_ms)
placed=$(sed -nE 's/^orders placed +([0-9]+)$/\1/p' "$TMP/final.out")
events=$(sed -nE 's/^events stored +([0-9]+)$/\1/p' "$TMP/final.out")
resumed=$(sed -nE 's/^resuming: the store holds [0-9]+ events and ([0-9]+) orders, ([0-9]+) of them.*/\1 orders, \2 unfinished/p' "$TMP/final.out")
echo
echo "soak figures"
echo "  kills               $kills (SIGKILL, 0..$MAX_MS ms after a run's first line, or its start)"
echo "  runs                $((run + 1)): $kills killed, $finished_runs finished before their kill, 1 final"
echo "  killed while        opening the store $ph_open, starting or finishing earlier orders $ph_start,"
echo "                      placing and finishing its orders $ph_orders, after its last order $ph_end"
echo "  unfinished orders   $resumed_unfinished found by the next run after a kill (resumed and finished)"
echo "  final run found     ${resumed:-?} left by the killed runs"
echo "  orders in the store ${placed:-?} (all checked by the final run)"
echo "  events in the store ${events:-?}"
echo "  final run           $(( (end - t0) / 1000 )).$(( (end - t0) % 1000 / 100 )) s"
echo "  time                $(( (end - start) / 1000 )) s"
echo "  integrity_check     ${integrity_ok} passed${DB:+ (every 10 kills and at the end)}"
echo "  failures            $failures"
grep -E '^(ok|FAIL) ' "$TMP/final.out" | sed 's/^/  /'
[ "$failures" -eq 0 ] && echo "soak: all checks passed" || echo "soak: $failures failure(s)"
[ "$failures" -eq 0 ]
