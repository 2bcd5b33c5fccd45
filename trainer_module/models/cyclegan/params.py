"""The plain CycleGAN's hyperparameters: both CycleGANs' (`cycle_identity.params.CycleParams`),
without the identity term's weight."""

from __future__ import annotations

from dataclasses import dataclass

from ctdenoise.trainer_module.models.cycle_identity.params import CycleParams


@dataclass(frozen=True)
class CycleGANParams(CycleParams):
    model: str = "cyclegan"
