#!/bin/bash
# tests/cli/install_prefix.sh - what the README's install section promises
# for a prefix that is not the default: the installed eddy runs from it with
# an empty environment (it links libeddy statically: no rpath, no
# LD_LIBRARY_PATH), even after the tree is moved; a program linked against
# the installed libeddy.so finds it through -Wl,-rpath or LD_LIBRARY_PATH,
# and without either fails the way the README says; pkg-config, CMake and
# man find it all through the prefix.
# usage: bash install_prefix.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: install_prefix.sh EDDY_BINARY TESTDATA_DIR}
build_dir=$(dirname "$EDDY")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

prefix="$TMP/opt/eddy"
cmake --install "$build_dir" --prefix "$prefix" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log" >&2; echo "install_prefix: cmake --install failed" >&2; exit 1; }
libdir=$(dirname "$(find "$prefix" -name libeddy.so | head -1)")
[ -n "$libdir" ] && [ -f "$libdir/libeddy.so" ] || fail "no libeddy.so installed"
version=$("$EDDY" --version | head -n 1)

# ---- the eddy command: runs from any prefix with nothing set --------------------------
out=$(env -i PATH=/usr/bin:/bin "$prefix/bin/eddy" --version 2>&1 | head -n 1) ||
    fail "the installed eddy does not run with an empty environment: $out"
[ "$out" = "$version" ] || fail "installed eddy --version: '$out', want '$version'"
if ldd "$prefix/bin/eddy" | grep -q 'libeddy\|not found'; then
    fail "the installed eddy needs a library it may not find: $(ldd "$prefix/bin/eddy" | grep 'libeddy\|not found')"
fi
mv "$TMP/opt" "$TMP/moved"
prefix="$TMP/moved/eddy"
libdir="${libdir/$TMP\/opt/$TMP/moved}"
out=$(env -i PATH=/usr/bin:/bin "$prefix/bin/eddy" store info --store "sqlite:$TMP/none.db" 2>&1) &&
    fail "store info on a missing store succeeded"
grep -q "cannot open store" <<<"$out" || fail "the moved eddy does not run: $out"

# ---- a program against libeddy.so: rpath or LD_LIBRARY_PATH -----------------------------
cat >"$TMP/v.c" <<'C'
#include <eddy/eddy.h>
#include <stdio.h>
int main(void) { printf("%s\n", eddy_version()); return 0; }
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pkg-config --exists eddy || fail "pkg-config does not find eddy.pc under the prefix"
san=$(sed -n 's/^EDDY_SANITIZE:STRING=//p' "$build_dir/CMakeCache.txt")
extra=()
[ -n "$san" ] && extra=(-fsanitize="$san")
# shellcheck disable=SC2046
cc "${extra[@]}" "$TMP/v.c" $(pkg-config --cflags --libs eddy) -o "$TMP/v-plain" ||
    fail "does not compile with pkg-config"
# shellcheck disable=SC2046
cc "${extra[@]}" "$TMP/v.c" $(pkg-config --cflags --libs eddy) -Wl,-rpath,"$libdir" \
    -o "$TMP/v-rpath" || fail "does not compile with -Wl,-rpath"
want=${version#eddy }
out=$("$TMP/v-plain" 2>&1) && fail "without rpath nor LD_LIBRARY_PATH it ran: $out"
grep -q "libeddy.so.0: cannot open shared object file" <<<"$out" ||
    fail "without rpath: not the loader error the README quotes: $out"
out=$(LD_LIBRARY_PATH="$libdir" "$TMP/v-plain") || fail "does not run with LD_LIBRARY_PATH"
[ "$out" = "$want" ] || fail "with LD_LIBRARY_PATH: '$out', want '$want'"
out=$("$TMP/v-rpath") || fail "does not run with -Wl,-rpath"
[ "$out" = "$want" ] || fail "with rpath: '$out', want '$want'"

# ---- CMake and man find it through the prefix -------------------------------------------
mkdir -p "$TMP/cm"
cp "$TMP/v.c" "$TMP/cm/"
cat >"$TMP/cm/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(v C)
find_package(eddy REQUIRED)
add_executable(v v.c)
target_link_libraries(v PRIVATE eddy::eddy)
CMAKE
flags=""
[ -n "$san" ] && flags="-fsanitize=$san"
if cmake -S "$TMP/cm" -B "$TMP/cm/build" -DCMAKE_PREFIX_PATH="$prefix" \
       -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$TMP/cm.log" 2>&1 &&
   cmake --build "$TMP/cm/build" >>"$TMP/cm.log" 2>&1; then
    # CMake links with the build tree's rpath: it runs as built.
    out=$("$TMP/cm/build/v") || fail "the find_package(eddy) build does not run"
    [ "$out" = "$want" ] || fail "find_package(eddy) build: '$out', want '$want'"
else
    cat "$TMP/cm.log" >&2
    fail "find_package(eddy) with CMAKE_PREFIX_PATH=PREFIX does not build"
fi
man -M "$prefix/share/man" -w eddy >/dev/null 2>&1 || fail "man -M PREFIX/share/man does not find eddy(1)"
# man-db derives PREFIX/share/man from PREFIX/bin on PATH: no MANPATH needed
found=$(env -i PATH="$prefix/bin:/usr/bin:/bin" HOME="$TMP" man -w eddy-events 2>/dev/null) || true
[ "$found" = "$prefix/share/man/man1/eddy-events.1" ] ||
    fail "with PREFIX/bin on PATH, man finds '$found', not the installed eddy-events(1)"

if [ "$failures" -ne 0 ]; then
    echo "install_prefix: $failures failure(s)" >&2
    exit 1
fi
echo "install_prefix: all checks passed"
