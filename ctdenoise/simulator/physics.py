"""CT acquisition physics: projection, photon statistics, apodised filtered back-projection, and the two
ways a pair is made (docs/design.md, "CT physics of the simulator").

Geometry: parallel beam, one detector row of bins one pixel wide, ⌈π/2·N⌉ views over 180° for an
N-pixel slice (the number FBP needs to be free of view aliasing), the whole square projected, so
no anatomy is cut at a scan circle.

Reconstruction: FBP with a ramp apodised by a Hann window whose cutoff names the kernel (`KERNELS`:
from smoothest to sharp), as clinical kernels roll the ramp off: an unapodised ramp gives near-white
noise, a clinical kernel's noise is coarser.

Photon statistics: each detector bin of each view counts Poisson photons, I0 = fluence × bin width ×
slice thickness / views at full dose (times the AEC gain), plus Gaussian electronic noise. After FBP
the variance of a pixel then grows as 1/(fluence · thickness · Δx³): halving the pixel makes the
noise 2.8 times larger, as on a scanner, and the number of views does not change it. The fluence
is derived, not set: `fluence()` calibrates it so that the centre of a 360 × 260 mm water ellipse,
scanned with 0.74 mm pixels, 3 mm slices and the standard kernel, has FULL_DOSE_NOISE_HU.

The two ways (`rescan`, `insert`):
- a procedural phantom is noise-free, so it is scanned twice, at full dose and at `dose`, and its
  noise-free reconstruction is the truth;
- a real full-dose scan already carries its scanner's noise, so it stays the NDCT as written, and
  the LDCT adds only the noise that lowering the dose adds (projection-domain noise insertion, as the
  Mayo/AAPM quarter-dose data were made): the noise of each ray grows as exp(line integral), so
  streaks behind bone and across large patients come out of the physics. Its level is calibrated to
  the source's own noise in its flat regions (`noise.py`), and its kernel is the named kernel whose
  noise grain is nearest the source's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft

from ctdenoise.contract.hu import CT_CEILING_HU, CT_FLOOR_HU
from ctdenoise.contract.noise import NoiseStats, Rois, measure
from ctdenoise.simulator import tomography

MU_WATER_PER_MM = 0.019
"""Linear attenuation of water at an effective energy of roughly 70 keV (120 kVp)."""

KERNELS = {"smoothest": 0.5, "smooth": 0.6, "soft": 0.7, "medium": 0.85, "standard": 1.0, "detail": 1.3, "sharp": 1.6}
"""Reconstruction kernels: where the Hann window on the ramp reaches zero, as a fraction of Nyquist
(beyond 1 it does not within the band). Their noise's NPS mean frequency runs from 0.19 to 0.44 of
Nyquist (an unapodised ramp's: 0.56) in steps of at most a fifth, so that one of them is within a
tenth of any grain in that range; the real scanners measured span it: the heads' and the neck's
about 0.2 (smooth head kernels, and what anatomy the flat regions keep), the abdomens' FC13 and
Br38f about 0.33, the GE phantom's STANDARD 0.43 (docs/experiments.md, "Noise that matches the
scanner")."""
DEFAULT_KERNEL = "standard"

FULL_DOSE_NOISE_HU = 18.0
"""Full-dose noise at the centre of the AEC reference ellipse with the standard kernel, 0.74 mm pixels
and 3 mm slices: quarter-dose minus full-dose noise of the Mayo/AAPM abdomens is 29–35 HU with B30f at
0.66–0.82 mm, and with inserted noise that difference is √3 × the full-dose noise."""
REF_SPACING_MM = 380.0 / 512
REF_SLICE_MM = 3.0
ELECTRONIC_RATIO = 1e-5
"""Electronic noise variance, in counts², per count of a bin's full-dose I0 before AEC (`bin_photons`
for a phantom; for a real source the calibrated I0): at full dose it matches a ray's quantum noise
where the ray is attenuated by e^11.5 (about 600 mm of water), so it matters only for photon-starved
rays behind dense bone, and it does not scale with the dose or the AEC gain. Read from the real
abdomens (docs/experiments.md, "Noise that matches the scanner"): at 1e-4 their inserted quarter-dose
variance was 2 to 4 times the quantum-limited (1/d − 1)·σ², where the Mayo/AAPM abdomens show about
that."""

AEC_REFERENCE_MM = (360.0, 260.0)
"""Axes of the water ellipse whose attenuation gets the nominal full dose (AEC gain 1)."""
AEC_MAX_GAIN = 16.0
"""The most AEC raises the full dose (a tube's current range)."""
_CALIBRATION_SIZE, _CALIBRATION_DRAWS = 128, 16


def views(size: int) -> int:
    """Views over 180° for an FBP of a `size`-pixel slice without view aliasing: ⌈π/2 · size⌉."""
    return int(np.ceil(np.pi / 2 * size))


@dataclass(frozen=True)
class Scan:
    """A slice's noise-free projection."""

    line_integrals: np.ndarray
    theta: np.ndarray
    pixel_spacing_mm: float
    size: int


@dataclass(frozen=True)
class Scans:
    """One slice at both doses, and its reference."""

    ndct: np.ndarray
    ldct: np.ndarray
    reference: np.ndarray | None
    """What a denoiser is scored against: a phantom's noise-free reconstruction (on request), or a
    real source as its scanner wrote it (the NDCT: no noise-free truth exists)."""
    aec_gain: float = 1.0
    """The factor AEC raised both doses' photons by (the tube current's, on a scanner)."""
    kernel: str = DEFAULT_KERNEL


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) of HU values; negative values (below air) are unphysical."""
    return np.clip(MU_WATER_PER_MM * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0), 0.0, None)


def mu_to_hu(mu: np.ndarray) -> np.ndarray:
    """HU of linear attenuation (1/mm), the inverse of `hu_to_mu` before clipping."""
    return 1000.0 * (mu / MU_WATER_PER_MM - 1.0)


def project(hu: np.ndarray, pixel_spacing_mm: float) -> Scan:
    """Line integrals of attenuation over `views(size)` views in [0°, 180°), of the whole square, on
    skimage's bins and angles (`tomography.project`, Joseph's method)."""
    size = hu.shape[0]
    theta = np.linspace(0.0, 180.0, views(size), endpoint=False)
    bins = size + int(np.ceil(np.sqrt(2.0) * size - size))  # skimage's padded width for circle=False
    return Scan(tomography.project(hu_to_mu(hu), bins, theta) * pixel_spacing_mm, theta, pixel_spacing_mm, size)


def reconstruct(line_integrals: np.ndarray, scan: Scan, kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    """FBP to HU with the named kernel, clipped to the 12-bit CT scale like a scanner's. The ramp is
    built in the spatial domain, so a uniform region keeps its mean HU."""
    return np.clip(mu_to_hu(_fbp(line_integrals, scan, kernel)), CT_FLOOR_HU, CT_CEILING_HU)


def noise_hu(line_integral_noise: np.ndarray, scan: Scan, kernel: str | None) -> np.ndarray:
    """The HU image FBP makes of noise on the line integrals alone (FBP is linear): no offset, no
    clipping. `kernel` None is the unapodised ramp."""
    return 1000.0 / MU_WATER_PER_MM * _fbp(line_integral_noise, scan, kernel)


def _fbp(line_integrals: np.ndarray, scan: Scan, kernel: str | None) -> np.ndarray:
    """Attenuation (1/mm) from line integrals: apodised ramp filter, then back-projection (`tomography`)."""
    bins = line_integrals.shape[0]
    padded = max(64, int(2 ** np.ceil(np.log2(2 * bins))))
    # real input and a real, even filter: the half spectrum suffices, on every core
    spectrum = fft.rfft(line_integrals / scan.pixel_spacing_mm, n=padded, axis=0, workers=-1)
    window = _filter(padded, kernel)[: padded // 2 + 1, None]
    filtered = fft.irfft(spectrum * window, n=padded, axis=0, workers=-1)[:bins]
    return tomography.backproject(filtered, scan.theta, scan.size)


@functools.lru_cache(maxsize=16)
def _filter(padded: int, kernel: str | None) -> np.ndarray:
    """The ramp (Kak and Slaney's spatial-domain form, exact at zero frequency) times the kernel's
    window (`_window`)."""
    n = np.concatenate((np.arange(1, padded // 2 + 1, 2), np.arange(padded // 2 - 1, 0, -2)))
    spatial = np.zeros(padded)
    spatial[0] = 0.25
    spatial[1::2] = -1.0 / (np.pi * n) ** 2
    ramp = 2.0 * np.real(np.fft.fft(spatial))
    return ramp * _window(np.abs(np.fft.fftfreq(padded)) / 0.5, kernel)


def _window(frequency: np.ndarray, kernel: str | None) -> np.ndarray:
    """The kernel's Hann window, reaching zero at its cutoff, over frequencies given as fractions of
    Nyquist (None: no window, the unapodised ramp)."""
    if kernel is None:
        return np.ones_like(frequency)
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    cutoff = KERNELS[kernel]
    return np.where(frequency < cutoff, 0.5 * (1.0 + np.cos(np.pi * frequency / cutoff)), 0.0)


def unit_quantum_noise(scan: Scan, rng: np.random.Generator) -> np.ndarray:
    """One draw of the line integrals' quantum noise at one photon per bin: variance e^p per ray
    (p clipped at 0); scaled by 1/sqrt(I0) it is any dose's."""
    return np.sqrt(np.exp(np.clip(scan.line_integrals, 0.0, None))) * rng.standard_normal(scan.line_integrals.shape)


def bin_photons(pixel_spacing_mm: float, thickness_mm: float, n_views: int) -> float:
    """Full-dose photons per detector bin and view, before AEC: the fluence through one bin's
    area, shared by the views."""
    return fluence() * pixel_spacing_mm * thickness_mm / n_views


def acquire(scan: Scan, i0: float, sigma_e: float, rng: np.random.Generator) -> np.ndarray:
    """Noisy line integrals from `i0` photons per bin: Poisson counts + electronic noise, log.

    Counts are clipped to at least 1 as a detector's log stage does, which bounds the
    photon-starvation streaks behind dense bone.
    """
    expected = i0 * np.exp(-scan.line_integrals)
    counts = rng.poisson(expected) + rng.normal(0.0, sigma_e, expected.shape)
    return -np.log(np.clip(counts, 1.0, None) / i0)


def rescan(
    hu: np.ndarray,
    pixel_spacing_mm: float,
    thickness_mm: float,
    dose: float,
    rng: np.random.Generator,
    noise_free: bool = False,
    kernel: str = DEFAULT_KERNEL,
) -> Scans:
    """A noise-free slice (a phantom) scanned at full dose and at `dose`, both at its AEC gain, and on
    request its noise-free reconstruction: the truth."""
    scan = project(hu, pixel_spacing_mm)
    i0 = bin_photons(pixel_spacing_mm, thickness_mm, len(scan.theta))
    sigma_e = float(np.sqrt(ELECTRONIC_RATIO * i0))
    gain = aec_gain(scan)
    full = reconstruct(acquire(scan, gain * i0, sigma_e, rng), scan, kernel)
    low = reconstruct(acquire(scan, dose * gain * i0, sigma_e, rng), scan, kernel)
    truth = reconstruct(scan.line_integrals, scan, kernel) if noise_free else None
    return Scans(full, low, truth, gain, kernel)


def insert(
    hu: np.ndarray,
    pixel_spacing_mm: float,
    thickness_mm: float,
    dose: float,
    rng: np.random.Generator,
    kernel: str,
    calibration: Measured | None,
) -> Scans:
    """A real full-dose slice as the NDCT, and as the LDCT with the noise that `dose` adds inserted:
    the extra variance of a ray's log measurement is (1/d − 1)·e^p/I0 + (1/d² − 1)·σe²·e^2p/I0²
    (Yu et al., Med. Phys. 2012). I0 is calibrated so that this slice's full-dose quantum noise, after
    FBP with `kernel`, has the source's own standard deviation in its flat regions (`calibration`:
    the slice measured there); without them it is the simulator's own full dose for the slice
    (`bin_photons` at its AEC gain)."""
    scan = project(hu, pixel_spacing_mm)
    p = np.clip(scan.line_integrals, 0.0, None)
    unit = noise_hu(unit_quantum_noise(scan, rng), scan, kernel)
    if calibration:
        own = calibration.noise.sigma_hu
        i0 = electronic_i0 = (measure(unit, calibration.rois, pixel_spacing_mm).sigma_hu / own) ** 2
    else:
        electronic_i0 = bin_photons(pixel_spacing_mm, thickness_mm, len(scan.theta))
        i0 = electronic_i0 * aec_gain(scan)
    electronic_variance = (1.0 / dose**2 - 1.0) * ELECTRONIC_RATIO * electronic_i0 * np.exp(2.0 * p) / i0**2
    added = np.sqrt((1.0 / dose - 1.0) / i0) * unit + noise_hu(
        np.sqrt(electronic_variance) * rng.standard_normal(p.shape), scan, kernel
    )
    ndct = np.clip(hu, CT_FLOOR_HU, CT_CEILING_HU)
    return Scans(ndct, np.clip(hu + added, CT_FLOOR_HU, CT_CEILING_HU), ndct, 1.0, kernel)


@dataclass(frozen=True)
class Measured:
    """A real slice with its own noise measured in its flat soft tissue (`noise.flat_rois`)."""

    hu: np.ndarray
    pixel_spacing_mm: float
    noise: NoiseStats
    rois: Rois


def matching_kernel(slices: Sequence[Measured]) -> str:
    """The named kernel whose noise grain (NPS mean frequency in the same regions, averaged over
    `slices`) is nearest the sources' own."""
    grain = dict.fromkeys(KERNELS, 0.0)
    for source in slices:
        scan = project(source.hu, source.pixel_spacing_mm)
        images = kernel_noise(unit_quantum_noise(scan, np.random.default_rng(0)), scan)
        for kernel, image in images.items():
            grain[kernel] += measure(image, source.rois, source.pixel_spacing_mm).mean_frequency
    target = sum(source.noise.mean_frequency for source in slices)
    return min(grain, key=lambda kernel: abs(grain[kernel] - target))


def kernel_noise(line_integral_noise: np.ndarray, scan: Scan) -> dict[str, np.ndarray]:
    """`noise_hu` of the noise with each named kernel, from one back-projection: the unapodised
    ramp's image, with each kernel's window applied to its radial frequency. FBP is linear, and by
    the central slice theorem a window on the projections' filter is that window on the image's
    radial frequency; the back-projection's interpolation makes it an approximation, whose NPS mean
    frequency is within 1 % of the exact one's on every shared patient, in a fifth of the time
    (docs/experiments.md, "One back-projection to choose the kernel")."""
    ramp = np.fft.fft2(noise_hu(line_integral_noise, scan, None))
    radial = np.hypot(*np.meshgrid(np.fft.fftfreq(scan.size), np.fft.fftfreq(scan.size), indexing="ij")) / 0.5
    return {kernel: np.real(np.fft.ifft2(ramp * _window(radial, kernel))) for kernel in KERNELS}


def aec_gain(scan: Scan) -> float:
    """How much AEC raises this slice's full dose: its attenuation measure (the mean over views of
    exp(largest line integral), which the variance of the most attenuated rays follows) over the
    reference ellipse's, between 1 and AEC_MAX_GAIN. A large abdomen would otherwise come out
    photon-starved; procedural phantoms, smaller than the reference, keep gain 1."""
    measure_ = float(np.mean(np.exp(scan.line_integrals.max(axis=0))))
    return float(np.clip(measure_ / _reference_measure(), 1.0, AEC_MAX_GAIN))


def _reference_measure() -> float:
    """The attenuation measure of the AEC_REFERENCE_MM water ellipse, from its chords through
    the centre: 1 / sqrt(cos²θ/a² + sin²θ/b²) is the half-chord at angle θ."""
    a, b = (axis / 2 for axis in AEC_REFERENCE_MM)
    theta = np.linspace(0.0, np.pi, 720, endpoint=False)
    half_chord = 1.0 / np.sqrt(np.cos(theta) ** 2 / a**2 + np.sin(theta) ** 2 / b**2)
    return float(np.mean(np.exp(2.0 * MU_WATER_PER_MM * half_chord)))


@functools.lru_cache(maxsize=1)
def fluence() -> float:
    """Photons per mm² of detector per rotation at full dose, calibrated (see the module docstring):
    the reference ellipse is scanned at a small size, where the variance at its centre per unit
    fluence is measured over several draws, and carried to the reference pixel by the Δx³ law."""
    size = _CALIBRATION_SIZE
    spacing = 400.0 / size
    a, b = (axis / 2 / spacing for axis in AEC_REFERENCE_MM)
    rows, cols = np.mgrid[:size, :size] - (size - 1) / 2
    water = np.where((cols / a) ** 2 + (rows / b) ** 2 <= 1.0, 0.0, -1000.0)
    scan = project(water, spacing)
    rng = np.random.default_rng(0)
    i0_at_unit_fluence = spacing * REF_SLICE_MM / len(scan.theta)
    std = np.sqrt(np.exp(scan.line_integrals) / i0_at_unit_fluence)
    centre = (cols / a) ** 2 + (rows / b) ** 2 <= 0.15**2
    variance = np.mean(
        [
            np.var(noise_hu(std * rng.standard_normal(std.shape), scan, DEFAULT_KERNEL)[centre])
            for _ in range(_CALIBRATION_DRAWS)
        ]
    )
    at_reference = variance * (spacing / REF_SPACING_MM) ** 3
    return float(at_reference / FULL_DOSE_NOISE_HU**2)
