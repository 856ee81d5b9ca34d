"""The registry: one entry per algorithm, each answering the same questions.

An entry says which candidates to fit (the k of the search range, or a density method's scales),
how to fit them, which config fields it reads, which validity measure judges it, and optionally how
to refit all rows from the sample's fit. Adding an algorithm is one entry here and its fit function
in its family's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from segflow.clustering.assignment import Fit
from segflow.clustering.density import (
    DENSITY_PARAMS,
    cluster_size_scales,
    eps_scales,
    fit_dbscan,
    fit_hdbscan,
    fit_optics,
)
from segflow.clustering.hierarchical import fit_agglomerative, fit_birch, fit_diana
from segflow.clustering.partitioning import fit_clara, fit_kmeans, fit_kmedoids, refit_kmeans
from segflow.config import ClusteringConfig

Family = Literal["partitioning", "hierarchical", "density"]
Key = int | float  # a candidate: k, or a density method's scale
FitFunction = Callable[[np.ndarray, list[Key], dict, int], dict[Key, Fit]]
RefitFunction = Callable[[np.ndarray, Fit, dict, int], Fit]
CandidatesFunction = Callable[[np.ndarray, dict], list[Key]]


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: its candidates, how to fit them, which config fields it reads.

    `fit(rows, candidates, settings, seed)` returns one Fit per candidate it could fit.
    `candidates(rows, settings)`: for the algorithms that take k, the k of the search range;
    for density methods, the scales of their derived parameter.
    `refit(matrix, sample_fit, settings, seed)` fits all rows starting from the sample's fit;
    without it, the sample fit is kept and the other rows are assigned by its rule.
    """

    name: str
    family: Family
    takes_k: bool
    params: tuple[str, ...]
    fit: FitFunction
    refit: RefitFunction | None = None
    density_candidates: CandidatesFunction | None = None

    @property
    def measure(self) -> str:
        """The validity measure that judges this algorithm: DBCV for density methods, whose clusters
        may be any shape, silhouette for the others."""
        return "dbcv" if self.family == "density" else "silhouette"

    def settings(self, config: ClusteringConfig) -> dict:
        return {name: getattr(config, name) for name in self.params}

    def candidates(self, rows: np.ndarray, config: ClusteringConfig) -> list[Key]:
        if self.density_candidates is not None:
            return self.density_candidates(rows, self.settings(config))
        low, high = config.k
        return list(range(low, min(high, len(rows) - 1) + 1))


ALGORITHMS: dict[str, Algorithm] = {
    entry.name: entry
    for entry in (
        Algorithm("kmeans", "partitioning", True, ("mini_batch_above",), fit_kmeans, refit_kmeans),
        Algorithm("kmedoids", "partitioning", True, (), fit_kmedoids),
        Algorithm("clarans", "partitioning", True, ("clara_draws", "clara_sample_size"), fit_clara),
        Algorithm("birch", "hierarchical", True, ("birch_threshold",), fit_birch),
        Algorithm("agglomerative", "hierarchical", True, ("linkage",), fit_agglomerative),
        Algorithm("diana", "hierarchical", True, (), fit_diana),
        Algorithm(
            "hdbscan", "density", False, DENSITY_PARAMS, fit_hdbscan, density_candidates=cluster_size_scales
        ),
        Algorithm(
            "dbscan", "density", False, ("eps", *DENSITY_PARAMS), fit_dbscan, density_candidates=eps_scales
        ),
        Algorithm(
            "optics",
            "density",
            False,
            ("eps", *DENSITY_PARAMS, "xi"),
            fit_optics,
            density_candidates=eps_scales,
        ),
    )
}
# `auto` prefers, among results that score as well, the one listed first (the simplest model)
SIMPLICITY = {name: rank for rank, name in enumerate(ALGORITHMS)}
