"""Scores of one denoiser's output on one image set: fidelity against the noise-free truth and
against the noisy NDCT, in-body error, the error by region of the truth, noise in uniform
regions, and, on the QA phantom, noise texture (NPS) and edge sharpness (MTF50, 10–90 %
rise) relative to the NDCT's.

Fidelity uses the product's metric table (`ctdenoise.components.evaluation.metric_table`);
the physics measures are `benchmarks.ct_measures` (docs/design.md, "Measuring denoising quality").
"""

from __future__ import annotations

import numpy as np

from benchmarks import ct_measures as ct
from benchmarks.quality_sets import Images, QAScans

NPS_ROI_PX = 32
"""Side of the NPS regions: nine fit in the QA phantom's water at 256 px."""


def fidelity(output: np.ndarray, images: Images, against: tuple[str, ...] = ("truth", "ndct")) -> dict[str, float]:
    """Every metric of the product's table (`metric_table.METRICS`), defined and pooled over
    the slices as the Evaluator does, against each reference of `against` (the truth, the
    NDCT): keys ``<metric>_truth`` and ``<metric>_ndct``. A real source has no noise-free
    truth (its reference is its NDCT), so its sets are scored against the NDCT alone."""
    from ctdenoise.components.evaluation.metric_table import METRICS, score

    return {
        f"{entry.name}_{suffix}": score(entry, output, getattr(images, suffix))
        for suffix in against
        for entry in METRICS
    }


def slice_body_rmse(output: np.ndarray, reference: np.ndarray) -> float:
    """One slice's in-body RMSE (HU) against `reference`, as the metric table defines it."""
    from ctdenoise.components.evaluation.metric_table import BY_NAME, score

    return score(BY_NAME["body_rmse_hu"], [output], [reference])


def body_rmse_by_slice(output: np.ndarray, images: Images) -> list[float]:
    """Each slice's in-body RMSE against its NDCT: the figure by which a model must never make a
    slice worse than its LDCT."""
    return [slice_body_rmse(o, r) for o, r in zip(output, images.ndct, strict=True)]


def noise_in_uniform_regions(output: np.ndarray, images: Images) -> float:
    """Noise std (HU) of output − truth inside the truth's flat regions, pooled over slices."""
    masks = np.stack([ct.uniform_mask(truth) for truth in images.truth])
    return ct.noise_std(output, images.truth, masks) if masks.any() else float("nan")


def region_errors(output: np.ndarray, images: Images) -> dict[str, float]:
    """Per region of the truth (`ct_measures.truth_regions`), pooled over slices: the RMSE
    and mean error (bias) in HU of the output against the truth, and the region's share of
    the slice's squared error, on HU clipped to the product's window as PSNR sees it."""
    from ctdenoise.contract.hu import HU_MAX, HU_MIN

    error = np.clip(output, HU_MIN, HU_MAX).astype(np.float64) - np.clip(images.truth, HU_MIN, HU_MAX)
    regions = [ct.truth_regions(truth) for truth in images.truth]
    total = float(np.sum(error**2))
    scores = {}
    for name in regions[0]:
        values = np.concatenate([e[r[name]] for e, r in zip(error, regions, strict=True)])
        key = name.replace(" ", "_")
        scores[f"{key}_rmse"] = float(np.sqrt(np.mean(values**2))) if values.size else float("nan")
        scores[f"{key}_bias"] = float(np.mean(values)) if values.size else float("nan")
        scores[f"{key}_share"] = float(np.sum(values**2) / total) if total else float("nan")
    return scores


def qa(output: np.ndarray, scans: QAScans) -> dict[str, float]:
    """On the QA phantom: noise std in water, the NPS mean frequency, and per rod the MTF50
    (cycles/mm) and 10–90 % edge rise (mm) of the edge profile averaged over all scans."""
    mask = np.broadcast_to(ct.uniform_mask(scans.truth[0]), output.shape)
    noise = output - scans.truth
    freq, spectrum = ct.nps(noise, mask, NPS_ROI_PX, scans.pixel_mm)
    scores = {
        "noise_std": ct.noise_std(output, scans.truth, mask),
        "nps_mean_frequency": ct.nps_mean_frequency(freq, spectrum),
    }
    for rod in scans.rods:
        profiles = [ct.edge_spread(image, rod.centre_px, rod.radius_px) for image in output]
        distance, esf = profiles[0][0], np.mean([p[1] for p in profiles], axis=0)
        mtf_freq, mtf = ct.mtf_from_esf(distance, esf, scans.pixel_mm)
        label = f"{rod.hu:+.0f}"
        scores[f"mtf50_{label}"] = ct.mtf50(mtf_freq, mtf)
        scores[f"edge_rise_{label}"] = ct.edge_rise_10_90(distance, esf, scans.pixel_mm)
    return scores


def mean_mtf50(scores: dict[str, float]) -> float:
    """The rods' MTF50 averaged: one figure of edge sharpness."""
    return float(np.nanmean([v for k, v in scores.items() if k.startswith("mtf50_")]))
