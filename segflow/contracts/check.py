"""Checking tables against compiled contracts: every row validated by Great Expectations, the table
split into the rows that passed and a quarantine, and one outcome per rule.

Row rules with no tolerance (a failing row fails the rule) quarantine their failing rows; rules
with a tolerance and table rules (row count, duplicate share) only produce an outcome. A
uniqueness rule quarantines only the repeats: the first occurrence of a key that no other rule
quarantines stays.

A table checked in parts (the partitions of dask mode) gives one report per part; `combine_reports`
adds them up into the report of the whole table, with the same verdicts and the same wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from segflow.config import SourcesConfig
from segflow.contracts.gx import serialisable, validate_with_gx, validation_frame
from segflow.contracts.rules import CompiledContract, CompiledRule
from segflow.quarantine import empty_quarantine, quarantine_frame


@dataclass(frozen=True)
class RuleOutcome:
    """The result of one contract rule on one source table."""

    source: str
    contract: str
    rule: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int
    row_count: int
    message: str
    evaluated: bool = True  # False: the rule raised an error and could not be evaluated


@dataclass
class QualityReport:
    """Everything one contract check found, and the table split into passed and quarantined."""

    source: str
    contract_path: str
    contract_version: str
    outcomes: list[RuleOutcome]
    passed_rows: pd.DataFrame  # empty for a report added up from parts (they keep their own rows)
    quarantine: pd.DataFrame
    validation_result: dict
    rows_checked: int
    rows_passed: int
    columns: tuple[str, ...] = ()  # the table's columns
    personal_columns: frozenset[str] = frozenset()

    @property
    def blocking(self) -> list[RuleOutcome]:
        """Failed critical rules: the run must not publish."""
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[RuleOutcome]:
        """Failed rules that do not block (severity warning or info)."""
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    @property
    def rows_quarantined(self) -> int:
        return int(self.quarantine["row_number"].nunique())

    @property
    def message(self) -> str:
        """What blocks, one failed critical rule a line; empty when nothing blocks."""
        return blocking_message(self.blocking)


def check_table(
    table: pd.DataFrame, contract: CompiledContract, source: str, row_numbers: np.ndarray | None = None
) -> QualityReport:
    """Check every row of a source table against its contract; quarantine the rows that fail.
    `row_numbers`: each row's place in the whole source, when the table is a part of it."""
    row_count = len(table)
    present = [column for column in contract.columns if column in table.columns]
    runnable = [rule for rule in contract.rules if set(rule.columns) <= set(present)]
    frame = validation_frame(table, contract, present)
    result = validate_with_gx(frame, contract, runnable)
    gx_results = [None] * len(runnable)
    for gx_result in result.results:
        gx_results[gx_result.expectation_config.meta["position"]] = gx_result

    # Repeats are judged last, among the rows no other rule quarantines, so that the first
    # acceptable occurrence of a key is the one kept.
    failing_rows: dict[int, np.ndarray] = {}
    for position, (rule, gx_result) in enumerate(zip(runnable, gx_results, strict=True)):
        if rule.quarantines and rule.measure != "repeats":
            failing_rows[position] = unexpected_rows(gx_result.result)
    quarantined = np.zeros(row_count, dtype=bool)
    for rows in failing_rows.values():
        quarantined[rows] = True

    outcomes = [
        missing_column_outcome(column, contract, tuple(map(str, table.columns)), source, row_count)
        for column in contract.columns
        if column not in present
    ]
    failures = []
    for position, (rule, gx_result) in enumerate(zip(runnable, gx_results, strict=True)):
        if rule.measure == "repeats":
            rows = repeated_rows(frame, rule, gx_result.result, quarantined)
            count = len(rows)
            if rule.quarantines:
                failing_rows[position] = rows
        else:
            count = int(gx_result.result.get("unexpected_count") or 0)
        raised = gx_result.exception_info.get("raised_exception")
        outcome = rule_outcome(
            rule,
            contract,
            source,
            count,
            row_count,
            gx_success=bool(gx_result.success),
            error=gx_result.exception_info.get("exception_message") if raised else None,
        )
        outcomes.append(outcome)
        if position in failing_rows:
            failures.append((outcome.rule, outcome.column, outcome.severity, failing_rows[position]))

    kept = np.ones(row_count, dtype=bool)
    for *_, rows in failures:
        kept[rows] = False
    return QualityReport(
        source=source,
        contract_path=contract.path,
        contract_version=contract.version,
        outcomes=outcomes,
        passed_rows=table if kept.all() else rows_where(table, kept),
        quarantine=quarantine_frame(table, source, failures, contract.personal, row_numbers),
        validation_result=serialisable(result),
        rows_checked=row_count,
        rows_passed=int(kept.sum()),
        columns=tuple(map(str, table.columns)),
        personal_columns=contract.personal,
    )


