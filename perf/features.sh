#!/usr/bin/env bash
# What observability and cluster limits cost in throughput: one modelgate
# (workers = 1, pinned to PROXY_CPU) in front of the nginx static upstream
# of perf/lib.sh, driven by wrk (64 connections, pinned to LOAD_CPU, with
# the upstream and redis-server), in four variants:
#
#   base            access log off, no consumers, no limits (metrics on:
#                   they always are)
#   log             access log on, JSON lines to a file; /metrics scraped
#                   after each round to prove the counters moved
#   limits          Model API with auth on, one consumer with its key and
#                   huge requests_per_minute / tokens_per_minute; wrk sends
#                   the key as Bearer
#   cluster-limits  limits + [cluster] redis_url on a redis-server started
#                   here (loopback, no persistence)
#
# Every round starts a fresh modelgate per variant; rounds are interleaved
# (base, log, limits, cluster-limits, base, ...). Each variant is checked
# while it runs (log lines written, metrics counted, 401 without the key
# and 200 with it, keys in Redis); a failed check stops the script.
# Printed: medians of req/s and of requests per modelgate CPU-second
# (user+system from /proc/<pid>/stat during the wrk run), and both as a
# ratio to base; "paired" is the median over rounds of each round's
# req/CPU-s divided by that round's base (robust to drift between rounds).
#
#   perf/features.sh                       # ROUNDS=5 DURATION=5s CONNS=64
#   ROUNDS=1 DURATION=2s perf/features.sh  # quick check
#   MODELGATE_BIN=path/to/modelgate perf/features.sh   # no cargo build
#
# Needs nginx, wrk, redis-server/redis-cli, curl, bc, taskset, python3
# (missing ones are installed with apt-get where possible).
set -euo pipefail
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
REDIS_CPU=${REDIS_CPU:-$LOAD_CPU}
IO=${IO:-auto}
LOG_MIN_FRACTION=${LOG_MIN_FRACTION:-0.5}   # access log lines / wrk requests, at least
VARIANTS=${VARIANTS:-"base log limits cluster-limits"}
HUGE=1000000000
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source perf/lib.sh

die() { echo "FAIL: $*" >&2; exit 1; }

# Tools: install the missing ones (Debian/Ubuntu package names).
need=()
for t in nginx:nginx-light wrk:wrk redis-server:redis-server redis-cli:redis-tools curl:curl bc:bc taskset:util-linux; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi
command -v python3 >/dev/null || die "python3 is needed (free ports)"

if [ -n "${MODELGATE_BIN:-}" ]; then
  bin=$MODELGATE_BIN
else
  cargo build --release -q --bin modelgate
  bin=${CARGO_TARGET_DIR:-$root/target}/release/modelgate
fi
[ -x "$bin" ] || die "no modelgate binary at $bin"

tmp=$(mktemp -d)
pids=()
mgpid=
cleanup() {
  for p in $mgpid "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in $mgpid "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=127.0.0.1:$(free_port) MG=127.0.0.1:$(free_port) ADMIN=127.0.0.1:$(free_port) REDIS_PORT=$(free_port)

upstream_conf "$tmp" "$UP"
post_lua "$tmp"
KEY=$(sed -n 's/.*Bearer \([^"]*\)".*/\1/p' "$tmp/post.lua")
[ -n "$KEY" ] || die "no Bearer key in post.lua"
BODY=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$tmp/post.lua")
export MG_BENCH_KEY=$KEY    # the consumer's key, read by the config as env:MG_BENCH_KEY

taskset -c "$LOAD_CPU" nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
taskset -c "$REDIS_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" & pids+=($!)
wait_http "$UP"
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
redis-cli -p "$REDIS_PORT" ping | grep -q PONG || die "redis-server did not start (see $tmp/redis.log)"

# Config of one variant in $tmp/<variant>/modelgate.toml (lib.sh's, plus the variant's lines).
variant_conf() {
  local v=$1 d=$tmp/$1
  mkdir -p "$d"
  modelgate_conf "$d" "$MG" "$UP" "$IO"
  sed -i "s|^listen = \"127.0.0.1:0\"|listen = \"$ADMIN\"|" "$d/modelgate.toml"
  if [ "$v" = log ]; then
    sed -i "s|^access = \"off\"|access = \"$d/access.log\"|" "$d/modelgate.toml"
  fi
  if [ "$v" = limits ] || [ "$v" = cluster-limits ]; then
    # Still inside the last [[model_apis]] table.
    cat >> "$d/modelgate.toml" <<EOF
auth = { enabled = true, consumers = ["bench"] }
[[consumers]]
name = "bench"
keys = ["env:MG_BENCH_KEY"]
limits = { requests_per_minute = $HUGE, tokens_per_minute = $HUGE }
EOF
  fi
  if [ "$v" = cluster-limits ]; then
    printf '[cluster]\nredis_url = "redis://127.0.0.1:%s/0"\nkey_prefix = "modelgate:"\n' "$REDIS_PORT" >> "$d/modelgate.toml"
  fi
  grep -q "^access = \"$([ "$v" = log ] && echo "$d/access.log" || echo off)\"" "$d/modelgate.toml" || die "$v: access log line not set"
  grep -q "^listen = \"$ADMIN\"" "$d/modelgate.toml" || die "$v: admin listen not set"
}
for v in $VARIANTS; do
  case $v in base | log | limits | cluster-limits) variant_conf "$v" ;; *) die "unknown variant $v" ;; esac
