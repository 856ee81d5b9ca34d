"""The RFM vocabulary: quintile scores (ties share a score), the map from scores to the 11 names, the
median cell of a segment, `customer_rfm_scores` on every target, the map as the leaderboard's
baseline, and `clustering.algorithm: rfm` from fit to the saved model.

The hand-computed example (HAND) is a dozen customers. With n = 12, the edges are the 3rd, 5th, 8th
and 10th smallest values (the k-th edge is value number ceil(12 k / 5)), oriented so that higher is
better (recency: fewer days), and a score is 1 + the number of edges a value is above; equivalently
1 + floor(5 x the number of customers with a strictly worse value / 12), at most 5:

    worse than:  0-2 -> 1, 3-4 -> 2, 5-7 -> 3, 8-9 -> 4, 10-11 -> 5

    recency days, worst first: L700 I500 H400 K300 G200 J90 E60 C40 D40 B10 F5 A3
        edges 400, 200, 40, 10 days. C and D tie at 40 days: both have 7 worse, both R = 3.
        R: L I H = 1, K G = 2, J E C D = 3, B = 4, F A = 5
    frequency, lowest first: E F I K L = 1, J 2, D 3, C 5, G 6, B 8, H 9, A 12
        edges 1, 1, 5, 8. The five one-time buyers tie with none below them: all F = 1, and no
        one has F = 2 (J, with 5 below, has F = 3). C (5) and B (8) sit on an edge: not above it.
        F: E F I K L = 1, J D C = 3, G B = 4, H A = 5
    monetary, lowest first: B15 L20 I25 K35 F40 J60 E80 G100 D120 C300 A900 H1000
        edges 25, 40, 100, 300. M: B L I = 1, K F = 2, J E G = 3, D C = 4, A H = 5

    customer  R F M  FM   map cell (first row of the map that takes it)
    A         5 5 5  5    Champions (R 4-5, FM >= 4)
    B         4 4 1  2.5  Potential loyalists (R 4-5, FM >= 2; not Loyal: FM < 3)
    C         3 3 4  3.5  Loyal (R 3-5, FM >= 3)
    D         3 3 4  3.5  Loyal
    E         3 1 3  2    Need attention (R 3, FM >= 2)
    F         5 1 2  1.5  New (R 5)
    G         2 4 3  3.5  At risk (R 1-2, FM >= 3)
    H         1 5 5  5    Can't lose them (R 1-2, FM >= 4)
    I         1 1 1  1    Lost (R 1)
    J         3 3 3  3    Loyal
    K         2 1 2  1.5  Hibernating (R 2)
    L         1 1 1  1    Lost

Promising and About to sleep are empty: `algorithm: rfm` publishes the other 9 cells.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segflow.clustering import assign_segments, fit_segmentation
from segflow.config import ClusteringConfig, FeaturesConfig, GateConfig, PreprocessConfig, build_config
from segflow.errors import ConfigError
from segflow.flows.scoring import scoring_flow
from segflow.flows.segmentation import segmentation_flow
from segflow.ledger import RunFacts, RunLedger
from segflow.rfm import (
    CELL_NAMES,
    MAP_LOOKUP,
    RFM_MAP,
    RfmMap,
    cells_of,
    map_cell,
    quintile_edges,
    quintile_scores,
    rfm_positions,
    segment_rfm,
)
from segflow.stores import StoredState
from segflow.tables import NOISE_LABEL, NOISE_SEGMENT_KEY
from segflow.tasks.features import RFM_COLUMNS
from segflow.tasks.preprocess import prepare_features
from segflow.tasks.publish import build_publication, publication_writes
from segflow.tasks.report import render_report, rfm_map_crosstab
from segflow.tasks.scale import fit_scaling
from segflow.tasks.validate import evaluate_gate
from tests.test_publish import DAY1, DAY2, as_state, profiles_for, publish
from tests.test_report import report_inputs
from tests.test_stores import target  # noqa: F401 (a fixture)

AS_OF = date(2026, 11, 1)
HAND = pd.DataFrame(
    {
        "customer": list("ABCDEFGHIJKL"),
        "recency_days": [3, 10, 40, 40, 60, 5, 200, 400, 500, 90, 300, 700],
        "frequency": [12, 8, 5, 3, 1, 1, 6, 9, 1, 2, 1, 1],
        "monetary": [900.0, 15, 300, 120, 80, 40, 100, 1000, 25, 60, 35, 20],
    }
)
HAND_SCORES = np.array(
    [[5, 5, 5], [4, 4, 1], [3, 3, 4], [3, 3, 4], [3, 1, 3], [5, 1, 2],
     [2, 4, 3], [1, 5, 5], [1, 1, 1], [3, 3, 3], [2, 1, 2], [1, 1, 1]]
)  # fmt: skip
HAND_CELLS = [
    "Champions", "Potential loyalists", "Loyal", "Loyal", "Need attention", "New",
    "At risk", "Can't lose them", "Lost", "Loyal", "Hibernating", "Lost",
]  # fmt: skip
RAW_COLUMNS = ["recency_days", "frequency", "monetary"]


def hand_matrix() -> np.ndarray:
    return HAND[RAW_COLUMNS].to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------------- scores and the map


def test_the_hand_computed_example_gets_its_edges_scores_and_cells():
    fitted = RfmMap.fit(hand_matrix(), (0, 1, 2))
    assert (-fitted.edges[0]).tolist() == [400, 200, 40, 10]  # recency is oriented: fewer days is better
    assert fitted.edges[1].tolist() == [1, 1, 5, 8]
    assert fitted.edges[2].tolist() == [25, 40, 100, 300]
    scores = fitted.scores(hand_matrix())
    assert scores.tolist() == HAND_SCORES.tolist()
    assert [CELL_NAMES[cell] for cell in fitted(hand_matrix())] == HAND_CELLS


@settings(max_examples=200, deadline=None)
@given(arrays(np.int64, st.integers(1, 60), elements=st.integers(0, 6)))
def test_tied_values_share_the_score_of_the_lowest_rank_in_their_tie(values):
    edges = quintile_edges(values)
    assert edges.tolist() == np.quantile(values, [0.2, 0.4, 0.6, 0.8], method="inverted_cdf").tolist()
    scores = quintile_scores(values.astype(np.float64), edges)
    below = (values[None, :] < values[:, None]).sum(axis=1)
    assert scores.tolist() == (1 + np.minimum(4, 5 * below // len(values))).tolist()
    for value in np.unique(values):
        assert len(set(scores[values == value])) == 1


def test_most_customers_buying_once_all_get_the_lowest_frequency_score():
    frequency = np.array([1] * 70 + [2] * 15 + [3] * 10 + [7] * 5, dtype=np.float64)
    scores = quintile_scores(frequency, quintile_edges(frequency))
    assert set(scores[:70]) == {1}
    assert set(scores[70:85]) == {4} and set(scores[85:]) == {5}  # 70% and 85% of customers bought less


def test_new_customers_are_scored_against_the_fitted_edges():
    fitted = RfmMap.fit(hand_matrix(), (0, 1, 2))
    new = np.array(
        [
            [40, 5, 100],  # on an edge of every measure: not above it, R3 F3 M3
            [1, 30, 5000],  # better than every fitted customer: R5 F5 M5
            [1000, 1, 10],  # worse than all: R1 F1 M1
            [60, 1, 35],  # R3 F1 M2: About to sleep, a cell no fitted customer is in
        ],
        dtype=np.float64,
    )
    assert fitted.scores(new).tolist() == [[3, 3, 3], [5, 5, 5], [1, 1, 1], [3, 1, 2]]
    assert [CELL_NAMES[c] for c in fitted(new)] == ["Loyal", "Champions", "Lost", "About to sleep"]
    # a value on an edge but for its last bit (a log1p rounded otherwise elsewhere) keeps the edge's score
    spend_edges = fitted.edges[2]
    assert quintile_scores(np.nextafter(spend_edges, np.inf), spend_edges).tolist() == [1, 2, 3, 4]
    # a customer's score depends on its value and the fitted edges only, not on who is scored with it
    assert fitted.scores(new[1:2]).tolist() == [[5, 5, 5]]
    assert fitted.scores(np.vstack([hand_matrix(), new])).tolist() == [
        *HAND_SCORES.tolist(),
        *fitted.scores(new).tolist(),
    ]


@pytest.mark.parametrize("scaler", ["minmax", "standard", "robust"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edges_learned_on_the_scaled_matrix_score_as_the_raw_edges_do(scaler, seed):
    """log1p and the scalers are monotone per column: scores from the model's matrix are the raw ones."""
    rng = np.random.default_rng(seed)
    n = 3000
    frequency = np.where(rng.random(n) < 0.6, 1, rng.geometric(0.3, n) + 1)
    table = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "recency_days": rng.geometric(0.01, n),  # many ties, heavy tail
            "frequency": frequency,
            "monetary": np.round(frequency * rng.lognormal(3, 1, n), 2),
            "tenure_days": rng.integers(0, 2000, n),
            "avg_order_value": rng.lognormal(3, 1, n),
        }
    )
    prepared = prepare_features(table, FeaturesConfig(), PreprocessConfig(scaler=scaler), list(RFM_COLUMNS))
    assert {"recency_days", "monetary"} <= set(prepared.preparation.log1p_columns)
    scaling, matrix = fit_scaling(prepared.model_input, scaler, [])
    positions = rfm_positions(scaling.columns, RFM_COLUMNS)
    raw = table[RAW_COLUMNS].to_numpy(dtype=np.float64)
    expected = RfmMap.fit(raw, (0, 1, 2)).scores(raw)
    assert np.array_equal(RfmMap.fit(matrix, positions).scores(matrix), expected)
    # new customers, prepared and scaled by the fitted model, score as the raw edges score them
    new = table.sample(500, random_state=seed).assign(monetary=lambda t: t["monetary"] * 1.5)
    new_matrix = scaling.transform(prepared.preparation.model_input(new))
    raw_new = new[RAW_COLUMNS].to_numpy(dtype=np.float64)
    assert np.array_equal(
        RfmMap.fit(matrix, positions).scores(new_matrix), RfmMap.fit(raw, (0, 1, 2)).scores(raw_new)
    )