def rows_where(table: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The table's rows where the mask holds, as `table[mask]` gives them (columns, dtypes, index).

    Each column's own array is indexed by the mask, so Arrow-backed text is filtered by Arrow;
    `table[mask]` takes it by position instead: 1.4-1.5 s for the passed rows of 12.1M
    transactions (three text columns) against 0.26-0.34 s here (benchmarks/RESULTS.md)."""
    index = table.index[mask]
    rows = pd.DataFrame(
        {
            # the column's dtype given, or pandas would infer one for an object column (text, dates)
            position: pd.Series(column.array[mask], index=index, dtype=column.dtype, copy=False)
            for position, (_, column) in enumerate(table.items())
        },
        index=index,
        copy=False,
    )
    rows.columns = table.columns  # by position: a table may repeat a column name
    return rows.__finalize__(table)  # its attrs and flags, as table[mask] keeps them


def rule_outcome(
    rule: CompiledRule,
    contract: CompiledContract,
    source: str,
    count: int,
    rows: int,
    gx_success: bool,
    error: str | None = None,
) -> RuleOutcome:
    """A rule's verdict on `count` failing rows of `rows`, and what was found, in words. Custom
    rules without a threshold take Great Expectations' own verdict (`gx_success`)."""
    if error is not None:
        success, detail = False, f"could not be evaluated: {error}"
    elif rule.measure == "row_count":
        success, detail = rule.threshold.holds(rows), f"found {rows:,} rows"
    else:
        success = gx_success if rule.threshold is None else rule.holds_for(count, rows)
        detail = f"{count:,} of {rows:,} rows fail"
        if rule.measure == "repeats":
            detail += " as repeats of an earlier row"
        if rule.threshold is not None and not rule.threshold.zero_tolerance:
            share = 100 * count / rows if rows else 0.0
            detail += f" ({share:.2f}%, allowed {rule.threshold})"
    where = f"source '{source}', " + (f"column '{rule.column}', " if rule.column else "")
    return RuleOutcome(
        source=source,
        contract=contract.path,
        rule=rule.rule,
        column=rule.column,
        severity=rule.severity,
        success=bool(success),
        unexpected_count=count,
        row_count=rows,
        message=f"{where}rule '{rule.rule}' ({rule.severity}): {detail} [{contract.path}]",
        evaluated=error is None,
    )


def missing_column_outcome(
    column: str, contract: CompiledContract, found: tuple[str, ...], source: str, rows: int
) -> RuleOutcome:
    """A contract column absent from the table: critical if required, else a warning."""
    required = column in contract.required
    detail = (
        f"column '{column}' {'required' if required else 'named'} by the contract is missing "
        f"from source '{source}'; found: {', '.join(found) or 'no columns'}"
    )
    if not required:
        detail += "; its rules were skipped"
    return RuleOutcome(
        source=source,
        contract=contract.path,
        rule=f"{column} present",
        column=column,
        severity="critical" if required else "warning",
        success=False,
        unexpected_count=rows,
        row_count=rows,
        message=f"{detail} [{contract.path}]",
    )


def unexpected_rows(gx_result: dict) -> np.ndarray:
    """Positions of the rows GX found failing, ascending."""
    return np.sort(np.asarray(gx_result.get("unexpected_index_list") or [], dtype="int64"))


def repeated_rows(
    frame: pd.DataFrame, rule: CompiledRule, gx_result: dict, quarantined: np.ndarray
) -> np.ndarray:
    """Rows repeating an earlier row's key, among the rows no other rule quarantines."""
    flagged = unexpected_rows(gx_result)
    flagged = flagged[~quarantined[flagged]]
    kwargs = rule.expectation["kwargs"]
    keys = frame.iloc[flagged][kwargs.get("column_list") or [kwargs["column"]]]
    return flagged[keys.duplicated(keep="first").to_numpy()]


def blocking_message(blocking: list[RuleOutcome]) -> str:
    """What blocks a run, one failed critical rule a line; empty when nothing blocks."""
    if not blocking:
        return ""
    return f"{len(blocking)} critical data-contract rule(s) failed:\n" + "\n".join(
        f"- {outcome.message}" for outcome in blocking
    )


# --------------------------------------------------------------------------- several sources


@dataclass
class SourcesCheck:
    """The quality stage for every source: the rows that go on, the quarantine, what blocks."""

    reports: dict[str, QualityReport]
    passed: dict[str, pd.DataFrame]
    withheld: dict[str, list[str]] = field(default_factory=dict)  # personal columns not passed on

    @property
    def contract_versions(self) -> dict[str, str]:
        return {name: report.contract_version for name, report in self.reports.items()}

    @property
    def quarantine(self) -> pd.DataFrame:
        """Every source's quarantined rows."""
        parts = [report.quarantine for report in self.reports.values() if len(report.quarantine)]
        return pd.concat(parts, ignore_index=True) if parts else empty_quarantine()

    @property
    def blocking(self) -> list[RuleOutcome]:
        return [outcome for report in self.reports.values() for outcome in report.blocking]

    @property
    def message(self) -> str:
        """What blocks the run, one failed critical rule a line; empty when nothing blocks."""
        return blocking_message(self.blocking)


def check_sources(
    sources: dict[str, pd.DataFrame],
    contracts: dict[str, CompiledContract],
    config: SourcesConfig,
    row_numbers: dict[str, np.ndarray] | None = None,
) -> SourcesCheck:
    """Check each source that has a contract; a source without one goes on unchecked. Personal
    columns are withheld from the passed rows unless the config names them as the id, timestamp
    or amount column."""
    reports = {
        name: check_table(table, contracts[name], name, (row_numbers or {}).get(name))
        for name, table in sources.items()
        if name in contracts
    }
    passed = {name: table for name, table in sources.items() if name not in reports}
    withheld = {}
    configured = dict(config.configured())
    for name, report in reports.items():
        named = ("id_column", "timestamp_column", "amount_column")
        needed = {getattr(configured[name], setting, None) for setting in named}
        personal = [c for c in report.passed_rows.columns if c in report.personal_columns - needed]
        passed[name] = report.passed_rows.drop(columns=personal)
        if personal:
            withheld[name] = personal
    return SourcesCheck(reports=reports, passed=passed, withheld=withheld)


# --------------------------------------------------------------------------- parts of a table


def combine_reports(parts: list[QualityReport], contract: CompiledContract) -> QualityReport:
    """The report of a whole table from the reports of its parts (which share its columns): counts
    added up, every rule's threshold applied to the totals, the same wording as a single check."""
    first = parts[0]
    rows = sum(part.rows_checked for part in parts)
    present = [column for column in contract.columns if column in first.columns]
    runnable = [rule for rule in contract.rules if set(rule.columns) <= set(present)]
    missing = [column for column in contract.columns if column not in present]
    outcomes = [
        missing_column_outcome(column, contract, first.columns, first.source, rows) for column in missing
    ]
    for position, rule in enumerate(runnable, start=len(missing)):
        per_part = [part.outcomes[position] for part in parts]
        if any(outcome.rule != rule.rule for outcome in per_part):
            raise ValueError(
                f"source '{first.source}': the parts' outcomes do not follow the contract's rules"
            )
        errors = [outcome.message for outcome in per_part if not outcome.evaluated]
        count = sum(outcome.unexpected_count for outcome in per_part)
        mostly = rule.expectation["kwargs"].get("mostly")
        gx_success = all(o.success for o in per_part) if mostly is None else rule.holds_for(count, rows)
        outcome = rule_outcome(rule, contract, first.source, count, rows, gx_success)
        outcomes.append(
            replace(outcome, success=False, message=errors[0], evaluated=False) if errors else outcome
        )
    quarantine = [part.quarantine for part in parts if len(part.quarantine)]
    return QualityReport(
        source=first.source,
        contract_path=first.contract_path,
        contract_version=first.contract_version,
        outcomes=outcomes,
        passed_rows=first.passed_rows.iloc[0:0],
        quarantine=pd.concat(quarantine, ignore_index=True) if quarantine else empty_quarantine(),
        validation_result=combined_validation_result(
            [p.validation_result for p in parts], outcomes[len(missing) :]
        ),
        rows_checked=rows,
        rows_passed=sum(part.rows_passed for part in parts),
        columns=first.columns,
        personal_columns=first.personal_columns,
    )


COUNTED_KEYS = ("element_count", "missing_count", "unexpected_count")


def combined_validation_result(parts: list[dict], outcomes: list[RuleOutcome]) -> dict:
    """One GX validation result from those of the parts: per expectation, the counts added up and
    their shares recomputed, and the verdict of the combined outcome (in expectation order)."""
    combined = parts[0] if len(parts) == 1 else _added_up(parts)
    for result in combined.get("results", []):
        position = result["expectation_config"]["meta"]["position"]
        result["success"] = outcomes[position].success
    verdicts = [result["success"] for result in combined.get("results", [])]
    combined["success"] = all(verdicts)
    combined["statistics"] = {
        "evaluated_expectations": len(verdicts),
        "successful_expectations": sum(verdicts),
        "unsuccessful_expectations": len(verdicts) - sum(verdicts),
        "success_percent": 100.0 * sum(verdicts) / len(verdicts) if verdicts else None,
    }
    return combined


def _added_up(parts: list[dict]) -> dict:
    """The first part's result with every expectation's counts summed over the parts."""
    combined = {
        **parts[0],
        "results": [dict(r, result=dict(r.get("result") or {})) for r in parts[0]["results"]],
    }
    by_position = [
        {r["expectation_config"]["meta"]["position"]: r.get("result") or {} for r in part["results"]}
        for part in parts
    ]
    for result in combined["results"]:
        position = result["expectation_config"]["meta"]["position"]
        counts = result["result"]
        for key in COUNTED_KEYS:
            if key in counts:
                counts[key] = sum(int(part[position].get(key) or 0) for part in by_position)
        if "observed_value" in counts and result["expectation_config"]["type"].startswith(
            "expect_table_row_count"
        ):
            counts["observed_value"] = sum(
                int(part[position].get("observed_value") or 0) for part in by_position
            )
        elements = counts.get("element_count") or 0
        nonmissing = elements - (counts.get("missing_count") or 0)
        if "unexpected_count" in counts and elements:
            counts["unexpected_percent_total"] = 100.0 * counts["unexpected_count"] / elements
            counts["unexpected_percent"] = 100.0 * counts["unexpected_count"] / max(nonmissing, 1)
            counts["unexpected_percent_nonmissing"] = counts["unexpected_percent"]
        if "missing_count" in counts and elements:
            counts["missing_percent"] = 100.0 * counts["missing_count"] / elements
    return combined