done
for v in $VARIANTS; do
  "$bin" check --config "$tmp/$v/modelgate.toml" >"$tmp/$v/check.out" 2>&1 || { cat "$tmp/$v/check.out" >&2; die "$v: modelgate check rejected the config"; }
done

start_mg() { # variant → sets mgpid; waits until the data plane answers and /readyz is 200
  local d=$tmp/$1
  rm -f "$d/state.json" "$d/access.log"
  taskset -c "$PROXY_CPU" "$bin" serve --config "$d/modelgate.toml" >"$d/mg.out" 2>"$d/mg.err" & mgpid=$!
  local ok=
  for _ in $(seq 200); do
    kill -0 "$mgpid" 2>/dev/null || { cat "$d/mg.err" >&2; die "$1: modelgate exited at start"; }
    if curl -s -o /dev/null --max-time 1 "http://$MG/" \
      && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$ADMIN/readyz")" = 200 ]; then ok=1; break; fi
    sleep 0.05
  done
  [ -n "$ok" ] || { cat "$d/mg.err" >&2; die "$1: modelgate not ready after 10 s"; }
}

stop_mg() {
  kill -TERM "$mgpid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$mgpid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$mgpid" 2>/dev/null || true
  wait "$mgpid" 2>/dev/null || true
  mgpid=
}

status_of() { # [auth header] → HTTP status of one chat request
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST "http://$MG/v1/chat/completions" \
    -H 'Content-Type: application/json' ${1:+-H "$1"} --data "$BODY"
}

# Sum of modelgate_requests_total with status 200.
metrics_200() { curl -s --max-time 5 "http://$ADMIN/metrics" | awk '/^modelgate_requests_total\{/ && /status="200"/ {s += $NF} END {printf "%d\n", s}'; }

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

