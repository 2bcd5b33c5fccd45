"""`ctdenoise lineage`: where a model came from, and which models a data set produced.

Backward: from a model (the latest pushed one, or any artifact URI) ML Metadata's upstream
lineage graph, arranged as a tree from the execution that produced each artifact on to that
execution's inputs, through Pusher, Evaluator, Trainer, HU gate, ExampleValidator and
StatisticsGen, down to the ingestion and the DICOM data root it read. Forward: from a data
root its downstream lineage graph, to every model trained on data ingested from under it,
and whether each was pushed.

Only ML Metadata queries are used (plus reading metric files the artifacts point to), so
the same code runs on a local SQLite store and on Kubeflow's MySQL or gRPC store.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from ctdenoise.metadata.queries import (
    INPUT_EVENTS,
    OUTPUT_EVENTS,
    artifacts_by_key,
    artifacts_of_type,
    newest_push,
    property_value,
    value_of,
)
from ctdenoise.storage import files

_NOISE = {
    "tfx_version",
    "is_external",
    "stats_dashboard_link",
    "sample_rate_by_split",
    "payload_format",
    "file_format",
    "current_model_id",
    "state",
    "name",
    "producer_component",
}
"""Properties that say nothing about the data or the model."""
_MAX_PROPERTY_CHARS = 200
"""Execution properties longer than this (serialized configs) are left out of the tree."""
_Query = metadata_store_pb2.LineageSubgraphQueryOptions
_MAX_HOPS = 100
"""Hops one lineage query may take: ML Metadata's own cap, far beyond this pipeline's depth
(about 16 from the DICOM ingestion to a push)."""
_MAX_STARTS = 100
"""Starting nodes one lineage query may have, as ML Metadata documents it."""
_UPSTREAM_FIELDS = ("artifacts", "artifact_types", "executions", "events", "contexts", "context_types", "associations")
"""What the provenance tree reads of the upstream graph: the node contexts name the components."""
_NODES = ("artifacts", "artifact_types")
_WRITTEN = ("artifacts", "artifact_types", "events")


class LineageError(ValueError):
    """No such model or data root in the store; the message says what was looked for."""


def model_lineage(store, model: str = "latest", pipeline_name: str | None = None) -> dict[str, Any]:
    """The provenance tree of a model: `latest` (newest pushed model, else newest Model, of
    `pipeline_name` when given) or a URI (a Model or PushedModel artifact, or the folder
    Pusher copied a model to).

    Two lineage queries: the model's upstream graph, then one hop downstream of the
    executions that produced its artifacts, for what else they wrote (the upstream graph
    holds only the outputs it came through, e.g. the Evaluator's blessing but not its
    evaluation)."""
    start = _find_model(store, model, pipeline_name)
    upstream = _subgraph(store, [start.id], _Query.UPSTREAM, _UPSTREAM_FIELDS)
    producers = _producers(upstream)
    written = _subgraph(
        store, set(producers.values()), _Query.DOWNSTREAM, _WRITTEN, hops=1, starting="starting_executions"
    )
    return _Walker(upstream, written, producers).artifact_tree(start)


def dataset_models(store, data_root: str) -> list[dict[str, Any]]:
    """Every Model trained on examples ingested from under `data_root`, newest first, with
    its evaluation verdict and push destinations (all of its downstream graph)."""
    examples = _examples_under(store, files.absolute(data_root).rstrip("/"))
    downstream = _subgraph(store, [a.id for a in examples], _Query.DOWNSTREAM, _NODES)
    types = _type_names(downstream)
    models = {a.id: a for a in downstream.artifacts if types.get(a.type_id) == "Model"}
    result = []
    for model in sorted(models.values(), key=lambda a: (a.create_time_since_epoch, a.id), reverse=True):
        after = _by_type(_subgraph(store, [model.id], _Query.DOWNSTREAM, _NODES))
        pushes = [a for a in after.get("PushedModel", []) if property_value(a, "pushed") == 1]
        result.append(
            {
                **_describe(model, types),
                "blessed": any(property_value(b, "blessed") == 1 for b in after.get("ModelBlessing", [])),
                "pushed_to": sorted({property_value(p, "pushed_destination") for p in pushes}),
            }
        )
    return result


def _examples_under(store, root: str) -> list[metadata_store_pb2.Artifact]:
    """The Examples ingested from `root` or a folder under it. Selected here, not by the
    lineage query's filter_query: its only prefix match is LIKE, where the `_` and `%` that
    folder names hold are wildcards, with no way to escape them."""
    examples = [
        a
        for a in store.get_artifacts_by_type("Examples")
        if _under(a.custom_properties["data_root"].string_value if "data_root" in a.custom_properties else "", root)
    ]
    if not examples:
        raise LineageError(f"no ingested data from under {root} in this ML Metadata store")
    return examples


def _subgraph(
    store,
    ids: Iterable[int],
    direction: int,
    fields: Sequence[str],
    hops: int = _MAX_HOPS,
    starting: str = "starting_artifacts",
) -> metadata_store_pb2.LineageGraph:
    """The lineage graph `hops` away from the given artifacts (or executions) in `direction`,
    queried in batches of _MAX_STARTS starting nodes and merged (a node two batches reach
    appears twice)."""
    ordered = sorted(set(ids))
    graph = metadata_store_pb2.LineageGraph()
    for first in range(0, len(ordered), _MAX_STARTS):
        query = _Query(max_num_hops=hops, direction=direction)
        getattr(query, starting).filter_query = f"id IN ({', '.join(map(str, ordered[first : first + _MAX_STARTS]))})"
        graph.MergeFrom(store.get_lineage_subgraph(query, list(fields)))
    return graph


def _producers(graph: metadata_store_pb2.LineageGraph) -> dict[int, int]:
    """Artifact id → the execution that first wrote it (later cached executions only reused it)."""
    writes = sorted(
        (e for e in graph.events if e.type in OUTPUT_EVENTS),
        key=lambda e: (e.milliseconds_since_epoch, e.execution_id),
        reverse=True,
    )
    return {e.artifact_id: e.execution_id for e in writes}  # the first write comes last and stays


def _type_names(*graphs: metadata_store_pb2.LineageGraph) -> dict[int, str]:
    return {t.id: t.name for graph in graphs for t in graph.artifact_types}


def _by_type(graph: metadata_store_pb2.LineageGraph) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Type name → the graph's artifacts of that type."""
    types, grouped = _type_names(graph), dict[str, list[metadata_store_pb2.Artifact]]()
    for artifact in {a.id: a for a in graph.artifacts}.values():
        grouped.setdefault(types.get(artifact.type_id, artifact.type), []).append(artifact)
    return grouped


