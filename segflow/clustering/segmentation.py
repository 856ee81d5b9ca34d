"""The clustering's entry points: fit a segmentation of a whole matrix, and assign rows to it.

Algorithms with a `refit` (kmeans) fit the chosen k on all rows, started from the sample's
solution. The others (O(n^2) time or memory: agglomerative, DIANA, k-medoids, CLARA, DBSCAN,
OPTICS; HDBSCAN to keep it fast; BIRCH, whose global step on a tree of all rows gave a different
partition from the one chosen on the sample) keep their fit on the sample and label the
remaining rows with their assignment rule; rows of the fit sample keep the label the fit gave
them, also in `assign_segments`. Segments are numbered by size, largest first; NOISE_LABEL is
noise (density methods only).

In a run with RFM features the RFM map (`segflow.rfm`) is fitted on every row: it scores each
customer, and its segmentation is the baseline the leaderboard lists next to the clusterings,
scored on the same sample (it never wins `auto`), or the segmentation itself with `algorithm: rfm`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segflow.clustering.assignment import Fit, FitMemory, SegmentAssigner, concrete, segment_centres
from segflow.clustering.registry import ALGORITHMS, RFM_MAP_ALGORITHM, Algorithm
from segflow.clustering.scoring import SampleScorer
from segflow.clustering.search import (
    Candidate,
    Samples,
    Search,
    choose_algorithm,
    searches,
    stability_refits_ahead,
)
from segflow.config import ClusteringConfig
from segflow.rfm import RfmMap
from segflow.tables import NOISE_LABEL


@dataclass
class Segmentation:
    """A fitted segmentation of the whole matrix, with how it was found and scored."""

    algorithm: str
    params: dict
    labels: np.ndarray
    n_segments: int
    centers: np.ndarray
    exemplars: np.ndarray
    scores: dict  # silhouette (and DBCV for density methods), the measure that judged it, stability
    k_search: list[dict]  # every candidate of the chosen algorithm (k, or density scales)
    leaderboard: list[dict]
    choice: list[str]  # why this algorithm and this number of segments, in sentences
    sampling: dict
    dendrogram: dict | None
    assigner: SegmentAssigner
    names: dict[int, str] = field(default_factory=dict)  # segment names the algorithm defines (a map)
    rfm: RfmMap | None = None  # the RFM map on the matrix's columns (runs with RFM features)
    rfm_scores: np.ndarray | None = None  # each row's (R, F, M) scores under it, (n, 3)

    @property
    def family(self) -> str:
        return ALGORITHMS[self.algorithm].family

    @property
    def rfm_positions(self) -> tuple[int, ...] | None:
        return None if self.rfm is None else tuple(int(column) for column in self.rfm.positions)


def fit_segmentation(
    matrix: np.ndarray, config: ClusteringConfig, rfm_positions: Sequence[int] | None = None
) -> Segmentation:
    """Segment the rows of a scaled feature matrix with the configured algorithm (or the best of
    several). `rfm_positions`: the matrix columns of recency, frequency and monetary, in runs with
    RFM features (`segflow.rfm.rfm_positions`)."""
    matrix = _checked_matrix(matrix)
    samples = Samples.draw(len(matrix), config)
    scorer = SampleScorer(matrix[samples.score_rows])
    rfm = RfmMap.fit(matrix, rfm_positions) if rfm_positions is not None else None
    names = config.auto_candidates if config.algorithm == "auto" else (config.algorithm,)
    # in a run with RFM features the map is the baseline, scored with the other candidates
    baseline_names = (RFM_MAP_ALGORITHM,) if rfm is not None and RFM_MAP_ALGORITHM not in names else ()
    algorithms = [ALGORITHMS[name] for name in (*names, *baseline_names)]
    with stability_refits_ahead(algorithms, matrix, samples, config, rfm):
        searched = searches(algorithms, matrix, samples, scorer, config, rfm)
        if config.algorithm == "auto":
            winner, choice, candidates = choose_algorithm(searched[: len(names)], config)
        else:
            winner = searched[0].chosen(config)
            choice, candidates = list(winner.reasons), [winner]
        baseline = _rfm_baseline(candidates, searched[len(names)] if baseline_names else None, config)
    compared = candidates if config.algorithm == "auto" or baseline is not None else []
    if baseline is not None and baseline not in compared:
        compared = [*compared, baseline]
    leaderboard = [
        {**c.leaderboard_row(), "selected": c is winner, "baseline": c is baseline} for c in compared
    ]
    return _finalise(winner, matrix, samples, scorer, config, leaderboard, choice, rfm)


def _rfm_baseline(
    candidates: list[Candidate], baseline: Search | None, config: ClusteringConfig
) -> Candidate | None:
    """The RFM map's segmentation scored on the candidates' sample: the map's candidate when it is
    one, else the baseline search's choice (the map searched beside the configured algorithms, in
    runs with RFM features); None without RFM features."""
    for candidate in candidates:
        if candidate.algorithm.name == RFM_MAP_ALGORITHM:
            return candidate
    return baseline.chosen(config) if baseline is not None else None


def assign_segments(segmentation: Segmentation, matrix: np.ndarray) -> np.ndarray:
    """Label rows with the existing segments without refitting; rows of the fit keep their label."""
    matrix = _checked_matrix(matrix, allow_empty=True)
    if matrix.shape[1] != segmentation.assigner.n_features:
        raise ValueError(
            f"the segmentation was fitted on {segmentation.assigner.n_features} features, "
            f"the matrix has {matrix.shape[1]}"
        )
    return segmentation.assigner.assign(matrix)


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
    choice: list[str],
    rfm: RfmMap | None,
) -> Segmentation:
    """Extend the chosen fit to every row, number segments by size, and describe the result."""
    algorithm = candidate.algorithm
    fit, own, memory = _extend_to_all_rows(algorithm, candidate.fit, matrix, samples, config, rfm)
    assigned = memory is not None and len(samples.fit_rows) < len(matrix)

    n_own = max(
        int(own.max()) + 1,
        len(fit.medoids) if fit.medoids is not None else 0,
        len(fit.names) if fit.names is not None else 0,
        1,
    )
    sizes = np.bincount(own[own >= 0], minlength=n_own)
    by_size = np.argsort(-sizes, kind="stable")
    by_size = by_size[sizes[by_size] > 0]
    segment_of = np.full(n_own, NOISE_LABEL, dtype=np.int64)
    segment_of[by_size] = np.arange(len(by_size))
    labels = np.where(own >= 0, segment_of[np.maximum(own, 0)], NOISE_LABEL).astype(np.int64)
    # the rule labels rows with its own clusters; merged ones reach their segment through their group
    segment_of_rule = (
        segment_of if fit.groups is None else np.where(fit.groups >= 0, segment_of[fit.groups], NOISE_LABEL)
    )
    remembered_segments = (
        None
        if memory is None
        else FitMemory(
            memory.keys, np.where(memory.labels >= 0, segment_of[np.maximum(memory.labels, 0)], NOISE_LABEL)
        )
    )
    n_segments = len(by_size)
    centers = segment_centres(matrix, labels, n_segments)
    if fit.medoids is not None:
        exemplars = samples.fit_rows[fit.medoids[by_size]]
    else:
        exemplars = _nearest_members(matrix, labels, centers)

    scores = scorer.scores(labels[samples.score_rows], algorithm.measure, near=candidate.distances)
    scores["noise_share"] = float((labels < 0).mean())
    scores["stability"] = candidate.stability
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
        k_search=_json_ready(candidate.search),
        leaderboard=_json_ready(leaderboard),
        choice=choice,
        sampling=sampling,
        dendrogram=dendrogram,
        assigner=SegmentAssigner(concrete(fit.rule), segment_of_rule, matrix.shape[1], remembered_segments),
        names={int(segment_of[own]): fit.names[own] for own in by_size} if fit.names is not None else {},
        rfm=rfm,
        rfm_scores=rfm.scores(matrix) if rfm is not None else None,
    )


def _extend_to_all_rows(
    algorithm: Algorithm,
    fit: Fit,
    matrix: np.ndarray,
    samples: Samples,
    config: ClusteringConfig,
    rfm: RfmMap | None,
) -> tuple[Fit, np.ndarray, FitMemory | None]:
    """The final fit, its own labels for every row, and the fitted rows it must remember (if any).

    Algorithms with a refit fit all rows (their predict reproduces their labels); the others
    keep the sample fit, assign the other rows by its rule, and remember the sample's labels.
    """
    if algorithm.refit is not None and len(samples.fit_rows) < len(matrix):
        fit = algorithm.refit(matrix, fit, algorithm.settings(config, rfm), config.seed)
        return fit, fit.labels, None
    own = np.empty(len(matrix), dtype=np.int64)
    own[samples.fit_rows] = fit.labels
    if algorithm.refit is not None:
        return fit, own, None
    rest = np.setdiff1d(np.arange(len(matrix)), samples.fit_rows)
    if len(rest):
        own[rest] = fit.assign(matrix[rest])
    memory = FitMemory.of(matrix[samples.fit_rows], fit.labels)
    # identical rows get one label, the one assignment gives them (a split may have parted them)
    known, remembered = memory.recall(matrix)
    own[known] = remembered
    return fit, own, memory


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
