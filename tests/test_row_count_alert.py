"""The record-count alert: each source's rows read against the median of the last published runs, a
warning by default and a rejection (exit 4) when made critical."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from segflow.cli import main
from segflow.config import GateConfig, build_config
from segflow.flows.segmentation import segmentation_flow
from segflow.tasks.validate import evaluate_gate, published_rows_read, row_count_checks
from tests.helpers import three_groups

NIGHTS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]


def test_a_source_at_half_its_usual_rows_fails_the_rule_as_a_warning_by_default():
    history = [{"orders": 1000, "customers": 90}, {"orders": 1100}, {"orders": 980}, {"orders": 5000}]
    (orders, customers), measures = row_count_checks({"orders": 546, "customers": 91}, history, GateConfig())
    assert not orders.passed and orders.severity == "warning" and orders.value == pytest.approx(0.48)
    assert "546 rows read, 48% below the median of the last 4 published runs (1,050)" in orders.message
    assert customers.passed and measures["customers"]["runs"] == 1
    assert measures["orders"]["median"] == 1050

    checks, _ = row_count_checks({"orders": 546}, history, GateConfig(row_count_runs=1))
    assert checks[0].value == pytest.approx(0.454)  # only the newest run counts
    checks, _ = row_count_checks({"orders": 1250}, history, GateConfig())
    assert checks[0].passed  # 19% above: within the default 30%
    (unmeasured,), _ = row_count_checks({"refunds": 3}, history, GateConfig())
    assert unmeasured.passed and unmeasured.value is None  # no history for this source yet

    critical = GateConfig(severity={"max_row_count_change": "critical"})
    decision = evaluate_gate(
        np.repeat([0, 1], 50), {"silhouette": 0.5}, {}, critical, rows_read={"orders": 546}, history=history
    )
    assert decision.status == "rejected" and any("48% below" in r for r in decision.reasons)
    assert critical.severity["max_size_shift"] == "warning"  # the other rules keep their defaults


def test_only_published_runs_make_the_history():
    runs = pd.DataFrame(
        {
            "status": ["rejected", "published", "scored", "published", "failed_contract"],
            "rows_read": ['{"a": 1}', '{"a": 100}', '{"a": 5}', '{"a": 90}', '{"a": 2}'],
        }
    )
    assert published_rows_read(runs) == [{"a": 100}, {"a": 90}]


@pytest.mark.usefixtures("prefect_harness")
def test_a_half_loaded_source_warns_and_with_a_critical_setting_the_run_exits_4(tmp_path, capsys):
    source, warehouse = tmp_path / "members.parquet", tmp_path / "w.duckdb"
    raw = {
        "sources": {"customers": {"uri": str(source), "id_column": "member"}},
        "clustering": {"algorithm": "kmeans", "k": [3, 3]},
        "publish": {"warehouse": f"duckdb:///{warehouse}", "parquet": None, "reports": None},
    }
    three_groups(600, 3, "member").to_parquet(source)
    for night in NIGHTS[:2]:
        segmentation_flow(config=build_config(raw), as_of=night)

    # half of the usual rows: the extract stopped halfway
    three_groups(600, 3, "member").head(300).to_parquet(source)
    raw["gate"] = {"severity": {"max_row_count_change": "critical"}}
    (tmp_path / "segflow.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", "--config", str(tmp_path / "segflow.yaml"), "--as-of", str(NIGHTS[2])]) == 4
    assert "source 'customers': 300 rows read, 50% below the median" in capsys.readouterr().err

    del raw["gate"]
    summary = segmentation_flow(config=build_config(raw), as_of=NIGHTS[2])
    assert summary["status"] == "published"
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        runs = connection.sql(
            "SELECT as_of, status, gate_reasons FROM segments.segmentation_runs ORDER BY started_at"
        ).fetchall()
    assert [status for _, status, _ in runs] == ["published", "published", "rejected", "published"]
    (warning,) = [r for r in json.loads(runs[3][2]) if "rows read" in r]
    assert warning.startswith("source 'customers': 300 rows read, 50% below the median of the last 2")
    assert warning.endswith("(warning)")
