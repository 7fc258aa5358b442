#!/usr/bin/env bash
# RSS per idle keep-alive client connection, modelgate vs nginx, same upstream.
#   perf/idle_memory.sh            # N=10000
set -euo pipefail
N=${N:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q --bin modelgate
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
ulimit -n $((N * 2 + 1000))
UP=127.0.0.1:18181 NGX=127.0.0.1:18182 MG=127.0.0.1:18183
answer='{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
cat > "$tmp/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $tmp/up.pid; error_log $tmp/up.err warn; worker_rlimit_nofile 100000;
events { worker_connections 40000; }
http { access_log off; server { listen $UP backlog=4096; location / { default_type application/json; return 200 '$answer'; } } }
EOF
cat > "$tmp/proxy.conf" <<EOF
worker_processes 1; daemon off; pid $tmp/ngx.pid; error_log $tmp/ngx.err warn; worker_rlimit_nofile 100000;
events { worker_connections 40000; }
http { access_log off; keepalive_timeout 300s;
  upstream llm { server $UP; keepalive 64; }
  server { listen $NGX backlog=4096;
    location / { proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat > "$tmp/modelgate.toml" <<EOF
[server]
listen = ["$MG"]
workers = 1
[server.limits]
idle_timeout_ms = 300000
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
service = { mode = "single", target = { service = "up" } }
EOF
nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
target/release/modelgate serve --config "$tmp/modelgate.toml" >"$tmp/mg.out" 2>"$tmp/mg.err" & MGPID=$!; pids+=($MGPID)
for a in $UP $NGX $MG; do for _ in $(seq 100); do curl -s -o /dev/null "http://$a/" && break; sleep 0.05; done; done
NGXPIDS="$(cat "$tmp/ngx.pid"),$(pgrep -P "$(cat "$tmp/ngx.pid")" | paste -sd,)"
python3 perf/idle_memory.py "$N" "nginx=$NGX=$NGXPIDS" "modelgate=$MG=$MGPID"
