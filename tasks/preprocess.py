"""Preprocess: column selection, missing values, skew and category encoding (duplicate customers are
dropped by the features stage, where every row of a customer is at hand in both execution modes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import FeaturesConfig, PreprocessConfig
from segflow.errors import ConfigError
from segflow.tables import CUSTOMER_ID
from segflow.timing import timed

MISSING_CATEGORY = "missing"
OTHER_CATEGORY = "other"
# control characters, soft hyphen, zero-width and bidi formatting characters, byte order mark
# A computed column whose middle 90% spans under this share of its median is dropped: on a base whose
# customers all joined within a few months, tenure only says in which month they joined, and scaling
# would blow that up into the strongest split of the clustering (see nearly_constant)
NARROW_SPREAD = 0.25
INVISIBLE_CHARACTERS = "[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"


@dataclass
class PreparedFeatures:
    """Model-ready features, the readable per-customer values behind them, and what was done."""

    customer_ids: pd.Series
    readable: (
        pd.DataFrame
    )  # numeric features (imputed, untransformed) and categories as written, for profiles
    model_input: pd.DataFrame  # numeric matrix before scaling: transformed numerics and one-hot columns
    numeric_columns: list[str]
    categorical_columns: list[str]
    preparation: Preparation  # the learned steps, to prepare new customers for scoring
    recipe: dict[str, Any] = field(default_factory=dict)  # what was done, for the run's metadata


def choose_columns(
    table: pd.DataFrame, features: FeaturesConfig, rfm_columns: list[str]
) -> tuple[list[str], list[str]]:
    """The numeric and categorical feature columns: from the config, else every numeric column."""
    named = list(features.numeric) + list(features.categorical)
    missing = [column for column in named if column not in table.columns]
    if missing:
        raise ConfigError(
            f"features: column(s) {', '.join(map(repr, missing))} not found in the customer table; "
            f"columns are {', '.join(map(str, table.columns))} (a column its data contract marks as "
            "personal data is withheld from the features)"
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
    """Category text in one Unicode form (NFKC), without control or invisible characters (NUL,
    zero-width spaces, bidi marks), trimmed and lower-cased: 'Email ', 'e\u200bmail' and 'email'
    are one category, and so are a composed and a decomposed 'café'. Each distinct value is
    normalised once (1M rows of a 6-value column: 1.0 s row by row, 0.05 s this way)."""
    codes, distinct = pd.factorize(values.astype("string"), use_na_sentinel=True)
    text = (
        pd.Series(distinct, dtype="string")
        .str.normalize("NFKC")
        .str.replace(INVISIBLE_CHARACTERS, "", regex=True)
        .str.strip()
        .str.casefold()
    )
    normalised = text.mask(text.isna() | (text == ""), MISSING_CATEGORY).to_numpy(dtype=object)
    return pd.Series(by_code(codes, normalised, MISSING_CATEGORY), index=values.index, dtype=object)


def by_code(codes: np.ndarray, values: np.ndarray, missing: object) -> np.ndarray:
    """Each row's value from its `pd.factorize` code into `values`; `missing` where the code is -1."""
    return np.where(codes < 0, missing, values[codes] if len(values) else missing)


def one_hot(categories: pd.Series, name: str, kept: list[str]) -> pd.DataFrame:
    """Indicator columns 'name=value' for the kept values; everything else is 'name=other'."""
    values = categories.where(categories.isin(kept), OTHER_CATEGORY)
    levels = [*kept, OTHER_CATEGORY] if (values == OTHER_CATEGORY).any() else kept
    return pd.DataFrame(
        {f"{name}={level}": (values == level).to_numpy(dtype=np.float64) for level in levels},
        index=categories.index,
    )