def test_every_score_triple_has_exactly_one_name_and_every_name_some_triple():
    assert MAP_LOOKUP.shape == (5, 5, 5)
    assert sorted(set(MAP_LOOKUP.ravel().tolist())) == list(range(len(RFM_MAP))) == list(range(11))
    named = {
        (5, 5, 5): "Champions",
        (3, 3, 3): "Loyal",
        (4, 2, 2): "Potential loyalists",
        (5, 1, 1): "New",
        (4, 1, 2): "Promising",
        (3, 2, 2): "Need attention",
        (3, 1, 2): "About to sleep",
        (1, 5, 4): "Can't lose them",
        (2, 3, 3): "At risk",
        (2, 1, 1): "Hibernating",
        (1, 2, 3): "Lost",
    }
    for (r, f, m), name in named.items():
        assert CELL_NAMES[MAP_LOOKUP[r - 1, f - 1, m - 1]] == name == CELL_NAMES[map_cell(r, f, m)]
    # first match wins: each triple is taken by exactly one row once the rows above it are removed
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                takers = [
                    i
                    for i, cell in enumerate(RFM_MAP)
                    if cell.recency[0] <= r <= cell.recency[1] and (f + m) / 2 >= cell.min_fm
                ]
                assert takers and takers[0] == MAP_LOOKUP[r - 1, f - 1, m - 1]


