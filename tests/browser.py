"""A real browser for the tests: Debian's headless Chromium, driven over its DevTools
protocol (a WebSocket on the loopback) with websocket-client.

`.ci/run` installs the `chromium` package when it is missing; without it `Browser` fails
naming the package. Console messages, uncaught exceptions and every request the page makes
are recorded, so a test can say that a page loads cleanly and fetches nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import websocket

from tests.limits import HANG_S
from tests.servers import stop

_LISTENING = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")

# Chromium 111 and later refuse a DevTools WebSocket whose handshake carries an Origin header
# unless the browser was started with --remote-allow-origins; the harness sends none
# (suppress_origin) and allows none, so old and new Chromium accept it alike.
# The machine has no network: background services would only fail their look-ups.
_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def connect(socket_url: str) -> websocket.WebSocket:
    """The DevTools WebSocket, or one line that says why Chromium refused it."""
    try:
        return websocket.create_connection(socket_url, timeout=HANG_S, suppress_origin=True)
    except websocket.WebSocketBadStatusException as exc:
        raise RuntimeError(
            f"chromium refused the DevTools connection ({exc.status_code}): "
            f"{exc.resp_body[:300].decode(errors='replace') if exc.resp_body else exc}"
        ) from exc


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1200, height: int = 1600):
        binary = shutil.which("chromium")
        if binary is None:
            raise RuntimeError(
                "chromium not found: install Debian's chromium (apt-get install chromium; .ci/run does this)"
            )
        self._folder = Path(tempfile.mkdtemp(prefix="ctdenoise-chromium-"))
        self._log = open(self._folder / "chromium.log", "w+")  # noqa: SIM115  (the browser's lifetime; closed on exit)
        sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses to run as root
        self._process = subprocess.Popen(
            [
                binary,
                *_FLAGS,
                *sandbox,
                f"--user-data-dir={self._folder / 'profile'}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._socket: websocket.WebSocket | None = None
        try:
            self._socket = connect(self._page_socket())
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.__exit__()
            raise

    def _page_socket(self) -> str:
        """The page target's DevTools WebSocket, once Chromium says where it listens."""
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"chromium exited at start: {(self._folder / 'chromium.log').read_text()[-2000:]}")
            found = _LISTENING.search((self._folder / "chromium.log").read_text())
            if found:
                targets = requests.get(f"http://127.0.0.1:{found[2]}/json/list", timeout=30).json()
                pages = [t for t in targets if t["type"] == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)  # how often to look, not how long to wait
        raise RuntimeError(f"chromium gave no DevTools address within {HANG_S} s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command's result; events that arrive meanwhile are kept in `events`."""
        self._next_id += 1
        self._open_socket().send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def _open_socket(self) -> websocket.WebSocket:
        if self._socket is None:
            raise RuntimeError("the DevTools connection is not open")
        return self._socket

    def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self._open_socket().recv())
        return message

    def version(self) -> str:
        """The browser's product and version, as Chromium reports it over DevTools."""
        return str(self.call("Browser.getVersion")["product"])

    def open(self, url: str) -> None:
        """Navigate and return once the page's load event has fired."""
        seen = len(self.events)
        self.call("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]):
            self.events.append(self._receive())

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """The whole page as PNG bytes."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "")[:500])
        return found

    def requested(self) -> list[str]:
        """Every URL the page asked for, in order."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._socket is not None:
                self._socket.close()
        finally:
            stop(self._process)
            self._log.close()
            shutil.rmtree(self._folder, ignore_errors=True)
