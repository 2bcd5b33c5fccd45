"""The Trainer's tf.data input: unpaired, correctly normalised patches, no Python per element.

Each slice's HU encode where a pixel came from (slice, row, column), so a patch tells which
slice it was cropped from and where, and its values check the normalisation exactly.
"""
import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.dicom_hu import SliceRecord
from components.evaluation.image_metrics import denormalize_hu
from trainer_module import data

SIZE, PATCH, BATCH, SLICES = 16, 8, 4, 6
SLICE_STRIDE = 300
"""Slice i holds HU = i·300 + 16·row + column (0…1755: inside the training window)."""
LDCT_ONLY_HU = 2500
"""A slice beyond the window's top (2000 HU): every pixel must normalise to exactly 1."""


def _record(hu: np.ndarray) -> SliceRecord:
    return SliceRecord("x.dcm", hu.astype(np.int16), None, None, None, None, None)


def _slice(i: int) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return i * SLICE_STRIDE + SIZE * rows + cols


@pytest.fixture(scope="module")
def tfrecord(tmp_path_factory) -> str:
    """SLICES paired positions, plus one LDCT-only position, gzip like the ingestion writes."""
    path = str(tmp_path_factory.mktemp("examples") / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(SLICES):
            images = {"ldct": _record(_slice(i)), "ndct": _record(_slice(i))}
            writer.write(features.build_example("P1", f"z{i}", images).SerializeToString())
        only = {"ldct": _record(np.full((SIZE, SIZE), LDCT_ONLY_HU))}
        writer.write(features.build_example("P1", "ldct-only", only).SerializeToString())
    return path


def _draws(tfrecord: str, dose: str, seed: int, batches: int) -> list[tuple[int, int, int]]:
    """(slice, row, column) of each patch's top-left pixel; -1 for the LDCT-only slice.
    Checks shape, dtype, contiguity and normalisation of every patch on the way."""
    stream = data.patch_batches([tfrecord], dose, PATCH, BATCH, seed=seed)
    drawn = []
    for batch in stream.take(batches).as_numpy_iterator():
        assert batch.shape == (BATCH, PATCH, PATCH, 1) and batch.dtype == np.float32
        for patch in batch[..., 0]:
            hu = denormalize_hu(patch)
            if np.allclose(patch, 1.0):
                drawn.append((-1, 0, 0))
                continue
            top = int(round(hu[0, 0]))
            i, offset = divmod(top, SLICE_STRIDE)
            row, col = divmod(offset, SIZE)
            expected = _slice(i)[row:row + PATCH, col:col + PATCH]
            np.testing.assert_allclose(hu, expected, atol=0.01)
            np.testing.assert_allclose(patch, (expected + 1000.0) / 3000.0 * 2.0 - 1.0, atol=1e-6)
            drawn.append((i, row, col))
    return drawn


def test_patches_are_normalised_crops_and_each_dose_has_only_its_own_slices(tfrecord):
    ldct = _draws(tfrecord, "ldct", seed=1, batches=20)
    ndct = _draws(tfrecord, "ndct", seed=2, batches=20)
    assert {i for i, _, _ in ldct} == set(range(SLICES)) | {-1}, "every LDCT slice, the LDCT-only one too"
    assert {i for i, _, _ in ndct} == set(range(SLICES)), "the LDCT-only position has no NDCT image"
    assert len({(r, c) for _, r, c in ndct}) > 10, "crops are at random positions"


def test_ldct_and_ndct_streams_are_unpaired_and_reproducible(tfrecord):
    ldct, ndct = _draws(tfrecord, "ldct", seed=1, batches=6), _draws(tfrecord, "ndct", seed=2, batches=6)
    same_slice = sum(a[0] == b[0] for a, b in zip(ldct, ndct))
    assert same_slice < len(ldct) / 2, "LDCT and NDCT patches must be drawn independently"
    assert _draws(tfrecord, "ldct", seed=1, batches=6) == ldct, "the same seed draws the same patches"


def _python_ops(dataset: tf.data.Dataset) -> bool:
    return b"PyFunc" in dataset._as_serialized_graph().numpy()


def test_no_python_runs_per_element(tfrecord):
    stream = data.patch_batches([tfrecord], "ldct", PATCH, BATCH, seed=1)
    assert not _python_ops(stream)
    with_python = stream.map(lambda x: tf.py_function(lambda t: t, [x], tf.float32))
    assert _python_ops(with_python), "the check itself must see a py_function"
