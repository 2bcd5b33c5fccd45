"""The HTTP session under every DICOMweb call: no request of a call starts after its
deadline, and a timeout is not tried again.

dicomweb-client retries every exception its requests raise (its retry library's default), so a
silent server cost three full read timeouts with no output. The body is read in chunks with
the clock checked between them; a chunk still waits until it is full or the server closes, so
a server that trickles a byte every few seconds, below the read timeout, is not bounded yet.
"""

from __future__ import annotations

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
        for chunk in response.iter_content(_CHUNK):
            chunks.append(chunk)
            if time.monotonic() > self.deadline:
                response.close()
                raise requests.exceptions.Timeout("the answer did not arrive by the call's deadline")
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag; its stubs omit it
