"""The whole flow under a Prefect test harness, on data it has never seen and on real warehouses."""

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

from segflow.config import build_config
from segflow.errors import ContractViolation, GateRejected
from segflow.flows.segmentation import segmentation_flow

AS_OF = date(2026, 11, 1)
pytestmark = pytest.mark.usefixtures("prefect_harness")


def unseen_transactions(n_customers: int = 1200, seed: int = 5) -> pd.DataFrame:
    """Three kinds of buyers under column names the code has never been told about."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, size=n_customers)
    orders = np.array([2, 12, 30])[kind] + rng.integers(0, 3, size=n_customers)
    owner = np.repeat(np.arange(n_customers), orders)
    last_days = np.array([300, 40, 3])[kind][owner]
    days_ago = last_days + rng.integers(0, 60, size=len(owner))
    return pd.DataFrame(
        {
            "KundenNr": owner + 100_000,
            "Zahlungszeit": pd.Timestamp(AS_OF) - pd.to_timedelta(days_ago, unit="D"),
            "Betrag": np.round(
                np.array([20.0, 80.0, 300.0])[kind][owner] * rng.uniform(0.8, 1.2, len(owner)), 2
            ),
        }
    )


def unseen_config(tmp_path, warehouse: str, with_customers: bool = False, **publish):
    transactions = tmp_path / "zahlungen.parquet"
    unseen_transactions().to_parquet(transactions)
    sources = {
        "transactions": {
            "uri": str(transactions),
            "id_column": "KundenNr",
            "timestamp_column": "Zahlungszeit",
            "amount_column": "Betrag",
        }
    }
    if with_customers:
        customers = tmp_path / "kunden.csv"
        pd.DataFrame(
            {
                "KundenNr": np.arange(1200) + 100_000,
                "Region": np.random.default_rng(1).choice(["Nord", "Sued"], 1200),
            }
        ).to_csv(customers, index=False)
        sources["customers"] = {"uri": str(customers), "id_column": "KundenNr"}
    return build_config(
        {
            "sources": sources,
            "features": {"categorical": ["Region"] if with_customers else []},
            "clustering": {"algorithm": "kmeans", "k": [2, 6]},
            "publish": {"warehouse": warehouse, "parquet": str(tmp_path / "pq"), **publish},
        }
    )


def test_unseen_parquet_table_without_customers_publishes_to_postgres(tmp_path, pg_uri, pg_schema):
    config = unseen_config(tmp_path, pg_uri, schema=pg_schema)
    summary = segmentation_flow(config=config, as_of=AS_OF)
    assert summary["customers"] == 1200
    with psycopg.connect(pg_uri) as connection:
        rows = connection.execute(
            f"SELECT count(*), count(DISTINCT customer_id), count(DISTINCT segment_key) "
            f'FROM "{pg_schema}".customer_segments'
        ).fetchone()
        ids = connection.execute(f'SELECT min(customer_id) FROM "{pg_schema}".customer_segments').fetchone()
        runs = connection.execute(
            f'SELECT status, gate_passed, rows_published FROM "{pg_schema}".segmentation_runs'
        ).fetchall()
        rfm_scores = connection.execute(
            f"SELECT count(DISTINCT customer_id), min(recency_score), max(monetary_score), "
            f'count(DISTINCT rfm_segment) FROM "{pg_schema}".customer_rfm_scores'
        ).fetchone()
        (details,) = connection.execute(f'SELECT details FROM "{pg_schema}".segmentation_runs').fetchone()
    assert rfm_scores[:3] == (1200, 1, 5) and rfm_scores[3] >= 3
    leaderboard = json.loads(details)["leaderboard"]  # the chosen k-means and the RFM map's baseline
    assert [(row["algorithm"], row["selected"], row["baseline"]) for row in leaderboard] == [
        ("kmeans", True, False),
        ("rfm", False, True),
    ]
    assert rows[0] == rows[1] == 1200
    assert rows[2] == summary["segments"] >= 2
    assert ids[0] == 100_000  # the id keeps its values (and its integer type)
    assert runs == [("published", True, 1200)]
    parquet = pq.read_table(tmp_path / "pq" / "current" / "customer_segments.parquet")
    assert parquet.num_rows == 1200 and parquet.schema.field("customer_id").type == pa.int64()


def test_unseen_tables_with_customers_publish_to_duckdb_and_rerun_is_idempotent(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    config = unseen_config(tmp_path, f"duckdb:///{warehouse}", with_customers=True)
    first = segmentation_flow(config=config, as_of=AS_OF)
    second = segmentation_flow(config=config, as_of=AS_OF)
    assert first["customers"] == second["customers"] == 1200
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        counts = connection.sql(
            "SELECT (SELECT count(*) FROM segments.customer_segments),"
            " (SELECT count(*) FROM segments.segment_changes),"
            " (SELECT count(*) FROM segments.segmentation_runs)"
        ).fetchall()[0]
        profiles = connection.sql(
            "SELECT segment_name, top_categories, rules FROM segments.segment_profiles"
        ).df()
    assert counts == (1200, 1200, 2)  # one run row per run; the segment tables as after one
    assert profiles["segment_name"].is_unique
    assert profiles["top_categories"].str.contains("Region").all()
    for rule in map(json.loads, profiles["rules"]):  # k-means: every customer is in a segment with a rule
        assert 1 <= len(rule["conditions"]) <= 3 and 0 < rule["recall"] <= 1 and 0 < rule["precision"] <= 1


def test_critical_contract_failure_publishes_nothing_and_keeps_the_rows(tmp_path, small_demo):
    from segflow.demo import contracts_folder

    warehouse = tmp_path / "w.duckdb"
    raw = {
        "sources": {
            "customers": {
                "uri": str(small_demo["customers"]),
                "contract": str(contracts_folder() / "customers.odcs.yaml"),
            }
        },
        "features": {"numeric": ["web_sessions_90d", "email_opens_90d"]},
        "clustering": {"algorithm": "kmeans", "k": [2, 4]},
        "publish": {"warehouse": f"duckdb:///{warehouse}", "parquet": None},
    }
    good = segmentation_flow(config=build_config(raw), as_of=AS_OF)
    broken = pq.read_table(small_demo["customers"]).to_pandas()
    broken.loc[:9, "customer_id"] = None  # ten rows without an id: a critical rule
    broken_path = tmp_path / "customers.parquet"
    broken.to_parquet(broken_path)
    raw["sources"]["customers"]["uri"] = str(broken_path)

    with pytest.raises(ContractViolation, match="customer_id") as raised:
        segmentation_flow(config=build_config(raw), as_of=date(2026, 11, 2))
    assert "10" in str(raised.value) and "customers" in str(raised.value)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert (
            connection.sql("SELECT count(*) FROM segments.customer_segments").fetchall()[0][0]
            == good["customers"]
        )
        runs = dict(connection.sql("SELECT status, as_of FROM segments.segmentation_runs").fetchall())
        tables = {row[0] for row in connection.sql("SHOW ALL TABLES").fetchall()}
        quarantined = connection.sql(
            "SELECT count(*) FROM segments.quarantine WHERE as_of = DATE '2026-11-02' "
            "AND severity = 'critical'"
        ).fetchall()[0][0]
    assert runs == {"published": AS_OF, "failed_contract": date(2026, 11, 2)}
    assert quarantined == 10
    assert "customer_rfm_scores" not in tables  # no transactions, no RFM scores


def test_structureless_data_is_rejected_by_the_gate_and_keeps_the_last_publication(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    config = unseen_config(tmp_path, f"duckdb:///{warehouse}")
    segmentation_flow(config=config, as_of=AS_OF)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        before = connection.sql("SELECT * FROM segments.customer_segments ORDER BY customer_id").df()

    rng = np.random.default_rng(0)
    noise = pd.DataFrame({"KundenNr": np.arange(2000), **{f"f{i}": rng.uniform(size=2000) for i in range(4)}})
    noise_path = tmp_path / "noise.parquet"
    noise.to_parquet(noise_path)
    noise_config = build_config(
        {
            "sources": {"customers": {"uri": str(noise_path), "id_column": "KundenNr"}},
            "clustering": {"algorithm": "kmeans", "k": [2, 6]},
            "gate": {"min_silhouette": 0.5},
            "publish": {"warehouse": f"duckdb:///{warehouse}", "parquet": None},
        }
    )
    with pytest.raises(GateRejected, match="silhouette"):
        segmentation_flow(config=noise_config, as_of=date(2026, 11, 2))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        after = connection.sql("SELECT * FROM segments.customer_segments ORDER BY customer_id").df()
        rejected = connection.sql(
            "SELECT gate_passed, gate_reasons FROM segments.segmentation_runs WHERE status = 'rejected'"
        ).fetchall()
    pd.testing.assert_frame_equal(before, after)
    assert rejected[0][0] is False and "silhouette" in rejected[0][1]


def test_a_snapshot_breaking_the_output_contract_is_not_published(tmp_path):
    """A source without a contract lets null ids through; the output contract stops them."""
    ids = [None if i % 4 == 2 else f"c{i}" for i in range(200)]
    customers = pd.DataFrame({"id": ids, "x": np.arange(200.0)})
    path = tmp_path / "customers.parquet"
    customers.to_parquet(path)
    warehouse = tmp_path / "w.duckdb"
    config = build_config(
        {
            "sources": {"customers": {"uri": str(path), "id_column": "id"}},
            "clustering": {"algorithm": "kmeans", "k": [2, 3]},
            "gate": {"min_silhouette": 0.0},
            "publish": {"warehouse": f"duckdb:///{warehouse}", "parquet": None},
        }
    )
    with pytest.raises(ContractViolation, match="customer_segments.*customer_id"):
        segmentation_flow(config=config, as_of=AS_OF)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        tables = {row[0] for row in connection.sql("SHOW ALL TABLES").fetchall()}
        runs = connection.sql("SELECT status FROM segments.segmentation_runs").fetchall()
    assert "customer_segments" not in tables
    assert runs == [("failed_contract",)]
