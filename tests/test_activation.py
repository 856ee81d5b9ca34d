"""Stable holdout groups: a keyed hash per customer, the share held in every segment, rows that change
only with the segment or the salt, published on every target and stated in the report."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest

from segflow.activation import holdout_numbers, holdout_sizes, holdout_table
from segflow.config import build_config
from segflow.errors import ConfigError
from segflow.flows.scoring import scoring_flow
from segflow.flows.segmentation import segmentation_flow
from tests.helpers import three_groups

NIGHT1, NIGHT2, NIGHT3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
SALT = "campaigns-2026"


def snapshot(keys: list[str], ids=None) -> pd.DataFrame:
    ids = np.arange(len(keys)) if ids is None else ids
    return pd.DataFrame({"customer_id": ids, "segment_key": keys})


def test_each_customer_s_number_is_the_hmac_sha256_of_their_id_keyed_by_the_salt():
    ids = pd.Series([17, 123456789])
    expected = [
        int.from_bytes(hmac.new(SALT.encode(), str(i).encode(), hashlib.sha256).digest()[:8], "big") / 2**64
        for i in ids
    ]
    assert holdout_numbers(ids, SALT).tolist() == expected
    assert holdout_numbers(pd.Series(["C-17"]), SALT)[0] != holdout_numbers(pd.Series(["C-17"]), "other")[0]


def test_every_segment_holds_out_the_share_within_one_point_at_100k_customers():
    rng = np.random.default_rng(0)
    sizes = {
        "seg-0001": 40_000,
        "seg-0002": 25_000,
        "seg-0003": 15_000,
        "seg-0004": 12_000,
        "seg-0005": 8_000,
    }
    keys = rng.permutation(np.repeat(list(sizes), list(sizes.values())))
    customers = snapshot(list(keys), ids=[f"C{n:07d}" for n in rng.permutation(10**7)[:100_000]])
    measured = {}
    for salt in (SALT, "spring-sale", "x"):
        shares = holdout_sizes(holdout_table(customers, None, 0.1, salt, NIGHT1)).set_index("segment_key")
        assert shares["customers"].to_dict() == sizes
        measured[salt] = shares["share"].round(4).to_dict()
        assert (shares["share"] - 0.1).abs().max() <= 0.01, measured[salt]
    print("holdout share per segment at 100k customers, share 0.1:", measured)


def test_a_row_changes_only_when_the_customer_s_segment_or_the_salt_changes():
    first = holdout_table(snapshot(["a", "b"] * 500), None, 0.2, SALT, NIGHT1)
    assert (first["assigned_at"] == pd.Timestamp(NIGHT1)).all()

    moved = snapshot(["a", "b"] * 500)
    moved.loc[:99, "segment_key"] = "c"
    second = holdout_table(moved, first, 0.2, SALT, NIGHT2)
    kept = second["segment_key"] == first["segment_key"]
    assert kept.sum() == 900
    pd.testing.assert_frame_equal(second[kept], first[kept])  # nothing else changes, assigned_at included
    assert (second.loc[~kept, "assigned_at"] == pd.Timestamp(NIGHT2)).all()
    assert (second["holdout"] == first["holdout"]).all()  # the group never depends on the segment

    resalted = holdout_table(moved, second, 0.2, "a new salt", date(2026, 11, 3))
    flipped = resalted["holdout"] != second["holdout"]
    assert 200 < flipped.sum() < 450  # a reshuffle: about 2 x 0.2 x 0.8 of everyone
    assert (resalted.loc[flipped, "assigned_at"] == pd.Timestamp(date(2026, 11, 3))).all()
    assert (resalted.loc[~flipped, "assigned_at"] == second.loc[~flipped, "assigned_at"]).all()

    raised = holdout_table(moved, second, 0.3, SALT, date(2026, 11, 3))
    assert (raised["holdout"] >= second["holdout"]).all()  # raising the share only adds customers


def test_a_holdout_share_needs_a_salt():
    with pytest.raises(ConfigError, match="holdout_salt"):
        build_config({"sources": {"customers": {"uri": "c.parquet"}}, "activation": {"holdout_share": 0.1}})


def holdouts_in(warehouse: str, schema: str, folder) -> tuple[pd.DataFrame, pd.DataFrame]:
    """segment_holdouts as the warehouse and the Parquet folder hold it, by customer."""
    if warehouse.startswith("duckdb"):
        with duckdb.connect(warehouse.removeprefix("duckdb:///"), read_only=True) as connection:
            stored = connection.sql(f"SELECT * FROM {schema}.segment_holdouts").to_arrow_table().to_pandas()
    else:
        with psycopg.connect(warehouse) as connection:
            cursor = connection.execute(f'SELECT * FROM "{schema}".segment_holdouts')
            stored = pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
    parquet = pq.read_table(folder / "current" / "segment_holdouts.parquet").to_pandas()
    return (
        stored.sort_values("customer_id", ignore_index=True),
        parquet.sort_values("customer_id", ignore_index=True),
    )


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_over_two_nights_and_a_retrain_customers_who_stay_keep_their_holdout_row_on_every_target(
    warehouse, tmp_path, pg_uri, pg_schema
):
    uri = f"duckdb:///{tmp_path / 'w.duckdb'}" if warehouse == "duckdb" else pg_uri
    schema = "segments" if warehouse == "duckdb" else pg_schema
    source = tmp_path / "members.parquet"
    raw = {
        "sources": {"customers": {"uri": str(source), "id_column": "member"}},
        "clustering": {"algorithm": "kmeans", "k": [2, 5], "seed": 1},
        "gate": {"max_changed_share": 0.9},
        "publish": {
            "warehouse": uri,
            "schema": schema,
            "parquet": str(tmp_path / "pq"),
            "reports": str(tmp_path),
        },
        "activation": {"holdout_share": 0.2, "holdout_salt": SALT},
    }
    three_groups(900, 1, "member", "M-", changed=60).to_parquet(source)
    segmentation_flow(config=build_config(raw), as_of=NIGHT1)
    first, first_parquet = holdouts_in(uri, schema, tmp_path / "pq")

    # some customers behave differently, and the model is refitted
    three_groups(900, 2, "member", "M-", changed=60).to_parquet(source)
    raw["clustering"]["seed"] = 7
    segmentation_flow(config=build_config(raw), as_of=NIGHT2)
    second, second_parquet = holdouts_in(uri, schema, tmp_path / "pq")

    pd.testing.assert_frame_equal(first, first_parquet, check_dtype=False)
    pd.testing.assert_frame_equal(second, second_parquet, check_dtype=False)
    assert len(second) == 900 and second["customer_id"].str.startswith("M-").all()
    stayed = second["segment_key"] == first["segment_key"]
    assert 0 < (~stayed).sum() < 200
    pd.testing.assert_frame_equal(second[stayed], first[stayed])  # flag and assigned_at kept
    assert (second.loc[~stayed, "assigned_at"] == pd.Timestamp(NIGHT2)).all()
    assert (second["holdout"] == first["holdout"]).all()
    assert abs(second["holdout"].mean() - 0.2) < 0.05  # 900 customers: within sampling noise

    # scoring new customers between retrains gives them their rows and leaves everyone else's
    newcomers = tmp_path / "newcomers.parquet"
    three_groups(930, 3, "member", "M-").tail(30).to_parquet(newcomers)
    raw["sources"]["customers"]["uri"] = str(newcomers)
    scoring_flow(config=build_config(raw), as_of=NIGHT3)
    third, third_parquet = holdouts_in(uri, schema, tmp_path / "pq")
    pd.testing.assert_frame_equal(third, third_parquet, check_dtype=False)
    pd.testing.assert_frame_equal(third.head(900), second)
    scored = third.tail(30)
    assert (scored["assigned_at"] == pd.Timestamp(NIGHT3)).all()
    assert scored["holdout"].tolist() == (holdout_numbers(scored["customer_id"], SALT) < 0.2).tolist()

    (report,) = tmp_path.glob(f"segments-{NIGHT2}-*.html")
    page = report.read_text()
    sizes = holdout_sizes(second)
    assert "Holdout groups" in page
    for row in sizes.itertuples():
        assert f"<td>{row.customers:,}</td><td>{row.holdout:,}</td>" in page
