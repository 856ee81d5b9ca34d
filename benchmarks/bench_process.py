"""`segflow run` as users wait for it: the whole process's wall time and peak RSS (on demand, not CI).

    .venv/bin/python benchmarks/bench_process.py [--customers 10000 100000 1000000]

For each size it generates (once, cached under benchmarks/data/ by bench_pipeline.py's `dataset`) the demo
data with segflow/demo.py's generator (about ten transactions per customer), then runs `segflow run`
on the demo's config for that data: every contract rule on every row of both sources, RFM features,
the k search, the gate, profiles, the report, publishing to DuckDB and Parquet. Each run starts in a
new Prefect home (nothing cached) against a running Prefect server: PREFECT_API_URL if set, else a
`prefect server start` this script starts. Wall time is from starting the process to its exit; peak
RSS is the child's own (`os.wait4`, ru_maxrss). Next to them, the stage times the run printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from bench_pipeline import dataset
from bench_startup import start_server, stop_server

from segflow.demo import demo_config, demo_data_paths

TARGETS = {100_000: 10.0, 1_000_000: 30.0}  # issue 17: process wall time, seconds


def measured_run(command: list[str], environment: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (GiB) and exit code of a child process run to its end; its output is
    left in `cwd`/stdout.txt and stderr.txt."""
    started = time.monotonic()
    with (cwd / "stdout.txt").open("w") as stdout, (cwd / "stderr.txt").open("w") as stderr:
        child = subprocess.Popen(command, cwd=cwd, env=environment, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # reaps it with its resource usage
    return time.monotonic() - started, usage.ru_maxrss / 2**20, os.waitstatus_to_exitcode(status)


def run_process(command: list[str], environment: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (GiB) and stdout of a child process that must succeed."""
    wall, peak_rss_gb, exit_code = measured_run(command, environment, cwd)
    if exit_code != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(cwd / 'stderr.txt').read_text()[-3000:]}")
    return wall, peak_rss_gb, (cwd / "stdout.txt").read_text()


def stage_seconds(stdout: str) -> dict[str, float]:
    """The stage times `segflow run` printed at its end (its 'time (seconds)' block)."""
    block = stdout.split("segflow: time (seconds):\n", 1)[1].splitlines()
    return {line.rsplit(maxsplit=1)[0].strip(): float(line.rsplit(maxsplit=1)[1]) for line in block if line}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    arguments = parser.parse_args()
    rows, stages = [], {}
    with tempfile.TemporaryDirectory(prefix="segflow-bench-process-") as folder:
        workspace = Path(folder)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        environment["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        server, url = None, os.environ.get("PREFECT_API_URL")
        if url is None:
            server, url = start_server(workspace, environment)
        try:
            for customers in arguments.customers:
                paths = demo_data_paths(dataset(customers))
                transactions = pq.ParquetFile(paths["transactions"]).metadata.num_rows
                run_folder = workspace / f"run-{customers}"
                (run_folder / "home").mkdir(parents=True)
                config = run_folder / "config.yaml"
                config.write_text(yaml.safe_dump(demo_config(run_folder / "out", paths)))
                load = os.getloadavg()[0]
                wall, peak, stdout = run_process(
                    [str(Path(sys.executable).parent / "segflow"), "run", "--config", str(config)],
                    {**environment, "PREFECT_API_URL": url, "PREFECT_HOME": str(run_folder / "home")},
                    run_folder,
                )
                stages[customers] = stage_seconds(stdout)
                rows.append((customers, transactions, wall, peak, load, TARGETS.get(customers)))
                print(f"{customers:,} customers: {wall:.1f} s, {peak:.2f} GiB (load {load:.1f})", flush=True)
        finally:
            if server is not None:
                stop_server(server)

    print("\n| customers | transactions | process wall (s) | peak RSS (GiB) | load before | target |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for customers, transactions, wall, peak, load, target in rows:
        verdict = "" if target is None else f"≤ {target:g} s: {'met' if wall <= target else 'missed'}"
        print(f"| {customers:,} | {transactions:,} | {wall:.1f} | {peak:.2f} | {load:.1f} | {verdict} |")
    names = list(dict.fromkeys(name for found in stages.values() for name in found))
    print("\n| stage (s, in process) | " + " | ".join(f"{c:,}" for c in stages) + " |")
    print("| --- | " + " | ".join("---:" for _ in stages) + " |")
    for name in names:
        print(f"| {name} | " + " | ".join(f"{found.get(name, 0.0):.2f}" for found in stages.values()) + " |")


if __name__ == "__main__":
    main()
