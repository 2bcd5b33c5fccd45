"""CT acquisition physics: one forward projection, two photon-noise draws, two FBPs.

Both doses are made physically (docs/design.md, "Data contract", design, "Command line contract"): the ground-truth
HU slice is turned
into linear attenuation, projected once (`skimage.transform.radon`), and each dose
gets its own Poisson photon counts plus Gaussian electronic noise before the log
and a ramp-filtered back-projection (`skimage.transform.iradon`). The low-dose image
is therefore noisier in the streaky, correlated way real FBP noise is, not white.

Noise calibration (why the constants look the way they do): for FBP with
`n_views` views, the variance of the reconstructed attenuation in 1/mm is
``var ∝ 1 / (I0 · n_views · Δx²)`` (each view contributes independent noise of
variance ~1/I0 per detector bin, the back-projection averages the views, and line
integrals in pixel units are divided by the pixel size Δx). With ``n_views = size``
the photon count per detector bin is scaled as ``I0 = I0_REF · (REF_SIZE / size) ·
(REF_SPACING_MM / Δx)²`` so that the HU noise of a slice does not depend on the
matrix size or field of view. Electronic noise is scaled with ``sqrt(I0 / I0_REF)``
so its share of the total variance stays the same too.

The counts are *effective* counts per detector bin of the simulated parallel-beam,
single-row geometry: a real scanner sums several detector rows into a 3 mm slice
and takes 2-4x more views than `size`, so I0_REF = 1.5e6 corresponds to roughly
1.5e5 photons per physical detector cell and view, and SIGMA_E_REF = 30 to about
10 counts per cell. At every size they give 12-14 HU NDCT noise in the phantom's
heart and liver, about 20 HU in a 300 x 220 mm water ellipse, and 2.1-2.3x that
at dose 0.25 (more than 2x because electronic noise does not scale with dose).

Automatic exposure control (AEC): a scanner raises the tube current for a patient who
attenuates more, or a large abdomen would come out photon-starved (real adult abdomens
reach line integrals of 8, some 400 mm of water, against about 5 for the phantoms). Each
slice's full-dose photons are multiplied by its `aec_gain`, the ratio of its attenuation
measure (the mean over views of exp(largest line integral), which the variance of the
most attenuated rays follows) to that of AEC_REFERENCE_MM, a water ellipse larger than any
procedural phantom, so the phantoms keep gain 1 and are scanned as before. The gain never
lowers the dose and is capped at AEC_MAX_GAIN, as a tube's current is. Electronic noise does
not scale with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import iradon, radon

from ctdenoise.contract.hu import CT_CEILING_HU, CT_FLOOR_HU

MU_WATER_PER_MM = 0.019
"""Linear attenuation of water at an effective energy of roughly 70 keV (120 kVp)."""

REF_SIZE = 512
REF_SPACING_MM = 380.0 / 512
I0_REF = 1.5e6
"""Full-dose effective photons per detector bin per view at the reference geometry."""

SIGMA_E_REF = 30.0
"""Effective electronic noise (counts, std) at the reference geometry."""

AEC_REFERENCE_MM = (360.0, 260.0)
"""Axes of the water ellipse whose attenuation gets the nominal full dose (AEC gain 1)."""
AEC_MAX_GAIN = 16.0
"""The most AEC raises the full dose (a tube's current range)."""


@dataclass(frozen=True)
class Scan:
    """A slice's forward projection, shared by the full- and low-dose acquisitions."""

    line_integrals: np.ndarray
    theta: np.ndarray
    pixel_spacing_mm: float


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) of HU values; negative values (below air) are unphysical."""
    return np.clip(MU_WATER_PER_MM * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0), 0.0, None)


def mu_to_hu(mu: np.ndarray) -> np.ndarray:
    """HU of linear attenuation (1/mm), the inverse of `hu_to_mu` before clipping."""
    return 1000.0 * (mu / MU_WATER_PER_MM - 1.0)


def photons(size: int, pixel_spacing_mm: float) -> tuple[float, float]:
    """Full-dose photons per bin and electronic noise std that keep HU noise size-independent."""
    i0 = I0_REF * (REF_SIZE / size) * (REF_SPACING_MM / pixel_spacing_mm) ** 2
    return i0, SIGMA_E_REF * float(np.sqrt(i0 / I0_REF))


def project(hu: np.ndarray, pixel_spacing_mm: float) -> Scan:
    """Line integrals of attenuation over `size` views in [0°, 180°), scaled to mm.

    Everything outside the inscribed circle must already be air: `circle=True`
    projects only the disc, exactly like a scanner's field of view.
    """
    theta = np.linspace(0.0, 180.0, hu.shape[0], endpoint=False)
    sinogram = radon(hu_to_mu(hu), theta=theta, circle=True)
    return Scan(sinogram * pixel_spacing_mm, theta, pixel_spacing_mm)


def acquire(scan: Scan, i0: float, sigma_e: float, rng: np.random.Generator) -> np.ndarray:
    """Noisy line integrals from `i0` photons per bin: Poisson counts + electronic noise, log.

    Counts are clipped to at least 1 as a detector's log stage does, which bounds the
    photon-starvation streaks behind dense bone.
    """
    expected = i0 * np.exp(-scan.line_integrals)
    counts = rng.poisson(expected) + rng.normal(0.0, sigma_e, expected.shape)
    return -np.log(np.clip(counts, 1.0, None) / i0)


def reconstruct(line_integrals: np.ndarray, scan: Scan) -> np.ndarray:
    """Ramp-filtered back-projection to HU, clipped to the 12-bit CT scale like a scanner's.

    skimage's spatial-domain ramp filter keeps the DC level, so a uniform region
    keeps its mean HU; the test suite checks this for water and soft tissue.
    """
    mu = iradon(line_integrals / scan.pixel_spacing_mm, theta=scan.theta, filter_name="ramp", circle=True)
    return np.clip(mu_to_hu(mu), CT_FLOOR_HU, CT_CEILING_HU)


def aec_gain(scan: Scan) -> float:
    """How much AEC raises this slice's full dose: its attenuation measure over the reference
    ellipse's, between 1 and AEC_MAX_GAIN (see the module docstring)."""
    measure = float(np.mean(np.exp(scan.line_integrals.max(axis=0))))
    return float(np.clip(measure / _reference_measure(), 1.0, AEC_MAX_GAIN))


