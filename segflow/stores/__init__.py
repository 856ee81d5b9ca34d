"""Publication targets: DuckDB, PostgreSQL and Parquet, each swapping a run's tables in at once.

base.py       TableWrite, StoredState, the PublicationStore protocol, the SQL both warehouses share
duckdb.py     DuckDBStore        postgres.py   PostgresStore        parquet.py   ParquetStore
"""

from __future__ import annotations

from pathlib import Path

from segflow.config import PublishConfig
from segflow.stores.base import PUBLISHING_STATUSES, PublicationStore, StoredState, TableWrite
from segflow.stores.duckdb import DuckDBStore
from segflow.stores.parquet import ParquetStore
from segflow.stores.postgres import PostgresStore
from segflow.uris import duckdb_path

__all__ = [
    "PUBLISHING_STATUSES",
    "DuckDBStore",
    "ParquetStore",
    "PostgresStore",
    "PublicationStore",
    "StoredState",
    "TableWrite",
    "open_stores",
]


def open_stores(publish: PublishConfig) -> list[PublicationStore]:
    """The configured targets, the warehouse first: it is the one whose state a run reads."""
    stores: list[PublicationStore] = []
    if publish.warehouse is not None:
        if publish.warehouse.startswith("duckdb://"):
            stores.append(DuckDBStore(duckdb_path(publish.warehouse), publish.schema_name))
        else:
            stores.append(
                PostgresStore(publish.warehouse, publish.schema_name, password_secret=publish.password_secret)
            )
    if publish.parquet is not None:
        stores.append(ParquetStore(Path(publish.parquet)))
    return stores
