"""DuckDB publication: a DuckDB file; every publication is one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from segflow.locks import duckdb_target, wait_for
from segflow.stores.base import (
    SNAPSHOT_AS_OF_SQL,
    SqlReads,
    StoredState,
    TableWrite,
    TargetLock,
    append_sql,
    columns_sql,
    create_table_sql,
    delete_sql,
    history_view_sql,
    qualified_name,
    quote_identifier,
    writes_changes,
)
from segflow.tables import TABLES


class DuckDBStore(SqlReads, TargetLock):
    """A DuckDB file; every publication is one transaction. Its writer lock is DuckDB's own lock on
    the file, held by a read-write connection that the publication then uses."""

    placeholder = "?"

    def __init__(self, path: str, schema: str, wait_seconds: float = 3600):
        self.path = path
        self.schema = schema
        self.wait_seconds = wait_seconds  # for another process to let go of the file
        self.target = duckdb_target(path, schema)
        self._writer: duckdb.DuckDBPyConnection | None = None

    def describe(self) -> str:
        return f"DuckDB {self.path} (schema {self.schema})"

    def _name(self, table: str) -> str:
        return qualified_name(self.schema, table)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection, waiting while another process holds the file (DuckDB allows one writer
        process, or any number of readers)."""

        def attempt() -> duckdb.DuckDBPyConnection | None:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.IOException as error:
                if "Could not set lock" not in str(error):
                    raise
                return None

        return wait_for(attempt, self.wait_seconds, f"another process holds the DuckDB file {self.path}")

    @contextmanager
    def _connection(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """The held writer connection inside `writer_lock` (a second one with another configuration is
        refused in the same process), else a fresh one closed after the block."""
        if self._writer is not None:
            yield self._writer
            return
        with self._open(read_only) as connection:
            yield connection

    @contextmanager
    def _hold(self) -> Iterator[None]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._open(read_only=False)
        try:
            yield
        finally:
            self._writer.close()
            self._writer = None

    def read_state(self, as_of: date) -> StoredState:
        if not Path(self.path).exists():
            return StoredState(current_runs={self.target: None})
        with self._connection() as connection:
            present = {
                row[0]
                for row in connection.sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                    params=[self.schema],
                ).fetchall()
            }
            if "customer_segments" not in present:
                return StoredState(current_runs={self.target: None})

            def query(sql: str, parameters: list | None = None) -> pd.DataFrame:
                return connection.sql(sql, params=parameters).to_arrow_table().to_pandas()

            holdouts = "segment_holdouts" in present

            return StoredState(
                snapshot=query(f"SELECT * FROM {self._name('customer_segments')}"),
                snapshot_as_of=connection.sql(
                    SNAPSHOT_AS_OF_SQL.format(runs=self._name("segmentation_runs"))
                ).fetchall()[0][0],
                definitions=query(f"SELECT * FROM {self._name('segment_definitions')}"),
                changes_on_as_of=query(
                    f"SELECT * FROM {self._name('segment_changes')} WHERE as_of = ?", [as_of]
                ),
                holdouts=query(f"SELECT * FROM {self._name('segment_holdouts')}") if holdouts else None,
                current_runs={self.target: self.current_run()},
            )

    def _select(self, table: str, sql: str, parameters: tuple = ()) -> pd.DataFrame | None:
        """A query over one table, or None when the file or the table does not exist yet."""
        if not Path(self.path).exists():
            return None
        with self._connection() as connection:
            exists = connection.sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                params=[self.schema, table],
            ).fetchall()[0][0]
            if not exists:
                return None
            query = connection.sql(sql.format(table=self._name(table)), params=list(parameters) or None)
            return query.to_arrow_table().to_pandas()

    def publish(self, as_of: date, writes: list[TableWrite]) -> None:
        with self.writer_lock(), self._connection() as connection:
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.schema)}")
                for write in writes:
                    self._write(connection, as_of, write)
                if writes_changes(writes):
                    connection.execute(history_view_sql(self.schema))
                connection.execute("COMMIT")
            except Exception:
                connection.execute("ROLLBACK")
                raise

    def _write(self, connection: duckdb.DuckDBPyConnection, as_of: date, write: TableWrite) -> None:
        spec = TABLES[write.name]
        target = self._name(write.name)
        connection.register("staged_rows", write.rows)
        if write.replace == "all":
            fresh = self._name(f"{write.name}__new")
            connection.execute(f"DROP TABLE IF EXISTS {fresh}")
            connection.execute(create_table_sql(fresh, write.rows.schema, spec.primary_key, "duckdb", False))
            connection.execute(f"INSERT INTO {fresh} SELECT * FROM staged_rows")
            connection.execute(f"DROP TABLE IF EXISTS {target}")
            connection.execute(f"ALTER TABLE {fresh} RENAME TO {quote_identifier(write.name)}")
        else:
            # no declared key here: DuckDB's commit of a delete and re-insert of the same keys in an
            # indexed table took 6.6 s for 100k rows (0.03 s without the index); TableWrite checks
            # the key on the rows instead (the rows they replace are deleted first, other dates differ)
            connection.execute(create_table_sql(target, write.rows.schema, (), "duckdb", True))
            connection.execute(delete_sql(target, write.replace, "?"), [write.delete_parameter(as_of)])
            present = connection.execute(columns_sql(("?", "?")), [self.schema, write.name]).fetchall()
            for statement in append_sql(
                target, "staged_rows", write.rows.schema, {row[0] for row in present}, "duckdb"
            ):
                connection.execute(statement)
        connection.unregister("staged_rows")
