"""Per-customer features: RFM as of the run date, joined to customer attributes."""

from datetime import date

import pandas as pd
import pytest

from segflow.config import build_config
from segflow.errors import ConfigError
from segflow.tasks.features import build_customer_features, feature_quarantine

AS_OF = date(2026, 3, 31)


def unseen_config(with_customers: bool):
    sources = {
        "transactions": {
            "uri": "x.parquet",
            "id_column": "client",
            "timestamp_column": "paid_at",
            "amount_column": "total_eur",
        },
    }
    if with_customers:
        sources["customers"] = {"uri": "c.parquet", "id_column": "client"}
    return build_config({"sources": sources}).sources


def purchases() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "client": [7, 7, 7, 8, 9, 9],
            "paid_at": [
                "2026-03-30 10:00",
                "2026-01-30 09:00",
                "2025-03-31 12:00",
                "2026-03-01 00:00",
                "2026-04-02 08:00",
                "not a date",
            ],
            "total_eur": [10.0, 20.0, 30.0, 5.5, 99.0, 1.0],
        }
    )


def test_rfm_is_computed_as_of_the_run_date_with_config_column_names():
    features = build_customer_features({"transactions": purchases()}, unseen_config(False), AS_OF)
    table = features.table.set_index("customer_id")
    assert set(table.index) == {7, 8}  # 9 only bought after the as-of date (and one bad row)
    assert table.loc[7, "recency_days"] == 1
    assert table.loc[7, "frequency"] == 3
    assert table.loc[7, "monetary"] == pytest.approx(60.0)
    assert table.loc[7, "tenure_days"] == 365
    assert table.loc[7, "avg_order_value"] == pytest.approx(20.0)
    assert table.loc[8, "recency_days"] == 30
    assert features.transactions_after_as_of == 1
    assert list(features.unusable_transactions.index) == [5]
    assert features.unusable_transactions["reason"].iloc[0] == "paid_at is not a timestamp"


def test_customers_without_purchases_are_kept_and_orphans_quarantined():
    customers = pd.DataFrame({"client": [7, 8, 10], "age": [30, 40, 50]})
    sources = unseen_config(True)
    features = build_customer_features({"customers": customers, "transactions": purchases()}, sources, AS_OF)
    table = features.table.set_index("customer_id")
    assert list(table.index) == [7, 8, 10]
    assert table.loc[10, "frequency"] == 0
    assert table.loc[10, "monetary"] == 0
    assert table.loc[10, "recency_days"] == table["tenure_days"].max()
    assert table.loc[10, "age"] == 50
    assert list(features.orphan_transactions.index) == [4]  # row 5 is unusable, not orphaned

    quarantine = feature_quarantine(features, sources)
    assert sorted(quarantine["rule"]) == ["client exists in customers", "paid_at is not a timestamp"]
    assert sorted(quarantine["row_number"]) == [4, 5]
    assert set(quarantine["severity"]) == {"warning"}
    assert '"total_eur":"1.0"' in " ".join(quarantine["record"])  # the row, values as text


def test_missing_configured_column_names_the_column():
    with pytest.raises(ConfigError, match="'total_eur' named in the config is missing"):
        build_customer_features(
            {"transactions": purchases().drop(columns="total_eur")}, unseen_config(False), AS_OF
        )


def test_id_column_clash_is_reported():
    customers = pd.DataFrame({"client": [7], "customer_id": ["x"]})
    with pytest.raises(ConfigError, match="also has a column 'customer_id'"):
        build_customer_features(
            {"customers": customers, "transactions": purchases()}, unseen_config(True), AS_OF
        )


def test_customer_ids_of_the_same_kind_are_matched_and_other_kinds_named():
    purchases_by_text = purchases().assign(client=lambda t: t["client"].astype(str))
    customers = pd.DataFrame({"client": pd.array([7, 8, 10], dtype="int32"), "age": [30, 40, 50]})
    features = build_customer_features(
        {"customers": customers, "transactions": purchases()}, unseen_config(True), AS_OF
    )
    assert list(features.table["frequency"]) == [3, 1, 0]  # int64 purchases matched to int32 ids
    with pytest.raises(
        ConfigError, match=r"int32 in source 'customers' and \w*string in source 'transactions'"
    ):
        build_customer_features(
            {"customers": customers, "transactions": purchases_by_text}, unseen_config(True), AS_OF
        )
