#!/usr/bin/env bash
# Installs the Debian packages eddy needs to build, test and run its demo,
# skipping those already installed. Runs apt-get as root, or through sudo.
# Usage: scripts/install-deps.sh
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libjansson-dev libsqlite3-dev uuid-dev libcmocka-dev libpcre2-dev
  sqlite3
  libhiredis-dev librdkafka-dev libnats-dev redis-server nats-server
  libpq-dev postgresql procps util-linux
)

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
