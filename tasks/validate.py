"""Validate: the gate that decides whether a segmentation is good enough to publish.

Every rule has a threshold and a severity (config `gate:`). A failed critical rule rejects the
run unless `gate.override` gives a reason to publish anyway; failed warnings are recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, get_args

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import GateConfig, GateRule
from segflow.retry import IO_RETRY_POLICY
from segflow.stores import PublicationStore
from segflow.tables import NOISE_LABEL
from segflow.timing import timed


@dataclass(frozen=True)
class GateCheck:
    """One gate rule, its measured value and whether it passed."""

    rule: str
    value: float | None
    threshold: float
    passed: bool
    severity: str
    message: str


@dataclass
class GateDecision:
    checks: list[GateCheck]
    override: str | None = None
    measures: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed and c.severity == "critical"]

    @property
    def passed(self) -> bool:
        """No critical rule failed."""
        return not self.blocking

    @property
    def publishes(self) -> bool:
        return self.passed or self.override is not None

    @property
    def status(self) -> str:
        """The run's status under this decision: published, published on override, or rejected."""
        if not self.publishes:
            return "rejected"
        return "published_override" if self.blocking else "published"

    @property
    def reasons(self) -> list[str]:
        return [f"{c.message} ({c.severity})" for c in self.checks if not c.passed]

    def as_records(self) -> list[dict[str, Any]]:
        return [asdict(check) for check in self.checks]


def bound_check(
    rule: str, value: float | None, threshold: float, what: str, severity: str, upper: bool = False
) -> GateCheck:
    """A check that `value` is at least (or, with upper, at most) the threshold; None passes."""
    if value is None:
        return GateCheck(rule, None, threshold, True, severity, f"{what}: not measured")
    passed = value <= threshold if upper else value >= threshold
    shown = f"{value:.3f}".rstrip("0").rstrip(".")
    if upper:
        verdict = "is within the maximum" if passed else "exceeds the maximum"
    else:
        verdict = "meets the minimum" if passed else "is below the minimum"
    return GateCheck(
        rule, float(value), threshold, passed, severity, f"{what} {shown} {verdict} {threshold:g}"
    )


