"""`ctdenoise lineage`: where a model came from, and which models a data set produced.

Backward: from a model (the latest pushed one, or any artifact URI) walk ML Metadata's
events to the execution that produced each artifact and on to that execution's inputs,
through Pusher, Evaluator, Trainer, HU gate, ExampleValidator and StatisticsGen, down to
the ingestion and the DICOM data root it read. Forward: from a data root to every model
trained on data ingested from under it, and whether each was pushed.

Only ML Metadata queries are used (plus reading metric files the artifacts point to), so
the same code runs on a local SQLite store and on Kubeflow's MySQL or gRPC store.
"""
from __future__ import annotations

import datetime
from typing import Any, Iterable

from ml_metadata.proto import metadata_store_pb2

from app.metadata import (INPUT_EVENTS, OUTPUT_EVENTS, artifacts_by_key, artifacts_of_type, newest_push, property_value,
                          value_of)
from storage import files

_NOISE = {"tfx_version", "is_external", "stats_dashboard_link", "sample_rate_by_split", "payload_format",
          "file_format", "current_model_id", "state", "name", "producer_component"}
"""Properties that say nothing about the data or the model."""
_MAX_PROPERTY_CHARS = 200
"""Execution properties longer than this (serialized configs) are left out of the tree."""


class LineageError(ValueError):
    """No such model or data root in the store; the message says what was looked for."""


def model_lineage(store, model: str = "latest", pipeline_name: str | None = None) -> dict[str, Any]:
    """The provenance tree of a model: `latest` (newest pushed model, else newest Model, of
    `pipeline_name` when given) or a URI (a Model or PushedModel artifact, or the folder
    Pusher copied a model to)."""
    start = _find_model(store, model, pipeline_name)
    return _Walker(store).artifact_tree(start)


def dataset_models(store, data_root: str) -> list[dict[str, Any]]:
    """Every Model trained on examples ingested from under `data_root`, newest first, with
    its evaluation verdict and push destinations."""
    root = files.absolute(data_root).rstrip("/")
    walker = _Walker(store)
    examples = [
        a for a in store.get_artifacts_by_type("Examples")
        if _under(a.custom_properties["data_root"].string_value if "data_root" in a.custom_properties else "", root)
    ]
    if not examples:
        raise LineageError(f"no ingested data from under {root} in this ML Metadata store")
    models = _downstream(store, [a.id for a in examples], "Model")
    result = []
    for model in sorted(models, key=lambda a: (a.create_time_since_epoch, a.id), reverse=True):
        blessings = _downstream(store, [model.id], "ModelBlessing")
        pushes = [a for a in _downstream(store, [model.id], "PushedModel") if property_value(a, "pushed") == 1]
        result.append({
            **walker.describe(model),
            "blessed": any(property_value(b, "blessed") == 1 for b in blessings),
            "pushed_to": sorted({property_value(p, "pushed_destination") for p in pushes}),
        })
    return result


