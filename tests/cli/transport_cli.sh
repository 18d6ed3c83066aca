#!/bin/bash
# tests/cli/transport_cli.sh - `eddy publish`, `eddy subscribe` and `eddy
# transport info` against real servers started here (scripts/test-servers.sh):
# redis (Streams), nats (JetStream), redis-auth (an ACL user; the password
# only in a file or $VARIABLE) and nats-tls (TLS + user). Events published
# from data lines come back from subscribe as CloudEvents JSON lines with the
# same ids, types and data; info shows the topics, the groups and a lag that
# drops to 0 once the group read everything; usage errors exit 2; a wrong
# password fails at once naming the user; and no output, error or --help text
# holds a password. Fails loudly when a server cannot start.
# usage: bash transport_cli.sh EDDY_BINARY [TESTDATA_DIR]
set -euo pipefail

EDDY=${1:?usage: transport_cli.sh EDDY_BINARY}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVERS="$HERE/../../scripts/test-servers.sh"
TMP=$(mktemp -d)
ENGINES=(redis nats redis-auth nats-tls)
cleanup() {
    local e
    for e in "${ENGINES[@]}"; do
        bash "$SERVERS" stop "$e" "$TMP/$e" >/dev/null 2>&1 || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

declare -A PORT
for e in "${ENGINES[@]}"; do
    mkdir -p "$TMP/$e"
    if ! PORT[$e]=$(bash "$SERVERS" start "$e" "$TMP/$e"); then
        echo "FAIL: cannot start $e (scripts/test-servers.sh)" >&2
        exit 1
    fi
done
RPW=$(cat "$TMP/redis-auth/password")
NPW=$(cat "$TMP/nats-tls/password")

# run NAME WANT_STATUS [< INPUT] ARGS...: stdout/stderr in $TMP/NAME.out/.err
run() {
    local name=$1 want=$2 status=0
    shift 2
    "$EDDY" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want"
        sed 's/^/  stdout: /' "$TMP/$name.out" >&2
        sed 's/^/  stderr: /' "$TMP/$name.err" >&2
    fi
}
has() { # has NAME out|err PATTERN
    grep -qE -- "$3" "$TMP/$1.$2" || {
        fail "$1: no line matching '$3' in std$2"
        sed "s/^/  std$2: /" "$TMP/$1.$2" >&2
    }
}

# One engine end to end: publish 3 data lines, subscribe them back, info.
roundtrip() {
    local tag=$1 url=$2
    local type="cli.$tag.$RANDOM$RANDOM"
    printf '{"n":1}\n\n{"n":2,"s":"two"}\n[3]\n' |
        run "${tag}_publish" 0 publish --transport "$url" --type "$type" \
            --source cli-test --subject agg-1
    [ "$(wc -l <"$TMP/${tag}_publish.out")" -eq 3 ] ||
        fail "${tag}_publish: expected 3 event ids"
    run "${tag}_info_before" 0 transport info "$url"
    has "${tag}_info_before" out "topic [^ ]*$type: 3 messages"
    run "${tag}_subscribe" 0 subscribe --transport "$url" --group "g$tag" \
        --count 3 --idle-timeout 20000 "$type"
    [ "$(wc -l <"$TMP/${tag}_subscribe.out")" -eq 3 ] ||
        fail "${tag}_subscribe: expected 3 lines"
    local id
    for id in $(cat "$TMP/${tag}_publish.out"); do
        grep -q "\"id\":\"$id\"" "$TMP/${tag}_subscribe.out" ||
            fail "${tag}_subscribe: event $id not received"
    done
    has "${tag}_subscribe" out "\"type\":\"$type\".*\"data\":\\{\"n\":1\\}"
    has "${tag}_subscribe" out "\"data\":\\[3\\]"
    has "${tag}_subscribe" out "\"subject\":\"agg-1\""
    # the group read everything: no lag left (Redis and NATS tell it)
    run "${tag}_info_after" 0 transport info "$url" --group "g$tag"
    has "${tag}_info_after" out "^  g$tag.* 0$"
    run "${tag}_info_json" 0 transport info "$url" --format json
    has "${tag}_info_json" out "\"name\":\"[^\"]*$type\",\"messages\":3"
    # a glob finds the type among the topics; the same group has nothing new
    run "${tag}_glob" 0 subscribe --transport "$url" --group "glob$tag" \
        --count 3 --idle-timeout 20000 "cli.$tag.*"
    [ "$(wc -l <"$TMP/${tag}_glob.out")" -ge 3 ] ||
        fail "${tag}_glob: expected at least 3 lines"
    run "${tag}_glob_none" 1 subscribe --transport "$url" "nomatch.$RANDOM.*"
    has "${tag}_glob_none" err "no topic of .* matches"
}

roundtrip redis "redis://127.0.0.1:${PORT[redis]}"
roundtrip nats "nats://127.0.0.1:${PORT[nats]}"
# The password only in a file (redis) or the environment (nats): the URL
# holds none, the process list holds none.
echo "$RPW" >"$TMP/redis-pw"
roundtrip redisauth "redis://eddy@127.0.0.1:${PORT[redis-auth]}?password_file=$TMP/redis-pw"
export EDDY_TEST_NATS_PW=$NPW
roundtrip natstls "nats://eddy@127.0.0.1:${PORT[nats-tls]}?password_env=EDDY_TEST_NATS_PW&tls_ca=$TMP/nats-tls/tls/ca.pem"
# $EDDY_TRANSPORT instead of --transport, the password in a config file
printf 'user=eddy\npassword=%s\n' "$RPW" >"$TMP/redis.conf"
EDDY_TRANSPORT="redis://127.0.0.1:${PORT[redis-auth]}" \
    run env_url 0 publish --transport-config "$TMP/redis.conf" --type cli.env \
        --source s --data '{"ok":true}'

# A wrong password: at once, the user and server named, the password not.
start=$(date +%s%N)
run wrong_pw 1 transport info "redis://eddy:not-$RPW@127.0.0.1:${PORT[redis-auth]}"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
has wrong_pw err "authentication failed for user eddy"
echo "transport_cli: a wrong Redis password refused in $ms ms (whole process)"
[ "$ms" -lt 2000 ] || fail "wrong_pw: took $ms ms"
run wrong_pw_nats 1 subscribe --transport "nats://eddy:not-$NPW@127.0.0.1:${PORT[nats-tls]}?tls_ca=$TMP/nats-tls/tls/ca.pem" x
has wrong_pw_nats err "authentication failed for user eddy"
grep -q "eddy:\\*\\*\\*@" "$TMP/wrong_pw_nats.err" || fail "wrong_pw_nats: URL not shown redacted"
run untrusted 1 transport info "nats://eddy:$NPW@127.0.0.1:${PORT[nats-tls]}?tls_ca=$TMP/nats-tls/tls/rogue-ca.pem"
has untrusted err "certificate not trusted"
run rediss 1 publish --transport "rediss://eddy:$RPW@127.0.0.1:${PORT[redis-auth]}" --type a --source b --data 1
has rediss err "rediss:// \\(TLS\\) is not supported"

# Usage errors and help.
run pub_notype 2 publish --transport "redis://127.0.0.1:${PORT[redis]}" --source s --data 1
run pub_nourl 2 publish --type a --source s --data 1
run pub_badjson 1 publish --transport "redis://127.0.0.1:${PORT[redis]}" --type a --source s --data '{nope'
has pub_badjson err "not JSON"
run sub_nopattern 2 subscribe --transport "redis://127.0.0.1:${PORT[redis]}"
run sub_badcount 2 subscribe --transport "redis://127.0.0.1:${PORT[redis]}" --count x a
run info_badformat 2 transport info "redis://127.0.0.1:${PORT[redis]}" --format xml
run info_unknown 2 transport frobnicate
run unknown_scheme 1 transport info "amqp://u:$RPW@h"
has unknown_scheme err "unknown scheme \"amqp\""
for c in publish subscribe transport; do
    run "help_$c" 0 "$c" --help
done
has help_transport out "rediss:// is refused"
has help_transport out "password_file"
run version 0 --version
has version out "^transports: mem"

# No password anywhere in what eddy printed.
for f in "$TMP"/*.out "$TMP"/*.err; do
    if grep -qF -e "$RPW" -e "$NPW" "$f"; then
        fail "a password appears in $(basename "$f")"
    fi
done
echo "transport_cli: searched $(cat "$TMP"/*.out "$TMP"/*.err | wc -c) bytes of output for the passwords"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "transport_cli: all passed"
