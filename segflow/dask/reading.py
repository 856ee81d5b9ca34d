"""Reading sources on the workers, piece by piece, and co-partitioning them by customer: partition i
of every source holds every row of the same customers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from segflow.config import SourceConfig, SourcesConfig
from segflow.dask import KEY, ROW
from segflow.errors import ConfigError, SourceError
from segflow.sources import matching_files, read_source, source_format
from segflow.uris import redact_uri


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
    files = matching_files(name, source.uri)
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
        raise SourceError(f"source '{name}' ({redact_uri(source.uri)}) has no rows")
    if source.id_column not in meta.columns:
        raise SourceError(
            f"source '{name}' ({redact_uri(source.uri)}): id column '{source.id_column}' not found; "
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
