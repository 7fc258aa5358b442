#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: the
# one per-request cost figure that does not move with a noisy machine.
# modelgate (epoll driver: valgrind does not follow io_uring) serves a
# closed-loop load (8 in flight) twice, for SHORT and LONG; the difference
# in instructions over the difference in requests leaves start-up out.
#   perf/instructions.sh                         # this tree's release build
#   BASELINE_BIN=/path/to/older/modelgate perf/instructions.sh
set -euo pipefail
SHORT=${SHORT:-2s}
LONG=${LONG:-8s}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source perf/lib.sh
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
cargo build --release -q --workspace --bins

# $1 binary, $2 duration → "instructions requests"
count() {
  local tmp up vg ir n
  tmp=$(mktemp -d)
  UP=127.0.0.1:18481 MG=127.0.0.1:18483
  upstream_conf "$tmp" $UP
  modelgate_conf "$tmp" $MG $UP epoll
  nginx -c "$tmp/upstream.conf" -p "$tmp" 2>/dev/null & up=$!
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" "$1" serve --config "$tmp/modelgate.toml" >/dev/null 2>"$tmp/vg.err" & vg=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://$MG/" && break; sleep 0.1; done
  timeout 60 target/release/modelgate-load "http://$MG/v1/chat/completions" --threads 1 -q \
    --concurrency 8 --duration "$2" --json "$tmp/l.json" >/dev/null 2>&1 || true
  kill -TERM $vg; wait $vg 2>/dev/null || true; kill $up; wait $up 2>/dev/null || true
  ir=$(cat "$tmp"/cg.* | awk '/^summary:/ {s += $2} END {print s}')
  n=$(python3 -c "import json; print(json.load(open('$tmp/l.json'))['latency_ms']['count'])")
  rm -rf "$tmp"
  echo "$ir $n"
}

per_request() {
  local a c
  a=$(count "$1" "$SHORT"); c=$(count "$1" "$LONG")
  python3 -c "a='$a'.split(); c='$c'.split(); print(round((int(c[0]) - int(a[0])) / (int(c[1]) - int(a[1]))))"
}

echo "commit: $(git rev-parse --short HEAD)"
mg=$(per_request target/release/modelgate)
echo "modelgate: $mg instructions per request"
if [ -n "${BASELINE_BIN:-}" ]; then
  base=$(per_request "$BASELINE_BIN")
  echo "baseline ($BASELINE_BIN): $base instructions per request; modelgate/baseline $(echo "$mg / $base" | bc -l | cut -c1-5)"
fi
