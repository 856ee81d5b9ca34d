"""The Dask execution mode runs the whole flow on a LocalCluster and segments as the local mode does.

How the two runs are made comparable: the 3,000 customers are fewer than `execution.fit_rows`, so
dask mode's fit sample is every customer, in source order, after the same contract checks and
features (computed per partition of customers). Preprocessing, scaling and clustering then see the
same table as the single-process run, with the same seed, and must give the same segments; the
partitioned assignment must agree with the fit on every customer. The sources are split into
several partitions (partition_rows 10,000 against ~36,000 transactions) so that the per-partition
checks and the co-partitioning by customer id are exercised.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from segflow.config import build_config
from segflow.demo import demo_config as segflow_demo_config
from segflow.flows.segmentation import segmentation_flow

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
AS_OF = date(2026, 11, 1)


def demo_config(small_demo, folder, execution: dict):
    raw = segflow_demo_config(folder, small_demo)
    raw["clustering"] = {"algorithm": "kmeans", "k": [3, 6], "fit_sample_size": 1500}
    raw["gate"] = {"stability_resamples": 1}
    raw["publish"].update(parquet=str(folder / "pq"), reports=str(folder / "r"))
    raw["publish"]["warehouse"] = f"duckdb:///{folder / 'w.duckdb'}"
    raw["execution"] = execution
    return build_config(raw)


def published(folder) -> tuple[pd.DataFrame, dict]:
    with duckdb.connect(str(folder / "w.duckdb"), read_only=True) as connection:
        segments = connection.sql(
            "SELECT customer_id, segment_key FROM segments.customer_segments ORDER BY customer_id"
        ).df()
        run = connection.sql(
            "SELECT status, rows_read, rows_quarantined, rows_published FROM segments.segmentation_runs"
        ).df()
        quarantine = connection.sql(
            "SELECT source, rule, row_number FROM segments.quarantine ORDER BY source, rule, row_number"
        ).df()
    return segments, {"run": run.iloc[0].to_dict(), "quarantine": quarantine}


def test_dask_mode_publishes_the_segments_of_local_mode(tmp_path, small_demo):
    local_folder, dask_folder = tmp_path / "local", tmp_path / "dask"
    local = segmentation_flow(config=demo_config(small_demo, local_folder, {}), as_of=AS_OF)
    execution = {
        "mode": "dask",
        "n_workers": 2,
        "memory_limit_per_worker": "1.5GB",
        "partition_rows": 10_000,
        "work_folder": str(tmp_path / "work"),
    }
    partitioned = segmentation_flow(config=demo_config(small_demo, dask_folder, execution), as_of=AS_OF)

    assert partitioned["status"] == "published"
    assert partitioned["customers"] == local["customers"] > 2900
    local_segments, local_facts = published(local_folder)
    dask_segments, dask_facts = published(dask_folder)
    assert list(dask_segments["customer_id"]) == list(local_segments["customer_id"])
    assert adjusted_rand_score(local_segments["segment_key"], dask_segments["segment_key"]) == 1.0
    assert (dask_segments["segment_key"] == local_segments["segment_key"]).all()
    # the same rows read and quarantined, by the same rules, with the same source row numbers
    for fact in ("rows_read", "rows_quarantined", "rows_published"):
        assert dask_facts["run"][fact] == local_facts["run"][fact], fact
    pd.testing.assert_frame_equal(dask_facts["quarantine"], local_facts["quarantine"])
    # the published Parquet snapshot is the warehouse's
    snapshot = pq.read_table(dask_folder / "pq" / "current" / "customer_segments.parquet").to_pandas()
    assert len(snapshot) == len(dask_segments)
