"""The deployments `segflow serve` registers, and serves in this process:

- `segmentation/nightly`: the segmentation every night (cron 02:00 by default) in a named time zone;
- `segmentation/on-demand`, `scoring/on-demand`, `backfill/on-demand`: no schedule, triggered with
  `prefect deployment run 'segmentation/on-demand' -p as_of=2026-11-20`.

Every deployment takes the config as its typed `config` parameter (a form in the Prefect UI),
defaulting to the config `segflow serve` was started with.
"""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from segflow.config import SegflowConfig

TAGS = ["segflow"]


def nightly_deployment(config: SegflowConfig, timezone: str, cron: str = "0 2 * * *"):
    """The nightly retrain: `cron` in `timezone` (without one, Prefect runs a cron in UTC)."""
    from segflow.flows.segmentation import segmentation_flow

    return segmentation_flow.to_deployment(
        name="nightly",
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"config": config.model_dump(mode="json", by_alias=True)},
        description="Nightly customer segmentation: contracts, features, clustering, gate, publish.",
        tags=[*TAGS, "nightly"],
    )


def on_demand_deployments(config: SegflowConfig) -> list:
    """Unscheduled deployments of the segmentation, scoring and backfill flows."""
    from segflow.flows.backfill import backfill_flow
    from segflow.flows.scoring import scoring_flow
    from segflow.flows.segmentation import segmentation_flow

    parameters = {"config": config.model_dump(mode="json", by_alias=True)}
    return [
        flow.to_deployment(name="on-demand", parameters=parameters, description=description, tags=TAGS)
        for flow, description in (
            (segmentation_flow, "Segment and publish now; override as_of or any config key."),
            (scoring_flow, "Assign the customers of the configured sources to the published segments."),
            (backfill_flow, "Publish the as-of dates from start to end in order (parameters start, end)."),
        )
    ]


def serve_deployments(config: SegflowConfig, timezone: str, cron: str) -> None:
    """Register the deployments with the Prefect API and run their flow runs until stopped."""
    print(f"segflow: serving segmentation/nightly at '{cron}' ({timezone}) and the on-demand deployments")
    serve(nightly_deployment(config, timezone, cron), *on_demand_deployments(config))
