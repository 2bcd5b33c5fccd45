"""RED-CNN's one network (docs/design.md, "The model family"): five 'valid' convolutions, then five transposed
convolutions that restore the size, ReLU after each, and three shortcuts that add an encoder
map to a decoder output before its ReLU: conv 4's output to deconv 1's, conv 2's to deconv
3's, and the input image to deconv 5's. The paper's images lie in [0, 1]; ours in [-1, 1], so
the paper's last ReLU, which would clip every negative value, is left out."""

from __future__ import annotations

import tf_keras as keras

from ctdenoise.trainer_module.data import CHANNELS
from ctdenoise.trainer_module.models.layers import generator_input
from ctdenoise.trainer_module.models.red_cnn.params import RedCNNParams

LAYERS = 5
"""Convolutions in the encoder, and transposed convolutions in the decoder."""


def receptive_radius(kernel: int) -> int:
    """Pixels of context on each side: (kernel - 1) / 2 per layer, encoder and decoder."""
    return 2 * LAYERS * (kernel - 1) // 2


def build_red_cnn(hp: RedCNNParams, name: str = "red_cnn") -> keras.Model:
    """The network for slices of any height and width larger than its receptive field; it reads
    the image and its noise level map (`generator_input`) and adds its output to the image."""
    channels, kernel = hp.red_channels, hp.red_kernel

    def conv(x):
        return keras.layers.Conv2D(
            channels, kernel, padding="valid", activation="relu", kernel_initializer=_initializer()
        )(x)

    def deconv(x, filters: int = channels, initializer: keras.initializers.Initializer | None = None):
        return keras.layers.Conv2DTranspose(
            filters, kernel, padding="valid", kernel_initializer=initializer or _initializer()
        )(x)

    inputs, image = generator_input()
    x = conv(inputs)
    shortcut_3 = x = conv(x)  # conv 2
    x = conv(conv(x))
    shortcut_1 = x  # conv 4
    x = conv(x)
    x = keras.layers.ReLU()(keras.layers.Add()([deconv(x), shortcut_1]))
    x = keras.layers.ReLU()(deconv(x))
    x = keras.layers.ReLU()(keras.layers.Add()([deconv(x), shortcut_3]))
    x = keras.layers.ReLU()(deconv(x))
    x = keras.layers.Activation("linear", dtype="float32")(deconv(x, 1, keras.initializers.Zeros()))
    output = keras.layers.Add(dtype="float32", name="denoised")([x, image])
    return keras.Model(inputs, output, name=name)


def _initializer() -> keras.initializers.Initializer:
    """He-normal kernels, one instance per layer (a shared one would give every layer the same
    draw). The paper's N(0, 0.01) shrinks the signal by about a third per ReLU layer at 96
    channels, and to nothing at the few channels of the test presets, where whole layers then
    get no gradient. The last layer, which writes the residual added to the image, starts at
    zero instead, so the network starts as the identity: with He-normal there too the first
    output is hundreds of HU off, and a CPU budget spends its steps unlearning that
    (docs/design.md, "The model family")."""
    return keras.initializers.HeNormal()


def weights(hp: RedCNNParams) -> int:
    """Trainable weights: ten layers with bias, all of `red_channels` but the first's input
    (the image and its level map) and the last's output."""
    channels, area = hp.red_channels, hp.red_kernel**2
    first, last = area * CHANNELS * channels + channels, area * channels + 1
    return first + last + 8 * (area * channels * channels + channels)


def maps(hp: RedCNNParams) -> int:
    """Channels of stored layer outputs per pixel (nine layers of `red_channels`)."""
    return 9 * hp.red_channels