def test_the_readme_documents_the_map_the_code_applies():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    documented = re.findall(
        r"^\| ([A-Z][a-z' ]+) \| (\d)(?:–(\d))? \| (≥ (\d)|any) \| ([^|]+) \|$", readme, re.M
    )
    assert [
        (name, (int(low), int(high or low)), float(least or 1), meaning.strip())
        for name, low, high, _, least, meaning in documented
    ] == [(cell.name, cell.recency, cell.min_fm, cell.meaning) for cell in RFM_MAP]


def test_a_segments_median_scores_name_its_map_cell():
    """Lower medians: {C, D, J} (3,3,4) Loyal; {H, I, K, L}: R 1,1,1,2 -> 1, F 1,1,1,5 -> 1, M 1,1,2,5
    -> 1, Lost (H, a Can't-lose-them, is outvoted); {A, B, E, F}: R 3,4,5,5 -> 4, F 1,1,4,5 -> 1,
    M 1,2,3,5 -> 2, FM 1.5: Promising; {G}: At risk."""
    labels = np.array([2, 2, 0, 0, 2, 2, 3, 1, 1, 0, 1, 1])
    medians = segment_rfm(HAND_SCORES, labels)
    assert medians.loc[0].tolist() == [3, 3, 4, "Loyal"]
    assert medians.loc[1].tolist() == [1, 1, 1, "Lost"]
    assert medians.loc[2].tolist() == [4, 1, 2, "Promising"]
    assert medians.loc[3].tolist() == [2, 4, 3, "At risk"]
    for label, row in medians.iterrows():  # at least half the segment scores at least the median
        members = HAND_SCORES[labels == label]
        for measure, column in enumerate(["recency_score", "frequency_score", "monetary_score"]):
            assert (members[:, measure] >= row[column]).mean() >= 0.5


