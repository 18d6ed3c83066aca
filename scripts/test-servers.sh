#!/usr/bin/env bash
# Starts and stops the servers the transport tests need, from Debian's
# packages, on loopback, on a free port, with their data in a folder the
# caller gives: never a system service.
#
# Usage:
#   scripts/test-servers.sh start ENGINE DIR [PORT]
#       Starts the server in the background with its data (and log, and pid
#       file) in DIR, waits until it answers, and prints its port on stdout.
#       Without PORT a free port is chosen; with PORT (a restart) that one
#       is used. Redis runs with appendonly yes and appendfsync always, so
#       an acknowledged write survives a restart; NATS runs JetStream with
#       its store in DIR/jetstream.
#   scripts/test-servers.sh stop ENGINE DIR
#       Stops the server started with DIR (SIGTERM, then SIGKILL after 5 s)
#       and waits until it is gone. Keeps DIR.
#   scripts/test-servers.sh kill ENGINE DIR
#       Kills it at once with SIGKILL (a crash).
#
# ENGINE: redis, nats, postgres, or one of the secured variants, which need openssl:
#   redis-auth  redis with an ACL user and requirepass: the user's name in
#               DIR/user, its password in DIR/password, the default user's
#               (requirepass) in DIR/default-password.
#   nats-tls    nats (JetStream) over TLS only, with a certificate signed by
#               a CA made for the run (DIR/tls/ca.pem; DIR/tls/rogue-ca.pem
#               is another CA, which did not sign it), and two users: DIR/user
#               with DIR/password, and an NKey user (public key in
#               DIR/nkey.pub, seed in DIR/nkey.seed).
#   nats-mtls   as nats-tls, and the server also requires a client
#               certificate signed by the CA (DIR/tls/client.pem, .key).
#   nats-token  nats (JetStream) with a token (DIR/token), no TLS.
#   postgres-tls  postgres (below) with ssl=on, the nats-tls certificates
#               (DIR/tls/server.pem for 127.0.0.1 and localhost, signed by
#               DIR/tls/ca.pem; DIR/tls/rogue-ca.pem did not sign it), and
#               over TCP only TLS with a password: the user DIR/user
#               (CREATEDB, owner of the database of the same name) with the
#               password DIR/password; postgres keeps its own ("eddy").
#   tls         a bare TLS listener (openssl s_server) with the nats-tls
#               certificates (DIR/tls): for clients whose TLS starts at once
#               (librdkafka), to try a certificate check with no broker.
# Secrets are random per DIR (made on the first start, kept for restarts),
# in files readable by the caller only, never on a command line.
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

[ $# -ge 3 ] || die "usage: $0 start|stop|kill ENGINE DIR [PORT]"
action=$1 engine=$2 dir=$3 port=${4:-}
case "$engine" in
  redis|redis-auth) bin=redis-server ;;
  nats|nats-tls|nats-mtls|nats-token) bin=nats-server ;;
  tls) bin=openssl ;;
  postgres|postgres-tls) bin=initdb ;;
  *) die "unknown server '$engine' (expected redis, redis-auth, nats, nats-tls, nats-mtls, nats-token, tls, postgres or postgres-tls)" ;;
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
    redis-auth)
      # Unauthenticated, a PING is refused with NOAUTH: that is an answer.
      local reply
      reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 &&
                timeout 1 head -c 7 <&3) 2>/dev/null || true)
      [[ "$reply" == -NOAUTH* ]] ;;
    nats*)
      port_open "$port" && grep -q "Server is ready" "$dir/$engine.log" 2>/dev/null ;;
    tls)
      grep -q "^ACCEPT" "$dir/tls.log" 2>/dev/null ;;
  esac
}

# ---- secrets and certificates of the secured variants ----------------------

need_openssl() {
  command -v openssl >/dev/null || die "openssl not found: install it (scripts/install-deps.sh installs openssl)"
}

