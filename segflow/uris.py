"""Connection URIs and table names from config: parsing, checking, quoting, redacting."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from segflow.config import check_identifier
from segflow.errors import ConfigError


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, safe for logs and run metadata."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def qualified_table_name(name: str, source: str) -> str:
    """Quote 'table' or 'schema.table' after checking each part is a plain identifier."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2:
        raise ConfigError(f"source '{source}': table {name!r} must be 'table' or 'schema.table'")
    try:
        return ".".join(f'"{check_identifier(part, "table name part")}"' for part in parts)
    except ValueError as error:
        raise ConfigError(f"source '{source}': {error}") from error


def table_query_parameter(uri: str, source: str) -> tuple[str, str]:
    """Split 'scheme://...?table=NAME' into the connection URI and the quoted table name."""
    parts = urlsplit(uri)
    tables = parse_qs(parts.query).get("table")
    if not tables:
        raise ConfigError(f"source '{source}': {redact_uri(uri)} needs ?table=NAME")
    return urlunsplit(parts._replace(query="")), qualified_table_name(tables[0], source)


def duckdb_path(uri: str) -> str:
    """The file of a duckdb:/// URI: three slashes for a relative path, four for an absolute one."""
    path = uri.split("?", 1)[0].removeprefix("duckdb:///")
    if not path:
        raise ConfigError(f"{uri!r} names no DuckDB file: use duckdb:///PATH")
    return path
