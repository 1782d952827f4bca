#!/usr/bin/env bash
# Benchmark: two builds of dancu side by side, *at the same time*, to tell whether a change made
# requests cheaper on a machine whose speed drifts (shared virtual machines: the same binary's
# throughput moves by ±15% within minutes, more than most changes). Each build serves its own
# copy of the same 1,000,000-person SQLite store and gets its own wrk with the same load; both
# run together, so both see the same machine. The two copies are then swapped and the pair run
# again (a difference of files, e.g. of their page cache, shows up as a swap that disagrees).
#
#   bench/ab.sh OLD_BINARY NEW_BINARY                 # lookups, audit trail on
#   WORK=verify MODE=on bench/ab.sh OLD NEW           # e-KYC verifications (needs bench/verify.sh run once)
#   MODE=off bench/ab.sh OLD NEW                      # lookups without the audit trail
#
# Prints, per swap, requests/s and the server's CPU time per request of each build and the
# ratio NEW/OLD. Both servers share the 2 cores, so the absolute numbers are about half of a
# run alone; the ratios are what this measures. Uses the data of bench/lookup.sh (and, for
# WORK=verify, the partner and bodies of bench/verify.sh) and copies that store once.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD="$1" NEW="$2"
WORK="${WORK:-lookup}"
MODE="${MODE:-on}"
DURATION="${DURATION:-15s}"
CONNS="${CONNS:-64}"
PEOPLE="${PEOPLE:-1000000}"
SEED="${SEED:-2021}"
OUT=bench/out
src="$OUT/sqlite-$PEOPLE-$SEED"
copy="$OUT/sqlite-$PEOPLE-$SEED-ab"
[ -f "$src/seeded" ] || { echo "$src is missing: run bench/lookup.sh once (it seeds the store)" >&2; exit 1; }
[ -f "$OUT/bench-password" ] || { echo "$OUT/bench-password is missing: run bench/lookup.sh once" >&2; exit 1; }
if [ "$WORK" = verify ] && [ ! -f "$OUT/partner.json" ]; then
  echo "no benchmark partner: run bench/verify.sh once" >&2
  exit 1
fi
PASSWORD="$(cat "$OUT/bench-password")"
command -v wrk >/dev/null && command -v openssl >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq wrk curl openssl >/dev/null; }
if [ ! -f "$copy/seeded" ]; then
  echo "copying $src to $copy (once)" >&2
  rm -rf "$copy" "$copy-keys"
  cp -r "$src" "$copy"
  cp -r "$OUT/keys-sqlite" "$copy-keys"
fi
flags=()
[ "$MODE" = off ] && flags=(--no-audit)
lua=bench/lookup.lua
[ "$WORK" = verify ] && lua=bench/verify.lua
export IDS_FILE="$OUT/ids-sqlite-audit-on.txt" BODIES_FILE="$OUT/verify-bodies.txt"
[ -f "$IDS_FILE" ] || DANCU_LOG=warn "$OLD" sample-ids --db "sqlite://$src/dancu.sqlite" --count 100000 >"$IDS_FILE"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

serve() { # binary dir keys port → pid
  DANCU_LOG=warn "$1" serve --db "sqlite://$2/dancu.sqlite" --data "$3" --listen "127.0.0.1:$4" \
    --public-url "http://127.0.0.1:$4" "${flags[@]}" >/dev/null 2>&1 &
  echo $!
}

token() { # port → bearer token of the officer (lookups) or of the partner (verifications)
  local base="http://127.0.0.1:$1"
  if [ "$WORK" = lookup ]; then
    curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
      -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/'
    return
  fi
  # The partner of bench/verify.sh, registered in this store if it is not yet (a copy made
  # before verify.sh last registered one): by the partner administrator verify.sh created.
  local admin assertion
  admin=$(curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"partners\",\"password\":\"$PASSWORD\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/') || true
  curl -s -o /dev/null "$base/api/v1/partners" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d @"$OUT/partner.json" || true
  assertion=$(python3 bench/partner_assertion.py "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT/partner.json")" \
    "$base" "$OUT/partner.pem")
  curl -sf "$base/api/v1/oauth/token" -d grant_type=client_credentials \
    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    -d "client_assertion=$assertion" | sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $WORK, audit $MODE, wrk -t1 -c$CONNS -d$DURATION each, both at once"
echo "| swap | old req/s | old CPU µs/req | new req/s | new CPU µs/req | new/old req/s | new/old CPU |"
echo "|---|---|---|---|---|---|---|"
for swap in 0 1; do
  if [ $swap = 0 ]; then dirs=("$src" "$copy") keys=("$OUT/keys-sqlite" "$copy-keys")
  else dirs=("$copy" "$src") keys=("$copy-keys" "$OUT/keys-sqlite"); fi
  po=$(serve "$OLD" "${dirs[0]}" "${keys[0]}" 18201)
  pn=$(serve "$NEW" "${dirs[1]}" "${keys[1]}" 18202)
  pids=("$po" "$pn")
  for port in 18201 18202; do
    for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  done
  to=$(token 18201 || true) tn=$(token 18202 || true)
  [ ${#to} -ge 64 ] && [ ${#tn} -ge 64 ] || { echo "no token from one of the servers" >&2; exit 1; }
  # warm-up together, then the measured run together
  TOKEN=$to wrk -t1 -c"$CONNS" -d3s -s $lua http://127.0.0.1:18201 >/dev/null &
  w=$!
  TOKEN=$tn wrk -t1 -c"$CONNS" -d3s -s $lua http://127.0.0.1:18202 >/dev/null
  wait $w
  co=$(cpu_ticks "$po") cn=$(cpu_ticks "$pn")
  TOKEN=$to wrk -t1 -c"$CONNS" -d"$DURATION" -s $lua http://127.0.0.1:18201 >"$OUT/ab-old.txt" &
  w=$!
  TOKEN=$tn wrk -t1 -c"$CONNS" -d"$DURATION" -s $lua http://127.0.0.1:18202 >"$OUT/ab-new.txt"
  wait $w
  co=$(( $(cpu_ticks "$po") - co )) cn=$(( $(cpu_ticks "$pn") - cn ))
  kill "$po" "$pn"
  wait "$po" "$pn" 2>/dev/null || true
  for f in "$OUT/ab-old.txt" "$OUT/ab-new.txt"; do
    ! grep -qE 'Non-2xx|Socket errors' "$f" || { echo "errors in $f:" >&2; cat "$f" >&2; exit 1; }
  done
  python3 - "$OUT/ab-old.txt" "$OUT/ab-new.txt" "$co" "$cn" "$(getconf CLK_TCK)" "$swap" <<'PY'
import re, sys
def read(path):
    t = open(path).read()
    return float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)), int(re.search(r"(\d+) requests in", t).group(1))
(ro, no), (rn, nn) = read(sys.argv[1]), read(sys.argv[2])
tck = int(sys.argv[5])
uo, un = int(sys.argv[3]) * 1e6 / tck / no, int(sys.argv[4]) * 1e6 / tck / nn
print(f"| {sys.argv[6]} | {ro:,.0f} | {uo:.1f} | {rn:,.0f} | {un:.1f} | {rn / ro:.3f} | {un / uo:.3f} |")
PY
done
