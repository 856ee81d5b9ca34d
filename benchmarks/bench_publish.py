"""Publish 1M customers to each target and time it (run on demand, not in CI).

    .venv/bin/python benchmarks/bench_publish.py [--customers 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]

Times, per target: building the publication (keys, change feed, tables), the first publish (every
customer enters: 1M change rows), and a second date where 2% of customers moved. Also times the
plain ADBC ingest of the snapshot alone, the fastest way to load those rows, for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa

from segflow.ledger import RunFacts, RunLedger
from segflow.stores import DuckDBStore, ParquetStore, PostgresStore
from segflow.tasks.publish import build_publication, publication_writes

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
SEGMENTS = 8


def profiles_for(labels: np.ndarray) -> pd.DataFrame:
    sizes = pd.Series(labels).value_counts().sort_index()
    return pd.DataFrame(
        {
            "label": sizes.index,
            "size": sizes.to_numpy(),
            "share": sizes.to_numpy() / len(labels),
            "name": [f"Segment {label}" for label in sizes.index],
            "features": [{"x": {"median": 1.0, "mean": 1.0, "lift": 1.0}}] * len(sizes),
            "top_categories": [{}] * len(sizes),
            "rules": [{"conditions": ["x > 1"], "recall": 0.9, "precision": 0.8}] * len(sizes),
            "description": ["-"] * len(sizes),
        }
    )


def timed(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def run_target(name: str, store, ids: pd.Series, first: np.ndarray, second: np.ndarray) -> dict:
    row = {"target": name}
    for column, as_of, labels in (("first", DAY1, first), ("second", DAY2, second)):
        ledger = RunLedger(as_of=as_of, id_type=pa.string())
        start = time.perf_counter()
        publication = build_publication(ids, labels, profiles_for(labels), store.read_state(as_of), ledger)
        writes = publication_writes(publication, ledger, RunFacts())
        built = time.perf_counter()
        store.publish(as_of, writes)
        row[f"build {column} (s)"] = round(built - start, 2)
        row[f"publish {column} (s)"] = round(time.perf_counter() - built, 2)
    return row


def adbc_baseline(uri: str, ids: pd.Series, labels: np.ndarray) -> float:
    import adbc_driver_postgresql.dbapi as adbc

    table = pa.table({"customer_id": ids.to_numpy(), "segment_key": [f"seg-{x:04d}" for x in labels]})
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        seconds, _ = timed(lambda: cursor.adbc_ingest(name, table, mode="create"))
        cursor.execute(f"DROP TABLE {name}")
        connection.commit()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    ids = pd.Series([f"C{i:09d}" for i in range(arguments.customers)])
    first = rng.integers(0, SEGMENTS, size=arguments.customers)
    second = first.copy()
    movers = rng.choice(arguments.customers, size=arguments.customers // 50, replace=False)
    second[movers] = (second[movers] + 1) % SEGMENTS

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(
            run_target("DuckDB", DuckDBStore(str(Path(folder) / "w.duckdb"), "segments"), ids, first, second)
        )
        rows.append(run_target("Parquet", ParquetStore(Path(folder) / "pq"), ids, first, second))
        try:
            rows.append(
                run_target(
                    "PostgreSQL (ADBC staging + swap)",
                    PostgresStore(arguments.pg, schema),
                    ids,
                    first,
                    second,
                )
            )
        finally:
            with psycopg.connect(arguments.pg, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    baseline = adbc_baseline(arguments.pg, ids, first)

    print(f"\n{arguments.customers:,} customers, {SEGMENTS} segments; second date: 2% moved\n")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"\nBaseline: ADBC ingest of the 2-column snapshot alone into PostgreSQL: {baseline:.2f} s")


if __name__ == "__main__":
    main()
