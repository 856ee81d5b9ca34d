"""What a fit hands on: its labels and a rule that labels new rows the same way.

Every rule is a small dataclass of arrays: it labels rows with the fit's own labels (0..m-1,
NOISE_LABEL for noise). `SegmentAssigner` adds the rows the fit remembers and the fit's
label -> segment map, and is what scoring saves: `saved()` gives its settings (plain JSON values)
and its arrays, `SegmentAssigner.from_saved` rebuilds it from them, with no estimator object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from segflow.rfm import RfmMap
from segflow.saved_model import with_prefix, without_prefix
from segflow.tables import NOISE_LABEL

DISTANCE_BLOCK_ROWS = 2_048
# HDBSCAN's prediction holds 2 x min_samples neighbours per row in five arrays (~2.5 GB for 1M
# rows at min_samples 32); this many rows at a time keeps that to ~0.3 GB
PREDICT_BLOCK_ROWS = 100_000


Arrays = dict[str, np.ndarray]


class AssignmentRule(Protocol):
    """Labels new rows with a fit's own labels (0..m-1, NOISE_LABEL for noise); reduced to arrays."""

    kind: ClassVar[str]
    describe: str

    def __call__(self, matrix: np.ndarray) -> np.ndarray: ...

    def saved(self) -> tuple[dict, Arrays]: ...


@dataclass
class Fit:
    """One algorithm fitted on some rows. `groups`, when set, merges the rule's own clusters (a density
    method's, beyond max_segments): own cluster -> group; `labels` are then the groups."""

    labels: np.ndarray
    rule: AssignmentRule
    params: dict
    medoids: np.ndarray | None = None
    dendrogram: dict | None = None
    groups: np.ndarray | None = None
    names: tuple[str, ...] | None = None  # names of the fit's own labels, where they are defined (a map)

    def assign(self, matrix: np.ndarray) -> np.ndarray:
        """New rows labelled as the fitted rows are: the rule's cluster, merged into its group."""
        own = self.rule(matrix)
        if self.groups is None:
            return own
        return np.where(own >= 0, self.groups[np.maximum(own, 0)], NOISE_LABEL)


@dataclass
class Deferred:
    """A rule built when first used: HDBSCAN's prediction data takes about a second per candidate,
    and only the chosen candidate's rule labels rows beyond the fit sample."""

    build: Callable[[], AssignmentRule]
    built: AssignmentRule | None = None

    @property
    def rule(self) -> AssignmentRule:
        if self.built is None:
            self.built = self.build()
        return self.built

    @property
    def kind(self) -> str:
        return self.rule.kind

    @property
    def describe(self) -> str:
        return self.rule.describe

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return self.rule(matrix)

    def saved(self) -> tuple[dict, Arrays]:
        return self.rule.saved()


def concrete(rule: AssignmentRule | Deferred) -> AssignmentRule:
    """The rule itself, built if it was deferred (what a SegmentAssigner keeps and saves)."""
    return rule.rule if isinstance(rule, Deferred) else rule


@dataclass
class NearestCentre:
    """Each row goes to the nearest of the given points (centres, medoids or subclusters), or to
    that point's label when the points carry labels."""

    kind: ClassVar[str] = "nearest_centre"
    centres: np.ndarray
    describe: str = "nearest centre"
    labels: np.ndarray | None = None

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        from sklearn.metrics.pairwise import pairwise_distances_argmin

        nearest = pairwise_distances_argmin(matrix, self.centres).astype(np.int64)
        return nearest if self.labels is None else self.labels[nearest]

    def saved(self) -> tuple[dict, Arrays]:
        arrays = {"centres": self.centres}
        if self.labels is not None:
            arrays["labels"] = self.labels
        return {"describe": self.describe}, arrays

    @classmethod
    def from_saved(cls, settings: dict, arrays: Arrays) -> NearestCentre:
        return cls(arrays["centres"], settings["describe"], arrays.get("labels"))


