"""Clustering stage: a cached Prefect task over `segflow.clustering`.

The task logs the choice, publishes the leaderboard (the `auto` candidates, and the RFM map's
baseline in runs with RFM features) as a table artifact, and caches its result per matrix, config,
RFM columns and clustering code, so a retried flow does not fit again. The cached
result is a pickle Prefect writes into its local storage folder, which the task makes private
(0700) before the result is persisted.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.settings import get_current_settings

import segflow.clustering
from segflow import __version__
from segflow.clustering import Segmentation, fit_segmentation
from segflow.config import ClusteringConfig
from segflow.timing import timed

CLUSTERING_PACKAGE = Path(segflow.clustering.__file__).parent
CACHE_PREFIX = "segflow-cluster-"
CACHE_EXPIRATION = timedelta(days=1)


def leaderboard_table(leaderboard: list[dict]) -> list[dict]:
    """One flat row per algorithm tried, for a Prefect table artifact."""
    return [
        {
            "algorithm": row["algorithm"],
            "family": row["family"],
            "selected": row["selected"],
            "baseline": row["baseline"],
            "params": json.dumps(row["params"], sort_keys=True),
            "silhouette": row["scores"]["silhouette"],
            "calinski_harabasz": row["scores"]["calinski_harabasz"],
            "davies_bouldin": row["scores"]["davies_bouldin"],
            "noise_share": row["noise_share"],
            "segment_sizes": ", ".join(str(size) for size in row["segment_sizes"]),
        }
        for row in leaderboard
    ]


def package_source(folder: Path) -> bytes:
    """Every module of a package folder (sub-packages too), each after its relative path, in path order."""
    return b"".join(
        str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0"
        for path in sorted(folder.rglob("*.py"))
    )


@cache
def clustering_code() -> bytes:
    """The source of the whole clustering package: the version string stays the same between
    releases, and a changed algorithm must not be answered with yesterday's segmentation."""
    return package_source(CLUSTERING_PACKAGE)


def clustering_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The same matrix, clustering config (seed included) and code give the same segmentation, so a
    retried flow finds it instead of fitting again. Hashing the matrix takes ~0.2 s at 1M x 16."""
    digest = hashlib.blake2b(np.ascontiguousarray(parameters["matrix"]).tobytes(), digest_size=16)
    digest.update(parameters["config"].model_dump_json().encode())
    digest.update(json.dumps(parameters.get("rfm_positions")).encode())
    digest.update(__version__.encode())
    digest.update(clustering_code())
    return f"{CACHE_PREFIX}{digest.hexdigest()}"


def private_folder(folder: Path) -> Path:
    """The folder, created if missing, that only its owner may list, read or write: Prefect persists
    the cached segmentation there as a pickle, with fit rows in it, and loads it on a cache hit."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def prune_cached_segmentations(folder: Path, now: float) -> int:
    """Delete cached segmentations past their expiry (Prefect never removes result files; one is
    16 MB at 1M customers). Returns how many were deleted."""
    expired = [
        path
        for path in folder.glob(f"{CACHE_PREFIX}*")
        if now - path.stat().st_mtime > CACHE_EXPIRATION.total_seconds()
    ]
    for path in expired:
        path.unlink(missing_ok=True)
    return len(expired)


@task(
    name="cluster",
    cache_key_fn=clustering_cache_key,
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
@timed
def cluster_task(
    matrix: np.ndarray, config: ClusteringConfig, rfm_positions: tuple[int, int, int] | None = None
) -> Segmentation:
    """Fit the segmentation; log the choice and publish the leaderboard as a table artifact."""
    logger = get_run_logger()
    results = private_folder(Path(get_current_settings().results.local_storage_path))
    prune_cached_segmentations(results, time.time())
    segmentation = fit_segmentation(matrix, config, rfm_positions)
    logger.info(
        "clustering chose %s with %d segments, params %s; scores %s; sampling %s",
        segmentation.algorithm,
        segmentation.n_segments,
        segmentation.params,
        segmentation.scores,
        segmentation.sampling,
    )
    if segmentation.leaderboard:
        create_table_artifact(
            table=leaderboard_table(segmentation.leaderboard),
            key="clustering-leaderboard",
            description="Algorithms compared on the same sample, the RFM map as the baseline; the selected "
            "one was refitted on all rows.",
        )
    return segmentation
