"""A slice's noise level: the one estimate every denoiser is given (docs/design.md, "Noise-level input").

Ingestion writes it into each example, the Trainer feeds it to the networks beside the image,
the exported model reads it from an example or takes it as an input, `denoise` computes it for
each slice it reads (or takes the user's `--strength`), and the benchmarks hand the same number
to BM3D, so that every denoiser is told the same thing.

The level is the noise's standard deviation in HU where the slice is flattest: its flat soft-tissue
regions, each with its quadratic trend removed (`contract.noise`, the measurement the simulator
calibrates to). It reads the whole noise whatever the reconstruction kernel's grain, which a
finest-scale estimate does not: a smooth kernel's noise has little power at the finest scale, so
such an estimate reads it several times too low, and reads two kernels' equal noise differently.
A slice with too little flat soft tissue (the top of a head, a small test image) falls back to
the median absolute finest-scale Haar diagonal coefficient over its blocks inside the body
(Donoho's MAD estimator), or over all blocks where there is no body: it never fails.
"""

from __future__ import annotations

import numpy as np

from ctdenoise.contract.noise import flat_rois, pooled_sigma

BODY_HU = -500.0
"""The fallback measures 2×2 blocks with every pixel above this line."""
MIN_BLOCKS = 256
"""Fewer body blocks than this: the fallback measures all blocks."""
MAD_TO_SIGMA = 1.0 / 0.6745
"""The median absolute value of a zero-mean normal variable is 0.6745 of its standard deviation."""
LEVEL_UNIT_HU = 100.0
"""The networks see the level as a map of `level / LEVEL_UNIT_HU`: 5–70 HU become 0.05–0.7,
about the size of the normalised image's own values."""
LEVELS_HU = (0.5, 500.0)
"""The levels a user may give (`denoise --strength`), in HU: from almost clean to far noisier
than any scan."""


def noise_level_hu(hu: np.ndarray) -> float:
    """The noise level of one HU slice [H, W] (see the module docstring), in HU."""
    image = np.asarray(hu, dtype=np.float64)
    rois = flat_rois(image)
    if rois is not None:
        return pooled_sigma(rois.patches(image))
    return _finest_scale_level(image)


def _finest_scale_level(image: np.ndarray) -> float:
    """Donoho's MAD estimate from the finest Haar diagonal coefficients, over the 2×2 blocks in
    the body (air and padding, often noise-free, would pull the median to zero), else all."""
    rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    image = image[:rows, :cols]
    corners = image[0::2, 0::2], image[0::2, 1::2], image[1::2, 0::2], image[1::2, 1::2]
    diagonal = np.abs(corners[0] - corners[1] - corners[2] + corners[3]) / 2.0
    body = np.minimum.reduce(corners) > BODY_HU
    measured = diagonal[body] if np.count_nonzero(body) >= MIN_BLOCKS else diagonal
    return float(np.median(measured) * MAD_TO_SIGMA)


def check_level(level_hu: float) -> float:
    """`level_hu` if it is a level a user may give, else ValueError in one line."""
    low, high = LEVELS_HU
    if not np.isfinite(level_hu) or not low <= level_hu <= high:
        raise ValueError(f"noise level {level_hu} HU is outside {low:g}–{high:g} HU")
    return float(level_hu)
