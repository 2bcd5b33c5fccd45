"""What `ctdenoise report` says of a model, gathered from ML Metadata: a model card.

The fields are model-card-toolkit's schema (model_details, model_parameters,
quantitative_analysis, considerations): the toolkit itself (2.0.0) does not install beside
this stack (it needs absl-py < 1.1 and tensorflow-model-analysis < 0.42), so its field names
are used without it (docs/design.md, "The report a person reads (`ctdenoise report`)").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctdenoise.components.dicom_example_gen.layout import Layout, scan
from ctdenoise.contract.names import PRODUCT, product_version
from ctdenoise.metadata.lineage import model_lineage
from ctdenoise.metadata.queries import run_ids
from ctdenoise.metadata.summary import build_summary

INTENDED_USE = (
    "Research: reducing the noise of low-dose CT series for image-quality studies, training and comparison of "
    "denoisers. Not for diagnostic use: the output is labelled so in every derived series."
)
LIMITATIONS = (
    "Trained on the patients listed under training data only; other scanners, kernels, doses and anatomy may "
    "be denoised worse than the evaluation figures say.",
    "The evaluation patients are few: the per-patient spread is as important as the mean.",
    "Gains are measured against the normal-dose series as reference, which is itself noisy.",
    "A denoiser can remove or invent small structures (lesions, vessels): read derived series beside their source.",
)


class ReportError(ValueError):
    """No run or model to report on; the message is one line."""


@dataclass(frozen=True)
class ReportedRun:
    """The pipeline run a report is about: its summary and the lineage of its model."""

    summary: dict[str, Any]
    lineage: dict[str, Any]
    model_dir: str
    blessed: bool


def find_run(store, pipeline_name: str, model: str) -> ReportedRun:
    """The newest run that trained a model (`latest`), or the run whose Model artifact or
    pushed copy is `model`."""
    from tfx.utils import path_utils

    wanted = model.rstrip("/")
    for run in sorted(run_ids(store, pipeline_name), reverse=True):
        summary = build_summary(store, run, None, pipeline_name)
        model_uri = (summary.get("train") or {}).get("model_uri")
        pushed = (summary.get("push") or {}).get("path") if (summary.get("push") or {}).get("pushed") else None
        if model_uri and (model == "latest" or wanted in (model_uri, pushed)):
            blessed = bool((summary.get("evaluation") or {}).get("blessed"))
            model_dir = pushed or path_utils.serving_model_dir(model_uri)
            return ReportedRun(summary, model_lineage(store, model_uri, pipeline_name), model_dir, blessed)
    raise ReportError(f"no run of this run root trained {'a model' if model == 'latest' else model}")


def model_card(run: ReportedRun, sources: dict[str, str] | None = None) -> dict[str, Any]:
    """The model card of `run`, in model-card-toolkit's field names; `sources` names where the
    training data came from, each with its licence and what the licence asks of whoever ships the
    model (the base models', `ctdenoise.app.base_models.SOURCES`)."""
    properties = run.lineage["properties"]
    hparams = properties.get("hparams") or {}
    examples = _find(run.lineage, "Examples") or {}
    data_root = (examples.get("properties") or {}).get("data_root", "")
    evaluation = run.summary.get("evaluation") or {}
    version = (run.summary.get("push") or {}).get("version") or Path(run.model_dir).name
    return {
        "model_details": {
            "name": f"{PRODUCT} {hparams.get('model', '?')} generator",
            "overview": "Denoises low-dose CT slices (Hounsfield units in, Hounsfield units out).",
            "version": {"name": version, "date": run.lineage.get("produced_by", {}).get("end", "")},
            "licenses": [{"identifier": "Apache-2.0"}],
            "references": [{"reference": f"{PRODUCT} {product_version()}"}],
            "path": run.model_dir,
        },
        "model_parameters": {
            "model_architecture": hparams.get("model", "?"),
            "hyperparameters": hparams,
            "data": _datasets(data_root, set(evaluation.get("per_patient", {})), examples.get("properties") or {}),
            "data_sources": [{"name": name, "license": text} for name, text in (sources or {}).items()],
            "input_format": "[N, H, W, 1] float32 HU",
            "output_format": "denoised HU, the input's shape",
        },
        "quantitative_analysis": {"performance_metrics": _metrics(evaluation)},
        "considerations": {
            "use_cases": [{"description": INTENDED_USE}],
            "limitations": [{"description": text} for text in LIMITATIONS],
        },
        "gate": {
            "blessed": run.blessed,
            "failures": evaluation.get("failures", []),
            "pushed": bool((run.summary.get("push") or {}).get("pushed")),
        },
        "training": {
            key: properties.get(key)
            for key in ("train_steps", "train_seconds", "final_losses", "psnr", "tensorboard_dir")
        },
        "lineage": run.lineage,
    }


def _find(tree: Any, type_name: str) -> dict[str, Any] | None:
    """The first artifact of `type_name` in a lineage tree, depth first."""
    children: Iterable[Any]
    if isinstance(tree, dict):
        if tree.get("type") == type_name:
            return tree
        children = tree.values()
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    for child in children:
        found = _find(child, type_name)
        if found is not None:
            return found
    return None


def _datasets(data_root: str, eval_patients: set[str], examples: dict[str, Any]) -> list[dict[str, Any]]:
    """The training and evaluation data: patients and their LDCT and NDCT file counts (the
    default layout; another layout is described by counts only)."""
    found = scan(data_root, Layout()).found if data_root else []
    counts: dict[str, dict[str, int]] = {}
    for item in found:
        counts.setdefault(item.patient_id, {"ldct": 0, "ndct": 0})[item.dose] += 1
    split = {"train": sorted(set(counts) - eval_patients), "eval": sorted(eval_patients)}
    return [
        {
            "name": name,
            "link": data_root,
            "patients": {p: counts.get(p, {}) for p in patients},
            "examples": examples.get(f"{name}_examples"),
        }
        for name, patients in split.items()
    ]


def _metrics(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric of every role (LDCT as it is, candidate, last blessed model), overall and per patient."""
    rows = []
    for scope, roles in [("overall", evaluation.get("overall", {})), *evaluation.get("per_patient", {}).items()]:
        for role, metrics in roles.items():
            if isinstance(metrics, dict):
                rows += [
                    {"type": name, "value": value, "slice": scope, "role": role} for name, value in metrics.items()
                ]
    return rows
