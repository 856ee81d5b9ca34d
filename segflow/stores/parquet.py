"""Parquet publication: each publication is a complete folder; a symlink swap makes it current.

Layout under the configured folder:
    current -> publications/<id>            the only path readers use
    publications/<id>/customer_segments.parquet, segment_definitions.parquet,
                      segmentation_runs.parquet
    publications/<id>/segment_changes/<as_of>.parquet (likewise segment_profiles, quarantine)
    publications/<id>/segment_membership_history.parquet   derived from segment_changes
    .writer.lock                            flock-ed by the publishing writer
Per-date files of earlier publications are hard-linked, not copied, into the new folder.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from segflow.locks import file_lock, folder_target
from segflow.stores.base import (
    CURRENT_RUN_SQL,
    PUBLISHING_STATUSES,
    StoredState,
    TableWrite,
    TargetLock,
    check_primary_key,
    writes_changes,
)
from segflow.tables import CUSTOMER_ID, MEMBERSHIP_HISTORY_SQL, TABLES, TableSpec

KEEP_PUBLICATIONS = 5
PUBLICATION_NAME = re.compile(r"\d{4}-\d{2}-\d{2}-[0-9a-f]{12}")  # only folders segflow made are pruned


def kept_rows(old: pa.Table, write: TableWrite, as_of: date) -> pa.Array:
    """Which stored rows a write leaves in place (the complement of what it replaces)."""
    if write.replace == "run":
        return pc.not_equal(old["run_id"], pa.scalar(write.run_id))
    return pc.not_equal(old["as_of"], pa.scalar(as_of, pa.date32()))


def conformed(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows of a file an earlier release wrote, in the columns of `schema`: those it lacks are null."""
    return pa.Table.from_arrays(
        [
            rows[field.name] if field.name in rows.column_names else pa.nulls(rows.num_rows, field.type)
            for field in schema
        ],
        schema=schema,
    )


def carry_forward(part: Path, target: Path, spec: TableSpec) -> None:
    """Hard-link a per-date file into the new publication; one an earlier release wrote without
    some of today's columns is rewritten with them (null), so every file of a folder reads alike."""
    schema = pq.read_schema(part)
    if schema.names == [name for name, _ in spec.columns]:
        os.link(part, target)
        return
    id_type = schema.field(CUSTOMER_ID).type if CUSTOMER_ID in schema.names else pa.string()
    wanted = pa.schema(
        schema.field(f.name) if f.name in schema.names else f for f in spec.arrow_schema(id_type)
    )
    pq.write_table(conformed(pq.read_table(part), wanted), target)


def write_history(staging: Path) -> None:
    """segment_membership_history of a publication, from every file of its change feed."""
    changes = pq.read_table(staging / "segment_changes")
    schema = TABLES["segment_membership_history"].arrow_schema(changes.schema.field(CUSTOMER_ID).type)
    with duckdb.connect() as connection:
        connection.register("changes", changes)
        history = connection.sql(MEMBERSHIP_HISTORY_SQL.format(changes="changes")).to_arrow_table()
    target = staging / "segment_membership_history.parquet"
    target.unlink(missing_ok=True)  # a hard link to the previous publication's file
    pq.write_table(history.cast(schema), target)


def current_run_in(folder: Path) -> str | None:
    """The run whose publication a folder is (the last to publish or score in it), or None."""
    path = folder / "segmentation_runs.parquet"
    if not path.exists():
        return None
    with duckdb.connect() as connection:
        connection.register("runs", pq.read_table(path))
        rows = connection.sql(CURRENT_RUN_SQL.format(runs="runs")).fetchall()
    return rows[0][0] if rows else None


