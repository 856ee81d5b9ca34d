"""Dask mode at scale: N customers through the whole segmentation flow on a LocalCluster.

The demo generator builds customers and ~12 orders each in memory, so the data is written in
chunks of 500k customers (one Parquet file per chunk and table, ids renumbered to stay unique and
within the contract's C + 7 digits). A chunk can keep only a share of its orders (--orders-share;
1.0, the default, keeps all ~12 per customer). Every stage's
wall time comes from the flow's Prefect task runs; peak memory is the largest sum of the resident
memory of this process and every process it started (the Dask scheduler, nanny and workers),
sampled every 0.2 s.

Then the single-process flow runs on the Dask run's fit sample (the customers drawn for the fit,
with all their rows of both sources, in source order) and the two runs' segments of those
customers are compared (adjusted Rand index 1.0: the same segments).

    .venv/bin/python benchmarks/bench_dask.py --customers 10000000 --orders-share 1.0
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import adjusted_rand_score

from segflow.config import build_config
from segflow.demo import demo_config, generate_demo_tables
from segflow.flows.execution import draw_keys, sample_threshold

DATA = Path(__file__).parent / "data"
CHUNK = 500_000
AS_OF = date(2026, 11, 1)


def write_chunks(folder: Path, customers: int, orders_share: float, seed: int = 7) -> dict[str, Path]:
    """Customers and orders as folders of Parquet parts, one chunk of customers at a time."""
    paths = {"customers": folder / "customers", "transactions": folder / "transactions"}
    marker = folder / ".complete"
    if marker.exists():
        return paths
    shutil.rmtree(folder, ignore_errors=True)
    for path in paths.values():
        path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for number, first in enumerate(range(0, customers, CHUNK)):
        size = min(CHUNK, customers - first)
        people, orders = generate_demo_tables(n_customers=size, seed=seed + number)
        # ids C0000001..C{size} of the chunk become C{first}..C{first + size - 1}
        local = np.char.lstrip(np.asarray(people["customer_id"].to_pylist(), dtype=str), "C").astype(np.int64)
        people = people.set_column(0, "customer_id", pa.array([f"C{first + i - 1:07d}" for i in local]))
        kept = orders.filter(pa.array(rng.random(orders.num_rows) < orders_share))
        owner = np.char.lstrip(np.asarray(kept["customer_id"].to_pylist(), dtype=str), "C").astype(np.int64)
        kept = kept.set_column(1, "customer_id", pa.array([f"C{first + i - 1:07d}" for i in owner]))
        # every chunk numbers its orders from 1: prefix the chunk so that order ids stay unique
        orders_of_chunk = [f"{number:03d}-{order}" for order in kept["order_id"].to_pylist()]
        kept = kept.set_column(0, "order_id", pa.array(orders_of_chunk))
        pq.write_table(people, paths["customers"] / f"part-{number:04d}.parquet", row_group_size=250_000)
        pq.write_table(kept, paths["transactions"] / f"part-{number:04d}.parquet", row_group_size=250_000)
        print(f"data: chunk {number}: {size:,} customers, {kept.num_rows:,} orders", flush=True)
    marker.touch()
    return paths


class PeakMemory:
    """The largest resident memory of this process and its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self.stopped = every, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self.stopped.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(self.every)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


def stage_times(flow_run_id) -> list[tuple[str, float]]:
    """Each task run of the flow run with its wall time, in start order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    runs = sorted((r for r in runs if r.start_time), key=lambda r: r.start_time)
    return [(r.name, (r.end_time - r.start_time).total_seconds()) for r in runs if r.end_time]


def same_as_single_process(
    folder: Path, paths: dict[str, Path], dask_output: Path, fit_rows: int, seed: int
) -> str:
    """Run the single-process flow on the Dask run's fit sample (those customers' rows of both
    sources, in source order) and compare the two runs' segments of those customers."""
    from segflow.flows.segmentation import segmentation_flow

    with duckdb.connect(str(dask_output / "warehouse.duckdb"), read_only=True) as warehouse:
        published = warehouse.sql("SELECT customer_id, segment_key FROM segments.customer_segments").df()
    drawn = draw_keys(published["customer_id"], seed) < sample_threshold(len(published), fit_rows)
    sample = published[drawn]
    sample_folder = folder / "fit-sample"
    shutil.rmtree(sample_folder, ignore_errors=True)
    sample_folder.mkdir()
    sample_paths = {name: sample_folder / f"{name}.parquet" for name in paths}
    with duckdb.connect() as connection:
        connection.register("sample", pa.table({"customer_id": sample["customer_id"].to_numpy()}))
        for name, path in paths.items():
            connection.execute(
                f"COPY (SELECT * FROM read_parquet('{path}/*.parquet') "
                f"WHERE customer_id IN (SELECT customer_id FROM sample)) TO '{sample_paths[name]}'"
            )
    output = sample_folder / "output"
    raw = demo_config(output, sample_paths)
    raw["clustering"] = {"algorithm": "kmeans", "seed": seed}
    state = segmentation_flow(config=build_config(raw), as_of=AS_OF, return_state=True)
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as warehouse:
        single = warehouse.sql("SELECT customer_id, segment_key FROM segments.customer_segments").df()
    both = sample.merge(single, on="customer_id", suffixes=("_dask", "_single"))
    agreement = adjusted_rand_score(both["segment_key_dask"], both["segment_key_single"])
    return (
        f"single-process run on the fit sample: {state.name}; {len(single):,} customers published "
        f"of {len(sample):,} drawn; {len(both):,} in both; adjusted Rand index of the two runs' "
        f"segments {agreement:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--orders-share", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-per-worker", default="4GB")
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--fit-rows", type=int, default=200_000)
    parser.add_argument(
        "--compare-only", action="store_true", help="skip the Dask run; compare its last output"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    folder = DATA / f"dask-{args.customers}-{args.orders_share:g}"
    paths = write_chunks(folder, args.customers, args.orders_share)
    print(f"data: ready in {time.perf_counter() - started:.0f} s at {folder}", flush=True)

    output = folder / "output"
    if not args.compare_only:
        shutil.rmtree(output, ignore_errors=True)
    raw = demo_config(output, paths)
    raw["clustering"] = {"algorithm": "kmeans"}
    raw["execution"] = {
        "mode": "dask",
        "n_workers": args.workers,
        "memory_limit_per_worker": args.memory_per_worker,
        "partition_rows": args.partition_rows,
        "fit_rows": args.fit_rows,
        "work_folder": str(folder / "work"),
    }
    config = build_config(raw)
    from prefect.testing.utilities import prefect_test_harness

    from segflow.flows.segmentation import segmentation_flow

    with prefect_test_harness(server_startup_timeout=120):
        if not args.compare_only:
            with PeakMemory() as memory:
                flow_started = time.perf_counter()
                state = segmentation_flow(config=config, as_of=AS_OF, return_state=True)
                wall = time.perf_counter() - flow_started
                times = stage_times(state.state_details.flow_run_id)
            print(
                f"flow: {state.name} in {wall:.0f} s; peak RSS (driver + cluster) {memory.peak / 1e9:.2f} GB"
            )
            print(state.result(raise_on_failure=False))
            for name, seconds in times:
                print(f"  {name:<32} {seconds:8.1f} s", flush=True)
        print(same_as_single_process(folder, paths, output, args.fit_rows, config.clustering.seed))


if __name__ == "__main__":
    main()
