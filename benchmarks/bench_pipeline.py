"""The whole nightly run at several sizes: wall time and peak memory per stage (on demand, not CI).

    .venv/bin/python benchmarks/bench_pipeline.py --customers 10000 100000 1000000 [--algorithm kmeans]
        [--no-baseline]

For each size it generates (once, cached under benchmarks/data/) a customer base with planted
segments and about ten transactions per customer, then runs the segmentation flow with the demo
contracts (every row checked), RFM features, k search 2-10, the gate, profiles and a publication
to DuckDB and Parquet. Stage times come from Prefect's task runs; peak memory is the process RSS
sampled every 20 ms during each stage. Prefect's own startup (its temporary server) is excluded:
the flows run inside one test harness, as with a running `prefect server`.

Next to the stages it times each stage's work done the plain way with the same libraries, on the
same data and settings (read the Parquet files into pandas; GX's Validator alone on the contract
suites; RFM aggregated and joined to the customers in one DuckDB query; sklearn imputation and
one-hot encoding; the configured sklearn scaler; the same K-Means k search in plain sklearn; pandas
group-bys for the profiles' medians, means and category counts; the run's tables written to a new
DuckDB file and to Parquet files) and prints stage / standalone ratios. A run the gate rejects is
a result too: the outcome line says published or rejected (with the gate's reasons), the segments
and how the clustering sampled, as recorded in the run's `segmentation_runs` row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from segflow.clustering.partitioning import KMEANS_RESTARTS
from segflow.config import ClusteringConfig, SegflowConfig, build_config
from segflow.contracts.gx import validate_with_gx, validation_frame
from segflow.contracts.odcs import contract_for
from segflow.demo import demo_config, generate_demo_tables
from segflow.errors import GateRejected
from segflow.stores.base import create_table_sql
from segflow.tables import TABLES
from segflow.tasks.features import RFM_COLUMNS

DATA = Path(__file__).resolve().parent / "data"
SOURCES = ("customers", "transactions")
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


def bench_config(folder: Path, output: Path, algorithm: str) -> SegflowConfig:
    """The demo's config on the generated sources, publishing under `output`."""
    raw = demo_config(output)
    for name in SOURCES:
        raw["sources"][name]["uri"] = str(folder / f"{name}.parquet")
    return build_config(raw, [f"clustering.algorithm={algorithm}"])


def run_flow(config: SegflowConfig, output: Path, sampler: MemorySampler) -> tuple[float, list[dict], dict]:
    from segflow.flows.segmentation import segmentation_flow

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


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start


def standalone_in_a_fresh_process(folder: Path, output: Path, config: SegflowConfig) -> dict[str, float]:
    """The references, timed in a new process: like the run's stages, they then allocate their
    memory afresh (in the run's process they would reuse the pages the run freed, which made a
    1M-row Parquet read 2-4x faster than the first one)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(standalone, folder, output, config).result()


def gx_alone(table: pd.DataFrame, contract_path: Path, name: str) -> float:
    """Seconds of GX's Validator alone on a source, with the frame and suite the stage gives it."""
    contract = contract_for(contract_path, name)
    present = [column for column in contract.columns if column in table.columns]
    frame = validation_frame(table, contract, present)
    start = time.perf_counter()
    validate_with_gx(frame, contract, [rule for rule in contract.rules if set(rule.columns) <= set(present)])
    return time.perf_counter() - start


def warm_up_gx(config: SegflowConfig) -> None:
    """Run the contract suites once on a few rows: GX's imports and setup, which the run paid on its
    first size, are not the reference's work."""
    for name, source in config.sources.configured():
        gx_alone(
            pq.ParquetFile(source.uri).read_row_group(0).slice(0, 100).to_pandas(), source.contract, name
        )


