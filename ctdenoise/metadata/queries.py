"""Small ML Metadata queries shared by the run summary and lineage."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from ctdenoise.metadata import names
from ctdenoise.metadata.store import PASSWORD_VARIABLE, StoreAddress, host_port
from ctdenoise.storage.lock import Busy

OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
BUSY_WAIT_S = 5.0
"""How long a read waits for another process's lock on the store before saying it is busy
(ML Metadata itself retries for 30 to 100 s and then reports an error like a damaged file)."""


def has_store(run_root: Path) -> bool:
    """Whether the run root holds a store with content: a zero-byte file (what sqlite3 leaves
    on connecting) records no runs, so `run` treats it like a missing one."""
    path = names.metadata_path(run_root)
    return path.is_file() and path.stat().st_size > 0


def open_store(run_root: Path) -> metadata_store.MetadataStore:
    """The SQLite store of a local run root, opened read-only, so that reading never writes
    (ML Metadata read-write creates its schema in any file it is given).

    Raises FileNotFoundError for a missing or empty file, Busy when another process holds
    the database locked for more than BUSY_WAIT_S, and MetadataError for anything else
    ML Metadata cannot read.
    """
    path = names.metadata_path(run_root)
    if not path.exists():
        raise FileNotFoundError(f"no ML Metadata store at {path}: run `ctdenoise run` first")
    if not has_store(run_root):
        raise FileNotFoundError(
            f"{path}: empty file, not an ML Metadata store: run `ctdenoise run` first or use another --root"
        )
    _wait_until_readable(path)
    try:
        store = metadata_store.MetadataStore(StoreAddress().connection_config(run_root, read_only=True))
        store.get_context_types()  # a damaged file fails here rather than mid-query
    except Exception as exc:  # MLMD raises its own error types, quoting the SQL it ran
        raise MetadataError(
            f"{path}: not a readable ML Metadata store ({type(exc).__name__}); "
            "it may be damaged: restore it or use a new --root"
        ) from None
    return store


def _wait_until_readable(path: Path) -> None:
    """Take and drop a shared lock on the database, waiting at most BUSY_WAIT_S: a writer's
    exclusive lock is a busy store, not a damaged one. Other SQLite errors are left to ML
    Metadata's own check."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_WAIT_S)
        ) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise Busy(
                f"{path} is busy: another process has held it locked for more than {BUSY_WAIT_S:g} s "
                "(a lock, not damage: keep the file); try again when that process has finished"
            ) from None
    except sqlite3.Error:
        pass


class MetadataError(RuntimeError):
    """The ML Metadata store cannot be read; the message says which and why in one line."""


def connect(
    run_root: Path, address: StoreAddress = StoreAddress(), grpc: str | None = None, read_only: bool = False
) -> metadata_store.MetadataStore:
    """The ML Metadata store to query: a Kubeflow-style gRPC metadata service (HOST:PORT), the
    shared MySQL database `address` names (never created when `read_only`), or by default the
    local run root's SQLite file (always read-only). Each failure to reach a server is one
    ConnectionError naming it, never the password."""
    if grpc:
        host, port = host_port(grpc, "--mlmd-grpc")
        return _checked(metadata_store_pb2.MetadataStoreClientConfig(host=host, port=port), grpc)
    if not address.shared:
        return open_store(run_root)
    host, port, _ = address.host_port_database()
    where = address.describe(run_root)
    try:
        socket.create_connection((host, port), timeout=BUSY_WAIT_S).close()
    except OSError as exc:
        raise ConnectionError(
            f"ML Metadata at {where}: nothing answers at {host}:{port} ({exc.strerror or type(exc).__name__})"
        ) from None
    return _checked(address.connection_config(run_root, read_only), where)


SCHEMA_RACE = "concurrent connection to the empty database"
"""ML Metadata's error when another client is creating the schema in the same new database
(it asks to retry); every other error is final."""
SCHEMA_RACE_WAIT_S = 120.0
"""How long opening a store waits for another client's schema creation: a bound on a hang,
far above the second or so it takes."""
REFUSED = (
    f"the server refused the connection: check the user (--mlmd-user) and the password "
    f"(${PASSWORD_VARIABLE}), and that the database exists or the user may create it"
)
"""What ML Metadata's MySQL driver means by 'mysql_real_connect failed' (it gives no reason)."""


def _checked(config, where: str) -> metadata_store.MetadataStore:
    """Open the store and make one query, so that a server that refuses fails here, naming
    `where`, rather than mid-run; while another client creates the schema, wait for it."""
    deadline = time.monotonic() + SCHEMA_RACE_WAIT_S
    while True:
        try:
            return _open(config)
        except Exception as exc:
            text = " ".join(str(exc).split())
            if SCHEMA_RACE in text and time.monotonic() < deadline:
                time.sleep(0.2)  # how often to look, not how long to wait
                continue
            raise ConnectionError(f"ML Metadata at {where}: {_reason(text)}") from None


