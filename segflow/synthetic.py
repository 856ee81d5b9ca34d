"""Realistic synthetic data to test and benchmark segflow against, next to the planted demo.

A retail shop whose customers arrive over three growing years, buy and drop out as in the BG/NBD
model and spend as in the gamma-gamma model, with attributes that matter but overlap; and a telecom
customer table in the spirit of the IBM Telco churn data. Both are deterministic from a seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SYNTHETIC_VERSION = "1"
RETAIL_SEED = 20261031
RETAIL_CUSTOMERS = 30_000
RETAIL_END = date(2026, 10, 31)
TELECOM_SEED = 7043
TELECOM_CUSTOMERS = 7_043
MICROSECONDS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class RetailParameters:
    """How the shop's customers arrive, buy, drop out and spend.

    Purchases follow Fader, Hardie & Lee (2005) with their CDNOW estimates: while alive a customer
    buys at a rate lambda ~ Gamma(r, alpha) per week and drops out after each purchase (the first
    one too, as in the MBG/NBD variant) with probability p ~ Beta(a, b). Order values follow their
    gamma-gamma model: a customer's nu ~ Gamma(q, spend_gamma), each order ~ Gamma(spend_p, nu).
    """

    r: float = 0.243
    alpha: float = 4.414  # in weeks
    a: float = 0.793
    b: float = 2.426
    spend_p: float = 6.25
    spend_q: float = 3.74
    spend_gamma: float = 21.0  # CDNOW's 15.44 scaled to a median order of about 40 EUR
    acquisition_days: int = 1095  # customers are acquired over the three years before the end
    yearly_growth: float = 0.35  # acquisitions per day grow by this share a year
    never_bought_share: float = 0.12  # signed up, never ordered
    refund_share: float = 0.012  # orders refunded later, as a row with a negative amount
    duplicate_share: float = 0.001  # order rows exported twice


@dataclass(frozen=True)
class Level:
    """One value of an attribute: how common it is and how it shifts buying and spending."""

    name: str
    share: float  # at the start of the acquisition window
    rate: float = 1.0  # multiplies the purchase rate lambda
    spend: float = 1.0  # multiplies every order value
    late_share: float | None = None  # at the end of the window, where the mix shifts over time


ACQUISITION_CHANNELS = (
    Level("web", 0.40, 1.0, 1.0, late_share=0.30),
    Level("marketplace", 0.20, 0.45, 0.80, late_share=0.22),
    Level("store", 0.25, 0.90, 1.30, late_share=0.13),
    Level("app", 0.05, 1.80, 0.90, late_share=0.25),
    Level("referral", 0.10, 1.30, 1.10, late_share=0.10),
)
COUNTRIES = (
    Level("DE", 0.42),
    Level("AT", 0.10, 1.0, 1.05),
    Level("CH", 0.07, 0.9, 1.25),
    Level("FR", 0.12, 0.95, 0.95),
    Level("NL", 0.10, 1.05, 1.0),
    Level("BE", 0.05),
    Level("IT", 0.08, 0.9, 0.9),
    Level("ES", 0.06, 0.9, 0.9),
)
FIRST_ORDER_CATEGORIES = (
    Level("fashion", 0.34, 1.1, 0.95),
    Level("beauty", 0.18, 1.5, 0.6),
    Level("home", 0.20, 0.8, 1.4),
    Level("electronics", 0.12, 0.6, 2.2),
    Level("sports", 0.16, 0.9, 1.1),
)
ORDER_CHANNELS = ("online", "store", "app", "marketplace")
# where the customers of each acquisition channel (rows, as ACQUISITION_CHANNELS) place their orders
ORDER_CHANNEL_MIX = np.array(
    [
        [0.85, 0.05, 0.10, 0.00],
        [0.10, 0.00, 0.02, 0.88],
        [0.25, 0.70, 0.05, 0.00],
        [0.15, 0.02, 0.83, 0.00],
        [0.80, 0.05, 0.15, 0.00],
    ]
)
# acquisitions by calendar month: Christmas season high, summer low
MONTH_WEIGHTS = np.array([0.85, 0.85, 0.95, 1.0, 1.0, 0.95, 0.9, 0.9, 1.0, 1.05, 1.35, 1.45])
# orders by hour of the day: online quiet at night with evening peaks, stores in opening hours
ONLINE_HOURS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 9, 8, 7, 7, 7, 8, 9, 11, 12, 11, 8, 4.0])
STORE_HOURS = np.array([0] * 9 + [5, 7, 9, 10, 9, 8, 8, 9, 10, 9, 6] + [0.0] * 4)


def draw_rows(rng: np.random.Generator, row_shares: np.ndarray) -> np.ndarray:
    """One column index per row of a matrix of (unnormalised) shares."""
    cumulative = np.cumsum(row_shares, axis=1)
    return (rng.random(len(row_shares))[:, None] * cumulative[:, -1:] > cumulative).sum(axis=1)


def draw_levels(
    rng: np.random.Generator, levels: tuple[Level, ...], n: int, drift: np.ndarray | None = None
) -> np.ndarray:
    """Level indices of n rows; with `drift` (0 at the window's start, 1 at its end) each row's mix
    moves from the levels' shares to their late shares."""
    start = np.array([level.share for level in levels])
    if drift is None:
        return rng.choice(len(levels), size=n, p=start / start.sum())
    late = np.array([level.share if level.late_share is None else level.late_share for level in levels])
    return draw_rows(rng, start[None, :] * (1 - drift[:, None]) + late[None, :] * drift[:, None])


def effects(levels: tuple[Level, ...], codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the purchase rate and spend multipliers of its level."""
    return np.array([lv.rate for lv in levels])[codes], np.array([lv.spend for lv in levels])[codes]


def acquisition_days(
    rng: np.random.Generator, n: int, start: date, parameters: RetailParameters
) -> np.ndarray:
    """Days after the window's start on which customers arrive: growing year on year, seasonal."""
    days = np.arange(parameters.acquisition_days)
    months = (np.datetime64(start) + days).astype("datetime64[M]").astype(np.int64) % 12
    weights = (1 + parameters.yearly_growth) ** (days / 365) * MONTH_WEIGHTS[months]
    return rng.choice(days, size=n, p=weights / weights.sum()).astype(np.float64) + rng.random(n)


def repeat_purchases(
    rng: np.random.Generator, weekly_rate: np.ndarray, observed_days: np.ndarray, parameters: RetailParameters
) -> tuple[np.ndarray, np.ndarray]:
    """Whose each repeat purchase is and how many days after the first purchase it falls.

    A customer buys again at the events of a Poisson process until dropping out after a
    Geometric(p) number of purchases. Given n events in (0, T], their times are n sorted uniforms,
    whose first m are T * S_k / (S_m + G) with S_k sums of exponentials and G ~ Gamma(n + 1 - m):
    so only the purchases made are drawn, with no loop per customer."""
    n = len(weekly_rate)
    dropout = np.clip(rng.beta(parameters.a, parameters.b, n), 1e-9, 1.0)
    purchases_before_dropout = rng.geometric(dropout)
    events = rng.poisson(weekly_rate / 7 * observed_days)
    repeats = np.minimum(purchases_before_dropout - 1, events)
    owner = np.repeat(np.arange(n), repeats)
    sums = np.r_[0.0, np.cumsum(rng.standard_exponential(len(owner)))]
    ends = np.cumsum(repeats)
    before = sums[ends - repeats]
    total = sums[ends] - before + rng.standard_gamma(events - repeats + 1.0)
    return owner, observed_days[owner] * (sums[1:] - before[owner]) / total[owner]


def seconds_of_day(rng: np.random.Generator, in_store: np.ndarray) -> np.ndarray:
    """When in the day each order is placed, from the online or the store hours."""
    hours = np.where(
        in_store,
        rng.choice(24, size=len(in_store), p=STORE_HOURS / STORE_HOURS.sum()),
        rng.choice(24, size=len(in_store), p=ONLINE_HOURS / ONLINE_HOURS.sum()),
    )
    return hours * 3600 + rng.integers(0, 3600, size=len(in_store))


def with_nulls(rng: np.random.Generator, names: tuple[str, ...], codes: np.ndarray, share: float) -> pa.Array:
    """The level names of codes as text, with about `share` of them missing."""
    missing = rng.random(len(codes)) < share
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), mask=missing), pa.array(list(names))
    ).cast(pa.string())


