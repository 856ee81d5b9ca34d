"""Tell on-call how a run ended: post to a webhook or a Prefect notification block (the flows' hook is
`flows.run.notify_hook`). The notice carries the run's status and reasons, never customer rows."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prefect.logging import get_logger

from segflow.config import NotifyConfig, insecure_webhook

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


def webhook_url(notify: NotifyConfig) -> str | None:
    """The webhook to post to, from the config or its Secret block; None (and logged) when the
    block cannot be loaded or holds a URL that may not be used."""
    if notify.webhook_secret is None:
        return notify.webhook_url
    from prefect.blocks.system import Secret

    name = notify.webhook_secret
    try:
        url = Secret.load(name).get()
    except Exception as error:  # a missing block must not hide the run's outcome
        logger.error("notify: Secret block '%s' could not be loaded (%s)", name, type(error).__name__)
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        logger.error("notify: Secret block '%s' does not hold an http:// or https:// URL", name)
        return None
    if insecure_webhook(url, notify.allow_insecure_http):
        logger.error(
            "notify: the webhook URL of Secret block '%s' is plain http://; use https:// or set "
            "notify.allow_insecure_http: true",
            name,
        )
        return None
    return url


@contextmanager
def hidden_from_httpx_log(url: httpx.URL) -> Iterator[None]:
    """httpx logs every request with its full URL (at INFO): show only the webhook's host there."""
    shown = f"{url.scheme}://{url.host}/***"

    def masked(record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if str(url) in text:
            record.msg, record.args = text.replace(str(url), shown), ()
        return True

    httpx_logger = logging.getLogger("httpx")
    httpx_logger.addFilter(masked)
    try:
        yield
    finally:
        httpx_logger.removeFilter(masked)


def post_to_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST a notice; a failure is logged with the webhook's host and the HTTP status only, since the
    URL's path and query carry its token."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        logger.error("notify: the webhook URL cannot be parsed")
        return
    try:
        with hidden_from_httpx_log(target):
            response = httpx.post(target, json=payload, timeout=10)
    except httpx.HTTPError as error:
        logger.error("notify: webhook at %s could not be reached (%s)", target.host, type(error).__name__)
        return
    if not response.is_success:
        logger.error("notify: webhook at %s answered HTTP %d", target.host, response.status_code)


def send(notify: NotifyConfig, payload: dict[str, Any]) -> None:
    """Deliver a notice to every configured channel; a channel that fails is logged, not raised."""
    url = webhook_url(notify)
    if url is not None:
        post_to_webhook(url, payload)
    if notify.block is not None:
        from prefect.blocks.core import Block

        try:
            Block.load(notify.block).notify(
                body=json.dumps(payload, indent=1), subject=f"segflow {payload['flow']}: {payload['status']}"
            )
        except Exception as error:  # a missing or misconfigured block must not hide the run's outcome
            # the kind of failure only: a notification block's error can quote its URL and token
            logger.error("notify: block %s failed (%s)", notify.block, type(error).__name__)
