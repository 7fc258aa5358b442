#!/usr/bin/env bash
# Syscalls per proxied request (strace -c -f over a wrk run), modelgate vs
# nginx, same upstream, same 250-byte chat request, 64 connections.
#   perf/syscalls.sh
set -euo pipefail
DURATION=${DURATION:-5s}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q --bin modelgate
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
UP=127.0.0.1:18281 NGX=127.0.0.1:18282 MG=127.0.0.1:18283
answer='{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}'
cat > "$tmp/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $tmp/up.pid; error_log $tmp/up.err warn;
events { worker_connections 4096; }
http { access_log off; server { listen $UP; keepalive_requests 100000000; location / { default_type application/json; return 200 '$answer'; } } }
EOF
cat > "$tmp/proxy.conf" <<EOF
worker_processes 1; master_process off; daemon off; pid $tmp/ngx.pid; error_log $tmp/ngx.err warn;
events { worker_connections 4096; }
http { access_log off; upstream llm { server $UP; keepalive 256; keepalive_requests 100000000; }
  server { listen $NGX; keepalive_requests 100000000; location / { proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat > "$tmp/modelgate.toml" <<EOF
[server]
listen = ["$MG"]
workers = 1
[admin]
listen = "127.0.0.1:0"
[log]
access = "off"
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
cat > "$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.2,"max_tokens":128,"stream":false,"user":"bench-user-42"}'
EOF
nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
for name in nginx modelgate; do
  if [ $name = nginx ]; then
    strace -c -U calls,name -f -o "$tmp/$name.strace" nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!); addr=$NGX
  else
    strace -c -U calls,name -f -o "$tmp/$name.strace" target/release/modelgate serve --config "$tmp/modelgate.toml" >/dev/null 2>&1 & pids+=($!); addr=$MG
  fi
  spid=$!
  for _ in $(seq 200); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.05; done
  reqs=$(wrk -t1 -c64 -d"$DURATION" -s "$tmp/post.lua" "http://$addr/v1/chat/completions" | awk '/requests in/ {print $1}')
  kill -INT "$(pgrep -P $spid | head -1)"; wait $spid 2>/dev/null || true
  sleep 0.5
  total=$(awk '$2 == "total" {print $1}' "$tmp/$name.strace")
  echo "$name: $reqs requests, $total syscalls, $(echo "scale=2; $total / $reqs" | bc) per request"
  awk '$1 ~ /^[0-9]+$/ && $2 != "total" {printf "    %-16s %s\n", $2, $1}' "$tmp/$name.strace" | sort -k2 -n -r | head -6
done
