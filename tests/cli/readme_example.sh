#!/usr/bin/env bash
# The README's example program, compiled exactly as the README says: against
# an installed eddy (here: installed into a temporary prefix) with pkg-config.
# Usage: readme_example.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail
eddy_bin=$1
build_dir=$(dirname "$eddy_bin")
src_dir=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "readme_example: $*" >&2; exit 1; }

# The program is the README's first ```c block.
awk '/^```c$/ {on=1; next} /^```$/ && on {exit} on {print}' "$src_dir/README.md" > "$tmp/hello.c"
[ -s "$tmp/hello.c" ] || fail "no C example found in README.md"

cmake --install "$build_dir" --prefix "$tmp/prefix" > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "cmake --install failed"; }
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig"
pkg-config --exists eddy || fail "pkg-config does not find the installed eddy.pc"

# The compile flags are eddy's include directory and what its public headers
# need (jansson's), never a private dependency's (-I/usr/include/hiredis).
allowed=" -I$(cd "$tmp/prefix/include" && pwd -P) $(pkg-config --cflags jansson) "
for flag in $(pkg-config --cflags eddy); do
    case $flag in
        -I*) dir=$(cd "${flag#-I}" 2>/dev/null && pwd -P) || fail "cflags: $flag is no directory"
             flag="-I$dir" ;;
    esac
    [[ $allowed == *" $flag "* ]] ||
        fail "pkg-config --cflags eddy has $flag, which the public headers do not need"
done
pkg-config --print-requires eddy | grep -qx jansson ||
    fail "eddy.pc does not require jansson"
if pkg-config --print-requires eddy | grep -qvx jansson; then
    fail "eddy.pc requires more than jansson: $(pkg-config --print-requires eddy | tr '\n' ' ')"
fi

# A sanitizer build installs a sanitized library: the program needs the same
# runtime to link against it.
san=$(sed -n 's/^EDDY_SANITIZE:STRING=//p' "$build_dir/CMakeCache.txt")
extra=()
[ -n "$san" ] && extra=(-fsanitize="$san")

# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror "${extra[@]}" "$tmp/hello.c" \
   $(pkg-config --cflags --libs eddy) -Wl,-rpath,"$tmp/prefix/lib" -o "$tmp/hello" ||
  fail "the README example does not compile against the installed library"
out=$("$tmp/hello") || fail "the README example exited non-zero"
echo "$out"
grep -q "welcome mail to ada@example.org" <<<"$out" || fail "no welcome mail line"
grep -q "audit: mail.sent" <<<"$out" || fail "the follow-up event was not handled"

# Statically against libeddy.a: Libs.private must name every private library.
static_libs=()
for flag in $(pkg-config --static --libs eddy); do
    [ "$flag" = -leddy ] && flag="$tmp/prefix/lib/libeddy.a"
    static_libs+=("$flag")
done
# shellcheck disable=SC2046
cc -std=c11 "${extra[@]}" "$tmp/hello.c" $(pkg-config --cflags eddy) "${static_libs[@]}" \
   -o "$tmp/hello-static" ||
  fail "the README example does not link against libeddy.a with pkg-config --static"
"$tmp/hello-static" | grep -q "welcome mail to ada@example.org" ||
  fail "the README example linked statically does not run"

# The same program through the installed CMake package.
mkdir -p "$tmp/cmake-user"
cp "$tmp/hello.c" "$tmp/cmake-user/"
cat > "$tmp/cmake-user/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(hello C)
find_package(eddy REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE eddy::eddy)
CMAKE
flags=""
[ -n "$san" ] && flags="-fsanitize=$san"
cmake -S "$tmp/cmake-user" -B "$tmp/cmake-user/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" > "$tmp/cmake-user.log" 2>&1 &&
  cmake --build "$tmp/cmake-user/build" >> "$tmp/cmake-user.log" 2>&1 ||
  { cat "$tmp/cmake-user.log"; fail "find_package(eddy) does not build the README example"; }
"$tmp/cmake-user/build/hello" | grep -q "welcome mail to ada@example.org" ||
  fail "the README example built through find_package(eddy) does not run"
echo "readme_example: ok"
