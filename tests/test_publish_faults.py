"""Publishing under faults: kill -9 at each phase and a long-running reader, on real targets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest

from segflow.stores import DuckDBStore, ParquetStore, PostgresStore
from tests.test_stores import DAY1, DAY2, labels, publication_for

REPO = Path(__file__).resolve().parents[1]

# In the child: publish DAY2, but stop for good at one phase, after writing a marker file.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import adbc_driver_manager.dbapi as adbc_dbapi
    from segflow import stores
    from tests.test_stores import DAY2, labels, publication_for

    kind, location, schema, phase, marker = sys.argv[1:6]

    def stop_here():
        Path(marker).write_text(phase)
        time.sleep(600)

    def after_first(owner, name):
        original, calls = getattr(owner, name), []
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            calls.append(1)
            if len(calls) == 1:
                stop_here()
            return result
        setattr(owner, name, wrapper)

    def before(owner, name):
        original = getattr(owner, name)
        def wrapper(*args, **kwargs):
            stop_here()
            return original(*args, **kwargs)
        setattr(owner, name, wrapper)

    if kind == "postgres":
        store = stores.PostgresStore(location, schema)
        {"mid-load": lambda: after_first(adbc_dbapi.Cursor, "adbc_ingest"),
         "before-swap": lambda: before(stores.PostgresStore, "_swap_with_retries"),
         "mid-swap": lambda: after_first(stores.PostgresStore, "_swap_table")}[phase]()
    elif kind == "duckdb":
        store = stores.DuckDBStore(location, "segments")
        {"mid-load": lambda: after_first(stores.DuckDBStore, "_write")}[phase]()
    else:
        store = stores.ParquetStore(Path(location))
        {"mid-load": lambda: after_first(stores.ParquetStore, "_write"),
         "before-swap": lambda: before(stores.ParquetStore, "_point_current_to")}[phase]()
    store.publish(DAY2, publication_for(store, labels(2), DAY2))
    """
)

CASES = [
    ("postgres", "mid-load"),
    ("postgres", "before-swap"),
    ("postgres", "mid-swap"),
    ("duckdb", "mid-load"),
    ("parquet", "mid-load"),
    ("parquet", "before-swap"),
]


def snapshot_of(kind: str, location: str, schema: str) -> pd.DataFrame:
    """customer_segments as a reader of the documented location sees it."""
    if kind == "postgres":
        with psycopg.connect(location) as connection:
            cursor = connection.execute(f'SELECT * FROM "{schema}".customer_segments ORDER BY customer_id')
            return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
    if kind == "duckdb":
        with duckdb.connect(location, read_only=True) as connection:
            return connection.sql("SELECT * FROM segments.customer_segments ORDER BY customer_id").df()
    return pd.read_parquet(Path(location) / "current" / "customer_segments.parquet")


def store_for(kind: str, location: str, schema: str):
    if kind == "postgres":
        return PostgresStore(location, schema)
    if kind == "duckdb":
        return DuckDBStore(location, "segments")
    return ParquetStore(Path(location))


@pytest.mark.parametrize(("kind", "phase"), CASES)
def test_kill_9_at_each_phase_leaves_the_previous_publication(kind, phase, tmp_path, request):
    schema = ""
    if kind == "postgres":
        location, schema = request.getfixturevalue("pg_uri"), request.getfixturevalue("pg_schema")
    else:
        location = str(tmp_path / ("w.duckdb" if kind == "duckdb" else "pq"))
    store = store_for(kind, location, schema)
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    before = snapshot_of(kind, location, schema)

    marker = tmp_path / "reached"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, location, schema, phase, str(marker)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, "the publishing process ended before reaching the phase"
        assert time.monotonic() < deadline, f"the publisher never reached {phase}"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    pd.testing.assert_frame_equal(before, snapshot_of(kind, location, schema))
    store.publish(DAY2, publication_for(store, labels(2), DAY2))  # the next run completes
    after = snapshot_of(kind, location, schema)
    assert len(after) == len(before) and not after.equals(before)
    if kind == "postgres":
        with psycopg.connect(location) as connection:
            leftovers = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE '\\_stage\\_%%'",
                [schema],
            ).fetchone()[0]
        assert leftovers == 0
    if kind == "parquet":
        assert not list((Path(location) / "publications").glob(".*"))


def test_a_long_reader_delays_the_swap_but_reads_consistently(pg_uri, pg_schema):
    store = PostgresStore(pg_uri, pg_schema, lock_timeout_seconds=0.5)
    store.publish(DAY1, publication_for(store, labels(1), DAY1))
    table = f'"{pg_schema}".customer_segments'
    seen: list[pd.DataFrame] = []
    reading = threading.Event()
    done_reading = {}

    def long_reader():
        with psycopg.connect(pg_uri) as connection, connection.transaction():
            query = f"SELECT customer_id, segment_key FROM {table} ORDER BY customer_id"
            seen.append(pd.DataFrame(connection.execute(query).fetchall()))
            reading.set()
            time.sleep(4)  # a slow reverse-ETL sync
            seen.append(pd.DataFrame(connection.execute(query).fetchall()))
        done_reading["at"] = time.monotonic()

    reader = threading.Thread(target=long_reader)
    reader.start()
    reading.wait(30)
    store.publish(DAY2, publication_for(store, labels(2), DAY2))
    published_at = time.monotonic()
    reader.join()

    pd.testing.assert_frame_equal(seen[0], seen[1])  # the reader saw one publication throughout
    assert published_at >= done_reading["at"]  # the swap waited for it, and then succeeded
    with psycopg.connect(pg_uri) as connection:
        now = pd.DataFrame(
            connection.execute(
                f"SELECT customer_id, segment_key FROM {table} ORDER BY customer_id"
            ).fetchall()
        )
    assert not now.equals(seen[0])
