"""The first minute, side by side: how long after its process starts `segflow run` reaches its first
task, against a minimal one-task Prefect flow run the same way (on demand, not CI).

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--fresh 1]

Both run as subprocesses against one Prefect server (PREFECT_API_URL if set, else a `prefect server
start` this script starts in a temporary Prefect home), alternating, `--repeats` times each. A run's
time to its first task is that task run's start time (read from the server) minus the moment the
process was started. segflow runs the embedded demo's config on a 10,000-customer copy of the demo
data, so that generating data is not part of its start.

`--fresh N` also times N first runs on a fresh machine as users meet it: no server, a new Prefect
home each (Prefect's temporary server creates its database), the whole process's wall time of the
minimal flow against `segflow run` on the embedded demo (which generates its data first).

tests/test_startup.py holds the 1 s margin with this file's MINIMAL_FLOW and `time_to_first_task`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from segflow.demo import demo_config, demo_data_paths, generate_demo_tables

BIN = Path(sys.executable).parent
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, environment: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`prefect server start` in its own session, and its API URL once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**environment, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false"},
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return server, url
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit(f"the Prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def first_task_start(flow_name: str, started_after: float) -> float:
    """Start time (epoch seconds) of the first task run of the newest run of a flow."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )[0]
        deadline = time.monotonic() + 30  # task runs reach the server as events, a moment later
        while True:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
            starts = [run.start_time.timestamp() for run in task_runs if run.start_time is not None]
            if starts or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    first = min(starts)
    if first < started_after:
        raise SystemExit(f"the newest {flow_name} run started before this process: stale")
    return first


def time_to_first_task(command: list[str], flow_name: str, cwd: Path, environment: dict[str, str]) -> float:
    """Seconds from starting the process to the start of its flow's first task run."""
    started = time.time()
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return first_task_start(flow_name, started) - started


def wall_seconds(command: list[str], cwd: Path, environment: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def demo_copy(folder: Path, customers: int) -> Path:
    """The demo's config file, on demo data of the given size written under folder."""
    paths = demo_data_paths(folder / "data")
    paths["customers"].parent.mkdir(parents=True)
    for table, path in zip(generate_demo_tables(n_customers=customers), paths.values(), strict=True):
        pq.write_table(table, path)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(folder / "out", paths)))
    return config


def side_by_side(repeats: int, workspace: Path, environment: dict[str, str]) -> None:
    minimal = workspace / "minimal_flow.py"
    minimal.write_text(MINIMAL_FLOW)
    config = demo_copy(workspace / "demo", 10_000)
    commands = {
        "minimal-startup": [sys.executable, str(minimal)],
        "segmentation": [str(BIN / "segflow"), "run", "--config", str(config)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for repeat in range(repeats + 1):  # the first round warms the server and the file cache
        for name, command in commands.items():
            seconds = time_to_first_task(command, name, workspace, environment)
            if repeat:
                times[name].append(seconds)
    gaps = [s - m for s, m in zip(times["segmentation"], times["minimal-startup"], strict=True)]
    print(f"\n## Time to the first task, server running ({repeats} runs each, after a warm-up round)\n")
    print("| flow | median (s) | runs (s) |\n| --- | ---: | --- |")
    for name, found in (*times.items(), ("gap: segflow - minimal", gaps)):
        print(f"| {name} | {statistics.median(found):.2f} | {', '.join(f'{s:.2f}' for s in found)} |")


def fresh_first_runs(runs: int, workspace: Path, environment: dict[str, str]) -> None:
    """Whole-process wall time on a fresh Prefect home without a server: the demo's first run."""
    minimal = workspace / "minimal_flow.py"
    rows = []
    for run in range(runs):
        homes = {name: workspace / f"fresh-{run}-{name}" for name in ("minimal", "segflow")}
        for home in homes.values():
            home.mkdir()
        fresh = {k: v for k, v in environment.items() if k != "PREFECT_API_URL"}
        # Prefect's default 20 s for its temporary server to answer is too short for a fresh home's
        # migrations on this machine: the minimal flow failed with "Timed out while attempting to
        # connect to ephemeral Prefect API server". Both get the 120 s segflow sets for itself.
        fresh["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
        minimal_seconds = wall_seconds(
            [sys.executable, str(minimal)], homes["minimal"], {**fresh, "PREFECT_HOME": str(homes["minimal"])}
        )
        segflow_seconds = wall_seconds(
            [str(BIN / "segflow"), "run"], homes["segflow"], {**fresh, "PREFECT_HOME": str(homes["segflow"])}
        )
        rows.append((minimal_seconds, segflow_seconds))
    print("\n## First run on a fresh Prefect home, no server (whole process wall time)\n")
    print("| run | minimal flow (s) | segflow run, demo (s) | gap (s) |\n| ---: | ---: | ---: | ---: |")
    for number, (minimal_seconds, segflow_seconds) in enumerate(rows, 1):
        gap = segflow_seconds - minimal_seconds
        print(f"| {number} | {minimal_seconds:.1f} | {segflow_seconds:.1f} | {gap:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fresh", type=int, default=0, help="first runs on a fresh Prefect home to time")
    arguments = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    with tempfile.TemporaryDirectory(prefix="segflow-bench-startup-") as folder:
        workspace = Path(folder)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        environment |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(workspace)}
        server = None
        url = os.environ.get("PREFECT_API_URL")
        if url is None:
            server, url = start_server(workspace, environment)
        environment["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"] = url
        try:
            side_by_side(arguments.repeats, workspace, environment)
            if arguments.fresh:
                fresh_first_runs(arguments.fresh, workspace, environment)
        finally:
            if server is not None:
                stop_server(server)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
