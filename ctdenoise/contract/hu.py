"""Hounsfield units: the CT scale, the model's window and the display windows.

Each mapping is written once, as arithmetic that works on NumPy arrays and TensorFlow
tensors alike; only the clipping differs between the two, so `ctdenoise.trainer_module.data` (TF)
and the NumPy helpers here use the same formula (docs/design.md, "The algorithm: cycle-identity CycleGAN for
low-dose CT", design, "Data contract").
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

CT_FLOOR_HU, CT_CEILING_HU = -1024, 3071
"""The 12-bit CT scale. Ingestion reads padding and anything below the floor as the floor
(air); derived series are clipped to this range."""

HU_MIN, HU_MAX = float(CT_FLOOR_HU), 2000.0
"""The model's window: HU are truncated to it and mapped linearly to [-1, 1] for training,
evaluation (PSNR and SSIM) and inference. The paper's floor was -1000 HU; air as scanners write
it lies between -1024 and -1000, so a window that cuts it there teaches the model a brighter air
than the reference's (docs/design.md, "HU conversion and the model window")."""

BODY_HU = -500.0
"""Pixels above this HU are "body": the Evaluator's in-body metrics use it (mask of the
reference NDCT). Air and the scanner's background fall below it; lung parenchyma (about
-850 HU) too, so body means soft tissue, fat, bone and contrast. (The trainer's foreground
patch line is its own hyperparameter, `foreground_hu`.)"""

FOREGROUND_HU = -900.0
"""The trainer's default patient line for foreground patches (HParams.foreground_hu): above
it, lungs included (about -850 HU), against the air around the patient (-1000 HU, a few
tens of HU of noise)."""

DATA_RANGE = 2.0
"""Width of the normalised range [-1, 1]: the data range of PSNR and SSIM."""

SOFT_TISSUE_LEVEL, SOFT_TISSUE_WIDTH = 40.0, 400.0
"""Display window of previews, pictures and TensorBoard images: soft tissue (W400/L40),
where low-dose noise shows."""

Array = TypeVar("Array", np.ndarray, float)
"""A NumPy array or a float; TensorFlow tensors, whose operators are the same, are used here too."""


def unit_from_hu(hu: Array) -> Array:
    """HU (already inside the window) → [-1, 1]."""
    return (hu - HU_MIN) / (HU_MAX - HU_MIN) * DATA_RANGE - 1.0


def hu_from_unit(unit: Array) -> Array:
    """[-1, 1] → HU; the inverse of `unit_from_hu`."""
    return (unit + 1.0) / DATA_RANGE * (HU_MAX - HU_MIN) + HU_MIN


def grey_from_hu(hu: Array) -> Array:
    """HU → grey level of the soft-tissue window, 0 at its bottom and 1 at its top (unclipped)."""
    return (hu - (SOFT_TISSUE_LEVEL - SOFT_TISSUE_WIDTH / 2)) / SOFT_TISSUE_WIDTH


def normalize_hu(hu: np.ndarray) -> np.ndarray:
    """HU → [-1, 1] after truncation to the window (float64)."""
    return unit_from_hu(np.clip(np.asarray(hu, dtype=np.float64), HU_MIN, HU_MAX))


def denormalize_hu(normalised: np.ndarray) -> np.ndarray:
    """[-1, 1] → HU (float64)."""
    return hu_from_unit(np.asarray(normalised, dtype=np.float64))
