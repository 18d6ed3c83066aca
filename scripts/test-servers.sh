#!/usr/bin/env bash
# Starts and stops the servers the transport tests need, from Debian's
# packages, on loopback, on a free port, with their data in a folder the
# caller gives: never a system service.
#
# Usage:
#   scripts/test-servers.sh start redis|nats DIR [PORT]
#       Starts the server in the background with its data (and log, and pid
#       file) in DIR, waits until it answers, and prints its port on stdout.
#       Without PORT a free port is chosen; with PORT (a restart) that one
#       is used. Redis runs with appendonly yes and appendfsync always, so
#       an acknowledged write survives a restart; NATS runs JetStream with
#       its store in DIR/jetstream.
#   scripts/test-servers.sh stop redis|nats DIR
#       Stops the server started with DIR (SIGTERM, then SIGKILL after 5 s)
#       and waits until it is gone. Keeps DIR.
#   scripts/test-servers.sh kill redis|nats DIR
#       Kills it at once with SIGKILL (a crash).
# Exits non-zero, with the reason on stderr, when the server binary is
# missing or the server does not come up: the tests then fail loudly.
set -euo pipefail

die() { echo "test-servers: $*" >&2; exit 1; }

[ $# -ge 3 ] || die "usage: $0 start|stop|kill redis|nats DIR [PORT]"
action=$1 engine=$2 dir=$3 port=${4:-}
case "$engine" in
  redis) bin=redis-server ;;
  nats) bin=nats-server ;;
  *) die "unknown server '$engine' (expected redis or nats)" ;;
esac
pidfile="$dir/$engine.pid"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p i
  for i in $(seq 1 100); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! port_open "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found on 127.0.0.1"
}

ready() {
  case "$engine" in
    redis)
      # A real answer to PING, not just an open socket (it may be loading
      # its append-only file).
      local reply
      reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 &&
                timeout 1 head -c 7 <&3) 2>/dev/null || true)
      [[ "$reply" == +PONG* ]] ;;
    nats)
      port_open "$port" && grep -q "Server is ready" "$dir/nats.log" 2>/dev/null ;;
  esac
}

start() {
  local path
  path=$(command -v "$bin" || true)
  [ -n "$path" ] || path=$(ls "/usr/sbin/$bin" "/usr/bin/$bin" 2>/dev/null | head -1 || true)
  [ -n "$path" ] || die "$bin not found: install it (scripts/install-deps.sh installs $engine-server)"
  mkdir -p "$dir"
  local tries=0
  while :; do
    local chosen=$port
    [ -n "$chosen" ] || chosen=$(free_port)
    case "$engine" in
      redis)
        "$path" --bind 127.0.0.1 --port "$chosen" --dir "$dir" \
          --daemonize no --save "" --appendonly yes --appendfsync always \
          --protected-mode no --logfile "$dir/redis.log" >/dev/null 2>&1 &
        ;;
      nats)
        : >"$dir/nats.log"
        "$path" -js -sd "$dir/jetstream" -a 127.0.0.1 -p "$chosen" \
          -l "$dir/nats.log" >/dev/null 2>&1 &
        ;;
    esac
    local pid=$!
    echo "$pid" >"$pidfile"
    local old=$port; port=$chosen
    for _ in $(seq 1 200); do
      if ready; then echo "$port"; return 0; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    port=$old
    tries=$((tries + 1))
    # A port taken between the check and the bind: try another one (only
    # when the caller did not ask for a given port).
    if [ -n "$port" ] || [ $tries -ge 5 ]; then
      tail -5 "$dir/$engine.log" >&2 2>/dev/null || true
      die "$bin did not start on 127.0.0.1:$chosen (log: $dir/$engine.log)"
    fi
  done
}

stop() {
  local sig=$1
  [ -f "$pidfile" ] || die "no $pidfile: was $engine started with $dir?"
  local pid
  pid=$(cat "$pidfile")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
  sleep 0.1
  rm -f "$pidfile"
}

case "$action" in
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  *) die "unknown action '$action' (expected start, stop or kill)" ;;
esac