def loyalty_membership(rng: np.random.Generator, purchases: np.ndarray) -> np.ndarray:
    """Members of the loyalty programme: few one-time buyers, most customers with several orders."""
    joining = np.where(purchases == 0, 0.01, 1 - 0.97 * 0.75 ** np.maximum(purchases - 1, 0))
    return rng.random(len(purchases)) < joining


def generate_retail_tables(
    n_customers: int = RETAIL_CUSTOMERS,
    seed: int = RETAIL_SEED,
    end: date = RETAIL_END,
    parameters: RetailParameters | None = None,
) -> tuple[pa.Table, pa.Table]:
    """A shop's customers (customer_no, signup_date, attributes) and orders until `end` (order_number,
    customer_no, created_at, order_total, sales_channel), with a few refunds and duplicated rows."""
    parameters = parameters or RetailParameters()
    rng = np.random.default_rng(seed)
    start = end + timedelta(days=1) - timedelta(days=parameters.acquisition_days)
    arrival = acquisition_days(rng, n_customers, start, parameters)
    observed = parameters.acquisition_days - arrival
    bought = rng.random(n_customers) >= parameters.never_bought_share

    channel = draw_levels(rng, ACQUISITION_CHANNELS, n_customers, arrival / parameters.acquisition_days)
    country = draw_levels(rng, COUNTRIES, n_customers)
    category = draw_levels(rng, FIRST_ORDER_CATEGORIES, n_customers)
    multipliers = [
        effects(levels, codes)
        for levels, codes in (
            (ACQUISITION_CHANNELS, channel),
            (COUNTRIES, country),
            (FIRST_ORDER_CATEGORIES, category),
        )
    ]
    rate_multiplier = np.prod([rate for rate, _ in multipliers], axis=0)
    spend_multiplier = np.prod([spend for _, spend in multipliers], axis=0)
    weekly_rate = rng.gamma(parameters.r, 1 / parameters.alpha, n_customers) * rate_multiplier * bought
    spend_rate = rng.gamma(parameters.spend_q, 1 / parameters.spend_gamma, n_customers)

    repeat_owner, repeat_offset = repeat_purchases(rng, weekly_rate, observed, parameters)
    first_owner = np.flatnonzero(bought)
    owner = np.r_[first_owner, repeat_owner]
    day = np.floor(np.r_[arrival[first_owner], arrival[repeat_owner] + repeat_offset]).astype(np.int64)
    sales_channel = draw_rows(rng, ORDER_CHANNEL_MIX[channel[owner]])
    when = (np.datetime64(start, "us").astype(np.int64) + day * MICROSECONDS_PER_DAY) + seconds_of_day(
        rng, sales_channel == ORDER_CHANNELS.index("store")
    ) * 1_000_000
    amount = rng.gamma(parameters.spend_p, 1 / spend_rate[owner]) * spend_multiplier[owner]
    amount = np.maximum(np.round(amount, 2), 0.5)

    signup_lag = np.where(rng.random(n_customers) < 0.65, 0.0, rng.exponential(45.0, n_customers))
    signup_day = np.floor(np.maximum(arrival - signup_lag * bought, 0)).astype(np.int64)
    by_signup = np.argsort(signup_day, kind="stable")
    customer_no = np.empty(n_customers, dtype=np.int64)
    customer_no[by_signup] = 100_001 + np.arange(n_customers)
    purchases = np.bincount(owner, minlength=n_customers)

    customers = pa.table(
        {
            "customer_no": customer_no,
            "signup_date": pa.array(np.datetime64(start, "D") + signup_day),
            "country": with_nulls(rng, tuple(lv.name for lv in COUNTRIES), country, 0.015),
            "acquisition_channel": with_nulls(
                rng, tuple(lv.name for lv in ACQUISITION_CHANNELS), channel, 0.06
            ),
            "first_order_category": pc.if_else(
                pa.array(bought),
                with_nulls(rng, tuple(lv.name for lv in FIRST_ORDER_CATEGORIES), category, 0.01),
                pa.nulls(n_customers, pa.string()),
            ),
            "loyalty_member": loyalty_membership(rng, purchases),
        }
    ).take(by_signup)
    orders = order_rows(rng, customer_no[owner], when, amount, sales_channel, end, parameters)
    return customers, orders


