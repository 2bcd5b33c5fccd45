"""The local ML Metadata store as other processes and accidents leave it: locked by a real
SQLite writer in another process, a zero-byte file, a SQLite database of something else.
Reading it never writes, and a lock is reported as busy, not as damage."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from ctdenoise.metadata import names
from ctdenoise.metadata.queries import BUSY_WAIT_S, MetadataError, open_store
from ctdenoise.storage.lock import Busy
from tests.holder import held
from tests.pipeline_helpers import ctdenoise


def _new_store(root: Path) -> Path:
    """A real, healthy ML Metadata store with one context type in it."""
    root.mkdir(parents=True, exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(names.metadata_path(root))
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    metadata_store.MetadataStore(config).put_context_type(metadata_store_pb2.ContextType(name="pipeline_run"))
    return names.metadata_path(root)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Another process holding `BEGIN EXCLUSIVE` on the database until the test lets go."""
    with held(
        f"""
        import sqlite3, sys
        connection = sqlite3.connect({str(path)!r}, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        sys.stdin.read()
    """,
        "locked",
    ):
        yield


def test_a_locked_store_is_busy_within_a_bounded_wait_and_stays_healthy(tmp_path):
    path = _new_store(tmp_path)
    with _locked(path):
        start = time.monotonic()
        with pytest.raises(
            Busy,
            match=rf"^{path} is busy: another process has held it locked for more than "
            rf"{BUSY_WAIT_S:g} s \(a lock, not damage: keep the file\)",
        ):
            open_store(tmp_path)
        assert time.monotonic() - start >= BUSY_WAIT_S  # no upper bound: the message says whose wait ended
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [t.name for t in open_store(tmp_path).get_context_types()] == ["pipeline_run"]


@pytest.mark.parametrize("command", [["run", "--until", "ingest"], ["lineage"]])
def test_commands_on_a_locked_store_say_busy_in_one_line(tmp_path, command):
    path = _new_store(tmp_path / "root")
    (tmp_path / "data").mkdir()
    data = ["--data", str(tmp_path / "data")] if command[0] == "run" else []
    with _locked(path):
        result = ctdenoise(command[0], *data, "--root", str(tmp_path / "root"), *command[1:])
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ctdenoise: error: {path} is busy: ") and "damaged" not in line


def test_lineage_refuses_an_empty_store_and_leaves_it_empty(tmp_path):
    names.metadata_path(tmp_path).touch()
    result = ctdenoise("lineage", "--root", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ctdenoise: error: {names.metadata_path(tmp_path)}: empty file, not an ML Metadata store: "
        "run `ctdenoise run` first or use another --root"
    ]
    assert names.metadata_path(tmp_path).stat().st_size == 0


def test_reading_a_database_of_something_else_does_not_write_into_it(tmp_path):
    path = names.metadata_path(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.commit()
    before = path.read_bytes()
    with pytest.raises(MetadataError, match="not a readable ML Metadata store"):
        open_store(tmp_path)
    assert path.read_bytes() == before
