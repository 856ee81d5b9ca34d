"""Data contracts: compile an ODCS v3 contract into a Great Expectations 1.x suite, check every row
of a source table, and split the table into the rows that passed and a quarantine.

The contract vocabulary segflow enforces (anything else in a contract is a ConfigError, except
descriptive keys such as descriptions, classification or ``logicalTypeOptions.format``):

- property flags, each a critical rule: ``logicalType`` number, integer, date or timestamp (every
  value can be read as that type), ``required`` (no nulls), ``unique`` (no repeated value),
  ``primaryKey`` (both), ``logicalTypeOptions`` pattern, minLength/maxLength, and for numbers
  minimum/maximum/exclusiveMinimum/exclusiveMaximum. An explicit library rule of the same metric
  on the same property (nullValues for required, duplicateValues for unique) replaces the flag's
  rule, so it can carry its own severity and threshold.
- library rules on a property: ``nullValues``, ``duplicateValues``, ``invalidValues`` with
  ``arguments.validValues`` or ``arguments.pattern``; on the schema object: ``rowCount`` and
  ``duplicateValues`` (``arguments.properties``, default all properties). Any ODCS operator
  (mustBe, mustBeLessOrEqualTo, ...) applies to the number of failing rows, or to their share of
  all rows with ``unit: percent``; duplicates count the rows that repeat an earlier row.
- custom rules with ``engine: greatExpectations``: ``implementation`` is a GX expectation
  (``type`` and ``kwargs``; on a property, ``column`` defaults to that property).
- ``severity``: critical or error (or none) blocks the run; warning or warn is recorded and its
  failing rows are quarantined; info is recorded only.

Personal data: a property with the custom property ``personalData: true`` (the demo's email) is
checked like any other, but its values are withheld from the quarantine's row records and its
column from the stages after this one (features, profiles, reports), unless the config names it
as a source's id, timestamp or amount column.

Row rules with no tolerance (a failing row fails the rule) quarantine their failing rows; rules
with a tolerance and table rules (row count, duplicate share) only produce an outcome. A
uniqueness rule quarantines only the repeats: the first occurrence of a key that no other rule
quarantines stays.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import SourcesConfig
from segflow.errors import ConfigError, ContractViolation
from segflow.safe_yaml import load_yaml_file, load_yaml_text

SEVERITIES = {
    "critical": "critical",
    "error": "critical",
    "warning": "warning",
    "warn": "warning",
    "info": "info",
}
QUARANTINING_SEVERITIES = ("critical", "warning")
READ_CHECKED_TYPES = ("number", "integer", "date", "timestamp")
SQL_UNSUPPORTED = "sql rules cannot run on a DataFrame; use a library or custom rule"
GX_ENGINES = ("greatexpectations", "great-expectations", "great_expectations", "gx")

# Which logicalTypeOptions are enforced, and which only describe the data, per logical type.
ENFORCED_OPTIONS = {
    "string": {"pattern", "minLength", "maxLength"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
}
DESCRIPTIVE_OPTIONS = {"format", "timezone", "defaultTimezone"}

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

# Failing row positions come back as GX's unexpected_index_list (the validated frame has a
# RangeIndex, so index = position); values are left out: rows may hold personal data.
GX_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
QUARANTINE_COLUMNS = ["source", "rule", "column", "severity", "row_number", "record"]
PERSONAL_DATA_WITHHELD = "[personal data withheld]"


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
            low, high = (_number(v) + unit for v in self.value)
            return f"{OPERATORS[self.operator]} {low} and {high}"
        return f"{OPERATORS[self.operator]} {_number(self.value)}{unit}"


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
    object_name: str
    columns: dict[str, str | None]
    required: frozenset[str]
    rules: list[CompiledRule] = field(default_factory=list)
    personal: frozenset[str] = frozenset()  # columns the contract marks as personal data

    @property
    def expectations(self) -> list[dict[str, Any]]:
        """The GX 1.x expectation configurations (type, kwargs, severity, meta), in rule order."""
        return [rule.expectation for rule in self.rules]


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


@dataclass
class QualityReport:
    """Everything one contract check found, and the table split into passed and quarantined."""

    source: str
    contract_path: str
    contract_version: str
    outcomes: list[RuleOutcome]
    passed_rows: pd.DataFrame
    quarantine: pd.DataFrame
    validation_result: dict
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
    def message(self) -> str:
        """What blocks, one failed critical rule a line; empty when nothing blocks."""
        return _blocking_message(self.blocking)


def load_contract(path: str | Path) -> dict:
    """Read an ODCS v3 contract, check it against the ODCS JSON Schema and segflow's vocabulary."""
    path = Path(path)
    contract = load_yaml_file(path, "data contract")
    if not isinstance(contract, dict) or contract.get("kind") != "DataContract":
        raise ConfigError(
            f"{path} is not an ODCS data contract: expected a mapping with "
            "'kind: DataContract' and 'apiVersion: v3.x'"
        )
    if not str(contract.get("apiVersion", "")).startswith("v3."):
        raise ConfigError(
            f"data contract {path} has apiVersion {contract.get('apiVersion')!r}; "
            "segflow reads ODCS v3 contracts (apiVersion v3.x)"
        )
    errors = sorted(_odcs_validator().iter_errors(contract), key=lambda e: list(map(str, e.path)))
    if errors:
        # The ODCS schema combines sub-schemas, so one mistake can be reported more than once.
        problems = [f"at {_location(contract, e.absolute_path)}: {_problem(e)}" for e in errors]
        details = "; ".join(list(dict.fromkeys(problems))[:5])
        raise ConfigError(f"data contract {path} does not follow the ODCS schema: {details}")
    if not contract.get("schema"):
        raise ConfigError(f"data contract {path} describes no table: its 'schema' list is empty")
    try:
        for schema_object in contract["schema"]:
            compile_contract(contract, schema_object["name"])
    except ConfigError as exc:
        raise ConfigError(f"data contract {path}: {exc}") from exc
    return contract


