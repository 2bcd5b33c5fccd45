"""Read what the Evaluator wrote back into plain dicts: for the run summary, the demo's
table and lineage.

Names in the result: ``ldct`` is the LDCT as it is (no denoising), ``candidate`` the model
under evaluation, ``baseline`` the model it must be no worse than (TFMA's "baseline" model;
present only where there is one: the latest blessed model, or the model training started from).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow_model_analysis as tfma

from ctdenoise.components.evaluation import metric_table as table
from ctdenoise.components.evaluation.eval_config import BASELINE
from ctdenoise.contract.features import PATIENT_ID
from ctdenoise.storage import files


def read_evaluation(evaluation_uri: str) -> dict[str, Any]:
    """Metrics overall and per patient, plus every failed threshold, of one ModelEvaluation."""
    overall: dict[str, Any] = {}
    per_patient: dict[str, Any] = {}
    for metrics in tfma.load_metrics(files.tf_path(evaluation_uri)):
        keys = {k.column: k.bytes_value.decode() for k in metrics.slice_key.single_slice_keys}
        target = per_patient.setdefault(keys[PATIENT_ID], {}) if keys else overall
        for item in metrics.metric_keys_and_values:
            if not item.key.is_diff:
                _place(target, item.key.name, item.key.model_name, item.value.double_value.value)
    return {"overall": overall, "per_patient": per_patient, "failures": _failures(evaluation_uri)}


_CANDIDATE_NAMES = {entry.name for entry in table.METRICS} | {entry.gain_name for entry in table.GATED}
"""What a model's row holds: every table entry and each gated entry's comparison with the LDCT."""


def _place(target: dict[str, Any], name: str, model_name: str, value: float) -> None:
    """Sort one metric into ldct / candidate / baseline / gains / slices."""
    kept = value if math.isfinite(value) else None
    role = BASELINE if model_name == BASELINE else "candidate"
    if name == "example_count":
        target.setdefault("slices", int(value))
    elif name.startswith(table.LDCT_PREFIX):
        target.setdefault("ldct", {})[name.removeprefix(table.LDCT_PREFIX)] = kept
    elif name in _CANDIDATE_NAMES:
        target.setdefault(role, {})[name] = kept


def _failures(evaluation_uri: str) -> list[str]:
    """Each failed threshold as `slice: metric value vs threshold`."""
    result = tfma.load_validation_result(files.tf_path(evaluation_uri))
    lines = []
    for per_slice in result.metric_validations_per_slice:
        where = ", ".join(f"{k.column}={k.bytes_value.decode()}" for k in per_slice.slice_key.single_slice_keys)
        for failure in per_slice.failures:
            lines.append(
                f"{where or 'overall'}: {failure.metric_key.name} "
                f"{failure.metric_value.double_value.value:.4g} fails {_threshold(failure.metric_threshold)}"
            )
    return lines


def _threshold(threshold) -> str:
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold
        if bound.HasField("lower_bound"):
            return f">= {bound.lower_bound.value:.4g}"
        return f"<= {bound.upper_bound.value:.4g}"
    change = threshold.change_threshold
    return f"change vs baseline >= {change.absolute.value:.4g}"
