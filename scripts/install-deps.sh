#!/usr/bin/env bash
# Installs the Debian packages eddy needs, skipping those already installed.
# Runs apt-get as root, or through sudo.
# Usage: scripts/install-deps.sh [demo|full]
#   demo  what building eddy and running its embedded demo needs: the
#         compiler, CMake, and the libraries of the SQLite-only core. The
#         transports whose client libraries are missing are left out of
#         the build (eddy --version says which).
#   full  (the default) everything: the transports' client libraries
#         (hiredis, librdkafka, libnats), cmocka, and what the tests start
#         or use (redis-server, nats-server, sqlite3, openssl, groff and
#         man for the man-page test, Graphviz for eddy graph's pictures,
#         the JSON Schema Test Suite, clang with its libFuzzer and sanitizer
#         runtimes for make fuzz, GNU time for the limit tests' memory).
set -euo pipefail

mode=${1:-full}
demo=(
  build-essential cmake pkg-config
  libjansson-dev libsqlite3-dev uuid-dev libpcre2-dev libmicrohttpd-dev
  libpq-dev
)
full=(
  "${demo[@]}"
  sqlite3 libcmocka-dev
  libhiredis-dev librdkafka-dev libnats-dev redis-server nats-server
  openssl groff-base man-db
  # a throwaway PostgreSQL server for the store tests (scripts/test-servers.sh)
  postgresql procps util-linux
  # Graphviz: eddy graph --format svg|png (tests/cli/graph.sh)
  graphviz
  # headless, for the dashboard tests (tests/test_http_dashboard.c)
  chromium
  # the draft-07 conformance suite (tests/test_schema_suite.c), the fuzzers
  # (fuzz/, make fuzz), memory figures of the limit tests
  json-schema-test-suite clang libclang-rt-14-dev time
)
case "$mode" in
  demo) packages=("${demo[@]}") ;;
  full) packages=("${full[@]}") ;;
  *) echo "install-deps: unknown mode '$mode' (expected demo or full)" >&2; exit 2 ;;
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
# Debian's postgresql package creates (and may start) a "main" cluster; the
# tests start their own servers (scripts/test-servers.sh), never a service.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" |
    $sudo tee /etc/postgresql-common/createcluster.d/eddy.conf >/dev/null
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
