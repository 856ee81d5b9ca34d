"""The first minute: a local run imports only what it uses, and `segflow run` reaches its first task
about as soon as a minimal one-task Prefect flow does. Speeds are measured in benchmarks/
(bench_startup.py); here only the margin between the two, run side by side, is held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from segflow.demo import demo_config

# modules a local run loads only when it uses them: at cluster time (scipy, sklearn), for a density
# method (hdbscan), when the report renders (matplotlib), when a contract is checked (GX), in Dask
# mode (dask, distributed) and when lineage is configured (openlineage)
HEAVY = (
    "sklearn",
    "scipy",
    "matplotlib",
    "hdbscan",
    "dask",
    "distributed",
    "prefect_dask",
    "great_expectations",
    "openlineage",
)
MINIMAL_FLOW = """
from prefect import flow, task


@task
def first():
    return 1


@flow(name="minimal-startup")
def minimal():
    return first()


if __name__ == "__main__":
    minimal()
"""
# segflow may reach its first task this much later than the minimal flow: the 1 s of issue 17 and
# room for the noise of a shared 2-core machine
FIRST_TASK_MARGIN = 1.5


def test_importing_the_flow_and_the_command_line_loads_no_heavy_module():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; import segflow.cli, segflow.flows.segmentation; "
            f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(loaded.stdout) == [], "loaded at import, before a local run uses them"


def first_task_seconds(command: list[str], flow_name: str, cwd: Path, environment: dict[str, str]) -> float:
    """Seconds from starting the process to the start of the first task run of its flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    started = time.time()
    subprocess.run(command, cwd=cwd, env=environment, capture_output=True, timeout=300)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_DESC
        )[0]
        deadline = time.monotonic() + 30  # task runs reach the server as events, a moment later
        while True:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
            starts = [run.start_time.timestamp() for run in task_runs if run.start_time is not None]
            if starts or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert starts and min(starts) > started, f"no task run of {flow_name} started by this test"
    return min(starts) - started


@pytest.mark.flow
@pytest.mark.xfail(
    reason="issue 17's 1 s margin is not met yet: pandas, numpy, pyarrow and duckdb load with the stage "
    "modules, Prefect builds the flow's parameter schema and imports FastAPI to serialise the config, "
    "and the writer slot takes two API calls (benchmarks/RESULTS.md, 'The first minute')",
    strict=False,
)
def test_segflow_reaches_its_first_task_within_a_second_of_a_minimal_flow(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "minimal_flow.py").write_text(MINIMAL_FLOW)
    # the demo's config on sources that do not exist: everything before the first task (compiling
    # the contracts) is a real run's, and the run then ends on the missing source instead of working
    absent = {"customers": tmp_path / "absent-c.parquet", "transactions": tmp_path / "absent-t.parquet"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(demo_config(tmp_path / "out", absent)))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environment |= {"PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path / "home")}
    commands = {
        "minimal-startup": [sys.executable, str(tmp_path / "minimal_flow.py")],
        "segmentation": [str(Path(sys.executable).parent / "segflow"), "run", "--config", "config.yaml"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(2):  # side by side, twice; the faster of each pair of runs counts
        for name, command in commands.items():
            seconds[name].append(first_task_seconds(command, name, tmp_path, environment))
    gap = min(seconds["segmentation"]) - min(seconds["minimal-startup"])
    assert gap <= FIRST_TASK_MARGIN, seconds
