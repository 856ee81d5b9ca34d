"""Features: one row per customer, with RFM from transactions as of the run date joined to attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import SourcesConfig, TransactionsSourceConfig
from segflow.errors import ConfigError
from segflow.quarantine import empty_quarantine, quarantine_rows
from segflow.tables import CUSTOMER_ID
from segflow.timing import timed

RFM_COLUMNS = ("recency_days", "frequency", "monetary", "tenure_days", "avg_order_value")
NEVER_BOUGHT_DAYS_COLUMNS = ("recency_days", "tenure_days")  # the rest is 0 for who never bought


@dataclass
class CustomerFeatures:
    """The per-customer table and what could not be used to build it."""

    table: pd.DataFrame  # customer_id first, then attributes and RFM columns
    rfm_columns: list[str] = field(default_factory=list)
    unusable_transactions: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows + "reason"
    orphan_transactions: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows of unknown ids
    transactions_after_as_of: int = 0
    never_bought_days: int | None = None  # recency and tenure given to customers who never bought


@dataclass
class FitFeatures:
    """What the features stage hands the model fit: the customers it is fitted on, one row each (all
    of them, or a sample in dask mode), and what the stage found over every customer."""

    table: pd.DataFrame  # customer_id first, then attributes and RFM columns; index: place in the source
    rfm_columns: list[str]
    quarantine: pd.DataFrame  # transactions left out: unusable, or of unknown customers
    counts: dict[str, int]  # transactions unusable, orphaned, after the as-of date; duplicate rows dropped
    customers: int  # every customer (more than the table's rows when it holds a sample)
    never_bought_days: int | None = None

    @property
    def duplicates(self) -> dict[str, int]:
        return {key: self.counts[key] for key in DUPLICATE_COUNTS}


DUPLICATE_COUNTS = ("exact_duplicate_rows", "conflicting_id_rows")


def drop_duplicate_customers(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop exact duplicate rows, then keep the first row of any id that is still repeated (the index,
    each row's place in the source, is not part of a row)."""
    exact = table.duplicated()
    deduplicated = table[~exact]
    conflicting = deduplicated[CUSTOMER_ID].duplicated(keep="first")
    counts = {"exact_duplicate_rows": int(exact.sum()), "conflicting_id_rows": int(conflicting.sum())}
    return deduplicated[~conflicting], counts


def fit_features(features: CustomerFeatures, sources: SourcesConfig) -> FitFeatures:
    """One row per customer (duplicates dropped), and the transactions left out as quarantine rows."""
    table, duplicates = drop_duplicate_customers(features.table)
    return FitFeatures(
        table=table,
        rfm_columns=features.rfm_columns,
        quarantine=feature_quarantine(features, sources),
        counts={
            "unusable_transactions": len(features.unusable_transactions),
            "orphan_transactions": len(features.orphan_transactions),
            "transactions_after_as_of": features.transactions_after_as_of,
            **duplicates,
        },
        customers=len(table),
        never_bought_days=features.never_bought_days,
    )


