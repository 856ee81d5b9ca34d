"""The scoring flow: assign new or changed customers to the published segments with the saved
model, without refitting: load model → contracts → ingest and quality → features → score → publish.
Scoring reads the customers it scores in this process, whatever the execution mode."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from segflow.config import SegflowConfig
from segflow.errors import ContractViolation
from segflow.flows.execution import LocalExecution
from segflow.flows.run import notify_hook, run_config, run_name, started_run
from segflow.ledger import RunFacts
from segflow.tasks.activate import activate_task
from segflow.tasks.features import features_task
from segflow.tasks.publish import build_scored_publication_task, read_state_task
from segflow.tasks.quality import compile_contracts_task, output_contract_task
from segflow.tasks.score import load_model_task, score_task


@flow(
    name="scoring",
    flow_run_name=run_name,
    on_failure=[notify_hook],
    on_completion=[notify_hook],
)
def scoring_flow(
    config: SegflowConfig | None = None, as_of: date | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Assign the customers of the configured sources to the current segments and publish them;
    every other customer's row stays as it is."""
    config = run_config(config, overrides)
    with started_run(config, as_of) as run:
        ledger = run.ledger
        model = load_model_task(run.stores[0], config.publish)
        run.facts = RunFacts(algorithm=model.algorithm, details={"model_run_id": model.run_id})
        contracts = compile_contracts_task(config.sources)
        checked = LocalExecution(config, ledger).checked_sources(contracts)
        ledger.note_input(checked.input)
        run.stop_if_blocking(checked.check)
        never_bought_days = model.never_bought_days_on(ledger.as_of)
        features = features_task(
            checked.check.passed, config.sources, ledger.as_of, model.rfm, never_bought_days
        )
        ledger.add_quarantine(features.quarantine)
        scored = score_task(model, features.table)

        stored = read_state_task(run.stores, ledger.as_of)
        publication = build_scored_publication_task(scored, stored, ledger, model.run_id)
        publication = activate_task(publication, stored, config.activation, ledger)
        output = output_contract_task(publication.table("customer_segments"))
        if output.blocking:
            run.stop(ContractViolation(output.message))
        counts = run.publish(publication)
    return {**run.summary("scored", counts), "model_run_id": model.run_id}
