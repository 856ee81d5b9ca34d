"""The registry: one entry per algorithm, each answering the same questions.

An entry says which candidates to fit (the k of the search range, or a density method's scales),
how to fit them, which config fields it reads, which validity measure judges it, and optionally how
to refit all rows from the sample's fit. Adding an algorithm is one entry here and its fit function
in its family's module.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
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
from segflow.clustering.hierarchical import (
    agglomerative_refits_ahead,
    fit_agglomerative,
    fit_birch,
    fit_diana,
)
from segflow.clustering.partitioning import fit_clara, fit_kmeans, fit_kmedoids, refit_kmeans
from segflow.clustering.rfm_map import fit_rfm_map, refit_rfm_map
from segflow.config import ClusteringConfig
from segflow.rfm import RfmMap

Family = Literal["partitioning", "hierarchical", "density", "map"]
Key = int | float | None  # a candidate: k, a density method's scale, or None (the map)
FitFunction = Callable[[np.ndarray, list[Key], dict, int], dict[Key, Fit]]
RefitFunction = Callable[[np.ndarray, Fit, dict, int], Fit]
CandidatesFunction = Callable[[np.ndarray, dict], list[Key]]
RefitsAheadFunction = Callable[[list[np.ndarray], dict], AbstractContextManager[None]]


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: its candidates, how to fit them, which config fields it reads.

    `fit(rows, candidates, settings, seed)` returns one Fit per candidate it could fit.
    `candidates(rows, config)`: for the algorithms that take k, the k of the search range; for the
    others `candidates_of(rows, settings)`: a density method's scales, the map's one fit.
    `refit(matrix, sample_fit, settings, seed)` fits all rows starting from the sample's fit;
    without it, the sample fit is kept and the other rows are assigned by its rule.
    `refits_ahead(subsamples, settings)`: a context in which its stability refits of these rows
    start on another core as the search starts, to be ready when it checks stability.
    """

    name: str
    family: Family
    takes_k: bool
    params: tuple[str, ...]
    fit: FitFunction
    refit: RefitFunction | None = None
    candidates_of: CandidatesFunction | None = None
    refits_ahead: RefitsAheadFunction | None = None

    @property
    def measure(self) -> str:
        """The validity measure that judges this algorithm: DBCV for density methods, whose clusters
        may be any shape, silhouette for the others."""
        return "dbcv" if self.family == "density" else "silhouette"

    def settings(self, config: ClusteringConfig, rfm: RfmMap | None = None) -> dict:
        """The config fields it reads; a map also reads the RFM map fitted on the matrix (None without
        RFM features)."""
        settings = {name: getattr(config, name) for name in self.params}
        return {**settings, "rfm": rfm} if self.family == "map" else settings

    def candidates(self, rows: np.ndarray, config: ClusteringConfig) -> list[Key]:
        """What the search fits: each k of the range, or what `candidates_of` says."""
        if self.candidates_of is not None:
            return self.candidates_of(rows, self.settings(config))
        low, high = config.k
        return list(range(low, min(high, len(rows) - 1) + 1))


def only_the_map(rows: np.ndarray, settings: dict) -> list[None]:
    """The RFM map has nothing to search: one fit."""
    return [None]


ALGORITHMS: dict[str, Algorithm] = {
    entry.name: entry
    for entry in (
        Algorithm("kmeans", "partitioning", True, ("mini_batch_above",), fit_kmeans, refit_kmeans),
        Algorithm("kmedoids", "partitioning", True, (), fit_kmedoids),
        Algorithm("clarans", "partitioning", True, ("clara_draws", "clara_sample_size"), fit_clara),
        Algorithm("birch", "hierarchical", True, ("birch_threshold",), fit_birch),
        Algorithm(
            "agglomerative",
            "hierarchical",
            True,
            ("linkage",),
            fit_agglomerative,
            refits_ahead=agglomerative_refits_ahead,
        ),
        Algorithm("diana", "hierarchical", True, (), fit_diana),
        Algorithm(
            "hdbscan", "density", False, DENSITY_PARAMS, fit_hdbscan, candidates_of=cluster_size_scales
        ),
        Algorithm("dbscan", "density", False, ("eps", *DENSITY_PARAMS), fit_dbscan, candidates_of=eps_scales),
        Algorithm(
            "optics",
            "density",
            False,
            ("eps", *DENSITY_PARAMS, "xi"),
            fit_optics,
            candidates_of=eps_scales,
        ),
        # the fixed RFM map: the baseline of every run with RFM features, never an `auto` candidate
        Algorithm("rfm", "map", False, (), fit_rfm_map, refit_rfm_map, candidates_of=only_the_map),
    )
}
RFM_MAP_ALGORITHM = "rfm"
# `auto` prefers, among results that score as well, the one listed first (the simplest model)
SIMPLICITY = {name: rank for rank, name in enumerate(ALGORITHMS)}
