"""A retried flow finds the expensive clustering of the same inputs instead of fitting it again."""

from __future__ import annotations

import numpy as np
import pytest
from prefect import flow

from segflow.config import ClusteringConfig
from segflow.tasks.cluster import cluster_task

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_same_matrix_and_config_reuse_the_segmentation_and_a_change_refits():
    rng = np.random.default_rng(8)
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
