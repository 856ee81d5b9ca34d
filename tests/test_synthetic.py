"""The realistic synthetic data: buying, spending and attributes behave as in real customer bases."""

from datetime import date

import pandas as pd
import pyarrow.parquet as pq
import pytest

from segflow.config import build_config
from segflow.synthetic import (
    RETAIL_END,
    ensure_retail_data,
    ensure_telecom_data,
    generate_retail_tables,
    generate_telecom_table,
    retail_config,
    telecom_config,
)
from segflow.tasks.features import build_customer_features
from segflow.tasks.preprocess import prepare_features

N_RETAIL = 20_000


@pytest.fixture(scope="module")
def retail() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers, orders = generate_retail_tables(N_RETAIL, seed=5)
    return customers.to_pandas(), orders.to_pandas()


@pytest.fixture(scope="module")
def buyers(retail) -> pd.DataFrame:
    """Per buyer: sales (refunds and repeated rows left out), days since the last one, mean order."""
    customers, orders = retail
    sales = orders[orders["order_total"] > 0].drop_duplicates()
    end = pd.Timestamp(RETAIL_END, tz="UTC") + pd.Timedelta(days=1)
    per_buyer = sales.groupby("customer_no").agg(
        orders=("order_total", "size"), last=("created_at", "max"), mean_order=("order_total", "mean")
    )
    per_buyer["recency_days"] = (end - per_buyer["last"]).dt.days
    return customers.join(per_buyer, on="customer_no", how="inner")


@pytest.fixture(scope="module")
def telecom() -> pd.DataFrame:
    return generate_telecom_table().to_pandas()


def test_the_same_seed_gives_the_same_tables_and_another_seed_others():
    first, again, other = (generate_retail_tables(2_000, seed=s) for s in (3, 3, 4))
    assert first[0].equals(again[0]) and first[1].equals(again[1])
    assert not first[1].equals(other[1])
    assert generate_telecom_table(500, seed=3).equals(generate_telecom_table(500, seed=3))
    assert not generate_telecom_table(500, seed=3).equals(generate_telecom_table(500, seed=4))


def test_most_buyers_buy_once_and_a_few_buy_very_often(buyers):
    one_time_share = (buyers["orders"] == 1).mean()
    assert 0.5 <= one_time_share <= 0.75
    assert buyers["orders"].quantile(0.99) >= 10
    assert buyers["orders"].max() >= 50


def test_recency_has_a_long_tail_and_one_time_buyers_are_long_gone(buyers):
    recency = buyers["recency_days"]
    assert (recency > 365).mean() >= 0.35
    assert recency.quantile(0.9) >= 700
    assert recency.quantile(0.1) <= 60  # and new customers keep arriving
    one_time = buyers["orders"] == 1
    assert recency[one_time].median() >= 1.8 * recency[~one_time].median()


def test_order_values_are_right_skewed_around_a_realistic_median(retail):
    sales = retail[1]["order_total"][retail[1]["order_total"] > 0]
    median = sales.median()
    assert 30 <= median <= 60
    assert sales.mean() > 1.15 * median
    assert sales.quantile(0.99) > 5 * median
    assert sales.skew() > 2


def test_acquisition_channels_and_first_categories_shift_buying_and_spending(buyers):
    by_channel = buyers.groupby("acquisition_channel")
    frequency, one_time = by_channel["orders"].mean(), by_channel["orders"].apply(lambda o: (o == 1).mean())
    assert frequency["marketplace"] < 0.8 * frequency["app"]
    assert one_time["marketplace"] > one_time["app"] + 0.05
    spend = by_channel["mean_order"].median()
    assert spend["store"] > 1.2 * spend["marketplace"]
    category_spend = buyers.groupby("first_order_category")["mean_order"].median()
    assert category_spend["electronics"] > 2.5 * category_spend["beauty"]
    country_spend = buyers.groupby("country")["mean_order"].median()
    assert country_spend.max() < 1.6 * country_spend.min()  # a weak effect, not a segment


def test_loyalty_members_are_mostly_repeat_buyers_but_not_all_repeat_buyers_are_members(buyers):
    repeat = buyers["orders"] > 1
    members = buyers["loyalty_member"]
    assert repeat[members].mean() >= 0.8
    assert 0.2 <= members[repeat].mean() <= 0.7
    assert members[~repeat].mean() <= 0.06


def test_customers_who_never_bought_and_missing_attributes(retail):
    customers, orders = retail
    never = ~customers["customer_no"].isin(orders["customer_no"])
    assert 0.08 <= never.mean() <= 0.16
    assert customers.loc[never, "first_order_category"].isna().all()
    assert customers.loc[~never, "first_order_category"].notna().mean() > 0.97
    assert 0.03 <= customers["acquisition_channel"].isna().mean() <= 0.1
    assert 0.005 <= customers["country"].isna().mean() <= 0.03
    assert customers["signup_date"].max() <= RETAIL_END


