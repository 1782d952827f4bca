#!/usr/bin/env bash
# Server-side render time of each page of the officers' web application on the demo data
# (`dancu demo`: 50,000 synthetic people, plus an imported file with duplicates for the review
# queue), over loopback with curl: RUNS requests per page, median and slowest, and the size.
#
#   bench/ui-pages.sh                       # release build, 50,000 people
#   BIN=target/debug/dancu PEOPLE=5000 bench/ui-pages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE="${PEOPLE:-50000}"
RUNS="${RUNS:-20}"
PORT="${PORT:-18090}"
if [ -z "${BIN:-}" ]; then cargo build --release -p dancu --quiet; BIN=target/release/dancu; fi
data="$(mktemp -d)"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait "${pid:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
"$BIN" demo --data "$data" --people "$PEOPLE" --listen "127.0.0.1:$PORT" >"$data/log" 2>&1 &
pid=$!
until curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do kill -0 "$pid"; sleep 0.5; done
"$BIN" generate --people 200 --seed 7 --provinces 01 --duplicates 0.2 --out "$data/dup.csv" 2>/dev/null
"$BIN" import --data "$data" "$data/dup.csv" --unit province:01 --officer demo >/dev/null
base="http://127.0.0.1:$PORT"
field() { awk -F'\t' -v u="$1" -v n="$2" '$1 == u {print $n}' "$data/demo-logins.txt"; }
login() { # username, cookie jar; the second factor computed from the enrolled secret when there is one
  curl -fsS -o /dev/null -c "$2" --data-urlencode "username=$1" --data-urlencode "password=$(field "$1" 2)" "$base/ui/login"
  local uri; uri="$(field "$1" 3)"
  if [ -n "$uri" ]; then
    local code csrf
    code="$(python3 -c 'import sys,hmac,hashlib,struct,time,base64,urllib.parse as u
s=u.parse_qs(u.urlparse(sys.argv[1]).query)["secret"][0]; k=base64.b32decode(s+"="*(-len(s)%8))
h=hmac.new(k,struct.pack(">Q",int(time.time())//30),hashlib.sha1).digest(); o=h[-1]&15
print("%06d"%((struct.unpack(">I",h[o:o+4])[0]&0x7fffffff)%1000000))' "$uri")"
    csrf="$(curl -fsS -b "$2" "$base/ui/mfa" | grep -o 'name="csrf" value="[0-9a-f]*"' | head -1 | cut -d'"' -f4)"
    curl -fsS -o /dev/null -b "$2" -c "$2" --data "csrf=$csrf&code=$code" "$base/ui/mfa"
  fi
}
officer="$data/officer.jar"; auditor="$data/auditor.jar"; commune="$data/commune.jar"
maker="$data/maker.jar"; partners="$data/partners.jar"
login demo "$officer"; login demo.lanhdao "$auditor"; login demo.xa "$commune"
login demo.sanxuat "$maker"; login demo.doitac "$partners"
person="$(curl -fsS -b "$officer" "$base/ui/persons?name=nguyen" | grep -o 'href="/ui/persons/[0-9a-f-]\{36\}"' | head -1 | cut -d/ -f4 | tr -d '"')"
pair="$(curl -fsS -b "$officer" "$base/ui/reviews" | grep -o 'href="/ui/reviews/[0-9a-f-]\{36\}"' | head -1 | cut -d/ -f4 | tr -d '"')"
measure() { # jar, path
  local times; times="$(for _ in $(seq "$RUNS"); do curl -fsS -o /dev/null -b "$1" -w '%{time_total}\n' "$base$2"; done | sort -n)"
  local size; size="$(curl -fsS -b "$1" "$base$2" | wc -c)"
  printf '| `%s` | %.1f | %.1f | %d |\n' "$2" \
    "$(echo "$times" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] * 1000}')" \
    "$(echo "$times" | tail -1 | awk '{print $1 * 1000}')" "$size"
}
echo "| page | median ms | slowest ms | bytes |"
echo "| --- | ---: | ---: | ---: |"
# The national counts are read when the server starts; a commune's on its officer's first dashboard.
cold="$(curl -fsS -o /dev/null -b "$officer" -w '%{time_total}' "$base/ui" | awk '{print $1 * 1000}')"
cold_commune="$(curl -fsS -o /dev/null -b "$commune" -w '%{time_total}' "$base/ui" | awk '{print $1 * 1000}')"
for p in /ui/login /ui "/ui/persons?name=nguyen" "/ui/persons?name=nguyen&birth_year=1990&province=01" \
         "/ui/persons/$person" "/ui/persons/$person/edit" /ui/reviews "/ui/reviews/$pair" /ui/residence \
         /ui/residence/temporary /ui/residence/new /ui/residence/new/permanent_registration /ui/address-reviews /ui/cards /ui/cards/verify \
         "/ui/persons/$person/card-application" /ui/intake /ui/requests; do
  measure "$officer" "$p"
done
app="$(curl -fsS -b "$officer" "$base/ui/residence" | grep -o 'href="/ui/residence/applications/[0-9a-f-]\{36\}"' | head -1 | cut -d/ -f5 | tr -d '"' || true)"
if [ -n "$app" ]; then measure "$officer" "/ui/residence/applications/$app"; fi
measure "$auditor" /ui/audit
measure "$commune" /ui
measure "$maker" /ui/production
measure "$partners" /ui/partners
echo "dashboard, first request of a ministry officer (national counts read at start): ${cold} ms"
echo "dashboard, first request of a commune officer (the commune's counts computed, then kept 60 s): ${cold_commune} ms"
