"""`serve`'s operations port: `/healthz` (200 while the watch loop polls, 503 once it has
stopped polling for longer than a PACS call may take) and `/metrics` in Prometheus text
format (prometheus-client).

The series counts per state are read from the journal at each scrape, so they agree with it
across restarts; the failures and the seconds per series are this process's own.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ctdenoise.app.serve.journal import Journal

PREFIX = "ctdenoise_serve"
_SECONDS_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)


class _JournalCounts(Collector):
    def __init__(self, journal: Journal):
        self._journal = journal

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(f"{PREFIX}_series", "Series in the journal, by state", labels=["state"])
        for state, count in self._journal.counts().items():
            family.add_metric([state], count)
        yield family


class Metrics:
    """The service's metrics: journal counts, failures and seconds per series."""

    def __init__(self, journal: Journal):
        self.registry = CollectorRegistry()
        self.registry.register(_JournalCounts(journal))
        self.failures = Counter(
            f"{PREFIX}_failures", "Series attempts that failed, by this process", registry=self.registry
        )
        self.seconds = Histogram(
            f"{PREFIX}_series_seconds",
            "Seconds from claiming a series to its derived series stored, by this process",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )


class Heartbeat:
    """When the watch loop last polled; healthy while that is no older than `allowed_s`."""

    def __init__(self, allowed_s: float):
        self.allowed_s = allowed_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.last <= self.allowed_s


def serve_http(host: str, port: int, metrics: Metrics, heartbeat: Heartbeat) -> http.server.ThreadingHTTPServer:
    """Start answering on host:port (0: any free port; the server's `server_port` says which)
    in a daemon thread."""
    handler = _handler(lambda: generate_latest(metrics.registry), heartbeat.healthy)
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="serve-http", daemon=True).start()
    return server


def _handler(scrape: Callable[[], bytes], healthy: Callable[[], bool]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, scrape(), "text/plain; version=0.0.4; charset=utf-8")
            elif self.path == "/healthz":
                ok = healthy()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"the watch loop has stopped polling\n")
            else:
                self._answer(404, b"not found: /healthz or /metrics\n")

        def _answer(self, code: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            """Scrapes are not logged: the service's log is one line per event."""

    return Handler
