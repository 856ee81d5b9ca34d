"""The README's least-privilege roles: segflow publishes as a role that owns only its schema."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest

from segflow.stores import PostgresStore
from tests.test_stores import DAY1, DAY2, labels, publication_for

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_role_sql() -> str:
    """The SQL block of the README's least-privilege section."""
    text = README.read_text()
    section = text[text.index("### Least privilege") :]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def roles(pg_uri):
    suffix = uuid.uuid4().hex[:8]
    names = {
        "segflow_publisher": f"pub_{suffix}",
        "segflow_reader": f"read_{suffix}",
        "segments": f"seg_{suffix}",
    }
    sql = readme_role_sql()
    for placeholder, name in names.items():
        sql = re.sub(rf"\b{placeholder}\b", name, sql)
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(sql)
    yield names
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{names["segments"]}" CASCADE')
        for role in (names["segflow_publisher"], names["segflow_reader"]):
            connection.execute(f'DROP OWNED BY "{role}"')
            connection.execute(f'DROP ROLE "{role}"')


def as_role(pg_uri: str, role: str) -> str:
    return pg_uri.replace("postgres@", f"{role}@", 1)


def test_publish_as_the_publisher_role_and_read_as_the_reader(pg_uri, roles):
    schema = roles["segments"]
    publisher = as_role(pg_uri, roles["segflow_publisher"])
    store = PostgresStore(publisher, schema)
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    store.publish(DAY2, publication_for(store, labels(2), DAY2))  # the swapped-in tables too

    with psycopg.connect(as_role(pg_uri, roles["segflow_reader"])) as reader:
        count = reader.execute(f'SELECT count(*) FROM "{schema}".customer_segments').fetchone()[0]
        changes = reader.execute(
            f'SELECT count(*) FROM "{schema}".segment_changes WHERE changed_at > %s', [DAY1]
        ).fetchone()[0]
        assert count == 500 and changes > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f'DELETE FROM "{schema}".customer_segments')

    with psycopg.connect(publisher) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute("CREATE TABLE public.segflow_should_not_exist (x int)")
