"""The local pipeline with everything but ML Metadata in an S3 bucket: DICOM data root,
pipeline root and serving folder. `ctdenoise run`, `denoise --model latest` and `lineage`
each run as a user would, in their own process, against a real S3 server (moto). The run
trains `cyclegan`, so that this end-to-end run also takes that model of the family to push."""

from __future__ import annotations

import json

import pydicom
import pytest

from tests.conftest import PERMISSIVE_GATE
from tests.dicom_validators import assert_derived_series_valid
from tests.pipeline_helpers import assert_denoised_by, ctdenoise

MODEL_FILES = {"saved_model.pb", "fingerprint.pb", "ctdenoise_model.json", "variables/variables.index"}


def _artifacts(tree: dict, kind: str) -> list[dict]:
    """Every artifact of type `kind` in a lineage tree (as `ctdenoise lineage --json` prints it),
    with the component that produced it."""
    found = [tree] if tree["type"] == kind else []
    execution = tree.get("produced_by") or {}
    for outputs in execution.get("other_outputs", {}).values():
        found += [dict(a, producer=execution["component"]) for a in outputs if a["type"] == kind]
    for artifacts in execution.get("inputs", {}).values():
        for artifact in artifacts:
            found += _artifacts(artifact, kind)
    unique = {a["id"]: dict(a, producer=a.get("producer") or a.get("produced_by", {}).get("component")) for a in found}
    return list(unique.values())


@pytest.mark.slow
def test_run_denoise_and_lineage_with_data_artifacts_and_models_in_a_bucket(object_store, simulated_data, tmp_path):
    data = object_store.upload_tree(simulated_data, "local-run/dicom")
    pipeline_root, serving = object_store.url("local-run/pipeline"), object_store.url("local-run/serving")
    run_root = tmp_path / "run"
    result = ctdenoise(
        "run",
        "--data",
        data,
        "--root",
        str(run_root),
        "--pipeline-root",
        pipeline_root,
        "--serving-dir",
        serving,
        "--until",
        "push",
        "--preset",
        "tiny",
        "--set",
        "model=cyclegan",
        *PERMISSIVE_GATE,
        "--summary",
        str(tmp_path / "summary.json"),
    )
    assert result.returncode == 0, result.stderr[-3000:]  # 134 would be tensorflow-io's exit-time abort
    summary = json.loads((tmp_path / "summary.json").read_text())

    ingest = summary["ingest"]
    assert (ingest["accepted"], ingest["rejected"], ingest["pairs"]) == (18, [], 9)
    assert ingest["examples"] == {"train": 6, "eval": 3} and ingest["artifact_uri"].startswith(pipeline_root + "/")
    assert summary["train"]["model_uri"].startswith(pipeline_root + "/")
    assert summary["evaluation"]["blessed"] is True
    push = summary["push"]
    assert push["pushed"] and push["path"] == f"{serving}/{push['version']}"
    pushed = object_store.keys(push["path"])
    assert set(pushed) >= MODEL_FILES and not [k for k in object_store.keys(serving) if ".partial-" in k]
    model_card = json.loads(object_store.read(f"{push['path']}/ctdenoise_model.json"))
    assert model_card["train"]["steps"] == 10 and model_card["hparams"]["model"] == "cyclegan"
    assert sorted(p.name for p in run_root.iterdir()) == [".ctdenoise.lock", "metadata.sqlite"]  # nothing else local

    out = tmp_path / "denoised"
    result = ctdenoise(
        "denoise",
        "--model",
        "latest",
        "--root",
        str(run_root),
        "--input",
        str(simulated_data / "SIM001" / "LDCT"),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    series = sorted(out.glob("*.dcm"))
    assert len(series) == 3
    assert_denoised_by("cyclegan", summary, result.stdout, pydicom.dcmread(series[0]).DerivationDescription)
    assert_derived_series_valid(simulated_data / "SIM001" / "LDCT", out)

    result = ctdenoise("lineage", "--root", str(run_root), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    tree = json.loads(result.stdout)
    assert tree["type"] == "PushedModel" and tree["properties"]["pushed_destination"] == push["path"]
    [examples] = _artifacts(tree, "Examples")
    assert examples["producer"] == "DicomExampleGen" and examples["uri"] == ingest["artifact_uri"]
    assert examples["properties"]["data_root"] == data and examples["properties"]["accepted_files"] == 18
    [evaluation] = _artifacts(tree, "ModelEvaluation")
    assert (
        evaluation["producer"] == "Evaluator" and evaluation["metrics"]["candidate"]["psnr"] > 0
    )  # read from the bucket
