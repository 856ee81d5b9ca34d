"""Validate: the gate that decides whether a segmentation is good enough to publish."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from segflow.config import GateConfig


@dataclass(frozen=True)
class GateCheck:
    """One gate rule, its measured value and whether it passed."""

    rule: str
    value: float | None
    threshold: float
    passed: bool
    message: str


@dataclass
class GateDecision:
    checks: list[GateCheck]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [check.message for check in self.checks if not check.passed]

    def as_records(self) -> list[dict[str, Any]]:
        return [asdict(check) for check in self.checks]


def at_least(rule: str, value: float | None, threshold: float, what: str) -> GateCheck:
    passed = value is not None and value >= threshold
    shown = "n/a" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")
    verdict = "meets" if passed else "is below"
    return GateCheck(rule, value, threshold, passed, f"{what} {shown} {verdict} the minimum {threshold:g}")


def check_feasible(n_customers: int, n_features: int, k_low: int) -> GateDecision:
    """Before clustering: enough customers and at least one feature that varies."""
    return GateDecision(
        checks=[
            at_least("min_customers", float(n_customers), k_low + 1, "number of customers"),
            at_least("min_features", float(n_features), 1, "number of varying features"),
        ]
    )


def evaluate_gate(n_segments: int, scores: dict[str, Any], gate: GateConfig) -> GateDecision:
    """Apply every gate rule to a segmentation's scores."""
    silhouette = scores.get("silhouette")
    return GateDecision(
        checks=[
            at_least("min_segments", float(n_segments), 2, "number of segments"),
            at_least(
                "min_silhouette",
                None if silhouette is None else float(silhouette),
                gate.min_silhouette,
                "silhouette (sampled)",
            ),
        ]
    )


@task(name="feasibility")
def feasibility_task(shape: tuple[int, int], k: tuple[int, int]) -> GateDecision:
    decision = check_feasible(shape[0], shape[1], k[0])
    for reason in decision.reasons:
        get_run_logger().warning("gate: %s", reason)
    return decision


@task(name="validate")
def validate_task(n_segments: int, scores: dict[str, Any], gate: GateConfig) -> GateDecision:
    decision = evaluate_gate(n_segments, scores, gate)
    logger = get_run_logger()
    for check in decision.checks:
        (logger.info if check.passed else logger.warning)("gate: %s", check.message)
    return decision
