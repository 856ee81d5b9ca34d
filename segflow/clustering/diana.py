"""DIANA, DIvisive ANAlysis (Kaufman & Rousseeuw, *Finding Groups in Data*, 1990, ch. 6).

Starts with all objects in one cluster and repeatedly splits the current cluster with the
largest diameter (largest dissimilarity between two of its members). A split opens a splinter
group with the member whose average dissimilarity to the others is largest, then keeps moving
the member of the rest for which "average dissimilarity to the rest minus average dissimilarity
to the splinter group" is largest, while that difference is positive. No maintained Python
implementation exists; this one works on a precomputed dissimilarity matrix and stops after a
requested number of clusters (the cost is O(m^2) per split of an m-member cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Members move to the splinter group only if the difference exceeds this share of the largest
# dissimilarity: the running sums drift by rounding, and a true tie must not count as positive.
RELATIVE_TOLERANCE = 1e-12
BLOCK_ROWS = 1_024


@dataclass(frozen=True)
class DianaSplit:
    """One division: the splinter group leaves `cluster` and becomes a new cluster."""

    cluster: int
    splinter: np.ndarray
    diameter: float


@dataclass(frozen=True)
class DianaHierarchy:
    """The first divisions of the divisive hierarchy; division j creates cluster label j + 1."""

    n_objects: int
    splits: tuple[DianaSplit, ...]

    @property
    def max_clusters(self) -> int:
        return len(self.splits) + 1

    def labels(self, n_clusters: int) -> np.ndarray:
        """Cluster labels 0..n_clusters-1 after the first n_clusters - 1 divisions."""
        if not 1 <= n_clusters <= self.max_clusters:
            raise ValueError(
                f"the hierarchy has 1..{self.max_clusters} clusters, {n_clusters} were asked for"
            )
        labels = np.zeros(self.n_objects, dtype=np.int64)
        for new_label, split in enumerate(self.splits[: n_clusters - 1], start=1):
            labels[split.splinter] = new_label
        return labels

    def linkage(self) -> np.ndarray:
        """The divisions as a scipy linkage matrix whose leaves are the final clusters (labels).

        Read bottom-up, the last division is the first merge; each merge is drawn at the
        diameter of the cluster that was divided (Kaufman & Rousseeuw's banner heights).
        """
        n_leaves = self.max_clusters
        node_of = list(range(n_leaves))
        leaves_under = [1] * n_leaves
        rows = []
        for merge, split in enumerate(reversed(self.splits)):
            splinter_label = n_leaves - 1 - merge
            first, second = node_of[split.cluster], node_of[splinter_label]
            leaves_under[split.cluster] += leaves_under[splinter_label]
            rows.append([min(first, second), max(first, second), split.diameter, leaves_under[split.cluster]])
            node_of[split.cluster] = n_leaves + merge
        return np.array(rows, dtype=np.float64).reshape(-1, 4)


def diana(dissimilarity: np.ndarray, max_clusters: int) -> DianaHierarchy:
    """Divide the objects of a square dissimilarity matrix until there are max_clusters clusters.

    Stops earlier when every cluster has diameter 0 (singletons or identical objects).
    """
    dissimilarity = np.asarray(dissimilarity, dtype=np.float64)
    n_objects = dissimilarity.shape[0]
    if dissimilarity.ndim != 2 or dissimilarity.shape[1] != n_objects:
        raise ValueError(f"DIANA needs a square dissimilarity matrix, got shape {dissimilarity.shape}")
    if max_clusters < 1:
        raise ValueError(f"max_clusters must be at least 1, got {max_clusters}")
    tolerance = RELATIVE_TOLERANCE * float(dissimilarity.max(initial=0.0))
    labels = np.zeros(n_objects, dtype=np.int64)
    diameters = [diameter(dissimilarity, np.arange(n_objects))]
    splits = []
    while len(diameters) < max_clusters:
        widest = int(np.argmax(diameters))
        if diameters[widest] <= 0.0:
            break
        members = np.flatnonzero(labels == widest)
        splinter = splinter_group(dissimilarity, members, tolerance)
        splits.append(DianaSplit(widest, splinter, diameters[widest]))
        labels[splinter] = len(diameters)
        diameters[widest] = diameter(dissimilarity, np.flatnonzero(labels == widest))
        diameters.append(diameter(dissimilarity, splinter))
    return DianaHierarchy(n_objects, tuple(splits))


def splinter_group(dissimilarity: np.ndarray, members: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """The members that leave `members` in one DIANA division (ties go to the lowest index)."""
    n_members = len(members)
    sum_to_rest = _block_reduce(dissimilarity, members, np.sum)
    sum_to_splinter = np.zeros(n_members)
    in_rest = np.ones(n_members, dtype=bool)

    def move(position: int) -> None:
        row = dissimilarity[members[position], members]
        sum_to_rest[:] -= row
        sum_to_splinter[:] += row
        in_rest[position] = False

    move(int(np.argmax(sum_to_rest)))
    for n_splinter in range(1, n_members - 1):
        n_rest = n_members - n_splinter
        gain = sum_to_rest / (n_rest - 1) - sum_to_splinter / n_splinter
        gain[~in_rest] = -np.inf
        best = int(np.argmax(gain))
        if gain[best] <= tolerance:
            break
        move(best)
    return members[~in_rest]


def diameter(dissimilarity: np.ndarray, members: np.ndarray) -> float:
    """The largest dissimilarity between two members (0 for a single member)."""
    if len(members) < 2:
        return 0.0
    return float(_block_reduce(dissimilarity, members, np.max).max())


def _block_reduce(dissimilarity: np.ndarray, members: np.ndarray, reduce) -> np.ndarray:
    """Reduce each member's row over the members, a block of rows at a time to bound memory."""
    return np.concatenate(
        [
            reduce(dissimilarity[np.ix_(members[start : start + BLOCK_ROWS], members)], axis=1)
            for start in range(0, len(members), BLOCK_ROWS)
        ]
    )
