"""Pictures for people: HU images side by side in the soft-tissue window, labelled."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from contract.hu import soft_tissue_uint8


def labelled_panels(images: dict[str, np.ndarray], labels: bool = True) -> Image.Image:
    """HU images of one size side by side in the soft-tissue window, each labelled at its top left."""
    panels = [soft_tissue_uint8(image) for image in images.values()]
    picture = Image.fromarray(np.hstack(panels))
    if labels:
        draw = ImageDraw.Draw(picture)
        width = panels[0].shape[1]
        for index, label in enumerate(images):
            draw.text((index * width + 4, 4), label, fill=255)
    return picture
