#!/usr/bin/env bash
# 2,000 concurrent SSE streams from mock-llm, direct vs through modelgate
# (issue 10 §4): the per-event latency modelgate adds is the difference of
# the inter-token latency percentiles (mock-llm paces tokens ITL_MS apart).
#   perf/streaming.sh        # STREAMS=2000 DURATION=15s ITL_MS=50
set -euo pipefail
STREAMS=${STREAMS:-2000}
DURATION=${DURATION:-15s}
ITL_MS=${ITL_MS:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q --workspace --bins
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
target/release/mock-llm --listen 127.0.0.1:0 --itl-ms "$ITL_MS" --ttft-ms "$ITL_MS" >"$tmp/up.out" & pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/up.out" 2>/dev/null && break; sleep 0.05; done
UP=$(sed -n 's/listening on //p' "$tmp/up.out")
cat > "$tmp/modelgate.toml" <<EOF
[server]
listen = ["127.0.0.1:18480"]
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
target/release/modelgate serve --config "$tmp/modelgate.toml" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18480/ && break; sleep 0.05; done
run() { target/release/modelgate-load "http://$1/v1/chat/completions" --stream --max-tokens 40 \
  --concurrency "$STREAMS" --duration "$DURATION" -q --json "$2" >/dev/null 2>&1 || true; }
run "$UP" "$tmp/direct.json"
run 127.0.0.1:18480 "$tmp/modelgate.json"
python3 - "$tmp/direct.json" "$tmp/modelgate.json" "$STREAMS" <<'PY'
import json, sys
d, m = (json.load(open(p)) for p in sys.argv[1:3])
print(f"{sys.argv[3]} concurrent streams, ITL percentiles in ms")
print(f"{'':10s} {'requests':>9s} {'errors':>7s} {'itl p50':>8s} {'itl p99':>8s} {'ttft p99':>9s}")
for name, r in (("direct", d), ("modelgate", m)):
    print(f"{name:10s} {r['requests']:9d} {r['errors']:7d} {r['itl_ms']['p50']:8.2f} {r['itl_ms']['p99']:8.2f} {r['ttft_ms']['p99']:9.2f}")
print(f"added per-event latency: p50 {m['itl_ms']['p50'] - d['itl_ms']['p50']:.3f} ms, p99 {m['itl_ms']['p99'] - d['itl_ms']['p99']:.3f} ms")
PY
