"""The CycleGANs' hyperparameters beyond the shared base, and their preset sizes: `CycleParams`
for both CycleGANs, `CycleIdentityParams` for the cycle-identity model, which adds the identity term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ctdenoise.trainer_module.hparams import FOREGROUND_SHARE, HParams, knob

GAME_SWITCHES: dict[str, Any] = {"d_joint_batch": True, "d_window": True, "foreground_patches": FOREGROUND_SHARE}
"""The departures from the paper that start the adversarial game on CT (docs/design.md, "Making the
adversarial game start"): the CPU presets use them, `paper` does not."""
CPU_SIZES = {"ngf": 16, "nglf": 8, "ndf": 16}
"""The generators' and discriminators' channels in the CPU presets (docs/design.md, "Hyperparameters and presets")."""


@dataclass(frozen=True)
class CycleParams(HParams):
    """What both CycleGANs read: their networks, losses, discriminators and image pools."""

    PRESETS: ClassVar = {
        "cpu-demo": {**CPU_SIZES, **GAME_SWITCHES},
        "cpu-30min": {**CPU_SIZES, **GAME_SWITCHES},
        "tiny": {"ngf": 4, "nglf": 4, "ndf": 4, "pool_size": 4},
    }
    SHAPE_FIELDS: ClassVar = ("tanh_output",)

    ngf: int = knob(128, minimum=1, size=True)
    """Generator feature channels."""
    nglf: int = knob(15, minimum=1, size=True)
    """Channels of the generator's last conv_layer before the 1-channel output."""
    ndf: int = knob(64, minimum=1, size=True)
    """Discriminator channels of the first conv (doubled by each later conv)."""
    tanh_output: bool = True
    """End the generators with tanh, as the paper does (docs/design.md, "Making the adversarial game
    start"). tanh reaches -1 (air) only at minus infinity, so the generator must learn a residual
    that jumps by about 2 at every air–tissue edge and is large in the lungs; false makes the
    residual sum itself the output, clipped to the HU window in inference."""
    paired: bool = False
    """Crop LDCT and NDCT patches at the same place of the same slice pair instead of from two
    independent streams (the paper trains unpaired)."""

    # Losses, the discriminators and the image pool.
    cycle_lambda: float = knob(10.0, minimum=0.0)
    adversarial_weight: float = knob(1.0, minimum=0.0)
    """Weight of the generators' LSGAN terms (1 in the paper; 0 trains without them)."""
    supervised_lambda: float = knob(0.0, minimum=0.0)
    """λ_sup of the supervised term λ_sup·L1(G(a), b) on co-located patches; needs `paired`
    (0: off, the paper's unpaired method)."""
    d_lr_scale: float = knob(1.0, above=0.0)
    """The discriminators' learning rate as a multiple of `lr` (1 in the paper)."""
    d_joint_batch: bool = False
    """Judge real and fake patches in one discriminator batch, so that its BatchNorm
    statistics do not erase their difference in noise level (the paper calls D on each
    alone; docs/design.md, "Making the adversarial game start")."""
    d_window: bool = False
    """Show the discriminators their patches through the soft-tissue window (W400/L40, clipped)
    instead of the model's 3000 HU window, where 30 HU of noise is 0.02 of the range: the
    adversarial terms then judge, and push, only soft tissue and fat, and leave air, lungs and
    bone to the cycle and identity terms (docs/design.md, "Making the adversarial game start")."""
    pool_size: int = knob(50, minimum=0, size=True)
    use_pool: bool = True
    """Feed the discriminators from a history of generated images (the original never did)."""

    def check(self) -> None:
        super().check()
        if self.supervised_lambda and not self.paired:
            raise ValueError("supervised_lambda needs paired patches: set paired=true")


@dataclass(frozen=True)
class CycleIdentityParams(CycleParams):
    """The cycle-identity model's: both CycleGANs' plus the identity term's weight."""

    model: str = "cycle_identity"
    identity_gamma: float = knob(5.0, minimum=0.0)
