#!/usr/bin/env bash
# modelgate-load vs wrk on one core against the same nginx upstream
# (issue 9: the load generator must drive at least as many requests/s as
# wrk). nginx (perf/nginx-static.conf, one worker) is pinned to one core,
# each load generator in turn to the other, one thread, the same number of
# keep-alive connections and the same POST request (perf/wrk-post.lua).
# Rounds alternate the tools so machine noise hits both alike; the medians
# are printed with each tool's CPU time per request.
#
# Needs: nginx, wrk (apt-get install -y nginx-light wrk), a release build
#   cargo build --release -p modelgate-loadtest --bin modelgate-load
# Env: ROUNDS (5), DURATION (5, seconds), CONNS (64), NGINX_CPU (0),
#      LOAD_CPU (1), MODELGATE_LOAD (path of the binary).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
NGINX_CPU=${NGINX_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOAD=${MODELGATE_LOAD:-$TARGET_DIR/release/modelgate-load}
URL=http://127.0.0.1:18089/v1/chat/completions

for tool in nginx wrk taskset; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -x "$LOAD" ] || { echo "no $LOAD: build it first (see the header)" >&2; exit 1; }

scratch=$(mktemp -d)
nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$scratch"
}
trap cleanup EXIT

taskset -c "$NGINX_CPU" nginx -p "$scratch" -c "$PWD/perf/nginx-static.conf" 2>"$scratch/nginx.err" &
nginx_pid=$!
for _ in $(seq 50); do
    curl -sf -o /dev/null -d '{}' "$URL" 2>/dev/null && break
    sleep 0.1
done
curl -sf -o /dev/null -d '{}' "$URL" || { cat "$scratch/nginx.err" >&2; exit 1; }

TIMEFORMAT='%3U %3S'
# Prints "RPS REQUESTS CPU_SECONDS" for one run of a tool.
run_wrk() {
    { time taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
        -s perf/wrk-post.lua "$URL" >"$scratch/wrk.out"; } 2>"$scratch/time"
    local rps n cpu
    rps=$(awk '/Requests\/sec/ {print $2}' "$scratch/wrk.out")
    n=$(awk '/requests in/ {print $1}' "$scratch/wrk.out")
    cpu=$(awk '{print $1 + $2}' "$scratch/time")
    echo "$rps $n $cpu"
}
run_load() {
    { time taskset -c "$LOAD_CPU" "$LOAD" "$URL" --prompt hi --threads 1 \
        --concurrency "$CONNS" --duration "${DURATION}s" --io "$1" -q \
        --json "$scratch/load.json" >/dev/null; } 2>"$scratch/time"
    local rps n cpu
    rps=$(sed -n 's/^ *"rps": \([0-9.]*\),*$/\1/p' "$scratch/load.json")
    n=$(sed -n 's/^ *"requests": \([0-9]*\),*$/\1/p' "$scratch/load.json")
    cpu=$(awk '{print $1 + $2}' "$scratch/time")
    echo "$rps $n $cpu"
}

declare -A results
tools=(wrk load-uring load-epoll)
for r in $(seq "$ROUNDS"); do
    for t in "${tools[@]}"; do
        case $t in
            wrk) line=$(run_wrk) ;;
            load-uring) line=$(run_load uring) ;;
            load-epoll) line=$(run_load epoll) ;;
        esac
        read -r rps n cpu <<<"$line"
        us=$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.2f", c * 1e6 / n }')
        echo "round $r  $t  $rps req/s  $n requests  cpu ${cpu}s  ${us} us/request"
        results[$t]+="$rps $us"$'\n'
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
echo "medians over $ROUNDS rounds (${DURATION}s each, $CONNS connections, nginx on cpu $NGINX_CPU, load on cpu $LOAD_CPU):"
for t in "${tools[@]}"; do
    rps=$(printf '%s' "${results[$t]}" | awk 'NF {print $1}' | median)
    us=$(printf '%s' "${results[$t]}" | awk 'NF {print $2}' | median)
    echo "  $t: $rps req/s, $us us CPU/request"
done
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
