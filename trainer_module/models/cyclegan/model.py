"""The plain CycleGAN: the cycle-identity model's networks, pools and step without the identity
term, so its step never computes F(a) or G(b)."""

from __future__ import annotations

from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
from ctdenoise.trainer_module.models.cyclegan.params import CycleGANParams


class CycleGAN(CycleIdentityGAN):
    """G: LDCT -> NDCT, F: NDCT -> LDCT, D_A and D_B; LSGAN and cycle terms only."""

    NAME = "cyclegan"
    PARAMS = CycleGANParams
    PROGRESS_TERMS = ("g_total", "cycle", "d_a", "d_b")
    IDENTITY = False
