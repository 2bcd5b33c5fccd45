"""Kubeflow Pipelines without a cluster: the compiled spec loads with kfp's own proto and
loader, every component runs on the given image (the Trainer on its GPU image), the
ingestion component runs through the container entrypoint a KFP v2 pod runs, with the
executor input KFP would give it, and (slow) every node of two whole runs does, driven as
KFP's driver and launcher would, against an S3 object store, and a warm-started run's model
is staged there and imported."""

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

from ctdenoise.contract import features
from ctdenoise.kubeflow.runner import ENTRYPOINT, IMAGE_SOURCE_DIR
from tests.limits import HANG_S
from tests.pipeline_helpers import ctdenoise, read_examples

IMAGE = "registry.example.org/ctdenoise:test"
GPU_IMAGE = "registry.example.org/ctdenoise:test-gpu"
NODES = {
    "DicomExampleGen",
    "ImportSchemaGen",
    "StatisticsGen",
    "ExampleValidator",
    "HUGate",
    "Trainer",
    "LatestBlessedModelResolver-model-resolver",
    "LatestBlessedModelResolver-model-blessing-resolver",
    "Evaluator",
    "Pusher",
}


@pytest.fixture(scope="module")
def compiled(simulated_data, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("kfp") / "ctdenoise.json"
    result = ctdenoise(
        "kubeflow",
        "compile",
        "--image",
        IMAGE,
        "--trainer-image",
        GPU_IMAGE,
        "--out",
        str(out),
        "--storage",
        "gs://bucket/ctdenoise",
        "--data-root",
        str(simulated_data),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text()), out


def test_spec_loads_with_kfp_and_every_component_runs_on_the_image(compiled):
    spec_dict, path = compiled
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())  # strict: no unknown fields
    assert kfp_components.load_component_from_file(str(path)).name == "ctdenoise"
    assert set(spec.root.dag.tasks) == NODES
    deployment = json_format.ParseDict(spec_dict["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    containers = {
        name.removesuffix("_executor"): executor.container
        for name, executor in deployment.executors.items()
        if executor.HasField("container")
    }
    resolvers = {name for name in NODES if name.startswith("LatestBlessedModelResolver")}
    assert set(containers) == NODES - resolvers
    for name, container in containers.items():
        assert container.image == (GPU_IMAGE if name == "Trainer" else IMAGE)
        assert list(container.command) == ENTRYPOINT
    trainer = containers["Trainer"].resources
    assert (trainer.accelerator.type, trainer.accelerator.count) == ("nvidia.com/gpu", 1)
    assert trainer.cpu_limit > 0 and trainer.memory_limit > 0
    assert spec.default_pipeline_root == "gs://bucket/ctdenoise/pipeline"  # KFP's own default root otherwise
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
    result = subprocess.run(command + args, capture_output=True, text=True, timeout=HANG_S)  # bounds a hang
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
    parameters = {
        name: value["runtimeValue"]["constant"]
        for name, value in spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"].items()
    }
    definitions = spec["components"][task]["outputDefinitions"]["artifacts"]
    artifacts = {
        key: {"artifacts": [{"name": key, "type": definitions[key]["artifactType"], "uri": str(uri), "metadata": {}}]}
        for key, uri in outputs.items()
    }
    return {
        "inputs": {"parameterValues": parameters},
        "outputs": {"artifacts": artifacts, "outputFile": str(output_file)},
    }


def test_no_baseline_leaves_out_the_resolvers_open_source_kfp_cannot_run(tmp_path):
    from ctdenoise.app.cli import build_parser

    out = tmp_path / "spec.json"
    args = build_parser().parse_args(["kubeflow", "compile", "--image", IMAGE, "--out", str(out), "--no-baseline"])
    assert args.func(args) == 0
    spec = json.loads(out.read_text())
    assert set(spec["root"]["dag"]["tasks"]) == {n for n in NODES if not n.startswith("LatestBlessedModelResolver")}
    assert all("container" in e for e in spec["deploymentSpec"]["executors"].values())
    assert "baseline_model" not in spec["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["artifacts"]


def test_entrypoint_reads_minio_as_s3_and_hands_the_minio_uris_back(tmp_path):
    from ctdenoise.kubeflow import entrypoint

    output_file = tmp_path / "executor_output.json"
    destination = json.dumps({"filesystem": {"baseDirectory": "minio://b/serving"}})  # the Pusher's, as JSON
    invocation = {
        "inputs": {
            "parameterValues": {
                "data_root": "minio://b/dicom",
                "n": 1,
                "push_destination": destination,
                "note": "not JSON, about minio://",
            },
            "artifacts": {"examples": {"artifacts": [{"uri": "minio://b/p/Gen/examples"}]}},
        },
        "outputs": {
            "artifacts": {"model": {"artifacts": [{"uri": "minio://b/p/Trainer/model"}]}},
            "outputFile": str(output_file),
        },
    }
    argv = ["--executor_class_path", "x.Executor", entrypoint.INVOCATION_FLAG, json.dumps(invocation), "--beam"]
    translated, out, renamed = entrypoint._read_minio_as_s3(argv)
    seen = json.loads(translated[3])
    assert seen["inputs"]["parameterValues"] == {
        "data_root": "s3://b/dicom",
        "n": 1,
        "note": "not JSON, about minio://",
        "push_destination": json.dumps({"filesystem": {"baseDirectory": "s3://b/serving"}}),
    }
    assert seen["inputs"]["artifacts"]["examples"]["artifacts"][0]["uri"] == "s3://b/p/Gen/examples"
    assert seen["outputs"]["artifacts"]["model"]["artifacts"][0]["uri"] == "s3://b/p/Trainer/model"
    assert (translated[:3], translated[4:], out) == (argv[:3], ["--beam"], str(output_file))
    output_file.write_text(
        json.dumps({"artifacts": {"model": {"artifacts": [{"uri": "s3://b/p/Trainer/model", "metadata": {"a": 1}}]}}})
    )
    entrypoint._name_outputs_as_given(out, renamed)
    assert (
        json.loads(output_file.read_text())["artifacts"]["model"]["artifacts"][0]["uri"] == "minio://b/p/Trainer/model"
    )


def test_beam_steps_run_in_threads_where_tensorflow_io_is_needed():
    from ctdenoise.kubeflow.runner import KubeflowSettings

    def mode(**locations) -> str:
        return KubeflowSettings(image=IMAGE, **locations).beam_args[0]

    assert mode(storage="gs://b") == "--direct_running_mode=multi_processing"
    assert (
        mode(storage="s3://b")
        == mode(storage="gs://b", pipeline_root="minio://mlpipeline/x")
        == "--direct_running_mode=multi_threading"
    )
    assert KubeflowSettings(image=IMAGE, storage="s3://b", beam_args=("--runner=X",)).beam_args == ("--runner=X",)


def test_tfx_cli_vertex_engine_compiles_our_runner_file(tmp_path):
    """`tfx pipeline create --engine vertex --pipeline_path kubeflow/runner.py` works (the
    `kubeflow` engine is broken upstream since TFX 1.16; see docs/kubeflow.md)."""
    repo = Path(__file__).resolve().parent.parent
    venv_bin = str(Path(sys.executable).parent)  # the tfx CLI looks for kfp with the `pip` on PATH
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
        "CTDENOISE_IMAGE": IMAGE,
        "CTDENOISE_STORAGE": "gs://bucket/ct",
    }
    result = subprocess.run(
        ["tfx", "pipeline", "create", "--engine", "vertex", "--pipeline_path", str(repo / "kubeflow" / "runner.py")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )  # bounds a hang
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Pipeline "ctdenoise" created successfully' in result.stdout
    job = json.loads((tmp_path / "tfx" / "vertex" / "ctdenoise" / "pipeline.json").read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == NODES
    assert "gs://bucket/ct/dicom" in json.dumps(job["pipelineSpec"]["root"]["dag"]["tasks"]["DicomExampleGen"])


def test_create_against_an_unreachable_endpoint_is_one_clear_line(tmp_path):
    result = ctdenoise(
        "kubeflow", "create", "--endpoint", "http://127.0.0.1:9", "--image", IMAGE, "--data-root", str(tmp_path)
    )
    assert result.returncode == 1
    ours = [line for line in result.stderr.strip().splitlines() if line.startswith("ctdenoise")]
    assert (
        ours
        == [result.stderr.strip().splitlines()[-1]]
        == [  # TF's C++ start-up lines may precede it
            "ctdenoise: error: Kubeflow Pipelines at http://127.0.0.1:9: unreachable ([Errno 111] Connection refused)"
        ]
    )


@pytest.mark.slow
def test_every_node_runs_through_its_container_entrypoint_on_an_object_store(object_store, simulated_data, tmp_path):
    """The compiled IR driven as KFP v2's driver and launcher would (tests/kfp_driver.py):
    all ten nodes, artifacts under a minio:// pipeline root (KFP's default scheme on a
    standalone install), data and serving folder on s3://, two runs. The first run's
    resolvers find no blessed model; the second's resolve to the first run's, which the
    Evaluator then compares against (its upstream steps come from KFP's cache; the second
    run stops after the Evaluator to keep the test short)."""
    from ctdenoise.components.evaluation.results import read_evaluation
    from tests.kfp_driver import Driver

    serving = object_store.url("kfp/serving")
    spec, pipeline_root = _compile_on_store(object_store, simulated_data, tmp_path, "kfp")
    assert spec["defaultPipelineRoot"] == pipeline_root
    repo = Path(__file__).resolve().parent.parent
    driver = Driver(spec, tmp_path / "pods", image_paths={IMAGE_SOURCE_DIR: str(repo)}, cwd=repo)
    assert set(driver.order()) == NODES and driver.order().index("Evaluator") > driver.order().index("Trainer")

    first = driver.run("run-1")
    kinds = {name: e.kind for name, e in first.executions.items()}
    resolvers = {name for name in NODES if name.startswith("LatestBlessedModelResolver")}
    assert kinds == {name: "resolver" if name in resolvers else "container" for name in NODES}
    assert all(
        first.executions[name].outputs == {"model" if "model-resolver" in name else "model_blessing": []}
        for name in resolvers
    )
    [examples] = first.executions["DicomExampleGen"].outputs["examples"]
    assert examples["uri"].startswith(pipeline_root + "/")  # handed back as given, not as s3://
    assert (examples["metadata"]["accepted_files"], examples["metadata"]["pairs"]) == (18, 9)
    assert object_store.keys(examples["uri"])  # written to the bucket behind minio://
    [model] = first.executions["Trainer"].outputs["model"]
    [blessing] = first.executions["Evaluator"].outputs["blessing"]
    assert blessing["metadata"]["blessed"] == 1 and "baseline_model" not in blessing["metadata"]
    assert blessing["metadata"]["current_model_id"] == model["name"]
    [pushed] = first.executions["Pusher"].outputs["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1 and pushed["metadata"]["pushed_destination"].startswith(serving + "/")

    version = object_store.keys(pushed["metadata"]["pushed_destination"])
    assert {"saved_model.pb", "fingerprint.pb", "ctdenoise_model.json", "variables/variables.index"} <= set(version)
    assert not [key for key in object_store.keys(serving) if ".partial-" in key]

    second = driver.run("run-2", until="Evaluator")
    kinds = {name: e.kind for name, e in second.executions.items()}
    assert kinds == {
        **{n: "cached" for n in NODES - resolvers - {"Evaluator", "Pusher"}},
        **{n: "resolver" for n in resolvers},
        "Evaluator": "container",
    }
    [resolved] = second.executions["LatestBlessedModelResolver-model-resolver"].outputs["model"]
    assert resolved["name"] == model["name"] and resolved["uri"] == model["uri"]
    [blessing2] = second.executions["Evaluator"].outputs["blessing"]
    assert blessing2["metadata"]["baseline_model_id"] == model["name"] and blessing2["metadata"]["blessed"] == 1
    [evaluation] = second.executions["Evaluator"].outputs["evaluation"]
    local = tmp_path / "evaluation"
    for key in object_store.keys(evaluation["uri"]):
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(object_store.read(f"{evaluation['uri']}/{key}"))
    overall = read_evaluation(str(local))["overall"]
    assert overall["baseline"]["psnr"] == pytest.approx(overall["candidate"]["psnr"])  # same model, cached


@pytest.mark.slow
def test_a_warm_start_is_staged_in_the_object_store_and_imported(object_store, simulated_data, tmp_path):
    """`kubeflow compile --warm-start PATH --no-baseline` (open-source KFP runs importers, not
    resolvers): the model is copied under the minio:// pipeline root, and an importer node hands
    it to the Trainer, which starts both generators from it, and to the Evaluator as its baseline
    (the spec's wiring; the Evaluator's reading a baseline from the bucket is the test above's)."""
    from ctdenoise.trainer_module.export import Description, export_generator
    from ctdenoise.trainer_module.models import build, preset
    from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
    from tests.kfp_driver import Driver

    start = build(preset("tiny", CycleIdentityParams))
    folder = tmp_path / "start"
    export_generator(start.generator, Description.of(start), str(folder), {"test": True}, start.reverse_generator)
    spec, pipeline_root = _compile_on_store(
        object_store, simulated_data, tmp_path, "warm", "--no-baseline", "--warm-start", str(folder)
    )
    resolvers = {name for name in NODES if name.startswith("LatestBlessedModelResolver")}
    assert set(spec["root"]["dag"]["tasks"]) == NODES - resolvers | {"WarmStartModel"}
    repo = Path(__file__).resolve().parent.parent
    driver = Driver(spec, tmp_path / "pods", image_paths={IMAGE_SOURCE_DIR: str(repo)}, cwd=repo)
    run = driver.run("run-1", until="Trainer")  # the Evaluator reading a bucket's baseline: the test above
    [imported] = run.executions["WarmStartModel"].outputs["result"]
    assert run.executions["WarmStartModel"].kind == "importer"
    assert imported["uri"].startswith(pipeline_root + "/WarmStart/")
    assert "Format-Serving/saved_model.pb" in object_store.keys(imported["uri"])  # staged in the bucket
    trainer_log = (tmp_path / "pods" / "run-1" / "Trainer" / "log.txt").read_text()
    assert "warm start: generator and reverse_generator from cycle_identity" in trainer_log
    evaluator = spec["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["artifacts"]["baseline_model"]
    assert evaluator["taskOutputArtifact"] == {"outputArtifactKey": "result", "producerTask": "WarmStartModel"}


def test_warm_start_latest_needs_the_resolver_that_no_baseline_leaves_out(tmp_path):
    from ctdenoise.app.cli import build_parser
    from ctdenoise.app.commands import UserError

    args = build_parser().parse_args(
        ["kubeflow", "compile", "--image", IMAGE, "--out", str(tmp_path / "s.json"), "--no-baseline"]
        + ["--warm-start", "latest"]
    )
    with pytest.raises(UserError, match="needs the latest blessed model's resolver"):
        args.func(args)
    assert not (tmp_path / "s.json").exists()


def _compile_on_store(object_store, data: Path, tmp_path: Path, prefix: str, *extra: str) -> tuple[dict, str]:
    """`ctdenoise kubeflow compile` (in this process, to spare a TensorFlow start-up) of a tiny
    run whose data is uploaded under `prefix` in the bucket and whose pipeline root is minio://
    (KFP's default scheme on a standalone install); the spec and that root."""
    from ctdenoise.app.cli import build_parser
    from tests.conftest import PERMISSIVE_GATE

    object_store.upload_tree(data, f"{prefix}/dicom")  # the data root `--storage` implies
    pipeline_root = f"minio://{object_store.bucket}/{prefix}/pipeline"
    spec_file = tmp_path / "ctdenoise.json"
    compile_args = ["kubeflow", "compile", "--image", IMAGE, "--out", str(spec_file), "--preset", "tiny"]
    compile_args += ["--storage", object_store.url(prefix), "--pipeline-root", pipeline_root, *PERMISSIVE_GATE]
    beam = ["--beam-arg=--direct_running_mode=in_memory", "--beam-arg=--direct_num_workers=1"]
    args = build_parser().parse_args([*compile_args, *beam, *extra])
    assert args.func(args) == 0
    return json.loads(spec_file.read_text()), pipeline_root
