"""One writer at a time per publication target, with Prefect global concurrency limits.

Every target (the warehouse, the Parquet folder) has its own limit of one slot, created by segflow
when missing; runs hold the slots of all their targets from start to end, so two runs that share a
target never interleave: the later one waits (up to `publish.lock_timeout_seconds`) or is refused.
The limits live in the Prefect API's database, so runs are serialised across processes and
machines that share a Prefect server (`PREFECT_API_URL`); a slot held by a killed process is
released when its lease expires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from segflow.config import PublishConfig
from segflow.errors import PublishError
from segflow.uris import redact_uri

LEASE_SECONDS = 60  # the API's minimum; renewed while the run lives; a killed run's slot frees after it


def target_names(publish: PublishConfig) -> dict[str, str]:
    """Each publication target's lock name, keyed by how the target is shown."""
    targets = []
    if publish.warehouse is not None:
        targets.append((redact_uri(publish.warehouse), f"{publish.warehouse}#{publish.schema_name}"))
    if publish.parquet is not None:
        targets.append((str(publish.parquet), str(Path(publish.parquet).resolve())))
    return {
        shown: "segflow-writer-" + hashlib.sha256(identity.encode()).hexdigest()[:16]
        for shown, identity in targets
    }


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
