"""The four networks of the cycle-identity CycleGAN as functional Keras models (docs/design.md §1).

The building blocks mirror the original TensorFlow 1 code layer for layer (explicit
1-pixel zero padding before a 'valid' convolution, N(0, 0.02) kernels, BN with momentum
0.1), so that the paper configuration has exactly the original parameter counts.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from trainer_module.hparams import HParams

RESIDUAL_MODULES = 6


def conv(x, channels: int, kernel: int = 3, stride: int = 1):
    """Zero-pad one pixel on each side, then a 'valid' convolution with bias."""
    x = keras.layers.ZeroPadding2D(1)(x)
    return keras.layers.Conv2D(
        channels, kernel, strides=stride, padding="valid", use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
    )(x)


def bn(x):
    """Batch norm as in the original; Keras' momentum weighs the *old* moving statistics,
    so the original's 0.1 means moving = 0.1 * moving + 0.9 * batch."""
    return keras.layers.BatchNormalization(
        momentum=0.1, epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
    )(x)


def conv_layer(x, channels: int, kernel: int = 3, stride: int = 1):
    """conv -> bn -> ReLU."""
    return keras.layers.ReLU()(bn(conv(x, channels, kernel, stride)))


def residual_module(x, channels: int):
    """ReLU(x + three conv_layers of x)."""
    y = x
    for _ in range(3):
        y = conv_layer(y, channels)
    return keras.layers.ReLU()(keras.layers.Add()([x, y]))


class LeakyReLU(keras.layers.LeakyReLU):
    """keras.layers.LeakyReLU with the same forward op and the same gradient, computed
    from the layer's output instead of its input.

    For alpha > 0 the output has the input's sign, so LeakyReluGrad(dy, output) equals
    LeakyReluGrad(dy, input) bit for bit. The stock gradient reads the input, which on
    CPU (oneDNN) trips Grappler's remapper: it fuses Conv2D+BiasAdd, then folds that
    fused conv and the LeakyRelu into one node without checking that the gradient still
    reads the conv's output, and rejects its own rewrite with "remapper failed:
    Mutation::Apply error: fanout '.../LeakyReluGrad' exist for missing node
    '.../BiasAdd'". Reading the output leaves the conv's output one consumer, so
    Conv2D+BiasAdd+LeakyRelu becomes one valid _FusedConv2D.
    """

    def call(self, inputs):
        alpha = float(self.alpha)

        @tf.custom_gradient
        def leaky_relu(x):
            y = tf.nn.leaky_relu(x, alpha=alpha)

            def grad(dy):
                return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=alpha)

            return y, grad

        return leaky_relu(inputs)


def build_generator(hp: HParams, name: str) -> keras.Model:
    """Image-to-image generator for slices of any height and width.

    It predicts a correction that is added to its input (global residual), then tanh
    (unless `hp.tanh_output` is off); the add and the tanh stay float32 under mixed
    precision so that the output image keeps full precision.
    """
    image = keras.Input(shape=(None, None, 1), name="image")
    features = [conv_layer(image, hp.ngf)]
    for _ in range(RESIDUAL_MODULES):
        features.append(residual_module(features[-1], hp.ngf))
    x = keras.layers.Concatenate()(features)
    x = conv_layer(x, hp.ngf)
    x = conv_layer(x, hp.nglf)
    x = conv(x, 1)
    x = keras.layers.Add(dtype="float32")([x, image])
    output = keras.layers.Activation("tanh" if hp.tanh_output else "linear", dtype="float32", name="denoised")(x)
    return keras.Model(image, output, name=name)


def infer(generator: keras.Model, normalised: tf.Tensor) -> tf.Tensor:
    """The generator in inference mode, float32 and clipped to [-1, 1], the HU window: a
    generator without tanh (`tanh_output`) can leave it. Training keeps the unclipped output,
    whose gradient does not vanish outside the window."""
    output = tf.cast(generator(normalised, training=False), tf.float32)
    return tf.clip_by_value(output, -1.0, 1.0)


def build_discriminator(hp: HParams, name: str) -> keras.Model:
    """Patch discriminator: a conv stack whose final map is flattened into as many
    least-squares logits as it has pixels (25 for 56x56 patches)."""
    patch = keras.Input(shape=(hp.patch, hp.patch, 1), name="patch")
    x = LeakyReLU(0.2)(conv(patch, hp.ndf, 4, 2))
    for channels, stride in ((2 * hp.ndf, 2), (4 * hp.ndf, 2), (8 * hp.ndf, 1)):
        x = LeakyReLU(0.2)(bn(conv(x, channels, 4, stride)))
    x = keras.layers.Flatten()(conv(x, 1, 4, 1))
    logits = keras.layers.Dense(x.shape[-1], dtype="float32", name="logits")(x)
    return keras.Model(patch, logits, name=name)
