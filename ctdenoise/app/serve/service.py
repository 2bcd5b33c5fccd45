"""The `serve` process: a watch loop that polls the PACS into the journal, `workers` threads
that claim settled series from it and denoise them one at a time, an operations port, and
a clean stop on SIGTERM or Ctrl-C.

Each worker asks for the model before it claims a series, so a new push under `--model
latest` is picked up between series, never during one; a series interrupted half-way is
finished with the model it started with. Memory and concurrency are bounded by `workers`:
each holds one series. On SIGTERM no new series is claimed, the series in hand have GRACE_S
to finish, and what is still in hand then goes back to `seen` in the journal before the
process exits; its derived UIDs being deterministic, the next start stores it once.

Logs are one JSON object per line on stdout: the event, the study and series UIDs it
concerns, and figures; never a tag value or a credential.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ctdenoise.app.denoise import DenoiseError, LoadedModel, load_model, resolve_model
from ctdenoise.app.messages import one_line
from ctdenoise.app.serve.health import Heartbeat, Metrics, serve_http
from ctdenoise.app.serve.journal import Entry, Journal
from ctdenoise.app.serve.watch import Rules, poll
from ctdenoise.app.serve.worker import Outcome, denoise_entry
from ctdenoise.dicomweb_io.address import DicomwebAddress, parse
from ctdenoise.dicomweb_io.client import CALL_DEADLINE_S, DicomwebError, Pacs
from ctdenoise.metadata.store import StoreAddress
from ctdenoise.storage.lock import exclusive

GRACE_S = 20.0
"""Seconds the series in hand have to finish after SIGTERM: the process exits within 30 s."""
JOURNAL_NAME = Path("serve") / "journal.sqlite"
"""The journal's place under the run root unless `--journal` names one."""


class ServeError(ValueError):
    """A service that cannot start (bad address, no model, journal in use); one line."""


@dataclass(frozen=True)
class Settings:
    """What `ctdenoise serve` was given."""

    pacs: str
    model: str
    root: Path
    rules: Rules
    journal: Path | None = None
    workers: int = 1
    poll_s: float = 10.0
    settle_s: float = 30.0
    http_host: str = "127.0.0.1"
    http_port: int = 9464
    store: StoreAddress = field(default_factory=StoreAddress)

    @property
    def journal_path(self) -> Path:
        return self.journal or self.root / JOURNAL_NAME