def segment_shares(labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Shares of the non-noise segments, and the noise share."""
    values, counts = np.unique(labels, return_counts=True)
    shares = counts / len(labels)
    noise = float(shares[values == NOISE_LABEL].sum())
    return shares[values != NOISE_LABEL], noise


def check_feasible(n_customers: int, n_features: int, k_low: int) -> GateDecision:
    """Before clustering: enough customers and at least one feature that varies."""
    return GateDecision(
        checks=[
            bound_check("min_customers", n_customers, k_low + 1, "number of customers", "critical"),
            bound_check("min_features", n_features, 1, "number of varying features", "critical"),
        ]
    )


def validity_check(scores: dict[str, Any], gate: GateConfig, severity: dict[str, str]) -> GateCheck:
    """The validity rule of the measure that judged the segmentation: DBCV for density methods (their
    clusters may be any shape), silhouette for the others."""
    if scores.get("measure") == "dbcv":
        what = "density-based validity (DBCV, sampled)"
        return bound_check("min_dbcv", scores.get("dbcv"), gate.min_dbcv, what, severity["min_dbcv"])
    what = "silhouette (sampled)"
    return bound_check(
        "min_silhouette", scores.get("silhouette"), gate.min_silhouette, what, severity["min_silhouette"]
    )


# The RFM map's cells are defined by a rule, not found in the data: how compact they are and how small
# the smallest is say nothing against publishing them, so those rules are shown but not judged.
RULE_FAMILIES = frozenset({"map"})
NOT_JUDGED_FOR_RULES = ("min_silhouette", "min_segment_share")


def not_judged(check: GateCheck) -> GateCheck:
    """A check shown for information: it passes whatever its value."""
    reason = "not judged: the RFM map's cells are defined by a rule, not found"
    return replace(check, passed=True, severity="info", message=f"{check.message} ({reason})")


def row_count_checks(
    rows_read: dict[str, int], history: list[dict[str, int]], gate: GateConfig
) -> tuple[list[GateCheck], dict[str, Any]]:
    """The record-count alert: each source's rows read against the median of the same source in
    earlier runs (newest first, at most gate.row_count_runs of them), and the measures."""
    severity = gate.severity["max_row_count_change"]
    checks, measures = [], {}
    for source, rows in rows_read.items():
        earlier = [run[source] for run in history[: gate.row_count_runs] if source in run]
        what = f"source '{source}': rows read"
        if not earlier:
            checks.append(
                bound_check("max_row_count_change", None, gate.max_row_count_change, what, severity)
            )
            continue
        usual = float(np.median(earlier))
        change = abs(rows - usual) / usual if usual else float(rows > 0)
        passed = change <= gate.max_row_count_change
        message = (
            f"source '{source}': {rows:,} rows read, {change:.0%} {'below' if rows < usual else 'above'} "
            f"the median of the last {len(earlier)} published runs ({usual:,.0f}); "
            f"{'within' if passed else 'exceeds'} the allowed change of {gate.max_row_count_change:.0%}"
        )
        checks.append(
            GateCheck("max_row_count_change", change, gate.max_row_count_change, passed, severity, message)
        )
        measures[source] = {"rows": rows, "median": usual, "runs": len(earlier), "change": change}
    return checks, measures


def published_rows_read(runs: Any) -> list[dict[str, int]]:
    """Rows read per source by each published run of a segmentation_runs table, newest first."""
    if runs.empty:
        return []
    published = runs[runs["status"] == "published"]
    return [json.loads(rows) for rows in published["rows_read"] if rows]


def evaluate_gate(
    labels: np.ndarray,
    scores: dict[str, Any],
    drift: dict[str, float | None],
    gate: GateConfig,
    min_segments: int = 2,
    family: str = "partitioning",
    rows_read: dict[str, int] | None = None,
    history: list[dict[str, int]] | None = None,
) -> GateDecision:
    """Apply every gate rule to a segmentation: quality, sizes, noise, stability, drift, and the
    sources' row counts against their history. `family`: the algorithm's family (the registry's); a
    rule-based map is not judged on cluster quality."""
    severity = {rule: gate.severity.get(rule, "critical") for rule in get_args(GateRule)}
    shares, noise = segment_shares(labels)
    stability = scores.get("stability")
    checks = [
        bound_check("min_segments", len(shares), min_segments, "number of segments", "critical"),
        validity_check(scores, gate, severity),
        bound_check(
            "min_segment_share",
            float(shares.min()) if len(shares) else None,
            gate.min_segment_share,
            "smallest segment's share",
            severity["min_segment_share"],
        ),
        bound_check(
            "max_segment_share",
            float(shares.max()) if len(shares) else None,
            gate.max_segment_share,
            "largest segment's share",
            severity["max_segment_share"],
            upper=True,
        ),
        bound_check(
            "max_noise_share",
            noise,
            gate.max_noise_share,
            "share of customers left as noise",
            severity["max_noise_share"],
            upper=True,
        ),
        bound_check(
            "min_stability",
            stability,
            gate.min_stability,
            "stability under resampling (adjusted Rand index)",
            severity["min_stability"],
        ),
        bound_check(
            "max_changed_share",
            drift.get("changed_share"),
            gate.max_changed_share,
            "share of last publication's customers who changed segment",
            severity["max_changed_share"],
            upper=True,
        ),
        bound_check(
            "max_size_shift",
            drift.get("size_shift"),
            gate.max_size_shift,
            "shift of the segment size mix since the last publication (total variation)",
            severity["max_size_shift"],
            upper=True,
        ),
    ]
    if family in RULE_FAMILIES:
        checks = [not_judged(check) if check.rule in NOT_JUDGED_FOR_RULES else check for check in checks]
    counted, row_counts = row_count_checks(rows_read or {}, history or [], gate)
    checks += counted
    measures = {
        "noise_share": noise,
        "segment_shares": sorted(shares.round(4).tolist(), reverse=True),
        **{k: v for k, v in drift.items() if v is not None},
        **({"row_counts": row_counts} if row_counts else {}),
    }
    return GateDecision(checks=checks, override=gate.override, measures=measures)


RUN_HISTORY_ROWS_PER_RUN = 5  # rejected, failed and scoring runs sit between published ones


@task(name="feasibility", cache_policy=NO_CACHE)
@timed
def feasibility_task(shape: tuple[int, int], k: tuple[int, int]) -> GateDecision:
    decision = check_feasible(shape[0], shape[1], k[0])
    for reason in decision.reasons:
        get_run_logger().warning("gate: %s", reason)
    return decision


@task(name="row-count-history", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def row_count_history_task(store: PublicationStore, runs: int) -> list[dict[str, int]]:
    """Rows read per source by the last published runs, newest first (other runs interleave)."""
    return published_rows_read(store.read_runs(RUN_HISTORY_ROWS_PER_RUN * runs))[:runs]


@task(name="validate", cache_policy=NO_CACHE)
@timed
def validate_task(
    labels: np.ndarray,
    scores: dict[str, Any],
    drift: dict[str, float | None],
    gate: GateConfig,
    min_segments: int,
    family: str,
    rows_read: dict[str, int] | None = None,
    history: list[dict[str, int]] | None = None,
) -> GateDecision:
    decision = evaluate_gate(labels, scores, drift, gate, min_segments, family, rows_read, history)
    logger = get_run_logger()
    for check in decision.checks:
        (logger.info if check.passed else logger.warning)("gate: %s", check.message)
    if decision.blocking and decision.override:
        logger.warning("gate: rejected, but published on override: %s", decision.override)
    return decision
