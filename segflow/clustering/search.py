"""Samples and the choice of a candidate (k, or a density method's scale) and of an algorithm.

- Sampling. One seeded permutation of the rows gives two nested samples: the fit sample (the
  first `fit_sample_size` rows) and the score sample (the first `sample_size` rows). Every
  candidate is fitted on the fit sample and scored on the score sample, so candidates are compared
  on the same rows; every algorithm's candidates are scored together, in one pass over the sample's
  distances.
- Validity. Silhouette judges partitioning and hierarchical methods; DBCV (the density-based
  clustering validity index of Moulavi et al. 2014, `hdbscan.validity`) judges density methods,
  whose clusters may be any shape (silhouette punishes two moons found exactly). Each candidate's
  margin is its validity above its measure's minimum (the gate's), so families compete fairly.
- Bounds. A candidate competes when its number of segments lies in [min_segments, max_segments],
  its segment shares in [min_segment_share, max_segment_share], its noise within max_noise_share
  and its validity at least its measure's minimum; density clusters beyond max_segments are first
  merged (`merged_to`). When no candidate is within bounds, all compete (the gate then says why
  the result is refused). Without the validity floor, a candidate just below it could win on
  stability and segments against one just above, and the gate would refuse a run it need not.
- Choice. Among the candidates within `score_margin` of the best margin, the most stable wins
  (adjusted Rand index of refits on subsamples of the fit sample, computed only for these
  contenders, compared to one decimal); then the one with more segments (as stable and as valid,
  it tells the marketer more), then the simpler algorithm. Contenders below `min_stability` drop
  out and the next best compete. On skewed data silhouette alone peaks at the fewest segments;
  stability and the bounds keep the choice actionable. Every choice comes with the reasons it was
  made, for the report and `segmentation_runs.details`. Agglomerative's refits are linked ahead,
  on another core, as the search starts (`stability_refits_ahead`, `segflow.clustering.linkages`).
- Auto. Each algorithm's chosen candidate competes as its candidates did. An algorithm whose best
  margin is more than `score_margin` below a chosen one cannot be among the first contenders: its
  stability is measured only if they all prove unstable (`choose_algorithm`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from segflow.clustering.assignment import Fit, segment_centres
from segflow.clustering.hierarchical import cut_linkage, weighted_ward
from segflow.clustering.registry import SIMPLICITY, Algorithm, Key
from segflow.clustering.scoring import SampleScorer, SegmentDistances
from segflow.config import ClusteringConfig
from segflow.errors import SegflowError
from segflow.rfm import RfmMap
from segflow.tables import NOISE_LABEL

STABILITY_SHARE = 0.8  # each stability refit sees this share of the fit sample


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


def merged_to(fit: Fit, rows: np.ndarray, max_segments: int) -> Fit:
    """A fit with at most max_segments clusters: beyond it, clusters are joined by Ward's criterion on
    their centres weighted by their sizes (the cheapest merges first), noise kept as noise."""
    own = fit.labels
    n_own = int(own.max()) + 1 if (own >= 0).any() else 0
    if n_own <= max_segments:
        return fit
    kept = own >= 0
    sizes = np.bincount(own[kept], minlength=n_own)
    groups = cut_linkage(weighted_ward(segment_centres(rows, own, n_own), sizes), max_segments)
    labels = np.where(kept, groups[np.maximum(own, 0)], NOISE_LABEL)
    return replace(fit, labels=labels, groups=groups, params={**fit.params, "merged_from": n_own})


@dataclass
class Candidate:
    """One candidate (k, or a density scale) of one algorithm, fitted on the fit sample and scored."""

    algorithm: Algorithm
    key: Key
    fit: Fit
    scores: dict
    segment_sizes: list[int]
    within_bounds: bool
    floor: float  # the minimum its validity measure must reach
    stability: float | None = None
    stability_measured: bool = False
    reasons: list[str] = field(default_factory=list)  # why it was chosen, when it was
    search: list[dict] = field(default_factory=list)  # every candidate of its algorithm
    distances: SegmentDistances | None = None  # its labels' on the score sample, when scored

    @property
    def validity(self) -> float | None:
        return self.scores["validity"]

    @property
    def margin(self) -> float | None:
        return None if self.validity is None else self.validity - self.floor

    @property
    def n_segments(self) -> int:
        return len(self.segment_sizes)

    def describe(self) -> str:
        """The candidate in words, e.g. 'kmeans k=4 (silhouette 0.275, stability 0.99, 4 segments)'."""
        key = f"k={self.key}" if self.algorithm.takes_k else _params_text(self.fit.params)
        validity = "n/a" if self.validity is None else f"{self.validity:.3f}"
        stability = "" if self.stability is None else f", stability {self.stability:.2f}"
        shares = ""
        if self.segment_sizes:
            total = sum(self.segment_sizes) / max(1.0 - self.scores["noise_share"], 1e-9)
            shares = f", {self.segment_sizes[-1] / total:.0%}-{self.segment_sizes[0] / total:.0%} each"
        noise = f", {self.scores['noise_share']:.0%} noise" if self.scores["noise_share"] else ""
        return (
            f"{self.algorithm.name} {key} ({self.scores['measure']} {validity}{stability}, "
            f"{self.n_segments} segments{shares}{noise})"
        )

    def search_row(self) -> dict:
        return {
            **({"k": self.key} if self.algorithm.takes_k else {"scale": self.key, "params": self.fit.params}),
            "n_segments": self.n_segments,
            **{
                name: self.scores.get(name)
                for name in ("silhouette", "dbcv", "calinski_harabasz", "davies_bouldin")
            },
            "noise_share": self.scores["noise_share"],
            "stability": self.stability,
            "within_bounds": self.within_bounds,
        }

    def leaderboard_row(self) -> dict:
        return {
            "algorithm": self.algorithm.name,
            "family": self.algorithm.family,
            "params": self.fit.params,
            "scores": {**self.scores, "stability": self.stability},
            "noise_share": self.scores["noise_share"],
            "segment_sizes": self.segment_sizes,
        }


def _params_text(params: dict) -> str:
    shown = {k: v for k, v in params.items() if k in ("eps", "min_cluster_size", "xi", "merged_from")}
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


@dataclass
class Search:
    """An algorithm's candidates, fitted on the fit sample and scored; `stability_of` refits them."""

    algorithm: Algorithm
    candidates: list[Candidate]
    stability_of: Callable[[list[Candidate]], list[float | None]]

    @property
    def best_margin(self) -> float:
        """The best validity margin of its competing candidates: its choice cannot do better."""
        return max((c.margin for c in competing(self.candidates)[0]), default=-np.inf)

    def chosen(self, config: ClusteringConfig) -> Candidate:
        """Its candidate, chosen as `choose` does (measuring the stability of its contenders)."""
        chosen = choose(self.candidates, config, self.stability_of)
        chosen.search = [candidate.search_row() for candidate in self.candidates]
        return chosen

    def unmeasured_best(self) -> Candidate:
        """Its best-scoring competing candidate, stability not measured, to be listed next to the
        winner."""
        best = max(competing(self.candidates)[0], key=lambda c: c.margin)
        best.search = [candidate.search_row() for candidate in self.candidates]
        return best