# A random secret in FILE (mode 600), made once per DIR.
secret() {
  local file=$1
  [ -s "$file" ] && return 0
  (umask 077 && openssl rand -hex 16 >"$file")
}

# A CA, a server certificate for 127.0.0.1 / localhost and a client
# certificate signed by it, and an unrelated CA: DIR/tls, made once.
certs() {
  local t="$dir/tls"
  [ -s "$t/rogue-ca.pem" ] && return 0
  mkdir -p "$t"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    umask 077
    cd "$t"
    openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=eddy test CA" \
      -keyout ca.key -out ca.pem
    openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=eddy rogue CA" \
      -keyout rogue-ca.key -out rogue-ca.pem.tmp
    local who
    for who in server client; do
      openssl req "${ec[@]}" -subj "/CN=eddy test $who" -keyout "$who.key" \
        -out "$who.csr"
      if [ "$who" = server ]; then
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$who.ext"
      else
        printf 'extendedKeyUsage=clientAuth\n' >"$who.ext"
      fi
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key \
        -CAcreateserial -days 2 -extfile "$who.ext" -out "$who.pem"
    done
    mv rogue-ca.pem.tmp rogue-ca.pem
  ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl could not make the test certificates"; }
}

# CRC-16/XMODEM of the bytes given as decimal numbers (NKeys' checksum).
crc16() {
  local crc=0 b i
  for b in "$@"; do
    crc=$(( crc ^ (b << 8) ))
    for i in 1 2 3 4 5 6 7 8; do
      if (( crc & 0x8000 )); then crc=$(( ((crc << 1) ^ 0x1021) & 0xffff ))
      else crc=$(( (crc << 1) & 0xffff )); fi
    done
  done
  echo "$crc"
}

# Base32 (RFC 4648, no padding) of the decimal bytes given.
b32() {
  local b out=""
  for b in "$@"; do out+=$(printf '\\x%02x' "$b"); done
  printf "$out" | base32 -w0 | tr -d '='
}

# An NKey user key pair made with openssl's Ed25519: the seed ("SU...") in
# DIR/nkey.seed, the public key ("U...") in DIR/nkey.pub.
nkey() {
  [ -s "$dir/nkey.seed" ] && return 0
  local der crc
  local -a seed pub s p
  der=$(umask 077 && mktemp "$dir/nkey.XXXXXX")
  openssl genpkey -algorithm ed25519 -outform DER -out "$der" 2>/dev/null
  read -r -a seed <<<"$(tail -c 32 "$der" | od -An -v -tu1 | tr '\n' ' ')"
  read -r -a pub <<<"$(openssl pkey -inform DER -in "$der" -pubout -outform DER |
                      tail -c 32 | od -An -v -tu1 | tr '\n' ' ')"
  rm -f "$der"
  # seed prefix: 'S' (18 << 3) with the type 'U' (20 << 3) split over two
  # bytes; public key prefix: 'U'
  s=(149 0 "${seed[@]}") p=(160 "${pub[@]}")
  crc=$(crc16 "${s[@]}"); s+=($(( crc & 255 )) $(( crc >> 8 )))
  crc=$(crc16 "${p[@]}"); p+=($(( crc & 255 )) $(( crc >> 8 )))
  (umask 077 && { b32 "${s[@]}"; echo; } >"$dir/nkey.seed")
  { b32 "${p[@]}"; echo; } >"$dir/nkey.pub"
}

