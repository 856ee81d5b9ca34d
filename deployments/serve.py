"""The deployments `segflow serve` registers, and serves in this process:

- `segmentation/nightly`: the segmentation every night (cron 02:00 by default) in a named time zone;
- `segmentation/on-demand`, `scoring/on-demand`, `backfill/on-demand`: no schedule, triggered with
  `prefect deployment run 'segmentation/on-demand' -p as_of=2026-11-20`.

A deployment run takes `as_of` (backfill: `start`, `end`, `force`) and `overrides` of the keys in
`flows.run.ALLOWED_OVERRIDES` only: whoever may start flow runs may not point sources, targets,
secrets, the scheduler or the webhook elsewhere. Everything else comes from the config file the
server was started with, which the runs find in SEGFLOW_CONFIG.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from segflow.flows.run import CONFIG_FILE_VARIABLE

TAGS = ["segflow"]


def nightly_deployment(timezone: str, cron: str = "0 2 * * *"):
    """The nightly retrain: `cron` in `timezone` (without one, Prefect runs a cron in UTC)."""
    from segflow.flows.segmentation import segmentation_flow

    return segmentation_flow.to_deployment(
        name="nightly",
        schedules=[Cron(cron, timezone=timezone)],
        description="Nightly customer segmentation: contracts, features, clustering, gate, publish.",
        tags=[*TAGS, "nightly"],
    )


def on_demand_deployments() -> list:
    """Unscheduled deployments of the segmentation, scoring and backfill flows."""
    from segflow.flows.backfill import backfill_flow
    from segflow.flows.scoring import scoring_flow
    from segflow.flows.segmentation import segmentation_flow

    return [
        flow.to_deployment(name="on-demand", description=description, tags=TAGS)
        for flow, description in (
            (segmentation_flow, "Segment and publish now (as_of; overrides such as gate.override)."),
            (scoring_flow, "Assign the customers of the configured sources to the published segments."),
            (backfill_flow, "Publish the as-of dates from start to end in order (parameters start, end)."),
        )
    ]


def serve_deployments(config_file: Path, timezone: str, cron: str) -> None:
    """Register the deployments with the Prefect API and run their flow runs until stopped; every
    run reads `config_file`."""
    os.environ[CONFIG_FILE_VARIABLE] = str(Path(config_file).resolve())
    print(
        f"segflow: serving segmentation/nightly at '{cron}' ({timezone}) and the on-demand deployments, "
        f"with the config {os.environ[CONFIG_FILE_VARIABLE]}"
    )
    serve(nightly_deployment(timezone, cron), *on_demand_deployments())
