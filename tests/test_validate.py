"""The validation gate: every rule, its threshold, its severity, and the override."""

from __future__ import annotations

import numpy as np
import pytest

from segflow.config import GateConfig
from segflow.errors import GateRejected
from segflow.tables import NOISE_LABEL
from segflow.tasks.validate import check_feasible, evaluate_gate

GOOD_SCORES = {"silhouette": 0.5, "stability": 0.9}
NO_DRIFT = {"changed_share": None, "size_shift": None}


def labels(*sizes: int, noise: int = 0) -> np.ndarray:
    """Segment labels 0, 1, ... with the given sizes, then `noise` rows of noise."""
    return np.concatenate(
        [np.full(size, label) for label, size in enumerate(sizes)] + [np.full(noise, NOISE_LABEL)]
    )


def failed(decision) -> dict[str, str]:
    return {check.rule: check.severity for check in decision.checks if not check.passed}


def test_a_good_segmentation_passes_every_rule():
    decision = evaluate_gate(
        labels(40, 35, 25), GOOD_SCORES, {"changed_share": 0.1, "size_shift": 0.05}, GateConfig()
    )
    assert failed(decision) == {}
    assert decision.passed and decision.publishes and decision.status == "published"
    assert [c.rule for c in decision.checks] == [
        "min_segments",
        "min_silhouette",
        "min_segment_share",
        "max_segment_share",
        "max_noise_share",
        "min_stability",
        "max_changed_share",
        "max_size_shift",
    ]


@pytest.mark.parametrize(
    ("segments", "scores", "drift", "rule"),
    [
        (labels(80, noise=20), GOOD_SCORES, NO_DRIFT, "min_segments"),
        (labels(50, 50), {**GOOD_SCORES, "silhouette": 0.2}, NO_DRIFT, "min_silhouette"),
        (labels(500, 495, 5), GOOD_SCORES, NO_DRIFT, "min_segment_share"),
        (labels(85, 15), GOOD_SCORES, NO_DRIFT, "max_segment_share"),
        (labels(30, 30, noise=40), GOOD_SCORES, NO_DRIFT, "max_noise_share"),
        (labels(50, 50), {**GOOD_SCORES, "stability": 0.4}, NO_DRIFT, "min_stability"),
    ],
)
def test_each_critical_rule_rejects_on_its_own(segments, scores, drift, rule):
    decision = evaluate_gate(segments, scores, drift, GateConfig())
    assert failed(decision) == {rule: "critical"}
    assert not decision.publishes and decision.status == "rejected"
    error = GateRejected(decision.reasons)
    assert error.exit_code == 4
    assert f"{next(c.message for c in decision.checks if c.rule == rule)} (critical)" in str(error)


def test_thresholds_are_inclusive_bounds():
    exactly = evaluate_gate(labels(80, 20), {"silhouette": 0.25, "stability": 0.6}, NO_DRIFT, GateConfig())
    assert failed(exactly) == {}


@pytest.mark.parametrize(
    ("drift", "rule"),
    [
        ({"changed_share": 0.7, "size_shift": 0.1}, "max_changed_share"),
        ({"changed_share": 0.1, "size_shift": 0.4}, "max_size_shift"),
    ],
)
def test_drift_rules_warn_by_default_and_can_be_made_critical(drift, rule):
    warned = evaluate_gate(labels(50, 50), GOOD_SCORES, drift, GateConfig())
    assert failed(warned) == {rule: "warning"}
    assert warned.publishes and warned.status == "published"
    assert warned.reasons == [f"{next(c.message for c in warned.checks if c.rule == rule)} (warning)"]

    strict = evaluate_gate(labels(50, 50), GOOD_SCORES, drift, GateConfig(severity={rule: "critical"}))
    assert failed(strict) == {rule: "critical"} and not strict.publishes


def test_unmeasured_values_pass_as_not_measured():
    decision = evaluate_gate(labels(50, 50), {"silhouette": None, "stability": None}, NO_DRIFT, GateConfig())
    unmeasured = [c for c in decision.checks if c.value is None]
    assert {c.rule for c in unmeasured} == {
        "min_silhouette",
        "min_stability",
        "max_changed_share",
        "max_size_shift",
    }
    assert all(c.passed and c.message.endswith("not measured") for c in unmeasured)


def test_an_override_publishes_a_rejected_segmentation_and_says_so():
    decision = evaluate_gate(labels(90, 10), GOOD_SCORES, NO_DRIFT, GateConfig(override="reviewed by J. Doe"))
    assert failed(decision) == {"max_segment_share": "critical"}
    assert decision.publishes and decision.status == "published_override"
    assert decision.override == "reviewed by J. Doe"


def test_measures_record_shares_noise_and_drift():
    decision = evaluate_gate(
        labels(60, 30, noise=10), GOOD_SCORES, {"changed_share": 0.2, "size_shift": None}, GateConfig()
    )
    assert decision.measures == {"noise_share": 0.1, "segment_shares": [0.6, 0.3], "changed_share": 0.2}


def test_feasibility_needs_more_customers_than_the_smallest_k_and_a_varying_feature():
    assert check_feasible(3, 2, 2).passed
    assert {c.rule for c in check_feasible(2, 2, 2).checks if not c.passed} == {"min_customers"}
    assert {c.rule for c in check_feasible(100, 0, 2).checks if not c.passed} == {"min_features"}


def test_density_segmentations_are_judged_by_dbcv_and_the_others_by_silhouette():
    moons = {"measure": "dbcv", "dbcv": 0.4, "silhouette": 0.07, "stability": 0.95}
    decision = evaluate_gate(labels(50, 50), moons, NO_DRIFT, GateConfig())
    assert failed(decision) == {}  # silhouette 0.07 would have rejected two moons found exactly
    assert "min_dbcv" in [c.rule for c in decision.checks] and "min_silhouette" not in [
        c.rule for c in decision.checks
    ]
    weak = evaluate_gate(labels(50, 50), {**moons, "dbcv": 0.1}, NO_DRIFT, GateConfig())
    assert failed(weak) == {"min_dbcv": "critical"}
    blobs = {"measure": "silhouette", "silhouette": 0.2, "dbcv": 0.9, "stability": 0.95}
    assert failed(evaluate_gate(labels(50, 50), blobs, NO_DRIFT, GateConfig())) == {
        "min_silhouette": "critical"
    }


def test_fewer_segments_than_min_segments_are_rejected():
    assert failed(evaluate_gate(labels(50, 50), GOOD_SCORES, NO_DRIFT, GateConfig(), min_segments=3)) == {
        "min_segments": "critical"
    }
    assert (
        failed(evaluate_gate(labels(40, 30, 30), GOOD_SCORES, NO_DRIFT, GateConfig(), min_segments=3)) == {}
    )
