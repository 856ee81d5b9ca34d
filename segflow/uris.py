"""Connection URIs and table names from config: parsing, checking, quoting, redacting."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from segflow.errors import ConfigError

# libpq connection options whose value is a secret. passfile, sslkey, sslcert and service name a
# file or an entry the secret is read from, and are allowed.
SECRET_OPTIONS = frozenset({"password", "sslpassword", "oauth_client_secret"})
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Folders of the operating system a run must never write into (it may run as root in a container).
SYSTEM_FOLDERS = tuple(
    PurePosixPath(folder)
    for folder in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr")
)


def check_identifier(name: str, what: str) -> str:
    """Accept only plain SQL identifiers (letters, digits, underscore; at most 63 bytes)."""
    if not IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} is not a plain identifier: use letters, digits and '_', "
            "start with a letter or '_', at most 63 characters"
        )
    return name


def check_printable(text: str, what: str) -> str:
    """Refuse control characters (NUL, newlines) and invisible format characters (bidi overrides,
    zero-width spaces) in a path or URI: they break system calls or disguise what is shown."""
    hidden = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf")})
    if hidden:
        raise ValueError(f"{what} holds control or invisible characters ({', '.join(hidden)})")
    return text


def check_output_path(path: str, what: str) -> str:
    """Accept a folder or file to write to unless it climbs out with '..' or lies in a system folder."""
    check_printable(path, what)
    if ".." in PurePosixPath(path).parts:
        raise ValueError(
            f"{what} {path!r} climbs out of its folder with '..'; give the folder itself, "
            "as an absolute path if it lies elsewhere"
        )
    resolved = PurePosixPath(Path(path).resolve())
    if resolved == PurePosixPath("/") or any(
        resolved == folder or folder in resolved.parents for folder in SYSTEM_FOLDERS
    ):
        raise ValueError(f"{what} {path!r} lies in the system folder {resolved}; write somewhere else")
    return path


def redact_uri(uri: str) -> str:
    """The URI as it may be shown (logs, messages, run records, results, webhooks): the password and
    every query value but the table masked, e.g. '...?table=sales.orders&sslmode=***'. A path
    (no '://') is shown as given; a URI that cannot be parsed is hidden whole."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        options = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return f"{uri.split('://', 1)[0]}://***"
    user, at, host = parts.netloc.rpartition("@")
    if parts.password is not None:
        user = user.split(":", 1)[0] + ":***"
    shown = f"{parts.scheme}://{user}{at}{host}{parts.path}"
    if options:
        shown += "?" + "&".join(
            f"{quote(key, safe='')}={quote(value, safe='.') if key == 'table' else '***'}"
            for key, value in options
        )
    return shown


def table_name_in(uri: str) -> str:
    """The quoted table of a '...?table=NAME' URI: exactly one 'table' or 'schema.table' of plain
    identifiers, else ValueError."""
    tables = parse_qs(urlsplit(uri).query, keep_blank_values=True).get("table")
    if not tables:
        raise ValueError(f"{redact_uri(uri)} needs ?table=NAME")
    if len(tables) > 1:
        raise ValueError(f"{redact_uri(uri)} names ?table= {len(tables)} times; give it once")
    parts = tables[0].split(".")
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"table {tables[0]!r} must be 'table' or 'schema.table'")
    return ".".join(f'"{check_identifier(part, "table name part")}"' for part in parts)


def table_query_parameter(uri: str, source: str) -> tuple[str, str]:
    """Split 'scheme://...?table=NAME&sslmode=...' into the connection URI (its other options kept,
    e.g. sslmode) and the quoted table name."""
    try:
        table = table_name_in(uri)
    except ValueError as error:
        raise ConfigError(f"source '{source}': {error}") from error
    options = [
        (key, value)
        for key, value in parse_qsl(urlsplit(uri).query, keep_blank_values=True)
        if key != "table"
    ]
    return urlunsplit(urlsplit(uri)._replace(query=urlencode(options))), table


def duckdb_path(uri: str) -> str:
    """The file of a duckdb:/// URI: three slashes for a relative path, four for an absolute one."""
    path = uri.split("?", 1)[0].removeprefix("duckdb:///")
    if not path:
        raise ConfigError(f"{uri!r} names no DuckDB file: use duckdb:///PATH")
    return path


def without_secrets(uri: str, key: str) -> str:
    """Refuse a connection URI that carries a secret, in its user part or as an option such as
    ?password= or ?sslpassword=: secrets never go in the config, its file or the flow's parameters."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    advice = (
        "take it out of the URI and use PGPASSWORD, ~/.pgpass (or ?passfile=FILE) or "
        "password_secret (a Prefect Secret block)"
    )
    if parts.password is not None:
        raise ValueError(f"{key} holds a password: {advice}")
    options = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    secrets = ", ".join(f"'{option}'" for option in sorted(options & SECRET_OPTIONS))
    if secrets:
        raise ValueError(f"{key} holds the password option {secrets}: {advice}")
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
