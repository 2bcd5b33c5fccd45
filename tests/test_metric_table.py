"""The metric table is the one place an image metric is named: every entry reaches the TFMA
metrics, the gate's thresholds, what `results` reads back, the run summary's columns and the
benchmarks' scores (docs/design.md, "Pipeline metrics and the blessing gate")."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from benchmarks import quality_scores, render
from benchmarks.quality_sets import Images
from ctdenoise.components.evaluation import metric_table as table
from ctdenoise.components.evaluation.eval_config import BASELINE, eval_config
from ctdenoise.components.evaluation.image_metrics import psnr_hu
from ctdenoise.components.evaluation.results import _place
from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.metadata.summary import evaluation_table


def _configs(thresholds: BlessingThresholds = BlessingThresholds()) -> dict[str, Any]:
    """TFMA metric name → its MetricConfig, for every image metric of the EvalConfig."""
    metrics = eval_config(thresholds).metrics_specs[0].metrics
    return {json.loads(m.config)["name"]: m for m in metrics if m.class_name == "ImageMetric"}


def _stack(seed: int, count: int = 3, size: int = 48) -> np.ndarray:
    """Slices of a body (soft tissue) in air, with noise of `seed`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    body = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2, 40.0, -1000.0)
    return np.stack([body + rng.normal(0, 20, body.shape) for _ in range(count)])


def test_every_entry_reaches_tfma_for_the_model_and_the_ldct_and_its_gate_comparison():
    configs = _configs()
    for entry in table.METRICS:
        assert entry.name in configs and table.LDCT_PREFIX + entry.name in configs
        if entry.gate is not None:
            assert entry.gain_name in configs
    expected = (
        {e.name for e in table.METRICS}
        | {table.LDCT_PREFIX + e.name for e in table.METRICS}
        | {e.gain_name for e in table.GATED}
    )
    assert set(configs) == expected


def test_every_gated_entry_gets_its_bound_from_the_thresholds():
    thresholds = BlessingThresholds(
        psnr_margin_db=0.7,
        ssim_tolerance=0.01,
        body_rmse_margin=0.2,
        body_ssim_tolerance=0.02,
        max_psnr_drop_db=0.3,
        max_ssim_drop=0.004,
    )
    configs = _configs(thresholds)
    for entry in table.GATED:
        threshold = configs[entry.gain_name].per_slice_thresholds[0].threshold
        assert threshold.value_threshold.lower_bound.value == pytest.approx(entry.judged.lower_bound(thresholds))
    changed = [entry for entry in table.METRICS if entry.change]
    assert changed
    for entry in changed:
        threshold = configs[entry.name].per_slice_thresholds[0].threshold
        assert entry.change is not None
        assert threshold.change_threshold.absolute.value == pytest.approx(-getattr(thresholds, entry.change))
    assert table.BY_NAME["psnr"].judged.lower_bound(thresholds) == 0.7
    assert table.BY_NAME["ssim"].judged.lower_bound(thresholds) == -0.01


def test_every_entry_is_read_back_and_shown_in_the_summary():
    evaluation: dict = {}
    for position, entry in enumerate(table.METRICS):
        _place(evaluation, entry.name, "candidate", 1.0 + position)
        _place(evaluation, table.LDCT_PREFIX + entry.name, "candidate", 2.0 + position)
    for entry in table.GATED:
        _place(evaluation, entry.gain_name, "candidate", 0.5)
    assert set(evaluation["candidate"]) == {e.name for e in table.METRICS} | {e.gain_name for e in table.GATED}
    assert set(evaluation["ldct"]) == {e.name for e in table.METRICS}
    lines = evaluation_table({"overall": evaluation, "per_patient": {}, "blessed": True, "failures": []})
    for entry in table.METRICS:
        assert entry.title in lines[1]
    candidate_row = next(line for line in lines if "denoised" in line)
    assert "-" not in candidate_row.split("denoised")[1]  # a value in every column


def test_the_summary_shows_the_baseline_row_only_where_the_gate_had_one():
    evaluation: dict = {}
    for entry in table.METRICS:
        _place(evaluation, table.LDCT_PREFIX + entry.name, "candidate", 3.0)
        _place(evaluation, entry.name, "candidate", 2.0)
    alone = evaluation_table({"overall": evaluation, "per_patient": {}, "blessed": True, "failures": []})
    assert not any("baseline" in line for line in alone)
    for entry in table.METRICS:
        _place(evaluation, entry.name, BASELINE, 1.0)
    lines = evaluation_table({"overall": evaluation, "per_patient": {}, "blessed": False, "failures": []})
    labels = [line.split()[2] for line in lines if line.startswith("  all patients")]
    assert labels == ["LDCT", "baseline", "denoised"]
    baseline_row = next(line for line in lines if "baseline" in line)
    assert "1.0" in baseline_row and "2.0" not in baseline_row


def test_the_benchmarks_score_every_entry_against_the_truth_and_the_ndct():
    truth = _stack(0)
    images = Images(ldct=_stack(1), ndct=_stack(2), truth=truth)
    output = _stack(3)
    scores = quality_scores.fidelity(output, images)
    for entry in table.METRICS:
        assert scores[f"{entry.name}_truth"] == pytest.approx(table.score(entry, output, truth))
        assert scores[f"{entry.name}_ndct"] == pytest.approx(table.score(entry, output, images.ndct))
    assert {key for key, _, _ in render._FIDELITY} <= set(scores)


def test_rooted_entries_pool_the_squared_error_and_the_others_average_slices():
    reference = _stack(0)
    image = reference.copy()
    image[0] += 30.0  # one slice off by 30 HU everywhere, the others exact
    rmse = table.BY_NAME["rmse_hu"]
    assert table.score(rmse, image, reference) == pytest.approx(30.0 / np.sqrt(len(image)))
    psnr = table.BY_NAME["psnr"]
    assert table.score(psnr, image[:1], reference[:1]) == pytest.approx(psnr_hu(image[0], reference[0]))


def test_the_gate_blesses_a_better_stack_and_refuses_a_worse_one():
    ndct = _stack(0)
    ldct = ndct + np.random.default_rng(1).normal(0, 30, ndct.shape)
    better = ndct + np.random.default_rng(2).normal(0, 5, ndct.shape)
    worse = ndct + np.random.default_rng(3).normal(0, 60, ndct.shape)
    assert table.gate(better, ldct, ndct)["blessed"]
    verdict = table.gate(worse, ldct, ndct)
    assert not verdict["blessed"] and verdict["body_rmse_reduction"] < 0 and verdict["psnr_gain"] < 0


def test_an_unknown_metric_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no image metric 'snr'; the table has psnr, ssim"):
        table.metric("snr")
