"""tf.data input pipelines from the Examples artifact, entirely in the TF graph.

Parse → decode int16 HU → truncate to [-1024, 2000] → normalise to [-1, 1] → beside it, as a
second channel, the slice's noise level as a constant map (docs/design.md, "Noise-level input") →
random patches. Unpaired training (the paper's) samples LDCT and NDCT streams independently;
paired training crops both doses of one example at the same place. A chosen share of the
patches are foreground patches, drawn uniformly among the positions where at least
FOREGROUND_PATCH of the pixels are the patient, above a chosen HU line (docs/design.md
design, "Making the adversarial game start"): most random patches of a slice are otherwise air, identical in both
domains. With
`augment`, each training patch is also turned by one of the square's eight symmetries
(flips and 90° rotations; both doses of a pair alike): anatomy seen from every side, so a
few real patients go further. With `noise_rescale` above 1, paired training draws each
patch's noise afresh (`redraw_noise`): the NDCT plus the pair's own noise scaled and signed at
random, so a slice is seen at many noise levels with its scanner's texture. No Python runs per
element, so tf.data's parallelism and prefetch apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ctdenoise.contract import features
from ctdenoise.contract.hu import FOREGROUND_HU, HU_MAX, HU_MIN, grey_from_hu, hu_from_unit, unit_from_hu
from ctdenoise.contract.noise_level import LEVEL_UNIT_HU
from ctdenoise.storage import files as storage_files

LDCT, NDCT = features.DOSES

_IMAGE_SPEC = {
    features.HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    features.WIDTH: tf.io.FixedLenFeature([], tf.int64),
    **{features.image_key(d): tf.io.FixedLenFeature([], tf.string, default_value="") for d in features.DOSES},
    **{features.noise_key(d): tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for d in features.DOSES},
}
CHANNELS = 2
"""A network's input: the normalised image, then its noise level map (`with_level`)."""
FOREGROUND_PATCH = 0.9
"""A foreground patch has at least this share of foreground pixels."""


def normalize_hu(hu: tf.Tensor) -> tf.Tensor:
    """HU → [-1, 1] after truncation to the model's window (contract.hu, in the TF graph)."""
    return unit_from_hu(tf.clip_by_value(tf.cast(hu, tf.float32), HU_MIN, HU_MAX))


def denormalize(x: tf.Tensor) -> tf.Tensor:
    """[-1, 1] → HU (the inverse of normalize_hu inside the window)."""
    return hu_from_unit(tf.cast(x, tf.float32))


def soft_tissue_window(normalised: tf.Tensor) -> tf.Tensor:
    """[-1, 1] images → [0, 1] grey levels of the soft-tissue window (TensorBoard images and
    the discriminators' view under `d_window`)."""
    return tf.clip_by_value(grey_from_hu(denormalize(normalised)), 0.0, 1.0)


def at_level(image: tf.Tensor, level_hu: tf.Tensor | float) -> tf.Tensor:
    """A network's input: the image [..., H, W, 1] beside a map of the same shape holding `level_hu`
    (a scalar, or one per image of a batch) in the networks' unit, `LEVEL_UNIT_HU`."""
    level = tf.cast(level_hu, tf.float32) / LEVEL_UNIT_HU
    level = tf.reshape(level, tf.concat([tf.shape(level), tf.ones([tf.rank(image) - tf.rank(level)], tf.int32)], 0))
    return with_level(image, tf.ones_like(image) * tf.cast(level, image.dtype))


