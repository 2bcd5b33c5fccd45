"""Image-quality metrics for CT denoising, as pure functions on NumPy arrays.

Conventions (shared with the trainer, see `trainer_module.data`):
* HU images are truncated to [HU_MIN, HU_MAX] = [-1000, 2000] and mapped linearly to
  [-1, 1] before PSNR / SSIM, so the data range is 2.
* RMSE is reported in raw HU (no truncation) over the whole slice and inside a body mask
  (reference NDCT HU > BODY_HU_THRESHOLD).
* SSIM is `tf.image.ssim` (11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, "valid"
  filtering); it agrees with `skimage.metrics.structural_similarity(..., data_range=2,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`.
"""
from __future__ import annotations

import numpy as np

from components.features import HU_MAX, HU_MIN

DATA_RANGE = 2.0
"""Data range of normalised images."""
BODY_HU_THRESHOLD = -500.0
"""Reference pixels above this HU belong to the body mask (air and lung-free background excluded)."""


def normalize_hu(hu: np.ndarray) -> np.ndarray:
    """HU → [-1, 1] after truncation to [HU_MIN, HU_MAX] (float64)."""
    hu = np.clip(np.asarray(hu, dtype=np.float64), HU_MIN, HU_MAX)
    return (hu - HU_MIN) / (HU_MAX - HU_MIN) * 2.0 - 1.0


def denormalize_hu(normalised: np.ndarray) -> np.ndarray:
    """[-1, 1] → HU, the inverse of `normalize_hu` inside the window (float64)."""
    return (np.asarray(normalised, dtype=np.float64) + 1.0) / 2.0 * (HU_MAX - HU_MIN) + HU_MIN


def _as_2d(image: np.ndarray) -> np.ndarray:
    """[H, W] or [H, W, 1] → [H, W] float64."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"expected an [H, W] or [H, W, 1] image, got shape {image.shape}")
    return image


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_2d(a), _as_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Peak signal-to-noise ratio in dB of `image` against `reference` (both already normalised).

    Returns +inf for identical images.
    """
    image, reference = _check_pair(image, reference)
    mse = float(np.mean((image - reference) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Mean structural similarity (tf.image.ssim) of `image` against `reference` (normalised).

    Both sides must be at least 11×11 (the Gaussian window).
    """
    import tensorflow as tf  # local: keeps the NumPy-only functions importable without TF

    image, reference = _check_pair(image, reference)
    a = tf.constant(image[None, :, :, None], dtype=tf.float32)
    b = tf.constant(reference[None, :, :, None], dtype=tf.float32)
    value = tf.image.ssim(a, b, max_val=data_range, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)
    return float(value.numpy()[0])


def body_mask(reference_hu: np.ndarray, threshold: float = BODY_HU_THRESHOLD) -> np.ndarray:
    """Boolean [H, W] mask of reference pixels with HU above `threshold`."""
    return _as_2d(reference_hu) > threshold


def squared_error_hu(
    image_hu: np.ndarray, reference_hu: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, int]:
    """(sum of squared HU errors, number of pixels) over `mask` (all pixels when None).

    The building block of pooled RMSE over many slices: sqrt(Σ sse / Σ n).
    """
    image_hu, reference_hu = _check_pair(image_hu, reference_hu)
    diff = image_hu - reference_hu
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim == 3:
            mask = mask[..., 0]
        diff = diff[mask]
    return float(np.sum(diff**2)), int(diff.size)


def rmse_hu(image_hu: np.ndarray, reference_hu: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square error in HU over `mask` (whole slice when None); NaN for an empty mask."""
    sse, n = squared_error_hu(image_hu, reference_hu, mask)
    return float(np.sqrt(sse / n)) if n else float("nan")


def body_rmse_hu(image_hu: np.ndarray, reference_hu: np.ndarray, threshold: float = BODY_HU_THRESHOLD) -> float:
    """RMSE in HU inside the body mask of the reference."""
    return rmse_hu(image_hu, reference_hu, body_mask(reference_hu, threshold))


def psnr_hu(image_hu: np.ndarray, reference_hu: np.ndarray) -> float:
    """PSNR of two HU images after the standard normalisation (data range 2)."""
    return psnr(normalize_hu(image_hu), normalize_hu(reference_hu))


def ssim_hu(image_hu: np.ndarray, reference_hu: np.ndarray) -> float:
    """SSIM of two HU images after the standard normalisation (data range 2)."""
    return ssim(normalize_hu(image_hu), normalize_hu(reference_hu))
