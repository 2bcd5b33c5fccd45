"""Progress lines of a running pipeline, read from ML Metadata's execution states.

While the pipeline runs in this process, a thread reads the store the runner writes and prints
one line as each node's execution appears (`[run] Trainer: running`) and one as its state becomes
final (`done`, `cached`, `failed`, `canceled`). ML Metadata's states are TFX's record of the run,
so the lines do not depend on the wording of TFX's logs (docs/design.md, "Run summary (`--summary FILE`)").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ml_metadata.proto import metadata_store_pb2

from ctdenoise.metadata.queries import existing_store, run_ids
from ctdenoise.metadata.store import StoreAddress

POLL_S = 0.5
"""How often the store is read: how late a line may come, not a wait for anything."""
_FINAL = {
    metadata_store_pb2.Execution.COMPLETE: "done",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


class RunProgress:
    """Prints the progress of the run that starts in `run_root`'s store after `known` (the run
    ids before it), from entering the context until leaving it; leaving reads the store once
    more, so each finished node's line is out before the run summary."""

    def __init__(
        self,
        run_root: Path,
        address: StoreAddress,
        known: set[int],
        say: Callable[[str], None] = lambda line: print(line, flush=True),
    ):
        self._root, self._address, self._known, self._say = run_root, address, known, say
        self._store = None
        self._run_id: int | None = None
        self._nodes: dict[int, str] = {}
        """Execution id → node id, for the executions of our run seen so far."""
        self._told: dict[int, str] = {}
        """Execution id → the last state printed for it."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ctdenoise-progress", daemon=True)

    def __enter__(self) -> RunProgress:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            self._poll()

    def _poll(self) -> None:
        """Print what changed since the last look. A store that cannot be read now (not yet
        created, locked by the writer for a moment, a server that blinked) is read next time:
        progress lines never stop the run."""
        try:
            for execution_id, node, state in self._states():
                if self._told.get(execution_id) != state:
                    self._told[execution_id] = state
                    self._say(f"[run] {node}: {state}")
        except Exception:  # any store error: the next poll tries again
            self._store = None

    def _states(self) -> list[tuple[int, str, str]]:
        """(execution id, node id, state word) of our run's executions, in the order they began;
        an unfinished execution is 'running', and a finished one is reported as running first."""
        if self._store is None:
            self._store = existing_store(self._root, self._address, read_only=True)
            if self._store is None:
                return []
        store = self._store
        if self._run_id is None:
            ours = run_ids(store, self._address.pipeline_name(self._root)) - self._known
            if not ours:
                return []
            self._run_id = min(ours)
        states = []
        for execution in sorted(store.get_executions_by_context(self._run_id), key=lambda e: e.id):
            node = self._nodes.get(execution.id) or self._node_of(store, execution.id)
            if node is None:
                continue
            self._nodes[execution.id] = node
            final = _FINAL.get(execution.last_known_state)
            if self._told.get(execution.id) is None:
                states.append((execution.id, node, "running"))
            if final:
                states.append((execution.id, node, final))
        return states

    def _node_of(self, store, execution_id: int) -> str | None:
        """The node id of an execution: the name of its `node` context, less the pipeline's prefix."""
        prefix = f"{self._address.pipeline_name(self._root)}."
        for context in store.get_contexts_by_execution(execution_id):
            if context.type == "node" and context.name.startswith(prefix):
                return context.name[len(prefix) :]
        return None
