"""Storage targets on real DuckDB, PostgreSQL and Parquet: atomic swaps and idempotent dates."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from segflow.errors import PublishError
from segflow.ledger import RunFacts, RunLedger
from segflow.stores import DuckDBStore, ParquetStore, PostgresStore, TableWrite
from segflow.tables import NOISE_LABEL, NOISE_SEGMENT_KEY
from segflow.tasks.profile import profile_segments
from segflow.tasks.publish import build_publication, publication_writes
from tests.test_publish import profiles_for

DAY1, DAY2 = date(2026, 5, 1), date(2026, 5, 2)
IDS = np.array([f"c{i:04d}" for i in range(500)])


def publication_for(store, labels, as_of) -> list[TableWrite]:
    ledger = RunLedger(as_of=as_of, id_type=pa.string())
    stored = store.read_state(as_of)
    publication = build_publication(pd.Series(IDS), labels, profiles_for(labels), stored, ledger)
    return publication_writes(publication, ledger, RunFacts())


def read_duckdb(path, table):
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(f"SELECT * FROM segments.{table} ORDER BY ALL").df()


def read_postgres(uri, schema, table):
    with psycopg.connect(uri) as connection:
        cursor = connection.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1, 2')
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def read_parquet(root, table):
    path = root / "current" / f"{table}.parquet"
    if path.exists():
        return pq.read_table(path).to_pandas()
    return pq.read_table(root / "current" / table).to_pandas()


@pytest.fixture(params=["duckdb", "postgres", "parquet"])
def target(request, tmp_path):
    """(store, read(table) -> DataFrame) for each kind of target."""
    if request.param == "duckdb":
        path = tmp_path / "w.duckdb"
        return DuckDBStore(str(path), "segments"), lambda t: read_duckdb(path, t)
    if request.param == "postgres":
        uri = request.getfixturevalue("pg_uri")
        schema = request.getfixturevalue("pg_schema")
        return PostgresStore(uri, schema), lambda t: read_postgres(uri, schema, t)
    return ParquetStore(tmp_path / "pq"), lambda t: read_parquet(tmp_path / "pq", t)


def labels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, size=len(IDS))


def test_publish_then_rerun_the_same_date_is_idempotent(target):
    store, read = target
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    second = labels(1)
    second[:25] = (second[:25] + 1) % 3
    store.publish(DAY2, publication_for(store, second, DAY2))
    snapshot = read("customer_segments").sort_values("customer_id").reset_index(drop=True)
    changes = read("segment_changes")

    store.publish(DAY2, publication_for(store, second, DAY2))  # the same date again
    again = read("customer_segments").sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(snapshot, again)
    assert len(read("segment_changes")) == len(changes) == len(IDS) + 25
    runs = read("segmentation_runs")
    assert sorted(pd.to_datetime(runs["as_of"]).dt.date) == [DAY1, DAY2, DAY2]  # one row per run
    assert len(read("segment_profiles")) == 6
    assert snapshot["customer_id"].is_unique and len(snapshot) == len(IDS)


def test_segment_profiles_hold_each_segments_rule_as_json_and_none_for_noise(target):
    """Spend 0..499: customers 0-9 are noise, 10-249 segment 0, 250-499 segment 1. Spend is whole,
    so the thresholds are whole: between 9 and 10 and between 249 and 250 no whole number lies
    strictly inside, and the rule says the lower one."""
    store, read = target
    spend = np.arange(len(IDS), dtype=float)
    segment_labels = np.where(spend >= 250, 1, 0)
    segment_labels[:10] = NOISE_LABEL
    profiles = profile_segments(pd.DataFrame({"spend": spend}), segment_labels, ["spend"], [])
    ledger = RunLedger(as_of=DAY1, id_type=pa.string())
    publication = build_publication(pd.Series(IDS), segment_labels, profiles, store.read_state(DAY1), ledger)
    store.publish(DAY1, publication_writes(publication, ledger, RunFacts()))

    rules = read("segment_profiles").set_index("segment_key")["rules"]
    assert json.loads(rules[publication.keys[0]]) == {
        "conditions": ["9 < spend ≤ 249"],
        "recall": 1.0,
        "precision": 1.0,
    }
    assert json.loads(rules[publication.keys[1]]) == {
        "conditions": ["spend > 249"],
        "recall": 1.0,
        "precision": 1.0,
    }
    assert pd.isna(rules[NOISE_SEGMENT_KEY])


class UnreadableRows:
    """Rows that fail when a target reads them, as a table lost mid-publication would."""

    def __getattr__(self, name: str):
        raise OSError("the rows cannot be read")


def test_a_failing_publication_leaves_the_previous_one_readable(target):
    store, read = target
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    before = read("customer_segments")
    writes = publication_for(store, labels(2), DAY2)
    # the changes cannot be written, after customer_segments is already written
    changes = next(w for w in writes if w.name == "segment_changes")
    changes.rows = UnreadableRows()
    assert writes.index(changes) > [w.name for w in writes].index("customer_segments")
    with pytest.raises(Exception, match="cannot be read"):
        store.publish(DAY2, writes)
    pd.testing.assert_frame_equal(before, read("customer_segments"))
    assert set(pd.to_datetime(read("segment_changes")["as_of"]).dt.date) == {DAY1}


def test_postgres_declares_primary_keys(pg_uri, pg_schema):
    store = PostgresStore(pg_uri, pg_schema)
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    with psycopg.connect(pg_uri) as connection:
        keys = dict(
            connection.execute(
                """SELECT tc.table_name, string_agg(kcu.column_name, ',' ORDER BY kcu.ordinal_position)
               FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
               WHERE tc.table_schema = %s AND tc.constraint_type = 'PRIMARY KEY'
               GROUP BY tc.table_name""",
                [pg_schema],
            ).fetchall()
        )
    assert keys["customer_segments"] == "customer_id"
    assert keys["segment_definitions"] == "segment_key"
    assert keys["segment_changes"] == "as_of,customer_id"


def test_parquet_readers_only_see_complete_publications(tmp_path):
    store = ParquetStore(tmp_path / "pq")
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    first = (tmp_path / "pq" / "current").resolve()
    store.publish(DAY2, publication_for(store, labels(1), DAY2))
    second = (tmp_path / "pq" / "current").resolve()
    assert first != second and first.exists()
    assert sorted(p.name for p in (second / "segment_changes").iterdir()) == [
        "2026-05-01.parquet",
        "2026-05-02.parquet",
    ]
    # the first date's change file is shared, not copied
    assert (second / "segment_changes" / "2026-05-01.parquet").stat().st_nlink == 2
    assert not list((tmp_path / "pq" / "publications").glob(".*"))


def test_parquet_pruning_keeps_the_last_publications_and_never_touches_other_folders(tmp_path):
    store = ParquetStore(tmp_path / "pq")
    foreign = tmp_path / "pq" / "publications" / "someone-elses-data"
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("not segflow's")
    for day in range(1, 9):
        as_of = date(2026, 5, day)
        store.publish(as_of, publication_for(store, labels(day), as_of))
    made = [p for p in (tmp_path / "pq" / "publications").iterdir() if p != foreign]
    assert len(made) == 5 and (tmp_path / "pq" / "current").resolve() in made
    assert (foreign / "keep.txt").read_text() == "not segflow's"


def test_a_write_whose_rows_repeat_the_primary_key_is_refused_when_built(target):
    store, _ = target
    changes = next(w for w in publication_for(store, labels(1), DAY1) if w.name == "segment_changes")
    with pytest.raises(PublishError, match=r"\d+ rows repeat the primary key"):
        TableWrite(changes.name, pa.concat_tables([changes.rows, changes.rows.slice(0, 3)]), "as_of")


def test_a_leftover_staging_table_named_to_break_its_quotes_is_dropped_as_itself(pg_uri, pg_schema):
    """Identifiers are quoted with their double quotes doubled: a leftover staging table whose name
    closes its quotes and appends a statement is dropped as that one table, nothing else runs."""
    hostile = f'_stage_x" CASCADE; DROP TABLE "{pg_schema}"."keep'
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
        for table in ("keep", hostile):
            connection.execute(
                sql.SQL("CREATE TABLE {}.{} (x int)").format(sql.Identifier(pg_schema), sql.Identifier(table))
            )
    store = PostgresStore(pg_uri, pg_schema)
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    with psycopg.connect(pg_uri) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", [pg_schema]
            ).fetchall()
        }
    assert "keep" in tables and hostile not in tables
    assert len(read_postgres(pg_uri, pg_schema, "customer_segments")) == len(IDS)
