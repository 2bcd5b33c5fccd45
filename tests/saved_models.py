"""Small real SavedModels for the commands that load one: any Keras layer as the generator,
exported by the Trainer's own `export_generator`; and modules with the product's serving
names around any TensorFlow function, for models that misbehave on purpose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
import tf_keras as keras

from ctdenoise.contract.names import (
    INPUT_KEY,
    LEVEL_KEY,
    MODEL_NAME_VARIABLE,
    OUTPUT_KEY,
    RECEPTIVE_RADIUS_VARIABLE,
    SERVING_SIGNATURE,
)
from ctdenoise.trainer_module.export import Description, export_generator
from ctdenoise.trainer_module.models.layers import generator_input


def export_layer(folder: Path, output_layer: keras.layers.Layer) -> Path:
    """`output_layer` on the image channel of a generator's input (any size), exported to `folder`
    under its name."""
    inputs, image = generator_input()
    export_generator(keras.Model(inputs, output_layer(image)), Description(folder.name, 0), str(folder), {"test": True})
    return folder


HU_IN = tf.TensorSpec([None, None, None, 1], tf.float32, name=INPUT_KEY)
LEVEL_IN = tf.TensorSpec([None], tf.float32, name=LEVEL_KEY)
"""The product's serving inputs (trainer_module/export.py)."""


def save_module(
    folder: Path,
    denoise: Callable[[tf.Tensor], tf.Tensor],
    described: bool = True,
    name: str = "wrong",
    radius: int = 0,
    input_name: str = INPUT_KEY,
) -> Path:
    """A SavedModel whose `serving_default` maps `hu` (and `noise_hu`) to `denoised_hu` with `denoise`, and that
    describes itself (`described`) with `name` and `radius`, as the product's export names them."""
    module = tf.Module()
    if described:
        setattr(module, MODEL_NAME_VARIABLE, tf.Variable(name))
        setattr(module, RECEPTIVE_RADIUS_VARIABLE, tf.Variable(radius))
    spec = tf.TensorSpec(HU_IN.shape, HU_IN.dtype, name=input_name)
    module.serve = tf.function(lambda hu, noise_hu: {OUTPUT_KEY: denoise(hu)}, input_signature=[spec, LEVEL_IN])
    tf.saved_model.save(module, str(folder), signatures={SERVING_SIGNATURE: module.serve})
    return folder


def held_identity(written: str, release: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The input, but once a file matching `written` exists each call waits until one matching
    `release` does: the series stops mid-write until the test lets it go, however fast the
    machine (a wait on files, spun in TensorFlow ops, since a SavedModel holds no Python)."""

    def held(hu: tf.Tensor) -> tf.Tensor:
        def waiting(i):
            return tf.logical_and(
                tf.size(tf.io.matching_files(written)) > 0, tf.size(tf.io.matching_files(release)) == 0
            )

        spins = tf.while_loop(waiting, lambda i: i + 1, [0 * tf.cast(tf.reduce_mean(hu), tf.int32)])
        return hu + 0.0 * tf.cast(spins, hu.dtype)

    return held
