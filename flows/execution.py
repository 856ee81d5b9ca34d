"""Where a run computes: in this process, or partitioned on a Dask cluster, behind one interface.

The flow calls the same three steps in either mode; the mode decides where the stage functions
run, never what they do:

- `checked_sources(contracts)`: read every source and check it against its contract
  (`segflow.contracts.check_sources`), said and kept by the quality stage's one reporting path;
- `fit_features(checked)`: the features stage (`build_customer_features`, then `fit_features`:
  duplicates dropped, transactions left out quarantined) and the customers the model is fitted on;
- `everyone(prepared, scaling, segmentation)`: every customer's id and segment label.

Local mode runs each stage once on the whole tables. Dask mode reads the sources on the workers,
co-partitioned by customer, runs the contract check and the features stage on every partition,
writes each partition's features to a work folder and sends back only counts, outcomes and
quarantined rows; the flow fits on a seeded sample of customers (all of them, in source order,
when there are no more than `execution.fit_rows`, so the fit and the segments are the local
mode's), and the workers assign every partition with the fitted model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from segflow.config import SegflowConfig
from segflow.contracts.check import QualityReport, SourcesCheck, check_sources
from segflow.contracts.rules import CompiledContract
from segflow.dask import KEY, ROW
from segflow.ledger import InputFacts, RunLedger, column_types, input_facts, input_fingerprint
from segflow.quarantine import empty_quarantine
from segflow.rfm import SCORE_COLUMNS
from segflow.tables import CUSTOMER_ID, id_arrow_type
from segflow.tasks.features import (
    FitFeatures,
    build_customer_features,
    features_task,
    fit_features,
    log_features,
    with_never_bought_days,
)
from segflow.tasks.ingest import ingest_source, memory_budget_task
from segflow.tasks.quality import combined_quality_task, quality_task
from segflow.timing import timed


@dataclass
class CheckedSources:
    """The sources checked against their contracts, and what was read."""

    check: SourcesCheck
    input: InputFacts


@dataclass
class Membership:
    """Every customer's id and segment label (source order), and their RFM scores in runs with RFM
    features."""

    customer_ids: pd.Series
    labels: np.ndarray
    rfm_scores: np.ndarray | None = None  # (n, 3): R, F and M scores


class Execution(Protocol):
    def checked_sources(self, contracts: dict[str, CompiledContract]) -> CheckedSources: ...

    def fit_features(self, checked: CheckedSources) -> FitFeatures: ...

    def everyone(self, prepared: Any, scaling: Any, segmentation: Any) -> Membership: ...


@contextmanager
def execution_for(config: SegflowConfig, ledger: RunLedger) -> Iterator[Execution]:
    """The configured execution for as long as the run: this process, or a Dask cluster (with its
    work folder)."""
    if config.execution.mode == "local":
        yield LocalExecution(config, ledger)
        return
    from segflow.dask.cluster import task_runner, work_folder

    with work_folder(config.execution, ledger.run_id) as folder, task_runner(config.execution) as runner:
        yield DaskExecution(config, ledger, runner, folder)


# --------------------------------------------------------------------------- in this process


class LocalExecution:
    """Every stage once, on the whole tables, in this process."""

    def __init__(self, config: SegflowConfig, ledger: RunLedger):
        self.config, self.ledger = config, ledger

    def checked_sources(self, contracts: dict[str, CompiledContract]) -> CheckedSources:
        sources_config = self.config.sources
        memory_budget_task(sources_config, self.config.resources)
        sources = {name: ingest_source(name, source) for name, source in sources_config.configured()}
        facts = input_facts(sources, sources_config.id_columns())
        results = self.ledger.folder_in(self.config.publish.reports, "validation")
        return CheckedSources(quality_task(sources, contracts, sources_config, results), facts)

    def fit_features(self, checked: CheckedSources) -> FitFeatures:
        rfm = self.config.features.rfm
        return features_task(checked.check.passed, self.config.sources, self.ledger.as_of, rfm)

    def everyone(self, prepared: Any, scaling: Any, segmentation: Any) -> Membership:
        return Membership(prepared.customer_ids, segmentation.labels, segmentation.rfm_scores)


# --------------------------------------------------------------------------- on a Dask cluster

DRAW = "_draw"  # a seeded hash of the customer id: the fit sample is the customers below a threshold


class DaskExecution:
    """The partitioned stages on a Dask cluster (through Prefect's DaskTaskRunner)."""

    def __init__(self, config: SegflowConfig, ledger: RunLedger, runner: Any, folder: Path):
        self.config, self.ledger, self.runner, self.folder = config, ledger, runner, folder
        self.partitions: Partitions | None = None

    def checked_sources(self, contracts: dict[str, CompiledContract]) -> CheckedSources:
        parameters = {
            "config": self.config,
            "contracts": contracts,
            "as_of": self.ledger.as_of,
            "folder": self.folder,
        }
        self.partitions = self.runner.submit(partitioned_stages_task, parameters).result()
        results = self.ledger.folder_in(self.config.publish.reports, "validation")
        check = combined_quality_task(self.partitions.reports, contracts, self.partitions.withheld, results)
        return CheckedSources(check, self.partitions.input)

    def fit_features(self, checked: CheckedSources) -> FitFeatures:
        return fit_sample_task(self.partitions, self.config.execution.fit_rows, self.ledger.as_of)

    def everyone(self, prepared: Any, scaling: Any, segmentation: Any) -> Membership:
        parameters = {
            "partitions": self.partitions,
            "preparation": prepared.preparation,
            "scaling": scaling,
            "segmentation": segmentation,
        }
        segments = self.runner.submit(assign_partitions_task, parameters).result()
        return everyone(segments, segmentation.labels, self.partitions, self.config.execution.fit_rows)


@dataclass
class PartitionResult:
    """What one partition's stages send back to the flow: counts, outcomes and failing rows, never
    the data (the features stay in the work folder)."""

    reports: dict[str, QualityReport]  # without their passed rows
    withheld: dict[str, list[str]]
    rows_read: dict[str, int]
    fingerprint: str
    features: FitFeatures  # without its table


@dataclass
class Partitions:
    """Every partition's results, and where their features are."""

    folder: Path
    reports: list[dict[str, QualityReport]]
    withheld: dict[str, list[str]]
    input: InputFacts
    features: FitFeatures  # without a table: the counts and quarantine over every partition


def partition_stages(
    number: int,
    parts: list[pd.DataFrame],
    names: list[str],
    config: SegflowConfig,
    contracts: dict[str, CompiledContract],
    as_of: date,
    folder: Path,
    repeated: list,
) -> PartitionResult:
    """The quality and features stages on one partition (the rows of some customers in every
    source, indexed by their place in the source); the features go to the work folder with their
    source row and sample key."""
    from segflow.dask.repeats import with_repeats_across_partitions

    sources = {name: part.drop(columns=KEY).sort_index() for name, part in zip(names, parts, strict=True)}
    digest = hashlib.sha256(input_fingerprint(sources).encode())
    for name in names:
        digest.update(sources[name].index.to_numpy().tobytes())  # the rows' places in the source
    row_numbers = {name: table.index.to_numpy() for name, table in sources.items()}
    checked = check_sources(sources, contracts, config.sources, row_numbers)
    checked = with_repeats_across_partitions(checked, sources, repeated)
    features = fit_features(
        build_customer_features(checked.passed, config.sources, as_of, config.features.rfm), config.sources
    )
    table = features.table
    table = table.assign(
        **{ROW: table.index if "customers" in sources else (number << 40) + np.arange(len(table))}
    )
    table[DRAW] = draw_keys(table[CUSTOMER_ID], config.clustering.seed)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), folder / f"part-{number:05d}.parquet")
    return PartitionResult(
        reports={
            name: replace(report, passed_rows=report.passed_rows.iloc[0:0])
            for name, report in checked.reports.items()
        },
        withheld=checked.withheld,
        rows_read={name: len(frame) for name, frame in sources.items()},
        fingerprint=digest.hexdigest(),
        features=replace(features, table=table.iloc[0:0]),
    )


