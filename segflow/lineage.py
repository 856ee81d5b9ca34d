"""OpenLineage events of segflow's runs, built from plain facts and sent through the configured transport.

A run emits START when it starts and COMPLETE or FAIL when it ends. Its inputs are the configured
sources (columns, rows read, every contract rule passed or failed), its outputs the published tables
in the warehouse and in Parquet (rows written), named as OpenLineage's naming conventions say: a
PostgreSQL table by host, port, database, schema and table, a file by its path. No name, namespace or
facet holds a user name, password, token or connection option. Delivery never fails a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from openlineage.client import OpenLineageClient
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
from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
from openlineage.client.transport.transport import Transport
from prefect.logging import get_logger

from segflow import __version__
from segflow.config import LineageConfig, PublishConfig, SourcesConfig, insecure_webhook
from segflow.contracts.check import RuleOutcome
from segflow.tables import TABLES
from segflow.uris import duckdb_path

# segflow has no public home page to point at: a URN names the software and its version
PRODUCER = f"urn:segflow:{__version__}"
TOKEN_VARIABLE = "SEGFLOW_LINEAGE_TOKEN"
# two quick retries: a lineage server that is down must not hold the run for long
HTTP_RETRY = {
    "total": 2,
    "connect": 2,
    "read": 2,
    "backoff_factor": 0.3,
    "status_forcelist": [502, 503, 504],
    "allowed_methods": ["POST"],
}

logger = get_logger("segflow.lineage")


@dataclass(frozen=True)
class RunIdentity:
    """Which run the events are about: the job (the flow), the OpenLineage run id (the Prefect flow
    run's), segflow's run id and as-of date, and the parent run (a backfill's) if there is one."""

    job: str
    run_uuid: str
    run_id: str | None = None
    as_of: date | None = None
    until: date | None = None  # the last as-of date of a backfill
    parent: tuple[str, str] | None = None  # (parent's run uuid, parent's job)


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
    state: RunState,
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
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=identity.run_uuid, facets=run_facets(identity, namespace, error)),
        job=Job(namespace=namespace, name=identity.job, facets={"jobType": job_type}),
        inputs=inputs or [],
        outputs=outputs or [],
        producer=PRODUCER,
    )


# --------------------------------------------------------------------------- delivery


def endpoint_token(config: LineageConfig) -> str | None:
    """The lineage endpoint's token: the Prefect Secret block's, else $SEGFLOW_LINEAGE_TOKEN, else none."""
    if config.token_secret is not None:
        from prefect.blocks.system import Secret

        return str(Secret.load(config.token_secret).get())
    return os.environ.get(TOKEN_VARIABLE) or None


def transport_for(config: LineageConfig) -> Transport:
    """The configured OpenLineage transport."""
    if config.transport == "file":
        return FileTransport(FileConfig(log_file_path=str(config.path), append=True))
    if config.transport == "console":
        return ConsoleTransport(ConsoleConfig())
    token = endpoint_token(config)
    if token and insecure_webhook(config.url, config.allow_insecure_http):
        raise ValueError(
            "the lineage token would cross plain http:// in clear; use https:// or set "
            "lineage.allow_insecure_http: true"
        )
    auth = ApiKeyTokenProvider({"api_key": token}) if token else TokenProvider({})
    return HttpTransport(
        HttpConfig(
            url=config.url,
            endpoint=config.endpoint,
            timeout=config.timeout_seconds,
            auth=auth,
            retry=HTTP_RETRY,
        )
    )


class LineageEmitter:
    """Sends a run's events through the configured transport; when lineage is off it sends nothing,
    and a transport or endpoint that fails is logged as a warning, never raised."""

    def __init__(self, config: LineageConfig):
        self.config = config
        self.client: OpenLineageClient | None = None
        if config.transport is None:
            return
        try:
            self.client = OpenLineageClient(transport=transport_for(config))
        except Exception as error:  # a missing Secret block, an unusable path: the run goes on
            logger.warning("lineage: no events will be sent (%s: %s)", type(error).__name__, error)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def emit(self, event: Callable[[], RunEvent]) -> None:
        """Build the event and send it; a failure is a warning naming the host, never an error."""
        if self.client is None:
            return
        try:
            self.client.emit(event())
        except Exception as error:
            where = urlsplit(self.config.url).hostname if self.config.url else self.config.path or "console"
            logger.warning(
                "lineage: an event was not delivered to %s (%s); the run goes on", where, type(error).__name__
            )


@contextmanager
def lineage_events(
    lineage: LineageEmitter, event: Callable[[RunState, BaseException | None], RunEvent]
) -> Iterator[None]:
    """START now, then COMPLETE when the block ends, or FAIL with the error that ends it."""
    lineage.emit(partial(event, RunState.START, None))
    try:
        yield
    except Exception as error:
        lineage.emit(partial(event, RunState.FAIL, error))
        raise
    lineage.emit(partial(event, RunState.COMPLETE, None))
