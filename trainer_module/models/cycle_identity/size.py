"""The cycle-identity CycleGAN's sizes, counted from its hyperparameters without building it:
weights of each network and the generator's feature maps, for the memory check."""

from __future__ import annotations

from ctdenoise.trainer_module.data import CHANNELS
from ctdenoise.trainer_module.models.cycle_identity.networks import RESIDUAL_MODULES
from ctdenoise.trainer_module.models.cycle_identity.params import CycleParams

GENERATOR_NGF_CONVS = 2 + 3 * RESIDUAL_MODULES
"""The generator's conv_layers of ngf channels: the first, three in each residual module, and
the one over the concatenated feature maps."""


def generator_weights(hp: CycleParams) -> int:
    """Weights of one generator (BatchNorm's four per channel included): a conv_layer from the
    image and its level map to ngf channels, six residual modules of three, one over the seven
    concatenated feature maps, one to nglf channels and the output convolution."""
    ngf, nglf = hp.ngf, hp.nglf
    return (
        conv_weights(3, CHANNELS, ngf, bn=True)
        + 3 * RESIDUAL_MODULES * conv_weights(3, ngf, ngf, bn=True)
        + conv_weights(3, (RESIDUAL_MODULES + 1) * ngf, ngf, bn=True)
        + conv_weights(3, ngf, nglf, bn=True)
        + conv_weights(3, nglf, 1, bn=False)
    )


def discriminator_weights(hp: CycleParams) -> int:
    """Weights of one discriminator: four 4×4 convolutions (strides 2, 2, 2, 1; channels ndf
    doubling), a 4×4 convolution to one map and a dense layer from that map's pixels to as
    many logits."""
    ndf, side = hp.ndf, hp.patch
    for stride in (2, 2, 2, 1, 1):
        side = (side + 2 - 4) // stride + 1
    logits = side * side
    return (
        conv_weights(4, 1, ndf, bn=False)
        + conv_weights(4, ndf, 2 * ndf, bn=True)
        + conv_weights(4, 2 * ndf, 4 * ndf, bn=True)
        + conv_weights(4, 4 * ndf, 8 * ndf, bn=True)
        + conv_weights(4, 8 * ndf, 1, bn=False)
        + logits * logits
        + logits
    )


def generator_maps(hp: CycleParams) -> int:
    """Channels of the generator's stored convolution outputs, per pixel."""
    return GENERATOR_NGF_CONVS * hp.ngf + hp.nglf


def conv_weights(kernel: int, inputs: int, outputs: int, bn: bool) -> int:
    """Weights of a convolution with bias, and of the BatchNorm after it (gamma, beta and
    the two moving statistics)."""
    return kernel * kernel * inputs * outputs + outputs + (4 * outputs if bn else 0)