# The configuration of a secured variant, in DIR/ENGINE.conf (mode 600).
secure_conf() {
  local p=$1
  need_openssl
  case "$engine" in
    redis-auth)
      echo eddy >"$dir/user"
      secret "$dir/password"
      secret "$dir/default-password"
      (umask 077 && printf '%s\n' "bind 127.0.0.1" "port $p" "dir $dir" \
        "daemonize no" 'save ""' "appendonly yes" "appendfsync always" \
        "logfile $dir/redis-auth.log" \
        "user default on >$(cat "$dir/default-password") ~* &* +@all" \
        "user $(cat "$dir/user") on >$(cat "$dir/password") ~* &* +@all" \
        >"$dir/redis-auth.conf") ;;
    nats-tls|nats-mtls)
      certs
      nkey
      echo eddy >"$dir/user"
      secret "$dir/password"
      local verify=false
      [ "$engine" = nats-mtls ] && verify=true
      (umask 077 && printf '%s\n' "listen: 127.0.0.1:$p" \
        "jetstream { store_dir: \"$dir/jetstream\" }" \
        "tls {" "  cert_file: \"$dir/tls/server.pem\"" \
        "  key_file: \"$dir/tls/server.key\"" "  ca_file: \"$dir/tls/ca.pem\"" \
        "  verify: $verify" "  timeout: 2" "}" \
        "authorization {" "  users = [" \
        "    { user: \"$(cat "$dir/user")\", password: \"$(cat "$dir/password")\" }" \
        "    { nkey: \"$(head -1 "$dir/nkey.pub")\" }" "  ]" "}" \
        >"$dir/$engine.conf") ;;
    nats-token)
      secret "$dir/token"
      (umask 077 && printf '%s\n' "listen: 127.0.0.1:$p" \
        "jetstream { store_dir: \"$dir/jetstream\" }" \
        "authorization { token: \"$(cat "$dir/token")\" }" \
        >"$dir/nats-token.conf") ;;
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
      redis-auth)
        secure_conf "$chosen"
        "$path" "$dir/redis-auth.conf" >/dev/null 2>&1 &
        ;;
      nats-tls|nats-mtls|nats-token)
        secure_conf "$chosen"
        : >"$dir/$engine.log"
        "$path" -c "$dir/$engine.conf" -l "$dir/$engine.log" >/dev/null 2>&1 &
        ;;
      tls)
        certs
        # -www answers each connection by itself (no terminal to read)
        "$path" s_server -accept "127.0.0.1:$chosen" -www \
          -cert "$dir/tls/server.pem" -key "$dir/tls/server.key" \
          </dev/null >"$dir/tls.log" 2>&1 &
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
  local bindir ssl=()
  bindir=$(pg_bindir)
  mkdir -p "$dir"
  if [ "$engine" = postgres-tls ]; then
    need_openssl
    certs
    echo eddy >"$dir/user"
    secret "$dir/password"
    ssl=(-c ssl=on -c "ssl_cert_file=$dir/tls/server.pem" -c "ssl_key_file=$dir/tls/server.key")
  fi
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
    if [ "$engine" = postgres-tls ]; then
      # TCP: TLS and a password, or nothing.
      printf '%s\n' "local all all trust" \
        "hostssl all all 127.0.0.1/32 scram-sha-256" \
        "hostnossl all all 127.0.0.1/32 reject" >"$dir/data/pg_hba.conf"
    fi
  fi
  local tries=0
  while :; do
    local chosen=$port
    [ -n "$chosen" ] || chosen=$(free_port)
    if "${pg_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-c port=$chosen -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c fsync=on -c synchronous_commit=on -c max_connections=300 ${ssl[*]}" \
        start >/dev/null 2>&1; then
      [ "$engine" != postgres-tls ] || pg_tls_user "$bindir" "$chosen"
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

# The password user of postgres-tls, made once: its password goes to the
# server on psql's standard input, never on a command line.
pg_tls_user() {
  local bindir=$1 p=$2 u
  [ -f "$dir/user-made" ] && return 0
  u=$(cat "$dir/user")
  { printf "CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s';\n" "$u" "$(cat "$dir/password")"
    printf 'CREATE DATABASE %s OWNER %s;\n' "$u" "$u"; } |
    "${pg_as[@]}" "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$p" -U postgres -d postgres >/dev/null ||
    die "could not make the user $u of postgres-tls"
  touch "$dir/user-made"
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

if [ "$engine" = postgres ] || [ "$engine" = postgres-tls ]; then
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
