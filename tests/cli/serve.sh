#!/bin/bash
# tests/cli/serve.sh - `eddy serve` and `eddy demo --serve` as a user runs
# them: help, usage errors with their messages, refusing to listen beyond
# loopback without tokens, a tokens file error that names the line but
# never the token, a server on free ports answering over HTTP (bash's
# /dev/tcp: no client needed) and stopping cleanly on SIGTERM, --schemas,
# and the dashboard served while the demo runs.
# usage: bash serve.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: serve.sh EDDY_BINARY TESTDATA_DIR}
TMP=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect NAME STATUS TEXT ARGS... : eddy ARGS exits STATUS, TEXT in its output
expect() {
    local name=$1 want=$2 text=$3 status=0
    shift 3
    "$EDDY" "$@" </dev/null >"$TMP/$name.out" 2>&1 || status=$?
    if [ "$status" -ne "$want" ]; then
        fail "$name: exit status $status, want $want (eddy $*)"
        sed 's/^/  | /' "$TMP/$name.out" >&2
    elif ! grep -qF -- "$text" "$TMP/$name.out"; then
        fail "$name: output lacks \"$text\" (eddy $*)"
        sed 's/^/  | /' "$TMP/$name.out" >&2
    fi
}

# http PORT METHOD PATH [BODY [HEADER...]] : the raw response on stdout
http() {
    local port=$1 method=$2 path=$3 body=${4:-}
    shift 3
    [ $# -gt 0 ] && shift
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    {
        printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n' "$method" "$path"
        for h in "$@"; do printf '%s\r\n' "$h"; done
        printf 'Content-Length: %d\r\n\r\n%s' "${#body}" "$body"
    } >&3
    cat <&3
    exec 3>&-
}

# wait_url FILE PREFIX : the port printed after PREFIX in FILE (10 s)
wait_port() {
    local file=$1 prefix=$2
    for _ in $(seq 100); do
        local p
        p=$(sed -nE "s|.*$prefix http://127\.0\.0\.1:([0-9]+).*|\1|p" "$file" | head -n 1)
        if [ -n "$p" ]; then echo "$p"; return 0; fi
        sleep 0.1
    done
    return 1
}

# 1. help
expect help 0 "Authorization: Bearer TOKEN" serve --help
grep -qF "POST /streams/STREAM" "$TMP/help.out" || fail "help: no POST /streams/STREAM"
grep -qF -- "--max-body BYTES" "$TMP/help.out" || fail "help: no --max-body"
expect help2 0 "eddy serve" help serve
"$EDDY" help | grep -q "^  serve " || fail "eddy help does not list serve"

# 2. usage errors
expect small-body 2 "below the minimum of 64K" serve --max-body 1000
expect bad-body 2 "expected bytes" serve --max-body lots
expect bad-threads 2 "--threads: expected 1 to 64" serve --threads 0
expect nothing 2 "nothing to serve" serve --listen off --admin off
expect stray 2 "unexpected argument \"extra\"" serve extra
expect unknown 2 "unknown or incomplete option" serve --bogus

# 3. no tokens: nothing beyond loopback
expect open 2 "is not a loopback address" \
    serve --store "sqlite:$TMP/s.db" --listen 0.0.0.0:0 --admin off

# 4. a tokens file error names the line, never the token
printf 'read r-token-0123456789abcdef\nwrite sekrit\n' > "$TMP/bad-tokens"
expect bad-tokens 2 "bad-tokens line 2: the token has 6 characters" \
    serve --store "sqlite:$TMP/s.db" --tokens "$TMP/bad-tokens" --listen 127.0.0.1:0 --admin off
if grep -q "sekrit\|r-token" "$TMP/bad-tokens.out"; then fail "bad-tokens: a token was printed"; fi

# 5. bad schemas directory
mkdir -p "$TMP/noschemas"
expect bad-schemas 2 "holds no TYPE@VERSION.json" \
    serve --store "sqlite:$TMP/s.db" --schemas "$TMP/noschemas"

# 6. a server on free ports, read-only without tokens
"$EDDY" serve --store "sqlite:$TMP/s.db" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
    >"$TMP/serve.out" 2>"$TMP/serve.err" &
pid=$!
pids+=("$pid")
ev=$(wait_port "$TMP/serve.out" "events API on") || fail "serve: no events URL printed"
ad=$(wait_port "$TMP/serve.out" "dashboard on") || fail "serve: no dashboard URL printed"
grep -q "read-only" "$TMP/serve.out" || fail "serve: does not say it is read-only"
http "$ad" GET /healthz | grep -q '"status":"alive"' || fail "serve: /healthz"
http "$ad" GET / | grep -q '<script src="/app.js"' || fail "serve: no dashboard at /"
resp=$(http "$ev" POST /streams/x '' 'ce-specversion: 1.0' 'ce-id: 1' 'ce-source: /t' 'ce-type: t')
grep -q "^HTTP/1.[01] 403" <<<"$resp" || fail "serve: an append without tokens was not 403: $resp"
grep -q -- "--tokens" <<<"$resp" || fail "serve: the 403 does not mention --tokens"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || { fail "serve: exit status $status after SIGTERM"; sed 's/^/  | /' "$TMP/serve.err" >&2; }

# 7. tokens and schemas: an invalid event is a 400 naming the schema path
mkdir -p "$TMP/schemas"
cat > "$TMP/schemas/user.registered@1.0.json" <<'JSON'
{"type": "object", "required": ["email"],
 "properties": {"email": {"type": "string", "format": "email"}}}
JSON
printf 'write w-token-0123456789abcdef\n' > "$TMP/tokens"
"$EDDY" serve --store "sqlite:$TMP/s.db" --listen 127.0.0.1:0 --admin off \
    --tokens "$TMP/tokens" --schemas "$TMP/schemas" >"$TMP/serve2.out" 2>"$TMP/serve2.err" &
pid=$!
pids+=("$pid")
ev=$(wait_port "$TMP/serve2.out" "events API on") || fail "serve2: no events URL printed"
auth='Authorization: Bearer w-token-0123456789abcdef'
resp=$(http "$ev" POST /streams/u-1 '{"email": "x@"}' "$auth" 'ce-specversion: 1.0' \
    'ce-id: u1' 'ce-source: /users' 'ce-type: user.registered' 'ce-dataversion: 1.0' \
    'Content-Type: application/json')
grep -q "^HTTP/1.[01] 400" <<<"$resp" || fail "serve2: an invalid event was not 400: $resp"
grep -q '"path":"/email"' <<<"$resp" || fail "serve2: the 400 does not name /email: $resp"
resp=$(http "$ev" POST /streams/u-1 '{"email": "ada@example.org"}' "$auth" \
    'ce-specversion: 1.0' 'ce-id: u2' 'ce-source: /users' 'ce-type: user.registered' \
    'ce-dataversion: 1.0' 'Content-Type: application/json')
grep -q "^HTTP/1.[01] 201" <<<"$resp" || fail "serve2: a valid event was not 201: $resp"
if grep -q "w-token" "$TMP/serve2.err"; then fail "serve2: the token reached the log"; fi
kill -TERM "$pid"
wait "$pid" || fail "serve2: exit status $? after SIGTERM"

# 8. the dashboard on the demo's store while the demo runs
expect demo-transport 2 "--serve and --transport exclude each other" \
    demo --serve 127.0.0.1:0 --transport redis://127.0.0.1:1
"$EDDY" demo --orders 600 --users 5 --rate 150 --serve 127.0.0.1:0 \
    --store "sqlite:$TMP/demo.db" >"$TMP/demo.out" 2>"$TMP/demo.err" &
pid=$!
pids+=("$pid")
ad=$(wait_port "$TMP/demo.err" "dashboard on") || fail "demo --serve: no dashboard URL printed"
seen=0
for _ in $(seq 50); do
    body=$(http "$ad" GET /api/overview 2>/dev/null || true)
    head=$(sed -nE 's/.*"head":([0-9]+).*/\1/p' <<<"$body" | head -n 1)
    if [ -n "$head" ] && [ "$head" -gt 0 ]; then seen=1; break; fi
    sleep 0.1
done
[ "$seen" = 1 ] || fail "demo --serve: the overview never showed events"
metrics=$(http "$ad" GET /metrics)
grep -q 'eddy_handler_events_handled_total{handler="payment-service"' <<<"$metrics" ||
    fail "demo --serve: /metrics lacks the demo's handlers"
grep -q 'eddy_subscription_lag_events{subscription="inventory-service"}' <<<"$metrics" ||
    fail "demo --serve: /metrics lacks the demo's subscription lag"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || { fail "demo --serve: exit status $status"; tail -20 "$TMP/demo.out" >&2; }
grep -q "^all invariants hold$" "$TMP/demo.out" || fail "demo --serve: invariants"

if [ "$failures" -ne 0 ]; then
    echo "serve.sh: $failures failure(s)" >&2
    exit 1
fi
echo "serve.sh: all checks passed"