def compile_contract(contract: dict, object_name: str | None = None) -> CompiledContract:
    """Translate one schema object of a contract (the one named object_name, or the only one)."""
    schema_object = _schema_object(contract, object_name)
    object_name = schema_object["name"]
    # A property's column in the table is its physicalName where it has one.
    declared = schema_object.get("properties") or []
    physical = {p["name"]: p.get("physicalName") or p["name"] for p in declared}
    properties = [{**p, "name": physical[p["name"]]} for p in declared]
    columns = {prop["name"]: prop.get("logicalType") for prop in properties}
    by_case = {}
    for column in columns:  # GX finds a column by its name without regard to case
        if by_case.setdefault(column.casefold(), column) != column:
            raise ConfigError(
                f"schema '{object_name}': columns '{by_case[column.casefold()]}' and '{column}' differ "
                "only in case; Great Expectations would check one for the other: rename one"
            )
    rules: list[CompiledRule] = []
    for prop in properties:
        rules += _property_rules(prop, f"schema '{object_name}', property '{prop['name']}'")
    for position, quality in enumerate(schema_object.get("quality") or []):
        where = f"schema '{object_name}', quality[{position}]"
        rule = _schema_rule(quality, columns, physical, where)
        if rule is not None:
            rules.append(rule)
    required = frozenset(
        prop["name"] for prop in properties if prop.get("required") or prop.get("primaryKey")
    )
    return CompiledContract(
        name=str(contract.get("name") or object_name),
        version=str(contract.get("version", "")),
        object_name=object_name,
        columns=columns,
        required=required,
        rules=rules,
        personal=frozenset(prop["name"] for prop in properties if _is_personal(prop)),
    )


def _is_personal(prop: dict) -> bool:
    """Whether a property carries the custom property personalData: true."""
    return any(
        custom.get("property") == "personalData" and str(custom.get("value")).strip().lower() == "true"
        for custom in prop.get("customProperties") or []
    )


