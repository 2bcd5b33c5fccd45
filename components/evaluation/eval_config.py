"""The `tfma.EvalConfig` that gates a denoiser in the standard TFX Evaluator.

Metrics (per model, overall and per `patient_id`): PSNR / SSIM (normalised, data range 2) and
RMSE in HU (whole slice, body mask) of the denoised LDCT vs NDCT, the same for the LDCT as
it is (no denoising, prefixed ``ldct_``), and the gains denoised − LDCT.

Gate (`BlessingThresholds`; on the overall slice unless `per_patient`):
* value: ``psnr_gain >= psnr_margin_db`` (candidate PSNR beats LDCT PSNR by the margin),
  ``ssim_gain >= -ssim_tolerance`` (SSIM must not drop below the LDCT's), and inside the
  body, where whole-slice figures are dominated by air: ``body_rmse_reduction >=
  body_rmse_margin`` (the in-body RMSE is that share lower than the LDCT's) and
  ``body_ssim_gain >= -body_ssim_tolerance``;
* change vs the latest blessed model (TFMA's ``is_baseline`` ModelSpec, named
  ``latest_blessed`` here, only when `with_latest_blessed`): ``psnr`` may drop by at most
  `max_psnr_drop_db`, ``ssim`` by at most `max_ssim_drop`.

The TFX Evaluator strips the ``is_baseline`` spec and change thresholds itself on the first
run, when no blessed model exists yet.
"""
from __future__ import annotations

from typing import Optional

import tensorflow_model_analysis as tfma

from components.evaluation import tfma_metrics as m
from components.evaluation.thresholds import BlessingThresholds
from contract import features as feature_contract
from contract.names import EXAMPLES_SIGNATURE, OUTPUT_KEY

CANDIDATE = "candidate"
LATEST_BLESSED = "latest_blessed"
"""TFMA model name of the latest blessed model (TFMA's "baseline" model)."""
IMAGE_METRICS = {"psnr": m.PSNR, "ssim": m.SSIM, "rmse_hu": m.RMSEHU, "body_rmse_hu": m.BodyRMSEHU,
                 "body_ssim": m.BodySSIM}
"""Metric name → class: each is computed for the model's output and, prefixed, for the LDCT as it is."""
LDCT_PREFIX = "ldct_"
GAINS = ("psnr_gain", "ssim_gain", "body_ssim_gain", "body_rmse_reduction")
"""What the candidate gains over the LDCT as it is."""


def _model_spec(name: str, is_baseline: bool = False) -> tfma.ModelSpec:
    return tfma.ModelSpec(
        name=name, signature_name=EXAMPLES_SIGNATURE, prediction_key=OUTPUT_KEY, is_baseline=is_baseline,
    )


def _value_threshold(lower_bound: float) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}))


def _change_threshold(max_drop: float) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -abs(max_drop)}))


def _gated(cls: type, threshold: Optional[tfma.MetricThreshold], per_patient: bool,
           **config) -> tfma.MetricConfig:
    """A metric config whose threshold applies to the overall slice only, or to every slice."""
    if threshold is None or per_patient:
        return m.metric_config(cls, threshold, **config)
    result = m.metric_config(cls, **config)
    result.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
    return result


def eval_config(
    thresholds: BlessingThresholds = BlessingThresholds(),
    with_latest_blessed: bool = True,
) -> tfma.EvalConfig:
    """EvalConfig with slicing overall + `patient_id` and the gate described in the module doc.

    `with_latest_blessed` adds an ``is_baseline`` ModelSpec (the latest blessed model) and the
    change thresholds.
    """
    model_specs = [_model_spec(CANDIDATE)]
    if with_latest_blessed:
        model_specs.append(_model_spec(LATEST_BLESSED, is_baseline=True))

    def change(max_drop: float) -> Optional[tfma.MetricThreshold]:
        return _change_threshold(max_drop) if with_latest_blessed else None

    per_patient = thresholds.per_patient
    metrics = [
        _gated(m.PSNR, change(thresholds.max_psnr_drop_db), per_patient),
        _gated(m.SSIM, change(thresholds.max_ssim_drop), per_patient),
        m.metric_config(m.RMSEHU),
        m.metric_config(m.BodyRMSEHU),
        m.metric_config(m.BodySSIM),
        *(m.metric_config(cls, name=LDCT_PREFIX + name, reference="ldct") for name, cls in IMAGE_METRICS.items()),
        _gated(m.PSNRGain, _value_threshold(thresholds.psnr_margin_db), per_patient),
        _gated(m.SSIMGain, _value_threshold(-abs(thresholds.ssim_tolerance)), per_patient),
        _gated(m.BodyRMSEReduction, _value_threshold(thresholds.body_rmse_margin), per_patient),
        _gated(m.BodySSIMGain, _value_threshold(-abs(thresholds.body_ssim_tolerance)), per_patient),
        tfma.MetricConfig(class_name="ExampleCount"),
    ]
    return tfma.EvalConfig(
        model_specs=model_specs,
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[feature_contract.PATIENT_ID])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )
