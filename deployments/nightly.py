"""Serve the nightly segmentation: `python -m segflow.deployments.nightly [--config FILE]`.

Registers the deployment 'segmentation/nightly' (cron 02:00 in the given time zone) with the
Prefect API in PREFECT_API_URL and runs its scheduled flow runs in this process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from segflow.cli import load_run_config
from segflow.config import SegflowConfig

NIGHTLY_CRON = "0 2 * * *"


def nightly_deployment(config: SegflowConfig, timezone: str):
    """The 'nightly' deployment: 02:00 every night in `timezone` (without one, cron runs in UTC)."""
    from segflow.flows.segmentation import segmentation_flow

    return segmentation_flow.to_deployment(
        name="nightly",
        schedules=[Cron(NIGHTLY_CRON, timezone=timezone)],
        parameters={"config": config.model_dump(mode="json", by_alias=True)},
        description="Nightly customer segmentation: contracts, features, clustering, gate, publish.",
        tags=["segflow", "nightly"],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config file (default: the embedded demo)")
    parser.add_argument("--timezone", default="Europe/Berlin", help="IANA time zone of the 02:00 run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    arguments = parser.parse_args(argv)
    config = load_run_config(arguments.config, arguments.overrides)
    serve(nightly_deployment(config, arguments.timezone))


if __name__ == "__main__":
    main()
