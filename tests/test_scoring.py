"""Scoring: new or changed customers assigned to the published segments with the saved model."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest

from segflow.config import build_config
from segflow.errors import ConfigError, ContractViolation
from segflow.flows.scoring import scoring_flow
from segflow.flows.segmentation import segmentation_flow
from segflow.tasks.publish import scored_membership

AS_OF = date(2026, 11, 1)
NEXT_DAY = date(2026, 11, 2)


def buyers(ids: np.ndarray, seed: int) -> pd.DataFrame:
    """Three kinds of buyers (rare, regular, frequent) under column names of the test's choosing."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, size=len(ids))
    orders = np.array([2, 12, 30])[kind] + rng.integers(0, 3, size=len(ids))
    owner = np.repeat(np.arange(len(ids)), orders)
    days_ago = np.array([300, 40, 3])[kind][owner] + rng.integers(0, 60, size=len(owner))
    return pd.DataFrame(
        {
            "client": ids[owner],
            "paid": pd.Timestamp(AS_OF) - pd.to_timedelta(days_ago, unit="D"),
            "total": np.round(
                np.array([20.0, 80.0, 300.0])[kind][owner] * rng.uniform(0.8, 1.2, len(owner)), 2
            ),
        }
    )


def config_for(transactions_path, warehouse: str, parquet=None, schema: str = "segments"):
    return build_config(
        {
            "sources": {
                "transactions": {
                    "uri": str(transactions_path),
                    "id_column": "client",
                    "timestamp_column": "paid",
                    "amount_column": "total",
                }
            },
            "clustering": {"algorithm": "kmeans", "k": [2, 5]},
            "publish": {"warehouse": warehouse, "parquet": parquet, "schema": schema, "reports": None},
        }
    )


def snapshot_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("customer_id").reset_index(drop=True)


# ---------------------------------------------------------------------------- the merge, pure


def test_scored_customers_enter_or_move_and_everyone_else_is_untouched():
    snapshot = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "segment_key": ["seg-0001", "seg-0002", "seg-0001"],
            "segment_name": ["Loyal", "Lapsed", "Loyal"],
            "segment_since": [date(2026, 1, 1)] * 3,
            "changed_at": pd.to_datetime(["2026-01-01"] * 3),
        }
    )
    no_changes = pd.DataFrame(
        columns=[
            "run_id",
            "as_of",
            "customer_id",
            "from_segment_key",
            "to_segment_key",
            "change_type",
            "from_segment_since",
            "changed_at",
        ]
    )
    scored = pd.DataFrame(
        {"customer_id": ["b", "c", "d"], "segment_key": ["seg-0001", "seg-0001", "seg-0002"]}
    )
    names = {"seg-0001": "Loyal", "seg-0002": "Lapsed"}
    updated, changes, moved = scored_membership(scored, snapshot, no_changes, names, "run-9", NEXT_DAY)

    assert moved == 2
    by_id = updated.set_index("customer_id")
    assert by_id.loc["a"].equals(snapshot.set_index("customer_id").loc["a"])  # not scored
    assert by_id.loc["c", "segment_since"] == date(2026, 1, 1)  # scored, same segment
    assert (by_id.loc["b", "segment_key"], by_id.loc["b", "segment_since"]) == ("seg-0001", NEXT_DAY)
    assert by_id.loc["d", "segment_name"] == "Lapsed"
    feed = changes.set_index("customer_id")
    assert feed.loc["b", ["from_segment_key", "to_segment_key", "change_type"]].tolist() == [
        "seg-0002",
        "seg-0001",
        "moved",
    ]
    assert pd.isna(feed.loc["d", "from_segment_key"]) and feed.loc["d", "change_type"] == "entered"
    assert set(feed.index) == {"b", "d"}

    # scored again the same day, b goes back where it started: no net change is left in the feed
    again, changes_again, _ = scored_membership(
        pd.DataFrame({"customer_id": ["b"], "segment_key": ["seg-0002"]}),
        updated,
        changes,
        names,
        "run-10",
        NEXT_DAY,
    )
    assert set(changes_again["customer_id"]) == {"d"}
    assert again.set_index("customer_id").loc["b", "segment_since"] == date(2026, 1, 1)


# ---------------------------------------------------------------------------- the flow


