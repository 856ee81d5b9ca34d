"""The linkages of agglomerative's stability refits, computed ahead in a worker process
(`segflow.clustering.linkages`): the same merges as SciPy's in this process, used by the search only
where it pays, and never waited for once the worker is gone."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.cluster.hierarchy

from segflow.clustering import fit_segmentation, linkages
from segflow.clustering.search import stability_subsamples
from segflow.config import ClusteringConfig


def skewed_customers(n_rows: int = 4_000, seed: int = 0) -> np.ndarray:
    """Overlapping, long-tailed rows: most buy once (frequency piles up at its minimum), recency and
    spend are log-normal, and two engagement features are noisy mixtures; standardised."""
    rng = np.random.default_rng(seed)
    frequency = rng.geometric(0.6, n_rows)
    recency = rng.lognormal(4.5, 1.0, n_rows)
    spend = rng.lognormal(3.5, 0.8, n_rows) * frequency
    sessions = rng.poisson(np.where(rng.random(n_rows) < 0.3, 12, 2))
    opens = rng.binomial(20, np.clip(rng.beta(2, 5, n_rows), 0, 1))
    rows = np.column_stack([np.log1p(recency), np.log1p(frequency), np.log1p(spend), sessions, opens])
    return (rows - rows.mean(axis=0)) / rows.std(axis=0)


def row_sets(rows: np.ndarray, config: ClusteringConfig) -> list[np.ndarray]:
    """The fit sample's stability subsamples, and the fit sample itself."""
    return [*(rows[subsample] for subsample in stability_subsamples(len(rows), config)), rows]


def handed() -> dict:
    return linkages._handed.get() or {}


def the_worker() -> linkages.LinkageWorker:
    (worker,) = {worker for worker, _ in handed().values()}
    return worker


@pytest.fixture
def second_core(monkeypatch):
    """A core for the worker, as on the project's machine, also on a one-core runner."""
    monkeypatch.setattr(linkages, "worker_can_run_beside", lambda: True)


def test_the_workers_linkages_are_scipys_and_are_not_computed_here(monkeypatch, second_core):
    rows = skewed_customers(4_000)
    sets = row_sets(rows, ClusteringConfig())
    expected = [scipy.cluster.hierarchy.linkage(each, method="ward") for each in sets]

    def not_here(*args, **kwargs):
        raise AssertionError("computed in this process")

    with linkages.linkages_ahead(sets, "ward"):
        monkeypatch.setattr(scipy.cluster.hierarchy, "linkage", not_here)
        # out of order: the worker links them in turn, a search may take them in another
        found = [linkages.linkage(sets[position], "ward") for position in (2, 0, 3, 1, 2)]
    for position, merges in zip((2, 0, 3, 1, 2), found, strict=True):
        assert merges.dtype == np.float64
        assert np.array_equal(merges, expected[position])
    assert handed() == {}


def test_rows_not_handed_a_dead_and_a_stuck_worker_are_linked_here(monkeypatch, second_core, caplog):
    rows = skewed_customers(4_000)
    sets = row_sets(rows, ClusteringConfig())
    in_process = []
    scipy_linkage = scipy.cluster.hierarchy.linkage

    def counted(rows, method="single", **kwargs):
        in_process.append(len(rows))
        return scipy_linkage(rows, method=method, **kwargs)

    monkeypatch.setattr(scipy.cluster.hierarchy, "linkage", counted)
    with linkages.linkages_ahead(sets, "ward"):
        other = rows[:3_100]
        assert np.array_equal(linkages.linkage(other, "ward"), scipy_linkage(other, method="ward"))
        assert np.array_equal(linkages.linkage(rows, "average"), scipy_linkage(rows, method="average"))
        assert in_process == [3_100, 4_000]
    with linkages.linkages_ahead(sets, "ward"), caplog.at_level(logging.WARNING):
        worker = the_worker()
        worker.process.kill()  # before it could link anything: it takes 0.3 s to start
        worker.process.wait()
        assert np.array_equal(linkages.linkage(sets[1], "ward"), scipy_linkage(sets[1], method="ward"))
        assert np.array_equal(linkages.linkage(sets[2], "ward"), scipy_linkage(sets[2], method="ward"))
        assert in_process == [3_100, 4_000, len(sets[1]), len(sets[2])]
        assert worker.linked == 0
    assert f"the worker ended (exit {-signal.SIGKILL})" in caplog.text
    caplog.clear()
    monkeypatch.setattr(linkages, "PATIENCE_SECONDS", 0.01)  # it has not even started by then
    with linkages.linkages_ahead(sets, "ward"), caplog.at_level(logging.WARNING):
        worker = the_worker()
        assert np.array_equal(linkages.linkage(sets[0], "ward"), scipy_linkage(sets[0], method="ward"))
        assert worker.process.returncode == -signal.SIGKILL  # given up: killed at once
    assert "the worker wrote nothing for 0.01 s" in caplog.text
    assert handed() == {}


