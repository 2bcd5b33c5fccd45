"""The `tfma.EvalConfig` that gates a denoiser in the standard TFX Evaluator.

Metrics (per model, overall and per `patient_id`): every entry of the metric table
(`metric_table.METRICS`) for the denoised LDCT vs NDCT, the same for the LDCT as it is (no
denoising, prefixed ``ldct_``), and, for each entry the gate judges, its comparison with
the LDCT.

Gate (`BlessingThresholds`; on the overall slice unless `per_patient`):
* value: each gated entry's comparison with the LDCT reaches its lower bound
  (``psnr_gain >= psnr_margin_db``, ``ssim_gain >= -ssim_tolerance``, and inside the body,
  where whole-slice figures are dominated by air, ``body_rmse_reduction >=
  body_rmse_margin`` and ``body_ssim_gain >= -body_ssim_tolerance``);
* change vs the baseline (TFMA's ``is_baseline`` ModelSpec, named ``baseline`` here, only
  when `with_baseline`): the latest blessed model, or the model a warm-started run began
  from (`ctdenoise.pipeline.pipeline.build_baseline`); an entry with a `change` field may
  drop by at most that much (``psnr`` by `max_psnr_drop_db`, ``ssim`` by `max_ssim_drop`).

The TFX Evaluator strips the ``is_baseline`` spec and change thresholds itself on the first
run, when no blessed model exists yet.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from ctdenoise.components.evaluation import metric_table as table
from ctdenoise.components.evaluation.tfma_metrics import metric_config
from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.contract import features as feature_contract
from ctdenoise.contract.names import EXAMPLES_SIGNATURE, OUTPUT_KEY

CANDIDATE = "candidate"
BASELINE = "baseline"
"""TFMA model name of the model the candidate must be no worse than: the latest blessed one,
or the one training started from."""


def _model_spec(name: str, is_baseline: bool = False) -> tfma.ModelSpec:
    return tfma.ModelSpec(
        name=name,
        signature_name=EXAMPLES_SIGNATURE,
        prediction_key=OUTPUT_KEY,
        is_baseline=is_baseline,
    )


def _value_threshold(lower_bound: float) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}))


def _change_threshold(max_drop: float) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -abs(max_drop)}
        )
    )


def _gated(config: tfma.MetricConfig, threshold: tfma.MetricThreshold | None, per_patient: bool) -> tfma.MetricConfig:
    """`config`, given a threshold that applies to the overall slice only, or to every slice."""
    if threshold is None:
        return config
    if per_patient:
        config.threshold.CopyFrom(threshold)
    else:
        config.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
    return config


def eval_config(
    thresholds: BlessingThresholds = BlessingThresholds(),
    with_baseline: bool = True,
) -> tfma.EvalConfig:
    """EvalConfig with slicing overall + `patient_id` and the gate described in the module doc.

    `with_baseline` adds an ``is_baseline`` ModelSpec (the baseline model) and the
    change thresholds.
    """
    model_specs = [_model_spec(CANDIDATE)]
    if with_baseline:
        model_specs.append(_model_spec(BASELINE, is_baseline=True))

    metrics = []
    for entry in table.METRICS:
        change = _change_threshold(getattr(thresholds, entry.change)) if entry.change and with_baseline else None
        metrics.append(_gated(metric_config(entry.name), change, thresholds.per_patient))
        metrics.append(metric_config(entry.name, reference="ldct"))
        if entry.gate is not None:
            value = _value_threshold(entry.gate.lower_bound(thresholds))
            metrics.append(_gated(metric_config(entry.name, gain=True), value, thresholds.per_patient))
    metrics.append(tfma.MetricConfig(class_name="ExampleCount"))
    return tfma.EvalConfig(
        model_specs=model_specs,
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[feature_contract.PATIENT_ID])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )
