"""Partitioning algorithms: k-means, k-medoids (FasterPAM) and CLARA.

`clarans` is CLARA with FasterPAM (Schubert & Rousseeuw 2021, "FasterCLARA"), not true
CLARANS: CLARANS is a sequential randomised swap search whose cost is a Python loop over
neighbour evaluations, while CLARA runs the compiled FasterPAM on several small draws from the
fit sample (each later draw includes the best medoids so far, as in Kaufman & Rousseeuw) and
keeps the medoid set with the lowest total distance over the whole fit sample. Schubert &
Rousseeuw found FasterCLARA reaches lower cost than CLARANS in less time.
"""

from __future__ import annotations

import numpy as np

from segflow.clustering.assignment import DISTANCE_BLOCK_ROWS, Fit, NearestCentre

# k-means++ restarts on the fit sample; the full-data refit starts from the best of them
KMEANS_RESTARTS = 4


def fit_kmeans(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    return {k: _kmeans(rows, k, KMEANS_RESTARTS, "k-means++", settings, seed) for k in ks}


def refit_kmeans(matrix: np.ndarray, sample_fit: Fit, settings: dict, seed: int) -> Fit:
    centres = sample_fit.rule.centres
    return _kmeans(matrix, len(centres), 1, centres, settings, seed)


def _kmeans(rows, k, n_init, init, settings, seed) -> Fit:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    mini_batch = len(rows) > settings["mini_batch_above"]
    kind = MiniBatchKMeans if mini_batch else KMeans
    estimator = kind(n_clusters=k, init=init, n_init=n_init, random_state=seed).fit(rows)
    return Fit(
        estimator.labels_.astype(np.int64),
        # k-means' predict is the nearest centre (equal labels on 2.4M rows checked against predict)
        NearestCentre(estimator.cluster_centers_, "k-means predict (nearest centre)"),
        {"k": k, "estimator": kind.__name__},
    )


def fit_kmedoids(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    import kmedoids
    from scipy.spatial.distance import pdist, squareform

    dissimilarity = squareform(pdist(rows)).astype(np.float32)
    fits = {}
    for k in ks:
        result = kmedoids.fasterpam(dissimilarity, k, random_state=seed, n_cpu=1)
        fits[k] = _medoid_fit(rows, np.asarray(result.medoids, dtype=np.int64), {"k": k})
    return fits


def fit_clara(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    import kmedoids
    from scipy.spatial.distance import pdist, squareform

    draw_size = min(len(rows), settings["clara_sample_size"])
    fits = {}
    for k in ks:
        rng = np.random.default_rng([seed, k])
        best_medoids, best_cost = np.empty(0, dtype=np.int64), np.inf
        for _ in range(settings["clara_draws"]):
            others = np.setdiff1d(np.arange(len(rows)), best_medoids)
            draw = np.concatenate(
                [best_medoids, rng.choice(others, draw_size - len(best_medoids), replace=False)]
            )
            dissimilarity = squareform(pdist(rows[draw])).astype(np.float32)
            result = kmedoids.fasterpam(dissimilarity, k, random_state=seed, n_cpu=1)
            medoids = draw[np.asarray(result.medoids, dtype=np.int64)]
            cost = _nearest_distances(rows, rows[medoids]).sum()
            if cost < best_cost:
                best_medoids, best_cost = np.sort(medoids), cost
        params = {"k": k, "draws": settings["clara_draws"], "draw_size": draw_size}
        fits[k] = _medoid_fit(rows, best_medoids, params)
    return fits


def _medoid_fit(rows: np.ndarray, medoids: np.ndarray, params: dict) -> Fit:
    rule = NearestCentre(rows[medoids], "nearest medoid")
    return Fit(rule(rows), rule, params, medoids=medoids)


def _nearest_distances(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return np.concatenate(
        [
            cdist(rows[start : start + DISTANCE_BLOCK_ROWS], centres).min(axis=1)
            for start in range(0, len(rows), DISTANCE_BLOCK_ROWS)
        ]
    )
