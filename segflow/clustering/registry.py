"""The registry: one entry per algorithm, each answering the same questions.

An entry says how to fit (for the algorithms that take k, once per candidate k), which config
fields it reads, whether it takes k, and optionally how to refit all rows from the sample's fit.
Adding an algorithm is one entry here and its fit function in its family's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from segflow.clustering.assignment import Fit
from segflow.clustering.density import DENSITY_PARAMS, fit_dbscan, fit_hdbscan, fit_optics
from segflow.clustering.hierarchical import fit_agglomerative, fit_birch, fit_diana
from segflow.clustering.partitioning import fit_clara, fit_kmeans, fit_kmedoids, refit_kmeans
from segflow.clustering.rfm_map import fit_rfm_map, refit_rfm_map
from segflow.config import ClusteringConfig
from segflow.rfm import RfmMap

Family = Literal["partitioning", "hierarchical", "density", "map"]
FitFunction = Callable[[np.ndarray, list[int] | None, dict, int], dict[int | None, Fit]]
RefitFunction = Callable[[np.ndarray, Fit, dict, int], Fit]


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: how to fit, which config fields it reads, and whether it takes k.

    `fit(rows, ks, settings, seed)` returns one Fit per k (key None when it does not take k).
    `refit(matrix, sample_fit, settings, seed)` fits all rows starting from the sample's fit;
    without it, the sample fit is kept and the other rows are assigned by its rule.
    """

    name: str
    family: Family
    takes_k: bool
    params: tuple[str, ...]
    fit: FitFunction
    refit: RefitFunction | None = None

    def settings(self, config: ClusteringConfig, rfm: RfmMap | None = None) -> dict:
        """The config fields it reads; a map also reads the RFM map fitted on the matrix (None without
        RFM features)."""
        settings = {name: getattr(config, name) for name in self.params}
        return {**settings, "rfm": rfm} if self.family == "map" else settings


ALGORITHMS: dict[str, Algorithm] = {
    entry.name: entry
    for entry in (
        Algorithm("kmeans", "partitioning", True, ("mini_batch_above",), fit_kmeans, refit_kmeans),
        Algorithm("kmedoids", "partitioning", True, (), fit_kmedoids),
        Algorithm("clarans", "partitioning", True, ("clara_draws", "clara_sample_size"), fit_clara),
        Algorithm("birch", "hierarchical", True, ("birch_threshold",), fit_birch),
        Algorithm("agglomerative", "hierarchical", True, ("linkage",), fit_agglomerative),
        Algorithm("diana", "hierarchical", True, (), fit_diana),
        Algorithm("hdbscan", "density", False, DENSITY_PARAMS, fit_hdbscan),
        Algorithm("dbscan", "density", False, ("eps", *DENSITY_PARAMS), fit_dbscan),
        Algorithm("optics", "density", False, ("eps", *DENSITY_PARAMS, "xi"), fit_optics),
        # the fixed RFM map: the baseline of every run with RFM features, never an `auto` candidate
        Algorithm("rfm", "map", False, (), fit_rfm_map, refit_rfm_map),
    )
}
RFM_MAP_ALGORITHM = "rfm"
# `auto` prefers, among results that score as well, the one listed first (the simplest model)
SIMPLICITY = {name: rank for rank, name in enumerate(ALGORITHMS)}