@pytest.mark.usefixtures("prefect_harness")
def test_scoring_assigns_new_customers_and_leaves_the_others_untouched(tmp_path):
    history = tmp_path / "orders.parquet"
    buyers(np.arange(1200) + 100_000, seed=5).to_parquet(history)
    warehouse = tmp_path / "w.duckdb"
    config = config_for(history, f"duckdb:///{warehouse}", parquet=str(tmp_path / "pq"))

    with pytest.raises(ConfigError, match="no segmentation model is published"):
        scoring_flow(config=config, as_of=AS_OF)
    published = segmentation_flow(config=config, as_of=AS_OF)

    def read(sql: str) -> pd.DataFrame:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            return connection.sql(sql).df()

    before = snapshot_rows(read("SELECT * FROM segments.customer_segments"))

    # the fitted customers, scored again with the same data: every one keeps its segment
    rescored = scoring_flow(config=config, as_of=AS_OF)
    assert rescored["customers"] == 1200 and rescored["changes"] == 0
    pd.testing.assert_frame_equal(before, snapshot_rows(read("SELECT * FROM segments.customer_segments")))

    newcomers = tmp_path / "new_orders.parquet"
    buyers(np.arange(1000) + 900_000, seed=6).to_parquet(newcomers)
    scored = scoring_flow(
        config=config_for(newcomers, f"duckdb:///{warehouse}", str(tmp_path / "pq")), as_of=NEXT_DAY
    )
    assert scored["customers"] == 1000 and scored["model_run_id"] == published["run_id"]

    after = snapshot_rows(read("SELECT * FROM segments.customer_segments"))
    assert len(after) == 2200
    old_rows = after[after["customer_id"] < 900_000].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, old_rows)  # the other customers' rows are untouched
    new_rows = after[after["customer_id"] >= 900_000]
    assert set(new_rows["segment_key"]) <= set(before["segment_key"])  # existing segments only
    assert (new_rows["segment_since"] == pd.Timestamp(NEXT_DAY)).all()
    feed = read("SELECT * FROM segments.segment_changes WHERE as_of = DATE '2026-11-02'")
    assert len(feed) == 1000 and set(feed["change_type"]) == {"entered"}
    assert set(feed["run_id"]) == {scored["run_id"]}
    runs = read("SELECT run_id, status, algorithm, rows_published FROM segments.segmentation_runs")
    assert runs.set_index("run_id").loc[scored["run_id"]].tolist() == ["scored", "kmeans", 1000]

    # the Parquet publication got the same rows in the same swap
    import pyarrow.parquet as pq

    parquet = snapshot_rows(
        pq.read_table(tmp_path / "pq" / "current" / "customer_segments.parquet").to_pandas()
    )
    parquet["segment_since"] = pd.to_datetime(parquet["segment_since"]).astype("datetime64[us]")
    pd.testing.assert_frame_equal(after, parquet)

    # the kinds of buyer land where the fitted customers of the same kind are
    kinds = buyers(np.arange(1000) + 900_000, seed=6).groupby("client")["total"].mean() > 150
    big_spenders = set(kinds[kinds].index)
    keys_of_big = new_rows[new_rows["customer_id"].isin(big_spenders)]["segment_key"].value_counts()
    assert keys_of_big.iloc[0] / keys_of_big.sum() > 0.95


@pytest.mark.usefixtures("prefect_harness")
def test_scoring_refuses_input_that_does_not_match_the_model_and_publishes_nothing(
    tmp_path, pg_uri, pg_schema
):
    history = tmp_path / "orders.parquet"
    buyers(np.arange(600) + 1, seed=3).to_parquet(history)
    customers = tmp_path / "customers.parquet"
    pd.DataFrame(
        {"client": np.arange(600) + 1, "age": np.random.default_rng(2).integers(18, 80, 600)}
    ).to_parquet(customers)
    raw = config_for(history, pg_uri, schema=pg_schema).model_dump(mode="json", by_alias=True)
    raw["sources"]["customers"] = {"uri": str(customers), "id_column": "client"}
    segmentation_flow(config=build_config(raw), as_of=AS_OF)  # the model reads age and the RFM columns

    def snapshot() -> pd.DataFrame:
        with psycopg.connect(pg_uri) as connection:
            cursor = connection.execute(f'SELECT * FROM "{pg_schema}".customer_segments ORDER BY customer_id')
            return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])

    before = snapshot()
    without_age = tmp_path / "customers_without_age.parquet"
    pd.DataFrame({"client": [9001, 9002, 9003]}).to_parquet(without_age)
    raw["sources"]["customers"]["uri"] = str(without_age)
    with pytest.raises(ContractViolation, match="'age' are missing") as refused:
        scoring_flow(config=build_config(raw), as_of=NEXT_DAY)
    assert refused.value.exit_code == 3
    pd.testing.assert_frame_equal(before, snapshot())
    with psycopg.connect(pg_uri) as connection:
        statuses = [
            row[0] for row in connection.execute(f'SELECT status FROM "{pg_schema}".segmentation_runs')
        ]
    assert sorted(statuses) == ["failed_contract", "published"]