@dataclass
class Preparation:
    """What preprocessing learned from the fitted customers, to prepare new customers the same way."""

    numeric_columns: list[str]
    fill_values: dict[str, float]
    log1p_columns: list[str]
    categories: dict[str, list[str]]  # the kept levels of each categorical column
    model_columns: list[str]

    def readable(self, table: pd.DataFrame) -> pd.DataFrame:
        """The numeric features as floats (missing and infinite values imputed) and the categories
        normalised: the values profiles describe, before any transform."""
        numbers = table[self.numeric_columns].apply(pd.to_numeric, errors="coerce").astype("float64")
        readable = numbers.replace([np.inf, -np.inf], np.nan).fillna(self.fill_values)
        for column in self.categories:
            readable[column] = normalise_categories(table[column])
        return readable

    def encode(self, readable: pd.DataFrame) -> pd.DataFrame:
        """De-skewed numerics and one-hot categories of readable values (levels as found in them)."""
        transformed = readable[self.numeric_columns].copy()
        transformed[self.log1p_columns] = np.log1p(transformed[self.log1p_columns].clip(lower=0))
        encoded = [transformed]
        for column, kept in self.categories.items():
            if len(kept) > 1:
                encoded.append(one_hot(readable[column], column, kept))
        return pd.concat(encoded, axis=1)

    def model_input(self, table: pd.DataFrame) -> pd.DataFrame:
        """The fitted model columns of a customer table, in order; absent levels are 0."""
        return self.encode(self.readable(table)).reindex(columns=self.model_columns, fill_value=0.0)


def finite_mean(numbers: pd.DataFrame) -> pd.Series:
    """Each column's mean, also where values near the float limit make the plain sum overflow (to
    infinity, or to NaN where both signs overflow): there each value is divided by the count first."""
    means = numbers.mean()
    overflowed = [
        column
        for column in numbers.columns
        if numbers[column].notna().any() and not np.isfinite(means[column])
    ]
    for column in overflowed:
        values = numbers[column].dropna()
        means[column] = (values / len(values)).sum()
    return means.clip(lower=numbers.min(), upper=numbers.max())


def nearly_constant(numbers: pd.DataFrame, computed: list[str]) -> list[str]:
    """The computed columns whose 5-95% span is above zero but under NARROW_SPREAD of their median.
    A column the config names is never dropped, nor one whose middle 90% is a single value (its
    tails are the few customers who differ, such as the repeat buyers of a one-time base)."""
    narrow = []
    for column in computed:
        low, median, high = numbers[column].quantile([0.05, 0.5, 0.95])
        if median > 0 and 0 < high - low < NARROW_SPREAD * median:
            narrow.append(column)
    return narrow


