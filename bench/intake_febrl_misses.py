#!/usr/bin/env python3
"""The true FEBRL pairs `dancu dedupe` did not link, and why, after `bench/intake_febrl.py`.

    intake_febrl_misses.py febrl3 [OUT]     # OUT: intake_febrl.py's output folder (bench/out/febrl)

Each missed pair is printed with both records side by side and one of three causes: "left out"
(a record the dedupe could not use), "scored review" (a candidate pair between the review and
link thresholds, or a link the clustering guard refused; its field levels and weights follow),
or "distinct or no candidate" (no blocking pass paired them, or they scored below review). A
count of the causes goes to stderr.
"""

import collections
import csv
import itertools
import os
import sys


def main():
    which = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "febrl")
    rows = list(csv.DictReader(open(os.path.join(out, f"{which}.csv"), newline="")))
    line_of = {r["rec_id"]: i + 2 for i, r in enumerate(rows)}
    by_line = {i + 2: r for i, r in enumerate(rows)}
    people = collections.defaultdict(list)
    for r in rows:
        people[r["rec_id"].split("-")[1]].append(r["rec_id"])
    with open(os.path.join(out, f"dancu-{which}.pred.csv"), newline="") as f:
        cluster = {r["id"]: r["cluster"] for r in csv.DictReader(f)}
    with open(os.path.join(out, f"dancu-{which}.pairs.csv"), newline="") as f:
        pairs = {(int(r["line_a"]), int(r["line_b"])): r for r in csv.DictReader(f)}
    columns = ["given_name", "surname", "date_of_birth", "soc_sec_id", "address"]
    causes = collections.Counter()
    for ids in people.values():
        for a, b in itertools.combinations(ids, 2):
            if a in cluster and b in cluster and cluster[a] == cluster[b]:
                continue
            la, lb = sorted((line_of[a], line_of[b]))
            if a not in cluster or b not in cluster:
                cause = "left out"
            elif (la, lb) in pairs:
                cause = "scored " + pairs[(la, lb)]["band"]
            else:
                cause = "distinct or no candidate"
            causes[cause] += 1
            print(f"== {cause}: {a} / {b}")
            for c in columns:
                print(f"   {c:14} {by_line[la][c]!r:50} {by_line[lb][c]!r}")
            if (la, lb) in pairs:
                p = pairs[(la, lb)]
                skip = ("line_a", "line_b", "band", "weight", "probability")
                print("   weight", p["weight"], {k: v for k, v in p.items() if k not in skip and v})
    print(dict(causes), file=sys.stderr)


if __name__ == "__main__":
    main()
