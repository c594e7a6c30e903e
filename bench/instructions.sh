#!/usr/bin/env bash
# Instructions per request, counted by callgrind in the serving process:
# native hyper, Locker with no guest in the path (the admin API's health
# check), Locker serving the hellos (WASI 0.2 with instance reuse and with
# a fresh instance, WASI 0.3), and `wasmtime serve` on the same 0.3
# component (when scripts/bench has installed it). Unlike req/s, which moves by tens of
# percent from day to day on this shared machine (and not by the same
# amount for every program), these counts repeat to within a percent: they
# say where a request's work is, and whether a change made it less.
#   bench/instructions.sh [DURATION] >> report.md     (default: 10s)
# Needs valgrind (Debian's; installed when missing) and the release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
LOCKER=${LOCKER:-target/release/locker}
NATIVE=${NATIVE:-target/release/native-hello}
WASMTIME=${WASMTIME:-.tools/wasmtime-48.0.8-fastest-runtime/bin/wasmtime}
PORT=8331
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
if ! command -v valgrind >/dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

ROOT="$WORK/root"
for guest in hello-rs hello-fixed; do
  cp -r "guests/out/$guest" "$WORK/$guest-reuse"
  sed -i "s/^name = \"$guest\"/name = \"$guest-reuse\"/" "$WORK/$guest-reuse/locker.toml"
  printf '\n[reuse]\nmax_requests = 1000000\n' >> "$WORK/$guest-reuse/locker.toml"
  "$LOCKER" install "$WORK/$guest-reuse" --root "$ROOT" >/dev/null
done
for guest in hello-rs hello-spin; do "$LOCKER" install "guests/out/$guest" --root "$ROOT" >/dev/null; done

# The largest inclusive count of a function in a callgrind profile (its
# calls from every place), or 0.
inclusive() { # <profile> <function>
  callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
    awk -v f=":$2 [" 'index($0, f) { n = $1; gsub(",", "", n); if (n + 0 > max) max = n + 0 } END { printf "%d", max }'
}

# Serves with PROGRAM under callgrind, warms the path up, then counts only
# while wrk sends requests (-c4: the count per request does not depend on
# the load). Prints "requests total in-guest-run in-host-calls".
count() { # <name> <wrk args...> -- <program...>
  local name=$1; shift
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" --instr-atstart=no \
    --dump-instr=no "$@" >/dev/null 2>"$WORK/$name.vg" &
  PID=$!
  for _ in $(seq 1 600); do curl -sf -o /dev/null "${args[@]}" && break; sleep 0.2; done
  for _ in $(seq 1 100); do curl -s -o /dev/null "${args[@]}"; done
  callgrind_control -i on "$PID" >/dev/null 2>&1
  wrk -t1 -c4 -d"$DURATION" "${args[@]}" > "$WORK/$name.wrk"
  callgrind_control -i off "$PID" >/dev/null 2>&1
  callgrind_control -d "$PID" >/dev/null 2>&1
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=""
  local profile requests total
  profile=$(ls -S "$WORK/$name.cg"* | head -1)
  requests=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
  total=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ { n = $1; gsub(",", "", n); print n }')
  echo "$requests $total $(inclusive "$profile" wasmtime_internal_fiber::unix::fiber_start) $(inclusive "$profile" wasmtime::runtime::component::func::host::HostFn::cabi_entrypoint)"
}

row() { # <label> <requests total guest hostcalls> <native total per request>
  local label=$1 requests=$2 total=$3 guest=$4 calls=$5 native=$6
  awk -v l="$label" -v r="$requests" -v t="$total" -v g="$guest" -v c="$calls" -v n="$native" 'BEGIN {
    per = t / r
    printf "| %s | %d | %.0f | %.1f× | %.0f | %.0f | %.0f |\n", l, r, per, per / n, g / r, c / r, per - g / r
  }'
}

read -r n_requests n_total _ _ <<< "$(count native http://127.0.0.1:$PORT/ -- "$NATIVE" 127.0.0.1:$PORT)"
NATIVE_PER=$(awk -v t="$n_total" -v r="$n_requests" 'BEGIN { printf "%.0f", t / r }')
echo
echo "## Instructions per request (callgrind, serving process only, wrk -t1 -c4 -d$DURATION)"
echo
echo "| path | requests counted | instructions per request | ÷ native hyper | in the guest's run | of which in host calls | outside the guest's run |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
echo "| native hyper | $n_requests | $NATIVE_PER | 1.0× | – | – | $NATIVE_PER |"
export LOCKER_LOG=warn
SERVE=("$LOCKER" serve --root "$ROOT" --listen 127.0.0.1:$PORT --cache-dir target/bench-cache)
# A first start without callgrind writes the token and compiles every
# service into the code cache (compiling under callgrind would take minutes).
"${SERVE[@]}" >/dev/null 2>&1 &
PID=$!
for _ in $(seq 1 600); do [ -f "$ROOT/cli.token" ] && break; sleep 0.1; done
AUTH="Authorization: Bearer $(cat "$ROOT/cli.token")"
for service in hello-rs-reuse hello-fixed-reuse hello-rs hello-spin; do
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null -H "Host: $service.locker.localhost:$PORT" -H "$AUTH" http://127.0.0.1:$PORT/ && break
    sleep 0.1
  done
done
kill "$PID"; wait "$PID" 2>/dev/null || true
PID=""
row "Locker, no guest (health check)" \
  $(count health -H "$AUTH" http://127.0.0.1:$PORT/_locker/api/health -- "${SERVE[@]}") "$NATIVE_PER"
for service in hello-rs-reuse hello-fixed-reuse hello-rs hello-spin; do
  case $service in
    hello-spin) label="hello-spin, WASI 0.3" ;;
    *-reuse) label="${service%-reuse}, WASI 0.2, reused" ;;
    *) label="$service, WASI 0.2, fresh instance" ;;
  esac
  row "$label" \
    $(count "$service" -H "Host: $service.locker.localhost:$PORT" -H "$AUTH" http://127.0.0.1:$PORT/x -- "${SERVE[@]}") \
    "$NATIVE_PER"
done
if [ -x "$WASMTIME" ]; then
  row "hello-spin in wasmtime serve -Sp3" \
    $(count wasmtime-p3 http://127.0.0.1:$PORT/ -- "$WASMTIME" serve -Scli -Sp3 -Wcomponent-model-async \
      --addr 127.0.0.1:$PORT guests/out/hello-spin/hello_spin.wasm) "$NATIVE_PER"
fi
echo
echo "(\"In the guest's run\": inclusive count of wasmtime's fiber, on which a guest runs; \"host calls\": of the canonical ABI's entry for every call from the guest into the host. For WASI 0.3 the instance's event loop runs on that fiber too, and in wasmtime serve the whole request does, so the split says little for those rows: compare their totals.)"
