"""The cycle-identity CycleGAN's networks as functional Keras models (docs/design.md, "The algorithm:
cycle-identity CycleGAN for low-dose CT"): the
generators G and F and the patch discriminators D_A and D_B."""

from __future__ import annotations

import tf_keras as keras

from ctdenoise.trainer_module.models.cycle_identity.params import CycleParams
from ctdenoise.trainer_module.models.layers import LeakyReLU, bn, conv, conv_layer, generator_input

RESIDUAL_MODULES = 6
RECEPTIVE_RADIUS = 1 + 3 * RESIDUAL_MODULES + 3
"""Pixels of context the generator reads on each side: one per 3×3 convolution (the first,
three per residual module, the two after the concatenation and the output)."""


def residual_module(x, channels: int):
    """ReLU(x + three conv_layers of x)."""
    y = x
    for _ in range(3):
        y = conv_layer(y, channels)
    return keras.layers.ReLU()(keras.layers.Add()([x, y]))


def build_generator(hp: CycleParams, name: str) -> keras.Model:
    """Image-to-image generator for slices of any height and width.

    It reads the image and its noise level map (`generator_input`), predicts a correction that
    is added to the image (global residual), then tanh
    (unless `hp.tanh_output` is off); the add and the tanh stay float32 under mixed
    precision so that the output image keeps full precision.
    """
    inputs, image = generator_input()
    features = [conv_layer(inputs, hp.ngf)]
    for _ in range(RESIDUAL_MODULES):
        features.append(residual_module(features[-1], hp.ngf))
    x = keras.layers.Concatenate()(features)
    x = conv_layer(x, hp.ngf)
    x = conv_layer(x, hp.nglf)
    x = conv(x, 1)
    x = keras.layers.Add(dtype="float32")([x, image])
    output = keras.layers.Activation("tanh" if hp.tanh_output else "linear", dtype="float32", name="denoised")(x)
    return keras.Model(inputs, output, name=name)


def build_discriminator(hp: CycleParams, name: str) -> keras.Model:
    """Patch discriminator: a conv stack whose final map is flattened into as many
    least-squares logits as it has pixels (25 for 56x56 patches)."""
    patch = keras.Input(shape=(hp.patch, hp.patch, 1), name="patch")
    x = LeakyReLU(0.2)(conv(patch, hp.ndf, 4, 2))
    for channels, stride in ((2 * hp.ndf, 2), (4 * hp.ndf, 2), (8 * hp.ndf, 1)):
        x = LeakyReLU(0.2)(bn(conv(x, channels, 4, stride)))
    x = keras.layers.Flatten()(conv(x, 1, 4, 1))
    logits = keras.layers.Dense(x.shape[-1], dtype="float32", name="logits")(x)
    return keras.Model(patch, logits, name=name)
