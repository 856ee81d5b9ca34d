"""Density algorithms: DBSCAN, HDBSCAN and OPTICS, which leave sparse rows as noise.

Defaults: min_samples = 2 x features; eps = the knee of the sorted k-distance curve of the fit
sample; min_cluster_size = `min_segment_share` of the fit sample (clusters smaller than that are
noise, for DBSCAN and OPTICS too). OPTICS cuts its reachability plot at that eps unless `xi` is
set (xi steep-area extraction fragmented moons and circles in our trials). `hdbscan` is imported
only when HDBSCAN runs (importing it costs about a second), scikit-learn only when a method runs.

A density method finds its own number of clusters. Unless eps or min_cluster_size is configured,
each is fitted at a few scales of its default (the candidates, as k is for the others), so that
the choice can keep one whose number of segments lies within [min_segments, max_segments];
clusters beyond max_segments are merged by the search (`merged_to`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from segflow.clustering.assignment import Deferred, Fit, HdbscanApproximatePredict, NearestReferenceWithin
from segflow.tables import NOISE_LABEL

DENSITY_PARAMS = ("min_samples", "min_cluster_size", "min_segment_share")
# the scales each density method is fitted at when its parameter is derived from the data
EPS_SCALES = (0.5, 0.75, 1.0, 1.5)  # of the k-distance knee (DBSCAN, OPTICS)
CLUSTER_SIZE_SCALES = (1, 2, 4, 8)  # of the default min_cluster_size (HDBSCAN)


def eps_scales(rows: np.ndarray, settings: dict) -> list[float]:
    """DBSCAN's and OPTICS' candidates: scales of the knee eps, or the configured eps alone."""
    return [1.0] if settings["eps"] or settings.get("xi") else list(EPS_SCALES)


def cluster_size_scales(rows: np.ndarray, settings: dict) -> list[int]:
    """HDBSCAN's candidates: multiples of the default min_cluster_size, or the configured one alone."""
    return [1] if settings["min_cluster_size"] else list(CLUSTER_SIZE_SCALES)


def fit_dbscan(rows: np.ndarray, scales: list[float], settings: dict, seed: int) -> dict[float, Fit]:
    from sklearn.cluster import DBSCAN

    min_samples, knee, eps_from = _density_scale(rows, settings)
    min_cluster_size = _min_cluster_size(rows, settings)
    fits = {}
    for scale in scales:
        eps = knee * scale
        estimator = DBSCAN(eps=eps, min_samples=min_samples).fit(rows)
        labels = without_small_clusters(estimator.labels_, min_cluster_size)
        core = estimator.core_sample_indices_
        core = core[labels[core] >= 0]
        rule = NearestReferenceWithin(
            rows[core], labels[core], np.full(len(core), eps), "nearest core point within eps"
        )
        params = {
            "eps": eps,
            "eps_from": eps_from if scale == 1.0 else f"{scale:g} x {eps_from}",
            "min_samples": min_samples,
            "min_cluster_size": min_cluster_size,
        }
        fits[scale] = Fit(labels, rule, params)
    return fits


