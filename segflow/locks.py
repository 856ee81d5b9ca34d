"""One writer at a time per publication target: a Prefect slot for the whole run, and a lock at the
target itself for the whole publication.

Every target (the warehouse, the Parquet folder) has its own Prefect global concurrency limit of one
slot, created by segflow when missing; runs hold the slots of all their targets from start to end, so
two runs that share a target and a Prefect server never interleave: the later one waits (up to
`publish.lock_timeout_seconds`) or is refused. Runs against different Prefect databases do not see
each other's slots, so every publication also locks the target itself (a PostgreSQL advisory lock,
DuckDB's file lock, an flock on the Parquet folder's `.writer.lock`) and is swapped in only if the
target still holds the publication the run read (`publish_in_turn`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from segflow.config import PublishConfig
from segflow.errors import PublishError
from segflow.uris import duckdb_path, redact_uri

LEASE_SECONDS = 60  # the API's minimum; renewed while the run lives; a killed run's slot frees after it
POSTGRES_PORT = 5432
Held = TypeVar("Held")


def postgres_target(uri: str, schema: str) -> str:
    """The server, database and schema a postgres(ql):// URI writes to, however it is spelt: the
    scheme, the user, the default port, options other than host/port/dbname and the case of host
    names do not change it (libpq's host, port and dbname options override the URI's own)."""
    parts = urlsplit(uri)
    options = dict(parse_qsl(parts.query))
    user = options.get("user") or unquote(parts.username or "")
    hosts = options.get("host") or unquote(parts.netloc.rpartition("@")[2])
    ports = (options.get("port") or "").split(",")
    servers = []
    for position, host in enumerate(hosts.split(",")):
        if host.startswith("["):  # [IPv6]:port
            name, _, port = host[1:].partition("]")
            port = port.removeprefix(":")
        elif host.count(":") == 1:
            name, _, port = host.partition(":")
        else:
            name, port = host, ""
        port = port or ports[min(position, len(ports) - 1)] or str(POSTGRES_PORT)
        servers.append(f"{name.lower()}:{port}")
    database = options.get("dbname") or unquote(parts.path.strip("/")) or user  # libpq's default
    return f"postgresql://{','.join(servers)}/{database}#{schema}"


def duckdb_target(path: Path | str, schema: str) -> str:
    """A DuckDB schema's identity: the file's absolute path, links resolved, and the schema."""
    return f"duckdb://{Path(path).resolve()}#{schema}"


def warehouse_target(uri: str, schema: str) -> str:
    """The identity of the warehouse schema a duckdb:// or postgres(ql):// URI names."""
    if uri.startswith("duckdb://"):
        return duckdb_target(duckdb_path(uri), schema)
    return postgres_target(uri, schema)


def folder_target(folder: Path | str) -> str:
    """A Parquet folder's identity: the absolute path, links resolved."""
    return f"parquet://{Path(folder).resolve()}"


def target_names(publish: PublishConfig) -> dict[str, str]:
    """Each publication target's slot name, keyed by how the target is shown."""
    targets = []
    if publish.warehouse is not None:
        identity = warehouse_target(publish.warehouse, publish.schema_name)
        targets.append((redact_uri(publish.warehouse), identity))
    if publish.parquet is not None:
        targets.append((str(publish.parquet), folder_target(publish.parquet)))
    return {shown: slot_name(identity) for shown, identity in targets}


def slot_name(identity: str) -> str:
    return "segflow-writer-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for a name."""
    return int.from_bytes(hashlib.sha256(f"segflow-writer:{name}".encode()).digest()[:8], "big", signed=True)


def wait_for(acquire: Callable[[], Held | None], wait_seconds: float, busy: str) -> Held:
    """Call `acquire` until it returns something, backing off from 50 ms to 2 s between attempts;
    after `wait_seconds` fail with a PublishError saying what was busy."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.05
    while (held := acquire()) is None:
        if time.monotonic() >= deadline:
            raise PublishError(
                f"{busy}; waited {wait_seconds:g} s for it (publish.lock_timeout_seconds), "
                "nothing was written"
            )
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, 2.0)
    return held


@contextmanager
def file_lock(path: Path, wait_seconds: float) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created when missing); released when the process dies."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:

        def try_lock() -> bool | None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            return True

        wait_for(try_lock, wait_seconds, f"another writer holds {path}")
        yield
    finally:
        os.close(descriptor)  # releases the lock


def refuse_if_republished(target: str, read: str | None, current: str | None) -> None:
    """Refuse to publish over a publication newer than the one the run built on (compare and swap)."""
    if current != read:
        raise PublishError(
            f"{target} now holds the publication of run {current or '(none: it is empty)'}, not that of "
            f"run {read or '(none: it was empty)'} this run built on: another writer (a run on another "
            "Prefect server or database?) published meanwhile. Nothing was written and the newer "
            "publication stays; run again to build on it"
        )


def publish_in_turn(
    stores: list[Any], as_of: date, writes: list[Any], based_on: dict[str, str | None]
) -> None:
    """Swap the writes into every store (segflow.stores) once all of them are locked and each still
    holds the run's publication it held when read (`based_on`, by target; missing: none)."""
    with ExitStack() as locks:
        for store in stores:  # in the configured order, the same in every run: no deadlock
            locks.enter_context(store.writer_lock())
        for store in stores:
            refuse_if_republished(store.describe(), based_on.get(store.target), store.current_run())
        for store in stores:
            store.publish(as_of, writes)


def ensure_limits(names: list[str]) -> None:
    """Create the one-slot limits that do not exist yet (strict acquisition needs them)."""
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                with suppress(ObjectAlreadyExists):  # another run created it first
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


@contextmanager
def one_writer(publish: PublishConfig) -> Iterator[None]:
    """Hold the writer slot of every target of `publish` for the duration of the block."""
    names = target_names(publish)
    ensure_limits(list(names.values()))
    acquired = False
    try:
        with concurrency(
            list(names.values()),
            timeout_seconds=publish.lock_timeout_seconds,
            lease_duration=LEASE_SECONDS,
            strict=True,
        ):
            acquired = True
            yield
    except TimeoutError as error:
        if acquired:  # the block's own timeout, not the lock's
            raise
        raise PublishError(
            f"another segflow run is writing to {', '.join(names)}; waited "
            f"{publish.lock_timeout_seconds:g} s for it (publish.lock_timeout_seconds), nothing was done"
        ) from error
