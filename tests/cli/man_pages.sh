#!/bin/bash
# tests/cli/man_pages.sh - the manual: eddy(1) and one page per command
# (man/eddy-COMMAND.1) render without a warning, every option of every
# --help (subcommands' too) is documented in its page, the pages they refer
# to exist, and `cmake --install` puts them where man finds them.
# usage: bash man_pages.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: man_pages.sh EDDY_BINARY TESTDATA_DIR}
build_dir=$(dirname "$EDDY")
man_dir=$(cd "$(dirname "$0")/../../man" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

for tool in groff man; do
    command -v "$tool" >/dev/null ||
        { echo "man_pages: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done

# render PAGE: plain text, one long line per paragraph (no hyphenation, no
# line breaks inside an option name), minus signs as ASCII
render() {
    groff -man -Tutf8 -P-cbou -rLL=400n -rHY=0 "$1" 2>/dev/null |
        sed 's/\xe2\x88\x92/-/g; s/\xe2\x80\x90/-/g'
}

# ---- every page renders without a warning --------------------------------------
pages=("$man_dir"/*.1)
[ "${#pages[@]}" -ge 2 ] || fail "no pages in $man_dir"
for page in "${pages[@]}"; do
    name=$(basename "$page")
    warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "$name: groff failed"
    [ -z "$warnings" ] || fail "$name: groff warns: $warnings"
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "$name: man -l failed"
    [ -z "$warnings" ] || fail "$name: man -l warns: $warnings"
    render "$page" >"$TMP/$name.txt"
    grep -q "^NAME" "$TMP/$name.txt" || fail "$name: no NAME section"
    # the pages it refers to exist
    for ref in $(grep -o 'eddy-[a-z]*(1)' "$TMP/$name.txt" | sort -u); do
        [ -f "$man_dir/${ref%(1)}.1" ] || fail "$name: refers to $ref, which does not exist"
    done
done

# ---- every command has a page that documents every option of its --help ------------
commands=$("$EDDY" help | awk '/^commands:/ {on = 1; next} on && NF {print $1}' | grep -vx help)
[ -n "$commands" ] || fail "eddy help lists no commands"
for cmd in $commands; do
    page="$man_dir/eddy-$cmd.1"
    if [ ! -f "$page" ]; then
        fail "command $cmd has no page man/eddy-$cmd.1"
        continue
    fi
    grep -q "^ *$cmd\b" "$TMP/eddy.1.txt" || fail "eddy.1 does not list the command $cmd"
    # its help, and the help of each subcommand it lists
    "$EDDY" "$cmd" --help >"$TMP/$cmd.help" 2>&1 || fail "eddy $cmd --help failed"
    for sub in $(awk '/^subcommands:/ {on = 1; next} on && NF {print $1}' "$TMP/$cmd.help"); do
        "$EDDY" "$cmd" "$sub" --help >>"$TMP/$cmd.help" 2>&1 ||
            fail "eddy $cmd $sub --help failed"
        grep -q "^ *$cmd $sub\b\|^$sub$\|events $sub\|schema $sub" "$TMP/eddy-$cmd.1.txt" ||
            fail "eddy-$cmd.1 does not describe the subcommand $sub"
    done
    options=$(grep -o -- '--[a-z][a-z0-9-]*' "$TMP/$cmd.help" | sort -u)
    [ -n "$options" ] || fail "eddy $cmd --help shows no option"
    for opt in $options; do
        grep -q -- "$opt\b" "$TMP/eddy-$cmd.1.txt" ||
            fail "eddy-$cmd.1 does not document $opt (from eddy $cmd --help)"
    done
done

# ---- installed where man finds them ----------------------------------------------
cmake --install "$build_dir" --prefix "$TMP/prefix" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log" >&2; fail "cmake --install failed"; }
for page in "${pages[@]}"; do
    name=$(basename "$page" .1)
    installed="$TMP/prefix/share/man/man1/$name.1"
    if [ ! -f "$installed" ]; then
        fail "$name.1 is not installed in share/man/man1"
        continue
    fi
    found=$(man -M "$TMP/prefix/share/man" -w "$name" 2>/dev/null) || true
    [ "$found" = "$installed" ] || fail "man -M PREFIX/share/man does not find $name (got '$found')"
done

if [ "$failures" -ne 0 ]; then
    echo "man_pages: $failures failure(s)" >&2
    exit 1
fi
echo "man_pages: ${#pages[@]} pages, all checks passed"
