"""Writers that do not share a Prefect database: one lock per target however its URI is spelt, a lock
at the target itself, and no stale snapshot published over a newer one (issue 16, finding 6)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow

from segflow.config import PublishConfig
from segflow.errors import PublishError
from segflow.ledger import RunFacts, RunLedger
from segflow.locks import folder_target, one_writer, target_names, warehouse_target
from segflow.stores import DuckDBStore, ParquetStore, PostgresStore, open_stores, read_state
from segflow.tasks.publish import (
    build_publication,
    publication_writes,
    publish_task,
    publish_to,
    read_state_task,
)
from tests.test_publish import profiles_for

DAY1, DAY2 = date(2026, 5, 1), date(2026, 5, 2)
IDS = np.array([f"c{i:04d}" for i in range(300)])
# holds DuckDB's lock on the file named by argv[1] until a line comes on stdin
HOLD_DUCKDB_FILE = (
    "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('holding', flush=True); input()"
)


def labels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, size=len(IDS))


def built(stores, seed: int, as_of: date):
    """A run's publication and writes, built on what `stores` hold now."""
    ledger = RunLedger(as_of=as_of, id_type=pa.string())
    stored = read_state(stores, as_of)
    publication = build_publication(pd.Series(IDS), labels(seed), profiles_for(labels(seed)), stored, ledger)
    return publication, publication_writes(publication, ledger, RunFacts())


def publish(stores, seed: int, as_of: date) -> str:
    publication, writes = built(stores, seed, as_of)
    publish_to(stores, publication, writes)
    return publication.run_id


# ------------------------------------------------------------------- one name per target, however spelt

ONE_DATABASE = [
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgres://postgres@127.0.0.1/test?sslmode=require",
    "postgresql://reader@127.0.0.1:5432/test/",
    "postgresql://127.0.0.1/test?connect_timeout=5&application_name=nightly",
    "postgresql:///test?host=127.0.0.1&port=5432",
    "postgresql://postgres@127.0.0.1:5432?dbname=test",
    "postgres://postgres@127.0.0.1/postgres?dbname=test",
]
OTHER_DATABASES = [
    "postgresql://postgres@127.0.0.1:5433/test",
    "postgresql://postgres@127.0.0.1/other",
    "postgresql://postgres@10.0.0.1/test",
    "postgresql://postgres@127.0.0.1",  # libpq's default database: the user's name
]


@pytest.mark.parametrize("uri", ONE_DATABASE)
def test_every_spelling_of_one_postgres_database_names_one_target(uri):
    assert warehouse_target(uri, "segments") == warehouse_target(ONE_DATABASE[0], "segments")


@pytest.mark.parametrize("uri", OTHER_DATABASES)
def test_another_server_port_or_database_is_another_target(uri):
    assert warehouse_target(uri, "segments") != warehouse_target(ONE_DATABASE[0], "segments")


def test_another_schema_is_another_target_and_ipv6_hosts_keep_their_port():
    assert warehouse_target(ONE_DATABASE[0], "other") != warehouse_target(ONE_DATABASE[0], "segments")
    assert warehouse_target("postgresql://[::1]/db", "s") == warehouse_target("postgres://[::1]:5432/db", "s")
    assert warehouse_target("postgresql://[::1]/db", "s") != warehouse_target("postgres://[::1]:6432/db", "s")


def test_relative_absolute_and_linked_paths_of_one_file_or_folder_name_one_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    duckdb_uris = [
        "duckdb:///out/w.duckdb",
        "duckdb:///./out/w.duckdb",
        f"duckdb:///{tmp_path}/link/w.duckdb",
    ]
    assert len({warehouse_target(uri, "segments") for uri in duckdb_uris}) == 1
    folders = ["out/pq", "out/pq/", "./out/pq", str(tmp_path / "link" / "pq")]
    assert len({folder_target(folder) for folder in folders}) == 1
    configs = [
        PublishConfig(warehouse=ONE_DATABASE[1], parquet="out/pq/"),
        PublishConfig(warehouse=ONE_DATABASE[2], parquet=str(tmp_path / "link" / "pq")),
    ]
    assert len({tuple(target_names(config).values()) for config in configs}) == 1
    # the stores key the publication they read by the same names
    stores = open_stores(PublishConfig(warehouse=duckdb_uris[0], parquet="out/pq"))
    assert [store.target for store in stores] == [
        warehouse_target(duckdb_uris[2], "segments"),
        folder_target(folders[3]),
    ]


# ---------------------------------------------------------------------------- the lock at the target


