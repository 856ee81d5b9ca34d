"""segment_membership_history: every customer's stay in each segment, from the change feed, on DuckDB,
PostgreSQL and Parquet."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segflow.ledger import RunFacts, RunLedger
from segflow.stores import DuckDBStore, ParquetStore, PostgresStore
from segflow.tasks.profile import profile_segments
from segflow.tasks.publish import build_publication, publication_writes

NIGHTS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
MOVER, STAYER, LEAVER, NEWCOMER = 7, 8, 9, 1000


def night_labels(night: int) -> pd.DataFrame:
    """300 customers in three segments; MOVER goes 0 -> 1 -> 2, LEAVER leaves on the third night,
    NEWCOMER arrives on the second."""
    ids = np.arange(300)
    labels = ids % 3
    labels[ids == MOVER] = night
    frame = pd.DataFrame({"customer_id": ids, "label": labels})
    if night >= 1:
        frame = pd.concat([frame, pd.DataFrame({"customer_id": [NEWCOMER], "label": [0]})], ignore_index=True)
    if night == 2:
        frame = frame[frame["customer_id"] != LEAVER]
    return frame.reset_index(drop=True)


def publish_three_nights(store) -> None:
    for night, as_of in enumerate(NIGHTS):
        frame = night_labels(night)
        labels = frame["label"].to_numpy()
        readable = pd.DataFrame({"spend": labels * 10.0 + frame["customer_id"] % 2})
        profiles = profile_segments(readable, labels, ["spend"], [])
        ledger = RunLedger(as_of=as_of, id_type=pa.int64())
        publication = build_publication(
            frame["customer_id"], labels, profiles, store.read_state(as_of), ledger
        )
        store.publish(as_of, publication_writes(publication, ledger, RunFacts()))


def history_of(target: str, tmp_path, pg_uri: str, pg_schema: str) -> pd.DataFrame:
    """Publish the three nights to one target and read its segment_membership_history back."""
    if target == "duckdb":
        store = DuckDBStore(str(tmp_path / "w.duckdb"), "segments")
        publish_three_nights(store)
        with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
            return (
                connection.sql("SELECT * FROM segments.segment_membership_history")
                .to_arrow_table()
                .to_pandas()
            )
    if target == "postgres":
        publish_three_nights(PostgresStore(pg_uri, pg_schema))
        with psycopg.connect(pg_uri) as connection:
            cursor = connection.execute(f'SELECT * FROM "{pg_schema}".segment_membership_history')
            return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
    publish_three_nights(ParquetStore(tmp_path / "pq"))
    return pq.read_table(tmp_path / "pq" / "current" / "segment_membership_history.parquet").to_pandas()


@pytest.mark.parametrize("target", ["duckdb", "postgres", "parquet"])
def test_a_customer_who_moved_twice_over_three_nights_has_three_intervals(
    target, tmp_path, pg_uri, pg_schema
):
    history = history_of(target, tmp_path, pg_uri, pg_schema)
    assert list(history.columns) == ["customer_id", "segment_key", "valid_from", "valid_to"]

    def stays(customer: int) -> list[tuple]:
        rows = history[history["customer_id"] == customer].sort_values("valid_from")
        return [
            (key, start, None if pd.isna(end) else end)
            for key, start, end in zip(rows["segment_key"], rows["valid_from"], rows["valid_to"], strict=True)
        ]

    first, second, third = NIGHTS
    keys = [stays(STAYER + offset)[0][0] for offset in (1, 2, 0)]  # customers 9, 10, 8: labels 0, 1, 2
    assert stays(MOVER) == [(keys[0], first, second), (keys[1], second, third), (keys[2], third, None)]
    assert stays(STAYER) == [(keys[2], first, None)]
    assert stays(LEAVER) == [(keys[0], first, third)]  # left on the third night: no open interval
    assert stays(NEWCOMER) == [(keys[0], second, None)]
    # one open interval per customer in the current snapshot, and none for a customer who left
    assert history["valid_to"].isna().sum() == 300