def to_expectation_suite(compiled: CompiledContract, rules: list[CompiledRule] | None = None):
    """Build the GX ExpectationSuite of the given rules (default: all rules of the contract)."""
    gx = _gx_runtime()[0]
    from great_expectations.exceptions import (
        ExpectationNotFoundError,
        InvalidExpectationConfigurationError,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = []
    for position, rule in enumerate(compiled.rules if rules is None else rules):
        config = dict(rule.expectation, meta={**rule.expectation["meta"], "position": position})
        try:
            expectations.append(ExpectationConfiguration(**config).to_domain_obj())
        except ExpectationNotFoundError as exc:
            raise ConfigError(
                f"contract '{compiled.name}', rule '{rule.rule}': Great Expectations has no "
                f"expectation {config['type']!r}"
            ) from exc
        except (InvalidExpectationConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"contract '{compiled.name}', rule '{rule.rule}': Great Expectations rejects "
                f"its arguments {config['kwargs']}: {exc}"
            ) from exc
    return gx.ExpectationSuite(name=f"{compiled.name} {compiled.version}", expectations=expectations)


def contract_for(contract_path: str | Path, source: str) -> CompiledContract:
    """The compiled rules of a source: its contract's object named like it, or the only one."""
    contract = load_contract(contract_path)
    return compile_contract(contract, _object_for(contract, source))


def check_contracts(sources: SourcesConfig) -> None:
    """Read and compile every configured contract: a broken one stops the run (ConfigError) before
    any source is read."""
    for name, source in sources.configured():
        if source.contract is not None:
            contract_for(source.contract, name)


def check_table(table: pd.DataFrame, contract_path: str | Path, source: str) -> QualityReport:
    """Check every row of a source table against its contract; quarantine the rows that fail."""
    return _check_compiled(table, contract_for(contract_path, source), str(contract_path), source)


def _check_compiled(
    table: pd.DataFrame, compiled: CompiledContract, contract_path: str, source: str
) -> QualityReport:
    row_count = len(table)
    present = [column for column in compiled.columns if column in table.columns]
    runnable = [rule for rule in compiled.rules if set(rule.columns) <= set(present)]
    frame = validation_frame(table, compiled, present)
    result = validate_with_gx(frame, compiled, runnable)
    gx_results = [None] * len(runnable)
    for gx_result in result.results:
        gx_results[gx_result.expectation_config.meta["position"]] = gx_result

    # Repeats are judged last, among the rows no other rule quarantines, so that the first
    # acceptable occurrence of a key is the one kept.
    failing_rows: dict[int, np.ndarray] = {}
    for position, (rule, gx_result) in enumerate(zip(runnable, gx_results, strict=True)):
        if rule.quarantines and rule.measure != "repeats":
            failing_rows[position] = _unexpected_rows(gx_result.result)
    quarantined = np.zeros(row_count, dtype=bool)
    for rows in failing_rows.values():
        quarantined[rows] = True

    outcomes = [
        _missing_column_outcome(column, compiled, table, source, contract_path)
        for column in compiled.columns
        if column not in present
    ]
    failures = []
    for position, (rule, gx_result) in enumerate(zip(runnable, gx_results, strict=True)):
        if rule.measure == "repeats":
            rows = _repeated_rows(frame, rule, gx_result.result, quarantined)
            count = len(rows)
            if rule.quarantines:
                failing_rows[position] = rows
        else:
            count = int(gx_result.result.get("unexpected_count") or 0)
        success, detail = _verdict(rule, gx_result, count, row_count)
        outcome = RuleOutcome(
            source=source,
            contract=contract_path,
            rule=rule.rule,
            column=rule.column,
            severity=rule.severity,
            success=success,
            unexpected_count=count,
            row_count=row_count,
            message=_message(source, rule.column, rule.rule, rule.severity, detail, contract_path),
        )
        outcomes.append(outcome)
        if len(failing_rows.get(position, ())):
            failures.append((outcome, failing_rows[position]))

    kept = np.ones(row_count, dtype=bool)
    for _, rows in failures:
        kept[rows] = False
    return QualityReport(
        source=source,
        contract_path=contract_path,
        contract_version=compiled.version,
        outcomes=outcomes,
        passed_rows=table[kept],
        quarantine=_quarantine_frame(table, source, failures, compiled.personal),
        validation_result=_serialisable(result),
        personal_columns=compiled.personal,
    )


def validate_with_gx(frame: pd.DataFrame, compiled: CompiledContract, rules: list[CompiledRule]):
    """GX's result of the rules' expectation suite on the frame, with the failing rows' indexes."""
    with _GX_LOCK:
        suite = to_expectation_suite(compiled, rules)
        # GX's own Validator, which Batch.validate and ValidationDefinition.run both wrap: the
        # first fetches (and fingerprints) the batch twice, the second keeps every result.
        from great_expectations.validator.v1_validator import Validator

        validator = Validator(
            batch_definition=_gx_runtime()[1],
            batch_parameters={"dataframe": frame},
            result_format=GX_RESULT_FORMAT,
        )
        return validator.validate_expectation_suite(suite)


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
        """Every source's quarantine in the warehouse layout (the column is `column_name`)."""
        parts = [report.quarantine for report in self.reports.values()]
        combined = pd.concat(parts, ignore_index=True) if parts else _empty_quarantine()
        return combined.rename(columns={"column": "column_name"})

    @property
    def blocking(self) -> list[RuleOutcome]:
        return [outcome for report in self.reports.values() for outcome in report.blocking]

    @property
    def message(self) -> str:
        """What blocks the run, one failed critical rule a line; empty when nothing blocks."""
        return _blocking_message(self.blocking)


def check_sources(sources: dict[str, pd.DataFrame], config: SourcesConfig) -> SourcesCheck:
    """Check each source that has a contract; a source without one goes on unchecked."""
    contracts = {name: source.contract for name, source in config.configured() if source.contract}
    reports = {
        name: check_table(table, contracts[name], name)
        for name, table in sources.items()
        if name in contracts
    }
    passed = {name: table for name, table in sources.items() if name not in reports}
    withheld = {}
    for name, report in reports.items():
        source = dict(config.configured())[name]
        named = ("id_column", "timestamp_column", "amount_column")
        needed = {getattr(source, setting, None) for setting in named}
        personal = [c for c in report.passed_rows.columns if c in report.personal_columns - needed]
        passed[name] = report.passed_rows.drop(columns=personal)
        if personal:
            withheld[name] = personal
    return SourcesCheck(reports=reports, passed=passed, withheld=withheld)


def raise_on_blocking(reports: list[QualityReport]) -> None:
    """Stop the run with every failed critical rule of every source in one message."""
    blocking = [outcome for report in reports for outcome in report.blocking]
    if blocking:
        raise ContractViolation(_blocking_message(blocking))


@task(name="quality", cache_policy=NO_CACHE)
def quality_task(
    sources: dict[str, pd.DataFrame], config: SourcesConfig, results_folder: Path | None = None
) -> SourcesCheck:
    """The quality stage: check every source, log failed rules, one artifact per source, and the
    validation results as files in results_folder (when given)."""
    checked = check_sources(sources, config)
    for report in checked.reports.values():
        _log_and_summarise(report)
    for source, columns in checked.withheld.items():
        get_run_logger().info(
            "quality: source '%s': personal column(s) %s withheld from the features and reports",
            source,
            ", ".join(columns),
        )
    if results_folder is not None and checked.reports:
        written = write_validation_results(checked, results_folder)
        get_run_logger().info("quality: validation results in %s", ", ".join(map(str, written)))
    return checked


OUTPUT_CONTRACT = "customer_segments.odcs.yaml"


def output_contract_path() -> Path:
    """The contract of the published customer_segments table, shipped with segflow."""
    return Path(str(resources.files("segflow.data_contracts").joinpath(OUTPUT_CONTRACT)))


@task(name="output-contract", cache_policy=NO_CACHE)
def output_contract_task(snapshot: pd.DataFrame) -> QualityReport:
    """Check the customer_segments snapshot against its contract before anything is published."""
    report = check_table(snapshot, output_contract_path(), "customer_segments")
    _log_and_summarise(report)
    return report


@task(name="quality-check", task_run_name="quality-check-{source}", cache_policy=NO_CACHE)
def quality_check_task(table: pd.DataFrame, contract_path: str | Path, source: str) -> QualityReport:
    """Check one source against its contract; log failed rules and publish a summary artifact."""
    report = check_table(table, contract_path, source)
    _log_and_summarise(report)
    return report


def _blocking_message(blocking: list[RuleOutcome]) -> str:
    if not blocking:
        return ""
    return f"{len(blocking)} critical data-contract rule(s) failed:\n" + "\n".join(
        f"- {outcome.message}" for outcome in blocking
    )


def _log_and_summarise(report: QualityReport) -> None:
    """One log line per failed rule (no row values: rows may hold personal data) and a table
    artifact of every outcome."""
    logger = get_run_logger()
    log_by_severity = {"critical": logger.error, "warning": logger.warning, "info": logger.info}
    for outcome in report.outcomes:
        if not outcome.success:
            log_by_severity[outcome.severity](outcome.message)
    create_table_artifact(
        key="quality-" + re.sub(r"[^a-z0-9-]+", "-", report.source.lower()),
        table=[
            {
                "rule": o.rule,
                "column": o.column or "(table)",
                "severity": o.severity,
                "result": "pass" if o.success else "FAIL",
                "failing rows": o.unexpected_count,
                "rows": o.row_count,
            }
            for o in report.outcomes
        ],
        description=(
            f"Source '{report.source}' against {report.contract_path} (version "
            f"{report.contract_version}): {len(report.passed_rows):,} rows passed, "
            f"{report.quarantine['row_number'].nunique():,} quarantined, "
            f"{len(report.blocking)} blocking and {len(report.warnings)} non-blocking failures."
        ),
    )


# --- compiling ---------------------------------------------------------------------------------


def _property_rules(prop: dict, where: str) -> list[CompiledRule]:
    """The rules a property's flags imply, then its explicit quality rules."""
    name, logical_type = prop["name"], prop.get("logicalType")
    if "enum" in prop:
        raise ConfigError(
            f"{where}: 'enum' is not enforced by segflow; use a quality rule "
            "'metric: invalidValues' with 'arguments: {validValues: [...]}', which takes a severity"
        )
    explicit = prop.get("quality") or []
    explicit_metrics = {quality.get("metric") for quality in explicit}
    rules = []
    if logical_type in READ_CHECKED_TYPES:
        rules.append(
            _rule(
                f"{name} is {logical_type}",
                name,
                (name,),
                "critical",
                "expect_column_values_to_not_be_null",
                {"column": _values_column(prop), "row_condition": _not_null_condition(name)},
                "failing_rows",
                NO_FAILING_ROWS,
            )
        )
    for flag, metric in (("required", "nullValues"), ("unique", "duplicateValues")):
        if (prop.get(flag) or prop.get("primaryKey")) and metric not in explicit_metrics:
            rules.append(_property_library_rule({"metric": metric, "mustBe": 0}, prop, where))
    rules += _type_option_rules(prop, where)
    for position, quality in enumerate(explicit):
        rule_where = f"{where}, quality[{position}]"
        kind = quality.get("type", "library")
        if kind == "library":
            rules.append(_property_library_rule(quality, prop, rule_where))
        elif kind == "custom":
            rules.append(_custom_rule(quality, rule_where, prop))
        elif kind == "sql":
            raise ConfigError(f"{rule_where}: {SQL_UNSUPPORTED}")
    return rules


def _property_library_rule(quality: dict, prop: dict, where: str) -> CompiledRule:
    name = prop["name"]
    metric = quality.get("metric")
    threshold = _threshold(quality, where)
    arguments = quality.get("arguments") or {}
    if metric == "nullValues":
        label, measure = f"{name} not null", "failing_rows"
        expectation = ("expect_column_values_to_not_be_null", {"column": name})
    elif metric == "duplicateValues":
        label, measure = f"{name} unique", "repeats"
        expectation = ("expect_column_values_to_be_unique", {"column": _values_column(prop)})
    elif metric == "invalidValues":
        measure = "failing_rows"
        if set(arguments) == {"validValues"}:
            values = list(arguments["validValues"])
            label = f"{name} in [{', '.join(map(str, values))}]"
            kwargs = {"column": _values_column(prop), "value_set": values}
            expectation = ("expect_column_values_to_be_in_set", kwargs)
        elif set(arguments) == {"pattern"}:
            label = f"{name} matches {arguments['pattern']}"
            kwargs = {"column": name, "regex": _regex(arguments["pattern"], where)}
            expectation = ("expect_column_values_to_match_regex", kwargs)
        else:
            raise ConfigError(
                f"{where}: invalidValues needs exactly one of arguments.validValues or "
                f"arguments.pattern, got {sorted(arguments) or 'none'}"
            )
    else:
        raise ConfigError(
            f"{where}: metric {metric!r} is not supported on a property; segflow supports "
            "nullValues, duplicateValues and invalidValues"
        )
    return _rule(
        _library_label(quality, label, threshold),
        name,
        (name,),
        _severity(quality, where),
        *expectation,
        measure,
        threshold,
    )


def _schema_rule(quality: dict, columns: dict, physical: dict[str, str], where: str) -> CompiledRule | None:
    kind = quality.get("type", "library")
    if kind == "text":
        return None
    if kind == "custom":
        return _custom_rule(quality, where)
    if kind == "sql":
        raise ConfigError(f"{where}: {SQL_UNSUPPORTED}")
    metric = quality.get("metric")
    threshold = _threshold(quality, where)
    severity = _severity(quality, where)
    if metric == "rowCount":
        return _rule(
            quality.get("name") or f"row count {threshold}",
            None,
            (),
            severity,
            *_row_count_expectation(threshold, where),
            "row_count",
            threshold,
        )
    if metric == "duplicateValues":
        properties = (quality.get("arguments") or {}).get("properties") or list(physical)
        unknown = [n for n in properties if n not in physical]
        if unknown:
            raise ConfigError(f"{where}: arguments.properties names unknown properties {unknown}")
        names = [physical[n] for n in properties]
        label = "rows unique" + ("" if names == list(columns) else f" over {', '.join(names)}")
        values = [_values_column({"name": n, "logicalType": columns[n]}) for n in names]
        expectation = (
            ("expect_compound_columns_to_be_unique", {"column_list": values})
            if len(values) > 1
            else ("expect_column_values_to_be_unique", {"column": values[0]})
        )
        return _rule(
            _library_label(quality, label, threshold),
            None,
            tuple(names),
            severity,
            *expectation,
            "repeats",
            threshold,
        )
    raise ConfigError(
        f"{where}: metric {metric!r} is not supported on a schema object; segflow supports "
        "rowCount and duplicateValues"
    )


def _custom_rule(quality: dict, where: str, prop: dict | None = None) -> CompiledRule:
    engine = str(quality.get("engine", "")).lower()
    if engine not in GX_ENGINES:
        raise ConfigError(
            f"{where}: custom rules of engine {quality.get('engine')!r} cannot run; "
            "segflow runs engine 'greatExpectations'"
        )
    implementation = quality["implementation"]
    if isinstance(implementation, str):
        implementation = load_yaml_text(implementation, f"{where}: the implementation")
    if (
        not isinstance(implementation, dict)
        or not isinstance(implementation.get("type"), str)
        or set(implementation) - {"type", "kwargs"}
        or not isinstance(implementation.get("kwargs", {}), dict)
    ):
        raise ConfigError(
            f"{where}: a greatExpectations implementation is a mapping with 'type' "
            "(e.g. expect_column_values_to_be_between) and 'kwargs'"
        )
    kwargs = dict(implementation.get("kwargs") or {})
    if prop is not None:
        kwargs.setdefault("column", _values_column(prop))
        column, contract_columns = prop["name"], (prop["name"],)
    else:
        named = ("column", "column_A", "column_B")
        column = kwargs.get("column")
        contract_columns = tuple(
            [kwargs[key] for key in named if key in kwargs] + list(kwargs.get("column_list") or [])
        )
    label = quality.get("name") or _expectation_label(implementation["type"], kwargs, column)
    return _rule(
        label,
        column,
        contract_columns,
        _severity(quality, where),
        implementation["type"],
        kwargs,
        "gx",
        None,
    )


def _type_option_rules(prop: dict, where: str) -> list[CompiledRule]:
    """Rules for logicalTypeOptions: pattern, lengths, numeric bounds (all critical)."""
    name, logical_type = prop["name"], prop.get("logicalType")
    options = prop.get("logicalTypeOptions") or {}
    enforced = ENFORCED_OPTIONS.get(logical_type, set())
    unsupported = set(options) - enforced - DESCRIPTIVE_OPTIONS
    if unsupported:
        raise ConfigError(
            f"{where}: logicalTypeOptions {sorted(unsupported)} are not enforced by segflow for "
            f"logicalType {logical_type!r} (enforced: {sorted(enforced) or 'none'}); use a "
            "custom greatExpectations rule instead"
        )
    rules = []

    def add(label: str, expectation_type: str, kwargs: dict) -> None:
        rules.append(
            _rule(
                label,
                name,
                (name,),
                "critical",
                expectation_type,
                kwargs,
                "failing_rows",
                NO_FAILING_ROWS,
            )
        )

    if "pattern" in options:
        regex = _regex(options["pattern"], where)
        add(
            f"{name} matches {options['pattern']}",
            "expect_column_values_to_match_regex",
            {"column": name, "regex": regex},
        )
    if "minLength" in options or "maxLength" in options:
        kwargs = {
            "column": name,
            "min_value": options.get("minLength"),
            "max_value": options.get("maxLength"),
        }
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        add(
            _range_label(f"{name} length", kwargs),
            "expect_column_value_lengths_to_be_between",
            kwargs,
        )
    kwargs = {"column": _values_column(prop)}
    for inclusive, exclusive, bound, strict in (
        ("minimum", "exclusiveMinimum", "min_value", "strict_min"),
        ("maximum", "exclusiveMaximum", "max_value", "strict_max"),
    ):
        if inclusive in options and exclusive in options:
            raise ConfigError(f"{where}: give {inclusive} or {exclusive}, not both")
        if inclusive in options or exclusive in options:
            kwargs[bound] = options.get(inclusive, options.get(exclusive))
            if exclusive in options:
                kwargs[strict] = True
    if len(kwargs) > 1:
        add(_range_label(name, kwargs), "expect_column_values_to_be_between", kwargs)
    return rules


def _rule(
    label: str,
    column: str | None,
    columns: tuple[str, ...],
    severity: str,
    expectation_type: str,
    kwargs: dict,
    measure: str,
    threshold: Threshold | None,
) -> CompiledRule:
    if (
        threshold is not None
        and threshold.unit == "percent"
        and measure != "row_count"
        and threshold.operator in ("mustBeLessThan", "mustBeLessOrEqualTo")
        and threshold.value > 0
    ):
        # GX's own verdict follows the tolerance; segflow's verdict applies the exact operator.
        kwargs = {**kwargs, "mostly": max(0.0, 1 - threshold.value / 100)}
    return CompiledRule(
        rule=label,
        column=column,
        columns=columns,
        severity=severity,
        expectation={
            "type": expectation_type,
            "kwargs": kwargs,
            "severity": severity,
            "meta": {"segflow_rule": label},
        },
        measure=measure,
        threshold=threshold,
    )


def _row_count_expectation(threshold: Threshold, where: str) -> tuple[str, dict]:
    if threshold.unit != "rows":
        raise ConfigError(f"{where}: rowCount counts rows; unit {threshold.unit!r} does not apply")
    value = threshold.value
    match threshold.operator:
        case "mustBe":
            return "expect_table_row_count_to_equal", {"value": int(value)}
        case "mustBeGreaterThan":
            return "expect_table_row_count_to_be_between", {"min_value": math.floor(value) + 1}
        case "mustBeGreaterOrEqualTo":
            return "expect_table_row_count_to_be_between", {"min_value": math.ceil(value)}
        case "mustBeLessThan":
            return "expect_table_row_count_to_be_between", {"max_value": math.ceil(value) - 1}
        case "mustBeLessOrEqualTo":
            return "expect_table_row_count_to_be_between", {"max_value": math.floor(value)}
        case "mustBeBetween":
            low, high = math.ceil(value[0]), math.floor(value[1])
            return "expect_table_row_count_to_be_between", {"min_value": low, "max_value": high}
    raise ConfigError(f"{where}: rowCount does not support {threshold.operator}")


def _threshold(quality: dict, where: str) -> Threshold:
    operators = [key for key in OPERATORS if key in quality]
    if len(operators) != 1:
        raise ConfigError(f"{where}: a library rule needs exactly one operator of {', '.join(OPERATORS)}")
    unit = quality.get("unit", "rows")
    if unit not in ("rows", "percent"):
        raise ConfigError(f"{where}: unit {unit!r} is not 'rows' or 'percent'")
    value = quality[operators[0]]
    numbers = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        raise ConfigError(f"{where}: {operators[0]} needs a number, got {value!r}")
    return Threshold(operators[0], value, unit)


def _severity(quality: dict, where: str) -> str:
    severity = quality.get("severity")
    if severity is None:
        return "critical"
    try:
        return SEVERITIES[str(severity).strip().lower()]
    except KeyError:
        raise ConfigError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}") from None