@dataclass
class NearestReferenceWithin:
    """Each row takes the label of its nearest reference point if within that point's radius, else noise."""

    kind: ClassVar[str] = "nearest_reference_within"
    points: np.ndarray
    labels: np.ndarray
    radius: np.ndarray
    describe: str

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        assigned = np.full(len(matrix), NOISE_LABEL, dtype=np.int64)
        if len(self.points) == 0 or len(matrix) == 0:
            return assigned
        from scipy.spatial import cKDTree

        bound = np.nextafter(float(self.radius.max()), np.inf)
        distance, nearest = cKDTree(self.points).query(matrix, k=1, distance_upper_bound=bound, workers=-1)
        found = np.flatnonzero(np.isfinite(distance))
        within = distance[found] <= self.radius[nearest[found]]
        assigned[found[within]] = self.labels[nearest[found[within]]]
        return assigned

    def saved(self) -> tuple[dict, Arrays]:
        arrays = {"points": self.points, "labels": self.labels, "radius": self.radius}
        return {"describe": self.describe}, arrays

    @classmethod
    def from_saved(cls, settings: dict, arrays: Arrays) -> NearestReferenceWithin:
        return cls(arrays["points"], arrays["labels"], arrays["radius"], settings["describe"])


@dataclass
class HdbscanApproximatePredict:
    """`hdbscan.approximate_predict`, vectorised over rows (the library loops in Python per row,
    ~55 s per million rows); same neighbours, mutual reachability and walk up the condensed tree.
    Holds only the arrays of the clusterer's prediction data it reads (`of` takes them), so a saved
    rule needs no hdbscan object. Rows are taken in blocks of PREDICT_BLOCK_ROWS to bound memory.
    """

    kind: ClassVar[str] = "hdbscan_approximate_predict"
    raw_data: np.ndarray  # the training rows
    core_distances: np.ndarray
    tree_parent: np.ndarray  # the condensed tree's rows: parent, child, lambda
    tree_child: np.ndarray
    tree_lambda: np.ndarray
    cluster_tree_parent: np.ndarray  # its rows between clusters (child_size > 1)
    cluster_tree_child: np.ndarray
    cluster_tree_lambda: np.ndarray
    cluster_ids: np.ndarray  # the cluster map: condensed-tree cluster -> label
    cluster_labels: np.ndarray
    min_samples: int
    describe: str = "hdbscan approximate_predict"

    ARRAYS: ClassVar[tuple[str, ...]] = (
        "raw_data",
        "core_distances",
        "tree_parent",
        "tree_child",
        "tree_lambda",
        "cluster_tree_parent",
        "cluster_tree_child",
        "cluster_tree_lambda",
        "cluster_ids",
        "cluster_labels",
    )

    @classmethod
    def of(cls, clusterer) -> HdbscanApproximatePredict:
        """The rule of a fitted `hdbscan.HDBSCAN` with prediction data."""
        prediction = clusterer.prediction_data_
        tree, cluster_tree = clusterer.condensed_tree_._raw_tree, prediction.cluster_tree
        cluster_map = sorted(prediction.cluster_map.items())
        return cls(
            raw_data=np.asarray(prediction.raw_data, dtype=np.float64),
            core_distances=np.asarray(prediction.core_distances, dtype=np.float64),
            tree_parent=tree["parent"].astype(np.int64),
            tree_child=tree["child"].astype(np.int64),
            tree_lambda=tree["lambda_val"].astype(np.float64),
            cluster_tree_parent=cluster_tree["parent"].astype(np.int64),
            cluster_tree_child=cluster_tree["child"].astype(np.int64),
            cluster_tree_lambda=cluster_tree["lambda_val"].astype(np.float64),
            cluster_ids=np.array([cluster for cluster, _ in cluster_map], dtype=np.int64),
            cluster_labels=np.array([label for _, label in cluster_map], dtype=np.int64),
            min_samples=int(clusterer.min_samples or clusterer.min_cluster_size),
        )

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if len(self.cluster_tree_parent) == 0 or len(matrix) == 0:
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
        from scipy.spatial import cKDTree

        n_neighbours = min(2 * self.min_samples, len(self.raw_data))
        distance, neighbour = cKDTree(self.raw_data).query(matrix, k=n_neighbours, workers=-1)
        distance, neighbour = distance.reshape(len(matrix), -1), neighbour.reshape(len(matrix), -1)
        own_core = distance[:, min(self.min_samples, n_neighbours - 1)]
        reachability = np.maximum(np.maximum(self.core_distances[neighbour], own_core[:, None]), distance)
        closest = reachability.argmin(axis=1)
        rows = np.arange(len(matrix))
        nearest_reach = reachability[rows, closest]
        with np.errstate(divide="ignore"):
            lambda_ = np.where(nearest_reach > 0, 1.0 / nearest_reach, np.finfo(np.float64).max)
        return neighbour[rows, closest], lambda_

    def _selected_cluster(self, nearest: np.ndarray, lambda_: np.ndarray) -> np.ndarray:
        """Start at the nearest point's cluster, climb while the parent still holds at lambda_."""
        n_training = len(self.raw_data)
        is_point = self.tree_child < n_training
        point_cluster = np.empty(n_training, dtype=np.int64)
        point_lambda = np.empty(n_training, dtype=np.float64)
        point_cluster[self.tree_child[is_point]] = self.tree_parent[is_point]
        point_lambda[self.tree_child[is_point]] = self.tree_lambda[is_point]
        n_ids = int(max(self.tree_parent.max(), self.tree_child.max())) + 1
        parent_of = np.full(n_ids, -1, dtype=np.int64)
        parent_lambda = np.full(n_ids, -np.inf)
        parent_of[self.cluster_tree_child] = self.cluster_tree_parent
        parent_lambda[self.cluster_tree_child] = self.cluster_tree_lambda
        root = int(self.cluster_tree_parent.min())

        cluster = point_cluster[nearest]
        climbing = np.flatnonzero(point_lambda[nearest] > lambda_)
        while len(climbing):
            current = cluster[climbing]
            can_climb = (current > root) & (parent_of[current] >= 0)
            can_climb[can_climb] = parent_lambda[current[can_climb]] >= lambda_[climbing[can_climb]]
            climbing = climbing[can_climb]
            cluster[climbing] = parent_of[cluster[climbing]]
        label_of = np.full(n_ids, NOISE_LABEL, dtype=np.int64)
        label_of[self.cluster_ids] = self.cluster_labels
        return label_of[cluster]

    def saved(self) -> tuple[dict, Arrays]:
        settings = {"describe": self.describe, "min_samples": self.min_samples}
        return settings, {name: getattr(self, name) for name in self.ARRAYS}

    @classmethod
    def from_saved(cls, settings: dict, arrays: Arrays) -> HdbscanApproximatePredict:
        return cls(
            **{name: arrays[name] for name in cls.ARRAYS},
            min_samples=int(settings["min_samples"]),
            describe=settings["describe"],
        )


