"""The `--summary` JSON of `ctdenoise run` (SPEC §3), read back from ML Metadata and artifacts."""
from __future__ import annotations

import json
import os
from typing import Any

from components.dicom_example_gen.executor import read_report
from components.evaluation.results import read_evaluation
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
    if "Evaluator" in outputs:
        summary["evaluation"] = _evaluation(outputs["Evaluator"])
    if "Pusher" in outputs:
        summary["push"] = _push(outputs["Pusher"]["pushed_model"][0])
    return summary


def _evaluation(outputs) -> dict[str, Any]:
    """Gate verdict, metrics of the LDCT baseline and the candidate (overall and per patient)."""
    blessing = outputs["blessing"][0]
    evaluation = outputs["evaluation"][0]
    return {
        "blessed": bool(blessing.custom_properties["blessed"].int_value),
        **read_evaluation(evaluation.uri),
        "artifact_uri": evaluation.uri,
    }


def _push(pushed_model) -> dict[str, Any]:
    pushed = bool(pushed_model.custom_properties["pushed"].int_value)
    destination = pushed_model.custom_properties.get("pushed_destination")
    version = pushed_model.custom_properties.get("pushed_version")
    return {
        "pushed": pushed,
        "path": destination.string_value if pushed and destination else None,
        "version": version.string_value if pushed and version else None,
    }


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


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The summary as the lines `ctdenoise run` and `demo` print."""
    lines: list[str] = []
    ingest = summary.get("ingest")
    if ingest:
        lines.append(
            f"ingest: {ingest['accepted']} files accepted, {len(ingest['rejected'])} rejected, "
            f"{ingest['pairs']} pairs, examples train={ingest['examples']['train']} eval={ingest['examples']['eval']}"
        )
        lines += [f"  rejected {r['path']}: {r['reason']}" for r in ingest["rejected"][:10]]
        if len(ingest["rejected"]) > 10:
            lines.append(f"  … {len(ingest['rejected']) - 10} more in the summary")
    validation = summary.get("validation")
    if validation:
        lines.append(f"validation: {'passed' if validation['passed'] else 'FAILED'}")
        lines += [f"  {anomaly}" for anomaly in validation["anomalies"]]
    train = summary.get("train")
    if train:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in train["final_losses"].items() if k != "lr")
        lines.append(f"train: {train['steps']} steps in {train['seconds']:.0f} s; {losses}")
        lines.append(f"  model: {train['model_uri']}\n  tensorboard: {train['tensorboard_dir']}")
    if "evaluation" in summary:
        lines += evaluation_table(summary["evaluation"])
    push = summary.get("push")
    if push:
        lines.append(f"push: {push['path']}" if push["pushed"] else "push: nothing pushed (model not blessed)")
    return lines


_COLUMNS = (("psnr", "PSNR dB", 2), ("ssim", "SSIM", 4), ("rmse_hu", "RMSE HU", 1), ("body_rmse_hu", "body RMSE HU", 1))
"""Metric key, column title, decimals."""


def evaluation_table(evaluation: dict[str, Any]) -> list[str]:
    """LDCT vs denoised on the eval split: overall, then per patient; then the verdict."""
    overall = evaluation["overall"]
    lines = [f"evaluation: {overall.get('slices', 0)} eval slices "
             "(PSNR and SSIM on [-1, 1] images, data range 2; body = NDCT above -500 HU)",
             f"  {'':<24}" + "".join(f"{title:>14}" for _, title, _ in _COLUMNS)]
    rows = [("all patients", overall)] + sorted(evaluation["per_patient"].items())
    for where, metrics in rows:
        for role, label in (("baseline", "LDCT"), ("candidate", "denoised")):
            values = metrics.get(role, {})
            cells = "".join(_cell(values.get(key), decimals) for key, _, decimals in _COLUMNS)
            lines.append(f"  {where:<14}{label:<10}{cells}")
    lines.append(f"  blessed: {'yes' if evaluation['blessed'] else 'no'}")
    lines += [f"    {failure}" for failure in evaluation["failures"]]
    return lines


def _cell(value: float | None, decimals: int) -> str:
    return f"{value:>14.{decimals}f}" if value is not None else f"{'-':>14}"
