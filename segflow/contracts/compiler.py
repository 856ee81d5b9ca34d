"""ODCS v3 data contracts: read a contract, check it against the ODCS JSON Schema, and compile each
schema object into segflow's rules (one Great Expectations expectation each).

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
  (``type`` and ``kwargs``; on a property, ``column`` defaults to that property). Only the
  expectation types of ``CUSTOM_EXPECTATIONS`` and the arguments of ``CUSTOM_ARGUMENTS`` are
  accepted: a contract is data, and GX's ``row_condition`` with the pandas parser evaluates its
  text as Python.
- ``severity``: critical or error (or none) blocks the run; warning or warn is recorded and its
  failing rows are quarantined; info is recorded only.

Personal data: a property with the custom property ``personalData: true`` is checked like any
other, but its values are withheld from the quarantine's row records and its column from the
stages after the quality stage, unless the config names it as a source's id, timestamp or amount.
"""

from __future__ import annotations

import math
import re
from typing import Any

from segflow.contracts.rules import (
    NO_FAILING_ROWS,
    OPERATORS,
    READ_CHECKED_TYPES,
    SEVERITIES,
    CompiledRule,
    Threshold,
    number_text,
    readable_column,
    typed_column,
)
from segflow.errors import ConfigError
from segflow.safe_yaml import load_yaml_text

SQL_UNSUPPORTED = "sql rules cannot run on a DataFrame; use a library or custom rule"
GX_ENGINES = ("greatexpectations", "great-expectations", "great_expectations", "gx")

# The Great Expectations expectations a contract's custom rule may name, and the arguments it may
# give them: values to compare with, never conditions or parsers (GX evaluates a pandas
# row_condition's text as Python, so `row_condition: "@pd.io.common.os.system(...)"` runs code).
CUSTOM_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_null",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_distinct_values_to_be_in_set",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_distinct_values_to_equal_set",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_stdev_to_be_between",
        "expect_column_unique_value_count_to_be_between",
        "expect_column_proportion_of_unique_values_to_be_between",
        "expect_column_most_common_value_to_be_in_set",
        "expect_column_pair_values_to_be_equal",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_compound_columns_to_be_unique",
        "expect_select_column_values_to_be_unique_within_record",
        "expect_multicolumn_sum_to_equal",
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
        "expect_table_column_count_to_be_between",
        "expect_table_column_count_to_equal",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
    }
)
CUSTOM_ARGUMENTS = frozenset(
    {
        "column",
        "column_A",
        "column_B",
        "column_list",
        "column_set",
        "min_value",
        "max_value",
        "strict_min",
        "strict_max",
        "value",
        "value_set",
        "regex",
        "regex_list",
        "match_on",
        "type_",
        "type_list",
        "mostly",
        "or_equal",
        "ignore_row_if",
        "sum_total",
        "exact_match",
        "ties_okay",
    }
)

# Which logicalTypeOptions are enforced, and which only describe the data, per logical type.
ENFORCED_OPTIONS = {
    "string": {"pattern", "minLength", "maxLength"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
}
DESCRIPTIVE_OPTIONS = {"format", "timezone", "defaultTimezone"}


def property_rules(prop: dict, where: str) -> list[CompiledRule]:
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
                {"column": readable_column(name, logical_type)},
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


def schema_rule(quality: dict, columns: dict, physical: dict[str, str], where: str) -> CompiledRule | None:
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
    _check_custom_expectation(implementation["type"], kwargs, quality.get("name"), where)
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


def _check_custom_expectation(expectation_type: str, kwargs: dict, name: str | None, where: str) -> None:
    """Refuse a custom rule outside the allow-list: an unknown expectation, a condition or parser
    (code), or an argument that is not a plain value."""
    rule = f"{where}" + (f" (rule {name!r})" if name else "")
    if expectation_type not in CUSTOM_EXPECTATIONS:
        raise ConfigError(
            f"{rule}: expectation {expectation_type!r} is not one segflow runs from a contract; "
            f"allowed: {', '.join(sorted(CUSTOM_EXPECTATIONS))}"
        )
    refused = sorted(set(kwargs) - CUSTOM_ARGUMENTS)
    if refused:
        why = (
            "conditions and parsers are code, not data"
            if {"row_condition", "condition_parser"} & set(refused)
            else f"allowed arguments: {', '.join(sorted(CUSTOM_ARGUMENTS))}"
        )
        raise ConfigError(f"{rule}: argument(s) {', '.join(refused)} refused in a contract ({why})")
    for key, value in kwargs.items():
        if not _plain_value(value):
            raise ConfigError(f"{rule}: argument {key!r} must be a number, text, boolean or a list of them")
    for pattern in [kwargs["regex"]] if "regex" in kwargs else kwargs.get("regex_list") or []:
        _regex(str(pattern), rule)


def _plain_value(value: Any) -> bool:
    """A number, text, boolean, null or a list of them (what a YAML contract can hold as data)."""
    if isinstance(value, list | tuple):
        return all(_plain_value(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


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
        return f"{subject} between {number_text(low)} and {number_text(high)}"
    if low is not None:
        return f"{subject} {'>' if kwargs.get('strict_min') else '>='} {number_text(low)}"
    return f"{subject} {'<' if kwargs.get('strict_max') else '<='} {number_text(high)}"


def _values_column(prop: dict) -> str:
    """The validated column holding a property's values read as its logical type."""
    if prop.get("logicalType") in READ_CHECKED_TYPES:
        return typed_column(prop["name"], prop["logicalType"])
    return prop["name"]
