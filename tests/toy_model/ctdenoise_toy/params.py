"""The toy model's one hyperparameter beyond the shared base, and its size in the `tiny` preset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctdenoise.trainer_module.hparams import HParams, knob


@dataclass(frozen=True)
class ToyParams(HParams):
    PRESETS: ClassVar = {"tiny": {"toy_channels": 2}}

    model: str = "toy"
    toy_channels: int = knob(8, minimum=1, size=True)
    """Channels of the hidden 3×3 convolution."""