def without_small_clusters(labels: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Clusters with fewer than min_cluster_size members become noise; the rest are renumbered 0..m-1.

    An eps cut keeps any pocket of min_samples dense rows as a cluster (a few dozen customers
    of 20,000 on the demo); HDBSCAN and OPTICS' xi extraction drop such pockets by
    min_cluster_size, and so does this, for DBSCAN and OPTICS' eps cut.
    """
    labels = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(labels[labels >= 0], minlength=1)
    kept = np.flatnonzero(sizes >= min_cluster_size)
    renumber = np.full(len(sizes), NOISE_LABEL, dtype=np.int64)
    renumber[kept] = np.arange(len(kept))
    return np.where(labels >= 0, renumber[np.maximum(labels, 0)], NOISE_LABEL)


def _density_scale(rows: np.ndarray, settings: dict) -> tuple[int, float, str]:
    """min_samples (default 2 x features, after Sander et al.) and eps (default: the k-distance knee)."""
    min_samples = settings["min_samples"] or 2 * rows.shape[1]
    if settings["eps"]:
        return min_samples, float(settings["eps"]), "config"
    return min_samples, knee_eps(rows, min_samples), "k-distance knee"


def knee_eps(rows: np.ndarray, min_samples: int) -> float:
    """eps at the knee of the sorted k-distance curve (distance to the min_samples-th row, itself included).

    The knee is the point farthest below the chord of the curve rescaled to the unit square.
    """
    from scipy.spatial import cKDTree

    n_neighbours = min(min_samples, len(rows))
    distance, _ = cKDTree(rows).query(rows, k=n_neighbours, workers=-1)
    curve = np.sort(distance.reshape(len(rows), -1)[:, -1])
    spread = curve[-1] - curve[0]
    if spread <= 0:
        return max(float(curve[-1]), np.finfo(np.float64).tiny)
    below_chord = np.linspace(0.0, 1.0, len(curve)) - (curve - curve[0]) / spread
    return float(curve[int(np.argmax(below_chord))])


def fit_hdbscan(rows: np.ndarray, scales: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    """HDBSCAN at each scale of min_cluster_size. The scales share one minimum spanning tree (the
    library's joblib cache, in a folder of this call), and each candidate's prediction data (about a
    second) is made only if its rule is used."""
    import tempfile

    import hdbscan
    from joblib import Memory

    base_size = _min_cluster_size(rows, settings)
    min_samples = settings["min_samples"] or 2 * rows.shape[1]
    fits = {}
    with tempfile.TemporaryDirectory(prefix="segflow-hdbscan-") as cache:
        for scale in scales:
            min_cluster_size = min(base_size * scale, max(5, len(rows) // 2))
            clusterer = hdbscan.HDBSCAN(
                min_cluster_size=min_cluster_size, min_samples=min_samples, memory=Memory(cache, verbose=0)
            ).fit(rows)
            clusterer.memory = None  # the cache folder is gone after this call
            params = {"min_cluster_size": min_cluster_size, "min_samples": min_samples}
            rule = Deferred(partial(_predicting, clusterer))
            fits[scale] = Fit(clusterer.labels_.astype(np.int64), rule, params)
    return fits


def _predicting(clusterer) -> HdbscanApproximatePredict:
    clusterer.generate_prediction_data()
    return HdbscanApproximatePredict.of(clusterer)


def fit_optics(rows: np.ndarray, scales: list[float], settings: dict, seed: int) -> dict[float, Fit]:
    """OPTICS ordering, computed once; clusters cut from the reachability plot at eps (each scale of
    it), or by xi steep areas if xi is set.

    The xi extraction is fragile with default settings (ARI 0.01-0.9 on moons/circles with noise
    at xi=0.05, depending on min_samples and min_cluster_size), hence the eps cut by default.
    """
    from sklearn import config_context
    from sklearn.cluster import OPTICS, cluster_optics_dbscan

    min_samples, knee, eps_from = _density_scale(rows, settings)
    min_cluster_size = _min_cluster_size(rows, settings)
    if settings["xi"] is None:
        options = {"cluster_method": "dbscan", "eps": knee * max(scales)}
    else:
        options = {"cluster_method": "xi", "xi": settings["xi"], "min_cluster_size": min_cluster_size}
    # OPTICS validates its inputs again for every row it expands; the rows are already checked.
    with config_context(assume_finite=True, skip_parameter_validation=True):
        estimator = OPTICS(min_samples=min_samples, **options).fit(rows)
    fits = {}
    for scale in scales:
        if settings["xi"] is None:
            eps = knee * scale
            found = cluster_optics_dbscan(
                reachability=estimator.reachability_,
                core_distances=estimator.core_distances_,
                ordering=estimator.ordering_,
                eps=eps,
            )
            params = {"extraction": "reachability cut at eps", "eps": eps, "eps_from": eps_from}
        else:
            found, params = estimator.labels_, {"extraction": "xi", "xi": settings["xi"]}
        labels = without_small_clusters(found, min_cluster_size)
        fits[scale] = _optics_fit(
            rows,
            estimator,
            labels,
            {"min_samples": min_samples, "min_cluster_size": min_cluster_size, **params},
        )
    return fits


def _optics_fit(rows: np.ndarray, estimator: Any, labels: np.ndarray, params: dict) -> Fit:
    """An OPTICS clustering's fit: its labels and the rule that reaches new rows from its members."""
    # A cluster's reach is the largest reachability inside it (its first point's reachability is
    # the jump into the cluster, so it does not count). A member reaches a new row if both its
    # core distance and its distance to the row are within its cluster's reach.
    reach = np.zeros(labels.max() + 1)
    ordered = labels[estimator.ordering_]
    ordered_reachability = estimator.reachability_[estimator.ordering_]
    for label in range(len(reach)):
        inside = ordered_reachability[ordered == label][1:]
        finite = inside[np.isfinite(inside)]
        reach[label] = finite.max() if len(finite) else 0.0
    in_cluster = np.flatnonzero(labels >= 0)
    members = in_cluster[estimator.core_distances_[in_cluster] <= reach[labels[in_cluster]]]
    rule = NearestReferenceWithin(
        rows[members],
        labels[members],
        reach[labels[members]],
        "nearest cluster member within the cluster's reachability",
    )
    return Fit(labels, rule, params)


def _min_cluster_size(rows: np.ndarray, settings: dict) -> int:
    """Configured, or the smallest usable segment's share (min_segment_share) of the fit rows."""
    return settings["min_cluster_size"] or max(5, math.ceil(settings["min_segment_share"] * len(rows)))
