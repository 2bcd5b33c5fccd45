"""Executions a killed run left behind: marked, and their partial outputs removed.

A run killed with kill -9 leaves its current execution RUNNING in ML Metadata for ever,
and that execution's output folders half written (an empty model folder, Beam's
beam-temp-* files). The next run on the same root holds the root's lock, so no execution
of it can still be running: each one found is marked CANCELED with the reason, and its
outputs under the pipeline root are removed, except what a re-run resumes from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from ctdenoise.metadata import names
from ctdenoise.metadata.store import StoreAddress
from ctdenoise.storage import files

RESUMABLE_OUTPUTS = {(names.TRAINER_ID, "model_run")}
"""(node, output key) folders kept: the Trainer's checkpoints, from which a re-run resumes."""
_UNFINISHED = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)


def recover(
    run_root: Path, say: Callable[[str], None], pipeline_root: str | None = None, address: StoreAddress = StoreAddress()
) -> list[int]:
    """Mark every unfinished execution of `run_root`'s pipeline abandoned and remove its
    partial outputs under `pipeline_root` (default RUN_ROOT/pipeline; it may be a bucket);
    return their ids. In a shared store only this root's pipeline is touched: another
    root's run may be running. Call only while holding the root's lock."""
    if not address.shared and not names.metadata_path(run_root).exists():
        return []
    store = metadata_store.MetadataStore(address.connection_config(run_root))
    name = address.pipeline_name(run_root)
    pipeline = store.get_context_by_type_and_name("pipeline", name)
    if pipeline is None:
        return []
    nodes = _node_names(store, name)
    abandoned = [e for e in store.get_executions_by_context(pipeline.id) if e.last_known_state in _UNFINISHED]
    for execution in abandoned:
        node = nodes.get(execution.id, execution.type)
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        execution.custom_properties["abandoned"].string_value = "its run was killed before it finished"
        store.put_executions([execution])
        removed = _remove_outputs(files.join(pipeline_root or str(names.pipeline_root(run_root)), node), execution.id)
        say(
            f"[run] {node}: execution {execution.id} was left unfinished by a killed run; marked canceled"
            + (f", {removed} partial output folder(s) removed" if removed else "")
        )
    return [e.id for e in abandoned]


def _remove_outputs(node_root: str, execution_id: int) -> int:
    """Remove `node_root/<output key>/<execution id>` folders, but the resumable ones."""
    if not files.isdir(node_root):
        return 0
    node = files.split(node_root)[1]
    removed = 0
    for key in files.listdir(node_root):
        target = files.join(files.join(node_root, key), str(execution_id))
        if (node, key) not in RESUMABLE_OUTPUTS and files.isdir(target):
            files.remove_tree(target)
            removed += 1
    return removed


def _node_names(store: metadata_store.MetadataStore, pipeline_name: str) -> dict[int, str]:
    """Execution id → node id of the pipeline's executions, from its 'node' contexts."""
    names, prefix = {}, f"{pipeline_name}."
    for context in store.get_contexts_by_type("node"):
        if context.name.startswith(prefix):
            for execution in store.get_executions_by_context(context.id):
                names[execution.id] = context.name[len(prefix) :]
    return names
