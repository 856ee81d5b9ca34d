"""Reading input tables from Parquet, CSV, DuckDB and PostgreSQL into Arrow."""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from segflow.errors import ConfigError, SourceError
from segflow.uris import duckdb_path, redact_uri, table_query_parameter, with_secret_password

DEFAULT_TIMEOUT_SECONDS = 600.0
# Arrow holds Parquet's columns decoded: 2.2-2.3 times the uncompressed page size on the demo data
ARROW_BYTES_PER_PARQUET_BYTE = 2.3
# rows sampled from a DuckDB table to measure its bytes per row
DUCKDB_SAMPLE_ROWS = 1000
STATEMENT_TIMEOUT = "57014"


def human_bytes(size: float) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


@dataclass(frozen=True)
class SourceSize:
    """A source's estimated size in memory once loaded, and what the estimate rests on."""

    bytes: int
    basis: str


def source_format(source: str, uri: str) -> str:
    """'duckdb', 'postgres', 'parquet' or 'csv', from the URI; ConfigError when it cannot tell."""
    if uri.startswith("duckdb://"):
        return "duckdb"
    if uri.startswith(("postgresql://", "postgres://")):
        return "postgres"
    if uri.lower().endswith((".parquet", ".pq")) or Path(uri).is_dir():
        return "parquet"
    if uri.lower().endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return "csv"
    raise ConfigError(
        f"source '{source}': cannot tell the format of {redact_uri(uri)}; use a .parquet or .csv "
        "path or glob, duckdb:///FILE?table=NAME or postgresql://...?table=NAME"
    )


