"""An exclusive lock on a local folder, held by one process at a time.

`fcntl.flock` is released by the kernel when its holder dies, even by kill -9, so a
killed run never leaves a stale lock; the file only records who holds it, for the message
the next process shows.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".ctdenoise.lock"


class Busy(RuntimeError):
    """Another process holds the lock; the message names it in one line."""


@contextlib.contextmanager
def exclusive(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock for the duration, or raise Busy at once naming its holder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Busy(f"{folder} is in use by {holder}; wait for it to finish or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(f"{what} (pid {os.getpid()}, started {started})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
