"""What the tests' real servers (the S3 object store, MariaDB) share: a free loopback port,
waiting until a server listens, and stopping its whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from tests.limits import HANG_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(server: subprocess.Popen, port: int, log, name: str) -> None:
    """Return once the server accepts connections on the loopback; HANG_S bounds a hang.
    `log` is the binary file its output goes to, quoted when it exits instead."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited at start: {log.read().decode(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)  # how often to look, not how long to wait
    raise RuntimeError(f"{name} not listening on port {port} after {HANG_S} s")


def stop(server: subprocess.Popen) -> None:
    """Stop the server's whole process group (it was started in a session of its own)."""
    if server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)  # a grace period to stop in; past it, killed (the tests are over)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        except ProcessLookupError:
            pass
