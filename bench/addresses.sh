#!/usr/bin/env bash
# Benchmark: the 2025 address migration (`dancu addresses migrate`) on PostgreSQL, over a
# synthetic population of PEOPLE people with LEGACY_SHARE of the households still on legacy
# commune codes. PostgreSQL is a throwaway server started here with its durability settings
# left on (fsync, synchronous_commit, full_page_writes: as SQLite's synchronous=FULL in the
# SQLite measurement), listening on a Unix socket in a private folder only (no TCP port).
#
#   bench/addresses.sh                       # 1,000,000 people, 30% legacy, port 55442
#   PEOPLE=100000 PORT=55450 bench/addresses.sh
#
# Prints the seeding time, then two migration runs (the second finds only the queued reviews).
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE="${PEOPLE:-1000000}"
SEED="${SEED:-2021}"
LEGACY_SHARE="${LEGACY_SHARE:-0.3}"
PORT="${PORT:-55442}"
BATCH="${BATCH:-5000}"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
BIN="${BIN:-target/release/dancu}"
[ -x "$BIN" ] || cargo build --release -p dancu --quiet

bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
dir="$(mktemp -d /tmp/dancu-pgbench.XXXXXX)"
run=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  run=(runuser -u postgres --)
fi
"${run[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U dancu -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
"${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $PORT -k $dir -c listen_addresses= -c shared_buffers=1GB -c max_wal_size=8GB" start >/dev/null
trap '"${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
"$bindir/createdb" -h "$dir" -p "$PORT" -U dancu dancu
export DANCU_DB="postgres://dancu@${dir//\//%2F}:$PORT/dancu"
"$bindir/psql" -h "$dir" -p "$PORT" -U dancu -At -c "SHOW fsync" -c "SHOW synchronous_commit" | paste -sd' ' \
  | sed 's/^/PostgreSQL fsync, synchronous_commit: /'

echo "== seed $PEOPLE people (legacy share $LEGACY_SHARE)"
/usr/bin/time -f "seed: %e s, max RSS %M KiB" "$BIN" seed --data "$dir/dancu" --people "$PEOPLE" --seed "$SEED" \
  --legacy-share "$LEGACY_SHARE"
for run_name in first second; do
  echo "== addresses migrate ($run_name run)"
  /usr/bin/time -f "migrate: %e s, max RSS %M KiB" "$BIN" addresses migrate --data "$dir/dancu" --batch "$BATCH"
done
"$bindir/psql" -h "$dir" -p "$PORT" -U dancu -At \
  -c "SELECT 'reviews pending: ' || count(*) FROM address_reviews WHERE resolved_at IS NULL" \
  -c "SELECT 'database size: ' || pg_size_pretty(pg_database_size('dancu'))"
