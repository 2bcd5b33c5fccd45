"""A lock held by another process until the test lets go: the holder takes the lock, prints a
line, then reads its stdin to the end, so that it waits for the test, never for a time, and no
machine is too slow for it (tests.limits)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

from tests.limits import HANG_S


@contextlib.contextmanager
def held(code: str, ready: str) -> Iterator[subprocess.Popen]:
    """Run `code` in a child until it prints `ready`, and let it go (close its stdin) when the
    block ends. `code` takes the lock, prints `ready`, then holds it over `sys.stdin.read()`.
    The child is yielded, so that a test may kill it instead, to see the lock die with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    stdin, stdout = holder.stdin, holder.stdout
    assert stdin is not None and stdout is not None  # both are pipes
    try:
        assert stdout.readline().strip() == ready
        yield holder
    finally:
        stdin.close()
        holder.wait(timeout=HANG_S)
        stdout.close()
