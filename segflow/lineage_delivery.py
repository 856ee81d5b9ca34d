"""Delivery of a run's OpenLineage events: who the events are about, the configured transport, and
START when a run starts, then COMPLETE or FAIL. openlineage-python is imported only when lineage is
configured (`segflow.lineage` builds the events); delivery never fails a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from prefect.logging import get_logger

from segflow.config import LineageConfig, insecure_webhook

TOKEN_VARIABLE = "SEGFLOW_LINEAGE_TOKEN"
# two quick retries: a lineage server that is down must not hold the run for long
HTTP_RETRY = {
    "total": 2,
    "connect": 2,
    "read": 2,
    "backoff_factor": 0.3,
    "status_forcelist": [502, 503, 504],
    "allowed_methods": ["POST"],
}
# a run's event types (OpenLineage's RunState values)
START, COMPLETE, FAIL = "START", "COMPLETE", "FAIL"

logger = get_logger("segflow.lineage")


@dataclass(frozen=True)
class RunIdentity:
    """Which run the events are about: the job (the flow), the OpenLineage run id (the Prefect flow
    run's), segflow's run id and as-of date, and the parent run (a backfill's) if there is one."""

    job: str
    run_uuid: str
    run_id: str | None = None
    as_of: date | None = None
    until: date | None = None  # the last as-of date of a backfill
    parent: tuple[str, str] | None = None  # (parent's run uuid, parent's job)


def endpoint_token(config: LineageConfig) -> str | None:
    """The lineage endpoint's token: the Prefect Secret block's, else $SEGFLOW_LINEAGE_TOKEN, else none."""
    if config.token_secret is not None:
        from prefect.blocks.system import Secret

        return str(Secret.load(config.token_secret).get())
    return os.environ.get(TOKEN_VARIABLE) or None


def transport_for(config: LineageConfig) -> Any:
    """The configured OpenLineage transport."""
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import (
        ApiKeyTokenProvider,
        HttpConfig,
        HttpTransport,
        TokenProvider,
    )

    if config.transport == "file":
        return FileTransport(FileConfig(log_file_path=str(config.path), append=True))
    if config.transport == "console":
        return ConsoleTransport(ConsoleConfig())
    token = endpoint_token(config)
    if token and insecure_webhook(config.url, config.allow_insecure_http):
        raise ValueError(
            "the lineage token would cross plain http:// in clear; use https:// or set "
            "lineage.allow_insecure_http: true"
        )
    auth = ApiKeyTokenProvider({"api_key": token}) if token else TokenProvider({})
    return HttpTransport(
        HttpConfig(
            url=config.url,
            endpoint=config.endpoint,
            timeout=config.timeout_seconds,
            auth=auth,
            retry=HTTP_RETRY,
        )
    )


class LineageEmitter:
    """Sends a run's events through the configured transport; when lineage is off it sends nothing,
    and a transport or endpoint that fails is logged as a warning, never raised."""

    def __init__(self, config: LineageConfig):
        self.config = config
        self.client = None
        if config.transport is None:
            return
        from openlineage.client import OpenLineageClient

        try:
            self.client = OpenLineageClient(transport=transport_for(config))
        except Exception as error:  # a missing Secret block, an unusable path: the run goes on
            logger.warning("lineage: no events will be sent (%s: %s)", type(error).__name__, error)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def emit(self, event: Callable[[], Any]) -> None:
        """Build the event and send it; a failure is a warning naming the host, never an error."""
        if self.client is None:
            return
        try:
            self.client.emit(event())
        except Exception as error:
            where = urlsplit(self.config.url).hostname if self.config.url else self.config.path or "console"
            logger.warning(
                "lineage: an event was not delivered to %s (%s); the run goes on", where, type(error).__name__
            )


@contextmanager
def lineage_events(
    lineage: LineageEmitter, event: Callable[[str, BaseException | None], Any]
) -> Iterator[None]:
    """START now, then COMPLETE when the block ends, or FAIL with the error that ends it."""
    lineage.emit(partial(event, START, None))
    try:
        yield
    except Exception as error:
        lineage.emit(partial(event, FAIL, error))
        raise
    lineage.emit(partial(event, COMPLETE, None))
