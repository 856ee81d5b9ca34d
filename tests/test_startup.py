"""The first minute: a local run imports only what it uses. How soon `segflow run` reaches its first
task beside a minimal Prefect flow is measured in benchmarks/bench_startup.py, not timed here."""

from __future__ import annotations

import json
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
