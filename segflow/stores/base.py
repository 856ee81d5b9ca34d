"""What every publication target shares: the writes, the stored state, the target protocol, and
the SQL both warehouses (DuckDB, PostgreSQL) speak. Imports no target."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, Protocol

import pandas as pd
import pyarrow as pa

from segflow.errors import PublishError
from segflow.tables import MEMBERSHIP_HISTORY_SQL, TABLES

Replace = Literal["all", "as_of", "run"]
PUBLISHING_STATUSES = ("published", "scored")  # runs that moved the snapshot to their as-of


@dataclass
class TableWrite:
    """Rows for one published table and what they replace: the whole table, one as-of date, or
    (`run`) only the rows of the run that writes them."""

    name: str
    rows: pa.Table
    replace: Replace
    run_id: str | None = None  # for replace="run"

    def __post_init__(self) -> None:
        expected = [column for column, _ in TABLES[self.name].columns]
        if self.rows.column_names != expected:
            raise PublishError(f"table {self.name}: columns {self.rows.column_names}, expected {expected}")
        if (self.replace == "run") != (self.run_id is not None):
            raise PublishError(f"table {self.name}: a run_id goes with replace='run' and only with it")
        # once here, not in every target: Parquet and DuckDB's undeclared history keys rely on it
        check_primary_key(self.rows, TABLES[self.name].primary_key, self.name)

    def delete_parameter(self, as_of: date) -> object:
        """The value the rows this write replaces are found by."""
        return self.run_id if self.replace == "run" else as_of


@dataclass
class StoredState:
    """What a target holds now: the snapshot, its as-of, the key registry, that date's changes."""

    snapshot: pd.DataFrame | None = None
    snapshot_as_of: date | None = None  # of the last run that published or scored
    definitions: pd.DataFrame | None = None
    changes_on_as_of: pd.DataFrame | None = None
    holdouts: pd.DataFrame | None = None  # segment_holdouts, when published
    # target -> the run whose publication it held when read (None: nothing published yet); a
    # publication built on this state is swapped in only where that is still the current one
    current_runs: dict[str, str | None] = field(default_factory=dict)


class PublicationStore(Protocol):
    target: str  # the target's identity, however its URI or path is spelt (segflow.locks)

    def describe(self) -> str: ...

    def writer_lock(self) -> AbstractContextManager[None]: ...

    def current_run(self) -> str | None: ...

    def read_state(self, as_of: date) -> StoredState: ...

    def publish(self, as_of: date, writes: list[TableWrite]) -> None: ...

    def read_model(self) -> dict | None: ...

    def read_runs(self, limit: int) -> pd.DataFrame: ...

    def run_status(self, run_id: str) -> str | None: ...


class TargetLock:
    """The writer lock at the target, re-entrant within one store object: publish takes it, and a
    caller that checks several targets before writing any holds it around them (`_hold`)."""

    _lock_depth = 0

    def _hold(self) -> AbstractContextManager[None]: ...

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the target's writer lock for the block (waiting for another writer to let go)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with self._hold():
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0


class SqlReads:
    """The reads a warehouse answers with one query over one table (`_select`)."""

    placeholder: str

    def _select(self, table: str, sql: str, parameters: tuple = ()) -> pd.DataFrame | None: ...

    def current_run(self) -> str | None:
        """The run whose publication is current (the last to publish or score), or None."""
        rows = self._select("segmentation_runs", CURRENT_RUN_SQL.format(runs="{table}"))
        return None if rows is None or rows.empty else str(rows["run_id"].iloc[0])

    def read_model(self) -> dict | None:
        """The newest saved model (that of the current publication), or None."""
        rows = self._select("segment_models", LATEST_MODEL_SQL.format(models="{table}"))
        return None if rows is None or rows.empty else rows.iloc[0].to_dict()

    def read_runs(self, limit: int) -> pd.DataFrame:
        """The most recent segmentation_runs rows, newest first."""
        runs = self._select("segmentation_runs", RECENT_RUNS_SQL.format(runs="{table}", limit=limit))
        return runs if runs is not None else pd.DataFrame()

    def run_status(self, run_id: str) -> str | None:
        """The recorded status of one run, or None if it left no row here."""
        sql = f"SELECT status FROM {{table}} WHERE run_id = {self.placeholder}"
        rows = self._select("segmentation_runs", sql, (run_id,))
        return None if rows is None or rows.empty else str(rows["status"].iloc[0])