def _regex(pattern: str, where: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: pattern {pattern!r} is not a regular expression: {exc}") from exc
    return pattern


def _library_label(quality: dict, label: str, threshold: Threshold) -> str:
    if quality.get("name"):
        return quality["name"]
    return label if threshold.zero_tolerance else f"{label} (failing rows {threshold})"


def _expectation_label(expectation_type: str, kwargs: dict, column: str | None) -> str:
    bounded = kwargs.get("min_value") is not None or kwargs.get("max_value") is not None
    if expectation_type == "expect_column_values_to_be_between" and column and bounded:
        return _range_label(column, kwargs)
    return f"{column} {expectation_type}" if column else expectation_type


def _range_label(subject: str, kwargs: dict) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"{subject} between {_number(low)} and {_number(high)}"
    if low is not None:
        return f"{subject} {'>' if kwargs.get('strict_min') else '>='} {_number(low)}"
    return f"{subject} {'<' if kwargs.get('strict_max') else '<='} {_number(high)}"


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _values_column(prop: dict) -> str:
    """The validated column holding a property's values read as its logical type."""
    if prop.get("logicalType") in READ_CHECKED_TYPES:
        return f"{prop['name']} as {prop['logicalType']}"
    return prop["name"]


def _not_null_condition(column: str) -> dict:
    """GX row condition 'column is not null', serialised."""
    return {"type": "nullity", "column": {"name": column}, "is_null": False}


def _schema_object(contract: dict, object_name: str | None) -> dict:
    objects = contract.get("schema") or []
    named = [o for o in objects if object_name in (o.get("name"), o.get("physicalName"))]
    if object_name is not None and named:
        return named[0]
    if object_name is None and len(objects) == 1:
        return objects[0]
    names = [o.get("name") for o in objects]
    wanted = f"none is named {object_name!r}" if object_name else "name the one to check"
    raise ConfigError(f"contract '{contract.get('name')}' has schema objects {names}; {wanted}")


def _object_for(contract: dict, source: str) -> str | None:
    """The schema object checked for a source: the one named like it, else the only one."""
    names = {o.get(key) for o in contract["schema"] for key in ("name", "physicalName")}
    return source if source in names else None


@functools.cache
def _odcs_validator():
    import jsonschema

    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _problem(error) -> str:
    """A schema error in words; the ODCS schema reports a missing logicalType as a missing 'map'."""
    if (
        error.message == "'map' is a required property"
        and isinstance(error.instance, dict)
        and "logicalType" not in error.instance
    ):
        return "logicalType is missing"
    return error.message


def _location(contract: dict, path) -> str:
    """A JSON path written with the names of the schema objects and properties it passes."""
    parts, node = [], contract
    for key in path:
        node = node[key]
        if isinstance(key, int):
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1] += f"[{name!r}]" if name else f"[{key}]"
        else:
            parts.append(str(key))
    return ".".join(parts) or "the top level"


