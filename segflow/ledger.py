"""The run ledger: what a run read, checked, decided and wrote, for segmentation_runs."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from segflow import __version__
from segflow.contracts.check import RuleOutcome
from segflow.stores import TableWrite
from segflow.tables import TABLES, id_arrow_type, to_arrow

QUARANTINE_COLUMNS = [c for c, _ in TABLES["quarantine"].columns]


def input_fingerprint(sources: dict[str, pd.DataFrame]) -> str:
    """A content hash of every input table (row order included): each column written as an Arrow
    IPC stream into SHA-256. Pandas' row hashing took 11 s for 12M transactions."""
    digest = hashlib.sha256()
    sink = pa.PythonFile(DigestWriter(digest), mode="w")
    for name in sorted(sources):
        digest.update(name.encode())
        for column, values in sources[name].items():
            table = pa.table({str(column): arrow_column(values)})
            with pa.ipc.new_stream(sink, table.schema) as stream:
                stream.write_table(table)
    return digest.hexdigest()[:32]


@dataclass
class DigestWriter:
    """A write-only file that feeds what is written to a hash."""

    digest: Any
    closed: bool = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def arrow_column(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column as Arrow (no copy for numpy or Arrow-backed columns); a column of mixed Python
    objects, which Arrow cannot type, as pandas' hash of each value."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.array(pd.util.hash_pandas_object(values, index=False).to_numpy())


def column_types(dtypes: pd.Series) -> dict[str, str]:
    """Each column's type as Arrow names it (int64, string, timestamp[us], ...), from its dtype."""
    types = {}
    for column, dtype in dtypes.items():
        try:
            arrow_type = pa.array(pd.Series([], dtype=dtype)).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arrow_type = pa.null()
        types[str(column)] = str(dtype) if pa.types.is_null(arrow_type) else str(arrow_type)
    return types


@dataclass(frozen=True)
class InputFacts:
    """What a run read: rows per source, a content hash of them, the customer ids' type, and each
    source's columns with their types."""

    rows_read: dict[str, int]
    fingerprint: str
    id_type: pa.DataType
    schemas: dict[str, dict[str, str]] = field(default_factory=dict)


def input_facts(sources: dict[str, pd.DataFrame], id_columns: dict[str, str]) -> InputFacts:
    """The facts of sources held in this process."""
    first = next(iter(sources))
    return InputFacts(
        rows_read={name: len(table) for name, table in sources.items()},
        fingerprint=input_fingerprint(sources),
        id_type=id_arrow_type(sources[first][id_columns[first]]),
        schemas={name: column_types(table.dtypes) for name, table in sources.items()},
    )


@dataclass
class RunFacts:
    """What a run decided, for its segmentation_runs row: the segmentation (or the model scoring
    used), the gate's checks, and details for on-call."""

    algorithm: str | None = None
    params: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    n_segments: int | None = None
    gate_checks: list[dict[str, Any]] | None = None
    gate_override: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunLedger:
    """Facts gathered as the run goes; turned into its segmentation_runs row at the end."""

    as_of: date
    run_id: str = ""
    started_at: datetime = field(default_factory=datetime.now)
    rows_read: dict[str, int] = field(default_factory=dict)
    schemas: dict[str, dict[str, str]] = field(default_factory=dict)  # per source: column -> type
    contract_versions: dict[str, str] = field(default_factory=dict)
    rule_outcomes: list[RuleOutcome] = field(default_factory=list)  # every contract rule's verdict
    fingerprint: str = ""
    id_type: pa.DataType = field(default_factory=pa.string)
    quarantine: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUARANTINE_COLUMNS))

    def __post_init__(self) -> None:
        self.run_id = self.run_id or f"{self.as_of:%Y%m%d}-{uuid.uuid4().hex[:10]}"

    def note_input(self, facts: InputFacts) -> None:
        self.rows_read = dict(facts.rows_read)
        self.schemas = dict(facts.schemas)
        self.fingerprint = facts.fingerprint
        self.id_type = facts.id_type

    def folder_in(self, reports: Path | None, kind: str) -> Path | None:
        """This run's own folder of `kind` files under the reports folder, if there is one."""
        return None if reports is None else Path(reports) / f"{kind}-{self.as_of.isoformat()}-{self.run_id}"

    def note_quality(
        self,
        contract_versions: dict[str, str],
        quarantine: pd.DataFrame,
        rule_outcomes: list[RuleOutcome] | None = None,
    ) -> None:
        self.contract_versions = dict(contract_versions)
        self.rule_outcomes = list(rule_outcomes or [])
        self.add_quarantine(quarantine)

    def add_quarantine(self, rows: pd.DataFrame) -> None:
        """Add quarantined rows (segflow.quarantine's layout)."""
        if len(rows):
            stamped = rows.assign(run_id=self.run_id, as_of=self.as_of)[QUARANTINE_COLUMNS]
            self.quarantine = pd.concat([self.quarantine, stamped], ignore_index=True)

    def row(self, status: str, message: str, facts: RunFacts, rows_published: int = 0) -> dict[str, Any]:
        """This run's segmentation_runs row: no customer data, no credentials."""
        failed_checks = [c for c in facts.gate_checks or [] if not c["passed"]]
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "started_at": pd.Timestamp(self.started_at),
            "finished_at": pd.Timestamp(datetime.now()),
            "status": status,
            "message": message,
            "algorithm": facts.algorithm,
            "parameters": json.dumps(facts.params, default=str),
            "scores": json.dumps(facts.scores, default=float),
            "n_segments": facts.n_segments,
            "gate_passed": None
            if facts.gate_checks is None
            else not any(c["severity"] == "critical" for c in failed_checks),
            "gate_reasons": json.dumps([f"{c['message']} ({c['severity']})" for c in failed_checks]),
            "gate_override": facts.gate_override,
            "rows_read": json.dumps(self.rows_read),
            "rows_quarantined": len(self.quarantine),
            "rows_published": rows_published,
            "contract_versions": json.dumps(self.contract_versions),
            "input_fingerprint": self.fingerprint,
            "code_version": __version__,
            "details": json.dumps(facts.details, default=str),
        }

    def writes(self, row: dict[str, Any]) -> list[TableWrite]:
        """The run's row in segmentation_runs and its quarantined rows, added to those of earlier runs."""
        return [
            TableWrite(
                "segmentation_runs",
                to_arrow("segmentation_runs", pd.DataFrame([row]), self.id_type),
                "run",
                self.run_id,
            ),
            TableWrite(
                "quarantine", to_arrow("quarantine", self.quarantine, self.id_type), "run", self.run_id
            ),
        ]
