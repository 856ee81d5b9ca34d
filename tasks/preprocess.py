"""Preprocess: duplicates, column selection, missing values, skew and category encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from segflow.config import FeaturesConfig, PreprocessConfig
from segflow.errors import ConfigError

CUSTOMER_ID = "customer_id"
MISSING_CATEGORY = "missing"
OTHER_CATEGORY = "other"


@dataclass
class PreparedFeatures:
    """Model-ready features, the readable per-customer values behind them, and what was done."""

    customer_ids: pd.Series
    readable: pd.DataFrame  # numeric features (imputed, untransformed) and categories, for profiles
    model_input: pd.DataFrame  # numeric matrix before scaling: transformed numerics and one-hot columns
    numeric_columns: list[str]
    categorical_columns: list[str]
    recipe: dict[str, Any] = field(default_factory=dict)  # reproducible steps, for scoring and metadata


def drop_duplicate_customers(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop exact duplicate rows, then keep the first row of any id that is still repeated."""
    exact = table.duplicated()
    deduplicated = table[~exact]
    conflicting = deduplicated[CUSTOMER_ID].duplicated(keep="first")
    counts = {"exact_duplicate_rows": int(exact.sum()), "conflicting_id_rows": int(conflicting.sum())}
    return deduplicated[~conflicting].reset_index(drop=True), counts


def choose_columns(
    table: pd.DataFrame, features: FeaturesConfig, rfm_columns: list[str]
) -> tuple[list[str], list[str]]:
    """The numeric and categorical feature columns: from the config, else every numeric column."""
    named = list(features.numeric) + list(features.categorical)
    missing = [column for column in named if column not in table.columns]
    if missing:
        raise ConfigError(
            f"features: column(s) {', '.join(map(repr, missing))} not found in the customer table; "
            f"columns are {', '.join(map(str, table.columns))}"
        )
    if features.numeric:
        numeric = [*rfm_columns, *[c for c in features.numeric if c not in rfm_columns]]
    else:
        numeric = [
            column
            for column in table.columns
            if column != CUSTOMER_ID
            and column not in features.categorical
            and (pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column]))
        ]
    return numeric, list(features.categorical)


def normalise_categories(values: pd.Series) -> pd.Series:
    """Trim and lower-case category text, so 'Email ' and 'email' are one category."""
    text = values.astype("string").str.strip().str.casefold()
    return text.mask(text.isna() | (text == ""), MISSING_CATEGORY).astype(object)


def one_hot(categories: pd.Series, name: str, kept: list[str]) -> pd.DataFrame:
    """Indicator columns 'name=value' for the kept values; everything else is 'name=other'."""
    values = categories.where(categories.isin(kept), OTHER_CATEGORY)
    levels = [*kept, OTHER_CATEGORY] if (values == OTHER_CATEGORY).any() else kept
    return pd.DataFrame(
        {f"{name}={level}": (values == level).to_numpy(dtype=np.float64) for level in levels},
        index=categories.index,
    )


def prepare_features(
    table: pd.DataFrame,
    features: FeaturesConfig,
    preprocess: PreprocessConfig,
    rfm_columns: list[str],
) -> PreparedFeatures:
    """Deduplicate, impute, de-skew and encode the customer table into a numeric model input."""
    deduplicated, duplicate_counts = drop_duplicate_customers(table)
    numeric, categorical = choose_columns(deduplicated, features, rfm_columns)
    numbers = deduplicated[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    numbers = numbers.replace([np.inf, -np.inf], np.nan)

    empty = [c for c in numeric if numbers[c].isna().all()]
    numbers = numbers.drop(columns=empty)
    fill_values = {
        "median": numbers.median(),
        "mean": numbers.mean(),
        "zero": pd.Series(0.0, index=numbers.columns),
    }[preprocess.impute]
    missing_counts = {c: int(n) for c, n in numbers.isna().sum().items() if n}
    numbers = numbers.fillna(fill_values)
    constant = [c for c in numbers.columns if numbers[c].nunique() <= 1]
    numbers = numbers.drop(columns=constant)

    skewed = []
    transformed = numbers.copy()
    if preprocess.log_transform_skewed:
        skewed = [c for c in numbers.columns if numbers[c].min() >= 0 and numbers[c].skew() > 1.0]
        transformed[skewed] = np.log1p(numbers[skewed])

    readable = numbers.copy()
    encoded = [transformed]
    kept_categories: dict[str, list[str]] = {}
    for column in categorical:
        values = normalise_categories(deduplicated[column])
        readable[column] = values
        counts = values.value_counts()
        kept = [str(v) for v in counts.index[: features.max_categories]]
        kept_categories[column] = kept
        if len(kept) > 1:
            encoded.append(one_hot(values, column, kept))
    model_input = pd.concat(encoded, axis=1)

    return PreparedFeatures(
        customer_ids=deduplicated[CUSTOMER_ID].reset_index(drop=True),
        readable=readable.reset_index(drop=True),
        model_input=model_input.reset_index(drop=True),
        numeric_columns=list(numbers.columns),
        categorical_columns=categorical,
        recipe={
            **duplicate_counts,
            "all_null_columns_dropped": empty,
            "constant_columns_dropped": constant,
            "imputed_values": {c: float(fill_values[c]) for c in missing_counts if c in numbers},
            "missing_values": missing_counts,
            "log1p_columns": skewed,
            "categories": kept_categories,
            "model_columns": list(model_input.columns),
        },
    )


@task(name="preprocess")
def preprocess_task(
    table: pd.DataFrame, features: FeaturesConfig, preprocess: PreprocessConfig, rfm_columns: list[str]
) -> PreparedFeatures:
    prepared = prepare_features(table, features, preprocess, rfm_columns)
    recipe = prepared.recipe
    get_run_logger().info(
        "preprocess: %d customers, %d model columns; removed %d exact duplicate rows and %d rows "
        "repeating an id; imputed %s; dropped all-null %s and constant %s; log1p on %s",
        len(prepared.customer_ids),
        prepared.model_input.shape[1],
        recipe["exact_duplicate_rows"],
        recipe["conflicting_id_rows"],
        recipe["missing_values"] or "nothing",
        recipe["all_null_columns_dropped"] or "none",
        recipe["constant_columns_dropped"] or "none",
        recipe["log1p_columns"] or "none",
    )
    return prepared
