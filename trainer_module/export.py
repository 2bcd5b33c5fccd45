"""Export the LDCT→NDCT generator as a SavedModel that maps HU to HU.

Truncation, normalisation and de-normalisation live inside the graph, so a caller
(TF Serving, `ctdenoise denoise`, the Evaluator) feeds and receives Hounsfield units and
never needs to know the training window.
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
import tf_keras as keras

from components import features
from trainer_module.data import decode_image, denormalize, normalize_hu, parse

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "from_examples"
OUTPUT_KEY = "denoised_hu"
METADATA_FILE = "ctdenoise_model.json"
"""Written beside saved_model.pb: hyperparameters and provenance for lineage and `denoise`."""


class Denoiser(tf.Module):
    """The generator G with HU-in, HU-out signatures."""

    def __init__(self, generator: keras.Model):
        super().__init__(name="denoiser")
        self.generator = generator

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="hu")])
    def denoise_hu(self, hu: tf.Tensor) -> dict[str, tf.Tensor]:
        """[N, H, W, 1] HU of any H, W → denoised HU of the same shape."""
        return {OUTPUT_KEY: self._denoise(normalize_hu(hu))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def denoise_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Serialized tf.Examples (the ingestion contract, slices of one size) → denoised LDCT HU."""
        ldct = tf.map_fn(
            lambda s: decode_image(parse(s), features.DOSES[0]), serialized,
            fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32),
        )
        return {OUTPUT_KEY: self._denoise(ldct)}

    def _denoise(self, normalised: tf.Tensor) -> tf.Tensor:
        return denormalize(tf.cast(self.generator(normalised, training=False), tf.float32))


def export_generator(generator: keras.Model, export_dir: str, metadata: dict[str, Any]) -> None:
    """Write the SavedModel with both signatures, plus the metadata JSON beside it."""
    module = Denoiser(generator)
    tf.saved_model.save(
        module, export_dir,
        signatures={SERVING_SIGNATURE: module.denoise_hu, EXAMPLES_SIGNATURE: module.denoise_examples},
    )
    with tf.io.gfile.GFile(os.path.join(export_dir, METADATA_FILE), "w") as f:
        f.write(json.dumps(metadata, indent=1, sort_keys=True))