class _Log:
    """One JSON object per line on stdout, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: object) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        line = json.dumps({"time": now, "event": event, **fields}, ensure_ascii=False)
        with self._lock:
            print(line, flush=True)


class _Models:
    """The model `--model` means now, loaded once per folder: "latest" is looked up again each
    time a worker is free (a new push is taken between series)."""

    def __init__(self, spec: str, settings: Settings, log: _Log):
        self._spec, self._settings, self._log = spec, settings, log
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def current(self) -> str:
        return resolve_model(self._spec, self._settings.root, self._settings.store)

    def load(self, model_dir: str) -> LoadedModel:
        with self._lock:
            if model_dir not in self._loaded:
                self._loaded = {model_dir: load_model(model_dir), **dict(list(self._loaded.items())[:1])}
                self._log("model", model=model_dir, name=self._loaded[model_dir].name)
            return self._loaded[model_dir]


def serve(settings: Settings) -> int:
    """Run the service until SIGTERM or Ctrl-C; the exit status."""
    address = parse(settings.pacs)
    if address.study or address.series:
        raise ServeError(f"--pacs {address}: give the DICOMweb service, not a study or series in it")
    if settings.workers < 1:
        raise ServeError(f"--workers {settings.workers}: give at least 1")
    log = _Log()
    models = _Models(settings.model, settings, log)
    models.load(models.current())  # no model, or a bad one: one line before anything starts
    journal_path = settings.journal_path.resolve()
    with exclusive(journal_path.parent, "ctdenoise serve"):
        return _Service(settings, address.base, journal_path, models, log).run()


class _Service:
    def __init__(self, settings: Settings, base: str, journal_path: Path, models: _Models, log: _Log):
        self.settings, self.base, self.models, self.log = settings, base, models, log
        self.journal = Journal(journal_path)
        self.work = journal_path.parent / "work"
        self.metrics = Metrics(self.journal)
        self.heartbeat = Heartbeat(CALL_DEADLINE_S + 3 * settings.poll_s)
        self.stop = threading.Event()

    def run(self) -> int:
        resumed = self.journal.release_in_progress("interrupted: the service stopped while it was in hand")
        shutil.rmtree(self.work, ignore_errors=True)  # what a killed service left; the lock says none runs
        self.work.mkdir(parents=True)
        host, port = self.settings.http_host, self.settings.http_port
        try:
            http = serve_http(host, port, self.metrics, self.heartbeat)
        except OSError as exc:
            raise ServeError(f"--http {host}:{port}: cannot answer there ({exc.strerror or exc})") from None
        workers = [
            threading.Thread(target=self._work, name=f"serve-worker-{n}", daemon=True)
            for n in range(self.settings.workers)
        ]
        self.log(
            "started",
            pacs=self.base,
            journal=str(self.journal.path),
            workers=len(workers),
            http=f"{host}:{http.server_port}",
            resumed=resumed,
            pid=os.getpid(),
        )
        with self._stopped_by_signals():
            for worker in workers:
                worker.start()
            self._watch()
        deadline = time.monotonic() + GRACE_S
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        abandoned = self.journal.release_in_progress("abandoned: the service stopped while it was in hand")
        self.log("stopped", abandoned=abandoned, **self.journal.counts())
        http.shutdown()
        if any(worker.is_alive() for worker in workers):  # a model call cannot be interrupted: leave now
            sys.stdout.flush()
            os._exit(0)
        self.journal.close()
        return 0

    def _watch(self) -> None:
        pacs = Pacs(DicomwebAddress(self.base))
        while not self.stop.is_set():
            try:
                matched = poll(pacs, self.settings.rules, self.journal)
                self.log("polled", matched=matched, **self.journal.counts())
                self.heartbeat.beat()
            except DicomwebError as exc:
                self.log("pacs_unavailable", reason=str(exc))
                self.heartbeat.beat()  # the loop lives; a PACS away is not cured by restarting the service
            except Exception as exc:  # logged; /healthz turns 503 if it persists, and a restart may cure it
                self.log("poll_failed", reason=one_line(exc, typed=True))
            self.stop.wait(self.settings.poll_s)

    def _work(self) -> None:
        while not self.stop.is_set():
            if not self.journal.ready(self.settings.settle_s):
                self.stop.wait(min(self.settings.poll_s, 1.0))
                continue
            try:
                model_dir = self.models.current()
            except DenoiseError as exc:
                self.log("model_unavailable", reason=str(exc))
                self.stop.wait(self.settings.poll_s)
                continue
            entry = self.journal.claim(self.settings.settle_s, model_dir)
            if entry is not None:
                self._denoise(entry)

    def _denoise(self, entry: Entry) -> None:
        self.log("claimed", study=entry.study, series=entry.series, instances=entry.instances, model=entry.model)
        try:
            outcome = denoise_entry(entry, self.base, entry.model, self.models.load(entry.model), self.work)
        except DenoiseError as exc:  # the model of an interrupted series is gone or broken
            outcome = Outcome("failed", str(exc))
        except Exception as exc:  # a worker outlives any one series: it fails, with its reason
            outcome = Outcome("failed", one_line(exc, typed=True))
        self._record(entry, outcome)

    def _record(self, entry: Entry, outcome: Outcome) -> None:
        fields = {"study": entry.study, "series": entry.series}
        if outcome.state == "stored":
            self.journal.stored(entry.series, outcome.derived, outcome.seconds)
            self.metrics.seconds.observe(outcome.seconds)
            self.log(
                "stored", **fields, derived=outcome.derived, slices=outcome.slices, seconds=round(outcome.seconds, 2)
            )
        elif outcome.state == "skipped":
            self.journal.skipped(entry.series, outcome.reason)
            self.log("skipped", **fields, reason=outcome.reason)
        elif outcome.state == "requeue":
            self.journal.requeue(entry.series, outcome.reason, self.settings.settle_s)
            self.log("requeued", **fields, reason=outcome.reason)
        else:
            state = self.journal.failed(entry.series, outcome.reason, self.settings.settle_s)
            self.metrics.failures.inc()
            self.log(state, **fields, reason=outcome.reason, attempts=entry.attempts + 1)

    @contextmanager
    def _stopped_by_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the loop (the caller then winds down) instead of the process."""
        previous = {sig: signal.signal(sig, lambda *_: self.stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