@dataclass
class Fitted:
    """An algorithm's candidates fitted on the fit sample, and their labels on the score sample."""

    algorithm: Algorithm
    rows: np.ndarray  # the fit sample
    settings: dict
    fits: dict[Key, Fit]
    labelings: list[np.ndarray]


def fit_candidates(
    algorithm: Algorithm,
    matrix: np.ndarray,
    samples: Samples,
    config: ClusteringConfig,
    rfm: RfmMap | None = None,
) -> Fitted:
    """Fit an algorithm's candidates on the fit sample and label the score sample with each."""
    rows = matrix[samples.fit_rows]
    keys = algorithm.candidates(rows, config)
    if not keys:
        raise SegflowError(
            f"{algorithm.name} needs at least {config.k[0] + 1} rows for k >= {config.k[0]}; "
            f"the matrix has {len(rows)}"
        )
    settings = algorithm.settings(config, rfm)
    # The sample is small: OpenMP's thread start-up and barriers cost more than they save (40x
    # slower k-means on a busy 2-core machine), so the search runs on one OpenMP thread.
    with threadpool_limits(limits=1, user_api="openmp"):
        fits = algorithm.fit(rows, keys, settings, config.seed)
    if not fits:  # e.g. BIRCH summing a few rows into fewer subclusters than the smallest k
        raise SegflowError(
            f"{algorithm.name} found no candidate with {config.k[0]} to {config.k[1]} segments in the "
            f"{len(rows)} rows of the fit sample"
        )
    if algorithm.family != "map":  # the map's cells are named: never merged
        fits = {key: merged_to(fit, rows, config.max_segments) for key, fit in fits.items()}
    # a density candidate is scored on the rows it was fitted on: its rule (HDBSCAN's prediction
    # data, ~1 s) is then built only for the chosen one
    labelings = [
        fit.labels[: samples.overlap]
        if algorithm.family == "density"
        else _score_sample_labels(fit, matrix, samples)
        for fit in fits.values()
    ]
    return Fitted(algorithm, rows, settings, fits, labelings)


