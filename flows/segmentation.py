"""The nightly segmentation flow: ingest → quality → features → preprocess → scale → cluster →
validate → profile → publish. Every step is a task from `segflow.tasks`; no logic lives here."""

from __future__ import annotations

from datetime import date
from typing import Any, NoReturn

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from segflow.config import SegflowConfig
from segflow.errors import ContractViolation, GateRejected, SegflowError, failure_status
from segflow.ledger import RunLedger
from segflow.locks import one_writer
from segflow.notify import notify_hook
from segflow.stores import PublicationStore, open_stores
from segflow.tasks.cluster import cluster_task
from segflow.tasks.features import feature_quarantine, features_task
from segflow.tasks.ingest import ingest_source, memory_budget_task
from segflow.tasks.partitioned import PartitionedRun, partitioned_run, with_population_sizes
from segflow.tasks.preprocess import preprocess_task
from segflow.tasks.profile import profile_task
from segflow.tasks.publish import (
    build_publication,
    failures_recorded,
    publish_task,
    read_state_task,
    record_run_task,
)
from segflow.tasks.quality import check_contracts, output_contract_task, quality_task
from segflow.tasks.report import report_inputs, report_task
from segflow.tasks.scale import scale_task
from segflow.tasks.score import fitted_model, model_write
from segflow.tasks.validate import feasibility_task, stability_task, validate_task


def stop(
    stores: list[PublicationStore],
    ledger: RunLedger,
    error: SegflowError,
    run_facts: dict[str, Any] | None = None,
) -> NoReturn:
    """Record why the run publishes nothing new, then end it with that error (and its exit code)."""
    record_run_task(stores, ledger, failure_status(error), str(error), run_facts)
    error.recorded = True
    raise error


def checked_sources(config: SegflowConfig, ledger: RunLedger, stores: list[PublicationStore]):
    """Read every configured source and check it against its contract; stop on a blocking failure."""
    check_contracts(config.sources)
    memory_budget_task(config.sources, config.resources)
    sources = {name: ingest_source(name, source) for name, source in config.sources.configured()}
    ledger.note_sources(sources, config.sources.id_columns())
    checked = quality_task(sources, config.sources, ledger.folder_in(config.publish.reports, "validation"))
    ledger.note_quality(checked.contract_versions, checked.quarantine)
    if checked.blocking:
        stop(stores, ledger, ContractViolation(checked.message))
    return checked.passed


def partitioned_sample(cluster: PartitionedRun, ledger: RunLedger, stores: list[PublicationStore]):
    """Dask mode: check and featurise every partition on the cluster; the features of the fit sample."""
    check_contracts(cluster.config.sources)
    checked = cluster.checked_features(ledger)
    if checked.blocking:
        stop(stores, ledger, ContractViolation(checked.message))
    return cluster.fit_sample()


def run_ledger(as_of: date | None) -> RunLedger:
    """The run's ledger, its id taken from the Prefect flow run so that a flow retry is the same run."""
    as_of = as_of or date.today()
    return RunLedger(as_of=as_of, run_id=f"{as_of:%Y%m%d}-{flow_run.id.replace('-', '')[:10]}")


@flow(
    name="segmentation",
    flow_run_name="segmentation-{as_of}",
    on_failure=[notify_hook],
    on_completion=[notify_hook],
)
def segmentation_flow(config: SegflowConfig, as_of: date | None = None) -> dict[str, Any]:
    """Segment the customer base as of a business date and publish it, or publish nothing."""
    with one_writer(config.publish):
        return segment_and_publish(config, run_ledger(as_of))


def segment_and_publish(config: SegflowConfig, ledger: RunLedger) -> dict[str, Any]:
    """The segmentation run proper, once no other run writes to its targets."""
    stores = open_stores(config.publish)
    with failures_recorded(stores, ledger), partitioned_run(config, ledger) as cluster:
        if cluster is None:
            sources = checked_sources(config, ledger, stores)
            features = features_task(sources, config.sources, ledger.as_of, config.features.rfm)
        else:
            features = partitioned_sample(cluster, ledger, stores)
        ledger.add_quarantine(feature_quarantine(features, config.sources))
        prepared = preprocess_task(features.table, config.features, config.preprocess, features.rfm_columns)
        feasible = feasibility_task(prepared.model_input.shape, config.clustering.k)
        if not feasible.passed:
            gate_facts = {"gate_checks": feasible.as_records()}
            stop(stores, ledger, GateRejected(feasible.reasons), gate_facts)
        matrix, scaling = scale_task(
            prepared.model_input, config.preprocess.scaler, prepared.categorical_columns
        )

        segmentation = cluster_task(matrix, config.clustering)
        customer_ids, labels = (
            (prepared.customer_ids, segmentation.labels)
            if cluster is None
            else cluster.everyone(prepared, scaling, segmentation)
        )
        stability = stability_task(matrix, segmentation, config.clustering, config.gate.stability_resamples)
        profiles = profile_task(
            prepared.readable, segmentation.labels, prepared.numeric_columns, prepared.categorical_columns
        )
        if cluster is not None:
            profiles = with_population_sizes(profiles, labels)

        stored = read_state_task(stores[0], ledger.as_of)
        publication = build_publication(customer_ids, labels, profiles, stored, ledger)
        decision = validate_task(
            labels,
            {**segmentation.scores, "stability": stability},
            publication.drift,
            config.gate,
        )
        run_facts = {
            "segmentation": segmentation,
            "gate_checks": decision.as_records(),
            "gate_override": decision.override if decision.blocking else None,
            "details": {
                "preprocess": prepared.recipe,
                "sampling": segmentation.sampling,
                "k_search": segmentation.k_search,
                "leaderboard": segmentation.leaderboard,
                "gate_measures": decision.measures,
                "stability": stability,
            },
        }
        status = (
            "rejected"
            if not decision.publishes
            else "published_override"
            if decision.blocking
            else "published"
        )
        report_task(
            report_inputs(
                ledger.run_id,
                ledger.as_of,
                status,
                segmentation,
                decision.as_records(),
                publication.table("segment_profiles"),
                publication.migration,
                publication.keys,
                matrix,
                len(ledger.quarantine),
            ),
            config.publish.reports,
        )
        if not decision.publishes:
            stop(stores, ledger, GateRejected(decision.reasons), run_facts)

        output = output_contract_task(publication.table("customer_segments"))
        if output.blocking:
            stop(stores, ledger, ContractViolation(output.message), run_facts)
        model = fitted_model(
            ledger.run_id, ledger.as_of, features, prepared, scaling, segmentation, publication.keys
        )
        counts = publish_task(
            stores, publication.including(model_write(model, config.publish)), ledger, run_facts
        )
    get_run_logger().info("run %s as of %s published: %s", ledger.run_id, ledger.as_of, counts)
    return {
        "status": "published",
        "run_id": ledger.run_id,
        "as_of": ledger.as_of.isoformat(),
        **counts,
        "targets": [store.describe() for store in stores],
    }
