#!/bin/bash
# tests/cli/dlq_cli.sh - `eddy dlq` and `eddy stats` from the shell, on a
# store with events but no durable subscription yet: empty listings, zero
# counts, the ID checks, exit statuses, never creating a missing store.
# Dead letters made by a real failing subscription are tested in
# tests/test_dlq_cli.c (they need the library to produce them).
# usage: bash dlq_cli.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: dlq_cli.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STORE="sqlite:$TMP/dlq.db"
unset EDDY_STORE
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

# expect NAME STREAM PATTERN : fixed-string match in $TMP/NAME.STREAM
expect() {
    if ! grep -qF -- "$3" "$TMP/$1.$2"; then
        fail "$1: $2 lacks \"$3\""
        sed 's/^/  got: /' "$TMP/$1.$2" >&2
    fi
}

# A missing store is reported and not created.
run missing 1 dlq list --store "sqlite:$TMP/missing.db"
expect missing err "cannot open store"
run missing_stats 1 stats --store "sqlite:$TMP/missing.db"
[ -e "$TMP/missing.db" ] && fail "dlq list created $TMP/missing.db"

# A store with three events.
for i in 1 2 3; do
    run "append$i" 0 append --store "$STORE" --stream "order-$i" \
        --type order.placed --data "{\"n\": $i}"
done

run stats_empty 0 stats --store "$STORE"
expect stats_empty out "head 3"
expect stats_empty out "no durable subscriptions recorded"
expect stats_empty out "no outbox rows"
run prom_empty 0 stats --store "$STORE" --format prometheus
expect prom_empty out "# TYPE eddy_store_head_position gauge"
expect prom_empty out "eddy_store_head_position 3"

run list_empty 0 dlq list --store "$STORE"
expect list_empty out "ID"
expect list_empty err "0 dead letters"
run jsonl_empty 0 dlq list --store "$STORE" --format jsonl
[ -s "$TMP/jsonl_empty.out" ] && fail "jsonl listing of an empty DLQ is not empty"

# $EDDY_STORE is the default store.
EDDY_STORE="$STORE" run env_list 0 dlq list --format jsonl
EDDY_STORE="$STORE" run env_stats 0 stats
expect env_stats out "head 3"

run show_none 1 dlq show 7 --store "$STORE"
expect show_none err "no dead letter 7"
run redrive_none 1 dlq redrive 7 --store "$STORE"
expect redrive_none err "dlq redrive: no dead letter 7"
run delete_none 1 dlq delete 7 --store "$STORE"
run redrive_all 0 dlq redrive --all --store "$STORE"
expect redrive_all out "0 dead letters marked for redrive"
# `retry` is the old name of `redrive`: the same command, the same output.
run retry_none 1 dlq retry 7 --store "$STORE"
expect retry_none err "dlq retry: no dead letter 7"
run retry_all 0 dlq retry --all --store "$STORE"
cmp -s "$TMP/retry_all.out" "$TMP/redrive_all.out" ||
    fail "retry_all: output differs from redrive --all"
run purge_none 0 dlq purge --store "$STORE"
expect purge_none out "0 dead letters deleted"

# A dead letter whose stored event is damaged (bytes changed behind the
# store's back) is listed and shown with what is known, and hides no other.
if command -v sqlite3 >/dev/null; then
    sqlite3 "$TMP/dlq.db" "INSERT INTO eddy_dead_letters(subscription, position, event_id,
        event_type, payload, error_code, error, attempts, first_failure_us, last_failure_us)
        VALUES ('h1', 1, 'e-damaged', 'order.placed', '{not json', 5, 'boom', 3, 1, 2),
               ('h1', 2, 'e-fine', 'order.placed',
                (SELECT payload FROM events WHERE position = 2), 5, 'boom', 3, 1, 2);"
    run damaged_list 0 dlq list --store "$STORE"
    expect damaged_list out "(damaged)"
    [ "$(grep -c ' h1 ' "$TMP/damaged_list.out")" -eq 2 ] ||
        fail "damaged_list: want both dead letters listed"
    run damaged_show 0 dlq show 1 --store "$STORE"
    expect damaged_show out "event id:       e-damaged"
    expect damaged_show out "(damaged) stored event does not decode"
    run damaged_jsonl 0 dlq list --store "$STORE" --format jsonl
    expect damaged_jsonl out '"event_error":"stored event does not decode'
    expect damaged_jsonl out '"event_id":"e-fine"'
    run damaged_purge 0 dlq purge --store "$STORE"
    expect damaged_purge out "2 dead letters deleted"
fi

# Usage errors.
run no_action 2 dlq
run bad_action 2 dlq frob --store "$STORE"
expect bad_action err 'unknown action "frob"'
run bad_id 2 dlq show x1 --store "$STORE"
expect bad_id err '"x1" is not a dead-letter ID'
run no_id 2 dlq redrive --store "$STORE"
expect no_id err "expected one dead-letter ID or --all"
run no_id_retry 2 dlq retry --store "$STORE"
expect no_id_retry err "expected one dead-letter ID or --all"
run bad_format 2 dlq list --format xml --store "$STORE"
run bad_stats_format 2 stats --format xml --store "$STORE"
run bad_option 2 stats --frob --store "$STORE"
expect bad_option err '"--frob"'
run help 0 dlq --help
expect help out "usage: eddy dlq list"
expect help out "eddy dlq redrive ID|--all"
expect help out "retry    the old name of redrive"
run stats_help 0 stats --help
expect stats_help out "usage: eddy stats"

if [ "$failures" -ne 0 ]; then
    echo "dlq_cli: $failures failure(s)" >&2
    exit 1
fi
echo "dlq_cli: all checks passed"
