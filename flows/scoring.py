"""The scoring flow: assign new or changed customers to the published segments with the saved
model, without refitting: load model → ingest → quality → features → score → publish."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from segflow.config import SegflowConfig
from segflow.errors import ContractViolation
from segflow.flows.segmentation import checked_sources, run_ledger, stop
from segflow.ledger import RunLedger
from segflow.locks import one_writer
from segflow.notify import notify_hook
from segflow.stores import open_stores
from segflow.tasks.features import feature_quarantine, features_task
from segflow.tasks.publish import build_scored_publication, failures_recorded, publish_task, read_state_task
from segflow.tasks.quality import output_contract_task
from segflow.tasks.score import load_model_task, score_task


@flow(
    name="scoring",
    flow_run_name="scoring-{as_of}",
    on_failure=[notify_hook],
    on_completion=[notify_hook],
)
def scoring_flow(config: SegflowConfig, as_of: date | None = None) -> dict[str, Any]:
    """Assign the customers of the configured sources to the current segments and publish them;
    every other customer's row stays as it is."""
    with one_writer(config.publish):
        return score_and_publish(config, run_ledger(as_of))


def score_and_publish(config: SegflowConfig, ledger: RunLedger) -> dict[str, Any]:
    """The scoring run proper, once no other run writes to its targets."""
    stores = open_stores(config.publish)
    with failures_recorded(stores, ledger):
        model = load_model_task(stores[0], config.publish)
        sources = checked_sources(config, ledger, stores)
        features = features_task(
            sources, config.sources, ledger.as_of, model.rfm, model.never_bought_days_on(ledger.as_of)
        )
        ledger.add_quarantine(feature_quarantine(features, config.sources))
        scored = score_task(model, features.table)

        stored = read_state_task(stores[0], ledger.as_of)
        publication = build_scored_publication(scored, stored, ledger, model.run_id)
        run_facts = {"segmentation": model, "details": {"model_run_id": model.run_id}}
        output = output_contract_task(publication.table("customer_segments"))
        if output.blocking:
            stop(stores, ledger, ContractViolation(output.message), run_facts)
        counts = publish_task(stores, publication, ledger, run_facts)
    get_run_logger().info("run %s as of %s scored: %s", ledger.run_id, ledger.as_of, counts)
    return {
        "status": "scored",
        "run_id": ledger.run_id,
        "as_of": ledger.as_of.isoformat(),
        "model_run_id": model.run_id,
        **counts,
        "targets": [store.describe() for store in stores],
    }
