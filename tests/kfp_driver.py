"""Run a compiled KFP v2 pipeline spec (the IR `ctdenoise kubeflow compile` writes) on this
machine the way Kubeflow Pipelines' driver and launcher would, minus Kubernetes.

For each task of `root.dag`, in topological order of its dependencies (`dependentTasks`
plus the producers of its input artifacts, as KFP's compiler adds them):

- container tasks run `command + args` from `deploymentSpec`, with `{{$}}` replaced by the
  executor input KFP would build: parameter values from the spec's `runtimeValue`
  constants, input artifacts as their producers' recorded outputs (name, type, URI,
  metadata), output artifacts at `<pipeline root>/<pipeline>/<run>/<task>/<key>`, and a
  local `outputFile`; the `executor_output.json` the step writes is read back and merged
  into the recorded outputs (URI and metadata), as the launcher does;
- importer tasks (TFX's Importer) record one artifact at the URI the spec names, with its
  metadata, as KFP's importer does (without reimport: the same URI is the same artifact);
- resolver tasks (TFX's LatestBlessedModelResolver, which open-source KFP cannot run) are
  resolved from the recorded outputs of earlier runs by evaluating their
  `outputArtifactQueries` filters (schema title, state, metadata values, name);
- with caching enabled for a task, an earlier run's execution with the same cache key
  (component, command, arguments, parameters and input artifacts) is reused, as KFP does;
- independent tasks run concurrently, as KFP schedules them.

What stays different from a pod: `python` is this interpreter, and paths inside the image
(`/ctdenoise/...`) map to this checkout.
"""

from __future__ import annotations

import concurrent.futures
import copy
import graphlib
import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.limits import HANG_S


@dataclass
class Execution:
    task: str
    kind: str  # "container", "cached", "importer" or "resolver"
    outputs: dict[str, list[dict[str, Any]]]
    cache_key: str = ""
    seconds: float = 0.0


@dataclass
class Run:
    run_id: str
    executions: dict[str, Execution] = field(default_factory=dict)


class StepFailed(RuntimeError):
    pass


