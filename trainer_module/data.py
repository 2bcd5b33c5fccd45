"""tf.data input pipelines from the Examples artifact, entirely in the TF graph.

Parse → decode int16 HU → truncate to [-1000, 2000] → normalise to [-1, 1] → random
patches. LDCT and NDCT streams are shuffled and sampled independently (training is
unpaired). No Python runs per element, so tf.data's parallelism and prefetch apply.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from components import features
from components.features import HU_MAX, HU_MIN

_IMAGE_SPEC = {
    features.HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    features.WIDTH: tf.io.FixedLenFeature([], tf.int64),
    **{features.image_key(d): tf.io.FixedLenFeature([], tf.string, default_value="") for d in features.DOSES},
}


def normalize_hu(hu: tf.Tensor) -> tf.Tensor:
    """HU → [-1, 1] after truncation to [HU_MIN, HU_MAX]."""
    hu = tf.clip_by_value(tf.cast(hu, tf.float32), HU_MIN, HU_MAX)
    return (hu - HU_MIN) / (HU_MAX - HU_MIN) * 2.0 - 1.0


def denormalize(x: tf.Tensor) -> tf.Tensor:
    """[-1, 1] → HU (the inverse of normalize_hu inside the window)."""
    return (tf.cast(x, tf.float32) + 1.0) / 2.0 * (HU_MAX - HU_MIN) + HU_MIN


def decode_image(parsed: dict[str, tf.Tensor], dose: str) -> tf.Tensor:
    """The int16 little-endian HU bytes of `dose` → float32 [H, W, 1] normalised image."""
    hu = tf.io.decode_raw(parsed[features.image_key(dose)], tf.int16, little_endian=True)
    shape = tf.stack([parsed[features.HEIGHT], parsed[features.WIDTH], 1])
    return normalize_hu(tf.reshape(hu, tf.cast(shape, tf.int32)))


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    return tf.io.parse_single_example(serialized, _IMAGE_SPEC)


def records(file_patterns: Sequence[str]) -> tf.data.Dataset:
    """Serialized examples of the given TFRecord (GZIP) file patterns, files read in parallel."""
    files = tf.data.Dataset.list_files(list(file_patterns), shuffle=False)
    return files.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )


def dose_slices(file_patterns: Sequence[str], dose: str) -> tf.data.Dataset:
    """Whole normalised slices of one dose (examples without that dose are skipped)."""
    return (
        records(file_patterns)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .filter(lambda p: tf.strings.length(p[features.image_key(dose)]) > 0)
        .map(lambda p: decode_image(p, dose), num_parallel_calls=tf.data.AUTOTUNE)
    )


def patch_batches(file_patterns: Sequence[str], dose: str, patch: int, batch: int, seed: int,
                  cache: str | None = "", shuffle_buffer: int = 256) -> tf.data.Dataset:
    """Endless batches [batch, patch, patch, 1] of random patches of one dose's slices.

    Decoded slices are cached (in memory for "", in files under a path prefix, not at all
    for None) so later epochs only crop. Call it once per dose with different seeds: the
    LDCT and NDCT streams are shuffled and cropped independently (unpaired training).
    """
    slices = dose_slices(file_patterns, dose)
    if cache is not None:
        slices = slices.cache(f"{cache}.{dose}" if cache else "")
    return (
        slices.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .enumerate()
        .map(_crop(patch, seed), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _crop(patch: int, seed: int):
    """A stateless random crop keyed by (seed, element index): runs with one seed are identical."""
    def crop(index: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
        key = tf.stack([tf.constant(seed, tf.int64), index])
        return tf.image.stateless_random_crop(image, [patch, patch, 1], seed=key)

    return crop


def paired_eval_slices(file_patterns: Sequence[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` whole (LDCT, NDCT) slice pairs of equal size, normalised, as NumPy arrays
    for TensorBoard PSNR and image summaries."""
    pairs = (
        records(file_patterns)
        .map(parse)
        .filter(lambda p: tf.logical_and(tf.strings.length(p["ldct"]) > 0, tf.strings.length(p["ndct"]) > 0))
        .map(lambda p: (decode_image(p, "ldct"), decode_image(p, "ndct")))
        .take(limit)
    )
    items = list(pairs.as_numpy_iterator())
    if not items:
        return np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 1, 1, 1), np.float32)
    shape = items[0][0].shape
    same = [(a, b) for a, b in items if a.shape == shape]
    return np.stack([a for a, _ in same]), np.stack([b for _, b in same])
