"""Preprocessing: duplicates, imputation, constant columns, skew and one-hot categories."""

import numpy as np
import pandas as pd
import pytest

from segflow.config import FeaturesConfig, PreprocessConfig
from segflow.errors import ConfigError
from segflow.tasks.features import drop_duplicate_customers
from segflow.tasks.preprocess import prepare_features
from segflow.tasks.scale import fit_scaling


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "b", "c", "d", "d", "e"],
            "spend": [10.0, 20.0, 20.0, np.nan, 1000.0, 5.0, 30.0],
            "visits": [1, 2, 2, 3, 4, 9, 5],
            "constant": [1, 1, 1, 1, 1, 1, 1],
            "empty": [np.nan] * 7,
            "channel": ["Email ", "email", "email", None, "social", "x", "SOCIAL"],
        }
    )


def test_duplicates_missing_values_and_categories():
    table, duplicates = drop_duplicate_customers(customers())  # the features stage drops them
    assert duplicates == {"exact_duplicate_rows": 1, "conflicting_id_rows": 1}
    prepared = prepare_features(
        table, FeaturesConfig(categorical=["channel"]), PreprocessConfig(log_transform_skewed=False), []
    )
    recipe = prepared.recipe
    assert list(prepared.customer_ids) == ["a", "b", "c", "d", "e"]
    assert recipe["constant_columns_dropped"] == ["constant"]
    assert recipe["all_null_columns_dropped"] == ["empty"]
    assert prepared.numeric_columns == ["spend", "visits"]
    assert recipe["missing_values"] == {"spend": 1}
    assert prepared.readable.loc[2, "spend"] == pytest.approx(np.median([10, 20, 1000, 30]))
    assert list(prepared.readable["channel"]) == ["email", "email", "missing", "social", "social"]
    one_hot = prepared.model_input.filter(like="channel=")
    assert sorted(one_hot.columns) == ["channel=email", "channel=missing", "channel=social"]
    assert (one_hot.sum(axis=1) == 1).all()
    assert not prepared.model_input.isna().any().any()


def test_skewed_non_negative_columns_are_log_transformed():
    prepared = prepare_features(customers(), FeaturesConfig(numeric=["spend"]), PreprocessConfig(), [])
    assert prepared.recipe["log1p_columns"] == ["spend"]
    assert prepared.model_input["spend"].max() == pytest.approx(np.log1p(1000.0))
    assert prepared.readable["spend"].max() == 1000.0


def test_unknown_feature_column_is_named():
    with pytest.raises(ConfigError, match="'lifetime_value'"):
        prepare_features(customers(), FeaturesConfig(numeric=["lifetime_value"]), PreprocessConfig(), [])


@pytest.mark.parametrize("kind", ["minmax", "standard", "robust"])
def test_scalers_give_finite_matrices(kind):
    prepared = prepare_features(customers(), FeaturesConfig(categorical=["channel"]), PreprocessConfig(), [])
    scaling, matrix = fit_scaling(prepared.model_input, kind, ["channel"])
    assert np.array_equal(scaling.transform(prepared.model_input), matrix)  # new rows, same scaling
    assert matrix.shape == prepared.model_input.shape
    assert np.isfinite(matrix).all()
    columns = list(prepared.model_input.columns)
    numeric = [columns.index(c) for c in prepared.numeric_columns]
    channel = [i for i, c in enumerate(columns) if c.startswith("channel=")]
    # the one categorical feature carries the variance of one average numeric column
    assert matrix[:, channel].var(axis=0).sum() == pytest.approx(matrix[:, numeric].var(axis=0).mean())
    if kind == "minmax":
        assert matrix[:, numeric].min() == 0.0 and matrix[:, numeric].max() == 1.0


def test_mean_imputation_stays_finite_when_both_signs_overflow_the_sum():
    # found by the property tests: the plain sum reaches +inf and -inf, so the mean was NaN
    a = float("8988465674311578540726371186585217839903528376" + "0" * 262)
    b = float("8988465674311579538646525953945123668089884894" + "0" * 262)
    n = None
    x = [n, 0, 0, 0, 0, 0, 0, a, 0, 0, 0, 0, 0, n, 0, n, 0, n, 0, -b, n, n, b, n, 0, 0, 0, -b, n, 0, 0, 0]
    table = pd.DataFrame({"customer_id": range(len(x)), "x": x})
    prepared = prepare_features(table, FeaturesConfig(numeric=["x"]), PreprocessConfig(impute="mean"), [])
    assert np.isfinite(prepared.recipe["imputed_values"]["x"])
    assert np.isfinite(prepared.model_input.to_numpy(dtype=np.float64)).all()


def test_a_computed_column_of_narrow_spread_is_dropped_unless_the_config_names_it():
    rng = np.random.default_rng(5)
    n = 2000
    # every customer joined within three months, 500 days ago: tenure only tells the join month
    tenure = rng.integers(455, 545, n).astype(float)
    recency = np.minimum(rng.exponential(300, n), tenure)
    frequency = np.where(rng.random(n) < 0.97, 1, rng.integers(2, 9, n)).astype(float)  # most buy once
    table = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency_days": recency,
            "frequency": frequency,
            "monetary": rng.lognormal(3.5, 1.0, n),
            "tenure_days": tenure,
        }
    )
    rfm = ["recency_days", "frequency", "monetary", "tenure_days"]
    prepared = prepare_features(table, FeaturesConfig(), PreprocessConfig(), rfm)
    assert prepared.recipe["nearly_constant_columns_dropped"] == ["tenure_days"]
    assert prepared.numeric_columns == ["recency_days", "frequency", "monetary"]
    assert "tenure_days" not in prepared.model_input and "tenure_days" not in prepared.readable

    named = prepare_features(table, FeaturesConfig(numeric=["tenure_days"]), PreprocessConfig(), rfm)
    assert named.recipe["nearly_constant_columns_dropped"] == []
    assert "tenure_days" in named.numeric_columns

    joined_over_years = table.assign(tenure_days=rng.integers(30, 1500, n).astype(float))
    spread = prepare_features(joined_over_years, FeaturesConfig(), PreprocessConfig(), rfm)
    assert spread.recipe["nearly_constant_columns_dropped"] == []