@contextmanager
def stability_refits_ahead(
    algorithms: list[Algorithm],
    matrix: np.ndarray,
    samples: Samples,
    config: ClusteringConfig,
    rfm: RfmMap | None = None,
) -> Iterator[None]:
    """While the block searches and chooses: the stability refits that can start on another core
    as the search starts (`Algorithm.refits_ahead`: agglomerative's linkages of the subsamples)."""
    rows = matrix[samples.fit_rows]
    subsamples = [rows[subsample] for subsample in stability_subsamples(len(rows), config)]
    with ExitStack() as stack:
        for algorithm in algorithms:
            if algorithm.refits_ahead is not None and subsamples:
                stack.enter_context(algorithm.refits_ahead(subsamples, algorithm.settings(config, rfm)))
        yield


def searches(
    algorithms: list[Algorithm],
    matrix: np.ndarray,
    samples: Samples,
    scorer: SampleScorer,
    config: ClusteringConfig,
    rfm: RfmMap | None = None,
) -> list[Search]:
    """Each algorithm's search: its candidates fitted, then every algorithm's candidates scored
    together (one pass over the score sample's distances for all their silhouettes)."""
    fitted = [fit_candidates(algorithm, matrix, samples, config, rfm) for algorithm in algorithms]
    labelled = [(labels, each.algorithm.measure) for each in fitted for labels in each.labelings]
    scored = iter(scorer.scores_of(labelled))
    return [_scored(each, [next(scored) for _ in each.labelings], config) for each in fitted]


def _scored(
    fitted: Fitted, scored: list[tuple[dict, SegmentDistances | None]], config: ClusteringConfig
) -> Search:
    algorithm = fitted.algorithm
    floor = config.min_dbcv if algorithm.measure == "dbcv" else config.min_silhouette
    candidates = []
    for (key, fit), labels, (scores, distances) in zip(
        fitted.fits.items(), fitted.labelings, scored, strict=True
    ):
        sizes = _sizes(labels)
        # the map's cells are the fixed vocabulary: they are not held to the bounds
        within = algorithm.family == "map" or within_bounds(sizes, len(labels), scores["noise_share"], config)
        candidate = Candidate(algorithm, key, fit, scores, sizes, within, floor, distances=distances)
        candidates.append(candidate)
    rows, settings = fitted.rows, fitted.settings

    def stability_of(contenders: list[Candidate]) -> list[float | None]:
        return refit_stability(algorithm, rows, contenders, settings, config)

    return Search(algorithm, candidates, stability_of)


def stability_subsamples(n_rows: int, config: ClusteringConfig) -> list[np.ndarray]:
    """The rows of the fit sample each stability refit sees, sorted: `stability_resamples` seeded
    draws of STABILITY_SHARE of its `n_rows` rows."""
    rng = np.random.default_rng([config.seed, n_rows])
    size = max(3, int(STABILITY_SHARE * n_rows))
    return [np.sort(rng.choice(n_rows, size, replace=False)) for _ in range(config.stability_resamples)]


