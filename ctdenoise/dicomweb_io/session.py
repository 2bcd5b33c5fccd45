"""The HTTP session under every DICOMweb call: no request of a call starts after its
deadline, and a timeout is not tried again.

dicomweb-client retries every exception its requests raise (its retry library's default), so a
silent server cost three full read timeouts with no output. The body is read in chunks with
the clock checked between them, and a timer shuts the connection's socket at the deadline: a
read that waits for a chunk to fill, from a server that trickles a byte every few seconds
(each byte restarting the read timeout), ends then too.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import requests

_CHUNK = 1 << 16


class DeadlineSession(requests.Session):
    """A session whose requests, while `deadline` (a `time.monotonic()` value) is set, keep to
    it: no request starts after it, the socket timeouts shrink to what is left, and the body is
    read in chunks with the clock checked between them. A timeout moves the deadline to now,
    so that the retries that follow fail at once instead of waiting again."""

    deadline: float | None = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.deadline is None:
            return super().send(request, **kwargs)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise requests.exceptions.Timeout("the call's deadline has passed")
        connect, read = kwargs.get("timeout") or (left, left)
        kwargs["timeout"] = (min(connect, left), min(read, left))
        try:
            response = super().send(request, **{**kwargs, "stream": True})
            if not kwargs.get("stream"):
                self._read_body(response)
        except requests.exceptions.Timeout:
            self.deadline = time.monotonic()
            raise
        return response

    def _read_body(self, response: requests.Response) -> None:
        """The whole body, as requests reads it for a call without `stream`, by the deadline."""
        assert self.deadline is not None
        chunks = []
        cut = threading.Timer(max(0.0, self.deadline - time.monotonic()), _shut, args=(response,))
        cut.daemon = True
        cut.start()
        try:
            for chunk in response.iter_content(_CHUNK):
                chunks.append(chunk)
                if time.monotonic() > self.deadline:
                    break
        except requests.exceptions.RequestException:
            if time.monotonic() < self.deadline:
                raise
        finally:
            cut.cancel()
        if time.monotonic() > self.deadline:
            response.close()
            raise requests.exceptions.Timeout("the answer did not arrive by the call's deadline")
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag; its stubs omit it


def _shut(response: requests.Response) -> None:
    """Shut the socket the body is read from, waking a read blocked on it. urllib3 1.26 keeps
    the connection on the response while its body is read; a server that closes after each
    answer (HTTP/1.0) leaves the socket only inside the response's file."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is None:
        stream = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(stream, "raw", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
