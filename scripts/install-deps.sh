#!/usr/bin/env bash
# Installs the Debian packages eddy needs to build, test and run its demo,
# skipping those already installed. Runs apt-get as root, or through sudo.
# Usage: scripts/install-deps.sh [--test]
#   --test  also what only the tests need (make check, make fuzz): the
#           JSON Schema Test Suite, clang with its libFuzzer and sanitizer
#           runtimes, GNU time (memory figures of the limit tests)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libjansson-dev libsqlite3-dev uuid-dev libcmocka-dev libpcre2-dev
  sqlite3
  libhiredis-dev librdkafka-dev libnats-dev redis-server nats-server
)
test_packages=(
  json-schema-test-suite
  clang libclang-rt-14-dev
  time
)
case "${1:-}" in
  --test) packages+=("${test_packages[@]}") ;;
  "") ;;
  *) echo "usage: scripts/install-deps.sh [--test]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
