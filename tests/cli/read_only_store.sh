#!/bin/bash
# tests/cli/read_only_store.sh - every reading command works on a store the
# process cannot write: a read-only bind mount when this process may mount
# (root), and always a folder without write permission read as an
# unprivileged user (root ignores file modes) - after a clean close, whose
# checkpoint left no -wal beside the file.
# usage: bash read_only_store.sh EDDY_BINARY [TESTDATA_DIR]
set -euo pipefail

EDDY=${1:?usage: read_only_store.sh EDDY_BINARY}
TMP=$(mktemp -d)
MNT=""
cleanup() {
    [ -n "$MNT" ] && umount "$MNT" 2>/dev/null || true
    chmod -R u+w "$TMP" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

mkdir -p "$TMP/src"
chmod 755 "$TMP"
"$EDDY" demo --store "sqlite:$TMP/src/orders.db" --orders 40 --users 5 \
    --payment-failure-rate 0.2 >"$TMP/demo.out" 2>&1 ||
    { cat "$TMP/demo.out" >&2; echo "FAIL: demo" >&2; exit 1; }
[ ! -e "$TMP/src/orders.db-wal" ] || fail "a -wal is left after a clean close"
# Something to trace: the first order's stream.
"$EDDY" streams list --store "$TMP/src/orders.db" >"$TMP/streams"
order=$(awk '/^order-/ {print $1; exit}' "$TMP/streams")
[ -n "$order" ] || { echo "FAIL: no order stream in the demo store" >&2; exit 1; }
# That read left an empty -wal and a -shm (a reader cannot remove them): the
# store as a backup or a copy has it, checkpointed and without them.
[ ! -s "$TMP/src/orders.db-wal" ] || fail "a reader left a non-empty -wal"
rm -f "$TMP/src/orders.db-wal" "$TMP/src/orders.db-shm"

# check AS DIR: runs each reading command on DIR/orders.db (AS: a command
# prefix such as "runuser -u nobody --", or empty).
check() {
    local label=$1 dir=$2
    shift 2
    local store="sqlite:$dir/orders.db"
    local cmds=(
        "events list --limit 5"
        "store info"
        "streams list"
        "streams show $order"
        "dlq list"
        "stats"
        "stats --format prometheus"
        "projections list"
        "sagas list"
        "graph"
        "trace $order"
    )
    for c in "${cmds[@]}"; do
        # shellcheck disable=SC2086
        local st=0
        "$@" "$EDDY" $c --store "$store" >"$TMP/out" 2>"$TMP/err" || st=$?
        if [ "$st" -ne 0 ]; then
            fail "$label: eddy $c exits $st: $(head -c 300 "$TMP/err")"
        elif [ ! -s "$TMP/out" ]; then
            fail "$label: eddy $c printed nothing"
        fi
    done
    # Writing is refused with a clear error, and nothing is created.
    if "$@" "$EDDY" append --store "$store" --stream s --type t.x \
        --data '{}' >"$TMP/out" 2>"$TMP/err"; then
        fail "$label: append on a read-only store succeeded"
    fi
    # A backup from the read-only store into a writable folder.
    local bdir
    bdir=$(mktemp -d)
    chmod 777 "$bdir"
    if ! "$@" "$EDDY" store backup "$bdir/copy.db" --store "$store" \
        >"$TMP/out" 2>"$TMP/err"; then
        fail "$label: store backup: $(head -c 300 "$TMP/err")"
    elif ! "$EDDY" stats --store "$bdir/copy.db" >"$TMP/out" 2>"$TMP/err" ||
        ! grep -q '^payment' "$TMP/out"; then
        fail "$label: the backup does not read back: $(head -c 300 "$TMP/err")"
    fi
    rm -rf "$bdir"
    if [ -s "$dir/orders.db-wal" ]; then
        fail "$label: the -wal beside the store holds data"
    fi
}

mounted=0
if [ "$(id -u)" -eq 0 ]; then
    mkdir "$TMP/ro"
    if mount --bind "$TMP/src" "$TMP/ro" 2>/dev/null; then
        MNT="$TMP/ro"
        if mount -o remount,bind,ro "$TMP/ro" 2>/dev/null; then
            mounted=1
            touch "$TMP/ro/probe" 2>/dev/null && fail "the bind mount is writable"
            check "read-only mount" "$TMP/ro"
        fi
        umount "$TMP/ro"
        MNT=""
    fi
    echo "read-only bind mount: $([ $mounted = 1 ] && echo tested || echo not available)"
fi

chmod 0555 "$TMP/src"
chmod 0644 "$TMP/src/orders.db"
if [ "$(id -u)" -eq 0 ]; then
    command -v runuser >/dev/null || { echo "FAIL: runuser missing" >&2; exit 1; }
    # nobody may not reach the build folder (a clone under a private
    # mktemp -d): a copy of the binary it can run (eddy links libeddy
    # statically).
    mkdir -p "$TMP/bin"
    install -m 0755 "$EDDY" "$TMP/bin/eddy"
    EDDY="$TMP/bin/eddy"
    check "unwritable folder (user nobody)" "$TMP/src" runuser -u nobody --
else
    check "unwritable folder" "$TMP/src"
fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: every reading command works on a store that cannot be written"
