"""Scores of labellings of the score sample: silhouette (with Calinski-Harabasz and Davies-Bouldin)
for every method, DBCV for density methods.

A silhouette needs every pair of the sample's distances. They are computed a block of rows at a
time and never held whole (`summed_distances`): a 10,000-row sample's matrix would be 400 MB even as
float32. Every labelling of a search is scored in the same pass, its membership columns side by side
(`segment_distances`); a labelling that differs from a scored one in few rows (the final labels from
the chosen candidate's) is corrected from it (`distances_near`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DBCV_ROWS = 1_000  # DBCV is quadratic in each cluster's size: 0.4 s on this many rows, 1.1 s on 2,000
SILHOUETTE_BLOCK_ROWS = 512  # rows of distances held at once: 40 MB of float64 for a 10,000-row sample
SILHOUETTE_COLUMNS = 1_024  # membership columns summed in one pass: 80 MB of float64 for 10,000 rows
NEAR_SHARE = 0.25  # a labelling differing from a scored one in at most this share of rows is corrected


class SampleScorer:
    """Scores labellings of the score sample. Their silhouettes need every pair's distance; those are
    computed a block of rows at a time and never held whole (`summed_distances`)."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def scores(
        self, labels: np.ndarray, measure: str = "silhouette", near: SegmentDistances | None = None
    ) -> dict:
        """Silhouette, Calinski-Harabasz and Davies-Bouldin on the non-noise rows (of the first
        len(labels) rows of the sample), DBCV when it is the measure; the validity (the measure's
        value) is None if there are fewer than 2 segments. `near`: the distances of a labelling these
        labels differ from in few rows (the chosen candidate's, for the final labels): the silhouette
        is then corrected from them (`distances_near`), not computed in a pass over all distances."""
        return self.scores_of([(labels, measure)], near)[0][0]

    def scores_of(
        self, labelled: list[tuple[np.ndarray, str]], near: SegmentDistances | None = None
    ) -> list[tuple[dict, SegmentDistances | None]]:
        """`scores` of each (labelling, measure), with its segment distances (None without a
        silhouette); their silhouettes from one pass over the sample's distances."""
        from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

        results, silhouetted = [], []
        for labels, measure in labelled:
            rows = self.rows[: len(labels)]
            kept = labels >= 0
            n_segments = len(np.unique(labels[kept]))
            scores = {
                "silhouette": None,
                "calinski_harabasz": None,
                "davies_bouldin": None,
                "noise_share": float(1.0 - kept.mean()) if len(labels) else 0.0,
                "measure": measure,
            }
            if 2 <= n_segments < kept.sum():
                silhouetted.append(len(results))
                scores["calinski_harabasz"] = float(calinski_harabasz_score(rows[kept], labels[kept]))
                scores["davies_bouldin"] = float(davies_bouldin_score(rows[kept], labels[kept]))
                if measure == "dbcv":
                    scores["dbcv"] = density_validity(rows[:DBCV_ROWS], labels[:DBCV_ROWS])
            results.append((scores, None))
        labelings = [labelled[i][0] for i in silhouetted]
        corrected = [distances_near(self.rows, near, labels) for labels in labelings] if near else []
        if not corrected or any(distances is None for distances in corrected):
            corrected = segment_distances(self.rows, labelings)
        for position, distances in zip(silhouetted, corrected, strict=True):
            results[position] = ({**results[position][0], "silhouette": distances.silhouette}, distances)
        for scores, _ in results:
            scores["validity"] = scores.get(scores["measure"])
        return results


def density_validity(rows: np.ndarray, labels: np.ndarray) -> float | None:
    """DBCV of a labelling (noise excluded from the clusters), None with fewer than two clusters."""
    from hdbscan.validity import validity_index

    clusters, sizes = np.unique(labels[labels >= 0], return_counts=True)
    if len(clusters) < 2 or sizes.min() < 2:
        return None
    return float(validity_index(np.ascontiguousarray(rows, dtype=np.float64), labels))