def read_source(
    source: str,
    uri: str,
    encoding: str = "utf-8",
    password_secret: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> pa.Table:
    """Read one source completely; any failure becomes a SourceError naming the source.

    `timeout_seconds` bounds a PostgreSQL read on the server (connecting, waiting for locks,
    querying); the ingest task bounds every kind of read with the same number."""
    kind = source_format(source, uri)
    if kind == "duckdb":
        table = _read_duckdb(source, uri)
    elif kind == "postgres":
        table = _read_postgres(source, uri, password_secret, timeout_seconds)
    elif kind == "parquet":
        table = _read_parquet(source, uri)
    else:
        table = _read_csv(source, uri, encoding)
    if table.num_rows == 0:
        raise SourceError(f"source '{source}' ({redact_uri(uri)}) has no rows")
    return table


def estimate_source_size(
    source: str,
    uri: str,
    password_secret: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> SourceSize:
    """How much memory a source takes once loaded, estimated from metadata without loading it."""
    kind = source_format(source, uri)
    if kind == "duckdb":
        return _duckdb_size(source, uri)
    if kind == "postgres":
        return _postgres_size(source, uri, password_secret, timeout_seconds)
    if kind == "parquet":
        return _parquet_size(source, uri)
    return _csv_size(source, uri)


def timeout_error(source: str, uri: str, timeout_seconds: float) -> SourceError:
    """The failure of a read that ran out of time: not retried, it would only wait as long again."""
    return SourceError(
        f"source '{source}' ({redact_uri(uri)}) did not answer within {timeout_seconds:g} s "
        f"(sources.{source}.timeout_seconds): a lock held on the table, a hung server or share, "
        "or a pipe nobody writes to; the read was stopped and nothing was published"
    )


def _matching_files(source: str, pattern: str) -> list[str]:
    files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    missing = [f for f in files if not Path(f).exists()]
    if not files or missing:
        raise SourceError(f"source '{source}': no file found at {missing[0] if missing else pattern}")
    return files


@contextmanager
def _parquet_errors(source: str, pattern: str) -> Iterator[None]:
    """Arrow's failures on a Parquet file or footer, as a SourceError naming the source."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as error:
        raise SourceError(f"source '{source}': {pattern} is not a readable Parquet file ({error})") from error


def _parquet_dataset(source: str, pattern: str) -> ds.Dataset:
    files = _matching_files(source, pattern)
    return ds.dataset(files if len(files) > 1 else files[0], format="parquet")


def _read_parquet(source: str, pattern: str) -> pa.Table:
    with _parquet_errors(source, pattern):
        return _parquet_dataset(source, pattern).to_table()


def _parquet_size(source: str, pattern: str) -> SourceSize:
    with _parquet_errors(source, pattern):
        footers = [pq.read_metadata(path) for path in _parquet_dataset(source, pattern).files]
    rows = sum(footer.num_rows for footer in footers)
    pages = sum(
        footer.row_group(i).total_byte_size for footer in footers for i in range(footer.num_row_groups)
    )
    return SourceSize(
        int(pages * ARROW_BYTES_PER_PARQUET_BYTE),
        f"Parquet metadata: {rows:,} rows, {human_bytes(pages)} of uncompressed pages",
    )


def _csv_size(source: str, pattern: str) -> SourceSize:
    """The text's size: Arrow's columns take about as much as the CSV text they were parsed from."""
    total = 0
    for path in _matching_files(source, pattern):
        if path.lower().endswith(".gz"):
            with open(path, "rb") as handle:  # gzip's trailer holds the text's size modulo 4 GiB
                handle.seek(-4, 2)
                total += max(int.from_bytes(handle.read(4), "little"), Path(path).stat().st_size)
        else:
            total += Path(path).stat().st_size
    return SourceSize(total, f"{human_bytes(total)} of CSV text")


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


def _query_duckdb(source: str, uri: str, query: str) -> pa.Table:
    """Run a query on the source's DuckDB file, `{table}` standing for its table."""
    _, table = table_query_parameter(uri, source)
    path = duckdb_path(uri)
    if not Path(path).exists():
        raise SourceError(f"source '{source}': DuckDB file {path} not found")
    try:
        with duckdb.connect(path, read_only=True) as connection:
            return connection.sql(query.format(table=table)).to_arrow_table()
    except duckdb.Error as error:
        raise SourceError(f"source '{source}': cannot read {table} from {path} ({error})") from error


def _read_duckdb(source: str, uri: str) -> pa.Table:
    return _query_duckdb(source, uri, "SELECT * FROM {table}")


def _duckdb_size(source: str, uri: str) -> SourceSize:
    rows = _query_duckdb(source, uri, "SELECT count(*) AS n FROM {table}")["n"][0].as_py()
    sample = _query_duckdb(source, uri, f"SELECT * FROM {{table}} LIMIT {DUCKDB_SAMPLE_ROWS}")
    per_row = sample.nbytes / max(sample.num_rows, 1)
    return SourceSize(
        int(rows * per_row), f"DuckDB: {rows:,} rows of about {per_row:,.0f} bytes (from {sample.num_rows:,})"
    )


def _with_timeouts(connection_uri: str, timeout_seconds: float) -> str:
    """The libpq URI with a connect timeout, so an unreachable host fails instead of hanging."""
    parts = urlsplit(connection_uri)
    options = dict(parse_qsl(parts.query))
    options.setdefault("connect_timeout", str(max(2, min(int(timeout_seconds), 30))))
    return urlunsplit(parts._replace(query=urlencode(options)))


def _query_postgres(
    source: str, uri: str, password_secret: str | None, timeout_seconds: float, query: str
) -> pa.Table:
    """Run one query on the source's server, `{table}` standing for its table, bounded in time there:
    statement_timeout covers the wait for locks too, so a locked table ends in a clear error."""
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc

    connection_uri, table = table_query_parameter(uri, source)
    connect_uri = _with_timeouts(with_secret_password(connection_uri, password_secret), timeout_seconds)
    try:
        with adbc.connect(connect_uri) as connection, connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {max(1, int(timeout_seconds * 1000))}")
            cursor.execute(query.format(table=table))
            return cursor.fetch_arrow_table()
    except adbc_driver_manager.Error as error:
        if getattr(error, "sqlstate", None) == STATEMENT_TIMEOUT and "statement timeout" in str(error):
            raise timeout_error(source, uri, timeout_seconds) from error
        message = str(error).replace(connect_uri, redact_uri(connect_uri)).strip()
        raise SourceError(
            f"source '{source}': cannot read {table} from PostgreSQL ({message})",
            transient=isinstance(error, adbc_driver_manager.OperationalError),
        ) from error


def _read_postgres(source: str, uri: str, password_secret: str | None, timeout_seconds: float) -> pa.Table:
    return _query_postgres(source, uri, password_secret, timeout_seconds, "SELECT * FROM {table}")


# The table's pages (heap and TOAST) as of its last VACUUM or ANALYZE, read from the catalogue
# without locking the table; a table never analyzed (reltuples -1) is measured, under a share lock.
POSTGRES_SIZE_QUERY = """
SELECT CASE WHEN c.reltuples >= 0
            THEN (c.relpages::bigint + coalesce(t.relpages, 0)) * current_setting('block_size')::bigint
            ELSE pg_table_size(c.oid) END AS size,
       c.reltuples::bigint AS rows
FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
WHERE c.oid = '{table}'::regclass
"""


def _postgres_size(source: str, uri: str, password_secret: str | None, timeout_seconds: float) -> SourceSize:
    """The table's size on disk: about what its rows take in Arrow."""
    found = _query_postgres(source, uri, password_secret, timeout_seconds, POSTGRES_SIZE_QUERY)
    size, rows = found["size"][0].as_py(), found["rows"][0].as_py()
    basis = f"pg_class: about {rows:,} rows" if rows >= 0 else "pg_table_size (never analyzed)"
    return SourceSize(size, f"PostgreSQL {basis}, {human_bytes(size)} on disk")
