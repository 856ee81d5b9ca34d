"""The backfill flow: run the segmentation for each as-of date of a range, oldest first.

Dates already published are skipped unless `force`; a date before the current publication cannot
be published any more (it would rewind the CRM) and is reported. The first run that fails stops
the backfill with that run's error; starting it again resumes at the first unpublished date.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
from prefect import flow
from prefect.logging import get_run_logger

from segflow.config import SegflowConfig
from segflow.errors import ConfigError
from segflow.flows.run import backfill_lineage, quiet_expected_failures, run_config
from segflow.flows.segmentation import segmentation_flow
from segflow.stores import PUBLISHING_STATUSES, open_stores

HISTORY_ROWS = 100_000


def plan_backfill(
    start: date, end: date, runs: list[dict[str, Any]], force: bool
) -> tuple[list[date], list[date], list[date]]:
    """(dates to run, dates already published, dates before the current publication)."""
    if end < start:
        raise ConfigError(f"backfill: --from {start} is after --to {end}")
    dates = [start + timedelta(days=offset) for offset in range((end - start).days + 1)]
    published = {run["as_of"] for run in runs if run["status"] == "published"}
    current = max((run["as_of"] for run in runs if run["status"] in PUBLISHING_STATUSES), default=None)
    done = [day for day in dates if day in published and not force]
    too_old = [day for day in dates if day not in done and current is not None and day < current]
    return [day for day in dates if day not in done and day not in too_old], done, too_old


@flow(name="backfill", flow_run_name="backfill-{start}-{end}")
def backfill_flow(
    start: date,
    end: date,
    force: bool = False,
    config: SegflowConfig | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish every as-of date from `start` to `end` in order; each date is its own segmentation run."""
    quiet_expected_failures()
    config = run_config(config, overrides)
    history = open_stores(config.publish)[0].read_runs(HISTORY_ROWS)
    runs = (
        []
        if history.empty
        else [
            {"as_of": as_of, "status": status}
            for as_of, status in zip(pd.to_datetime(history["as_of"]).dt.date, history["status"], strict=True)
        ]
    )
    to_run, done, too_old = plan_backfill(start, end, runs, force)
    logger = get_run_logger()
    logger.info(
        "backfill %s..%s: %d dates to run, %d already published (skipped), %d before the current "
        "publication (cannot be published any more)",
        start,
        end,
        len(to_run),
        len(done),
        len(too_old),
    )
    with backfill_lineage(config, start, end):
        published = [segmentation_flow(config=config, as_of=day)["as_of"] for day in to_run]
    return {
        "published": published,
        "skipped": [day.isoformat() for day in done],
        "too_old": [day.isoformat() for day in too_old],
    }
