"""Partitioned execution on a Dask cluster: past one machine's memory.

The sources are read on the workers, piece by piece, and co-partitioned by a hash of the customer
id, so that each partition holds every row of its customers in both tables. Each partition then
goes through the single-process stages unchanged (contract checks, features, duplicate customers)
and is written as Parquet to a work folder; only counts, quarantined rows and a seeded sample of
customers come back to the flow. The flow fits preprocessing, scaling and clustering on the sample
with the single-process tasks, and the workers assign every partition with the fitted model.

With no more customers than `execution.fit_rows`, the sample is every customer in source order,
so the fit, and the segments, are the single-process run's.

A uniqueness ("repeats") rule whose key leaves out the customer id holds over the whole source: a
pre-pass reads only its key columns, shuffles them on a hash of the key and sends every partition
the rows of the keys that occur more than once; a partition then also quarantines a row whose key
comes first at an earlier row of another partition. One difference from the single-process run
remains: when that earlier row fails another rule, the single-process run keeps the later row (the
first acceptable occurrence), dask mode quarantines it too (the pre-pass does not know other rules'
verdicts).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_dask import DaskTaskRunner, get_dask_client

from segflow.clustering import Segmentation
from segflow.config import ExecutionConfig, SegflowConfig, SourceConfig, SourcesConfig
from segflow.errors import ConfigError, SourceError
from segflow.ledger import QUARANTINE_COLUMNS, RunLedger, input_fingerprint
from segflow.sources import _matching_files, read_source, source_format
from segflow.tasks.features import (
    CUSTOMER_ID,
    RFM_COLUMNS,
    CustomerFeatures,
    build_customer_features,
    feature_quarantine,
)
from segflow.tasks.preprocess import Preparation, PreparedFeatures, drop_duplicate_customers
from segflow.tasks.profile import describe
from segflow.tasks.quality import (
    READ_CHECKED_TYPES,
    CompiledContract,
    CompiledRule,
    QualityReport,
    RuleOutcome,
    SourcesCheck,
    _quarantine_frame,
    _read_as,
    check_sources,
    contract_for,
)
from segflow.tasks.scale import FittedScaling

ROW = "_row"  # a row's position in its source, which orders customers and numbers quarantined rows
KEY = "_customer_key"  # a hash of the row's customer id, which places it in a partition
DRAW = "_draw"  # a seeded hash of the customer id: the fit sample is the customers below a threshold
KEY_HASH = "_key_hash"  # a hash of a repeat rule's key, which brings equal keys together


# --------------------------------------------------------------------------- the cluster


def task_runner(execution: ExecutionConfig) -> DaskTaskRunner:
    """The Prefect task runner on the configured cluster: a running scheduler or a LocalCluster."""
    if execution.scheduler_address is not None:
        return DaskTaskRunner(address=execution.scheduler_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": execution.n_workers,
            "threads_per_worker": 1,
            "memory_limit": execution.memory_limit_per_worker,
            "dashboard_address": ":0",
        }
    )


@contextmanager
def work_folder(execution: ExecutionConfig, run_id: str) -> Iterator[Path]:
    """The run's folder for partitioned intermediates: under the configured one (removed when the
    run ends, unless execution.keep_work), else temporary."""
    if execution.work_folder is not None:
        folder = Path(execution.work_folder) / run_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            yield folder
        finally:
            if not execution.keep_work:
                shutil.rmtree(folder, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix=f"segflow-{run_id}-") as temporary:
        yield Path(temporary)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Piece:
    """A part of a source file read by one worker: a run of Parquet row groups, or a CSV file."""

    path: str
    row_groups: tuple[int, ...] | None
    first_row: int  # position of the piece's first row in the source


def source_pieces(name: str, source: SourceConfig, partition_rows: int) -> list[Piece]:
    """The pieces of a Parquet or CSV source in source order, each about partition_rows rows."""
    kind = source_format(name, source.uri)
    if kind not in ("parquet", "csv"):
        raise ConfigError(
            f"source '{name}': execution.mode dask reads .parquet and .csv files, not {kind}; "
            "export the table to Parquet or run with execution.mode local"
        )
    files = _matching_files(name, source.uri)
    if kind == "csv":
        return [Piece(path, None, -1) for path in files]
    if len(files) == 1 and Path(files[0]).is_dir():
        files = sorted(str(p) for p in Path(files[0]).rglob("*.parquet"))
    pieces, first_row = [], 0
    for path in files:
        metadata = pq.read_metadata(path)
        groups: list[int] = []
        rows = 0
        for group in range(metadata.num_row_groups):
            groups.append(group)
            rows += metadata.row_group(group).num_rows
            if rows >= partition_rows or group == metadata.num_row_groups - 1:
                pieces.append(Piece(path, tuple(groups), first_row))
                first_row += rows
                groups, rows = [], 0
    return pieces


def read_piece(
    piece: Piece, name: str, source: SourceConfig, columns: list[str] | None = None
) -> pd.DataFrame:
    """One piece as pandas, as the single-process reader gives it, indexed by source row position;
    only the given columns when there are some (Dask passes those a computation needs)."""
    if piece.row_groups is None:
        table = read_source(name, piece.path, source.encoding)
        table = table if columns is None else table.select(columns)
    else:
        table = pq.ParquetFile(piece.path).read_row_groups(list(piece.row_groups), columns=columns)
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(max(piece.first_row, 0), max(piece.first_row, 0) + len(frame), name=ROW)
    return frame


def numbered_csv_pieces(pieces: list[Piece], name: str, source: SourceConfig) -> list[Piece]:
    """CSV pieces with their first rows, counted on the workers (a CSV file has no row count)."""
    lengths = dask.compute(*[dask.delayed(lambda p: len(read_piece(p, name, source)))(p) for p in pieces])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    return [Piece(p.path, None, int(start)) for p, start in zip(pieces, starts, strict=True)]


def partitioned_source(name: str, source: SourceConfig, partition_rows: int) -> tuple[dd.DataFrame, int]:
    """A source as a Dask DataFrame built on the workers, and its number of rows."""
    pieces = source_pieces(name, source, partition_rows)
    if pieces and pieces[0].row_groups is None:
        pieces = numbered_csv_pieces(pieces, name, source)
        meta = read_piece(pieces[0], name, source).iloc[:0]
        rows = None
    else:
        meta = pq.read_schema(pieces[0].path).empty_table().to_pandas() if pieces else pd.DataFrame()
        meta.index = pd.RangeIndex(0, name=ROW)
        rows = sum(pq.read_metadata(p.path).num_rows for p in {p.path: p for p in pieces}.values())
    if not pieces or rows == 0:
        raise SourceError(f"source '{name}' ({source.uri}) has no rows")
    if source.id_column not in meta.columns:
        raise SourceError(
            f"source '{name}' ({source.uri}): id column '{source.id_column}' not found; "
            f"columns are {', '.join(map(str, meta.columns))}"
        )
    frame = dd.from_map(partial(read_piece, name=name, source=source), pieces, meta=meta)
    if rows is None:
        rows = int(frame.map_partitions(len).sum().compute())
    return frame, rows


def with_partition_key(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """The rows with a hash of their customer id (as text): equal ids, equal keys, in every source."""
    ids = frame[id_column].astype(object).where(frame[id_column].notna(), "").astype(str).to_numpy(object)
    return frame.assign(**{KEY: pd.util.hash_array(ids).view("int64")})


def co_partitioned(
    sources: dict[str, dd.DataFrame], config: SourcesConfig, npartitions: int
) -> dict[str, list]:
    """Each source shuffled on the key of its customer ids: the shuffle puts equal keys in the same
    partition number whatever the frame, so partition i of every source holds the same customers."""
    id_columns = config.id_columns()
    parts = {}
    for name, frame in sources.items():
        keyed = frame.map_partitions(with_partition_key, id_columns[name])
        parts[name] = keyed.shuffle(on=KEY, npartitions=npartitions).to_delayed()
    return parts


# --------------------------------------------------------------------------- repeats across partitions


@dataclass(frozen=True)
class RepeatedKeys:
    """A repeat rule whose key leaves out the customer id, and the rows of its source whose key
    occurs more than once there: what a partition needs to find repeats across partitions."""

    source: str
    contract: CompiledContract
    rule: CompiledRule
    occurrences: pd.DataFrame  # ROW and the key columns, as rule_keys gives them


def cross_partition_rules(
    config: SourcesConfig, sources: dict[str, dd.DataFrame]
) -> list[tuple[str, CompiledContract, CompiledRule]]:
    """The repeat rules that co-partitioning by customer does not make partition-local: their key
    leaves out the customer id (rules on a column the source lacks do not run)."""
    found = []
    for name, source in config.configured():
        if source.contract is None:
            continue
        contract = contract_for(source.contract, name)
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
            column: _read_as(frame[column], contract.columns[column])
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
    quarantines, as the single-process check does. The rule's message keeps the partition's count:
    the flow words the outcome over all partitions."""
    rule, contract = repeated.rule, repeated.contract
    others = {r.rule for r in contract.rules if r.measure != "repeats" and r.quarantines}
    failing = report.quarantine.loc[report.quarantine["rule"].isin(others), "row_number"].unique()
    judged = table.drop(index=table.index[failing])
    rows = cross_partition_repeats(rule_keys(judged, contract, rule), table.index, repeated.occurrences)
    if not len(rows):
        return report
    at = next(i for i, o in enumerate(report.outcomes) if (o.rule, o.column) == (rule.rule, rule.column))
    count = report.outcomes[at].unexpected_count + len(rows)
    outcome = replace(
        report.outcomes[at],
        unexpected_count=count,
        success=rule.holds_for(count, report.outcomes[at].row_count),
    )
    outcomes = [*report.outcomes[:at], outcome, *report.outcomes[at + 1 :]]
    if not rule.quarantines:
        return replace(report, outcomes=outcomes)
    positions = table.index.get_indexer(rows)
    found = _quarantine_frame(table, report.source, [(outcome, positions)], contract.personal)
    return replace(
        report,
        outcomes=outcomes,
        passed_rows=report.passed_rows[~report.passed_rows.index.isin(rows)],
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
            passed[name] = passed[name][passed[name].index.isin(report.passed_rows.index)]
    return SourcesCheck(reports=reports, passed=passed, withheld=checked.withheld)


# --------------------------------------------------------------------------- per partition


@dataclass
class PartitionResult:
    """What one partition's work sends back to the flow: counts and failing rows, never the data."""

    customers: int
    rows_read: dict[str, int]
    fingerprint: str
    outcomes: dict[str, list[RuleOutcome]]
    contract_versions: dict[str, str]
    quarantine: pd.DataFrame
    duplicates: dict[str, int]
    unusable_transactions: int = 0
    orphan_transactions: int = 0
    transactions_after_as_of: int = 0
    never_bought_days: int | None = None


def draw_keys(ids: pd.Series, seed: int) -> np.ndarray:
    """A seeded hash of each customer id in [0, 1): the same customers are drawn in every run."""
    text = ids.astype(str).to_numpy(object)
    hashed = pd.util.hash_array(text, hash_key=f"segflow-{seed % 10**8:08d}")
    return hashed.astype(np.float64) / 2.0**64


def partition_work(
    number: int,
    parts: list[pd.DataFrame],
    names: list[str],
    config: SegflowConfig,
    as_of: date,
    folder: Path,
    repeated: list[RepeatedKeys],
) -> PartitionResult:
    """Check one partition against the contracts (and the repeated keys of the whole source),
    build its customers' features, drop repeated customers, and write the features (with source
    row and sample key) to the work folder."""
    sources = {name: part.drop(columns=KEY).sort_index() for name, part in zip(names, parts, strict=True)}
    digest = hashlib.sha256(input_fingerprint(sources).encode())
    for name in names:
        digest.update(sources[name].index.to_numpy().tobytes())  # the rows' places in the source
    checked = with_repeats_across_partitions(check_sources(sources, config.sources), sources, repeated)
    quarantine = [
        report.quarantine.assign(row_number=sources[name].index.to_numpy()[report.quarantine["row_number"]])
        for name, report in checked.reports.items()
    ]
    passed = dict(checked.passed)
    if "customers" in passed:
        passed["customers"] = passed["customers"].assign(**{ROW: passed["customers"].index})
    features = build_customer_features(passed, config.sources, as_of, config.features.rfm)
    quarantine.append(feature_quarantine(features, config.sources).rename(columns={"column_name": "column"}))
    table = features.table
    if ROW not in table.columns:  # transactions only: customers by partition, then by id
        table = table.sort_values(CUSTOMER_ID, kind="stable", ignore_index=True)
        table[ROW] = (number << 40) + np.arange(len(table))
    deduplicated, _ = drop_duplicate_customers(table)  # with ROW, an exact duplicate repeats an id
    exact = int(table.drop(columns=ROW).duplicated().sum())
    deduplicated[DRAW] = draw_keys(deduplicated[CUSTOMER_ID], config.clustering.seed)
    pq.write_table(
        pa.Table.from_pandas(deduplicated, preserve_index=False), folder / f"part-{number:05d}.parquet"
    )
    quarantine = [q for q in quarantine if len(q)]
    return PartitionResult(
        customers=len(deduplicated),
        rows_read={name: len(frame) for name, frame in sources.items()},
        fingerprint=digest.hexdigest(),
        outcomes={name: report.outcomes for name, report in checked.reports.items()},
        contract_versions=checked.contract_versions,
        quarantine=pd.concat(quarantine, ignore_index=True) if quarantine else pd.DataFrame(),
        duplicates={
            "exact_duplicate_rows": exact,
            "conflicting_id_rows": len(table) - len(deduplicated) - exact,
        },
        unusable_transactions=len(features.unusable_transactions),
        orphan_transactions=len(features.orphan_transactions),
        transactions_after_as_of=features.transactions_after_as_of,
        never_bought_days=features.never_bought_days,
    )


# --------------------------------------------------------------------------- combining


@dataclass
class PartitionedFeatures:
    """The per-customer features of every partition, written to a folder, and what the checks found."""

    folder: Path
    customers: int
    rows_read: dict[str, int]
    fingerprint: str
    id_type: pa.DataType
    outcomes: list[RuleOutcome]
    contract_versions: dict[str, str]
    quarantine: pd.DataFrame  # in the warehouse layout
    duplicates: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)
    never_bought_days: int | None = None

    @property
    def blocking(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def message(self) -> str:
        return (
            f"{len(self.blocking)} critical data-contract rule(s) failed:\n"
            + "\n".join(f"- {o.message}" for o in self.blocking)
            if self.blocking
            else ""
        )


def combined_outcomes(
    name: str, contract_path: Path, per_partition: list[list[RuleOutcome]]
) -> list[RuleOutcome]:
    """One outcome per rule over all partitions: counts added up, the rule's threshold applied to
    the totals (a row count, a number or a share of failing rows), or every partition's verdict."""
    rules = {rule.rule: rule for rule in contract_for(contract_path, name).rules}
    by_rule: dict[tuple[str, str | None], list[RuleOutcome]] = {}
    for outcomes in per_partition:
        for outcome in outcomes:
            by_rule.setdefault((outcome.rule, outcome.column), []).append(outcome)
    combined = []
    for (label, column), outcomes in by_rule.items():
        count = sum(o.unexpected_count for o in outcomes)
        rows = sum(o.row_count for o in outcomes)
        rule = rules.get(label)
        raised = [o for o in outcomes if "could not be evaluated" in o.message]
        if rule is None or raised or rule.threshold is None:
            success = all(o.success for o in outcomes)
            mostly = rule.expectation["kwargs"].get("mostly") if rule is not None and not raised else None
            if mostly is not None:
                success = rule.holds_for(count, rows)
            detail = (raised or outcomes)[0].message if not success and raised else None
        elif rule.measure == "row_count":
            success, count = rule.threshold.holds(rows), rows
            detail = None
        else:
            success, detail = rule.holds_for(count, rows), None
        first = outcomes[0]
        what = (
            f"found {rows:,} rows"
            if rule is not None and rule.measure == "row_count"
            else (f"{count:,} of {rows:,} rows fail")
        )
        message = detail or (
            f"source '{name}', "
            + (f"column '{column}', " if column else "")
            + f"rule '{label}' ({first.severity}): {what} over {len(outcomes)} partitions [{contract_path}]"
        )
        combined.append(
            RuleOutcome(name, first.contract, label, column, first.severity, success, count, rows, message)
        )
    return combined


def combine(
    results: list[PartitionResult], config: SourcesConfig, folder: Path, id_type
) -> PartitionedFeatures:
    """The flow's view of all partitions: rule outcomes over the whole source, counts, quarantine."""
    contracts = {name: source.contract for name, source in config.configured() if source.contract}
    outcomes = [
        outcome
        for name, path in contracts.items()
        for outcome in combined_outcomes(name, path, [r.outcomes.get(name, []) for r in results])
    ]
    quarantine = [r.quarantine for r in results if len(r.quarantine)]
    quarantine = (
        pd.concat(quarantine, ignore_index=True).rename(columns={"column": "column_name"})
        if quarantine
        else pd.DataFrame(columns=[c for c in QUARANTINE_COLUMNS if c not in ("run_id", "as_of")])
    )
    digest = hashlib.sha256()
    for result in results:
        digest.update(result.fingerprint.encode())
    buyers = [r.never_bought_days for r in results if r.never_bought_days]
    return PartitionedFeatures(
        folder=folder,
        customers=sum(r.customers for r in results),
        rows_read={name: sum(r.rows_read.get(name, 0) for r in results) for name, _ in config.configured()},
        fingerprint=digest.hexdigest()[:32],
        id_type=id_type,
        outcomes=outcomes,
        contract_versions=results[0].contract_versions if results else {},
        quarantine=quarantine.sort_values(["source", "row_number"], kind="stable", ignore_index=True),
        duplicates={key: sum(r.duplicates[key] for r in results) for key in results[0].duplicates},
        counts={
            "unusable_transactions": sum(r.unusable_transactions for r in results),
            "orphan_transactions": sum(r.orphan_transactions for r in results),
            "transactions_after_as_of": sum(r.transactions_after_as_of for r in results),
        },
        never_bought_days=max(buyers) if buyers else None,
    )


def build_partitioned_features(config: SegflowConfig, as_of: date, folder: Path) -> PartitionedFeatures:
    """Read, check and featurise every source partition on the cluster (a dask client is current)."""
    execution = config.execution
    sources, rows = {}, {}
    for name, source in config.sources.configured():
        sources[name], rows[name] = partitioned_source(name, source, execution.partition_rows)
    npartitions = max(1, math.ceil(max(rows.values()) / execution.partition_rows))
    rules = cross_partition_rules(config.sources, sources)
    occurrences = dask.compute(*[repeated_keys(sources[n], c, r, npartitions) for n, c, r in rules])
    repeated = [RepeatedKeys(*rule, found) for rule, found in zip(rules, occurrences, strict=True)]
    shared = dask.delayed(repeated, traverse=False)
    parts = co_partitioned(sources, config.sources, npartitions)
    names = list(parts)
    features_folder = folder / "features"
    features_folder.mkdir(parents=True, exist_ok=True)
    work = [
        dask.delayed(partition_work)(
            i, [parts[n][i] for n in names], names, config, as_of, features_folder, shared
        )
        for i in range(npartitions)
    ]
    results = list(dask.compute(*work))
    first = next(iter(sources))
    id_sample = sources[first][config.sources.id_columns()[first]].head(1)
    id_type = pa.Array.from_pandas(id_sample).type
    if pa.types.is_large_string(id_type) or pa.types.is_null(id_type):
        id_type = pa.string()
    return combine(results, config.sources, features_folder, id_type)


# --------------------------------------------------------------------------- the fit sample


def with_never_bought_days(table: pd.DataFrame, days: int | None) -> pd.DataFrame:
    """Customers who never bought get the recency and tenure of the whole base (one day past its
    longest tenure), not their partition's."""
    if days is None or "frequency" not in table.columns:
        return table
    never_bought = table["frequency"] == 0
    table.loc[never_bought, ["recency_days", "tenure_days"]] = days
    return table


def sample_threshold(customers: int, fit_rows: int) -> float:
    """The draw key below which a customer is in the fit sample (all of them when few enough)."""
    return 1.0 if customers <= fit_rows else fit_rows / customers


def read_parts(folder: Path, threshold: float = 1.0, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of a folder of partition files, those below the draw threshold only when it is < 1, in
    source order. File by file: a column all null in one partition has no type of its own there."""
    filters = [(DRAW, "<", threshold)] if threshold < 1.0 else None
    parts = [
        pq.read_table(path, columns=columns, filters=filters).to_pandas()
        for path in sorted(folder.glob("part-*.parquet"))
    ]
    return pd.concat(parts, ignore_index=True).sort_values(ROW, kind="stable", ignore_index=True)


def read_fit_sample(features: PartitionedFeatures, fit_rows: int) -> pd.DataFrame:
    """The fit sample in source order, as the single-process feature table of those customers."""
    table = read_parts(features.folder, sample_threshold(features.customers, fit_rows))
    return with_never_bought_days(table.drop(columns=[ROW, DRAW]), features.never_bought_days)


# --------------------------------------------------------------------------- assignment


def assign_file(
    path: Path,
    out_folder: Path,
    never_bought_days: int | None,
    preparation: Preparation,
    scaling: FittedScaling,
    segmentation: Segmentation,
) -> dict[int, int]:
    """Segment the customers of one features file with the fitted model; write id, label and
    source row; return the segment sizes."""
    table = with_never_bought_days(pq.read_table(path).to_pandas(), never_bought_days)
    matrix = scaling.transform(preparation.model_input(table)) if len(table) else np.empty((0, 0))
    labels = segmentation.assigner.assign(matrix)
    assigned = pd.DataFrame({CUSTOMER_ID: table[CUSTOMER_ID], "label": labels, ROW: table[ROW]})
    pq.write_table(pa.Table.from_pandas(assigned, preserve_index=False), out_folder / path.name)
    return {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}


def assign_partitions(
    features: PartitionedFeatures,
    preparation: Preparation,
    scaling: FittedScaling,
    segmentation: Segmentation,
) -> Path:
    """Assign every features file on the cluster; the folder of (customer_id, label) files."""
    out_folder = features.folder.parent / "segments"
    out_folder.mkdir(parents=True, exist_ok=True)
    model = [dask.delayed(part, traverse=False) for part in (preparation, scaling, segmentation)]
    work = [
        dask.delayed(assign_file)(path, out_folder, features.never_bought_days, *model)
        for path in sorted(features.folder.glob("part-*.parquet"))
    ]
    dask.compute(*work)
    return out_folder


def everyone(
    segments_folder: Path, fitted_labels: np.ndarray, fitted: PartitionedFeatures, fit_rows: int
) -> tuple[pd.Series, np.ndarray]:
    """Every customer's id and segment in source order; the fit sample keeps the labels of the fit,
    as the rows a single-process fit saw keep theirs."""
    table = read_parts(segments_folder)
    labels = table["label"].to_numpy(dtype=np.int64).copy()
    threshold = sample_threshold(fitted.customers, fit_rows)
    sample = read_parts(fitted.folder, threshold, columns=[ROW, DRAW])[ROW].to_numpy()
    labels[np.searchsorted(table[ROW].to_numpy(), sample)] = fitted_labels
    return table[CUSTOMER_ID], labels


def with_population_sizes(profiles: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Profiles measured on the fit sample, with each segment's size and share over every customer."""
    sizes = pd.Series(labels).value_counts()
    profiles = profiles.copy()
    profiles["size"] = [int(sizes.get(label, 0)) for label in profiles["label"]]
    profiles["share"] = profiles["size"] / len(labels)
    profiles["description"] = [describe(r.name, r.size, r.share, r.features) for r in profiles.itertuples()]
    return profiles


# --------------------------------------------------------------------------- the run


class PartitionedRun:
    """A dask-mode run's cluster (through Prefect's DaskTaskRunner) and work folder, and what its
    partitioned stages found; `partitioned_run` opens one."""

    def __init__(self, config: SegflowConfig, runner: DaskTaskRunner, folder: Path):
        self.config, self.runner, self.folder = config, runner, folder
        self.features: PartitionedFeatures | None = None

    def checked_features(self, ledger: RunLedger) -> PartitionedFeatures:
        """Read, check and featurise every partition on the cluster; note what was read and
        quarantined in the ledger."""
        parameters = {"config": self.config, "as_of": ledger.as_of, "folder": self.folder}
        self.features = self.runner.submit(partitioned_features_task, parameters).result()
        log_partitioned(self.features)
        ledger.rows_read = dict(self.features.rows_read)
        ledger.fingerprint = self.features.fingerprint
        ledger.id_type = self.features.id_type
        ledger.note_quality(self.features.contract_versions, self.features.quarantine)
        return self.features

    def fit_sample(self) -> CustomerFeatures:
        """The features of the fit sample, as the single-process features stage gives them."""
        features = self.features
        return CustomerFeatures(
            table=read_fit_sample(features, self.config.execution.fit_rows),
            rfm_columns=list(RFM_COLUMNS)
            if self.config.features.rfm and self.config.sources.transactions
            else [],
            never_bought_days=features.never_bought_days,
        )

    def everyone(
        self, prepared: PreparedFeatures, scaling: FittedScaling, segmentation: Segmentation
    ) -> tuple[pd.Series, np.ndarray]:
        """Every customer's id and segment, assigned on the cluster; the preprocessing recipe gets
        the duplicate customers of the whole base."""
        parameters = {
            "features": self.features,
            "preparation": prepared.preparation,
            "scaling": scaling,
            "segmentation": segmentation,
        }
        segments = self.runner.submit(assign_partitions_task, parameters).result()
        prepared.recipe.update(self.features.duplicates)
        return everyone(segments, segmentation.labels, self.features, self.config.execution.fit_rows)


@contextmanager
def partitioned_run(config: SegflowConfig, ledger: RunLedger) -> Iterator[PartitionedRun | None]:
    """In dask mode, the run's cluster and work folder for as long as the run; None in local mode."""
    if config.execution.mode != "dask":
        yield None
        return
    with work_folder(config.execution, ledger.run_id) as folder, task_runner(config.execution) as runner:
        yield PartitionedRun(config, runner, folder)


# --------------------------------------------------------------------------- tasks


@task(name="partitioned-features", cache_policy=NO_CACHE)
def partitioned_features_task(config: SegflowConfig, as_of: date, folder: Path) -> PartitionedFeatures:
    """Runs on a worker; fans the partitions out over the whole cluster."""
    with get_dask_client():
        return build_partitioned_features(config, as_of, folder)


@task(name="assign-partitions", cache_policy=NO_CACHE)
def assign_partitions_task(
    features: PartitionedFeatures,
    preparation: Preparation,
    scaling: FittedScaling,
    segmentation: Segmentation,
) -> Path:
    with get_dask_client():
        return assign_partitions(features, preparation, scaling, segmentation)


def log_partitioned(features: PartitionedFeatures) -> None:
    logger = get_run_logger()
    logger.info(
        "partitioned: %d customers from %s rows; %d rows quarantined; %s",
        features.customers,
        features.rows_read,
        len(features.quarantine),
        features.counts,
    )
    for outcome in features.outcomes:
        if not outcome.success:
            (logger.error if outcome.severity == "critical" else logger.warning)(outcome.message)
