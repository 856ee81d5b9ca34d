"""Tell on-call how a run ended: Prefect flow-run hooks that post to a webhook or a Prefect
notification block. The notice carries the run's status and reasons, never customer rows."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prefect.logging import get_logger

from segflow.config import NotifyConfig, SegflowConfig
from segflow.errors import failure_status

logger = get_logger("segflow.notify")


def notice(flow_name: str, flow_run: Any, status: str, message: str) -> dict[str, Any]:
    """The JSON a notification carries."""
    parameters = flow_run.parameters or {}
    return {
        "flow": flow_name,
        "flow_run": flow_run.name,
        "flow_run_id": str(flow_run.id),
        "as_of": str(parameters.get("as_of") or ""),
        "status": status,
        "message": message,
    }


def send(notify: NotifyConfig, payload: dict[str, Any]) -> None:
    """Deliver a notice to every configured channel; a channel that fails is logged, not raised."""
    if notify.webhook_url is not None:
        try:
            httpx.post(notify.webhook_url, json=payload, timeout=10).raise_for_status()
        except httpx.HTTPError as error:
            logger.error("notify: webhook %s failed: %s", httpx.URL(notify.webhook_url).host, error)
    if notify.block is not None:
        from prefect.blocks.core import Block

        try:
            Block.load(notify.block).notify(
                body=json.dumps(payload, indent=1), subject=f"segflow {payload['flow']}: {payload['status']}"
            )
        except Exception as error:  # a missing or misconfigured block must not hide the run's outcome
            logger.error("notify: block %s failed: %s", notify.block, error)


def notify_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_failure / on_completion hook: notify when the run's status is one to hear about."""
    config = flow_run.parameters.get("config")
    notify = SegflowConfig.model_validate(config).notify if isinstance(config, dict) else config.notify
    outcome = state.result(raise_on_failure=False)
    if state.is_failed():
        status, message = failure_status(outcome), str(outcome)
    else:
        status, message = outcome.get("status", "published"), json.dumps(outcome, default=str)
    if status in notify.on:
        send(notify, notice(flow.name, flow_run, status, message))
