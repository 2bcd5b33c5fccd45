"""BM3D given the noise's power spectrum (benchmarks/classical.py): the spectrum is estimated
in the `bm3d` package's convention, and knowing it helps BM3D on correlated noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from benchmarks import classical
from ctdenoise.contract.hu import normalize_hu


def _correlated(rng: np.random.Generator, count: int, size: int = 64) -> np.ndarray:
    """Noise in HU whose power sits at low and middle frequencies, as FBP noise's does."""
    return np.stack([gaussian_filter(rng.normal(0, 1, (size, size)), 1.5, mode="wrap") for _ in range(count)]) * 200


def test_white_noise_gives_a_flat_spectrum_of_unit_variance_in_bm3ds_convention():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 30, (200, 32, 32))
    psd = classical.noise_psd(noise, np.zeros_like(noise))
    assert psd.mean() == pytest.approx(32 * 32)  # white noise of std 1: sigma² · H · W
    assert psd.std() / psd.mean() < 0.15  # flat, up to the estimate's own noise


def test_correlated_noise_puts_its_power_at_low_frequencies():
    noise = _correlated(np.random.default_rng(1), 50)
    psd = classical.noise_psd(noise, np.zeros_like(noise))
    assert psd[1, 1] > 10 * psd[32, 32]  # near DC against the highest frequency


def test_bm3d_given_the_spectrum_removes_more_correlated_noise_than_white_bm3d_at_the_same_strength():
    rng = np.random.default_rng(2)
    psd = classical.noise_psd(_correlated(rng, 50), np.zeros((50, 64, 64)))
    clean = np.full((64, 64), 40.0)
    noisy = clean + _correlated(rng, 1)[0]
    errors = {
        name: np.sqrt(np.mean((normalize_hu(method(noisy)) - normalize_hu(clean)) ** 2))
        for name, method in (("white", classical.bm3d(4.0)), ("psd", classical.bm3d_psd(psd, 4.0)))
    }
    assert errors["psd"] < errors["white"]


def test_a_slice_of_another_size_than_the_spectrum_is_refused():
    psd = classical.noise_psd(np.random.default_rng(3).normal(0, 30, (2, 32, 32)), np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match=r"slice \(16, 16\) differs from the noise spectrum's \(32, 32\)"):
        classical.bm3d_psd(psd, 1.0)(np.zeros((16, 16)))
