"""Clustering stage: planted segments are found, assignment is consistent, choices follow the rules."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from dataclasses import replace
from functools import cache
from typing import get_args

import hdbscan
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy.cluster.hierarchy import fcluster, is_monotonic, is_valid_linkage, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.datasets import load_iris, load_wine, make_blobs, make_circles, make_moons
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.preprocessing import StandardScaler

import segflow.clustering.scoring as scoring_module
from segflow.clustering import ALGORITHMS, assign_segments, assignment, fit_segmentation
from segflow.clustering.assignment import Fit, HdbscanApproximatePredict, NearestCentre
from segflow.clustering.density import without_small_clusters
from segflow.clustering.diana import diana
from segflow.clustering.hierarchical import cut_linkage, weighted_ward
from segflow.clustering.scoring import SampleScorer, distances_near, segment_distances, summed_distances
from segflow.clustering.search import (
    Candidate,
    Samples,
    Search,
    choose,
    choose_algorithm,
    choose_among_algorithms,
    merged_to,
    searches,
    within_bounds,
)
from segflow.config import ClusteringConfig, GateConfig
from segflow.errors import SegflowError
from segflow.tasks import cluster

K_ALGORITHMS = ["kmeans", "kmedoids", "clarans", "birch", "agglomerative", "diana"]
DENSITY_ALGORITHMS = ["dbscan", "hdbscan", "optics"]


@cache
def customers(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Six planted segments (10:1 in size), each stretched differently along every feature.

    Over seeds 0-9 every k algorithm reaches ARI >= 0.9 at k=6 except DIANA on one seed (it
    splits the widest cluster first, and a stretched large segment can be wider than the gap
    between two small ones); with 18:1 sizes k-medoids prefers a non-planted optimum on 3 of 8.
    """
    sizes, n_features = (1000, 600, 400, 250, 150, 100), 6
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-12, 12, (len(sizes), n_features))
    while min(pdist(centres)) < 9.0:
        centres = rng.uniform(-12, 12, (len(sizes), n_features))
    features, planted = make_blobs(n_samples=list(sizes), centers=centres, random_state=seed)
    for segment in range(len(sizes)):
        members = planted == segment
        stretch = np.diag(rng.uniform(0.5, 1.5, n_features))
        features[members] = (features[members] - centres[segment]) @ stretch + centres[segment]
    features *= rng.uniform(0.5, 50.0, n_features)
    return StandardScaler().fit_transform(features), planted


