#!/usr/bin/env bash
# Throughput spread over many active services (issue 20): the Rust hello
# installed MAX times, requests round-robin over the first N of them
# (bench/wrk/spread.lua), fresh instance per request, wrk -t2 -c32.
#   bench/many.sh [DURATION] [N...] >> report.md     (default: 10s 1 50 500)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}; shift || true
COUNTS=("$@"); [ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1 50 500)
MAX=${COUNTS[-1]}
LOCKER=${LOCKER:-target/release/locker}
PORT=8321
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

ROOT="$WORK/root"
for i in $(seq -f "%04g" 1 "$MAX"); do
  cp -r guests/out/hello-rs "$WORK/p"
  sed -i "s/^name = \"hello-rs\"/name = \"hello-$i\"/" "$WORK/p/locker.toml"
  "$LOCKER" install "$WORK/p" --root "$ROOT" >/dev/null
  rm -rf "$WORK/p"
done
LOCKER_LOG=warn "$LOCKER" serve --root "$ROOT" --listen 127.0.0.1:$PORT --cache-dir target/bench-cache >/dev/null 2>&1 &
PID=$!
for _ in $(seq 1 600); do [ -f "$ROOT/cli.token" ] && break; sleep 0.1; done
TOKEN=$(cat "$ROOT/cli.token")
# Every service loaded (and compiled into the cache) before the clock starts.
for i in $(seq -f "%04g" 1 "$MAX"); do
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null -H "Host: hello-$i.locker.localhost:$PORT" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/" && break
    sleep 0.1
  done
done
RSS_BEFORE=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
echo
echo "## Many active services (fresh instance per request, wrk -t2 -c32 -d$DURATION, requests round-robin over N services)"
echo
echo "| N | req/s | p50 | p99 | ÷ N = 1 | host RSS after |"
echo "| --- | --- | --- | --- | --- | --- |"
ONE=""
for n in "${COUNTS[@]}"; do
  LOCKER_PORT=$PORT LOCKER_TOKEN=$TOKEN SPREAD_N=$n SPREAD_PREFIX=hello- \
    wrk -t2 -c32 -d"$DURATION" --latency -s bench/wrk/spread.lua "http://127.0.0.1:$PORT/" > "$WORK/wrk.txt"
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
  if grep -q "Non-2xx" "$WORK/wrk.txt"; then rps="$rps (errors: $(awk '/Non-2xx/ {print $5}' "$WORK/wrk.txt"))"; fi
  [ -n "$ONE" ] || ONE=${rps%% *}
  rss=$(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' /proc/$PID/status)
  echo "| $n | $rps | $p50 | $p99 | $(awk -v a="${rps%% *}" -v b="$ONE" 'BEGIN { printf "%.2f", a / b }') | $rss |"
done
echo
echo "($MAX services loaded; host RSS with all loaded, before the runs: $((RSS_BEFORE / 1024)) MiB.)"
