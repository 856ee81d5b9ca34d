"""The nightly segmentation flow: contracts → ingest and quality → features → preprocess → scale →
cluster → profile → gate → report → publish. Every step is a task; the execution (this process or a
Dask cluster, `flows.execution`) decides where the stages run, the run (`flows.run`) how it ends."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from segflow.config import SegflowConfig
from segflow.errors import ContractViolation, GateRejected
from segflow.flows.execution import execution_for
from segflow.flows.run import notify_hook, run_config, run_name, segmentation_facts, started_run
from segflow.rfm import rfm_positions
from segflow.tasks.activate import activate_task, holdout_summary
from segflow.tasks.cluster import cluster_task
from segflow.tasks.preprocess import preprocess_task
from segflow.tasks.profile import profile_task
from segflow.tasks.publish import build_publication_task, change_preview_task, read_state_task
from segflow.tasks.quality import compile_contracts_task, output_contract_task
from segflow.tasks.report import report_task
from segflow.tasks.scale import scale_task
from segflow.tasks.score import fitted_model, model_write
from segflow.tasks.validate import feasibility_task, row_count_history_task, validate_task


@flow(
    name="segmentation",
    flow_run_name=run_name,
    on_failure=[notify_hook],
    on_completion=[notify_hook],
)
def segmentation_flow(
    config: SegflowConfig | None = None,
    as_of: date | None = None,
    dry_run: bool = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment the customer base as of a business date and publish it, or publish nothing. A dry run
    does everything but publish, and returns what publishing would change."""
    config = run_config(config, overrides)
    with started_run(config, as_of, dry_run) as run, execution_for(config, run.ledger) as execution:
        ledger = run.ledger
        contracts = compile_contracts_task(config.sources)
        checked = execution.checked_sources(contracts)
        ledger.note_input(checked.input)
        run.stop_if_blocking(checked.check)
        features = execution.fit_features(checked)
        ledger.add_quarantine(features.quarantine)

        prepared = preprocess_task(
            features.table, features.rfm_columns, features.duplicates, config.features, config.preprocess
        )
        feasible = feasibility_task(prepared.model_input.shape, config.clustering.k)
        if not feasible.passed:
            run.facts.gate_checks = feasible.as_records()
            run.stop(GateRejected(feasible.reasons))
        matrix, scaling = scale_task(
            prepared.model_input, config.preprocess.scaler, prepared.categorical_columns
        )
        rfm = rfm_positions(scaling.columns, features.rfm_columns)
        segmentation = cluster_task(matrix, config.clustering, rfm)
        everyone = execution.everyone(prepared, scaling, segmentation)
        profiles = profile_task(
            prepared.readable,
            segmentation.labels,
            prepared.numeric_columns,
            prepared.categorical_columns,
            everyone.labels,
            config.naming,
            segmentation.names,
        )

        stored = read_state_task(run.stores, ledger.as_of)
        publication = build_publication_task(
            everyone.customer_ids, everyone.labels, profiles, stored, ledger, everyone.rfm_scores
        )
        publication = activate_task(publication, stored, config.activation, ledger)
        history = row_count_history_task(run.stores[0], config.gate.row_count_runs)
        decision = validate_task(
            everyone.labels,
            segmentation.scores,
            publication.drift,
            config.gate,
            config.clustering.min_segments,
            segmentation.family,
            ledger.rows_read,
            history,
        )
        run.facts = segmentation_facts(segmentation, decision, prepared.recipe)
        report_task(
            ledger.run_id,
            ledger.as_of,
            decision.status,
            segmentation,
            decision.as_records(),
            publication.table("segment_profiles"),
            publication.migration,
            publication.keys,
            matrix,
            len(ledger.quarantine),
            config.publish.reports,
            holdout_summary(publication),
        )
        run.stop_if_rejected(decision)
        output = output_contract_task(publication.table("customer_segments"))
        if output.blocking:
            run.stop(ContractViolation(output.message))
        if run.dry_run:
            preview = change_preview_task(publication, stored)
            verdict = {"gate": decision.status, "gate_reasons": decision.reasons}
            return run.summary("dry_run", {**publication.counts, **preview, **verdict})

        model = fitted_model(
            ledger.run_id, ledger.as_of, features, prepared, scaling, segmentation, publication.keys
        )
        counts = run.publish(publication.including(model_write(model, config.publish)))
    return run.summary("published", counts)
