"""The retry policy of the I/O tasks: back off on transient failures, fail fast on permanent ones."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from segflow.errors import SegflowError


def is_transient_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the failure is one of segflow's own, known-permanent errors, a folder the run
    may not write to, or a timeout (trying again would only wait as long once more)."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, SegflowError):
        return error.transient
    return not isinstance(error, (TimeoutError, PermissionError))


# Waits of 2, 4 and 8 seconds on average (jittered, at most 50% longer) between the attempts, so
# a server restarting or a connection limit reached for a moment is ridden out; Prefect logs
# every retry.
IO_RETRY_POLICY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient_failure,
}