def refit_stability(
    algorithm: Algorithm,
    rows: np.ndarray,
    contenders: list[Candidate],
    settings: dict,
    config: ClusteringConfig,
) -> list[float | None]:
    """Per contender, the mean adjusted Rand index between its labels and refits of the same candidate
    on `stability_resamples` random subsamples of the fit sample (noise counts as its own label). Each
    subsample refits every contender in one call (one linkage serves every k of a hierarchy)."""
    from sklearn.metrics import adjusted_rand_score

    if config.stability_resamples == 0:
        return [None] * len(contenders)
    agreements: list[list[float]] = [[] for _ in contenders]
    keys = [candidate.key for candidate in contenders]
    with threadpool_limits(limits=1, user_api="openmp"):
        for round_, subsample in enumerate(stability_subsamples(len(rows), config)):
            refits = algorithm.fit(rows[subsample], keys, settings, config.seed + round_ + 1)
            for position, candidate in enumerate(contenders):
                if candidate.key not in refits:
                    agreements[position].append(0.0)
                    continue
                refit = merged_to(refits[candidate.key], rows[subsample], config.max_segments)
                agreements[position].append(
                    adjusted_rand_score(candidate.fit.labels[subsample], refit.labels)
                )
    return [float(np.mean(found)) for found in agreements]


def _score_sample_labels(fit: Fit, matrix: np.ndarray, samples: Samples) -> np.ndarray:
    """The fit's labels on the score sample: its own where they overlap, its rule beyond."""
    beyond = samples.score_rows[samples.overlap :]
    assigned = fit.assign(matrix[beyond]) if len(beyond) else np.empty(0, dtype=np.int64)
    return np.concatenate([fit.labels[: samples.overlap], assigned])


def _sizes(labels: np.ndarray) -> list[int]:
    """The sizes of the segments the labels use, largest first (a map's empty cells are no segment)."""
    _, sizes = np.unique(labels[labels >= 0], return_counts=True)
    return sorted(sizes.tolist(), reverse=True)


def within_bounds(sizes: list[int], n_rows: int, noise_share: float, config: ClusteringConfig) -> bool:
    """Whether a labelling has an actionable number of segments, each of a usable share of the scored
    rows, and not too much noise."""
    return (
        config.min_segments <= len(sizes) <= config.max_segments
        and sizes[-1] >= config.min_segment_share * n_rows
        and sizes[0] <= config.max_segment_share * n_rows
        and noise_share <= config.max_noise_share
    )


def competing(candidates: list[Candidate]) -> tuple[list[Candidate], list[str]]:
    """The candidates that compete, and why others do not: the scored ones within the bounds and
    reaching their validity minimum, or, where none does, the best there are."""
    scored = [c for c in candidates if c.margin is not None]
    within = [c for c in scored if c.within_bounds]
    pool = within or scored
    reasons = [] if within or not scored else ["no candidate was within the bounds; the best of all competed"]
    valid = [c for c in pool if c.margin >= 0]
    if valid:
        pool = valid
    elif pool:
        reasons.append("no candidate reached its validity minimum; the best of them competed")
    return pool, reasons


def choose(
    candidates: list[Candidate],
    config: ClusteringConfig,
    stability_of: Callable[[list[Candidate]], list[float | None]],
) -> Candidate:
    """The candidate with the best validity margin that is stable enough; within `score_margin` of
    the best, the most stable, then the more segments, then the simpler algorithm. A candidate below
    its validity minimum competes only when none reaches it (the gate would refuse it). Its `reasons`
    say why it won."""
    pool, reasons = competing(candidates)
    if not pool:  # the gate will refuse it, saying how many segments it found
        winner = max(candidates, key=lambda c: c.n_segments)
        described = "; ".join(c.describe() for c in candidates)
        winner.reasons = [f"no candidate gave two or more segments: {described}"]
        return winner
    dropped: list[Candidate] = []
    while pool:
        best = max(c.margin for c in pool)
        contenders = [c for c in pool if c.margin >= best - config.score_margin]
        unmeasured = [c for c in contenders if not c.stability_measured]
        for candidate, stability in zip(
            unmeasured, stability_of(unmeasured) if unmeasured else [], strict=True
        ):
            candidate.stability, candidate.stability_measured = stability, True
        stable = [c for c in contenders if c.stability is None or c.stability >= config.min_stability]
        if stable:
            winner = min(
                stable,
                key=lambda c: (-round(c.stability or 0.0, 1), -c.n_segments, SIMPLICITY[c.algorithm.name]),
            )
            winner.reasons = [*reasons, *_why(winner, contenders, dropped, config)]
            return winner
        dropped += contenders
        pool = [c for c in pool if c not in contenders]
    winner = max(dropped, key=lambda c: (c.stability or 0.0, c.margin))
    winner.reasons = [
        *reasons,
        f"no candidate reached stability {config.min_stability:g}; the most stable is kept",
    ]
    return winner


