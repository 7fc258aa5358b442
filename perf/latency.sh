#!/usr/bin/env bash
# Latency side by side (issue 10 §2), same upstream, one run:
#  - open loop at half of nginx's peak rate: p50/p99 direct, nginx, modelgate;
#  - concurrency 1: the p99 each proxy adds over going direct.
# Proxies pinned to PROXY_CPU; upstream and load generator to LOAD_CPU.
#   perf/latency.sh          # DURATION=10s ROUNDS=3
set -euo pipefail
DURATION=${DURATION:-10s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source perf/lib.sh
cargo build --release -q --workspace --bins
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
UP=127.0.0.1:18381 NGX=127.0.0.1:18382 MG=127.0.0.1:18383
upstream_conf "$tmp" $UP
proxy_conf "$tmp" $NGX $UP
modelgate_conf "$tmp" $MG $UP "${IO:-auto}"
taskset -c "$LOAD_CPU" nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
taskset -c "$PROXY_CPU" nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
taskset -c "$PROXY_CPU" target/release/modelgate serve --config "$tmp/modelgate.toml" >/dev/null 2>&1 & pids+=($!)
wait_http $UP $NGX $MG

load() { taskset -c "$LOAD_CPU" target/release/modelgate-load "http://$1/v1/chat/completions" --threads 1 -q --duration "$DURATION" --json "$2" "${@:3}" >/dev/null 2>&1 || true; }
p() { python3 -c "import json,sys; r=json.load(open('$1')); print('%.3f' % r['latency_ms']['$2'])"; }
rps() { python3 -c "import json; print(int(json.load(open('$1'))['rps']))"; }

# nginx's peak on this box: closed loop, 64 in flight.
load $NGX "$tmp/peak.json" --concurrency 64
peak=$(rps "$tmp/peak.json"); half=$((peak / 2))
echo "nginx peak (closed loop, 64 in flight): $peak req/s; open loop at $half req/s"
# Warm every target alike first (the peak run above warmed nginx only):
# the first load on a fresh proxy pays for its upstream connections.
for a in $UP $MG; do
  taskset -c "$LOAD_CPU" target/release/modelgate-load "http://$a/v1/chat/completions" --threads 1 -q \
    --duration 2s --concurrency 256 >/dev/null 2>&1 || true
done
# Interleaved rounds; medians per target (one run says little on a
# shared machine).
ROUNDS=${ROUNDS:-3}
for r in $(seq "$ROUNDS"); do
  for t in direct nginx modelgate; do
    case $t in direct) a=$UP ;; nginx) a=$NGX ;; modelgate) a=$MG ;; esac
    load $a "$tmp/$t-open-$r.json" --rate "$half/s" --connections 256
    load $a "$tmp/$t-c1-$r.json" --concurrency 1
    echo "round $r $t: open p99 $(p "$tmp/$t-open-$r.json" p99) ms, c1 p99 $(p "$tmp/$t-c1-$r.json" p99) ms" >&2
  done
done
med() { python3 -c "import json,statistics,sys; print('%.3f' % statistics.median(json.load(open(f))['latency_ms']['$2'] for f in sys.argv[1:]))" "$tmp"/$1-*.json; }
printf "%-10s %10s %10s %12s %12s %14s\n" target "p50 ms" "p99 ms" "c1 p50 ms" "c1 p99 ms" "c1 added p99"
d99=$(med direct-c1 p99)
for t in direct nginx modelgate; do
  c99=$(med $t-c1 p99)
  printf "%-10s %10s %10s %12s %12s %14s\n" $t "$(med $t-open p50)" "$(med $t-open p99)" \
    "$(med $t-c1 p50)" "$c99" "$(echo "$c99 - $d99" | bc -l | sed 's/^\./0./;s/^-\./-0./')"
done
echo "medians of $ROUNDS interleaved rounds"
