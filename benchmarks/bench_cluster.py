"""Time every clustering algorithm on synthetic customer-like rows and print a Markdown table.

Run on demand, not in the test suite:
    python benchmarks/bench_cluster.py [--rows 1000000] [--features 10] [--algorithms kmeans hdbscan]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from segflow.clustering import ALGORITHMS, fit_segmentation
from segflow.config import ClusteringConfig


def synthetic_customers(n_rows: int, n_features: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Six planted segments of unequal size, each stretched differently, standardised."""
    rng = np.random.default_rng(seed)
    shares = np.array([0.35, 0.25, 0.18, 0.12, 0.07, 0.03])
    sizes = np.floor(shares * n_rows).astype(int)
    sizes[0] += n_rows - sizes.sum()
    centres = rng.uniform(-12, 12, (len(sizes), n_features))
    features, planted = make_blobs(n_samples=sizes.tolist(), centers=centres, random_state=seed)
    for segment in range(len(sizes)):
        members = planted == segment
        stretch = np.diag(rng.uniform(0.5, 1.5, n_features))
        features[members] = (features[members] - centres[segment]) @ stretch + centres[segment]
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    return features, planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--algorithms", nargs="+", default=[*ALGORITHMS, "auto"])
    arguments = parser.parse_args()

    features, planted = synthetic_customers(arguments.rows, arguments.features)
    print(f"{arguments.rows:,} rows x {arguments.features} features, 6 planted segments\n")
    print(
        "| algorithm | seconds | segments | params | silhouette | noise share | ARI vs planted | sampling |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---|")
    for name in arguments.algorithms:
        started = time.perf_counter()
        segmentation = fit_segmentation(features, ClusteringConfig(algorithm=name))
        seconds = time.perf_counter() - started
        silhouette = segmentation.scores["silhouette"]
        sampling = segmentation.sampling
        print(
            f"| {name}{' -> ' + segmentation.algorithm if name == 'auto' else ''} | {seconds:.1f} "
            f"| {segmentation.n_segments} | {segmentation.params} "
            f"| {'-' if silhouette is None else f'{silhouette:.3f}'} "
            f"| {segmentation.scores['noise_share']:.3f} "
            f"| {adjusted_rand_score(planted, segmentation.labels):.3f} "
            f"| fit {sampling['fit_sample'] or 'all rows'}, search {sampling['search_sample']}, "
            f"assigned by {sampling['assigned_by']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
