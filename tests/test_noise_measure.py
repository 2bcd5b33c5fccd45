"""Noise measured in a slice's flat soft tissue (ctdenoise/contract/noise.py), against known answers:
the level and grain of white and blurred noise, and regions that keep clear of edges, air and bone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ctdenoise.contract.noise import flat_rois, measure, roi_side


def _body(size: int = 256) -> np.ndarray:
    """A 40 HU disc in air with a 700 HU bone disc inside it."""
    rows, cols = np.mgrid[:size, :size] - size / 2
    hu = np.where(rows**2 + cols**2 <= (0.45 * size) ** 2, 40.0, -1000.0)
    hu[(rows - 40) ** 2 + cols**2 <= 20**2] = 700.0
    return hu


def test_white_noise_has_its_level_and_a_flat_spectrums_mean_frequency() -> None:
    rng = np.random.default_rng(0)
    body = _body()
    rois = flat_rois(body + rng.normal(0, 10, body.shape))
    assert rois is not None and rois.side == roi_side(256) == 24
    noise = rng.normal(0, 10, body.shape)
    stats = measure(body + noise, rois, pixel_spacing_mm=0.5)
    assert stats.sigma_hu == pytest.approx(10, rel=0.05)  # less the little a quadratic surface takes away
    # a flat profile over the annuli 1 … side/2 of width 1/(side · spacing): their mean centre, a
    # little over half of Nyquist; the quadratic surface takes a little of the lowest annulus
    flat = (rois.side // 2 + 1) / 2 / (rois.side * 0.5)
    assert stats.mean_frequency == pytest.approx(flat, rel=0.05)


def test_blurred_noise_is_coarser_and_the_spacing_scales_the_frequency() -> None:
    rng = np.random.default_rng(1)
    body = _body()
    rois = flat_rois(body)
    assert rois is not None
    white = rng.normal(0, 10, body.shape)
    blurred = ndimage.gaussian_filter(white, 1.0)
    fine = measure(body + white, rois, 1.0).mean_frequency
    assert measure(body + blurred, rois, 1.0).mean_frequency < 0.7 * fine
    assert measure(body + white, rois, 2.0).mean_frequency == pytest.approx(fine / 2)


def test_regions_lie_in_soft_tissue_and_a_smooth_gradient_is_not_noise() -> None:
    body = _body()
    rois = flat_rois(body)
    assert rois is not None
    for r, c in rois.corners:
        patch = body[r : r + rois.side, c : c + rois.side]
        assert patch.min() >= -300 and patch.max() <= 400  # no air, no bone
    rows, cols = np.mgrid[:256, :256]
    sloped = body + 0.05 * rows + 0.0002 * cols**2  # cupping-like anatomy, no noise
    assert measure(sloped, rois, 1.0).sigma_hu < 0.01


def test_a_slice_without_soft_tissue_has_no_regions() -> None:
    assert flat_rois(np.full((128, 128), -1000.0)) is None
