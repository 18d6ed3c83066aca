#!/usr/bin/env bash
# Starts and stops the servers the transport tests need, from Debian's
# packages, on loopback, on a free port, with their data in a folder the
# caller gives: never a system service.
#
# Usage:
#   scripts/test-servers.sh start redis|nats|postgres DIR [PORT]
#       Starts the server in the background with its data (and log, and pid
#       file) in DIR, waits until it answers, and prints its port on stdout.
#       Without PORT a free port is chosen; with PORT (a restart) that one
#       is used. Redis runs with appendonly yes and appendfsync always, so
#       an acknowledged write survives a restart; NATS runs JetStream with
#       its store in DIR/jetstream.
#   scripts/test-servers.sh stop redis|nats|postgres DIR
#       Stops the server started with DIR (SIGTERM, then SIGKILL after 5 s)
#       and waits until it is gone. Keeps DIR.
#   scripts/test-servers.sh kill redis|nats|postgres DIR
#       Kills it at once with SIGKILL (a crash).
#
# PostgreSQL: the first start runs initdb in DIR/data (UTF8, C locale), as
# the unprivileged user "postgres" through runuser when run as root (initdb
# refuses root; DIR is handed to that user; without such a user, "nobody"),
# and starts the server with fsync=on, synchronous_commit=on, listening on
# 127.0.0.1:PORT and on a unix socket in DIR. start prints the port, then on
# a second line the URL of the "postgres" database over the socket:
#   postgresql:///postgres?host=DIR&port=PORT&user=postgres
# The socket trusts local users; TCP connections need a password
# (scram-sha-256; user postgres, password "eddy"), so that tests can check
# authentication errors. A later start with the same DIR and PORT restarts
# the same cluster (crash recovery after kill). kill SIGKILLs the postmaster
# and every backend, as a machine or container crash would, and waits until
# they are gone.
# Exits non-zero, with the reason on stderr, when the server binary is
# missing or the server does not come up: the tests then fail loudly.
set -euo pipefail

die() { echo "test-servers: $*" >&2; exit 1; }

[ $# -ge 3 ] || die "usage: $0 start|stop|kill redis|nats|postgres DIR [PORT]"
action=$1 engine=$2 dir=$3 port=${4:-}
case "$engine" in
  redis) bin=redis-server ;;
  nats) bin=nats-server ;;
  postgres) bin=initdb ;;
  *) die "unknown server '$engine' (expected redis, nats or postgres)" ;;
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

# ---- PostgreSQL ------------------------------------------------------------

pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  die "initdb not found: install postgresql (scripts/install-deps.sh installs it)"
}

# As root, PostgreSQL's programs run as an unprivileged user that owns DIR.
pg_as=()
pg_user_setup() {
  [ "$(id -u)" -eq 0 ] || return 0
  local u=postgres
  getent passwd "$u" >/dev/null || u=nobody
  command -v runuser >/dev/null || die "runuser not found (util-linux): cannot run initdb as $u"
  chown -R "$u" "$dir"
  chmod 0700 "$dir"
  pg_as=(runuser -u "$u" --)
}

pg_start() {
  local bindir
  bindir=$(pg_bindir)
  mkdir -p "$dir"
  pg_user_setup
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    printf 'eddy\n' >"$dir/pwfile"
    [ ${#pg_as[@]} -eq 0 ] || chown "${pg_as[2]}" "$dir/pwfile"
    # --no-sync: initdb's own final fsync only matters for an OS crash in
    # the next seconds; the server itself runs with fsync=on.
    if ! "${pg_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -E UTF8 \
        --locale=C --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$dir/pwfile" --no-sync >"$dir/initdb.log" 2>&1; then
      tail -5 "$dir/initdb.log" >&2 || true
      die "initdb failed in $dir/data (log: $dir/initdb.log)"
    fi
  fi
  local tries=0
  while :; do
    local chosen=$port
    [ -n "$chosen" ] || chosen=$(free_port)
    if "${pg_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-c port=$chosen -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c fsync=on -c synchronous_commit=on -c max_connections=300" \
        start >/dev/null 2>&1; then
      echo "$chosen"
      echo "postgresql:///postgres?host=$dir&port=$chosen&user=postgres"
      return 0
    fi
    tries=$((tries + 1))
    if [ -n "$port" ] || [ $tries -ge 5 ]; then
      tail -5 "$dir/postgres.log" >&2 2>/dev/null || true
      die "PostgreSQL did not start on 127.0.0.1:$chosen (log: $dir/postgres.log)"
    fi
  done
}

pg_pid() { head -1 "$dir/data/postmaster.pid" 2>/dev/null || true; }

pg_stop() {
  local bindir pid
  bindir=$(pg_bindir)
  pid=$(pg_pid)
  [ -n "$pid" ] || die "no $dir/data/postmaster.pid: was postgres started with $dir?"
  pg_user_setup_quiet
  "${pg_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 10 stop >/dev/null 2>&1 || pg_kill
}

pg_user_setup_quiet() {
  [ "$(id -u)" -eq 0 ] || return 0
  local u=postgres
  getent passwd "$u" >/dev/null || u=nobody
  pg_as=(runuser -u "$u" --)
}

pg_kill() {
  local pid
  pid=$(pg_pid)
  [ -n "$pid" ] || die "no $dir/data/postmaster.pid: was postgres started with $dir?"
  kill -0 "$pid" 2>/dev/null || return 0
  # The backends, as one crash: a surviving backend would keep the old
  # shared memory and stop the next start.
  local kids
  kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  kill -9 "$pid" $kids 2>/dev/null || true
  for _ in $(seq 1 200); do
    local alive=0 k
    for k in $pid $kids; do kill -0 "$k" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.05
  done
  die "postgres processes $pid $kids did not die"
}

if [ "$engine" = postgres ]; then
  case "$action" in
    start) pg_start ;;
    stop) pg_stop ;;
    kill) pg_kill ;;
    *) die "unknown action '$action' (expected start, stop or kill)" ;;
  esac
  exit 0
fi

case "$action" in
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  *) die "unknown action '$action' (expected start, stop or kill)" ;;
esac
