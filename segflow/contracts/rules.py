"""Contract rules as data: the ODCS threshold operators, one compiled rule per GX expectation, and the
compiled contract of one source. One threshold check serves a whole table, partitions added up and
quarantine alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = {
    "critical": "critical",
    "error": "critical",
    "warning": "warning",
    "warn": "warning",
    "info": "info",
}
QUARANTINING_SEVERITIES = ("critical", "warning")
READ_CHECKED_TYPES = ("number", "integer", "date", "timestamp")

OPERATORS = {
    "mustBe": "=",
    "mustNotBe": "!=",
    "mustBeGreaterThan": ">",
    "mustBeGreaterOrEqualTo": ">=",
    "mustBeLessThan": "<",
    "mustBeLessOrEqualTo": "<=",
    "mustBeBetween": "between",
    "mustNotBeBetween": "not between",
}


def number_text(value: Any) -> str:
    """A number as a rule label shows it: 5 rather than 5.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@dataclass(frozen=True)
class Threshold:
    """An ODCS operator applied to a measured number: failing rows, their percent, or rows."""

    operator: str
    value: Any
    unit: str = "rows"

    def holds(self, measured: float) -> bool:
        value = self.value
        match self.operator:
            case "mustBe":
                return measured == value
            case "mustNotBe":
                return measured != value
            case "mustBeGreaterThan":
                return measured > value
            case "mustBeGreaterOrEqualTo":
                return measured >= value
            case "mustBeLessThan":
                return measured < value
            case "mustBeLessOrEqualTo":
                return measured <= value
            case "mustBeBetween":
                return value[0] <= measured <= value[1]
            case _:
                return not value[0] <= measured <= value[1]

    @property
    def zero_tolerance(self) -> bool:
        """True when one failing row already breaks the rule."""
        smallest_failure = 1 if self.unit == "rows" else 1e-9
        return self.holds(0) and not self.holds(smallest_failure)

    def __str__(self) -> str:
        unit = "%" if self.unit == "percent" else ""
        if self.operator in ("mustBeBetween", "mustNotBeBetween"):
            low, high = (number_text(v) + unit for v in self.value)
            return f"{OPERATORS[self.operator]} {low} and {high}"
        return f"{OPERATORS[self.operator]} {number_text(self.value)}{unit}"


NO_FAILING_ROWS = Threshold("mustBe", 0)


@dataclass(frozen=True)
class CompiledRule:
    """One contract rule as one GX expectation, with what segflow does with its result."""

    rule: str
    column: str | None
    columns: tuple[str, ...]
    severity: str
    expectation: dict[str, Any]
    # "failing_rows": GX's unexpected rows; "repeats": rows repeating an earlier row;
    # "row_count": the table's rows; "gx": GX's own verdict (custom rules).
    measure: str
    threshold: Threshold | None

    def holds_for(self, count: int, rows: int) -> bool:
        """Whether the rule holds with count of rows failing: its threshold (a number or a share of
        the rows); without one (a structural flag such as `unique: true`), GX's `mostly`, else no
        row may fail."""
        if self.threshold is None:
            mostly = self.expectation["kwargs"].get("mostly")
            return count == 0 if mostly is None else rows == 0 or 1 - count / rows >= mostly
        share = 100 * count / rows if rows else 0.0
        return self.threshold.holds(share if self.threshold.unit == "percent" else count)

    @property
    def quarantines(self) -> bool:
        """Whether failing rows leave the table (row rules without tolerance, not info)."""
        if self.severity not in QUARANTINING_SEVERITIES or self.measure == "row_count":
            return False
        if self.threshold is None:
            return "mostly" not in self.expectation["kwargs"]
        return self.threshold.zero_tolerance


@dataclass(frozen=True)
class CompiledContract:
    """The rules of one schema object of a contract, ready to run as a GX suite."""

    name: str
    version: str
    path: str  # the contract file, named in every outcome's message
    object_name: str
    physical_name: str | None
    columns: dict[str, str | None]
    required: frozenset[str]
    rules: list[CompiledRule] = field(default_factory=list)
    personal: frozenset[str] = frozenset()  # columns the contract marks as personal data

    @property
    def expectations(self) -> list[dict[str, Any]]:
        """The GX 1.x expectation configurations (type, kwargs, severity, meta), in rule order."""
        return [rule.expectation for rule in self.rules]


def typed_column(column: str, logical_type: str) -> str:
    """The validated column holding a column's values read as its logical type."""
    return f"{column} as {logical_type}"


def readable_column(column: str, logical_type: str) -> str:
    """The validated column that is null exactly where a value is present but cannot be read as its
    logical type (the 'is <type>' rule's column)."""
    return f"{column} readable as {logical_type}"
