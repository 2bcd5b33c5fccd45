"""The plain CycleGAN of Zhu et al. as the original applied it: the cycle-identity model
without the identity term (docs/design.md, "The model family")."""

from ctdenoise.trainer_module.models.cyclegan.model import CycleGAN

MODEL = CycleGAN
