"""The noise of a CT image, measured in its flat regions: standard deviation and noise power spectrum.

A real scan has no noise-free twin, so its noise is read where its anatomy is flattest: square
regions of interest (ROIs) wholly inside soft tissue, each with its best-fitting quadratic surface removed
(a slow change of anatomy or cupping is not noise), the flattest quarter of them kept. The same
regions then measure any other image of that slice (a simulated low dose, or the noise inserted
into it), so that two measurements compare like with like (docs/design.md, "Noise insertion for
real sources").

The noise power spectrum (NPS) is the mean squared magnitude of the ROIs' Fourier transforms; its
mean frequency, the NPS-weighted mean of the radial frequency (in cycles/mm, up to Nyquist), says
how fine the noise grain is: near-white noise sits near 2/3 of Nyquist, a smooth clinical kernel's
around a third.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SOFT_TISSUE_HU = (-300.0, 400.0)
"""An ROI is measured only where every pixel lies in this range: inside the body, away from air and bone."""
FLATTEST_SHARE = 0.25
"""The share of candidate ROIs kept, the flattest first."""
MIN_ROIS = 3
"""Fewer flat ROIs than this are no measurement."""


@dataclass(frozen=True)
class Rois:
    """Square regions of one slice: their top-left corners and side, in pixels."""

    corners: tuple[tuple[int, int], ...]
    side: int

    def patches(self, image: np.ndarray) -> np.ndarray:
        """The regions of `image`, each with its least-squares quadratic surface removed."""
        return np.stack([_detrended(image[r : r + self.side, c : c + self.side]) for r, c in self.corners])


@dataclass(frozen=True)
class NoiseStats:
    """Noise measured in a slice's flat regions."""

    sigma_hu: float
    mean_frequency: float
    """NPS mean frequency in cycles/mm."""
    rois: int


def roi_side(size: int) -> int:
    """The ROI side for a `size`-pixel slice: a sixteenth of it (32 pixels at 512, some 16–33 mm of
    a patient), at least 24 pixels: small enough to find flat tissue, large enough for an NPS of
    a dozen frequency bins."""
    return max(24, size // 16)


def flat_rois(hu: np.ndarray, side: int | None = None) -> Rois | None:
    """The flattest regions of soft tissue in `hu` (see the module docstring), or None where the
    slice holds fewer than MIN_ROIS candidates."""
    side = side or roi_side(hu.shape[0])
    step = side // 2
    low, high = SOFT_TISSUE_HU
    candidates = []
    for r in range(0, hu.shape[0] - side + 1, step):
        for c in range(0, hu.shape[1] - side + 1, step):
            patch = hu[r : r + side, c : c + side]
            if patch.min() >= low and patch.max() <= high:
                candidates.append((float(_detrended(patch).std()), (r, c)))
    if len(candidates) < MIN_ROIS:
        return None
    candidates.sort()
    kept = max(MIN_ROIS, int(len(candidates) * FLATTEST_SHARE))
    return Rois(tuple(corner for _, corner in candidates[:kept]), side)


def measure(image: np.ndarray, rois: Rois, pixel_spacing_mm: float) -> NoiseStats:
    """The noise of `image` in `rois`: its pooled standard deviation and NPS mean frequency."""
    patches = rois.patches(np.asarray(image, dtype=np.float64))
    return NoiseStats(pooled_sigma(patches), mean_frequency(patches, pixel_spacing_mm), len(patches))


def pooled_sigma(patches: np.ndarray) -> float:
    """The standard deviation of zero-mean (detrended) patches, pooled over all of them."""
    return float(np.sqrt(np.mean(patches**2)))


def mean_frequency(patches: np.ndarray, pixel_spacing_mm: float) -> float:
    """The NPS-weighted mean radial frequency (cycles/mm) of zero-mean square patches, up to Nyquist:
    the radial NPS profile's centroid, each annulus weighted by its mean power, not its area."""
    side = patches.shape[-1]
    nps = np.mean(np.abs(np.fft.fft2(patches)) ** 2, axis=0)
    frequencies = np.fft.fftfreq(side, d=pixel_spacing_mm)
    radius = np.hypot(*np.meshgrid(frequencies, frequencies, indexing="ij"))
    width = 1.0 / (side * pixel_spacing_mm)
    bins = np.rint(radius / width).astype(int)
    nyquist_bin = side // 2
    inside = (bins > 0) & (bins <= nyquist_bin)
    power = np.bincount(bins[inside], weights=nps[inside], minlength=nyquist_bin + 1)
    counts = np.bincount(bins[inside], minlength=nyquist_bin + 1)
    profile = np.divide(power, counts, out=np.zeros_like(power), where=counts > 0)
    centres = np.arange(nyquist_bin + 1) * width
    return float(np.sum(centres * profile) / np.sum(profile))


def _detrended(patch: np.ndarray) -> np.ndarray:
    """`patch` minus its least-squares quadratic surface in row and column."""
    design = _design(patch.shape[0])
    return patch - (design @ np.linalg.lstsq(design, patch.ravel(), rcond=None)[0]).reshape(patch.shape)


@functools.lru_cache(maxsize=8)
def _design(side: int) -> np.ndarray:
    """The quadratic surface's design matrix for a `side`-pixel square: 1, r, c, r², rc, c²."""
    rows, cols = (axis.ravel() / side for axis in np.meshgrid(np.arange(side), np.arange(side), indexing="ij"))
    return np.column_stack([np.ones(side * side), rows, cols, rows**2, rows * cols, cols**2])
