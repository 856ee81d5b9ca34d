"""What the default run makes of realistic and real data, as a user runs it (on demand, not CI).

    .venv/bin/python benchmarks/bench_realistic.py [--only retail telecom cdnow] [--set KEY=VALUE ...]

Runs the whole `segflow run` process, with segflow's defaults and only the columns configured, on
- the retail demo (`--demo retail`: 30,000 customers, BG/NBD buying, most buy once),
- the telecom demo (`--demo telecom`: 7,043 subscribers, no transactions),
- the real CDNOW transaction log (23,570 customers who all first bought in early 1997, 69,659
  orders to mid-1998), taken from the `lifetimes` package on PyPI, as of 1998-07-01.
For each it prints, as Markdown: the process wall time and peak RSS (os.wait4 of the child), the
choice with its written reasons, the gate, and per published segment its share, name, medians
and membership rule with recall and precision, read back from the DuckDB warehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import yaml
from bench_process import measured_run

SEGFLOW = str(Path(sys.executable).parent / "segflow")
CDNOW_PACKAGE = "lifetimes==0.11.3"  # its wheel ships datasets/CDNOW_master.txt (Fader and Hardie)
CDNOW_AS_OF = "1998-07-01"
RFM_MEDIANS = (("recency_days", "recency"), ("frequency", "orders"), ("monetary", "spend"))


def run_segflow(arguments: list[str], cwd: Path) -> dict:
    """Run `segflow` as its own process; its wall time, peak RSS and exit code."""
    run = measured_run([SEGFLOW, *arguments], dict(os.environ), cwd)
    return {
        "seconds": run.wall_seconds,
        "peak_rss_gb": run.peak_rss_gb,
        "exit_code": run.exit_code,
        "log": cwd / "stderr.txt",
    }


def cdnow_csv(folder: Path) -> Path:
    """CDNOW_master.txt (a header, then customer, yyyymmdd, CDs, dollars) as a CSV segflow reads."""
    path = folder / "cdnow.csv"
    if path.exists():
        return path
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), CDNOW_PACKAGE],
        check=True,
    )
    (wheel,) = folder.glob("[Ll]ifetimes-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read("lifetimes/datasets/CDNOW_master.txt").decode()
    lines = text.splitlines()[1:]  # after the header: customer_id date number_of_cds dollar_value
    rows = pd.DataFrame([line.split() for line in lines if line.strip()])
    orders = pd.DataFrame(
        {
            "customer": rows[0].astype(int),
            "ordered_on": pd.to_datetime(rows[1], format="%Y%m%d").dt.date.astype(str),
            "cds": rows[2].astype(int),
            "dollars": rows[3].astype(float),
        }
    )
    orders.to_csv(path, index=False)
    return path


def cdnow_config(folder: Path) -> Path:
    config = {
        "sources": {
            "transactions": {
                "uri": str(cdnow_csv(folder)),
                "id_column": "customer",
                "timestamp_column": "ordered_on",
                "amount_column": "dollars",
            }
        },
        "features": {"rfm": True},
        "publish": {
            "parquet": None,
            "warehouse": f"duckdb:///{folder / 'warehouse.duckdb'}",
            "reports": str(folder / "reports"),
        },
    }
    path = folder / "segflow.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def published(warehouse: Path) -> tuple[dict, pd.DataFrame]:
    """The last run's record and its segment profiles."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        run = (
            connection.sql(
                "SELECT run_id, status, algorithm, n_segments, message, details "
                "FROM segments.segmentation_runs ORDER BY finished_at DESC LIMIT 1"
            )
            .df()
            .iloc[0]
            .to_dict()
        )
        profiles = connection.sql(
            "SELECT segment_name, share, features, rules FROM segments.segment_profiles "
            "WHERE run_id = $run ORDER BY share DESC",
            params={"run": run["run_id"]},
        ).df()
    return run, profiles


def report(title: str, outcome: dict, warehouse: Path) -> str:
    """One dataset's result as Markdown."""
    lines = [
        f"### {title}",
        "",
        f"`segflow` process: {outcome['seconds']:.1f} s wall, peak RSS {outcome['peak_rss_gb']:.2f} GiB, "
        f"exit {outcome['exit_code']}.",
    ]
    if not warehouse.exists():
        tail = outcome["log"].read_text()[-2000:]
        return "\n".join([*lines, "", "```", tail, "```", ""])
    run, profiles = published(warehouse)
    details = json.loads(run["details"] or "{}")
    lines += [f"Status **{run['status']}**, {run['algorithm']}, {run['n_segments']} segments.", ""]
    lines += [f"- {reason}" for reason in details.get("choice", [])]
    if run["status"] != "published":
        lines += ["", f"Gate: {run['message']}"]
    numbers = [column for column, _ in RFM_MEDIANS if profiles["features"].str.contains(column).any()]
    header = " | ".join(word for column, word in RFM_MEDIANS if column in numbers)
    lines += [
        "",
        f"| segment | share | {header + ' | ' if header else ''}rule | recall | precision |",
        "|---|---:|" + "---:|" * len(numbers) + "---|---:|---:|",
    ]
    for row in profiles.itertuples():
        features = json.loads(row.features)
        medians = "".join(f"{features[column]['median']:,.4g} | " for column in numbers)
        rule = json.loads(row.rules) if row.rules else None
        fidelity = (
            f"{' and '.join(rule['conditions'])} | {rule['recall']:.0%} | {rule['precision']:.0%}"
            if rule
            else "(noise) | |"
        )
        lines.append(f"| {row.segment_name} | {row.share:.1%} | {medians}{fidelity} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["retail", "telecom", "cdnow"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override")
    arguments = parser.parse_args()
    overrides = [part for value in arguments.overrides for part in ("--set", value)]
    with tempfile.TemporaryDirectory(prefix="segflow-realistic-") as scratch:
        for name in arguments.only:
            folder = Path(scratch) / name
            folder.mkdir()
            if name == "cdnow":
                command = ["run", "--config", str(cdnow_config(folder)), "--as-of", CDNOW_AS_OF]
                warehouse, title = folder / "warehouse.duckdb", f"CDNOW (real), as of {CDNOW_AS_OF}"
            else:
                command = ["run", "--demo", name]
                warehouse = folder / "segflow_output" / name / "warehouse.duckdb"
                title = f"The {name} demo"
            print(report(title, run_segflow([*command, *overrides], folder), warehouse), flush=True)


if __name__ == "__main__":
    main()