@dataclass
class FitMemory:
    """The exact rows a sampled algorithm was fitted on, so they keep their labels (the fit's, or
    the segments they became in a SegmentAssigner)."""

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

    def saved(self) -> Arrays:
        """The remembered rows (as floats, in key order) and their labels."""
        rows = self.keys.view(np.float64).reshape(len(self.keys), self.keys.itemsize // 8)
        return {"rows": rows, "labels": self.labels}

    @classmethod
    def from_saved(cls, arrays: Arrays) -> FitMemory:
        return cls(row_keys(arrays["rows"]), arrays["labels"])


def row_keys(matrix: np.ndarray) -> np.ndarray:
    """Each row's bytes as one comparable value."""
    rows = np.ascontiguousarray(matrix, dtype=np.float64)
    return rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()


@dataclass
class SegmentAssigner:
    """Assigns rows to segments: the fit's rule with its label -> segment map, and the rows of the fit,
    which keep their segments."""

    rule: AssignmentRule
    segment_of: np.ndarray
    n_features: int
    memory: FitMemory | None = None

    def assign(self, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) == 0:
            return np.empty(0, dtype=np.int64)
        own = self.rule(matrix)
        segments = np.where(own >= 0, self.segment_of[np.maximum(own, 0)], NOISE_LABEL).astype(np.int64)
        if self.memory is not None:
            known, remembered = self.memory.recall(matrix)
            segments[known] = remembered
        return segments

    def saved(self) -> tuple[dict, Arrays]:
        """Settings (the rule's kind and its own settings) and arrays (prefixed rule., memory.)."""
        rule_settings, rule_arrays = self.rule.saved()
        arrays = {"segment_of": self.segment_of, **with_prefix("rule.", rule_arrays)}
        if self.memory is not None:
            arrays.update(with_prefix("memory.", self.memory.saved()))
        settings = {
            "rule": self.rule.kind,
            "rule_settings": rule_settings,
            "n_features": self.n_features,
            "memory": self.memory is not None,
        }
        return settings, arrays

    @classmethod
    def from_saved(cls, settings: dict, arrays: Arrays) -> SegmentAssigner:
        rule = RULES[settings["rule"]].from_saved(settings["rule_settings"], without_prefix("rule.", arrays))
        memory = FitMemory.from_saved(without_prefix("memory.", arrays)) if settings["memory"] else None
        return cls(rule, arrays["segment_of"], int(settings["n_features"]), memory)


RULES = {
    rule.kind: rule for rule in (NearestCentre, NearestReferenceWithin, HdbscanApproximatePredict, RfmMap)
}


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
