"""Export the LDCT→NDCT generator as a SavedModel that maps HU to HU.

Truncation, normalisation and de-normalisation live inside the graph, so a caller
(TF Serving, `ctdenoise denoise`, the Evaluator) feeds and receives Hounsfield units and
never needs to know the training window. Before export the generator's BatchNorm statistics
are re-estimated (`reestimate_batch_norm`, docs/design.md, "The algorithm: cycle-identity CycleGAN for low-dose CT").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import tensorflow as tf
import tf_keras as keras

from ctdenoise.contract import features
from ctdenoise.contract.names import (
    EXAMPLES_SIGNATURE,
    INPUT_KEY,
    LEVEL_KEY,
    MODEL_METADATA_FILE,
    MODEL_NAME_VARIABLE,
    OUTPUT_KEY,
    RECEPTIVE_RADIUS_VARIABLE,
    SERVING_SIGNATURE,
)
from ctdenoise.storage import files
from ctdenoise.trainer_module.data import LDCT, at_level, decode_image, denormalize, normalize_hu, parse
from ctdenoise.trainer_module.models.base import DenoisingModel, infer

GENERATOR, REVERSE = "generator", "reverse_generator"
"""The exported module's attributes holding the generator's and the reverse generator's weights."""


@dataclass(frozen=True)
class Description:
    """What an exported model says of itself, for `ctdenoise denoise` and the derived series."""

    model: str
    receptive_radius: int

    @classmethod
    def of(cls, model: DenoisingModel) -> Description:
        return cls(model.NAME, model.receptive_radius)


class Denoiser(tf.Module):
    """The generator G with HU-in, HU-out signatures that take each slice's noise level, and its
    description as variables; a model's reverse generator (NDCT → LDCT), where it has one, rides
    along as weights only (REVERSE), for a later warm start."""

    def __init__(self, generator: keras.Model, description: Description, reverse: keras.Model | None = None):
        super().__init__(name="denoiser")
        self.generator = generator
        if reverse is not None:
            setattr(self, REVERSE, reverse)
        setattr(self, MODEL_NAME_VARIABLE, tf.Variable(description.model, trainable=False))
        setattr(self, RECEPTIVE_RADIUS_VARIABLE, tf.Variable(description.receptive_radius, trainable=False))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 1], tf.float32, name=INPUT_KEY),
            tf.TensorSpec([None], tf.float32, name=LEVEL_KEY),
        ]
    )
    def denoise_hu(self, hu: tf.Tensor, noise_hu: tf.Tensor) -> dict[str, tf.Tensor]:
        """[N, H, W, 1] HU of any H, W and each slice's noise level [N] in HU → denoised HU of
        the same shape."""
        return {OUTPUT_KEY: self._denoise(normalize_hu(hu), noise_hu)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def denoise_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Serialized tf.Examples (the ingestion contract) → denoised LDCT HU, [N, H, W, 1], each
        at the noise level ingestion measured for it.

        Each example is denoised at its own size and padded (bottom, right) to the largest
        in the batch, which TFMA may mix; the metrics crop it back. An example without an
        LDCT image gives zeros.
        """
        sides = tf.map_fn(
            lambda s: tf.stack([parse(s)[features.HEIGHT], parse(s)[features.WIDTH]]),
            serialized,
            fn_output_signature=tf.TensorSpec([2], tf.int64),
        )
        height, width = tf.reduce_max(sides[:, 0]), tf.reduce_max(sides[:, 1])

        def one(example: tf.Tensor) -> tf.Tensor:
            fields = parse(example)
            level = fields[features.noise_key(LDCT)][tf.newaxis]
            image = tf.cond(
                tf.strings.length(fields[features.image_key(LDCT)]) > 0,
                lambda: self._denoise(decode_image(fields, LDCT)[tf.newaxis], level)[0],
                lambda: tf.zeros(tf.cast(tf.stack([fields[features.HEIGHT], fields[features.WIDTH], 1]), tf.int32)),
            )
            pad = tf.cast(tf.stack([height, width]), tf.int32) - tf.shape(image)[:2]
            return tf.pad(image, [[0, pad[0]], [0, pad[1]], [0, 0]])

        denoised = tf.map_fn(one, serialized, fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32))
        return {OUTPUT_KEY: denoised}

    def _denoise(self, normalised: tf.Tensor, level_hu: tf.Tensor) -> tf.Tensor:
        return denormalize(infer(self.generator, at_level(normalised, level_hu)))


def export_generator(
    generator: keras.Model,
    description: Description,
    export_dir: str,
    metadata: dict[str, Any] | None,
    reverse: keras.Model | None = None,
) -> None:
    """Write the SavedModel with both signatures and its description (and the weights of a
    `reverse` generator), plus the metadata JSON beside it.

    Under a multi-worker strategy every worker must save (writing the variables averages the
    BatchNorm statistics across workers, a collective); a worker other than the chief saves
    into a folder it throws away and passes no metadata, so nothing else is written.
    """
    module = Denoiser(generator, description, reverse)
    tf.saved_model.save(
        module,
        files.tf_path(export_dir),
        signatures={SERVING_SIGNATURE: module.denoise_hu, EXAMPLES_SIGNATURE: module.denoise_examples},
    )
    if metadata is not None:
        files.write_json(files.join(export_dir, MODEL_METADATA_FILE), metadata)


def reestimate_batch_norm(model: keras.Model, batches: Iterator[tf.Tensor], count: int) -> None:
    """Replace the BatchNorm moving statistics of `model` by their plain average over `count`
    batches seen in training mode ("precise BN").

    BN's own update is reused with momentum (k-1)/k at the k-th batch, which turns the
    exponential moving average into a cumulative one; every layer sees the statistics of
    its input as produced by the layers before it, exactly as in training.
    """
    norms = [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    try:
        for k in range(1, count + 1):
            for layer in norms:
                layer.momentum = (k - 1) / k
            model(next(batches), training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
