"""VGG19 features for the perceptual loss, from the user's weights file.

Nothing is downloaded: `vgg_weights` names a Keras weights file of VGG19 without its top (for
ImageNet's: keras.applications' `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`). A missing
file, or one whose shapes are not VGG19's, is refused in one line naming the option.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ctdenoise.storage import files

FEATURE_LAYER = "block5_conv4"
"""The paper's conv5_4."""
VGG19_WEIGHTS = 20_024_384
"""Weights of VGG19 without its top (keras.applications), for the memory estimate."""
ACTIVATION_MAPS_PER_PIXEL = 2 * 64 + 2 * 128 / 4 + 4 * 256 / 16 + 4 * 512 / 64 + 4 * 512 / 256
"""VGG19's stored convolution outputs up to conv5_4, in maps per input pixel (each pooling
quarters the pixels): for the memory estimate."""


def vgg_features(weights_file: str | None) -> keras.Model:
    """VGG19 up to conv5_4 with the file's weights, frozen: gray [-1, 1] patches in, features out."""
    if not weights_file:
        raise ValueError(
            "model wgan_vgg needs VGG19 weights: --set vgg_weights=FILE (a Keras weights file of "
            "VGG19 without its top; nothing is downloaded)"
        )
    if not files.exists(weights_file):
        raise ValueError(f"vgg_weights={weights_file}: no such file")
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    try:
        vgg.load_weights(files.tf_path(weights_file))
    except (ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"vgg_weights={weights_file}: not VGG19's weights without its top ({reason[:200]})") from None
    features = keras.Model(vgg.input, vgg.get_layer(FEATURE_LAYER).output, name="vgg19_conv5_4")
    features.trainable = False
    return features


def vgg_input(patches: tf.Tensor) -> tf.Tensor:
    """Gray patches in the model's [-1, 1] window as VGG19's ImageNet input: 0-255, repeated to
    three channels, the ImageNet channel means subtracted (keras.applications' preprocessing)."""
    gray = (tf.cast(patches, tf.float32) + 1.0) * 127.5
    return keras.applications.vgg19.preprocess_input(tf.repeat(gray, 3, axis=-1))
