#!/usr/bin/env bash
# tests/exports.sh - libeddy.so exports exactly the public API: every
# dynamic symbol it defines is an eddy_* function declared in a public
# header, no internal eddyi_* symbol (nor anything else) leaks, and every
# function the headers declare is there.
# Usage: exports.sh LIBEDDY_SO INCLUDE_DIR
set -euo pipefail
lib=${1:?usage: exports.sh LIBEDDY_SO INCLUDE_DIR}
inc=${2:?usage: exports.sh LIBEDDY_SO INCLUDE_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

nm -D --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/exported"
[ -s "$tmp/exported" ] || { echo "exports: nm found no symbols in $lib" >&2; exit 1; }

if grep -q '^eddyi_' "$tmp/exported"; then
    fail "internal symbols exported: $(grep '^eddyi_' "$tmp/exported" | tr '\n' ' ')"
fi
if grep -v '^eddy_' "$tmp/exported" | grep -qv '^eddyi_'; then
    fail "non-eddy symbols exported: $(grep -v '^eddy' "$tmp/exported" | tr '\n' ' ')"
fi

# Function declarations: "TYPE eddy_name(" or, when the return type is on
# the line before, "eddy_name(" at the start of a line. Comments start with
# " *" or "/*", typedefs of callbacks with "typedef": neither matches.
cat "$inc"/eddy/*.h |
    grep -E '^([A-Za-z_][A-Za-z0-9_ ]*[ *])?eddy_[a-z0-9_]+\(' |
    grep -vE '^(typedef|#)' |
    grep -oE '\beddy_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$tmp/declared"
[ "$(wc -l <"$tmp/declared")" -gt 100 ] ||
    fail "found only $(wc -l <"$tmp/declared") declarations in $inc/eddy"
grep -qx eddy_error_set "$tmp/declared" || fail "eddy_error_set is not declared"

missing=$(comm -13 "$tmp/exported" "$tmp/declared")
[ -z "$missing" ] || fail "declared in the headers but not exported: $(echo $missing)"
extra=$(comm -23 "$tmp/exported" "$tmp/declared" | grep '^eddy_' || true)
[ -z "$extra" ] || fail "exported but declared in no public header: $(echo $extra)"

if [ "$failures" -ne 0 ]; then
    echo "exports: $failures failure(s)" >&2
    exit 1
fi
echo "exports: $(wc -l <"$tmp/exported") symbols, all public"