@cache
def shapes_with_noise(shape: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two moons or two circles plus 10% uniform noise (planted label -1)."""
    if shape == "moons":
        points, planted = make_moons(1500, noise=0.06, random_state=seed)
    else:
        points, planted = make_circles(1500, noise=0.04, factor=0.45, random_state=seed)
    rng = np.random.default_rng(seed)
    noise = rng.uniform(points.min(axis=0) - 0.3, points.max(axis=0) + 0.3, size=(150, 2))
    features = np.vstack([points, noise])
    return StandardScaler().fit_transform(features), np.concatenate([planted, np.full(150, -1)])


# ----------------------------------------------------------------------------- the registry


def test_registry_has_one_entry_per_configurable_algorithm():
    configurable = set(get_args(ClusteringConfig.model_fields["algorithm"].annotation)) - {"auto"}
    assert set(ALGORITHMS) == configurable
    for entry in ALGORITHMS.values():
        assert set(entry.params) <= set(ClusteringConfig.model_fields)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"auto_candidates": ["kmeans", "auto"]}, "auto_candidates"),
        ({"auto_candidates": []}, "auto_candidates"),
        ({"fit_sample_size": 50_000}, "fit_sample_size"),
        ({"linkage": "centroid"}, "linkage"),
        ({"k": [5, 3]}, "k must be"),
        ({"min_samples": 1}, "min_samples"),
        ({"knn": 3}, "knn"),
    ],
)
def test_config_rejects_bad_values_naming_the_key(override, message):
    with pytest.raises(ValidationError, match=message):
        ClusteringConfig(**override)


def test_bad_matrices_are_rejected_with_the_position():
    features, _ = customers()
    broken = features.copy()
    broken[7, 2] = np.nan
    with pytest.raises(ValueError, match="row 7, column 2"):
        fit_segmentation(broken, ClusteringConfig(algorithm="kmeans"))
    segmentation = fit_segmentation(features, ClusteringConfig(algorithm="kmeans", k=(6, 6)))
    with pytest.raises(ValueError, match="fitted on 6 features"):
        assign_segments(segmentation, features[:, :3])
    assert assign_segments(segmentation, features[:0]).shape == (0,)


# ----------------------------------------------------------------------------- DIANA

# Worked by hand (Kaufman & Rousseeuw's splinter procedure) for objects a..e:
#   average dissimilarity to the others: a 27/4, b 24/4, c 20/4, d 26/4, e 25/4 -> a splinters;
#   then rest-minus-splinter averages: b 22/3-2 = 5.33 > 0 moves; next c -1, d -6, e -4.5 stop.
#   Split 1 at diameter 10: {a,b} | {c,d,e}. {c,d,e} (diameter 5) splits next: c averages 4.5,
#   d 3.5, e 4 -> c splinters; d: 3-4 < 0, e: 3-5 < 0 stop -> {c} | {d,e}. Then {d,e} at 3, {a,b} at 2.
FIVE_OBJECTS = np.array(
    [
        [0, 2, 6, 10, 9],
        [2, 0, 5, 9, 8],
        [6, 5, 0, 4, 5],
        [10, 9, 4, 0, 3],
        [9, 8, 5, 3, 0],
    ],
    dtype=float,
)


def partition(labels) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == label).tolist()) for label in np.unique(labels)}


def test_diana_matches_the_hand_worked_example():
    hierarchy = diana(FIVE_OBJECTS, 5)
    a, b, c, d, e = range(5)
    assert partition(hierarchy.labels(2)) == {frozenset({a, b}), frozenset({c, d, e})}
    assert partition(hierarchy.labels(3)) == {frozenset({a, b}), frozenset({c}), frozenset({d, e})}
    assert partition(hierarchy.labels(4)) == {
        frozenset({a, b}),
        frozenset({c}),
        frozenset({d}),
        frozenset({e}),
    }
    assert len(partition(hierarchy.labels(5))) == 5
    assert [split.diameter for split in hierarchy.splits] == [10.0, 5.0, 3.0, 2.0]
    merges = hierarchy.linkage()
    assert is_valid_linkage(merges) and is_monotonic(merges)
    assert merges[:, 2].tolist() == [2.0, 3.0, 5.0, 10.0]


def test_diana_splits_two_separated_groups_in_the_plane():
    points = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10], [30, 30]], dtype=float)
    hierarchy = diana(squareform(pdist(points)), 3)
    assert partition(hierarchy.labels(2)) == {frozenset({0, 1, 2, 3, 4, 5}), frozenset({6})}
    assert partition(hierarchy.labels(3)) == {frozenset({0, 1, 2}), frozenset({3, 4, 5}), frozenset({6})}


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_diana_divisions_are_nested_with_falling_diameters(n_objects, seed):
    points = np.random.default_rng(seed).normal(size=(n_objects, 3))
    hierarchy = diana(squareform(pdist(points)), n_objects)
    assert hierarchy.max_clusters == n_objects
    for k in range(2, n_objects + 1):
        coarse, fine = hierarchy.labels(k - 1), hierarchy.labels(k)
        assert len(np.unique(fine)) == k
        for members in partition(fine):
            assert len(np.unique(coarse[list(members)])) == 1
    diameters = [split.diameter for split in hierarchy.splits]
    assert diameters == sorted(diameters, reverse=True)
    assert is_valid_linkage(hierarchy.linkage())


# ----------------------------------------------------------------------------- building blocks


def test_weighted_ward_is_scipys_ward_with_unit_weights_and_replicated_rows_with_weights():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(120, 4))
    merges = weighted_ward(points, np.ones(len(points)))
    assert is_valid_linkage(merges) and is_monotonic(merges)
    np.testing.assert_allclose(merges[:, 2], linkage(points, "ward")[:, 2], atol=1e-9)
    weights = rng.integers(1, 6, len(points))
    replicated = linkage(np.repeat(points, weights, axis=0), "ward")
    weighted = weighted_ward(points, weights)
    for k in (2, 3, 5, 8):
        expected = cut_linkage(replicated, k)[np.cumsum(weights) - 1]
        assert adjusted_rand_score(expected, cut_linkage(weighted, k)) == 1.0


def test_cut_linkage_gives_the_same_partitions_as_scipy():
    points = np.random.default_rng(1).normal(size=(300, 4))
    merges = linkage(points, "ward")
    for k in (2, 3, 7, 20):
        labels = cut_linkage(merges, k)
        assert len(np.unique(labels)) == k
        assert adjusted_rand_score(fcluster(merges, k, "maxclust"), labels) == 1.0


def silhouettes(rows, labellings):
    return [distances.silhouette for distances in segment_distances(rows, labellings)]


def test_silhouettes_of_several_labellings_match_sklearn_each_with_noise_excluded():
    features, _ = customers()
    rows = features[:1500]
    with_noise = NearestCentre(rows[[0, 400, 900]])(rows)
    with_noise[::17] = -1
    five = NearestCentre(rows[[0, 300, 600, 900, 1200]])(rows)
    first_rows = NearestCentre(rows[[0, 400]])(rows[:700])  # labels only the first 700 rows
    first_with_noise = NearestCentre(rows[[0, 300, 600]])(rows[:900])  # a density candidate's kind
    first_with_noise[::11] = -1
    labellings = [with_noise, five, first_rows, first_with_noise]
    expected = [
        silhouette_score(rows[: len(labels)][labels >= 0], labels[labels >= 0]) for labels in labellings
    ]
    assert silhouettes(rows, labellings) == pytest.approx(expected, abs=1e-9)
    assert silhouettes(rows, []) == []


def test_silhouettes_past_one_pass_of_columns_are_those_of_one_pass(monkeypatch):
    features, _ = customers()
    rows = features[:800]
    labellings = [NearestCentre(rows[: 50 * k : 50])(rows) for k in (2, 3, 5, 8, 4)]
    in_one_pass = silhouettes(rows, labellings)
    monkeypatch.setattr(scoring_module, "SILHOUETTE_COLUMNS", 6)  # passes of (2, 3), (5), (8), (4) columns
    assert silhouettes(rows, labellings) == pytest.approx(in_one_pass, abs=1e-12)
    assert in_one_pass == pytest.approx([silhouette_score(rows, labels) for labels in labellings], abs=1e-9)


def test_distances_of_a_labelling_near_a_scored_one_are_those_a_pass_gives(monkeypatch):
    features, _ = customers()
    rows = features[:1500]
    rng = np.random.default_rng(8)
    known_labels = NearestCentre(rows[[0, 300, 600, 900, 1200]])(rows)
    known_labels[::23] = -1  # noise
    [known] = segment_distances(rows, [known_labels])
    renumbered = np.where(known_labels >= 0, (known_labels + 3) % 5 * 10, -1)  # other label values
    moved = renumbered.copy()
    changed = rng.choice(1500, 60, replace=False)
    moved[changed[:40]] = rng.choice([0, 10, 20, 30, 40], 40)  # to another segment
    moved[changed[40:50]] = -1  # to noise
    moved[np.flatnonzero(known_labels < 0)[:10]] = 20  # out of noise
    split = moved.copy()
    split[np.flatnonzero(moved == 10)[:30]] = 77  # a segment the known labelling has not
    merged = np.where(moved == 40, 30, moved)  # one segment fewer
    shorter = moved[:1400]  # labels only the first 1400 rows
    [passed_moved] = segment_distances(rows, [moved])
    for labels in (renumbered, moved, split, merged, shorter):
        near = distances_near(rows, known, labels)
        [passed] = segment_distances(rows, [labels])
        np.testing.assert_allclose(near.sums, passed.sums, rtol=1e-10, atol=1e-8)
        kept = labels >= 0
        expected = silhouette_score(rows[: len(labels)][kept], labels[kept])
        assert near.silhouette == pytest.approx(expected, abs=1e-9)
    far = NearestCentre(rows[[100, 500, 1000]])(rows)  # most rows in other segments
    assert distances_near(rows, known, far) is None
    monkeypatch.setattr(scoring_module, "SILHOUETTE_BLOCK_ROWS", 128)  # changed rows, a block at a time
    few = np.full(1500, -1)
    few[:300] = known_labels[:300]  # mostly noise
    [sparse] = segment_distances(rows, [few])
    [noise] = segment_distances(rows, [np.full(1500, -1)])
    assert distances_near(rows, sparse, np.full(1500, -1)).sums.shape == (1500, 0)  # all noise
    np.testing.assert_allclose(distances_near(rows, noise, few).sums, sparse.sums, atol=1e-8)  # 3 blocks
    np.testing.assert_allclose(distances_near(rows, known, moved).sums, passed_moved.sums, atol=1e-8)
    scorer = SampleScorer(rows)
    assert scorer.scores(far, near=known)["silhouette"] == pytest.approx(
        silhouette_score(rows, far), abs=1e-9
    )

    def no_pass(rows, labellings):
        raise AssertionError("a labelling near a scored one was scored in a pass")

    monkeypatch.setattr(scoring_module, "segment_distances", no_pass)
    assert scorer.scores(moved, near=known)["silhouette"] == pytest.approx(
        silhouette_score(rows[moved >= 0], moved[moved >= 0]), abs=1e-9
    )


def test_distances_are_summed_block_by_block_as_the_whole_matrix_sums_them():
    rows = np.random.default_rng(5).normal(size=(1300, 6))  # blocks of 512, 512 and 276 rows
    rows[7] = rows[3]  # a repeated row: its distance to its twin is 0
    columns = np.random.default_rng(6).random((1300, 4))
    expected = squareform(pdist(rows)) @ columns
    np.testing.assert_allclose(summed_distances(rows, columns), expected, rtol=1e-10, atol=1e-8)
    single = summed_distances(rows[:1], np.ones((1, 1)))  # one row: the distance to itself only
    assert single.tolist() == [[0.0]]


def test_the_score_sample_is_scored_as_sklearn_scores_it():
    features, _ = customers()
    rows = features[:2000]
    labels = NearestCentre(rows[[0, 400, 900, 1500]])(rows)
    assert SampleScorer(rows).scores(labels)["silhouette"] == pytest.approx(
        silhouette_score(rows, labels), abs=1e-9
    )


def option(
    name: str,
    validity: float | None,
    key: int = 3,
    stability: float | None = None,
    within: bool = True,
    noise_share: float = 0.0,
    sizes: tuple[int, ...] | None = None,
) -> Candidate:
    """A scored candidate as the search makes it (key segments of equal size unless given), its
    stability already measured."""
    sizes = sizes or (100,) * key
    algorithm = ALGORITHMS[name]
    fit = Fit(np.zeros(3, dtype=np.int64), NearestCentre(np.zeros((1, 2))), {"k": key})
    scores = {
        "silhouette": None,
        "noise_share": noise_share,
        "measure": algorithm.measure,
        "validity": validity,
    }
    floor = 0.2 if algorithm.measure == "dbcv" else 0.25
    return Candidate(algorithm, key, fit, scores, list(sizes), within, floor, stability, True)


def chosen(options: list[Candidate], **settings) -> Candidate:
    config = ClusteringConfig(**settings)
    return choose(options, config, lambda unmeasured: [c.stability for c in unmeasured])


def test_within_the_margin_the_most_stable_then_the_most_segments_win():
    flat = [option("kmeans", 0.593, 6), option("kmeans", 0.600, 7), option("kmeans", 0.550, 8)]
    assert chosen(flat, score_margin=0.02).key == 7  # stability not measured: the most segments within
    assert chosen(flat, score_margin=0.0).key == 7
    assert chosen(flat, score_margin=0.1).key == 8
    steady = [
        option("kmeans", 0.60, 5, 0.998),
        option("kmeans", 0.60, 6, 0.97),
        option("kmeans", 0.61, 7, 0.92),
    ]
    assert chosen(steady, score_margin=0.02).key == 6  # 5 and 6 are as stable (to one decimal), 7 less
    stable = [
        option("kmeans", 0.60, 3, 0.80),
        option("kmeans", 0.59, 5, 0.97),
        option("kmeans", 0.50, 4, 1.0),
    ]
    assert chosen(stable, score_margin=0.02).key == 5  # 4 is the most stable, but far below the best
    assert chosen([option("kmeans", None, 2), option("kmeans", 0.4, 3)]).key == 3


def test_unstable_candidates_drop_out_and_the_next_best_compete():
    options = [
        option("kmeans", 0.60, 3, 0.40),
        option("kmeans", 0.59, 4, 0.50),
        option("kmeans", 0.45, 6, 0.9),
    ]
    winner = chosen(options, score_margin=0.02, min_stability=0.6)
    assert winner.key == 6
    assert any("unstable" in reason for reason in winner.reasons)
    all_unstable = [option("kmeans", 0.60, 3, 0.40), option("kmeans", 0.59, 4, 0.55)]
    assert chosen(all_unstable, min_stability=0.6).key == 4  # the most stable of them, said so
    assert "no candidate reached stability" in chosen(all_unstable, min_stability=0.6).reasons[-1]


def test_candidates_out_of_bounds_compete_only_when_none_is_within():
    lopsided = option("kmeans", 0.90, 2, within=False)
    split = [option("kmeans", 0.55, 4), option("kmeans", 0.62, 5)]
    assert chosen([lopsided, *split], score_margin=0.01).key == 5
    assert chosen([lopsided, option("kmeans", 0.55, 4, within=False)], score_margin=0.01).key == 2


def test_a_candidate_below_its_validity_minimum_competes_only_when_none_reaches_it():
    # the real IBM Telco table: agglomerative k=10 at silhouette 0.246 (as stable, to one decimal, and
    # with more segments) won against kmeans k=6 at 0.254 within the margin, and the gate refused it
    telco = [option("agglomerative", 0.246, 10, 0.87), option("kmeans", 0.254, 6, 0.90)]
    assert choose_among_algorithms(telco, ClusteringConfig(score_margin=0.02)).key == 6
    assert chosen(telco, score_margin=0.02).key == 6
    below = [option("kmeans", 0.20, 4, 0.9), option("kmeans", 0.22, 3, 0.9)]
    winner = chosen(below, score_margin=0.01)
    assert winner.key == 3 and "no candidate reached its validity minimum" in winner.reasons[0]


def test_within_bounds_counts_segments_shares_of_all_scored_rows_and_noise():
    config = ClusteringConfig(min_segment_share=0.05, max_segment_share=0.8, min_segments=2, max_segments=4)
    assert within_bounds([80, 15, 5], 100, 0.0, config)
    assert not within_bounds([81, 15, 4], 100, 0.0, config)
    assert not within_bounds([70, 26, 4], 100, 0.0, config)
    assert not within_bounds([40, 4], 100, 0.56, config)  # 56 noise rows count in the whole
    assert not within_bounds([30, 30, 10, 10, 10], 100, 0.1, config)  # more segments than max_segments
    assert not within_bounds([90], 100, 0.1, config)  # fewer than min_segments
    assert not within_bounds([40, 30], 100, 0.31, config.model_copy(update={"max_noise_share": 0.3}))


def test_auto_judges_each_family_by_its_own_measure_and_prefers_the_simplest():
    close = [option("hdbscan", 0.655), option("agglomerative", 0.70), option("kmeans", 0.699)]
    assert choose_among_algorithms(close, ClusteringConfig(score_margin=0.01)).algorithm.name == "kmeans"
    # DBCV 0.655 is 0.455 above its minimum 0.2; silhouette 0.70 only 0.45 above 0.25: density wins
    clear = [option("kmeans", 0.60), option("hdbscan", 0.75, noise_share=0.1)]
    assert choose_among_algorithms(clear, ClusteringConfig()).algorithm.name == "hdbscan"
    noisy = [option("hdbscan", 0.90, within=False, noise_share=0.45), option("kmeans", 0.60)]
    assert choose_among_algorithms(noisy, ClusteringConfig()).algorithm.name == "kmeans"
    steadier = [option("kmeans", 0.60, stability=0.7), option("agglomerative", 0.60, stability=0.95)]
    assert choose_among_algorithms(steadier, ClusteringConfig()).algorithm.name == "agglomerative"


def searched(name: str, options: list[tuple[float, int, float]], refitted: list[str]) -> Search:
    """An algorithm's scored candidates (validity, k, the stability its refits would give), stability
    not yet measured; each refit of a contender is recorded in `refitted`."""
    stabilities = {key: stability for _, key, stability in options}
    candidates = [
        replace(option(name, validity, key), stability=None, stability_measured=False)
        for validity, key, _ in options
    ]

    def stability_of(contenders: list[Candidate]) -> list[float]:
        refitted.extend(f"{name} k={c.key}" for c in contenders)
        return [stabilities[c.key] for c in contenders]

    return Search(ALGORITHMS[name], candidates, stability_of)


def every_algorithm_chosen(searched: list[Search], config: ClusteringConfig) -> Candidate:
    return choose_among_algorithms([s.chosen(config) for s in searched], config)


AUTO_CASES = {
    # agglomerative is within 0.02 of kmeans; HDBSCAN's DBCV margin (0.20 - 0.2) is far below
    "far off": [
        ("kmeans", [(0.60, 4, 0.95), (0.55, 5, 0.9)]),
        ("agglomerative", [(0.59, 4, 0.99), (0.50, 6, 0.9)]),
        ("hdbscan", [(0.20, 5, 0.99)]),
    ],
    # the first contenders are all unstable: HDBSCAN, far below them, must be refitted and wins
    "first contenders unstable": [
        ("kmeans", [(0.60, 4, 0.3)]),
        ("agglomerative", [(0.59, 4, 0.4)]),
        ("hdbscan", [(0.30, 5, 0.99)]),
    ],
    # kmeans is kept though unstable, agglomerative wins later, far below: HDBSCAN must compete too
    "a later round": [
        ("kmeans", [(0.60, 4, 0.3)]),
        ("agglomerative", [(0.59, 4, 0.3), (0.35, 6, 0.9)]),
        ("hdbscan", [(0.50, 5, 0.99)]),
    ],
    # HDBSCAN found no two clusters: nothing to refit, it is listed as its search ends
    "nothing scored": [
        ("kmeans", [(0.60, 4, 0.95)]),
        ("agglomerative", [(0.59, 4, 0.99)]),
        ("hdbscan", [(None, 1, 0.99)]),
    ],
}


@pytest.mark.parametrize("case", AUTO_CASES)
def test_auto_refits_only_algorithms_that_can_win_and_chooses_as_if_it_refitted_all(case):
    config = ClusteringConfig(score_margin=0.02, min_stability=0.6)
    refitted: list[str] = []
    winner, choice, listed = choose_algorithm(
        [searched(name, options, refitted) for name, options in AUTO_CASES[case]], config
    )
    everything = every_algorithm_chosen([searched(n, o, []) for n, o in AUTO_CASES[case]], config)
    assert (winner.algorithm.name, winner.key) == (everything.algorithm.name, everything.key)
    assert [c.algorithm.name for c in listed] == ["kmeans", "agglomerative", "hdbscan"]
    if case == "far off":
        assert not any(name.startswith("hdbscan") for name in refitted)
        assert listed[2].stability is None and not listed[2].stability_measured
        assert any("not in contention" in line and "hdbscan" in line for line in choice)
        assert winner.algorithm.name == "agglomerative"  # as valid and more stable than kmeans
    elif case in ("first contenders unstable", "a later round"):
        assert "hdbscan k=5" in refitted and winner.algorithm.name == "hdbscan"
        assert all(c.stability_measured for c in listed)
    else:
        assert listed[2].n_segments == 1 and "no candidate gave two or more segments" in listed[2].reasons[0]
        assert not any(name.startswith("hdbscan") for name in refitted)


@pytest.mark.parametrize("dataset", ["iris", "wine", "blobs"])
def test_auto_chooses_on_real_data_what_refitting_every_algorithm_chooses(dataset):
    features = {
        "iris": lambda: load_iris(return_X_y=True)[0],
        "wine": lambda: load_wine(return_X_y=True)[0],
        "blobs": lambda: make_blobs(n_samples=[400, 300, 200, 60], n_features=4, random_state=3)[0],
    }[dataset]()
    matrix = StandardScaler().fit_transform(features)
    config = ClusteringConfig()
    samples = Samples.draw(len(matrix), config)
    scorer = SampleScorer(matrix[samples.score_rows])

    algorithms = [ALGORITHMS[name] for name in config.auto_candidates]
    winner, _, listed = choose_algorithm(searches(algorithms, matrix, samples, scorer, config), config)
    everything = every_algorithm_chosen(searches(algorithms, matrix, samples, scorer, config), config)
    assert (winner.algorithm.name, winner.key, winner.validity) == (
        everything.algorithm.name,
        everything.key,
        everything.validity,
    )
    assert [c.algorithm.name for c in listed] == list(config.auto_candidates)


def test_density_clusters_beyond_max_segments_are_merged_by_weighted_ward():
    features, planted = make_blobs(
        n_samples=[300, 300, 300, 300],
        centers=[[0, 0], [0, 1], [10, 0], [10, 1]],
        cluster_std=0.1,
        random_state=0,
    )
    fit = Fit(planted.astype(np.int64), NearestCentre(np.zeros((1, 2))), {})
    fit.labels[:10] = -1
    merged = merged_to(fit, features, max_segments=2)
    assert merged.params["merged_from"] == 4 and set(merged.labels[10:]) == {0, 1}
    assert (merged.labels[:10] == -1).all()
    assert adjusted_rand_score(features[10:, 0] > 5, merged.labels[10:]) == 1.0  # the near pairs joined
    assert merged_to(fit, features, max_segments=4) is fit


def far_group_and_four_near() -> tuple[np.ndarray, np.ndarray]:
    """Four overlapping-ish groups and one far away (8% of the rows): k=2 has by far the best
    silhouette (0.90 against 0.62 at the planted k=5) but puts 92% of the rows in one segment."""
    rng = np.random.default_rng(0)
    centres = np.vstack([rng.uniform(-4, 4, (4, 5)), np.full((1, 5), 30.0)])
    return make_blobs(n_samples=[700, 600, 500, 400, 200], centers=centres, random_state=0)


@pytest.mark.parametrize("algorithm", ["kmeans", "birch", "agglomerative", "diana"])
def test_a_far_outlying_group_does_not_win_the_k_search_with_a_lopsided_split(algorithm):
    features, planted = far_group_and_four_near()
    config = ClusteringConfig(algorithm=algorithm, fit_sample_size=1_500, k=(2, 10))
    segmentation = fit_segmentation(features, config)
    assert segmentation.n_segments == 5
    assert adjusted_rand_score(planted, segmentation.labels) >= 0.95
    by_k = {row["k"]: row for row in segmentation.k_search}
    assert by_k[2]["silhouette"] > by_k[5]["silhouette"] + 0.2 and not by_k[2]["within_bounds"]
    unbounded = fit_segmentation(features, config.model_copy(update={"max_segment_share": 1.0}))
    assert unbounded.n_segments == 2


@pytest.mark.parametrize("block_rows", [100_000, 97])
@pytest.mark.parametrize("data", ["moons", "customers"])
def test_vectorised_hdbscan_prediction_matches_the_library(data, block_rows, monkeypatch):
    monkeypatch.setattr(assignment, "PREDICT_BLOCK_ROWS", block_rows)
    features, _ = shapes_with_noise("moons") if data == "moons" else customers()
    clusterer = hdbscan.HDBSCAN(min_cluster_size=15, min_samples=4, prediction_data=True)
    clusterer.fit(features[::2])
    rng = np.random.default_rng(0)
    new_rows = np.vstack(
        [
            features[1::2] + rng.normal(scale=0.05, size=features[1::2].shape),
            rng.uniform(features.min() - 1, features.max() + 1, size=(200, features.shape[1])),
        ]
    )
    expected, _ = hdbscan.approximate_predict(clusterer, new_rows)
    assert len(np.unique(expected)) > 2
    assert np.array_equal(HdbscanApproximatePredict.of(clusterer)(new_rows), expected)


# ----------------------------------------------------------------------------- recovering segments


@pytest.mark.parametrize("algorithm", K_ALGORITHMS)
def test_planted_customer_segments_are_recovered(algorithm):
    features, planted = customers()
    config = ClusteringConfig(algorithm=algorithm, k=(6, 6), fit_sample_size=1_500)
    segmentation = fit_segmentation(features, config)
    assert segmentation.algorithm == algorithm
    assert segmentation.n_segments == 6
    assert adjusted_rand_score(planted, segmentation.labels) >= 0.9
    sizes = np.bincount(segmentation.labels)
    assert sizes.tolist() == sorted(sizes.tolist(), reverse=True)


@pytest.mark.parametrize("shape", ["moons", "circles"])
@pytest.mark.parametrize("algorithm", DENSITY_ALGORITHMS)
def test_density_methods_find_shapes_and_label_noise(algorithm, shape):
    features, planted = shapes_with_noise(shape)
    segmentation = fit_segmentation(features, ClusteringConfig(algorithm=algorithm, min_segments=2))
    in_shape = planted >= 0
    assert segmentation.n_segments == 2
    assert adjusted_rand_score(planted[in_shape], segmentation.labels[in_shape]) >= 0.9
    assert (segmentation.labels[~in_shape] == -1).mean() >= 0.4
    assert segmentation.scores["measure"] == "dbcv"
    assert segmentation.scores["dbcv"] >= GateConfig().min_dbcv  # silhouette would have refused the shapes
    assert all("scale" in row and "k" not in row for row in segmentation.k_search)
    members = segmentation.labels >= 0
    assert segmentation.scores["noise_share"] == pytest.approx(1 - members.mean())
    for segment, centre in enumerate(segmentation.centers):
        np.testing.assert_allclose(centre, features[segmentation.labels == segment].mean(axis=0))
    assert (segmentation.labels[segmentation.exemplars] == np.arange(2)).all()


@pytest.mark.parametrize("algorithm", ["kmeans", "auto"])
def test_the_true_k_is_chosen_on_well_separated_blobs(algorithm):
    features, planted = make_blobs(
        n_samples=[500, 400, 300, 200, 150],
        n_features=5,
        cluster_std=1.0,
        center_box=(-25, 25),
        random_state=11,
    )
    features = StandardScaler().fit_transform(features)
    segmentation = fit_segmentation(features, ClusteringConfig(algorithm=algorithm))
    assert segmentation.n_segments == 5
    assert adjusted_rand_score(planted, segmentation.labels) >= 0.99
    if algorithm == "kmeans":
        assert [row["k"] for row in segmentation.k_search] == list(range(3, 11))  # min_segments to max
    else:
        tried = {row["algorithm"] for row in segmentation.leaderboard}
        assert tried == set(ClusteringConfig().auto_candidates)
        assert sum(row["selected"] for row in segmentation.leaderboard) == 1


def test_wine_and_iris():
    wine, cultivar = load_wine(return_X_y=True)
    wine = StandardScaler().fit_transform(wine)
    segmentation = fit_segmentation(wine, ClusteringConfig(algorithm="kmeans"))
    assert segmentation.n_segments == 3
    assert adjusted_rand_score(cultivar, segmentation.labels) >= 0.85
    # silhouette's well-known answer on iris is setosa against the two overlapping species; with at
    # least three segments (the default min_segments) the species come back
    iris, species = load_iris(return_X_y=True)
    iris = StandardScaler().fit_transform(iris)
    segmentation = fit_segmentation(iris, ClusteringConfig(algorithm="auto"))
    assert segmentation.n_segments == 3
    assert adjusted_rand_score(species, segmentation.labels) >= 0.55
    two = fit_segmentation(iris, ClusteringConfig(algorithm="auto", k=(2, 10)))
    assert two.n_segments == 2
    assert adjusted_rand_score(species == 0, two.labels) >= 0.95


# ----------------------------------------------------------------------------- assignment, seeds, sampling


@pytest.mark.parametrize("algorithm", [*K_ALGORITHMS, *DENSITY_ALGORITHMS])
def test_assignment_reproduces_the_fit_and_seeds_reproduce_labels(algorithm):
    features, _ = customers()
    config = ClusteringConfig(algorithm=algorithm, k=(5, 6), fit_sample_size=800, sample_size=1_000)
    segmentation = fit_segmentation(features, config)
    shuffled = np.random.default_rng(5).permutation(len(features))
    assert np.array_equal(assign_segments(segmentation, features), segmentation.labels)
    assert np.array_equal(assign_segments(segmentation, features[shuffled]), segmentation.labels[shuffled])
    new_rows = features[:200] + np.random.default_rng(6).normal(scale=0.01, size=(200, features.shape[1]))
    assigned = assign_segments(segmentation, new_rows)
    assert assigned.dtype == np.int64 and assigned.min() >= -1 and assigned.max() < segmentation.n_segments
    assert np.array_equal(fit_segmentation(features, config).labels, segmentation.labels)
    restored = pickle.loads(pickle.dumps(segmentation))
    assert np.array_equal(assign_segments(restored, features[shuffled]), segmentation.labels[shuffled])


@pytest.mark.parametrize("algorithm", ["dbscan", "optics"])
def test_a_density_fit_that_finds_only_noise_is_reported_not_hidden(algorithm):
    features, _ = customers()
    segmentation = fit_segmentation(features, ClusteringConfig(algorithm=algorithm, eps=1e-6))
    assert segmentation.n_segments == 0 and (segmentation.labels == -1).all()
    assert segmentation.centers.shape == (0, features.shape[1]) and len(segmentation.exemplars) == 0
    assert segmentation.scores["silhouette"] is None and segmentation.scores["noise_share"] == 1.0
    assert (assign_segments(segmentation, features[:10]) == -1).all()


def test_small_clusters_become_noise_and_the_rest_are_renumbered():
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 2, -1, 1])
    assert without_small_clusters(labels, 3).tolist() == [0, 0, 0, -1, 1, 1, 1, 1, -1, -1]
    assert without_small_clusters(np.full(4, -1), 3).tolist() == [-1] * 4


@pytest.mark.parametrize("algorithm", DENSITY_ALGORITHMS)
def test_a_dense_pocket_smaller_than_a_usable_segment_is_noise(algorithm):
    """A tight pocket of 0.5% of the rows is a DBSCAN cluster at the knee eps; with the smallest usable
    segment at 1% it is noise for every density method, and at 0.25% it is a segment of its own."""
    features, planted = make_blobs(
        n_samples=[1_200, 800, 10],
        centers=[[0, 0], [8, 8], [-8, 8]],
        cluster_std=[1.0, 1.0, 0.05],
        random_state=3,
    )
    pocket = planted == 2
    segmentation = fit_segmentation(features, ClusteringConfig(algorithm=algorithm))
    assert segmentation.n_segments == 2 and (segmentation.labels[pocket] == -1).all()
    assert segmentation.params["min_cluster_size"] == 21
    members = (segmentation.labels >= 0) & ~pocket
    assert members.mean() >= 0.85  # the blobs' tails may be noise too
    assert adjusted_rand_score(planted[members], segmentation.labels[members]) == 1.0
    smaller = fit_segmentation(features, ClusteringConfig(algorithm=algorithm, min_segment_share=0.0025))
    [pocket_segment] = np.unique(smaller.labels[pocket])
    assert pocket_segment >= 0 and (smaller.labels[~pocket] != pocket_segment).all()


@pytest.mark.parametrize("algorithm", [*K_ALGORITHMS, *DENSITY_ALGORITHMS])
def test_sampling_is_recorded_when_rows_exceed_the_fit_sample(algorithm):
    features, _ = customers()
    config = ClusteringConfig(algorithm=algorithm, k=(6, 6), fit_sample_size=600, sample_size=700)
    segmentation = fit_segmentation(features, config)
    sampling = segmentation.sampling
    assert sampling["score_sample"] == 700 and sampling["seed"] == config.seed
    # the published scores are those of the published labels on the score sample
    scored = Samples.draw(len(features), config).score_rows
    labels = segmentation.labels[scored]
    assert segmentation.scores["silhouette"] == pytest.approx(
        silhouette_score(features[scored][labels >= 0], labels[labels >= 0]), abs=1e-9
    )
    if ALGORITHMS[algorithm].refit is None:
        assert sampling["fit_sample"] == 600 and sampling["assigned_by"]
        # what was scored in the search is what is published
        if ALGORITHMS[algorithm].takes_k:
            [searched] = segmentation.k_search
            assert segmentation.scores["silhouette"] == pytest.approx(searched["silhouette"], abs=1e-9)
    else:
        assert sampling["fit_sample"] is None and sampling["assigned_by"] is None
    assert sampling["search_sample"] == (600 if ALGORITHMS[algorithm].takes_k else None)
    json.dumps(
        [
            segmentation.params,
            segmentation.scores,
            segmentation.k_search,
            segmentation.sampling,
            segmentation.leaderboard,
            segmentation.dendrogram,
        ]
    )


def test_medoids_are_exemplars_and_hierarchies_keep_a_dendrogram():
    features, _ = customers()
    config = ClusteringConfig(algorithm="kmedoids", k=(6, 6), fit_sample_size=1_000)
    medoids = fit_segmentation(features, config)
    np.testing.assert_array_equal(
        features[medoids.exemplars], medoids.assigner.rule.centres[np.argsort(medoids.assigner.segment_of)]
    )
    assert medoids.dendrogram is None
    for algorithm in ("agglomerative", "diana"):
        segmentation = fit_segmentation(features, config.model_copy(update={"algorithm": algorithm}))
        merges = np.array(segmentation.dendrogram["linkage"])
        assert is_valid_linkage(merges)
        assert (segmentation.labels[segmentation.exemplars] == np.arange(6)).all()
    assert len(merges) + 1 == 6  # DIANA: the leaves are the clusters at the largest k searched


def test_cluster_task_logs_and_publishes_the_leaderboard(monkeypatch, tmp_path):
    from prefect.logging import disable_run_logger
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    published = {}
    monkeypatch.setattr(cluster, "create_table_artifact", lambda **kwargs: published.update(kwargs))
    features, _ = customers()
    # the task prunes and locks down the results folder: this one, not the user's own
    with disable_run_logger(), temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path}):
        segmentation = cluster.cluster_task.fn(features, ClusteringConfig(k=(5, 7)))
    assert published["key"] == "clustering-leaderboard"
    assert [row["algorithm"] for row in published["table"]] == list(ClusteringConfig().auto_candidates)
    assert segmentation.algorithm in ClusteringConfig().auto_candidates


def test_the_cache_key_changes_with_the_clustering_code(monkeypatch):
    parameters = {"matrix": np.zeros((3, 2)), "config": ClusteringConfig()}
    before = cluster.clustering_cache_key(None, parameters)
    assert cluster.clustering_cache_key(None, parameters) == before
    code = cluster.clustering_code()
    assert b"def fit_segmentation" in code and b"def splinter_group" in code
    monkeypatch.setattr(cluster, "clustering_code", lambda: code + b"# a changed line")
    assert cluster.clustering_cache_key(None, parameters) != before


def test_the_cache_key_hashes_every_module_of_the_clustering_package(tmp_path, monkeypatch, request):
    """A change to any module of the package, or a new module, gives a new key: the key lists the
    folder, so a module split off later cannot be left out of it."""
    parameters = {"matrix": np.zeros((3, 2)), "config": ClusteringConfig()}
    real = cluster.clustering_cache_key(None, parameters)
    copy = tmp_path / "clustering"
    shutil.copytree(cluster.CLUSTERING_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cluster, "CLUSTERING_PACKAGE", copy)
    request.addfinalizer(cluster.clustering_code.cache_clear)

    def key() -> str:
        cluster.clustering_code.cache_clear()
        return cluster.clustering_cache_key(None, parameters)

    assert key() == real
    modules = sorted(copy.rglob("*.py"))
    assert {"registry.py", "search.py", "segmentation.py", "diana.py", "assignment.py"} <= {
        module.name for module in modules
    }
    keys = {"unchanged": real}
    for module in modules:
        source = module.read_bytes()
        module.write_bytes(source + b"\n# a changed line\n")
        keys[module.name] = key()
        module.write_bytes(source)
    (copy / "new_rule.py").write_text("NEW = 1\n")
    keys["a new module"] = key()
    assert len(set(keys.values())) == len(keys), keys


def test_the_hdbscan_library_is_imported_only_when_hdbscan_runs():
    """Importing it costs about a second; a run of any other algorithm does not pay for it."""
    code = """
import sys
import numpy as np
import segflow.tasks.cluster
from segflow.clustering import fit_segmentation
from segflow.config import ClusteringConfig, GateConfig
imported_before = "hdbscan" in sys.modules
fit_segmentation(np.random.default_rng(0).normal(size=(300, 2)), ClusteringConfig(algorithm="hdbscan"))
print(imported_before, "hdbscan" in sys.modules)
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["False", "True"]


def test_kmeans_refits_all_rows_from_the_sample_centres_with_mini_batches_when_large():
    features, planted = customers()
    config = ClusteringConfig(algorithm="kmeans", k=(6, 6), fit_sample_size=800, mini_batch_above=1_000)
    segmentation = fit_segmentation(features, config)
    assert segmentation.params == {"k": 6, "estimator": "MiniBatchKMeans"}
    assert adjusted_rand_score(planted, segmentation.labels) >= 0.9
    assert np.array_equal(assign_segments(segmentation, features), segmentation.labels)


def test_birch_with_fewer_subclusters_than_the_smallest_k_says_so():
    # found by the property test: four rows make one CF subcluster, and no k of 2-3 can be cut
    matrix = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    with pytest.raises(SegflowError, match="birch found no candidate with 2 to 3 segments in the 4 rows"):
        fit_segmentation(matrix, ClusteringConfig(algorithm="birch", k=(2, 3)))
