"""The run's Dask cluster (through Prefect's DaskTaskRunner) and its work folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect_dask import DaskTaskRunner

from segflow.config import ExecutionConfig


def task_runner(execution: ExecutionConfig) -> DaskTaskRunner:
    """The Prefect task runner on the configured cluster: a running scheduler or a LocalCluster."""
    if execution.scheduler_address is not None:
        return DaskTaskRunner(address=execution.scheduler_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": execution.n_workers,
            "threads_per_worker": 1,
            "memory_limit": execution.memory_limit_per_worker,
            "dashboard_address": ":0",
        }
    )


@contextmanager
def work_folder(execution: ExecutionConfig, run_id: str) -> Iterator[Path]:
    """The run's folder for partitioned intermediates: under the configured one (removed when the
    run ends, unless execution.keep_work), else temporary."""
    if execution.work_folder is not None:
        folder = Path(execution.work_folder) / run_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            yield folder
        finally:
            if not execution.keep_work:
                shutil.rmtree(folder, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix=f"segflow-{run_id}-") as temporary:
        yield Path(temporary)
