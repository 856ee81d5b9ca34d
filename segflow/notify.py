"""Tell on-call how a run ended: post to a webhook or a Prefect notification block (the flows' hook is
`flows.run.notify_hook`). The notice carries the run's status and reasons, never customer rows."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prefect.logging import get_logger

from segflow.config import NotifyConfig

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