# --- checking ----------------------------------------------------------------------------------

_GX_LOCK = threading.Lock()


@functools.cache
def _gx_runtime():
    """Great Expectations, an ephemeral context and a reusable DataFrame batch definition."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Some GX modules set their own logger level, so each one is lowered, not only the root.
    for name in [*logging.root.manager.loggerDict, "great_expectations"]:
        if name.split(".")[0] == "great_expectations":
            logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
        ),
    )
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("segflow").add_dataframe_asset("contract_table")
    return gx, asset.add_batch_definition_whole_dataframe("whole_table")


def validation_frame(table: pd.DataFrame, compiled: CompiledContract, present: list[str]) -> pd.DataFrame:
    """The contract's columns as loaded, plus each typed column read as its logical type."""
    frame = table[present].reset_index(drop=True)
    for column in present:
        logical_type = compiled.columns[column]
        if logical_type in READ_CHECKED_TYPES:
            frame[f"{column} as {logical_type}"] = _read_as(frame[column], logical_type)
    hashed = {column for rule in compiled.rules if rule.measure == "repeats" for column in rule.columns}
    for column in hashed & set(present):
        if isinstance(frame[column].dtype, pd.StringDtype):  # Arrow-backed text, not mixed objects
            equality_only = all(
                rule.expectation["type"] in EQUALITY_RULES
                for rule in compiled.rules
                if column in rule.columns
            )
            frame[column] = _as_codes(frame[column]) if equality_only else _as_categories(frame[column])
    return frame


