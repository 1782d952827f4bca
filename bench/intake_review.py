#!/usr/bin/env python3
"""How many pairs of the clerical review queue are truly one person, by match weight.

    sqlite3 -csv DB "SELECT json_extract(explanation, '$.lines[0]'), json_extract(explanation, '$.lines[1]'), weight
                     FROM review_pairs" | intake_review.py TRUTH.csv

Reads `line_a,line_b,weight` rows (pairs within the file; a pair with a registry record has an
empty line and is counted apart) and prints one JSON object: pairs, true_pairs, and per whole
bit of weight the count and the share that are true.
"""

import csv
import json
import sys
from collections import defaultdict


def main():
    truth = {}
    with open(sys.argv[1], newline="") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            truth[row[0]] = row[1]
    buckets = defaultdict(lambda: [0, 0])
    total = true = registry = 0
    for a, b, w in csv.reader(sys.stdin):
        if not a or not b:
            registry += 1
            continue
        total += 1
        same = a in truth and truth.get(a) == truth.get(b)
        true += same
        bucket = buckets[int(float(w) // 1)]
        bucket[0] += 1
        bucket[1] += same
    print(
        json.dumps(
            {
                "pairs": total,
                "true_pairs": true,
                "with_registry": registry,
                "by_weight": {k: {"pairs": v[0], "true": round(v[1] / v[0], 3)} for k, v in sorted(buckets.items())},
            }
        )
    )


if __name__ == "__main__":
    main()
