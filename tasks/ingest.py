"""Ingest: check that the sources fit the memory budget, then read each one within its timeout."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import ResourcesConfig, SourceConfig, SourcesConfig
from segflow.errors import SourceError
from segflow.retry import IO_RETRY_POLICY
from segflow.sources import SourceSize, estimate_source_size, human_bytes, read_source, timeout_error
from segflow.timing import timed
from segflow.uris import redact_uri

# A run's peak memory, measured on the demo (kmeans, 2 sources): 1.6 GB at 100k customers
# (86 MB of Arrow input) and 2.2 GB at 300k (257 MB): about 1.2 GB for the interpreter and its
# libraries plus 3.6 times the sources (pandas copies, features, quarantine, the model matrix).
# Since the segflow command's allocator keeps freed blocks for reuse (segflow/process_memory.py),
# 1M customers (858 MB) peaked at 4.09-4.36 GiB, up to 4.1 times: 4.5 keeps the estimate above it.
PROCESS_BYTES = 1.2e9
WORKING_COPIES = 4.5


def machine_memory_bytes() -> int:
    """The memory this process can have: the machine's, or its container's limit where lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def memory_budget(resources: ResourcesConfig) -> tuple[float, str]:
    """The budget in bytes and how to say where it comes from."""
    if resources.memory_budget_gb is not None:
        return resources.memory_budget_gb * 1e9, f"{resources.memory_budget_gb:g} GB"
    machine = machine_memory_bytes()
    return machine / 2, f"{machine / 2e9:.1f} GB (the default: half of this machine's {machine / 1e9:.1f} GB)"


def check_memory_budget(sizes: dict[str, SourceSize], budget_bytes: float, budget_text: str) -> float:
    """The run's estimated peak memory; a SourceError naming the largest source when over budget."""
    needed = PROCESS_BYTES + WORKING_COPIES * sum(size.bytes for size in sizes.values())
    if needed <= budget_bytes:
        return needed
    largest = max(sizes, key=lambda name: sizes[name].bytes)
    estimates = "; ".join(
        f"'{name}' {human_bytes(size.bytes)} once loaded ({size.basis})" for name, size in sizes.items()
    )
    raise SourceError(
        f"source '{largest}' is too large for the memory budget: the run would need about "
        f"{human_bytes(needed)} ({estimates}; {WORKING_COPIES:g} working copies plus "
        f"{human_bytes(PROCESS_BYTES)} for the process), over the budget of {budget_text} "
        "(resources.memory_budget_gb). Nothing was loaded. segflow holds its sources in memory and has "
        "no out-of-core (Dask) path yet: raise the budget on a machine with the memory, or aggregate "
        "or sample the table upstream."
    )


def sources_within_budget(sources: SourcesConfig, resources: ResourcesConfig) -> float:
    """The run's estimated peak memory; a SourceError naming the largest source when over budget.
    Each source is counted only up to what the budget leaves for it, so a file that hides its size
    (a gzip bomb, a lying Parquet footer) is stopped while it is being counted."""
    budget_bytes, budget_text = memory_budget(resources)
    allowance = (budget_bytes - PROCESS_BYTES) / WORKING_COPIES
    sizes: dict[str, SourceSize] = {}
    for name, source in sources.configured():
        left = allowance - sum(size.bytes for size in sizes.values())
        sizes[name] = estimate_source_size(
            name, source.uri, source.password_secret, source.timeout_seconds, limit_bytes=left
        )
    return check_memory_budget(sizes, budget_bytes, budget_text)


@task(name="memory-budget", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def memory_budget_task(sources: SourcesConfig, resources: ResourcesConfig) -> None:
    """Estimate every source's size and stop before loading any if they do not fit."""
    needed = sources_within_budget(sources, resources)
    get_run_logger().info(
        "memory: the run needs about %s of its budget of %s", human_bytes(needed), memory_budget(resources)[1]
    )


def load_source(name: str, source: SourceConfig) -> pd.DataFrame:
    """Read a source and check that its id column is there."""
    table = read_source(
        name, source.uri, source.encoding, source.password_secret, source.timeout_seconds
    ).to_pandas()
    if source.id_column not in table.columns:
        raise SourceError(
            f"source '{name}' ({redact_uri(source.uri)}): id column '{source.id_column}' "
            f"not found; columns are {', '.join(map(str, table.columns))}"
        )
    return table


@task(name="ingest", task_run_name="ingest-{name}", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def ingest_task(name: str, source: SourceConfig) -> pd.DataFrame:
    table = load_source(name, source)
    get_run_logger().info(
        "ingest: source '%s' (%s): %d rows, %d columns",
        name,
        redact_uri(source.uri),
        len(table),
        table.shape[1],
    )
    return table


def ingest_source(name: str, source: SourceConfig) -> pd.DataFrame:
    """Run the ingest task of one source with the source's timeout; running out names the source."""
    try:
        return ingest_task.with_options(timeout_seconds=source.timeout_seconds)(name, source)
    except TimeoutError as error:  # Prefect's TaskRunTimeoutError
        raise timeout_error(name, source.uri, source.timeout_seconds) from error
