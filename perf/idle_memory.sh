#!/usr/bin/env bash
# RSS per idle keep-alive client connection, modelgate vs nginx, same upstream.
#   perf/idle_memory.sh            # N=10000
set -euo pipefail
N=${N:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source perf/lib.sh
cargo build --release -q --bin modelgate
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
ulimit -n $((N * 2 + 1000))
UP=127.0.0.1:18181 NGX=127.0.0.1:18182 MG=127.0.0.1:18183
upstream_conf "$tmp" $UP "worker_rlimit_nofile 100000;"
proxy_conf "$tmp" $NGX $UP "worker_rlimit_nofile 100000;" "keepalive_timeout 300s;"
modelgate_conf "$tmp" $MG $UP auto "idle_timeout_ms = 300000"
nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
target/release/modelgate serve --config "$tmp/modelgate.toml" >"$tmp/mg.out" 2>"$tmp/mg.err" & MGPID=$!; pids+=($MGPID)
wait_http $UP $NGX $MG
NGXPIDS="$(cat "$tmp/ngx.pid"),$(pgrep -P "$(cat "$tmp/ngx.pid")" | paste -sd,)"
python3 perf/idle_memory.py "$N" "nginx=$NGX=$NGXPIDS" "modelgate=$MG=$MGPID"