PUBLISHING = "status IN (" + ", ".join(f"'{status}'" for status in PUBLISHING_STATUSES) + ")"
SNAPSHOT_AS_OF_SQL = f"SELECT max(as_of) FROM {{runs}} WHERE {PUBLISHING}"
# the newest as-of, and on one date the last to finish: a run publishes only over the current one,
# so publications follow each other in this order (finished_at comes from the writers' clocks)
CURRENT_RUN_SQL = (
    f"SELECT run_id FROM {{runs}} WHERE {PUBLISHING} "
    "ORDER BY as_of DESC, finished_at DESC, run_id DESC LIMIT 1"
)
LATEST_MODEL_SQL = "SELECT * FROM {models} ORDER BY as_of DESC, created_at DESC LIMIT 1"
RECENT_RUNS_SQL = "SELECT * FROM {runs} ORDER BY started_at DESC LIMIT {limit:d}"


def check_primary_key(rows: pa.Table, key: tuple[str, ...], table: str) -> None:
    """Refuse rows that repeat a primary key (for targets that do not enforce the key themselves)."""
    if key and rows.num_rows:
        counts = rows.group_by(list(key)).aggregate([([], "count_all")])
        if counts.num_rows != rows.num_rows:
            raise PublishError(
                f"table {table}: {rows.num_rows - counts.num_rows} rows repeat the primary key {key}"
            )


def quote_identifier(name: str) -> str:
    """A name as one SQL identifier, whatever characters it holds (a double quote is doubled)."""
    return '"' + name.replace('"', '""') + '"'


def qualified_name(schema: str, table: str) -> str:
    """schema.table, each part quoted."""
    return f"{quote_identifier(schema)}.{quote_identifier(table)}"


def sql_type(arrow_type: pa.DataType, dialect: str) -> str:
    """The column type of an Arrow type in DuckDB or PostgreSQL."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "VARCHAR" if dialect == "duckdb" else "TEXT"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BLOB" if dialect == "duckdb" else "BYTEA"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE" if dialect == "duckdb" else "DOUBLE PRECISION"
    simple = {
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.int16(): "SMALLINT",
        pa.int8(): "SMALLINT",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    if arrow_type in simple:
        return simple[arrow_type]
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    raise PublishError(f"no warehouse column type for Arrow type {arrow_type}")


def create_table_sql(
    qualified: str, schema: pa.Schema, primary_key: tuple[str, ...], dialect: str, if_not_exists: bool
) -> str:
    columns = [f"{quote_identifier(field.name)} {sql_type(field.type, dialect)}" for field in schema]
    if primary_key:
        columns.append("PRIMARY KEY (" + ", ".join(map(quote_identifier, primary_key)) + ")")
    guard = "IF NOT EXISTS " if if_not_exists else ""
    return f"CREATE TABLE {guard}{qualified} ({', '.join(columns)})"


def history_view_sql(schema: str) -> str:
    """The warehouses' segment_membership_history: a view over the change feed."""
    history = MEMBERSHIP_HISTORY_SQL.format(changes=qualified_name(schema, "segment_changes"))
    return f"CREATE OR REPLACE VIEW {qualified_name(schema, 'segment_membership_history')} AS {history}"


def writes_changes(writes: list[TableWrite]) -> bool:
    """Whether a publication writes the change feed (and so defines the history derived from it)."""
    return any(write.name == "segment_changes" for write in writes)


def columns_sql(placeholders: tuple[str, str]) -> str:
    """The columns of one table (schema, table), for adding those a table of an earlier release lacks."""
    schema, table = placeholders
    return (
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = {schema} AND table_name = {table}"
    )


def append_sql(target: str, source: str, schema: pa.Schema, present: set[str], dialect: str) -> list[str]:
    """Add the rows of `source` to a table that may come from an earlier release: the columns it
    lacks are added first (NULL in its older rows), and the rows go in by column name."""
    added = [
        f"ALTER TABLE {target} ADD COLUMN {quote_identifier(field.name)} {sql_type(field.type, dialect)}"
        for field in schema
        if field.name not in present
    ]
    columns = ", ".join(quote_identifier(name) for name in schema.names)
    return [*added, f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source}"]


def delete_sql(qualified: str, replace: Replace, placeholder: str) -> str:
    column = quote_identifier("run_id" if replace == "run" else "as_of")
    return f"DELETE FROM {qualified} WHERE {column} = {placeholder}"