def with_never_bought_days(table: pd.DataFrame, days: int | None) -> pd.DataFrame:
    """Customers who never bought get the recency and tenure of the whole base (one day past its
    longest tenure), not those of the part of it they were built with."""
    if days is None or "frequency" not in table.columns:
        return table
    never_bought = table["frequency"] == 0
    table.loc[never_bought, list(NEVER_BOUGHT_DAYS_COLUMNS)] = days
    return table


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
) -> tuple[pa.Table, pd.DataFrame]:
    """Id, timestamp (UTC, naive), amount and row position as an Arrow table, and the source rows
    that cannot be typed. Columns that already have the type are used as they are (no copy)."""
    for column in (source.timestamp_column, source.amount_column):
        if column not in transactions.columns:
            raise ConfigError(
                f"source 'transactions': column '{column}' named in the config is missing; "
                f"columns are {', '.join(map(str, transactions.columns))}"
            )
    ids = transactions[source.id_column]
    timestamps = utc_timestamps(transactions[source.timestamp_column])
    amounts = transactions[source.amount_column]
    if not pd.api.types.is_numeric_dtype(amounts):
        amounts = pd.to_numeric(amounts, errors="coerce")
    problems = [
        (ids.isna().to_numpy(), f"{source.id_column} is null"),
        (timestamps.isna().to_numpy(), f"{source.timestamp_column} is not a timestamp"),
        (amounts.isna().to_numpy(), f"{source.amount_column} is not a number"),
    ]
    bad = problems[0][0] | problems[1][0] | problems[2][0]
    typed = pa.table(
        {
            CUSTOMER_ID: pa.array(ids),
            "ts": pa.array(timestamps),
            "amount": pa.array(amounts).cast(pa.float64(), safe=False),
            "row": np.arange(len(transactions)),
        }
    )
    if not bad.any():
        return typed, transactions.iloc[0:0].assign(reason=pd.Series(dtype=object))
    # the first problem of each bad row names it
    reasons = np.select([mask[bad] for mask, _ in problems], [reason for _, reason in problems], default="")
    return typed.filter(pa.array(~bad)), transactions[bad].assign(reason=reasons)


def utc_timestamps(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC; what does not read as a timestamp becomes NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values):
        return values
    return pd.to_datetime(values, errors="coerce", utc=True).dt.tz_localize(None)


def id_kind(type_: pa.DataType) -> str:
    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "text"
    return str(type_)


def matching_ids(customer_ids: pa.Array, purchase_ids: pa.ChunkedArray) -> pa.ChunkedArray:
    """The transactions' ids in the customers' id type, where both are integers or both text."""
    if purchase_ids.type == customer_ids.type:
        return purchase_ids
    if id_kind(purchase_ids.type) == id_kind(customer_ids.type):
        try:
            return purchase_ids.cast(customer_ids.type)
        except pa.ArrowInvalid:  # an integer out of the customers' range: no such customer anyway
            pass
    raise ConfigError(
        f"the customer ids are {customer_ids.type} in source 'customers' and {purchase_ids.type} in "
        "source 'transactions': they cannot be matched; give both id columns the same type"
    )


RFM_AGGREGATES = """
    SELECT customer_id,
           date_diff('day', (max(ts) FILTER (WHERE ts < $cutoff))::DATE, $as_of) AS recency_days,
           count(*) FILTER (WHERE ts < $cutoff) AS frequency,
           sum(amount) FILTER (WHERE ts < $cutoff) AS monetary,
           date_diff('day', (min(ts) FILTER (WHERE ts < $cutoff))::DATE, $as_of) AS tenure_days,
           avg(amount) FILTER (WHERE ts < $cutoff) AS avg_order_value,
           count(*) FILTER (WHERE ts >= $cutoff) AS after_as_of
    FROM purchases
    GROUP BY customer_id
"""


def build_customer_features(
    sources: dict[str, pd.DataFrame],
    config: SourcesConfig,
    as_of: date,
    rfm: bool = True,
    never_bought_days: int | None = None,
) -> CustomerFeatures:
    """One row per customer id occurrence: customer attributes left-joined to RFM features,
    aggregated and joined in DuckDB.

    Customers who never bought get a recency and tenure one day past the longest tenure seen, or
    `never_bought_days` when given (scoring uses the fitted run's value, not the new rows')."""
    customers = None
    if config.customers is not None:
        customers = with_customer_id(sources["customers"], config.customers.id_column, "customers")
    if config.transactions is None or not rfm:
        if customers is None:
            raise ConfigError("features.rfm is false and there is no customers source: no features")
        return CustomerFeatures(table=customers)

    transactions = sources["transactions"]
    purchases, unusable = typed_transactions(transactions, config.transactions)
    cutoff = datetime.combine(as_of + timedelta(days=1), time())
    with duckdb.connect() as connection:
        if customers is not None:
            customer_ids = pa.array(customers[CUSTOMER_ID])
            purchases = purchases.set_column(
                0, CUSTOMER_ID, matching_ids(customer_ids, purchases[CUSTOMER_ID])
            )
            connection.register(
                "customer_ids",
                pa.table({CUSTOMER_ID: customer_ids, "position": np.arange(len(customer_ids))}),
            )
        connection.register("purchases", purchases)
        connection.execute(f"CREATE TEMP TABLE rfm AS {RFM_AGGREGATES}", {"cutoff": cutoff, "as_of": as_of})
        [(after_as_of,)] = connection.sql("SELECT coalesce(sum(after_as_of), 0) FROM rfm").fetchall()
        if customers is None:
            table = connection.sql(
                f"SELECT customer_id, {', '.join(RFM_COLUMNS)} FROM rfm "
                "WHERE frequency > 0 ORDER BY customer_id"
            ).df()
            orphans = transactions.iloc[0:0]
        else:
            table, never_bought_days = joined_to_customers(connection, customers, never_bought_days)
            orphans = orphan_rows(connection, transactions)
    return CustomerFeatures(
        table=table,
        rfm_columns=list(RFM_COLUMNS),
        unusable_transactions=unusable,
        orphan_transactions=orphans,
        transactions_after_as_of=int(after_as_of),
        never_bought_days=never_bought_days,
    )