def _node_names(graph: metadata_store_pb2.LineageGraph) -> dict[int, str]:
    """Execution id → pipeline node id (e.g. 'Trainer'), from the graph's 'node' contexts."""
    node_types = {t.id for t in graph.context_types if t.name == "node"}
    nodes = {c.id: c.name.split(".", 1)[-1] for c in graph.contexts if c.type_id in node_types}
    return {a.execution_id: nodes[a.context_id] for a in graph.associations if a.context_id in nodes}


class _Walker:
    """Depth-first walk of a model's upstream graph from an artifact to its producers; each
    execution appears once."""

    def __init__(
        self,
        upstream: metadata_store_pb2.LineageGraph,
        written: metadata_store_pb2.LineageGraph,
        producers: dict[int, int],
    ):
        self.seen: set[int] = set()
        self.producers = producers
        self.artifacts = {a.id: a for graph in (upstream, written) for a in graph.artifacts}
        self.executions = {e.id: e for e in upstream.executions}
        self.type_names = _type_names(upstream, written)
        self.node_names = _node_names(upstream)
        self.inputs = _events_by_execution(upstream, INPUT_EVENTS)
        self.outputs = _events_by_execution(written, OUTPUT_EVENTS)

    def artifact_tree(self, artifact: metadata_store_pb2.Artifact) -> dict[str, Any]:
        tree = _describe(artifact, self.type_names)
        producer = self.producers.get(artifact.id)
        if producer is not None:
            tree["produced_by"] = self._execution_tree(self.executions[producer], artifact.id)
        return tree

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
            key: [_describe(a, self.type_names) for a in artifacts if a.id != via]
            for key, artifacts in artifacts_by_key(self.outputs.get(execution.id, []), self.artifacts).items()
            if any(a.id != via for a in artifacts)
        }
        node["inputs"] = {
            key: [self.artifact_tree(a) for a in artifacts]
            for key, artifacts in artifacts_by_key(self.inputs.get(execution.id, []), self.artifacts).items()
        }
        return node


def _events_by_execution(graph: metadata_store_pb2.LineageGraph, kinds) -> dict[int, list[metadata_store_pb2.Event]]:
    """Execution id → its events of the given kinds in the graph, in the store's order."""
    grouped: dict[int, list] = {}
    for event in graph.events:
        if event.type in kinds:
            grouped.setdefault(event.execution_id, []).append(event)
    return grouped


def _describe(artifact: metadata_store_pb2.Artifact, type_names: dict[int, str]) -> dict[str, Any]:
    """Type, URI and the properties that matter of one artifact."""
    kind = type_names.get(artifact.type_id, artifact.type)
    described = {"id": artifact.id, "type": kind, "uri": artifact.uri, "properties": _properties(artifact)}
    if kind == "ModelEvaluation":
        described["metrics"] = _evaluation_metrics(artifact.uri)
    return described


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
                lines.append(
                    f"{indent}     also wrote {output_key}: {artifact['type']} {artifact['id']}  "
                    f"{artifact['uri']}{_inline(artifact['properties'])}"
                )
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


def _properties(item, short: bool = False) -> dict[str, Any]:
    """The item's properties by name, sorted: protobuf maps keep no order, and a store's
    answer may list them differently each time."""
    values = {}
    for name, value in sorted(list(item.properties.items()) + list(item.custom_properties.items())):
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
    from ctdenoise.components.evaluation.results import read_evaluation

    try:
        overall = read_evaluation(uri)["overall"]
    except Exception:  # an evaluation that failed half-way leaves no metrics file
        return {}
    return {role: overall[role] for role in ("ldct", "candidate") if role in overall}


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
