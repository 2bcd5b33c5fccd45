"""The Examples feature contract (docs/design.md, "Data contract"): one source of truth for every component and test.

One tf.train.Example per (patient, slice position). HU images are int16 little-endian,
row-major; a dose without an image at a position simply lacks its image features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from ctdenoise.contract.noise_level import noise_level_hu

if TYPE_CHECKING:  # imported where used: the contract loads without TensorFlow
    import tensorflow as tf

DOSES = ("ldct", "ndct")
"""Dose domains: A = low dose (LDCT), B = normal dose (NDCT)."""

PATIENT_ID = "patient_id"
SLICE_KEY = "slice_key"
HEIGHT = "height"
WIDTH = "width"
METADATA_FLOATS = ("pixel_spacing_mm", "slice_thickness_mm", "kvp")
HU_STATS = ("mean", "std", "min", "max", "p01", "p50", "p99")

HU_DTYPE = np.dtype("<i2")
"""On-disk HU dtype: int16 little-endian."""

CONTRACT_VERSION = 2
"""Bumped whenever the features below change (2: `noise_key`): part of ingestion's cache key, so
a run never reuses examples written under another contract."""

SPLITS = ("train", "eval")

Z_TOLERANCE_MM = 0.01
"""LDCT and NDCT slices of one patient pair when their z positions differ by at most this."""


class Positioned(Protocol):
    """A slice with its z position in mm, None where its file gives none."""

    @property
    def z(self) -> float | None: ...


P = TypeVar("P", bound=Positioned)


def at_position(slices: Iterable[P], z: float | None) -> P | None:
    """The first of `slices` within Z_TOLERANCE_MM of `z`, or None. A slice without a position
    is at no position, so it matches nothing, and nothing matches a `z` of None."""
    if z is None:
        return None
    return next((s for s in slices if s.z is not None and abs(s.z - z) <= Z_TOLERANCE_MM), None)


class SliceImage(Protocol):
    """What an example is built from: one dose's slice in HU with its source and metadata
    (`ctdenoise.dicomio.reader.SliceRecord` is one)."""

    @property
    def rel_path(self) -> str: ...
    @property
    def hu(self) -> np.ndarray: ...
    @property
    def pixel_spacing_mm(self) -> float | None: ...
    @property
    def slice_thickness_mm(self) -> float | None: ...
    @property
    def kvp(self) -> float | None: ...


def image_key(dose: str) -> str:
    """Feature holding the HU image of `dose` as int16 bytes."""
    return dose


def path_key(dose: str) -> str:
    """Feature holding the source file of `dose`, relative to the data root."""
    return f"{dose}_path"


def stat_key(dose: str, stat: str) -> str:
    """Feature holding one HU summary statistic of `dose`'s slice, e.g. ``ldct_hu_p01``."""
    return f"{dose}_hu_{stat}"


def noise_key(dose: str) -> str:
    """Feature holding the noise level of `dose`'s slice in HU (`contract.noise_level`), e.g. ``ldct_noise_hu``:
    what the networks are given beside the image."""
    return f"{dose}_noise_hu"


def scalar_feature_names() -> list[str]:
    """Every float feature: the ones TFDV validates against the curated schema."""
    stats = [stat_key(d, s) for d in DOSES for s in HU_STATS]
    return stats + [noise_key(d) for d in DOSES] + list(METADATA_FLOATS)


def hu_stats(hu: np.ndarray) -> dict[str, float]:
    """The HU summary statistics of one slice, keyed by `HU_STATS` names.

    HU are integers (`ctdenoise.dicomio.reader.to_hu` rounds them to int16), so every statistic comes from
    one histogram: the percentiles equal `np.percentile`'s (linear interpolation) without its
    sort, and the moments are exact integer sums over the few thousand bins instead of two
    more passes over the pixels. This runs for every slice the ingestion writes
    (docs/experiments.md).
    """
    values = np.asarray(hu).ravel().astype(np.int64)
    low = int(values.min())
    counts = np.bincount(values - low)
    cumulative = np.cumsum(counts)
    p01, p50, p99 = (_percentile(cumulative, low, q) for q in (1, 50, 99))
    mean, std = _moments(counts, low)
    return {
        "mean": mean,
        "std": std,
        "min": float(low),
        "max": float(low + cumulative.size - 1),  # the histogram's last bin
        "p01": p01,
        "p50": p50,
        "p99": p99,
    }


def _moments(counts: np.ndarray, low: int) -> tuple[float, float]:
    """Mean and (population) standard deviation of integer values >= `low` from their histogram,
    with sums in Python integers, so that no rounding happens before the last division."""
    offsets = np.arange(counts.size, dtype=np.int64)
    n, s1, s2 = int(counts.sum()), int(counts @ offsets), int(counts @ (offsets * offsets))
    return low + s1 / n, math.sqrt((n * s2 - s1 * s1) / (n * n))


def _percentile(cumulative: np.ndarray, low: int, q: float) -> float:
    """`np.percentile(values, q)` from the cumulative histogram of integer values >= `low`."""
    position = q / 100 * (cumulative[-1] - 1)
    below = int(np.floor(position))
    ranks = np.searchsorted(cumulative, [below, min(below + 1, cumulative[-1] - 1)], side="right")
    v0, v1 = (float(low + r) for r in ranks)
    return v0 + (position - below) * (v1 - v0)


def encode_hu(hu: np.ndarray) -> bytes:
    """HU image → the int16 little-endian bytes stored in the example."""
    return np.ascontiguousarray(hu, dtype=HU_DTYPE).tobytes()


def decode_hu(data: bytes, height: int, width: int) -> np.ndarray:
    """The inverse of `encode_hu` (NumPy side; the trainer decodes in the TF graph)."""
    return np.frombuffer(data, dtype=HU_DTYPE).reshape(height, width)


def build_example(
    patient_id: str,
    slice_key: str,
    images: Mapping[str, SliceImage],
) -> tf.train.Example:
    """One tf.train.Example from the slices of each dose found at one position."""
    import tensorflow as tf

    def _bytes(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def _int(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    def _float(v: float) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

    first = next(iter(images.values()))
    feats = {
        PATIENT_ID: _bytes(patient_id.encode()),
        SLICE_KEY: _bytes(slice_key.encode()),
        HEIGHT: _int(first.hu.shape[0]),
        WIDTH: _int(first.hu.shape[1]),
    }
    for name in METADATA_FLOATS:
        value = next((getattr(r, name) for r in images.values() if getattr(r, name) is not None), None)
        if value is not None:
            feats[name] = _float(value)
    for dose, rec in images.items():
        feats[image_key(dose)] = _bytes(encode_hu(rec.hu))
        feats[path_key(dose)] = _bytes(rec.rel_path.encode())
        for stat, value in hu_stats(rec.hu).items():
            feats[stat_key(dose, stat)] = _float(value)
        feats[noise_key(dose)] = _float(noise_level_hu(rec.hu))
    return tf.train.Example(features=tf.train.Features(feature=feats))


def validated_feature_names() -> list[str]:
    """The features TFDV computes statistics for and the curated schema lists: ids, grid
    and scalars. The HU image bytes are left out: statistics over 512 KB blobs cost time
    and say nothing the HU summaries do not."""
    return [PATIENT_ID, SLICE_KEY, HEIGHT, WIDTH] + scalar_feature_names()