def combined_features(parts: list[FitFeatures]) -> FitFeatures:
    """The features stage's counts and quarantine over every partition (no table)."""
    quarantine = [part.quarantine for part in parts if len(part.quarantine)]
    buyers = [part.never_bought_days for part in parts if part.never_bought_days]
    return FitFeatures(
        table=parts[0].table,
        rfm_columns=parts[0].rfm_columns,
        quarantine=(
            pd.concat(quarantine, ignore_index=True).sort_values(
                ["source", "row_number"], kind="stable", ignore_index=True
            )
            if quarantine
            else empty_quarantine()
        ),
        counts={key: sum(part.counts[key] for part in parts) for key in parts[0].counts},
        customers=sum(part.customers for part in parts),
        never_bought_days=max(buyers) if buyers else None,
    )


def run_partitioned_stages(
    config: SegflowConfig, contracts: dict[str, CompiledContract], as_of: date, folder: Path
) -> Partitions:
    """Read, check and featurise every source partition on the cluster (a dask client is current)."""
    import dask

    from segflow.dask.reading import co_partitioned, partitioned_source
    from segflow.dask.repeats import RepeatedKeys, cross_partition_rules, repeated_keys

    execution = config.execution
    sources, rows = {}, {}
    for name, source in config.sources.configured():
        sources[name], rows[name] = partitioned_source(name, source, execution.partition_rows)
    npartitions = max(1, math.ceil(max(rows.values()) / execution.partition_rows))
    rules = cross_partition_rules(config.sources, contracts, sources)
    occurrences = dask.compute(*[repeated_keys(sources[n], c, r, npartitions) for n, c, r in rules])
    repeated = dask.delayed(
        [RepeatedKeys(*rule, found) for rule, found in zip(rules, occurrences, strict=True)], traverse=False
    )
    parts = co_partitioned(sources, config.sources, npartitions)
    names = list(parts)
    features_folder = folder / "features"
    features_folder.mkdir(parents=True, exist_ok=True)
    work = [
        dask.delayed(partition_stages)(
            i, [parts[n][i] for n in names], names, config, contracts, as_of, features_folder, repeated
        )
        for i in range(npartitions)
    ]
    results: list[PartitionResult] = list(dask.compute(*work))
    first = next(iter(sources))
    digest = hashlib.sha256()
    for result in results:
        digest.update(result.fingerprint.encode())
    return Partitions(
        folder=features_folder,
        reports=[result.reports for result in results],
        withheld=results[0].withheld,
        input=InputFacts(
            rows_read={name: sum(r.rows_read.get(name, 0) for r in results) for name in sources},
            fingerprint=digest.hexdigest()[:32],
            id_type=id_arrow_type(sources[first][config.sources.id_columns()[first]].head(1)),
            schemas={name: column_types(source.dtypes) for name, source in sources.items()},
        ),
        features=combined_features([result.features for result in results]),
    )


