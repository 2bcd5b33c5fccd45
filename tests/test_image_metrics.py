"""ctdenoise.components.evaluation.image_metrics agrees with skimage.metrics and behaves on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

skimage_metrics = pytest.importorskip("skimage.metrics")
pytest.importorskip("tensorflow")

from ctdenoise.components.evaluation import image_metrics as im  # noqa: E402  (after the importorskip guards)
from ctdenoise.contract.hu import BODY_HU, normalize_hu  # noqa: E402  (after the importorskip guards)


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        skimage_metrics.structural_similarity(
            a, b, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def _phantom(size: int = 96) -> np.ndarray:
    """A structured HU slice: air, a water-like body ellipse, bone ring and soft-tissue blobs."""
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    hu = np.full((size, size), -1024.0)
    body = (x / 0.8) ** 2 + (y / 0.65) ** 2 < 1
    hu[body] = 40.0
    hu[body & ((x / 0.7) ** 2 + (y / 0.55) ** 2 > 0.85)] = 900.0
    hu[(x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.02] = -800.0
    hu[(x + 0.3) ** 2 + (y - 0.2) ** 2 < 0.01] = 1500.0
    return hu


def _pairs():
    rng = np.random.default_rng(0)
    ndct = _phantom()
    yield "random", rng.uniform(-1000, 2000, (64, 80)), rng.uniform(-1000, 2000, (64, 80))
    yield "phantom_noise", ndct + rng.normal(0, 30, ndct.shape), ndct
    yield "phantom_heavy_noise", ndct + rng.normal(0, 200, ndct.shape), ndct
    yield "phantom_blur_shift", np.roll(ndct, 2, axis=1) * 0.9, ndct
    yield "outside_window", ndct * 3.0, ndct


@pytest.mark.parametrize("name,image,ref", list(_pairs()), ids=lambda v: v if isinstance(v, str) else "")
def test_psnr_matches_skimage(name, image, ref):
    a, b = normalize_hu(image), normalize_hu(ref)
    expected = skimage_metrics.peak_signal_noise_ratio(b, a, data_range=2.0)
    assert im.psnr(a, b) == pytest.approx(expected, rel=1e-9)
    assert im.psnr_hu(image, ref) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name,image,ref", list(_pairs()), ids=lambda v: v if isinstance(v, str) else "")
def test_ssim_matches_skimage(name, image, ref):
    a, b = normalize_hu(image), normalize_hu(ref)
    assert im.ssim(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-4)
    assert im.ssim_hu(image[..., None], ref[..., None]) == pytest.approx(_skimage_ssim(a, b), abs=1e-4)


def test_identical_images():
    ref = normalize_hu(_phantom())
    assert im.psnr(ref, ref) == float("inf")
    assert im.ssim(ref, ref) == pytest.approx(1.0, abs=1e-5)
    assert im.rmse_hu(_phantom(), _phantom()) == 0.0


def test_normalize_hu_window():
    np.testing.assert_allclose(normalize_hu(np.array([-3000, -1024, 488, 2000, 4000])), [-1, -1, 0, 1, 1])


def test_rmse_and_body_mask():
    ref = _phantom()
    image = ref + 10.0
    image[ref <= BODY_HU] += 90.0  # error of 100 HU outside the body
    mask = im.body_mask(ref)
    assert mask.dtype == bool and 0 < mask.sum() < mask.size
    assert not mask[0, 0] and mask[48, 48]
    assert im.body_rmse_hu(image, ref) == pytest.approx(10.0)
    frac_out = 1 - mask.mean()
    assert im.rmse_hu(image, ref) == pytest.approx(np.sqrt(100 * mask.mean() + 10000 * frac_out))
    sse, n = im.squared_error_hu(image, ref, mask)
    assert n == mask.sum() and sse == pytest.approx(100.0 * n)
    assert np.isnan(im.rmse_hu(image, ref, np.zeros_like(mask)))


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        im.psnr(np.zeros((8, 8)), np.zeros((8, 9)))