# ---------------------------------------------------------------------------- in the clustering


def rfm_like(n: int = 2000, seed: int = 0) -> np.ndarray:
    """A scaled-looking matrix whose first three columns are recency, frequency and monetary."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    centres = np.array([[0.1, 0.8, 0.9, 0.5], [0.5, 0.3, 0.4, 0.1], [0.9, 0.05, 0.1, 0.9]])
    return centres[kind] + rng.normal(0, 0.05, (n, 4))


def test_algorithm_rfm_publishes_the_named_cells_dropping_empty_ones_whatever_the_k_range():
    matrix = np.column_stack([hand_matrix(), np.arange(12.0)])
    segmentation = fit_segmentation(matrix, ClusteringConfig(algorithm="rfm", k=(2, 3)), (0, 1, 2))
    names = [segmentation.names[label] for label in segmentation.labels]
    assert names == HAND_CELLS
    assert segmentation.n_segments == 9 and set(segmentation.names.values()) == set(HAND_CELLS)
    assert sorted(segmentation.names) == list(range(9))  # numbered by size: Loyal (3) first
    assert segmentation.names[0] == "Loyal"
    new = np.array([[40, 5, 100, 0.0], [60, 1, 35, 0.0]])  # Loyal; About to sleep, empty in the fit
    assigned = assign_segments(segmentation, new)
    assert segmentation.names[assigned[0]] == "Loyal" and assigned[1] == NOISE_LABEL
    assert segmentation.rfm_scores.tolist() == HAND_SCORES.tolist()
    # with the map's last cell empty (I and L, lapsed, made big spenders: no R1 has a low FM), a
    # new customer in it is noise too
    big_lapsed = matrix.copy()
    big_lapsed[[8, 11], 1:3] = [[20, 2000], [15, 1500]]
    refit = fit_segmentation(big_lapsed, ClusteringConfig(algorithm="rfm"), (0, 1, 2))
    assert "Lost" not in refit.names.values()
    assert assign_segments(refit, np.array([[1000, 1, 10, 0.0]])).tolist() == [NOISE_LABEL]


def test_the_cached_segmentation_is_found_again_only_for_the_same_rfm_columns():
    from segflow.tasks.cluster import clustering_cache_key

    matrix, config = rfm_like(50), ClusteringConfig()
    key = [
        clustering_cache_key(None, {"matrix": matrix, "config": config, "rfm_positions": p})
        for p in ((0, 1, 2), (0, 1, 2), (1, 0, 2), None)
    ]
    assert key[0] == key[1] and len(set(key)) == 3


def test_algorithm_rfm_without_rfm_columns_is_a_config_error():
    with pytest.raises(ConfigError, match="needs RFM features") as refused:
        fit_segmentation(rfm_like(200), ClusteringConfig(algorithm="rfm"))
    assert refused.value.exit_code == 2


def test_the_map_is_the_baseline_next_to_the_clusterings_and_never_wins_auto():
    matrix = rfm_like()
    config = ClusteringConfig(k=(2, 5), fit_sample_size=800, sample_size=1000)
    segmentation = fit_segmentation(matrix, config, (0, 1, 2))
    rows = segmentation.leaderboard
    assert [row["algorithm"] for row in rows] == [*config.auto_candidates, "rfm"]
    baseline = rows[-1]
    assert baseline["baseline"] and not baseline["selected"] and baseline["family"] == "map"
    assert sum(baseline["segment_sizes"]) == 1000  # scored on the same sample as the clusterings
    expected = RfmMap.fit(matrix, (0, 1, 2))(matrix)
    assert len(baseline["segment_sizes"]) == len(np.unique(expected))
    assert baseline["scores"]["silhouette"] is not None
    assert segmentation.algorithm in config.auto_candidates
    assert [row["selected"] for row in rows].count(True) == 1
    assert not any(row["baseline"] for row in rows[:-1])

    fixed = fit_segmentation(matrix, config.model_copy(update={"algorithm": "kmeans"}), (0, 1, 2))
    assert [(row["algorithm"], row["selected"], row["baseline"]) for row in fixed.leaderboard] == [
        ("kmeans", True, False),
        ("rfm", False, True),
    ]
    assert np.array_equal(fixed.rfm_scores, RfmMap.fit(matrix, (0, 1, 2)).scores(matrix))
    without = fit_segmentation(matrix, config.model_copy(update={"algorithm": "kmeans"}))
    assert without.leaderboard == [] and without.rfm_scores is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"clustering": {"algorithm": "rfm"}, "features": {"rfm": False}}, "needs RFM features"),
        ({"clustering": {"algorithm": "rfm"}, "sources": "customers only"}, "needs RFM features"),
        ({"clustering": {"auto_candidates": ["kmeans", "rfm"]}}, "auto_candidates"),
    ],
)
def test_the_config_refuses_the_map_where_it_cannot_run_or_compete(raw, message, tmp_path):
    sources = {"customers": {"uri": str(tmp_path / "c.parquet")}}
    if raw.pop("sources", None) is None:
        sources["transactions"] = {"uri": str(tmp_path / "t.parquet")}
    with pytest.raises(ConfigError, match=message) as refused:
        build_config({"sources": sources, **raw})
    assert refused.value.exit_code == 2


def test_the_gate_does_not_judge_the_maps_cells_on_cluster_quality():
    labels = np.repeat([0, 1, 2], [600, 395, 5])  # a 0.5% cell
    scores = {"silhouette": 0.02, "stability": 0.9}
    clustering = evaluate_gate(labels, scores, {}, GateConfig())
    assert {c.rule for c in clustering.blocking} == {"min_silhouette", "min_segment_share"}
    mapped = evaluate_gate(labels, scores, {}, GateConfig(), family="map")
    assert mapped.passed
    shown = {c.rule: c for c in mapped.checks}
    assert shown["min_silhouette"].value == 0.02 and "not judged" in shown["min_silhouette"].message
    too_big = evaluate_gate(np.repeat([0, 1], [900, 100]), scores, {}, GateConfig(), family="map")
    assert [c.rule for c in too_big.blocking] == ["max_segment_share"]  # still judged


# ---------------------------------------------------------------------------- the published table


def test_customer_rfm_scores_is_published_on_every_target(target):  # noqa: F811
    store, read = target
    ids = np.array([f"c{i:04d}" for i in range(500)])
    rng = np.random.default_rng(3)
    scores = rng.integers(1, 6, (500, 3)).astype(np.int8)
    labels = rng.integers(0, 3, 500)
    ledger = RunLedger(as_of=AS_OF, id_type=pa.string())
    publication = build_publication(
        pd.Series(ids), labels, profiles_for(labels), StoredState(), ledger, scores
    )
    store.publish(AS_OF, publication_writes(publication, ledger, RunFacts()))

    table = read("customer_rfm_scores").sort_values("customer_id").reset_index(drop=True)
    assert list(table.columns) == [
        "customer_id", "recency_score", "frequency_score", "monetary_score", "rfm_segment", "as_of",
    ]  # fmt: skip
    assert table["customer_id"].tolist() == ids.tolist()
    assert (
        table[["recency_score", "frequency_score", "monetary_score"]].to_numpy().tolist() == scores.tolist()
    )
    assert table["rfm_segment"].tolist() == [CELL_NAMES[c] for c in cells_of(scores)]
    assert set(pd.to_datetime(table["as_of"]).dt.date) == {AS_OF}
    assert "recency_score" not in read("customer_segments").columns  # never in the sync table

    # the next night replaces every score; a run without RFM features writes no scores
    later = date(2026, 11, 2)
    ledger = RunLedger(as_of=later, id_type=pa.string())
    stored = store.read_state(later)
    rescored = build_publication(
        pd.Series(ids[:300]), labels[:300], profiles_for(labels[:300]), stored, ledger, scores[:300] % 5 + 1
    )
    store.publish(later, publication_writes(rescored, ledger, RunFacts()))
    table = read("customer_rfm_scores")
    assert len(table) == 300 and set(pd.to_datetime(table["as_of"]).dt.date) == {later}
    plain = build_publication(pd.Series(ids), labels, profiles_for(labels), StoredState(), ledger)
    assert "customer_rfm_scores" not in {write.name for write in plain.writes}


def test_map_cells_are_published_under_their_own_names_where_a_clusterings_keys_persist():
    """A segment matched to the last publication keeps its name, except a map cell: its name is
    its definition (switching from k-means to the map must not call Champions 'Active buyers')."""
    ids = np.array([f"c{i:04d}" for i in range(600)])
    labels = np.repeat([0, 1, 2], 200)
    first, _ = publish(ids, labels, StoredState(), DAY1)  # named "Group 0" .. "Group 2"
    profiles = profiles_for(labels).assign(name=["Champions", "Loyal", "Lost"])
    ledger = RunLedger(as_of=DAY2, id_type=pa.string())
    clustering = build_publication(pd.Series(ids), labels, profiles, as_state(first, DAY1), ledger)
    assert set(clustering.table("customer_segments")["segment_name"]) == {"Group 0", "Group 1", "Group 2"}
    mapped = build_publication(
        pd.Series(ids), labels, profiles.assign(name_defined=True), as_state(first, DAY1), ledger
    )
    assert mapped.keys == clustering.keys  # the same segments, by their members
    snapshot = mapped.table("customer_segments")
    assert snapshot.groupby("segment_key")["segment_name"].first().to_dict() == {
        mapped.keys[0]: "Champions",
        mapped.keys[1]: "Loyal",
        mapped.keys[2]: "Lost",
    }
    assert set(mapped.table("segment_definitions")["segment_name"]) == {"Champions", "Loyal", "Lost"}


def test_postgres_declares_the_primary_key_of_customer_rfm_scores(pg_uri, pg_schema):
    from segflow.stores import PostgresStore

    store = PostgresStore(pg_uri, pg_schema)
    ledger = RunLedger(as_of=AS_OF, id_type=pa.int64())
    labels = np.zeros(12, dtype=np.int64)
    publication = build_publication(
        pd.Series(np.arange(12)), labels, profiles_for(labels), StoredState(), ledger, HAND_SCORES
    )
    store.publish(AS_OF, publication_writes(publication, ledger, RunFacts()))
    with psycopg.connect(pg_uri) as connection:
        key = connection.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND i.indrelid = %s::regclass",
            (f'"{pg_schema}".customer_rfm_scores',),
        ).fetchall()
        types = dict(
            connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'customer_rfm_scores'",
                (pg_schema,),
            ).fetchall()
        )
    assert key == [("customer_id",)]
    assert types["recency_score"] == "smallint" and types["rfm_segment"] == "text"


# ---------------------------------------------------------------------------- the report


def test_the_report_crosstab_gives_each_segments_share_in_each_map_cell():
    labels = np.array([2, 2, 0, 0, 2, 2, 3, 1, 1, 0, 1, 1])
    names = pd.Series({0: "Steady", 1: "Gone", 2: "Fresh", 3: "Lone"})
    shares = rfm_map_crosstab(labels, HAND_SCORES, names)
    assert list(shares.index) == ["Fresh", "Gone", "Steady", "Lone"]  # largest segment first, ties by name
    assert list(shares.columns) == [name for name in CELL_NAMES if name in HAND_CELLS]  # map order
    assert shares.loc["Steady", "Loyal"] == 1.0
    assert shares.loc["Gone"].to_dict() == pytest.approx(
        {**dict.fromkeys(shares.columns, 0.0), "Can't lose them": 0.25, "Lost": 0.5, "Hibernating": 0.25}
    )
    assert np.allclose(shares.sum(axis=1), 1.0)

    page = render_report(replace(report_inputs(["Steady"]), rfm_map=shares, rfm_map_silhouette=0.036))
    section = page[page.index("The segments on the RFM map") :]
    assert "silhouette\n0.036" in section and "Can&#39;t lose them" in section
    assert re.search(r"<td>Gone</td>(\s*<td>\s*</td>){5}\s*<td>\s*25%", section)  # Can't lose them: 6th
    assert "The segments on the RFM map" not in render_report(report_inputs(["Steady"]))


# ---------------------------------------------------------------------------- end to end


def hand_transactions(customers: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Orders giving each customer exactly its recency, frequency and spend as of a date: the last
    order `recency_days` before it, the others 7 days apart before that, 1.0 each but the last."""
    rows = []
    for customer in customers.itertuples():
        for order in range(customer.frequency):
            days_before_last = 7 * (customer.frequency - 1 - order)
            amount = 1.0 if order < customer.frequency - 1 else customer.monetary - (customer.frequency - 1)
            rows.append(
                {
                    "shopper": customer.customer,
                    "bought": pd.Timestamp(as_of)
                    - pd.Timedelta(days=customer.recency_days + days_before_last)
                    + pd.Timedelta(hours=12),
                    "paid": amount,
                }
            )
    return pd.DataFrame(rows)


