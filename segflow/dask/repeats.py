"""Uniqueness rules across partitions. Co-partitioning by customer makes a rule whose key includes
the customer id partition-local; a rule whose key leaves it out (such as `order_id unique`) needs
the whole source: a pre-pass reads only its key columns, shuffles them on a hash of the key and
hands every partition the rows of the keys that occur more than once, so a partition also
quarantines a row whose key comes first at an earlier row of another partition.

One difference from the single-process run remains: when that earlier row fails another rule, the
single-process run keeps the later row (the first acceptable occurrence); here it is quarantined
too (the pre-pass does not know other rules' verdicts).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import dask.dataframe as dd
import numpy as np
import pandas as pd

from segflow.config import SourcesConfig
from segflow.contracts.check import QualityReport, SourcesCheck, rows_where, rule_outcome
from segflow.contracts.gx import read_as
from segflow.contracts.rules import READ_CHECKED_TYPES, CompiledContract, CompiledRule
from segflow.dask import ROW
from segflow.quarantine import quarantine_frame

KEY_HASH = "_key_hash"  # a hash of a repeat rule's key, which brings equal keys together


@dataclass(frozen=True)
class RepeatedKeys:
    """A repeat rule whose key leaves out the customer id, and the rows of its source whose key
    occurs more than once there: what a partition needs to find repeats across partitions."""

    source: str
    contract: CompiledContract
    rule: CompiledRule
    occurrences: pd.DataFrame  # ROW and the key columns, as rule_keys gives them


def cross_partition_rules(
    config: SourcesConfig, contracts: dict[str, CompiledContract], sources: dict[str, dd.DataFrame]
) -> list[tuple[str, CompiledContract, CompiledRule]]:
    """The repeat rules that co-partitioning by customer does not make partition-local: their key
    leaves out the customer id (rules on a column the source lacks do not run)."""
    found = []
    for name, source in config.configured():
        contract = contracts.get(name)
        if contract is None:
            continue
        for rule in contract.rules:
            if (
                rule.measure == "repeats"
                and source.id_column not in rule.columns
                and set(rule.columns) <= set(sources[name].columns)
            ):
                found.append((name, contract, rule))
    return found


def rule_keys(frame: pd.DataFrame, contract: CompiledContract, rule: CompiledRule) -> pd.DataFrame:
    """A repeat rule's key on each row, as its expectation compares it (a typed column read as its
    logical type); rows whose key is all null are left out, as Great Expectations leaves them out."""
    keys = pd.DataFrame(
        {
            column: read_as(frame[column], contract.columns[column])
            if contract.columns[column] in READ_CHECKED_TYPES
            else frame[column]
            for column in rule.columns
        },
        index=frame.index,
    )
    return keys[keys.notna().any(axis=1)]


def hashed_keys(frame: pd.DataFrame, contract: CompiledContract, rule: CompiledRule) -> pd.DataFrame:
    """ROW, the rule's key and a hash of it, one row per source row with a key."""
    keys = rule_keys(frame, contract, rule)
    hashed = pd.util.hash_pandas_object(keys, index=False).to_numpy().view("int64")
    return keys.reset_index().assign(**{KEY_HASH: hashed})


def repeated_only(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows whose key (the columns) occurs more than once in the frame, without the hash."""
    return frame[frame.duplicated(subset=columns, keep=False)].drop(columns=KEY_HASH)


def repeated_keys(
    frame: dd.DataFrame, contract: CompiledContract, rule: CompiledRule, npartitions: int
) -> dd.DataFrame:
    """ROW and key of every row whose key occurs more than once in the source. Only the key columns
    are read; a shuffle on the key's hash brings equal keys into one partition, where pandas finds
    the repeated ones by their values (a hash collision cannot make two keys equal)."""
    columns = list(rule.columns)
    keys = frame[columns].map_partitions(hashed_keys, contract, rule)
    return keys.shuffle(on=KEY_HASH, npartitions=npartitions).map_partitions(repeated_only, columns)


def cross_partition_repeats(
    keys: pd.DataFrame, partition_rows: pd.Index, occurrences: pd.DataFrame
) -> np.ndarray:
    """The rows (ROW, ascending) of a partition whose key comes first at an earlier row of another
    partition. keys: by ROW, the key of each row the rule judges (no other rule quarantines it);
    partition_rows: every row of the partition; occurrences: ROW and key of every row of the source
    whose key occurs more than once. A row repeating a key of its own partition is left out: the
    partition's check found it."""
    columns = list(keys.columns)
    keys = keys.sort_index()
    first_here = keys[~keys.duplicated(keep="first")].reset_index()
    elsewhere = occurrences[~occurrences[ROW].isin(partition_rows)]
    earliest = elsewhere.groupby(columns, dropna=False, sort=False)[ROW].min().rename("_earliest")
    matched = first_here.merge(earliest.reset_index(), on=columns)
    return np.sort(matched.loc[matched["_earliest"] < matched[ROW], ROW].to_numpy(dtype="int64"))


def with_repeats_across(report: QualityReport, table: pd.DataFrame, repeated: RepeatedKeys) -> QualityReport:
    """A partition's report with the rows repeating a key of an earlier row of another partition
    counted under the rule, and quarantined under it (out of the passed rows) if the rule
    quarantines, as the single-process check does. The table's index is each row's place in the
    source, as are the report's row numbers."""
    rule, contract = repeated.rule, repeated.contract
    others = {r.rule for r in contract.rules if r.measure != "repeats" and r.quarantines}
    failing = report.quarantine.loc[report.quarantine["rule"].isin(others), "row_number"].unique()
    judged = table.drop(index=failing)
    rows = cross_partition_repeats(rule_keys(judged, contract, rule), table.index, repeated.occurrences)
    if not len(rows):
        return report
    at = next(i for i, o in enumerate(report.outcomes) if (o.rule, o.column) == (rule.rule, rule.column))
    before = report.outcomes[at]
    outcome = rule_outcome(
        rule, contract, report.source, before.unexpected_count + len(rows), before.row_count, before.success
    )
    outcomes = [*report.outcomes[:at], outcome, *report.outcomes[at + 1 :]]
    if not rule.quarantines:
        return replace(report, outcomes=outcomes)
    positions = table.index.get_indexer(rows)
    found = quarantine_frame(
        table,
        report.source,
        [(rule.rule, rule.column, rule.severity, positions)],
        contract.personal,
        row_numbers=table.index.to_numpy(),
    )
    return replace(
        report,
        outcomes=outcomes,
        passed_rows=rows_where(report.passed_rows, ~report.passed_rows.index.isin(rows)),
        rows_passed=report.rows_passed - len(rows),
        quarantine=pd.concat([report.quarantine, found], ignore_index=True),
    )


def with_repeats_across_partitions(
    checked: SourcesCheck, sources: dict[str, pd.DataFrame], repeated: list[RepeatedKeys]
) -> SourcesCheck:
    """A partition's contract check with every rule's repeats across partitions applied."""
    reports, passed = dict(checked.reports), dict(checked.passed)
    for found in repeated:
        reports[found.source] = with_repeats_across(reports[found.source], sources[found.source], found)
    for name, report in reports.items():
        if report is not checked.reports[name]:
            passed[name] = rows_where(passed[name], passed[name].index.isin(report.passed_rows.index))
    return SourcesCheck(reports=reports, passed=passed, withheld=checked.withheld)