def joined_to_customers(
    connection: duckdb.DuckDBPyConnection, customers: pd.DataFrame, never_bought_days: int | None
) -> tuple[pd.DataFrame, int]:
    """The customers with their RFM columns, in their order; who never bought (before the as-of
    date) gets zero spend and `never_bought_days` of recency and tenure."""
    columns = connection.sql(
        f"""
        SELECT {", ".join(RFM_COLUMNS)}
        FROM customer_ids LEFT JOIN (SELECT * FROM rfm WHERE frequency > 0) USING (customer_id)
        ORDER BY position
        """
    ).fetchnumpy()
    never_bought = np.ma.getmaskarray(columns["frequency"])
    if never_bought_days is None:
        tenure = columns["tenure_days"][~never_bought]
        never_bought_days = int(tenure.max()) + 1 if len(tenure) else 0
    filled = {
        name: np.ma.filled(values, never_bought_days if name in NEVER_BOUGHT_DAYS_COLUMNS else 0)
        for name, values in columns.items()
    }
    return customers.assign(**filled), never_bought_days


def orphan_rows(connection: duckdb.DuckDBPyConnection, transactions: pd.DataFrame) -> pd.DataFrame:
    """The usable transactions whose customer id is not among the customers (usually none: the
    12M-row anti-join runs only when some aggregated id is unknown)."""
    [(unknown,)] = connection.sql(
        "SELECT count(*) FROM rfm ANTI JOIN customer_ids USING (customer_id)"
    ).fetchall()
    if unknown == 0:
        return transactions.iloc[0:0]
    rows = connection.sql("SELECT row FROM purchases ANTI JOIN customer_ids USING (customer_id) ORDER BY row")
    return transactions.iloc[rows.fetchnumpy()["row"]]


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
    return pd.concat(parts, ignore_index=True) if parts else empty_quarantine()


@task(name="features", cache_policy=NO_CACHE)
@timed
def features_task(
    sources: dict[str, pd.DataFrame],
    config: SourcesConfig,
    as_of: date,
    rfm: bool,
    never_bought_days: int | None = None,
) -> FitFeatures:
    """The features stage on sources held in this process."""
    features = fit_features(build_customer_features(sources, config, as_of, rfm, never_bought_days), config)
    log_features(features, as_of)
    return features


def log_features(features: FitFeatures, as_of: date) -> None:
    counts = features.counts
    get_run_logger().info(
        "features: %d customers (%d fitted on); %d transactions unusable, %d of unknown customers, "
        "%d after the as-of date %s (not counted); removed %d exact duplicate customer rows and %d rows "
        "repeating an id",
        features.customers,
        len(features.table),
        counts["unusable_transactions"],
        counts["orphan_transactions"],
        counts["transactions_after_as_of"],
        as_of,
        counts["exact_duplicate_rows"],
        counts["conflicting_id_rows"],
    )
