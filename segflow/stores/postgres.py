"""PostgreSQL publication: rows bulk-loaded with ADBC into staging tables, swapped in by one short
transaction."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import date

import pandas as pd

from segflow.errors import PublishError
from segflow.locks import advisory_key, postgres_target, wait_for
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
from segflow.uris import redact_uri, with_secret_password

LOCK_NOT_AVAILABLE = "55P03"


class PostgresStore(SqlReads, TargetLock):
    """A PostgreSQL schema: rows bulk-loaded with ADBC into staging tables (committed), then
    swapped in by one short transaction. The swap waits at most `lock_timeout_seconds` for readers
    at a time and is retried, so a long-running reader delays the publication but never breaks it.
    Writers take turns on an advisory lock of the schema, waiting up to `wait_seconds`."""

    placeholder = "$1"

    def __init__(
        self,
        uri: str,
        schema: str,
        lock_timeout_seconds: float = 5,
        swap_attempts: int = 60,
        password_secret: str | None = None,
        wait_seconds: float = 3600,
    ):
        self.uri = uri
        self.password_secret = password_secret
        self.schema = schema
        self.lock_timeout_seconds = lock_timeout_seconds
        self.swap_attempts = swap_attempts
        self.wait_seconds = wait_seconds
        self.target = postgres_target(uri, schema)

    def describe(self) -> str:
        return f"PostgreSQL {redact_uri(self.uri)} (schema {self.schema})"

    def _name(self, table: str) -> str:
        return qualified_name(self.schema, table)

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

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """A session advisory lock on its own connection, released when it closes (or the process
        dies). Keyed by the schema alone: advisory locks are per database, so every spelling of
        the URI (another host name for the server, say) meets the same lock."""
        key = advisory_key(self.schema)
        with self._connect() as connection, connection.cursor() as cursor:

            def attempt() -> bool | None:
                cursor.execute("SELECT pg_try_advisory_lock($1)", parameters=(key,))
                locked = cursor.fetchone()[0]
                connection.commit()  # the session lock outlives the transaction; stay out of one
                return locked or None

            wait_for(attempt, self.wait_seconds, f"another writer holds the lock of {self.describe()}")
            try:
                yield
            finally:
                with suppress(Exception):  # closing the connection releases it anyway
                    cursor.execute("SELECT pg_advisory_unlock($1)", parameters=(key,))
                    connection.commit()

    def read_state(self, as_of: date) -> StoredState:
        # the current run first: a publication committed between the two reads then makes this
        # run's swap refuse, rather than a stale snapshot pass for the newer run's
        current = {self.target: self.current_run()}
        with self._connect() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass($1)", parameters=(self._name("customer_segments"),))
            if cursor.fetchone()[0] is None:
                return StoredState(current_runs=current)

            def query(sql: str, parameters: tuple = ()) -> pd.DataFrame:
                cursor.execute(sql, parameters=parameters or None)
                return cursor.fetch_arrow_table().to_pandas()

            cursor.execute(SNAPSHOT_AS_OF_SQL.format(runs=self._name("segmentation_runs")))
            snapshot_as_of = cursor.fetchone()[0]
            cursor.execute("SELECT to_regclass($1)", parameters=(self._name("segment_holdouts"),))
            holdouts = cursor.fetchone()[0] is not None
            return StoredState(
                snapshot=query(f"SELECT * FROM {self._name('customer_segments')}"),
                snapshot_as_of=snapshot_as_of,
                definitions=query(f"SELECT * FROM {self._name('segment_definitions')}"),
                changes_on_as_of=query(
                    f"SELECT * FROM {self._name('segment_changes')} WHERE as_of = $1", (as_of,)
                ),
                holdouts=query(f"SELECT * FROM {self._name('segment_holdouts')}") if holdouts else None,
                current_runs=current,
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
        with self.writer_lock():
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
                cursor.execute(f"CREATE SCHEMA {quote_identifier(self.schema)}")
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
                if writes_changes(writes):
                    cursor.execute(history_view_sql(self.schema))
                connection.commit()
            except Exception:
                connection.rollback()
                raise

    def _swap_table(self, cursor, as_of: date, write: TableWrite, staging: str) -> None:
        spec = TABLES[write.name]
        target = self._name(write.name)
        if write.replace == "all":
            cursor.execute(f"DROP TABLE IF EXISTS {target}")
            cursor.execute(f"ALTER TABLE {self._name(staging)} RENAME TO {quote_identifier(write.name)}")
            if spec.primary_key:
                index, renamed = self._name(f"{staging}_pkey"), quote_identifier(f"{write.name}_pkey")
                cursor.execute(f"ALTER INDEX {index} RENAME TO {renamed}")
        else:
            cursor.execute(create_table_sql(target, write.rows.schema, spec.primary_key, "postgres", True))
            cursor.execute(
                delete_sql(target, write.replace, "$1"), parameters=(write.delete_parameter(as_of),)
            )
            cursor.execute(columns_sql(("$1", "$2")), parameters=(self.schema, write.name))
            present = {row[0] for row in cursor.fetchall()}
            for statement in append_sql(target, self._name(staging), write.rows.schema, present, "postgres"):
                cursor.execute(statement)

    def _drop_tables(self, names) -> None:
        """Drop what is left of the staging tables (the swapped-in ones are already renamed)."""
        try:
            with self._connect() as connection, connection.cursor() as cursor:
                for name in names:
                    cursor.execute(f"DROP TABLE IF EXISTS {self._name(name)}")
                connection.commit()
        except Exception:  # the next publication drops abandoned staging tables anyway
            pass
