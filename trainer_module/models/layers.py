"""Layers the models share, written as the original TensorFlow 1 code wrote them (explicit
1-pixel zero padding before a 'valid' convolution, N(0, 0.02) kernels, BN with momentum
0.1), so that each paper configuration has exactly the original parameter counts."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.data import CHANNELS, image_of


def conv(x, channels: int, kernel: int = 3, stride: int = 1):
    """Zero-pad one pixel on each side, then a 'valid' convolution with bias."""
    x = keras.layers.ZeroPadding2D(1)(x)
    return keras.layers.Conv2D(
        channels,
        kernel,
        strides=stride,
        padding="valid",
        use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
    )(x)


def bn(x):
    """Batch norm as in the original; Keras' momentum weighs the *old* moving statistics,
    so the original's 0.1 means moving = 0.1 * moving + 0.9 * batch."""
    return keras.layers.BatchNormalization(
        momentum=0.1,
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
    )(x)


def conv_layer(x, channels: int, kernel: int = 3, stride: int = 1):
    """conv -> bn -> ReLU."""
    return keras.layers.ReLU()(bn(conv(x, channels, kernel, stride)))


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


def generator_input() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """What every generator takes, [N, H, W, CHANNELS]: the image and its noise level map
    (docs/design.md, "Noise-level input"); and the image channel alone, to which a residual
    generator adds its correction."""
    inputs = keras.Input(shape=(None, None, CHANNELS), name="image_and_level")
    return inputs, keras.layers.Lambda(image_of, name="image")(inputs)
