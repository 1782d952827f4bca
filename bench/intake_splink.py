#!/usr/bin/env python3
"""Splink 4 (DuckDB) deduplication of a CSV, the peer of `dancu import`.

    intake_splink.py dancu DATA.csv OUT.csv     # `dancu generate` columns; record id = file line
    intake_splink.py febrl DATA.csv OUT.csv     # FEBRL columns (intake_febrl.py); record id = rec_id

Configuration as in Splink's own examples (the FEBRL and "deduplicate 50k synthetic"
tutorials): name comparisons with Jaro-Winkler levels, a date-of-birth comparison, exact
matches elsewhere; λ from deterministic rules, u by random sampling, m by EM in two blocked
sessions. Pairs with match probability ≥ 0.5 are clustered (connected components), and each
record's cluster is written as `id,cluster` for intake_eval.py. Prints the wall time of the
linkage (loading the CSV included) as JSON.
"""

import json
import sys
import time

import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def dancu_settings():
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.JaroWinklerAtThresholds("surname", [0.9, 0.8]),
            cl.JaroWinklerAtThresholds("middle_name", [0.9, 0.8]),
            cl.JaroWinklerAtThresholds("given_name", [0.9, 0.8]),
            cl.DateOfBirthComparison("birth_date", input_is_string=True, datetime_format="%Y-%m-%d"),
            cl.ExactMatch("sex"),
            cl.ExactMatch("residence_commune"),
            cl.LevenshteinAtThresholds("legacy_id", [1]),
            cl.LevenshteinAtThresholds("phone", [1]),
            cl.JaroWinklerAtThresholds("father_name", [0.9]),
            cl.JaroWinklerAtThresholds("mother_name", [0.9]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("surname", "given_name", "substr(birth_date, 1, 4)"),
            block_on("given_name", "birth_date"),
            block_on("residence_commune", "birth_date", "sex"),
            block_on("legacy_id"),
            block_on("phone"),
        ],
        retain_intermediate_calculation_columns=False,
    ), [
        block_on("surname", "given_name", "birth_date"),
        block_on("legacy_id"),
    ], [
        block_on("birth_date"),
        # Not surname + given name alone: Vietnamese names are so concentrated (Nguyễn, Trần…
        # with a few hundred given names) that those blocks hold billions of pairs (Splink was
        # killed for memory at 19 GB on 1M rows with it); within a commune they are a few million.
        block_on("surname", "given_name", "residence_commune"),
    ]


def febrl_settings():
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.JaroWinklerAtThresholds("given_name", [0.9, 0.8]),
            cl.JaroWinklerAtThresholds("surname", [0.9, 0.8]),
            cl.LevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.9]),
            cl.JaroWinklerAtThresholds("suburb", [0.9]),
            cl.ExactMatch("postcode"),
            cl.ExactMatch("state"),
            cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("postcode"),
        ],
        retain_intermediate_calculation_columns=False,
    ), [
        block_on("given_name", "surname", "date_of_birth"),
        block_on("soc_sec_id"),
    ], [
        block_on("date_of_birth"),
        block_on("given_name", "surname"),
    ]


def main():
    kind, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
    started = time.time()
    df = pd.read_csv(data, dtype=str, keep_default_na=False)
    df = df.replace({"": None})
    if kind == "dancu":
        # The record id is the file line (header = line 1), as in the truth file.
        df.insert(0, "unique_id", [str(i + 2) for i in range(len(df))])
        settings, deterministic, em_sessions = dancu_settings()
    else:
        df.insert(0, "unique_id", df["rec_id"])
        settings, deterministic, em_sessions = febrl_settings()
    linker = Linker(df, settings, db_api=DuckDBAPI())
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    for rule in em_sessions:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.5)
    result = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    result.columns = ["id", "cluster"]
    result.to_csv(out, index=False)
    print(json.dumps({"seconds": round(time.time() - started, 1), "records": len(df)}))


if __name__ == "__main__":
    main()
