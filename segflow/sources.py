"""Reading input tables from Parquet, CSV, DuckDB and PostgreSQL into Arrow."""

from __future__ import annotations

import csv
import glob
import gzip
import math
import zlib
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
# rows decoded at a time when a Parquet column's size in memory is measured
PARQUET_COUNT_BATCH_ROWS = 65_536
# A codec may grow incompressible pages a little (snappy by up to 1/6); a footer whose column chunk
# is larger compressed than this allows is not telling the truth about its pages.
MAX_COMPRESSED_PER_UNCOMPRESSED = 1.2
PAGE_HEADER_SLACK_BYTES = 1024
# pyarrow's CSV blocks: its default, the growth when a line straddles two, and the largest
CSV_BLOCK_BYTES = 1 << 20
CSV_BLOCK_GROWTH = 16
MAX_CSV_BLOCK_BYTES = 256 << 20
# bytes decompressed at a time when a .gz file is counted
GZIP_COUNT_CHUNK_BYTES = 1 << 20
# A DuckDB source is its file's own tables: a view in it may not read other files (read_text,
# read_csv), the network or extensions, and nothing the view runs may turn that back on.
DUCKDB_SOURCE_CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "lock_configuration": True,
}
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
    limit_bytes: float = math.inf,
) -> SourceSize:
    """How much memory a source takes once loaded, without loading it. Sizes no metadata can vouch
    for (a .gz file's text, Parquet columns that expand when decoded) are counted by streaming
    through the data, and counting stops once past `limit_bytes`."""
    kind = source_format(source, uri)
    if kind == "duckdb":
        return _duckdb_size(source, uri)
    if kind == "postgres":
        return _postgres_size(source, uri, password_secret, timeout_seconds)
    if kind == "parquet":
        return _parquet_size(source, uri, limit_bytes)
    return _csv_size(source, uri, limit_bytes)


def timeout_error(source: str, uri: str, timeout_seconds: float) -> SourceError:
    """The failure of a read that ran out of time: not retried, it would only wait as long again."""
    return SourceError(
        f"source '{source}' ({redact_uri(uri)}) did not answer within {timeout_seconds:g} s "
        f"(sources.{source}.timeout_seconds): a lock held on the table, a hung server or share, "
        "or a pipe nobody writes to; the read was stopped and nothing was published"
    )


def matching_files(source: str, pattern: str) -> list[str]:
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
    files = matching_files(source, pattern)
    return ds.dataset(files if len(files) > 1 else files[0], format="parquet")


def _read_parquet(source: str, pattern: str) -> pa.Table:
    with _parquet_errors(source, pattern):
        return _parquet_dataset(source, pattern).to_table()


def _parquet_size(source: str, pattern: str, limit_bytes: float) -> SourceSize:
    """Arrow's size of a Parquet source, trusting no footer's page sizes: a fixed-width column takes
    its width times the rows; the others (strings, lists, dictionaries, whose pages can expand
    without bound when decoded) are decoded in batches and counted."""
    with _parquet_errors(source, pattern):
        files = _parquet_dataset(source, pattern).files
    rows = fixed = decoded = 0
    for path in files:
        with _parquet_errors(source, path), pq.ParquetFile(path) as parquet:
            _check_footer(source, path, parquet.metadata)
            widths = {field.name: _bytes_per_value(field.type) for field in parquet.schema_arrow}
            rows += parquet.metadata.num_rows
            fixed += parquet.metadata.num_rows * sum(width for width in widths.values() if width is not None)
            variable = [name for name, width in widths.items() if width is None]
            decoded += _decoded_bytes(parquet, variable, limit_bytes - fixed - decoded)
        if fixed + decoded > limit_bytes:
            return SourceSize(
                int(fixed + decoded),
                f"Parquet metadata: {rows:,} rows so far, more than {human_bytes(fixed + decoded)} once "
                f"decoded (up to {path}); counting stopped at what the budget allows",
            )
    return SourceSize(
        int(fixed + decoded),
        f"Parquet metadata: {rows:,} rows, {human_bytes(fixed)} of fixed-width columns and "
        f"{human_bytes(decoded)} of others, decoded",
    )


def _bytes_per_value(arrow_type: pa.DataType) -> float | None:
    """Arrow's bytes per value of a fixed-width type (its validity bit included); None when the size
    depends on the values."""
    if pa.types.is_dictionary(arrow_type):
        return None
    try:
        return (arrow_type.bit_width + 1) / 8
    except ValueError:  # strings, binaries, lists, structs: not fixed-width
        return None


def _decoded_bytes(parquet: pq.ParquetFile, columns: list[str], limit_bytes: float) -> int:
    """Arrow bytes of some columns, decoded batch by batch; stops once past `limit_bytes`."""
    total = 0
    if not columns:
        return total
    for batch in parquet.iter_batches(batch_size=PARQUET_COUNT_BATCH_ROWS, columns=columns):
        total += batch.nbytes
        if total > limit_bytes:
            break
    return total


