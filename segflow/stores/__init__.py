"""Publication targets: DuckDB, PostgreSQL and Parquet, each swapping a run's tables in at once.

base.py       TableWrite, StoredState, the PublicationStore protocol, the SQL both warehouses share
duckdb.py     DuckDBStore        postgres.py   PostgresStore        parquet.py   ParquetStore
"""

from __future__ import annotations

from datetime import date
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
    "read_state",
]


def open_stores(publish: PublishConfig) -> list[PublicationStore]:
    """The configured targets, the warehouse first: it is the one whose state a run reads (and the
    first whose writer lock a publication takes, in every run alike)."""
    stores: list[PublicationStore] = []
    wait = publish.lock_timeout_seconds
    if publish.warehouse is not None:
        if publish.warehouse.startswith("duckdb://"):
            stores.append(DuckDBStore(duckdb_path(publish.warehouse), publish.schema_name, wait_seconds=wait))
        else:
            stores.append(
                PostgresStore(
                    publish.warehouse,
                    publish.schema_name,
                    password_secret=publish.password_secret,
                    wait_seconds=wait,
                )
            )
    if publish.parquet is not None:
        stores.append(ParquetStore(Path(publish.parquet), wait_seconds=wait))
    return stores


def read_state(stores: list[PublicationStore], as_of: date) -> StoredState:
    """What the first target holds (the warehouse, when there is one), and which run's publication
    every target holds: a publication built on it is swapped in only where that is still so."""
    stored = stores[0].read_state(as_of)
    stored.current_runs |= {store.target: store.current_run() for store in stores[1:]}
    return stored
