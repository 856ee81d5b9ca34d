"""`segflow run` as users wait for it: the whole process's wall time and peak RSS (on demand, not CI).

    .venv/bin/python benchmarks/bench_process.py [--customers 10000 100000 1000000] [--repeats 1]

For each size it generates (once, cached under benchmarks/data/ by bench_pipeline.py's `dataset`) the demo
data with segflow/demo.py's generator (about ten transactions per customer), then runs `segflow run`
on the demo's config for that data: every contract rule on every row of both sources, RFM features,
the k search, the gate, profiles, the report, publishing to DuckDB and Parquet. Each run starts in a
new Prefect home (nothing cached) against a running Prefect server: PREFECT_API_URL if set, else a
`prefect server start` this script starts. Wall time is from starting the process to its exit; peak
RSS and CPU seconds are the child's own (`os.wait4`): user time, and system time, which is mostly the
kernel handing the process fresh memory (on a VM that returns freed memory to its host, a large
share of the run: benchmarks/RESULTS.md). Next to them, the stage times the run printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pyarrow.parquet as pq
import yaml
from bench_pipeline import dataset
from bench_startup import start_server, stop_server

from segflow.demo import demo_config, demo_data_paths

TARGETS = {100_000: 10.0, 1_000_000: 30.0}  # issue 17: process wall time, seconds


class ProcessRun(NamedTuple):
    """What a child process cost, from its start to its exit."""

    wall_seconds: float
    peak_rss_gb: float
    user_seconds: float  # CPU time of all its threads
    system_seconds: float
    exit_code: int


def generated(customers: int) -> Path:
    """The demo data for that many customers (generated once, cached), generated in a child process
    so that this one never holds a generation: Linux carries a parent's peak RSS into the children
    it starts, and a 10k run started after a 1M generation here read 3.8 GiB."""
    program = f"from bench_pipeline import dataset; dataset({int(customers)})"
    subprocess.run([sys.executable, "-c", program], cwd=Path(__file__).parent, check=True)
    return dataset(customers)


def measured_run(command: list[str], environment: dict[str, str], cwd: Path) -> ProcessRun:
    """A child process run to its end; its output is left in `cwd`/stdout.txt and stderr.txt."""
    started = time.monotonic()
    with (cwd / "stdout.txt").open("w") as stdout, (cwd / "stderr.txt").open("w") as stderr:
        child = subprocess.Popen(command, cwd=cwd, env=environment, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # reaps it with its resource usage
    return ProcessRun(
        time.monotonic() - started,
        usage.ru_maxrss / 2**20,
        usage.ru_utime,
        usage.ru_stime,
        os.waitstatus_to_exitcode(status),
    )


def run_process(command: list[str], environment: dict[str, str], cwd: Path) -> tuple[ProcessRun, str]:
    """The cost and stdout of a child process that must succeed."""
    run = measured_run(command, environment, cwd)
    if run.exit_code != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(cwd / 'stderr.txt').read_text()[-3000:]}")
    return run, (cwd / "stdout.txt").read_text()


def stage_seconds(stdout: str) -> dict[str, float]:
    """The stage times `segflow run` printed at its end (its 'time (seconds)' block)."""
    block = stdout.split("segflow: time (seconds):\n", 1)[1].splitlines()
    return {line.rsplit(maxsplit=1)[0].strip(): float(line.rsplit(maxsplit=1)[1]) for line in block if line}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--pause",
        type=float,
        default=10.0,
        help="seconds to wait before each run, so that it starts as a nightly run does, not on the memory "
        "the run before it freed (a VM that returns freed memory to its host does so after a few seconds; "
        "a 100k run right after a 10k one took 9.3 s instead of 10.4-10.7 s)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each size (in turn: sizes alternate)")
    arguments = parser.parse_args()
    runs: list[tuple[int, int, ProcessRun, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="segflow-bench-process-") as folder:
        workspace = Path(folder)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        environment["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        server, url = None, os.environ.get("PREFECT_API_URL")
        if url is None:
            server, url = start_server(workspace, environment)
        try:
            for repeat in range(arguments.repeats):
                for customers in arguments.customers:
                    paths = demo_data_paths(generated(customers))
                    transactions = pq.ParquetFile(paths["transactions"]).metadata.num_rows
                    run_folder = workspace / f"run-{customers}-{repeat}"
                    (run_folder / "home").mkdir(parents=True)
                    config = run_folder / "config.yaml"
                    config.write_text(yaml.safe_dump(demo_config(run_folder / "out", paths)))
                    time.sleep(arguments.pause)
                    load = os.getloadavg()[0]
                    run, stdout = run_process(
                        [str(Path(sys.executable).parent / "segflow"), "run", "--config", str(config)],
                        {**environment, "PREFECT_API_URL": url, "PREFECT_HOME": str(run_folder / "home")},
                        run_folder,
                    )
                    runs.append((customers, transactions, run, load, stage_seconds(stdout)))
                    print(
                        f"{customers:,} customers: {run.wall_seconds:.1f} s, {run.peak_rss_gb:.2f} GiB, "
                        f"CPU {run.user_seconds:.1f} s user + {run.system_seconds:.1f} s system "
                        f"(load {load:.1f})",
                        flush=True,
                    )
        finally:
            if server is not None:
                stop_server(server)

    print(
        "\n| customers | transactions | process wall (s) | peak RSS (GiB) | CPU user (s) | CPU system (s) "
        "| load before | target |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for customers, transactions, run, load, _ in sorted(runs, key=lambda found: found[0]):
        wall, target = run.wall_seconds, TARGETS.get(customers)
        verdict = "" if target is None else f"≤ {target:g} s: {'met' if wall <= target else 'missed'}"
        print(
            f"| {customers:,} | {transactions:,} | {wall:.1f} | {run.peak_rss_gb:.2f} "
            f"| {run.user_seconds:.1f} | {run.system_seconds:.1f} | {load:.1f} | {verdict} |"
        )
    median_runs = {}  # per size, the stage times of its median run by wall time
    for customers in arguments.customers:
        of_size = sorted((r for r in runs if r[0] == customers), key=lambda found: found[2].wall_seconds)
        median_runs[customers] = of_size[(len(of_size) - 1) // 2][4]
    names = list(dict.fromkeys(name for found in median_runs.values() for name in found))
    print("\n| stage (s, in process; the median run) | " + " | ".join(f"{c:,}" for c in median_runs) + " |")
    print("| --- | " + " | ".join("---:" for _ in median_runs) + " |")
    for name in names:
        seconds = [f"{found.get(name, 0.0):.2f}" for found in median_runs.values()]
        print(f"| {name} | " + " | ".join(seconds) + " |")


if __name__ == "__main__":
    main()
