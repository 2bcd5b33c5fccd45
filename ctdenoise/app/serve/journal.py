"""The journal of `serve`: one SQLite row per matching series, in one of the states below,
kept under the run root (or a path given) so that a restart, after a crash or kill -9,
resumes where the service stopped.

A series is `seen` when a poll finds it, and waits there until its instance count has not
changed for the settle time, so that a series arriving instance by instance is not denoised
half-received. A worker claims it (`in_progress`, with the model it uses); it ends `stored`
(with the derived series' UID and the model), `skipped` (not to be denoised: a derived
series), or `failed` (with the one-line reason, retried after a back-off) and, after
MAX_ATTEMPTS failures, `parked`, where it stays without blocking the others. A series whose
work was interrupted goes back to `seen` without an attempt counted: its derived UIDs are
deterministic, and the store adds only the instances the PACS lacks, so doing it again stores
it once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MAX_ATTEMPTS = 3
"""Failures after which a series is parked."""
STATES = ("seen", "in_progress", "stored", "skipped", "failed", "parked")
_WAITING = "('seen', 'failed')"
"""The states a claim may take, as SQL: constants of this module, never data."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    state TEXT NOT NULL,
    instances INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    retry_at REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL DEFAULT '',
    derived TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    seconds REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_by_state ON series (state);
CREATE INDEX IF NOT EXISTS series_by_derived ON series (derived);
"""


@dataclass(frozen=True)
class Entry:
    """One journalled series: what a worker needs to denoise it."""

    study: str
    series: str
    instances: int
    attempts: int
    model: str


class Journal:
    """The journal at `path` (created with its folder), safe to use from several threads."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, *args: object) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def observe(self, study: str, series: str, instances: int) -> None:
        """A poll found the series with `instances` instances: a new series is `seen`, unless it is
        a derived series this journal stored (checked here, in one statement with the insert, as a
        store may finish while the poll runs); a waiting one whose count changed starts its
        settle time again."""
        now = time.time()
        self._run(
            "INSERT INTO series (series, study, state, instances, changed_at, updated_at) "
            "SELECT ?, ?, 'seen', ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM series WHERE derived = ?) "
            "ON CONFLICT (series) DO UPDATE SET "
            "instances = excluded.instances, changed_at = excluded.changed_at, updated_at = excluded.updated_at "
            f"WHERE state IN {_WAITING} AND instances != excluded.instances",
            series,
            study,
            instances,
            now,
            now,
            series,
        )

    def is_derived(self, series: str) -> bool:
        """Whether `series` is a derived series this journal stored."""
        return self._run("SELECT 1 FROM series WHERE derived = ?", series).fetchone() is not None

    def is_final(self, series: str) -> bool:
        """Whether the series is done with (stored, skipped or parked)."""
        row = self._run("SELECT state FROM series WHERE series = ?", series).fetchone()
        return row is not None and row[0] in ("stored", "skipped", "parked")

    def ready(self, settle_s: float) -> bool:
        """Whether a waiting series has settled and may be claimed."""
        now = time.time()
        return (
            self._run(
                f"SELECT 1 FROM series WHERE state IN {_WAITING} AND changed_at <= ? AND retry_at <= ? LIMIT 1",
                now - settle_s,
                now,
            ).fetchone()
            is not None
        )

    def claim(self, settle_s: float, model: str) -> Entry | None:
        """The waiting series that settled longest ago, now `in_progress` with `model`, or with
        the model it was interrupted under (its derived series may be half-stored, and another
        model's would be a second series); None if none is ready."""
        now = time.time()
        with self._lock:
            row = self._db.execute(
                "SELECT study, series, instances, attempts, CASE WHEN state = 'seen' AND model != '' "
                "THEN model ELSE ? END FROM series "
                f"WHERE state IN {_WAITING} AND changed_at <= ? AND retry_at <= ? ORDER BY changed_at LIMIT 1",
                (model, now - settle_s, now),
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE series SET state = 'in_progress', model = ?, updated_at = ? WHERE series = ?",
                (row[4], now, row[1]),
            )
        return Entry(*row)

    def stored(self, series: str, derived: str, seconds: float) -> None:
        """The series is stored as `derived`; if a poll journalled that derived series while it
        was half-stored, it is skipped now."""
        self._finish(series, "stored", derived=derived, seconds=seconds, reason="")
        self._run(
            "UPDATE series SET state = 'skipped', reason = 'derived by this service', updated_at = ? "
            f"WHERE series = ? AND state IN {_WAITING}",
            time.time(),
            derived,
        )

    def skipped(self, series: str, reason: str) -> None:
        self._finish(series, "skipped", reason=reason)

    def failed(self, series: str, reason: str, backoff_s: float) -> str:
        """Count a failure: `failed`, retried after `backoff_s` times 2 to the failures before it,
        or `parked` at MAX_ATTEMPTS. The new state."""
        now = time.time()
        with self._lock:
            (attempts,) = self._db.execute("SELECT attempts + 1 FROM series WHERE series = ?", (series,)).fetchone()
            state = "parked" if attempts >= MAX_ATTEMPTS else "failed"
            self._db.execute(
                "UPDATE series SET state = ?, attempts = ?, reason = ?, retry_at = ?, updated_at = ? WHERE series = ?",
                (state, attempts, reason, now + backoff_s * 2 ** (attempts - 1), now, series),
            )
        return state

    def requeue(self, series: str, reason: str, after_s: float) -> None:
        """Back to `seen` without a failure counted (the PACS was away, or the series changed
        while it was denoised), tried again after `after_s`."""
        now = time.time()
        self._run(
            "UPDATE series SET state = 'seen', reason = ?, retry_at = ?, updated_at = ? WHERE series = ?",
            reason,
            now + after_s,
            now,
            series,
        )

    def release_in_progress(self, reason: str) -> int:
        """Every `in_progress` series back to `seen` (its worker is gone); how many."""
        return self._run(
            "UPDATE series SET state = 'seen', reason = ?, updated_at = ? WHERE state = 'in_progress'",
            reason,
            time.time(),
        ).rowcount

    def counts(self) -> dict[str, int]:
        """How many series are in each state (every state named, zeros included)."""
        found = dict(self._run("SELECT state, COUNT(*) FROM series GROUP BY state").fetchall())
        return {state: int(found.get(state, 0)) for state in STATES}

    def _finish(self, series: str, state: str, **columns: object) -> None:
        names = ", ".join(f"{name} = ?" for name in columns)
        self._run(
            f"UPDATE series SET state = ?, {names}, updated_at = ? WHERE series = ?",
            state,
            *columns.values(),
            time.time(),
            series,
        )
