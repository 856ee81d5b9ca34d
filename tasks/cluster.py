"""Clustering stage: find customer segments in the scaled feature matrix.

Every algorithm is one entry of `ALGORITHMS` and answers the same questions: fit on rows (for
the algorithms that take k, once per candidate k), the labels of those rows, a rule that assigns
new rows, and medoids or a dendrogram where it has them. The driver around the registry does
the rest the same way for all of them:

- Sampling. One seeded permutation of the rows gives two nested samples: the fit sample (the
  first `fit_sample_size` rows) and the score sample (the first `sample_size` rows). Every k
  search runs on the fit sample. Algorithms with a `refit` (kmeans) then fit the chosen k on all
  rows, started from the sample's solution. The others (O(n^2) time or memory: agglomerative,
  DIANA, k-medoids, CLARA, DBSCAN, OPTICS; HDBSCAN to keep it fast; BIRCH, whose global step
  on a tree of all rows gave a different partition from the one chosen on the sample) keep
  their fit on the sample and label the remaining rows with their assignment rule; rows of the
  fit sample keep the label the fit gave them, also in `assign_segments`.
- Scoring. Silhouette (exact on the score sample, noise excluded), Calinski-Harabasz and
  Davies-Bouldin are computed on the same score sample for every candidate, so candidates are
  compared on the same rows. The sample's distance matrix is computed once and reused.
- Choosing k: among the candidates whose silhouette is within `score_margin` (absolute, in
  silhouette units) of the best, the smallest k wins; silhouette is flat across neighbouring k,
  and the argmax tends to split real segments. Candidates whose segment shares fall outside
  [`min_segment_share`, `max_segment_share`] compete only when no candidate is within them: a
  hierarchy's k=2 that splits off one outlying group often ties the real split on silhouette.
- `auto` searches each of `auto_candidates` on the same samples, drops density results that
  leave more than `max_noise_share` of the rows as noise, and among those within `score_margin`
  of the best silhouette picks the one listed first in the registry (partitioning before
  hierarchical before density: the simplest model that scores as well).
- Segments are numbered by size, largest first; -1 is noise (density methods only).
- Density defaults: min_samples = 2 x features; eps = the knee of the sorted k-distance curve
  of the fit sample; min_cluster_size = `min_segment_share` of the fit sample (clusters smaller
  than that are noise, for DBSCAN and OPTICS too). OPTICS cuts its reachability plot at that
  eps unless `xi` is set (xi steep-area extraction fragmented moons and circles in our trials).

`clarans` is CLARA with FasterPAM (Schubert & Rousseeuw 2021, "FasterCLARA"), not true
CLARANS: CLARANS is a sequential randomised swap search whose cost is a Python loop over
neighbour evaluations, while CLARA runs the compiled FasterPAM on several small draws from the
fit sample (each later draw includes the best medoids so far, as in Kaufman & Rousseeuw) and
keeps the medoid set with the lowest total distance over the whole fit sample. Schubert &
Rousseeuw found FasterCLARA reaches lower cost than CLARANS in less time.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import hdbscan
import kmedoids
import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.settings import get_current_settings
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn import config_context
from sklearn.cluster import DBSCAN, OPTICS, Birch, KMeans, MiniBatchKMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from sklearn.metrics.pairwise import pairwise_distances_argmin
from threadpoolctl import threadpool_limits

from segflow import __version__
from segflow.config import ClusteringConfig
from segflow.errors import SegflowError
from segflow.tasks.diana import diana

Family = Literal["partitioning", "hierarchical", "density"]

# k-means++ restarts on the fit sample; the full-data refit starts from the best of them
KMEANS_RESTARTS = 4
# Birch's automatic threshold: the median radius of the neighbourhood holding this share of
# the fit sample. Measured when Birch still fitted all 1M x 10 rows: 0.5% gave ~150-5,500
# subclusters and 16-37 s, 2% gave 12-1,300 and 9-19 s; 1% keeps the CF tree fine-grained.
BIRCH_NEIGHBOURHOOD_SHARE = 0.01
DISTANCE_BLOCK_ROWS = 2_048
# HDBSCAN's prediction holds 2 x min_samples neighbours per row in five arrays (~2.5 GB for 1M
# rows at min_samples 32); this many rows at a time keeps that to ~0.3 GB
PREDICT_BLOCK_ROWS = 100_000


# --------------------------------------------------------------------------- public results


@dataclass
class Segmentation:
    """A fitted segmentation of the whole matrix, with how it was found and scored."""

    algorithm: str
    params: dict
    labels: np.ndarray
    n_segments: int
    centers: np.ndarray
    exemplars: np.ndarray
    scores: dict
    k_search: list[dict]
    leaderboard: list[dict]
    sampling: dict
    dendrogram: dict | None
    model: SegmentModel


# --------------------------------------------------------------------------- assignment rules


class AssignmentRule(Protocol):
    """Labels new rows with a fit's own labels (0..m-1, -1 for noise)."""

    describe: str

    def __call__(self, matrix: np.ndarray) -> np.ndarray: ...


