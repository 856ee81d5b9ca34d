"""Files a run writes: swapped in whole, under a name nobody could have planted, readable by the
run's group only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o640
FOLDER_MODE = 0o750
RUN_UMASK = 0o027  # what a run creates: files 0640 and folders 0750 at most, nothing for others


@contextmanager
def private_files() -> Iterator[None]:
    """For the block, every file and folder the process creates is closed to other users (the
    published tables, reports and validation results hold customer data)."""
    previous = os.umask(RUN_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write a file under a fresh temporary name beside it (created exclusively, so a planted link
    is never followed), then swap it in, so no reader sees half of it."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
