"""Procedural full-dose chest/upper-abdomen phantoms in HU: the simulator's ground truth.

Anatomy is described in millimetres around the isocentre (x to the image right = the
patient's left, y down = posterior), so a phantom looks the same at every matrix size.
A patient's anatomy is drawn once from its own random generator; a slice is that
anatomy cut at height z, and organs are ellipsoids or oblique cylinders, so
neighbouring slices change smoothly like a real series (a vertebral disc is the one
deliberate step, as in real spines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

AIR_HU = -1000.0
FOV_MM = 380.0
"""Default reconstruction field of view; the widest body (≈ 340 mm) fits inside."""


@dataclass(frozen=True)
class Organ:
    """An ellipsoid whose axial cross-section shrinks smoothly to nothing at its z ends."""

    x: float
    y: float
    z: float
    ax: float
    ay: float
    az: float
    hu: float

    def mask(self, xx: np.ndarray, yy: np.ndarray, z: float) -> np.ndarray:
        """Pixels inside the organ's cross-section at height `z`."""
        scale = np.sqrt(max(0.0, 1.0 - ((z - self.z) / self.az) ** 2))
        if scale == 0.0:
            return np.zeros(xx.shape, dtype=bool)
        return _ellipse(xx, yy, self.x, self.y, self.ax * scale, self.ay * scale)