declare -A RPS PER CPU PAIR
last_metrics= last_keys=
for r in $(seq "$ROUNDS"); do
  for v in $VARIANTS; do
    d=$tmp/$v
    [ "$v" = cluster-limits ] && redis-cli -p "$REDIS_PORT" flushall >/dev/null
    start_mg "$v"
    # Before load: the variant does what it says.
    if [ "$v" = limits ] || [ "$v" = cluster-limits ]; then
      s=$(status_of) || true
      [ "$s" = 401 ] || die "$v: request without a key answered $s, not 401"
      s=$(status_of "Authorization: Bearer $KEY") || true
      [ "$s" = 200 ] || die "$v: request with the consumer's key answered $s, not 200"
    else
      s=$(status_of "Authorization: Bearer $KEY") || true
      [ "$s" = 200 ] || die "$v: request answered $s, not 200"
    fi
    m0=$( [ "$v" = log ] && metrics_200 || echo 0)

    before=$(ticks "$mgpid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$tmp/post.lua" "http://$MG/v1/chat/completions")
    after=$(ticks "$mgpid")
    if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; die "$v: non-2xx answers under load"; fi
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    [ -n "$rps" ] && [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "$out" >&2; die "$v: no requests counted by wrk"; }
    cpu=$(echo "($after - $before) / $hz" | bc -l)
    per=$(echo "if ($cpu > 0) $reqs / $cpu else 0" | bc -l)
    note=
    if echo "$out" | grep -q "Socket errors"; then note=" [$(echo "$out" | grep 'Socket errors' | xargs)]"; fi

    # After load, before stopping: the variant did its work under load.
    case $v in
      log)
        want=$(echo "$reqs * $LOG_MIN_FRACTION / 1" | bc)
        lines=0
        for _ in $(seq 40); do
          lines=$(wc -l <"$d/access.log" 2>/dev/null || echo 0)
          [ "$lines" -ge "$reqs" ] && break
          sleep 0.05
        done
        [ "$lines" -ge "$want" ] || die "log: $lines access log lines for $reqs requests (want >= $want)"
        head -c 1 "$d/access.log" | grep -q '{' || die "log: access log is not JSON lines"
        m1=0
        for _ in $(seq 30); do
          m1=$(metrics_200)
          [ $((m1 - m0)) -ge "$reqs" ] && break
          sleep 0.1
        done
        [ $((m1 - m0)) -ge $((reqs * 99 / 100)) ] || die "log: modelgate_requests_total{status=\"200\"} moved by $((m1 - m0)) for $reqs requests"
        dropped=$(curl -s --max-time 5 "http://$ADMIN/metrics" | awk '/^modelgate_access_log_dropped_total/ {print $NF}')
        note+=" access log $lines lines ($(echo "100 * $lines / $reqs" | bc)% of wrk's requests), dropped_total ${dropped:-?}; requests_total{200} +$((m1 - m0))"
        last_metrics=$(curl -s --max-time 5 "http://$ADMIN/metrics" | grep -E '^modelgate_(requests_total|input_tokens_total|output_tokens_total|access_log_dropped_total|active_connections)' | head -8)
        last_log_line=$(tail -1 "$d/access.log")
        ;;
      cluster-limits)
        keys=$(redis-cli -p "$REDIS_PORT" --scan --pattern '*' | sort)
        [ -n "$keys" ] || die "cluster-limits: no keys in Redis"
        note+=" redis keys: $(echo "$keys" | tr '\n' ' ')"
        echo "$keys" | grep -q 'limit' || note+="(none for limits)"
        last_keys=$keys
        ;;
    esac
    stop_mg
    RPS[$v]+="$rps " PER[$v]+="$per " CPU[$v]+="$cpu "
    # Same-round ratio: the machine's drift between rounds cancels out.
    [ "$v" = base ] && round_base=$per
    [ -n "${round_base:-}" ] && PAIR[$v]+="$(echo "$per / $round_base" | bc -l) "
    printf 'round %d %-14s %9.0f req/s %6.2f CPU-s %9.0f req/CPU-s%s\n' "$r" "$v" "$rps" "$cpu" "$per" "$note" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?) binary: $bin"
echo "settings: rounds=$ROUNDS duration=$DURATION conns=$CONNS io=$IO modelgate_cpu=$PROXY_CPU load_cpu=$LOAD_CPU redis_cpu=$REDIS_CPU"
[ -n "$last_metrics" ] && { echo "last /metrics scrape (log variant):"; echo "$last_metrics" | sed 's/^/  /'; echo "  access log line: ${last_log_line:0:300}"; }
[ -n "$last_keys" ] && { echo "redis keys after the last cluster-limits round:"; echo "$last_keys" | sed 's/^/  /'; }
printf "%-14s %12s %8s %14s %8s %10s %12s\n" variant "req/s (med)" "vs base" "req/CPU-s (med)" "vs base" "CPU-s (med)" "paired (med)"
base_rps= base_per=
for v in $VARIANTS; do
  rps=$(echo "${RPS[$v]}" | median) per=$(echo "${PER[$v]}" | median) cpu=$(echo "${CPU[$v]}" | median)
  if [ "$v" = base ]; then base_rps=$rps base_per=$per; fi
  if [ -n "$base_rps" ]; then
    r1=$(printf '%.3f' "$(echo "$rps / $base_rps" | bc -l)") r2=$(printf '%.3f' "$(echo "$per / $base_per" | bc -l)")
  else r1=- r2=-; fi
  pair=$(echo "${PAIR[$v]:-}" | median)
  printf "%-14s %12.0f %8s %14.0f %8s %10.2f %12.3f\n" "$v" "$rps" "$r1" "$per" "$r2" "$cpu" "${pair:-0}"
done
