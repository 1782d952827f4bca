#!/usr/bin/env bash
# Benchmark: lookups of people by personal ID over HTTP (loopback), with wrk, against a
# registry of PEOPLE synthetic people — the SQLite adapter and the PostgreSQL adapter in the
# same run, same binary, same data generator (seed), same load.
#
#   bench/lookup.sh                 # 1,000,000 people, 30 s per backend
#   PEOPLE=100000 DURATION=10s RUNS=1 BACKENDS=sqlite bench/lookup.sh
#
# Prints one table row per backend (requests/s, p50, p99, errors). The SQLite store is kept in
# bench/out/ between runs (re-seeded when PEOPLE changes); PostgreSQL is a throwaway server.
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE="${PEOPLE:-1000000}"
DURATION="${DURATION:-30s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-1}"
SEED="${SEED:-2021}"
RUNS="${RUNS:-3}"
BACKENDS="${BACKENDS:-sqlite postgres}"
# Audit trail on, off, or both ("off on": the cost of auditing, same data, same run)
AUDIT_MODES="${AUDIT_MODES:-on}"
PORT="${PORT:-18080}"
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null && [ -x /usr/bin/time ] && command -v openssl >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq wrk time curl openssl >/dev/null; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
# DANCU_BIN: measure a binary built earlier (e.g. to compare two builds) instead of building one.
[ -n "${DANCU_BIN:-}" ] || cargo build --release -p dancu --quiet
BIN="${DANCU_BIN:-target/release/dancu}"
# The benchmark officer's password: fixed per output folder (the account persists with the data).
[ -f "$OUT/bench-password" ] || echo "bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$OUT/bench-password"
BENCH_PASSWORD="$(cat "$OUT/bench-password")"

results=()

bench_backend() {
  local backend="$1" url="$2"
  for mode in $AUDIT_MODES; do
    bench_one "$backend" "$url" "$mode"
  done
}

bench_one() {
  local name="$1-audit-$3" url="$2" flags=()
  [ "$3" = off ] && flags=(--no-audit)
  echo "== $name: $url" >&2
  DANCU_LOG=warn "$BIN" sample-ids --db "$url" --count 100000 >"$OUT/ids-$name.txt"
  # Lookups are made by a logged-in ministry officer (card operator: no second factor), as in use.
  echo "$BENCH_PASSWORD" | DANCU_LOG=error "$BIN" officer add --db "$url" --data "$OUT/keys-$1" --username bench \
    --name "Benchmark" --unit ministry --roles card_operator --password-stdin >/dev/null 2>&1 || true
  DANCU_LOG=warn "$BIN" serve --db "$url" --data "$OUT/keys-$1" --listen "127.0.0.1:$PORT" "${flags[@]}" >/dev/null &
  local pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  export TOKEN
  TOKEN=$(curl -sf "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"bench\",\"password\":\"$BENCH_PASSWORD\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
  [ ${#TOKEN} -eq 64 ] || { echo "login of the benchmark officer failed" >&2; exit 1; }
  # warm-up, then RUNS measured runs; the table reports the run with the median requests/s
  IDS_FILE="$OUT/ids-$name.txt" wrk -t"$THREADS" -c"$CONNS" -d5s -s bench/lookup.lua "http://127.0.0.1:$PORT" >/dev/null
  local runs=()
  for r in $(seq 1 "$RUNS"); do
    IDS_FILE="$OUT/ids-$name.txt" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/lookup.lua \
      "http://127.0.0.1:$PORT" >"$OUT/wrk-$name-$r.txt"
    runs+=("$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk-$name-$r.txt") $r")
    echo "   run $r: $(grep -E 'Requests/sec' "$OUT/wrk-$name-$r.txt" | tr -s ' ') p99 $(awk '$1 == "99%" {print $2}' "$OUT/wrk-$name-$r.txt")" >&2
  done
  local median
  median=$(printf '%s\n' "${runs[@]}" | sort -n | awk -v n="$RUNS" 'NR == int((n + 1) / 2) {print $2}')
  cp "$OUT/wrk-$name-$median.txt" "$OUT/wrk-$name.txt"
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps p50 p99 errors all
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk-$name.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$OUT/wrk-$name.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$OUT/wrk-$name.txt")
  errors=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket:" $0}' "$OUT/wrk-$name.txt")
  all=$(printf '%s\n' "${runs[@]}" | sort -n | awk '{printf "%s%.0f", (NR > 1 ? " / " : ""), $1}')
  results+=("| $name | $PEOPLE | $rps | $all | $p50 | $p99 | ${errors:-0} | $((rss / 1024)) MiB |")
}

# SQLite: one file, seeded once per PEOPLE/SEED.
if [[ " $BACKENDS " == *" sqlite "* ]]; then
  sqlite_dir="$OUT/sqlite-$PEOPLE-$SEED"
  if [ ! -f "$sqlite_dir/seeded" ]; then
    rm -rf "$sqlite_dir"
    /usr/bin/time -f "seeded SQLite in %e s, max RSS %M KiB" "$BIN" seed --data "$sqlite_dir" --people "$PEOPLE" --seed "$SEED"
    touch "$sqlite_dir/seeded"
  fi
  bench_backend sqlite "sqlite://$sqlite_dir/dancu.sqlite"
fi

# PostgreSQL: a throwaway server on a private port.
if [[ " $BACKENDS " == *" postgres "* ]]; then
  eval "$(.ci/pg-start 55441)"
  trap '.ci/pg-stop "$DANCU_PG_DIR"' EXIT
  /usr/bin/time -f "seeded PostgreSQL in %e s, max RSS %M KiB" "$BIN" seed --db "$DANCU_TEST_POSTGRES_URL" --people "$PEOPLE" --seed "$SEED"
  bench_backend postgres "$DANCU_TEST_POSTGRES_URL"
fi

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); wrk -t$THREADS -c$CONNS -d$DURATION"
# The machine's speed at the time, to compare runs of different hours: ECDSA P-256 signatures per
# second of one core (OpenSSL). Shared virtual machines drift by tens of percent.
echo "reference: $(openssl speed -seconds 1 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/ {printf "%.0f", $(NF-1)}') P-256 signatures/s on one core (openssl speed ecdsap256)"
echo "| backend | people | requests/s (median run) | all runs | p50 | p99 | non-2xx | server max RSS |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
