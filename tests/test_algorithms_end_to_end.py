"""Every clustering algorithm runs through the whole flow on demo-shaped data and ends clearly."""

from __future__ import annotations

from datetime import date
from typing import get_args

import duckdb
import pytest

from segflow.clustering import ALGORITHMS as REGISTRY
from segflow.config import ClusteringConfig, build_config
from segflow.demo import demo_config
from segflow.errors import GateRejected
from segflow.flows.segmentation import segmentation_flow

ALGORITHMS = [
    name for name in get_args(ClusteringConfig.model_fields["algorithm"].annotation) if name != "auto"
]
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algorithm_runs_end_to_end(algorithm, tmp_path, small_demo):
    warehouse = tmp_path / "w.duckdb"
    raw = demo_config(tmp_path, small_demo)
    raw["clustering"] = {"algorithm": algorithm, "fit_sample_size": 1500}
    raw["gate"] = {"stability_resamples": 1}
    raw["publish"].update(warehouse=f"duckdb:///{warehouse}", parquet=None, reports=str(tmp_path / "r"))
    config = build_config(raw)
    try:
        summary = segmentation_flow(config=config, as_of=date(2026, 11, 1))
        published = True
    except GateRejected as rejection:
        published, summary = False, {"reasons": rejection.reasons}
        assert rejection.reasons  # a rejection always says why
    if REGISTRY[algorithm].family != "density":
        # the personas are compact groups: every algorithm that takes k must find a split the gate
        # accepts (density methods may not: the one-hot channel splits the demo into density sheets)
        assert published, f"{algorithm} rejected on demo-shaped data: {summary.get('reasons')}"
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        run = connection.sql(
            "SELECT status, algorithm, n_segments, gate_reasons FROM segments.segmentation_runs"
        ).fetchall()
        tables = {row[0] for row in connection.sql("SHOW ALL TABLES").fetchall()}
    assert run[0][1] == algorithm and run[0][2] >= 1
    if published:
        assert run[0][0] == "published" and summary["customers"] > 2900
    else:
        assert run[0][0] == "rejected" and "customer_segments" not in tables
    assert list((tmp_path / "r").glob("segments-*.html"))  # the report explains either outcome
