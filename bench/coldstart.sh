#!/usr/bin/env bash
# Benchmark: audited lookups right after a server start with an empty page cache (a restart, or
# other work evicted the store's pages), with and without `serve --warm-cache`.
#
#   sudo bench/coldstart.sh                     # 1,000,000 people, modes "off auto", 2 rounds
#   IDLE=10 ROUNDS=1 sudo bench/coldstart.sh    # the load arrives 10 s after the server is ready
#   READAHEAD_KB=128 sudo bench/coldstart.sh    # the store's disk at the kernel's default readahead
#
# Each round of each mode: the kernel's page cache is emptied (`/proc/sys/vm/drop_caches`: needs
# root), `dancu serve --warm-cache MODE` starts on the SQLite store of bench/lookup.sh (seeded
# here when missing), the script waits for `/readyz` (as a load balancer would), IDLE more
# seconds pass, then one `wrk -t1 -c64` run of DURATION with no warm-up. Prints the time to
# ready, requests/s, p50, p99, the slowest request and what the disk read before and during the
# run. READAHEAD_KB sets the readahead of
# the store's disk for the run (restored at the end): how much the kernel reads around each
# random read decides how fast a cold store warms by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE="${PEOPLE:-1000000}"
SEED="${SEED:-2021}"
DURATION="${DURATION:-10s}"
IDLE="${IDLE:-0}"
ROUNDS="${ROUNDS:-2}"
MODES="${MODES:-off auto}"
PORT="${PORT:-18081}"
OUT=bench/out
mkdir -p "$OUT"

[ -w /proc/sys/vm/drop_caches ] || { echo "coldstart.sh empties the page cache: run it as root" >&2; exit 1; }
command -v wrk >/dev/null && [ -x /usr/bin/time ] && command -v curl >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq wrk time curl >/dev/null; }
[ -n "${DANCU_BIN:-}" ] || cargo build --release -p dancu --quiet
BIN="${DANCU_BIN:-target/release/dancu}"
[ -f "$OUT/bench-password" ] || echo "bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$OUT/bench-password"
BENCH_PASSWORD="$(cat "$OUT/bench-password")"

dir="$OUT/sqlite-$PEOPLE-$SEED"
url="sqlite://$dir/dancu.sqlite"
if [ ! -f "$dir/seeded" ]; then
  rm -rf "$dir"
  "$BIN" seed --data "$dir" --people "$PEOPLE" --seed "$SEED"
  touch "$dir/seeded"
fi
DANCU_LOG=warn "$BIN" sample-ids --db "$url" --count 100000 >"$OUT/ids-coldstart.txt"
echo "$BENCH_PASSWORD" | DANCU_LOG=error "$BIN" officer add --db "$url" --data "$OUT/keys-sqlite" --username bench \
  --name "Benchmark" --unit ministry --roles card_operator --password-stdin >/dev/null 2>&1 || true

# The block device holding the store, and its readahead.
dev=$(basename "$(df --output=source "$dir" | tail -1)")
[ -e "/sys/block/$dev" ] || dev=$(lsblk -no pkname "/dev/$dev" 2>/dev/null | head -1)
ra_file="/sys/block/$dev/queue/read_ahead_kb"
ra_before=$(cat "$ra_file" 2>/dev/null || echo "")
if [ -n "${READAHEAD_KB:-}" ]; then
  echo "$READAHEAD_KB" >"$ra_file"
  trap 'echo "$ra_before" >"$ra_file"' EXIT
fi
readahead=$(cat "$ra_file" 2>/dev/null || echo "?")

pages_in() { awk '$1 == "pgpgin" {print $2}' /proc/vmstat; } # KiB read from disk since boot

results=()
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    sync
    echo 3 >/proc/sys/vm/drop_caches
    dropped=$(pages_in)
    log="$OUT/coldstart-$mode-$round.log"
    DANCU_LOG=info "$BIN" serve --db "$url" --data "$OUT/keys-sqlite" --listen "127.0.0.1:$PORT" \
      --warm-cache "$mode" >/dev/null 2>"$log" &
    pid=$!
    t0=$(date +%s.%N)
    # ready: listening, the database answering and, with a warm-up, the store's files read
    for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
    ready=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f s", b - a}')
    sleep "$IDLE"
    TOKEN=$(curl -sf "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'Content-Type: application/json' \
      -d "{\"username\":\"bench\",\"password\":\"$BENCH_PASSWORD\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
    [ ${#TOKEN} -eq 64 ] || { echo "login of the benchmark officer failed" >&2; kill "$pid"; exit 1; }
    before=$(pages_in)
    TOKEN="$TOKEN" IDS_FILE="$OUT/ids-coldstart.txt" wrk -t1 -c64 -d"$DURATION" --latency -s bench/lookup.lua \
      "http://127.0.0.1:$PORT" >"$OUT/wrk-coldstart-$mode-$round.txt"
    read_mib=$((($(pages_in) - before) / 1024))
    idle_mib=$(((before - dropped) / 1024))
    kill "$pid"; wait "$pid" 2>/dev/null || true
    w="$OUT/wrk-coldstart-$mode-$round.txt"
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$w")
    p50=$(awk '$1 == "50%" {print $2}' "$w")
    p99=$(awk '$1 == "99%" {print $2}' "$w")
    max=$(awk '$1 == "Latency" {print $4}' "$w")
    errors=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket"}' "$w")
    warmed=$(sed -n 's/.*store files read into the page cache.*seconds=\([0-9.]*\).*/\1 s/p' "$log" | head -1)
    echo "round $round, $mode: ready in $ready, $rps req/s, p99 $p99, max $max; read $idle_mib MiB before the load, $read_mib MiB during it${warmed:+; files read ahead in $warmed}" >&2
    results+=("| $round | $mode | $ready | $rps | $p50 | $p99 | $max | $idle_mib MiB | $read_mib MiB | ${warmed:-—} | ${errors:-0} |")
  done
done

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); $PEOPLE people; store files $(du -cm "$dir"/dancu*.sqlite* | awk 'END {print $1}') MiB; readahead $readahead KiB"
echo "IDLE=$IDLE s between /readyz and the load; wrk -t1 -c64 -d$DURATION, no warm-up; audit trail on"
echo "| round | --warm-cache | ready after | requests/s | p50 | p99 | slowest | read from disk before the load | during it | files read ahead in | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