@dataclass
class NearestCentre:
    """Each row goes to the nearest of the given points (centres, medoids or subclusters), or to
    that point's label when the points carry labels."""

    centres: np.ndarray
    describe: str = "nearest centre"
    labels: np.ndarray | None = None

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        nearest = pairwise_distances_argmin(matrix, self.centres).astype(np.int64)
        return nearest if self.labels is None else self.labels[nearest]


@dataclass
class EstimatorPredict:
    """The fitted estimator's own predict (the same rule that produced its labels)."""

    estimator: Any
    describe: str

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return self.estimator.predict(matrix).astype(np.int64)


@dataclass
class NearestReferenceWithin:
    """Each row takes the label of its nearest reference point if within that point's radius, else noise."""

    points: np.ndarray
    labels: np.ndarray
    radius: np.ndarray
    describe: str

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        assigned = np.full(len(matrix), -1, dtype=np.int64)
        if len(self.points) == 0 or len(matrix) == 0:
            return assigned
        bound = np.nextafter(float(self.radius.max()), np.inf)
        distance, nearest = cKDTree(self.points).query(matrix, k=1, distance_upper_bound=bound, workers=-1)
        found = np.flatnonzero(np.isfinite(distance))
        within = distance[found] <= self.radius[nearest[found]]
        assigned[found[within]] = self.labels[nearest[found[within]]]
        return assigned


@dataclass
class HdbscanApproximatePredict:
    """`hdbscan.approximate_predict`, vectorised over rows (the library loops in Python per row,
    ~55 s per million rows); same neighbours, mutual reachability and walk up the condensed tree.
    Rows are taken in blocks of PREDICT_BLOCK_ROWS to bound memory.
    """

    clusterer: hdbscan.HDBSCAN
    describe: str = "hdbscan approximate_predict"

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if len(self.clusterer.prediction_data_.cluster_tree) == 0 or len(matrix) == 0:
            return np.full(len(matrix), -1, dtype=np.int64)
        return np.concatenate(
            [
                self._selected_cluster(
                    *self._nearest_by_mutual_reachability(matrix[start : start + PREDICT_BLOCK_ROWS])
                )
                for start in range(0, len(matrix), PREDICT_BLOCK_ROWS)
            ]
        )

    def _nearest_by_mutual_reachability(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the training point at the smallest mutual reachability, and 1 / that distance."""
        prediction = self.clusterer.prediction_data_
        min_samples = self.clusterer.min_samples or self.clusterer.min_cluster_size
        n_neighbours = min(2 * min_samples, len(prediction.raw_data))
        distance, neighbour = cKDTree(prediction.raw_data).query(matrix, k=n_neighbours, workers=-1)
        distance, neighbour = distance.reshape(len(matrix), -1), neighbour.reshape(len(matrix), -1)
        own_core = distance[:, min(min_samples, n_neighbours - 1)]
        reachability = np.maximum(
            np.maximum(prediction.core_distances[neighbour], own_core[:, None]), distance
        )
        closest = reachability.argmin(axis=1)
        rows = np.arange(len(matrix))
        nearest_reach = reachability[rows, closest]
        with np.errstate(divide="ignore"):
            lambda_ = np.where(nearest_reach > 0, 1.0 / nearest_reach, np.finfo(np.float64).max)
        return neighbour[rows, closest], lambda_

    def _selected_cluster(self, nearest: np.ndarray, lambda_: np.ndarray) -> np.ndarray:
        """Start at the nearest point's cluster, climb while the parent still holds at lambda_."""
        prediction = self.clusterer.prediction_data_
        n_training = len(prediction.raw_data)
        raw_tree = self.clusterer.condensed_tree_._raw_tree
        point_rows = raw_tree[raw_tree["child"] < n_training]
        point_cluster = np.empty(n_training, dtype=np.int64)
        point_lambda = np.empty(n_training, dtype=np.float64)
        point_cluster[point_rows["child"]] = point_rows["parent"]
        point_lambda[point_rows["child"]] = point_rows["lambda_val"]
        cluster_tree = prediction.cluster_tree
        n_ids = int(max(raw_tree["parent"].max(), raw_tree["child"].max())) + 1
        parent_of = np.full(n_ids, -1, dtype=np.int64)
        parent_lambda = np.full(n_ids, -np.inf)
        parent_of[cluster_tree["child"]] = cluster_tree["parent"]
        parent_lambda[cluster_tree["child"]] = cluster_tree["lambda_val"]
        root = int(cluster_tree["parent"].min())

        cluster = point_cluster[nearest]
        climbing = np.flatnonzero(point_lambda[nearest] > lambda_)
        while len(climbing):
            current = cluster[climbing]
            can_climb = (current > root) & (parent_of[current] >= 0)
            can_climb[can_climb] = parent_lambda[current[can_climb]] >= lambda_[climbing[can_climb]]
            climbing = climbing[can_climb]
            cluster[climbing] = parent_of[cluster[climbing]]
        label_of = np.full(n_ids, -1, dtype=np.int64)
        for cluster_id, label in prediction.cluster_map.items():
            label_of[cluster_id] = label
        return label_of[cluster]


@dataclass
class FitMemory:
    """The exact rows a sampled algorithm was fitted on, so they keep the fit's labels."""

    keys: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, labels: np.ndarray) -> FitMemory:
        keys = _row_keys(rows)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], labels[order])

    def recall(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the rows that were in the fit, their fit labels)."""
        keys = _row_keys(matrix)
        position = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        known = np.flatnonzero(self.keys[position] == keys)
        return known, self.labels[position[known]]


def _row_keys(matrix: np.ndarray) -> np.ndarray:
    """Each row's bytes as one comparable value."""
    rows = np.ascontiguousarray(matrix, dtype=np.float64)
    return rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()


