#!/usr/bin/env bash
# Browser tests of the officers' web application: starts a real `dancu demo` server with synthetic
# data (and an imported file with duplicates, for the review queue), then runs the Playwright tests
# (playwright-core driving Debian's Chromium headless). Usage: e2e/run.sh [path/to/dancu]
set -euo pipefail
bin="$(realpath "${1:-$(dirname "$0")/../target/debug/dancu}")"
cd "$(dirname "$0")"
command -v curl >/dev/null || { echo "e2e: curl is missing" >&2; exit 1; }
chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$chromium" ]; then echo "e2e: chromium is missing (apt-get install chromium)" >&2; exit 1; fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent
data="$(mktemp -d)"
port="${DANCU_E2E_PORT:-18437}"
log="$data/server.log"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait "${pid:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
"$bin" demo --data "$data" --people "${DANCU_E2E_PEOPLE:-5000}" --listen "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null
# possible duplicates for the review queue: a file of people of Hà Nội with duplicates, imported
# (large enough that some pairs are uncertain: the review band holds only those)
"$bin" generate --people 1000 --seed 7 --provinces 01 --duplicates 0.3 --out "$data/dup.csv" 2>/dev/null
"$bin" import --data "$data" "$data/dup.csv" --unit province:01 --officer demo >/dev/null
# addresses still on the legacy commune list, for the 2025 address review queue
"$bin" generate --people 100 --seed 11 --provinces 01 --legacy-share 1 --out "$data/legacy.csv" 2>/dev/null
"$bin" import --data "$data" "$data/legacy.csv" --unit province:01 --officer demo >/dev/null
"$bin" addresses migrate --data "$data" >/dev/null
export DANCU_E2E_URL="http://127.0.0.1:$port" DANCU_E2E_LOGINS="$data/demo-logins.txt" CHROMIUM="$chromium" DANCU_E2E_BIN="$bin"
mkdir -p screenshots
node --test --test-concurrency=1 tests/