# rules that only ask whether values are missing or equal: they hold the same on dictionary codes
EQUALITY_RULES = {
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
    "expect_column_values_to_not_be_null",
}


def _dictionary(values: pd.Series) -> pa.DictionaryArray:
    text = pa.array(values, from_pandas=True)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return pc.dictionary_encode(text)


def _as_codes(values: pd.Series) -> pd.Series:
    """Text replaced by its dictionary code (nulls kept), for rules that only compare values. GX's
    uniqueness rules call pandas' `duplicated`, which hashed 10M Arrow strings in 4.3 s per call;
    on integer codes it takes 0.14 s, and no second copy of the text is held."""
    codes = _dictionary(values).indices.cast(pa.int64())
    return pd.Series(
        pd.array(codes.to_pandas(types_mapper=pd.ArrowDtype).array, dtype="Int64"), index=values.index
    )


def _as_categories(values: pd.Series) -> pd.Series:
    """Text as a categorical column (dictionary-encoded by Arrow), for rules that also read it."""
    encoded = _dictionary(values)
    categories = pd.Index(encoded.dictionary.to_pandas(), dtype=values.dtype)
    codes = encoded.indices.fill_null(-1).to_numpy()
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=values.index)


def _read_as(values: pd.Series, logical_type: str) -> pd.Series:
    """Values read as a logical type; a value that cannot be read becomes null."""
    if logical_type in ("date", "timestamp"):
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            return values
        return pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    numbers = (
        values if pd.api.types.is_numeric_dtype(values.dtype) else pd.to_numeric(values, errors="coerce")
    )
    numbers = pd.Series(numbers.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
    return numbers.where(numbers % 1 == 0) if logical_type == "integer" else numbers


def _unexpected_rows(gx_result: dict) -> np.ndarray:
    """Positions of the rows GX found failing, ascending."""
    return np.sort(np.asarray(gx_result.get("unexpected_index_list") or [], dtype="int64"))


def _repeated_rows(
    frame: pd.DataFrame, rule: CompiledRule, gx_result: dict, quarantined: np.ndarray
) -> np.ndarray:
    """Rows repeating an earlier row's key, among the rows no other rule quarantines."""
    flagged = _unexpected_rows(gx_result)
    flagged = flagged[~quarantined[flagged]]
    kwargs = rule.expectation["kwargs"]
    keys = frame.iloc[flagged][kwargs.get("column_list") or [kwargs["column"]]]
    return flagged[keys.duplicated(keep="first").to_numpy()]


def _verdict(rule: CompiledRule, gx_result, count: int, row_count: int) -> tuple[bool, str]:
    """Whether a rule holds, and what was found, in words."""
    if gx_result.exception_info.get("raised_exception"):
        return False, f"could not be evaluated: {gx_result.exception_info.get('exception_message')}"
    if rule.measure == "row_count":
        observed = int(gx_result.result["observed_value"])
        return rule.threshold.holds(observed), f"found {observed:,} rows"
    share = 100 * count / row_count if row_count else 0.0
    success = bool(gx_result.success) if rule.threshold is None else rule.holds_for(count, row_count)
    detail = f"{count:,} of {row_count:,} rows fail"
    if rule.measure == "repeats":
        detail += " as repeats of an earlier row"
    if rule.threshold is not None and not rule.threshold.zero_tolerance:
        detail += f" ({share:.2f}%, allowed {rule.threshold})"
    return success, detail


def _message(
    source: str, column: str | None, rule: str, severity: str, detail: str, contract_path: str
) -> str:
    where = f"source '{source}', " + (f"column '{column}', " if column else "")
    return f"{where}rule '{rule}' ({severity}): {detail} [{contract_path}]"


def _missing_column_outcome(
    column: str, compiled: CompiledContract, table: pd.DataFrame, source: str, contract_path: str
) -> RuleOutcome:
    """A contract column absent from the table: critical if required, else a warning."""
    required = column in compiled.required
    found = ", ".join(map(str, table.columns)) or "no columns"
    detail = (
        f"column '{column}' {'required' if required else 'named'} by the contract is missing "
        f"from source '{source}'; found: {found}"
    )
    if not required:
        detail += "; its rules were skipped"
    severity = "critical" if required else "warning"
    return RuleOutcome(
        source=source,
        contract=contract_path,
        rule=f"{column} present",
        column=column,
        severity=severity,
        success=False,
        unexpected_count=len(table),
        row_count=len(table),
        message=f"{detail} [{contract_path}]",
    )


def _quarantine_frame(
    table: pd.DataFrame,
    source: str,
    failures: list[tuple[RuleOutcome, np.ndarray]],
    personal: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """One row per (failing row, rule), with the row as JSON text; personal values withheld (the
    row number and id find the row in the source)."""
    if not failures:
        return _empty_quarantine()
    row_numbers = np.concatenate([rows for _, rows in failures])
    distinct_rows = np.unique(row_numbers)
    failing = table.iloc[distinct_rows].astype({c: object for c in personal if c in table.columns})
    for column in personal & set(failing.columns):
        failing[column] = failing[column].mask(failing[column].notna(), PERSONAL_DATA_WITHHELD)
    records = np.asarray(_records_as_json(failing), dtype=object)
    lengths = [len(rows) for _, rows in failures]
    return pd.DataFrame(
        {
            "source": source,
            "rule": np.repeat([outcome.rule for outcome, _ in failures], lengths),
            "column": np.repeat(
                np.asarray([outcome.column for outcome, _ in failures], dtype=object), lengths
            ),
            "severity": np.repeat([outcome.severity for outcome, _ in failures], lengths),
            "row_number": row_numbers.astype("int64"),
            "record": records[np.searchsorted(distinct_rows, row_numbers)],
        }
    )[QUARANTINE_COLUMNS]


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": pd.Series(dtype="str"),
            "rule": pd.Series(dtype="str"),
            "column": pd.Series(dtype="object"),
            "severity": pd.Series(dtype="str"),
            "row_number": pd.Series(dtype="int64"),
            "record": pd.Series(dtype="str"),
        }
    )


