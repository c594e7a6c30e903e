#!/usr/bin/env bash
# Backup and restore of a big root, and what the host keeps serving meanwhile
# (issue 19). Run by scripts/bench (which builds the release host); alone:
#   bench/backup.sh [SERVICES] [MiB] [ROUNDS] >> report.md
# A root with SERVICES services (copies of `notes`, plus the reused
# `hello-fixed` that takes the load) and MiB of JSON in their folders. Each
# round: a 10 s wrk run on hello-fixed alone, then a backup with wrk running
# beside it for as long as the backup takes; the ratio of the two rates, the
# backup's time idle and under load, how long the services were held still,
# the archive's size, and a restore's time.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${1:-100} MIB=${2:-1024} ROUNDS=${3:-3}
LOCKER=target/release/locker
PORT=8311
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

ROOT="$WORK/root"
cp -r guests/out/hello-fixed "$WORK/hello-fixed-reuse"
sed -i 's/^name = "hello-fixed"/name = "hello-fixed-reuse"/' "$WORK/hello-fixed-reuse/locker.toml"
printf '\n[reuse]\nmax_requests = 10000\n' >> "$WORK/hello-fixed-reuse/locker.toml"
"$LOCKER" install "$WORK/hello-fixed-reuse" --root "$ROOT" >/dev/null
for i in $(seq -w 1 $((SERVICES - 1))); do
  cp -r guests/out/notes "$WORK/notes-$i"
  sed -i "s/^name = \"notes\"/name = \"notes-$i\"/" "$WORK/notes-$i/locker.toml"
  "$LOCKER" install "$WORK/notes-$i" --root "$ROOT" >/dev/null
  rm -rf "$WORK/notes-$i"
done
# Plain JSON, as connectors keep it: records with ids, names, times and
# text, different in every file (so zstd finds what real data has, no more).
python3 - "$ROOT/services" "$MIB" <<'EOF'
import os, random, sys, json
services = sorted(d for d in os.listdir(sys.argv[1]) if d.startswith("notes-"))
per_service = int(sys.argv[2]) * 1024 * 1024 // len(services)
words = "alpha beta gamma delta note contact photo meeting lunch call email phone address city street".split()
random.seed(19)
for service in services:
    folder = os.path.join(sys.argv[1], service, "items")
    os.makedirs(folder, exist_ok=True)
    written, n = 0, 0
    while written < per_service:
        records = [{"id": "%016x" % random.getrandbits(64), "n": n + i,
                    "name": " ".join(random.choices(words, k=3)),
                    "updated": "2026-%02d-%02dT%02d:%02d:00Z" % (random.randint(1, 12), random.randint(1, 28), random.randint(0, 23), random.randint(0, 59)),
                    "text": " ".join(random.choices(words, k=random.randint(5, 40)))} for i in range(2000)]
        data = json.dumps(records, indent=1).encode()
        with open(os.path.join(folder, "%05d.json" % n), "wb") as f:
            f.write(data)
        written += len(data)
        n += 2000
EOF
DATA=$(du -sm "$ROOT/services" | cut -f1)
echo "pass" > "$WORK/passphrase"

LOCKER_LOG=warn "$LOCKER" serve --root "$ROOT" --listen 127.0.0.1:$PORT --cache-dir target/bench-cache >/dev/null 2>&1 &
PID=$!
for _ in $(seq 1 600); do [ -f "$ROOT/cli.token" ] && break; sleep 0.1; done
HEADERS=(-H "Host: hello-fixed-reuse.locker.localhost:$PORT" -H "Authorization: Bearer $(cat "$ROOT/cli.token")")
for _ in $(seq 1 100); do curl -sf -o /dev/null "${HEADERS[@]}" "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
rate() { # <seconds>: req/s of hello-fixed over that long
  wrk -t2 -c32 -d"$1"s "${HEADERS[@]}" "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/ {print $2}'
}
backup() { # <file>: seconds; the CLI's summary in $WORK/said
  local start end
  start=$(date +%s.%N)
  "$LOCKER" backup --to "$1" --passphrase-file "$WORK/passphrase" --root "$ROOT" > "$WORK/said" 2>/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

IDLE=$(backup "$WORK/idle.tar.zst")
ARCHIVE=$(du -m "$WORK/idle.tar.zst" | cut -f1)
ROWS=""
for round in $(seq 1 "$ROUNDS"); do
  alone=$(rate 10)
  rm -f "$WORK/b.tar.zst"
  # wrk runs as long as an idle backup took, the backup beside it.
  seconds=$(awk -v t="$IDLE" 'BEGIN { printf "%d", (t < 3 ? 3 : t + 0.999) }')
  backup "$WORK/b.tar.zst" > "$WORK/t" &
  beside=$(rate "$seconds")
  wait $!
  loaded=$(cat "$WORK/t")
  paused=$(sed -n 's/.*held still for \([0-9]*\) ms.*/\1/p' "$WORK/said")
  ROWS+="| $round | $alone | $beside | $(awk -v a="$beside" -v b="$alone" 'BEGIN { printf "%.2f", a / b }') | $loaded s | $paused ms |"$'\n'
done
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
START=$(date +%s.%N)
"$LOCKER" restore "$WORK/idle.tar.zst" --root "$WORK/restored" --passphrase-file "$WORK/passphrase" >/dev/null 2>&1
RESTORE=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

echo
echo "## Backups (issue 19)"
echo
echo "A root with $SERVICES services and $DATA MiB of JSON in their folders (copies of \`notes\`, each with its own files; the reused \`hello-fixed\` takes the load). Backup idle: $IDLE s into a $ARCHIVE MiB archive; restore: $RESTORE s. Each round: hello-fixed alone for 10 s, then beside a backup for as long as an idle backup takes (wrk -t2 -c32):"
echo
echo "| round | req/s alone | req/s beside a backup | ratio | backup took | services held still |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s' "$ROWS"