@dataclass(frozen=True)
class Anatomy:
    """Everything random about one patient; `render` cuts it at a given z."""

    level_mm: float
    centre: tuple[float, float]
    body_axes: tuple[float, float]
    body_power: float
    fat_mm: float
    fat_hu: float
    muscle_hu: float
    soft_hu: float
    organs: tuple[Organ, Organ, Organ, Organ]
    """Right lung, left lung, heart, liver."""
    spine_y: float
    vertebra_radius: float
    cancellous_hu: float
    cortical_hu: float
    aorta_radius: float
    aorta_hu: float
    ribs: np.ndarray
    """Per rib: angle (rad), angle drift per mm of z, radius (mm)."""
    vessels: np.ndarray
    """Per lung vessel: x, y (mm), drift x, drift y (mm per mm of z), radius (mm)."""
    waves: np.ndarray
    """Texture cosines: kx, ky (rad/mm), kz (rad/mm), phase, amplitude (HU)."""


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient: body habitus, organ sizes and tissue HU vary within realistic ranges."""
    a, b = rng.uniform(140, 165), rng.uniform(100, 120)
    fat = rng.uniform(8, 25)
    ac, bc = a - fat - 15, b - fat - 15
    lung_hu = rng.uniform(-870, -830)
    organs = (
        Organ(-0.48 * ac, -0.05 * bc, 40, 0.42 * ac, 0.8 * bc, rng.uniform(160, 200), lung_hu),
        Organ(0.48 * ac, -0.05 * bc, 40, 0.42 * ac, 0.8 * bc, rng.uniform(160, 200), lung_hu),
        Organ(0.12 * ac, -0.25 * bc, 30, 0.36 * ac, 0.45 * bc, 70, rng.uniform(40, 50)),
        Organ(-0.35 * ac, 0.05 * bc, -90, 0.6 * ac, 0.8 * bc, 110, rng.uniform(55, 65)),
    )
    n_ribs = int(rng.integers(4, 7))
    left = np.linspace(-0.35, 0.35, n_ribs) * np.pi
    rib_angles = np.concatenate([left, np.pi - left])
    ribs = np.column_stack(
        [
            rib_angles + rng.normal(0, 0.05, rib_angles.size),
            rng.uniform(0.002, 0.005, rib_angles.size),
            rng.uniform(4, 6, rib_angles.size),
        ]
    )
    n_vessels = 24
    vessels = np.column_stack(
        [
            rng.uniform(-0.9, 0.9, n_vessels) * ac,
            rng.uniform(-0.8, 0.7, n_vessels) * bc,
            rng.uniform(-0.3, 0.3, (n_vessels, 2)),
            rng.uniform(1.5, 4.0, n_vessels),
        ]
    )
    n_waves = 6
    direction = rng.uniform(0, 2 * np.pi, n_waves)
    k = 2 * np.pi / rng.uniform(25, 100, n_waves)
    waves = np.column_stack(
        [
            k * np.cos(direction),
            k * np.sin(direction),
            2 * np.pi / rng.uniform(60, 200, n_waves),
            rng.uniform(0, 2 * np.pi, n_waves),
            rng.uniform(1.0, 2.5, n_waves),
        ]
    )
    return Anatomy(
        level_mm=rng.uniform(-70, 50),
        centre=(rng.uniform(-5, 5), rng.uniform(-5, 5)),
        body_axes=(a, b),
        body_power=rng.uniform(2.0, 2.6),
        fat_mm=fat,
        fat_hu=rng.uniform(-115, -85),
        muscle_hu=rng.uniform(45, 60),
        soft_hu=rng.uniform(35, 45),
        organs=organs,
        spine_y=b - fat - 60,
        vertebra_radius=rng.uniform(16, 21),
        cancellous_hu=rng.uniform(200, 300),
        cortical_hu=rng.uniform(700, 1000),
        aorta_radius=rng.uniform(10, 14),
        aorta_hu=rng.uniform(200, 300),
        ribs=ribs,
        vessels=vessels,
        waves=waves,
    )


def render(anatomy: Anatomy, size: int, pixel_spacing_mm: float, z_mm: float) -> np.ndarray:
    """The axial slice at `z_mm` as a `size`×`size` float HU image, air outside the FOV circle.

    A half-pixel Gaussian gives edges partial-volume values instead of staircase
    aliasing, which would otherwise ring through the FBP.
    """
    coords = (np.arange(size) - (size - 1) / 2) * pixel_spacing_mm
    xx, yy = np.meshgrid(coords - anatomy.centre[0], coords - anatomy.centre[1])
    z = z_mm + anatomy.level_mm
    hu = np.full((size, size), AIR_HU)
    body = _paint_trunk(hu, anatomy, xx, yy, z)
    _paint_spine_and_aorta(hu, anatomy, xx, yy, z)
    hu[body] += _texture(anatomy, xx, yy, z)[body]
    hu = gaussian_filter(hu, 0.5)
    hu[~fov_mask(size)] = AIR_HU
    return hu


def fov_mask(size: int) -> np.ndarray:
    """The scan circle exactly as `skimage.transform.radon(circle=True)` defines it."""
    rows, cols = np.ogrid[:size, :size]
    return (rows - size // 2) ** 2 + (cols - size // 2) ** 2 <= (size // 2) ** 2


def _paint_trunk(hu: np.ndarray, an: Anatomy, xx: np.ndarray, yy: np.ndarray, z: float) -> np.ndarray:
    """Fat, muscle wall, cavity, lungs with vessels, heart, liver and ribs; returns the body mask."""
    a, b = an.body_axes
    inner = (a - an.fat_mm, b - an.fat_mm)
    body = _ellipse(xx, yy, 0, 0, a, b, an.body_power)
    hu[body] = an.fat_hu
    hu[_ellipse(xx, yy, 0, 0, *inner, an.body_power)] = an.muscle_hu
    cavity = _ellipse(xx, yy, 0, 0, inner[0] - 15, inner[1] - 15, an.body_power)
    hu[cavity] = an.soft_hu
    right_lung, left_lung, heart, liver = an.organs
    lungs = (right_lung.mask(xx, yy, z) | left_lung.mask(xx, yy, z)) & cavity
    hu[lungs] = right_lung.hu
    for x, y, dx, dy, radius in an.vessels:
        vessel = _ellipse(xx, yy, x + dx * z, y + dy * z, radius, radius) & lungs
        hu[vessel] = 40.0
    for organ in (heart, liver):
        hu[organ.mask(xx, yy, z) & cavity] = organ.hu
    for angle, drift, radius in an.ribs:
        phi = angle + drift * z
        cx, cy = (inner[0] - 9) * np.cos(phi), (inner[1] - 9) * np.sin(phi)
        _paint_bone(hu, xx, yy, cx, cy, radius, 1.5, 300.0, an.cortical_hu)
    return body


def _paint_spine_and_aorta(hu: np.ndarray, an: Anatomy, xx: np.ndarray, yy: np.ndarray, z: float) -> None:
    """Vertebra (cortical rim, cancellous core, arch; an intervertebral disc every 28 mm),
    spinal canal, and the contrast-filled descending aorta to its left-anterior."""
    r = an.vertebra_radius
    canal_y = an.spine_y + r + 9
    if z % 28.0 < 5.0:
        hu[_ellipse(xx, yy, 0, an.spine_y, r, r * 0.85)] = 80.0
    else:
        hu[_ellipse(xx, yy, 0, canal_y + 5, 14, 14) & (yy > canal_y)] = an.cortical_hu * 0.7
        hu[_ellipse(xx, yy, 0, canal_y + 15, 4, 10)] = an.cortical_hu * 0.7
        _paint_bone(hu, xx, yy, 0, an.spine_y, r, 2.5, an.cancellous_hu, an.cortical_hu, 0.85)
    hu[_ellipse(xx, yy, 0, canal_y, 8, 8)] = 20.0
    ra = an.aorta_radius
    ax = 0.9 * r + 0.02 * z
    hu[_ellipse(xx, yy, ax, an.spine_y - r - ra + 2, ra, ra)] = an.aorta_hu


def _paint_bone(
    hu: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    cx: float,
    cy: float,
    radius: float,
    cortex_mm: float,
    core_hu: float,
    cortical_hu: float,
    aspect: float = 1.0,
) -> None:
    """An elliptic bone cross-section: dense cortical shell around a cancellous core."""
    hu[_ellipse(xx, yy, cx, cy, radius, radius * aspect)] = cortical_hu
    core = (radius - cortex_mm, radius * aspect - cortex_mm)
    hu[_ellipse(xx, yy, cx, cy, *core)] = core_hu


def _texture(an: Anatomy, xx: np.ndarray, yy: np.ndarray, z: float) -> np.ndarray:
    """A few HU of low-frequency tissue inhomogeneity that drifts smoothly with z."""
    field = np.zeros(xx.shape)
    for kx, ky, kz, phase, amplitude in an.waves:
        field += amplitude * np.cos(kx * xx + ky * yy + kz * z + phase)
    return field


def _ellipse(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, ax: float, ay: float, power: float = 2.0
) -> np.ndarray:
    """Pixels inside a (super)ellipse; power > 2 squares the corners like a human trunk."""
    return np.abs((xx - cx) / ax) ** power + np.abs((yy - cy) / ay) ** power <= 1.0
