"""The RFM map as a segmentation: each customer's segment is its cell of the classic RFM map.

Nothing is searched: the map (`segflow.rfm.RfmMap`, its edges learned on every row of the matrix)
comes in the settings, and the fit is each row's cell. Empty cells are dropped when segments are
numbered; the map has 11 named cells at most, whatever the k range or segment count bounds say.
"""

from __future__ import annotations

import numpy as np

from segflow.clustering.assignment import Fit
from segflow.errors import ConfigError
from segflow.rfm import CELL_NAMES, RfmMap


def fit_rfm_map(rows: np.ndarray, ks: None, settings: dict, seed: int) -> dict[None, Fit]:
    rfm_map = settings["rfm"]
    if rfm_map is None:
        raise ConfigError(
            "clustering.algorithm rfm needs RFM features: a transactions source and features.rfm: true"
        )
    return {None: map_fit(rfm_map, rows)}


def refit_rfm_map(matrix: np.ndarray, sample_fit: Fit, settings: dict, seed: int) -> Fit:
    return map_fit(sample_fit.rule, matrix)


def map_fit(rfm_map: RfmMap, rows: np.ndarray) -> Fit:
    """The rows' map cells as labels, the map as the rule, the cells' names as the labels' names."""
    return Fit(rfm_map(rows), rfm_map, {"map": "classic RFM map (11 cells)"}, names=CELL_NAMES)
