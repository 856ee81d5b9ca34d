"""Activate: what campaigns use besides the segments, added to the publication (the holdout groups)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.activation import holdout_sizes, holdout_table
from segflow.config import ActivationConfig
from segflow.ledger import RunLedger
from segflow.stores import StoredState, TableWrite
from segflow.tables import to_arrow
from segflow.tasks.publish import Publication
from segflow.timing import timed


def with_holdouts(
    publication: Publication, stored: StoredState, activation: ActivationConfig, ledger: RunLedger
) -> Publication:
    """The publication with segment_holdouts for everyone in its snapshot, swapped in with the rest;
    unchanged when no holdout share is set."""
    if activation.holdout_share is None:
        return publication
    holdouts = holdout_table(
        publication.table("customer_segments"),
        stored.holdouts,
        activation.holdout_share,
        activation.holdout_salt,
        ledger.as_of,
    )
    rows = to_arrow("segment_holdouts", holdouts, ledger.id_type)
    return publication.including(TableWrite("segment_holdouts", rows, "all"))


def holdout_summary(publication: Publication) -> list[dict[str, Any]]:
    """Per segment: its name, customers, held out and their share; empty without holdout groups."""
    if not any(write.name == "segment_holdouts" for write in publication.writes):
        return []
    names = publication.table("customer_segments").drop_duplicates("segment_key")
    sizes = holdout_sizes(publication.table("segment_holdouts"))
    return sizes.merge(names[["segment_key", "segment_name"]], on="segment_key").to_dict("records")


@task(name="activate", cache_policy=NO_CACHE)
@timed
def activate_task(
    publication: Publication, stored: StoredState, activation: ActivationConfig, ledger: RunLedger
) -> Publication:
    activated = with_holdouts(publication, stored, activation, ledger)
    sizes = holdout_summary(activated)
    if sizes:
        get_run_logger().info(
            "activate: %d of %d customers held out (share %.3f, per segment %s)",
            sum(size["holdout"] for size in sizes),
            sum(size["customers"] for size in sizes),
            activation.holdout_share,
            ", ".join(f"{size['segment_key']} {size['share']:.3f}" for size in sizes),
        )
    return activated
