#!/usr/bin/env bash
# The README's second example (the event-sourced bank account), compiled
# exactly as the README says: against an installed eddy (here: installed into
# a temporary prefix) with pkg-config, and run twice on one store (the second
# run continues the first). Also: the README's program is examples/account.c
# byte for byte, and `cmake --install` puts the examples' sources under
# PREFIX/share/eddy/examples, where they compile and run too.
# Usage: readme_account.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail
eddy_bin=$1
build_dir=$(dirname "$eddy_bin")
src_dir=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
die() { echo "readme_account: $*" >&2; exit 1; }

# The program is the README's ```c block that starts with "/* account.c".
awk '/^```c$/ {on = 1; first = 1; next}
     /^```$/ && on {if (keep) exit; on = 0; next}
     on && first {first = 0; keep = ($0 ~ /^\/\* account\.c/)}
     on && keep {print}' "$src_dir/README.md" >"$tmp/account.c"
[ -s "$tmp/account.c" ] || die "no account.c example found in README.md"
cmp -s "$tmp/account.c" "$src_dir/examples/account.c" || {
    diff "$src_dir/examples/account.c" "$tmp/account.c" | head -20 >&2
    fail "the README's account.c differs from examples/account.c"
}
lines=$(wc -l <"$tmp/account.c")
[ "$lines" -le 180 ] || fail "the README's account.c has $lines lines (about 150 wanted)"

cmake --install "$build_dir" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; die "cmake --install failed"; }
libdir=$(dirname "$(find "$tmp/prefix" -name libeddy.so | head -1)")
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pkg-config --exists eddy || die "pkg-config does not find the installed eddy.pc"

# ---- the examples are installed ------------------------------------------------
examples="$tmp/prefix/share/eddy/examples"
for f in README.md account.c hello_bus.c orders/orders.h orders/saga.c; do
    if [ ! -f "$examples/$f" ]; then
        fail "share/eddy/examples/$f is not installed"
    elif ! cmp -s "$examples/$f" "$src_dir/examples/$f"; then
        fail "share/eddy/examples/$f differs from examples/$f"
    fi
done
[ -e "$examples/CMakeLists.txt" ] && fail "examples/CMakeLists.txt is installed (build file, not an example)"

# A sanitizer build installs a sanitized library: a program needs the same
# runtime to link against it.
san=$(sed -n 's/^EDDY_SANITIZE:STRING=//p' "$build_dir/CMakeCache.txt")
extra=()
[ -n "$san" ] && extra=(-fsanitize="$san")

# compile SOURCE OUTPUT: as the README says, plus the rpath a prefix needs
compile() {
    # shellcheck disable=SC2046
    cc -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror "${extra[@]}" "$1" \
        $(pkg-config --cflags --libs eddy) -Wl,-rpath,"$libdir" -o "$2"
}

# ---- the README's program, run twice in a folder of its own ----------------------
compile "$tmp/account.c" "$tmp/account" ||
    die "the README's account.c does not compile against the installed library"
mkdir "$tmp/run"
(cd "$tmp/run" && "$tmp/account") >"$tmp/first.out" 2>"$tmp/first.err" ||
    { cat "$tmp/first.out" "$tmp/first.err" >&2; die "the first run exited non-zero"; }
cat "$tmp/first.out"
[ -f "$tmp/run/account.db" ] || fail "no account.db in the folder it ran in"

# expect RUN TEXT: RUN's output has the line TEXT
expect() {
    grep -qxF -- "$2" "$tmp/$1.out" || fail "$1 run: no line \"$2\""
}
expect first "ada: ok, version 1"
expect first "ada: ok, version 2"
expect first "ada: refused: balance 100.00, cannot withdraw 250.00 (no overdraft)"
expect first "bob: ok, version 2"
expect first "conflict: stream account-ada: expected version 2, actual 3; retrying"
expect first "ada: ok, version 4"
for type in opened deposited withdrawn; do
    expect first "mail to ada: account.$type"
done
[ "$(grep -c '^mail to ' "$tmp/first.out")" -eq 4 ] || fail "first run: want 4 mails"
grep -q '^mail to bob' "$tmp/first.out" && fail "first run: a mail to bob went out"
expect first "balances:"
expect first "  ada      105.00"
expect first "  bob       50.00"
expect first "dead letter 1: account.opened of bob after 3 attempts: EIO: mail server refused bob"
expect first "dead letter 2: account.deposited of bob after 3 attempts: EIO: mail server refused bob"
[ -s "$tmp/first.err" ] && fail "first run: unexpected stderr: $(cat "$tmp/first.err")"
# The README shows this output: every line of it is in the README too.
while IFS= read -r line; do
    grep -qxF -- "    $line" "$src_dir/README.md" || fail "README lacks the output line \"$line\""
done <"$tmp/first.out"

(cd "$tmp/run" && "$tmp/account") >"$tmp/second.out" 2>"$tmp/second.err" ||
    { cat "$tmp/second.out" "$tmp/second.err" >&2; die "the second run exited non-zero"; }
expect second "ada: refused: account ada is already open"
expect second "bob: refused: account bob is already open"
expect second "ada: ok, version 5"
expect second "  ada      210.00"
expect second "  bob      100.00"
expect second "dead letter 3: account.deposited of bob after 3 attempts: EIO: mail server refused bob"
# the notifier resumed from its checkpoint: only the new events were mailed
[ "$(grep -c '^mail to ' "$tmp/second.out")" -eq 3 ] || fail "second run: want 3 mails"

# eddy reads the store the program left, with its dataversions (6 events
# from the first run, 4 from the second)
"$eddy_bin" events list --store "sqlite:$tmp/run/account.db" --format jsonl >"$tmp/events.jsonl" ||
    fail "eddy events list on account.db failed"
[ "$(grep -c '"type":"account\.' "$tmp/events.jsonl")" -eq 10 ] ||
    fail "account.db: want 10 account events, got $(grep -c '"type":"account\.' "$tmp/events.jsonl")"
[ "$(grep -c '"dataversion":"1.0"' "$tmp/events.jsonl")" -eq 10 ] ||
    fail "account.db: not every event has dataversion 1.0"

# ---- the installed examples compile and run -----------------------------------------
compile "$examples/account.c" "$tmp/account-installed" ||
    fail "the installed account.c does not compile"
"$tmp/account-installed" "sqlite:$tmp/installed.db" >"$tmp/installed.out" 2>&1 ||
    fail "the installed account.c does not run: $(cat "$tmp/installed.out")"
compile "$examples/hello_bus.c" "$tmp/hello_bus" || fail "the installed hello_bus.c does not compile"
"$tmp/hello_bus" >"$tmp/hello_bus.out" 2>&1 || fail "the installed hello_bus.c does not run"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "readme_account: ok"
