"""The retry policy of the I/O tasks: back off on transient failures, fail fast on permanent ones."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from segflow.errors import SegflowError


def is_transient_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the failure is one of segflow's own, known-permanent errors."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, SegflowError):
        return bool(getattr(error, "transient", False))
    return True


IO_RETRY_POLICY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient_failure,
}
