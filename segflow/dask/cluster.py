"""The run's Dask cluster (through Prefect's DaskTaskRunner) and its work folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect_dask import DaskTaskRunner

from segflow.config import ExecutionConfig
from segflow.errors import ConfigError
from segflow.files import FOLDER_MODE


def task_runner(execution: ExecutionConfig) -> DaskTaskRunner:
    """The Prefect task runner on the configured cluster: a running scheduler (over TLS when it
    gives certificates) or a LocalCluster whose dashboard listens on this machine only."""
    if execution.scheduler_address is not None:
        if execution.tls_ca_file is None:
            return DaskTaskRunner(address=execution.scheduler_address)
        from distributed.security import Security

        security = Security(
            tls_ca_file=str(execution.tls_ca_file),
            tls_client_cert=str(execution.tls_cert_file),
            tls_client_key=str(execution.tls_key_file),
            require_encryption=True,
        )
        return DaskTaskRunner(address=execution.scheduler_address, client_kwargs={"security": security})
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": execution.n_workers,
            "threads_per_worker": 1,
            "memory_limit": execution.memory_limit_per_worker,
            "dashboard_address": "127.0.0.1:0",
            "host": "127.0.0.1",
        }
    )


@contextmanager
def work_folder(execution: ExecutionConfig, run_id: str) -> Iterator[Path]:
    """The run's folder for partitioned intermediates: under the configured one (removed when the
    run ends, unless execution.keep_work), else temporary."""
    if execution.work_folder is not None:
        folder = Path(execution.work_folder) / run_id
        folder.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        try:  # the run's own, new folder: one planted beforehand, or a link, may be anyone's
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            raise ConfigError(
                f"execution.work_folder: {folder} already exists (or is a link); a run works only in a "
                "folder it creates itself: remove it, or check who can write to "
                f"{execution.work_folder}"
            ) from None
        try:
            yield folder
        finally:
            if not execution.keep_work:
                shutil.rmtree(folder, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix=f"segflow-{run_id}-") as temporary:
        yield Path(temporary)
