"""The `--summary` JSON of `ctdenoise run` (SPEC §3), read back from ML Metadata and artifacts."""
from __future__ import annotations

import json
import os
from typing import Any

from components.dicom_example_gen.executor import read_report
from components.hu_gate.checks import GateThresholds, gate_problems
from trainer_module.run import RESULT_FILE
from pipeline.metadata import latest_run_executions, output_artifacts, split_uris, succeeded


def build_summary(store, thresholds: GateThresholds = GateThresholds()) -> dict[str, Any]:
    """One object per stage that produced results in the newest run."""
    executions = latest_run_executions(store)
    outputs = {node: output_artifacts(store, e) for node, e in executions.items() if succeeded(e)}
    summary: dict[str, Any] = {}
    if "DicomExampleGen" in outputs:
        summary["ingest"] = _ingest(outputs["DicomExampleGen"]["examples"][0])
    if "ExampleValidator" in outputs:
        summary["validation"] = _validation(outputs, succeeded(executions.get("HUGate")), thresholds)
    if "Trainer" in outputs:
        summary["train"] = _train(outputs["Trainer"])
    return summary


def _train(outputs) -> dict[str, Any]:
    model_run = outputs["model_run"][0]
    with open(os.path.join(model_run.uri, RESULT_FILE)) as f:
        result = json.load(f)
    return {
        "steps": result["steps"],
        "final_losses": result["losses"],
        "psnr": result.get("psnr", {}),
        "model_uri": outputs["model"][0].uri,
        "tensorboard_dir": result["tensorboard_dir"],
        "seconds": result["seconds"],
    }


def _ingest(examples) -> dict[str, Any]:
    report = read_report(examples.uri)
    return {
        "accepted": report["accepted"],
        "rejected": report["rejected"],
        "examples": report["examples"],
        "pairs": report["pairs"],
        "artifact_uri": examples.uri,
    }


def _validation(outputs, passed: bool, thresholds: GateThresholds) -> dict[str, Any]:
    """Gate verdict plus every reason found: TFDV anomalies and the HU checks, per split."""
    statistics = split_uris(outputs["StatisticsGen"]["statistics"][0])
    anomalies = split_uris(outputs["ExampleValidator"]["anomalies"][0])
    problems = gate_problems({s: (statistics[s], anomalies[s]) for s in statistics}, thresholds)
    return {"passed": passed, "anomalies": problems}