def with_level(image: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
    """A network's input: the image [..., 1] and a level map of the same shape, as two channels."""
    return tf.concat([image, tf.cast(level, image.dtype)], axis=-1)


def image_of(x: tf.Tensor) -> tf.Tensor:
    """The image channel of a network's input."""
    return x[..., :1]


def level_of(x: tf.Tensor) -> tf.Tensor:
    """The level map of a network's input."""
    return x[..., 1:]


def decode_input(parsed: dict[str, tf.Tensor], dose: str) -> tf.Tensor:
    """`dose`'s image with its noise level: [H, W, CHANNELS] (`at_level`)."""
    return at_level(decode_image(parsed, dose), parsed[features.noise_key(dose)])


def decode_image(parsed: dict[str, tf.Tensor], dose: str) -> tf.Tensor:
    """The int16 little-endian HU bytes of `dose` → float32 [H, W, 1] normalised image."""
    hu = tf.io.decode_raw(parsed[features.image_key(dose)], tf.int16, little_endian=True)
    shape = tf.stack([parsed[features.HEIGHT], parsed[features.WIDTH], 1])
    return normalize_hu(tf.reshape(hu, tf.cast(shape, tf.int32)))


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    return tf.io.parse_single_example(serialized, _IMAGE_SPEC)


def records(file_patterns: Sequence[str]) -> tf.data.Dataset:
    """Serialized examples of the given TFRecord (GZIP) file patterns, files read in parallel."""
    names = tf.data.Dataset.list_files([storage_files.tf_path(p) for p in file_patterns], shuffle=False)
    return names.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _has(dose: str):
    return lambda p: tf.strings.length(p[features.image_key(dose)]) > 0


def dose_slices(file_patterns: Sequence[str], dose: str) -> tf.data.Dataset:
    """Whole normalised slices of one dose with their level maps, [H, W, CHANNELS] (examples
    without that dose are skipped)."""
    return (
        records(file_patterns)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .filter(_has(dose))
        .map(lambda p: decode_input(p, dose), num_parallel_calls=tf.data.AUTOTUNE)
    )


def paired_slices(file_patterns: Sequence[str]) -> tf.data.Dataset:
    """Whole normalised slices [H, W, 2 × CHANNELS] of examples holding both doses: the LDCT's
    channels, then the NDCT's (`split_pair`)."""
    return (
        records(file_patterns)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .filter(lambda p: tf.logical_and(_has(LDCT)(p), _has(NDCT)(p)))
        .map(
            lambda p: tf.concat([decode_input(p, LDCT), decode_input(p, NDCT)], axis=-1),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    )


def split_pair(both: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The LDCT's and the NDCT's channels of `paired_slices`' tensors."""
    return both[..., :CHANNELS], both[..., CHANNELS:]


def patch_batches(
    file_patterns: Sequence[str],
    dose: str,
    patch: int,
    batch: int,
    seed: int,
    foreground_patches: float = 0.0,
    cache: str | None = "",
    shuffle_buffer: int = 256,
    foreground_hu: float = FOREGROUND_HU,
    augment: bool = False,
) -> tf.data.Dataset:
    """Endless batches [batch, patch, patch, CHANNELS] of random patches of one dose's slices.

    Decoded slices are cached (in memory for "", in files under a path prefix, not at all
    for None) so later epochs only crop. Call it once per dose with different seeds: the
    LDCT and NDCT streams are shuffled and cropped independently (unpaired training).
    """
    slices = dose_slices(file_patterns, dose)
    return _patches(
        slices,
        f"{cache}.{dose}" if cache else cache,
        patch,
        batch,
        seed,
        _Foreground(foreground_patches, foreground_hu),
        shuffle_buffer,
        augment,
    )


def paired_patch_batches(
    file_patterns: Sequence[str],
    patch: int,
    batch: int,
    seed: int,
    foreground_patches: float = 0.0,
    cache: str | None = "",
    shuffle_buffer: int = 256,
    foreground_hu: float = FOREGROUND_HU,
    augment: bool = False,
    noise_rescale: float = 1.0,
) -> tf.data.Dataset:
    """Endless (LDCT, NDCT) batches, each [batch, patch, patch, CHANNELS], cropped at the same place
    of the same example (and turned alike with `augment`): co-located patches for paired training;
    with `noise_rescale` above 1, each LDCT patch's noise drawn afresh (`redraw_noise`)."""
    pairs = _patches(
        paired_slices(file_patterns),
        f"{cache}.paired" if cache else cache,
        patch,
        batch,
        seed,
        _Foreground(foreground_patches, foreground_hu),
        shuffle_buffer,
        augment,
        noise_rescale,
    )
    return pairs.map(split_pair)


class _Foreground(NamedTuple):
    share: float
    """Probability that a crop is a foreground patch."""
    hu: float
    """The patient's line."""


def _patches(
    slices: tf.data.Dataset,
    cache: str | None,
    patch: int,
    batch: int,
    seed: int,
    foreground: _Foreground,
    shuffle_buffer: int,
    augment: bool,
    noise_rescale: float = 1.0,
) -> tf.data.Dataset:
    if cache is not None:
        slices = slices.cache(cache)
    return (
        slices.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .enumerate()
        .map(_crop(patch, seed, foreground, augment, noise_rescale), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _crop(patch: int, seed: int, foreground: _Foreground, augment: bool, noise_rescale: float = 1.0):
    """A stateless random crop keyed by (seed, element index): runs with one seed are identical.
    With `augment`, the crop is then turned by a symmetry drawn from the same key (`dihedral`);
    with `noise_rescale` above 1 (pairs only), its noise is drawn afresh from it (`redraw_noise`).

    With probability `foreground.share` the crop is a foreground patch, uniform over the
    positions whose patch holds at least FOREGROUND_PATCH pixels above `foreground.hu`
    (judged on the first channel, the LDCT of a pair); a slice with no such position gives
    its most foreground patch.
    """

    def crop(index: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
        key = tf.stack([tf.constant(seed, tf.int64), index])
        cut = place_crop(key, image)
        cut = dihedral(cut, tf.random.experimental.stateless_fold_in(key, 1)) if augment else cut
        if noise_rescale > 1:
            cut = redraw_noise(cut, tf.random.experimental.stateless_fold_in(key, 2), noise_rescale)
        return cut

    def place_crop(key: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
        anywhere = tf.image.stateless_random_crop(image, [patch, patch, tf.shape(image)[-1]], seed=key)
        if foreground.share <= 0:
            return anywhere
        choose, place = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        share = foreground_share(image[..., 0], patch, foreground.hu)
        draw = tf.random.stateless_uniform(tf.shape(share), seed=place)
        score = tf.where(share >= FOREGROUND_PATCH, draw, share - 1.0)  # qualifying positions always win
        position = tf.argmax(tf.reshape(score, [-1]), output_type=tf.int32)
        top, left = position // tf.shape(share)[1], position % tf.shape(share)[1]
        on_patient = image[top : top + patch, left : left + patch, :]
        return tf.cond(
            tf.random.stateless_uniform([], seed=choose) < foreground.share, lambda: on_patient, lambda: anywhere
        )

    return crop


def dihedral(image: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """`image` [H, W, C] turned by one of the square's eight symmetries, drawn from `key`:
    a rotation by 0, 90, 180 or 270 degrees, then a left-right flip or none. Every channel
    moves alike, so co-located LDCT/NDCT pairs stay co-located."""
    draw = tf.random.stateless_uniform([], seed=key, maxval=8, dtype=tf.int32)
    turned = tf.image.rot90(image, k=draw % 4)
    return tf.cond(draw >= 4, lambda: tf.image.flip_left_right(turned), lambda: turned)


def redraw_noise(pair: tf.Tensor, key: tf.Tensor, rescale: float) -> tf.Tensor:
    """A (LDCT, NDCT) patch [H, W, 2 × CHANNELS] with a fresh LDCT: the NDCT plus ±s times the
    pair's own noise (LDCT − NDCT), s log-uniform in [1/`rescale`, `rescale`] and the sign drawn
    from `key` (Gaussian noise is as likely negated). The level map follows: the LDCT's noise
    variance σ_L² = σ_N² + σ_added² becomes σ_N² + s²·σ_added², exact where the LDCT is the NDCT
    with noise inserted (real sources), and close where both doses carry their own draw (the
    phantoms; docs/design.md, "Training mechanics")."""
    ldct, ndct = split_pair(pair)
    scale_key, sign_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    log_scale = tf.random.stateless_uniform([], seed=scale_key, minval=-1.0, maxval=1.0) * float(np.log(rescale))
    sign = tf.where(tf.random.stateless_uniform([], seed=sign_key) < 0.5, -1.0, 1.0)
    scale = sign * tf.exp(log_scale)
    image = tf.clip_by_value(image_of(ndct) + scale * (image_of(ldct) - image_of(ndct)), -1.0, 1.0)
    added = tf.maximum(tf.square(level_of(ldct)) - tf.square(level_of(ndct)), 0.0)
    level = tf.sqrt(tf.square(level_of(ndct)) + tf.square(scale) * added)
    return tf.concat([with_level(image, level), ndct], axis=-1)


def foreground_share(image: tf.Tensor, patch: int, line_hu: float = FOREGROUND_HU) -> tf.Tensor:
    """[H - patch + 1, W - patch + 1]: the share of pixels above `line_hu` in the patch at
    each top-left position of a normalised [H, W] image, from an integral image (linear in
    the image size)."""
    foreground = tf.cast(image > float(unit_from_hu(line_hu)), tf.float32)
    integral = tf.pad(tf.cumsum(tf.cumsum(foreground, axis=0), axis=1), [[1, 0], [1, 0]])
    total = (
        integral[patch:, patch:] - integral[:-patch, patch:] - integral[patch:, :-patch] + integral[:-patch, :-patch]
    )
    return total / float(patch * patch)


def smallest_side(file_patterns: Sequence[str]) -> int | None:
    """The shortest height or width among the examples (None when there are none): patches
    must fit in every slice. Only the two int64 features are parsed."""
    spec = {key: _IMAGE_SPEC[key] for key in (features.HEIGHT, features.WIDTH)}
    sides = records(file_patterns).map(
        lambda s: tf.minimum(*tf.io.parse_single_example(s, spec).values()), num_parallel_calls=tf.data.AUTOTUNE
    )
    smallest = int(sides.reduce(tf.constant(np.iinfo(np.int64).max), tf.minimum).numpy())
    return None if smallest == np.iinfo(np.int64).max else smallest


def paired_eval_slices(file_patterns: Sequence[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` whole (LDCT with its level, NDCT image) slice pairs of equal size, normalised,
    as NumPy arrays for TensorBoard PSNR and image summaries."""
    pairs = paired_slices(file_patterns).take(limit).map(split_pair)
    items = [(ldct, image_of(ndct)) for ldct, ndct in pairs.as_numpy_iterator()]
    if not items:
        return np.zeros((0, 1, 1, CHANNELS), np.float32), np.zeros((0, 1, 1, 1), np.float32)
    shape = items[0][0].shape
    same = [(a, b) for a, b in items if a.shape == shape]
    return np.stack([a for a, _ in same]), np.stack([b for _, b in same])