def _reference_measure() -> float:
    """The attenuation measure of the AEC_REFERENCE_MM water ellipse, from its chords through
    the centre: 1 / sqrt(cos²θ/a² + sin²θ/b²) is the half-chord at angle θ."""
    a, b = (axis / 2 for axis in AEC_REFERENCE_MM)
    theta = np.linspace(0.0, np.pi, 720, endpoint=False)
    half_chord = 1.0 / np.sqrt(np.cos(theta) ** 2 / a**2 + np.sin(theta) ** 2 / b**2)
    return float(np.mean(np.exp(2.0 * MU_WATER_PER_MM * half_chord)))


@dataclass(frozen=True)
class Scans:
    """One slice scanned at both doses, and (on request) without any noise."""

    ndct: np.ndarray
    ldct: np.ndarray
    noise_free: np.ndarray | None
    """FBP of the noise-free line integrals: the image both scans are noisy versions of,
    with the same resolution, so it is the truth a denoiser should reach."""
    aec_gain: float = 1.0
    """The factor AEC raised both doses' photons by (the tube current's, on a scanner)."""


def scan_pair(
    hu: np.ndarray, pixel_spacing_mm: float, dose: float, rng: np.random.Generator, noise_free: bool = False
) -> Scans:
    """NDCT and LDCT reconstructions in HU of one ground-truth slice, low dose = `dose`·I0,
    both at the slice's AEC gain."""
    scan = project(hu, pixel_spacing_mm)
    i0, sigma_e = photons(hu.shape[0], pixel_spacing_mm)
    gain = aec_gain(scan)
    full = reconstruct(acquire(scan, gain * i0, sigma_e, rng), scan)
    low = reconstruct(acquire(scan, dose * gain * i0, sigma_e, rng), scan)
    return Scans(full, low, reconstruct(scan.line_integrals, scan) if noise_free else None, gain)
