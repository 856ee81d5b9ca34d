"""Running it every night, under a real `prefect server`: serve and trigger deployments, backfill
and resume after a kill, two runs at once, run history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml

BIN = Path(sys.executable).parent
DAY = date(2026, 11, 1)


@pytest.fixture(scope="module")
def nightly_server(prefect_server) -> dict:
    """The session's real Prefect server, as in production: its API and a child's environment."""
    return {
        "api": prefect_server["PREFECT_API_URL"],
        "env": {**prefect_server, "PREFECT_LOGGING_LEVEL": "WARNING"},
    }


def write_config(folder: Path, warehouse: str, schema: str = "segments", n_customers: int = 900) -> Path:
    """Transactions of three kinds of buyers, and a config that publishes them to `warehouse`."""
    rng = np.random.default_rng(4)
    kind = rng.integers(0, 3, size=n_customers)
    orders = np.array([2, 12, 30])[kind] + rng.integers(0, 3, size=n_customers)
    owner = np.repeat(np.arange(n_customers), orders)
    days_ago = np.array([300, 40, 3])[kind][owner] + rng.integers(0, 60, size=len(owner))
    pd.DataFrame(
        {
            "buyer": owner + 5000,
            "at": pd.Timestamp(DAY) - pd.to_timedelta(days_ago, unit="D"),
            "value": np.array([20.0, 80.0, 300.0])[kind][owner] * rng.uniform(0.8, 1.2, len(owner)),
        }
    ).to_parquet(folder / "orders.parquet")
    config = {
        "sources": {
            "transactions": {
                "uri": str(folder / "orders.parquet"),
                "id_column": "buyer",
                "timestamp_column": "at",
                "amount_column": "value",
            }
        },
        "clustering": {"algorithm": "kmeans", "k": [2, 4]},
        "gate": {"stability_resamples": 1},
        "publish": {"warehouse": warehouse, "parquet": None, "schema": schema, "reports": None},
    }
    path = folder / "segflow.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def segflow(server: dict, *arguments: str, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "segflow"), *arguments],
        cwd=cwd,
        env=server["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finished(process: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def duckdb_rows(path: Path, sql: str) -> pd.DataFrame:
    for _ in range(50):  # a writer in another process may hold the file for a moment
        try:
            with duckdb.connect(str(path), read_only=True) as connection:
                return connection.sql(sql).df()
        except duckdb.IOException:
            time.sleep(0.2)
    raise AssertionError(f"{path} stayed locked")


def test_serve_registers_the_nightly_schedule_and_a_triggered_run_publishes(nightly_server, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    config = write_config(tmp_path, f"duckdb:///{warehouse}")
    server = segflow(
        nightly_server,
        "serve",
        "--config",
        str(config),
        "--timezone",
        "Europe/Berlin",
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deployments = []
        deadline = time.time() + 120
        while time.time() < deadline and len(deployments) < 4:
            response = httpx.post(f"{nightly_server['api']}/deployments/filter", json={}, timeout=10)
            deployments = response.json()
            time.sleep(1)
        assert server.poll() is None, server.communicate()[1][-2000:]
        by_name = {d["name"]: d for d in deployments if d["name"] in ("nightly", "on-demand")}
        nightly = by_name["nightly"]
        assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
        assert nightly["schedules"][0]["schedule"]["timezone"] == "Europe/Berlin"
        assert (
            len([d for d in deployments if d["name"] == "on-demand"]) == 3
        )  # segmentation, scoring, backfill

        trigger = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "segmentation/on-demand",
                "-p",
                "as_of=2026-11-01",
                "--watch",
                "--watch-timeout",
                "240",
            ],
            env=nightly_server["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trigger.returncode == 0, trigger.stdout[-2000:] + trigger.stderr[-2000:]
        runs = duckdb_rows(warehouse, "SELECT status, as_of FROM segments.segmentation_runs")
        assert runs["status"].tolist() == ["published"]
        assert runs["as_of"].dt.date.tolist() == [DAY]  # the parameter override reached the run
        assert duckdb_rows(warehouse, "SELECT count(*) AS n FROM segments.customer_segments")["n"][0] == 900

        # whoever may start a run cannot point its target elsewhere
        stolen = tmp_path / "stolen.duckdb"
        hostile = subprocess.run(
            [
                *(str(BIN / "prefect"), "deployment", "run", "segmentation/on-demand"),
                *("-p", "as_of=2026-11-02", "-p", f'overrides={{"publish.warehouse": "duckdb:///{stolen}"}}'),
                *("--watch", "--watch-timeout", "240"),
            ],
            env=nightly_server["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert hostile.returncode != 0
        failed = httpx.post(
            f"{nightly_server['api']}/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}},
            timeout=10,
        ).json()
        assert any("may not override publish.warehouse" in run["state"]["message"] for run in failed)
        assert not stolen.exists()
        assert duckdb_rows(warehouse, "SELECT count(*) AS n FROM segments.segmentation_runs")["n"][0] == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_two_runs_started_together_take_turns_and_match_a_single_run(nightly_server, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    config = write_config(tmp_path, f"duckdb:///{warehouse}")
    both = [
        segflow(nightly_server, "run", "--config", str(config), "--as-of", "2026-11-01", cwd=tmp_path)
        for _ in range(2)
    ]
    for process in both:
        code, output = finished(process)
        assert code == 0, output[-3000:]
    runs = duckdb_rows(
        warehouse,
        "SELECT started_at, finished_at, status FROM segments.segmentation_runs ORDER BY started_at",
    )
    assert runs["status"].tolist() == ["published", "published"]
    assert runs["finished_at"][0] <= runs["started_at"][1]  # the second started after the first ended

    single = tmp_path / "single"
    single.mkdir()
    single_config = write_config(single, f"duckdb:///{single / 'w.duckdb'}")
    code, output = finished(
        segflow(nightly_server, "run", "--config", str(single_config), "--as-of", "2026-11-01", cwd=single)
    )
    assert code == 0, output[-3000:]
    query = "SELECT customer_id, segment_key, segment_name, segment_since FROM segments.customer_segments"
    query += " ORDER BY 1"
    pd.testing.assert_frame_equal(duckdb_rows(warehouse, query), duckdb_rows(single / "w.duckdb", query))
    changes = "SELECT customer_id, to_segment_key, change_type FROM segments.segment_changes ORDER BY 1"
    pd.testing.assert_frame_equal(duckdb_rows(warehouse, changes), duckdb_rows(single / "w.duckdb", changes))

    history = subprocess.run(
        [str(BIN / "segflow"), "runs", "--config", str(config)],
        cwd=tmp_path,
        env=nightly_server["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert history.returncode == 0, history.stderr
    lines = history.stdout.strip().splitlines()
    assert lines[0].split()[:6] == ["run_id", "as_of", "status", "algorithm", "segments", "gate"]
    assert len(lines) == 3 and all("published" in line and "kmeans" in line for line in lines[1:])


def test_backfill_killed_midway_resumes_without_redoing_published_dates(
    nightly_server, tmp_path, pg_uri, pg_schema
):
    config = write_config(tmp_path, pg_uri, schema=pg_schema)

    def published() -> list[date]:
        with psycopg.connect(pg_uri) as connection:
            exists = connection.execute("SELECT to_regclass(%s)", (f'"{pg_schema}".segmentation_runs',))
            if exists.fetchone()[0] is None:
                return []
            rows = connection.execute(
                f'SELECT as_of FROM "{pg_schema}".segmentation_runs '
                "WHERE status = 'published' ORDER BY as_of"
            ).fetchall()
        return [row[0] for row in rows]

    four_days = ["backfill", "--config", str(config), "--from", "2026-11-01", "--to", "2026-11-04"]
    backfill = segflow(nightly_server, *four_days, cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 240
    while len(published()) < 2 and time.time() < deadline and backfill.poll() is None:
        time.sleep(0.3)
    os.killpg(backfill.pid, signal.SIGKILL)
    backfill.communicate()
    done_before = published()
    assert 2 <= len(done_before) < 4, done_before

    code, output = finished(segflow(nightly_server, *four_days, cwd=tmp_path))
    assert code == 0, output[-3000:]
    assert published() == [date(2026, 11, day) for day in range(1, 5)]  # each date once, none redone
    assert (
        f"already published, skipped (use --force to redo): {[d.isoformat() for d in done_before]}" in output
    )


def test_a_backfill_plan_skips_published_dates_and_never_rewinds():
    from segflow.flows.backfill import plan_backfill

    runs = [
        {"as_of": date(2026, 11, 2), "status": "published"},
        {"as_of": date(2026, 11, 3), "status": "rejected"},
        {"as_of": date(2026, 11, 4), "status": "published"},
    ]
    to_run, done, too_old = plan_backfill(date(2026, 11, 1), date(2026, 11, 6), runs, force=False)
    assert to_run == [date(2026, 11, 5), date(2026, 11, 6)]
    assert done == [date(2026, 11, 2), date(2026, 11, 4)]
    assert too_old == [date(2026, 11, 1), date(2026, 11, 3)]  # unpublished, before the current one
    to_run, done, too_old = plan_backfill(date(2026, 11, 4), date(2026, 11, 5), runs, force=True)
    assert (to_run, done, too_old) == ([date(2026, 11, 4), date(2026, 11, 5)], [], [])
