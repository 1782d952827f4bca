#!/usr/bin/env bash
# Benchmark: identity verifications (e-KYC, POST /api/v1/sharing/verify) over HTTP (loopback)
# with wrk, on a SQLite store of PEOPLE synthetic people, audit trail on (every verification
# appends an entry before its answer), every answer signed (ES256).
#
#   bench/verify.sh                          # 1,000,000 people, 3 runs of 30 s
#   PEOPLE=100000 DURATION=10s RUNS=1 bench/verify.sh
#
# A partner is registered through the API by a partner administrator; its client assertion is
# signed with openssl (P-256) and converted to JOSE form with Python's standard library. Bodies
# are built from real records (read through the officer API), so most verifications match; one in
# four carries a wrong birth date. Needs wrk, openssl, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE="${PEOPLE:-1000000}"
DURATION="${DURATION:-30s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-1}"
SEED="${SEED:-2021}"
RUNS="${RUNS:-3}"
PORT="${PORT:-18081}"
SAMPLE="${SAMPLE:-2000}"
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null && [ -x /usr/bin/time ] && command -v openssl >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq wrk time curl openssl >/dev/null; }
# DANCU_BIN: measure a binary built earlier (e.g. to compare two builds) instead of building one.
[ -n "${DANCU_BIN:-}" ] || cargo build --release -p dancu --quiet
BIN="${DANCU_BIN:-target/release/dancu}"
[ -f "$OUT/bench-password" ] || echo "bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$OUT/bench-password"
PASSWORD="$(cat "$OUT/bench-password")"

dir="$OUT/sqlite-$PEOPLE-$SEED"
if [ ! -f "$dir/seeded" ]; then
  rm -rf "$dir"
  /usr/bin/time -f "seeded SQLite in %e s, max RSS %M KiB" "$BIN" seed --data "$dir" --people "$PEOPLE" --seed "$SEED"
  touch "$dir/seeded"
fi
url="sqlite://$dir/dancu.sqlite"
keys="$OUT/keys-sqlite"
for who in bench:card_operator partners:partner_administrator; do
  echo "$PASSWORD" | DANCU_LOG=error "$BIN" officer add --db "$url" --data "$keys" --username "${who%%:*}" \
    --name "Benchmark" --unit ministry --roles "${who##*:}" --password-stdin >/dev/null 2>&1 || true
done
base="http://127.0.0.1:$PORT"
DANCU_LOG=warn "$BIN" serve --db "$url" --data "$keys" --listen "127.0.0.1:$PORT" --public-url "$base" >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
login() {
  curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$PASSWORD\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/'
}
officer=$(login bench)
admin=$(login partners)

# The benchmark partner: a bank with a P-256 key, 1,000,000 calls/s allowed (the limit is not measured here).
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/partner.pem" 2>/dev/null
openssl ec -in "$OUT/partner.pem" -pubout -out "$OUT/partner.pub.pem" 2>/dev/null
partner="bench-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
python3 - "$partner" "$OUT/partner.pub.pem" >"$OUT/partner.json" <<'PY'
import json, sys
print(json.dumps({"id": sys.argv[1], "name": "Ngân hàng thử tải", "kind": "business",
  "legal_basis": "Nghị định 59/2022/NĐ-CP", "services": ["verify"], "fields": ["full_name", "birth_date"],
  "rate_limit_per_second": 1000000, "valid_until": "2099-01-01T00:00:00Z",
  "public_key_pem": open(sys.argv[2]).read()}))
PY
curl -sf "$base/api/v1/partners" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d @"$OUT/partner.json" >/dev/null

# Bodies from real records: name and birth date as registered (every 4th with a wrong date).
DANCU_LOG=warn "$BIN" sample-ids --db "$url" --count "$SAMPLE" >"$OUT/verify-ids.txt"
: >"$OUT/verify-bodies.txt"
n=0
while read -r id; do
  rec=$(curl -sf "$base/api/v1/persons/$id" -H "Authorization: Bearer $officer") || continue
  n=$((n + 1))
  python3 -c '
import json, sys
p = json.loads(sys.argv[1])["person"]; n = p["name"]
name = " ".join(x for x in (n["surname"], n.get("middle", ""), n["given"]) if x)
date = p["birth_date"] if int(sys.argv[2]) % 4 else "1800"
print(json.dumps({"personal_id": p["personal_id"], "name": name, "birth_date": date}, ensure_ascii=False))
' "$rec" "$n" >>"$OUT/verify-bodies.txt"
done <"$OUT/verify-ids.txt"

# The client assertion (RFC 7523), signed with the partner's key.
assertion=$(python3 bench/partner_assertion.py "$partner" "$base" "$OUT/partner.pem")
export TOKEN
TOKEN=$(curl -sf "$base/api/v1/oauth/token" -d grant_type=client_credentials \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer -d "client_assertion=$assertion" |
  sed 's/.*"access_token":"\([^"]*\)".*/\1/')
[ ${#TOKEN} -gt 100 ] || { echo "the benchmark partner got no token" >&2; exit 1; }
# The access token lives 5 minutes: the runs below must fit (RUNS x DURATION + warm-up).
BODIES_FILE="$OUT/verify-bodies.txt" wrk -t"$THREADS" -c"$CONNS" -d5s -s bench/verify.lua "$base" >/dev/null
runs=()
for r in $(seq 1 "$RUNS"); do
  BODIES_FILE="$OUT/verify-bodies.txt" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/verify.lua \
    "$base" >"$OUT/wrk-verify-$r.txt"
  runs+=("$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk-verify-$r.txt") $r")
  echo "   run $r: $(grep -E 'Requests/sec' "$OUT/wrk-verify-$r.txt" | tr -s ' ') p99 $(awk '$1 == "99%" {print $2}' "$OUT/wrk-verify-$r.txt")" >&2
done
median=$(printf '%s\n' "${runs[@]}" | sort -n | awk -v n="$RUNS" 'NR == int((n + 1) / 2) {print $2}')
f="$OUT/wrk-verify-$median.txt"
all=$(printf '%s\n' "${runs[@]}" | sort -n | awk '{printf "%s%.0f", (NR > 1 ? " / " : ""), $1}')
errors=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket:" $0}' "$f")
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); wrk -t$THREADS -c$CONNS -d$DURATION"
# The machine's speed at the time, to compare runs of different hours: ECDSA P-256 signatures per
# second of one core (OpenSSL). Shared virtual machines drift by tens of percent.
echo "reference: $(openssl speed -seconds 1 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/ {printf "%.0f", $(NF-1)}') P-256 signatures/s on one core (openssl speed ecdsap256)"
echo "| backend | people | verifications/s (median run) | all runs | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|---|"
echo "| sqlite, audit on | $PEOPLE | $(awk '/Requests\/sec/ {print $2}' "$f") | $all | $(awk '$1 == "50%" {print $2}' "$f") | $(awk '$1 == "99%" {print $2}' "$f") | ${errors:-0} |"
