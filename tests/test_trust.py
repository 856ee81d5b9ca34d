"""Segments people can trust: stable keys across retrains, an exact change feed, the gate and the report."""

from __future__ import annotations

import re
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from segflow.config import build_config
from segflow.errors import GateRejected
from segflow.flows.segmentation import segmentation_flow

DAY1 = date(2026, 11, 1)
DAY2 = DAY1 + timedelta(days=1)
pytestmark = pytest.mark.usefixtures("prefect_harness")
CENTRES = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8], [8, 8, 8]], dtype=float)


def planted_customers(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers around five well-separated behaviour profiles (and which profile each has)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, len(CENTRES), size=n)
    values = CENTRES[group] + rng.normal(0, 1.0, size=(n, 3))
    frame = pd.DataFrame(values, columns=["visits", "spend", "tenure"]).assign(account=np.arange(n) + 10_000)
    return frame, group


def run(tmp_path, customers: pd.DataFrame, as_of: date, seed: int, **gate):
    path = tmp_path / f"customers-{as_of}-{seed}.parquet"
    customers.to_parquet(path)
    config = build_config(
        {
            "sources": {"customers": {"uri": str(path), "id_column": "account"}},
            "preprocess": {"scaler": "standard"},
            "clustering": {"algorithm": "kmeans", "k": [2, 8], "seed": seed},
            "gate": gate,
            "publish": {
                "warehouse": f"duckdb:///{tmp_path / 'w.duckdb'}",
                "parquet": None,
                "reports": str(tmp_path / "reports"),
            },
        }
    )
    return segmentation_flow(config=config, as_of=as_of)


def query(tmp_path, sql: str, params=None) -> pd.DataFrame:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        return connection.sql(sql, params=params).df()


def snapshot(tmp_path) -> pd.Series:
    segments = query(tmp_path, "SELECT customer_id, segment_key FROM segments.customer_segments")
    return segments.set_index("customer_id")["segment_key"].sort_index()


def test_a_retrain_with_another_seed_moves_nobody(tmp_path):
    customers, _ = planted_customers()
    run(tmp_path, customers, DAY1, seed=1)
    first = snapshot(tmp_path)
    run(tmp_path, customers, DAY2, seed=2)
    pd.testing.assert_series_equal(first, snapshot(tmp_path))
    changes = query(tmp_path, "SELECT * FROM segments.segment_changes WHERE as_of = ?", [DAY2])
    assert changes.empty
    since = query(tmp_path, "SELECT DISTINCT segment_since FROM segments.customer_segments")
    assert list(pd.to_datetime(since["segment_since"]).dt.date) == [DAY1]


def test_when_two_percent_change_behaviour_only_they_move(tmp_path):
    customers, group = planted_customers()
    run(tmp_path, customers, DAY1, seed=1)
    first = snapshot(tmp_path)

    rng = np.random.default_rng(7)
    movers = rng.choice(len(customers), size=len(customers) // 50, replace=False)
    changed = customers.copy()
    new_group = (group[movers] + 1) % len(CENTRES)  # each mover adopts another profile
    changed.loc[movers, ["visits", "spend", "tenure"]] = CENTRES[new_group] + rng.normal(
        0, 1.0, (len(movers), 3)
    )
    run(tmp_path, changed, DAY2, seed=2)
    second = snapshot(tmp_path)

    moved = set(second.index[second != first])
    planted = set(customers.loc[movers, "account"])
    assert len(moved) / len(customers) == pytest.approx(0.02, abs=0.005)
    assert len(moved & planted) >= 0.95 * len(planted)
    changes = query(
        tmp_path,
        "SELECT customer_id, from_segment_key, to_segment_key, change_type "
        "FROM segments.segment_changes WHERE as_of = ?",
        [DAY2],
    )
    assert set(changes["customer_id"]) == moved  # the feed holds exactly the moves
    assert set(changes["change_type"]) == {"moved"}
    for row in changes.itertuples():
        assert (first[row.customer_id], second[row.customer_id]) == (row.from_segment_key, row.to_segment_key)


def test_no_structure_is_rejected_then_an_override_publishes_and_is_recorded(tmp_path):
    customers, _ = planted_customers()
    run(tmp_path, customers, DAY1, seed=1)
    before = snapshot(tmp_path)
    rng = np.random.default_rng(3)
    noise = customers.assign(
        visits=rng.uniform(size=4000), spend=rng.uniform(size=4000), tenure=rng.uniform(size=4000)
    )

    with pytest.raises(GateRejected) as raised:
        run(tmp_path, noise, DAY2, seed=1, min_silhouette=0.5)
    assert raised.value.exit_code == 4 and "silhouette" in str(raised.value)
    pd.testing.assert_series_equal(before, snapshot(tmp_path))
    rejected = query(
        tmp_path,
        "SELECT status, gate_passed, gate_reasons FROM segments.segmentation_runs WHERE as_of = ?",
        [DAY2],
    )
    assert rejected["status"].tolist() == ["rejected"] and not rejected["gate_passed"][0]
    assert "silhouette" in rejected["gate_reasons"][0]

    run(tmp_path, noise, DAY2, seed=1, min_silhouette=0.5, override="campaign freeze, reviewed by J. Doe")
    published = query(
        tmp_path,
        "SELECT status, gate_passed, gate_override, message FROM segments.segmentation_runs "
        "WHERE as_of = ? ORDER BY started_at",
        [DAY2],
    )
    assert published["status"].tolist() == ["rejected", "published"]
    published = published.iloc[[1]].reset_index(drop=True)
    assert not published["gate_passed"][0]
    assert published["gate_override"][0] == "campaign freeze, reviewed by J. Doe"


def test_the_report_is_self_contained_and_shows_the_charts(tmp_path):
    customers, _ = planted_customers()
    run(tmp_path, customers, DAY1, seed=1)
    run(tmp_path, customers.assign(visits=customers["visits"] * 1.01), DAY2, seed=1)
    reports = sorted((tmp_path / "reports").glob("segments-*.html"))
    assert [r.name[:19] for r in reports] == ["segments-2026-11-01", "segments-2026-11-02"]
    html = reports[-1].read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)  # nothing fetched from a network
    assert "<script" not in html
    for chart in ("segment sizes", "2-D projection", "silhouette by segment", "migration matrix", "k search"):
        assert re.search(
            rf'<img src="data:image/png;base64,[A-Za-z0-9+/=]{{200,}}" alt="{chart}[^"]*">', html
        )
    assert "Movement since the last publication" in html
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "10000" not in text and "10001" not in text  # no customer ids: aggregates only