def _records_as_json(rows: pd.DataFrame) -> list[str]:
    """Each row as a JSON object of its values as text (null stays null)."""
    text = rows.astype("string").to_json(orient="records", lines=True, force_ascii=False)
    return text.splitlines()


def _serialisable(result) -> dict:
    """The GX validation result as JSON-ready data, without the per-row index lists."""
    described = result.to_json_dict()
    for expectation_result in described.get("results", []):
        (expectation_result.get("result") or {}).pop("unexpected_index_list", None)
    return json.loads(json.dumps(described, default=str))


# --- validation results and Data Docs ---------------------------------------------------------

OUTCOME_FIELDS = ("rule", "column", "severity", "success", "unexpected_count", "row_count", "message")
# What an expectation's result may keep in a written file: counts and shares only. Anything else
# (partial_unexpected_list, details such as value_counts, a column's min, max or distinct values
# as observed_value) can be a row's value; a table expectation's observed_value is a row count.
COUNT_RESULT_KEYS = frozenset(
    {
        "element_count",
        "missing_count",
        "missing_percent",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
    }
)
DATA_DOCS_SITE = "segflow_local_site"
DATA_DOCS_RUN_NAME = "segflow data contract check"


def write_validation_results(check: SourcesCheck, folder: Path) -> list[Path]:
    """Write validation_<source>.json per checked source: the GX validation result and segflow's
    outcomes, counts only (no row values). Each file is replaced atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source, report in check.reports.items():
        passed, quarantined = len(report.passed_rows), int(report.quarantine["row_number"].nunique())
        document = {
            "source": source,
            "contract": report.contract_path,
            "contract_version": report.contract_version,
            "rows": {"checked": passed + quarantined, "passed": passed, "quarantined": quarantined},
            "outcomes": [{name: getattr(o, name) for name in OUTCOME_FIELDS} for o in report.outcomes],
            "validation_result": _without_row_values(report.validation_result),
        }
        path = folder / f"validation_{re.sub(r'[^A-Za-z0-9_.-]+', '-', source)}.json"
        _write_atomically(path, json.dumps(document, indent=2, ensure_ascii=False))
        written.append(path)
    return written


def build_data_docs(result_files: list[Path], folder: Path) -> Path:
    """Render files of write_validation_results as a GX Data Docs site in folder; returns index.html.
    The pages fetch CSS and JavaScript from public CDNs (jsdelivr, cdnjs, unpkg, code.jquery.com,
    bootstrapcdn) and GX's logo from S3: offline, pages are unstyled and the index lists nothing."""
    folder = Path(folder).resolve()
    gx = _gx_runtime()[0]
    from great_expectations.core.expectation_validation_result import (
        expectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    documents = {Path(path): _validation_document(Path(path)) for path in result_files}
    with _GX_LOCK:
        # A context of its own: the site and the stored results must not leak into the one that
        # validates, nor into the next build.
        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                analytics_enabled=False,
            ),
        )
        context.add_data_docs_site(
            DATA_DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        keys = {}
        for path, document in documents.items():
            result = expectationSuiteValidationResultSchema.load(document["validation_result"])
            # The suite page: the expectations that ran, as recorded in the result.
            context.suites.add_or_update(
                gx.ExpectationSuite(
                    name=result.suite_name,
                    expectations=[r.expectation_config.to_domain_obj() for r in result.results],
                )
            )
            run_time = (result.meta.get("batch_markers") or {}).get("ge_load_time")
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=RunIdentifier(run_name=DATA_DOCS_RUN_NAME, run_time=run_time),
                batch_identifier=document["source"],
            )
            # What the page shows as run and data asset (GX reads them from the result's meta).
            result.meta.update(run_id=key.run_id, batch_kwargs={"data_asset_name": document["source"]})
            context.validation_results_store.set(key, result)
            keys[path] = key
        index_url = context.build_data_docs(site_names=[DATA_DOCS_SITE])[DATA_DOCS_SITE]
        # GX logs a page it fails to render and goes on; a missing page is an error here.
        missing = [
            str(path)
            for path, key in keys.items()
            if not context.get_docs_sites_urls(resource_identifier=key, site_name=DATA_DOCS_SITE)
        ]
    if missing:
        raise RuntimeError(
            f"Great Expectations rendered no Data Docs page in {folder} for {', '.join(missing)}; "
            "see the great_expectations log for the rendering error"
        )
    index = folder / "index.html"
    if not index.is_file():
        raise RuntimeError(
            f"Great Expectations built no Data Docs index in {folder}; it reported {index_url}"
        )
    return index


def _without_row_values(validation_result: dict) -> dict:
    """A copy of a GX validation result whose expectation results keep counts and shares only."""
    cleaned = json.loads(json.dumps(validation_result))
    for expectation_result in cleaned.get("results", []):
        found = expectation_result.get("result") or {}
        kept = {key: value for key, value in found.items() if key in COUNT_RESULT_KEYS}
        if expectation_result["expectation_config"]["type"].startswith("expect_table_") and (
            "observed_value" in found
        ):
            kept["observed_value"] = found["observed_value"]
        expectation_result["result"] = kept
    return cleaned


def _validation_document(path: Path) -> dict:
    """A file written by write_validation_results, read back."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"validation result file {path} cannot be read as JSON: {exc}") from exc
    if not isinstance(document, dict) or not {"source", "validation_result"} <= document.keys():
        raise ValueError(
            f"validation result file {path} was not written by write_validation_results: "
            "it lacks 'source' or 'validation_result'"
        )
    return document


def _write_atomically(path: Path, text: str) -> None:
    """Write a file under a temporary name beside it, then swap it in, so no reader sees half."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with temporary.open("x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