@dataclass(frozen=True)
class SegmentDistances:
    """A labelling of the score sample's first len(labels) rows (noise: label < 0), and every sample
    row's summed distance to each of its segments, in the order of their labels: what its silhouette
    is computed from."""

    labels: np.ndarray
    sums: np.ndarray  # (rows of the sample, segments)

    @property
    def silhouette(self) -> float:
        """The mean silhouette of the labelled rows with label >= 0, as sklearn's silhouette_score
        defines it."""
        kept, own, sizes = _segments(self.labels)
        sums = self.sums[kept]
        positions = np.arange(len(kept))
        within = sums[positions, own] / np.maximum(sizes[own] - 1, 1)
        between = sums / sizes
        between[positions, own] = np.inf
        nearest_other = between.min(axis=1)
        denominator = np.maximum(within, nearest_other)
        silhouette = np.divide(
            nearest_other - within, denominator, out=np.zeros(len(kept)), where=denominator > 0
        )
        silhouette[sizes[own] == 1] = 0.0
        return float(silhouette.mean())


def _distances_to(rows: np.ndarray, squared: np.ndarray, targets: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Every row's Euclidean distance to the rows numbered `targets`, into `out` (n x len(targets)), in
    float64 as |x|^2 + |y|^2 - 2 x.y (`squared`: each row's |x|^2); a row's distance to itself is 0."""
    block = np.matmul(rows, rows[targets].T, out=out)
    block *= -2.0
    block += squared[:, None]
    block += squared[None, targets]
    np.maximum(block, 0.0, out=block)  # rounding can leave a tiny negative square
    np.sqrt(block, out=block)
    block[targets, np.arange(len(targets))] = 0.0
    return block


def summed_distances(rows: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """The rows' Euclidean distance matrix times a matrix of columns (n x m), without holding the
    n x n matrix: the distances to SILHOUETTE_BLOCK_ROWS rows at a time (`_distances_to`), each block
    multiplied at once. The whole matrix of a 10,000-row score sample would be 400 MB even as float32
    (benchmarks/RESULTS.md)."""
    values = np.asarray(rows, dtype=np.float64)
    squared = np.einsum("ij,ij->i", values, values)
    columns = np.asarray(membership, dtype=np.float64)
    sums = np.empty((len(values), columns.shape[1]))
    buffer = np.empty((len(values), min(SILHOUETTE_BLOCK_ROWS, len(values))))
    for start in range(0, len(values), SILHOUETTE_BLOCK_ROWS):
        stop = min(start + SILHOUETTE_BLOCK_ROWS, len(values))
        block = _distances_to(values, squared, np.arange(start, stop), buffer[:, : stop - start])
        np.matmul(block.T, columns, out=sums[start:stop])  # the matrix is symmetric
    return sums


def segment_distances(rows: np.ndarray, labelings: list[np.ndarray]) -> list[SegmentDistances]:
    """Each labelling's segment distances (a labelling of n labels labels the first n rows), from
    `summed_distances` with the labellings' membership columns side by side, not from sklearn's
    per-row reductions: one pass over the distances for all of a run's candidates, more only past
    SILHOUETTE_COLUMNS segments in all."""
    found, batch, columns = [], [], 0
    for labels in labelings:
        n_segments = len(np.unique(labels[labels >= 0]))
        if batch and columns + n_segments > SILHOUETTE_COLUMNS:
            found += _segment_distances_in_one_pass(rows, batch)
            batch, columns = [], 0
        batch.append(labels)
        columns += n_segments
    return found + (_segment_distances_in_one_pass(rows, batch) if batch else [])


def _segments(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A labelling's scored rows (label >= 0), each one's segment as 0..m-1, and the segments' sizes."""
    kept = np.flatnonzero(labels >= 0)
    _, own, sizes = np.unique(labels[kept], return_inverse=True, return_counts=True)
    return kept, own, sizes.astype(np.float64)


def _columns(labels: np.ndarray, n_rows: int) -> np.ndarray:
    """Each of n_rows rows' segment as 0..m-1 (`_segments`), -1 for noise and rows beyond the labels."""
    kept, own, _ = _segments(labels)
    columns = np.full(n_rows, -1, dtype=np.int64)
    columns[kept] = own
    return columns


def _segment_distances_in_one_pass(rows: np.ndarray, labelings: list[np.ndarray]) -> list[SegmentDistances]:
    own = [_columns(labels, len(rows)) for labels in labelings]
    widths = [int(columns.max()) + 1 for columns in own]
    membership = np.zeros((len(rows), sum(widths)))
    first_column = 0
    for columns, width in zip(own, widths, strict=True):
        segmented = np.flatnonzero(columns >= 0)  # rows beyond the labelling and noise: in none
        membership[segmented, first_column + columns[segmented]] = 1.0
        first_column += width
    sums = summed_distances(rows, membership)
    starts = np.cumsum([0, *widths])
    return [
        SegmentDistances(labels, sums[:, start : start + width])
        for labels, start, width in zip(labelings, starts, widths, strict=False)
    ]


def distances_near(rows: np.ndarray, known: SegmentDistances, labels: np.ndarray) -> SegmentDistances | None:
    """The segment distances of `labels` corrected from those of a labelling they differ from in few
    rows: new segments are matched one-to-one to known ones so that they share the most rows, and
    only the distances to the rows whose segment changed are computed, SILHOUETTE_BLOCK_ROWS of them
    at a time. Exact, as a pass would be; None when more than NEAR_SHARE of the rows changed (the
    labellings are not near: a pass scores them)."""
    from scipy.optimize import linear_sum_assignment

    values = np.asarray(rows, dtype=np.float64)
    old, new = _columns(known.labels, len(values)), _columns(labels, len(values))
    n_old, n_new = known.sums.shape[1], int(new.max(initial=-1)) + 1
    both = (old >= 0) & (new >= 0)
    shared = np.bincount(new[both] * n_old + old[both], minlength=n_new * n_old).reshape(n_new, n_old)
    new_matched, old_matched = linear_sum_assignment(shared, maximize=True)
    known_of_new = np.full(n_new, -2)  # an unmatched new segment is no known one (nor noise, -1)
    known_of_new[new_matched] = old_matched
    segmented = new >= 0
    known_segment = np.full(len(values), -1)  # each row's known segment, as its new one is matched
    known_segment[segmented] = known_of_new[new[segmented]]
    changed = np.flatnonzero(known_segment != old)
    if len(changed) > NEAR_SHARE * len(values):
        return None
    sums = np.zeros((len(values), n_new))
    sums[:, new_matched] = known.sums[:, old_matched]
    moved = np.zeros((len(changed), n_new))  # + the segment a changed row joined, - the one it left
    joined = new[changed] >= 0
    moved[np.flatnonzero(joined), new[changed][joined]] = 1.0
    new_of_old = np.full(n_old, -1)
    new_of_old[old_matched] = new_matched
    left = np.full(len(changed), -1)
    was_segmented = old[changed] >= 0
    left[was_segmented] = new_of_old[old[changed][was_segmented]]
    moved[np.flatnonzero(left >= 0), left[left >= 0]] = -1.0
    squared = np.einsum("ij,ij->i", values, values)
    buffer = np.empty((len(values), min(SILHOUETTE_BLOCK_ROWS, len(changed))))
    for start in range(0, len(changed), SILHOUETTE_BLOCK_ROWS):
        block = changed[start : start + SILHOUETTE_BLOCK_ROWS]
        distances = _distances_to(values, squared, block, buffer[:, : len(block)])
        sums += distances @ moved[start : start + len(block)]
    return SegmentDistances(labels, sums)
