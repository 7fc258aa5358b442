#!/usr/bin/env bash
# Reload and drain under real load, printing failed/total.
#  1. wrk (plain) and a streaming client run against modelgate while it is
#     sent 20 SIGHUPs, each swapping the config; every failure is counted.
#  2. 100 streams in flight, then SIGTERM: each must finish with [DONE],
#     new connections must be refused, and the process must exit 0.
#
#   perf/reload_drain.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q --bins --workspace
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

target/release/mock-llm --listen 127.0.0.1:0 --threads 2 >"$tmp/up.out" & pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/up.out" 2>/dev/null && break; sleep 0.05; done
UP=$(sed -n 's/listening on //p' "$tmp/up.out")

config() { # $1 = model the API rewrites to
  cat <<EOF
[server]
listen = ["127.0.0.1:18090"]
workers = 2
drain_timeout_ms = 20000
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "http://$UP"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = { mode = "single", target = { service = "up", model = "$1" } }
EOF
}
start_gateway() {
  config v0 >"$tmp/mg.toml"
  target/release/modelgate serve --config "$tmp/mg.toml" >"$tmp/mg.out" 2>"$tmp/mg.err" & MG=$!; pids+=($MG)
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18090/ && break; sleep 0.05; done
}

cat > "$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hello"}]}'
EOF

echo "== 20 reloads under load"
start_gateway
python3 perf/stream_clients.py load 127.0.0.1:18090 16 12 >"$tmp/streams.out" & SC=$!
wrk -t1 -c32 -d12s -s "$tmp/post.lua" http://127.0.0.1:18090/v1/chat/completions >"$tmp/wrk.out" & WRK=$!
sleep 1
for n in $(seq 20); do config "v$n" >"$tmp/mg.toml"; kill -HUP "$MG"; sleep 0.4; done
wait $WRK; wait $SC
total=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
errors=$(awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}' "$tmp/wrk.out"); errors=${errors:-0}
non2xx=$(awk '/Non-2xx/ {print $5}' "$tmp/wrk.out"); non2xx=${non2xx:-0}
echo "plain (wrk): failed $((errors + non2xx)) / $total"
echo "streams:     $(cat "$tmp/streams.out")"
model=$(curl -s -d '{"model":"x","messages":[]}' http://127.0.0.1:18090/v1/chat/completions | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"])')
echo "model after reloads: $model (want v20)"
kill -TERM "$MG"; wait "$MG" || true

echo "== SIGTERM with 100 streams in flight"
start_gateway
python3 perf/stream_clients.py drain 127.0.0.1:18090 100 "$MG"
set +e; wait "$MG"; code=$?; set -e
echo "exit code: $code (want 0)"
