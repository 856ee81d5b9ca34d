"""Connection URIs and table names from config: parsing, checking, quoting, redacting."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from segflow.errors import ConfigError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    """Accept only plain SQL identifiers (letters, digits, underscore; at most 63 bytes)."""
    if not IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} is not a plain identifier: use letters, digits and '_', "
            "start with a letter or '_', at most 63 characters"
        )
    return name


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


def without_inline_password(uri: str, key: str) -> str:
    """Refuse a connection URI that carries its password: secrets never go in the config."""
    if urlsplit(uri).password is not None:
        raise ValueError(
            f"{key} holds a password: take it out of the URI and use PGPASSWORD, ~/.pgpass or "
            "password_secret (a Prefect Secret block)"
        )
    return uri


def with_secret_password(uri: str, secret_block: str | None) -> str:
    """The URI with the password of a Prefect Secret block filled in (never logged or stored)."""
    if secret_block is None:
        return uri
    from prefect.blocks.system import Secret

    password = Secret.load(secret_block).get()
    parts = urlsplit(uri)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))
