#!/usr/bin/env python3
"""Pairwise precision, recall and F1 of a deduplication against a truth file.

    intake_eval.py TRUTH.csv PREDICTED.csv

Both files are CSV with a header and two columns: a record id (the file line for `dancu
generate` data, the record id for FEBRL) and a cluster label (`entity` in the truth, the
survivor's key or a cluster id in the prediction). Records absent from the prediction (rejected
rows) count as singletons: every true pair they belong to is a missed pair. Pairs are counted
from cluster sizes (sum of n·(n-1)/2), so millions of records take seconds.

Prints one JSON object: true_pairs, predicted_pairs, correct_pairs, precision, recall, f1.
"""

import csv
import json
import sys
from collections import Counter


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        return {row[0]: row[1] for row in r if len(row) >= 2}


def pairs(counter):
    return sum(n * (n - 1) // 2 for n in counter.values())


def main():
    truth = read(sys.argv[1])
    predicted = read(sys.argv[2])
    # Unpredicted records are their own cluster.
    pred = {rid: predicted.get(rid, "single:" + rid) for rid in truth}
    true_pairs = pairs(Counter(truth.values()))
    predicted_pairs = pairs(Counter(pred.values()))
    correct = pairs(Counter((truth[rid], pred[rid]) for rid in truth))
    precision = correct / predicted_pairs if predicted_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(
        json.dumps(
            {
                "records": len(truth),
                "true_pairs": true_pairs,
                "predicted_pairs": predicted_pairs,
                "correct_pairs": correct,
                "precision": round(precision, 5),
                "recall": round(recall, 5),
                "f1": round(f1, 5),
            }
        )
    )


if __name__ == "__main__":
    main()
