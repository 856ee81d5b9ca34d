"""The embedded demo: a deterministic synthetic customer base and the config that runs on it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segflow import synthetic

DEMO_SEED = 20260101
DEMO_CUSTOMERS = 20_000
DEMO_END = date(2026, 10, 31)
DEMO_DAYS = 730
DEMO_VERSION = "1"
COUNTRIES = ["DE", "FR", "GB", "US", "ES", "IT", "NL"]
CHANNELS = ["organic", "paid_search", "social", "referral", "email", "affiliate"]


@dataclass(frozen=True)
class Persona:
    """A planted segment: how its customers buy and engage."""

    name: str
    share: float
    orders: float  # mean number of orders over the window
    basket: float  # mean order value
    last_order_days: tuple[int, int]  # range of days since the last order
    sessions: float
    opens: float
    clicks: float
    age: float
    channels: tuple[float, ...]  # weights over CHANNELS


PERSONAS = (
    Persona("champions", 0.10, 40, 220, (0, 10), 45, 30, 12, 46, (3, 1, 1, 3, 2, 1)),
    Persona("loyal", 0.20, 14, 90, (10, 45), 20, 15, 5, 52, (3, 2, 1, 2, 2, 1)),
    Persona("new", 0.15, 1.2, 70, (0, 30), 10, 4, 1, 27, (1, 3, 3, 1, 1, 1)),
    Persona("at_risk", 0.15, 9, 120, (200, 400), 1, 1, 0.2, 41, (2, 2, 1, 1, 1, 1)),
    Persona("lapsed", 0.25, 1.1, 35, (450, 700), 0.3, 0.5, 0.05, 35, (1, 2, 2, 1, 1, 3)),
    Persona("bargain", 0.15, 25, 15, (2, 25), 25, 40, 20, 30, (1, 1, 2, 1, 4, 2)),
)


def demo_data_paths(folder: Path) -> dict[str, Path]:
    return {
        "customers": folder / "customers.parquet",
        "transactions": folder / "transactions.parquet",
    }


def contracts_folder() -> Path:
    """The folder of the contracts shipped with segflow."""
    return Path(str(resources.files("segflow.data_contracts")))


def demo_config(output_root: Path, data: dict[str, Path] | None = None) -> dict[str, Any]:
    """The raw config of the embedded demo: demo data in (or demo-shaped `data`, by source name),
    Parquet and DuckDB out under `output_root`."""
    paths = data or demo_data_paths(output_root / "demo_data")
    contracts = contracts_folder()
    return {
        "sources": {
            "customers": {
                "uri": str(paths["customers"]),
                "contract": str(contracts / "customers.odcs.yaml"),
                "id_column": "customer_id",
            },
            "transactions": {
                "uri": str(paths["transactions"]),
                "contract": str(contracts / "transactions.odcs.yaml"),
                "id_column": "customer_id",
                "timestamp_column": "order_ts",
                "amount_column": "amount",
            },
        },
        "features": {
            "rfm": True,
            "numeric": ["age", "web_sessions_90d", "email_opens_90d", "email_clicks_90d"],
            "categorical": ["acquisition_channel"],
        },
        "preprocess": {"scaler": "standard"},
        "publish": synthetic.publish_targets(output_root),
    }


def generate_demo_tables(
    n_customers: int = DEMO_CUSTOMERS, seed: int = DEMO_SEED
) -> tuple[pa.Table, pa.Table]:
    """Customers and transactions with planted personas, noise, duplicates and gaps."""
    rng = np.random.default_rng(seed)
    shares = np.array([p.share for p in PERSONAS])
    persona_of = rng.choice(len(PERSONAS), size=n_customers, p=shares / shares.sum())
    customer_ids = np.array([f"C{i:07d}" for i in range(1, n_customers + 1)])
    window_start = DEMO_END - timedelta(days=DEMO_DAYS)

    params = {
        field: np.array([getattr(PERSONAS[i], field) for i in persona_of], dtype=float)
        for field in ("orders", "basket")
    }
    last_bounds = np.array([PERSONAS[i].last_order_days for i in persona_of])
    new_customer = np.array([PERSONAS[i].name == "new" for i in persona_of])
    last_order = rng.integers(last_bounds[:, 0], last_bounds[:, 1] + 1)
    signup_days = np.where(
        new_customer,
        rng.integers(0, 90, size=n_customers),
        last_bounds[:, 1] + rng.integers(30, DEMO_DAYS + 400 - last_bounds[:, 1]),
    )
    last_order = np.minimum(last_order, signup_days)
    n_orders = np.maximum(1, rng.poisson(params["orders"]))
    n_orders[rng.random(n_customers) < 0.03] = 0  # signed up, never bought

    owner = np.repeat(np.arange(n_customers), n_orders)
    first_order = np.minimum(signup_days, DEMO_DAYS - 1)[owner]
    days_ago = last_order[owner] + (
        rng.random(len(owner)) * (np.maximum(first_order, last_order[owner]) - last_order[owner] + 1)
    ).astype(np.int64)
    is_first_of_customer = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else np.array([], bool)
    days_ago[is_first_of_customer] = last_order[owner][is_first_of_customer]
    order_ts = (
        pd.Timestamp(DEMO_END)
        - pd.to_timedelta(days_ago, unit="D")
        + pd.to_timedelta(rng.integers(8 * 3600, 22 * 3600, size=len(owner)), unit="s")
    )
    transactions = pd.DataFrame(
        {
            "order_id": [f"O{i:09d}" for i in range(1, len(owner) + 1)],
            "customer_id": customer_ids[owner],
            "order_ts": order_ts,
            "amount": np.maximum(np.round(rng.gamma(9.0, params["basket"][owner] / 9.0), 2), 1.0),
            "sales_channel": rng.choice(["web", "store", "app"], size=len(owner), p=[0.5, 0.3, 0.2]),
        }
    )
    transactions = transactions[transactions["order_ts"] >= pd.Timestamp(window_start)].reset_index(drop=True)
    transactions = _with_transaction_flaws(transactions, rng)

    personas = [PERSONAS[i] for i in persona_of]
    channels = np.empty(n_customers, dtype=object)
    for index, persona in enumerate(PERSONAS):
        members = persona_of == index
        weights = np.array(persona.channels, dtype=float)
        channels[members] = rng.choice(CHANNELS, size=int(members.sum()), p=weights / weights.sum())
    customers = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "email": [f"customer{i}@example.com" for i in range(1, n_customers + 1)],
            "signup_date": [DEMO_END - timedelta(days=int(d)) for d in signup_days],
            "country": rng.choice(COUNTRIES, size=n_customers, p=[0.25, 0.15, 0.15, 0.2, 0.1, 0.1, 0.05]),
            "acquisition_channel": channels,
            "age": rng.normal([p.age for p in personas], 7).clip(18, 90).round(),
            "web_sessions_90d": rng.poisson([p.sessions for p in personas]),
            "email_opens_90d": rng.poisson([p.opens for p in personas]),
            "email_clicks_90d": rng.poisson([p.clicks for p in personas]),
        }
    )
    customers = _with_customer_flaws(customers, rng)
    return pa.Table.from_pandas(customers, preserve_index=False), pa.Table.from_pandas(
        transactions, preserve_index=False
    )


def _with_customer_flaws(customers: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Missing ages and channels, and a few customers exported twice."""
    n = len(customers)
    customers["age"] = customers["age"].astype("Int64")
    customers.loc[rng.random(n) < 0.05, "age"] = pd.NA
    customers["acquisition_channel"] = customers["acquisition_channel"].astype(object)
    customers.loc[rng.random(n) < 0.02, "acquisition_channel"] = None
    duplicated = customers.sample(n=max(1, n // 200), random_state=int(rng.integers(1 << 31)))
    return pd.concat([customers, duplicated], ignore_index=True)


def _with_transaction_flaws(transactions: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A few order rows loaded twice and a few absurd amounts."""
    n = len(transactions)
    duplicated = transactions.sample(n=max(1, n // 5000), random_state=int(rng.integers(1 << 31)))
    absurd = rng.choice(n, size=max(1, n // 10000), replace=False)
    transactions.loc[absurd, "amount"] = -transactions.loc[absurd, "amount"]
    return pd.concat([transactions, duplicated], ignore_index=True)


def ensure_demo_data(folder: Path) -> dict[str, Path]:
    """Write the demo tables once; later calls reuse them, so reruns see the same data."""
    paths = demo_data_paths(folder)
    marker = folder / f".complete-v{DEMO_VERSION}"
    if marker.exists() and all(p.exists() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    customers, transactions = generate_demo_tables()
    for table, path in ((customers, paths["customers"]), (transactions, paths["transactions"])):
        partial = path.with_name(f".{path.name}.partial")
        pq.write_table(table, partial)
        os.replace(partial, path)
    marker.touch()
    return paths


@dataclass(frozen=True)
class Demo:
    """A demo `segflow run --demo NAME` runs: its config for an output folder, the data it writes
    there once, the folder under `segflow_output`, and the date its data ends (None: today)."""

    config: Callable[[Path], dict[str, Any]]
    ensure_data: Callable[[Path], dict[str, Path]]
    folder: str
    as_of: date | None


def demos() -> dict[str, Demo]:
    """The planted demo (well-separated personas: the pipeline end to end) and the realistic ones
    (what real tables look like: most customers buy once, categories overlap)."""
    return {
        "planted": Demo(demo_config, lambda root: ensure_demo_data(root / "demo_data"), ".", None),
        "retail": Demo(
            synthetic.retail_config,
            lambda root: synthetic.ensure_retail_data(root / "retail_data"),
            "retail",
            synthetic.RETAIL_END,
        ),
        "telecom": Demo(
            synthetic.telecom_config,
            lambda root: synthetic.ensure_telecom_data(root / "telecom_data"),
            "telecom",
            None,
        ),
    }