def test_no_worker_without_a_python_to_run_it(monkeypatch):
    monkeypatch.setattr(linkages.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert linkages.worker_can_run_beside()
    monkeypatch.setattr(linkages.sys, "executable", "")  # an embedded interpreter
    assert not linkages.worker_can_run_beside()


def test_the_worker_starts_only_where_it_pays_and_is_killed_as_the_block_ends(monkeypatch, caplog):
    small = skewed_customers(linkages.AHEAD_MIN_ROWS - 1)
    rows = skewed_customers(linkages.AHEAD_MIN_ROWS)
    sets = [rows, rows[::-1].copy()]
    monkeypatch.setattr(linkages, "worker_can_run_beside", lambda: False)
    with linkages.linkages_ahead(sets, "ward"):
        assert handed() == {}  # one core: nothing to run beside the search
    monkeypatch.setattr(linkages, "worker_can_run_beside", lambda: True)
    with linkages.linkages_ahead([small], "ward"):
        assert handed() == {}  # fewer rows than the worker's start costs

    def no_process(*args, **kwargs):
        raise OSError("Resource temporarily unavailable")

    with monkeypatch.context() as patched, caplog.at_level(logging.WARNING):
        patched.setattr(linkages.subprocess, "Popen", no_process)
        with linkages.linkages_ahead(sets, "ward"):
            assert handed() == {}  # no process to start: linked here
            merges = linkages.linkage(sets[0], "ward")
    assert np.array_equal(merges, scipy.cluster.hierarchy.linkage(sets[0], method="ward"))
    assert "no worker process could start (Resource temporarily unavailable)" in caplog.text

    with linkages.linkages_ahead(sets, "ward"):
        assert len(handed()) == len(sets)
        worker = the_worker()
        assert worker.process.poll() is None  # still linking the sets nobody took
    assert worker.process.returncode == -signal.SIGKILL
    assert not worker.folder.exists() and handed() == {}

    with pytest.raises(RuntimeError, match="the search failed"), linkages.linkages_ahead(sets, "ward"):
        worker = the_worker()
        raise RuntimeError("the search failed")
    assert worker.process.returncode == -signal.SIGKILL
    assert not worker.folder.exists() and handed() == {}


def test_two_searches_of_the_same_rows_in_threads_each_take_their_own_workers_linkages(second_core):
    rows = skewed_customers(4_000)
    sets = row_sets(rows, ClusteringConfig())
    expected = scipy.cluster.hierarchy.linkage(sets[0], method="ward")
    both_started, first_done = threading.Barrier(2), threading.Event()
    seen: dict[str, tuple[Path, np.ndarray]] = {}

    def search(name: str) -> None:
        with linkages.linkages_ahead(sets, "ward"):
            worker = the_worker()
            both_started.wait()
            if name == "second":
                first_done.wait()  # the first search's worker is killed and its folder gone by now
            seen[name] = (worker.folder, linkages.linkage(sets[0], "ward"))
        if name == "first":
            first_done.set()

    threads = [threading.Thread(target=search, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert seen["first"][0] != seen["second"][0]
    for _, merges in seen.values():
        assert np.array_equal(merges, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_search_with_the_worker_chooses_and_scores_what_one_without_it_does(monkeypatch, seed, second_core):
    """The default auto search on skewed rows, with agglomerative's stability linkages in the worker and
    in this process: the same choice, reasons, leaderboard, labels and scores; the worker's linkages
    were the ones its stability refits used, one per subsample."""
    rows = skewed_customers(4_000, seed)
    config = ClusteringConfig(seed=seed)
    taken = []
    result = linkages.LinkageWorker.result

    def counted(self, position):
        merges = result(self, position)
        taken.append(position if merges is not None else None)
        return merges

    monkeypatch.setattr(linkages.LinkageWorker, "result", counted)
    ahead = fit_segmentation(rows, config)
    monkeypatch.setattr(linkages, "AHEAD_MIN_ROWS", 10**9)
    here = fit_segmentation(rows, config)

    leaderboard = [row for row in ahead.leaderboard if row["algorithm"] == "agglomerative"]
    assert leaderboard and leaderboard[0]["scores"]["stability"] is not None  # its stability was refitted
    assert taken == list(range(config.stability_resamples))
    assert ahead.algorithm == here.algorithm and ahead.params == here.params
    assert np.array_equal(ahead.labels, here.labels)
    assert ahead.choice == here.choice
    assert json.dumps(ahead.leaderboard, sort_keys=True) == json.dumps(here.leaderboard, sort_keys=True)
    assert json.dumps(ahead.k_search, sort_keys=True) == json.dumps(here.k_search, sort_keys=True)
    assert ahead.scores == here.scores
