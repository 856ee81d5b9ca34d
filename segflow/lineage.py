"""OpenLineage events of segflow's runs, built from plain facts.

A run emits START when it starts and COMPLETE or FAIL when it ends. Its inputs are the configured
sources (columns, rows read, every contract rule passed or failed), its outputs the published tables
in the warehouse and in Parquet (rows written), named as OpenLineage's naming conventions say: a
PostgreSQL table by host, port, database, schema and table, a file by its path. No name, namespace or
facet holds a user name, password, token or connection option. `segflow.lineage_delivery` sends them.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    tags_run,
)
from openlineage.client.naming.dataset import LocalFileSystem, Postgres

from segflow import __version__
from segflow.config import PublishConfig, SourcesConfig
from segflow.contracts.check import RuleOutcome
from segflow.lineage_delivery import RunIdentity
from segflow.tables import TABLES
from segflow.uris import duckdb_path

# segflow has no public home page to point at: a URN names the software and its version
PRODUCER = f"urn:segflow:{__version__}"


# --------------------------------------------------------------------------- dataset names


def table_option(uri: str) -> str:
    """The ?table= of a connection URI, as written (schema.table or table)."""
    return dict(parse_qsl(urlsplit(uri).query)).get("table", "")


def postgres_dataset(uri: str, table: str) -> tuple[str, str]:
    """(namespace, name) of a PostgreSQL table: postgres://host:port and database.schema.table."""
    parts = urlsplit(uri)
    options = dict(parse_qsl(parts.query))
    host = parts.hostname or options.get("host", "")
    host = "localhost" if not host or host.startswith("/") else host  # a Unix socket is this machine
    database = parts.path.lstrip("/") or options.get("dbname") or parts.username or "postgres"
    schema, _, name = table.rpartition(".")
    naming = Postgres(
        host, str(parts.port or options.get("port") or 5432), database, schema or "public", name
    )
    return naming.get_namespace(), naming.get_name()


def duckdb_dataset(uri: str, table: str) -> tuple[str, str]:
    """(namespace, name) of a DuckDB table: duckdb://<the file's absolute path> and schema.table."""
    schema, _, name = table.rpartition(".")
    return f"duckdb://{os.path.abspath(duckdb_path(uri))}", f"{schema or 'main'}.{name}"


def file_dataset(path: str | Path) -> tuple[str, str]:
    naming = LocalFileSystem(os.path.abspath(path))
    return naming.get_namespace(), naming.get_name()


def source_dataset(uri: str) -> tuple[str, str]:
    """(namespace, name) of a configured source: a PostgreSQL or DuckDB table, or a file path or glob."""
    if uri.startswith(("postgresql://", "postgres://")):
        return postgres_dataset(uri, table_option(uri))
    if uri.startswith("duckdb://"):
        return duckdb_dataset(uri, table_option(uri))
    return file_dataset(uri)


def table_datasets(publish: PublishConfig, table: str) -> list[tuple[str, str]]:
    """(namespace, name) of a published table in each target: the warehouse's, and the Parquet file
    or folder readers read under `current/`."""
    datasets = []
    if publish.warehouse is not None:
        qualified = f"{publish.schema_name}.{table}"
        if publish.warehouse.startswith("duckdb://"):
            datasets.append(duckdb_dataset(publish.warehouse, qualified))
        else:
            datasets.append(postgres_dataset(publish.warehouse, qualified))
    if publish.parquet is not None:
        per_date = TABLES[table].mode == "per_as_of"
        datasets.append(
            file_dataset(publish.parquet / "current" / (table if per_date else f"{table}.parquet"))
        )
    return datasets


# --------------------------------------------------------------------------- events


def assertion(outcome: RuleOutcome) -> data_quality_assertions_dataset.Assertion:
    return data_quality_assertions_dataset.Assertion(
        assertion=outcome.rule,
        success=outcome.success,
        column=outcome.column,
        severity=outcome.severity,
        actual=f"{outcome.unexpected_count} of {outcome.row_count} rows fail",
        description=outcome.message,
    )


def input_datasets(
    sources: SourcesConfig,
    rows_read: dict[str, int],
    schemas: dict[str, dict[str, str]],
    outcomes: list[RuleOutcome],
) -> list[InputDataset]:
    """The configured sources with what the run learnt of them so far: columns, rows read, rules."""
    datasets = []
    for name, source in sources.configured():
        facets, input_facets = {}, {}
        if name in schemas:
            fields = [schema_dataset.SchemaDatasetFacetFields(c, t) for c, t in schemas[name].items()]
            facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)
        if name in rows_read:
            input_facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                rowCount=rows_read[name], producer=PRODUCER
            )
        checked = [assertion(outcome) for outcome in outcomes if outcome.source == name]
        if checked:
            input_facets["dataQualityAssertions"] = (
                data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                    assertions=checked, producer=PRODUCER
                )
            )
        namespace, dataset = source_dataset(source.uri)
        datasets.append(InputDataset(namespace, dataset, facets=facets, inputFacets=input_facets))
    return datasets


def output_datasets(publish: PublishConfig, rows_written: dict[str, int | None]) -> list[OutputDataset]:
    """The tables a run published in every target, with the rows it wrote (None: a derived table)."""
    datasets = []
    for table in (name for name in TABLES if name in rows_written):
        output_facets = {}
        if rows_written[table] is not None:
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=rows_written[table], producer=PRODUCER
                )
            )
        for namespace, name in table_datasets(publish, table):
            datasets.append(OutputDataset(namespace, name, outputFacets=output_facets))
    return datasets


def midnight(day: date) -> str:
    return datetime.combine(day, time(), UTC).isoformat()


def run_facets(identity: RunIdentity, namespace: str, error: BaseException | None) -> dict:
    """The run's facets: segflow's run id and as-of (tags, nominal time), engine, parent and error."""
    tags = [
        ("segflow.run_id", identity.run_id),
        ("segflow.as_of", identity.as_of and identity.as_of.isoformat()),
    ]
    facets = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__, name="segflow", producer=PRODUCER
        ),
        "tags": tags_run.TagsRunFacet(
            tags=[tags_run.TagsRunFacetFields(k, v, "SEGFLOW") for k, v in tags if v is not None],
            producer=PRODUCER,
        ),
    }
    if identity.as_of is not None:
        end = (identity.until or identity.as_of) + timedelta(days=1)
        facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=midnight(identity.as_of), nominalEndTime=midnight(end), producer=PRODUCER
        )
    if identity.parent is not None:
        parent_uuid, parent_job = identity.parent
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent_uuid),
            job=parent_run.Job(namespace=namespace, name=parent_job),
            producer=PRODUCER,
        )
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=f"{type(error).__name__}: {error}", programmingLanguage="python", producer=PRODUCER
        )
    return facets


def run_event(
    state: str,
    identity: RunIdentity,
    namespace: str,
    inputs: list[InputDataset] | None = None,
    outputs: list[OutputDataset] | None = None,
    error: BaseException | None = None,
) -> RunEvent:
    """One OpenLineage run event of a segflow flow."""
    job_type = job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="SEGFLOW", jobType="FLOW", producer=PRODUCER
    )
    return RunEvent(
        eventType=RunState(state),
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=identity.run_uuid, facets=run_facets(identity, namespace, error)),
        job=Job(namespace=namespace, name=identity.job, facets={"jobType": job_type}),
        inputs=inputs or [],
        outputs=outputs or [],
        producer=PRODUCER,
    )
