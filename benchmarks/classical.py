"""Classical denoisers the generator is compared with, on HU slices, and the generator itself
through the product's `ctdenoise denoise` model path.

Every method works on the normalised image the generator sees (HU clipped to
[-1024, 2000] and mapped to [-1, 1]) and returns HU, so all outputs are clipped alike.
Strengths are relative to the slice's noise level, the estimate the learned models are given
(`ctdenoise.contract.noise_level`: the noise's standard deviation in flat soft tissue); white-noise
methods given it see correlated CT (FBP) noise as stronger or weaker than it is, so the quality
benchmark tunes the factor on separate slices rather than trusting it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctdenoise.contract.hu import DATA_RANGE, HU_MAX, HU_MIN, denormalize_hu, normalize_hu
from ctdenoise.contract.noise_level import noise_level_hu

NLM_PATCH_SIZE, NLM_PATCH_DISTANCE = 5, 6
"""skimage's documented example values; fast_mode=True."""

Denoiser = Callable[[np.ndarray], np.ndarray]
"""[H, W] HU → [H, W] HU."""


def noise_sigma(hu: np.ndarray) -> float:
    """The slice's noise level (`noise_level_hu`, what the learned models are given) in the
    normalised image's units."""
    return noise_level_hu(np.clip(hu, HU_MIN, HU_MAX)) * DATA_RANGE / (HU_MAX - HU_MIN)


def gaussian(sigma_px: float) -> Denoiser:
    from scipy.ndimage import gaussian_filter

    return lambda hu: denormalize_hu(gaussian_filter(normalize_hu(hu), sigma_px))


def nlm(h_factor: float) -> Denoiser:
    """Non-local means with h = h_factor × estimated sigma (skimage suggests 0.8 for fast mode)."""
    from skimage.restoration import denoise_nl_means

    def run(hu: np.ndarray) -> np.ndarray:
        sigma = noise_sigma(hu)
        return denormalize_hu(
            denoise_nl_means(
                normalize_hu(hu),
                h=h_factor * sigma,
                sigma=sigma,
                fast_mode=True,
                patch_size=NLM_PATCH_SIZE,
                patch_distance=NLM_PATCH_DISTANCE,
            )
        )

    return run


def bm3d(sigma_factor: float) -> Denoiser:
    """BM3D (`bm3d` package, default profile) with sigma_psd = sigma_factor × estimated sigma."""
    import bm3d as bm3d_lib

    return lambda hu: denormalize_hu(bm3d_lib.bm3d(normalize_hu(hu), sigma_psd=sigma_factor * noise_sigma(hu)))


def noise_psd(ldct_hu: np.ndarray, ndct_hu: np.ndarray) -> np.ndarray:
    """The shape of the noise's power spectrum from LDCT − NDCT slice pairs ([N, H, W] HU), on
    the normalised images: the mean |FFT|² scaled to unit variance, in the `bm3d` package's
    convention (white noise of std σ has the flat PSD σ² · H · W). FBP noise is correlated:
    most of its power sits at middle frequencies, not spread flat as BM3D's white model assumes."""
    noise = normalize_hu(ldct_hu) - normalize_hu(ndct_hu)
    noise = noise - noise.mean(axis=(1, 2), keepdims=True)
    power = np.mean(np.abs(np.fft.fft2(noise)) ** 2, axis=0)
    height, width = power.shape
    return power / power.mean() * height * width


def bm3d_psd(psd: np.ndarray, sigma_factor: float) -> Denoiser:
    """BM3D given the noise's power spectrum: `psd` (unit variance, `noise_psd`) scaled by
    (sigma_factor × estimated sigma)², so its level follows each slice's dose."""
    import bm3d as bm3d_lib

    def run(hu: np.ndarray) -> np.ndarray:
        if hu.shape != psd.shape:
            raise ValueError(f"slice {hu.shape} differs from the noise spectrum's {psd.shape}")
        return denormalize_hu(bm3d_lib.bm3d(normalize_hu(hu), sigma_psd=psd * (sigma_factor * noise_sigma(hu)) ** 2))

    return run


def saved_model(model_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The exported generator loaded exactly as `ctdenoise denoise` loads it:
    [N, H, W, 1] float32 HU → denoised HU."""
    from ctdenoise.app.denoise import load_model

    return load_model(str(model_dir))


def export_untrained(preset_name: str, export_dir: Path) -> Path:
    """A freshly initialised generator of a preset's architecture, exported as the Trainer
    exports: enough for speed (which does not depend on the weights)."""
    from ctdenoise.trainer_module.export import Description, export_generator
    from ctdenoise.trainer_module.hparams import to_dict
    from ctdenoise.trainer_module.models import build, preset

    model = build(preset(preset_name))
    export_generator(
        model.generator,
        Description.of(model),
        str(export_dir),
        {"hparams": to_dict(preset(preset_name)), "benchmark": "untrained, for timing"},
    )
    return export_dir
