#!/bin/bash
# tests/cli/projections_app.sh - `eddy projections` on a demo store that an
# application shares: the account example (build/examples/account) runs
# its own projection "balances" there. list shows it with the process that
# ran it; rebuild, which has no code for it, fails naming that process
# (pid@host), its state and age, and eddy_projection_rebuild(); a name
# recorded nowhere lists the recorded ones; the demo's own projection still
# rebuilds.
# usage: bash projections_app.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: projections_app.sh EDDY_BINARY TESTDATA_DIR}
ACCOUNT="$(dirname "$EDDY")/examples/account"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
DB="$TMP/shared.db"
STORE="sqlite:$DB"
unset EDDY_STORE
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

[ -x "$ACCOUNT" ] ||
    { echo "projections_app: $ACCOUNT is missing (configure with -DEDDY_BUILD_EXAMPLES=ON)" >&2; exit 1; }
command -v sqlite3 >/dev/null ||
    { echo "projections_app: sqlite3 is missing (scripts/install-deps.sh full installs it)" >&2; exit 1; }

# run NAME WANT_STATUS ARGS...: stdout/stderr kept in $TMP/NAME.out / .err
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

# has NAME FILE-SUFFIX TEXT: fixed-string match
has() {
    grep -qF -- "$3" "$TMP/$1.$2" || {
        fail "$1: $2 lacks \"$3\""
        sed 's/^/  | /' "$TMP/$1.$2" >&2
    }
}

run demo 0 demo --store "$STORE" --orders 10 --users 2
has demo out "all invariants hold"

# The application: runs its projection "balances" on the same store, then
# stops it. Its pid is what the store must name.
"$ACCOUNT" "$STORE" >"$TMP/account.out" 2>&1 &
app=$!
wait "$app" || { cat "$TMP/account.out" >&2; echo "projections_app: the account example failed" >&2; exit 1; }
owner="$app@$(uname -n)"

# list: both projections, with their owners (who ran them last)
run list 0 projections list --store "$STORE"
grep -Eq "^balances +async +stopped +[0-9]+ +0 +$owner +account\.\*$" "$TMP/list.out" ||
    { fail "list: no stopped balances row owned by $owner"; sed 's/^/  | /' "$TMP/list.out" >&2; }
grep -Eq '^order_read_model +async +stopped +[0-9]+ +[0-9]+ +[0-9]+@' "$TMP/list.out" ||
    { fail "list: order_read_model has no owner"; sed "s/^/  | /" "$TMP/list.out" >&2; }
run listj 0 projections list --store "$STORE" --format jsonl
has listj out "\"name\":\"balances\",\"mode\":\"async\",\"state\":\"stopped\""
has listj out "\"owner\":\"$owner\""

# rebuild balances: this eddy has no code for it; it names the application
run app 1 projections rebuild balances --store "$STORE"
has app err "projection \"balances\" is defined by the application that ran it (pid $owner, stopped "
has app err "this eddy has only the code of order_read_model"
has app err "rebuild it there with eddy_projection_rebuild(): stop the projection (eddy_projection_stop)"
has app err "eddy_projection_register_def"
grep -Eq '\(pid [^,]+, stopped [0-9]+ s ago\)' "$TMP/app.err" || fail "app: no age in \"$(cat "$TMP/app.err")\""
[ -s "$TMP/app.out" ] && fail "app: unexpected stdout"
# nothing was touched: the read model and its checkpoint are as they were
before=$(sqlite3 "$DB" "SELECT account, cents FROM balances ORDER BY account")
[ "$before" = $'ada|10500\nbob|5000' ] || fail "balances read model: $before"

# While another host's process runs it (its row, as that process keeps it):
# "runs", "running", "last seen"
now_us=$(($(date +%s) * 1000000))
sqlite3 "$DB" "UPDATE eddy_projections SET state = 'running', owner = '4242@db1', updated_us = $((now_us - 3000000)) WHERE name = 'balances'"
run running 1 projections rebuild balances --store "$STORE"
has running err "projection \"balances\" is defined by the application that runs it (pid 4242@db1, running, last seen "
grep -Eq 'last seen [0-9]+ s ago\)' "$TMP/running.err" || fail "running: no age in \"$(cat "$TMP/running.err")\""
# ... ten minutes ago: the age in minutes
sqlite3 "$DB" "UPDATE eddy_projections SET updated_us = $((now_us - 600000000)) WHERE name = 'balances'"
run stale 1 projections rebuild balances --store "$STORE"
has stale err "(pid 4242@db1, running, last seen 10 min ago)"
# an owner the store never recorded (a row from before owners)
sqlite3 "$DB" "UPDATE eddy_projections SET state = 'stopped', owner = '' WHERE name = 'balances'"
run noowner 1 projections rebuild balances --store "$STORE"
has noowner err "(owner unknown, stopped "

# a name recorded nowhere: the recorded ones and the known ones
run unknown 1 projections rebuild nosuch --store "$STORE"
has unknown err "unknown projection \"nosuch\": $STORE records balances, order_read_model, and this eddy can rebuild only order_read_model"
# a store that does not exist is not created
run nostore 1 projections rebuild balances --store "sqlite:$TMP/none.db"
has nostore err "cannot open store"
[ -e "$TMP/none.db" ] && fail "rebuild created a missing store"

# the demo's own projection, whose code this eddy has, still rebuilds
run rebuild 0 projections rebuild order_read_model --store "$STORE"
has rebuild out "rebuilt order_read_model: replayed"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "projections_app: all checks passed"
