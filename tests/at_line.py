"""Act on a real run at an exact point: the moment its process prints a line starting with a
prefix, in that process, before the run goes on. A test that acted from outside on reading
the line would act some unknown time later, and how far the run had got by then would
depend on how fast and how loaded the machine is.

    python -m tests.at_line PREFIX ARGS...

runs `ctdenoise ARGS...` in this process and kills it with SIGKILL right after it prints a
line starting with PREFIX, as a user's `kill -9` at that instant would.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO


class _Watched:
    """sys.stdout that calls `action` after each whole line starting with `prefix` (print
    writes the text and the newline separately); the writing itself goes to `out`."""

    def __init__(self, out: TextIO, prefix: str, action: Callable[[], None]):
        self._out, self._prefix, self._action, self._partial = out, prefix, action, ""

    def write(self, text: str) -> int:
        written = self._out.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        if any(line.startswith(self._prefix) for line in lines):
            self._out.flush()  # the line reaches the reader before the action
            self._action()
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)  # flush, fileno, encoding...: the real stream's


def on_line(prefix: str, action: Callable[[], None]) -> None:
    """Call `action` in this process each time it prints a line starting with `prefix`."""
    sys.stdout = _Watched(sys.stdout, prefix, action)


def _kill_this_process() -> None:
    """SIGKILL: no handler, no clean-up, no exit code of its own, as a crash or `kill -9`."""
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    on_line(sys.argv.pop(1), _kill_this_process)
    from ctdenoise.app.cli import console

    console()  # as the `ctdenoise` console script, on the rest of sys.argv
