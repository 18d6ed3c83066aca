#!/usr/bin/env bash
# Checks a build made with every transport turned off (make check-lean):
# the SQLite-only eddy links none of hiredis, librdkafka and libnats, says
# which transports it lacks (eddy --version, and a clear error for their
# URLs), and runs the embedded demo.
# Usage: scripts/check-lean.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: check-lean.sh BUILD_DIR}
eddy="$(cd "$build" && pwd)/eddy"
failures=0
fail() { echo "check-lean: FAIL: $*" >&2; failures=$((failures + 1)); }

for f in "$eddy" "$build/libeddy.so"; do
  [ -e "$f" ] || { fail "$f was not built"; continue; }
  if ldd "$f" | grep -E 'hiredis|rdkafka|nats'; then
    fail "$(basename "$f") links a transport library"
  fi
done
if nm -D --defined-only "$build/libeddy.so" | grep -qE ' (redisConnect|rd_kafka_new|natsConnection_Connect)$'; then
  fail "libeddy.so defines a transport client's symbol"
fi

version=$("$eddy" --version)
echo "$version"
grep -qx "transports: mem" <<<"$version" || fail "--version: transports other than mem"
grep -q "built without: redis (hiredis) kafka (librdkafka) nats (libnats)" <<<"$version" ||
  fail "--version does not list what it was built without"

expect_lacks() { # URL TITLE LIBRARY
  local out status=0
  out=$("$eddy" publish --transport "$1" --type t --source s --data 1 2>&1) || status=$?
  [ "$status" -eq 1 ] || fail "$1: exit status $status, want 1"
  grep -q "this eddy was built without $2 support ($3)" <<<"$out" ||
    fail "$1: no 'built without $2 support ($3)' in: $out"
  if grep -q "s3cret" <<<"$out"; then fail "$1: the password was printed"; fi
}
expect_lacks "redis://app:s3cret@127.0.0.1:6379" Redis hiredis
expect_lacks "rediss://app:s3cret@127.0.0.1:6379" Redis hiredis
expect_lacks "kafka://127.0.0.1:9092" Kafka librdkafka
expect_lacks "nats://127.0.0.1:4222" NATS libnats

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && "$eddy" demo --orders 30 --users 5 >"$tmp/demo.out" 2>&1); then
  fail "the embedded demo failed"
  tail -20 "$tmp/demo.out" >&2
fi
grep -q "^all invariants hold$" "$tmp/demo.out" || fail "demo: invariants not reported as holding"

if [ "$failures" -ne 0 ]; then
  echo "check-lean: $failures failure(s)" >&2
  exit 1
fi
echo "check-lean: the SQLite-only build passed"
