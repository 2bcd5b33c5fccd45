"""After the session's end-to-end `ctdenoise run --until push`: the evaluation and push in
the summary, `ctdenoise denoise --model latest` on a simulated series, and lineage from the
pushed model back to the DICOM root and from the root forward to the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from ctdenoise.app.base_models import PAIRED_BASE, base_model
from ctdenoise.app.demo import BASE_VERSION, DemoError, showcase
from tests.dicom_validators import assert_derived_series_valid
from tests.pipeline_helpers import ctdenoise

CHAIN = ["Pusher", "Trainer", "DicomExampleGen", "HUGate", "StatisticsGen", "ExampleValidator", "ImportSchemaGen"]


def _executions(tree: dict) -> dict[str, dict]:
    """Component name → execution node, for every execution in a lineage tree."""
    found: dict[str, dict] = {}

    def visit(artifact: dict) -> None:
        execution = artifact.get("produced_by")
        if execution and not execution.get("repeated"):
            found[execution["component"]] = execution
            for artifacts in execution["inputs"].values():
                for item in artifacts:
                    visit(item)

    visit(tree)
    return found


def test_summary_reports_evaluation_and_push(pushed_run):
    run_root, summary, stdout = pushed_run
    evaluation, push = summary["evaluation"], summary["push"]
    assert evaluation["blessed"] is True and evaluation["failures"] == []
    overall = evaluation["overall"]
    assert overall["slices"] == 3 and set(evaluation["per_patient"]) == {"SIM002"}
    for role in ("ldct", "candidate"):
        assert {"psnr", "ssim", "rmse_hu", "body_rmse_hu"} <= set(overall[role])
    assert overall["ldct"]["psnr"] > 20 and 0 < overall["ldct"]["ssim"] <= 1
    assert push["pushed"] and Path(push["path"], "saved_model.pb").is_file()
    assert Path(push["path"]).parent == run_root / "serving" and push["version"] == Path(push["path"]).name
    assert "LDCT" in stdout and "denoised" in stdout and "blessed: yes" in stdout and f"push: {push['path']}" in stdout


def test_denoise_latest_writes_a_derived_series(pushed_run, simulated_data, tmp_path):
    run_root, summary, _ = pushed_run
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
        "--png",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 3 and len(list((out / "preview").glob("*.png"))) == 3
    ds = pydicom.dcmread(files[0])
    assert ds.DerivationDescription.startswith(f"ctdenoise cycle_identity generator {summary['push']['version']}; ")
    assert ds.pixel_array.shape == (64, 64)
    assert "denoise: wrote 3 slices" in result.stdout
    assert_derived_series_valid(simulated_data / "SIM001" / "LDCT", out)


def test_lineage_reaches_from_the_pushed_model_to_the_dicom_root(pushed_run, simulated_data):
    run_root, summary, _ = pushed_run
    result = ctdenoise("lineage", "--root", str(run_root), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    tree = json.loads(result.stdout)
    assert tree["type"] == "PushedModel" and tree["properties"]["pushed_destination"] == summary["push"]["path"]
    executions = _executions(tree)
    assert set(CHAIN) <= set(executions) and "Evaluator" in executions
    assert all(e["state"] in ("COMPLETE", "CACHED") for e in executions.values())
    assert executions["DicomExampleGen"]["properties"]["data_root"] == str(simulated_data)
    evaluator = executions["Evaluator"]
    [evaluation] = evaluator["other_outputs"]["evaluation"]
    assert evaluation["metrics"]["candidate"]["psnr"] == summary["evaluation"]["overall"]["candidate"]["psnr"]
    [examples] = executions["Trainer"]["inputs"]["examples"]
    assert examples["properties"]["accepted_files"] == 18 and examples["properties"]["rejected_files"] == 0
    [model] = executions["Pusher"]["inputs"]["model"]
    assert model["properties"]["hparams"]["ngf"] == 4 and model["properties"]["train_steps"] == 10
    [blessing] = executions["Pusher"]["inputs"]["model_blessing"]
    assert blessing["properties"]["blessed"] == 1
    [schema] = executions["Trainer"]["inputs"]["schema"]
    assert (
        schema["properties"]["hu_gate"] == "passed"
        and -1100 < schema["properties"]["hu_summary"]["train"]["ldct_mean_p01_hu"] < -900
    )

    tree_text = ctdenoise("lineage", "--root", str(run_root)).stdout
    assert str(simulated_data) in tree_text and "<- Pusher" in tree_text and "<- DicomExampleGen" in tree_text


def test_lineage_forward_from_the_dataset_finds_the_pushed_model(pushed_run, simulated_data):
    run_root, summary, _ = pushed_run
    result = ctdenoise("lineage", "--root", str(run_root), "--dataset", str(simulated_data), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    [model] = json.loads(result.stdout)
    assert model["uri"] == summary["train"]["model_uri"]
    assert model["blessed"] is True and model["pushed_to"] == [summary["push"]["path"]]
    missing = ctdenoise("lineage", "--root", str(run_root), "--dataset", "/no/such/data")
    assert missing.returncode == 1 and missing.stderr.strip().startswith("ctdenoise: error: no ingested data")


def test_demo_showcase_denoises_a_held_out_patient_with_base_and_pushed_model(pushed_run, simulated_data, tmp_path):
    _, summary, _ = pushed_run
    lines: list[str] = []
    png = showcase(summary, simulated_data, tmp_path, base_model(PAIRED_BASE), lines.append)
    assert png == tmp_path / "demo-denoised" / "SIM002_ldct_base_finetuned_ndct.png"
    with Image.open(png) as picture:
        assert picture.size == (4 * 64, 64) and picture.mode == "L"
        panels = np.asarray(picture).reshape(64, 4, 64).transpose(1, 0, 2)[:, 16:]  # below the labels
    assert not np.array_equal(panels[1], panels[2])  # base and pushed model differ
    base = pydicom.dcmread(sorted((tmp_path / "demo-denoised" / "SIM002-base").glob("*.dcm"))[0])
    pushed = pydicom.dcmread(sorted((tmp_path / "demo-denoised" / "SIM002").glob("*.dcm"))[0])
    assert BASE_VERSION in base.DerivationDescription and summary["push"]["version"] in pushed.DerivationDescription
    assert len(list((tmp_path / "demo-denoised" / "SIM002").glob("*.dcm"))) == 3
    assert sum("wrote 3 slices" in line for line in lines) == 2


def test_demo_shows_a_refused_candidate_as_not_blessed(pushed_run, simulated_data, tmp_path):
    _, summary, _ = pushed_run
    refused = {**summary, "push": {"pushed": False, "path": None, "version": None}}
    lines: list[str] = []
    png = showcase(refused, simulated_data, tmp_path, base_model(PAIRED_BASE), lines.append)
    assert png.is_file() and any("the gate refused the model" in line for line in lines)
    derived = pydicom.dcmread(sorted((tmp_path / "demo-denoised" / "SIM002").glob("*.dcm"))[0])
    assert "candidate (not blessed)" in derived.DerivationDescription
    with pytest.raises(DemoError, match="training produced no model"):
        showcase({"push": {"pushed": False}}, simulated_data, tmp_path, base_model(PAIRED_BASE), print)
