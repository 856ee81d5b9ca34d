"""A retried flow finds the expensive clustering of the same inputs instead of fitting it again."""

from __future__ import annotations

import numpy as np
import pytest
from prefect import flow

from segflow.config import ClusteringConfig
from segflow.tasks.cluster import CACHE_PREFIX, cluster_task

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_same_matrix_and_config_reuse_the_segmentation_and_a_change_refits():
    rng = np.random.default_rng()  # data no earlier session can have cached
    matrix = np.vstack([rng.normal(centre, 0.1, size=(300, 3)) for centre in (0.0, 1.0, 2.0)])
    config = ClusteringConfig(algorithm="kmeans", k=(2, 4))

    @flow
    def cluster_three_times():
        first = cluster_task(matrix, config, return_state=True)
        again = cluster_task(matrix.copy(), config, return_state=True)
        other = cluster_task(matrix, config.model_copy(update={"seed": 7}), return_state=True)
        return first, again, other

    first, again, other = cluster_three_times()
    assert first.name == "Completed" and again.name == "Cached" and other.name == "Completed"
    np.testing.assert_array_equal(first.result().labels, again.result().labels)


def test_expired_cached_segmentations_are_pruned_and_others_kept(tmp_path):
    import os
    import time

    from segflow.tasks.cluster import prune_cached_segmentations

    old, fresh, other = tmp_path / f"{CACHE_PREFIX}old", tmp_path / f"{CACHE_PREFIX}new", tmp_path / "abc"
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(other, (two_days_ago, two_days_ago))
    assert prune_cached_segmentations(tmp_path, time.time()) == 1
    assert not old.exists() and fresh.exists() and other.exists()


def test_the_cached_segmentation_lives_in_a_folder_only_the_user_can_open(tmp_path):
    """Prefect persists the result as a pickle: nobody else may read it (fit rows) or plant one."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    results = tmp_path / "results"
    results.mkdir(mode=0o755)
    results.chmod(0o755)
    matrix = np.random.default_rng().normal(size=(200, 2))

    @flow
    def cluster_once():
        return cluster_task(matrix, ClusteringConfig(algorithm="kmeans", k=(2, 3)), return_state=True)

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: results}):
        state = cluster_once()
    assert state.name == "Completed"
    assert results.stat().st_mode & 0o777 == 0o700
    assert list(results.glob(f"{CACHE_PREFIX}*"))  # the result was persisted in that folder
