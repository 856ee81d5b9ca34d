"""Scale: put every model column on a comparable scale before clustering."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.logging import get_run_logger
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

SCALERS = {"minmax": MinMaxScaler, "standard": StandardScaler, "robust": RobustScaler}


def fit_scaler(model_input: pd.DataFrame, kind: str) -> tuple[np.ndarray, object]:
    """The scaled float64 matrix and the fitted scaler (kept for scoring new customers)."""
    scaler = SCALERS[kind]()
    matrix = scaler.fit_transform(model_input.to_numpy(dtype=np.float64))
    return np.ascontiguousarray(matrix, dtype=np.float64), scaler


@task(name="scale")
def scale_task(model_input: pd.DataFrame, kind: str) -> tuple[np.ndarray, object]:
    matrix, scaler = fit_scaler(model_input, kind)
    get_run_logger().info("scale: %s scaler on a %d x %d matrix", kind, *matrix.shape)
    return matrix, scaler