def fit_preparation(
    table: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    preprocess: PreprocessConfig,
    top_n: int,
    computed: list[str],
) -> tuple[Preparation, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Learn imputation values, skewed columns and kept categories (dropping empty, constant and
    nearly constant computed columns); return them with the table's readable values, its model input
    and what was found."""
    numbers = table[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    numbers = numbers.replace([np.inf, -np.inf], np.nan)
    empty = [c for c in numeric if numbers[c].isna().all()]
    numbers = numbers.drop(columns=empty)
    fill_values = {
        "median": numbers.median(),
        "mean": finite_mean(numbers),
        "zero": pd.Series(0.0, index=numbers.columns),
    }[preprocess.impute]
    missing_counts = {c: int(n) for c, n in numbers.isna().sum().items() if n}
    numbers = numbers.fillna(fill_values)
    constant = [c for c in numbers.columns if numbers[c].nunique() <= 1]
    narrow = nearly_constant(numbers, [c for c in computed if c in numbers.columns and c not in constant])
    dropped = constant + narrow
    readable = numbers.drop(columns=dropped)
    skewed = []
    if preprocess.log_transform_skewed:
        skewed = [c for c in readable.columns if readable[c].min() >= 0 and readable[c].skew() > 1.0]
    for column in categorical:
        readable[column] = normalise_categories(table[column])
    preparation = Preparation(
        numeric_columns=[c for c in numbers.columns if c not in dropped],
        fill_values={c: float(fill_values[c]) for c in numbers.columns if c not in dropped},
        log1p_columns=skewed,
        categories={
            column: [str(v) for v in readable[column].value_counts().index[:top_n]] for column in categorical
        },
        model_columns=[],
    )
    model_input = preparation.encode(readable)
    preparation.model_columns = list(model_input.columns)
    facts = {
        "all_null_columns_dropped": empty,
        "constant_columns_dropped": constant,
        "nearly_constant_columns_dropped": narrow,
        "imputed_values": {c: float(fill_values[c]) for c in missing_counts if c in numbers},
        "missing_values": missing_counts,
    }
    return preparation, readable, model_input, facts


def prepare_features(
    table: pd.DataFrame,
    features: FeaturesConfig,
    preprocess: PreprocessConfig,
    rfm_columns: list[str],
) -> PreparedFeatures:
    """Impute, de-skew and encode a customer table (one row per customer) into a numeric model input."""
    numeric, categorical = choose_columns(table, features, rfm_columns)
    computed = [column for column in rfm_columns if column not in features.numeric]
    preparation, readable, model_input, facts = fit_preparation(
        table, numeric, categorical, preprocess, features.max_categories, computed
    )
    return PreparedFeatures(
        customer_ids=table[CUSTOMER_ID].reset_index(drop=True),
        readable=as_written(readable, table, categorical).reset_index(drop=True),
        model_input=model_input.reset_index(drop=True),
        numeric_columns=preparation.numeric_columns,
        categorical_columns=categorical,
        preparation=preparation,
        recipe={
            **facts,
            "log1p_columns": preparation.log1p_columns,
            "categories": preparation.categories,
            "model_columns": preparation.model_columns,
        },
    )


def as_written(readable: pd.DataFrame, table: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """The readable values with each category in its most common spelling in the source ('Fiber optic'
    rather than the normalised 'fiber optic' the model encodes): what profiles and names show. Ties
    go to the normalised spelling, then to the first in sort order, so that every run writes the same.
    Spellings are counted per distinct source value, whose normalised form `readable` holds."""
    written = readable.copy()
    for column in categorical:
        codes, distinct = pd.factorize(table[column].astype("string"), use_na_sentinel=True)
        source = pd.Series(distinct, dtype="string")
        spellings = pd.DataFrame(
            {
                "value": normalise_categories(source).to_numpy(),
                "written": source.str.strip().to_numpy(),
                "count": np.bincount(codes[codes >= 0], minlength=len(source)),
            }
        )
        counts = spellings.groupby(["value", "written"], as_index=False)["count"].sum()
        counts["other_spelling"] = counts["written"] != counts["value"]
        # the most common spelling; on a tie the normalised one, then the first in sort order
        counts = counts.sort_values(
            ["value", "count", "other_spelling", "written"], ascending=[True, False, True, True]
        )
        spelling = counts.drop_duplicates("value").set_index("value")["written"]
        shown = spellings["value"].map(spelling).fillna(spellings["value"]).to_numpy(dtype=object)
        missing = spelling.get(MISSING_CATEGORY, MISSING_CATEGORY)  # a missing value's spelling
        written[column] = by_code(codes, shown, missing)
    return written


@task(name="preprocess", cache_policy=NO_CACHE)
@timed
def preprocess_task(
    table: pd.DataFrame,
    rfm_columns: list[str],
    duplicates: dict[str, int],
    features: FeaturesConfig,
    preprocess: PreprocessConfig,
) -> PreparedFeatures:
    """The preprocess stage; the recipe also records the duplicate customers the features stage dropped."""
    prepared = prepare_features(table, features, preprocess, rfm_columns)
    prepared.recipe.update(duplicates)
    recipe = prepared.recipe
    get_run_logger().info(
        "preprocess: %d customers, %d model columns; imputed %s; dropped all-null %s, constant %s and "
        "nearly constant %s; log1p on %s",
        len(prepared.customer_ids),
        prepared.model_input.shape[1],
        recipe["missing_values"] or "nothing",
        recipe["all_null_columns_dropped"] or "none",
        recipe["constant_columns_dropped"] or "none",
        recipe["nearly_constant_columns_dropped"] or "none",
        recipe["log1p_columns"] or "none",
    )
    return prepared
