"""The paper's cycle-identity CycleGAN (the default model): two generators, two patch
discriminators, LSGAN, cycle and identity terms (docs/design.md, "The algorithm: cycle-identity CycleGAN for
low-dose CT")."""

from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN

MODEL = CycleIdentityGAN
