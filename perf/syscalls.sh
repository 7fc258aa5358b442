#!/usr/bin/env bash
# Syscalls per proxied request (strace -c -f over a wrk run), modelgate vs
# nginx, same upstream, same 250-byte chat request, 64 connections.
#   perf/syscalls.sh
set -euo pipefail
DURATION=${DURATION:-5s}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source perf/lib.sh
cargo build --release -q --bin modelgate
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
UP=127.0.0.1:18281 NGX=127.0.0.1:18282 MG=127.0.0.1:18283
upstream_conf "$tmp" $UP
# One process, so strace -f sees all of nginx's work.
proxy_conf "$tmp" $NGX $UP "master_process off;"
modelgate_conf "$tmp" $MG $UP
post_lua "$tmp"
nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
for name in nginx modelgate; do
  if [ $name = nginx ]; then
    strace -c -U calls,name -f -o "$tmp/$name.strace" nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!); addr=$NGX
  else
    strace -c -U calls,name -f -o "$tmp/$name.strace" target/release/modelgate serve --config "$tmp/modelgate.toml" >/dev/null 2>&1 & pids+=($!); addr=$MG
  fi
  spid=$!
  wait_http "$addr"
  reqs=$(wrk -t1 -c64 -d"$DURATION" -s "$tmp/post.lua" "http://$addr/v1/chat/completions" | awk '/requests in/ {print $1}')
  kill -INT "$(pgrep -P $spid | head -1)"; wait $spid 2>/dev/null || true
  sleep 0.5
  total=$(awk '$2 == "total" {print $1}' "$tmp/$name.strace")
  echo "$name: $reqs requests, $total syscalls, $(echo "scale=2; $total / $reqs" | bc) per request"
  awk '$1 ~ /^[0-9]+$/ && $2 != "total" {printf "    %-16s %s\n", $2, $1}' "$tmp/$name.strace" | sort -k2 -n -r | head -6
done
