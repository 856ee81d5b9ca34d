"""Scale: put every model column on a comparable scale before clustering.

Numeric columns are scaled by the configured scaler. The indicator columns of one categorical
feature are then weighted together so that the feature as a whole carries the variance of one
average numeric column: unweighted, a handful of 0/1 columns outweighs every numeric feature and
the segments become one per category.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.timing import timed

# what each scaler's `transform` reads, so a saved scaling is arrays, not an estimator object
SCALER_STATE = {
    "minmax": ("min_", "scale_"),
    "standard": ("mean_", "scale_"),
    "robust": ("center_", "scale_"),
}
# below this, a sum of squares of any number of rows a machine can hold stays finite (1e100^2 x 1e100)
SAFE_MAGNITUDE = 1e100


def scaler_classes() -> dict[str, type]:
    """The scalers by config name."""
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    return {"minmax": MinMaxScaler, "standard": StandardScaler, "robust": RobustScaler}


@dataclass
class FittedScaling:
    """The fitted scaler and category weights, kept to scale new customers the same way."""

    scaler: object
    columns: list[str]
    column_weights: dict[str, float] = field(default_factory=dict)
    # a power of two per column that brings its values within [-2, 2] before the scaler: sums of
    # squares of values near the float limit overflow to infinity (and the standard scaler then
    # gives NaN); dividing by a power of two is exact and changes no scaler's output
    magnitudes: np.ndarray | None = None

    def transform(self, model_input: pd.DataFrame) -> np.ndarray:
        values = model_input[self.columns].to_numpy(dtype=np.float64)
        if self.magnitudes is not None:
            values = values / self.magnitudes
        return self.weighted(self.scaler.transform(values))

    def weighted(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled values with the category weights applied (in place)."""
        weights = np.array([self.column_weights.get(c, 1.0) for c in self.columns])
        return np.multiply(scaled, weights, out=np.ascontiguousarray(scaled, dtype=np.float64))

    def saved(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Settings (scaler kind, columns, category weights) and arrays (the scaler's state, magnitudes)."""
        kind = next(name for name, scaler in scaler_classes().items() if type(self.scaler) is scaler)
        arrays = {name: getattr(self.scaler, name) for name in SCALER_STATE[kind]}
        if self.magnitudes is not None:
            arrays["magnitudes"] = self.magnitudes
        return {"scaler": kind, "columns": self.columns, "column_weights": self.column_weights}, arrays

    @classmethod
    def from_saved(cls, settings: dict, arrays: dict[str, np.ndarray]) -> FittedScaling:
        """The scaling `saved` describes, its scaler rebuilt with the fitted state its transform reads."""
        scaler = scaler_classes()[settings["scaler"]]()
        for name in SCALER_STATE[settings["scaler"]]:
            setattr(scaler, name, arrays[name])
        scaler.n_features_in_ = len(settings["columns"])
        return cls(
            scaler, list(settings["columns"]), dict(settings["column_weights"]), arrays.get("magnitudes")
        )


def category_weights(matrix: np.ndarray, columns: list[str], categorical: list[str]) -> dict[str, float]:
    """Per indicator column: the weight that gives its categorical feature one column's variance."""
    variances = matrix.var(axis=0)
    blocks = {name: [i for i, c in enumerate(columns) if c.startswith(f"{name}=")] for name in categorical}
    in_blocks = {i for members in blocks.values() for i in members}
    numeric = [i for i in range(len(columns)) if i not in in_blocks]
    target = float(variances[numeric].mean()) if numeric else 1.0
    weights = {}
    for members in blocks.values():
        block_variance = float(variances[members].sum()) if members else 0.0
        if block_variance > 0:
            weight = float(np.sqrt(target / block_variance))
            weights.update({columns[i]: weight for i in members})
    return weights


def fit_scaling(
    model_input: pd.DataFrame, kind: str, categorical: list[str]
) -> tuple[FittedScaling, np.ndarray]:
    """The fitted scaling and the model input scaled by it (scaled once, not fitted then redone)."""
    scaler = scaler_classes()[kind]()
    columns = list(model_input.columns)
    values = model_input.to_numpy(dtype=np.float64)
    largest = np.maximum(values.max(axis=0), -values.min(axis=0)) if len(values) else np.zeros(len(columns))
    magnitudes = None
    if largest.max(initial=0.0) > SAFE_MAGNITUDE:  # only then is a copy divided down worth its cost
        magnitudes = np.ldexp(1.0, np.frexp(largest)[1] - 1)
        values = values / magnitudes
    scaled = scaler.fit_transform(values)
    scaling = FittedScaling(scaler, columns, category_weights(scaled, columns, categorical), magnitudes)
    return scaling, scaling.weighted(scaled)


@task(name="scale", cache_policy=NO_CACHE)
@timed
def scale_task(
    model_input: pd.DataFrame, kind: str, categorical: list[str]
) -> tuple[np.ndarray, FittedScaling]:
    scaling, matrix = fit_scaling(model_input, kind, categorical)
    get_run_logger().info(
        "scale: %s scaler on a %d x %d matrix; category weights %s",
        kind,
        *matrix.shape,
        sorted(set(round(w, 3) for w in scaling.column_weights.values())),
    )
    return matrix, scaling
