"""Reading input tables from Parquet, CSV, DuckDB and PostgreSQL into Arrow."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds

from segflow.errors import ConfigError, SourceError
from segflow.uris import duckdb_path, redact_uri, table_query_parameter, with_secret_password


def read_source(
    source: str, uri: str, encoding: str = "utf-8", password_secret: str | None = None
) -> pa.Table:
    """Read one source completely; any failure becomes a SourceError naming the source."""
    if uri.startswith("duckdb://"):
        table = _read_duckdb(source, uri)
    elif uri.startswith(("postgresql://", "postgres://")):
        table = _read_postgres(source, uri, password_secret)
    elif uri.lower().endswith((".parquet", ".pq")) or Path(uri).is_dir():
        table = _read_parquet(source, uri)
    elif uri.lower().endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        table = _read_csv(source, uri, encoding)
    else:
        raise ConfigError(
            f"source '{source}': cannot tell the format of {redact_uri(uri)}; use a .parquet or .csv "
            "path or glob, duckdb:///FILE?table=NAME or postgresql://...?table=NAME"
        )
    if table.num_rows == 0:
        raise SourceError(f"source '{source}' ({redact_uri(uri)}) has no rows")
    return table


def _matching_files(source: str, pattern: str) -> list[str]:
    files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    missing = [f for f in files if not Path(f).exists()]
    if not files or missing:
        raise SourceError(f"source '{source}': no file found at {missing[0] if missing else pattern}")
    return files


def _read_parquet(source: str, pattern: str) -> pa.Table:
    files = _matching_files(source, pattern)
    try:
        return ds.dataset(files if len(files) > 1 else files[0], format="parquet").to_table()
    except (pa.ArrowInvalid, OSError) as error:
        raise SourceError(f"source '{source}': {pattern} is not a readable Parquet file ({error})") from error


def sniff_delimiter(path: str, encoding: str) -> str:
    """The delimiter of a CSV file, guessed from its first lines (comma when unsure)."""
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        sample = handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_csv(source: str, pattern: str, encoding: str) -> pa.Table:
    files = _matching_files(source, pattern)
    advice = "check its header and delimiter, or set the source's 'encoding' (e.g. latin-1)"
    try:
        table = pa.concat_tables(
            [
                pa_csv.read_csv(
                    path,
                    read_options=pa_csv.ReadOptions(encoding=encoding),
                    parse_options=pa_csv.ParseOptions(delimiter=sniff_delimiter(path, encoding)),
                )
                for path in files
            ],
            promote_options="permissive",
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0]
        raise SourceError(
            f"source '{source}': {pattern} could not be read as CSV in encoding {encoding} "
            f"({first_line}); {advice}"
        ) from error
    undecodable = [field.name for field in table.schema if pa.types.is_binary(field.type)]
    if undecodable:
        raise SourceError(
            f"source '{source}': column(s) {', '.join(undecodable)} of {pattern} are not valid "
            f"text in encoding {encoding}; {advice}"
        )
    return table


def _read_duckdb(source: str, uri: str) -> pa.Table:
    _, table = table_query_parameter(uri, source)
    path = duckdb_path(uri)
    if not Path(path).exists():
        raise SourceError(f"source '{source}': DuckDB file {path} not found")
    try:
        with duckdb.connect(path, read_only=True) as connection:
            return connection.sql(f"SELECT * FROM {table}").to_arrow_table()
    except duckdb.Error as error:
        raise SourceError(f"source '{source}': cannot read {table} from {path} ({error})") from error


def _read_postgres(source: str, uri: str, password_secret: str | None) -> pa.Table:
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc

    connection_uri, table = table_query_parameter(uri, source)
    try:
        with (
            adbc.connect(with_secret_password(connection_uri, password_secret)) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SELECT * FROM {table}")
            return cursor.fetch_arrow_table()
    except adbc_driver_manager.Error as error:
        message = str(error).replace(connection_uri, redact_uri(connection_uri)).strip()
        raise SourceError(
            f"source '{source}': cannot read {table} from PostgreSQL ({message})",
            transient=isinstance(error, adbc_driver_manager.OperationalError),
        ) from error
