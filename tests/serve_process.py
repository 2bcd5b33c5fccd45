"""`ctdenoise serve` as a real process for the tests: its JSON log lines read as they come, so
a test waits on an event the service logs (a series stored, a poll) rather than for a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.limits import HANG_S
from tests.pipeline_helpers import ctdenoise_cmd


class ServeProcess:
    """`ctdenoise serve ARGS` with its stdout lines collected (`events`) and its HTTP port known."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path, program: list[str] | None = None):
        """`program` is the command before ARGS (default: this interpreter's `ctdenoise serve`)."""
        self._stderr = open(stderr, "ab")  # noqa: SIM115  (closed in `wait`)
        self.process = subprocess.Popen(
            [*(program or ctdenoise_cmd("serve")), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **env},
        )
        self.events: list[dict] = []
        self._ended = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        started = self.wait_for(lambda e: e["event"] == "started")
        self.http = f"http://{started['http']}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict], bool], count: int = 1) -> dict:
        """The `count`-th logged event that satisfies `predicate` (waiting for it as long as the
        process lives; HANG_S bounds a hang)."""
        deadline = time.monotonic() + HANG_S
        with self._changed:
            while True:
                found = [event for event in self.events if predicate(event)]
                if len(found) >= count:
                    return found[count - 1]
                if self._ended or not self._changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    break
        raise AssertionError(f"serve never logged the event (exit {self.process.poll()}); last: {self.events[-3:]}")

    def count(self, event: str) -> int:
        with self._changed:
            return sum(1 for e in self.events if e["event"] == event)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.http}{path}", timeout=60)

    def kill(self) -> None:
        """kill -9, as an out-of-memory killer or a power cut does."""
        self.process.kill()
        self.wait()

    def terminate(self) -> tuple[int, float]:
        """SIGTERM, as Kubernetes sends it: (exit status, seconds to exit)."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return self.wait(), time.monotonic() - start

    def wait(self) -> int:
        code = self.process.wait(timeout=HANG_S)
        self._stderr.close()
        return code