def standalone(folder: Path, output: Path, config: SegflowConfig) -> dict[str, float]:
    """Each stage's work done the plain way with the same libraries, one after the other, on
    the same data and settings: the reference of the stage / standalone ratios."""
    timings: dict[str, float] = {}
    warm_up_gx(config)
    with timed(timings, "ingest"):  # Parquet to the pandas frames the stages take
        frames = {name: pq.read_table(folder / f"{name}.parquet").to_pandas() for name in SOURCES}
    timings["quality"] = sum(
        gx_alone(table, getattr(config.sources, name).contract, name) for name, table in frames.items()
    )
    ts, amount = config.sources.transactions.timestamp_column, config.sources.transactions.amount_column
    with timed(timings, "features"), duckdb.connect() as connection:  # RFM aggregated and joined
        for name, frame in frames.items():
            connection.register(name, frame)
        features = connection.sql(
            f"""
            SELECT * FROM customers LEFT JOIN (
                SELECT customer_id, date_diff('day', max({ts})::DATE, DATE '{AS_OF}') AS recency_days,
                       count(*) AS frequency, sum({amount}) AS monetary,
                       date_diff('day', min({ts})::DATE, DATE '{AS_OF}') AS tenure_days,
                       avg({amount}) AS avg_order_value
                FROM transactions WHERE {ts} < DATE '{AS_OF}' + 1 GROUP BY customer_id
            ) USING (customer_id)
            """
        ).df()
    numeric = [*config.features.numeric, *RFM_COLUMNS]
    categorical = config.features.categorical
    with timed(timings, "preprocess"):  # duplicates, imputation and one-hot encoding in sklearn
        deduplicated = features.drop_duplicates(subset="customer_id")
        encoder = ColumnTransformer(
            [
                ("numbers", SimpleImputer(strategy="median"), numeric),
                ("categories", OneHotEncoder(max_categories=config.features.max_categories), categorical),
            ],
            sparse_threshold=0,
        )
        model_input = encoder.fit_transform(deduplicated)
    scaler = {"minmax": MinMaxScaler, "standard": StandardScaler, "robust": RobustScaler}[
        config.preprocess.scaler
    ]
    with timed(timings, "scale"):
        matrix = scaler().fit_transform(model_input)
    with timed(timings, "cluster"):  # the same k search: fits on a sample, silhouette on another
        labels = plain_kmeans_search(matrix, config.clustering)
    with timed(timings, "profile"):  # per segment: median and mean of the numbers, category counts
        deduplicated[numeric].groupby(labels).agg(["median", "mean"])
        for column in categorical:
            deduplicated.groupby(labels)[column].value_counts()
    # the run's published tables, written plainly to both targets
    timings["publish"] = write_tables_plainly(output / "warehouse.duckdb", output / "plain")
    return timings


def plain_kmeans_search(matrix: np.ndarray, clustering: ClusteringConfig) -> np.ndarray:
    """K-Means for each k on a fit sample, silhouette on a score sample, the best refit on all."""
    draw = np.random.default_rng(clustering.seed)
    fit_rows = matrix[draw.choice(len(matrix), min(len(matrix), clustering.fit_sample_size), replace=False)]
    score_rows = matrix[draw.choice(len(matrix), min(len(matrix), clustering.sample_size), replace=False)]
    fits = {
        k: KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=clustering.seed).fit(fit_rows)
        for k in range(clustering.k[0], clustering.k[1] + 1)
    }
    scores = {k: silhouette_score(score_rows, fit.predict(score_rows)) for k, fit in fits.items()}
    best = fits[max(scores, key=scores.get)].cluster_centers_
    return KMeans(n_clusters=len(best), init=best, n_init=1).fit(matrix).labels_


def write_tables_plainly(warehouse: Path, folder: Path) -> float:
    """Seconds to write every table of the run's warehouse into a new DuckDB file (in one
    transaction, `customer_segments` with its primary key) and into Parquet files, one per table."""
    folder.mkdir()
    with duckdb.connect(str(warehouse), read_only=True) as published:
        names = [
            name
            for (name,) in published.sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segments'"
            ).fetchall()
        ]
        tables = {name: published.sql(f'SELECT * FROM segments."{name}"').to_arrow_table() for name in names}
    start = time.perf_counter()
    with duckdb.connect(str(folder / "plain.duckdb")) as connection:
        connection.begin()
        for name, table in tables.items():
            connection.register("incoming", table)
            # the snapshot's primary key is part of the interface (INTERFACE.md), plain or not
            key = TABLES[name].primary_key if name == "customer_segments" else ()
            connection.execute(create_table_sql(f'"{name}"', table.schema, key, "duckdb", False))
            connection.execute(f'INSERT INTO "{name}" SELECT * FROM incoming')
        connection.commit()
    for name, table in tables.items():
        pq.write_table(table, folder / f"{name}.parquet")
    return time.perf_counter() - start


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
                config = bench_config(folder, Path(output), arguments.algorithm)
                wall, stages, outcome = run_flow(config, Path(output), sampler)
                baseline = (
                    {}
                    if arguments.no_baseline
                    else standalone_in_a_fresh_process(folder, Path(output), config)
                )
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
