"""Parallel-beam projection and back-projection of square slices, compiled by XLA.

The geometry is skimage's for `circle=False` (docs/design.md, "CT physics of the simulator"): a slice of
N pixels, `bins` detector bins one pixel wide centred on the slice's centre, views at angles θ over
180°; a pixel (row r, column c, both from the centre) lies at detector position t = c·cos θ − r·sin θ.

- `project`: Joseph's method. Each ray is sampled once per row (views nearer the columns' direction)
  or once per column (the others), linearly interpolated between the two nearest pixels of that row or
  column, and summed times the sample spacing along the ray.
- `backproject`: each pixel takes, from every view, the linear interpolation of the (filtered)
  projection at its position t, summed and scaled by π / (2 · views), as skimage's `iradon`; sums of a
  few dozen views are added in float64.

Both are gathers over all views at once in chunks (`CHUNK` views), which XLA fuses into loops over
the pixels: several times faster on 2 cores than a Python loop over the views (BENCHMARKS.md,
"Simulator speed"). TensorFlow is imported at the first call, and each slice size compiles once.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported at the first call: `simulate` reports bad input before TensorFlow starts
    from tensorflow import Tensor

CHUNK = 32
"""Views handled together: large enough to keep both cores busy, small enough that the
[pixels × CHUNK] intermediates stay in the tens of megabytes at 512 pixels."""


def project(mu: np.ndarray, bins: int, theta_deg: np.ndarray) -> np.ndarray:
    """Line integrals [bins, views] of attenuation per pixel `mu` [N, N] (unit pixel spacing)."""
    size = mu.shape[0]
    return _projector(size, bins, tuple(float(a) for a in theta_deg))(mu)


def backproject(sinogram: np.ndarray, theta_deg: np.ndarray, size: int) -> np.ndarray:
    """The back-projection [size, size] of a filtered sinogram [bins, views]."""
    return _backprojector(size, sinogram.shape[0], tuple(float(a) for a in theta_deg))(sinogram)


@functools.lru_cache(maxsize=8)
def _backprojector(size: int, bins: int, theta_deg: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    tf = _tensorflow()
    theta = np.deg2rad(np.asarray(theta_deg))
    views = len(theta)
    angles = [tf.constant(np.asarray(f(theta), np.float32)) for f in (np.cos, np.sin)]
    vector = tf.TensorSpec([views], tf.float32)

    # The angles are inputs, not constants: folded into the graph, the [pixels × views] positions
    # would be constants of gigabytes at 512 px.
    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([bins, views], tf.float32), vector, vector])
    def run(sinogram: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        cols, rows = _pixel_coordinates(tf, size)
        flat = tf.reshape(tf.transpose(sinogram), [-1])  # view after view
        total = tf.zeros([size * size], tf.float64)
        for start in range(0, views, CHUNK):
            stop = min(start + CHUNK, views)
            position = cols * cos[None, start:stop] - rows * sin[None, start:stop] + float(bins // 2)
            below = tf.floor(position)
            share = position - below
            index = tf.clip_by_value(tf.cast(below, tf.int32), 0, bins - 2) + tf.range(start, stop)[None] * bins
            low, high = tf.gather(flat, index), tf.gather(flat, index + 1)
            on_detector = tf.cast((position >= 0.0) & (position <= float(bins - 1)), tf.float32)  # else 0, as skimage
            total += tf.cast(tf.reduce_sum((low + share * (high - low)) * on_detector, axis=1), tf.float64)
        return tf.reshape(total, [size, size]) * (np.pi / (2 * views))

    return lambda sinogram: run(tf.constant(sinogram, tf.float32), *angles).numpy()


@functools.lru_cache(maxsize=8)
def _projector(size: int, bins: int, theta_deg: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    tf = _tensorflow()
    theta = np.deg2rad(np.asarray(theta_deg))
    by_rows = np.abs(np.cos(theta)) >= np.abs(np.sin(theta))
    grouped = np.concatenate([np.flatnonzero(by_rows), np.flatnonzero(~by_rows)])  # row-driven views first
    row_driven_views = int(np.count_nonzero(by_rows))
    order = np.argsort(grouped)
    angles = [tf.constant(np.asarray(f(theta[grouped]), np.float32)) for f in (np.cos, np.sin)]
    vector = tf.TensorSpec([len(theta)], tf.float32)
    half = float(size // 2)

    # The angles are inputs for the reason `_backprojector` gives.
    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([size, size], tf.float32), vector, vector])
    def run(mu: Tensor, cos_all: Tensor, sin_all: Tensor) -> Tensor:
        flat = tf.reshape(mu, [-1])
        t = tf.reshape(tf.range(bins, dtype=tf.float32) - float(bins // 2), [1, bins, 1])
        along = tf.reshape(tf.range(size, dtype=tf.float32) - half, [1, 1, size])  # each sample's row (or column)
        fixed = tf.reshape(tf.range(size), [1, 1, size])
        pieces = []
        for first, last, rows_driven in ((0, row_driven_views, True), (row_driven_views, len(theta), False)):
            for start in range(first, last, CHUNK):
                stop = min(start + CHUNK, last)
                cos, sin = (tf.reshape(v[start:stop], [-1, 1, 1]) for v in (cos_all, sin_all))
                if rows_driven:  # at row r the ray is at column (t + r·sin θ) / cos θ
                    other, spacing = (t + along * sin) / cos + half, 1.0 / tf.abs(cos)
                else:  # at column c the ray is at row (c·cos θ − t) / sin θ
                    other, spacing = (along * cos - t) / sin + half, 1.0 / tf.abs(sin)
                below = tf.floor(other)
                share = other - below
                below = tf.cast(below, tf.int32)
                value = tf.zeros_like(other)
                for pixel, weight in ((below, 1.0 - share), (below + 1, share)):
                    inside = tf.cast((pixel >= 0) & (pixel < size), tf.float32)
                    pixel = tf.clip_by_value(pixel, 0, size - 1)
                    index = fixed * size + pixel if rows_driven else pixel * size + fixed
                    value += tf.gather(flat, index) * weight * inside
                pieces.append(tf.reduce_sum(value, axis=2) * spacing[:, :, 0])
        return tf.gather(tf.concat(pieces, axis=0), order)  # [views, bins] in angle order

    return lambda mu: run(tf.constant(mu, tf.float32), *angles).numpy().T.astype(np.float64)


def _pixel_coordinates(tf, size: int) -> tuple[Tensor, Tensor]:
    """Each pixel's column and row from the centre, [N², 1] each."""
    centred = tf.range(size, dtype=tf.float32) - float(size // 2)
    rows, cols = tf.meshgrid(centred, centred, indexing="ij")
    return tf.reshape(cols, [-1, 1]), tf.reshape(rows, [-1, 1])


def _tensorflow():
    import ctdenoise.tensorflow_env  # noqa: F401  (TensorFlow's settings, before its import)

    # isort: split
    import tensorflow as tf

    return tf


# The compiled functions are dropped while TensorFlow is still loaded: deleted at the interpreter's
# teardown instead, each would print an ignored exception.
atexit.register(_projector.cache_clear)
atexit.register(_backprojector.cache_clear)
