"""WGAN-VGG's hyperparameters beyond the shared base, and its preset sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctdenoise.trainer_module.hparams import CPU_PRESETS, HParams, knob

CPU_SIZES = {"wgan_channels": 16, "critic_channels": 16, "critic_dense": 128}
"""The largest sizes whose training step `benchmarks.model_cost` measured no slower than the
cycle-identity model's at the CPU presets' batch and patch, natively and with oneDNN limited to
AVX2 (BENCHMARKS.md, "Model family"; docs/design.md, "Hyperparameters and presets")."""


@dataclass(frozen=True)
class WganVggParams(HParams):
    PRESETS: ClassVar = {
        **{name: CPU_SIZES for name in CPU_PRESETS},
        "tiny": {"wgan_channels": 4, "critic_channels": 4, "critic_dense": 8, "n_critic": 2},
    }

    model: str = "wgan_vgg"
    wgan_channels: int = knob(32, minimum=1, size=True)
    """Channels of each of the generator's eight 3×3 convolutions but the last (32 in its paper)."""
    critic_channels: int = knob(64, minimum=1, size=True)
    """Channels of the critic's first two convolutions, doubled for each later pair (64 in its paper)."""
    critic_dense: int = knob(1024, minimum=1, size=True)
    """Units of the critic's hidden fully connected layer (1024 in its paper)."""
    gp_lambda: float = knob(10.0, minimum=0.0)
    """Weight of WGAN-GP's gradient penalty (10 in its paper)."""
    perceptual_lambda: float = knob(0.1, minimum=0.0)
    """λ₁, the weight of the VGG19 perceptual loss against the generator's adversarial term (0.1)."""
    n_critic: int = knob(4, minimum=1)
    """Critic updates per generator update (4 in its paper's code)."""
    vgg_weights: str | None = None
    """A Keras weights file of VGG19 without its top (ImageNet weights: the user brings it; nothing
    is downloaded). WGAN-VGG refuses to start without it."""