@dataclass
class SegmentModel:
    """What `assign_segments` needs: the fit's rule, its remembered rows, and its label -> segment map."""

    rule: AssignmentRule
    segment_of: np.ndarray
    n_features: int
    memory: FitMemory | None = None

    def assign(self, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) == 0:
            return np.empty(0, dtype=np.int64)
        own = self.rule(matrix)
        if self.memory is not None:
            known, remembered = self.memory.recall(matrix)
            own[known] = remembered
        return np.where(own >= 0, self.segment_of[np.maximum(own, 0)], -1).astype(np.int64)


# --------------------------------------------------------------------------- the registry


@dataclass
class Fit:
    """One algorithm fitted on some rows."""

    labels: np.ndarray
    rule: AssignmentRule
    params: dict
    medoids: np.ndarray | None = None
    dendrogram: dict | None = None


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

    def settings(self, config: ClusteringConfig) -> dict:
        return {name: getattr(config, name) for name in self.params}


def fit_kmeans(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    return {k: _kmeans(rows, k, KMEANS_RESTARTS, "k-means++", settings, seed) for k in ks}


def refit_kmeans(matrix: np.ndarray, sample_fit: Fit, settings: dict, seed: int) -> Fit:
    centres = sample_fit.rule.estimator.cluster_centers_
    return _kmeans(matrix, len(centres), 1, centres, settings, seed)


def _kmeans(rows, k, n_init, init, settings, seed) -> Fit:
    mini_batch = len(rows) > settings["mini_batch_above"]
    kind = MiniBatchKMeans if mini_batch else KMeans
    estimator = kind(n_clusters=k, init=init, n_init=n_init, random_state=seed).fit(rows)
    return Fit(
        estimator.labels_.astype(np.int64),
        EstimatorPredict(estimator, "k-means predict (nearest centre)"),
        {"k": k, "estimator": kind.__name__},
    )


def fit_birch(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    """BIRCH: a CF tree of the rows, then Ward's agglomeration of its subclusters weighted by their
    sizes (the paper's global phase). scikit-learn's global step weighs a subcluster of one outlier
    like one of hundreds of rows: on the demo it split off 3% and 1% groups and its k=2 changed
    from one subsample to the next (stability -0.01); weighted, it agrees with agglomerative.
    """
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
    n_neighbours = min(len(rows), max(2, math.ceil(BIRCH_NEIGHBOURHOOD_SHARE * len(rows))) + 1)
    distance, _ = cKDTree(rows).query(rows, k=n_neighbours, workers=-1)
    return max(float(np.median(distance[:, -1])), np.finfo(np.float64).tiny)


def fit_kmedoids(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    dissimilarity = squareform(pdist(rows)).astype(np.float32)
    fits = {}
    for k in ks:
        result = kmedoids.fasterpam(dissimilarity, k, random_state=seed, n_cpu=1)
        fits[k] = _medoid_fit(rows, np.asarray(result.medoids, dtype=np.int64), {"k": k})
    return fits


def fit_clara(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
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
    return np.concatenate(
        [
            cdist(rows[start : start + DISTANCE_BLOCK_ROWS], centres).min(axis=1)
            for start in range(0, len(rows), DISTANCE_BLOCK_ROWS)
        ]
    )


def fit_agglomerative(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
    merges = scipy_linkage(rows, method=settings["linkage"])
    dendrogram = {"linkage": merges, "leaves": "fit-sample rows"}
    params = {"linkage": settings["linkage"]}
    return {k: _hierarchy_fit(rows, cut_linkage(merges, k), {"k": k, **params}, dendrogram) for k in ks}


def fit_diana(rows: np.ndarray, ks: list[int], settings: dict, seed: int) -> dict[int, Fit]:
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
    rule = NearestCentre(_centres(rows, labels, labels.max() + 1), "nearest segment centre")
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


def fit_dbscan(rows: np.ndarray, ks: None, settings: dict, seed: int) -> dict[None, Fit]:
    min_samples, eps, eps_from = _density_scale(rows, settings)
    min_cluster_size = _min_cluster_size(rows, settings)
    estimator = DBSCAN(eps=eps, min_samples=min_samples).fit(rows)
    labels = without_small_clusters(estimator.labels_, min_cluster_size)
    core = estimator.core_sample_indices_
    core = core[labels[core] >= 0]
    rule = NearestReferenceWithin(
        rows[core], labels[core], np.full(len(core), eps), "nearest core point within eps"
    )
    params = {
        "eps": eps,
        "eps_from": eps_from,
        "min_samples": min_samples,
        "min_cluster_size": min_cluster_size,
    }
    return {None: Fit(labels, rule, params)}


def without_small_clusters(labels: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Clusters with fewer than min_cluster_size members become noise; the rest are renumbered 0..m-1.

    An eps cut keeps any pocket of min_samples dense rows as a cluster (a few dozen customers
    of 20,000 on the demo); HDBSCAN and OPTICS' xi extraction drop such pockets by
    min_cluster_size, and so does this, for DBSCAN and OPTICS' eps cut.
    """
    labels = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(labels[labels >= 0], minlength=1)
    kept = np.flatnonzero(sizes >= min_cluster_size)
    renumber = np.full(len(sizes), -1, dtype=np.int64)
    renumber[kept] = np.arange(len(kept))
    return np.where(labels >= 0, renumber[np.maximum(labels, 0)], -1)


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
    n_neighbours = min(min_samples, len(rows))
    distance, _ = cKDTree(rows).query(rows, k=n_neighbours, workers=-1)
    curve = np.sort(distance.reshape(len(rows), -1)[:, -1])
    spread = curve[-1] - curve[0]
    if spread <= 0:
        return max(float(curve[-1]), np.finfo(np.float64).tiny)
    below_chord = np.linspace(0.0, 1.0, len(curve)) - (curve - curve[0]) / spread
    return float(curve[int(np.argmax(below_chord))])


def fit_hdbscan(rows: np.ndarray, ks: None, settings: dict, seed: int) -> dict[None, Fit]:
    min_cluster_size = _min_cluster_size(rows, settings)
    min_samples = settings["min_samples"] or 2 * rows.shape[1]
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size, min_samples=min_samples, prediction_data=True
    ).fit(rows)
    params = {"min_cluster_size": min_cluster_size, "min_samples": min_samples}
    return {None: Fit(clusterer.labels_.astype(np.int64), HdbscanApproximatePredict(clusterer), params)}


def fit_optics(rows: np.ndarray, ks: None, settings: dict, seed: int) -> dict[None, Fit]:
    """OPTICS ordering; clusters cut from the reachability plot at eps, or by xi steep areas if xi is set.

    The xi extraction is fragile with default settings (ARI 0.01-0.9 on moons/circles with noise
    at xi=0.05, depending on min_samples and min_cluster_size), hence the eps cut by default.
    """
    min_samples, eps, eps_from = _density_scale(rows, settings)
    min_cluster_size = _min_cluster_size(rows, settings)
    if settings["xi"] is None:
        options = {"cluster_method": "dbscan", "eps": eps}
        params = {"extraction": "reachability cut at eps", "eps": eps, "eps_from": eps_from}
    else:
        options = {"cluster_method": "xi", "xi": settings["xi"], "min_cluster_size": min_cluster_size}
        params = {"extraction": "xi", "xi": settings["xi"]}
    # OPTICS validates its inputs again for every row it expands; the rows are already checked.
    with config_context(assume_finite=True, skip_parameter_validation=True):
        estimator = OPTICS(min_samples=min_samples, **options).fit(rows)
    labels = without_small_clusters(estimator.labels_, min_cluster_size)
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
    params = {"min_samples": min_samples, "min_cluster_size": min_cluster_size, **params}
    return {None: Fit(labels, rule, params)}


def _min_cluster_size(rows: np.ndarray, settings: dict) -> int:
    """Configured, or the smallest usable segment's share (min_segment_share) of the fit rows."""
    return settings["min_cluster_size"] or max(5, math.ceil(settings["min_segment_share"] * len(rows)))


DENSITY_PARAMS = ("min_samples", "min_cluster_size", "min_segment_share")
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
    )
}
SIMPLICITY = {name: rank for rank, name in enumerate(ALGORITHMS)}


# --------------------------------------------------------------------------- samples and scores


@dataclass(frozen=True)
class Samples:
    """Nested random samples: both are prefixes of one seeded permutation of the rows."""

    fit_rows: np.ndarray
    score_rows: np.ndarray

    @classmethod
    def draw(cls, n_rows: int, config: ClusteringConfig) -> Samples:
        order = np.random.default_rng(config.seed).permutation(n_rows)
        return cls(order[: config.fit_sample_size], order[: config.sample_size])

    @property
    def overlap(self) -> int:
        return min(len(self.fit_rows), len(self.score_rows))


class SampleScorer:
    """Scores labellings of the score sample; its distance matrix is computed once."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.distances = np.empty((len(rows), len(rows)), dtype=np.float32)
        for start in range(0, len(rows), DISTANCE_BLOCK_ROWS):
            self.distances[start : start + DISTANCE_BLOCK_ROWS] = cdist(
                rows[start : start + DISTANCE_BLOCK_ROWS], rows
            )

    def scores(self, labels: np.ndarray) -> dict:
        """Silhouette, Calinski-Harabasz and Davies-Bouldin on the non-noise rows; None if < 2 segments."""
        kept = labels >= 0
        n_segments = len(np.unique(labels[kept]))
        scores = {
            "silhouette": None,
            "calinski_harabasz": None,
            "davies_bouldin": None,
            "noise_share": float(1.0 - kept.mean()) if len(labels) else 0.0,
        }
        if 2 <= n_segments < kept.sum():
            scores["silhouette"] = silhouette_from_distances(self.distances, labels)
            scores["calinski_harabasz"] = float(calinski_harabasz_score(self.rows[kept], labels[kept]))
            scores["davies_bouldin"] = float(davies_bouldin_score(self.rows[kept], labels[kept]))
        return scores


def silhouette_from_distances(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of the rows with label >= 0, as sklearn's silhouette_score defines it.

    One matrix product per labelling instead of sklearn's per-row reductions (~4x faster on a
    10k-row sample, which matters when dozens of candidates are scored on the same rows).
    """
    kept = np.flatnonzero(labels >= 0)
    _, own = np.unique(labels[kept], return_inverse=True)
    membership = np.zeros((len(labels), own.max() + 1), dtype=distances.dtype)
    membership[kept, own] = 1.0
    sums = (distances[kept] @ membership).astype(np.float64)
    sizes = membership.sum(axis=0).astype(np.float64)
    rows = np.arange(len(kept))
    within = sums[rows, own] / np.maximum(sizes[own] - 1, 1)
    between = sums / sizes
    between[rows, own] = np.inf
    nearest_other = between.min(axis=1)
    denominator = np.maximum(within, nearest_other)
    silhouette = np.divide(
        nearest_other - within, denominator, out=np.zeros(len(kept)), where=denominator > 0
    )
    silhouette[sizes[own] == 1] = 0.0
    return float(silhouette.mean())


# --------------------------------------------------------------------------- search and choice


@dataclass
class Candidate:
    """An algorithm searched on the fit sample, with its chosen fit and its sample scores."""

    algorithm: Algorithm
    fit: Fit
    scores: dict
    segment_sizes: list[int]
    k_search: list[dict] = field(default_factory=list)
    sizes_within_bounds: bool = True

    @property
    def silhouette(self) -> float | None:
        return self.scores["silhouette"]

    def leaderboard_row(self) -> dict:
        return {
            "algorithm": self.algorithm.name,
            "family": self.algorithm.family,
            "params": self.fit.params,
            "scores": self.scores,
            "noise_share": self.scores["noise_share"],
            "segment_sizes": self.segment_sizes,
        }


def search(
    algorithm: Algorithm, matrix: np.ndarray, samples: Samples, scorer: SampleScorer, config: ClusteringConfig
) -> Candidate:
    """Fit an algorithm on the fit sample (each candidate k if it takes k) and keep the best."""
    rows = matrix[samples.fit_rows]
    low, high = config.k
    ks = list(range(low, min(high, len(rows) - 1) + 1)) if algorithm.takes_k else None
    if ks == []:
        raise SegflowError(
            f"{algorithm.name} needs at least {low + 1} rows for k >= {low}; the matrix has {len(rows)}"
        )
    # The sample is small: OpenMP's thread start-up and barriers cost more than they save (40x
    # slower k-means on a busy 2-core machine), so the search runs on one OpenMP thread.
    with threadpool_limits(limits=1, user_api="openmp"):
        fits = algorithm.fit(rows, ks, algorithm.settings(config), config.seed)
    scored = {}
    for k, fit in fits.items():
        labels = _score_sample_labels(fit, matrix, samples)
        sizes = _sizes(labels)
        scored[k] = (scorer.scores(labels), sizes, sizes_within_bounds(sizes, len(labels), config))
    k_search = (
        [
            {
                "k": k,
                "n_segments": len(sizes),
                **{name: scores[name] for name in ("silhouette", "calinski_harabasz", "davies_bouldin")},
                "sizes_within_bounds": within,
            }
            for k, (scores, sizes, within) in scored.items()
        ]
        if algorithm.takes_k
        else []
    )
    chosen = choose_k(k_search, config.score_margin) if algorithm.takes_k else None
    scores, sizes, within = scored[chosen]
    return Candidate(algorithm, fits[chosen], scores, sizes, k_search, within)


def _score_sample_labels(fit: Fit, matrix: np.ndarray, samples: Samples) -> np.ndarray:
    """The fit's labels on the score sample: its own where they overlap, its rule beyond."""
    beyond = samples.score_rows[samples.overlap :]
    assigned = fit.rule(matrix[beyond]) if len(beyond) else np.empty(0, dtype=np.int64)
    return np.concatenate([fit.labels[: samples.overlap], assigned])


def _sizes(labels: np.ndarray) -> list[int]:
    return sorted(np.bincount(labels[labels >= 0]).tolist(), reverse=True) if (labels >= 0).any() else []


def sizes_within_bounds(sizes: list[int], n_rows: int, config: ClusteringConfig) -> bool:
    """Whether every segment's share of the scored rows is within the configured segment share bounds."""
    return bool(sizes) and (
        sizes[-1] >= config.min_segment_share * n_rows and sizes[0] <= config.max_segment_share * n_rows
    )


def choose_k(k_search: list[dict], margin: float) -> int:
    """The smallest k whose silhouette is within `margin` (absolute) of the best.

    Only the k whose segment sizes are within bounds compete, unless none is: otherwise "one
    outlying group against everyone else" (a 90% segment) wins near-ties with real splits.
    """
    scored = [row for row in k_search if row["silhouette"] is not None]
    if not scored:
        raise SegflowError(f"no k in {[row['k'] for row in k_search]} gave two or more segments to score")
    scored = [row for row in scored if row.get("sizes_within_bounds", True)] or scored
    best = max(row["silhouette"] for row in scored)
    return min(row["k"] for row in scored if row["silhouette"] >= best - margin)


def choose_candidate(candidates: list[Candidate], config: ClusteringConfig) -> Candidate:
    """Best sampled silhouette within the margin, simplest algorithm first; too noisy results cannot win,
    and results with segment sizes out of bounds win only when every result has them."""
    eligible = [
        candidate
        for candidate in candidates
        if candidate.silhouette is not None and candidate.scores["noise_share"] <= config.max_noise_share
    ]
    if not eligible:
        summary = ", ".join(
            f"{c.algorithm.name}: silhouette {c.silhouette}, noise {c.scores['noise_share']:.0%}"
            for c in candidates
        )
        raise SegflowError(
            "auto clustering found no usable segmentation (two or more segments and at most "
            f"{config.max_noise_share:.0%} noise): {summary}"
        )
    eligible = [candidate for candidate in eligible if candidate.sizes_within_bounds] or eligible
    best = max(candidate.silhouette for candidate in eligible)
    close = [c for c in eligible if c.silhouette >= best - config.score_margin]
    return min(close, key=lambda candidate: SIMPLICITY[candidate.algorithm.name])


# --------------------------------------------------------------------------- the stage


def fit_segmentation(matrix: np.ndarray, config: ClusteringConfig) -> Segmentation:
    """Segment the rows of a scaled feature matrix with the configured algorithm (or the best of several)."""
    matrix = _checked_matrix(matrix)
    samples = Samples.draw(len(matrix), config)
    scorer = SampleScorer(matrix[samples.score_rows])
    names = config.auto_candidates if config.algorithm == "auto" else (config.algorithm,)
    candidates = [search(ALGORITHMS[name], matrix, samples, scorer, config) for name in names]
    winner = choose_candidate(candidates, config) if config.algorithm == "auto" else candidates[0]
    leaderboard = (
        [{**candidate.leaderboard_row(), "selected": candidate is winner} for candidate in candidates]
        if config.algorithm == "auto"
        else []
    )
    return _finalise(winner, matrix, samples, scorer, config, leaderboard)


def assign_segments(segmentation: Segmentation, matrix: np.ndarray) -> np.ndarray:
    """Label rows with the existing segments without refitting; rows of the fit keep their label."""
    matrix = _checked_matrix(matrix, allow_empty=True)
    if matrix.shape[1] != segmentation.model.n_features:
        raise ValueError(
            f"the segmentation was fitted on {segmentation.model.n_features} features, "
            f"the matrix has {matrix.shape[1]}"
        )
    return segmentation.model.assign(matrix)


def _checked_matrix(matrix: np.ndarray, allow_empty: bool = False) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] == 0 or (len(matrix) < 3 and not allow_empty):
        raise ValueError(
            f"clustering needs a 2-D matrix of at least 3 rows and 1 column, got shape {matrix.shape}"
        )
    if not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"clustering needs a numeric matrix, got dtype {matrix.dtype}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    bad = ~np.isfinite(matrix)
    if bad.any():
        rows, columns = np.nonzero(bad)
        raise ValueError(
            f"the feature matrix has {int(bad.sum())} NaN/infinite values "
            f"(first at row {rows[0]}, column {columns[0]}); impute before clustering"
        )
    return matrix


def _finalise(
    candidate: Candidate,
    matrix: np.ndarray,
    samples: Samples,
    scorer: SampleScorer,
    config: ClusteringConfig,
    leaderboard: list[dict],
) -> Segmentation:
    """Extend the chosen fit to every row, number segments by size, and describe the result."""
    algorithm = candidate.algorithm
    fit, own, memory = _extend_to_all_rows(algorithm, candidate.fit, matrix, samples, config)
    assigned = memory is not None and len(samples.fit_rows) < len(matrix)

    n_own = max(int(own.max()) + 1, len(fit.medoids) if fit.medoids is not None else 0, 1)
    sizes = np.bincount(own[own >= 0], minlength=n_own)
    by_size = np.argsort(-sizes, kind="stable")
    by_size = by_size[sizes[by_size] > 0]
    segment_of = np.full(n_own, -1, dtype=np.int64)
    segment_of[by_size] = np.arange(len(by_size))
    labels = np.where(own >= 0, segment_of[np.maximum(own, 0)], -1).astype(np.int64)
    n_segments = len(by_size)
    centers = _centres(matrix, labels, n_segments)
    if fit.medoids is not None:
        exemplars = samples.fit_rows[fit.medoids[by_size]]
    else:
        exemplars = _nearest_members(matrix, labels, centers)

    scores = scorer.scores(labels[samples.score_rows])
    scores["noise_share"] = float((labels < 0).mean())
    dendrogram = None
    if fit.dendrogram is not None:
        dendrogram = {**fit.dendrogram, "linkage": fit.dendrogram["linkage"].tolist()}
        if dendrogram["leaves"] == "fit-sample rows":
            dendrogram["leaf_rows"] = samples.fit_rows.tolist()
    sampling = {
        "fit_sample": len(samples.fit_rows) if assigned else None,
        "score_sample": len(samples.score_rows),
        "search_sample": len(samples.fit_rows) if algorithm.takes_k else None,
        "assigned_by": fit.rule.describe if assigned else None,
        "seed": config.seed,
    }
    return Segmentation(
        algorithm=algorithm.name,
        params=_json_ready(fit.params),
        labels=labels,
        n_segments=n_segments,
        centers=centers,
        exemplars=np.asarray(exemplars, dtype=np.int64),
        scores=_json_ready(scores),
        k_search=_json_ready(candidate.k_search),
        leaderboard=_json_ready(leaderboard),
        sampling=sampling,
        dendrogram=dendrogram,
        model=SegmentModel(fit.rule, segment_of, matrix.shape[1], memory),
    )


def _extend_to_all_rows(
    algorithm: Algorithm, fit: Fit, matrix: np.ndarray, samples: Samples, config: ClusteringConfig
) -> tuple[Fit, np.ndarray, FitMemory | None]:
    """The final fit, its own labels for every row, and the fitted rows it must remember (if any).

    Algorithms with a refit fit all rows (their predict reproduces their labels); the others
    keep the sample fit, assign the other rows by its rule, and remember the sample's labels.
    """
    if algorithm.refit is not None and len(samples.fit_rows) < len(matrix):
        fit = algorithm.refit(matrix, fit, algorithm.settings(config), config.seed)
        return fit, fit.labels, None
    own = np.empty(len(matrix), dtype=np.int64)
    own[samples.fit_rows] = fit.labels
    if algorithm.refit is not None:
        return fit, own, None
    rest = np.setdiff1d(np.arange(len(matrix)), samples.fit_rows)
    if len(rest):
        own[rest] = fit.rule(matrix[rest])
    memory = FitMemory.of(matrix[samples.fit_rows], fit.labels)
    # identical rows get one label, the one assignment gives them (a split may have parted them)
    known, remembered = memory.recall(matrix)
    own[known] = remembered
    return fit, own, memory


def _centres(matrix: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """Mean of each segment's members (noise excluded)."""
    kept = labels >= 0
    sizes = np.bincount(labels[kept], minlength=n_segments).astype(np.float64)
    sums = (
        np.column_stack(
            [
                np.bincount(labels[kept], weights=matrix[kept, column], minlength=n_segments)
                for column in range(matrix.shape[1])
            ]
        )
        if n_segments
        else np.zeros((0, matrix.shape[1]))
    )
    return sums / np.maximum(sizes, 1)[:, None]


def _nearest_members(matrix: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Row index of the member nearest its segment's centre, per segment."""
    members = np.flatnonzero(labels >= 0)
    distance = ((matrix[members] - centers[labels[members]]) ** 2).sum(axis=1)
    order = np.lexsort((distance, labels[members]))
    first = np.flatnonzero(np.diff(labels[members][order], prepend=-1) != 0)
    return members[order[first]]


def _json_ready(value: Any) -> Any:
    """Plain Python types, so params, scores and leaderboards serialise as JSON."""
    return json.loads(json.dumps(value, default=_numpy_scalar))


def _numpy_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} in clustering results")


def leaderboard_table(leaderboard: list[dict]) -> list[dict]:
    """One flat row per algorithm tried, for a Prefect table artifact."""
    return [
        {
            "algorithm": row["algorithm"],
            "family": row["family"],
            "selected": row["selected"],
            "params": json.dumps(row["params"], sort_keys=True),
            "silhouette": row["scores"]["silhouette"],
            "calinski_harabasz": row["scores"]["calinski_harabasz"],
            "davies_bouldin": row["scores"]["davies_bouldin"],
            "noise_share": row["noise_share"],
            "segment_sizes": ", ".join(str(size) for size in row["segment_sizes"]),
        }
        for row in leaderboard
    ]


@cache
def clustering_code() -> bytes:
    """The source of the clustering modules: the version string stays the same between releases,
    and a changed algorithm must not be answered with yesterday's segmentation."""
    return b"".join(Path(path).read_bytes() for path in (__file__, inspect.getsourcefile(diana)))


CACHE_PREFIX = "segflow-cluster-"
CACHE_EXPIRATION = timedelta(days=1)


def clustering_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The same matrix, clustering config (seed included) and code give the same segmentation, so a
    retried flow finds it instead of fitting again. Hashing the matrix takes ~0.2 s at 1M x 16."""
    digest = hashlib.blake2b(np.ascontiguousarray(parameters["matrix"]).tobytes(), digest_size=16)
    digest.update(parameters["config"].model_dump_json().encode())
    digest.update(__version__.encode())
    digest.update(clustering_code())
    return f"{CACHE_PREFIX}{digest.hexdigest()}"


def prune_cached_segmentations(folder: Path, now: float) -> int:
    """Delete cached segmentations past their expiry (Prefect never removes result files; one is
    16 MB at 1M customers). Returns how many were deleted."""
    expired = [
        path
        for path in folder.glob(f"{CACHE_PREFIX}*")
        if now - path.stat().st_mtime > CACHE_EXPIRATION.total_seconds()
    ]
    for path in expired:
        path.unlink(missing_ok=True)
    return len(expired)


@task(
    name="cluster",
    cache_key_fn=clustering_cache_key,
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
def cluster_task(matrix: np.ndarray, config: ClusteringConfig) -> Segmentation:
    """Fit the segmentation; log the choice and publish the auto leaderboard as a table artifact."""
    logger = get_run_logger()
    prune_cached_segmentations(Path(get_current_settings().results.local_storage_path), time.time())
    segmentation = fit_segmentation(matrix, config)
    logger.info(
        "clustering chose %s with %d segments, params %s; scores %s; sampling %s",
        segmentation.algorithm,
        segmentation.n_segments,
        segmentation.params,
        segmentation.scores,
        segmentation.sampling,
    )
    if config.algorithm == "auto":
        create_table_artifact(
            table=leaderboard_table(segmentation.leaderboard),
            key="clustering-leaderboard",
            description="Algorithms compared on the same sample; the selected one was refitted on all rows.",
        )
    return segmentation
