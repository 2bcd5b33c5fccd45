"""Pictures for people: HU images side by side in a display window (soft tissue unless
another is asked for), labelled."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ctdenoise.contract.hu import SOFT_TISSUE_LEVEL, SOFT_TISSUE_WIDTH

WINDOWS = {"soft tissue": (SOFT_TISSUE_LEVEL, SOFT_TISSUE_WIDTH), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0)}
"""Display windows as (level, width) in HU: the three a radiologist switches between in CT."""


def window_uint8(hu: np.ndarray, window: str = "soft tissue") -> np.ndarray:
    """HU → uint8 grey levels of `window` (below it black, above it white)."""
    level, width = WINDOWS[window]
    grey = (np.asarray(hu, dtype=np.float32) - (level - width / 2)) / width * 255.0
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def labelled_panels(images: dict[str, np.ndarray], labels: bool = True, window: str = "soft tissue") -> Image.Image:
    """HU images of one size side by side in `window`, each labelled at its top left."""
    panels = [window_uint8(image, window) for image in images.values()]
    picture = Image.fromarray(np.hstack(panels))
    if labels:
        draw = ImageDraw.Draw(picture)
        width = panels[0].shape[1]
        for index, label in enumerate(images):
            draw.text((index * width + 4, 4), label, fill=255)
    return picture
