"""The `--summary` JSON of `ctdenoise run` (docs/design.md, "Command line contract"): what the run recorded in ML
Metadata and the artifacts it points to, never recomputed."""

from __future__ import annotations

from typing import Any

from ctdenoise.components.dicom_example_gen.executor import NothingToIngest, read_report
from ctdenoise.components.evaluation.eval_config import BASELINE
from ctdenoise.components.evaluation.metric_table import METRICS
from ctdenoise.components.evaluation.results import read_evaluation
from ctdenoise.components.hu_gate.checks import problems_in
from ctdenoise.contract.hu import BODY_HU
from ctdenoise.metadata import names
from ctdenoise.metadata.queries import output_artifacts, property_value, run_executions, succeeded


def build_summary(
    store, run_id: int | None, failure: BaseException | None = None, pipeline_name: str = names.PIPELINE_NAME
) -> dict[str, Any]:
    """One object per stage of the pipeline run `run_id` (None: a run that never started)
    that produced results; `failure` is what the run raised, if it failed (TFX records no
    message with a failed execution)."""
    executions = run_executions(store, run_id, pipeline_name) if run_id is not None else {}
    outputs = {node: output_artifacts(store, e) for node, e in executions.items() if succeeded(e)}
    summary: dict[str, Any] = {}
    if names.EXAMPLE_GEN_ID in outputs:
        summary["ingest"] = _ingest(outputs[names.EXAMPLE_GEN_ID]["examples"][0])
    elif isinstance(failure, NothingToIngest):
        summary["ingest"] = {**failure.report, "artifact_uri": None}
    if names.HU_GATE_ID in executions:
        summary["validation"] = _validation(executions[names.HU_GATE_ID], failure)
    if names.TRAINER_ID in outputs:
        summary["train"] = _train(outputs[names.TRAINER_ID])
    if names.EVALUATOR_ID in outputs:
        summary["evaluation"] = _evaluation(outputs[names.EVALUATOR_ID])
    if names.PUSHER_ID in outputs:
        summary["push"] = _push(outputs[names.PUSHER_ID]["pushed_model"][0])
    return summary


def _evaluation(outputs) -> dict[str, Any]:
    """Gate verdict, metrics of the LDCT as it is and of the candidate (overall and per patient)."""
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
    """What the Trainer recorded on its Model artifact."""
    model = outputs["model"][0]
    return {
        "steps": property_value(model, "train_steps"),
        "final_losses": property_value(model, "final_losses"),
        "psnr": property_value(model, "psnr"),
        "model_uri": model.uri,
        "tensorboard_dir": property_value(model, "tensorboard_dir"),
        "seconds": property_value(model, "train_seconds"),
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


def _validation(gate, failure: BaseException | None) -> dict[str, Any]:
    """The HU gate's verdict and, when it failed, every reason it gave (TFDV anomalies and
    HU checks, per split) in the failure it raised."""
    if succeeded(gate):
        return {"passed": True, "anomalies": []}
    return {"passed": False, "anomalies": problems_in(str(failure or ""))}


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


def evaluation_table(evaluation: dict[str, Any]) -> list[str]:
    """LDCT vs denoised on the eval split, with the baseline model's row where the gate compared
    with one (the latest blessed model, or the model training started from): overall, then per
    patient; then the verdict."""
    overall = evaluation["overall"]
    lines = [
        f"evaluation: {overall.get('slices', 0)} eval slices "
        f"(PSNR and SSIM on [-1, 1] images, data range 2; body = NDCT above {BODY_HU:g} HU)",
        f"  {'':<24}" + "".join(f"{entry.title:>14}" for entry in METRICS),
    ]
    rows = [("all patients", overall)] + sorted(evaluation["per_patient"].items())
    for where, metrics in rows:
        for role, label in (("ldct", "LDCT"), (BASELINE, "baseline"), ("candidate", "denoised")):
            if role == BASELINE and role not in metrics:
                continue  # the gate had no model to compare with
            values = metrics.get(role, {})
            cells = "".join(_cell(values.get(entry.name), entry.decimals) for entry in METRICS)
            lines.append(f"  {where:<14}{label:<10}{cells}")
    lines.append(f"  blessed: {'yes' if evaluation['blessed'] else 'no'}")
    lines += [f"    {failure}" for failure in evaluation["failures"]]
    return lines


def _cell(value: float | None, decimals: int) -> str:
    return f"{value:>14.{decimals}f}" if value is not None else f"{'-':>14}"
