"""Features: one row per customer, with RFM from transactions as of the run date joined to attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.logging import get_run_logger

from segflow.config import SourcesConfig, TransactionsSourceConfig
from segflow.errors import ConfigError
from segflow.ledger import quarantine_rows
from segflow.tables import is_in

CUSTOMER_ID = "customer_id"
RFM_COLUMNS = ("recency_days", "frequency", "monetary", "tenure_days", "avg_order_value")


@dataclass
class CustomerFeatures:
    """The per-customer table and what could not be used to build it."""

    table: pd.DataFrame  # customer_id first, then attributes and RFM columns
    rfm_columns: list[str] = field(default_factory=list)
    unusable_transactions: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows + "reason"
    orphan_transactions: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows of unknown ids
    transactions_after_as_of: int = 0
    never_bought_days: int | None = None  # recency and tenure given to customers who never bought


def with_customer_id(table: pd.DataFrame, id_column: str, source: str) -> pd.DataFrame:
    """Rename the source's id column to the published name 'customer_id'."""
    if id_column == CUSTOMER_ID:
        return table
    if CUSTOMER_ID in table.columns:
        raise ConfigError(
            f"source '{source}': id_column is '{id_column}' but the table also has a column "
            f"'{CUSTOMER_ID}'; rename one of them"
        )
    return table.rename(columns={id_column: CUSTOMER_ID})


def typed_transactions(
    transactions: pd.DataFrame, source: TransactionsSourceConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Id, timestamp (UTC, naive) and amount as typed columns, and the source rows that cannot be typed."""
    for column in (source.timestamp_column, source.amount_column):
        if column not in transactions.columns:
            raise ConfigError(
                f"source 'transactions': column '{column}' named in the config is missing; "
                f"columns are {', '.join(map(str, transactions.columns))}"
            )
    timestamps = pd.to_datetime(transactions[source.timestamp_column], errors="coerce", utc=True)
    typed = pd.DataFrame(
        {
            CUSTOMER_ID: transactions[source.id_column],
            "ts": timestamps.dt.tz_localize(None),
            "amount": pd.to_numeric(transactions[source.amount_column], errors="coerce"),
        }
    )
    problems = [
        (typed[CUSTOMER_ID].isna().to_numpy(), f"{source.id_column} is null"),
        (typed["ts"].isna().to_numpy(), f"{source.timestamp_column} is not a timestamp"),
        (typed["amount"].isna().to_numpy(), f"{source.amount_column} is not a number"),
    ]
    bad = np.logical_or.reduce([mask for mask, _ in problems])
    if not bad.any():
        return typed, transactions.iloc[0:0].assign(reason=pd.Series(dtype=object))
    # the first problem of each bad row names it
    reasons = np.select([mask[bad] for mask, _ in problems], [reason for _, reason in problems], default="")
    return typed[~bad], transactions[bad].assign(reason=reasons)


def aggregate_rfm(typed: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Recency, frequency, monetary, tenure and average order value per customer, with DuckDB."""
    cutoff = pd.Timestamp(as_of + timedelta(days=1))
    with duckdb.connect() as connection:
        connection.register("purchases", pa.Table.from_pandas(typed, preserve_index=False))
        return connection.execute(
            """
            SELECT customer_id,
                   date_diff('day', max(ts)::DATE, ?::DATE) AS recency_days,
                   count(*) AS frequency,
                   sum(amount) AS monetary,
                   date_diff('day', min(ts)::DATE, ?::DATE) AS tenure_days,
                   avg(amount) AS avg_order_value
            FROM purchases
            WHERE ts < ?
            GROUP BY customer_id
            """,
            [as_of, as_of, cutoff.to_pydatetime()],
        ).df()


def build_customer_features(
    sources: dict[str, pd.DataFrame],
    config: SourcesConfig,
    as_of: date,
    rfm: bool = True,
    never_bought_days: int | None = None,
) -> CustomerFeatures:
    """One row per customer id occurrence: customer attributes left-joined to RFM features.

    Customers who never bought get a recency and tenure one day past the longest tenure seen, or
    `never_bought_days` when given (scoring uses the fitted run's value, not the new rows')."""
    customers = None
    if config.customers is not None:
        customers = with_customer_id(sources["customers"], config.customers.id_column, "customers")
    if config.transactions is None or not rfm:
        if customers is None:
            raise ConfigError("features.rfm is false and there is no customers source: no features")
        return CustomerFeatures(table=customers)

    typed, unusable = typed_transactions(sources["transactions"], config.transactions)
    after_as_of = int((typed["ts"] >= pd.Timestamp(as_of + timedelta(days=1))).sum())
    rfm_table = aggregate_rfm(typed, as_of)
    if customers is None:
        base = rfm_table
        orphans = sources["transactions"].iloc[0:0]
    else:
        known = is_in(typed[CUSTOMER_ID], customers[CUSTOMER_ID])
        orphans = sources["transactions"].loc[typed.index[~known]]
        base = customers.merge(rfm_table, on=CUSTOMER_ID, how="left")
        never_bought = base["frequency"].isna()
        if never_bought_days is None:
            never_bought_days = int(base["tenure_days"].max()) + 1 if (~never_bought).any() else 0
        base.loc[never_bought, ["frequency", "monetary", "avg_order_value"]] = 0
        base.loc[never_bought, ["recency_days", "tenure_days"]] = never_bought_days
    return CustomerFeatures(
        table=base,
        rfm_columns=list(RFM_COLUMNS),
        unusable_transactions=unusable,
        orphan_transactions=orphans,
        transactions_after_as_of=after_as_of,
        never_bought_days=never_bought_days,
    )


def feature_quarantine(features: CustomerFeatures, sources: SourcesConfig) -> pd.DataFrame:
    """Transactions left out of the features, as quarantine rows (never dropped silently)."""
    parts = (
        [
            quarantine_rows(rows.drop(columns="reason"), "transactions", str(reason), None, "warning")
            for reason, rows in features.unusable_transactions.groupby("reason")
        ]
        if "reason" in features.unusable_transactions
        else []
    )
    if len(features.orphan_transactions) and sources.transactions is not None:
        id_column = sources.transactions.id_column
        parts.append(
            quarantine_rows(
                features.orphan_transactions,
                "transactions",
                f"{id_column} exists in customers",
                id_column,
                "warning",
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


@task(name="features")
def features_task(
    sources: dict[str, pd.DataFrame],
    config: SourcesConfig,
    as_of: date,
    rfm: bool,
    never_bought_days: int | None = None,
) -> CustomerFeatures:
    features = build_customer_features(sources, config, as_of, rfm, never_bought_days)
    get_run_logger().info(
        "features: %d customer rows; %d transactions unusable, %d of unknown customers, "
        "%d after the as-of date %s (not counted)",
        len(features.table),
        len(features.unusable_transactions),
        len(features.orphan_transactions),
        features.transactions_after_as_of,
        as_of,
    )
    return features
