"""Time as users see it: each stage's seconds in this process, and the whole process's wall time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import psutil

# stage -> seconds spent in it by this process since the run began (`started_run` empties it)
STAGE_SECONDS: dict[str, float] = {}


def timed(stage: Callable[..., Any]) -> Callable[..., Any]:
    """The stage function, adding its time to STAGE_SECONDS under its task's name (repeats add up)."""
    name = stage.__name__.removesuffix("_task").replace("_", "-")

    @wraps(stage)
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return stage(*args, **kwargs)
        finally:
            STAGE_SECONDS[name] = STAGE_SECONDS.get(name, 0.0) + time.perf_counter() - start

    return run


def process_seconds() -> float:
    """Wall time since this process started (the interpreter's start and imports included). On Linux
    from the kernel's own clocks, in 10 ms steps: psutil's start time adds the boot time in whole
    seconds, which put the printed wall time up to a second off."""
    try:
        with open("/proc/self/stat") as stat:  # the start time is field 22, after the ')' of field 2
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):  # no /proc or no boot-time clock
        return time.time() - psutil.Process().create_time()
