"""The first minute: a local run imports only what it uses. How soon `segflow run` reaches its first
task beside a minimal Prefect flow is measured in benchmarks/bench_startup.py, not timed here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_what_a_run_imports_early_while_the_temporary_server_starts_is_what_the_run_imports(
    tmp_path, small_demo, prefect_server
):
    """Without a Prefect server, segflow imports the run's modules while Prefect's temporary server
    starts (segflow/warm_start.py). A run with a server imports each where it first needs it: the
    early imports must be exactly those, so that they neither miss a module nor load one the run
    never uses."""
    import yaml

    from segflow.config import build_config
    from segflow.demo import demo_config
    from segflow.warm_start import modules_the_run_uses

    raw = demo_config(tmp_path, small_demo)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    watched = (*HEAVY, "jinja2")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from segflow.cli import main; "
            f"code = main(['run', '--config', {str(config_file)!r}, '--as-of', '2026-11-01']); "
            f"print(json.dumps([code, [name for name in {watched!r} if name in sys.modules]]))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **prefect_server, "PREFECT_HOME": str(tmp_path / ".prefect")},
        timeout=600,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    code, modules = json.loads(loaded.stdout.splitlines()[-1])
    assert code == 0
    early = {name.split(".")[0] for name in modules_the_run_uses(build_config(raw, []))}
    assert early == set(modules)
    assert {"great_expectations", "sklearn", "hdbscan", "matplotlib"} <= early


def test_the_segflow_command_freezes_what_outlives_a_full_collection_and_all_at_its_end():
    """`segflow.cli.command` spares a run the garbage collector's passes over long-lived objects (0.5 s
    of a 100,000-customer run) and the interpreter's last collection (1.2 s): what survives a full
    collection is frozen, and everything once the command is done."""
    probe = """
import gc, json
from segflow import cli

seen = {}


def main():
    kept = [[] for _ in range(1000)]
    gc.collect()
    seen["after a full collection"] = gc.get_freeze_count()
    seen["made after it"] = [[] for _ in range(1000)]
    return 3 if kept else 0


cli.main = main
tracked_before = len(gc.get_objects())
code = cli.command()
tracked_after = len(gc.get_objects())  # the permanent generation is not among them
print(json.dumps([code, seen["after a full collection"], tracked_before, tracked_after]))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    code, frozen_after_collection, tracked_before, tracked_after = json.loads(result.stdout)
    assert code == 3
    assert frozen_after_collection >= 1000
    assert tracked_before > 10_000 and tracked_after < 100