def test_ids_are_unique_and_orders_belong_to_known_customers_in_the_window(retail):
    customers, orders = retail
    assert len(customers) == N_RETAIL and customers["customer_no"].is_unique
    assert orders.drop_duplicates()["order_number"].is_unique
    assert orders["customer_no"].isin(customers["customer_no"]).all()
    assert orders["created_at"].max() < pd.Timestamp(RETAIL_END, tz="UTC") + pd.Timedelta(days=1)
    first_order = orders.groupby("customer_no")["created_at"].min().dt.date
    signup = customers.set_index("customer_no")["signup_date"]
    assert (signup[first_order.index] <= first_order).all()
    assert orders["created_at"].is_monotonic_increasing


def test_a_few_refunds_follow_their_orders_and_a_few_rows_repeat(retail):
    orders = retail[1].drop_duplicates()
    refunds = orders[orders["order_number"].str.endswith("-R")]
    assert 0.005 <= len(refunds) / len(orders) <= 0.02
    assert (refunds["order_total"] < 0).all()
    assert (orders.loc[orders["order_total"] < 0, "order_number"].str.endswith("-R")).all()
    sales = orders.set_index("order_number")
    refunded = sales.loc[refunds["order_number"].str.removesuffix("-R")]
    assert (refunded["customer_no"].to_numpy() == refunds["customer_no"].to_numpy()).all()
    assert (refunded["created_at"].to_numpy() < refunds["created_at"].to_numpy()).all()
    assert (-refunds["order_total"].to_numpy() <= refunded["order_total"].to_numpy()).all()
    repeated = retail[1].duplicated().sum()
    assert 0 < repeated <= 0.005 * len(retail[1])


def test_telecom_contracts_shape_tenure_payment_and_churn(telecom):
    contract = telecom["contract"]
    assert 0.5 <= (contract == "Month-to-month").mean() <= 0.6
    tenure = telecom.groupby("contract")["tenure"].median()
    assert tenure["Month-to-month"] < 0.35 * tenure["Two year"]
    assert tenure["Month-to-month"] < tenure["One year"] < tenure["Two year"]
    assert (telecom["tenure"] == 72).mean() >= 0.03  # the data's cap
    electronic_check = (telecom["payment_method"] == "Electronic check").groupby(contract).mean()
    assert electronic_check["Month-to-month"] > 3 * electronic_check["Two year"]
    churn = (telecom["churn"] == "Yes").groupby(contract).mean()
    assert 0.2 <= (telecom["churn"] == "Yes").mean() <= 0.33
    assert churn["Month-to-month"] > 4 * churn["Two year"]


def test_telecom_charges_follow_the_internet_service_and_tenure(telecom):
    monthly = telecom.groupby("internet_service")["monthly_charges"].median()
    assert monthly["Fiber optic"] > monthly["DSL"] + 20 > monthly["No"] + 20
    assert telecom["monthly_charges"].between(18, 120).all()
    with_total = telecom[telecom["tenure"] > 0]
    ratio = with_total["total_charges"] / (with_total["tenure"] * with_total["monthly_charges"])
    assert ratio.median() == pytest.approx(1.0, abs=0.02)
    assert ratio.between(0.8, 1.25).all()
    blank = telecom["total_charges"].isna()
    assert 0 < blank.sum() <= 0.005 * len(telecom)
    assert (blank == (telecom["tenure"] == 0)).all()


def test_telecom_ids_are_unique_and_shaped_like_the_real_ones(telecom):
    assert telecom["customer_id"].is_unique
    assert telecom["customer_id"].str.fullmatch(r"[0-9]{4}-[A-Z]{5}").all()
    no_internet = telecom["internet_service"] == "No"
    assert (telecom.loc[no_internet, "tech_support"] == "No internet service").all()
    assert (telecom.loc[~no_internet, "tech_support"] != "No internet service").all()


def test_data_is_written_once_per_size_and_seed(tmp_path):
    paths = ensure_retail_data(tmp_path, n_customers=1_000, seed=2)
    written = {name: path.stat().st_mtime_ns for name, path in paths.items()}
    assert ensure_retail_data(tmp_path, n_customers=1_000, seed=2) == paths
    assert {name: path.stat().st_mtime_ns for name, path in paths.items()} == written
    assert pq.read_table(paths["transactions"]).equals(generate_retail_tables(1_000, seed=2)[1])
    ensure_retail_data(tmp_path, n_customers=1_200, seed=2)
    assert pq.read_table(paths["customers"]).num_rows == 1_200
    assert not list(tmp_path.glob(".*.partial"))


def test_the_configs_run_through_features_and_preprocessing(tmp_path):
    retail_paths = ensure_retail_data(tmp_path / "retail", n_customers=1_000, seed=2)
    telecom_paths = ensure_telecom_data(tmp_path / "telecom", n_customers=500, seed=2)
    for raw, paths in (
        (retail_config(tmp_path / "out", retail_paths), retail_paths),
        (telecom_config(tmp_path / "out", telecom_paths), telecom_paths),
    ):
        config = build_config(raw)
        tables = {name: pq.read_table(path).to_pandas() for name, path in paths.items()}
        features = build_customer_features(tables, config.sources, date(2026, 10, 31))
        prepared = prepare_features(features.table, config.features, config.preprocess, features.rfm_columns)
        assert len(prepared.customer_ids) == len(tables["customers"])
        assert set(config.features.categorical) <= set(prepared.categorical_columns)
        assert prepared.model_input.notna().all().all()
    assert features.table.columns[0] == "customer_id"
