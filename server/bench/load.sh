#!/usr/bin/env bash
# Refresh throughput and latency of capture-session-server (optimised build),
# memory store and Redis, token and code mode, against the standalone simulator.
# Every refresh mints a new token upstream (--reuse-window 0), unless REUSE_WINDOW=SECONDS
# lets refreshes hand back the fresh token (no upstream call: the server's own cost).
# The servers run with --simulate (plain-HTTP cookies on loopback, Redis values unencrypted;
# both are development switches) against the standalone simulator, without the per-address
# rate limit (every request comes from one address) or the per-user session bound (the
# sessions are one user's). `npm run bench` (bench/server.mjs) measures more, encryption too.
# Usage: server/bench/load.sh [SECONDS] [CONNECTIONS] [SESSIONS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${1:-10}" conns="${2:-64}" sessions="${3:-1000}"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/server/capture-session-server"
[ -x "$bin" ] || { echo "build first: cargo build -p capture-session-server --profile server" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing (apt-get install wrk)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server missing" >&2; exit 1; }
work="$(mktemp -d)"
keep="${KEEP_LOGS:-}"   # a directory: server, simulator and Redis logs are copied there
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$work"/*.log "$keep"/; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

sim_port="$(free_port)"
RUST_LOG=warn "$bin" simulator --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 & pids+=($!)
redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 & pids+=($!)
wait_port "$sim_port"; wait_port "$redis_port"
sim="http://127.0.0.1:$sim_port"

for store in memory redis; do
  port="$(free_port)"
  store_url=memory; [ "$store" = redis ] && store_url="redis://127.0.0.1:$redis_port/"
  RUST_LOG="${SERVER_LOG:-warn}" NO_COLOR=1 "$bin" --listen "127.0.0.1:$port" --capture-url "$sim" \
    --issuer-client-id capture-session-server --issuer-client-secret simulator-secret \
    --store "$store_url" --reuse-window "${REUSE_WINDOW:-0}" \
    --simulate --rate-limit-per-second 0 --max-sessions-per-user 0 >"$work/server-$store.log" 2>&1 &
  server_pid=$!; pids+=($server_pid)
  wait_port "$port"
  for mode in token code; do
    python3 "$here/sessions.py" "$sim" "http://127.0.0.1:$port" "$mode" "$sessions" >"$work/cookies"
    wrk -t 2 -c 4 -d 2s -s "$here/refresh.lua" "http://127.0.0.1:$port" -- "$work/cookies" >/dev/null # warm-up
    result="$(wrk -t 2 -c "$conns" -d "${secs}s" --timeout 10s -s "$here/refresh.lua" "http://127.0.0.1:$port" -- "$work/cookies" | sed -n 's/^RESULT //p')"
    echo "{\"store\":\"$store\",\"mode\":\"$mode\",\"connections\":$conns,\"sessions\":$sessions,\"result\":$result}"
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
