#!/usr/bin/env bash
# tests/layers.sh - the layers of src/ depend only on the layers below them
# (README: Architecture), and only the store's backends see a database
# engine's header. A layer reaches another layer's private headers
# ("../store/store_internal.h") only where the map below allows it; every
# layer may use the public headers (eddy/*.h). cli/ and examples/ use the
# public headers only (plus their own).
# Usage: layers.sh SOURCE_DIR
set -euo pipefail
root=${1:?usage: layers.sh SOURCE_DIR}
cd "$root"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# layer -> the layers whose private headers it may include
declare -A allowed=(
    [core]=""
    [store]="core"
    [es]="core"
    [schema]="core"
    [transport]="core"
    [observe]="core store"
    [reliability]="core store"
    [cqrs]="core store"
    [http]="core"
)

for dir in src/*/; do
    layer=$(basename "$dir")
    [ -n "${allowed[$layer]+set}" ] || { fail "src/$layer: a layer the map does not know (add it to tests/layers.sh and the README)"; continue; }
    while IFS=: read -r file inc; do
        # "../store/x.h" or "store/x.h" -> store; "x.h" (same directory) -> itself
        path=${inc#../}
        case $path in
            eddy/*) continue ;;
            */*) dep=${path%%/*} ;;
            *) continue ;;
        esac
        [ "$dep" = "$layer" ] && continue
        case " ${allowed[$layer]} " in
            *" $dep "*) ;;
            *) fail "$file includes \"$inc\": $layer may not depend on $dep" ;;
        esac
    done < <(grep -HoE '^#include "[^"]+"' "$dir"*.[ch] | sed -E 's/:#include "/:/; s/"$//')
done

# The engines' headers: SQLite in the SQLite backend (and eddy/sqlite.h),
# libpq in the PostgreSQL backend.
while read -r f; do
    case $f in
        src/store/sqlite*|include/eddy/sqlite.h) ;;
        *) fail "$f uses SQLite directly: only src/store/sqlite*.c may (the persistence boundary)" ;;
    esac
done < <(grep -rlE 'sqlite3' src include cli examples || true)
while read -r f; do
    case $f in
        src/store/postgres*) ;;
        *) fail "$f includes libpq: only src/store/postgres*.c may" ;;
    esac
done < <(grep -rlE '#include <libpq' src include cli examples || true)

# cli/ and examples/: public headers and their own files only.
while IFS=: read -r file inc; do
    case $inc in
        eddy/*|cli.h|orders/*|internal.h|orders.h) ;;
        *) fail "$file includes \"$inc\": the command and the examples use the public API only" ;;
    esac
done < <(grep -rHoE '^#include "[^"]+"' cli examples | sed -E 's/:#include "/:/; s/"$//')

if [ "$failures" -gt 0 ]; then
    echo "layers: $failures violation(s)" >&2
    exit 1
fi
echo "layers: ok"
