"""SciPy's linkage of the stability subsamples, computed ahead in a worker process on an idle core.

SciPy's nearest-neighbour chain holds the GIL. An agglomerative search links the 5,000-row fit
sample, and its stability check links three subsamples of 4,000 rows again, once the candidates are
scored: 1.0-1.2 s of a 3.6-3.8 s cluster stage at 100k customers, while the machine's second core
waited. `linkages_ahead` hands the subsamples to one worker process as the search starts; by the time
the search checks stability their linkages are written, and `linkage` returns the worker's result
for rows it was handed (found by their bytes), computing any other here. The same function on the
same rows gives the same merges, wherever it runs.

The worker is a fixed program (WORKER_PROGRAM) run by this Python: it imports NumPy, SciPy and
`segflow.process_memory`, not the program that started it (as multiprocessing's spawn would: a
script without a main guard would run again), and rows and merges cross as NumPy files, never
pickled. It is used only where it pays: on a machine with a second core, for row sets of at least
AHEAD_MIN_ROWS rows. It is killed as the search ends, whatever it was still doing; when it could not
start, died or failed, the linkages are computed here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# smaller row sets link in less time than the worker takes to start (0.3-0.5 s, on the other core):
# 3,000 rows link in 0.15-0.4 s, 4,000 in 0.3-0.45 s on the project's 2-core machine
AHEAD_MIN_ROWS = 3_000

# links each row set of the folder's rows.npz in turn: writes its merges to merges-<position>.npy,
# then the position to its standard output (a pipe holds 64 KB, less than one linkage of 4,000 rows:
# merges written to the pipe waited there for the search to read them); its allocator keeps the
# distances it frees for the next linkage (`keep_freed_memory`: fresh pages for each one's 64-100 MB
# took 0.1 s more per linkage)
WORKER_PROGRAM = """
import sys
from pathlib import Path
import numpy as np
from scipy.cluster.hierarchy import linkage
try:
    from segflow.process_memory import keep_freed_memory
    keep_freed_memory()
except ImportError:  # segflow is not on this Python's default path: glibc's defaults, a little slower
    pass
folder, method = Path(sys.argv[1]), sys.argv[2]
row_sets = np.load(folder / "rows.npz", allow_pickle=False)
for position, name in enumerate(row_sets.files):
    merges = linkage(row_sets[name], method=method)
    np.save(folder / f"merges-{position}.npy", merges, allow_pickle=False)
    print(position, flush=True)
"""


class LinkageWorker:
    """A worker process linking row sets in turn, in a folder of its own."""

    def __init__(self, row_sets: list[np.ndarray], method: str, folder: Path):
        np.savez(folder / "rows.npz", *row_sets)
        self.folder, self.linked = folder, 0
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER_PROGRAM, str(folder), method],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    @classmethod
    def started(cls, row_sets: list[np.ndarray], method: str, folder: Path) -> LinkageWorker | None:
        """A worker linking `row_sets`, or None when no process could start (an embedded Python, a
        process limit): the linkages are then computed here."""
        try:
            return cls(row_sets, method, folder)
        except OSError:
            return None

    def result(self, position: int) -> np.ndarray | None:
        """The linkage of row set `position`, once the worker wrote it; None if it ended first (it
        died or failed)."""
        while self.linked <= position:
            if not self.process.stdout.readline():
                return None
            self.linked += 1
        return np.load(self.folder / f"merges-{position}.npy", allow_pickle=False)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


_handed: dict[tuple, tuple[LinkageWorker, int]] = {}  # by `_key`: which worker links these rows


def _key(rows: np.ndarray, method: str) -> tuple:
    values = np.ascontiguousarray(rows, dtype=np.float64)
    return method, values.shape, hashlib.blake2b(values.tobytes(), digest_size=16).digest()


def idle_core() -> bool:
    """Whether this process may run on more than one core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) > 1
    return (os.cpu_count() or 1) > 1


@contextmanager
def linkages_ahead(row_sets: list[np.ndarray], method: str) -> Iterator[None]:
    """While the block runs, `linkage(rows, method)` of each of `row_sets` is computed in a worker
    process, in turn, when it pays (module docstring)."""
    if not row_sets or len(row_sets[0]) < AHEAD_MIN_ROWS or not idle_core():
        yield
        return
    sets = [np.ascontiguousarray(rows, dtype=np.float64) for rows in row_sets]
    keys = [_key(rows, method) for rows in sets]
    with tempfile.TemporaryDirectory(prefix="segflow-linkages-") as folder:
        worker = LinkageWorker.started(sets, method, Path(folder))
        if worker is None:
            yield
            return
        try:
            _handed.update({key: (worker, position) for position, key in enumerate(keys)})
            yield
        finally:
            for key in keys:
                _handed.pop(key, None)
            worker.stop()


def linkage(rows: np.ndarray, method: str) -> np.ndarray:
    """SciPy's linkage of `rows`: the worker's, when `linkages_ahead` handed it these rows, else
    computed here."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    handed = _handed.pop(_key(rows, method), None) if _handed else None
    if handed is not None:
        worker, position = handed
        merges = worker.result(position)
        if merges is not None:
            return merges
    return scipy_linkage(rows, method=method)
