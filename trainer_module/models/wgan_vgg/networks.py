"""WGAN-VGG's networks: the generator (eight 3×3 convolutions with ReLU, the last to one
channel) and the critic (six 3×3 convolutions, strides 1, 2, 1, 2, 1, 2, LeakyReLU 0.2, then a
hidden fully connected layer and one output), both without normalisation, as in the paper."""

from __future__ import annotations

import tf_keras as keras

from ctdenoise.trainer_module.data import CHANNELS
from ctdenoise.trainer_module.models.layers import LeakyReLU, generator_input
from ctdenoise.trainer_module.models.wgan_vgg.params import WganVggParams

GENERATOR_CONVS = 8
RECEPTIVE_RADIUS = GENERATOR_CONVS
"""One pixel of context per 3×3 convolution."""
CRITIC_STRIDES = (1, 2, 1, 2, 1, 2)
CRITIC_WIDTHS = (1, 1, 2, 2, 4, 4)
"""The critic's channels as multiples of `critic_channels` (64, 64, 128, 128, 256, 256)."""


def build_generator(hp: WganVggParams, name: str = "wgan_generator") -> keras.Model:
    """The generator for slices of any height and width ('same' padding keeps the size). The
    input is the image and its noise level map (`generator_input`); the output stays linear
    and float32: the product's window is [-1, 1], and inference clips."""
    inputs, _ = generator_input()
    x = inputs
    for _ in range(GENERATOR_CONVS - 1):
        x = keras.layers.Conv2D(hp.wgan_channels, 3, padding="same", activation="relu", kernel_initializer="he_normal")(
            x
        )
    output = keras.layers.Conv2D(1, 3, padding="same", dtype="float32", name="denoised")(x)
    return keras.Model(inputs, output, name=name)


def build_critic(hp: WganVggParams, name: str = "critic") -> keras.Model:
    """The critic for `hp.patch`² patches: one unbounded score per patch (no sigmoid, WGAN)."""
    patch = keras.Input(shape=(hp.patch, hp.patch, 1), name="patch")
    x = patch
    for stride, width in zip(CRITIC_STRIDES, CRITIC_WIDTHS, strict=True):
        x = LeakyReLU(0.2)(keras.layers.Conv2D(width * hp.critic_channels, 3, strides=stride, padding="same")(x))
    x = LeakyReLU(0.2)(keras.layers.Dense(hp.critic_dense)(keras.layers.Flatten()(x)))
    score = keras.layers.Dense(1, dtype="float32", name="score")(x)
    return keras.Model(patch, score, name=name)


def generator_weights(hp: WganVggParams) -> int:
    c = hp.wgan_channels
    return (9 * CHANNELS * c + c) + (GENERATOR_CONVS - 2) * (9 * c * c + c) + (9 * c + 1)


def critic_weights(hp: WganVggParams) -> int:
    weights, inputs, side = 0, 1, hp.patch
    for stride, width in zip(CRITIC_STRIDES, CRITIC_WIDTHS, strict=True):
        outputs = width * hp.critic_channels
        weights += 9 * inputs * outputs + outputs
        inputs, side = outputs, -(-side // stride)
    return weights + (side * side * inputs + 1) * hp.critic_dense + hp.critic_dense + 1
