"""Image-quality metrics for CT denoising, as pure functions on NumPy arrays.

Conventions (the contract's, `ctdenoise.contract.hu`, shared with the trainer):
* HU images are truncated to the model's window [-1024, 2000] and mapped linearly to
  [-1, 1] before PSNR / SSIM, so the data range is 2.
* RMSE is reported in raw HU (no truncation) over the whole slice and inside a body mask
  (reference NDCT HU > `ctdenoise.contract.hu.BODY_HU`).
* SSIM is `tf.image.ssim` (11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, "valid"
  filtering), over the whole slice or, body SSIM, averaged over the windows centred in the
  body mask; it agrees with `skimage.metrics.structural_similarity(..., data_range=2,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`.
"""

from __future__ import annotations

import numpy as np

from ctdenoise.contract.hu import BODY_HU, DATA_RANGE, normalize_hu


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


SSIM_WINDOW = 11
"""Side of SSIM's Gaussian window; its map covers the image less (SSIM_WINDOW - 1) / 2 pixels on each side."""


def ssim_map(image: np.ndarray, reference: np.ndarray, data_range: float = DATA_RANGE) -> np.ndarray:
    """Local structural similarity (tf.image.ssim's index map) of `image` against `reference`
    (normalised): [H - 10, W - 10], one value per position of the 11×11 window.

    Both sides must be at least 11×11 (the Gaussian window).
    """
    import tensorflow as tf  # local: keeps the NumPy-only functions importable without TF

    image, reference = _check_pair(image, reference)
    a = tf.constant(image[None, :, :, None], dtype=tf.float32)
    b = tf.constant(reference[None, :, :, None], dtype=tf.float32)
    index = tf.image.ssim(
        a, b, max_val=data_range, filter_size=SSIM_WINDOW, filter_sigma=1.5, k1=0.01, k2=0.03, return_index_map=True
    )
    return index.numpy()[0].astype(np.float64)  # [N, H - 10, W - 10]: channels are averaged


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Mean structural similarity (tf.image.ssim) of `image` against `reference` (normalised)."""
    return float(ssim_map(image, reference, data_range).mean())


def body_mask(reference_hu: np.ndarray, threshold: float = BODY_HU) -> np.ndarray:
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


def body_rmse_hu(image_hu: np.ndarray, reference_hu: np.ndarray, threshold: float = BODY_HU) -> float:
    """RMSE in HU inside the body mask of the reference."""
    return rmse_hu(image_hu, reference_hu, body_mask(reference_hu, threshold))


def psnr_hu(image_hu: np.ndarray, reference_hu: np.ndarray) -> float:
    """PSNR of two HU images after the standard normalisation (data range 2)."""
    return psnr(normalize_hu(image_hu), normalize_hu(reference_hu))


def ssim_hu(image_hu: np.ndarray, reference_hu: np.ndarray) -> float:
    """SSIM of two HU images after the standard normalisation (data range 2)."""
    return ssim(normalize_hu(image_hu), normalize_hu(reference_hu))


def body_ssim_hu(image_hu: np.ndarray, reference_hu: np.ndarray) -> float:
    """SSIM of two HU images (normalised) averaged over the windows centred in the body mask
    of the reference: the structure a reader looks at, without the air around it."""
    margin = (SSIM_WINDOW - 1) // 2
    local = ssim_map(normalize_hu(image_hu), normalize_hu(reference_hu))
    body = body_mask(reference_hu)[margin:-margin, margin:-margin]
    return float(local[body].mean()) if body.any() else float("nan")