def _why(
    winner: Candidate, contenders: list[Candidate], dropped: list[Candidate], config: ClusteringConfig
) -> list[str]:
    """Why a candidate won, in sentences."""
    others = [c for c in contenders if c is not winner]
    reasons = [f"chose {winner.describe()}"]
    if others:
        reasons.append(
            f"within {config.score_margin:g} of the best {winner.scores['measure']} margin it was the most "
            "stable, then the one with more segments, then the simpler algorithm, against "
            + "; ".join(c.describe() for c in others)
        )
    else:
        reasons.append(f"it had the best {winner.scores['measure']} above its minimum {winner.floor:g}")
    if dropped:
        reasons.append(
            f"better scoring but unstable (below {config.min_stability:g}): "
            + "; ".join(c.describe() for c in dropped)
        )
    return reasons


def choose_algorithm(
    searches: list[Search], config: ClusteringConfig
) -> tuple[Candidate, list[str], list[Candidate]]:
    """`auto`: each algorithm's chosen candidate competes as its own candidates did. Returns the
    winner, why it won (its algorithm's reasons, then auto's), and each algorithm's candidate.

    Stability refits are the search's dearest part (about half of it at 100,000 customers), so an
    algorithm is chosen (its contenders refitted) only if it can be among auto's first contenders:
    its best margin is within `score_margin` of the best chosen candidate that is within the bounds
    and valid. The others are listed by their best candidate, stability not measured. Should every
    first contender prove unstable, the others are chosen too and all compete again, so the winner
    is the one choosing every algorithm would give.
    """
    chosen: dict[int, Candidate] = {}
    bar = None  # the best margin of a chosen candidate within the bounds and valid
    for position in sorted(range(len(searches)), key=lambda p: -searches[p].best_margin):
        # one without a scored candidate is chosen as it is, without refits
        if bar is not None and -np.inf < searches[position].best_margin < bar - config.score_margin:
            continue
        candidate = chosen[position] = searches[position].chosen(config)
        if candidate.within_bounds and candidate.margin is not None and candidate.margin >= 0:
            bar = candidate.margin if bar is None else max(bar, candidate.margin)
    own_reasons = {position: list(candidate.reasons) for position, candidate in chosen.items()}
    unmeasured = {p: search.unmeasured_best() for p, search in enumerate(searches) if p not in chosen}
    # in the configured order, as refitting every algorithm would list them
    winner = choose_among_algorithms([chosen[p] for p in sorted(chosen)], config, list(unmeasured.values()))
    stable = winner.stability is None or winner.stability >= config.min_stability
    if unmeasured and not (stable and winner.margin >= bar - config.score_margin):
        for position in unmeasured:  # the first contenders gave no stable winner
            chosen[position] = searches[position].chosen(config)
            own_reasons[position] = list(chosen[position].reasons)
        unmeasured = {}
        winner = choose_among_algorithms([chosen[p] for p in sorted(chosen)], config)
    listed = [chosen.get(position) or unmeasured[position] for position in range(len(searches))]
    position = next(p for p, candidate in chosen.items() if candidate is winner)
    choice = [*own_reasons[position], *(f"auto: {reason}" for reason in winner.reasons[1:])]
    return winner, choice, listed


def choose_among_algorithms(
    candidates: list[Candidate], config: ClusteringConfig, out_of_contention: list[Candidate] = ()
) -> Candidate:
    """The algorithms' chosen candidates compete as their own candidates did (their stability is
    already measured); the winner's reasons also name how the others fell short, those out of
    contention (`choose_algorithm`) said to be so."""
    winner = choose(candidates, config, lambda unmeasured: [c.stability for c in unmeasured])

    def shortfall(candidate: Candidate) -> str:
        if candidate.margin is None:
            return candidate.describe()
        return f"{candidate.describe()}, {candidate.scores['measure']} margin {candidate.margin:+.3f}"

    others = [c for c in candidates if c is not winner]
    if others:
        winner.reasons.append("the other algorithms: " + "; ".join(shortfall(c) for c in others))
    if out_of_contention:
        winner.reasons.append(
            f"not in contention (best margin more than {config.score_margin:g} below the winner's; "
            "stability not measured): " + "; ".join(shortfall(c) for c in out_of_contention)
        )
    return winner
