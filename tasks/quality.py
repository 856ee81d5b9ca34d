"""Quality stage: check the sources against their data contracts (`segflow.contracts`), say what
failed, and keep the validation results; and check the published snapshot against its own contract."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import SourcesConfig
from segflow.contracts.check import QualityReport, SourcesCheck, check_sources, check_table, combine_reports
from segflow.contracts.odcs import compile_source_contracts, contract_for
from segflow.contracts.results import write_validation_results
from segflow.contracts.rules import CompiledContract
from segflow.timing import timed

OUTPUT_CONTRACT = "customer_segments.odcs.yaml"


@task(name="compile-contracts", cache_policy=NO_CACHE)
@timed
def compile_contracts_task(sources: SourcesConfig) -> dict[str, CompiledContract]:
    """Read and compile every source's contract once, before any source is read."""
    return compile_source_contracts(sources)


@task(name="quality", cache_policy=NO_CACHE)
@timed
def quality_task(
    sources: dict[str, pd.DataFrame],
    contracts: dict[str, CompiledContract],
    config: SourcesConfig,
    results_folder: Path | None = None,
) -> SourcesCheck:
    """The quality stage on sources held in this process."""
    checked = check_sources(sources, contracts, config)
    report_quality(checked, results_folder)
    return checked


@task(name="quality", cache_policy=NO_CACHE)
@timed
def combined_quality_task(
    parts: list[dict[str, QualityReport]],
    contracts: dict[str, CompiledContract],
    withheld: dict[str, list[str]],
    results_folder: Path | None = None,
) -> SourcesCheck:
    """The quality stage of sources checked in parts (dask mode): the parts' reports added up into
    one per source, then said and kept as for sources checked whole."""
    reports = {
        name: combine_reports([part[name] for part in parts], contract)
        for name, contract in contracts.items()
    }
    checked = SourcesCheck(reports=reports, passed={}, withheld=withheld)
    report_quality(checked, results_folder)
    return checked


def report_quality(checked: SourcesCheck, results_folder: Path | None) -> None:
    """One log line per failed rule, one artifact per source, the withheld personal columns, and the
    validation results as files in results_folder (when given)."""
    for report in checked.reports.values():
        log_and_summarise(report)
    for source, columns in checked.withheld.items():
        get_run_logger().info(
            "quality: source '%s': personal column(s) %s withheld from the features and reports",
            source,
            ", ".join(columns),
        )
    if results_folder is not None and checked.reports:
        written = write_validation_results(checked, results_folder)
        get_run_logger().info("quality: validation results in %s", ", ".join(map(str, written)))


@functools.cache
def output_contract() -> CompiledContract:
    """The contract of the published customer_segments table, shipped with segflow."""
    path = Path(str(resources.files("segflow.data_contracts").joinpath(OUTPUT_CONTRACT)))
    return contract_for(path, "customer_segments")


@task(name="output-contract", cache_policy=NO_CACHE)
@timed
def output_contract_task(snapshot: pd.DataFrame) -> QualityReport:
    """Check the customer_segments snapshot against its contract before anything is published."""
    report = check_table(snapshot, output_contract(), "customer_segments")
    log_and_summarise(report)
    return report


def log_and_summarise(report: QualityReport) -> None:
    """One log line per failed rule (no row values: rows may hold personal data) and a table
    artifact of every outcome."""
    logger = get_run_logger()
    log_by_severity = {"critical": logger.error, "warning": logger.warning, "info": logger.info}
    for outcome in report.outcomes:
        if not outcome.success:
            log_by_severity[outcome.severity](outcome.message)
    create_table_artifact(
        key="quality-" + re.sub(r"[^a-z0-9-]+", "-", report.source.lower()),
        table=[
            {
                "rule": o.rule,
                "column": o.column or "(table)",
                "severity": o.severity,
                "result": "pass" if o.success else "FAIL",
                "failing rows": o.unexpected_count,
                "rows": o.row_count,
            }
            for o in report.outcomes
        ],
        description=(
            f"Source '{report.source}' against {report.contract_path} (version "
            f"{report.contract_version}): {report.rows_passed:,} rows passed, "
            f"{report.rows_quarantined:,} quarantined, "
            f"{len(report.blocking)} blocking and {len(report.warnings)} non-blocking failures."
        ),
    )