def _reason(text: str) -> str:
    if "mysql_real_connect failed" in text:
        return REFUSED
    if "Unknown database" in text:
        return "no such database on the server (reading never creates one): check the name in --mlmd-mysql"
    return text[:200]


def _open(config) -> metadata_store.MetadataStore:
    store = metadata_store.MetadataStore(config)
    store.get_artifact_types()
    return store


def existing_store(
    run_root: Path, address: StoreAddress = StoreAddress(), read_only: bool = False
) -> metadata_store.MetadataStore | None:
    """The run root's store when there is one to read (a shared database always is), else None."""
    if not address.shared and not has_store(run_root):
        return None
    return connect(run_root, address, read_only=read_only)


def pipeline_context(store, pipeline_name: str) -> metadata_store_pb2.Context | None:
    return store.get_context_by_type_and_name("pipeline", pipeline_name)


def run_ids(store, pipeline_name: str = names.PIPELINE_NAME) -> set[int]:
    """The runs of one pipeline the store knows (their pipeline_run context ids)."""
    pipeline = pipeline_context(store, pipeline_name)
    if pipeline is None:
        return set()
    return {c.id for c in store.get_children_contexts_by_context(pipeline.id) if c.type == "pipeline_run"}


def latest_run_executions(store, pipeline_name: str = names.PIPELINE_NAME) -> dict[str, metadata_store_pb2.Execution]:
    """Node id → its execution in the pipeline's newest run (cached ones included)."""
    runs = store.get_contexts_by_id(list(run_ids(store, pipeline_name)))
    if not runs:
        return {}
    newest = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    return run_executions(store, newest.id, pipeline_name)


def run_executions(
    store, run_id: int, pipeline_name: str = names.PIPELINE_NAME
) -> dict[str, metadata_store_pb2.Execution]:
    """Node id → its execution in the pipeline run `run_id` (cached ones included)."""
    in_run = {e.id: e for e in store.get_executions_by_context(run_id)}
    prefix = f"{pipeline_name}."
    found = {}
    for node in store.get_contexts_by_type("node"):
        if node.name.startswith(prefix):
            for execution in store.get_executions_by_context(node.id):
                if execution.id in in_run:
                    found[node.name[len(prefix) :]] = execution
    return found


def succeeded(execution: metadata_store_pb2.Execution | None) -> bool:
    return execution is not None and execution.last_known_state in (
        metadata_store_pb2.Execution.COMPLETE,
        metadata_store_pb2.Execution.CACHED,
    )


INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def output_artifacts(store, execution: metadata_store_pb2.Execution) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Output key → artifacts an execution produced (or reused, when cached)."""
    events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in OUTPUT_EVENTS]
    return artifacts_by_key(events, {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])})


def artifacts_by_key(
    events: Iterable[metadata_store_pb2.Event], artifacts: dict[int, metadata_store_pb2.Artifact]
) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Input or output key (the first step of each event's path) → the artifacts the events
    name, in the events' order; `artifacts` maps their ids to the artifacts."""
    grouped: dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        grouped.setdefault(key, []).append(artifacts[event.artifact_id])
    return grouped


def newest_push(store, pipeline_name: str | None = None) -> metadata_store_pb2.Artifact | None:
    """The newest PushedModel that was actually pushed (its `pushed_destination` is the
    version folder), of one pipeline or of the whole store, or None."""
    pushed = [a for a in artifacts_of_type(store, "PushedModel", pipeline_name) if property_value(a, "pushed") == 1]
    return max(pushed, key=lambda a: (a.create_time_since_epoch, a.id)) if pushed else None


def has_blessing(store, pipeline_name: str) -> bool:
    """Whether the Evaluator of `pipeline_name` has blessed a model, so that its latest
    blessed model resolves."""
    return any(property_value(a, "blessed") == 1 for a in artifacts_of_type(store, "ModelBlessing", pipeline_name))


def artifacts_of_type(store, type_name: str, pipeline_name: str | None = None) -> list[metadata_store_pb2.Artifact]:
    """Artifacts of a type, only those of one pipeline when it is named."""
    artifacts = store.get_artifacts_by_type(type_name)
    if pipeline_name is None:
        return artifacts
    pipeline = pipeline_context(store, pipeline_name)
    ours = {a.id for a in store.get_artifacts_by_context(pipeline.id)} if pipeline else set()
    return [a for a in artifacts if a.id in ours]


def value_of(value: metadata_store_pb2.Value) -> Any:
    """A property value as plain Python (JSON values as dicts and lists)."""
    kind = value.WhichOneof("value")
    if kind == "struct_value":
        return _whole_numbers(json_format.MessageToDict(value.struct_value))
    return getattr(value, kind) if kind else None


def property_value(item, name: str) -> Any:
    """A custom property of an artifact or execution as plain Python, None when absent."""
    value = item.custom_properties.get(name)
    return value_of(value) if value is not None else None


def _whole_numbers(value: Any) -> Any:
    """Struct values hold every number as a double; give integers back their type (ngf 16, not 16.0)."""
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