def order_rows(
    rng: np.random.Generator,
    customer_no: np.ndarray,
    when: np.ndarray,
    amount: np.ndarray,
    sales_channel: np.ndarray,
    end: date,
    parameters: RetailParameters,
) -> pa.Table:
    """The orders in time order, numbered in that order, with later refunds of a few (negative
    amounts, order number suffixed '-R') and a few rows exported twice."""
    in_time = np.argsort(when, kind="stable")
    customer_no, when, amount, sales_channel = (
        v[in_time] for v in (customer_no, when, amount, sales_channel)
    )
    number = np.arange(1_000_001, 1_000_001 + len(when))
    refunded = np.flatnonzero(rng.random(len(when)) < parameters.refund_share)
    refund_when = when[refunded] + ((1 + rng.exponential(6.0, len(refunded))) * MICROSECONDS_PER_DAY).astype(
        np.int64
    )
    partial = np.where(rng.random(len(refunded)) < 0.25, rng.uniform(0.2, 0.8, len(refunded)), 1.0)
    in_window = refund_when < np.datetime64(end + timedelta(days=1), "us").astype(np.int64)
    refunded, refund_when, partial = refunded[in_window], refund_when[in_window], partial[in_window]
    rows = np.r_[np.arange(len(when)), refunded]
    is_refund = np.r_[np.zeros(len(when), bool), np.ones(len(refunded), bool)]
    signed_amount = np.r_[amount, -np.round(amount[refunded] * partial, 2)]
    all_when = np.r_[when, refund_when]
    again = np.flatnonzero(rng.random(len(rows)) < parameters.duplicate_share)
    rows, is_refund, signed_amount, all_when = (
        np.r_[v, v[again]] for v in (rows, is_refund, signed_amount, all_when)
    )
    order = np.lexsort((rows, all_when))
    rows, is_refund, signed_amount, all_when = (v[order] for v in (rows, is_refund, signed_amount, all_when))
    order_number = pc.binary_join_element_wise(
        "SO-", pc.cast(pa.array(number[rows]), pa.string()), pc.if_else(pa.array(is_refund), "-R", ""), ""
    )
    return pa.table(
        {
            "order_number": order_number,
            "customer_no": customer_no[rows],
            "created_at": pa.array(all_when, type=pa.timestamp("us", tz="UTC")),
            "order_total": signed_amount,
            "sales_channel": pa.DictionaryArray.from_arrays(
                pa.array(sales_channel[rows].astype(np.int32)), pa.array(list(ORDER_CHANNELS))
            ).cast(pa.string()),
        }
    )


