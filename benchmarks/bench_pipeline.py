"""The whole nightly run at several sizes: wall time and peak memory per stage (on demand, not CI).

    .venv/bin/python benchmarks/bench_pipeline.py --customers 10000 100000 1000000 [--algorithm kmeans]
        [--no-baseline]

For each size it generates (once, cached under benchmarks/data/) a customer base with planted
segments and about ten transactions per customer, then runs the segmentation flow with the demo
contracts (every row checked), RFM features, k search 2-10, the gate, profiles and a publication
to DuckDB and Parquet. Stage times come from Prefect's task runs; peak memory is the process RSS
sampled every 20 ms during each stage. Prefect's own startup (its temporary server) is excluded:
the flows run inside one test harness, as with a running `prefect server`.

Next to the stages it times the fastest standalone way to do the same work with the same
libraries (read the Parquet files, aggregate RFM in DuckDB, one K-Means fit, write the snapshot as
Parquet) and prints stage / standalone ratios. A run the gate rejects is a result too: the outcome
line says published or rejected (with the gate's reasons), the segments and how the clustering
sampled, as recorded in the run's `segmentation_runs` row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from sklearn.cluster import KMeans

from segflow.config import build_config
from segflow.demo import demo_config, generate_demo_tables
from segflow.errors import GateRejected

DATA = Path(__file__).resolve().parent / "data"
AS_OF = date(2026, 11, 1)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class MemorySampler(threading.Thread):
    """Samples this process's RSS with timestamps until stopped."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval, self.samples, self.running = interval, [], True

    def run(self) -> None:
        while self.running:
            self.samples.append((time.time(), rss_bytes()))
            time.sleep(self.interval)

    def peak_between(self, start: float, end: float) -> int:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside, default=0)


def dataset(customers: int) -> Path:
    folder = DATA / f"customers-{customers}"
    if not (folder / "transactions.parquet").exists():
        folder.mkdir(parents=True, exist_ok=True)
        customer_table, transaction_table = generate_demo_tables(n_customers=customers)
        pq.write_table(customer_table, folder / "customers.parquet")
        pq.write_table(transaction_table, folder / "transactions.parquet")
    return folder


def run_flow(
    folder: Path, output: Path, algorithm: str, sampler: MemorySampler
) -> tuple[float, list[dict], dict]:
    from segflow.flows.segmentation import segmentation_flow

    raw = demo_config(output)
    raw["sources"]["customers"]["uri"] = str(folder / "customers.parquet")
    raw["sources"]["transactions"]["uri"] = str(folder / "transactions.parquet")
    config = build_config(raw, [f"clustering.algorithm={algorithm}"])
    start = time.time()
    state = segmentation_flow(config=config, as_of=AS_OF, return_state=True)
    wall = time.time() - start
    with contextlib.suppress(GateRejected):
        state.result()  # raise if the run failed for any reason but the gate
    with get_client(sync_client=True) as client:
        flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        task_runs = client.read_task_runs(flow_run_filter=flow_filter)
    stages = []
    for run in sorted(task_runs, key=lambda r: r.start_time):
        begin, end = run.start_time.timestamp(), run.end_time.timestamp()
        stages.append(
            {
                "stage": run.name.rsplit("-", 1)[0],
                "seconds": end - begin,
                "peak_rss_gb": sampler.peak_between(begin, end) / 2**30,
            }
        )
    return wall, stages, run_outcome(output / "warehouse.duckdb")


def run_outcome(warehouse: Path) -> dict:
    """What the run recorded about itself: status, gate reasons, segments and sampling."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        [(status, algorithm, n_segments, reasons, parameters, scores, details)] = connection.sql(
            "SELECT status, algorithm, n_segments, gate_reasons, parameters, scores, details "
            "FROM segments.segmentation_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchall()
    details = json.loads(details)
    return {
        "status": status,
        "algorithm": algorithm,
        "n_segments": n_segments,
        "reasons": json.loads(reasons),
        "parameters": json.loads(parameters),
        "scores": json.loads(scores),
        "sampling": details.get("sampling"),
        "segment_shares": details.get("gate_measures", {}).get("segment_shares"),
    }


def standalone(folder: Path, output: Path) -> dict[str, float]:
    """The fastest plain way to do each stage's core work, for the ratios."""
    timings = {}
    start = time.perf_counter()
    customers = pq.read_table(folder / "customers.parquet")
    transactions = pq.read_table(folder / "transactions.parquet")
    timings["ingest"] = time.perf_counter() - start
    start = time.perf_counter()
    with duckdb.connect() as connection:
        connection.register("t", transactions)
        connection.sql(
            "SELECT customer_id, max(order_ts), count(*), sum(amount), min(order_ts), avg(amount) "
            "FROM t GROUP BY customer_id"
        ).to_arrow_table()
    timings["features"] = time.perf_counter() - start
    matrix = np.random.default_rng(0).normal(size=(customers.num_rows, 16))
    start = time.perf_counter()
    KMeans(n_clusters=7, n_init=1, random_state=0).fit(matrix)
    timings["cluster"] = time.perf_counter() - start
    start = time.perf_counter()
    pq.write_table(
        customers.select(["customer_id", "country", "acquisition_channel", "signup_date"]),
        output / "standalone.parquet",
    )
    timings["publish"] = time.perf_counter() - start
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--algorithm", default="kmeans")
    parser.add_argument("--no-baseline", action="store_true", help="skip the standalone timings")
    arguments = parser.parse_args()
    sampler = MemorySampler()
    sampler.start()
    results = []
    # time the work, not a cache hit: the clustering is cached on its inputs for a day
    refresh = temporary_settings(updates={PREFECT_TASKS_REFRESH_CACHE: True})
    with refresh, prefect_test_harness(server_startup_timeout=120):
        for customers in arguments.customers:
            folder = dataset(customers)
            transactions = pq.ParquetFile(folder / "transactions.parquet").metadata.num_rows
            with tempfile.TemporaryDirectory() as output:
                wall, stages, outcome = run_flow(folder, Path(output), arguments.algorithm, sampler)
                baseline = {} if arguments.no_baseline else standalone(folder, Path(output))
            results.append((customers, transactions, wall, stages, baseline, outcome))
    sampler.running = False

    print(f"\nalgorithm {arguments.algorithm}; Prefect server startup excluded\n")
    for customers, transactions, wall, stages, baseline, outcome in results:
        peak = max(s["peak_rss_gb"] for s in stages)
        print(
            f"### {customers:,} customers, {transactions:,} transactions: "
            f"{wall:.1f} s, peak RSS {peak:.2f} GB\n"
        )
        print(f"outcome: {json.dumps(outcome)}\n")
        print("| stage | seconds | peak RSS (GB) | standalone (s) | ratio |")
        print("| --- | ---: | ---: | ---: | ---: |")
        totals: dict[str, float] = {}
        for stage in stages:
            totals[stage["stage"]] = totals.get(stage["stage"], 0.0) + stage["seconds"]
        for stage in stages:
            name = stage["stage"]
            if name not in totals:
                continue
            seconds = totals.pop(name)
            reference = baseline.get(name)
            ratio = f"{seconds / reference:.1f}x" if reference else ""
            reference_text = f"{reference:.2f}" if reference else ""
            print(f"| {name} | {seconds:.2f} | {stage['peak_rss_gb']:.2f} | {reference_text} | {ratio} |")
        print()


if __name__ == "__main__":
    main()
