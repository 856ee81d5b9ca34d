"""The C allocator's settings for the `segflow` process: keep the memory a run frees for its next arrays.

glibc's malloc hands every block above its mmap threshold (32 MB at most: numpy arrays, pandas
copies of Arrow columns, pairwise distances) back to the kernel as soon as it is freed, and maps
fresh pages for the next one. A fresh page costs a fault and its zeroing, and on a VM that returns
freed memory to its host (free page reporting, ballooning) about 1.5 ms per MB. A run frees and
allocates such blocks stage after stage: served from the heap and kept there, the next stage reuses
them. Measured on the demo (benchmarks/RESULTS.md): 100k customers 10.5-10.6 -> 9.7 s, system CPU
2.1 -> 1.7 s, peak RSS 0.97 -> 1.03 GiB; 1M customers 29.7 -> 28.0 s, peak 3.84 -> 4.15 GiB.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's malloc.h: free memory at the heap's top kept before it is returned
M_MMAP_MAX = -4  # glibc's malloc.h: how many blocks may be mapped apart from the heap
KEPT_BYTES = 2**31 - 1  # mallopt takes a C int: at most 2 GB kept free at the top of the heap


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve large blocks from its heap and keep up to KEPT_BYTES of what is freed
    there for the next ones. Only in the process that calls it (Dask's worker processes keep their
    own settings) and only with glibc; elsewhere nothing changes. Whether it was set."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc's own symbol: musl also has a mallopt)
    except (OSError, AttributeError):
        return False
    # a thread's arena still maps a block larger than its heaps (64 MB) when no heap can hold it
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_BYTES))
