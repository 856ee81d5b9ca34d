"""`segflow run --dry-run`: everything but publishing, with what a real run would change."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from segflow.cli import main
from segflow.config import build_config
from segflow.demo import demo_config
from segflow.flows.segmentation import segmentation_flow

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)


def target_bytes(folder: Path) -> dict[str, str]:
    """Every file of the targets (the DuckDB file, the Parquet folder and its links) by content hash."""
    found = {}
    for path in sorted([folder / "warehouse.duckdb", *(folder / "parquet").rglob("*")]):
        if path.is_symlink():
            found[str(path)] = f"-> {path.readlink()}"
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_a_dry_run_writes_nothing_and_announces_what_the_real_run_then_does(tmp_path, small_demo):
    raw = demo_config(tmp_path, small_demo)
    raw["clustering"] = {"algorithm": "kmeans", "k": [3, 6]}
    segmentation_flow(config=build_config(raw), as_of=DAY1)
    raw["clustering"]["k"] = [4, 4]  # a config change: the kind of night a dry run is for
    config = build_config(raw)
    before = target_bytes(tmp_path)

    preview = segmentation_flow(config=config, as_of=DAY2, dry_run=True)

    assert target_bytes(tmp_path) == before
    assert preview["status"] == "dry_run" and preview["gate"] == "published"
    assert preview["moved"] > 0 and preview["customers"] == 3000
    published = segmentation_flow(config=config, as_of=DAY2)
    assert target_bytes(tmp_path) != before
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        done = dict(
            connection.sql(
                "SELECT change_type, count(*) FROM segments.segment_changes WHERE as_of = ? GROUP BY ALL",
                params=[DAY2],
            ).fetchall()
        )
        active = {
            row[0]
            for row in connection.sql(
                "SELECT segment_key FROM segments.segment_definitions WHERE active"
            ).fetchall()
        }
    assert (preview["entered"], preview["moved"], preview["left"]) == (
        done.get("entered", 0),
        done.get("moved", 0),
        done.get("left", 0),
    )
    assert published["changes"] == preview["entered"] + preview["moved"] + preview["left"]
    assert {row["segment_key"] for row in preview["by_segment"]} >= active
    assert sum(row["moved_in"] for row in preview["by_segment"]) == preview["moved"]


def test_a_dry_run_of_a_rejected_segmentation_exits_4_shows_the_verdict_and_writes_nothing(
    tmp_path, small_demo, capsys
):
    raw = demo_config(tmp_path, {name: str(path) for name, path in small_demo.items()})
    raw["clustering"] = {"algorithm": "kmeans", "k": [3, 6]}
    raw["gate"] = {"min_silhouette": 0.95}
    (tmp_path / "segflow.yaml").write_text(yaml.safe_dump(raw))
    code = main(["run", "--config", str(tmp_path / "segflow.yaml"), "--as-of", "2026-11-01", "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 4
    assert "gate REJECTED" in printed and "silhouette" in printed and "would exit 4" in printed
    assert "3,000 entering" in printed
    assert not (tmp_path / "warehouse.duckdb").exists() and not (tmp_path / "parquet").exists()


def test_published_files_and_reports_are_not_readable_by_other_users(tmp_path, small_demo):
    raw = demo_config(tmp_path, small_demo)
    raw["clustering"] = {"algorithm": "kmeans", "k": [3, 6]}
    segmentation_flow(config=build_config(raw), as_of=DAY1)
    written = [
        tmp_path / "warehouse.duckdb",
        *(tmp_path / "parquet").rglob("*"),
        *(tmp_path / "reports").rglob("*"),
    ]
    assert len(written) > 10
    open_to_others = [
        f"{path} {oct(path.lstat().st_mode & 0o777)}"
        for path in written
        if not path.is_symlink() and path.lstat().st_mode & 0o007
    ]
    assert open_to_others == []