class ParquetStore(TargetLock):
    """A folder of publications; `current` is a symlink swapped to the newest complete one. Writers
    take turns on an flock of `.writer.lock` in the folder (on a local file system: NFS may not
    honour it)."""

    def __init__(self, root: Path, wait_seconds: float = 3600):
        self.root = Path(root)
        self.current = self.root / "current"
        self.publications = self.root / "publications"
        self.wait_seconds = wait_seconds
        self.target = folder_target(self.root)

    def describe(self) -> str:
        return f"Parquet {self.current}"

    def _hold(self) -> AbstractContextManager[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        return file_lock(self.root / ".writer.lock", self.wait_seconds)

    def _read(self, folder: Path, name: str) -> pd.DataFrame | None:
        path = folder / f"{name}.parquet"
        return pq.read_table(path).to_pandas() if path.exists() else None

    def read_state(self, as_of: date) -> StoredState:
        if not self.current.exists():
            return StoredState(current_runs={self.target: None})
        folder = self.current.resolve()  # one publication for every read, whatever is swapped in meanwhile
        runs = self._read(folder, "segmentation_runs")
        published = runs[runs["status"].isin(PUBLISHING_STATUSES)] if runs is not None else None
        changes_file = folder / "segment_changes" / f"{as_of.isoformat()}.parquet"
        return StoredState(
            snapshot=self._read(folder, "customer_segments"),
            snapshot_as_of=published["as_of"].max() if published is not None and len(published) else None,
            definitions=self._read(folder, "segment_definitions"),
            changes_on_as_of=pq.read_table(changes_file).to_pandas() if changes_file.exists() else None,
            holdouts=self._read(folder, "segment_holdouts"),
            current_runs={self.target: current_run_in(folder)},
        )

    def current_run(self) -> str | None:
        return current_run_in(self.current.resolve()) if self.current.exists() else None

    def read_model(self) -> dict | None:
        folder = self.current / "segment_models"
        if not folder.is_dir():
            return None
        models = pq.read_table(folder).to_pandas()
        if models.empty:
            return None
        return models.sort_values(["as_of", "created_at"]).iloc[-1].to_dict()

    def _runs(self) -> pd.DataFrame:
        """The current publication's segmentation_runs (empty before the first)."""
        runs = self._read(self.current, "segmentation_runs") if self.current.exists() else None
        return runs if runs is not None else pd.DataFrame(columns=["run_id", "status", "started_at"])

    def read_runs(self, limit: int) -> pd.DataFrame:
        runs = self._runs().sort_values("started_at", ascending=False)
        return runs.head(limit).reset_index(drop=True)

    def run_status(self, run_id: str) -> str | None:
        statuses = self._runs().loc[lambda runs: runs["run_id"] == run_id, "status"]
        return None if statuses.empty else str(statuses.iloc[0])

    def publish(self, as_of: date, writes: list[TableWrite]) -> None:
        with self.writer_lock():
            self._publish(as_of, writes)

    def _publish(self, as_of: date, writes: list[TableWrite]) -> None:
        previous = self.current.resolve() if self.current.exists() else None
        self.publications.mkdir(parents=True, exist_ok=True)
        for abandoned in self.publications.glob(".*.partial"):  # left by a killed run
            shutil.rmtree(abandoned, ignore_errors=True)
        publication_id = f"{as_of.isoformat()}-{uuid.uuid4().hex[:12]}"
        staging = self.publications / f".{publication_id}.partial"
        staging.mkdir()
        try:
            self._carry_forward(previous, staging, writes)
            for write in writes:
                self._write(previous, staging, as_of, write)
            if writes_changes(writes):
                write_history(staging)
            final = self.publications / publication_id
            os.rename(staging, final)
            self._point_current_to(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._prune()

    def _carry_forward(self, previous: Path | None, staging: Path, writes: list[TableWrite]) -> None:
        """Hard-link every table the run does not rewrite, so the new folder is complete."""
        if previous is None:
            return
        rewritten = {w.name for w in writes if w.replace == "all" or TABLES[w.name].mode == "snapshot"}
        for name, spec in TABLES.items():
            if spec.mode == "per_as_of":
                source_dir = previous / name
                if source_dir.is_dir():
                    (staging / name).mkdir()
                    for part in source_dir.glob("*.parquet"):
                        carry_forward(part, staging / name / part.name, spec)
            elif name not in rewritten and (previous / f"{name}.parquet").exists():
                os.link(previous / f"{name}.parquet", staging / f"{name}.parquet")

    def _write(self, previous: Path | None, staging: Path, as_of: date, write: TableWrite) -> None:
        spec = TABLES[write.name]
        if spec.mode == "per_as_of":
            folder = staging / write.name
            folder.mkdir(exist_ok=True)
            target = folder / f"{as_of.isoformat()}.parquet"
            old_path = previous / write.name / target.name if previous is not None else None
        else:
            target = staging / f"{write.name}.parquet"
            old_path = previous / target.name if previous is not None else None
        rows = write.rows
        if write.replace != "all" and old_path is not None and old_path.exists():
            old = pq.read_table(old_path)
            schema = pa.schema(
                old.schema.field(f.name) if f.name in old.column_names else f for f in rows.schema
            )
            old = conformed(old, schema)
            rows = pa.concat_tables([old.filter(kept_rows(old, write, as_of)), rows.cast(schema)])
            check_primary_key(rows, spec.primary_key, write.name)
        target.unlink(missing_ok=True)  # a hard link to the previous publication's file
        pq.write_table(rows, target)

    def _point_current_to(self, folder: Path) -> None:
        """Atomically repoint `current`: rename a fresh symlink over the old one."""
        link = self.root / f".current-{uuid.uuid4().hex[:8]}"
        link.symlink_to(folder.relative_to(self.root))
        os.replace(link, self.current)

    def _prune(self) -> None:
        """Keep the last few publications (for readers mid-read and for rollback)."""
        current = self.current.resolve()
        finished = sorted(
            (p for p in self.publications.iterdir() if PUBLICATION_NAME.fullmatch(p.name) and p.is_dir()),
            key=lambda p: p.stat().st_mtime,
        )
        for old in finished[:-KEEP_PUBLICATIONS]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)
