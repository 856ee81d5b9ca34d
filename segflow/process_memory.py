"""How the `segflow` process spends less time on memory, in the process the command owns.

- The C allocator keeps what a stage frees for the next (`keep_freed_memory`). glibc's malloc hands
  every block above its mmap threshold (32 MB at most: numpy arrays, pandas copies of Arrow columns,
  pairwise distances) back to the kernel as soon as it is freed, and maps fresh pages for the next
  one. A fresh page costs a fault and its zeroing, and on a VM that returns freed memory to its host
  (free page reporting, ballooning) about 1.5 ms per MB. Measured on the demo at 100k customers
  (benchmarks/RESULTS.md): system CPU 2.1 -> 1.7 s, peak RSS 0.97 -> 1.03 GiB.
- The garbage collector skips the objects the run starts with (`freeze_long_lived`): the modules and
  classes of Prefect, pandas, pydantic and segflow, about 170,000 objects that every full collection
  traversed. Frozen (`gc.freeze`) as the flow starts, before any of the run's own objects exist: a
  100k run's full collections took 0.73-0.82 s, then 0.56 s. Freezing again once Great Expectations
  was imported took them to 0.3 s, but froze the running flow's own objects with it: garbage in
  reference cycles once their task ended, they held the first night's tables for good, and a 1M
  backfill of three nights peaked at 6.6 GiB instead of 4.1 (benchmarks/RESULTS.md).

Both apply only once the `segflow` command owns the process (`own_the_process`). A frozen object
that later becomes garbage in a reference cycle is never freed, so a program that runs segflow's
flows in its own process keeps its collector as it was. A DataFrame is no cycle: frozen or not, it
is freed when its last reference goes.
"""

from __future__ import annotations

import ctypes
import gc

M_TRIM_THRESHOLD = -1  # glibc's malloc.h: free memory at the heap's top kept before it is returned
M_MMAP_MAX = -4  # glibc's malloc.h: how many blocks may be mapped apart from the heap
KEPT_BYTES = 2**31 - 1  # mallopt takes a C int: at most 2 GB kept free at the top of the heap

_owned = False  # whether the segflow command owns this process


def own_the_process() -> None:
    """The `segflow` command's process: its allocator keeps freed memory, and its long-lived
    objects may be frozen."""
    global _owned
    _owned = True
    keep_freed_memory()


def freeze_long_lived() -> None:
    """Leave the objects alive now out of later collections, where the segflow command owns the
    process: called as its flow starts, when they are the modules, classes and settings it keeps to
    its end. The garbage still pending then is the imports' (566 objects here), frozen once; a
    collection first would cost 0.08 s."""
    if _owned:
        gc.freeze()


def keep_freed_memory() -> None:
    """Have glibc's malloc serve large blocks from its heap and keep up to KEPT_BYTES of what is freed
    there for the next ones. Only in this process (Dask's worker processes keep their own settings)
    and only with glibc; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc's own symbol: musl also has a mallopt)
    except (OSError, AttributeError):
        return
    # a thread's arena still maps a block larger than its heaps (64 MB) when no heap can hold it
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, KEPT_BYTES)
