"""Kubeflow Pipelines without a cluster: the compiled spec loads with kfp's own proto and
loader, every component runs on the given image (the Trainer on its GPU image), and the ingestion component runs through
the container entrypoint a KFP v2 pod runs, with the executor input KFP would give it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp import components as kfp_components
from kfp.pipeline_spec import pipeline_spec_pb2

from components import features
from kubeflow.runner import ENTRYPOINT
from tests.pipeline_helpers import ctdenoise, read_examples

IMAGE = "registry.example.org/ctdenoise:test"
GPU_IMAGE = "registry.example.org/ctdenoise:test-gpu"
NODES = {"DicomExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator", "HUGate", "Trainer",
         "LatestBlessedModelResolver-model-resolver", "LatestBlessedModelResolver-model-blessing-resolver",
         "Evaluator", "Pusher"}


@pytest.fixture(scope="module")
def compiled(simulated_data, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("kfp") / "ctdenoise.json"
    result = ctdenoise("kubeflow", "compile", "--image", IMAGE, "--trainer-image", GPU_IMAGE, "--out", str(out),
                       "--storage", "gs://bucket/ctdenoise", "--data-root", str(simulated_data))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text()), out


def test_spec_loads_with_kfp_and_every_component_runs_on_the_image(compiled):
    spec_dict, path = compiled
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())  # strict: no unknown fields
    assert kfp_components.load_component_from_file(str(path)).name == "ctdenoise"
    assert set(spec.root.dag.tasks) == NODES
    deployment = json_format.ParseDict(spec_dict["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    containers = {name.removesuffix("_executor"): executor.container
                  for name, executor in deployment.executors.items() if executor.HasField("container")}
    resolvers = {name for name in NODES if name.startswith("LatestBlessedModelResolver")}
    assert set(containers) == NODES - resolvers
    for name, container in containers.items():
        assert container.image == (GPU_IMAGE if name == "Trainer" else IMAGE)
        assert list(container.command) == ENTRYPOINT
    trainer = containers["Trainer"].resources
    assert (trainer.accelerator.type, trainer.accelerator.count) == ("nvidia.com/gpu", 1)
    assert trainer.cpu_limit > 0 and trainer.memory_limit > 0
    pusher = spec_dict["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]["push_destination"]
    assert "gs://bucket/ctdenoise/serving" in json.dumps(pusher)


def test_ingestion_runs_through_the_kfp_container_entrypoint(compiled, simulated_data, tmp_path):
    spec, _ = compiled
    examples_uri = tmp_path / "pipeline" / "DicomExampleGen" / "examples"
    output_file = tmp_path / "task" / "executor_output.json"
    container = spec["deploymentSpec"]["executors"]["DicomExampleGen_executor"]["container"]
    executor_input = json.dumps(_executor_input(spec, "DicomExampleGen", {"examples": examples_uri}, output_file))
    command = [sys.executable if part == "python" else part for part in container["command"]]
    args = [executor_input if arg == "{{$}}" else arg for arg in container["args"]]
    result = subprocess.run(command + args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((examples_uri / "ingest_report.json").read_text())
    assert report["accepted"] == 18 and report["rejected"] == [] and report["pairs"] == 9
    examples = {split: read_examples(examples_uri, split) for split in features.SPLITS}
    assert {split: len(items) for split, items in examples.items()} == report["examples"]
    output = json.loads(output_file.read_text())
    [artifact] = output["artifacts"]["examples"]["artifacts"]
    assert artifact["uri"] == str(examples_uri)
    assert artifact["metadata"]["accepted_files"] == 18 and artifact["metadata"]["pairs"] == 9
    assert json.loads(artifact["metadata"]["split_names"]) == ["train", "eval"]


def _executor_input(spec: dict, task: str, outputs: dict[str, Path], output_file: Path) -> dict:
    """What the KFP v2 launcher hands a container: the task's parameter values from the
    compiled spec, output artifacts at the given local URIs, and where to write its result."""
    parameters = {name: value["runtimeValue"]["constant"]
                  for name, value in spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"].items()}
    definitions = spec["components"][task]["outputDefinitions"]["artifacts"]
    artifacts = {
        key: {"artifacts": [{"name": key, "type": definitions[key]["artifactType"], "uri": str(uri), "metadata": {}}]}
        for key, uri in outputs.items()
    }
    return {"inputs": {"parameterValues": parameters},
            "outputs": {"artifacts": artifacts, "outputFile": str(output_file)}}


def test_tfx_cli_vertex_engine_compiles_our_runner_file(tmp_path):
    """`tfx pipeline create --engine vertex --pipeline_path kubeflow/runner.py` works (the
    `kubeflow` engine is broken upstream since TFX 1.15; see docs/kubeflow.md)."""
    repo = Path(__file__).resolve().parent.parent
    venv_bin = str(Path(sys.executable).parent)  # the tfx CLI looks for kfp with the `pip` on PATH
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{venv_bin}:{os.environ['PATH']}",
           "CTDENOISE_IMAGE": IMAGE, "CTDENOISE_STORAGE": "gs://bucket/ct"}
    result = subprocess.run(["tfx", "pipeline", "create", "--engine", "vertex",
                             "--pipeline_path", str(repo / "kubeflow" / "runner.py")],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Pipeline "ctdenoise" created successfully' in result.stdout
    job = json.loads((tmp_path / "tfx" / "vertex" / "ctdenoise" / "pipeline.json").read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == NODES
    assert "gs://bucket/ct/dicom" in json.dumps(job["pipelineSpec"]["root"]["dag"]["tasks"]["DicomExampleGen"])


def test_create_against_an_unreachable_endpoint_is_one_clear_line(tmp_path):
    result = ctdenoise("kubeflow", "create", "--endpoint", "http://127.0.0.1:9", "--image", IMAGE,
                       "--data-root", str(tmp_path))
    assert result.returncode == 1
    ours = [line for line in result.stderr.strip().splitlines() if line.startswith("ctdenoise")]
    assert ours == [result.stderr.strip().splitlines()[-1]] == [  # TF's C++ start-up lines may precede it
        "ctdenoise: error: Kubeflow Pipelines at http://127.0.0.1:9: unreachable ([Errno 111] Connection refused)"]
