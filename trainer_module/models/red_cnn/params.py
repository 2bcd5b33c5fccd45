"""RED-CNN's hyperparameters beyond the shared base, and its preset sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctdenoise.trainer_module.hparams import CPU_PRESETS, HParams, knob

CPU_SIZES = {"red_channels": 64}
"""The largest width whose training step `benchmarks.model_cost` measured no slower than the
cycle-identity model's at the CPU presets' batch and patch, natively and with oneDNN limited to
AVX2 (BENCHMARKS.md, "Model family"; docs/design.md, "Hyperparameters and presets")."""


@dataclass(frozen=True)
class RedCNNParams(HParams):
    PRESETS: ClassVar = {**{name: CPU_SIZES for name in CPU_PRESETS}, "tiny": {"red_channels": 4, "red_kernel": 3}}

    model: str = "red_cnn"
    red_channels: int = knob(96, minimum=1, size=True)
    """Channels of each of RED-CNN's layers but the last (96 in its paper)."""
    red_kernel: int = knob(5, minimum=1, size=True)
    """Side of RED-CNN's square kernels (5 in its paper): each layer trims (red_kernel - 1) / 2
    pixels of context on each side."""

    def check(self) -> None:
        super().check()
        if self.red_kernel % 2 == 0:
            raise ValueError(f"red_kernel must be odd (a centred kernel), got {self.red_kernel}")