def rfm_run_config(orders, warehouse, parquet):
    return build_config(
        {
            "sources": {
                "transactions": {
                    "uri": str(orders),
                    "id_column": "shopper",
                    "timestamp_column": "bought",
                    "amount_column": "paid",
                }
            },
            "clustering": {"algorithm": "rfm"},
            # a dozen customers: the stability refits would learn edges from nine of them
            "gate": {"stability_resamples": 0},
            "publish": {"warehouse": f"duckdb:///{warehouse}", "parquet": str(parquet), "reports": None},
        }
    )


@pytest.mark.usefixtures("prefect_harness")
def test_algorithm_rfm_publishes_the_hand_computed_cells_and_scores_new_customers_into_them(tmp_path):
    orders = tmp_path / "orders.parquet"
    hand_transactions(HAND, AS_OF).to_parquet(orders)
    warehouse, parquet = tmp_path / "w.duckdb", tmp_path / "pq"
    summary = segmentation_flow(config=rfm_run_config(orders, warehouse, parquet), as_of=AS_OF)
    assert summary["status"] == "published" and summary["segments"] == 9

    def read(sql: str) -> pd.DataFrame:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            return connection.sql(sql).df()

    segments = read(
        "SELECT customer_id, segment_key, segment_name FROM segments.customer_segments ORDER BY 1"
    )
    assert segments["segment_name"].tolist() == HAND_CELLS
    scores = read("SELECT * FROM segments.customer_rfm_scores ORDER BY customer_id")
    assert (
        scores[["recency_score", "frequency_score", "monetary_score"]].to_numpy().tolist()
        == HAND_SCORES.tolist()
    )
    assert scores["rfm_segment"].tolist() == HAND_CELLS
    on_parquet = pq.read_table(parquet / "current" / "customer_rfm_scores.parquet").to_pandas()
    assert on_parquet.sort_values("customer_id")["rfm_segment"].tolist() == HAND_CELLS
    run = read("SELECT algorithm, n_segments, details FROM segments.segmentation_runs").iloc[0]
    assert (run["algorithm"], run["n_segments"]) == ("rfm", 9)
    assert '"baseline": true' in run["details"]

    # new customers, scored with the saved model: the fitted edges put them in the same cells
    newcomers = pd.DataFrame(
        {
            "customer": ["M", "N", "O", "P", "A"],
            "recency_days": [40, 1, 1000, 60, 3],
            "frequency": [5, 30, 1, 1, 12],
            "monetary": [100.0, 5000, 10, 35, 900],
        }
    )
    new_orders = tmp_path / "new_orders.parquet"
    hand_transactions(newcomers, AS_OF).to_parquet(new_orders)
    scored = scoring_flow(config=rfm_run_config(new_orders, warehouse, parquet), as_of=AS_OF)
    assert scored["status"] == "scored"
    key_of = dict(zip(segments["segment_name"], segments["segment_key"], strict=False))
    after = read("SELECT customer_id, segment_key FROM segments.customer_segments").set_index("customer_id")
    expected = {"M": key_of["Loyal"], "N": key_of["Champions"], "O": key_of["Lost"], "A": key_of["Champions"]}
    assert {customer: after.loc[customer, "segment_key"] for customer in expected} == expected
    assert after.loc["P", "segment_key"] == NOISE_SEGMENT_KEY  # About to sleep: a cell empty in the fit
