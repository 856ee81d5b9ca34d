"""Reading transactions from PostgreSQL as the ingest stage does (ADBC, COPY to Arrow), next to the
same rows from Parquet, and a plain psycopg row-by-row read for scale (on demand, not CI).

    .venv/bin/python benchmarks/bench_sources.py [--rows 10000000] [--pg postgresql://postgres@127.0.0.1:5432/test]

The rows come from the pipeline benchmark's generator (1M customers, about 10M transactions) and
are loaded once into the table bench.transactions_<rows>; later runs reuse it.
"""

from __future__ import annotations

import argparse
import resource
import time

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from bench_pipeline import dataset

from segflow.sources import read_source


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_once(pg: str, table: str, rows: int) -> pa.Table:
    transactions = pq.read_table(dataset(max(rows // 10, 1000)) / "transactions.parquet").slice(0, rows)
    with psycopg.connect(pg, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS bench")
        exists = connection.execute("SELECT to_regclass(%s)", (f"bench.{table}",)).fetchone()[0]
        present = connection.execute(f"SELECT count(*) FROM bench.{table}").fetchone()[0] if exists else 0
    if present != transactions.num_rows:
        with adbc.connect(pg) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS bench.{table}")
            cursor.adbc_ingest(table, transactions, mode="create", db_schema_name="bench")
            connection.commit()
    return transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    arguments = parser.parse_args()
    table = f"transactions_{arguments.rows}"
    transactions = load_once(arguments.pg, table, arguments.rows)
    parquet_path = dataset(max(arguments.rows // 10, 1000)) / "transactions.parquet"

    timings = {}
    start = time.perf_counter()
    from_pg = read_source("transactions", f"{arguments.pg}?table=bench.{table}")
    timings["PostgreSQL, segflow ingest (ADBC, COPY to Arrow)"] = time.perf_counter() - start
    assert from_pg.num_rows == transactions.num_rows
    rss_after_pg = peak_rss_gb()

    start = time.perf_counter()
    read_source("transactions", str(parquet_path))
    timings["Parquet, segflow ingest (pyarrow.dataset)"] = time.perf_counter() - start

    limit = min(arguments.rows, 1_000_000)
    start = time.perf_counter()
    with psycopg.connect(arguments.pg) as connection:
        rows = connection.execute(f"SELECT * FROM bench.{table} LIMIT {limit}").fetchall()
    row_by_row = (time.perf_counter() - start) * arguments.rows / len(rows)
    timings[f"PostgreSQL, psycopg fetchall of {limit:,} rows, scaled to all"] = row_by_row

    print(f"\n{transactions.num_rows:,} transactions ({transactions.nbytes / 2**20:,.0f} MB in Arrow)\n")
    print("| read | seconds | rows/s |")
    print("| --- | ---: | ---: |")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.2f} | {transactions.num_rows / seconds:,.0f} |")
    print(f"\npeak RSS after the PostgreSQL read: {rss_after_pg:.2f} GB")


if __name__ == "__main__":
    main()
