#!/usr/bin/env bash
# Side by side, one run, same upstream: wrk → upstream directly, through
# nginx (reverse proxy, worker_processes 1, upstream keepalive), and through
# modelgate (workers = 1). Proxies pinned to PROXY_CPU, wrk and the upstream
# to LOAD_CPU. Rounds are interleaved; medians are reported, with requests
# per proxy CPU-second (the per-core figure that holds when the load side
# saturates first on a 2-core box).
#
#   perf/proxy_compare.sh            # ROUNDS=5 DURATION=10s CONNS=64
#   ROUNDS=3 DURATION=5s perf/proxy_compare.sh
#   BASELINE_BIN=/path/to/older/modelgate perf/proxy_compare.sh   # adds that build as "baseline"
set -euo pipefail
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
IO=${IO:-auto}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source perf/lib.sh
cargo build --release -q --bin modelgate
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

UP=127.0.0.1:18081 NGX=127.0.0.1:18082 MG=127.0.0.1:18083 BASE=127.0.0.1:18084
TARGETS="direct nginx modelgate"
upstream_conf "$tmp" $UP
proxy_conf "$tmp" $NGX $UP
modelgate_conf "$tmp" $MG $UP "$IO"
post_lua "$tmp"

taskset -c "$LOAD_CPU" nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
taskset -c "$PROXY_CPU" nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
taskset -c "$PROXY_CPU" target/release/modelgate serve --config "$tmp/modelgate.toml" >"$tmp/mg.out" 2>"$tmp/mg.err" & mgpid=$!; pids+=($mgpid)
wait_http $UP $NGX $MG
if [ -n "${BASELINE_BIN:-}" ]; then
  mkdir -p "$tmp/base"
  modelgate_conf "$tmp/base" $BASE $UP "$IO"
  taskset -c "$PROXY_CPU" "$BASELINE_BIN" serve --config "$tmp/base/modelgate.toml" >/dev/null 2>&1 & basepid=$!; pids+=($basepid)
  wait_http $BASE
  TARGETS="$TARGETS baseline"
fi
ngx_pids() { local m; m=$(cat "$tmp/ngx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }

# CPU ticks (user+system) of a set of processes, threads included.
ticks() { local t=0; for p in $*; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
hz=$(getconf CLK_TCK)

run() { # name addr pids → "rps cpu_seconds"
  local before after out rps
  before=$(ticks $3)
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$tmp/post.lua" "http://$2/v1/chat/completions")
  after=$(ticks $3)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  if echo "$out" | grep -q "Non-2xx"; then echo "$1: non-2xx answers" >&2; echo "$out" >&2; exit 1; fi
  echo "$rps $(echo "($after - $before) / $hz" | bc -l)"
}

declare -A RPS CPU
for r in $(seq "$ROUNDS"); do
  for t in $TARGETS; do
    case $t in
      direct) res=$(run direct $UP "") ;;
      nginx) res=$(run nginx $NGX "$(ngx_pids)") ;;
      modelgate) res=$(run modelgate $MG "$mgpid") ;;
      baseline) res=$(run baseline $BASE "$basepid") ;;
    esac
    RPS[$t]+="$(echo "$res" | cut -d' ' -f1) "
    CPU[$t]+="$(echo "$res" | cut -d' ' -f2) "
    echo "round $r $t: $res" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "settings: rounds=$ROUNDS duration=$DURATION conns=$CONNS io=$IO proxy_cpu=$PROXY_CPU load_cpu=$LOAD_CPU"
printf "%-10s %12s %14s %18s\n" target "req/s (med)" "proxy CPU-s" "req per CPU-s"
for t in $TARGETS; do
  rps=$(echo "${RPS[$t]}" | median)
  if [ "$t" = direct ]; then
    printf "%-10s %12.0f %14s %18s\n" $t "$rps" - -
  else
    # per-round requests per CPU-second, then the median of those
    per=$(paste -d' ' <(echo "${RPS[$t]}" | tr ' ' '\n' | grep -v '^$') <(echo "${CPU[$t]}" | tr ' ' '\n' | grep -v '^$') \
      | awk -v d="${DURATION%s}" '{ if ($2 > 0) printf "%f ", $1 * d / $2 }' | median)
    cpu=$(echo "${CPU[$t]}" | median)
    printf "%-10s %12.0f %14.2f %18.0f\n" $t "$rps" "$cpu" "$per"
    eval "PER_$t=$per; RPSM_$t=$rps"
  fi
done
echo "modelgate/nginx: req/s $(echo "$RPSM_modelgate / $RPSM_nginx" | bc -l | cut -c1-5)x, req per CPU-s $(echo "$PER_modelgate / $PER_nginx" | bc -l | cut -c1-5)x"
# Each round's own ratio, then their median: drift between rounds (other
# tenants of a shared machine) cancels within a round.
paired() { # target → median over rounds of (target req/CPU-s) / (nginx req/CPU-s), and of req/s
  paste -d' ' <(echo "${RPS[$1]}" | tr ' ' '\n' | grep -v '^$') <(echo "${CPU[$1]}" | tr ' ' '\n' | grep -v '^$') \
    <(echo "${RPS[nginx]}" | tr ' ' '\n' | grep -v '^$') <(echo "${CPU[nginx]}" | tr ' ' '\n' | grep -v '^$') \
    | awk '{ if ($2 > 0 && $4 > 0) printf "%f ", ($1 / $2) / ($3 / $4) }' | median
}
paired_rps() {
  paste -d' ' <(echo "${RPS[$1]}" | tr ' ' '\n' | grep -v '^$') <(echo "${RPS[nginx]}" | tr ' ' '\n' | grep -v '^$') \
    | awk '{ printf "%f ", $1 / $2 }' | median
}
echo "modelgate/nginx paired (median of per-round ratios): req/s $(paired_rps modelgate | cut -c1-5)x, req per CPU-s $(paired modelgate | cut -c1-5)x"
if [ -n "${BASELINE_BIN:-}" ]; then
  echo "modelgate/baseline: req/s $(echo "$RPSM_modelgate / $RPSM_baseline" | bc -l | cut -c1-5)x, req per CPU-s $(echo "$PER_modelgate / $PER_baseline" | bc -l | cut -c1-5)x"
fi
