"""The README's least-privilege roles, executed as written: segflow publishes as a role that owns only
its schema, and the CRM reader can select the four sync tables and nothing else, across the table
swaps of later runs."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from segflow.stores import PostgresStore, TableWrite
from segflow.tables import TABLES
from tests.test_stores import DAY1, DAY2, labels, publication_for

README = Path(__file__).resolve().parents[1] / "README.md"
SYNC_TABLES = ("customer_segments", "segment_changes", "segment_definitions", "segment_profiles")
PRIVATE_TABLES = ("quarantine", "segment_models", "segmentation_runs")


def readme_sql_blocks() -> list[str]:
    """The SQL blocks of the README's least-privilege section: the roles, then the narrowing of an
    earlier setup."""
    text = README.read_text()
    section = text[text.index("### Least privilege") :]
    section = section[: section.index("\n## ")]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


@pytest.fixture
def names(pg_uri):
    """Fresh names for the README's roles, schema and event trigger; everything dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "segflow_publisher": f"pub_{suffix}",
        "segflow_reader": f"read_{suffix}",
        "segments": f"seg_{suffix}",
        "segflow_grant_sync_tables": f"grant_sync_{suffix}",
    }
    yield names
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        trigger = names["segflow_grant_sync_tables"]
        connection.execute(f'DROP EVENT TRIGGER IF EXISTS "{trigger}"')
        connection.execute(f'DROP FUNCTION IF EXISTS "{trigger}"()')
        connection.execute(f'DROP SCHEMA IF EXISTS "{names["segments"]}" CASCADE')
        for role in (names["segflow_publisher"], names["segflow_reader"]):
            connection.execute(f'DROP OWNED BY "{role}"')
            connection.execute(f'DROP ROLE "{role}"')


def run_as_admin(pg_uri: str, sql: str, names: dict[str, str]) -> None:
    for placeholder, name in names.items():
        sql = re.sub(rf"\b{placeholder}\b", name, sql)
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(sql)


def as_role(pg_uri: str, role: str) -> str:
    return pg_uri.replace("postgres@", f"{role}@", 1)


def publish_days(store: PostgresStore, days=(DAY1, DAY2)) -> None:
    """A publication per day (each after the first swaps new tables in), with the saved-model table."""
    models = TableWrite(
        "segment_models", TABLES["segment_models"].arrow_schema(pa.string()).empty_table(), "as_of"
    )
    for seed, day in enumerate(days, start=1):
        store.publish(day, [*publication_for(store, labels(seed), day), models])


def assert_reader_sees_only_the_sync_tables(pg_uri: str, names: dict[str, str]) -> None:
    schema = names["segments"]
    with psycopg.connect(as_role(pg_uri, names["segflow_reader"]), autocommit=True) as reader:
        counts = {
            t: reader.execute(f'SELECT count(*) FROM "{schema}".{t}').fetchone()[0] for t in SYNC_TABLES
        }
        assert counts["customer_segments"] == 500 and all(counts.values()), counts
        for table in PRIVATE_TABLES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(f'SELECT * FROM "{schema}".{table}')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f'DELETE FROM "{schema}".customer_segments')


def test_the_reader_selects_the_sync_tables_only_across_table_swaps(pg_uri, names):
    run_as_admin(pg_uri, readme_sql_blocks()[0], names)
    publisher = as_role(pg_uri, names["segflow_publisher"])
    publish_days(PostgresStore(publisher, names["segments"]))

    assert_reader_sees_only_the_sync_tables(pg_uri, names)
    with psycopg.connect(publisher) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute("CREATE TABLE public.segflow_should_not_exist (x int)")


def test_a_schema_set_up_with_the_earlier_grant_is_narrowed_to_the_sync_tables(pg_uri, names):
    earlier = """
        CREATE ROLE segflow_publisher LOGIN;
        CREATE ROLE segflow_reader LOGIN;
        CREATE SCHEMA segments AUTHORIZATION segflow_publisher;
        GRANT USAGE ON SCHEMA segments TO segflow_reader;
        ALTER DEFAULT PRIVILEGES FOR ROLE segflow_publisher IN SCHEMA segments
            GRANT SELECT ON TABLES TO segflow_reader;
    """
    run_as_admin(pg_uri, earlier, names)
    store = PostgresStore(as_role(pg_uri, names["segflow_publisher"]), names["segments"])
    publish_days(store)
    with psycopg.connect(as_role(pg_uri, names["segflow_reader"])) as reader:
        assert reader.execute(f'SELECT count(*) FROM "{names["segments"]}".quarantine').fetchone()[0] == 0

    roles, narrowing = readme_sql_blocks()
    run_as_admin(pg_uri, roles[roles.index("CREATE FUNCTION") :] + narrowing, names)
    assert_reader_sees_only_the_sync_tables(pg_uri, names)
    publish_days(store, [DAY2 + timedelta(days=1)])  # the next run's swapped-in tables
    assert_reader_sees_only_the_sync_tables(pg_uri, names)
