"""SciPy's linkage of the stability subsamples, computed ahead in a worker process on an idle core.

SciPy's nearest-neighbour chain holds the GIL. An agglomerative search links the 5,000-row fit
sample, and its stability check links three subsamples of 4,000 rows again, once the candidates are
scored: 1.0-1.2 s of a 3.6-3.8 s cluster stage at 100k customers, while the machine's second core
waited. `linkages_ahead` hands the subsamples to one worker process as the search starts; by the time
the search checks stability their linkages are written, and `linkage` returns the worker's result
for rows it was handed (found by their bytes), computing any other here. The same function on the
same rows gives the same merges, wherever it runs.

The worker is a fixed program (WORKER_PROGRAM) run by this Python with `-P` (the working folder is
not on its path: a numpy.py there does not run): it imports NumPy, SciPy and
`segflow.process_memory`, not the program that started it (as multiprocessing's spawn would: a
script without a main guard would run again), and rows and merges cross as NumPy files, never
pickled. It is used only where it pays: on a POSIX machine with a second core, for row sets of at
least AHEAD_MIN_ROWS rows. It is killed as the search ends, whatever it was still doing. When it
could not start, died, failed or wrote nothing for PATIENCE_SECONDS once asked, the linkages are
computed here, and a warning says why. What a search handed is its own (a context variable): two
searches in threads of one process, even of the same rows, never take each other's.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# smaller row sets link in less time than the worker takes to start (0.3-0.5 s, on the other core):
# 3,000 rows link in 0.15-0.4 s, 4,000 in 0.3-0.45 s on the project's 2-core machine
AHEAD_MIN_ROWS = 3_000
# how long the search waits, once it asks, for a worker that writes nothing (a 16,000-row linkage,
# the largest fit sample's subsample, takes 15-30 s): past it the worker is taken for stuck
PATIENCE_SECONDS = 120.0

# links each row set of the folder's rows.npz in turn, writes its merges to merges-<position>.npy,
# then a line to its standard output (merges themselves would fill the pipe and wait there)
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

Key = tuple[str, tuple[int, ...], bytes]  # the method, the rows' shape and a digest of their bytes


class LinkageWorker:
    """A worker process linking row sets in turn, in a folder of its own."""

    def __init__(self, row_sets: list[np.ndarray], method: str, folder: Path):
        np.savez(folder / "rows.npz", *row_sets)
        self.folder, self.linked, self.given_up = folder, 0, False
        with (folder / "worker.log").open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", WORKER_PROGRAM, str(folder), method],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                bufsize=0,
            )

    @classmethod
    def started(cls, row_sets: list[np.ndarray], method: str, folder: Path) -> LinkageWorker | None:
        """A worker linking `row_sets`, or None when no process could start (an embedded Python, a
        process limit): the linkages are then computed here."""
        try:
            return cls(row_sets, method, folder)
        except OSError as error:
            log.warning("linkages computed in this process: no worker process could start (%s)", error)
            return None

    def result(self, position: int) -> np.ndarray | None:
        """The linkage of row set `position`, once the worker wrote it; None (with a warning) if it
        ended first, or wrote nothing for PATIENCE_SECONDS: it is then killed."""
        if self.given_up:
            return None
        stream = self.process.stdout.fileno()
        while self.linked <= position:
            ready, _, _ = select.select([stream], [], [], PATIENCE_SECONDS)
            written = os.read(stream, 4096) if ready else b""
            if not written:
                return self._gave_up(f"wrote nothing for {PATIENCE_SECONDS:g} s" if not ready else "ended")
            self.linked += written.count(b"\n")
        try:
            return np.load(self.folder / f"merges-{position}.npy", allow_pickle=False)
        except (OSError, ValueError) as error:
            return self._gave_up(f"wrote unreadable merges ({error})")

    def _gave_up(self, what: str) -> None:
        self.given_up = True
        self.stop()
        errors = (self.folder / "worker.log").read_text(errors="replace").strip().splitlines()
        said = f": {errors[-1]}" if errors else ""
        log.warning(
            "linkages computed in this process: the worker %s (exit %s)%s",
            what,
            self.process.returncode,
            said,
        )
        return None

    def stop(self) -> None:
        """Kill the worker, whatever it was doing, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


# the row sets the current search handed to its worker, by `_key`: each search's own
_handed: contextvars.ContextVar[dict[Key, tuple[LinkageWorker, int]] | None] = contextvars.ContextVar(
    "segflow_linkages_handed", default=None
)


def _key(rows: np.ndarray, method: str) -> Key:
    values = np.ascontiguousarray(rows, dtype=np.float64)
    return method, values.shape, hashlib.blake2b(values.tobytes(), digest_size=16).digest()


def worker_can_run_beside() -> bool:
    """Whether a worker process can run beside this one: more than one core for it, POSIX (the
    search waits on the worker's pipe with `select`), and a Python to run it (an embedded
    interpreter may have none)."""
    if os.name != "posix" or not sys.executable:
        return False
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) > 1
    return (os.cpu_count() or 1) > 1


@contextmanager
def linkages_ahead(row_sets: list[np.ndarray], method: str) -> Iterator[None]:
    """While the block runs, `linkage(rows, method)` of each of `row_sets` is computed in a worker
    process, in turn, when it pays (module docstring)."""
    if not row_sets or len(row_sets[0]) < AHEAD_MIN_ROWS or not worker_can_run_beside():
        yield
        return
    sets = [np.ascontiguousarray(rows, dtype=np.float64) for rows in row_sets]
    with tempfile.TemporaryDirectory(prefix="segflow-linkages-") as folder:
        worker = LinkageWorker.started(sets, method, Path(folder))
        if worker is None:
            yield
            return
        handed = {_key(rows, method): (worker, position) for position, rows in enumerate(sets)}
        token = _handed.set({**(_handed.get() or {}), **handed})
        try:
            yield
        finally:
            _handed.reset(token)
            worker.stop()


def linkage(rows: np.ndarray, method: str) -> np.ndarray:
    """SciPy's linkage of `rows`: the worker's, when this search's `linkages_ahead` handed it these
    rows, else computed here."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    handed_here = _handed.get()
    handed = handed_here.get(_key(rows, method)) if handed_here else None
    if handed is not None:
        worker, position = handed
        merges = worker.result(position)
        if merges is not None:
            return merges
    return scipy_linkage(rows, method=method)