CONTRACTS = ("Month-to-month", "One year", "Two year")
INTERNET_SERVICES = ("Fiber optic", "DSL", "No")
PAYMENT_METHODS = ("Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)")
# contract mix of non-seniors and seniors; internet service and payment mix by contract (rows as CONTRACTS)
CONTRACT_SHARES = np.array([[0.52, 0.22, 0.26], [0.70, 0.17, 0.13]])
INTERNET_BY_CONTRACT = np.array([[0.52, 0.36, 0.12], [0.35, 0.39, 0.26], [0.24, 0.37, 0.39]])
PAYMENT_BY_CONTRACT = np.array([[0.47, 0.22, 0.15, 0.16], [0.19, 0.22, 0.30, 0.29], [0.08, 0.23, 0.34, 0.35]])
# monthly prices: phone line, extra lines, internet by service, and each add-on (the last two streaming)
PHONE_PRICE, EXTRA_LINES_PRICE = 20.0, 5.0
INTERNET_PRICE = np.array([50.0, 25.0, 0.0])
ADD_ON_PRICES = np.array([5.0, 5.0, 5.0, 5.0, 10.0, 10.0])
TECH_SUPPORT, STREAMING_TV = 3, 4  # positions among the add-ons


def telecom_tenure(rng: np.random.Generator, contract: np.ndarray) -> np.ndarray:
    """Months with the company: mostly short on month-to-month, long on two-year contracts (many at
    the 72-month cap of the data); a few brand-new customers (0) on one- and two-year contracts."""
    n = len(contract)
    months = np.select(
        [contract == 0, contract == 1],
        [rng.gamma(0.85, 22.0, n), 72 * rng.beta(1.9, 1.4, n)],
        76 * rng.beta(2.6, 0.9, n),
    )
    tenure = np.clip(np.ceil(months), 1, 72).astype(np.int64)
    brand_new = rng.random(n) < np.array([0.0, 0.002, 0.005])[contract]
    return np.where(brand_new, 0, tenure)