def test_two_spellings_of_one_postgres_database_contend_for_one_lock(pg_uri, pg_schema):
    respelt = pg_uri.replace("postgresql://", "postgres://", 1).replace(":5432/", "/") + "?sslmode=prefer"
    first = PostgresStore(pg_uri, pg_schema)
    second = PostgresStore(respelt, pg_schema, wait_seconds=0.3)
    assert first.target == second.target and first.uri != second.uri
    busy = "another writer holds the lock of PostgreSQL .* waited 0.3 s"
    with first.writer_lock():
        with pytest.raises(PublishError, match=busy), second.writer_lock():
            pass
        with PostgresStore(pg_uri, pg_schema + "_other", wait_seconds=0.3).writer_lock():
            pass  # another schema is another target
    with second.writer_lock():
        pass  # free once the first let go


def test_two_spellings_of_one_parquet_folder_contend_for_one_lock(tmp_path):
    first = ParquetStore(tmp_path / "pq")
    second = ParquetStore(Path(f"{tmp_path}/./pq/"), wait_seconds=0.2)
    writes = built([second], 1, DAY1)[1]
    busy = r"another writer holds .*\.writer\.lock"
    with first.writer_lock(), first.writer_lock(), pytest.raises(PublishError, match=busy):  # re-entrant
        second.publish(DAY1, writes)
    assert not second.current.exists()
    second.publish(DAY1, writes)
    assert second.current.exists()


def hold_duckdb_file(path: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DUCKDB_FILE, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.communicate("\n", timeout=30)


def test_a_writer_waits_while_another_process_holds_the_duckdb_file_then_publishes(tmp_path):
    path = tmp_path / "w.duckdb"
    store = DuckDBStore(str(path), "segments", wait_seconds=60)
    publication, writes = built([store], 1, DAY1)
    holder = hold_duckdb_file(path)
    outcome: dict[str, object] = {}

    def publish_in_background() -> None:
        try:
            publish_to([store], publication, writes)
            outcome["published"] = True
        except Exception as error:
            outcome["error"] = error

    writer = threading.Thread(target=publish_in_background)
    writer.start()
    writer.join(1.0)
    assert writer.is_alive() and not outcome  # waiting for the file, not failed
    release(holder)
    writer.join(60)
    assert outcome == {"published": True}
    assert store.current_run() == publication.run_id


def test_a_duckdb_file_held_past_the_wait_fails_naming_the_file(tmp_path):
    path = tmp_path / "w.duckdb"
    store = DuckDBStore(str(path), "segments", wait_seconds=0.3)
    writes = built([store], 1, DAY1)[1]
    holder = hold_duckdb_file(path)
    try:
        with pytest.raises(PublishError, match=f"another process holds the DuckDB file {path}; waited 0.3 s"):
            store.publish(DAY1, writes)
    finally:
        release(holder)


# --------------------------------------------------------------- compare and swap on the current run


def sql_tables(connection_rows, tables: list[str]) -> dict[str, list[tuple]]:
    return {table: sorted(map(tuple, connection_rows(table)), key=repr) for table in tables}


def published(store) -> dict:
    """Everything a target holds: rows of every table (warehouses), bytes of every file (Parquet)."""
    if isinstance(store, ParquetStore):
        folder = store.current.resolve()
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        return {
            str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files
        }
    if isinstance(store, DuckDBStore):
        with duckdb.connect(store.path, read_only=True) as connection:
            names = [row[0] for row in connection.sql("SELECT table_name FROM duckdb_tables()").fetchall()]
            return sql_tables(lambda t: connection.sql(f"SELECT * FROM segments.{t}").fetchall(), names)
    with psycopg.connect(store.uri) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (store.schema,)
            ).fetchall()
        ]
        return sql_tables(
            lambda t: connection.execute(f'SELECT * FROM "{store.schema}"."{t}"').fetchall(), names
        )


@pytest.fixture(params=["duckdb", "postgres", "parquet"])
def two_writers(request, tmp_path, monkeypatch):
    """Two store objects for one target, through two spellings of its URI or path."""
    monkeypatch.chdir(tmp_path)
    if request.param == "duckdb":
        return DuckDBStore("w.duckdb", "segments"), DuckDBStore(str(tmp_path / "w.duckdb"), "segments")
    if request.param == "postgres":
        uri, schema = request.getfixturevalue("pg_uri"), request.getfixturevalue("pg_schema")
        respelt = uri.replace("postgresql://", "postgres://", 1) + "?sslmode=prefer"
        return PostgresStore(uri, schema), PostgresStore(respelt, schema)
    return ParquetStore(Path("pq")), ParquetStore(tmp_path / "pq")


def test_a_stale_writer_is_refused_and_the_newer_publication_stays(two_writers):
    mine, other = two_writers
    first = publish([mine], 1, DAY1)
    stale, stale_writes = built([mine], 2, DAY2)  # read before the other writer published
    newer = publish([other], 3, DAY2)
    held = published(mine)
    with pytest.raises(PublishError) as refused:
        publish_to([mine], stale, stale_writes)
    message = str(refused.value)
    assert message.startswith(f"{mine.describe()} now holds the publication of run {newer}, not")
    assert f"not that of run {first} this run built on" in message
    assert "Nothing was written and the newer publication stays" in message
    assert published(mine) == held
    assert mine.current_run() == newer


