"""Publication targets: DuckDB, PostgreSQL and Parquet, each swapping a run's tables in at once."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, Protocol

import duckdb
import pandas as pd
import pyarrow as pa

from segflow.config import PublishConfig
from segflow.errors import PublishError
from segflow.tables import TABLES
from segflow.uris import duckdb_path, redact_uri, with_secret_password

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


class PublicationStore(Protocol):
    def describe(self) -> str: ...

    def read_state(self, as_of: date) -> StoredState: ...

    def publish(self, as_of: date, writes: list[TableWrite]) -> None: ...

    def read_model(self) -> dict | None: ...

    def read_runs(self, limit: int) -> pd.DataFrame: ...

    def run_status(self, run_id: str) -> str | None: ...


class SqlReads:
    """The reads a warehouse answers with one query over one table (`_select`)."""

    placeholder: str

    def _select(self, table: str, sql: str, parameters: tuple = ()) -> pd.DataFrame | None: ...

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


SNAPSHOT_AS_OF_SQL = (
    "SELECT max(as_of) FROM {runs} WHERE status IN ("
    + ", ".join(f"'{status}'" for status in PUBLISHING_STATUSES)
    + ")"
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
    columns = [f'"{field.name}" {sql_type(field.type, dialect)}' for field in schema]
    if primary_key:
        columns.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in primary_key) + ")")
    guard = "IF NOT EXISTS " if if_not_exists else ""
    return f"CREATE TABLE {guard}{qualified} ({', '.join(columns)})"


def delete_sql(qualified: str, replace: Replace, placeholder: str) -> str:
    return f'DELETE FROM {qualified} WHERE "{"run_id" if replace == "run" else "as_of"}" = {placeholder}'


class DuckDBStore(SqlReads):
    """A DuckDB file; every publication is one transaction."""

    placeholder = "?"

    def __init__(self, path: str, schema: str):
        self.path = path
        self.schema = schema

    def describe(self) -> str:
        return f"DuckDB {self.path} (schema {self.schema})"

    def _name(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    def read_state(self, as_of: date) -> StoredState:
        if not Path(self.path).exists():
            return StoredState()
        with duckdb.connect(self.path, read_only=True) as connection:
            present = {
                row[0]
                for row in connection.sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                    params=[self.schema],
                ).fetchall()
            }
            if "customer_segments" not in present:
                return StoredState()

            def query(sql: str, parameters: list | None = None) -> pd.DataFrame:
                return connection.sql(sql, params=parameters).to_arrow_table().to_pandas()

            return StoredState(
                snapshot=query(f"SELECT * FROM {self._name('customer_segments')}"),
                snapshot_as_of=connection.sql(
                    SNAPSHOT_AS_OF_SQL.format(runs=self._name("segmentation_runs"))
                ).fetchall()[0][0],
                definitions=query(f"SELECT * FROM {self._name('segment_definitions')}"),
                changes_on_as_of=query(
                    f"SELECT * FROM {self._name('segment_changes')} WHERE as_of = ?", [as_of]
                ),
            )

    def _select(self, table: str, sql: str, parameters: tuple = ()) -> pd.DataFrame | None:
        """A query over one table, or None when the file or the table does not exist yet."""
        if not Path(self.path).exists():
            return None
        with duckdb.connect(self.path, read_only=True) as connection:
            exists = connection.sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                params=[self.schema, table],
            ).fetchall()[0][0]
            if not exists:
                return None
            query = connection.sql(sql.format(table=self._name(table)), params=list(parameters) or None)
            return query.to_arrow_table().to_pandas()

    def publish(self, as_of: date, writes: list[TableWrite]) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(self.path) as connection:
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                for write in writes:
                    self._write(connection, as_of, write)
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
            connection.execute(f'ALTER TABLE {fresh} RENAME TO "{write.name}"')
        else:
            # no declared key here: DuckDB's commit of a delete and re-insert of the same keys in an
            # indexed table took 6.6 s for 100k rows (0.03 s without the index); TableWrite checks
            # the key on the rows instead (the rows they replace are deleted first, other dates differ)
            connection.execute(create_table_sql(target, write.rows.schema, (), "duckdb", True))
            connection.execute(delete_sql(target, write.replace, "?"), [write.delete_parameter(as_of)])
            connection.execute(f"INSERT INTO {target} SELECT * FROM staged_rows")
        connection.unregister("staged_rows")


LOCK_NOT_AVAILABLE = "55P03"


class PostgresStore(SqlReads):
    """A PostgreSQL schema: rows bulk-loaded with ADBC into staging tables (committed), then
    swapped in by one short transaction. The swap waits at most `lock_timeout_seconds` for readers
    at a time and is retried, so a long-running reader delays the publication but never breaks it."""

    placeholder = "$1"

    def __init__(
        self,
        uri: str,
        schema: str,
        lock_timeout_seconds: float = 5,
        swap_attempts: int = 60,
        password_secret: str | None = None,
    ):
        self.uri = uri
        self.password_secret = password_secret
        self.schema = schema
        self.lock_timeout_seconds = lock_timeout_seconds
        self.swap_attempts = swap_attempts

    def describe(self) -> str:
        return f"PostgreSQL {redact_uri(self.uri)} (schema {self.schema})"

    def _name(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    def _connect(self):
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc

        uri = with_secret_password(self.uri, self.password_secret)
        try:
            return adbc.connect(uri)
        except Exception as error:
            raise PublishError(
                f"cannot connect to {redact_uri(self.uri)}: {str(error).replace(uri, '***')}",
                transient=isinstance(error, adbc_driver_manager.OperationalError),  # refused, restarting
            ) from error

    def read_state(self, as_of: date) -> StoredState:
        with self._connect() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass($1)", parameters=(f"{self._name('customer_segments')}",))
            if cursor.fetchone()[0] is None:
                return StoredState()

            def query(sql: str, parameters: tuple = ()) -> pd.DataFrame:
                cursor.execute(sql, parameters=parameters or None)
                return cursor.fetch_arrow_table().to_pandas()

            cursor.execute(SNAPSHOT_AS_OF_SQL.format(runs=self._name("segmentation_runs")))
            snapshot_as_of = cursor.fetchone()[0]
            return StoredState(
                snapshot=query(f"SELECT * FROM {self._name('customer_segments')}"),
                snapshot_as_of=snapshot_as_of,
                definitions=query(f"SELECT * FROM {self._name('segment_definitions')}"),
                changes_on_as_of=query(
                    f"SELECT * FROM {self._name('segment_changes')} WHERE as_of = $1", (as_of,)
                ),
            )

    def _select(self, table: str, sql: str, parameters: tuple = ()) -> pd.DataFrame | None:
        """A query over one table, or None when the table does not exist yet."""
        with self._connect() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass($1)", parameters=(self._name(table),))
            if cursor.fetchone()[0] is None:
                return None
            cursor.execute(sql.format(table=self._name(table)), parameters=parameters or None)
            return cursor.fetch_arrow_table().to_pandas()

    def publish(self, as_of: date, writes: list[TableWrite]) -> None:
        token = uuid.uuid4().hex[:10]
        staged = {write.name: f"_stage_{token}_{write.name}" for write in writes}
        try:
            self._stage(writes, staged)
            self._swap_with_retries(as_of, writes, staged)
        finally:
            self._drop_tables(staged.values())

    def _stage(self, writes: list[TableWrite], staged: dict[str, str]) -> None:
        """Create and bulk-load one staging table per write; readers never look at them."""
        with self._connect() as connection, connection.cursor() as cursor:
            # only when missing: a publisher role that owns its schema may not create schemas
            cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname = $1", parameters=(self.schema,))
            if cursor.fetchone()[0] == 0:
                cursor.execute(f'CREATE SCHEMA "{self.schema}"')
            cursor.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE '\\_stage\\_%'",
                parameters=(self.schema,),
            )
            for (abandoned,) in cursor.fetchall():  # left by a killed run
                cursor.execute(f"DROP TABLE IF EXISTS {self._name(abandoned)}")
            for write in writes:
                spec = TABLES[write.name]
                key = spec.primary_key if write.replace == "all" else ()
                cursor.execute(
                    create_table_sql(
                        self._name(staged[write.name]), write.rows.schema, key, "postgres", False
                    )
                )
                cursor.adbc_ingest(staged[write.name], write.rows, mode="append", db_schema_name=self.schema)
            connection.commit()

    def _swap_with_retries(self, as_of: date, writes: list[TableWrite], staged: dict[str, str]) -> None:
        import adbc_driver_manager

        for attempt in range(1, self.swap_attempts + 1):
            try:
                return self._swap(as_of, writes, staged)
            except adbc_driver_manager.Error as error:
                if getattr(error, "sqlstate", None) != LOCK_NOT_AVAILABLE or attempt == self.swap_attempts:
                    raise
                time.sleep(min(0.5 * attempt, 5.0))  # a reader holds the table: wait for it

    def _swap(self, as_of: date, writes: list[TableWrite], staged: dict[str, str]) -> None:
        """One transaction: every table of the publication changes at once, or none does."""
        with self._connect() as connection, connection.cursor() as cursor:
            try:
                cursor.execute(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_seconds * 1000)}ms'")
                for write in writes:
                    self._swap_table(cursor, as_of, write, staged[write.name])
                connection.commit()
            except Exception:
                connection.rollback()
                raise

    def _swap_table(self, cursor, as_of: date, write: TableWrite, staging: str) -> None:
        spec = TABLES[write.name]
        target = self._name(write.name)
        if write.replace == "all":
            cursor.execute(f"DROP TABLE IF EXISTS {target}")
            cursor.execute(f'ALTER TABLE {self._name(staging)} RENAME TO "{write.name}"')
            if spec.primary_key:
                cursor.execute(f'ALTER INDEX "{self.schema}"."{staging}_pkey" RENAME TO "{write.name}_pkey"')
        else:
            cursor.execute(create_table_sql(target, write.rows.schema, spec.primary_key, "postgres", True))
            cursor.execute(
                delete_sql(target, write.replace, "$1"), parameters=(write.delete_parameter(as_of),)
            )
            cursor.execute(f"INSERT INTO {target} SELECT * FROM {self._name(staging)}")

    def _drop_tables(self, names) -> None:
        """Drop what is left of the staging tables (the swapped-in ones are already renamed)."""
        try:
            with self._connect() as connection, connection.cursor() as cursor:
                for name in names:
                    cursor.execute(f"DROP TABLE IF EXISTS {self._name(name)}")
                connection.commit()
        except Exception:  # the next publication drops abandoned staging tables anyway
            pass


def open_stores(publish: PublishConfig) -> list[PublicationStore]:
    """The configured targets, the warehouse first: it is the one whose state a run reads."""
    from segflow.parquet_store import ParquetStore

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
