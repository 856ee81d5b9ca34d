"""Samples, scores and the choice of k and of an algorithm.

- Sampling. One seeded permutation of the rows gives two nested samples: the fit sample (the
  first `fit_sample_size` rows) and the score sample (the first `sample_size` rows). Every k
  search runs on the fit sample.
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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from threadpoolctl import threadpool_limits

from segflow.clustering.assignment import DISTANCE_BLOCK_ROWS, Fit
from segflow.clustering.registry import SIMPLICITY, Algorithm
from segflow.config import ClusteringConfig
from segflow.errors import SegflowError
from segflow.rfm import RfmMap


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
    algorithm: Algorithm,
    matrix: np.ndarray,
    samples: Samples,
    scorer: SampleScorer,
    config: ClusteringConfig,
    rfm: RfmMap | None = None,
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
        fits = algorithm.fit(rows, ks, algorithm.settings(config, rfm), config.seed)
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
    """The sizes of the segments the labels use, largest first (a map's empty cells are no segment)."""
    _, sizes = np.unique(labels[labels >= 0], return_counts=True)
    return sorted(sizes.tolist(), reverse=True)


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
