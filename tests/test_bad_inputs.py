"""The catalogue of bad inputs, run through the whole flow with the demo contracts.

For each: the exit code, the message (source, column, rule, count), the quarantined rows, and the
published customer_segments before and after (unchanged unless the run legitimately publishes).
tests/BAD_INPUTS.md lists the same catalogue with its outcomes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from segflow.config import build_config
from segflow.demo import contracts_folder
from segflow.errors import SegflowError
from segflow.flows.segmentation import segmentation_flow

BASELINE_DAY = date(2026, 11, 1)
RUN_DAY = BASELINE_DAY + timedelta(days=1)
pytestmark = pytest.mark.usefixtures("prefect_harness")


@dataclass
class Case:
    """A bad input: how it is made from the clean demo tables, and what must happen."""

    mutate: Callable[[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]
    exit_code: int
    message: list[str] = field(default_factory=list)  # fragments the error message must hold
    quarantined: dict[str, int] = field(default_factory=dict)  # rule -> rows, for this run
    customers_format: str = "parquet"
    source_settings: dict = field(default_factory=dict)


def rows(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.Index:
    return frame.sample(n=n, random_state=seed).index


def set_values(table: str, column: str, value, n: int, astype=None, seed: int = 0):
    def mutate(customers, transactions):
        frame = customers if table == "customers" else transactions
        frame = frame.copy()
        if astype is not None:
            frame[column] = frame[column].astype(astype)
        frame.loc[rows(frame, n, seed), column] = value
        return (frame, transactions) if table == "customers" else (customers, frame)

    return mutate


def duplicate_rows(table: str, n: int, change: dict | None = None):
    def mutate(customers, transactions):
        frame = customers if table == "customers" else transactions
        repeats = frame.loc[rows(frame, n, seed=3)].assign(**(change or {}))
        frame = pd.concat([frame, repeats], ignore_index=True)
        return (frame, transactions) if table == "customers" else (customers, frame)

    return mutate


def future_orders(customers, transactions):
    transactions = transactions.copy()
    transactions.loc[rows(transactions, 20), "order_ts"] = pd.Timestamp(RUN_DAY + timedelta(days=30))
    return customers, transactions


def one_customer(customers, transactions):
    only = customers.iloc[:1]
    return only, transactions[transactions["customer_id"].isin(only["customer_id"])]


CATALOGUE = {
    "missing required column": Case(
        lambda c, t: (c, t.drop(columns="amount")),
        3,
        ["transactions", "amount", "missing", "transactions.odcs.yaml"],
    ),
    "column of the wrong type": Case(
        set_values("transactions", "amount", "n/a", 5, astype=str),
        3,
        ["transactions", "amount", "5 of"],
    ),
    "null customer ids": Case(
        set_values("customers", "customer_id", None, 10),
        3,
        ["customers", "customer_id", "10 of"],
        {"customer_id not null": 10},
    ),
    "duplicate customer ids": Case(
        duplicate_rows("customers", 30, {"age": 99}), 0, [], {"customer_id unique": 30}
    ),
    "duplicated transaction rows": Case(duplicate_rows("transactions", 50), 0, [], {"order_id unique": 50}),
    "negative or absurd amounts": Case(
        lambda c, t: set_values("transactions", "amount", 1e7, 3, seed=1)(
            *set_values("transactions", "amount", -5.0, 7)(c, t)
        ),
        0,
        [],
        {"amount between 0 and 100000": 10},
    ),
    "timestamps in the future": Case(future_orders, 0),
    "unknown category": Case(
        set_values("customers", "country", "XX", 15), 0, [], {"country in [DE, FR, GB, US, ES, IT, NL]": 15}
    ),
    "category in another case or with spaces": Case(
        set_values("customers", "acquisition_channel", "Email ", 12),
        0,
        [],
        {"acquisition_channel in [organic, paid_search, social, referral, email, affiliate]": 12},
    ),
    "empty table": Case(lambda c, t: (c, t.iloc[0:0]), 1, ["transactions", "has no rows"]),
    "file that is not Parquet": Case(
        lambda c, t: (c, None), 1, ["transactions", "not a readable Parquet file"]
    ),
    "CSV with another delimiter": Case(lambda c, t: (c, t), 0, customers_format="csv;"),
    "CSV in another encoding": Case(
        lambda c, t: (c.assign(email="müller@example.com"), t),
        1,
        ["customers", "encoding utf-8", "'encoding'"],
        customers_format="latin-1",
    ),
    "CSV in another encoding, declared": Case(
        lambda c, t: (c.assign(email="müller@example.com"), t),
        0,
        customers_format="latin-1",
        source_settings={"encoding": "latin-1"},
    ),
    "a table with only one customer": Case(one_customer, 4, ["number of customers 1"]),
    "a column that is all null": Case(
        lambda c, t: (c.assign(age=pd.array([pd.NA] * len(c), dtype="Int64")), t), 0
    ),
    "a constant column": Case(lambda c, t: (c.assign(web_sessions_90d=3), t), 0),
}


@pytest.fixture(scope="module")
def clean_tables(small_demo) -> tuple[pd.DataFrame, pd.DataFrame]:
    customers = pd.read_parquet(small_demo["customers"])
    transactions = pd.read_parquet(small_demo["transactions"])
    # the demo plants flaws of its own: start the catalogue from clean tables
    customers = customers.drop_duplicates("customer_id", ignore_index=True)
    transactions = transactions[transactions["amount"] > 0].drop_duplicates("order_id", ignore_index=True)
    return customers, transactions


def config_for(folder: Path, warehouse: Path, customers_uri: str, transactions_uri: str, settings: dict):
    contracts = contracts_folder()
    return build_config(
        {
            "sources": {
                "customers": {
                    "uri": customers_uri,
                    "contract": str(contracts / "customers.odcs.yaml"),
                    **settings,
                },
                "transactions": {
                    "uri": transactions_uri,
                    "contract": str(contracts / "transactions.odcs.yaml"),
                },
            },
            "features": {
                "numeric": ["age", "web_sessions_90d", "email_opens_90d"],
                "categorical": ["acquisition_channel"],
            },
            "preprocess": {"scaler": "standard"},
            "clustering": {"algorithm": "kmeans", "k": [2, 8]},
            "publish": {"warehouse": f"duckdb:///{warehouse}", "parquet": None},
        }
    )


def write_sources(folder: Path, customers, transactions, customers_format: str) -> tuple[str, str]:
    transactions_path = folder / "transactions.parquet"
    if transactions is None:
        transactions_path.write_text("order_id,customer_id\nthis is not parquet\n")
    else:
        transactions.to_parquet(transactions_path)
    if customers_format == "parquet":
        customers_path = folder / "customers.parquet"
        customers.to_parquet(customers_path)
    else:
        customers_path = folder / "customers.csv"
        delimiter = ";" if customers_format == "csv;" else ","
        encoding = "latin-1" if customers_format == "latin-1" else "utf-8"
        customers.to_csv(customers_path, sep=delimiter, index=False, encoding=encoding)
    return str(customers_path), str(transactions_path)


@pytest.fixture(scope="module")
def baseline_warehouse(tmp_path_factory, clean_tables) -> Path:
    """A warehouse holding a good publication of the clean tables, as of the day before."""
    folder = tmp_path_factory.mktemp("baseline")
    warehouse = folder / "warehouse.duckdb"
    uris = write_sources(folder, *clean_tables, "parquet")
    segmentation_flow(config=config_for(folder, warehouse, *uris, {}), as_of=BASELINE_DAY)
    return warehouse


def published(warehouse: Path) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.sql("SELECT * FROM segments.customer_segments ORDER BY customer_id").df()


def quarantined_on(warehouse: Path, day: date) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return dict(
            connection.sql(
                "SELECT rule, count(*) FROM segments.quarantine WHERE as_of = ? GROUP BY rule", params=[day]
            ).fetchall()
        )


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input(name, tmp_path, clean_tables, baseline_warehouse):
    case = CATALOGUE[name]
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(baseline_warehouse, warehouse)
    before = published(warehouse)
    customers, transactions = case.mutate(*clean_tables)
    uris = write_sources(tmp_path, customers, transactions, case.customers_format)
    config = config_for(tmp_path, warehouse, *uris, case.source_settings)

    try:
        segmentation_flow(config=config, as_of=RUN_DAY)
        exit_code, message = 0, ""
    except SegflowError as error:
        exit_code, message = error.exit_code, str(error)

    assert exit_code == case.exit_code, message
    for fragment in case.message:
        assert fragment in message
    after = published(warehouse)
    if exit_code == 0:
        assert after["customer_id"].is_unique
        assert set(after["customer_id"]) <= set(customers["customer_id"].dropna())
    else:
        pd.testing.assert_frame_equal(before, after)  # the last good publication stays current
    quarantine = quarantined_on(warehouse, RUN_DAY)
    for rule, count in case.quarantined.items():
        assert quarantine.get(rule) == count, quarantine