def _check_footer(source: str, path: str, footer: pq.FileMetaData) -> None:
    """Refuse a footer whose column chunks could not be in its file: outside it, larger than it
    together, or larger compressed than uncompressed."""
    file_bytes = Path(path).stat().st_size
    claimed = 0
    for group in range(footer.num_row_groups):
        for column in range(footer.num_columns):
            chunk = footer.row_group(group).column(column)
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
            claimed += chunk.total_compressed_size
            impossible = (
                start < 4
                or start + chunk.total_compressed_size > file_bytes
                or claimed > file_bytes
                or chunk.total_compressed_size
                > MAX_COMPRESSED_PER_UNCOMPRESSED * chunk.total_uncompressed_size + PAGE_HEADER_SLACK_BYTES
            )
            if impossible:
                raise SourceError(
                    f"source '{source}': the Parquet footer of {path} does not match the file: column "
                    f"{chunk.path_in_schema} of row group {group} claims {chunk.total_compressed_size:,} "
                    f"bytes at offset {start:,} ({chunk.total_uncompressed_size:,} uncompressed), "
                    f"{claimed:,} with the chunks before it, in a file of {file_bytes:,} bytes; "
                    "segflow does not read a file whose footer lies about its size"
                )


def _csv_size(source: str, pattern: str, limit_bytes: float) -> SourceSize:
    """The text's size: Arrow's columns take about as much as the CSV text they were parsed from.
    A .gz file is decompressed and counted (its trailer gives only the last member's size)."""
    total = 0
    compressed = False
    for path in matching_files(source, pattern):
        if path.lower().endswith(".gz"):
            compressed = True
            total += _decompressed_bytes(source, path, limit_bytes - total)
        else:
            total += Path(path).stat().st_size
        if total > limit_bytes:
            return SourceSize(
                total,
                f"more than {human_bytes(total)} of CSV text decompressed (up to {path}); "
                "counting stopped at what the budget allows",
            )
    return SourceSize(total, f"{human_bytes(total)} of CSV text" + (", decompressed" if compressed else ""))


def _decompressed_bytes(source: str, path: str, limit_bytes: float) -> int:
    """What a gzip file decompresses to, through all its members; stops once past `limit_bytes`."""
    total = 0
    buffer = bytearray(GZIP_COUNT_CHUNK_BYTES)
    try:
        with gzip.open(path, "rb") as stream:
            while total <= limit_bytes and (read := stream.readinto(buffer)):
                total += read
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"source '{source}': {path} is not a readable gzip file ({error})") from error
    return total


def sniff_delimiter(path: str, encoding: str) -> str:
    """The delimiter of a CSV file, guessed from its first lines (comma when unsure)."""
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        sample = handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_csv(source: str, pattern: str, encoding: str) -> pa.Table:
    files = matching_files(source, pattern)
    advice = "check its header and delimiter, or set the source's 'encoding' (e.g. latin-1)"
    try:
        table = pa.concat_tables(
            [_read_csv_file(source, path, encoding) for path in files], promote_options="permissive"
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


def _read_csv_file(source: str, path: str, encoding: str) -> pa.Table:
    """One CSV file. pyarrow parses it in blocks and fails on a line that straddles two, so a file
    with a long line is parsed again in larger blocks. Lines with another number of fields than
    the header are counted and refused, never quoted (they may hold personal data)."""
    odd_lines: list[tuple[int, int]] = []

    def count_odd_line(row: pa_csv.InvalidRow) -> str:
        odd_lines.append((row.expected_columns, row.actual_columns))
        return "skip"

    parse_options = pa_csv.ParseOptions(
        delimiter=sniff_delimiter(path, encoding), invalid_row_handler=count_odd_line
    )
    block_bytes = CSV_BLOCK_BYTES
    while True:
        odd_lines.clear()
        read_options = pa_csv.ReadOptions(encoding=encoding, block_size=block_bytes)
        try:
            table = pa_csv.read_csv(path, read_options=read_options, parse_options=parse_options)
            break
        except pa.ArrowInvalid as error:
            if "straddles two block boundaries" not in str(error):
                raise
            if block_bytes >= MAX_CSV_BLOCK_BYTES:
                raise SourceError(
                    f"source '{source}': a line (or quoted value) of {path} is longer than "
                    f"{human_bytes(MAX_CSV_BLOCK_BYTES)}, the most segflow parses in one piece"
                ) from error
            block_bytes = min(block_bytes * CSV_BLOCK_GROWTH, MAX_CSV_BLOCK_BYTES)
    if odd_lines:
        found = ", ".join(str(n) for n in sorted({actual for _, actual in odd_lines}))
        raise SourceError(
            f"source '{source}': {len(odd_lines):,} lines of {path} do not have the header's "
            f"{odd_lines[0][0]} fields (they have {found}); correct or remove them"
        )
    return table


def _query_duckdb(source: str, uri: str, query: str) -> pa.Table:
    """Run a query on the source's DuckDB file, `{table}` standing for its table."""
    _, table = table_query_parameter(uri, source)
    path = duckdb_path(uri)
    if not Path(path).exists():
        raise SourceError(f"source '{source}': DuckDB file {path} not found")
    try:
        with duckdb.connect(path, read_only=True, config=DUCKDB_SOURCE_CONFIG) as connection:
            return connection.sql(query.format(table=table)).to_arrow_table()
    except duckdb.PermissionException as error:
        raise SourceError(
            f"source '{source}': {table} in {path} reads outside its database file ({error}); segflow "
            "opens DuckDB sources without file or network access: give a table, or a view over the "
            "file's own tables"
        ) from error
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
