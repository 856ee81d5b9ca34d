"""What a fit hands on: its labels and a rule that labels new rows the same way.

Every rule is a small dataclass of arrays: it labels rows with the fit's own labels (0..m-1,
NOISE_LABEL for noise). `SegmentAssigner` adds the rows the fit remembers and the fit's
label -> segment map, and is what scoring saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.spatial import cKDTree
from sklearn.metrics.pairwise import pairwise_distances_argmin

from segflow.tables import NOISE_LABEL

DISTANCE_BLOCK_ROWS = 2_048
# HDBSCAN's prediction holds 2 x min_samples neighbours per row in five arrays (~2.5 GB for 1M
# rows at min_samples 32); this many rows at a time keeps that to ~0.3 GB
PREDICT_BLOCK_ROWS = 100_000


class AssignmentRule(Protocol):
    """Labels new rows with a fit's own labels (0..m-1, NOISE_LABEL for noise)."""

    describe: str

    def __call__(self, matrix: np.ndarray) -> np.ndarray: ...


@dataclass
class Fit:
    """One algorithm fitted on some rows."""

    labels: np.ndarray
    rule: AssignmentRule
    params: dict
    medoids: np.ndarray | None = None
    dendrogram: dict | None = None


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
        assigned = np.full(len(matrix), NOISE_LABEL, dtype=np.int64)
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

    clusterer: Any  # a fitted hdbscan.HDBSCAN with prediction data
    describe: str = "hdbscan approximate_predict"

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if len(self.clusterer.prediction_data_.cluster_tree) == 0 or len(matrix) == 0:
            return np.full(len(matrix), NOISE_LABEL, dtype=np.int64)
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
        label_of = np.full(n_ids, NOISE_LABEL, dtype=np.int64)
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
        keys = row_keys(rows)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], labels[order])

    def recall(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the rows that were in the fit, their fit labels)."""
        keys = row_keys(matrix)
        position = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        known = np.flatnonzero(self.keys[position] == keys)
        return known, self.labels[position[known]]


def row_keys(matrix: np.ndarray) -> np.ndarray:
    """Each row's bytes as one comparable value."""
    rows = np.ascontiguousarray(matrix, dtype=np.float64)
    return rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()


@dataclass
class SegmentAssigner:
    """Assigns rows to segments: the fit's rule, the rows it remembers, and its label -> segment map."""

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
        return np.where(own >= 0, self.segment_of[np.maximum(own, 0)], NOISE_LABEL).astype(np.int64)


def segment_centres(matrix: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
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
