"""A CT quality-assurance phantom: a water cylinder holding round rods of known HU.

The procedural anatomy (`phantom`) has no edge whose exact position and contrast are
known, and its organs are small and textured, so resolution and noise texture cannot be
measured cleanly on it (docs/design.md, "Reference, noise, texture and resolution"). Scanners are judged on
phantoms like this
one instead (the ACR CT accreditation phantom's module 1, Catphan's CTP404): round
inserts of a few contrasts give edges all around their circumference for an oversampled
edge spread function, and the water around them is uniform for noise and its power
spectrum.

Geometry is in millimetres around the isocentre, as in `phantom.render`, so the slice
looks the same at every matrix size: a 200 mm water cylinder (a head/paediatric body
phantom size), three 25 mm rods 60 mm from its axis in its upper half, and the lower
half left as uniform water for noise ROIs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

from ctdenoise.simulator.phantom import AIR_HU, fov_mask

WATER_HU = 0.0
CYLINDER_RADIUS_MM = 100.0
ROD_RADIUS_MM = 12.5
"""The 25 mm diameter of the ACR phantom's inserts: at 256 px over 380 mm a rod is
8.4 px in radius, wide enough for an 8 px band of edge profile on its inside."""
RODS_MM = ((-52.0, -30.0, 100.0), (0.0, -60.0, 350.0), (52.0, -30.0, -100.0))
"""Rods as (x, y, HU), x to the image right, y down: soft-tissue-like +100 HU, bone-like
+350 HU and fat-like -100 HU, on a 60 mm circle 120° apart, so neighbouring rods are
35 mm apart edge to edge and 27.5 mm from the cylinder wall."""


class Rod(NamedTuple):
    """One insert of a QA slice, in that slice's pixel coordinates."""

    centre_px: tuple[float, float]
    """(row, col), sub-pixel; pixel (i, j) has its centre at (i, j)."""
    radius_px: float
    hu: float


def qa_slice(size: int, pixel_spacing_mm: float) -> tuple[np.ndarray, list[Rod]]:
    """The phantom as a `size`×`size` float HU image, air outside, and its rods.

    Edges get partial-volume values from the same half-pixel Gaussian `phantom.render`
    applies (a staircase edge would ring through the FBP), and everything outside
    the scan circle is air, so `physics.rescan` can scan the slice as it is.
    Raises ValueError when the cylinder does not fit inside the scan circle.
    """
    if (size // 2) * pixel_spacing_mm <= CYLINDER_RADIUS_MM:
        raise ValueError(
            f"a {2 * CYLINDER_RADIUS_MM:.0f} mm cylinder does not fit in a "
            f"{size} px field of view of {pixel_spacing_mm} mm pixels"
        )
    middle = (size - 1) / 2
    coords = (np.arange(size) - middle) * pixel_spacing_mm
    xx, yy = np.meshgrid(coords, coords)
    hu = np.full((size, size), AIR_HU)
    hu[xx**2 + yy**2 <= CYLINDER_RADIUS_MM**2] = WATER_HU
    rods = []
    for x, y, rod_hu in RODS_MM:
        hu[(xx - x) ** 2 + (yy - y) ** 2 <= ROD_RADIUS_MM**2] = rod_hu
        rods.append(
            Rod(
                (middle + y / pixel_spacing_mm, middle + x / pixel_spacing_mm), ROD_RADIUS_MM / pixel_spacing_mm, rod_hu
            )
        )
    hu = gaussian_filter(hu, 0.5)
    hu[~fov_mask(size)] = AIR_HU
    return hu, rods