def test_a_writer_that_read_an_empty_target_does_not_overwrite_a_first_publication(tmp_path):
    mine, other = (
        DuckDBStore(str(tmp_path / "w.duckdb"), "segments"),
        DuckDBStore(str(tmp_path / "w.duckdb"), "segments"),
    )
    stale, stale_writes = built([mine], 1, DAY1)
    newer = publish([other], 2, DAY1)
    with pytest.raises(PublishError, match=f"run {newer}, not that of run \\(none: it was empty\\)"):
        publish_to([mine], stale, stale_writes)


def test_every_target_is_checked_before_any_is_written(tmp_path):
    """The warehouse still holds what the run read, Parquet does not: neither is written."""
    warehouse = DuckDBStore(str(tmp_path / "w.duckdb"), "segments")
    parquet = ParquetStore(tmp_path / "pq")
    publish([warehouse, parquet], 1, DAY1)
    stale, stale_writes = built([warehouse, parquet], 2, DAY2)
    newer = publish([parquet], 3, DAY2)
    held = published(warehouse), published(parquet)
    with pytest.raises(PublishError, match=f"Parquet .* holds the publication of run {newer}, not"):
        publish_to([warehouse, parquet], stale, stale_writes)
    assert (published(warehouse), published(parquet)) == held


def test_a_second_writer_from_another_prefect_database_cannot_overwrite_a_newer_publication(
    prefect_harness, tmp_path
):
    """The stale run holds its writer slots in its Prefect database; the other writer's slots live in
    another one (here: none at all), so only the targets themselves can stop the stale snapshot."""
    config = PublishConfig(warehouse=f"duckdb:///{tmp_path}/w.duckdb", parquet=str(tmp_path / "pq"))
    stores = open_stores(config)
    publish(stores, 1, DAY1)
    newer: list[str] = []
    held: list[dict] = []

    @flow
    def stale_run() -> None:
        with one_writer(config):
            ledger = RunLedger(as_of=DAY2, id_type=pa.string())
            stored = read_state_task(stores, DAY2)
            publication = build_publication(
                pd.Series(IDS), labels(2), profiles_for(labels(2)), stored, ledger
            )
            newer.append(publish(open_stores(config), 3, DAY2))  # the other writer, meanwhile
            held.extend(published(store) for store in stores)
            publish_task(stores, publication, ledger, RunFacts())

    with pytest.raises(PublishError, match="published meanwhile"):
        stale_run()
    assert [published(store) for store in stores] == held
    assert [store.current_run() for store in stores] == newer * 2


# ------------------------------------------------------------------ targets an earlier release wrote


def drop_rules_column(store) -> None:
    """Make segment_profiles look like the release before rules existed."""
    if isinstance(store, ParquetStore):
        for part in (store.current / "segment_profiles").glob("*.parquet"):
            rows = pq.read_table(part).drop_columns(["rules"])
            part.resolve().unlink()
            pq.write_table(rows, part.resolve())
    elif isinstance(store, DuckDBStore):
        with duckdb.connect(store.path) as connection:
            connection.execute("ALTER TABLE segments.segment_profiles DROP COLUMN rules")
    else:
        with psycopg.connect(store.uri, autocommit=True) as connection:
            connection.execute(f'ALTER TABLE "{store.schema}".segment_profiles DROP COLUMN rules')


def test_publishing_onto_tables_of_an_earlier_release_adds_the_new_columns(two_writers):
    store = two_writers[0]
    publish([store], 1, DAY1)
    drop_rules_column(store)
    publish([store], 2, DAY2)
    publish([store], 2, DAY2)  # a rerun of the date: its rows replaced, the older date's kept
    if isinstance(store, ParquetStore):
        parts = sorted((store.current / "segment_profiles").glob("*.parquet"))
        assert [pq.read_schema(part).names[-1] for part in parts] == ["rules", "rules"]  # read alike
        profiles = pq.read_table(store.current / "segment_profiles").to_pandas()
    elif isinstance(store, DuckDBStore):
        with duckdb.connect(store.path, read_only=True) as connection:
            profiles = connection.sql("SELECT * FROM segments.segment_profiles").df()
    else:
        with psycopg.connect(store.uri) as connection:
            cursor = connection.execute(f'SELECT as_of, rules FROM "{store.schema}".segment_profiles')
            profiles = pd.DataFrame(cursor.fetchall(), columns=["as_of", "rules"])
    by_date = profiles.groupby(pd.to_datetime(profiles["as_of"]).dt.date)["rules"]
    assert by_date.apply(lambda rules: rules.isna().all()).to_dict() == {DAY1: True, DAY2: False}
    assert by_date.size().to_dict() == {DAY1: 3, DAY2: 3}