def draw_keys(ids: pd.Series, seed: int) -> np.ndarray:
    """A seeded hash of each customer id in [0, 1): the same customers are drawn in every run."""
    text = ids.astype(str).to_numpy(object)
    hashed = pd.util.hash_array(text, hash_key=f"segflow-{seed % 10**8:08d}")
    return hashed.astype(np.float64) / 2.0**64


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


def fit_sample(partitions: Partitions, fit_rows: int) -> FitFeatures:
    """The features of the fit sample in source order, with the counts over every customer."""
    features = partitions.features
    table = read_parts(partitions.folder, sample_threshold(features.customers, fit_rows))
    table = with_never_bought_days(table.drop(columns=[ROW, DRAW]), features.never_bought_days)
    return replace(features, table=table)


def assign_file(
    path: Path,
    out_folder: Path,
    never_bought_days: int | None,
    preparation: Any,
    scaling: Any,
    segmentation: Any,
) -> None:
    """Segment the customers of one features file with the fitted model; write id, label, source row and,
    with RFM features, the RFM scores."""
    table = with_never_bought_days(pq.read_table(path).to_pandas(), never_bought_days)
    matrix = scaling.transform(preparation.model_input(table)) if len(table) else np.empty((0, 0))
    labels = segmentation.assigner.assign(matrix)
    assigned = pd.DataFrame({CUSTOMER_ID: table[CUSTOMER_ID], "label": labels, ROW: table[ROW]})
    if segmentation.rfm is not None:
        scores = segmentation.rfm.scores(matrix) if len(table) else np.empty((0, len(SCORE_COLUMNS)))
        assigned[list(SCORE_COLUMNS)] = scores
    pq.write_table(pa.Table.from_pandas(assigned, preserve_index=False), out_folder / path.name)


def assign_partitions(partitions: Partitions, preparation: Any, scaling: Any, segmentation: Any) -> Path:
    """Assign every features file on the cluster; the folder of (customer_id, label) files."""
    import dask

    out_folder = partitions.folder.parent / "segments"
    out_folder.mkdir(parents=True, exist_ok=True)
    model = [dask.delayed(part, traverse=False) for part in (preparation, scaling, segmentation)]
    days = partitions.features.never_bought_days
    work = [
        dask.delayed(assign_file)(path, out_folder, days, *model)
        for path in sorted(partitions.folder.glob("part-*.parquet"))
    ]
    dask.compute(*work)
    return out_folder


def everyone(
    segments_folder: Path, fitted_labels: np.ndarray, partitions: Partitions, fit_rows: int
) -> Membership:
    """Every customer's id and segment in source order; the fit sample keeps the labels of the fit,
    as the rows a single-process fit saw keep theirs."""
    table = read_parts(segments_folder)
    labels = table["label"].to_numpy(dtype=np.int64).copy()
    threshold = sample_threshold(partitions.features.customers, fit_rows)
    sample = read_parts(partitions.folder, threshold, columns=[ROW, DRAW])[ROW].to_numpy()
    labels[np.searchsorted(table[ROW].to_numpy(), sample)] = fitted_labels
    scores = table[list(SCORE_COLUMNS)].to_numpy(np.int8) if SCORE_COLUMNS[0] in table else None
    return Membership(table[CUSTOMER_ID], labels, scores)


@task(name="partitioned-stages", cache_policy=NO_CACHE)
@timed
def partitioned_stages_task(
    config: SegflowConfig, contracts: dict[str, CompiledContract], as_of: date, folder: Path
) -> Partitions:
    """Runs on a worker; fans the partitions out over the whole cluster."""
    from prefect_dask import get_dask_client

    with get_dask_client():
        return run_partitioned_stages(config, contracts, as_of, folder)


@task(name="fit-sample", cache_policy=NO_CACHE)
@timed
def fit_sample_task(partitions: Partitions, fit_rows: int, as_of: date) -> FitFeatures:
    features = fit_sample(partitions, fit_rows)
    log_features(features, as_of)
    return features


@task(name="assign-partitions", cache_policy=NO_CACHE)
@timed
def assign_partitions_task(partitions: Partitions, preparation: Any, scaling: Any, segmentation: Any) -> Path:
    from prefect_dask import get_dask_client

    with get_dask_client():
        return assign_partitions(partitions, preparation, scaling, segmentation)