def yes_no(values: np.ndarray, not_applicable: np.ndarray | None = None, label: str = "") -> pa.Array:
    """'Yes'/'No' text, or `label` (e.g. 'No internet service') where the question does not apply."""
    text = np.where(values, "Yes", "No").astype(object)
    if not_applicable is not None:
        text[not_applicable] = label
    return pa.array(text, type=pa.string())


def telecom_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """Distinct ids like '7590-VHVEG': four digits, a dash, five capital letters."""
    codes = rng.choice(10_000 * 26**5, size=n, replace=False)
    chars = np.empty((n, 10), dtype=np.uint8)
    chars[:, :4] = 48 + (codes[:, None] // 26**5 // 10 ** np.arange(3, -1, -1)) % 10
    chars[:, 4] = ord("-")
    chars[:, 5:] = 65 + (codes[:, None] % 26**5 // 26 ** np.arange(4, -1, -1)) % 26
    return pa.array(chars.view("S10").ravel().astype("U10"))


def generate_telecom_table(n_customers: int = TELECOM_CUSTOMERS, seed: int = TELECOM_SEED) -> pa.Table:
    """Telecom customers as in the IBM Telco churn data: contract, tenure, services, charges, payment
    and churn, correlated as there (total_charges is blank for the brand-new)."""
    rng = np.random.default_rng(seed)
    n = n_customers
    senior = rng.random(n) < 0.162
    contract = draw_rows(rng, CONTRACT_SHARES[senior.astype(int)])
    tenure = telecom_tenure(rng, contract)
    partner = rng.random(n) < np.array([0.36, 0.55, 0.65])[contract]
    dependents = rng.random(n) < np.where(partner, 0.5, 0.1) * np.where(senior, 0.3, 1.0)
    internet = draw_rows(
        rng, INTERNET_BY_CONTRACT[contract] * np.where(senior[:, None], [1.5, 0.8, 0.5], 1.0)
    )
    has_internet = internet != 2
    phone = (internet != 1) | (rng.random(n) < 0.72)
    extra_lines = phone & (rng.random(n) < np.array([0.6, 0.3, 0.22])[internet])
    add_on_chance = np.clip(0.15 + 0.45 * tenure / 72 + 0.1 * (contract == 2), 0, 0.9)
    add_ons = has_internet[:, None] & (rng.random((n, len(ADD_ON_PRICES))) < add_on_chance[:, None])
    monthly = (
        PHONE_PRICE * phone
        + EXTRA_LINES_PRICE * extra_lines
        + INTERNET_PRICE[internet]
        + add_ons @ ADD_ON_PRICES
        + rng.uniform(-1.75, 1.75, n)
    )
    monthly = np.round(np.maximum(monthly, 18.25) * 20) / 20
    total = np.round(monthly * tenure * np.exp(rng.normal(0, 0.04, n)), 2)
    payment = draw_rows(rng, PAYMENT_BY_CONTRACT[contract] * np.where(senior[:, None], [1.5, 1, 1, 1], 1.0))
    paperless = rng.random(n) < np.clip(
        0.48 + 0.2 * (internet == 0) + 0.08 * (contract == 0) + 0.1 * senior - 0.25 * ~has_internet, 0, 1
    )
    churn_score = (
        -2.1
        + np.array([1.45, 0.5, -0.5])[contract]
        + np.array([0.8, 0.0, -0.7])[internet]
        + 0.6 * (payment == 0)
        + 0.35 * paperless
        + 0.3 * senior
        - 0.5 * add_ons[:, TECH_SUPPORT]
        - 0.035 * tenure
    )
    churn = rng.random(n) < 1 / (1 + np.exp(-churn_score))
    no_internet = ~has_internet
    return pa.table(
        {
            "customer_id": telecom_ids(rng, n),
            "gender": pa.array(np.where(rng.random(n) < 0.5, "Female", "Male")),
            "senior_citizen": senior.astype(np.int64),
            "partner": yes_no(partner),
            "dependents": yes_no(dependents),
            "tenure": tenure,
            "phone_service": yes_no(phone),
            "multiple_lines": yes_no(extra_lines, ~phone, "No phone service"),
            "internet_service": pa.array(np.array(INTERNET_SERVICES)[internet]),
            "tech_support": yes_no(add_ons[:, TECH_SUPPORT], no_internet, "No internet service"),
            "streaming_tv": yes_no(add_ons[:, STREAMING_TV], no_internet, "No internet service"),
            "contract": pa.array(np.array(CONTRACTS)[contract]),
            "paperless_billing": yes_no(paperless),
            "payment_method": pa.array(np.array(PAYMENT_METHODS)[payment]),
            "monthly_charges": monthly,
            "total_charges": pa.array(total, mask=tenure == 0),
            "churn": yes_no(churn),
        }
    )


def retail_data_paths(folder: Path) -> dict[str, Path]:
    return {"customers": folder / "customers.parquet", "transactions": folder / "orders.parquet"}


def telecom_data_paths(folder: Path) -> dict[str, Path]:
    return {"customers": folder / "telco_customers.parquet"}


def publish_targets(output_root: Path) -> dict[str, Any]:
    """Parquet, a DuckDB warehouse and the reports under one output folder."""
    return {
        "parquet": str(output_root / "parquet"),
        "warehouse": f"duckdb:///{output_root / 'warehouse.duckdb'}",
        "schema": "segments",
        "reports": str(output_root / "reports"),
    }


def retail_config(output_root: Path, data: dict[str, Path] | None = None) -> dict[str, Any]:
    """The raw config of a run on the retail tables (by default under `output_root`/retail_data),
    with segflow's defaults for everything but the sources' columns and the output folder."""
    paths = data or retail_data_paths(output_root / "retail_data")
    return {
        "sources": {
            "customers": {"uri": str(paths["customers"]), "id_column": "customer_no"},
            "transactions": {
                "uri": str(paths["transactions"]),
                "id_column": "customer_no",
                "timestamp_column": "created_at",
                "amount_column": "order_total",
            },
        },
        "features": {
            "rfm": True,
            "categorical": ["acquisition_channel", "country", "first_order_category", "loyalty_member"],
        },
        "publish": publish_targets(output_root),
    }


def telecom_config(output_root: Path, data: dict[str, Path] | None = None) -> dict[str, Any]:
    """The raw config of a run on the telecom customer table (by default under
    `output_root`/telecom_data): its charges and tenure, and its main categories."""
    paths = data or telecom_data_paths(output_root / "telecom_data")
    return {
        "sources": {"customers": {"uri": str(paths["customers"]), "id_column": "customer_id"}},
        "features": {
            "numeric": ["tenure", "monthly_charges", "total_charges"],
            "categorical": ["contract", "internet_service", "payment_method", "paperless_billing"],
        },
        "publish": publish_targets(output_root),
    }


def write_once(paths: dict[str, Path], version: str, make_tables: Callable[[], dict[str, pa.Table]]) -> None:
    """Write the tables to their paths unless this version is complete there; each file appears
    whole (written aside, then renamed) and a marker written last says the set is complete."""
    folder = next(iter(paths.values())).parent
    marker = folder / f".complete-{version}"
    if marker.exists() and all(path.exists() for path in paths.values()):
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".complete-*"):
        stale.unlink()
    for name, table in make_tables().items():
        partial = paths[name].with_name(f".{paths[name].name}.partial")
        pq.write_table(table, partial)
        os.replace(partial, paths[name])
    marker.touch()


def ensure_retail_data(
    folder: Path, n_customers: int = RETAIL_CUSTOMERS, seed: int = RETAIL_SEED
) -> dict[str, Path]:
    """Write the retail tables into `folder` once; later calls with the same size and seed reuse them."""
    paths = retail_data_paths(folder)
    write_once(
        paths,
        f"retail-v{SYNTHETIC_VERSION}-{n_customers}-{seed}",
        lambda: dict(
            zip(("customers", "transactions"), generate_retail_tables(n_customers, seed), strict=True)
        ),
    )
    return paths


def ensure_telecom_data(
    folder: Path, n_customers: int = TELECOM_CUSTOMERS, seed: int = TELECOM_SEED
) -> dict[str, Path]:
    """Write the telecom table into `folder` once; later calls with the same size and seed reuse it."""
    paths = telecom_data_paths(folder)
    write_once(
        paths,
        f"telecom-v{SYNTHETIC_VERSION}-{n_customers}-{seed}",
        lambda: {"customers": generate_telecom_table(n_customers, seed)},
    )
    return paths
