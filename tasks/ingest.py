"""Ingest: read each configured source into a DataFrame."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from segflow.config import SourceConfig
from segflow.errors import SourceError
from segflow.retry import IO_RETRY_POLICY
from segflow.sources import read_source
from segflow.uris import redact_uri


def load_source(name: str, source: SourceConfig) -> pd.DataFrame:
    """Read a source and check that its id column is there."""
    table = read_source(name, source.uri, source.encoding, source.password_secret).to_pandas()
    if source.id_column not in table.columns:
        raise SourceError(
            f"source '{name}' ({redact_uri(source.uri)}): id column '{source.id_column}' "
            f"not found; columns are {', '.join(map(str, table.columns))}"
        )
    return table


@task(name="ingest", task_run_name="ingest-{name}", **IO_RETRY_POLICY)
def ingest_task(name: str, source: SourceConfig) -> pd.DataFrame:
    table = load_source(name, source)
    get_run_logger().info(
        "ingest: source '%s' (%s): %d rows, %d columns",
        name,
        redact_uri(source.uri),
        len(table),
        table.shape[1],
    )
    return table