class Driver:
    def __init__(self, spec: dict[str, Any], workdir: Path, image_paths: dict[str, str], cwd: Path):
        self.spec = spec
        self.workdir = workdir
        self.image_paths = image_paths
        self.cwd = cwd
        self.pipeline_root = spec["defaultPipelineRoot"].rstrip("/")
        self.pipeline_name = spec["pipelineInfo"]["name"]
        self.tasks = spec["root"]["dag"]["tasks"]
        self.history: list[Run] = []

    def graph(self) -> dict[str, set[str]]:
        """Task → the tasks it waits for: `dependentTasks` and the producers of its inputs."""
        return {
            name: set(task.get("dependentTasks", []))
            | {
                ref["taskOutputArtifact"]["producerTask"]
                for ref in task.get("inputs", {}).get("artifacts", {}).values()
                if "taskOutputArtifact" in ref
            }
            for name, task in self.tasks.items()
        }

    def order(self) -> list[str]:
        """Tasks in topological order (ties by name)."""
        return list(graphlib.TopologicalSorter({k: sorted(v) for k, v in sorted(self.graph().items())}).static_order())

    def run(self, run_id: str, until: str | None = None, parallel: int = 2, log=print) -> Run:
        """One pipeline run: tasks start as soon as what they wait for is done, at most
        `parallel` at a time (KFP runs independent tasks concurrently). With `until`, only
        that task and what it needs run (a shortcut of this driver, not a KFP feature)."""
        graph = self.graph()
        wanted = set(graph) if until is None else _upstream(graph, until)
        sorter = graphlib.TopologicalSorter({name: graph[name] for name in wanted})
        sorter.prepare()
        run = Run(run_id)
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            running: dict[concurrent.futures.Future, str] = {}
            while sorter.is_active():
                for name in sorted(sorter.get_ready()):
                    running[pool.submit(self._timed, run, name, log)] = name
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    run.executions[name] = future.result()  # a failed step raises here
                    sorter.done(name)
        self.history.append(run)
        return run

    def _timed(self, run: Run, name: str, log) -> Execution:
        start = time.monotonic()
        execution = self._execute(run, name)
        execution.seconds = time.monotonic() - start
        log(f"[kfp] {run.run_id} {name}: {execution.kind} in {execution.seconds:.0f} s")
        return execution

    # -- one task ---------------------------------------------------------------------------

    def _execute(self, run: Run, name: str) -> Execution:
        task = self.tasks[name]
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        inputs = {
            key: copy.deepcopy(
                run.executions[ref["taskOutputArtifact"]["producerTask"]].outputs.get(
                    ref["taskOutputArtifact"]["outputArtifactKey"], []
                )
            )
            for key, ref in task.get("inputs", {}).get("artifacts", {}).items()
        }
        if "resolver" in executor:
            return Execution(name, "resolver", self._resolve(executor["resolver"], inputs))
        if "importer" in executor:
            return Execution(name, "importer", self._import(executor["importer"], component))
        parameters = {
            key: self._image_path(value["runtimeValue"]["constant"])
            for key, value in task.get("inputs", {}).get("parameters", {}).items()
        }
        container = executor["container"]
        cache_key = hashlib.sha256(
            json.dumps(
                [
                    task["componentRef"]["name"],
                    container["command"],
                    container["args"],
                    parameters,
                    {k: [a["name"] for a in v] for k, v in inputs.items()},
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()
        if task.get("cachingOptions", {}).get("enableCache"):
            for earlier in reversed(self.history):
                hit = earlier.executions.get(name)
                if hit is not None and hit.cache_key == cache_key and hit.kind != "resolver":
                    return Execution(name, "cached", copy.deepcopy(hit.outputs), cache_key)
        outputs = {
            key: [
                {
                    "name": f"{self.pipeline_name}/{run.run_id}/{name}/{key}",
                    "type": definition["artifactType"],
                    "uri": f"{self.pipeline_root}/{self.pipeline_name}/{run.run_id}/{name}/{key}",
                    "metadata": {},
                }
            ]
            for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
        }
        output_file = self.workdir / run.run_id / name / "executor_output.json"
        output_file.parent.mkdir(parents=True, exist_ok=True)
        executor_input = {
            "inputs": {
                "parameterValues": parameters,
                "artifacts": {key: {"artifacts": artifacts} for key, artifacts in inputs.items()},
            },
            "outputs": {
                "artifacts": {key: {"artifacts": artifacts} for key, artifacts in outputs.items()},
                "outputFile": str(output_file),
            },
        }
        command = [sys.executable if part == "python" else part for part in container["command"]]
        args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
        unresolved = [arg for arg in args if "{{$" in arg]
        if unresolved:
            raise StepFailed(f"{name}: placeholders this driver does not fill: {unresolved}")
        log_file = self.workdir / run.run_id / name / "log.txt"
        with open(log_file, "w") as log:
            result = subprocess.run(
                command + args, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, timeout=HANG_S
            )  # bounds a hang
        if result.returncode != 0:
            raise StepFailed(f"{name} exited with {result.returncode}:\n{log_file.read_text()[-4000:]}")
        produced = json.loads(output_file.read_text()).get("artifacts", {})
        for key, artifacts in outputs.items():  # the launcher's merge: URI and metadata from the executor
            for mine, theirs in zip(artifacts, produced.get(key, {}).get("artifacts", []), strict=False):
                mine["uri"] = theirs.get("uri") or mine["uri"]
                mine["metadata"].update(theirs.get("metadata", {}))
        return Execution(name, "container", outputs, cache_key)

    def _image_path(self, value: Any) -> Any:
        if isinstance(value, str):
            for inside, here in self.image_paths.items():
                if value.startswith(inside + "/"):
                    return here + value[len(inside) :]
        return value

    # -- importers and resolvers --------------------------------------------------------------

    def _import(self, importer: dict[str, Any], component: dict[str, Any]) -> dict[str, list[dict]]:
        """The importer's one output: an artifact at its `artifactUri`, named by that URI."""
        [(key, definition)] = component["outputDefinitions"]["artifacts"].items()
        uri = importer["artifactUri"]["constant"]
        artifact = {"name": f"{self.pipeline_name}/import/{uri}", "type": definition["artifactType"], "uri": uri}
        return {key: [{**artifact, "metadata": copy.deepcopy(importer.get("metadata", {}))}]}

    def _resolve(self, resolver: dict[str, Any], inputs: dict[str, list[dict]]) -> dict[str, list[dict]]:
        """Each output query: the newest artifact of earlier runs that matches its filter."""
        resolved = {}
        for key, query in resolver["outputArtifactQueries"].items():
            candidates = [
                a
                for earlier in reversed(self.history)
                for execution in earlier.executions.values()
                if execution.kind == "container"
                for artifacts in execution.outputs.values()
                for a in artifacts
            ]
            matches = [a for a in candidates if _matches(a, _fill(query["filter"], inputs))]
            resolved[key] = copy.deepcopy(matches[:1])
        return resolved


def _upstream(graph: dict[str, set[str]], task: str) -> set[str]:
    """`task` and every task it waits for, directly or not."""
    found, frontier = {task}, [task]
    while frontier:
        for parent in graph[frontier.pop()]:
            if parent not in found:
                found.add(parent)
                frontier.append(parent)
    return found


def schema_title(artifact_type: dict[str, Any]) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    match = re.search(r"^title:\s*(\S+)", artifact_type.get("instanceSchema", ""), re.MULTILINE)
    return match.group(1) if match else ""


def _fill(text: str, inputs: dict[str, list[dict]]) -> str | None:
    """Input placeholders of a filter replaced by their values; None when an input is missing."""
    missing = False

    def value(match: re.Match) -> str:
        nonlocal missing
        artifacts = inputs.get(match.group(1), [])
        if not artifacts or match.group(2) not in artifacts[0]["metadata"]:
            missing = True
            return ""
        return str(artifacts[0]["metadata"][match.group(2)])

    filled = re.sub(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}", value, text)
    return None if missing else filled


def _matches(artifact: dict[str, Any], query: str | None) -> bool:
    """A filter of `field=value` clauses joined by AND (what TFX's resolver specs use)."""
    if query is None:
        return False
    for clause in re.split(r"\s+AND\s+", query.strip()):
        key, _, wanted = clause.partition("=")
        wanted = wanted.strip().strip('"')
        key = key.strip()
        if key == "schema_title":
            actual: Any = schema_title(artifact["type"])
        elif key == "state":
            actual = "LIVE"  # nothing here deletes or abandons artifacts
        elif key == "name":
            actual = artifact["name"]
        elif key.startswith("metadata.") and key.endswith(".number_value"):
            actual = artifact["metadata"].get(key[len("metadata.") : -len(".number_value")])
            if actual is None or float(actual) != float(wanted):
                return False
            continue
        else:
            raise ValueError(f"filter clause this driver does not know: {clause}")
        if str(actual) != wanted:
            return False
    return True
