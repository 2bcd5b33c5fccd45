"""End to end on LocalDagRunner: simulate → ingest → statistics → schema → validator → HU gate.

Runs the installed `ctdenoise` command as a user would, on real files, with real SQLite ML Metadata.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from ml_metadata.proto import metadata_store_pb2

from ctdenoise.metadata.queries import latest_run_executions, open_store
from ctdenoise.simulator.dataset import simulate_dataset
from tests.dicom_factory import DISTINCTIVE_NAME
from tests.pipeline_helpers import ctdenoise

NODES = {"DicomExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator", "HUGate"}


def rewrite(folder: Path, **changes) -> None:
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, change in changes.items():
            setattr(ds, keyword, change(ds))
        ds.save_as(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "dicom"
    simulate_dataset(root, patients=3, slices=4, size=64, seed=3, progress=None)
    rewrite(root / "SIM002", PatientName=lambda ds: DISTINCTIVE_NAME, PatientBirthDate=lambda ds: "19450317")
    return root


@pytest.fixture(scope="module")
def good_run(data, tmp_path_factory):
    run_root = tmp_path_factory.mktemp("run")
    result = ctdenoise(
        "run",
        "--data",
        str(data),
        "--root",
        str(run_root),
        "--until",
        "validate",
        "--summary",
        str(run_root / "s.json"),
    )
    return run_root, result


def test_valid_data_passes_the_gate_with_every_file_counted(good_run):
    run_root, result = good_run
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_root / "s.json").read_text())
    ingest = summary["ingest"]
    assert ingest["accepted"] == 24 and ingest["rejected"] == [] and ingest["pairs"] == 12
    assert ingest["examples"] == {"train": 8, "eval": 4}
    assert Path(ingest["artifact_uri"], "Split-train").is_dir()
    assert summary["validation"] == {"passed": True, "anomalies": []}
    executions = latest_run_executions(open_store(run_root))
    assert set(executions) == NODES


def test_each_node_says_running_then_done_from_its_ml_metadata_execution(good_run):
    _, result = good_run
    lines = [line for line in result.stdout.splitlines() if line.startswith("[run] ") and ": " in line]
    for node in NODES:
        assert lines.index(f"[run] {node}: running") < lines.index(f"[run] {node}: done"), lines
    assert lines[0] == "[run] DicomExampleGen: running"  # the first node, first


def test_no_phi_in_examples_logs_or_metadata(good_run):
    run_root, result = good_run
    needles = [DISTINCTIVE_NAME.encode(), b"Quuxbridge", b"19450317"]
    haystacks = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    for path in run_root.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            haystacks[str(path)] = gzip.decompress(raw) if path.suffix == ".gz" else raw
    assert any(p.endswith(".gz") for p in haystacks) and any(p.endswith("metadata.sqlite") for p in haystacks)
    leaks = [name for name, blob in haystacks.items() if any(n in blob for n in needles)]
    assert leaks == []


def test_rerun_on_unchanged_data_reuses_cached_results(good_run, data):
    run_root, _ = good_run
    result = ctdenoise("run", "--data", str(data), "--root", str(run_root), "--until", "validate")
    assert result.returncode == 0, result.stderr[-2000:]
    states = {node: e.last_known_state for node, e in latest_run_executions(open_store(run_root)).items()}
    assert states["DicomExampleGen"] == metadata_store_pb2.Execution.CACHED
    assert states["StatisticsGen"] == metadata_store_pb2.Execution.CACHED
    assert "[run] DicomExampleGen: cached" in result.stdout and "[run] DicomExampleGen: done" not in result.stdout


def test_rescale_intercept_shifted_by_1024_is_stopped_naming_the_cause(data, tmp_path):
    shifted = tmp_path / "shifted"
    shutil.copytree(data, shifted)
    rewrite(shifted, RescaleIntercept=lambda ds: float(ds.RescaleIntercept) + 1024)
    result = ctdenoise(
        "run",
        "--data",
        str(shifted),
        "--root",
        str(tmp_path / "run"),
        "--until",
        "validate",
        "--summary",
        str(tmp_path / "s.json"),
    )
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("ctdenoise: error: HU gate failed") and "RescaleIntercept off by about +1024" in error
    validation = json.loads((tmp_path / "s.json").read_text())["validation"]
    assert validation["passed"] is False
    assert any("air at" in a for a in validation["anomalies"])
    assert any("ldct_hu_p01" in a for a in validation["anomalies"])  # TFDV flags the curated domain too
