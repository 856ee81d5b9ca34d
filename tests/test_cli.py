"""The `segflow` command as users run it: exit codes, messages, and the embedded demo end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

SEGFLOW = [str(Path(sys.executable).parent / "segflow")]  # the installed console script


def segflow(*arguments: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [*SEGFLOW, *arguments], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "--set", "clustering.algorithm=magic"], "'clustering.algorithm'"),
        (["run", "--set", "clustering.algoritm=kmeans"], "'clustering.algoritm' is not known"),
        (["run", "--set", "publish.schema=x; DROP TABLE y"], "'publish.schema'"),
        (["run", "--as-of", "26/11/2026"], "--as-of expects YYYY-MM-DD"),
        (["run", "--config", "absent.yaml"], "cannot read config file absent.yaml"),
        (["fly"], "invalid choice"),
        (["run", "--demo", "bank"], "argument --demo: invalid choice: 'bank'"),
        (["run", "--demo", "retail", "--config", "x.yaml"], "not allowed with argument"),
    ],
)
def test_usage_and_config_errors_exit_2_before_reading_data(tmp_path, arguments, message):
    result = segflow(*arguments, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "segflow_output").exists()  # no data was generated or read


def distinct_demo_customers(root: Path) -> int:
    customers = pq.read_table(root / "demo_data" / "customers.parquet", columns=["customer_id"])
    return len(set(customers.column("customer_id").to_pylist()))


def test_demo_runs_end_to_end_and_a_rerun_keeps_one_row_per_customer(tmp_path):
    first = segflow("run", "--as-of", "2026-11-01", cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "segflow: published" in first.stdout
    # the temporary server segflow starts while it writes the data is the one the flow uses: a second
    # one, started by Prefect's client in the flow, would be logged as "Starting temporary server"
    # (segflow's own start logs that line before Prefect's logging is set up, so it is not shown)
    assert "starting Prefect's temporary server" in first.stderr
    assert "Starting temporary server" not in first.stdout + first.stderr
    # time as users see it: each stage's seconds in the process, then the whole process's wall time
    timing = first.stdout.split("segflow: time (seconds):\n")[1].splitlines()
    seconds = {line[:30].strip(): float(line[30:]) for line in timing if line.startswith("  ")}
    # (the clustering is missing when its result comes from Prefect's cache: same inputs, same code)
    assert {"ingest", "quality", "features", "preprocess", "profile", "publish"} <= set(seconds)
    process = seconds.pop("whole process (wall)")
    assert 0 < sum(seconds.values()) < process
    root = tmp_path / "segflow_output"
    expected = distinct_demo_customers(root)
    assert expected == 20_000

    def published_rows() -> tuple[int, int]:
        with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
            warehouse = connection.sql(
                "SELECT count(*), count(DISTINCT customer_id) FROM segments.customer_segments"
            ).fetchall()[0]
        parquet = pq.read_table(root / "parquet" / "current" / "customer_segments.parquet")
        assert warehouse[0] == warehouse[1]
        return warehouse[0], parquet.num_rows

    assert published_rows() == (expected, expected)
    data_written = (root / "demo_data" / "transactions.parquet").stat().st_mtime_ns

    second = segflow("run", "--as-of", "2026-11-01", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert published_rows() == (expected, expected)
    assert (root / "demo_data" / "transactions.parquet").stat().st_mtime_ns == data_written


def test_a_realistic_demo_reads_and_writes_in_its_own_folder_at_the_day_its_data_ends(tmp_path, monkeypatch):
    from segflow.cli import build_parser, demo_as_of, load_run_config, write_demo_data
    from segflow.synthetic import RETAIL_END

    monkeypatch.chdir(tmp_path)
    retail = load_run_config(None, [], demo="retail")
    root = tmp_path / "segflow_output" / "retail"
    assert retail.sources.transactions.uri == str(root / "retail_data" / "orders.parquet")
    assert retail.publish.warehouse == f"duckdb:///{root / 'warehouse.duckdb'}"
    assert retail.features.categorical == [
        "acquisition_channel",
        "country",
        "first_order_category",
        "loyalty_member",
    ]
    assert not root.exists()  # the config alone generates no data

    parse = build_parser().parse_args
    assert demo_as_of(parse(["run", "--demo", "retail"])) == RETAIL_END
    assert str(demo_as_of(parse(["run", "--demo", "retail", "--as-of", "2026-01-31"]))) == "2026-01-31"
    assert demo_as_of(parse(["run", "--demo", "telecom"])) is None  # a customer table: no date of its own
    assert demo_as_of(parse(["run"])) is None  # the planted demo runs as of today, as before

    telecom = load_run_config(None, ["clustering.k=[4,6]"], demo="telecom")
    write_demo_data("telecom")
    assert (tmp_path / "segflow_output" / "telecom" / "telecom_data" / "telco_customers.parquet").exists()
    assert telecom.features.numeric == ["tenure", "monthly_charges", "total_charges"]
    assert list(telecom.clustering.k) == [4, 6]


def test_a_temporary_server_that_does_not_start_fails_the_run_in_one_line(tmp_path, small_demo, monkeypatch):
    from segflow.demo import demo_config

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(tmp_path / "out", small_demo)))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))  # a fresh home: migrations take seconds
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "1")
    result = segflow("run", "--config", str(config), cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "segflow: Prefect's temporary server did not start: RuntimeError: Timed out" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()  # no run began, nothing was written


def test_a_run_that_fails_before_its_flow_starts_stops_the_temporary_server(tmp_path, monkeypatch):
    import psutil

    (tmp_path / "segflow_output").write_text("a file where the demo writes its folder")
    home = str(tmp_path / ".prefect")
    monkeypatch.setenv("PREFECT_HOME", home)
    result = segflow("run", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "starting Prefect's temporary server" in result.stderr
    assert "segflow_output" in result.stderr  # the cause, an unexpected error with its traceback
    servers = [
        process.info["pid"]
        for process in psutil.process_iter(["pid", "environ"])
        if (process.info["environ"] or {}).get("PREFECT_HOME") == home
    ]
    assert servers == [], "the temporary server outlived the segflow process"
