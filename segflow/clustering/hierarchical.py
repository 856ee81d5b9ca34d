"""Hierarchical algorithms: BIRCH (with a size-weighted Ward global step), agglomerative and DIANA.

Each cuts one hierarchy at every k searched; rows beyond the fit go to the nearest subcluster
(BIRCH) or segment centre.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import numpy as np

from segflow.clustering.assignment import Fit, NearestCentre, segment_centres
from segflow.clustering.diana import diana
from segflow.clustering.linkages import linkage, linkages_ahead

# Birch's automatic threshold: the median radius of the neighbourhood holding this share of
# the fit sample. Measured when Birch still fitted all 1M x 10 rows: 0.5% gave ~150-5,500
# subclusters and 16-37 s, 2% gave 12-1,300 and 9-19 s; 1% keeps the CF tree fine-grained.
BIRCH_NEIGHBOURHOOD_SHARE = 0.01


def fit_birch(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    """BIRCH: a CF tree of the rows, then Ward's agglomeration of its subclusters weighted by their
    sizes (the paper's global phase). scikit-learn's global step weighs a subcluster of one outlier
    like one of hundreds of rows: on the demo it split off 3% and 1% groups and its k=2 changed
    from one subsample to the next (stability -0.01); weighted, it agrees with agglomerative.
    """
    from sklearn.cluster import Birch

    threshold = settings["birch_threshold"] or birch_threshold(rows)
    tree = Birch(threshold=threshold, n_clusters=None).fit(rows)
    subcluster = tree.predict(rows)
    sizes = np.bincount(subcluster, minlength=len(tree.subcluster_centers_))
    used = np.flatnonzero(sizes)
    merges = weighted_ward(tree.subcluster_centers_[used], sizes[used])
    own = np.full(len(sizes), -1, dtype=np.int64)
    own[used] = np.arange(len(used))
    params = {"threshold": float(threshold), "n_subclusters": len(used)}
    fits = {}
    for k in (k for k in ks if k <= len(used)):
        labels = cut_linkage(merges, k)
        rule = NearestCentre(tree.subcluster_centers_[used], "nearest BIRCH subcluster", labels)
        fits[k] = Fit(labels[own[subcluster]], rule, {"k": k, **params})
    return fits


def weighted_ward(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Ward's agglomeration of points that stand for `weights` rows each, as a scipy linkage matrix.

    Merging clusters a and b costs w_a w_b / (w_a + w_b) |c_a - c_b|^2 (the rise in the sum of
    squares); heights are sqrt(2 x cost), so unit weights give scipy's ward linkage. Each
    cluster keeps its cheapest partner, so a merge rescans only the rows that pointed at the
    merged pair: about O(m^2) for m points instead of O(m^3).
    """
    n_points = len(points)
    centres = np.array(points, dtype=np.float64)
    sizes = np.array(weights, dtype=np.float64)
    node = np.arange(n_points)
    leaves = np.ones(n_points)
    active = np.ones(n_points, dtype=bool)

    def costs(row: int) -> np.ndarray:
        cost = sizes * sizes[row] / (sizes + sizes[row]) * ((centres - centres[row]) ** 2).sum(axis=1)
        cost[~active] = np.inf
        cost[row] = np.inf
        return cost

    partner = np.zeros(n_points, dtype=np.int64)
    best = np.full(n_points, np.inf)
    for row in range(n_points):
        cost = costs(row)
        partner[row], best[row] = int(np.argmin(cost)), cost.min(initial=np.inf)
    merges = np.empty((max(n_points - 1, 0), 4))
    for step in range(n_points - 1):
        a = int(np.argmin(best))
        b = int(partner[a])
        merges[step] = [
            min(node[a], node[b]),
            max(node[a], node[b]),
            np.sqrt(2 * best[a]),
            leaves[a] + leaves[b],
        ]
        centres[a] = (sizes[a] * centres[a] + sizes[b] * centres[b]) / (sizes[a] + sizes[b])
        sizes[a] += sizes[b]
        leaves[a] += leaves[b]
        node[a] = n_points + step
        active[b], best[b] = False, np.inf
        cost_to_a = costs(a)
        partner[a], best[a] = int(np.argmin(cost_to_a)), cost_to_a.min(initial=np.inf)
        for row in np.flatnonzero(active & ((partner == a) | (partner == b))):
            if row != a:
                cost = costs(row)
                partner[row], best[row] = int(np.argmin(cost)), cost.min(initial=np.inf)
        closer = active & (cost_to_a < best)
        partner[closer], best[closer] = a, cost_to_a[closer]
    return merges


def birch_threshold(rows: np.ndarray) -> float:
    """Median radius of the neighbourhood that holds BIRCH_NEIGHBOURHOOD_SHARE of the rows."""
    from scipy.spatial import cKDTree

    n_neighbours = min(len(rows), max(2, math.ceil(BIRCH_NEIGHBOURHOOD_SHARE * len(rows))) + 1)
    distance, _ = cKDTree(rows).query(rows, k=n_neighbours, workers=-1)
    return max(float(np.median(distance[:, -1])), np.finfo(np.float64).tiny)


def fit_agglomerative(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    merges = linkage(rows, settings["linkage"])
    dendrogram = {"linkage": merges, "leaves": "fit-sample rows"}
    params = {"linkage": settings["linkage"]}
    return {k: _hierarchy_fit(rows, cut_linkage(merges, k), {"k": k, **params}, dendrogram) for k in ks}


def agglomerative_refits_ahead(subsamples: list[np.ndarray], settings: dict) -> AbstractContextManager[None]:
    """The linkages of agglomerative's stability refits, computed ahead on an idle core (`linkages`)."""
    return linkages_ahead(subsamples, settings["linkage"])


def fit_diana(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    from scipy.spatial.distance import pdist, squareform

    hierarchy = diana(squareform(pdist(rows)), max(ks))
    dendrogram = {
        "linkage": hierarchy.linkage(),
        "leaves": f"DIANA clusters at k={hierarchy.max_clusters}",
        "leaf_sizes": np.bincount(hierarchy.labels(hierarchy.max_clusters)).tolist(),
    }
    return {
        k: _hierarchy_fit(rows, hierarchy.labels(k), {"k": k}, dendrogram)
        for k in ks
        if k <= hierarchy.max_clusters
    }


def _hierarchy_fit(rows: np.ndarray, labels: np.ndarray, params: dict, dendrogram: dict) -> Fit:
    rule = NearestCentre(segment_centres(rows, labels, labels.max() + 1), "nearest segment centre")
    return Fit(labels, rule, params, dendrogram=dendrogram)


def cut_linkage(merges: np.ndarray, n_clusters: int) -> np.ndarray:
    """Labels 0..n_clusters-1 of the leaves after undoing the last n_clusters - 1 merges."""
    n_leaves = len(merges) + 1
    root = np.arange(2 * n_leaves - 1)
    pairs = merges[: n_leaves - n_clusters, :2].astype(np.int64)
    for merge in range(len(pairs) - 1, -1, -1):
        root[pairs[merge]] = root[n_leaves + merge]
    _, labels = np.unique(root[:n_leaves], return_inverse=True)
    return labels.astype(np.int64)