class _Walker:
    """Depth-first walk from an artifact to its producers; each execution appears once."""

    def __init__(self, store):
        self.store = store
        self.seen: set[int] = set()
        self.type_names = {t.id: t.name for t in store.get_artifact_types()}
        self.node_names = self._node_names()

    def artifact_tree(self, artifact: metadata_store_pb2.Artifact) -> dict[str, Any]:
        tree = self.describe(artifact)
        producer = self._producer(artifact.id)
        if producer is not None:
            tree["produced_by"] = self._execution_tree(producer, artifact.id)
        return tree

    def describe(self, artifact: metadata_store_pb2.Artifact) -> dict[str, Any]:
        """Type, URI and the properties that matter of one artifact."""
        kind = self.type_names.get(artifact.type_id, artifact.type)
        described = {"id": artifact.id, "type": kind, "uri": artifact.uri,
                     "properties": _properties(artifact)}
        if kind == "ModelEvaluation":
            described["metrics"] = _evaluation_metrics(artifact.uri)
        return described

    def _execution_tree(self, execution: metadata_store_pb2.Execution, via: int) -> dict[str, Any]:
        """The execution, its other outputs (described, e.g. the Evaluator's metrics beside
        its blessing) and, the first time it is met, its inputs walked further back."""
        node = {
            "id": execution.id,
            "component": self.node_names.get(execution.id, execution.type),
            "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
            "start": _time(execution.create_time_since_epoch),
            "end": _time(execution.last_update_time_since_epoch),
            "properties": _properties(execution, short=True),
        }
        if execution.id in self.seen:
            node["repeated"] = True  # its inputs are shown where it first appears
            return node
        self.seen.add(execution.id)
        node["other_outputs"] = {
            key: [self.describe(a) for a in artifacts if a.id != via]
            for key, artifacts in artifacts_by_key(self.store, execution.id, OUTPUT_EVENTS).items()
            if any(a.id != via for a in artifacts)
        }
        node["inputs"] = {
            key: [self.artifact_tree(a) for a in artifacts]
            for key, artifacts in artifacts_by_key(self.store, execution.id, INPUT_EVENTS).items()
        }
        return node

    def _producer(self, artifact_id: int) -> metadata_store_pb2.Execution | None:
        """The execution that first wrote the artifact (later cached executions only reused it)."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUT_EVENTS]
        if not events:
            return None
        first = min(events, key=lambda e: (e.milliseconds_since_epoch, e.execution_id))
        return self.store.get_executions_by_id([first.execution_id])[0]

    def _node_names(self) -> dict[int, str]:
        """Execution id → pipeline node id (e.g. 'Trainer'), from the 'node' contexts."""
        names = {}
        for context in self.store.get_contexts_by_type("node"):
            for execution in self.store.get_executions_by_context(context.id):
                names[execution.id] = context.name.split(".", 1)[-1]
        return names


def format_lineage(tree: dict[str, Any], brief: bool = False) -> list[str]:
    """The provenance tree as indented text; `brief` keeps one line per step."""
    lines: list[str] = []
    _format_artifact(tree, "", "", lines, brief)
    return lines


def format_dataset_models(models: list[dict[str, Any]], data_root: str) -> list[str]:
    lines = [f"models trained on data under {data_root}:"]
    for model in models:
        pushed = ", ".join(model["pushed_to"]) or "not pushed"
        lines.append(f"  Model {model['id']} {model['uri']}  blessed={'yes' if model['blessed'] else 'no'}  {pushed}")
    return lines


def _format_artifact(tree: dict[str, Any], key: str, indent: str, lines: list[str], brief: bool) -> None:
    label = f"{key}: " if key else ""
    details = "" if brief else _inline(tree["properties"])
    lines.append(f"{indent}{label}{tree['type']} {tree['id']}  {tree['uri']}{details}")
    if not brief and "metrics" in tree:
        lines.append(f"{indent}    metrics: {_inline(tree['metrics']).strip()}")
    execution = tree.get("produced_by")
    if execution is None:
        return
    state = execution["state"].lower()
    line = f"{indent}  <- {execution['component']} (execution {execution['id']}, {state}, {execution['start']})"
    if execution.get("repeated"):
        if not brief:
            lines.append(line + " [shown above]")
        return
    lines.append(line + ("" if brief else _inline(execution["properties"])))
    if not brief:
        for output_key, artifacts in execution["other_outputs"].items():
            for artifact in artifacts:
                lines.append(f"{indent}     also wrote {output_key}: {artifact['type']} {artifact['id']}  "
                             f"{artifact['uri']}{_inline(artifact['properties'])}")
                if "metrics" in artifact:
                    lines.append(f"{indent}         metrics: {_inline(artifact['metrics']).strip()}")
    for input_key, artifacts in execution["inputs"].items():
        for artifact in artifacts:
            if brief and artifact.get("produced_by", {}).get("repeated"):
                continue
            _format_artifact(artifact, input_key, indent + "     ", lines, brief)


def _inline(values: dict[str, Any]) -> str:
    parts = [f"{k}={_short(v)}" for k, v in values.items()]
    return ("  " + " ".join(parts)) if parts else ""


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in sorted(value.items())) + "}"
    return " ".join(str(value).split())


def _find_model(store, model: str, pipeline_name: str | None) -> metadata_store_pb2.Artifact:
    if model == "latest":
        pushed = newest_push(store, pipeline_name)
        if pushed is not None:
            return pushed
        models = artifacts_of_type(store, "Model", pipeline_name)
        if not models:
            raise LineageError("no model in this ML Metadata store: run `ctdenoise run --until train` first")
        return max(models, key=lambda a: (a.create_time_since_epoch, a.id))
    uri = model.rstrip("/")
    for artifact in store.get_artifacts():
        if artifact.uri.rstrip("/") == uri or property_value(artifact, "pushed_destination") == uri:
            return artifact
    for artifact in store.get_artifacts_by_type("Model"):  # the SavedModel folder inside a Model
        if uri.startswith(artifact.uri.rstrip("/") + "/"):
            return artifact
    raise LineageError(f"no artifact with URI {model} in this ML Metadata store")


def _downstream(store, artifact_ids: Iterable[int], type_name: str) -> list[metadata_store_pb2.Artifact]:
    """Artifacts of `type_name` produced, directly or through other steps, from the given artifacts."""
    frontier, seen_artifacts, seen_executions, found = list(artifact_ids), set(artifact_ids), set(), {}
    wanted = {t.id for t in store.get_artifact_types() if t.name == type_name}
    while frontier:
        consumers = {e.execution_id for e in store.get_events_by_artifact_ids(frontier) if e.type in INPUT_EVENTS}
        consumers -= seen_executions
        seen_executions |= consumers
        outputs = [e.artifact_id for e in store.get_events_by_execution_ids(list(consumers)) if e.type in OUTPUT_EVENTS]
        frontier = [a for a in set(outputs) if a not in seen_artifacts]
        seen_artifacts.update(frontier)
        for artifact in store.get_artifacts_by_id(frontier):
            if artifact.type_id in wanted:
                found[artifact.id] = artifact
    return list(found.values())


def _properties(item, short: bool = False) -> dict[str, Any]:
    values = {}
    for name, value in list(item.properties.items()) + list(item.custom_properties.items()):
        if name in _NOISE:
            continue
        plain = value_of(value)
        if short and len(str(plain)) > _MAX_PROPERTY_CHARS:
            continue
        values[name] = plain
    return values


def _under(path: str, root: str) -> bool:
    path = path.rstrip("/")
    return path == root or path.startswith(root + "/")


def _evaluation_metrics(uri: str) -> dict[str, Any]:
    """Overall metrics of a ModelEvaluation (the LDCT as it is and the candidate), if readable."""
    from components.evaluation.results import read_evaluation

    try:
        overall = read_evaluation(uri)["overall"]
    except Exception:  # an evaluation that failed half-way leaves no metrics file
        return {}
    return {role: overall[role] for role in ("ldct", "candidate") if role in overall}


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
