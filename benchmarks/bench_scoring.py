"""Scoring new customers against a published model (on demand, not CI).

    .venv/bin/python benchmarks/bench_scoring.py [--customers 100000] [--new 1000]

Publishes the benchmark customer base (cached under benchmarks/data/) with the demo config, then
scores `--new` customers who are not in it (their own orders, generated the same way) with
`scoring_flow`, and reports the scoring run's wall time and how many published rows changed.
Prefect's startup is excluded: both flows run inside one test harness.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
from bench_pipeline import AS_OF, dataset
from prefect.testing.utilities import prefect_test_harness

from segflow.config import build_config
from segflow.demo import demo_config, generate_demo_tables


def new_customers(folder: Path, count: int) -> None:
    """`count` customers whose ids are not in the base ('C9…', the contract's pattern), and their orders."""
    customers, transactions = generate_demo_tables(n_customers=count, seed=99)
    for table, name in ((customers, "customers"), (transactions, "transactions")):
        frame = table.to_pandas()
        frame["customer_id"] = "C9" + frame["customer_id"].str[2:]
        frame.to_parquet(folder / f"{name}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1_000)
    arguments = parser.parse_args()
    from segflow.flows.scoring import scoring_flow
    from segflow.flows.segmentation import segmentation_flow

    base = dataset(arguments.customers)
    with tempfile.TemporaryDirectory() as scratch, prefect_test_harness(server_startup_timeout=120):
        output = Path(scratch)
        raw = demo_config(output)
        raw["sources"]["customers"]["uri"] = str(base / "customers.parquet")
        raw["sources"]["transactions"]["uri"] = str(base / "transactions.parquet")
        raw["publish"]["reports"] = None
        start = time.perf_counter()
        segmentation_flow(config=build_config(raw), as_of=AS_OF)
        fit_seconds = time.perf_counter() - start

        delta = output / "new"
        delta.mkdir()
        new_customers(delta, arguments.new)
        raw["sources"]["customers"]["uri"] = str(delta / "customers.parquet")
        raw["sources"]["transactions"]["uri"] = str(delta / "transactions.parquet")
        start = time.perf_counter()
        summary = scoring_flow(config=build_config(raw), as_of=AS_OF)
        score_seconds = time.perf_counter() - start
        with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as connection:
            total = connection.sql("SELECT count(*) FROM segments.customer_segments").fetchall()[0][0]

    print("\n| published base | full run (s) | scored | scoring run (s) | rows after | changes |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {arguments.customers:,} | {fit_seconds:.1f} | {summary['customers']:,} | {score_seconds:.1f} "
        f"| {total:,} | {summary['changes']:,} |"
    )


if __name__ == "__main__":
    main()
